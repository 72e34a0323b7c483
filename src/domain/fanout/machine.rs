//! The segment fan-out of one granule as a state machine: events in, process control out.
//!
//! It knows the tracer protocol (who stops where, who may write, when the parent may read
//! ahead) and nothing about the OS: every read, write and signal goes through [`Control`],
//! so the protocol is unit-tested without a single process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

pub type Pid = i32;

/// Waitpoints of the protocol.
pub const L1B: i32 = 1;
pub const FINAL: i32 = 3;
pub const SAVE: i32 = 6;
pub const ALL_FINISH: i32 = 7;

pub use crate::base::unix::Exit;

/// clavrxorb ends normally with 0 or 1.
fn is_normal(exit: Exit) -> bool {
    matches!(exit, Exit::Code(0 | 1))
}

/// What a segment went through, for progress and timing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEvent {
    /// Read by the parent; its clone waits for a worker slot.
    Queued,
    /// A worker slot took it.
    Started,
    /// Processed; waiting for (or holding) the write lock.
    Processed,
    /// Written to the output.
    Written { lines: i32 },
}

/// The side effects the machine asks for. The OS loop implements it on real processes.
pub trait Control {
    fn wait_number(&mut self, pid: Pid) -> std::io::Result<i32>;
    fn clone_pid(&mut self, parent: Pid) -> std::io::Result<Pid>;
    fn number_of_lines(&mut self, pid: Pid) -> std::io::Result<i32>;
    /// Length of the process's `scan_line_number` array: an upper bound of the segment's
    /// lines, not the count (see [`Fanout`]'s clamp).
    fn scan_number_length(&mut self, pid: Pid) -> std::io::Result<i32>;
    /// Gives the parent's current segment away: advance its output offset by `lines` and
    /// make it skip the segment.
    fn hand_off(&mut self, parent: Pid, lines: i32) -> std::io::Result<()>;
    fn cont(&mut self, pid: Pid) -> std::io::Result<()>;
    /// SIGTERM then SIGCONT: the protocol's way to end a (possibly stopped) process.
    fn end(&mut self, pid: Pid) -> std::io::Result<()>;
    /// SIGKILL, for a process that ignored being ended.
    fn kill(&mut self, pid: Pid) -> std::io::Result<()>;
    /// Whether memory allows one more worker beside `busy` running ones. One worker always
    /// runs, or the granule could never finish.
    fn may_start_worker(&mut self, busy: usize) -> bool;
    /// Worker slots other granules in flight hold or claim first (their busy processes, and
    /// the ready clones of older granules), out of the one pool `max_workers` bounds. 0 when
    /// this granule runs alone.
    fn slots_held_elsewhere(&mut self) -> usize {
        0
    }
    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent);
}

/// Who a process is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Parent,
    Worker,
}

