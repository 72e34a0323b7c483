//! One granule, start to finish: its working directory (options copy, file_list, logs),
//! the clavrxorb run (redone with fewer workers after an OOM kill), and moving its outputs
//! into place only when it succeeded.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Notices;
use super::drain;
use super::memory_sampler::{Estimate, MemorySetup, Source};
use super::progress::Progress;
use super::run_monitor::{Drain, DrainPolicy, Watch};
use super::storage;
use crate::base::unix;
use crate::domain::fanout::machine::{Exit, Failure, Fanout, Fault, Limits, Mode, Role};
use crate::domain::fanout::orphan_guard::Watchdog;
use crate::domain::fanout::{Flight, Outcome, Policy, ProcControl};
use crate::domain::granule_list::Granule;
use crate::domain::reports::{self, GranuleReport, Proof};
use crate::domain::tracer::TracerSymbols;

/// Where, in the output folder, a failed granule's working directory is kept when the work
/// directory is temporary (`OUT/pseg-failed/NAME`).
pub const FAILED_DIR: &str = "pseg-failed";

/// What every granule of a step shares.
pub struct Plan<'n> {
    pub exe: PathBuf,
    /// `None`: clavrxorb has no tracer symbols and runs serially without the tracer, on the
    /// weaker proof (exit 0, outputs non-empty).
    pub symbols: Option<TracerSymbols>,
    /// `--serial`: the tracer runs without clones.
    pub serial: bool,
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
    /// How the time-limit warning is judged (the prior is per granule: see [`run`]).
    pub drain: DrainPolicy,
    /// Where the step's notices and warnings go (the command prints them).
    pub notices: &'n dyn Notices,
}

/// How one granule went.
#[derive(Debug)]
pub enum GranuleResult {
    /// With the names of the files published into the output directory.
    Done {
        outputs: Vec<String>,
        proof: Proof,
    },
    Failed {
        message: String,
        failure: Failure,
        /// The cgroup counted an OOM kill while the granule ran.
        oom: bool,
    },
    /// The output or work folder refused a write (disk full, quota, I/O error, read-only):
    /// the folder's fault, not the granule's. Nothing of the granule is left in the output
    /// folder.
    Storage {
        message: String,
    },
    Interrupted(i32),
    /// Ended unfinished because the step stopped on another granule's storage failure: not
    /// its fault, so it is recorded interrupted and redone on the next run. Its partial
    /// output was dropped.
    Stopped,
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

/// A granule in flight, with what its end needs. The supervisor holds it in a [`Flight`].
pub struct Running<C> {
    /// The caller's hold on the granule (its ledger claim).
    pub claim: C,
    pub granule: Granule,
    pub progress: Progress,
    prior_wall: Option<f64>,
    /// The whole granule's start, over every run of it.
    started: Instant,
    started_unix: f64,
    /// CPU seconds of its processes, over every run of it.
    cpu_seconds: f64,
    retries: Vec<reports::OomRetry>,
    /// This run of it.
    run: RunStart,
}

/// One run of clavrxorb over the granule, as it started.
struct RunStart {
    started: Instant,
    started_unix: f64,
    oom_before: u64,
    cap: usize,
    name: String,
    wd: PathBuf,
    staging: PathBuf,
    mode: Mode,
    guard: GroupGuard,
}

/// A granule in flight under the supervisor.
pub type GranuleFlight<'p, C> = Flight<'p, Watch<'p>, Running<C>>;

/// How a granule's end turned out. One is made per granule end: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Ended<'p, C> {
    /// Over: the result, the report (which describes the run whatever the result), and the
    /// caller's claim back.
    Over(
        C,
        Granule,
        Progress,
        io::Result<(GranuleResult, GranuleReport)>,
    ),
    /// The OOM killer ended it while more than one worker ran: redone from scratch, with the
    /// worker cap lowered below the workers that ran at once (down to one: only a run killed
    /// with one worker fails the granule). The redo's report lists the earlier runs.
    Redo(GranuleFlight<'p, C>),
}

/// Starts a granule: its working directory and its clavrxorb, in flight from now on.
pub fn start<'p, C>(
    plan: &'p Plan,
    watchdog: &mut Watchdog,
    granule: &Granule,
    progress: Progress,
    prior_wall: Option<f64>,
    claim: C,
) -> Result<GranuleFlight<'p, C>, (C, io::Error)> {
    let started = Instant::now();
    let running = Running {
        claim,
        granule: granule.clone(),
        progress,
        prior_wall,
        started,
        started_unix: crate::base::time::unix_now(),
        cpu_seconds: 0.0,
        retries: Vec::new(),
        run: placeholder(),
    };
    start_run(plan, watchdog, running, plan.limits.max_workers.max(1))
        .map_err(|(r, e)| (r.claim, e))
}

