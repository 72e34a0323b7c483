//! Progress of the granule being run, on stderr: plain lines, at most one a second, so the
//! output reads the same on a terminal and in a Slurm output file.

use std::time::{Duration, Instant};

use crate::fanout::machine::Fanout;

#[derive(Clone)]
pub struct Progress {
    label: String,
    scan_lines: u32,
    every: Duration,
    last_print: Option<Instant>,
    last_shown: (u32, i64),
}

impl Progress {
    /// Progress of granule `index` (0-based) of `count`.
    pub fn new(index: usize, count: usize, name: &str, scan_lines: u32) -> Progress {
        Progress {
            label: format!("[{}/{count}] {name}", index + 1),
            scan_lines,
            every: Duration::from_secs(1),
            last_print: None,
            last_shown: (0, -1),
        }
    }

    pub fn say(&self, what: &str) {
        eprintln!("{}: {what}", self.label);
    }
}

impl Progress {
    /// Prints where the granule stands, at most once a second and only when it moved.
    pub fn tick(&mut self, f: &Fanout) {
        let now = (f.segments_written(), f.written_lines());
        let due = self.last_print.is_none_or(|t| t.elapsed() >= self.every);
        if now == self.last_shown || !due {
            return;
        }
        let Some(total) = f.total_lines() else {
            return;
        };
        let per = i64::from(self.scan_lines);
        let segments = ((total + per - 1) / per).max(1);
        self.say(&format!(
            "{}/{segments} segments, {}/{total} lines, {} workers busy",
            now.0,
            now.1,
            f.busy_workers()
        ));
        self.last_shown = now;
        self.last_print = Some(Instant::now());
    }
}
