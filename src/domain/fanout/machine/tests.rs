//! The machine against a simulated clavrxorb: processes that follow the tracer protocol,
//! scheduled in random orders, with the invariants a real run depends on checked at every step.

use super::*;

/// Tiny deterministic generator; the schedule must be reproducible from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// Stopped at a waitpoint (0: stopped outside one).
    Stopped(i32),
    /// Running towards its next stop.
    Running(i32),
    /// Told to end: exits with 1 when next scheduled.
    Ending,
    Gone,
}

#[derive(Debug, Clone)]
struct Proc {
    clone: bool,
    segment: u32,
    lines: i32,
    offset: i32,
    skip: i32,
    at: Where,
    clone_pid: Pid,
    /// Fault: stop outside a waitpoint once before this waitpoint.
    self_stop_before: Option<i32>,
    /// Where a process stopped outside a waitpoint goes on to.
    resume: i32,
    /// Fault: die by SIGSEGV instead of reaching this waitpoint.
    crash_before: Option<i32>,
}

struct Sim {
    procs: HashMap<Pid, Proc>,
    next_pid: Pid,
    total: i32,
    scan_lines: i32,
    /// Owner segment of each output line (0: unwritten).
    output: Vec<u32>,
    writing: Option<Pid>,
    events: Vec<String>,
    max_busy_seen: usize,
    limits: Limits,
    fault_segment: Option<(u32, &'static str)>,
    /// Workers memory allows at once (None: no limit).
    memory_allows: Option<usize>,
    /// `scan_line_number` is `scan_lines` long for every segment, the short last one
    /// included, as real CLAVR-x allocates it; false: exactly the lines read.
    full_length_array: bool,
    /// Lines reported as written, per segment.
    written: HashMap<u32, i32>,
    /// `CLAVRX_TRACER_CLONES` is 1 (else 0: the parent reads no clone into being).
    clones: bool,
}

const PARENT: Pid = 100;

impl Sim {
    fn new(total: i32, scan_lines: i32, limits: Limits) -> Sim {
        Sim::new_at(PARENT, total, scan_lines, limits)
    }

    /// A granule whose clavrxorb has pid `parent` (its clones follow it).
    fn new_at(parent: Pid, total: i32, scan_lines: i32, limits: Limits) -> Sim {
        let mut procs = HashMap::new();
        procs.insert(
            parent,
            Proc {
                clone: false,
                segment: 0,
                lines: 0,
                offset: 0,
                skip: -1,
                at: Where::Running(L1B),
                clone_pid: 0,
                self_stop_before: None,
                resume: 0,
                crash_before: None,
            },
        );
        Sim {
            procs,
            next_pid: parent + 1,
            total,
            scan_lines,
            output: vec![0; total as usize],
            writing: None,
            events: Vec::new(),
            max_busy_seen: 0,
            limits,
            fault_segment: None,
            memory_allows: None,
            full_length_array: true,
            written: HashMap::new(),
            clones: true,
        }
    }

    fn segments(&self) -> u32 {
        ((self.total + self.scan_lines - 1) / self.scan_lines) as u32
    }

    fn lines_of(&self, segment: u32) -> i32 {
        let start = (segment as i32 - 1) * self.scan_lines;
        (self.total - start).min(self.scan_lines)
    }

    /// Clones past waitpoint 1 and not yet at 6 (or ended).
    fn busy(&self) -> usize {
        self.procs
            .values()
            .filter(|p| {
                p.clone
                    && match p.at {
                        Where::Running(n) => n != L1B,
                        Where::Stopped(n) => n != L1B && n != SAVE,
                        _ => false,
                    }
            })
            .count()
    }

