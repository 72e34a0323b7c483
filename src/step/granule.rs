//! One granule, start to finish: its working directory (options copy, file_list, logs),
//! the clavrxorb run, and moving its outputs into place only when it succeeded.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::memwatch::MemorySetup;
use super::progress::Progress;
use super::watch::Watch;
use crate::fanout::machine::{Exit, Failure, FailureKind, Fanout, Limits, Role};
use crate::fanout::unix::{self, Signals};
use crate::fanout::watchdog::Watchdog;
use crate::fanout::{Outcome, Policy, ProcControl, supervise};
use crate::granules::Granule;
use crate::report::{self, GranuleReport};
use crate::tracer::TracerSymbols;

/// What every granule of a step shares.
pub struct Plan {
    pub exe: PathBuf,
    /// `None` runs clavrxorb serially, without the tracer.
    pub symbols: Option<TracerSymbols>,
    pub options_text: String,
    pub scan_lines: u32,
    pub out: PathBuf,
    pub work: PathBuf,
    pub limits: Limits,
    pub policy: Policy,
    pub keep_work: bool,
    pub memory: MemorySetup,
    /// Where a failed granule's working directory is copied when `work` is temporary.
    pub keep_failed: Option<PathBuf>,
}

/// How one granule went.
#[derive(Debug)]
pub enum GranuleResult {
    /// With the names of the files published into the output directory.
    Done {
        outputs: Vec<String>,
    },
    Failed {
        message: String,
        failure: Failure,
        /// The cgroup counted an OOM kill while the granule ran.
        oom: bool,
    },
    Interrupted(i32),
}

/// Kills the granule's process group if we unwind (a panic) before it was ended properly.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = unix::signal_group(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs one granule to its end; the report describes the run whatever the result.
pub fn run(
    plan: &Plan,
    signals: &mut Signals,
    watchdog: &mut Watchdog,
    granule: &Granule,
    progress: Progress,
) -> io::Result<(GranuleResult, GranuleReport)> {
    let started = Instant::now();
    let started_unix = report::unix_now();
    let cpu_before = unix::children_cpu_seconds();
    let oom_before = oom_kills(plan);
    let name = granule.name();
    let wd = plan.work.join(&name);
    let staging = wd.join("output");
    prepare(plan, granule, &wd, &staging)?;

    let mut cmd = Command::new(&plan.exe);
    cmd.current_dir(&wd)
        .stdin(Stdio::null())
        .stdout(File::create(wd.join("clavrx.stdout"))?)
        .stderr(File::create(wd.join("clavrx.stderr"))?)
        .env_remove("CLAVRX_SKIP_OUTPUT");
    if plan.symbols.is_some() {
        cmd.env("CLAVRX_ENABLE_TRACER", "1")
            .env("CLAVRX_TRACER_CLONES", "1");
    } else {
        cmd.env_remove("CLAVRX_ENABLE_TRACER")
            .env_remove("CLAVRX_TRACER_CLONES");
    }
    let leader = unix::spawn_group_leader(&mut cmd)?;
    let mut guard = GroupGuard(Some(leader));
    if let Err(e) = watchdog.watch(leader) {
        progress.say(&format!(
            "warning: the watchdog is gone ({e}); if pseg-step is killed, clones may outlive it"
        ));
    }

    let mut fanout = Fanout::new(leader, plan.limits, plan.symbols.is_some());
    let mut watch = Watch::new(progress, &plan.memory, leader, started);
    let mut ctl = ProcControl::new(plan.symbols.as_ref(), &mut watch);
    let outcome = supervise(signals, leader, &mut fanout, &mut ctl, &plan.policy)?;
    guard.0 = None;
    let _ = watchdog.unwatch(leader);

    let exit = match &outcome {
        Outcome::Failed(f) => match f.kind {
            FailureKind::Died(e) | FailureKind::EndedEarly(e) => Some(e),
            _ => None,
        },
        _ => fanout.parent_exit(),
    };
    let (result, status, error) = match outcome {
        Outcome::Done => {
            let outputs = publish(&staging, &plan.out)?;
            if !plan.keep_work
                && let Err(e) = std::fs::remove_dir_all(&wd)
            {
                // The granule is done and published; a leftover scratch folder is not a failure.
                eprintln!("pseg-step: warning: cannot remove {}: {e}", wd.display());
            }
            (GranuleResult::Done { outputs }, report::Status::Done, None)
        }
        Outcome::Failed(f) => {
            let kept = match &plan.keep_failed {
                Some(dir) => keep(&wd, &dir.join(&name)).unwrap_or_else(|e| {
                    eprintln!(
                        "pseg-step: warning: cannot keep {} in {}: {e}",
                        wd.display(),
                        dir.display()
                    );
                    wd.clone()
                }),
                None => wd.clone(),
            };
            let message = describe(&f, &kept);
            let error = Some(message.clone());
            let failed = GranuleResult::Failed {
                message,
                failure: f,
                oom: oom_kills(plan) > oom_before,
            };
            (failed, report::Status::Failed, error)
        }
        Outcome::Interrupted(sig) => (
            GranuleResult::Interrupted(sig),
            report::Status::Interrupted,
            Some(format!("interrupted by signal {sig}")),
        ),
    };
    let granule_report = GranuleReport {
        schema: report::SCHEMA.into(),
        kind: "granule".into(),
        granule: std::path::absolute(&granule.path)?,
        name,
        status,
        error,
        host: report::host(),
        slurm: report::SlurmIds::from_env(),
        started_unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: unix::children_cpu_seconds() - cpu_before,
        exit_status: match exit {
            Some(Exit::Code(c)) => Some(c),
            _ => None,
        },
        exit_signal: match exit {
            Some(Exit::Signal(s)) => Some(s),
            _ => None,
        },
        scan_lines: plan.scan_lines,
        segments: fanout.segments_written(),
        lines: fanout.written_lines(),
        workers: watch
            .timeline
            .workers(plan.limits.max_workers, fanout.memory_bound()),
        memory: watch.memory.report(),
        segment_times: watch.timeline.segment_times(),
        run: Some(watch.timeline.run_times(crate::cpus::available())),
    };
    Ok((result, granule_report))
}

