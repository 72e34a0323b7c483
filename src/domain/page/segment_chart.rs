//! One granule's segments over time, one lane per worker: when each segment waited for a
//! worker, was processed, and waited for the write lock and was written.
//!
//! Reports name the pid of each segment, not the worker slot, so slots are rebuilt: each
//! segment, in the order they started, takes the lowest lane free since its predecessor
//! was written (a slot is busy from `started` to `written`), which needs exactly as many
//! lanes as workers were ever busy at once. Waits for a worker are laid out the same way
//! in lanes of their own. `processed -> written` holds both the wait for the write lock
//! and the write itself; reports cannot tell them apart, and the legend says so.

use super::fmt;
use super::svg::{self, Frame, YAxis};
use crate::domain::reports::{GranuleReport, SegmentTimes};

/// A wait for a worker shorter than this is no wait: it gets no bar.
const MIN_WAIT: f64 = 0.001;

/// What a bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first segment: read, processed and written by clavrxorb itself.
    Own,
    /// Read, its clone waiting for a worker (`queued -> started`).
    Queued,
    /// `started -> processed`.
    Processing,
    /// `processed -> written`: waiting for the write lock, then writing.
    Writing,
    /// Begun but never finished (the granule failed or was interrupted).
    Unfinished,
}

impl Phase {
    pub fn class(self) -> &'static str {
        match self {
            Phase::Own => "own",
            Phase::Queued => "queued",
            Phase::Processing => "processing",
            Phase::Writing => "writing",
            Phase::Unfinished => "unfinished",
        }
    }
}

/// Which group of lanes a lane belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Reader,
    Waiting,
    Workers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub segment: u32,
    pub phase: Phase,
    pub from: f64,
    pub to: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub group: Group,
    pub bars: Vec<Bar>,
}

/// The lanes of a granule: clavrxorb's own, then waiting, then workers.
pub fn lanes(segments: &[SegmentTimes], end: f64) -> Vec<Lane> {
    let mut reader = Lane {
        group: Group::Reader,
        bars: Vec::new(),
    };
    let mut waits: Vec<(f64, f64, Bar)> = Vec::new();
    let mut works: Vec<(f64, f64, Vec<Bar>)> = Vec::new();
    for s in segments {
        let bar = |phase, from: f64, to: f64| Bar {
            segment: s.segment,
            phase,
            from,
            to: to.max(from),
        };
        let Some(started) = s.started else {
            match (s.queued, s.written) {
                (Some(q), _) => waits.push((q, end, bar(Phase::Unfinished, q, end))),
                (None, Some(w)) => reader.bars.push(bar(Phase::Own, 0.0, w)),
                (None, None) => reader.bars.push(bar(Phase::Unfinished, 0.0, end)),
            }
            continue;
        };
        if let Some(q) = s.queued
            && started - q >= MIN_WAIT
        {
            waits.push((q, started, bar(Phase::Queued, q, started)));
        }
        let mut bars = Vec::new();
        let free_at = match (s.processed, s.written) {
            (Some(p), Some(w)) => {
                bars.push(bar(Phase::Processing, started, p));
                bars.push(bar(Phase::Writing, p, w));
                w
            }
            (Some(p), None) => {
                bars.push(bar(Phase::Processing, started, p));
                bars.push(bar(Phase::Unfinished, p, end));
                end
            }
            (None, Some(w)) => {
                bars.push(bar(Phase::Processing, started, w));
                w
            }
            (None, None) => {
                bars.push(bar(Phase::Unfinished, started, end));
                end
            }
        };
        works.push((started, free_at, bars));
    }
    let mut out = Vec::new();
    if !reader.bars.is_empty() {
        out.push(reader);
    }
    out.extend(pack(waits, Group::Waiting, |b| vec![b]));
    out.extend(pack(works, Group::Workers, |b| b));
    out
}

/// Interval partitioning: in order of start, each item takes the lowest lane whose last
/// item ended by then.
fn pack<T>(mut items: Vec<(f64, f64, T)>, group: Group, bars: impl Fn(T) -> Vec<Bar>) -> Vec<Lane> {
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut lanes: Vec<(f64, Lane)> = Vec::new();
    for (from, to, item) in items {
        let bars = bars(item);
        match lanes.iter_mut().find(|(free, _)| *free <= from) {
            Some((free, lane)) => {
                *free = to;
                lane.bars.extend(bars);
            }
            None => lanes.push((to, Lane { group, bars })),
        }
    }
    lanes.into_iter().map(|(_, lane)| lane).collect()
}