/// Why a granule failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub pid: Pid,
    pub role: Role,
    /// 1-based segment the process held, when it held one.
    pub segment: Option<u32>,
    pub kind: Fault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Died(Exit),
    /// Ended normally, but before its work was done.
    EndedEarly(Exit),
    Protocol(String),
    Io(String),
    Incomplete {
        written: i64,
        total: i64,
    },
    /// clavrxorb ended normally without reading a single segment: it skipped the granule
    /// (a file it cannot read, or not level-1b). Run without the tracer: it exited 0 and
    /// wrote no output.
    NotProcessed,
    /// Run without the tracer, clavrxorb exited 0 but left this output empty.
    EmptyOutput(String),
    /// No state change and no CPU used for this many seconds.
    Stalled(u64),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.role {
            Role::Parent => "clavrxorb",
            Role::Worker => "clavrxorb clone",
        };
        let seg = self
            .segment
            .map(|s| format!(" on segment {s}"))
            .unwrap_or_default();
        match &self.kind {
            Fault::Died(exit) => write!(f, "{who} (pid {}) {exit}{seg}", self.pid),
            Fault::EndedEarly(exit) => {
                write!(
                    f,
                    "{who} (pid {}) {exit}{seg} before finishing it",
                    self.pid
                )
            }
            Fault::Protocol(what) => {
                write!(
                    f,
                    "{who} (pid {}){seg} broke the tracer protocol: {what}",
                    self.pid
                )
            }
            Fault::Io(what) => write!(f, "{who} (pid {}){seg}: {what}", self.pid),
            Fault::Stalled(secs) => write!(
                f,
                "{who} (pid {}){seg} stopped answering: no state change and no CPU used for \
                 {secs} s (raise --stall-timeout if a segment really takes longer)",
                self.pid
            ),
            Fault::Incomplete { written, total } => write!(
                f,
                "clavrxorb (pid {}) finished with {written} of {total} scan lines written",
                self.pid
            ),
            Fault::NotProcessed => write!(
                f,
                "clavrxorb (pid {}) ended without processing the granule (no segment read)",
                self.pid
            ),
            Fault::EmptyOutput(name) => write!(
                f,
                "clavrxorb (pid {}) exited 0 but its output {name} is empty",
                self.pid
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParentState {
    Running,
    /// At waitpoint 1 of `segment`, waiting for its clone to stop there too. The parent may
    /// not read on before: the clone is still reopening the parent's descriptors through
    /// /proc, and a parent that closes its input after the last segment kills that clone.
    AwaitingClone {
        segment: u32,
        clone: Pid,
    },
    /// At waitpoint 1, segment handed off, held so it does not read too far ahead.
    HeldForLead,
    /// At waitpoint 7, held until every worker is done.
    AtFinish,
    /// Continued from 7; its exit ends the granule.
    Finishing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Worker {
    segment: u32,
    lines: i32,
}

/// Limits of one fan-out.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_workers: usize,
    pub max_lead: usize,
}

/// Where the granule stands after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GranuleState {
    Running,
    Done,
    Failed(Failure),
}

/// How clavrxorb runs, and so what proves a granule done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tracer on, one clone per segment (`CLAVRX_TRACER_CLONES=1`): segments fan out.
    Clones,
    /// Tracer on, no clones (`CLAVRX_TRACER_CLONES=0`): the parent processes every segment
    /// itself but still stops at every waitpoint, so the run is followed and proven as in
    /// [`Mode::Clones`].
    Serial,
    /// Tracer off (a build without tracer symbols): only the exit status is seen, so the
    /// caller must check the outputs itself.
    Untraced,
}

/// The fan-out of one granule.
#[derive(Debug)]
pub struct Fanout {
    parent: Pid,
    limits: Limits,
    tracer: bool,
    /// The tracer runs without clones: the parent keeps every segment.
    serial: bool,
    /// Segments whose waitpoint 6 was passed: each must be written exactly once.
    written: HashSet<u32>,
    parent_state: ParentState,
    /// Segment the parent processes itself (the first), with its line count.
    own_segment: Option<Worker>,
    /// Segments read so far (the number of the last one).
    segments_read: u32,
    total_lines: Option<i64>,
    /// Lines of the segments read so far: where the next segment starts.
    read_lines: i64,
    written_lines: i64,
    segments_written: u32,
    /// Clones stopped at waitpoint 1, waiting for a slot: (pid, segment, lines).
    ready: VecDeque<(Pid, Worker)>,
    /// Clones continued into processing or writing.
    busy: HashMap<Pid, Worker>,
    write_queue: VecDeque<Pid>,
    writer: Option<Pid>,
    /// Processes we ended and expect to exit.
    ending: HashSet<Pid>,
    /// Stops and exits of pids we did not know yet (a clone can stop before its parent does).
    early_stops: HashSet<Pid>,
    early_exits: HashMap<Pid, Exit>,
    parent_exit: Option<Exit>,
    /// Memory, not the worker cap, held a worker back at least once.
    memory_bound: bool,
}

impl Fanout {
    /// A fan-out of the clavrxorb process `parent`, started in tracer mode (or, with
    /// `tracer` false, a plain serial run that is only supervised).
    pub fn new(parent: Pid, limits: Limits, tracer: bool) -> Fanout {
        let mode = if tracer { Mode::Clones } else { Mode::Untraced };
        Fanout::with_mode(parent, limits, mode)
    }

