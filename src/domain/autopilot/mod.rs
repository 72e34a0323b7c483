//! `pseg-slurm run`: drives a campaign from its granule list to verified outputs — a pilot
//! when nothing is measured yet, the rest sized by gen from the reports, resubmissions until
//! nothing left can succeed, then `verify`.
//!
//! The rules live in [`decide`] (pure); this module gathers what they need (the ledger
//! through `status`, the queue through [`slurm`]) and carries the action out through gen's
//! own machinery (`script::generate_in` with `--profile OUT/pseg-reports`, so whatever gen
//! learns about sizing, `run` uses). Every submission is recorded in `campaign.yaml`
//! before anything else happens, so a run killed at any point and started again finds its
//! jobs there (`squeue -j`) instead of submitting them twice; [`lock`] keeps a second run
//! out. No terminal output and no exit codes here: what happens goes to an [`Observer`].

pub mod decide;
pub mod lock;
pub mod slurm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::units::TimeLimit;
use crate::domain::campaign::status::{self, Failure, Overview};
use crate::domain::campaign::{retry, verify};
use crate::domain::granule_list::{Granule, GranuleList, ListError, read_list};
use crate::domain::ledger::alive::Liveness;
use crate::domain::ledger::campaign_yaml::{Campaign, GenCall, RunOutcome, Submission};
use crate::domain::ledger::classify::{FailureKind, RetryBudget};
use crate::domain::ledger::{Holder, Ledger, LedgerError, STATE_DIR};
use crate::domain::script::{self, GenError, Generated};
use crate::domain::site_config::Mode;
use decide::{Action, Last, Limits, Overrides, Purpose, View};
use lock::{LockError, RunLock};
use slurm::SlurmError;

