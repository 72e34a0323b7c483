//! Seeing a run: `pseg-slurm report` drawn from a real run against the mock and checked
//! against the reports it came from, rendered in headless Chromium, kept fast for large
//! campaigns; and pseg-step's live progress bar on a terminal.
//!
//! The page is read back with a small tag reader (every attribute the page writes is
//! double-quoted and escaped). Chromium is Debian's `chromium` (ci/install-deps.sh); without
//! it the browser test skips loudly, and under `CI=true` a skip is a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use assert_cmd::cargo::cargo_bin;
use pseg_slurm::domain::ledger::{Ledger, Record, STATE_DIR, Status, key, record::one_line};

use crate::support::{Case, Link, require, text};

#[path = "../../src/domain/page/markup.rs"]
mod markup;
use markup::{Element, elements};

/// The markup of every `<article>` (one per granule drawn in detail), by granule.
fn articles(html: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (at, _) in html.match_indices("<article ") {
        let end = html[at..].find("</article>").unwrap() + at;
        let part = &html[at..end];
        let name = elements(part, "article")[0].get("data-granule").to_string();
        out.insert(name, part.to_string());
    }
    out
}

/// The `<svg>` of chart `name` in `markup`.
fn chart<'a>(markup: &'a str, name: &str) -> &'a str {
    let at = markup
        .find(&format!("data-chart=\"{name}\""))
        .unwrap_or_else(|| panic!("no chart {name}"));
    let start = markup[..at].rfind("<svg").unwrap();
    let end = markup[at..].find("</svg>").unwrap() + at + "</svg>".len();
    &markup[start..end]
}

/// `pseg-slurm report`; the caller adds the arguments.
fn report_cmd() -> Command {
    let mut cmd = Command::new(cargo_bin!("pseg-slurm"));
    cmd.arg("report");
    cmd
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    out
}

