//! The page: picks the granules to detail, reads their reports, and fills the embedded Tera
//! template (`page.html.tera`) with the facts, tables and charts. Text goes through Tera's
//! HTML escaping; only the SVG built (and escaped) by `svg.rs` is inserted as is.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use tera::{Context, Tera};

use super::aggregate::{self, Aggregate};
use super::load::{Entry, Loaded};
use super::{Options, RenderError, Rendered, charts, fmt, segment_chart};
use crate::base::parallel::parallel_map;
use crate::domain::plan;
use crate::domain::reports::{self, GranuleReport};

const TEMPLATE: &str = include_str!("page.html.tera");

#[derive(Serialize)]
struct Fact {
    label: String,
    value: String,
}

fn fact(label: &str, value: impl Into<String>) -> Fact {
    Fact {
        label: label.into(),
        value: value.into(),
    }
}

#[derive(Serialize)]
struct CountBox {
    label: &'static str,
    value: String,
    alarm: bool,
}

#[derive(Serialize)]
struct Legend {
    class: &'static str,
    label: String,
}

fn legend(class: &'static str, label: impl Into<String>) -> Legend {
    Legend {
        class,
        label: label.into(),
    }
}

#[derive(Serialize)]
struct Chart {
    title: String,
    caption: String,
    legend: Vec<Legend>,
    svg: String,
}

#[derive(Serialize)]
struct SlowRow {
    rank: usize,
    name: String,
    anchor: Option<String>,
    status: &'static str,
    wall: String,
    wall_seconds: f64,
    segments: String,
    peak: String,
    workers: String,
    host: String,
}

#[derive(Serialize)]
struct FailedRow {
    name: String,
    anchor: Option<String>,
    status: &'static str,
    kind: String,
    attempts: u32,
    error: String,
    host: String,
    ended: String,
}

#[derive(Serialize)]
struct Detail {
    anchor: String,
    name: String,
    status: &'static str,
    why: String,
    facts: Vec<Fact>,
    error: Option<String>,
    note: Option<String>,
    charts: Vec<Chart>,
}

#[derive(Serialize)]
struct Page {
    title: String,
    source: String,
    generated: String,
    granules: usize,
    done: usize,
    failed: usize,
    interrupted: usize,
    running: usize,
    pending: usize,
    boxes: Vec<CountBox>,
    facts: Vec<Fact>,
    charts: Vec<Chart>,
    slowest: Vec<SlowRow>,
    failed_rows: Vec<FailedRow>,
    failed_more: usize,
    details: Vec<Detail>,
    warnings: Vec<String>,
}

/// Why a granule is detailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The page's only granule.
    Only,
    Asked,
    Slow(usize),
    Failed,
}

/// Builds the page for `loaded`.
pub fn build(path: &Path, loaded: &Loaded, options: &Options) -> Result<Rendered, RenderError> {
    let entries = &loaded.entries;
    let summary = aggregate::summarize(entries, options.slowest.max(options.details));
    let picked = pick(entries, &summary, options)?;
    let mut warnings = load_warnings(loaded);
    let reports = read_reports(loaded, &picked.wanted, &mut warnings);
    let anchors: HashMap<usize, String> = picked
        .details
        .iter()
        .enumerate()
        .map(|(n, (i, _))| (*i, anchor(n, &entries[*i].name)))
        .collect();

    let single = entries.len() == 1;
    let details: Vec<Detail> = picked
        .details
        .iter()
        .map(|&(i, why)| {
            let why = if single { Why::Only } else { why };
            detail(
                &entries[i],
                why,
                &anchors[&i],
                reports.read.get(&i),
                reports.missing.get(&i),
            )
        })
        .collect();
    let slowest = picked
        .slow_rows
        .iter()
        .enumerate()
        .map(|(n, &i)| slow_row(n + 1, &entries[i], anchors.get(&i), reports.read.get(&i)))
        .collect();
    let failed_rows = summary
        .failed
        .iter()
        .take(options.failed_rows)
        .map(|&i| failed_row(&entries[i], anchors.get(&i)))
        .collect();

    let c = &summary.counts;
    let page = Page {
        title: if single {
            format!("pseg report: {}", entries[0].name)
        } else {
            format!("pseg report: {}", path.display())
        },
        source: source_line(path, loaded),
        generated: fmt::utc(crate::base::time::unix_now()),
        granules: c.granules,
        done: c.done,
        failed: c.failed,
        interrupted: c.interrupted,
        running: c.running,
        pending: c.pending,
        boxes: count_boxes(c),
        facts: if single { Vec::new() } else { facts(&summary) },
        charts: {
            let mut charts = if single {
                Vec::new()
            } else {
                campaign_charts(&summary)
            };
            charts.extend(plan_chart(&reports.read));
            charts
        },
        slowest: if single { Vec::new() } else { slowest },
        failed_more: summary.failed.len().saturating_sub(options.failed_rows),
        failed_rows: if single { Vec::new() } else { failed_rows },
        details,
        warnings: warnings.clone(),
    };
    Ok(Rendered {
        html: fill_template(&page)?,
        granules: c.granules,
        details: page.details.len(),
        warnings,
    })
}

