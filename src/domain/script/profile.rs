//! The minimal reader of pseg reports that `gen` sizes jobs from.
//!
//! A report is a YAML file with at least `schema: pseg-report/1`, `kind`, `wall_seconds` and
//! `memory.peak_bytes` (the figure to size by: the cgroup peak, or the summed PSS peak).
//! Unknown fields are ignored (reports will grow); a different schema is refused. Only
//! `kind: granule` reports are measurements of a granule; other kinds (the step summaries
//! beside them, which have no `memory`) are counted and skipped, the kind read first.
//! Only granules that ran to the end size a job: a report with `status: failed` or
//! `interrupted` is counted and skipped, for wall time (a hung granule's includes the stall
//! timeout) and memory alike (a failed run's peak says nothing sure about a good one). A
//! report without `status` (written before the field) counts as done.
//! A folder is searched recursively for `*.pseg.yaml`. This module reads; it does not size.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The only schema this reader understands.
pub const SCHEMA: &str = "pseg-report/1";
/// What a report file's name ends with, when searched for in a folder.
pub const SUFFIX: &str = ".pseg.yaml";

/// One measured granule.
#[derive(Debug, Clone, PartialEq)]
pub struct GranuleMeasure {
    pub report: PathBuf,
    pub wall_seconds: f64,
    pub peak_bytes: u64,
    pub slowest_segment_seconds: Option<f64>,
}

/// Everything read from the `--profile` arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    /// Granules that ran to the end (`status: done`, or no status).
    pub granules: Vec<GranuleMeasure>,
    /// Reports of another kind than `granule`, not used for sizing.
    pub skipped: usize,
    /// Granule reports that did not end done (failed, interrupted), not used for sizing.
    pub not_done: usize,
}

impl Measurements {
    /// The longest any measured segment took, start to written.
    pub fn slowest_segment_seconds(&self) -> Option<f64> {
        self.granules
            .iter()
            .filter_map(|g| g.slowest_segment_seconds)
            .reduce(f64::max)
    }
}

/// A report, or a `--profile` argument, that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read report {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report {path} is not a pseg report (a YAML mapping): {message}")]
    NotYaml { path: PathBuf, message: String },
    #[error(
        "report {path} has schema {}; this pseg-slurm reads `{SCHEMA}` \
         (was it written by another version?)",
        found.as_deref().map(|s| format!("`{s}`")).unwrap_or_else(|| "(none)".into())
    )]
    WrongSchema {
        path: PathBuf,
        found: Option<String>,
    },
    #[error("report {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no {SUFFIX} reports under {path}")]
    NoReports { path: PathBuf },
    #[error(
        "the --profile reports hold no measurement of a granule that ran to the end \
         ({not_done} granule report(s) failed or interrupted, {skipped} report(s) of other \
         kinds); pass reports of done granules or --peak-mem"
    )]
    NoGranules { skipped: usize, not_done: usize },
}

#[derive(Deserialize)]
struct Head {
    schema: Option<String>,
    /// Read before the rest: only a granule report must have the fields below (a step
    /// summary has `peak_bytes` at its top level, no `memory`).
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    /// `done`, `failed`, `interrupted`; absent in reports older than the field.
    #[serde(default)]
    status: Option<String>,
    wall_seconds: f64,
    memory: Memory,
    /// Absent in reports older than the field.
    #[serde(default)]
    segment_times: Vec<SegmentTimes>,
}

#[derive(Deserialize)]
struct Memory {
    peak_bytes: u64,
}

#[derive(Deserialize)]
struct SegmentTimes {
    started: Option<f64>,
    written: Option<f64>,
}

/// What one report file says.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Granule {
        wall_seconds: f64,
        peak_bytes: u64,
        /// Longest a segment took from its worker's start to written (the first segment,
        /// which clavrxorb keeps, has no start of its own and is left out).
        slowest_segment_seconds: Option<f64>,
    },
    /// A granule that did not run to the end (`status` other than `done`).
    NotDone {
        status: String,
    },
    Other {
        kind: String,
    },
}