/// A real run: two good granules and one whose clone segfaults on segment 3, sampled
/// often so the memory series has points.
fn real_run() -> Case {
    let case = Case::new(Link::Pie);
    case.granule("a.gran", 200, &["--work", "20000", "--work-mem", "4096"]);
    case.granule("bad.gran", 100, &["--fault", "clone-segv:3"]);
    case.granule("c.gran", 120, &["--work", "20000"]);
    case.list(&["a.gran", "bad.gran", "c.gran"]);
    case.options(20);
    let out = case
        .step("out")
        .args(["--sample-interval", "0.02", "--max-workers", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    case
}

/// `pseg-slurm report out -o page.html`, the page's text.
fn page(case: &Case) -> String {
    let out = ok(report_cmd()
        .arg(case.path("out"))
        .arg("-o")
        .arg(case.path("page.html"))
        .output()
        .unwrap());
    let err = text(&out.stderr);
    assert!(err.contains("(3 granule(s), 3 drawn in detail)"), "{err}");
    std::fs::read_to_string(case.path("page.html")).unwrap()
}

#[test]
fn the_page_matches_the_reports_it_was_drawn_from() {
    let case = real_run();
    let html = page(&case);
    let main = &elements(&html, "main")[0];
    assert_eq!(
        ["data-granules", "data-done", "data-failed"].map(|k| main.get(k)),
        ["3", "2", "1"]
    );
    let finished = &elements(chart(&html, "finished"), "svg")[0];
    assert_eq!(finished.get("data-finished"), "3");
    assert_eq!(finished.get("data-failed"), "1");

    // The slowest table: every row's wall time is its ledger record's (from the start of its
    // attempt to its outputs published), slowest first.
    let rows: Vec<Element> = elements(&html, "tr")
        .into_iter()
        .filter(|r| r.attrs.contains_key("data-wall-seconds"))
        .collect();
    assert_eq!(rows.len(), 3);
    let walls: Vec<f64> = rows.iter().map(|r| r.num("data-wall-seconds")).collect();
    let ledger = Ledger::open_existing(&case.path("out/pseg-state")).unwrap();
    for row in &rows {
        let name = row.get("data-granule");
        let r = ledger.record(name).unwrap().unwrap();
        let wall = r.ended.unwrap() - r.started.or(r.claimed).unwrap();
        assert_eq!(row.num("data-wall-seconds"), wall, "{name}");
    }
    assert!(walls.windows(2).all(|w| w[0] >= w[1]), "{walls:?}");

    // The failed table: the one-line error the ledger holds, from the report's message.
    let bad = case.report("out", "bad.gran");
    let error_cell = elements(&html, "td")
        .into_iter()
        .find(|td| td.has_class("error"))
        .expect("a failed row");
    assert_eq!(error_cell.text, one_line(bad["error"].as_str().unwrap()));
    assert!(error_cell.text.contains("SIGSEGV"), "{}", error_cell.text);

    let details = articles(&html);
    assert_eq!(details.len(), 3);
    for (name, part) in &details {
        let report = case.report("out", name);
        check_timeline(name, part, &report);
        check_busy(name, part, &report);
        check_memory(name, part, &report);
    }
    assert!(details["bad.gran"].contains("class=\"seg unfinished\""));
}

/// Every bar sits where its report's times put it, and done granules have exactly the bars
/// their segments make.
fn check_timeline(name: &str, part: &str, report: &serde_yaml::Value) {
    let svg = chart(part, "timeline");
    let root = &elements(svg, "svg")[0];
    let x0 = root.num("data-x0");
    let per = root.num("data-px-per-second");
    let segments = report["segment_times"].as_sequence().unwrap();
    assert_eq!(root.get("data-segments"), segments.len().to_string());
    let bars: Vec<Element> = elements(svg, "rect")
        .into_iter()
        .filter(|e| e.has_class("seg"))
        .collect();
    assert_eq!(root.get("data-bars"), bars.len().to_string(), "{name}");
    let times: HashMap<u64, &serde_yaml::Value> = segments
        .iter()
        .map(|s| (s["segment"].as_u64().unwrap(), s))
        .collect();
    let at = |s: &serde_yaml::Value, k: &str| s[k].as_f64();
    for bar in &bars {
        let s = times[&bar.get("data-segment").parse::<u64>().unwrap()];
        let (from, to) = (bar.num("data-from"), bar.num("data-to"));
        let expect = match bar.get("data-phase") {
            "own" => Some((0.0, at(s, "written").unwrap())),
            "queued" => Some((at(s, "queued").unwrap(), at(s, "started").unwrap())),
            "processing" => Some((at(s, "started").unwrap(), at(s, "processed").unwrap())),
            "writing" => Some((at(s, "processed").unwrap(), at(s, "written").unwrap())),
            _ => None,
        };
        if let Some(expect) = expect {
            assert_eq!((from, to), expect, "{name}: {bar:?}");
        }
        assert!(
            (bar.num("x") - (x0 + from * per)).abs() < 0.011,
            "{name}: {bar:?}"
        );
        let width = ((to - from) * per).max(0.5);
        assert!((bar.num("width") - width).abs() < 0.021, "{name}: {bar:?}");
    }
    if report["status"].as_str() == Some("done") {
        // One bar for clavrxorb's own segment, processing and writing for every other,
        // and a wait wherever a segment waited a millisecond or more.
        let waits = segments
            .iter()
            .filter(|s| match (at(s, "queued"), at(s, "started")) {
                (Some(q), Some(st)) => st - q >= 0.001,
                _ => false,
            })
            .count();
        assert_eq!(bars.len(), 1 + 2 * (segments.len() - 1) + waits, "{name}");
        assert_eq!(
            root.get("data-worker-lanes"),
            report["workers"]["max_busy"].as_u64().unwrap().to_string(),
            "{name}: as many worker lanes as workers were busy at once"
        );
    }
}

fn check_busy(name: &str, part: &str, report: &serde_yaml::Value) {
    let root = &elements(chart(part, "busy"), "svg")[0];
    let series = report["workers"]["busy_over_time"].as_sequence().unwrap();
    let max = series.iter().map(|p| p[1].as_u64().unwrap()).max().unwrap();
    assert_eq!(root.get("data-max-busy"), max.to_string(), "{name}");
    assert_eq!(root.get("data-points"), series.len().to_string(), "{name}");
    assert_eq!(
        root.get("data-cap"),
        report["workers"]["cap"].as_u64().unwrap().to_string()
    );
}

fn check_memory(name: &str, part: &str, report: &serde_yaml::Value) {
    let svg = chart(part, "memory");
    let root = &elements(svg, "svg")[0];
    let m = &report["memory"];
    assert_eq!(
        root.get("data-peak-bytes"),
        m["peak_bytes"].as_u64().unwrap().to_string(),
        "{name}"
    );
    assert_eq!(
        root.get("data-pss-peak-bytes"),
        m["pss_peak_bytes"].as_u64().unwrap().to_string()
    );
    let Some(series) = m["over_time"].as_sequence() else {
        // A granule that failed before the first timed sample.
        assert_ne!(
            report["status"].as_str(),
            Some("done"),
            "{name}: sampled every 20 ms"
        );
        assert_eq!(root.get("data-points"), "0");
        assert!(svg.contains("no memory over time in this report"));
        return;
    };
    let pss_max = series.iter().map(|p| p[1].as_u64().unwrap()).max().unwrap();
    assert_eq!(root.get("data-series-pss-max"), pss_max.to_string());
    assert_eq!(root.get("data-points"), series.len().to_string());
    assert!(pss_max <= m["pss_peak_bytes"].as_u64().unwrap());
    let line = elements(svg, "polyline")
        .into_iter()
        .find(|l| l.has_class("pss-line"))
        .unwrap();
    assert_eq!(line.get("points").split(' ').count(), series.len());
    // The page prints the peak in binary units.
    assert!(
        part.contains(
            &pseg_slurm::base::units::Size(m["peak_bytes"].as_u64().unwrap()).to_string()
        ),
        "{name}"
    );
}

#[test]
fn one_report_file_makes_a_page_and_mistakes_are_explained() {
    let case = real_run();
    let out = ok(report_cmd()
        .arg(case.path("out/pseg-reports/a.gran.pseg.yaml"))
        .args(["-o", "-"])
        .output()
        .unwrap());
    let html = text(&out.stdout);
    assert_eq!(articles(&html).len(), 1);
    assert!(!html.contains("data-chart=\"finished\""));

    let missing = report_cmd().arg(case.path("nowhere")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("does not exist"),
        "{}",
        text(&missing.stderr)
    );
    let empty = report_cmd().arg(case.path("data")).output().unwrap();
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        text(&empty.stderr).contains("holds no reports"),
        "{}",
        text(&empty.stderr)
    );
    let unknown = report_cmd()
        .arg(case.path("out"))
        .args(["--granule", "zzz", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no granule named \"zzz\""));
    // The default output file, in the current folder.
    ok(report_cmd()
        .arg("out")
        .current_dir(case.dir.path())
        .output()
        .unwrap());
    assert!(case.path("pseg-report.html").is_file());
}

/// Chromium, if installed; `None` skips loudly (a failure under CI).
fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|c| which::which(c).ok());
    let met = require(
        test,
        found.is_some(),
        "no chromium here; install it: bash ci/install-deps.sh (as root), or apt-get install \
         chromium",
    );
    if met { found } else { None }
}

