//! The line and bar charts: per granule, workers busy and memory over time; per campaign,
//! granules finished per bin, granules running at once and the spread of wall times.
//!
//! Each chart is one `<svg>` whose `data-*` attributes carry the figures it draws (peaks,
//! totals, bin widths), so tests and readers can check it against the reports. Campaign
//! charts draw bins, never one element per granule.

use super::aggregate::{Histogram, Throughput};
use super::fmt;
use super::segment_chart::chart_end;
use super::svg::{self, Frame, YAxis, staircase};
use crate::domain::plan::Projection;
use crate::domain::reports::{GranuleReport, Memory};

const SINCE_GRANULE: &str = "seconds since the granule started";

/// Where a line's label goes: just above it, or below when that would leave the plot.
fn label_y(frame: &Frame, y: f64) -> f64 {
    if y - 14.0 < frame.plot_top() {
        y + 13.0
    } else {
        y - 4.0
    }
}

/// Workers busy over time, against the cap.
pub fn busy(r: &GranuleReport) -> String {
    let end = chart_end(r);
    let series = &r.workers.busy_over_time;
    let seen = series.iter().map(|p| p.1).max().unwrap_or(0);
    let cap = r.workers.cap.max(seen).max(1);
    let frame = Frame::new(
        150.0,
        end,
        YAxis::Count { top: cap as f64 },
        SINCE_GRANULE,
        "workers busy",
    );
    let mut s = frame.open(
        "busy",
        &format!("workers busy over time in {}", r.name),
        &[
            ("max-busy", seen.to_string()),
            ("reported-max-busy", r.workers.max_busy.to_string()),
            ("cap", r.workers.cap.to_string()),
            ("points", series.len().to_string()),
        ],
    );
    let points: Vec<(f64, f64)> = series.iter().map(|&(t, n)| (t, n as f64)).collect();
    let px: Vec<(f64, f64)> = staircase(&points, end)
        .into_iter()
        .map(|(t, v)| (frame.x.at(t), frame.y.at(v)))
        .collect();
    s.area(&px, frame.y.at(0.0), "busy-area");
    s.polyline(&px, "busy-line", &[]);
    let y = frame.y.at(r.workers.cap as f64);
    s.line(frame.x.r0, y, frame.x.r1, y, "cap");
    s.text(
        frame.x.r1 - 4.0,
        label_y(&frame, y),
        "end",
        &format!("cap {} (bound by {})", r.workers.cap, r.workers.bound_by),
        "note",
    );
    s.close()
}

/// How the memory chart is scaled: what it draws, and up to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryScale {
    pub pss_max: u64,
    pub cgroup_max: u64,
    pub cgroup_min: u64,
    /// The cgroup's line, unless it is so far above the processes' sum that it would flatten
    /// them (a cgroup holding more than this granule: outside Slurm, a whole session's).
    pub cgroup_drawn: bool,
    /// The limit's line, unless it is far above everything drawn.
    pub limit_drawn: bool,
    pub top: u64,
}

/// Lines more than this many times the processes' sum are named, not drawn.
pub const FAR: u64 = 8;

pub fn memory_scale(m: &Memory) -> MemoryScale {
    let pss_max = m.over_time.iter().map(|p| p.1).max().unwrap_or(0);
    let cgroup_max = m.over_time.iter().map(|p| p.2).max().unwrap_or(0);
    let cgroup_min = m
        .over_time
        .iter()
        .map(|p| p.2)
        .filter(|&u| u > 0)
        .min()
        .unwrap_or(0);
    let base = pss_max.max(m.pss_peak_bytes).max(1 << 20);
    let cgroup_drawn = cgroup_max > 0 && cgroup_max <= base.saturating_mul(FAR);
    let drawn = if cgroup_drawn {
        base.max(cgroup_max)
    } else {
        base
    };
    let limit_drawn = m
        .limit_bytes
        .is_some_and(|l| l <= drawn.saturating_mul(FAR));
    let top = drawn.max(if limit_drawn {
        m.limit_bytes.unwrap_or(0)
    } else {
        0
    });
    MemoryScale {
        pss_max,
        cgroup_max,
        cgroup_min,
        cgroup_drawn,
        limit_drawn,
        top,
    }
}