/// The granules a page shows, by index into the entries.
struct Picked {
    /// Drawn in detail, in page order, with why.
    details: Vec<(usize, Why)>,
    /// The rows of the slowest table.
    slow_rows: Vec<usize>,
    /// Those whose report the details and tables need.
    wanted: Vec<usize>,
}

/// Picks the granules to detail: those asked for by name, then the slowest, then failed ones.
fn pick(entries: &[Entry], summary: &Aggregate, options: &Options) -> Result<Picked, RenderError> {
    let by_name: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut picked: Vec<(usize, Why)> = Vec::new();
    let mut seen = HashSet::new();
    for name in &options.granules {
        let Some(&i) = by_name.get(name.as_str()) else {
            return Err(unknown(name, entries));
        };
        if seen.insert(i) {
            picked.push((i, Why::Asked));
        }
    }
    for (rank, &i) in summary.slowest.iter().take(options.details).enumerate() {
        if seen.insert(i) {
            picked.push((i, Why::Slow(rank + 1)));
        }
    }
    for &i in summary.failed.iter().take(options.failed_details) {
        if seen.insert(i) {
            picked.push((i, Why::Failed));
        }
    }
    let slow_rows: Vec<usize> = summary
        .slowest
        .iter()
        .take(options.slowest)
        .copied()
        .collect();
    let mut wanted: Vec<usize> = picked.iter().map(|p| p.0).collect();
    wanted.extend(slow_rows.iter().filter(|i| !seen.contains(i)));
    Ok(Picked {
        details: picked,
        slow_rows,
        wanted,
    })
}

/// The page's warnings about the input: unreadable files, clamped values.
fn load_warnings(loaded: &Loaded) -> Vec<String> {
    let mut warnings: Vec<String> = loaded
        .unreadable
        .iter()
        .take(20)
        .map(|(p, why)| format!("cannot read {}: {why}", p.display()))
        .collect();
    if loaded.unreadable.len() > 20 {
        warnings.push(format!(
            "... and {} more unreadable files",
            loaded.unreadable.len() - 20
        ));
    }
    warnings.extend(loaded.clamped.iter().take(20).cloned());
    warnings
}

/// The reports of the wanted granules, and why the others have none.
struct Reports {
    read: HashMap<usize, GranuleReport>,
    missing: HashMap<usize, String>,
}

