//! What a campaign's index adds up to, aggregated so the page stays the same size for 10 or
//! 100 000 granules: counts, granules finished per time bin, granules running at once (the
//! most in each bin), a histogram of wall times, the gaps between one granule's end and the
//! next one's start in the same pseg-step, the N slowest and the failed.
//!
//! Pure: entries in, numbers out; no SVG and no files here.

use std::collections::HashMap;

use super::load::Entry;
use crate::domain::ledger::Status;

/// Bins of the time charts: at most this many.
const MAX_BINS: usize = 120;
/// Bins of the wall-time histogram.
const WALL_BINS: usize = 40;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub granules: usize,
    pub done: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub running: usize,
    pub pending: usize,
}

/// Granules over the campaign's time, in bins of `bin` seconds from `t0`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    /// Unix seconds of the first start.
    pub t0: f64,
    /// Seconds from the first start to the last end.
    pub span: f64,
    pub bin: f64,
    /// Per bin: granules that ended done, and ended failed or interrupted.
    pub done: Vec<usize>,
    pub failed: Vec<usize>,
    /// Per bin: the most granules running at once.
    pub running: Vec<usize>,
    pub peak_running: usize,
}

/// Seconds from one granule's end to the next one's start in the same pseg-step: the
/// latency between tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gaps {
    pub count: usize,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub bin: f64,
    pub counts: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub counts: Counts,
    pub throughput: Option<Throughput>,
    pub wall: Option<Histogram>,
    pub gaps: Option<Gaps>,
    /// Indexes into the entries, slowest first.
    pub slowest: Vec<usize>,
    /// Indexes of failed (and interrupted) entries, latest first.
    pub failed: Vec<usize>,
    /// Mean and median wall time of the finished granules.
    pub wall_mean: Option<f64>,
    pub wall_median: Option<f64>,
    pub hosts: usize,
    /// Failed granules per failure kind (from the ledger), most first.
    pub failure_kinds: Vec<(String, usize)>,
}

/// Adds the index up; `slowest` is how many of the slowest to keep.
pub fn summarize(entries: &[Entry], slowest: usize) -> Aggregate {
    let mut counts = Counts {
        granules: entries.len(),
        ..Counts::default()
    };
    for e in entries {
        match e.status {
            Status::Done => counts.done += 1,
            Status::Failed => counts.failed += 1,
            Status::Interrupted => counts.interrupted += 1,
            Status::Running | Status::Claimed => counts.running += 1,
            Status::Pending => counts.pending += 1,
        }
    }
    let finished: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].wall().is_some())
        .collect();
    let mut walls: Vec<f64> = finished.iter().filter_map(|&i| entries[i].wall()).collect();
    walls.sort_by(f64::total_cmp);
    let wall_mean = (!walls.is_empty()).then(|| walls.iter().sum::<f64>() / walls.len() as f64);
    let wall_median = percentile(&walls, 0.5);

    let mut by_wall = finished;
    let key = |i: &usize| entries[*i].wall().unwrap_or(0.0);
    if by_wall.len() > slowest && slowest > 0 {
        by_wall.select_nth_unstable_by(slowest - 1, |a, b| key(b).total_cmp(&key(a)));
        by_wall.truncate(slowest);
    }
    by_wall.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| entries[*a].name.cmp(&entries[*b].name))
    });
    by_wall.truncate(slowest);

    let mut failed: Vec<usize> = (0..entries.len())
        .filter(|&i| matches!(entries[i].status, Status::Failed | Status::Interrupted))
        .collect();
    failed.sort_by(|a, b| {
        let end = |i: &usize| entries[*i].ended.unwrap_or(f64::MIN);
        end(b)
            .total_cmp(&end(a))
            .then_with(|| entries[*a].name.cmp(&entries[*b].name))
    });

    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for &i in &failed {
        if let Some(k) = entries[i].kind.as_deref() {
            *kinds.entry(k).or_default() += 1;
        }
    }
    let mut failure_kinds: Vec<(String, usize)> =
        kinds.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    failure_kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let hosts: std::collections::HashSet<&str> =
        entries.iter().filter_map(|e| e.host.as_deref()).collect();
    Aggregate {
        counts,
        throughput: throughput(entries),
        wall: histogram(&walls, WALL_BINS),
        gaps: gaps(entries),
        slowest: by_wall,
        failed,
        wall_mean,
        wall_median,
        hosts: hosts.len(),
        failure_kinds,
    }
}

/// The value at quantile `q` of sorted `values`.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// A bin width that reads well and gives at most 120 bins over `span` seconds.
pub fn bin_width(span: f64) -> f64 {
    const WIDTHS: [f64; 28] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
        600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0,
        604800.0, 1209600.0, 2592000.0,
    ];
    let want = span / MAX_BINS as f64;
    WIDTHS
        .iter()
        .copied()
        .find(|&w| w >= want)
        .unwrap_or_else(|| (want / 86400.0).ceil() * 86400.0)
}