/// Copies a failed granule's working directory (logs, options, file_list; not its partial
/// output, which can be large and is of no use) to `to`, replacing an older copy, and removes
/// the original from scratch.
fn keep(wd: &Path, to: &Path) -> io::Result<PathBuf> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    let _ = std::fs::remove_dir_all(wd.join("output"));
    copy_tree(wd, to)?;
    std::fs::remove_dir_all(wd)?;
    Ok(to.to_path_buf())
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// A fresh working directory: options copy with this run's segment size, and a file_list
/// that points clavrxorb at the granule and at a staging directory for its outputs.
fn prepare(plan: &Plan, granule: &Granule, wd: &Path, staging: &Path) -> io::Result<()> {
    if wd.exists() {
        std::fs::remove_dir_all(wd)?;
    }
    std::fs::create_dir_all(staging)?;
    std::fs::write(wd.join("clavrx_options"), &plan.options_text)?;
    let input_dir = std::path::absolute(granule.path.parent().unwrap_or(Path::new(".")))?;
    let file_list = format!(
        "{}\n{}\n{}\n",
        input_dir.display(),
        std::path::absolute(staging)?.display(),
        granule.name()
    );
    std::fs::write(wd.join("file_list"), file_list)
}

/// Moves a finished granule's outputs into the output directory; returns their names.
fn publish(staging: &Path, out: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        names.push(entry.file_name().to_string_lossy().into_owned());
        let to = out.join(entry.file_name());
        if std::fs::rename(entry.path(), &to).is_err() {
            // Another filesystem (a node-local --work): copy to a temporary name, then rename,
            // so a reader never sees half a file.
            let tmp = out.join(format!(".{}.partial", entry.file_name().to_string_lossy()));
            std::fs::copy(entry.path(), &tmp)?;
            std::fs::rename(&tmp, &to)?;
        }
    }
    Ok(names)
}

/// OOM kills the kernel counted in this process's own memory cgroup (cgroup v1 counts them
/// where the killed process was: our task cgroup, clones included).
fn oom_kills(plan: &Plan) -> u64 {
    plan.memory
        .own
        .as_ref()
        .and_then(|cg| cg.oom_kills().ok().flatten())
        .unwrap_or(0)
}

/// The one message a user needs: what died where, and which log to read.
fn describe(f: &Failure, wd: &Path) -> String {
    let log = match f.role {
        Role::Worker => wd.join(format!("clavrx.stderr.{}", f.pid)),
        Role::Parent => wd.join("clavrx.stderr"),
    };
    format!(
        "{f}; log: {} (working directory kept: {})",
        log.display(),
        wd.display()
    )
}

/// Stall and grace defaults; the stall timeout and sample interval come from the command
/// line. The loop wakes for memory samples, or once a second for progress.
pub fn policy(stall_timeout: Duration, sample_interval: Option<Duration>) -> Policy {
    let second = Duration::from_secs(1);
    Policy {
        stall_timeout,
        grace: Duration::from_secs(2),
        tick: sample_interval.map_or(second, |i| i.min(second)),
    }
}