/// Chromium headless on `page` with `args`; its output. A fresh profile each time, nothing
/// from the network.
fn run_chromium(chromium: &Path, page: &Path, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// Messages the page's console got (errors, uncaught exceptions, failed loads).
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// Width and height of a PNG, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Where CI keeps the screenshot: `target/report-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("report-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn chromium_renders_the_page_without_errors() {
    let test = "report_html::chromium_renders_the_page_without_errors";
    let Some(chromium) = chromium(test) else {
        return;
    };
    let case = real_run();
    let html = page(&case);

    // The check itself: a page with a script error is caught.
    let broken = case.path("broken.html");
    std::fs::write(&broken, "<!DOCTYPE html><p>x</p><script>nope();</script>").unwrap();
    let out = run_chromium(&chromium, &broken, &["--dump-dom"]);
    assert!(
        !console_messages(&text(&out.stderr)).is_empty(),
        "chromium's console is not visible in its stderr:\n{}",
        text(&out.stderr)
    );

    // The page renders: no console message at all (it has no script), a real screenshot.
    let shot = artifacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        &chromium,
        &case.path("page.html"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2000",
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{err}");
    assert_eq!(console_messages(&err), Vec::<&str>::new(), "{err}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{err}"));
    assert_eq!(png_size(&png), (1400, 2000));
    // A blank 1400x2000 page compresses to a few KB; charts and text do not.
    assert!(
        png.len() > 40_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    eprintln!("report_html: screenshot kept at {}", shot.display());

    // The DOM was built from all of it: read as XHTML (a strict XML parser), the page has
    // no error and every chart and table row the file has.
    let xhtml = case.path("page.xhtml");
    std::fs::write(&xhtml, &html).unwrap();
    let out = run_chromium(&chromium, &xhtml, &["--dump-dom"]);
    let dom = text(&out.stdout);
    assert!(!dom.contains("parsererror"), "not well-formed:\n{dom}");
    for needle in ["data-chart=", "<tr ", "<article "] {
        assert_eq!(
            dom.matches(needle).count(),
            html.matches(needle).count(),
            "{needle} in the DOM"
        );
    }
    // The campaign's three, plan's projection, three per detailed granule.
    assert_eq!(dom.matches("data-chart=").count(), 3 + 1 + 3 * 3);
}

/// A campaign of `n` synthetic granules: ledger records and realistic reports (28
/// segments, a busy series, a memory series), written in parallel. Every 50th failed.
fn synthetic_campaign(out: &Path, n: usize) {
    let reports = out.join("pseg-reports");
    std::fs::create_dir_all(&reports).unwrap();
    let template = synthetic_report();
    let threads = 8;
    std::thread::scope(|s| {
        for t in 0..threads {
            let template = &template;
            let reports = &reports;
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let name = format!("g{i:06}.gran");
                    let started = 1_700_000_000.0 + (i / 16) as f64 * 50.0;
                    let wall = 40.0 + (i * 7919 % 600) as f64 / 10.0;
                    let failed = i % 50 == 7;
                    let text = template
                        .replace("NAME_HERE", &name)
                        .replace("STATUS_HERE", if failed { "failed" } else { "done" })
                        .replace("1234567.0", &started.to_string())
                        .replace("76.5", &wall.to_string());
                    std::fs::write(reports.join(format!("{name}.pseg.yaml")), text).unwrap();
                    let mut r = Record::new(&name);
                    r.status = if failed { Status::Failed } else { Status::Done };
                    r.attempts = 1;
                    r.host = Some(format!("node{}", i % 16));
                    r.pid = Some(1000 + (i % 16) as u32);
                    r.first_started = Some(started);
                    r.started = Some(started);
                    r.ended = Some(started + wall);
                    if failed {
                        r.error = Some(format!(
                            "clavrxorb clone (pid {i}) was killed by signal 11 (SIGSEGV) on segment 3"
                        ));
                    }
                    let dir = out.join(STATE_DIR).join("records").join(key::shard(&name));
                    std::fs::create_dir_all(&dir).unwrap();
                    let mut line = serde_json::to_vec(&r).unwrap();
                    line.push(b'\n');
                    std::fs::write(dir.join(format!("{}.json", key::encode(&name))), line)
                        .unwrap();
                }
            });
        }
    });
}