    /// A fan-out of the clavrxorb process `parent`, started as `mode` says.
    pub fn with_mode(parent: Pid, limits: Limits, mode: Mode) -> Fanout {
        Fanout {
            parent,
            serial: mode == Mode::Serial,
            written: HashSet::new(),
            limits: Limits {
                max_workers: limits.max_workers.max(1),
                max_lead: limits.max_lead.max(1),
            },
            tracer: mode != Mode::Untraced,
            parent_state: ParentState::Running,
            own_segment: None,
            segments_read: 0,
            total_lines: None,
            read_lines: 0,
            written_lines: 0,
            segments_written: 0,
            ready: VecDeque::new(),
            busy: HashMap::new(),
            write_queue: VecDeque::new(),
            writer: None,
            ending: HashSet::new(),
            early_stops: HashSet::new(),
            early_exits: HashMap::new(),
            parent_exit: None,
            memory_bound: false,
        }
    }

    /// Scan lines in the granule, once the parent has said.
    pub fn total_lines(&self) -> Option<i64> {
        self.total_lines
    }

    pub fn written_lines(&self) -> i64 {
        self.written_lines
    }

    pub fn segments_written(&self) -> u32 {
        self.segments_written
    }

    /// How clavrxorb itself ended, once it has.
    pub fn parent_exit(&self) -> Option<Exit> {
        self.parent_exit
    }

    /// Whether memory ever kept a worker from starting while the cap would have allowed it.
    pub fn memory_bound(&self) -> bool {
        self.memory_bound
    }

    /// Workers processing or writing now.
    pub fn busy_workers(&self) -> usize {
        self.busy.len()
    }

    /// Worker slots this granule holds: its busy clones, plus clavrxorb itself while it does
    /// the work nobody else can (start-up, reading and processing segment 1; every segment
    /// without clones). Later reads are short and interleave with the workers, so they count
    /// for nothing, as they always did.
    pub fn slots_held(&self) -> usize {
        let parent_working = match self.parent_state {
            ParentState::Running | ParentState::AwaitingClone { .. } => {
                self.parent_exit.is_none()
                    && (!self.tracer || self.serial || self.segments_written == 0)
            }
            _ => false,
        };
        self.busy.len() + usize::from(parent_working)
    }

    /// Slots this granule would use now if it had them: its busy and ready clones, and
    /// clavrxorb itself whenever it runs (reading counts here). Another granule starts only
    /// beside granules that leave a slot idle by this count.
    pub fn slots_wanted(&self) -> usize {
        let parent_running = matches!(
            self.parent_state,
            ParentState::Running | ParentState::AwaitingClone { .. }
        ) && self.parent_exit.is_none();
        self.busy.len() + self.ready.len() + usize::from(parent_running)
    }

    /// clavrxorb has read every segment (it waits for the last workers, or ends): what is
    /// left is the tail, which leaves slots idle as it drains.
    pub fn in_tail(&self) -> bool {
        matches!(
            self.parent_state,
            ParentState::AtFinish | ParentState::Finishing
        )
    }

    /// Clones read and waiting for a worker slot.
    pub fn waiting_workers(&self) -> usize {
        self.ready.len()
    }

    /// Another granule freed a slot (or memory): starts what may start now.
    pub fn poke(&mut self, ctl: &mut impl Control) -> GranuleState {
        match self.dispatch(ctl) {
            Ok(()) => self.status(),
            Err(f) => GranuleState::Failed(f),
        }
    }

    /// The segment a process holds, for messages about it.
    pub fn segment_of(&self, pid: Pid) -> Option<u32> {
        if pid == self.parent {
            return self.parent_segment();
        }
        if let ParentState::AwaitingClone { segment, clone } = self.parent_state
            && clone == pid
        {
            return Some(segment);
        }
        self.busy
            .get(&pid)
            .or_else(|| self.ready.iter().find(|(p, _)| *p == pid).map(|(_, w)| w))
            .map(|w| w.segment)
    }

    /// The segment the parent is on: the one it stopped at, its own first one while it
    /// processes it, else the next one it is reading.
    fn parent_segment(&self) -> Option<u32> {
        match self.parent_state {
            ParentState::AwaitingClone { segment, .. } => Some(segment),
            ParentState::Running if self.serial => Some(self.own_segment.map_or(1, |w| {
                w.segment + u32::from(self.written.contains(&w.segment))
            })),
            ParentState::Running if self.tracer && self.segments_written == 0 => {
                Some(self.segments_read.max(1))
            }
            ParentState::HeldForLead => Some(self.segments_read),
            ParentState::Running if self.tracer => Some(self.segments_read + 1),
            _ => None,
        }
    }

