//! Replays measured granules on a virtual clock, at any number of CPUs.
//!
//! The protocol is not modelled here: each granule is driven by the supervisor's own
//! [`Fanout`] machine, through [`Control`] implemented over virtual processes. A virtual
//! process runs one phase at a time (start-up, a read, a clone's start, processing, a write,
//! the tail) and stops at the waitpoint that ends it, exactly where clavrxorb would; the
//! machine decides, as it does on a real run, who continues, who waits for a worker slot or
//! the write turn, and how far the parent may read ahead. The CPUs are shared fairly: with
//! more runnable processes than CPUs each runs at `cpus / runnable` of a core.
//!
//! Several granules may be in flight at once (`in_flight`), each with its own machine, all
//! sharing the CPUs: what keeping every core busy across granule boundaries would give.
//! pseg-step runs one granule at a time today.

use std::collections::{BTreeMap, VecDeque};
use std::io;

use super::work::GranuleWork;
use crate::domain::fanout::machine::{
    ALL_FINISH, Control, Exit, FINAL, Fanout, GranuleState, L1B, Limits, Pid, SAVE, SegmentEvent,
};

/// How to replay.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub cpus: usize,
    /// `--max-workers`: the CPUs, unless told otherwise.
    pub max_workers: usize,
    pub max_lead: usize,
    /// Granules run at once, sharing the CPUs.
    pub in_flight: usize,
}

impl Setup {
    /// pseg-step's defaults on `cpus` CPUs, one granule at a time.
    pub fn on(cpus: usize) -> Setup {
        Setup {
            cpus: cpus.max(1),
            max_workers: cpus.max(1),
            max_lead: 2,
            in_flight: 1,
        }
    }
}

/// One segment event on the virtual clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub time: f64,
    /// Index of the granule in the replayed list.
    pub granule: usize,
    pub segment: u32,
    pub event: SegmentEvent,
}

/// What a replay gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Each granule's wall time, from its working directory to its published outputs.
    pub walls: Vec<f64>,
    /// From the first granule's start to the last one's end.
    pub makespan: f64,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    Stop(i32),
    Exit(Exit),
    /// pseg-step has prepared the granule: start clavrxorb.
    Spawn,
    /// pseg-step has published the granule.
    Finish,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Running {
        work: f64,
        then: Then,
    },
    Stopped(i32),
    /// Ended (SIGTERM) or killed: its exit is on its way.
    Ending,
    Gone,
}

#[derive(Debug, Clone)]
struct Proc {
    /// Index into the running granules.
    slot: usize,
    clone: bool,
    /// The segment it holds (the parent: the last one it read).
    segment: u32,
    /// The parent was told to skip its current segment.
    skip: bool,
    /// The parent's last clone.
    last_clone: Pid,
    state: State,
}

/// A granule being replayed.
struct Slot {
    granule: usize,
    started: f64,
    fanout: Option<Fanout>,
}

/// The virtual processes and the clock: what [`Control`] acts on.
struct World<'a> {
    granules: &'a [GranuleWork],
    setup: Setup,
    now: f64,
    next_pid: Pid,
    procs: BTreeMap<Pid, Proc>,
    slots: Vec<Slot>,
    /// Stops and exits that happened, for the machine to hear in order.
    pending: VecDeque<(Pid, Option<Exit>)>,
    events: Vec<Event>,
}