/// A report as pseg-step writes one, with placeholders.
fn synthetic_report() -> String {
    let mut y = String::from(
        "schema: pseg-report/1\nkind: granule\ngranule: /data/NAME_HERE\nname: NAME_HERE\n\
         status: STATUS_HERE\nhost: node1\nstarted_unix: 1234567.0\nwall_seconds: 76.5\n\
         cpu_seconds: 290.0\nscan_lines: 200\nsegments: 28\nlines: 5600\nworkers:\n  cap: 4\n  \
         bound_by: cpus\n  max_busy: 4\n  busy_over_time:\n",
    );
    for i in 0..57 {
        y.push_str(&format!(
            "  - - {}\n    - {}\n",
            i as f64 * 1.3,
            [0, 1, 2, 3, 4, 3][i % 6]
        ));
    }
    y.push_str(
        "  ready_wait_mean_seconds: 0.4\n  ready_wait_max_seconds: 2.1\nmemory:\n  \
         peak_bytes: 7516192768\n  pss_peak_bytes: 7516192768\n  rss_peak_bytes: 12884901888\n  \
         parent_pss_peak_bytes: 2147483648\n  worker_private_peak_bytes: 1342177280\n  \
         limit_bytes: 17179869184\n  limit_source: SLURM_MEM_PER_NODE\n  samples: 300\n  \
         sample_interval_seconds: 0.25\n  over_time:\n",
    );
    for i in 0..300 {
        y.push_str(&format!(
            "  - - {}\n    - {}\n    - {}\n",
            i as f64 * 0.25,
            2_000_000_000u64 + (i as u64 % 40) * 100_000_000,
            3_000_000_000u64 + (i as u64 % 40) * 100_000_000
        ));
    }
    y.push_str("segment_times:\n");
    for s in 1..=28 {
        y.push_str(&format!(
            "- segment: {s}\n  pid: {}\n  lines: 200\n",
            5000 + s
        ));
        if s > 1 {
            let t = s as f64 * 2.5;
            y.push_str(&format!(
                "  queued: {}\n  started: {}\n  processed: {}\n",
                t,
                t + 0.5,
                t + 9.0
            ));
        }
        y.push_str(&format!("  written: {}\n", s as f64 * 2.5 + 9.2));
    }
    y
}

/// Renders `dir`, returning the page and the seconds it took (in-process: the figure is
/// the library's, the same as the binary's).
fn timed_render(dir: &Path) -> (pseg_slurm::domain::page::Rendered, f64) {
    let start = Instant::now();
    let page = pseg_slurm::domain::page::render(dir, &pseg_slurm::domain::page::Options::default())
        .unwrap();
    (page, start.elapsed().as_secs_f64())
}