/// Reads the reports of `wanted` in parallel; what cannot be read adds a warning.
fn read_reports(loaded: &Loaded, wanted: &[usize], warnings: &mut Vec<String>) -> Reports {
    let entries = &loaded.entries;
    let read = parallel_map(wanted, |&i| loaded.report(&entries[i]));
    let mut reports = Reports {
        read: HashMap::new(),
        missing: HashMap::new(),
    };
    for (i, r) in wanted.iter().zip(read) {
        match r {
            Some(Ok(r)) => {
                let clamped = r
                    .error
                    .as_deref()
                    .filter(|e| e.contains(super::load::CLAMPED));
                if let Some(note) = clamped.filter(|_| loaded.single.is_none()) {
                    warnings.push(note.to_string());
                }
                reports.read.insert(*i, r);
            }
            Some(Err(why)) => {
                warnings.push(format!(
                    "cannot read the report of {}: {why}",
                    entries[*i].name
                ));
                reports
                    .missing
                    .insert(*i, format!("its report cannot be read: {why}"));
            }
            None => {
                reports.missing.insert(*i, "it has no report".into());
            }
        }
    }
    reports
}

/// Fills the template with `page`.
fn fill_template(page: &Page) -> Result<String, RenderError> {
    let mut tera = Tera::default();
    tera.add_raw_template("report.html", TEMPLATE)
        .map_err(RenderError::Template)?;
    let context = Context::from_serialize(page).map_err(RenderError::Template)?;
    tera.render("report.html", &context)
        .map_err(RenderError::Template)
}

fn unknown(name: &str, entries: &[Entry]) -> RenderError {
    let close: Vec<&str> = entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.contains(name) || name.contains(n))
        .take(3)
        .collect();
    RenderError::UnknownGranule {
        name: name.to_string(),
        hint: if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        },
    }
}

/// An HTML id for a detailed granule.
fn anchor(n: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    format!("g{n}-{clean}")
}

fn source_line(path: &Path, l: &Loaded) -> String {
    if l.single.is_some() {
        return format!("the report {}", path.display());
    }
    let mut parts = Vec::new();
    if let Some(state) = &l.state_dir {
        parts.push(format!(
            "{} ledger records in {}",
            fmt::count(l.from_ledger as f64),
            state.display()
        ));
    }
    if let Some(dir) = &l.reports_dir {
        parts.push(format!(
            "{} report files in {}{}",
            fmt::count(l.report_files as f64),
            dir.display(),
            if l.from_reports > 0 {
                format!(
                    " ({} granules known only from their report)",
                    fmt::count(l.from_reports as f64)
                )
            } else {
                String::new()
            }
        ));
    }
    parts.join("; ")
}

fn count_boxes(c: &aggregate::Counts) -> Vec<CountBox> {
    let mut boxes = Vec::new();
    for (label, n, alarm, always) in [
        ("granules", c.granules, false, true),
        ("done", c.done, false, true),
        ("failed", c.failed, c.failed > 0, true),
        ("interrupted", c.interrupted, true, false),
        ("running", c.running, false, false),
        ("pending", c.pending, false, false),
    ] {
        if always || n > 0 {
            boxes.push(CountBox {
                label,
                value: fmt::count(n as f64),
                alarm,
            });
        }
    }
    boxes
}

fn facts(s: &Aggregate) -> Vec<Fact> {
    let c = &s.counts;
    let mut f = Vec::new();
    if let Some(t) = &s.throughput {
        f.push(fact("first start", fmt::utc(t.t0)));
        f.push(fact("span", fmt::seconds(t.span)));
        if t.span > 0.0 {
            let per_hour = c.done as f64 / t.span * 3600.0;
            f.push(fact("done per hour", fmt::count(per_hour.round())));
        }
        f.push(fact(
            "most running at once",
            fmt::count(t.peak_running as f64),
        ));
    }
    if let (Some(mean), Some(median)) = (s.wall_mean, s.wall_median) {
        f.push(fact(
            "wall time per granule",
            format!(
                "median {}, mean {}",
                fmt::seconds(median),
                fmt::seconds(mean)
            ),
        ));
    }
    if let Some(g) = &s.gaps {
        f.push(fact(
            "gap between granules in one pseg-step",
            format!(
                "median {}, 95% {}, max {} ({} gaps)",
                fmt::seconds(g.median),
                fmt::seconds(g.p95),
                fmt::seconds(g.max),
                fmt::count(g.count as f64)
            ),
        ));
    }
    if !s.failure_kinds.is_empty() {
        let kinds: Vec<String> = s
            .failure_kinds
            .iter()
            .map(|(k, n)| format!("{k} {}", fmt::count(*n as f64)))
            .collect();
        f.push(fact("failures by kind", kinds.join(", ")));
    }
    if s.hosts > 0 {
        f.push(fact("hosts", fmt::count(s.hosts as f64)));
    }
    f
}

