//! The versioned YAML reports `pseg-step` writes beside the outputs: one per granule and one
//! summary per step. `pseg-slurm gen --profile` sizes jobs from them; later tools read them.
//!
//! This module is the schema and the writing; it measures nothing itself. Fields are only
//! ever added within `pseg-report/1`: readers ignore what they do not know.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::atomic_file;
use crate::base::identity::SlurmIds;

pub const SCHEMA: &str = "pseg-report/1";
/// Reports live in this folder of the output directory.
pub const DIR: &str = "pseg-reports";
pub const SUFFIX: &str = ".pseg.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Done,
    Failed,
    Interrupted,
}

/// What proved a granule done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// The tracer: clavrxorb reached waitpoint 7 and passed waitpoint 6 for segments covering
    /// every scan line of the granule, each once.
    #[serde(rename = "tracer")]
    Tracer,
    /// The weaker proof, for a clavrxorb without tracer symbols: it exited 0 and every
    /// output it left is non-empty. A truncated output is not caught.
    #[serde(rename = "exit-and-outputs")]
    ExitAndOutputs,
}

/// When one segment went through each phase, in seconds since the granule started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentTimes {
    pub segment: u32,
    pub pid: i32,
    pub lines: i32,
    /// Read, and its clone waiting for a worker slot (absent for the first segment, which
    /// the reading process keeps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<f64>,
    /// The reading process was continued to read it (for the first segment: clavrxorb was
    /// started). What `pseg-slurm plan` replays; absent in reports older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<f64>,
    /// The reading process stopped at waitpoint 1 with it read (its clone made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<f64>,
    /// Its clone stopped at waitpoint 1: `read -> cloned` is the cost of one clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned: Option<f64>,
    /// The first segment only, which the reading process processes itself: when it was
    /// continued to process it, and when it stopped at waitpoint 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_started: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_processed: Option<f64>,
    /// It got the write turn (continued from waitpoint 3): `write_from -> written` is the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_from: Option<f64>,
    /// Seconds of each phase its process spent runnable but waiting for a CPU (the run-queue
    /// delay of /proc/PID/schedstat), when the kernel keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_wait: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_wait: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_wait: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_wait: Option<f64>,
}

/// When clavrxorb passed the points no segment covers, in seconds since the granule started,
/// and the CPUs the run had: with the segment times, what `pseg-slurm plan` replays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTimes {
    /// CPUs this pseg-step could use (affinity, cgroup quota, Slurm's allocation).
    pub cpus: usize,
    /// clavrxorb was started (after the working directory was made).
    pub spawned: f64,
    /// It was continued after its last segment, to read on to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_from: Option<f64>,
    /// It stopped at waitpoint 7 (all segments read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reached: Option<f64>,
    /// It was continued from waitpoint 7, every segment written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_released: Option<f64>,
    /// It exited and was reaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited: Option<f64>,
    /// Seconds of start-up (to the first waitpoint) and of the tail (to waitpoint 7) spent
    /// waiting for a CPU, like the segments' `*_wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_wait: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_wait: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workers {
    /// The cap this run had: `--max-workers`, or the CPUs.
    pub cap: usize,
    /// `cpus` when the cap alone limited workers, `memory` when memory held one back.
    pub bound_by: String,
    pub max_busy: usize,
    /// (seconds, workers busy) at every change.
    pub busy_over_time: Vec<(f64, usize)>,
    /// Seconds between a segment being ready and a worker taking it.
    pub ready_wait_mean_seconds: f64,
    pub ready_wait_max_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cgroup {
    /// `v1` or `v2`.
    pub version: String,
    pub dir: PathBuf,
    /// Highest working set (usage less inactive file cache) of this process's own cgroup
    /// sampled while the granule ran.
    pub usage_peak_bytes: u64,
    /// The kernel's own peak, since the cgroup was made (not only this granule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_at: Option<PathBuf>,
}

/// Private memory one worker was expected to reach, and where that figure came from:
/// `campaign` (earlier steps' summaries), `step` (earlier granules of this step),
/// `first-segment` (clavrxorb processing segment 1 alone) or `worker` (a worker measured).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerEstimate {
    pub bytes: u64,
    pub source: String,
}

