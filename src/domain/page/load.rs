//! Finding and reading what a page shows: the campaign's ledger records (one JSON line per
//! granule, fast to read by the 100 000) and its reports (`pseg-reports/*.pseg.yaml`).
//!
//! A campaign's index has one [`Entry`] per granule: from its ledger record when there is
//! one (records know pending and running granules, and failures that left no report), else
//! from the head of its report, read only up to its `workers:` section. Full reports are
//! read only for the few granules the page details. Nothing is written.
//!
//! Every number read is made finite and plausible here (times within 0..1e10 s since the
//! epoch, durations within 0..1e8 s, sizes up to 1 EiB), each clamped one flagged, so no
//! chart ever meets NaN, infinity or ±1.8e308: those would hang the tick loops and reach
//! the HTML.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RenderError;
use crate::base::parallel::parallel_map;
use crate::domain::ledger::{self, Ledger, Record, Status};
use crate::domain::reports::{self, GranuleReport};

/// One granule of the campaign, as the index knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub status: Status,
    /// Unix seconds of the latest attempt.
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub error: Option<String>,
    /// The failure kind (`oom`, `signal`, ...), from the ledger.
    pub kind: Option<String>,
    pub attempts: u32,
    pub host: Option<String>,
    /// The pseg-step that ran it (ledger only): with the host, one worker of the campaign.
    pub pid: Option<u32>,
    /// Where the ledger says its report is (used when the reports folder lacks it).
    pub report: Option<PathBuf>,
}

impl Entry {
    /// Seconds the latest attempt took, once it ended.
    pub fn wall(&self) -> Option<f64> {
        Some((self.ended? - self.started?).max(0.0))
    }

    fn from_record(r: Record) -> Entry {
        let ended = match r.status {
            Status::Done | Status::Failed | Status::Interrupted => r.ended,
            _ => None,
        };
        Entry {
            name: r.name,
            status: r.status,
            started: r.started.or(r.claimed),
            ended,
            error: r.error,
            kind: r.kind.map(|k| k.name().to_string()),
            attempts: r.attempts,
            host: r.host,
            pid: r.pid,
            report: r.report,
        }
    }

    fn from_head(h: Head) -> Entry {
        Entry {
            status: match h.status {
                Some(reports::Verdict::Done) => Status::Done,
                Some(reports::Verdict::Failed) => Status::Failed,
                Some(reports::Verdict::Interrupted) | None => Status::Interrupted,
            },
            started: Some(h.started_unix),
            ended: Some(h.started_unix + h.wall_seconds),
            error: h.error.map(|e| ledger::record::one_line(&e)),
            kind: None,
            attempts: 1,
            host: h.host,
            pid: None,
            report: None,
            name: h.name,
        }
    }
}

/// The first fields of a granule report: all the index needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Head {
    kind: String,
    name: String,
    status: Option<reports::Verdict>,
    error: Option<String>,
    host: Option<String>,
    started_unix: f64,
    wall_seconds: f64,
}

/// What was found at the path given to `report`.
#[derive(Debug, Default)]
pub struct Loaded {
    pub reports_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub entries: Vec<Entry>,
    /// Entries read from ledger records, and from report heads.
    pub from_ledger: usize,
    pub from_reports: usize,
    /// Report files in the folder (granule reports and step reports).
    pub report_files: usize,
    /// Files that could not be read, with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// The report itself, when the path was one report file.
    pub single: Option<Box<GranuleReport>>,
    /// One warning per granule whose numbers were absurd and were clamped.
    pub clamped: Vec<String>,
}

/// Latest plausible Unix time (the year 2286) and longest plausible duration (3 years).
const MAX_UNIX: f64 = 1e10;
const MAX_SECONDS: f64 = 1e8;
/// The largest plausible memory figure: 1 EiB.
const MAX_BYTES: u64 = 1 << 60;

/// Clamps `v` into `0..=max` (NaN to 0); records `what` when it had to.
fn clamp(v: &mut f64, max: f64, what: &'static str, flagged: &mut Vec<&'static str>) {
    if !(0.0..=max).contains(v) {
        *v = if v.is_nan() { 0.0 } else { v.clamp(0.0, max) };
        if !flagged.contains(&what) {
            flagged.push(what);
        }
    }
}

fn clamp_bytes(v: &mut u64, what: &'static str, flagged: &mut Vec<&'static str>) {
    if *v > MAX_BYTES {
        *v = MAX_BYTES;
        if !flagged.contains(&what) {
            flagged.push(what);
        }
    }
}