impl World<'_> {
    fn work(&self, slot: usize) -> &GranuleWork {
        &self.granules[self.slots[slot].granule]
    }

    fn spawn(&mut self, slot: usize, clone: bool, segment: u32, work: f64, then: Then) -> Pid {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.procs.insert(
            pid,
            Proc {
                slot,
                clone,
                segment,
                skip: false,
                last_clone: 0,
                state: State::Running { work, then },
            },
        );
        pid
    }

    fn proc(&mut self, pid: Pid) -> io::Result<&mut Proc> {
        self.procs
            .get_mut(&pid)
            .ok_or_else(|| io::Error::other(format!("no virtual process {pid}")))
    }

    /// The phase a process runs when continued from waitpoint `at`.
    fn next_phase(&self, p: &Proc, at: i32) -> (u32, f64, Then) {
        let g = self.work(p.slot);
        let seg = |k: u32| g.segments[k as usize - 1];
        let n = g.segments.len() as u32;
        let read_on = |k: u32| {
            if k >= n {
                (k, g.tail, Then::Stop(ALL_FINISH))
            } else {
                (k + 1, seg(k + 1).read, Then::Stop(L1B))
            }
        };
        match at {
            L1B if !p.clone && p.skip => read_on(p.segment),
            L1B => (p.segment, seg(p.segment).process, Then::Stop(FINAL)),
            FINAL => (p.segment, seg(p.segment).write, Then::Stop(SAVE)),
            SAVE if !p.clone => read_on(p.segment),
            ALL_FINISH => (p.segment, g.exit, Then::Exit(Exit::Code(0))),
            // Past 6 a clone would read the next segment: the machine ends it instead.
            _ => (p.segment, 0.0, Then::Stop(at)),
        }
    }

    /// Runs until every granule is done; `queue` holds the granules not started yet.
    fn run(&mut self, mut queue: VecDeque<usize>) -> io::Result<Vec<f64>> {
        let mut walls = vec![f64::NAN; self.granules.len()];
        for _ in 0..self.setup.in_flight.max(1) {
            self.start_next(&mut queue);
        }
        loop {
            while let Some((pid, exit)) = self.pending.pop_front() {
                let slot = self.procs[&pid].slot;
                let Some(mut fanout) = self.slots[slot].fanout.take() else {
                    continue;
                };
                let status = match exit {
                    None => fanout.on_stop(pid, self),
                    Some(e) => fanout.on_exit(pid, e),
                };
                match status {
                    GranuleState::Running => self.slots[slot].fanout = Some(fanout),
                    GranuleState::Done => {
                        let publish = self.work(slot).publish;
                        self.spawn(slot, false, 0, publish, Then::Finish);
                    }
                    GranuleState::Failed(f) => {
                        return Err(io::Error::other(format!(
                            "the replay of {} failed: {f}",
                            self.work(slot).name
                        )));
                    }
                }
            }
            let running: Vec<Pid> = self
                .procs
                .iter()
                .filter(|(_, p)| matches!(p.state, State::Running { .. }))
                .map(|(&pid, _)| pid)
                .collect();
            if running.is_empty() {
                if self.slots.iter().any(|s| s.fanout.is_some()) {
                    return Err(io::Error::other(
                        "the replay stalled: no process can run".to_string(),
                    ));
                }
                return Ok(walls);
            }
            let rate = (self.setup.cpus as f64 / running.len() as f64).min(1.0);
            let step = running
                .iter()
                .map(|pid| match self.procs[pid].state {
                    State::Running { work, .. } => work.max(0.0),
                    _ => f64::INFINITY,
                })
                .fold(f64::INFINITY, f64::min)
                / rate;
            self.now += step;
            for pid in running {
                let p = self.proc(pid)?;
                let State::Running { work, then } = p.state else {
                    continue;
                };
                let left = work - step * rate;
                if left > 1e-12 * (1.0 + work.abs()) {
                    p.state = State::Running { work: left, then };
                    continue;
                }
                self.complete(pid, then, &mut queue, &mut walls);
            }
        }
    }

    fn start_next(&mut self, queue: &mut VecDeque<usize>) {
        let Some(granule) = queue.pop_front() else {
            return;
        };
        let slot = self.slots.len();
        self.slots.push(Slot {
            granule,
            started: self.now,
            fanout: None,
        });
        let prepare = self.granules[granule].prepare;
        self.spawn(slot, false, 0, prepare, Then::Spawn);
    }

    fn complete(&mut self, pid: Pid, then: Then, queue: &mut VecDeque<usize>, walls: &mut [f64]) {
        let slot = self.procs[&pid].slot;
        match then {
            Then::Stop(at) => {
                let p = self.procs.get_mut(&pid).expect("a running process");
                p.state = State::Stopped(at);
                let (clone, segment) = (p.clone, p.segment);
                self.pending.push_back((pid, None));
                if at == L1B && !clone {
                    // The segment is read: its clone is made and goes to waitpoint 1 too.
                    let cost = self.work(slot).segments[segment as usize - 1].clone;
                    let c = self.spawn(slot, true, segment, cost, Then::Stop(L1B));
                    self.procs.get_mut(&pid).expect("the parent").last_clone = c;
                }
            }
            Then::Exit(exit) => {
                self.procs.get_mut(&pid).expect("a process").state = State::Gone;
                self.pending.push_back((pid, Some(exit)));
            }
            Then::Spawn => {
                self.procs.remove(&pid);
                let g = self.work(slot);
                let (startup, segments) = (g.startup, g.segments.len());
                if segments == 0 {
                    walls[self.slots[slot].granule] = self.now - self.slots[slot].started;
                    self.start_next(queue);
                    return;
                }
                let parent = self.spawn(slot, false, 1, startup, Then::Stop(L1B));
                let limits = Limits {
                    max_workers: self.setup.max_workers,
                    max_lead: self.setup.max_lead,
                };
                self.slots[slot].fanout = Some(Fanout::new(parent, limits, true));
            }
            Then::Finish => {
                self.procs.remove(&pid);
                self.procs.retain(|_, p| p.slot != slot);
                walls[self.slots[slot].granule] = self.now - self.slots[slot].started;
                self.start_next(queue);
            }
        }
    }
}