    /// Advances one running process to its next stop or exit; returns the event for the machine.
    fn step(&mut self, pid: Pid) -> Option<Result<Pid, (Pid, Exit)>> {
        let mut p = self.procs[&pid].clone();
        let target = match p.at {
            Where::Running(n) => n,
            Where::Ending => {
                p.at = Where::Gone;
                self.procs.insert(pid, p);
                return Some(Err((pid, Exit::Code(1))));
            }
            _ => return None,
        };
        if p.crash_before == Some(target) {
            p.at = Where::Gone;
            self.procs.insert(pid, p);
            return Some(Err((pid, Exit::Signal(11))));
        }
        if p.self_stop_before == Some(target) {
            p.self_stop_before = None;
            p.resume = target;
            p.at = Where::Stopped(0);
            self.procs.insert(pid, p);
            return Some(Ok(pid));
        }
        if target == L1B && !p.clone && !self.clones {
            p.segment += 1;
            p.lines = self.lines_of(p.segment);
        } else if target == L1B && !p.clone {
            // The parent reads the next segment and makes its clone.
            p.segment += 1;
            p.lines = self.lines_of(p.segment);
            let cpid = self.next_pid;
            self.next_pid += 1;
            let mut c = p.clone();
            c.clone = true;
            c.at = Where::Running(L1B);
            if let Some((seg, fault)) = self.fault_segment
                && seg == c.segment
            {
                match fault {
                    "crash" => c.crash_before = Some(FINAL),
                    "self-stop" => c.self_stop_before = Some(2),
                    _ => {}
                }
            }
            self.procs.insert(cpid, c);
            p.clone_pid = cpid;
        }
        if target == SAVE {
            assert_eq!(self.writing, Some(pid), "wrote without the turn");
            for line in p.offset..p.offset + p.lines {
                let l = line as usize;
                assert!(
                    l < self.output.len(),
                    "segment {} written past the end",
                    p.segment
                );
                assert_eq!(self.output[l], 0, "line {line} written twice");
                self.output[l] = p.segment;
            }
            p.offset += p.lines;
            self.writing = None;
        }
        p.at = Where::Stopped(target);
        self.procs.insert(pid, p);
        self.events.push(format!("{pid} stops at {target}"));
        Some(Ok(pid))
    }