/// The run of a [`Running`] before its first clavrxorb starts.
fn placeholder() -> RunStart {
    RunStart {
        started: Instant::now(),
        started_unix: 0.0,
        oom_before: 0,
        cap: 1,
        name: String::new(),
        wd: PathBuf::new(),
        staging: PathBuf::new(),
        mode: Mode::Untraced,
        guard: GroupGuard(None),
    }
}

/// One run of clavrxorb over the granule with at most `cap` workers.
#[allow(clippy::result_large_err)]
fn start_run<'p, C>(
    plan: &'p Plan,
    watchdog: &mut Watchdog,
    mut running: Running<C>,
    cap: usize,
) -> Result<GranuleFlight<'p, C>, (Running<C>, io::Error)> {
    let started = Instant::now();
    let started_unix = crate::base::time::unix_now();
    let oom_before = oom_kills(plan);
    let granule = &running.granule;
    let name = granule.name();
    let wd = plan.work.join(&name);
    let staging = wd.join("output");
    drop_old_copy(plan, &name);
    let (leader, mode) = match spawn(plan, watchdog, granule, &wd, &staging) {
        Ok(s) => s,
        Err(e) => return Err((running, e)),
    };
    let guard = GroupGuard(Some(leader));
    if let Err(e) = watchdog.watch(leader) {
        running.progress.say(&format!(
            "warning: the watchdog is gone ({e}); if pseg-step is killed, clones may outlive it"
        ));
    }

    let limits = Limits {
        max_workers: cap,
        ..plan.limits
    };
    let fanout = Fanout::with_mode(leader, limits, mode);
    let watch = watch_run(plan, &running, leader, started);
    let ctl = ProcControl::new(plan.symbols.as_ref(), watch);
    running.run = RunStart {
        started,
        started_unix,
        oom_before,
        cap,
        name,
        wd,
        staging,
        mode,
        guard,
    };
    Ok(Flight::new(leader, fanout, ctl, running))
}

/// Makes the work folder `wd` and starts clavrxorb in it, the leader of its own process
/// group, traced unless it has no tracer symbols.
fn spawn(
    plan: &Plan,
    watchdog: &Watchdog,
    granule: &Granule,
    wd: &Path,
    staging: &Path,
) -> io::Result<(i32, Mode)> {
    prepare(plan, granule, wd, staging)?;
    let mut cmd = Command::new(&plan.exe);
    cmd.current_dir(wd)
        .stdin(Stdio::null())
        .stdout(File::create(wd.join("clavrx.stdout"))?)
        .stderr(File::create(wd.join("clavrx.stderr"))?)
        .env_remove("CLAVRX_SKIP_OUTPUT")
        .env(
            crate::domain::fanout::orphan_guard::ENV_OWNER,
            watchdog.token(),
        );
    let mode = match (&plan.symbols, plan.serial) {
        (None, _) => Mode::Untraced,
        (Some(_), true) => Mode::Serial,
        (Some(_), false) => Mode::Clones,
    };
    if mode != Mode::Untraced {
        // Without clones the tracer still stops at every waitpoint: a serial run is
        // followed, timed and proven complete like a parallel one.
        let clones = if mode == Mode::Serial { "0" } else { "1" };
        cmd.env("CLAVRX_ENABLE_TRACER", "1")
            .env("CLAVRX_TRACER_CLONES", clones);
    } else {
        cmd.env_remove("CLAVRX_ENABLE_TRACER")
            .env_remove("CLAVRX_TRACER_CLONES");
    }
    Ok((unix::spawn_group_leader(&mut cmd)?, mode))
}