fn campaign_charts(s: &Aggregate) -> Vec<Chart> {
    let mut out = Vec::new();
    if let Some(t) = &s.throughput {
        out.push(Chart {
            title: format!(
                "Throughput: granules finished per {}",
                fmt::seconds_tick(t.bin, t.bin)
            ),
            caption: format!(
                "From each granule's end time; the campaign started {}.",
                fmt::utc(t.t0)
            ),
            legend: vec![
                legend("done", "done"),
                legend("failed", "failed or interrupted"),
            ],
            svg: charts::finished(t),
        });
        out.push(Chart {
            title: "Granules running at once".into(),
            caption: format!(
                "The most granules between start and end at any moment of each {} bin: \
                 drops are stalls or jobs waiting in the queue.",
                fmt::seconds_tick(t.bin, t.bin)
            ),
            legend: vec![legend("running", "granules running")],
            svg: charts::running(t),
        });
    }
    if let Some(h) = &s.wall {
        out.push(Chart {
            title: "Wall time per granule".into(),
            caption: format!(
                "How many finished granules took how long, in bins of {}: from the start of \
                 their latest attempt to its end as the ledger recorded it (outputs published), \
                 or their report's wall time.",
                fmt::seconds_tick(h.bin, h.bin)
            ),
            legend: vec![legend("walls", "granules")],
            svg: charts::walls(h),
        });
    }
    out
}

/// What more CPUs would buy, projected from the granules whose reports the page read.
fn plan_chart(reports: &HashMap<usize, GranuleReport>) -> Option<Chart> {
    let mut read: Vec<(&usize, &GranuleReport)> = reports.iter().collect();
    read.sort_by_key(|(i, _)| **i);
    let works: Vec<plan::work::GranuleWork> = read
        .iter()
        .filter_map(|(_, r)| plan::work::GranuleWork::from_report(r).ok())
        .collect();
    if works.is_empty() {
        return None;
    }
    let p = plan::project(&works, &plan::DEFAULT_CPUS, None).ok()?;
    Some(Chart {
        title: "How many cores? Projected speedup per CPU count".into(),
        caption: format!(
            "`pseg-slurm plan` replaying {} granule report(s) read for this page (for a \
             campaign, the slowest), measured on {} CPU(s): each bar's tooltip has the wall \
             time, efficiency and core-hours per 1000 granules. `pseg-slurm plan --profile \
             DIR` prints the table.",
            p.granules, p.measured_cpus
        ),
        legend: vec![
            legend("plan-one", "one granule at a time"),
            legend(
                "plan-overlap",
                format!("{} granules in flight, sharing the CPUs", p.in_flight),
            ),
        ],
        svg: charts::plan(&p),
    })
}

fn slow_row(rank: usize, e: &Entry, anchor: Option<&String>, r: Option<&GranuleReport>) -> SlowRow {
    // The figure the rows are ranked by (the ledger's, as for the wall-time chart): a report's
    // own wall time leaves out claiming and publishing, and could contradict the order.
    let wall = e.wall().or(r.map(|r| r.wall_seconds)).unwrap_or(0.0);
    SlowRow {
        rank,
        name: e.name.clone(),
        anchor: anchor.cloned(),
        status: e.status.name(),
        wall: fmt::seconds(wall),
        wall_seconds: wall,
        segments: r.map_or("-".into(), |r| {
            format!("{} ({} lines)", r.segments, fmt::count(r.lines as f64))
        }),
        peak: r.map_or("-".into(), |r| fmt::size(r.memory.peak_bytes)),
        workers: r.map_or("-".into(), |r| {
            format!("{} of {}", r.workers.max_busy, r.workers.cap)
        }),
        host: e.host.clone().unwrap_or_default(),
    }
}