/// The page of a large campaign stays the same size: bins, the N slowest, a capped list of
/// failures, not one element per granule.
fn check_large(page: &pseg_slurm::domain::page::Rendered, n: usize) {
    let html = &page.html;
    let main = &elements(html, "main")[0];
    assert_eq!(main.get("data-granules"), n.to_string());
    let failed = (0..n).filter(|i| i % 50 == 7).count();
    assert_eq!(main.get("data-failed"), failed.to_string());
    let finished = &elements(chart(html, "finished"), "svg")[0];
    assert_eq!(finished.get("data-finished"), n.to_string());
    let bins: usize = finished.get("data-bins").parse().unwrap();
    assert!(bins <= 121, "{bins}");
    assert!(elements(chart(html, "finished"), "rect").len() <= 2 * bins);
    // 5 slowest + 10 failed in detail, 20 slowest rows, 30 failed rows at most.
    assert_eq!(main.get("data-details"), "15");
    assert!(elements(html, "tr").len() <= 1 + 20 + 1 + 30);
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
}

#[test]
fn a_large_campaign_stays_readable() {
    let n = 3000;
    let dir = tempfile::tempdir().unwrap();
    synthetic_campaign(dir.path(), n);
    // The time is printed, not asserted: the README's figure comes from
    // `render_time_of_100k_granules`, run by hand on a quiet machine.
    let (page, seconds) = timed_render(dir.path());
    check_large(&page, n);
    eprintln!("report_html: {n} granules rendered in {seconds:.2} s");
}

/// `cargo test --release --test cli -- --ignored report_html::render_time_of_100k_granules
/// --nocapture`: the figure the README gives.
#[test]
#[ignore = "writes 100 000 reports (about 2 GB); run by hand, in release"]
fn render_time_of_100k_granules() {
    let n = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let made = Instant::now();
    synthetic_campaign(dir.path(), n);
    eprintln!(
        "report_html: wrote {n} reports and records in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let (page, with_ledger) = timed_render(dir.path());
    check_large(&page, n);
    // Without the ledger, every report's head is read.
    std::fs::rename(dir.path().join(STATE_DIR), dir.path().join("state-aside")).unwrap();
    let (page, reports_only) = timed_render(dir.path());
    check_large(&page, n);
    eprintln!(
        "report_html: {n} granules: {with_ledger:.2} s from ledger records, \
         {reports_only:.2} s from the reports alone; page {} KB",
        page.html.len() / 1024
    );
}

#[test]
fn progress_is_a_live_bar_on_a_terminal_and_plain_lines_elsewhere() {
    let found = which::which("script");
    if !require(
        "report_html::progress_is_a_live_bar_on_a_terminal_and_plain_lines_elsewhere",
        found.is_ok(),
        "no `script` (util-linux)",
    ) {
        return;
    }
    let script = found.unwrap();
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 200, &["--work", "20000"]);
    case.list(&["g.gran"]);
    case.options(20);
    // Not a terminal: plain lines only.
    let out = ok(case.step("plain").output().unwrap());
    let err = text(&out.stderr);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    assert!(err.contains("[1/1] g.gran: done in"), "{err}");

    // A terminal (script(1) gives pseg-step a pty): the bar is redrawn in place, and the
    // final line ends it.
    let step = case.step("live");
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let command: Vec<String> = std::iter::once(step.get_program())
        .chain(step.get_args())
        .map(quote)
        .collect();
    let out = ok(crate::support::wrapped(&step, script.to_str().unwrap())
        .args(["-qec", &command.join(" "), "/dev/null"])
        .env("COLUMNS", "100")
        .current_dir(case.dir.path())
        .output()
        .unwrap());
    let tty = text(&out.stdout);
    let bar = "\r\x1b[2K[1/1] g.gran [";
    assert!(tty.contains(bar), "{tty:?}");
    let done = tty.find("[1/1] g.gran: done in").expect("the final line");
    assert!(
        tty[..done].ends_with("\r\x1b[2K"),
        "the bar is cleared first: {tty:?}"
    );
    assert!(!tty[done..].contains(bar), "no bar after the end: {tty:?}");
    for line in tty.split(['\r', '\n']) {
        let line = line.trim_start_matches("\x1b[2K");
        if line.starts_with("[1/1] g.gran [") {
            assert!(line.chars().count() < 100, "wider than COLUMNS: {line:?}");
        }
    }
    case.assert_no_process_left();
}