/// Parses one report's text; `path` is for messages.
pub fn parse_report(text: &str, path: &Path) -> Result<Report, ProfileError> {
    let not_yaml = |e: serde_yaml::Error| ProfileError::NotYaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let head: Head = serde_yaml::from_str(text).map_err(not_yaml)?;
    if head.schema.as_deref() != Some(SCHEMA) {
        return Err(ProfileError::WrongSchema {
            path: path.to_path_buf(),
            found: head.schema,
        });
    }
    let invalid = |message: String| ProfileError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let kind = head
        .kind
        .ok_or_else(|| invalid("missing field `kind`".into()))?;
    if kind != "granule" {
        return Ok(Report::Other { kind });
    }
    let body: Body = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if let Some(status) = body.status.filter(|s| s != "done") {
        return Ok(Report::NotDone { status });
    }
    if !body.wall_seconds.is_finite() || body.wall_seconds < 0.0 {
        return Err(ProfileError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "wall_seconds is {}; it must be a finite number of seconds, at least 0",
                body.wall_seconds
            ),
        });
    }
    let slowest_segment_seconds = body
        .segment_times
        .iter()
        .filter_map(|t| Some(t.written? - t.started?))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .reduce(f64::max);
    Ok(Report::Granule {
        wall_seconds: body.wall_seconds,
        peak_bytes: body.memory.peak_bytes,
        slowest_segment_seconds,
    })
}

/// Reads every `--profile` argument: files as given, folders searched for `*.pseg.yaml`.
/// Fails when nothing usable was found, so a mistyped folder cannot size a job by default.
pub fn read_all(args: &[PathBuf]) -> Result<Measurements, ProfileError> {
    let mut m = Measurements::default();
    for arg in args {
        for report in report_texts(arg)? {
            let (file, text) = report?;
            match parse_report(&text, &file)? {
                Report::Granule {
                    wall_seconds,
                    peak_bytes,
                    slowest_segment_seconds,
                } => m.granules.push(GranuleMeasure {
                    report: file,
                    wall_seconds,
                    peak_bytes,
                    slowest_segment_seconds,
                }),
                Report::NotDone { .. } => m.not_done += 1,
                Report::Other { .. } => m.skipped += 1,
            }
        }
    }
    if !args.is_empty() && m.granules.is_empty() {
        return Err(ProfileError::NoGranules {
            skipped: m.skipped,
            not_done: m.not_done,
        });
    }
    Ok(m)
}

/// The report files one `--profile` argument names, each read as it is reached: the file
/// itself, or every `*.pseg.yaml` under a folder, in name order (a folder with none is an
/// error).
pub fn report_texts(
    arg: &Path,
) -> Result<impl Iterator<Item = Result<(PathBuf, String), ProfileError>>, ProfileError> {
    let files = if arg.is_dir() {
        let mut found = Vec::new();
        find_reports(arg, &mut found)?;
        if found.is_empty() {
            return Err(ProfileError::NoReports {
                path: arg.to_path_buf(),
            });
        }
        found.sort();
        found
    } else {
        vec![arg.to_path_buf()]
    };
    Ok(files
        .into_iter()
        .map(|file| match std::fs::read_to_string(&file) {
            Ok(text) => Ok((file, text)),
            Err(source) => Err(ProfileError::Unreadable { path: file, source }),
        }))
}