fn failed_row(e: &Entry, anchor: Option<&String>) -> FailedRow {
    FailedRow {
        name: e.name.clone(),
        anchor: anchor.cloned(),
        status: e.status.name(),
        kind: e.kind.clone().unwrap_or_default(),
        attempts: e.attempts,
        error: e.error.clone().unwrap_or_default(),
        host: e.host.clone().unwrap_or_default(),
        ended: e.ended.map(fmt::utc).unwrap_or_default(),
    }
}

fn detail(
    e: &Entry,
    why: Why,
    anchor: &str,
    r: Option<&GranuleReport>,
    missing: Option<&String>,
) -> Detail {
    let why = why_text(why);
    let Some(r) = r else {
        return Detail {
            anchor: anchor.into(),
            name: e.name.clone(),
            status: e.status.name(),
            why,
            facts: Vec::new(),
            error: e.error.clone(),
            note: Some(format!(
                "Nothing to draw: {}.",
                missing.map_or("it has no report", |m| m.as_str())
            )),
            charts: Vec::new(),
        };
    };
    Detail {
        anchor: anchor.into(),
        name: r.name.clone(),
        status: e.status.name(),
        why,
        facts: granule_facts(r),
        error: r.error.clone().or_else(|| e.error.clone()),
        note: None,
        charts: granule_charts(r),
    }
}

/// Why a granule is detailed, as its heading says it.
fn why_text(why: Why) -> String {
    match why {
        Why::Only => String::new(),
        Why::Asked => "asked for".to_string(),
        Why::Slow(1) => "the slowest".to_string(),
        Why::Slow(n) => format!("slowest #{n}"),
        Why::Failed => "a recent failure".to_string(),
    }
}

/// The facts of one granule's run: times, segments, workers, memory, where it ran.
fn granule_facts(r: &GranuleReport) -> Vec<Fact> {
    let w = &r.workers;
    let m = &r.memory;
    let mut facts = vec![
        fact("wall", fmt::seconds(r.wall_seconds)),
        fact("CPU", fmt::seconds(r.cpu_seconds)),
        fact(
            "segments",
            format!(
                "{} of {} lines ({} lines)",
                r.segments,
                r.scan_lines,
                fmt::count(r.lines as f64)
            ),
        ),
        fact(
            "workers",
            format!(
                "up to {} of {} (bound by {})",
                w.max_busy, w.cap, w.bound_by
            ),
        ),
        fact(
            "wait for a worker",
            format!(
                "mean {}, max {}",
                fmt::seconds(w.ready_wait_mean_seconds),
                fmt::seconds(w.ready_wait_max_seconds)
            ),
        ),
        fact("memory peak", fmt::size(m.peak_bytes)),
        fact(
            "summed PSS / RSS peak",
            format!(
                "{} / {}",
                fmt::size(m.pss_peak_bytes),
                fmt::size(m.rss_peak_bytes)
            ),
        ),
        fact(
            "one worker's private peak",
            format!(
                "{} sampled / {} high-water mark",
                fmt::size(m.worker_private_peak_bytes),
                fmt::size(m.worker_private_hwm_bytes)
            ),
        ),
    ];
    if let Some(held) = &m.held_by {
        facts.push(fact("memory held workers back", held.clone()));
    }
    for retry in &r.oom_retries {
        facts.push(fact(
            "redone after an OOM kill",
            format!(
                "{} worker(s) at once under a cap of {}: {}",
                retry.max_busy, retry.cap, retry.error
            ),
        ));
    }
    if let Some(l) = m.limit_bytes {
        facts.push(fact(
            "memory limit",
            format!(
                "{} ({})",
                fmt::size(l),
                m.limit_source.as_deref().unwrap_or("unknown source")
            ),
        ));
    }
    facts.push(fact("started", fmt::utc(r.started_unix)));
    let mut host = r.host.clone();
    if let Some(job) = r.slurm.as_ref().and_then(|s| {
        s.array_job_id
            .as_ref()
            .zip(s.array_task_id.as_ref())
            .map(|(a, t)| format!("{a}_{t}"))
            .or_else(|| s.job_id.clone())
    }) {
        host.push_str(&format!(", Slurm job {job}"));
    }
    facts.push(fact("host", host));

    facts
}