    /// A process stopped.
    pub fn on_stop(&mut self, pid: Pid, ctl: &mut impl Control) -> GranuleState {
        match self.stop(pid, ctl) {
            Ok(()) => self.status(),
            Err(f) => GranuleState::Failed(f),
        }
    }

    /// A process exited or was killed.
    pub fn on_exit(&mut self, pid: Pid, exit: Exit) -> GranuleState {
        match self.exit(pid, exit) {
            Ok(()) => self.status(),
            Err(f) => GranuleState::Failed(f),
        }
    }

    fn status(&self) -> GranuleState {
        let Some(exit) = self.parent_exit else {
            return GranuleState::Running;
        };
        if !self.ending.is_empty() || !self.busy.is_empty() || !self.ready.is_empty() {
            return GranuleState::Running;
        }
        if self.tracer && self.segments_read == 0 {
            return GranuleState::Failed(Failure {
                pid: self.parent,
                role: Role::Parent,
                segment: None,
                kind: Fault::NotProcessed,
            });
        }
        if self.tracer
            && let Some(total) = self.total_lines
            && self.written_lines != total
        {
            return GranuleState::Failed(Failure {
                pid: self.parent,
                role: Role::Parent,
                segment: None,
                kind: Fault::Incomplete {
                    written: self.written_lines,
                    total,
                },
            });
        }
        debug_assert!(is_normal(exit));
        GranuleState::Done
    }

    fn fail(&self, pid: Pid, kind: Fault) -> Failure {
        Failure {
            pid,
            role: if pid == self.parent {
                Role::Parent
            } else {
                Role::Worker
            },
            segment: self.segment_of(pid),
            kind,
        }
    }

    fn io(&self, pid: Pid, e: std::io::Error) -> Failure {
        self.fail(pid, Fault::Io(e.to_string()))
    }

    fn stop(&mut self, pid: Pid, ctl: &mut impl Control) -> Result<(), Failure> {
        if self.ending.contains(&pid) {
            // It was stopped when we ended it, so this is a new stop: it ignored SIGTERM.
            // Continuing it would let a clone go on to read and clone the next segment.
            return ctl.kill(pid).map_err(|e| self.io(pid, e));
        }
        if !self.tracer {
            return ctl.cont(pid).map_err(|e| self.io(pid, e));
        }
        let known = pid == self.parent
            || self.busy.contains_key(&pid)
            || self.ready.iter().any(|(p, _)| *p == pid)
            || matches!(self.parent_state, ParentState::AwaitingClone { clone, .. } if clone == pid);
        if !known {
            self.early_stops.insert(pid);
            return Ok(());
        }
        let at = ctl.wait_number(pid).map_err(|e| self.io(pid, e))?;
        if at == 0 {
            // Stopped by something else than a waitpoint: not ours to hold.
            return ctl.cont(pid).map_err(|e| self.io(pid, e));
        }
        if pid == self.parent {
            self.parent_stop(at, ctl)
        } else {
            self.clone_stop(pid, at, ctl)
        }
    }

    fn parent_stop(&mut self, at: i32, ctl: &mut impl Control) -> Result<(), Failure> {
        let p = self.parent;
        match at {
            L1B => {
                self.segments_read += 1;
                let segment = self.segments_read;
                if self.total_lines.is_none() {
                    let n = ctl.number_of_lines(p).map_err(|e| self.io(p, e))?;
                    self.total_lines = Some(n.into());
                }
                if self.serial {
                    return self.own_segment_read(segment, ctl);
                }
                let clone = ctl.clone_pid(p).map_err(|e| self.io(p, e))?;
                self.parent_state = ParentState::AwaitingClone { segment, clone };
                if let Some(exit) = self.early_exits.remove(&clone) {
                    return Err(Failure {
                        pid: clone,
                        role: Role::Worker,
                        segment: Some(segment),
                        kind: Fault::EndedEarly(exit),
                    });
                }
                if self.early_stops.remove(&clone) {
                    return self.stop(clone, ctl);
                }
                Ok(())
            }
            FINAL => {
                if let Some(own) = self.own_segment {
                    ctl.segment(own.segment, p, SegmentEvent::Processed);
                }
                self.request_write(p, ctl)
            }
            SAVE => {
                let own = self.own_segment.ok_or_else(|| {
                    self.fail(p, Fault::Protocol("wrote a segment it never read".into()))
                })?;
                self.segment_written(p, own, ctl)?;
                ctl.cont(p).map_err(|e| self.io(p, e))
            }
            ALL_FINISH => {
                self.parent_state = ParentState::AtFinish;
                self.maybe_finish(ctl)
            }
            _ => ctl.cont(p).map_err(|e| self.io(p, e)),
        }
    }

