//! Everything that watches one granule run, behind the fan-out's [`Monitor`]: progress on
//! stderr, the segment timeline, and memory (sampling and admission).

use std::time::{Duration, Instant, SystemTime};

use super::Notices;
use super::drain::{self, Decision};
use super::memory_sampler::{MemWatch, MemorySetup};
use super::progress::Progress;
use super::timeline::Timeline;
use crate::domain::fanout::Monitor;
use crate::domain::fanout::machine::{Fanout, Pid, SegmentEvent};

pub struct Watch<'a> {
    pub progress: Progress,
    pub timeline: Timeline,
    pub memory: MemWatch<'a>,
    pub drain: Drain,
    /// Whether the line saying memory held a worker back was printed.
    said_held: bool,
    notices: &'a dyn Notices,
}

/// What the step knows for judging a granule on the time-limit warning.
#[derive(Debug, Clone, Copy)]
pub struct DrainPolicy {
    /// A kept granule must be projected to finish this long before the job ends.
    pub margin: Duration,
    /// When the job ends, as read when the step started.
    pub job_end: Option<SystemTime>,
    /// Wall seconds of a whole granule, from granules done earlier in this step.
    pub prior_wall: Option<f64>,
}

/// One granule's standing on the warning: the decision, and the words for its report.
#[derive(Debug)]
pub struct Drain {
    policy: DrainPolicy,
    started: Instant,
    /// Slurm was asked again for the end time (once, on the warning).
    refreshed: bool,
    pub decision: Option<Decision>,
}

impl Drain {
    pub fn new(policy: DrainPolicy, started: Instant) -> Drain {
        Drain {
            policy,
            started,
            refreshed: false,
            decision: None,
        }
    }

    /// Judges the granule now; a change of verdict is said on the progress line.
    fn judge(&mut self, fanout: &Fanout, progress: &Progress) -> bool {
        if !self.refreshed {
            self.refreshed = true;
            // Asked again on the warning: a job's limit can be changed while it runs.
            if let Some(end) = drain::job_end(|k| std::env::var(k).ok()) {
                self.policy.job_end = Some(end);
            }
        }
        let done = drain::Done {
            elapsed: self.started.elapsed(),
            lines_written: fanout.written_lines(),
            lines: fanout.total_lines(),
        };
        let needs = drain::remaining(done, self.policy.prior_wall);
        let decision = drain::decide(
            needs,
            self.policy.job_end.map(drain::until),
            self.policy.margin,
        );
        let keep = matches!(decision, Decision::Keep(_));
        let was_kept = matches!(self.decision, Some(Decision::Keep(_)));
        if self.decision.is_none() || keep != was_kept {
            match &decision {
                Decision::Keep(why) => progress.say(&format!("time-limit warning: kept, {why}")),
                Decision::End(why) => progress.say(&format!("time-limit warning: ended, {why}")),
            }
            self.decision = Some(decision);
        }
        keep
    }
}

impl<'a> Watch<'a> {
    pub fn new(
        progress: Progress,
        memory: &'a MemorySetup,
        notices: &'a dyn Notices,
        parent: Pid,
        start: Instant,
    ) -> Self {
        Watch {
            progress,
            timeline: Timeline::new(start, parent),
            memory: MemWatch::new(memory, parent),
            drain: Drain::new(
                DrainPolicy {
                    margin: Duration::ZERO,
                    job_end: None,
                    prior_wall: None,
                },
                start,
            ),
            said_held: false,
            notices,
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

    fn may_start_worker(&mut self, busy: usize) -> bool {
        let fits = self.memory.may_start_worker();
        if !fits && !self.said_held {
            self.said_held = true;
            let why = match self.memory.held_by {
                Some(Some(e)) => format!(
                    "one more would not fit: {} a worker ({} estimate)",
                    crate::base::units::Size(e.bytes),
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

    fn keep_on_warning(&mut self, fanout: &Fanout) -> bool {
        self.drain.judge(fanout, &self.progress)
    }

    fn warning(&mut self, line: &str) {
        self.notices.warning(line);
    }
}
