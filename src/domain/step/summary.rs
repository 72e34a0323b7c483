//! The step's own summary: counts, the driver's CPU time, peaks; written as a
//! `kind: step` report, and handed to the command as the [`Closing`] it prints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Notices;
use crate::base::units::Size;
use crate::domain::reports::{self, GranuleReport, StepReport};

pub struct StepSummary {
    started: Instant,
    pub report: StepReport,
    /// Failed granules with their one-line message, for the closing lines.
    pub failed: Vec<(PathBuf, String)>,
}

impl StepSummary {
    pub fn new() -> StepSummary {
        StepSummary {
            started: Instant::now(),
            report: StepReport {
                schema: reports::SCHEMA.into(),
                kind: "step".into(),
                host: crate::base::identity::host(),
                slurm: crate::base::identity::SlurmIds::from_env(),
                started_unix: crate::base::time::unix_now(),
                wall_seconds: 0.0,
                driver_cpu_seconds: 0.0,
                granules: 0,
                done: 0,
                failed: 0,
                interrupted: 0,
                peak_bytes: 0,
                worker_estimate_bytes: None,
                cgroup_kernel_peak_bytes: None,
                reports: Vec::new(),
            },
            failed: Vec::new(),
        }
    }

    /// Counts a granule's report in; `file` is its name in the report folder.
    pub fn add(&mut self, r: &GranuleReport, file: Option<PathBuf>) {
        self.report.granules += 1;
        self.report.peak_bytes = self.report.peak_bytes.max(r.memory.peak_bytes);
        let worker = r
            .memory
            .worker_private_peak_bytes
            .max(r.memory.worker_private_hwm_bytes);
        if r.status == reports::Verdict::Done && worker > 0 {
            self.report.worker_estimate_bytes =
                Some(self.report.worker_estimate_bytes.unwrap_or(0).max(worker));
        }
        match r.status {
            reports::Verdict::Done => self.report.done += 1,
            reports::Verdict::Failed => self.report.failed += 1,
            reports::Verdict::Interrupted => self.report.interrupted += 1,
        }
        self.report.reports.extend(file);
    }

    /// A granule that failed before it had a report.
    pub fn add_failure(&mut self, path: &Path, why: String) {
        self.report.granules += 1;
        self.report.failed += 1;
        self.failed.push((path.to_path_buf(), why));
    }

    /// Finishes the figures and writes the step report into `dir`.
    pub fn write(&mut self, dir: &Path, cgroup_peak: Option<u64>, notices: &dyn Notices) {
        self.report.wall_seconds = self.started.elapsed().as_secs_f64();
        self.report.driver_cpu_seconds = crate::base::unix::own_cpu_seconds();
        self.report.cgroup_kernel_peak_bytes = cgroup_peak;
        let name = step_report_name(&self.report);
        if let Err(e) = reports::write(dir, &name, &self.report) {
            notices.warning(&format!("cannot write {}: {e}", dir.join(&name).display()));
        }
    }

    /// What the closing lines say.
    pub fn close(self) -> Closing {
        Closing {
            done: self.report.done,
            granules: self.report.granules,
            failed: self.failed,
        }
    }
}

/// The step's closing lines: every granule done, or how many and which failed, and why.
#[derive(Debug)]
pub struct Closing {
    pub done: usize,
    pub granules: usize,
    /// Failed granules with their one-line message.
    pub failed: Vec<(PathBuf, String)>,
}

/// The line that ends a granule's progress.
pub fn done_line(r: &GranuleReport) -> String {
    if r.proof == Some(reports::Proof::ExitAndOutputs) {
        return format!(
            "done in {:.1} s (weaker proof: exit 0 and outputs non-empty; no tracer)",
            r.wall_seconds
        );
    }
    format!(
        "done in {:.1} s ({} segments, {} lines; peak {}, up to {} workers, bound by {})",
        r.wall_seconds,
        r.segments,
        r.lines,
        Size(r.memory.peak_bytes),
        r.workers.max_busy,
        r.workers.bound_by
    )
}

/// `step-<job>[_<array task>].<procid>.pseg.yaml` under Slurm, `step-local-<pid>` outside.
fn step_report_name(s: &StepReport) -> String {
    let id = match &s.slurm {
        Some(ids) => {
            let job = ids
                .array_job_id
                .as_ref()
                .zip(ids.array_task_id.as_ref())
                .map_or_else(
                    || ids.job_id.clone().unwrap_or_default(),
                    |(a, t)| format!("{a}_{t}"),
                );
            format!("{job}.{}", ids.procid.as_deref().unwrap_or("0"))
        }
        None => format!("local-{}", std::process::id()),
    };
    format!("step-{id}{}", reports::SUFFIX)
}