impl Control for World<'_> {
    fn wait_number(&mut self, pid: Pid) -> io::Result<i32> {
        Ok(match self.proc(pid)?.state {
            State::Stopped(at) => at,
            _ => 0,
        })
    }

    fn clone_pid(&mut self, parent: Pid) -> io::Result<Pid> {
        Ok(self.proc(parent)?.last_clone)
    }

    fn number_of_lines(&mut self, pid: Pid) -> io::Result<i32> {
        let slot = self.proc(pid)?.slot;
        i32::try_from(self.work(slot).lines()).map_err(io::Error::other)
    }

    fn scan_number_length(&mut self, pid: Pid) -> io::Result<i32> {
        let p = self.proc(pid)?;
        let (slot, segment) = (p.slot, p.segment);
        Ok(self.work(slot).segments[segment as usize - 1].lines)
    }

    fn hand_off(&mut self, parent: Pid, _lines: i32) -> io::Result<()> {
        self.proc(parent)?.skip = true;
        Ok(())
    }

    fn cont(&mut self, pid: Pid) -> io::Result<()> {
        let p = self.proc(pid)?.clone();
        let State::Stopped(at) = p.state else {
            return Err(io::Error::other(format!(
                "process {pid} continued while not stopped"
            )));
        };
        let (segment, work, then) = self.next_phase(&p, at);
        let p = self.proc(pid)?;
        if segment != p.segment {
            p.skip = false;
        }
        p.segment = segment;
        p.state = State::Running { work, then };
        Ok(())
    }

    fn end(&mut self, pid: Pid) -> io::Result<()> {
        self.proc(pid)?.state = State::Ending;
        self.pending.push_back((pid, Some(Exit::Code(1))));
        Ok(())
    }

    fn kill(&mut self, pid: Pid) -> io::Result<()> {
        self.proc(pid)?.state = State::Ending;
        self.pending.push_back((pid, Some(Exit::Signal(9))));
        Ok(())
    }

    fn may_start_worker(&mut self, _busy: usize) -> bool {
        true
    }

    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        let slot = self.procs.get(&pid).map_or(0, |p| p.slot);
        self.events.push(Event {
            time: self.now,
            granule: self.slots[slot].granule,
            segment,
            event,
        });
    }
}