/// Makes every number of a report plausible; returns the fields that were not.
pub fn sanitize(r: &mut GranuleReport) -> Vec<&'static str> {
    let mut f = Vec::new();
    clamp(&mut r.started_unix, MAX_UNIX, "started_unix", &mut f);
    clamp(&mut r.wall_seconds, MAX_SECONDS, "wall_seconds", &mut f);
    clamp(&mut r.cpu_seconds, MAX_SECONDS, "cpu_seconds", &mut f);
    let w = &mut r.workers;
    clamp(
        &mut w.ready_wait_mean_seconds,
        MAX_SECONDS,
        "workers",
        &mut f,
    );
    clamp(
        &mut w.ready_wait_max_seconds,
        MAX_SECONDS,
        "workers",
        &mut f,
    );
    for (t, _) in &mut w.busy_over_time {
        clamp(t, MAX_SECONDS, "workers.busy_over_time", &mut f);
    }
    let m = &mut r.memory;
    for (v, what) in [
        (&mut m.peak_bytes, "memory"),
        (&mut m.pss_peak_bytes, "memory"),
        (&mut m.rss_peak_bytes, "memory"),
        (&mut m.parent_pss_peak_bytes, "memory"),
        (&mut m.worker_private_peak_bytes, "memory"),
    ] {
        clamp_bytes(v, what, &mut f);
    }
    if let Some(v) = &mut m.limit_bytes {
        clamp_bytes(v, "memory.limit_bytes", &mut f);
    }
    if let Some(cg) = &mut m.cgroup {
        clamp_bytes(&mut cg.usage_peak_bytes, "memory.cgroup", &mut f);
        for v in [&mut cg.kernel_peak_bytes, &mut cg.limit_bytes]
            .into_iter()
            .flatten()
        {
            clamp_bytes(v, "memory.cgroup", &mut f);
        }
    }
    clamp(
        &mut m.sample_interval_seconds,
        MAX_SECONDS,
        "memory",
        &mut f,
    );
    for (t, pss, cg) in &mut m.over_time {
        clamp(t, MAX_SECONDS, "memory.over_time", &mut f);
        clamp_bytes(pss, "memory.over_time", &mut f);
        clamp_bytes(cg, "memory.over_time", &mut f);
    }
    for st in &mut r.segment_times {
        for t in [
            &mut st.queued,
            &mut st.started,
            &mut st.processed,
            &mut st.written,
        ]
        .into_iter()
        .flatten()
        {
            clamp(t, MAX_SECONDS, "segment_times", &mut f);
        }
    }
    f
}

/// Makes an entry's times plausible; true if they were not.
fn sanitize_entry(e: &mut Entry) -> bool {
    let mut f = Vec::new();
    for t in [&mut e.started, &mut e.ended].into_iter().flatten() {
        clamp(t, MAX_UNIX, "time", &mut f);
    }
    !f.is_empty()
}

/// What a clamped granule's warning (and its report's `error`) says.
pub const CLAMPED: &str = "were clamped to plausible ones";

/// The warning for a granule whose numbers were clamped.
pub fn clamped_warning(name: &str, fields: &[&str]) -> String {
    format!(
        "{}: absurd values ({}) {CLAMPED}; its figures cannot be trusted",
        crate::base::escape::controls(name),
        fields.join(", ")
    )
}

impl Loaded {
    /// A granule's full report: from the reports folder by name, else where its ledger
    /// record says.
    pub fn report(&self, entry: &Entry) -> Option<Result<GranuleReport, String>> {
        if let Some(single) = &self.single {
            return (single.name == entry.name).then(|| Ok((**single).clone()));
        }
        let in_folder = self
            .reports_dir
            .as_ref()
            .map(|d| d.join(format!("{}{}", entry.name, reports::SUFFIX)));
        let path = [in_folder, entry.report.clone()]
            .into_iter()
            .flatten()
            .find(|p| p.is_file())?;
        Some(read_report(&path).map_err(|e| format!("{}: {e}", path.display())))
    }
}

/// The largest report read: a long granule's is a few MiB.
const MAX_REPORT_BYTES: u64 = 256 << 20;