/// The run's monitor: its progress line, memory and timeline, and the time-limit warning
/// judged with what earlier runs of the granule took.
fn watch_run<'p, C>(
    plan: &'p Plan,
    running: &Running<C>,
    leader: i32,
    started: Instant,
) -> Watch<'p> {
    let mut watch = Watch::new(
        running.progress.clone(),
        &plan.memory,
        plan.notices,
        leader,
        started,
    );
    watch.drain = Drain::new(
        DrainPolicy {
            prior_wall: running.prior_wall,
            ..plan.drain
        },
        started,
    );
    watch
}

/// A granule's processes are all gone: its outputs published, or its failure described;
/// or, after an OOM kill with more than one worker, the granule started again.
pub fn end<'p, C>(
    plan: &'p Plan,
    watchdog: &mut Watchdog,
    flight: GranuleFlight<'p, C>,
    outcome: Outcome,
) -> Ended<'p, C> {
    let leader = flight.leader;
    let cpu = flight.cpu_seconds();
    let fanout = flight.fanout;
    let watch = flight.ctl.into_monitor();
    let mut running = flight.tag;
    let _ = watchdog.unwatch(leader);
    running.run.guard.0 = None;
    let this_run = running.run.started;
    running.cpu_seconds += cpu;
    let finished = finish_run(plan, &running, leader, &fanout, watch, outcome, cpu);
    let (result, mut r) = match finished {
        Ok(Attempt::Ended(result, r)) => (result, *r),
        Ok(Attempt::OutOfMemory { max_busy, message }) => {
            let cap = running.run.cap;
            let next = max_busy
                .saturating_sub(1)
                .clamp(1, cap.saturating_sub(1).max(1));
            running.progress.say(&format!(
                "out of memory with {max_busy} worker(s) at once ({message}); redoing it with at most {next}"
            ));
            running.retries.push(reports::OomRetry {
                cap,
                max_busy,
                wall_seconds: this_run.elapsed().as_secs_f64(),
                error: message,
            });
            return match start_run(plan, watchdog, running, next) {
                Ok(redo) => Ended::Redo(redo),
                Err((r, e)) => Ended::Over(r.claim, r.granule, r.progress, Err(e)),
            };
        }
        Err(e) => {
            return Ended::Over(running.claim, running.granule, running.progress, Err(e));
        }
    };
    r.started_unix = running.started_unix;
    r.wall_seconds = running.started.elapsed().as_secs_f64();
    r.cpu_seconds = running.cpu_seconds;
    if !running.retries.is_empty() {
        r.workers.bound_by = "memory".into();
    }
    r.oom_retries = running.retries;
    Ended::Over(
        running.claim,
        running.granule,
        running.progress,
        Ok((result, r)),
    )
}

/// How one run of a granule ended.
enum Attempt {
    Ended(GranuleResult, Box<GranuleReport>),
    /// The OOM killer ended it while more than one worker ran: worth redoing with fewer.
    OutOfMemory {
        max_busy: usize,
        message: String,
    },
}

