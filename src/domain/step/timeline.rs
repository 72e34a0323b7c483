//! When each segment went through each phase, and how many workers were busy over time:
//! the timing half of a granule report. Besides the fan-out's segment events it follows
//! every waitpoint stop and continue, so the report holds each phase's start and end (read,
//! clone, process, write) that `pseg-slurm plan` replays.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::domain::fanout::machine::{ALL_FINISH, FINAL, L1B, Pid, SAVE, SegmentEvent};
use crate::domain::reports::{RunTimes, SegmentTimes, Workers};

pub struct Timeline {
    start: Instant,
    parent: Pid,
    segments: BTreeMap<u32, SegmentTimes>,
    busy: usize,
    busy_over_time: Vec<(f64, usize)>,
    max_busy: usize,
    /// The waitpoint each process last stopped at.
    last_stop: HashMap<Pid, i32>,
    /// The segment each clone was made for.
    clone_segment: HashMap<Pid, u32>,
    /// Each process's run-queue delay when its current phase began.
    delay_mark: HashMap<Pid, f64>,
    /// Segments the parent has read.
    reads: u32,
    /// When the parent was last continued to read on, until it stops with the next segment.
    reading_since: Option<f64>,
    run: RunTimes,
}

impl Timeline {
    /// The timeline of a clavrxorb process `parent` that was just started.
    pub fn new(start: Instant, parent: Pid) -> Timeline {
        let spawned = start.elapsed().as_secs_f64();
        Timeline {
            start,
            parent,
            segments: BTreeMap::new(),
            busy: 0,
            busy_over_time: vec![(0.0, 0)],
            max_busy: 0,
            last_stop: HashMap::new(),
            clone_segment: HashMap::new(),
            delay_mark: HashMap::new(),
            reads: 0,
            reading_since: Some(spawned),
            run: RunTimes {
                spawned,
                ..RunTimes::default()
            },
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn entry(&mut self, segment: u32, pid: Pid) -> &mut SegmentTimes {
        self.segments
            .entry(segment)
            .or_insert_with(|| SegmentTimes {
                segment,
                pid,
                ..SegmentTimes::default()
            })
    }

    /// A process stopped at waitpoint `at`, having waited `delay` seconds for a CPU since
    /// it started (`None` when the kernel does not say).
    pub fn stopped(&mut self, pid: Pid, at: i32, delay: Option<f64>) {
        let t = self.now();
        self.last_stop.insert(pid, at);
        // Waitpoints 5, 2 and 4 fall inside processing: a phase ends only at 1, 3, 6 or 7.
        let waited = match (at, delay) {
            (L1B | FINAL | SAVE | ALL_FINISH, Some(d)) => {
                let before = self.delay_mark.insert(pid, d).unwrap_or(0.0);
                Some((d - before).max(0.0))
            }
            _ => None,
        };
        if pid == self.parent {
            match at {
                L1B => {
                    self.reads += 1;
                    let from = self.reading_since.take();
                    if self.reads == 1 {
                        self.run.startup_wait = waited;
                    }
                    let first = self.reads == 1;
                    let s = self.entry(self.reads, pid);
                    s.read_from = from;
                    s.read = Some(t);
                    if !first {
                        s.read_wait = waited;
                    }
                }
                // Only the segment the parent keeps, the first, is processed by it.
                FINAL => {
                    let s = self.entry(1, pid);
                    s.own_processed = Some(t);
                    s.process_wait = waited;
                }
                SAVE => self.entry(1, pid).write_wait = waited,
                ALL_FINISH => {
                    self.run.finish_from = self.reading_since.take();
                    self.run.finish_reached = Some(t);
                    self.run.tail_wait = waited;
                }
                _ => {}
            }
            return;
        }
        match (at, self.clone_segment.get(&pid).copied()) {
            (L1B, None) => {
                let segment = self.reads;
                self.clone_segment.insert(pid, segment);
                let s = self.entry(segment, pid);
                s.cloned = Some(t);
                s.clone_wait = waited;
            }
            (FINAL, Some(segment)) => self.entry(segment, pid).process_wait = waited,
            (SAVE, Some(segment)) => self.entry(segment, pid).write_wait = waited,
            _ => {}
        }
    }

    /// A stopped process was continued.
    pub fn resumed(&mut self, pid: Pid) {
        let t = self.now();
        let Some(at) = self.last_stop.get(&pid).copied() else {
            return;
        };
        if pid == self.parent {
            match at {
                L1B if self.reads == 1 => self.entry(1, pid).own_started = Some(t),
                L1B | SAVE => self.reading_since = Some(t),
                FINAL => self.entry(1, pid).write_from = Some(t),
                ALL_FINISH => self.run.finish_released = Some(t),
                _ => {}
            }
        } else if at == FINAL
            && let Some(&segment) = self.clone_segment.get(&pid)
        {
            self.entry(segment, pid).write_from = Some(t);
        }
    }

    /// A process exited and was reaped.
    pub fn gone(&mut self, pid: Pid) {
        if pid == self.parent {
            self.run.exited = Some(self.now());
        }
        self.last_stop.remove(&pid);
        self.delay_mark.remove(&pid);
    }

    /// The report's run section; `cpus` is what this step could use.
    pub fn run_times(&self, cpus: usize) -> RunTimes {
        RunTimes {
            cpus,
            ..self.run.clone()
        }
    }

    pub fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        let t = self.now();
        let s = self.entry(segment, pid);
        s.pid = pid;
        match event {
            SegmentEvent::Queued => s.queued = Some(t),
            SegmentEvent::Started => {
                s.started = Some(t);
                self.set_busy(t, self.busy + 1);
            }
            SegmentEvent::Processed => s.processed = Some(t),
            SegmentEvent::Written { lines } => {
                s.written = Some(t);
                s.lines = lines;
                // The first segment is the reading process's own, never a worker's.
                if s.started.is_some() {
                    self.set_busy(t, self.busy.saturating_sub(1));
                }
            }
        }
    }

    fn set_busy(&mut self, t: f64, busy: usize) {
        self.busy = busy;
        self.max_busy = self.max_busy.max(busy);
        self.busy_over_time.push((t, busy));
    }

    /// The report's worker section; `cap` and `memory_bound` come from the run.
    pub fn workers(&self, cap: usize, memory_bound: bool) -> Workers {
        let waits: Vec<f64> = self
            .segments
            .values()
            .filter_map(|s| Some(s.started? - s.queued?))
            .collect();
        let mean = if waits.is_empty() {
            0.0
        } else {
            waits.iter().sum::<f64>() / waits.len() as f64
        };
        Workers {
            cap,
            bound_by: if memory_bound { "memory" } else { "cpus" }.into(),
            max_busy: self.max_busy,
            busy_over_time: self.busy_over_time.clone(),
            ready_wait_mean_seconds: mean,
            ready_wait_max_seconds: waits.iter().copied().fold(0.0, f64::max),
        }
    }

    pub fn segment_times(&self) -> Vec<SegmentTimes> {
        self.segments.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_their_cpu_waits_follow_the_stops() {
        // Parent 10 reads segment 1 (0.5 s waited), its clone 11 is ended; the parent
        // processes segment 1; reads segment 2, whose clone 12 processes it.
        let mut t = Timeline::new(Instant::now(), 10);
        t.stopped(10, L1B, Some(0.5));
        t.stopped(11, L1B, Some(0.0));
        t.resumed(10);
        t.stopped(10, 5, Some(0.6));
        t.resumed(10);
        t.stopped(10, FINAL, Some(0.75));
        t.resumed(10);
        t.stopped(10, SAVE, Some(0.75));
        t.resumed(10);
        t.stopped(10, L1B, Some(1.0));
        t.stopped(12, L1B, Some(0.25));
        t.segment(2, 12, SegmentEvent::Queued);
        t.segment(2, 12, SegmentEvent::Started);
        t.resumed(12);
        t.resumed(10);
        t.stopped(12, 5, Some(0.5));
        t.resumed(12);
        t.stopped(12, FINAL, Some(2.25));
        t.resumed(12);
        t.stopped(10, ALL_FINISH, Some(1.5));
        t.stopped(12, SAVE, Some(2.25));
        t.gone(10);
        let s = t.segment_times();
        let r = t.run_times(2);
        assert_eq!(r.startup_wait, Some(0.5));
        assert_eq!(s[0].clone_wait, Some(0.0));
        // 5 is inside processing: the wait runs from 1 to 3.
        assert_eq!(s[0].process_wait, Some(0.25));
        assert_eq!(s[0].write_wait, Some(0.0));
        assert!(s[0].own_started.is_some() && s[0].write_from.is_some());
        assert_eq!(s[1].read_wait, Some(0.25));
        assert!(s[1].read_from.is_some() && s[1].read.is_some());
        assert_eq!(s[1].clone_wait, Some(0.25));
        assert_eq!(s[1].process_wait, Some(2.0));
        assert_eq!(s[1].write_wait, Some(0.0));
        assert!(s[1].write_from.is_some());
        assert_eq!(r.tail_wait, Some(0.5));
        assert!(r.finish_from.is_some() && r.finish_reached.is_some() && r.exited.is_some());
        assert_eq!(r.cpus, 2);
    }

    #[test]
    fn busy_workers_and_ready_waits_follow_the_events() {
        let mut t = Timeline::new(Instant::now(), 10);
        t.segment(1, 10, SegmentEvent::Written { lines: 5 });
        t.segment(2, 11, SegmentEvent::Queued);
        t.segment(3, 12, SegmentEvent::Queued);
        t.segment(2, 11, SegmentEvent::Started);
        t.segment(3, 12, SegmentEvent::Started);
        t.segment(2, 11, SegmentEvent::Processed);
        t.segment(2, 11, SegmentEvent::Written { lines: 5 });
        t.segment(3, 12, SegmentEvent::Written { lines: 2 });
        let w = t.workers(4, false);
        assert_eq!(w.max_busy, 2);
        assert_eq!(w.bound_by, "cpus");
        let levels: Vec<usize> = w.busy_over_time.iter().map(|(_, n)| *n).collect();
        assert_eq!(levels, vec![0, 1, 2, 1, 0]);
        let times = t.segment_times();
        assert_eq!(times.len(), 3);
        assert_eq!(times[2].lines, 2);
        assert!(times[0].queued.is_none() && times[1].queued.is_some());
        assert!(w.ready_wait_max_seconds >= 0.0);
    }
}