/// Summed PSS and cgroup usage over time, against the limit.
pub fn memory(r: &GranuleReport) -> String {
    let end = chart_end(r);
    let m = &r.memory;
    let scale = memory_scale(m);
    let frame = Frame::new(
        230.0,
        end,
        YAxis::Bytes {
            top: scale.top + scale.top / 20,
        },
        SINCE_GRANULE,
        "memory",
    );
    let data = memory_data(m, &scale);
    let mut s = frame.open("memory", &format!("memory over time in {}", r.name), &data);
    if m.over_time.is_empty() {
        s.text(
            (frame.x.r0 + frame.x.r1) / 2.0,
            (frame.plot_top() + frame.plot_bottom()) / 2.0,
            "middle",
            "no memory over time in this report (sampling was off, or an older pseg-step wrote it)",
            "note",
        );
    }
    let mut notes = Vec::new();
    cgroup_line(&mut s, &frame, m, &scale, &mut notes);
    pss_peak_rule(&mut s, &frame, m, scale.pss_max);
    pss_line(&mut s, &frame, m, scale.pss_max);
    limit_line(&mut s, &frame, m, &scale, &mut notes);
    for (i, note) in notes.iter().enumerate() {
        s.text(
            frame.x.r1 - 4.0,
            frame.plot_top() + 12.0 + 14.0 * i as f64,
            "end",
            note,
            "note far",
        );
    }
    s.close()
}

/// The memory chart's `data-*` figures.
fn memory_data(m: &Memory, scale: &MemoryScale) -> Vec<(&'static str, String)> {
    let mut data = vec![
        ("peak-bytes", m.peak_bytes.to_string()),
        ("pss-peak-bytes", m.pss_peak_bytes.to_string()),
        ("series-pss-max", scale.pss_max.to_string()),
        ("series-cgroup-max", scale.cgroup_max.to_string()),
        ("points", m.over_time.len().to_string()),
        ("cgroup-drawn", scale.cgroup_drawn.to_string()),
    ];
    if let Some(l) = m.limit_bytes {
        data.push(("limit-bytes", l.to_string()));
    }
    data
}

/// One of the samples' series (`pick` chooses it) as points of the chart.
fn series(frame: &Frame, m: &Memory, pick: fn(&(f64, u64, u64)) -> u64) -> Vec<(f64, f64)> {
    m.over_time
        .iter()
        .map(|p| (frame.x.at(p.0), frame.y.at(pick(p) as f64)))
        .collect()
}

/// The cgroup's usage: a line, or a note when it is far above or no limit applies.
fn cgroup_line(
    s: &mut svg::Svg,
    frame: &Frame,
    m: &Memory,
    scale: &MemoryScale,
    notes: &mut Vec<String>,
) {
    let cg_max = scale.cgroup_max;
    if scale.cgroup_drawn {
        s.polyline(
            &series(frame, m, |p| p.2),
            "cgroup-line",
            &[("max", cg_max.to_string())],
        );
    } else if cg_max > 0 {
        notes.push(format!(
            "cgroup usage {} to {}: far above, not drawn",
            fmt::size(scale.cgroup_min),
            fmt::size(cg_max)
        ));
    } else if m.cgroup_note.is_some() && !m.over_time.is_empty() {
        notes.push("no cgroup line: no memory limit applies (see below)".into());
    }
}

/// The PSS peak of every sample, as a rule, when it is above the timed samples' max.
fn pss_peak_rule(s: &mut svg::Svg, frame: &Frame, m: &Memory, pss_max: u64) {
    if m.pss_peak_bytes > pss_max {
        // Waitpoint samples (where memory peaks) count in the reported peak, not the series.
        let y = frame.y.at(m.pss_peak_bytes as f64);
        s.line(frame.x.r0, y, frame.x.r1, y, "pss-peak");
        s.text(
            frame.x.r0 + 6.0,
            label_y(frame, y),
            "start",
            &format!("PSS peak {} (every sample)", fmt::size(m.pss_peak_bytes)),
            "note",
        );
    }
}

/// The summed PSS of the timed samples, with a dot and a label at its max.
fn pss_line(s: &mut svg::Svg, frame: &Frame, m: &Memory, pss_max: u64) {
    if pss_max == 0 {
        return;
    }
    s.polyline(
        &series(frame, m, |p| p.1),
        "pss-line",
        &[("max", pss_max.to_string())],
    );
    if let Some(p) = m.over_time.iter().find(|p| p.1 == pss_max) {
        let (x, y) = (frame.x.at(p.0), frame.y.at(pss_max as f64));
        s.dot(
            x,
            y,
            "peak-dot",
            &format!(
                "summed PSS {} at {}: the most of any timed sample",
                fmt::size(pss_max),
                fmt::seconds(p.0)
            ),
        );
        let anchor = if x > svg::WIDTH - 220.0 {
            "end"
        } else {
            "start"
        };
        let dx = if anchor == "end" { -8.0 } else { 8.0 };
        s.text(
            x + dx,
            (y - 6.0).max(frame.plot_top() + 10.0),
            anchor,
            &format!("timed samples' max {}", fmt::size(pss_max)),
            "note",
        );
    }
}