/// The memory chart's legend: which lines are drawn, and why a cgroup line is not.
fn memory_legend(m: &reports::Memory) -> Vec<Legend> {
    let cgroup_label = match &m.cgroup {
        Some(cg) => match &cg.limit_at {
            Some(at) => format!("cgroup usage ({})", at.display()),
            None => format!("cgroup usage ({})", cg.dir.display()),
        },
        None => "cgroup usage".into(),
    };
    let mut memory_legend = vec![legend("pss", "PSS summed over clavrxorb and its clones")];
    if m.pss_peak_bytes > charts::memory_scale(m).pss_max {
        memory_legend.push(legend(
            "pss-peak",
            "its peak over every sample (timed and at the waitpoints where memory peaks)",
        ));
    }
    let scale = charts::memory_scale(m);
    if scale.cgroup_drawn {
        memory_legend.push(legend("cgroup", cgroup_label));
    } else if scale.cgroup_max > 0 {
        memory_legend.push(legend(
            "plain",
            format!(
                "{cgroup_label}, {} to {}: over {}x the processes' sum, so not drawn (the cgroup \
                 holds more than this granule)",
                fmt::size(scale.cgroup_min),
                fmt::size(scale.cgroup_max),
                charts::FAR
            ),
        ));
    }
    if scale.cgroup_max == 0
        && let Some(note) = &m.cgroup_note
    {
        memory_legend.push(legend("plain", format!("no cgroup line: {note}")));
    }
    if scale.limit_drawn {
        memory_legend.push(legend("limit", "the limit admission works against"));
    }
    memory_legend
}