/// The shortest pause between two looks at the queue and the ledger.
pub const POLL_MIN: Duration = Duration::from_secs(3);
/// The longest, reached while nothing changes.
pub const POLL_MAX: Duration = Duration::from_secs(15);
/// `squeue` failures in a row (with back-off) before the run gives up on Slurm.
const SLURM_TRIES: u32 = 5;
/// Looks in a row that find work counted but none to select before the run stops.
const EMPTY_LOOKS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Gen(#[from] GenError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}; the campaign's jobs and records are kept: run `pseg-slurm run` again later")]
    Slurm(#[from] SlurmError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the user asked for.
pub struct Request {
    /// What gen is asked for; `files` is the campaign's list.
    pub gen_request: script::Request,
    /// gen's flags as typed, for the campaign record (so `retry` can replay them).
    pub gen_argv: Vec<String>,
    pub cwd: PathBuf,
    pub limits: Limits,
}

/// How the campaign stands, for the live line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub granules: usize,
    pub done: usize,
    pub failed: usize,
    pub running: usize,
    /// Never started, interrupted, lost or failed with retries left.
    pub pending: usize,
    pub done_per_hour: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub jobs: Vec<String>,
}

impl Progress {
    /// The same granule counts and jobs (throughput and ETA drift on their own).
    pub fn same_counts(&self, other: &Progress) -> bool {
        (
            self.done,
            self.failed,
            self.running,
            self.pending,
            &self.jobs,
        ) == (
            other.done,
            other.failed,
            other.running,
            other.pending,
            &other.jobs,
        )
    }
}

/// Where the driver's news goes.
pub trait Observer {
    /// A decision or an event, one line, always shown.
    fn say(&mut self, line: &str);
    /// The campaign now; called on every look.
    fn progress(&mut self, progress: &Progress);
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    pub exit: Ending,
    pub out: PathBuf,
    /// Failed for good, with their kind and report.
    pub failures: Vec<Failure>,
    /// Verify's lines about outputs that do not match (empty when clean).
    pub verify_findings: Vec<String>,
    pub verified: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    AllDone,
    SomeFailed,
    Bound(String),
}

/// gen over the campaign's own list: every input checked before anything is submitted.
pub fn check(req: &Request) -> Result<Generated, RunError> {
    Ok(script::generate_in(&req.gen_request, &req.cwd)?)
}

/// Drives the campaign to its end; see the module comment.
pub fn drive(req: &Request, observer: &mut dyn Observer) -> Result<Finished, RunError> {
    let first = check(req)?;
    let out = first.out.clone();
    let state = out.join(STATE_DIR);
    let ledger = Ledger::open(&state)?;
    let me = Holder::current();
    let alive = Liveness::default();
    let _lock = RunLock::acquire(&state, &me, &alive).inspect(|l| {
        if let Some((who, why)) = &l.took_over {
            observer.say(&format!(
                "took over the campaign from an earlier run ({who}: {why})"
            ));
        }
    })?;
    let list = read_list(&first.list)?;
    let mode = mode_of(&first.script);
    let mut campaign = open_campaign(req, &first, list.granules.len(), &state)?;
    say_resuming(&campaign, observer);
    let ctx = Ctx {
        req,
        out: &out,
        state: &state,
        ledger: &ledger,
        me: &me,
        list: &list,
        mode,
    };
    let mut pause = POLL_MIN;
    let mut last_progress = None;
    let mut nothing_to_select = 0;
    loop {
        let active = poll_patiently(&mut campaign, &state, &mut pause, observer)?;
        let summary = summary(&state)?;
        let progress = progress_of(&summary, &campaign, active);
        observer.progress(&progress);
        if last_progress
            .as_ref()
            .is_some_and(|p: &Progress| p.same_counts(&progress))
        {
            pause = (pause.mul_f64(1.5)).min(POLL_MAX);
        } else {
            pause = POLL_MIN;
        }
        last_progress = Some(progress);
        let profile = active == 0 && ctx.profile_usable();
        let view = view_of(&summary, active, profile, campaign.submissions.len());
        let last = campaign.submissions.last().map(last_of);
        let (purpose, overrides, why, pilot) =
            match decide::decide(&view, last.as_ref(), req.limits) {
                Action::Wait => {
                    std::thread::sleep(pause);
                    continue;
                }
                Action::Pilot { granules, why } => {
                    (Purpose::Pilot, ctx.pilot_overrides(), why, Some(granules))
                }
                Action::Submit {
                    purpose,
                    overrides,
                    why,
                } => (purpose, overrides, why, None),
                Action::Finish { why } => {
                    match finish(&ctx, &summary, &mut campaign, why, observer)? {
                        Some(finished) => return Ok(finished),
                        None => continue,
                    }
                }
                Action::Bound { why } => return stop(&mut campaign, &state, out, why),
            };
        let chosen = ctx.choose(pilot)?;
        if chosen.is_empty() {
            // The records changed since the look (a holder proven dead meanwhile): look
            // again rather than submit an empty job, but not forever.
            nothing_to_select += 1;
            if nothing_to_select < EMPTY_LOOKS {
                std::thread::sleep(pause);
                continue;
            }
            let why = unselectable(view.todo(), &out);
            return stop(&mut campaign, &state, out, why);
        }
        nothing_to_select = 0;
        let sub = ctx.submit(&chosen, purpose, overrides, why, view.done)?;
        announce(observer, &sub);
        campaign.submissions.push(sub);
        save(&campaign, &state)?;
        pause = POLL_MIN;
    }
}

/// The layout gen chose for the campaign's script.
fn mode_of(script: &str) -> Mode {
    if script.contains("\n#SBATCH --array=") {
        Mode::Array
    } else {
        Mode::Tasks
    }
}

/// Says which jobs of an earlier run are watched rather than submitted again.
fn say_resuming(campaign: &Campaign, observer: &mut dyn Observer) {
    let waiting: Vec<&str> = campaign
        .submissions
        .iter()
        .filter(|s| s.ended_unix.is_none())
        .map(|s| s.job_id.as_str())
        .collect();
    if !waiting.is_empty() {
        observer.say(&format!(
            "resuming: the campaign record names job(s) {} not yet seen ending; watching them \
             instead of submitting again",
            waiting.join(", ")
        ));
    }
}

/// The campaign's jobs still active, asking Slurm again (with a growing `pause`) until it
/// answers or `SLURM_TRIES` looks in a row have failed.
fn poll_patiently(
    campaign: &mut Campaign,
    state: &Path,
    pause: &mut Duration,
    observer: &mut dyn Observer,
) -> Result<usize, RunError> {
    let mut slurm_failures = 0;
    loop {
        match poll_jobs(campaign, state) {
            Ok(n) => return Ok(n),
            Err(e) if slurm_failures + 1 < SLURM_TRIES => {
                slurm_failures += 1;
                observer.say(&format!(
                    "Slurm did not answer ({e}); trying again in {} s",
                    pause.as_secs()
                ));
                std::thread::sleep(*pause);
                *pause = (*pause * 2).min(POLL_MAX * 4);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The last submission as the decision sees it.
fn last_of(s: &Submission) -> Last {
    Last {
        purpose: s.purpose,
        sizing: s.sizing.clone(),
        overrides: s.overrides.clone(),
        done_before: s.done_before,
    }
}

/// Why the run stops when the records count work left that no job can be given.
fn unselectable(todo: usize, out: &Path) -> String {
    format!(
        "the records count {todo} granule(s) left to do, yet none can be selected for a \
         job (held by processes that may be alive?): see `pseg-slurm status {}`",
        out.display()
    )
}

/// Nothing left that can succeed: verify the done granules' outputs and record the end;
/// `None` when verify sent granules back to be redone.
fn finish(
    ctx: &Ctx,
    summary: &Overview,
    campaign: &mut Campaign,
    why: String,
    observer: &mut dyn Observer,
) -> Result<Option<Finished>, RunError> {
    observer.say(&why);
    let report = verify::check(ctx.ledger, ctx.out)?;
    let findings: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    if !findings.is_empty() {
        for f in &findings {
            observer.say(&format!("verify: {f}"));
        }
        let marked = verify::record(ctx.ledger, ctx.out, &report, ctx.me)?;
        if marked
            .iter()
            .any(|(_, m)| *m == crate::domain::ledger::claim::Marked::Marked)
        {
            observer.say("verify found changed outputs: those granules are redone");
            return Ok(None);
        }
    }
    let failures: Vec<Failure> = summary
        .failures
        .iter()
        .filter(|f| !counts_as_retryable(f))
        .cloned()
        .collect();
    let exit = if failures.is_empty() {
        Ending::AllDone
    } else {
        Ending::SomeFailed
    };
    campaign.run_outcome = Some(RunOutcome {
        exit: u8::from(exit != Ending::AllDone),
        why,
        unix: crate::base::time::unix_now(),
    });
    save(campaign, ctx.state)?;
    Ok(Some(Finished {
        exit,
        out: ctx.out.to_path_buf(),
        failures,
        verify_findings: findings,
        verified: report.checked,
    }))
}

/// Ends the run at a bound: recorded, and the work left for a later run.
fn stop(
    campaign: &mut Campaign,
    state: &Path,
    out: PathBuf,
    why: String,
) -> Result<Finished, RunError> {
    campaign.run_outcome = Some(RunOutcome {
        exit: 3,
        why: why.clone(),
        unix: crate::base::time::unix_now(),
    });
    save(campaign, state)?;
    Ok(Finished {
        exit: Ending::Bound(why),
        out,
        failures: Vec::new(),
        verify_findings: Vec::new(),
        verified: 0,
    })
}

/// What the driver needs at hand to submit.
struct Ctx<'a> {
    req: &'a Request,
    out: &'a Path,
    state: &'a Path,
    ledger: &'a Ledger,
    me: &'a Holder,
    list: &'a GranuleList,
    mode: Mode,
}

impl Ctx<'_> {
    /// Done granule reports gen can size from (or the user's own `--profile`).
    fn profile_usable(&self) -> bool {
        !self.req.gen_request.sizing.profile.is_empty() || self.profile().is_some()
    }

    /// What to pass gen as `--profile`: the campaign's report folder; when gen cannot read
    /// that folder whole (a pseg-step's step summaries in it, until gen reads them), the
    /// reports of the done granules one by one. `None` when nothing is measured.
    fn profile(&self) -> Option<Vec<PathBuf>> {
        let reports = self.out.join(crate::domain::reports::DIR);
        if !reports.is_dir() {
            return None;
        }
        let measured = |args: &[PathBuf]| {
            script::profile::read_all(args).is_ok_and(|m| !m.granules.is_empty())
        };
        let folder = vec![reports];
        if measured(&folder) {
            return Some(folder);
        }
        let done: Vec<PathBuf> = self
            .ledger
            .scan()
            .ok()?
            .records
            .into_iter()
            .filter(|r| r.status == crate::domain::ledger::Status::Done)
            .filter_map(|r| r.report)
            .filter(|p| p.is_file())
            .collect();
        (!done.is_empty() && measured(&done)).then_some(done)
    }

    /// The granules a job can still make succeed, in list order.
    /// The granules for the next job: every one to do, or for a pilot of `n`, the `n`
    /// largest.
    fn choose(&self, pilot: Option<usize>) -> Result<Vec<Granule>, RunError> {
        let mut chosen = self.todo()?;
        if let Some(n) = pilot {
            // Largest first: the pilot should see the campaign's worst case.
            chosen.sort_by_key(|g| std::cmp::Reverse(file_size(&g.path)));
            chosen.truncate(n);
        }
        Ok(chosen)
    }

    fn todo(&self) -> Result<Vec<Granule>, RunError> {
        let sel = retry::select(self.ledger, self.list, true, true, self.me)?;
        let budget = RetryBudget::default();
        let mut chosen = sel.missing;
        for g in sel.failed {
            let retryable = self
                .ledger
                .record(&g.name())?
                .is_some_and(|r| r.retryable(&budget) && !r.kind.is_some_and(never_retried));
            if retryable {
                chosen.push(g);
            }
        }
        chosen.sort_by_key(|g| g.line);
        Ok(chosen)
    }

    /// Generous limits: one granule per task (side by side), and at least an hour.
    fn pilot_overrides(&self) -> Overrides {
        let user_time = self.req.gen_request.slurm.time.map(|t| t.seconds);
        Overrides {
            chunk_size: Some(1),
            time_seconds: Some(user_time.unwrap_or(0).max(decide::PILOT_TIME_SECONDS)),
            cpus_per_task: None,
            peak_mem_mib: None,
        }
    }

    /// Writes the list and the script into `pseg-state/retry/`, submits it, and returns the
    /// record of the submission (not yet saved).
    fn submit(
        &self,
        granules: &[Granule],
        purpose: Purpose,
        overrides: Overrides,
        why: String,
        done_before: usize,
    ) -> Result<Submission, RunError> {
        let dir = self.state.join(crate::domain::ledger::RETRY);
        std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
            path: dir.clone(),
            source,
        })?;
        let stem = self
            .req
            .gen_request
            .files
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "list".into());
        let n = (1..)
            .find(|n| !dir.join(format!("{stem}-run-{n}.txt")).exists())
            .unwrap_or(1);
        let list_path = dir.join(format!("{stem}-run-{n}.txt"));
        let mut text = format!(
            "# pseg-slurm run, submission {n} ({}): {} granule(s)\n",
            purpose_name(purpose),
            granules.len()
        );
        for g in granules {
            let path = std::path::absolute(&g.path).unwrap_or_else(|_| g.path.clone());
            text.push_str(&path.to_string_lossy());
            text.push('\n');
        }
        write_file(&list_path, text.as_bytes())?;

        let mut g = self.gen_request(&list_path, purpose, &overrides)?;
        g.files = list_path.clone();
        let generated = script::generate_in(&g, &self.req.cwd)?;
        generated.create_log_dir()?;
        let script_path = dir.join(format!("{stem}-run-{n}.sbatch"));
        write_file(&script_path, generated.script.as_bytes())?;
        let job_id = slurm::sbatch(&script_path, &self.req.cwd)?;
        Ok(Submission {
            job_id,
            purpose,
            why,
            granules: granules.len(),
            list: list_path,
            script: script_path,
            sizing: slurm::script_sizing(&generated.script, granules.len()),
            overrides,
            done_before,
            submitted_unix: crate::base::time::unix_now(),
            ended_unix: None,
        })
    }

    /// The user's gen request for a list elsewhere, with `overrides` and the reports on top.
    fn gen_request(
        &self,
        list: &Path,
        purpose: Purpose,
        o: &Overrides,
    ) -> Result<script::Request, RunError> {
        let mut g = self.req.gen_request.clone();
        // What the campaign's own list implied (a file_list's output folder, clavrx_options
        // beside it) is lost with a list elsewhere: pass it on as flags, as `retry` does.
        if g.step.out.is_none() {
            g.step.out = Some(self.out.to_path_buf());
        }
        if g.step.options.is_none() {
            let beside = self.list.options_beside();
            if beside.is_file() {
                g.step.options = Some(std::path::absolute(&beside).unwrap_or(beside));
            }
        }
        g.files = list.to_path_buf();
        if purpose != Purpose::Pilot && g.sizing.profile.is_empty() {
            g.sizing.profile = self.profile().unwrap_or_default();
        }
        if let Some(mib) = o.peak_mem_mib {
            g.sizing.peak_mem = Some(crate::base::units::Size(mib << 20));
        }
        if let Some(t) = o.time_seconds {
            g.slurm.time = Some(TimeLimit::from_seconds(t));
        }
        if let Some(c) = o.cpus_per_task.and_then(std::num::NonZeroU32::new) {
            g.slurm.cpus_per_task = Some(c);
        }
        if let Some(chunk) = o.chunk_size.and_then(std::num::NonZeroUsize::new) {
            match self.mode {
                Mode::Array => g.slurm.chunk_size = Some(chunk),
                Mode::Tasks => {
                    let n = read_list(list)?.granules.len();
                    g.slurm.ntasks = std::num::NonZeroUsize::new(n.div_ceil(chunk.get()));
                }
            }
        }
        Ok(g)
    }
}