    fn next_after(&self, pid: Pid, at: i32) -> Where {
        let p = &self.procs[&pid];
        match at {
            0 => Where::Running(p.resume),
            L1B if p.skip == 1 => Where::Running(if p.segment == self.segments() {
                ALL_FINISH
            } else {
                L1B
            }),
            L1B => Where::Running(5),
            5 => Where::Running(2),
            2 => Where::Running(4),
            4 => Where::Running(FINAL),
            FINAL => Where::Running(SAVE),
            SAVE if p.clone => panic!("clone {pid} continued past waitpoint 6"),
            SAVE if p.segment == self.segments() => Where::Running(ALL_FINISH),
            SAVE => Where::Running(L1B),
            ALL_FINISH => Where::Ending,
            _ => unreachable!(),
        }
    }
}

impl Control for Sim {
    fn wait_number(&mut self, pid: Pid) -> std::io::Result<i32> {
        match self.procs[&pid].at {
            Where::Stopped(n) => Ok(n),
            other => panic!("read memory of {pid} while {other:?}"),
        }
    }
    fn clone_pid(&mut self, parent: Pid) -> std::io::Result<Pid> {
        Ok(self.procs[&parent].clone_pid)
    }
    fn number_of_lines(&mut self, _pid: Pid) -> std::io::Result<i32> {
        Ok(self.total)
    }
    fn scan_number_length(&mut self, pid: Pid) -> std::io::Result<i32> {
        assert!(matches!(self.procs[&pid].at, Where::Stopped(L1B)));
        if self.full_length_array {
            Ok(self.scan_lines)
        } else {
            Ok(self.procs[&pid].lines)
        }
    }
    fn hand_off(&mut self, parent: Pid, lines: i32) -> std::io::Result<()> {
        let p = self.procs.get_mut(&parent).unwrap();
        assert_eq!(p.at, Where::Stopped(L1B));
        p.offset += lines;
        p.skip = 1;
        Ok(())
    }
    fn cont(&mut self, pid: Pid) -> std::io::Result<()> {
        let at = match self.procs[&pid].at {
            Where::Stopped(n) => n,
            Where::Ending | Where::Gone => return Ok(()),
            Where::Running(n) => panic!("continued {pid}, which was running to {n}"),
        };
        if at == FINAL {
            assert!(self.writing.is_none(), "two writers at once");
            self.writing = Some(pid);
        }
        let next = self.next_after(pid, at);
        let p = self.procs.get_mut(&pid).unwrap();
        if at == L1B && p.skip == 1 {
            p.skip = -1;
        }
        p.at = next;
        if !p.clone && at == L1B {
            // Lead: segments read and not yet taken by a worker.
            let queued = self
                .procs
                .values()
                .filter(|q| q.clone && q.at == Where::Stopped(L1B))
                .count();
            assert!(
                queued <= self.limits.max_lead,
                "parent continued with {queued} segments queued"
            );
        }
        let busy = self.busy();
        assert!(busy <= self.limits.max_workers, "{busy} workers at once");
        if let Some(n) = self.memory_allows {
            assert!(busy <= n, "{busy} workers where memory allows {n}");
        }
        self.max_busy_seen = self.max_busy_seen.max(busy);
        Ok(())
    }
    fn end(&mut self, pid: Pid) -> std::io::Result<()> {
        let p = self.procs.get_mut(&pid).unwrap();
        if p.at != Where::Gone {
            p.at = Where::Ending;
        }
        Ok(())
    }
    fn may_start_worker(&mut self, busy: usize) -> bool {
        assert!(
            busy >= 1,
            "asked with no worker running: one must always run"
        );
        self.memory_allows.is_none_or(|n| busy < n)
    }
    fn kill(&mut self, pid: Pid) -> std::io::Result<()> {
        panic!("killed {pid}, which follows the protocol")
    }
    fn segment(&mut self, segment: u32, _pid: Pid, event: SegmentEvent) {
        if let SegmentEvent::Written { lines } = event {
            assert!(
                self.written.insert(segment, lines).is_none(),
                "segment {segment} reported written twice"
            );
        }
    }
}

/// Runs a granule to the end with a random schedule; returns the final status.
fn run(sim: &mut Sim, seed: u64) -> GranuleState {
    let mut machine = Fanout::new(PARENT, sim.limits, true);
    run_with(sim, &mut machine, seed)
}

fn run_with(sim: &mut Sim, machine: &mut Fanout, seed: u64) -> GranuleState {
    let mut rng = Rng(seed | 1);
    for _ in 0..100_000 {
        let runnable: Vec<Pid> = {
            let mut v: Vec<Pid> = sim
                .procs
                .iter()
                .filter(|(_, p)| matches!(p.at, Where::Running(_) | Where::Ending))
                .map(|(pid, _)| *pid)
                .collect();
            v.sort();
            v
        };
        if runnable.is_empty() {
            panic!("deadlock: nothing runs\n{}", sim.events.join("\n"));
        }
        let pid = runnable[rng.below(runnable.len())];
        let status = match sim.step(pid) {
            Some(Ok(pid)) => machine.on_stop(pid, sim),
            Some(Err((pid, exit))) => machine.on_exit(pid, exit),
            None => continue,
        };
        if status != GranuleState::Running {
            return status;
        }
    }
    panic!("granule did not finish");
}

#[test]
fn every_line_is_written_once_in_place_under_many_schedules() {
    let shapes = [
        (1, 1),
        (10, 10),
        (10, 3),
        (7, 1),
        (100, 7),
        (64, 16),
        (237, 100),
        (50, 100),
    ];
    for ((total, scan), full_length_array) in shapes
        .into_iter()
        .flat_map(|shape| [(shape, true), (shape, false)])
    {
        for workers in [1, 2, 3, 8] {
            for lead in [1, 2, 4] {
                for seed in 1..20 {
                    let limits = Limits {
                        max_workers: workers,
                        max_lead: lead,
                    };
                    let mut sim = Sim::new(total, scan, limits);
                    sim.full_length_array = full_length_array;
                    let status = run(&mut sim, seed * 7919 + workers as u64);
                    let case = format!(
                        "{total}/{scan} w{workers} l{lead} s{seed} full-length {full_length_array}"
                    );
                    assert_eq!(status, GranuleState::Done, "{case}");
                    let mut reported: Vec<(u32, i32)> = sim.written.clone().into_iter().collect();
                    reported.sort();
                    let expected: Vec<(u32, i32)> =
                        (1..=sim.segments()).map(|k| (k, sim.lines_of(k))).collect();
                    assert_eq!(reported, expected, "lines reported per segment, {case}");
                    for (line, owner) in sim.output.iter().enumerate() {
                        assert_eq!(
                            *owner as usize,
                            line / scan as usize + 1,
                            "line {line} of {case}"
                        );
                    }
                    assert!(
                        sim.procs.values().all(|p| p.at == Where::Gone),
                        "all reaped"
                    );
                }
            }
        }
    }
}

#[test]
fn workers_run_in_parallel_up_to_the_cap() {
    let limits = Limits {
        max_workers: 3,
        max_lead: 4,
    };
    let mut seen = 0;
    for seed in 1..50 {
        let mut sim = Sim::new(200, 10, limits);
        assert_eq!(run(&mut sim, seed), GranuleState::Done);
        seen = seen.max(sim.max_busy_seen);
    }
    assert_eq!(seen, 3, "the cap is reached but never passed");
}

#[test]
fn memory_caps_workers_below_the_cpu_cap_and_says_so() {
    let limits = Limits {
        max_workers: 8,
        max_lead: 8,
    };
    let mut seen = 0;
    for seed in 1..30 {
        let mut sim = Sim::new(200, 10, limits);
        sim.memory_allows = Some(2);
        let mut machine = Fanout::new(PARENT, limits, true);
        assert_eq!(run_with(&mut sim, &mut machine, seed), GranuleState::Done);
        assert!(sim.max_busy_seen <= 2);
        seen = seen.max(sim.max_busy_seen);
        if sim.max_busy_seen == 2 {
            assert!(
                machine.memory_bound(),
                "the report must say memory bound it"
            );
        }
    }
    assert_eq!(seen, 2);
    let mut sim = Sim::new(200, 10, limits);
    let mut machine = Fanout::new(PARENT, limits, true);
    assert_eq!(run_with(&mut sim, &mut machine, 7), GranuleState::Done);
    assert!(!machine.memory_bound(), "no limit, not memory bound");
}

#[test]
fn a_stop_outside_a_waitpoint_is_continued() {
    let limits = Limits {
        max_workers: 2,
        max_lead: 2,
    };
    let mut sim = Sim::new(30, 10, limits);
    sim.fault_segment = Some((2, "self-stop"));
    assert_eq!(run(&mut sim, 3), GranuleState::Done);
}

#[test]
fn a_crashed_worker_fails_the_granule_naming_its_segment() {
    let limits = Limits {
        max_workers: 2,
        max_lead: 2,
    };
    let mut sim = Sim::new(50, 10, limits);
    sim.fault_segment = Some((3, "crash"));
    let GranuleState::Failed(f) = run(&mut sim, 5) else {
        panic!("crash not noticed")
    };
    assert_eq!(f.segment, Some(3));
    assert_eq!(f.role, Role::Worker);
    assert_eq!(f.kind, Fault::Died(Exit::Signal(11)));
    let msg = f.to_string();
    assert!(
        msg.contains("segment 3") && msg.contains("SIGSEGV"),
        "{msg}"
    );
}

#[test]
fn a_parent_that_exits_early_fails_the_granule() {
    let mut m = Fanout::new(
        PARENT,
        Limits {
            max_workers: 1,
            max_lead: 1,
        },
        true,
    );
    let GranuleState::Failed(f) = m.on_exit(PARENT, Exit::Code(3)) else {
        panic!()
    };
    assert_eq!(f.role, Role::Parent);
    assert!(f.to_string().contains("exited with status 3"), "{f}");
}

#[test]
fn serial_runs_end_when_the_program_exits_normally() {
    let mut m = Fanout::new(
        PARENT,
        Limits {
            max_workers: 1,
            max_lead: 1,
        },
        false,
    );
    assert_eq!(m.on_exit(PARENT, Exit::Code(0)), GranuleState::Done);
    let mut m = Fanout::new(
        PARENT,
        Limits {
            max_workers: 1,
            max_lead: 1,
        },
        false,
    );
    assert!(matches!(
        m.on_exit(PARENT, Exit::Signal(9)),
        GranuleState::Failed(_)
    ));
}

#[test]
fn a_short_last_segment_with_a_full_length_array_counts_only_its_own_lines() {
    let limits = Limits {
        max_workers: 2,
        max_lead: 2,
    };
    let mut sim = Sim::new(237, 100, limits);
    let mut machine = Fanout::new(PARENT, limits, true);
    assert_eq!(run_with(&mut sim, &mut machine, 11), GranuleState::Done);
    assert_eq!(machine.written_lines(), 237);
    assert_eq!(machine.segments_written(), 3);
    assert_eq!(sim.written.get(&3), Some(&37), "not the array's 100");

    // A granule shorter than one segment: the parent's own segment is the short one.
    let mut sim = Sim::new(50, 100, limits);
    let mut machine = Fanout::new(PARENT, limits, true);
    assert_eq!(run_with(&mut sim, &mut machine, 3), GranuleState::Done);
    assert_eq!(
        (machine.written_lines(), machine.segments_written()),
        (50, 1)
    );
}

fn serial_limits() -> Limits {
    Limits {
        max_workers: 1,
        max_lead: 1,
    }
}

#[test]
fn a_serial_tracer_run_is_followed_and_proven_segment_by_segment() {
    for (total, scan) in [(1, 1), (10, 10), (237, 100), (50, 100), (64, 16)] {
        let mut sim = Sim::new(total, scan, serial_limits());
        sim.clones = false;
        let mut machine = Fanout::with_mode(PARENT, serial_limits(), Mode::Serial);
        assert_eq!(
            run_with(&mut sim, &mut machine, 5),
            GranuleState::Done,
            "{total}/{scan}"
        );
        assert_eq!(machine.written_lines(), i64::from(total));
        assert_eq!(machine.segments_written(), sim.segments());
        let expected: HashMap<u32, i32> =
            (1..=sim.segments()).map(|k| (k, sim.lines_of(k))).collect();
        assert_eq!(sim.written, expected, "{total}/{scan}: lines per segment");
        assert!(sim.procs.len() == 1, "no clone was ever made");
    }
}

/// Drives `machine` with the parent stopped at waitpoint `at` (no segment read yet).
fn stop_parent_at(sim: &mut Sim, machine: &mut Fanout, at: i32) -> GranuleState {
    sim.procs.get_mut(&PARENT).unwrap().at = Where::Stopped(at);
    // Stops put in place by hand: the write turn was never used.
    sim.writing = None;
    machine.on_stop(PARENT, sim)
}

#[test]
fn a_granule_clavrxorb_skipped_is_not_processed_never_done() {
    for mode in [Mode::Clones, Mode::Serial] {
        // It reached waitpoint 7 without reading a segment, then exited 0.
        let mut sim = Sim::new(10, 10, serial_limits());
        let mut machine = Fanout::with_mode(PARENT, serial_limits(), mode);
        assert_eq!(
            stop_parent_at(&mut sim, &mut machine, ALL_FINISH),
            GranuleState::Running
        );
        let GranuleState::Failed(f) = machine.on_exit(PARENT, Exit::Code(0)) else {
            panic!("{mode:?}: a granule with no segment read was not failed")
        };
        assert_eq!(f.kind, Fault::NotProcessed, "{mode:?}");
        assert!(f.to_string().contains("no segment read"), "{f}");

        // It exited 0 without even reaching waitpoint 7.
        let mut machine = Fanout::with_mode(PARENT, serial_limits(), mode);
        let GranuleState::Failed(f) = machine.on_exit(PARENT, Exit::Code(0)) else {
            panic!()
        };
        assert_eq!(f.kind, Fault::NotProcessed, "{mode:?}");

        // Exit 1 is its answer to anyone's SIGTERM: ended early, not bad input.
        let mut machine = Fanout::with_mode(PARENT, serial_limits(), mode);
        let GranuleState::Failed(f) = machine.on_exit(PARENT, Exit::Code(1)) else {
            panic!()
        };
        assert_eq!(f.kind, Fault::EndedEarly(Exit::Code(1)), "{mode:?}");
    }
}

#[test]
fn a_serial_run_ended_from_outside_mid_granule_is_not_done() {
    // clavrxorb handles an outside SIGTERM by exiting 1: before waitpoint 7 that is never
    // an end, whatever it had written.
    let mut sim = Sim::new(30, 10, serial_limits());
    sim.clones = false;
    let mut machine = Fanout::with_mode(PARENT, serial_limits(), Mode::Serial);
    let mut stops = 0;
    while machine.segments_written() < 1 {
        let pid = match sim.step(PARENT) {
            Some(Ok(pid)) => pid,
            other => panic!("{other:?}"),
        };
        assert_eq!(machine.on_stop(pid, &mut sim), GranuleState::Running);
        stops += 1;
        assert!(stops < 20);
    }
    let GranuleState::Failed(f) = machine.on_exit(PARENT, Exit::Code(1)) else {
        panic!("an outside SIGTERM passed for success")
    };
    assert_eq!(f.kind, Fault::EndedEarly(Exit::Code(1)));
    assert_eq!(f.segment, Some(2), "it was on its second segment");
}

#[test]
fn without_the_tracer_only_exit_0_ends_a_run() {
    let mut m = Fanout::with_mode(PARENT, serial_limits(), Mode::Untraced);
    let GranuleState::Failed(f) = m.on_exit(PARENT, Exit::Code(1)) else {
        panic!("exit 1 of an untraced run passed for success")
    };
    assert_eq!(f.kind, Fault::EndedEarly(Exit::Code(1)));
}

#[test]
fn a_segment_written_twice_breaks_the_protocol() {
    let mut sim = Sim::new(20, 10, serial_limits());
    sim.clones = false;
    let mut machine = Fanout::with_mode(PARENT, serial_limits(), Mode::Serial);
    // Segment 1 read, processed, written...
    for at in [L1B, FINAL, SAVE] {
        assert_eq!(
            stop_parent_at(&mut sim, &mut machine, at),
            GranuleState::Running
        );
    }
    // ...then reported written again without being read again.
    assert_eq!(
        stop_parent_at(&mut sim, &mut machine, FINAL),
        GranuleState::Running
    );
    let GranuleState::Failed(f) = stop_parent_at(&mut sim, &mut machine, SAVE) else {
        panic!("a second write of segment 1 passed")
    };
    assert!(f.to_string().contains("segment 1 was written twice"), "{f}");
}

/// One granule of several in flight, as the supervisor presents it to its machine: the
/// slots other granules hold come from outside.
struct InPool<'a> {
    sim: &'a mut Sim,
    elsewhere: usize,
}