/// One granule's charts: segments per worker, workers busy, memory.
fn granule_charts(r: &GranuleReport) -> Vec<Chart> {
    let memory_legend = memory_legend(&r.memory);
    vec![
        Chart {
            title: "Segments per worker".into(),
            caption: "Each lane is one worker slot (or clavrxorb itself); hover a bar for its \
                      segment, pid and times."
                .into(),
            legend: vec![
                legend(
                    "own",
                    "clavrxorb's own first segment (read, processed, written)",
                ),
                legend("queued", "read, waiting for a worker"),
                legend("processing", "processing"),
                legend(
                    "writing",
                    "waiting for the write lock + writing (processed to written: the report cannot split them)",
                ),
                legend("unfinished", "unfinished when the granule ended"),
            ],
            svg: segment_chart::chart(r),
        },
        Chart {
            title: "Workers busy".into(),
            caption: "Clones processing or writing at each moment, against the cap.".into(),
            legend: vec![legend("busy", "workers busy"), legend("cap", "cap")],
            svg: charts::busy(r),
        },
        Chart {
            title: "Memory".into(),
            caption: "What the processes add up to (PSS counts shared pages once) against what \
                      the kernel charges the cgroup, sampled on a timer."
                .into(),
            legend: memory_legend,
            svg: charts::memory(r),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::page::testing::{self, elements};
    use crate::domain::page::{load, render};
    use crate::domain::reports;

    fn campaign() -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join(reports::DIR);
        let mut slow = testing::report("slow.gran");
        slow.wall_seconds = 20.0;
        let quick = testing::report("quick.gran");
        let mut bad = testing::report("bad <b>.gran");
        bad.status = reports::Verdict::Failed;
        bad.error = Some("clavrxorb clone (pid 7) was killed by signal 11 <SIGSEGV>".into());
        bad.wall_seconds = 3.0;
        for (i, r) in [slow, quick, bad].iter_mut().enumerate() {
            r.started_unix += 30.0 * i as f64;
            reports::write(&dir, &format!("{}{}", r.name, reports::SUFFIX), r).unwrap();
        }
        out
    }

    #[test]
    fn the_page_holds_the_counts_the_tables_and_the_chosen_details() {
        let out = campaign();
        let options = Options {
            details: 1,
            ..Options::default()
        };
        let page = render(out.path(), &options).unwrap();
        let html = &page.html;
        let main = &elements(html, "main")[0];
        assert_eq!(main.get("data-granules"), "3");
        assert_eq!(main.get("data-done"), "2");
        assert_eq!(main.get("data-failed"), "1");
        // The slowest, and the failed one.
        assert_eq!(main.get("data-details"), "2");
        let articles: Vec<String> = elements(html, "article")
            .iter()
            .map(|a| a.get("data-granule").to_string())
            .collect();
        assert_eq!(articles, ["slow.gran", "bad <b>.gran"]);
        let rows: Vec<(String, String)> = elements(html, "tr")
            .iter()
            .filter(|r| r.attrs.contains_key("data-wall-seconds"))
            .map(|r| {
                (
                    r.get("data-granule").into(),
                    r.get("data-wall-seconds").into(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("slow.gran".into(), "20".into()),
                ("quick.gran".into(), "10".into()),
                ("bad <b>.gran".into(), "3".into())
            ]
        );
        let failed = elements(html, "td")
            .into_iter()
            .find(|td| td.has_class("error"))
            .unwrap();
        assert_eq!(
            failed.text,
            "clavrxorb clone (pid 7) was killed by signal 11 <SIGSEGV>"
        );
        assert!(
            !html.contains("<b>.gran") && !html.contains("<SIGSEGV>"),
            "escaped"
        );
        assert_eq!(html.matches("data-chart=\"timeline\"").count(), 2);
        assert_eq!(html.matches("data-chart=\"finished\"").count(), 1);
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(
            !html.contains("src=") && !html.contains("href=\"http") && !html.contains("<link"),
            "nothing loaded from elsewhere"
        );
    }

    #[test]
    fn one_report_makes_a_page_about_its_granule_and_names_are_checked() {
        let out = campaign();
        let file = out.path().join(reports::DIR).join("quick.gran.pseg.yaml");
        let page = render(&file, &Options::default()).unwrap();
        assert_eq!(page.granules, 1);
        assert_eq!(page.details, 1);
        assert!(!page.html.contains("data-chart=\"finished\""));
        assert!(page.html.contains("<title>pseg report: quick.gran</title>"));
        let asked = Options {
            granules: vec!["quick".into()],
            ..Options::default()
        };
        let e = render(out.path(), &asked).unwrap_err().to_string();
        assert_eq!(
            e,
            "no granule named \"quick\" in this campaign (did you mean quick.gran?)"
        );
        let loaded = load::load(out.path()).unwrap();
        let asked = Options {
            granules: vec!["quick.gran".into()],
            details: 0,
            failed_details: 0,
            ..Options::default()
        };
        let page = build(out.path(), &loaded, &asked).unwrap();
        assert_eq!(page.details, 1);
        assert!(page.html.contains("asked for"));
    }

    #[test]
    fn a_granule_redone_after_an_oom_kill_says_so_with_what_held_memory() {
        let out = tempfile::tempdir().unwrap();
        let mut r = testing::report("redone.gran");
        r.memory.held_by = Some("80 MiB a worker (first-segment estimate)".into());
        r.oom_retries.push(reports::OomRetry {
            cap: 2,
            max_busy: 2,
            wall_seconds: 1.0,
            error: "clavrxorb clone (pid 9) was killed by signal 9 (SIGKILL) on segment 2".into(),
        });
        let file =
            reports::write(&out.path().join(reports::DIR), "redone.gran.pseg.yaml", &r).unwrap();
        let html = render(&file, &Options::default()).unwrap().html;
        assert!(html.contains("redone after an OOM kill"), "{html}");
        assert!(html.contains("2 worker(s) at once under a cap of 2: clavrxorb clone (pid 9)"));
        assert!(html.contains("80 MiB a worker (first-segment estimate)"));
    }
}