/// Kinds no job can fix: the granule itself is bad. (By name, so kinds added to the
/// ledger later — `not-processed` — are covered as soon as they exist.)
fn never_retried(kind: FailureKind) -> bool {
    matches!(kind.name(), "bad-input" | "not-processed")
}

fn counts_as_retryable(f: &Failure) -> bool {
    f.retryable && !f.kind.is_some_and(never_retried)
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Pilot => "pilot",
        Purpose::Rest => "the campaign",
        Purpose::Resubmit => "resubmission",
    }
}

fn announce(observer: &mut dyn Observer, s: &Submission) {
    observer.say(&format!(
        "submitted job {} ({}, {} granule(s)): {}",
        s.job_id,
        purpose_name(s.purpose),
        s.granules,
        s.why
    ));
    observer.say(&format!(
        "job {} asks for {}",
        s.job_id,
        s.sizing.describe()
    ));
    if s.purpose != Purpose::Pilot {
        let script = std::fs::read_to_string(&s.script).unwrap_or_default();
        for note in slurm::sizing_notes(&script) {
            observer.say(&format!("  gen: {note}"));
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut f = std::fs::File::create(path).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| RunError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The campaign record with this run's gen call, keeping the jobs of earlier runs.
fn open_campaign(
    req: &Request,
    generated: &Generated,
    granules: usize,
    state: &Path,
) -> Result<Campaign, RunError> {
    let call = GenCall {
        cwd: req.cwd.clone(),
        args: req.gen_argv.clone(),
        config: generated.config.clone(),
    };
    let mut campaign = Campaign::new(
        &generated.list,
        &generated.out,
        Some(call),
        "pseg-slurm run",
    )
    .with_granules(granules);
    if let Some(old) = Campaign::read(state)? {
        if old.disagreement(&campaign).is_none() {
            campaign.submissions = old.submissions;
        }
    }
    campaign.write(state)?;
    Ok(campaign)
}

fn save(campaign: &Campaign, state: &Path) -> Result<(), RunError> {
    Ok(campaign.write(state)?)
}

/// Asks Slurm about every job not yet seen ending; records those that ended. The number
/// still queued.
fn poll_jobs(campaign: &mut Campaign, state: &Path) -> Result<usize, SlurmError> {
    let mut active = 0;
    let mut changed = false;
    for s in campaign
        .submissions
        .iter_mut()
        .filter(|s| s.ended_unix.is_none())
    {
        if slurm::queued(&s.job_id)? {
            active += 1;
        } else {
            s.ended_unix = Some(crate::base::time::unix_now());
            changed = true;
        }
    }
    if changed {
        // Not fatal: the next look records it again.
        let _ = campaign.write(state);
    }
    Ok(active)
}

fn summary(state: &Path) -> Result<Overview, RunError> {
    Ok(status::summarize(
        status::read(state)?,
        &RetryBudget::default(),
        crate::base::time::unix_now(),
    ))
}

fn progress_of(s: &Overview, campaign: &Campaign, active: usize) -> Progress {
    let c = &s.counts;
    let final_failed = s
        .failures
        .iter()
        .filter(|f| !counts_as_retryable(f))
        .count();
    Progress {
        granules: s.granules,
        done: c.done,
        failed: final_failed,
        running: c.claimed + c.running,
        pending: s
            .granules
            .saturating_sub(c.done + final_failed + c.claimed + c.running),
        done_per_hour: s.done_per_hour,
        eta_seconds: s.eta_seconds,
        jobs: campaign
            .submissions
            .iter()
            .filter(|s| s.ended_unix.is_none())
            .map(|s| s.job_id.clone())
            .take(active.max(1))
            .collect(),
    }
}

fn view_of(s: &Overview, active: usize, profile: bool, submissions: usize) -> View {
    let c = &s.counts;
    let retry = |oom: bool| {
        s.failures
            .iter()
            .filter(|f| counts_as_retryable(f))
            .filter(|f| (f.kind == Some(FailureKind::OutOfMemory)) == oom)
            .count()
    };
    let retry_oom = retry(true);
    let retry_other = retry(false);
    View {
        granules: s.granules,
        done: c.done,
        failed_final: c.failed.saturating_sub(retry_oom + retry_other),
        never_started: c.pending,
        interrupted: c.interrupted,
        lost: c.lost,
        retry_oom,
        retry_other,
        busy: c.claimed + c.running,
        jobs_active: active,
        profile,
        submissions,
    }
}
