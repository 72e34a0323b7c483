//! Everything that watches one granule run, behind the fan-out's [`Monitor`]: progress on
//! stderr, the segment timeline, and memory (sampling and admission).

use std::time::Instant;

use super::memwatch::{MemWatch, MemorySetup};
use super::progress::Progress;
use super::timeline::Timeline;
use crate::fanout::Monitor;
use crate::fanout::machine::{Fanout, Pid, SegmentEvent};

pub struct Watch<'a> {
    pub progress: Progress,
    pub timeline: Timeline,
    pub memory: MemWatch<'a>,
}

impl<'a> Watch<'a> {
    pub fn new(progress: Progress, memory: &'a MemorySetup, parent: Pid, start: Instant) -> Self {
        Watch {
            progress,
            timeline: Timeline::new(start, parent),
            memory: MemWatch::new(memory, parent),
        }
    }
}

impl Monitor for Watch<'_> {
    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        self.timeline.segment(segment, pid, event);
        self.memory.segment(pid, event);
    }

    fn stopped(&mut self, pid: Pid, at: i32) {
        let waited = super::schedstat::run_delay(std::path::Path::new("/proc"), pid).ok();
        self.timeline.stopped(pid, at, waited);
        self.memory.stopped(pid, at);
    }

    fn resumed(&mut self, pid: Pid) {
        self.timeline.resumed(pid);
    }

    fn gone(&mut self, pid: Pid) {
        self.timeline.gone(pid);
        self.memory.gone(pid);
    }

    fn may_start_worker(&mut self, _busy: usize) -> bool {
        self.memory.may_start_worker()
    }

    fn tick(&mut self, fanout: &Fanout) {
        self.memory.tick();
        self.progress.tick(fanout);
    }
}
