//! A measured granule as work to replay: each phase in seconds of one core, taken from a
//! granule report's timestamps and corrected for the contention of the run that measured it.
//!
//! A phase's wall time overstates its work when its process waited for a CPU: held by the
//! granule's other processes, or by anyone's on a busy node. Reports record that wait per
//! phase (the kernel's run-queue delay) and it is taken out. A report without it (an older
//! one, or a kernel without schedstats) is corrected by its own granule only: each phase
//! counts `min(1, cpus / runnable)` of every second it lasted, with `runnable` the phases
//! of the granule under way at that moment.

use crate::domain::reports::{GranuleReport, SegmentTimes, Verdict};

/// One segment's work, in seconds of one core.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SegmentWork {
    pub lines: i32,
    /// The parent reading it (0 for the first segment: that read is in `startup`).
    pub read: f64,
    /// Its clone, from being made to stopping at waitpoint 1: what a clone costs beyond the
    /// serial run (the kernel's copy of the process, reopening its files).
    pub clone: f64,
    /// Processing it, waitpoint 1 to 3.
    pub process: f64,
    /// Writing it, waitpoint 3 to 6, holding the one write turn.
    pub write: f64,
}

/// One granule's work, in seconds of one core.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GranuleWork {
    pub name: String,
    /// pseg-step before clavrxorb starts (the working directory).
    pub prepare: f64,
    /// clavrxorb's start-up and the read of its first segment, up to waitpoint 1.
    pub startup: f64,
    pub segments: Vec<SegmentWork>,
    /// After the last segment is handed off: reading on to waitpoint 7.
    pub tail: f64,
    /// From waitpoint 7 to its exit.
    pub exit: f64,
    /// pseg-step after clavrxorb ended (publishing the outputs).
    pub publish: f64,
    /// What the report measured, for comparison.
    pub measured_wall: f64,
    pub measured_cpus: usize,
    /// The most workers that ran at once, and the largest private memory one reached: what
    /// more workers would add to the measured peak.
    pub measured_workers: usize,
    pub worker_private_bytes: u64,
}

impl GranuleWork {
    /// A plain `--serial` run of the same granule: every phase one after the other, no clones.
    pub fn serial_seconds(&self) -> f64 {
        self.prepare
            + self.startup
            + self
                .segments
                .iter()
                .map(|s| s.read + s.process + s.write)
                .sum::<f64>()
            + self.tail
            + self.exit
            + self.publish
    }

    /// Memory `cpus` workers would add to the measured peak: each worker beyond those
    /// measured (at most one per segment but the first) at the largest private memory one
    /// reached. An estimate: shared pages are counted once already.
    pub fn extra_peak_bytes(&self, cpus: usize) -> u64 {
        let workers = cpus.min(self.segments.len().saturating_sub(1));
        workers.saturating_sub(self.measured_workers) as u64 * self.worker_private_bytes
    }

    /// Scan lines of the whole granule.
    pub fn lines(&self) -> i64 {
        self.segments.iter().map(|s| i64::from(s.lines)).sum()
    }

    /// Reads a done granule's report; the message says what is missing.
    pub fn from_report(r: &GranuleReport) -> Result<GranuleWork, String> {
        if r.status != Verdict::Done {
            return Err("the granule did not finish (only done granules can be replayed)".into());
        }
        let Some(run) = &r.run else {
            return Err("it has no phase timings (written by an older pseg-step)".into());
        };
        if r.segment_times.is_empty() {
            return Err(
                "it has no segment timings: a --serial run; measure with the fan-out (without \
                 --serial)"
                    .into(),
            );
        }
        let need = |what: &str, v: Option<f64>| {
            v.ok_or_else(|| format!("it has no `{what}` time (written by an older pseg-step?)"))
        };
        let exited = need("run.exited", run.exited)?;
        let mut spans = Spans::default();
        let startup = spans.add(run.spawned, need("read", first(r)?.read)?, run.startup_wait);
        let mut ids = Vec::new();
        for (i, s) in r.segment_times.iter().enumerate() {
            if s.segment as usize != i + 1 {
                return Err(format!(
                    "segment_times lists segment {} where {} belongs",
                    s.segment,
                    i + 1
                ));
            }
            let read = need("read", s.read)?;
            let read_id = if i == 0 {
                None
            } else {
                Some(spans.add(need("read_from", s.read_from)?, read, s.read_wait))
            };
            let clone = spans.add(read, need("cloned", s.cloned)?, s.clone_wait);
            let (from, to) = if i == 0 {
                (
                    need("own_started", s.own_started)?,
                    need("own_processed", s.own_processed)?,
                )
            } else {
                (need("started", s.started)?, need("processed", s.processed)?)
            };
            let process = spans.add(from, to, s.process_wait);
            let write = spans.add(
                need("write_from", s.write_from)?,
                need("written", s.written)?,
                s.write_wait,
            );
            ids.push((s, read_id, clone, process, write));
        }
        let tail = spans.add(
            need("run.finish_from", run.finish_from)?,
            need("run.finish_reached", run.finish_reached)?,
            run.tail_wait,
        );
        let exit = spans.add(
            need("run.finish_released", run.finish_released)?,
            exited,
            None,
        );
        let work = spans.work(run.cpus.max(1));
        let segments = ids
            .into_iter()
            .map(
                |(s, read, clone, process, write): (&SegmentTimes, _, _, _, _)| SegmentWork {
                    lines: s.lines,
                    read: read.map_or(0.0, |id| work[id]),
                    clone: work[clone],
                    process: work[process],
                    write: work[write],
                },
            )
            .collect();
        Ok(GranuleWork {
            name: r.name.clone(),
            prepare: run.spawned.max(0.0),
            startup: work[startup],
            segments,
            tail: work[tail],
            exit: work[exit],
            publish: (r.wall_seconds - exited).max(0.0),
            measured_wall: r.wall_seconds,
            measured_cpus: run.cpus.max(1),
            measured_workers: r.workers.max_busy,
            worker_private_bytes: r.memory.worker_private_peak_bytes,
        })
    }
}