fn throughput(entries: &[Entry]) -> Option<Throughput> {
    let t0 = entries
        .iter()
        .filter_map(|e| e.started)
        .min_by(f64::total_cmp)?;
    let t1 = entries
        .iter()
        .filter_map(|e| e.ended.or(e.started))
        .max_by(f64::total_cmp)?;
    let span = (t1 - t0).max(0.0);
    let bin = bin_width(span);
    let n = ((span / bin).floor() as usize + 1).max(1);
    let index = |t: f64| (((t - t0) / bin).floor().max(0.0) as usize).min(n - 1);
    let mut done = vec![0; n];
    let mut failed = vec![0; n];
    // Running at once: +1 at each start, -1 at each end; the most per bin.
    let mut events: Vec<(f64, i32)> = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        if let Some(end) = e.ended {
            match e.status {
                Status::Done => done[index(end)] += 1,
                _ => failed[index(end)] += 1,
            }
        }
        if let Some(start) = e.started {
            events.push((start, 1));
            // A granule still running counts to the end of the chart.
            events.push((e.ended.unwrap_or(f64::INFINITY).max(start), -1));
        }
    }
    // Ends before starts at the same instant: a pseg-step going on to its next granule is
    // not two granules at once.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut running = vec![0usize; n];
    let mut now: i64 = 0;
    let mut peak = 0usize;
    let mut bin_of_last = 0;
    for (t, delta) in events {
        let b = index(t);
        // Bins the level passed through unchanged hold it, and so does the start of this
        // event's bin.
        for slot in running.iter_mut().take(b + 1).skip(bin_of_last + 1) {
            *slot = (*slot).max(now.max(0) as usize);
        }
        now += i64::from(delta);
        let level = now.max(0) as usize;
        running[b] = running[b].max(level);
        peak = peak.max(level);
        bin_of_last = b;
    }
    Some(Throughput {
        t0,
        span,
        bin,
        done,
        failed,
        running,
        peak_running: peak,
    })
}

fn histogram(sorted: &[f64], bins: usize) -> Option<Histogram> {
    let max = *sorted.last()?;
    let bin = super::svg::time_step(max.max(1e-3), bins);
    let n = (max / bin).floor() as usize + 1;
    let mut counts = vec![0; n];
    for v in sorted {
        counts[((v / bin).floor() as usize).min(n - 1)] += 1;
    }
    Some(Histogram { bin, counts })
}

fn gaps(entries: &[Entry]) -> Option<Gaps> {
    let mut by_step: HashMap<(&str, u32), Vec<(f64, f64)>> = HashMap::new();
    for e in entries {
        if let (Some(host), Some(pid), Some(s), Some(end)) =
            (e.host.as_deref(), e.pid, e.started, e.ended)
        {
            by_step.entry((host, pid)).or_default().push((s, end));
        }
    }
    let mut gaps = Vec::new();
    for runs in by_step.values_mut() {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        gaps.extend(runs.windows(2).map(|w| (w[1].0 - w[0].1).max(0.0)));
    }
    gaps.sort_by(f64::total_cmp);
    Some(Gaps {
        count: gaps.len(),
        median: percentile(&gaps, 0.5)?,
        p95: percentile(&gaps, 0.95)?,
        max: *gaps.last()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, status: Status, start: f64, end: Option<f64>, pid: u32) -> Entry {
        Entry {
            name: name.into(),
            status,
            started: Some(start),
            ended: end,
            error: None,
            kind: None,
            attempts: 1,
            host: Some("n1".into()),
            pid: Some(pid),
            report: None,
        }
    }

    #[test]
    fn counts_bins_running_and_gaps() {
        let entries = vec![
            entry("a", Status::Done, 1000.0, Some(1010.0), 1),
            entry("b", Status::Done, 1010.5, Some(1030.0), 1),
            entry("c", Status::Failed, 1000.0, Some(1005.0), 2),
            entry("d", Status::Done, 1006.0, Some(1100.0), 2),
            entry("e", Status::Running, 1101.0, None, 2),
            Entry {
                started: None,
                ..entry("f", Status::Pending, 0.0, None, 3)
            },
        ];
        let s = summarize(&entries, 2);
        assert_eq!(
            s.counts,
            Counts {
                granules: 6,
                done: 3,
                failed: 1,
                interrupted: 0,
                running: 1,
                pending: 1
            }
        );
        let t = s.throughput.unwrap();
        assert_eq!((t.t0, t.span, t.bin), (1000.0, 101.0, 1.0));
        assert_eq!(t.done.len(), 102);
        assert_eq!(t.done.iter().sum::<usize>(), 3);
        assert_eq!(t.failed[5], 1);
        assert_eq!(t.done[10], 1);
        assert_eq!(t.peak_running, 2);
        assert_eq!(t.running[0], 2);
        assert_eq!(
            t.running[50], 1,
            "a level holds through bins without events"
        );
        assert_eq!(t.running[101], 1, "e runs at the end");
        assert_eq!(t.running[100], 1, "d ran into the bin it ended in");
        assert_eq!(
            s.slowest
                .iter()
                .map(|&i| &*entries[i].name)
                .collect::<Vec<_>>(),
            ["d", "b"]
        );
        assert_eq!(s.failed, vec![2]);
        assert!(s.failure_kinds.is_empty(), "no kind without a ledger");
        let g = s.gaps.unwrap();
        // pid 1: 1010 -> 1010.5; pid 2: 1005 -> 1006, 1100 -> (e has not ended).
        assert_eq!((g.count, g.median, g.max), (2, 1.0, 1.0));
        assert_eq!(s.wall_median, Some(19.5));
        let h = s.wall.unwrap();
        assert_eq!(h.counts.iter().sum::<usize>(), 4);
    }

    #[test]
    fn bins_stay_few_for_long_campaigns() {
        assert_eq!(bin_width(100.0), 1.0);
        assert_eq!(bin_width(2.0), 0.02);
        assert_eq!(bin_width(86400.0), 900.0);
        let w = bin_width(400.0 * 86400.0);
        assert!(400.0 * 86400.0 / w <= MAX_BINS as f64, "{w}");
        assert!(summarize(&[], 5).throughput.is_none());
    }
}