/// Reads a whole granule report, its numbers made plausible ([`sanitize`]); a report that
/// needed it says so in its `error`.
pub fn read_report(path: &Path) -> Result<GranuleReport, String> {
    let text =
        crate::base::bounded_read::read_text(path, MAX_REPORT_BYTES).map_err(|e| e.to_string())?;
    let mut report: GranuleReport = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    if report.kind != "granule" {
        return Err(format!("it is a {} report, not a granule's", report.kind));
    }
    let clamped = sanitize(&mut report);
    if !clamped.is_empty() {
        let note = clamped_warning(&report.name, &clamped);
        report.error = Some(match report.error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    }
    Ok(report)
}

/// Reads the campaign at `path`: an output folder (with `pseg-reports/` and
/// `pseg-state/`), either of those folders, or one `.pseg.yaml` report.
pub fn load(path: &Path) -> Result<Loaded, RenderError> {
    if path.is_file() {
        let report = read_report(path).map_err(|why| RenderError::Report {
            path: path.to_path_buf(),
            why,
        })?;
        let entry = Entry::from_head(Head {
            kind: report.kind.clone(),
            name: report.name.clone(),
            status: Some(report.status),
            error: report.error.clone(),
            host: Some(report.host.clone()),
            started_unix: report.started_unix,
            wall_seconds: report.wall_seconds,
        });
        return Ok(Loaded {
            reports_dir: path.parent().map(Path::to_path_buf),
            clamped: report
                .error
                .iter()
                .filter_map(|e| e.find(CLAMPED).map(|_| e.clone()))
                .collect(),
            entries: vec![entry],
            from_reports: 1,
            report_files: 1,
            single: Some(Box::new(report)),
            ..Loaded::default()
        });
    }
    if !path.is_dir() {
        return Err(RenderError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let (reports_dir, state_dir) = locate(path);
    if reports_dir.is_none() && state_dir.is_none() {
        return Err(RenderError::NothingThere {
            path: path.to_path_buf(),
        });
    }
    let mut loaded = Loaded {
        reports_dir: reports_dir.clone(),
        state_dir: state_dir.clone(),
        ..Loaded::default()
    };
    let mut known = HashSet::new();
    if let Some(state) = &state_dir {
        let scan = Ledger::open_existing(state)?.scan()?;
        loaded.unreadable.extend(scan.unreadable);
        for record in scan.records {
            known.insert(record.name.clone());
            let mut entry = Entry::from_record(record);
            if sanitize_entry(&mut entry) {
                let warning = clamped_warning(&entry.name, &["started", "ended"]);
                loaded.clamped.push(warning);
            }
            loaded.entries.push(entry);
        }
        loaded.from_ledger = loaded.entries.len();
    }
    if let Some(dir) = &reports_dir {
        let files = list_reports(dir)?;
        loaded.report_files = files.len();
        let unknown: Vec<PathBuf> = files
            .into_iter()
            .filter(|(name, _)| !known.contains(name))
            .map(|(_, path)| path)
            .collect();
        let heads = parallel_map(&unknown, |p| read_head(p));
        for (path, head) in unknown.into_iter().zip(heads) {
            match head {
                Ok(h) if h.kind == "granule" => {
                    let mut entry = Entry::from_head(h);
                    if sanitize_entry(&mut entry) {
                        let warning =
                            clamped_warning(&entry.name, &["started_unix", "wall_seconds"]);
                        loaded.clamped.push(warning);
                    }
                    loaded.entries.push(entry);
                    loaded.from_reports += 1;
                }
                Ok(_) => {} // a step's summary
                Err(why) => loaded.unreadable.push((path, why)),
            }
        }
    }
    Ok(loaded)
}

/// The reports folder and the state folder named by `dir`.
fn locate(dir: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let has_reports = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|mut it| {
            it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(reports::SUFFIX)))
        })
    };
    let inside = dir.join(reports::DIR);
    let reports = if inside.is_dir() {
        Some(inside)
    } else if has_reports(dir) {
        Some(dir.to_path_buf())
    } else {
        None
    };
    let state = ledger::find_state_dir(dir).ok().or_else(|| {
        // The reports folder itself: its campaign's state is beside it.
        let beside = dir.parent()?.join(ledger::STATE_DIR);
        ledger::find_state_dir(&beside).ok()
    });
    // A state folder given directly: its reports are beside it.
    let reports = reports.or_else(|| {
        let state = state.as_ref()?;
        let beside = state.parent()?.join(reports::DIR);
        beside.is_dir().then_some(beside)
    });
    (reports, state)
}