/// Replays `granules` in order, `setup.in_flight` at a time, on `setup.cpus` CPUs.
pub fn replay(granules: &[GranuleWork], setup: Setup) -> io::Result<Replay> {
    let mut world = World {
        granules,
        setup,
        now: 0.0,
        next_pid: 100,
        procs: BTreeMap::new(),
        slots: Vec::new(),
        pending: VecDeque::new(),
        events: Vec::new(),
    };
    let walls = world.run((0..granules.len()).collect())?;
    Ok(Replay {
        walls,
        makespan: world.now,
        events: world.events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::work::SegmentWork;

    /// A granule of `n` segments: start-up 1 s, each read `read`, processing `process[k]`,
    /// writing `write`; no clone cost, no driver time.
    fn granule(read: f64, process: &[f64], write: f64) -> GranuleWork {
        GranuleWork {
            name: "g".into(),
            startup: 1.0,
            segments: process
                .iter()
                .enumerate()
                .map(|(i, &p)| SegmentWork {
                    lines: 10,
                    read: if i == 0 { 0.0 } else { read },
                    clone: 0.0,
                    process: p,
                    write,
                })
                .collect(),
            ..GranuleWork::default()
        }
    }

    fn wall(g: &GranuleWork, setup: Setup) -> f64 {
        replay(std::slice::from_ref(g), setup).unwrap().walls[0]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn equal_segments_fan_out_over_the_cpus() {
        // 1 s start-up (and first read), then segment 1 processed by the parent (4 s) while
        // nothing else can run: the parent reads on only after writing it. Segments 2..=5 are
        // read in 0 s and processed 4 s each by four workers at once.
        let g = granule(0.0, &[4.0; 5], 0.0);
        assert!(close(g.serial_seconds(), 21.0));
        // Five runnable for a moment? No: the parent is at waitpoint 1 or 7 while the
        // workers run, so 4 CPUs carry all four workers at full speed.
        assert!(
            close(wall(&g, Setup::on(4)), 1.0 + 4.0 + 4.0),
            "{}",
            wall(&g, Setup::on(4))
        );
        // Two CPUs: two workers, then the next two.
        assert!(close(wall(&g, Setup::on(2)), 1.0 + 4.0 + 8.0));
        // One CPU: everything in turn, as serial.
        assert!(close(wall(&g, Setup::on(1)), 21.0));
    }

    #[test]
    fn one_long_segment_sets_the_wall() {
        // Segment 3 takes 20 s; the others 2 s. On 8 CPUs nobody waits for a slot, so the
        // wall is start-up + segment 1 + the long one (its write waits for nobody).
        let g = granule(0.0, &[2.0, 2.0, 20.0, 2.0, 2.0], 0.5);
        let w = wall(&g, Setup::on(8));
        assert!(close(w, 1.0 + 2.0 + 0.5 + 20.0 + 0.5), "{w}");
    }

    #[test]
    fn reading_is_held_to_the_lead_limit() {
        // Reads take 1 s, processing 10 s, one worker, lead 1: the parent reads a segment,
        // hands it off, and may read the next only while fewer than 1 wait for the worker.
        let g = granule(1.0, &[0.0, 10.0, 10.0, 10.0], 0.0);
        let mut setup = Setup::on(2);
        setup.max_workers = 1;
        setup.max_lead = 1;
        let r = replay(std::slice::from_ref(&g), setup).unwrap();
        let at = |seg: u32, e: SegmentEvent| {
            r.events
                .iter()
                .find(|x| x.segment == seg && x.event == e)
                .map(|x| x.time)
                .unwrap()
        };
        // t=1 segment 1 read; processed and written at once; segment 2 read by t=2, its
        // worker starts; segment 3 read by t=3 and waits (lead 1 reached: the parent is
        // held); the worker frees at 12, takes segment 3, and only then may the parent
        // read segment 4 (t=13).
        assert!(close(at(2, SegmentEvent::Queued), 2.0));
        assert!(close(at(2, SegmentEvent::Started), 2.0));
        assert!(close(at(3, SegmentEvent::Queued), 3.0));
        assert!(close(at(3, SegmentEvent::Started), 12.0));
        assert!(close(at(4, SegmentEvent::Queued), 13.0));
        assert!(close(at(4, SegmentEvent::Started), 22.0));
        assert!(close(r.walls[0], 32.0), "{}", r.walls[0]);
        // A lead of 2 lets segment 4 be read at t=4, but the worker is the bottleneck.
        setup.max_lead = 2;
        let r2 = replay(std::slice::from_ref(&g), setup).unwrap();
        assert!(close(r2.walls[0], 32.0));
    }

    #[test]
    fn one_writer_at_a_time() {
        // Four equal segments on 4 CPUs finish processing together; their writes (1 s each)
        // go one after the other.
        let g = granule(0.0, &[0.0, 3.0, 3.0, 3.0], 1.0);
        let w = wall(&g, Setup::on(4));
        // 1 start-up, segment 1 written in 1, then 3 processing, then three writes of 1 s.
        assert!(close(w, 1.0 + 1.0 + 3.0 + 3.0), "{w}");
    }

    #[test]
    fn contention_slows_everyone_fairly() {
        // Reads of 1 s compete with two workers on 2 CPUs.
        let g = granule(1.0, &[0.0, 4.0, 4.0], 0.0);
        // t=1 seg1 read, done at once; t=2 seg 2 read, worker runs alone with the parent
        // reading seg 3 (2 runnable, 2 CPUs) until t=3; then two workers at full speed:
        // segment 2 ends at 6, segment 3 at 7.
        let w = wall(&g, Setup::on(2));
        assert!(close(w, 7.0), "{w}");
        // On one CPU: 1 + 1 + (4 + 1 + 4) in any order = 11.
        assert!(close(wall(&g, Setup::on(1)), 11.0));
    }

    #[test]
    fn granules_in_flight_fill_the_serial_phases() {
        // A granule whose start-up (1 s) and segment 1 (4 s) are serial: on 4 CPUs, one at
        // a time takes 9 s each; two in flight keep the CPUs busy through each other's
        // serial phases.
        let g = granule(0.0, &[4.0; 5], 0.0);
        let four = vec![g.clone(), g.clone(), g.clone(), g];
        let one = replay(&four, Setup::on(4)).unwrap();
        assert!(close(one.makespan, 36.0));
        let mut setup = Setup::on(4);
        setup.in_flight = 2;
        let two = replay(&four, setup).unwrap();
        // 84 s of work on 4 CPUs can take no less than 21 s.
        assert!(two.makespan < one.makespan - 5.0, "{}", two.makespan);
        assert!(two.makespan >= 21.0 - 1e-9);
        assert!(two.walls.iter().all(|w| w.is_finite()));
    }
}