/// The end of one run: outputs checked and published, or the failure described.
fn finish_run<C>(
    plan: &Plan,
    running: &Running<C>,
    leader: i32,
    fanout: &Fanout,
    watch: Watch<'_>,
    outcome: Outcome,
    cpu_seconds: f64,
) -> io::Result<Attempt> {
    let run = &running.run;
    let proof = if run.mode == Mode::Untraced {
        Proof::ExitAndOutputs
    } else {
        Proof::Tracer
    };
    let outcome = match outcome {
        Outcome::Done if proof == Proof::ExitAndOutputs => untraced_outcome(&run.staging, leader)?,
        other => other,
    };
    // Whatever the end, what this run measured guides the next granules (and a redo).
    learn(plan, &watch);
    let workers = watch.timeline.workers(run.cap, fanout.memory_bound());

    let exit = exit_of(&outcome, fanout);
    let (result, status, error) = match outcome {
        Outcome::Done => published(plan, run, proof),
        Outcome::Failed(f) => {
            let oom = oom_kills(plan) > run.oom_before;
            let killed = matches!(f.kind, Fault::Died(Exit::Signal(9)));
            if oom && killed && workers.max_busy > 1 {
                let message = format!("{f}");
                return Ok(Attempt::OutOfMemory {
                    max_busy: workers.max_busy,
                    message,
                });
            }
            failed(plan, run, f, oom, workers.max_busy)
        }
        Outcome::Interrupted(sig) => (
            GranuleResult::Interrupted(sig),
            reports::Verdict::Interrupted,
            Some(interruption(&watch, sig)),
        ),
        Outcome::Stopped => (
            GranuleResult::Stopped,
            reports::Verdict::Interrupted,
            Some(STOPPED.to_string()),
        ),
    };
    if matches!(result, GranuleResult::Stopped) {
        // Its partial output is what fills a full disk; it is redone from scratch anyway.
        let _ = std::fs::remove_dir_all(&run.staging);
    }
    let closing = Closing {
        status,
        error,
        exit,
        proof,
        workers,
    };
    let granule_report = granule_report(plan, running, fanout, &watch, cpu_seconds, closing)?;
    Ok(Attempt::Ended(result, Box::new(granule_report)))
}

/// A run's result as its report states it: the verdict, the message, and how clavrxorb ended.
type Judged = (GranuleResult, reports::Verdict, Option<String>);

/// An untraced run's clean exit proves nothing alone: its outputs must be there and whole.
fn untraced_outcome(staging: &Path, leader: i32) -> io::Result<Outcome> {
    Ok(match untraced_outputs(staging)? {
        None => Outcome::Done,
        Some(kind) => Outcome::Failed(Failure {
            pid: leader,
            role: Role::Parent,
            segment: None,
            kind,
        }),
    })
}

/// What a run measured, kept for the granules after it.
fn learn(plan: &Plan, watch: &Watch<'_>) {
    if let Some(e) = watch.memory.measured() {
        plan.memory.learn(Estimate {
            bytes: e.bytes,
            source: Source::Step,
        });
    }
    plan.memory.learn_base(watch.memory.parent_peak());
}

/// How clavrxorb itself ended, when it did: a failure names the process that died.
fn exit_of(outcome: &Outcome, fanout: &Fanout) -> Option<Exit> {
    match outcome {
        Outcome::Failed(f) => match f.kind {
            Fault::Died(e) | Fault::EndedEarly(e) => Some(e),
            _ => None,
        },
        _ => fanout.parent_exit(),
    }
}

/// A granule proven done: its outputs published, or the storage failure that refused them.
fn published(plan: &Plan, run: &RunStart, proof: Proof) -> Judged {
    match publish(&run.staging, &plan.out, plan.notices) {
        Ok(outputs) => {
            if !plan.keep_work
                && let Err(e) = std::fs::remove_dir_all(&run.wd)
            {
                // The granule is done and published; a leftover scratch folder is not a
                // failure.
                plan.notices
                    .warning(&format!("cannot remove {}: {e}", run.wd.display()));
            }
            (
                GranuleResult::Done { outputs, proof },
                reports::Verdict::Done,
                None,
            )
        }
        Err(e) => {
            let message = format!(
                "cannot publish its outputs into {}: {e}; none of them was left there",
                plan.out.display()
            );
            let error = Some(message.clone());
            (
                GranuleResult::Storage { message },
                reports::Verdict::Failed,
                error,
            )
        }
    }
}

/// A failed run (not redone for memory): its work folder kept, the message a user reads, and
/// whether the fault was the storage's rather than the granule's.
fn failed(plan: &Plan, run: &RunStart, f: Failure, oom: bool, max_busy: usize) -> Judged {
    let wd = &run.wd;
    // Before its partial output is dropped: that is what fills a full disk.
    let full = storage::refuses_writes(wd);
    let kept = kept_work(plan, wd, &run.name);
    let said = error_line(&f, &kept);
    let mut message = describe(&f, &kept, said.as_deref());
    if let Some(e) = &full {
        message = format!(
            "{message}; the work folder {} refuses writes: {e}",
            wd.display()
        );
    }
    if oom {
        message.push_str(&out_of_memory(plan, max_busy));
    }
    let error = Some(message.clone());
    let failed = if full.is_some() || said.as_deref().is_some_and(storage::mentions_storage) {
        GranuleResult::Storage { message }
    } else {
        GranuleResult::Failed {
            message,
            failure: f,
            oom,
        }
    };
    (failed, reports::Verdict::Failed, error)
}