/// Report files in `dir`, by granule name (temporary files skipped).
fn list_reports(dir: &Path) -> Result<Vec<(String, PathBuf)>, RenderError> {
    let read_err = |source| RenderError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with('.') {
            continue;
        }
        if let Some(name) = file.strip_suffix(reports::SUFFIX) {
            files.push((name.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The head of a report: the text before its `workers:` section, which holds every field
/// the index needs (serde writes fields in order), parsed alone. A report without that
/// section is parsed whole.
fn read_head(path: &Path) -> Result<Head, String> {
    const MARK: &[u8] = b"\nworkers:";
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let cut = loop {
        let n = file.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break None;
        }
        let from = text.len().saturating_sub(MARK.len());
        text.extend_from_slice(&chunk[..n]);
        if let Some(at) = text[from..].windows(MARK.len()).position(|w| w == MARK) {
            break Some(from + at + 1);
        }
    };
    let head = &text[..cut.unwrap_or(text.len())];
    let head = std::str::from_utf8(head).map_err(|e| e.to_string())?;
    serde_yaml::from_str(head).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "schema: pseg-report/1\nkind: granule\ngranule: /d/a.gran\nname: a.gran\n\
        status: failed\nerror: 'clavrxorb clone (pid 7) was killed by signal 11 (SIGSEGV)\n  on segment 3'\n\
        host: n1\nstarted_unix: 100.5\nwall_seconds: 2.5\ncpu_seconds: 1.0\nscan_lines: 10\n\
        segments: 1\nlines: 10\nworkers:\n  cap: 2\n  bound_by: cpus\n  max_busy: 1\n  \
        busy_over_time: []\n  ready_wait_mean_seconds: 0.0\n  ready_wait_max_seconds: 0.0\n\
        memory:\n  peak_bytes: 1\n  pss_peak_bytes: 1\n  rss_peak_bytes: 1\n  \
        parent_pss_peak_bytes: 1\n  worker_private_peak_bytes: 1\n  samples: 1\n  \
        sample_interval_seconds: 0.25\nsegment_times: []\n";

    #[test]
    fn a_head_is_read_without_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.gran.pseg.yaml");
        std::fs::write(&path, REPORT).unwrap();
        let h = read_head(&path).unwrap();
        assert_eq!((h.kind.as_str(), h.name.as_str()), ("granule", "a.gran"));
        assert_eq!(h.status, Some(reports::Verdict::Failed));
        assert_eq!((h.started_unix, h.wall_seconds), (100.5, 2.5));
        let e = Entry::from_head(h);
        assert_eq!(e.wall(), Some(2.5));
        assert_eq!(
            e.error.as_deref(),
            Some("clavrxorb clone (pid 7) was killed by signal 11 (SIGSEGV) on segment 3")
        );
        // The whole report parses too, and so does one without a workers section.
        assert_eq!(read_report(&path).unwrap().segments, 1);
        std::fs::write(&path, "kind: step\nname: x\n").unwrap();
        assert_eq!(read_head(&path).unwrap().kind, "step");
    }

    #[test]
    fn folders_are_found_from_any_of_the_three_paths() {
        let out = tempfile::tempdir().unwrap();
        let reports = out.path().join(reports::DIR);
        std::fs::create_dir_all(&reports).unwrap();
        std::fs::write(reports.join("a.gran.pseg.yaml"), REPORT).unwrap();
        std::fs::write(reports.join(".tmpXYZ"), "partial").unwrap();
        let state = out.path().join(ledger::STATE_DIR);
        Ledger::open(&state).unwrap();
        for p in [out.path(), reports.as_path(), state.as_path()] {
            assert_eq!(
                locate(p),
                (Some(reports.clone()), Some(state.clone())),
                "{}",
                p.display()
            );
        }
        let loaded = load(out.path()).unwrap();
        assert_eq!((loaded.from_ledger, loaded.from_reports), (0, 1));
        assert_eq!(loaded.entries[0].status, Status::Failed);
        assert_eq!(
            loaded.report(&loaded.entries[0]).unwrap().unwrap().host,
            "n1"
        );
        let other = Entry {
            name: "b.gran".into(),
            ..loaded.entries[0].clone()
        };
        assert!(loaded.report(&other).is_none());
        let elsewhere = Entry {
            report: Some(reports.join("a.gran.pseg.yaml")),
            ..other
        };
        assert!(
            loaded.report(&elsewhere).is_some(),
            "found where the ledger says"
        );
        let one = load(&reports.join("a.gran.pseg.yaml")).unwrap();
        assert!(one.single.is_some());
        assert!(matches!(
            load(&out.path().join("nope")),
            Err(RenderError::NotFound { .. })
        ));
    }
}