impl Control for InPool<'_> {
    fn wait_number(&mut self, pid: Pid) -> std::io::Result<i32> {
        self.sim.wait_number(pid)
    }
    fn clone_pid(&mut self, parent: Pid) -> std::io::Result<Pid> {
        self.sim.clone_pid(parent)
    }
    fn number_of_lines(&mut self, pid: Pid) -> std::io::Result<i32> {
        self.sim.number_of_lines(pid)
    }
    fn scan_number_length(&mut self, pid: Pid) -> std::io::Result<i32> {
        self.sim.scan_number_length(pid)
    }
    fn hand_off(&mut self, parent: Pid, lines: i32) -> std::io::Result<()> {
        self.sim.hand_off(parent, lines)
    }
    fn cont(&mut self, pid: Pid) -> std::io::Result<()> {
        self.sim.cont(pid)
    }
    fn end(&mut self, pid: Pid) -> std::io::Result<()> {
        self.sim.end(pid)
    }
    fn kill(&mut self, pid: Pid) -> std::io::Result<()> {
        self.sim.kill(pid)
    }
    fn may_start_worker(&mut self, _busy: usize) -> bool {
        true
    }
    fn slots_held_elsewhere(&mut self) -> usize {
        self.elsewhere
    }
    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        self.sim.segment(segment, pid, event)
    }
}

