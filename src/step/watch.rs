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
    /// Whether the line saying memory held a worker back was printed.
    said_held: bool,
}

impl<'a> Watch<'a> {
    pub fn new(progress: Progress, memory: &'a MemorySetup, parent: Pid, start: Instant) -> Self {
        Watch {
            progress,
            timeline: Timeline::new(start),
            memory: MemWatch::new(memory, parent),
            said_held: false,
        }
    }
}

impl Monitor for Watch<'_> {
    fn segment(&mut self, segment: u32, pid: Pid, event: SegmentEvent) {
        self.timeline.segment(segment, pid, event);
        self.memory.segment(pid, event);
    }

    fn stopped(&mut self, pid: Pid, at: i32) {
        self.memory.stopped(pid, at);
    }

    fn gone(&mut self, pid: Pid) {
        self.memory.gone(pid);
    }

    fn may_start_worker(&mut self, busy: usize) -> bool {
        let fits = self.memory.may_start_worker();
        if !fits && !self.said_held {
            self.said_held = true;
            let why = match self.memory.held_by {
                Some(Some(e)) => format!(
                    "one more would not fit: {} a worker ({} estimate)",
                    crate::size::Size(e.bytes),
                    e.source.as_str()
                ),
                _ => "no estimate of a worker's memory yet".into(),
            };
            self.progress
                .say(&format!("memory holds workers at {busy}: {why}"));
        }
        fits
    }

    fn tick(&mut self, fanout: &Fanout) {
        self.memory.tick();
        self.progress.tick(fanout);
    }
}