/// Where a failed run's work folder is left for the user to read: copied out of a temporary
/// work folder when the copy works, else where it ran.
fn kept_work(plan: &Plan, wd: &Path, name: &str) -> PathBuf {
    match &plan.keep_failed {
        Some(dir) => keep(wd, &dir.join(name)).unwrap_or_else(|e| {
            plan.notices.warning(&format!(
                "cannot keep {} in {}: {e}",
                wd.display(),
                dir.display()
            ));
            wd.to_path_buf()
        }),
        None => wd.to_path_buf(),
    }
}

/// The failure message's note on an OOM kill: how many workers ran, under which limit.
fn out_of_memory(plan: &Plan, max_busy: usize) -> String {
    format!(
        "; out of memory with {} worker(s) at once{}",
        max_busy,
        plan.memory
            .limit
            .as_ref()
            .map_or_else(String::new, |l| format!(
                " under the memory limit {} ({})",
                crate::base::units::Size(l.bytes),
                l.source
            ))
    )
}

/// Why a run was interrupted: the time-limit warning's judgement, or the signal.
fn interruption(watch: &Watch<'_>, sig: i32) -> String {
    match &watch.drain.decision {
        Some(drain::Decision::End(why)) if sig == Signal::SIGUSR1 as i32 => {
            format!("ended on Slurm's time-limit warning: {why}")
        }
        _ => format!("interrupted by signal {sig}"),
    }
}

/// How a run's end reads in its report, once its result is judged.
struct Closing {
    status: reports::Verdict,
    error: Option<String>,
    exit: Option<Exit>,
    proof: Proof,
    workers: reports::Workers,
}

/// The granule report of one run: whatever its end, what it did and measured.
fn granule_report<C>(
    plan: &Plan,
    running: &Running<C>,
    fanout: &Fanout,
    watch: &Watch<'_>,
    cpu_seconds: f64,
    closing: Closing,
) -> io::Result<GranuleReport> {
    let Closing {
        status,
        error,
        exit,
        proof,
        workers,
    } = closing;
    let run = &running.run;
    let time_limit_warning = watch.drain.decision.as_ref().map(|d| match d {
        drain::Decision::Keep(why) => format!("kept: {why}"),
        drain::Decision::End(why) => format!("ended: {why}"),
    });
    Ok(GranuleReport {
        schema: reports::SCHEMA.into(),
        kind: "granule".into(),
        granule: std::path::absolute(&running.granule.path)?,
        name: run.name.clone(),
        status,
        error,
        host: crate::base::identity::host(),
        slurm: crate::base::identity::SlurmIds::from_env(),
        started_unix: run.started_unix,
        wall_seconds: run.started.elapsed().as_secs_f64(),
        cpu_seconds,
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
        proof: (status == reports::Verdict::Done).then_some(proof),
        workers,
        memory: watch.memory.report(),
        segment_times: watch.timeline.segment_times(),
        time_limit_warning,
        oom_retries: Vec::new(),
        run: Some(watch.timeline.run_times(crate::base::cpus::available())),
    })
}

/// Why a granule was ended unfinished when another one's storage failure stopped the step.
pub const STOPPED: &str = "ended unfinished: the step stopped when a folder refused a write \
     (see the failure above); it is redone on the next run without using its retry budget";