    fn clone_stop(&mut self, pid: Pid, at: i32, ctl: &mut impl Control) -> Result<(), Failure> {
        if let ParentState::AwaitingClone { segment, clone } = self.parent_state
            && clone == pid
        {
            if at != L1B {
                return Err(self.fail(
                    pid,
                    Fault::Protocol(format!("a new clone stopped at waitpoint {at}, not 1")),
                ));
            }
            return self.clone_ready(pid, segment, ctl);
        }
        let Some(&w) = self.busy.get(&pid) else {
            return Err(self.fail(
                pid,
                Fault::Protocol(format!(
                    "stopped at waitpoint {at} while it was waiting for a worker slot"
                )),
            ));
        };
        match at {
            FINAL => {
                ctl.segment(w.segment, pid, SegmentEvent::Processed);
                self.request_write(pid, ctl)
            }
            SAVE => {
                self.end(pid, ctl)?;
                self.busy.remove(&pid);
                self.segment_written(pid, w, ctl)?;
                self.dispatch(ctl)
            }
            L1B | ALL_FINISH => Err(self.fail(
                pid,
                Fault::Protocol(format!("a worker stopped at waitpoint {at}")),
            )),
            _ => ctl.cont(pid).map_err(|e| self.io(pid, e)),
        }
    }

    /// Without clones, the parent at waitpoint 1 of `segment` keeps it.
    fn own_segment_read(&mut self, segment: u32, ctl: &mut impl Control) -> Result<(), Failure> {
        let p = self.parent;
        let length = ctl.scan_number_length(p).map_err(|e| self.io(p, e))?;
        let lines = self.clamp_to_granule(length);
        self.read_lines += i64::from(lines);
        self.own_segment = Some(Worker { segment, lines });
        ctl.segment(segment, p, SegmentEvent::Started);
        ctl.cont(p).map_err(|e| self.io(p, e))
    }

    /// Parent and its new clone are both at waitpoint 1 of `segment`.
    fn clone_ready(
        &mut self,
        clone: Pid,
        segment: u32,
        ctl: &mut impl Control,
    ) -> Result<(), Failure> {
        let p = self.parent;
        let length = ctl
            .scan_number_length(clone)
            .map_err(|e| self.io(clone, e))?;
        let lines = self.clamp_to_granule(length);
        self.read_lines += i64::from(lines);
        if segment == 1 {
            // The parent keeps the first segment: it creates the output file.
            self.own_segment = Some(Worker { segment, lines });
            self.parent_state = ParentState::Running;
            self.end(clone, ctl)?;
            return ctl.cont(p).map_err(|e| self.io(p, e));
        }
        ctl.hand_off(p, lines).map_err(|e| self.io(p, e))?;
        ctl.segment(segment, clone, SegmentEvent::Queued);
        self.ready.push_back((clone, Worker { segment, lines }));
        self.parent_state = ParentState::HeldForLead;
        self.dispatch(ctl)
    }

    /// A segment's line count from the length of its `scan_line_number` array. Real
    /// clavrxorb allocates that array once per granule, `scan_lines` long, so the short last
    /// segment still shows a full-length array (padded with -999, or numbered on past the
    /// end by some readers): the lines left in the granule bound it, as clavrxorb's own
    /// level-2 writer bounds what it writes.
    fn clamp_to_granule(&self, length: i32) -> i32 {
        let left = self
            .total_lines
            .map_or(i64::from(length), |total| total - self.read_lines);
        i64::from(length).min(left).max(0) as i32
    }