/// A run of a granule that the cgroup's OOM killer ended, redone in the same step with
/// fewer workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OomRetry {
    /// The worker cap of the killed run, and how many workers ran at once in it.
    pub cap: usize,
    pub max_busy: usize,
    pub wall_seconds: f64,
    /// What was killed.
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The figure to size a job by: the larger of the sampled peak (summed PSS, or under
    /// Slurm the task cgroup's working-set peak when that is higher) and `hwm_peak_bytes`.
    pub peak_bytes: u64,
    /// Peak over time of PSS summed over the granule's processes.
    pub pss_peak_bytes: u64,
    /// The summed PSS peak plus, for each worker that ran at once, what its high-water mark
    /// shows it reached between samples.
    #[serde(default)]
    pub hwm_peak_bytes: u64,
    /// Peak over time of RSS summed over the same processes: counts shared pages once per
    /// process, so it overstates what the kernel charges.
    pub rss_peak_bytes: u64,
    pub parent_pss_peak_bytes: u64,
    /// clavrxorb's own RSS high-water mark (from segment 1 on).
    #[serde(default)]
    pub parent_hwm_bytes: u64,
    /// The largest private (unshared) memory one worker reached, as sampled.
    pub worker_private_peak_bytes: u64,
    /// The same from the workers' RSS high-water marks (mark less RSS at clone time), which
    /// catch a peak between samples; side by side with the sampled figure.
    #[serde(default)]
    pub worker_private_hwm_bytes: u64,
    /// Admission's estimate of one worker's private memory at the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_estimate: Option<WorkerEstimate>,
    /// What first held a worker back, when memory did: the estimate admission used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// The memory limit admission worked against, and where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    /// Why `over_time` holds no cgroup usage, when it holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_note: Option<String>,
    pub samples: u64,
    pub sample_interval_seconds: f64,
    /// (seconds since the granule started, PSS summed over its processes, cgroup usage) at
    /// every timed sample. The cgroup is the one holding the limit (`cgroup.limit_at`; under
    /// Slurm, the job's); 0 when no cgroup has a limit (see `cgroup_note`) or none was read. Long
    /// runs keep at most 1024 points: neighbours are merged, keeping the higher of each
    /// value, so peaks survive. Waitpoint samples count in the peaks above, not here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_time: Vec<(f64, u64, u64)>,
}

/// One granule's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GranuleReport {
    pub schema: String,
    pub kind: String,
    pub granule: PathBuf,
    pub name: String,
    pub status: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmIds>,
    pub started_unix: f64,
    pub wall_seconds: f64,
    /// CPU time of clavrxorb and its clones (user + system).
    pub cpu_seconds: f64,
    /// clavrxorb's exit status when it ended by itself (0 or 1 when done), or the failed
    /// process's; `exit_signal` when it was killed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    pub scan_lines: u32,
    pub segments: u32,
    pub lines: i64,
    /// What proved a done granule complete; absent in reports older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
    pub workers: Workers,
    pub memory: Memory,
    pub segment_times: Vec<SegmentTimes>,
    /// What Slurm's time-limit warning did to this granule, when it came while it ran:
    /// `kept: ...` (projected to finish in time) or `ended: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_warning: Option<String>,
    /// Earlier runs of this granule in this step that the OOM killer ended; this report is
    /// of the run after them, at `workers.cap`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oom_retries: Vec<OomRetry>,
    /// Absent in reports older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunTimes>,
}

/// One `pseg-step` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub schema: String,
    pub kind: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmIds>,
    pub started_unix: f64,
    pub wall_seconds: f64,
    /// CPU time of pseg-step itself, sampler included (not clavrxorb's).
    pub driver_cpu_seconds: f64,
    pub granules: usize,
    pub done: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Highest `memory.peak_bytes` of this step's granules.
    pub peak_bytes: u64,
    /// The largest private memory one worker of this step's done granules reached (sampled
    /// or high-water mark): the next steps of the campaign admit workers by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_estimate_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_kernel_peak_bytes: Option<u64>,
    /// Granule reports of this step, relative to the report folder.
    pub reports: Vec<PathBuf>,
}

/// Writes `value` as YAML to `dir/name` atomically (temporary file, then rename), so a
/// reader never sees half a report.
pub fn write(dir: &Path, name: &str, value: &impl Serialize) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let text = serde_yaml::to_string(value).map_err(io::Error::other)?;
    atomic_file::write(dir, name, text.as_bytes())?;
    Ok(dir.join(name))
}

/// Records the files a granule published, with their sizes and content hashes, in
/// `NAME.outputs` beside its report (see `ledger::outputs`): written after the outputs, so
/// its presence means they were all published.
pub fn write_outputs(dir: &Path, name: &str, outputs: &[String]) -> io::Result<()> {
    let out = dir.parent().unwrap_or(dir);
    crate::domain::ledger::outputs::write(dir, out, name, outputs)
}

/// Whether every output a granule published is still in the output folder (the parent of
/// the report folder `dir`), with the size it was published with.
pub fn outputs_present(dir: &Path, name: &str) -> bool {
    crate::domain::ledger::outputs::present_in(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::identity::host;
    use crate::base::time::unix_now;

    #[test]
    fn a_written_report_reads_back_and_names_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let report = StepReport {
            schema: SCHEMA.into(),
            kind: "step".into(),
            host: host(),
            slurm: None,
            started_unix: unix_now(),
            wall_seconds: 1.5,
            driver_cpu_seconds: 0.1,
            granules: 2,
            done: 1,
            failed: 1,
            interrupted: 0,
            peak_bytes: 1 << 30,
            worker_estimate_bytes: Some(1 << 20),
            cgroup_kernel_peak_bytes: None,
            reports: vec!["a.pseg.yaml".into()],
        };
        let path = write(dir.path(), "step.pseg.yaml", &report).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("schema: pseg-report/1\n"), "{text}");
        let back: StepReport = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
