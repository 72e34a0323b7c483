//! When each segment went through each phase, and how many workers were busy over time:
//! the timing half of a granule report.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::fanout::machine::{Pid, SegmentEvent};
use crate::report::{SegmentTimes, Workers};

pub struct Timeline {
    start: Instant,
    segments: BTreeMap<u32, SegmentTimes>,
    busy: usize,
    busy_over_time: Vec<(f64, usize)>,
    max_busy: usize,
}

impl Timeline {
    pub fn new(start: Instant) -> Timeline {
        Timeline {
            start,
            segments: BTreeMap::new(),
            busy: 0,
            busy_over_time: vec![(0.0, 0)],
            max_busy: 0,
        }
    }

    pub fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        let t = self.start.elapsed().as_secs_f64();
        let s = self
            .segments
            .entry(segment)
            .or_insert_with(|| SegmentTimes {
                segment,
                pid,
                ..SegmentTimes::default()
            });
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
    fn busy_workers_and_ready_waits_follow_the_events() {
        let mut t = Timeline::new(Instant::now());
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