fn first(r: &GranuleReport) -> Result<&SegmentTimes, String> {
    r.segment_times
        .first()
        .ok_or_else(|| "it has no segments".to_string())
}

/// Phases as time spans, with the time each waited for a CPU when known; their work once
/// all are known.
#[derive(Default)]
struct Spans(Vec<(f64, f64)>, Vec<Option<f64>>);

impl Spans {
    fn add(&mut self, from: f64, to: f64, waited: Option<f64>) -> usize {
        self.0.push((from, to.max(from)));
        self.1.push(waited);
        self.0.len() - 1
    }

    /// Each span's work: its wall time less its wait where the report has it, else
    /// [`Spans::shared`].
    fn work(&self, cpus: usize) -> Vec<f64> {
        let shared = self.shared(cpus);
        self.0
            .iter()
            .zip(&self.1)
            .zip(shared)
            .map(|((&(a, b), waited), shared)| match waited {
                Some(w) => (b - a - w).max(0.0),
                None => shared,
            })
            .collect()
    }

    /// Each span's seconds of one core on `cpus` CPUs: `F(to) - F(from)` with `F` the
    /// integral of `min(1, cpus / runnable)`, one sweep over the sorted ends.
    fn shared(&self, cpus: usize) -> Vec<f64> {
        let mut ends: Vec<(f64, i32)> = Vec::with_capacity(self.0.len() * 2);
        for &(a, b) in &self.0 {
            ends.push((a, 1));
            ends.push((b, -1));
        }
        ends.sort_by(|x, y| x.0.total_cmp(&y.0));
        // (time, F(time)) at every end.
        let mut cumulative: Vec<(f64, f64)> = Vec::with_capacity(ends.len());
        let (mut f, mut runnable, mut last) = (0.0, 0i32, f64::NEG_INFINITY);
        for (t, d) in ends {
            if runnable > 0 {
                f += (t - last) * (cpus as f64 / f64::from(runnable)).min(1.0);
            }
            cumulative.push((t, f));
            runnable += d;
            last = t;
        }
        let at = |t: f64| {
            let i = cumulative.partition_point(|&(x, _)| x < t);
            cumulative.get(i).map_or(f, |&(_, v)| v)
        };
        self.0.iter().map(|&(a, b)| at(b) - at(a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_workers_add_their_private_memory() {
        let g = GranuleWork {
            segments: vec![SegmentWork::default(); 10],
            measured_workers: 2,
            worker_private_bytes: 100,
            ..GranuleWork::default()
        };
        assert_eq!(g.extra_peak_bytes(1), 0);
        assert_eq!(g.extra_peak_bytes(2), 0);
        assert_eq!(g.extra_peak_bytes(8), 600);
        // Nine segments go to workers; the first stays with clavrxorb.
        assert_eq!(g.extra_peak_bytes(64), 700);
    }

    #[test]
    fn contention_is_taken_out_of_a_phase() {
        let mut s = Spans::default();
        // Alone for 1 s, then three at once on 2 CPUs for 3 s: 2 s of work each.
        let a = s.add(0.0, 4.0, None);
        let b = s.add(1.0, 4.0, None);
        let c = s.add(1.0, 4.0, None);
        let lone = s.add(5.0, 6.0, None);
        let w = s.work(2);
        assert!((w[a] - 3.0).abs() < 1e-9, "{w:?}");
        assert!(
            (w[b] - 2.0).abs() < 1e-9 && (w[c] - 2.0).abs() < 1e-9,
            "{w:?}"
        );
        assert!((w[lone] - 1.0).abs() < 1e-9, "{w:?}");
        // On 4 CPUs nobody waited.
        let w = s.work(4);
        assert!((w[a] - 4.0).abs() < 1e-9 && (w[b] - 3.0).abs() < 1e-9);
        // A measured wait wins over the estimate: the node was busier than the granule.
        let d = s.add(6.0, 9.0, Some(2.5));
        assert!((s.work(4)[d] - 0.5).abs() < 1e-9);
    }
}