/// The memory limit: a rule, or a note when it is far above.
fn limit_line(
    s: &mut svg::Svg,
    frame: &Frame,
    m: &Memory,
    scale: &MemoryScale,
    notes: &mut Vec<String>,
) {
    match m.limit_bytes {
        Some(l) if scale.limit_drawn => {
            let y = frame.y.at(l as f64);
            s.line(frame.x.r0, y, frame.x.r1, y, "limit");
            s.text(
                frame.x.r1 - 4.0,
                label_y(frame, y),
                "end",
                &format!("limit {}", fmt::size(l)),
                "note limit-label",
            );
        }
        Some(l) => notes.push(format!("limit {}: far above, not drawn", fmt::size(l))),
        None => {}
    }
}

/// Granules that ended in each bin: done, and failed or interrupted, stacked.
pub fn finished(t: &Throughput) -> String {
    let width = t.bin * t.done.len() as f64;
    let top = (0..t.done.len())
        .map(|i| t.done[i] + t.failed[i])
        .max()
        .unwrap_or(0)
        .max(1);
    let frame = Frame::new(
        200.0,
        width,
        YAxis::Count { top: top as f64 },
        "since the first granule started",
        &format!("granules per {}", fmt::seconds_tick(t.bin, t.bin)),
    );
    let done: usize = t.done.iter().sum();
    let failed: usize = t.failed.iter().sum();
    let mut s = frame.open(
        "finished",
        "granules finished per time bin",
        &[
            ("finished", (done + failed).to_string()),
            ("done", done.to_string()),
            ("failed", failed.to_string()),
            ("bin-seconds", t.bin.to_string()),
            ("bins", t.done.len().to_string()),
        ],
    );
    let w = frame.x.per_unit() * t.bin;
    let pad = if w > 4.0 { 1.0 } else { 0.0 };
    for i in 0..t.done.len() {
        let x = frame.x.at(i as f64 * t.bin);
        let from = i as f64 * t.bin;
        let when = format!("{} to {}", fmt::seconds(from), fmt::seconds(from + t.bin));
        let mut base = 0;
        for (n, class, what) in [
            (t.done[i], "bin done", "done"),
            (t.failed[i], "bin failed", "failed or interrupted"),
        ] {
            if n == 0 {
                continue;
            }
            let y0 = frame.y.at(base as f64);
            let y1 = frame.y.at((base + n) as f64);
            s.rect(
                x + pad / 2.0,
                y1,
                w - pad,
                y0 - y1,
                class,
                &[("count", n.to_string()), ("from", from.to_string())],
                &format!("{} {what}, {when}", fmt::count(n as f64)),
            );
            base += n;
        }
    }
    s.close()
}

/// The most granules running at once in each bin.
pub fn running(t: &Throughput) -> String {
    let width = t.bin * t.running.len() as f64;
    let frame = Frame::new(
        170.0,
        width,
        YAxis::Count {
            top: t.peak_running.max(1) as f64,
        },
        "since the first granule started",
        "granules running",
    );
    let mut s = frame.open(
        "running",
        "granules running at once",
        &[
            ("peak-running", t.peak_running.to_string()),
            ("bins", t.running.len().to_string()),
        ],
    );
    let points: Vec<(f64, f64)> = t
        .running
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as f64 * t.bin, n as f64))
        .collect();
    let px: Vec<(f64, f64)> = staircase(&points, width)
        .into_iter()
        .map(|(t, v)| (frame.x.at(t), frame.y.at(v)))
        .collect();
    s.area(&px, frame.y.at(0.0), "running-area");
    s.polyline(&px, "running-line", &[]);
    s.close()
}