/// Slots granule `g` must leave to the others: what they hold, and what older granules'
/// ready clones claim first (the supervisor's rule).
fn elsewhere(machines: &[Option<Fanout>], g: usize) -> usize {
    machines
        .iter()
        .enumerate()
        .filter(|&(h, _)| h != g)
        .filter_map(|(h, m)| m.as_ref().map(|m| (h, m)))
        .map(|(h, m)| m.slots_held() + if h < g { m.waiting_workers() } else { 0 })
        .sum()
}

/// Processes doing work in a simulated granule: clones processing or writing, and
/// clavrxorb itself until its first segment is written.
fn working(sim: &Sim, parent: Pid) -> usize {
    let parent_working = matches!(sim.procs[&parent].at, Where::Running(_)) && sim.output[0] == 0;
    sim.busy() + usize::from(parent_working)
}

/// Runs `sims` (granule g's clavrxorb has pid `1000 * (g + 1)`) with at most `max_granules`
/// in flight, started and poked as the supervisor does, under a random schedule.
fn run_pool(sims: &mut [Sim], limits: Limits, max_granules: usize, seed: u64) -> Vec<GranuleState> {
    let parent = |g: usize| 1000 * (g as Pid + 1);
    let mut rng = Rng(seed | 1);
    let mut machines: Vec<Option<Fanout>> = (0..sims.len()).map(|_| None).collect();
    let mut statuses: Vec<Option<GranuleState>> = vec![None; sims.len()];
    let mut started = 0;
    let mut most_in_flight = 0;
    for _ in 0..1_000_000 {
        let in_flight = machines.iter().flatten().count();
        let held: usize = machines.iter().flatten().map(Fanout::slots_wanted).sum();
        if started < sims.len()
            && in_flight < max_granules
            && (in_flight == 0 || held < limits.max_workers)
        {
            machines[started] = Some(Fanout::new(parent(started), limits, true));
            started += 1;
            most_in_flight = most_in_flight.max(in_flight + 1);
            continue;
        }
        if in_flight == 0 {
            assert!(statuses.iter().all(Option::is_some));
            assert!(max_granules == 1 || sims.len() < 2 || most_in_flight > 1);
            return statuses.into_iter().flatten().collect();
        }
        let runnable: Vec<(usize, Pid)> = {
            let mut v: Vec<(usize, Pid)> = (0..sims.len())
                .filter(|&g| machines[g].is_some())
                .flat_map(|g| {
                    sims[g]
                        .procs
                        .iter()
                        .filter(|(_, p)| matches!(p.at, Where::Running(_) | Where::Ending))
                        .map(move |(pid, _)| (g, *pid))
                })
                .collect();
            v.sort();
            v
        };
        assert!(!runnable.is_empty(), "deadlock: nothing runs");
        let (g, pid) = runnable[rng.below(runnable.len())];
        let others = elsewhere(&machines, g);
        let mut ctl = InPool {
            sim: &mut sims[g],
            elsewhere: others,
        };
        let machine = machines[g].as_mut().unwrap();
        let mut status = match ctl.sim.step(pid) {
            Some(Ok(pid)) => machine.on_stop(pid, &mut ctl),
            Some(Err((pid, exit))) => machine.on_exit(pid, exit),
            None => continue,
        };
        // A freed slot goes to the oldest granule's ready clones first.
        for h in 0..sims.len() {
            if status != GranuleState::Running {
                statuses[g] = Some(status.clone());
                machines[g] = None;
                status = GranuleState::Running;
            }
            if machines[h].is_none() {
                continue;
            }
            let others = elsewhere(&machines, h);
            let mut ctl = InPool {
                sim: &mut sims[h],
                elsewhere: others,
            };
            let s = machines[h].as_mut().unwrap().poke(&mut ctl);
            if s != GranuleState::Running {
                statuses[h] = Some(s);
                machines[h] = None;
            }
        }
        if status != GranuleState::Running {
            statuses[g] = Some(status);
            machines[g] = None;
        }
        let doing: usize = (0..sims.len())
            .filter(|&h| machines[h].is_some())
            .map(|h| working(&sims[h], parent(h)))
            .sum();
        assert!(
            doing <= limits.max_workers,
            "{doing} processes working at once across granules, cap {}",
            limits.max_workers
        );
    }
    panic!("granules did not finish");
}