/// The timeline chart of `r`.
pub fn chart(r: &GranuleReport) -> String {
    let end = chart_end(r);
    let lanes = lanes(&r.segment_times, end);
    let n = lanes.len().max(1);
    let lane_h = (420.0 / n as f64).clamp(5.0, 20.0);
    let groups = 1
        + usize::from(lanes.iter().any(|l| l.group == Group::Waiting))
        + usize::from(lanes.iter().any(|l| l.group == Group::Workers));
    let gap = 8.0;
    let height = svg::TOP + n as f64 * lane_h + (groups - 1) as f64 * gap + svg::BOTTOM;
    let frame = Frame::new(
        height,
        end,
        YAxis::Lanes,
        "seconds since the granule started",
        "",
    );
    let workers = lanes.iter().filter(|l| l.group == Group::Workers).count();
    let bars: usize = lanes.iter().map(|l| l.bars.len()).sum();
    let mut s = frame.open(
        "timeline",
        &format!("segments of {} over time, one lane per worker", r.name),
        &[
            ("granule", r.name.clone()),
            ("segments", r.segment_times.len().to_string()),
            ("lanes", lanes.len().to_string()),
            ("worker-lanes", workers.to_string()),
            ("bars", bars.to_string()),
        ],
    );
    let mut y = svg::TOP;
    let mut previous: Option<Group> = None;
    let mut index_in_group = 0;
    for lane in &lanes {
        if previous.is_some_and(|g| g != lane.group) {
            y += gap;
            index_in_group = 0;
        }
        index_in_group += 1;
        let label = match lane.group {
            Group::Reader => "clavrxorb".to_string(),
            Group::Waiting => format!("waiting {index_in_group}"),
            Group::Workers => format!("worker {index_in_group}"),
        };
        let first_of_group = previous != Some(lane.group);
        if lane_h >= 11.0 || first_of_group {
            let label = if lane_h >= 11.0 {
                label
            } else {
                match lane.group {
                    Group::Reader => "clavrxorb".into(),
                    Group::Waiting => "waiting for a worker".into(),
                    Group::Workers => format!("{workers} workers"),
                }
            };
            s.text(
                svg::LEFT - 8.0,
                y + lane_h * 0.5 + 4.0,
                "end",
                &label,
                "lane",
            );
        }
        let bar_h = (lane_h * 0.8).max(2.0);
        let bar_y = y + (lane_h - bar_h) / 2.0;
        for b in &lane.bars {
            let x = frame.x.at(b.from);
            let w = frame.x.at(b.to) - x;
            let tip = tooltip(r, b);
            s.rect(
                x,
                bar_y,
                w.max(0.5),
                bar_h,
                &format!("seg {}", b.phase.class()),
                &[
                    ("segment", b.segment.to_string()),
                    ("phase", b.phase.class().to_string()),
                    ("from", b.from.to_string()),
                    ("to", b.to.to_string()),
                ],
                &tip,
            );
            let label = b.segment.to_string();
            if bar_h >= 10.0 && w >= 7.0 * label.len() as f64 + 6.0 && b.phase != Phase::Writing {
                s.text(
                    x + w / 2.0,
                    bar_y + bar_h / 2.0 + 4.0,
                    "middle",
                    &label,
                    "seg-label",
                );
            }
        }
        y += lane_h;
        previous = Some(lane.group);
    }
    s.close()
}

/// Where a granule's time axes end: its wall time, or its last event if later.
pub fn chart_end(r: &GranuleReport) -> f64 {
    let last_segment = r
        .segment_times
        .iter()
        .flat_map(|s| [s.queued, s.started, s.processed, s.written])
        .flatten()
        .fold(0.0, f64::max);
    let last_busy = r.workers.busy_over_time.last().map_or(0.0, |p| p.0);
    let last_memory = r.memory.over_time.last().map_or(0.0, |p| p.0);
    r.wall_seconds
        .max(last_segment)
        .max(last_busy)
        .max(last_memory)
        .max(1e-3)
}