/// How many granules took how long.
pub fn walls(h: &Histogram) -> String {
    let width = h.bin * h.counts.len() as f64;
    let top = h.counts.iter().copied().max().unwrap_or(0).max(1);
    let frame = Frame::new(
        180.0,
        width,
        YAxis::Count { top: top as f64 },
        "wall time of a granule",
        "granules",
    );
    let total: usize = h.counts.iter().sum();
    let mut s = frame.open(
        "walls",
        "wall time per granule",
        &[
            ("granules", total.to_string()),
            ("bin-seconds", h.bin.to_string()),
        ],
    );
    let w = frame.x.per_unit() * h.bin;
    let pad = if w > 4.0 { 1.0 } else { 0.0 };
    for (i, &n) in h.counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let from = i as f64 * h.bin;
        let y = frame.y.at(n as f64);
        s.rect(
            frame.x.at(from) + pad / 2.0,
            y,
            w - pad,
            frame.y.at(0.0) - y,
            "bin walls",
            &[("count", n.to_string()), ("from", from.to_string())],
            &format!(
                "{} granules took {} to {}",
                fmt::count(n as f64),
                fmt::seconds(from),
                fmt::seconds(from + h.bin)
            ),
        );
    }
    s.close()
}

/// Speedup over `--serial` at each CPU count, one granule at a time and overlapping: what
/// `pseg-slurm plan` projects from the reports.
pub fn plan(p: &Projection) -> String {
    let labels: Vec<String> = p.rows.iter().map(|r| r.cpus.to_string()).collect();
    let top = p
        .rows
        .iter()
        .map(|r| r.speedup.max(r.overlap_speedup))
        .fold(1.0, f64::max);
    let frame = Frame::categories(
        200.0,
        &labels,
        YAxis::Count { top },
        "CPUs per granule",
        "speedup over --serial",
    );
    let mut s = frame.open(
        "plan",
        "projected speedup per CPU count",
        &[
            ("granules", p.granules.to_string()),
            ("serial-seconds", p.serial_seconds.to_string()),
        ],
    );
    let w = frame.x.per_unit() * 0.36;
    for (i, r) in p.rows.iter().enumerate() {
        for (k, (class, speedup, eff, wall, hours, how)) in [
            (
                "plan-one",
                r.speedup,
                r.efficiency,
                r.wall_seconds,
                r.core_hours_per_1000,
                "one granule at a time",
            ),
            (
                "plan-overlap",
                r.overlap_speedup,
                r.overlap_efficiency,
                r.overlap_wall_seconds,
                r.overlap_core_hours_per_1000,
                "granules overlapping",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let y = frame.y.at(speedup);
            s.rect(
                frame.x.at(i as f64 + 0.14) + k as f64 * w,
                y,
                w,
                frame.y.at(0.0) - y,
                &format!("bin {class}"),
                &[
                    ("cpus", r.cpus.to_string()),
                    ("speedup", speedup.to_string()),
                    ("efficiency", eff.to_string()),
                ],
                &format!(
                    "{} CPUs, {how}: {} per granule, {speedup:.2}x --serial, {:.0} % efficient, \
                     {hours:.1} core-hours per 1000 granules",
                    r.cpus,
                    fmt::seconds(wall),
                    eff * 100.0
                ),
            );
        }
    }
    s.close()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::page::aggregate;
    use crate::domain::page::load::Entry;
    use crate::domain::page::testing::{self, elements};

    #[test]
    fn the_memory_chart_carries_the_reports_peaks_and_draws_the_series() {
        let r = testing::report("g.gran");
        let svg = memory(&r);
        let root = &elements(&svg, "svg")[0];
        let gib = 1u64 << 30;
        assert_eq!(root.get("data-peak-bytes"), (3 * gib).to_string());
        assert_eq!(root.get("data-pss-peak-bytes"), (3 * gib).to_string());
        assert_eq!(root.get("data-series-pss-max"), (5 * gib / 2).to_string());
        assert_eq!(root.get("data-series-cgroup-max"), (3 * gib).to_string());
        assert_eq!(root.get("data-limit-bytes"), (4 * gib).to_string());
        assert_eq!(root.get("data-cgroup-drawn"), "true");
        let x0 = root.num("data-x0");
        let per = root.num("data-px-per-second");
        let lines = elements(&svg, "polyline");
        let pss = lines.iter().find(|l| l.has_class("pss-line")).unwrap();
        let points: Vec<(f64, f64)> = pss
            .get("points")
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), r.memory.over_time.len());
        for (p, s) in points.iter().zip(&r.memory.over_time) {
            assert!((p.0 - (x0 + s.0 * per)).abs() < 0.01);
        }
        // The highest point (smallest y) is the 2.5 GiB sample at 5 s.
        let top = points.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!((top.0 - (x0 + 5.0 * per)).abs() < 0.01);
        assert!(lines.iter().any(|l| l.has_class("cgroup-line")));
        let limit = elements(&svg, "line")
            .into_iter()
            .find(|l| l.has_class("limit"))
            .expect("the limit is drawn");
        assert_eq!(limit.num("y1"), limit.num("y2"));
        assert!(limit.num("y1") < top.1, "the limit is above the data");
        let texts: Vec<String> = elements(&svg, "text").into_iter().map(|t| t.text).collect();
        assert!(texts.contains(&"limit 4 GiB".to_string()), "{texts:?}");
        assert!(
            texts.contains(&"timed samples' max 2.5 GiB".to_string()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"PSS peak 3 GiB (every sample)".to_string()),
            "{texts:?}"
        );
    }

    #[test]
    fn far_lines_are_named_not_drawn() {
        let mut r = testing::report("g.gran");
        for p in &mut r.memory.over_time {
            p.2 = 64 << 30;
        }
        r.memory.limit_bytes = Some(1 << 40);
        let svg = memory(&r);
        assert_eq!(elements(&svg, "svg")[0].get("data-cgroup-drawn"), "false");
        assert!(!svg.contains("cgroup-line"));
        assert!(svg.contains("cgroup usage 64 GiB to 64 GiB: far above, not drawn"));
        assert!(svg.contains("limit 1 TiB: far above, not drawn"));
        r.memory.over_time.clear();
        assert!(memory(&r).contains("no memory over time in this report"));
    }

    #[test]
    fn without_a_limited_cgroup_there_is_no_cgroup_line_and_a_note_says_why() {
        let mut r = testing::report("g.gran");
        for p in &mut r.memory.over_time {
            p.2 = 0;
        }
        r.memory.limit_bytes = None;
        r.memory.cgroup_note = Some("no memory limit on cgroup /x or above it".into());
        let svg = memory(&r);
        assert!(!svg.contains("cgroup-line"));
        assert!(
            svg.contains("no cgroup line: no memory limit applies"),
            "{svg}"
        );
    }

    #[test]
    fn the_busy_chart_steps_through_the_series_against_the_cap() {
        let r = testing::report("g.gran");
        let svg = busy(&r);
        let root = &elements(&svg, "svg")[0];
        assert_eq!(root.get("data-max-busy"), "2");
        assert_eq!(root.get("data-cap"), "2");
        let line = elements(&svg, "polyline")
            .into_iter()
            .find(|l| l.has_class("busy-line"))
            .unwrap();
        // Each change after the first adds a corner; the last level holds to the end.
        let n = r.workers.busy_over_time.len();
        assert_eq!(line.get("points").split(' ').count(), 2 * n - 1 + 1);
        assert!(svg.contains("cap 2 (bound by cpus)"));
    }

    #[test]
    fn campaign_charts_draw_bins_not_granules() {
        let entries: Vec<Entry> = (0..5000)
            .map(|i| Entry {
                name: format!("g{i}"),
                status: if i % 100 == 0 {
                    crate::domain::ledger::Status::Failed
                } else {
                    crate::domain::ledger::Status::Done
                },
                started: Some(1000.0 + i as f64 * 7.0),
                ended: Some(1000.0 + i as f64 * 7.0 + 60.0 + (i % 13) as f64),
                error: None,
                kind: None,
                attempts: 1,
                host: Some("n".into()),
                pid: Some(i % 8),
                report: None,
            })
            .collect();
        let s = aggregate::summarize(&entries, 20);
        let t = s.throughput.as_ref().unwrap();
        let svg = finished(t);
        let root = &elements(&svg, "svg")[0];
        assert_eq!(root.get("data-finished"), "5000");
        assert_eq!(root.get("data-failed"), "50");
        let bins: Vec<_> = elements(&svg, "rect");
        assert!(
            bins.len() <= 2 * t.done.len() && t.done.len() <= 121,
            "{}",
            bins.len()
        );
        let drawn: usize = bins
            .iter()
            .map(|b| b.get("data-count").parse::<usize>().unwrap())
            .sum();
        assert_eq!(drawn, 5000);
        let run = running(t);
        // 60-72 s granules started every 7 s: 9 or 10 at once (11 when an end and a start meet).
        let peak: usize = elements(&run, "svg")[0]
            .get("data-peak-running")
            .parse()
            .unwrap();
        assert!((9..=11).contains(&peak), "{peak}");
        let walls_svg = walls(s.wall.as_ref().unwrap());
        assert_eq!(elements(&walls_svg, "svg")[0].get("data-granules"), "5000");
        assert!(elements(&walls_svg, "rect").len() <= 41);
    }
}