/// Collects `*.pseg.yaml` files under `dir`, following no symlinked folders.
fn find_reports(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), ProfileError> {
    let unreadable = |source| ProfileError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(unreadable)?;
        if kind.is_dir() {
            find_reports(&path, found)?;
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(SUFFIX))
            && path.is_file()
        {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "schema: pseg-report/1\nkind: granule\nwall_seconds: 612.5\n\
                        memory:\n  peak_bytes: 4294967296\n  source: cgroup-v1\n\
                        granule: a.hdf\nfuture_field: [1, 2]\n";

    #[test]
    fn granule_report_ignores_unknown_fields() {
        let r = parse_report(GOOD, Path::new("a.pseg.yaml")).unwrap();
        assert_eq!(
            r,
            Report::Granule {
                wall_seconds: 612.5,
                peak_bytes: 4 << 30,
                slowest_segment_seconds: None,
            }
        );
    }

    #[test]
    fn wrong_or_missing_schema_is_refused_by_name() {
        let e = parse_report(
            "schema: pseg-report/2\nkind: granule\n",
            Path::new("/r/x.pseg.yaml"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/r/x.pseg.yaml") && msg.contains("`pseg-report/2`"),
            "{msg}"
        );
        let e = parse_report("kind: granule\n", Path::new("y")).unwrap_err();
        assert!(matches!(e, ProfileError::WrongSchema { found: None, .. }));
        let e = parse_report("[1, 2]", Path::new("y")).unwrap_err();
        assert!(matches!(e, ProfileError::NotYaml { .. }), "{e}");
    }

    #[test]
    fn missing_fields_and_bad_values() {
        let e = parse_report("schema: pseg-report/1\nkind: granule\n", Path::new("z")).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
        let e = parse_report(
            "schema: pseg-report/1\nkind: granule\nwall_seconds: -1\nmemory: {peak_bytes: 1}\n",
            Path::new("z"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("wall_seconds is -1"), "{e}");
    }

    /// A step summary as pseg-step writes it (its own writer, its own struct).
    fn step_summary(dir: &Path) -> PathBuf {
        let step = crate::domain::reports::StepReport {
            schema: crate::domain::reports::SCHEMA.into(),
            kind: "step".into(),
            host: "node1".into(),
            slurm: None,
            started_unix: 1.0,
            wall_seconds: 2.0,
            driver_cpu_seconds: 0.1,
            granules: 1,
            done: 1,
            failed: 0,
            interrupted: 0,
            peak_bytes: 9,
            worker_estimate_bytes: Some(4),
            cgroup_kernel_peak_bytes: None,
            reports: vec!["a.pseg.yaml".into()],
        };
        crate::domain::reports::write(dir, "step-local-1.pseg.yaml", &step).unwrap()
    }

    #[test]
    fn other_kinds_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = step_summary(dir.path());
        let r = parse_report(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(
            r,
            Report::Other {
                kind: "step".into()
            }
        );
    }

    #[test]
    fn only_done_granules_are_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let with_status = |status: &str, peak: u64, wall: f64| {
            format!(
                "schema: pseg-report/1\nkind: granule\nstatus: {status}\nwall_seconds: {wall}\n\
                 memory:\n  peak_bytes: {peak}\n"
            )
        };
        std::fs::write(d.join("done.pseg.yaml"), with_status("done", 100, 60.0)).unwrap();
        // A hung granule: its wall time includes the stall timeout.
        std::fs::write(d.join("hung.pseg.yaml"), with_status("failed", 50, 3600.0)).unwrap();
        std::fs::write(
            d.join("cut.pseg.yaml"),
            with_status("interrupted", 900, 10.0),
        )
        .unwrap();
        // Written before reports had a status: counts as done.
        std::fs::write(d.join("old.pseg.yaml"), GOOD).unwrap();
        let m = read_all(&[d.to_path_buf()]).unwrap();
        let names: Vec<_> = m
            .granules
            .iter()
            .map(|g| g.report.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["done.pseg.yaml", "old.pseg.yaml"]);
        assert_eq!((m.not_done, m.skipped), (2, 0));
        assert_eq!(
            parse_report(&with_status("failed", 1, 1.0), Path::new("f")).unwrap(),
            Report::NotDone {
                status: "failed".into()
            }
        );
        // Nothing done at all: refused, saying why.
        let e = read_all(&[d.join("hung.pseg.yaml")]).unwrap_err();
        assert!(
            matches!(
                e,
                ProfileError::NoGranules {
                    skipped: 0,
                    not_done: 1
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("1 granule report(s) failed"), "{e}");
    }

    #[test]
    fn folders_are_searched_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/one.pseg.yaml"), GOOD).unwrap();
        std::fs::write(
            d.join("a/b/two.pseg.yaml"),
            GOOD.replace("4294967296", "1024"),
        )
        .unwrap();
        std::fs::write(d.join("a/b/notes.yaml"), "not: a report").unwrap();
        let step = step_summary(d);
        let m = read_all(&[d.to_path_buf()]).unwrap();
        let peaks: Vec<_> = m.granules.iter().map(|g| g.peak_bytes).collect();
        // Sorted by path: a/b/two.pseg.yaml before a/one.pseg.yaml.
        assert_eq!(peaks, vec![1024, 4 << 30]);
        assert_eq!(m.skipped, 1);

        let empty = tempfile::tempdir().unwrap();
        let e = read_all(&[empty.path().to_path_buf()]).unwrap_err();
        assert!(matches!(e, ProfileError::NoReports { .. }));
        let e = read_all(&[step]).unwrap_err();
        assert!(matches!(
            e,
            ProfileError::NoGranules {
                skipped: 1,
                not_done: 0
            }
        ));
        let e = read_all(&[d.join("missing.pseg.yaml")]).unwrap_err();
        assert!(e.to_string().contains("missing.pseg.yaml"), "{e}");
        assert_eq!(read_all(&[]).unwrap(), Measurements::default());
    }
}