fn tooltip(r: &GranuleReport, b: &Bar) -> String {
    let s = r.segment_times.iter().find(|s| s.segment == b.segment);
    let what = match b.phase {
        Phase::Own => "read, processed and written by clavrxorb itself",
        Phase::Queued => "waiting for a worker",
        Phase::Processing => "processing",
        Phase::Writing => "waiting for the write lock, then writing",
        Phase::Unfinished => "unfinished when the granule ended",
    };
    let mut tip = format!(
        "segment {}: {what}, {} ({} to {})",
        b.segment,
        fmt::seconds(b.to - b.from),
        fmt::seconds(b.from),
        fmt::seconds(b.to)
    );
    if let Some(s) = s {
        tip.push_str(&format!("\npid {}, {} lines", s.pid, s.lines));
    }
    tip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::page::testing;

    fn seg(n: u32, q: Option<f64>, s: Option<f64>, p: Option<f64>, w: Option<f64>) -> SegmentTimes {
        SegmentTimes {
            segment: n,
            pid: 100 + n as i32,
            lines: 10,
            queued: q,
            started: s,
            processed: p,
            written: w,
            ..SegmentTimes::default()
        }
    }

    #[test]
    fn slots_are_rebuilt_with_as_many_lanes_as_workers_were_busy() {
        let segments = vec![
            seg(1, None, None, None, Some(0.2)),
            seg(2, Some(0.2), Some(0.2), Some(1.0), Some(1.1)),
            seg(3, Some(0.3), Some(0.3), Some(1.2), Some(1.3)),
            // Waits until segment 2's worker is free at 1.1.
            seg(4, Some(0.4), Some(1.1), Some(2.0), Some(2.0)),
            seg(5, Some(0.5), Some(1.3), None, None),
        ];
        let lanes = lanes(&segments, 2.5);
        let groups: Vec<Group> = lanes.iter().map(|l| l.group).collect();
        assert_eq!(
            groups,
            [
                Group::Reader,
                Group::Waiting,
                Group::Waiting,
                Group::Workers,
                Group::Workers
            ]
        );
        assert_eq!(
            lanes[0].bars,
            vec![Bar {
                segment: 1,
                phase: Phase::Own,
                from: 0.0,
                to: 0.2
            }]
        );
        let segs = |l: &Lane| l.bars.iter().map(|b| b.segment).collect::<Vec<_>>();
        assert_eq!(segs(&lanes[3]), [2, 2, 4, 4]);
        assert_eq!(segs(&lanes[4]), [3, 3, 5]);
        assert_eq!(lanes[4].bars[2].phase, Phase::Unfinished);
        assert_eq!(lanes[4].bars[2].to, 2.5);
        // Waits: 2 and 3 took none; 4 waits 0.4 -> 1.1, 5 waits 0.5 -> 1.3 beside it.
        assert_eq!(segs(&lanes[1]), [4]);
        assert_eq!(segs(&lanes[2]), [5]);
    }

    #[test]
    fn the_chart_puts_each_phase_where_its_times_say() {
        let r = crate::domain::page::testing::report("g.gran");
        let svg = chart(&r);
        let root = &testing::elements(&svg, "svg")[0];
        assert_eq!(root.get("data-segments"), "5");
        assert_eq!(root.get("data-worker-lanes"), "2");
        // clavrxorb, two waits (segments 2 and 3 never waited), two workers.
        assert_eq!(root.get("data-lanes"), "5");
        let x0 = root.num("data-x0");
        let per = root.num("data-px-per-second");
        assert_eq!(per, (svg::WIDTH - svg::RIGHT - svg::LEFT) / 10.0);
        let rects: Vec<_> = testing::elements(&svg, "rect")
            .into_iter()
            .filter(|e| e.has_class("seg"))
            .collect();
        assert_eq!(rects.len(), 1 + 2 + 4 * 2);
        assert_eq!(root.get("data-bars"), rects.len().to_string());
        let times = |n: u32| r.segment_times.iter().find(|s| s.segment == n).unwrap();
        for rect in &rects {
            let seg = times(rect.get("data-segment").parse().unwrap());
            let (from, to) = match rect.get("data-phase") {
                "own" => (0.0, seg.written.unwrap()),
                "queued" => (seg.queued.unwrap(), seg.started.unwrap()),
                "processing" => (seg.started.unwrap(), seg.processed.unwrap()),
                "writing" => (seg.processed.unwrap(), seg.written.unwrap()),
                other => panic!("unexpected phase {other}"),
            };
            assert_eq!((rect.num("data-from"), rect.num("data-to")), (from, to));
            let x = rect.num("x");
            assert!((x - (x0 + from * per)).abs() < 0.01, "{rect:?}");
            let w = rect.num("width");
            assert!((w - ((to - from) * per).max(0.5)).abs() < 0.02, "{rect:?}");
        }
        // Segments 2 and 4 share worker 1's lane; 3 and 5 worker 2's.
        let y_of = |n: &str| {
            rects
                .iter()
                .find(|r| r.get("data-segment") == n && r.get("data-phase") == "processing")
                .unwrap()
                .num("y")
        };
        assert_eq!(y_of("2"), y_of("4"));
        assert_eq!(y_of("3"), y_of("5"));
        assert!(y_of("2") < y_of("3"));
        // Tooltips name the segment and its pid.
        assert!(svg.contains("<title>segment 4: waiting for a worker, 2.00 s (2.00 s to 4.00 s)\npid 1004, 100 lines</title>"), "{svg}");
    }
}
