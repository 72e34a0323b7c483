//! [`Control`] on real processes: tracer memory through [`Tracee`], signals through `unix`.
//!
//! Keeps one open `/proc/PID/mem` per live process and the PIE load bias, read once from the
//! parent (clones share its layout). Segment events, stops and exits go to a monitor (progress, timing, memory).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use super::machine::{Control, Fanout, Pid, SegmentEvent};
use crate::base::unix;
use crate::domain::tracer::{Tracee, TracerSymbols};

/// Watches a granule run (progress, timing, memory) and says whether memory allows another
/// worker. Everything here is called from the event loop, between process events.
pub trait Monitor {
    /// A segment moved on.
    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent);
    /// A process is stopped at waitpoint `at`: its memory holds still.
    fn stopped(&mut self, pid: Pid, at: i32);
    /// A stopped process was continued.
    fn resumed(&mut self, _pid: Pid) {}
    /// A process has exited and been reaped.
    fn gone(&mut self, pid: Pid);
    /// Whether memory allows one more worker beside `busy` running ones.
    fn may_start_worker(&mut self, busy: usize) -> bool;
    /// Periodically, and after events: the run as it stands.
    fn tick(&mut self, fanout: &Fanout);
    /// After the time-limit warning (and at every tick from then on): whether the granule
    /// may go on, projected to finish before the job ends. By default the warning ends it.
    fn keep_on_warning(&mut self, _fanout: &Fanout) -> bool {
        false
    }
    /// Something went wrong that does not change how the granule ended (the caller's words
    /// go to its user).
    fn warning(&mut self, line: &str);
}

pub struct ProcControl<'a, O: Monitor> {
    proc_root: PathBuf,
    symbols: Option<&'a TracerSymbols>,
    bias: Option<u64>,
    tracees: HashMap<Pid, Tracee>,
    monitor: O,
    /// Worker slots other granules in flight hold or claim first (set by the supervisor).
    elsewhere: usize,
}

impl<'a, O: Monitor> ProcControl<'a, O> {
    /// `symbols` is `None` for a serial run, which never reads memory.
    pub fn new(symbols: Option<&'a TracerSymbols>, monitor: O) -> Self {
        ProcControl {
            proc_root: PathBuf::from("/proc"),
            symbols,
            bias: None,
            tracees: HashMap::new(),
            monitor,
            elsewhere: 0,
        }
    }

    pub fn monitor(&mut self) -> &mut O {
        &mut self.monitor
    }

    pub fn into_monitor(self) -> O {
        self.monitor
    }

    /// What the other granules in flight take of the shared worker slots, until set again.
    pub fn set_slots_held_elsewhere(&mut self, slots: usize) {
        self.elsewhere = slots;
    }

    /// Drops what we hold for a process that is gone.
    pub fn forget(&mut self, pid: Pid) {
        self.tracees.remove(&pid);
        self.monitor.gone(pid);
    }

    fn tracee(&mut self, pid: Pid) -> io::Result<&Tracee> {
        let symbols = self
            .symbols
            .ok_or_else(|| io::Error::other("serial runs do not read process memory"))?;
        if !self.tracees.contains_key(&pid) {
            let t = match self.bias {
                Some(bias) => Tracee::with_bias(&self.proc_root, pid, symbols, bias)?,
                None => {
                    let t = Tracee::attach(&self.proc_root, pid, symbols)?;
                    self.bias = Some(t.bias());
                    t
                }
            };
            self.tracees.insert(pid, t);
        }
        Ok(&self.tracees[&pid])
    }
}

impl<O: Monitor> Control for ProcControl<'_, O> {
    fn wait_number(&mut self, pid: Pid) -> io::Result<i32> {
        let at = self.tracee(pid)?.wait_number()?;
        if at != 0 {
            self.monitor.stopped(pid, at);
        }
        Ok(at)
    }

    fn clone_pid(&mut self, parent: Pid) -> io::Result<Pid> {
        let pids = self.tracee(parent)?.clone_pids(1)?;
        match pids.first() {
            Some(&pid) if pid > 0 => Ok(pid),
            other => Err(io::Error::other(format!(
                "sibling_pids holds {other:?}, not a clone pid; is CLAVRX_TRACER_CLONES honoured?"
            ))),
        }
    }

    fn number_of_lines(&mut self, pid: Pid) -> io::Result<i32> {
        self.tracee(pid)?.number_of_lines()
    }

    fn scan_number_length(&mut self, pid: Pid) -> io::Result<i32> {
        self.tracee(pid)?.scan_number_length()
    }

    fn hand_off(&mut self, parent: Pid, lines: i32) -> io::Result<()> {
        let t = self.tracee(parent)?;
        t.advance_output_offset(lines)?;
        t.skip_current_segment()
    }

    fn cont(&mut self, pid: Pid) -> io::Result<()> {
        unix::resume(pid)?;
        self.monitor.resumed(pid);
        Ok(())
    }

    fn end(&mut self, pid: Pid) -> io::Result<()> {
        self.tracees.remove(&pid);
        unix::terminate(pid)
    }

    fn may_start_worker(&mut self, busy: usize) -> bool {
        self.monitor.may_start_worker(busy)
    }

    fn slots_held_elsewhere(&mut self) -> usize {
        self.elsewhere
    }

    fn kill(&mut self, pid: Pid) -> io::Result<()> {
        self.tracees.remove(&pid);
        unix::kill_now(pid)
    }

    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        self.monitor.segment(segment, pid, event);
    }
}