#[test]
fn granules_in_flight_share_one_pool_of_slots_and_each_is_written_once() {
    for granules in [1, 2, 3] {
        for max_granules in [1, 2, 3] {
            for workers in [1, 2, 3] {
                for seed in 1..15 {
                    let limits = Limits {
                        max_workers: workers,
                        max_lead: 2,
                    };
                    let shapes = [(10, 3), (7, 1), (23, 5)];
                    let mut sims: Vec<Sim> = (0..granules)
                        .map(|g| {
                            let (total, scan) = shapes[g % shapes.len()];
                            Sim::new_at(1000 * (g as Pid + 1), total, scan, limits)
                        })
                        .collect();
                    let statuses = run_pool(&mut sims, limits, max_granules, seed * 31 + 7);
                    let case = format!(
                        "{granules} granules, {max_granules} in flight, w{workers} s{seed}"
                    );
                    assert!(
                        statuses.iter().all(|s| *s == GranuleState::Done),
                        "{case}: {statuses:?}"
                    );
                    for (g, sim) in sims.iter().enumerate() {
                        let (_, scan) = shapes[g % shapes.len()];
                        for (line, owner) in sim.output.iter().enumerate() {
                            assert_eq!(*owner as usize, line / scan as usize + 1, "{case}");
                        }
                        assert!(
                            sim.procs.values().all(|p| p.at == Where::Gone),
                            "{case}: left behind"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_crash_in_one_granule_in_flight_leaves_the_other_to_finish() {
    let limits = Limits {
        max_workers: 2,
        max_lead: 2,
    };
    for seed in 1..30 {
        let mut sims = vec![
            Sim::new_at(1000, 30, 3, limits),
            Sim::new_at(2000, 30, 3, limits),
        ];
        sims[0].fault_segment = Some((4, "crash"));
        let statuses = run_pool(&mut sims, limits, 2, seed);
        assert!(
            matches!(&statuses[0], GranuleState::Failed(f) if f.segment == Some(4)),
            "{statuses:?}"
        );
        assert_eq!(statuses[1], GranuleState::Done);
        assert!(sims[1].output.iter().all(|&o| o != 0));
    }
}