/// Removes an earlier failure's kept copy of this granule as a new attempt starts: whether
/// the attempt is done, interrupted, or fails with its directory kept under `--work`,
/// `OUT/pseg-failed/` then holds the granules failed now and nothing else (and goes when it
/// empties).
fn drop_old_copy(plan: &Plan, name: &str) {
    let failed = plan.out.join(FAILED_DIR);
    let old = failed.join(name);
    if old.symlink_metadata().is_err() {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&old) {
        plan.notices.warning(&format!(
            "cannot remove {}, the kept copy of an earlier failure: {e}",
            old.display()
        ));
    }
    let _ = std::fs::remove_dir(&failed);
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

/// Moves a finished granule's outputs into the output directory; returns their names. On
/// failure none of them stays there, half-copied or whole: the granule is not done.
fn publish(staging: &Path, out: &Path, notices: &dyn Notices) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let result = publish_each(staging, out, &mut names);
    if result.is_err() {
        unpublish(out, &names, notices);
    }
    result.map(|()| names)
}

fn publish_each(staging: &Path, out: &Path, names: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let to = out.join(entry.file_name());
        names.push(name.clone());
        if std::fs::rename(entry.path(), &to).is_err() {
            // Another filesystem (a node-local --work): copy to a temporary name, then rename,
            // so a reader never sees half a file.
            let tmp = out.join(format!(".{name}.partial"));
            let copied = std::fs::copy(entry.path(), &tmp).and_then(|_| std::fs::rename(&tmp, &to));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Removes outputs of a granule that turned out not done (publishing or recording them
/// failed), so the output folder never holds an output its record does not vouch for.
pub fn unpublish(out: &Path, names: &[String], notices: &dyn Notices) {
    for name in names {
        if let Err(e) = std::fs::remove_file(out.join(name))
            && e.kind() != io::ErrorKind::NotFound
        {
            notices.warning(&format!(
                "cannot remove the unproven output {}: {e}",
                out.join(name).display()
            ));
        }
    }
}

/// Without the tracer, the weaker proof: clavrxorb wrote at least one output and none is
/// empty. `None` when that holds, else why not.
fn untraced_outputs(staging: &Path) -> io::Result<Option<Fault>> {
    let mut any = false;
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        if entry.metadata()?.len() == 0 {
            let name = entry.file_name().to_string_lossy().into_owned();
            return Ok(Some(Fault::EmptyOutput(name)));
        }
        any = true;
    }
    Ok((!any).then_some(Fault::NotProcessed))
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

/// The one message a user needs: what died where, what clavrxorb said when it skipped the
/// granule, and which log to read.
fn describe(f: &Failure, wd: &Path, said: Option<&str>) -> String {
    let log = stderr_log(f, wd);
    let said = match (&f.kind, said) {
        (Fault::NotProcessed, Some(line)) => format!("; it said: \"{line}\""),
        (Fault::NotProcessed, None) => "; it printed no error".to_string(),
        (_, Some(line)) if storage::mentions_storage(line) => format!("; it said: \"{line}\""),
        _ => String::new(),
    };
    format!(
        "{f}{said}; log: {} (working directory kept: {})",
        log.display(),
        wd.display()
    )
}

fn stderr_log(f: &Failure, wd: &Path) -> PathBuf {
    match f.role {
        Role::Worker => wd.join(format!("clavrx.stderr.{}", f.pid)),
        Role::Parent => wd.join("clavrx.stderr"),
    }
}

/// clavrxorb's own error line from the failed process's log: the last line that says
/// "error" on its stderr, then on its stdout, else the last line of its stderr.
fn error_line(f: &Failure, wd: &Path) -> Option<String> {
    let stdout = match f.role {
        Role::Worker => wd.join(format!("clavrx.stdout.{}", f.pid)),
        Role::Parent => wd.join("clavrx.stdout"),
    };
    let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let err = read(&stderr_log(f, wd)).unwrap_or_default();
    let out = read(&stdout).unwrap_or_default();
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (err, out) = (lines(&err), lines(&out));
    let says_error = |l: &&String| l.to_ascii_lowercase().contains("error");
    let line = err
        .iter()
        .rev()
        .find(says_error)
        .or_else(|| out.iter().rev().find(says_error))
        .or(err.last())?;
    // A runaway line must not crowd the rest of the message out of the record.
    const MAX: usize = 240;
    Some(match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.clone(),
    })
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