    /// Starts queued clones while slots are free, and lets the parent read on while it is
    /// not too far ahead.
    fn dispatch(&mut self, ctl: &mut impl Control) -> Result<(), Failure> {
        while self.busy.len() < self.limits.max_workers && !self.ready.is_empty() {
            let held = self.slots_held() + ctl.slots_held_elsewhere();
            if held >= self.limits.max_workers {
                break;
            }
            // One worker always runs somewhere, or no granule could ever finish.
            if held > 0 && !ctl.may_start_worker(self.busy.len()) {
                self.memory_bound = true;
                break;
            }
            let Some((pid, w)) = self.ready.pop_front() else {
                break;
            };
            self.busy.insert(pid, w);
            ctl.segment(w.segment, pid, SegmentEvent::Started);
            ctl.cont(pid).map_err(|e| self.io(pid, e))?;
        }
        if self.parent_state == ParentState::HeldForLead && self.ready.len() < self.limits.max_lead
        {
            self.parent_state = ParentState::Running;
            ctl.cont(self.parent).map_err(|e| self.io(self.parent, e))?;
        }
        self.maybe_finish(ctl)
    }

    fn request_write(&mut self, pid: Pid, ctl: &mut impl Control) -> Result<(), Failure> {
        if self.writer.is_none() {
            self.writer = Some(pid);
            ctl.cont(pid).map_err(|e| self.io(pid, e))
        } else {
            self.write_queue.push_back(pid);
            Ok(())
        }
    }

    fn segment_written(
        &mut self,
        pid: Pid,
        w: Worker,
        ctl: &mut impl Control,
    ) -> Result<(), Failure> {
        if self.writer != Some(pid) {
            return Err(self.fail(
                pid,
                Fault::Protocol("wrote without holding the write turn".into()),
            ));
        }
        if !self.written.insert(w.segment) {
            return Err(self.fail(
                pid,
                Fault::Protocol(format!("segment {} was written twice", w.segment)),
            ));
        }
        self.written_lines += i64::from(w.lines);
        self.segments_written += 1;
        ctl.segment(w.segment, pid, SegmentEvent::Written { lines: w.lines });
        self.writer = self.write_queue.pop_front();
        if let Some(next) = self.writer {
            ctl.cont(next).map_err(|e| self.io(next, e))?;
        }
        Ok(())
    }

    fn maybe_finish(&mut self, ctl: &mut impl Control) -> Result<(), Failure> {
        if self.parent_state == ParentState::AtFinish
            && self.busy.is_empty()
            && self.ready.is_empty()
        {
            self.parent_state = ParentState::Finishing;
            ctl.cont(self.parent).map_err(|e| self.io(self.parent, e))?;
        }
        Ok(())
    }

    fn end(&mut self, pid: Pid, ctl: &mut impl Control) -> Result<(), Failure> {
        self.ending.insert(pid);
        ctl.end(pid).map_err(|e| self.io(pid, e))
    }

    fn exit(&mut self, pid: Pid, exit: Exit) -> Result<(), Failure> {
        if self.ending.remove(&pid) {
            return Ok(());
        }
        if pid == self.parent {
            let finished = if self.tracer {
                self.parent_state == ParentState::Finishing && is_normal(exit)
            } else {
                // Without waitpoints, exit 1 is also clavrxorb's answer to a SIGTERM from
                // anyone: only 0 may count as an end.
                exit == Exit::Code(0)
            };
            if finished {
                self.parent_exit = Some(exit);
                return Ok(());
            }
            if self.tracer && exit == Exit::Code(0) && self.segments_read == 0 {
                // It skipped the granule and ended without even reaching waitpoint 7. (Exit 1
                // is also how it answers a SIGTERM from anyone: that says nothing of the input.)
                return Err(Failure {
                    pid,
                    role: Role::Parent,
                    segment: None,
                    kind: Fault::NotProcessed,
                });
            }
            let kind = if is_normal(exit) {
                Fault::EndedEarly(exit)
            } else {
                Fault::Died(exit)
            };
            let seg = self.parent_segment();
            return Err(Failure {
                pid,
                role: Role::Parent,
                segment: seg,
                kind,
            });
        }
        let known = self.busy.contains_key(&pid)
            || self.ready.iter().any(|(p, _)| *p == pid)
            || matches!(self.parent_state, ParentState::AwaitingClone { clone, .. } if clone == pid);
        if !known {
            self.early_stops.remove(&pid);
            self.early_exits.insert(pid, exit);
            return Ok(());
        }
        let kind = if is_normal(exit) {
            Fault::EndedEarly(exit)
        } else {
            Fault::Died(exit)
        };
        Err(self.fail(pid, kind))
    }
}

#[cfg(test)]
mod tests;
