//! `pseg-step`'s engine: checks its inputs, picks this Slurm task's granules, and runs them,
//! each fanned out over clones. Failures are per granule; a signal ends everything.
//!
//! It takes a plain [`Request`] (no clap), says what it does through the caller's
//! [`Notices`] and returns how the step ended ([`Ending`]) or why it could not run
//! ([`StepError`]); the command (`cmd::step`) prints those and chooses the exit status. The
//! granules' progress is formatted by `progress` and written where `Notices::progress` says.

mod drain;
mod error;
pub mod exe;
mod feeder;
mod granule;
mod memory_sampler;
pub mod preflight;
mod progress;
mod run_monitor;
mod schedstat;
pub mod scratch;
mod storage;
mod summary;
mod timeline;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::StepError;
pub use progress::ProgressOut;
pub use summary::Closing;

use crate::base::unix::{self, Signals};
use crate::domain::clavrx_options::ClavrxOptions;
use crate::domain::fanout::machine::{self, Exit, Failure, Limits};
use crate::domain::fanout::orphan_guard::Watchdog;
use crate::domain::granule_list::{Granule, GranuleList, read_list};
use crate::domain::ledger::alive::Liveness;
use crate::domain::ledger::{
    Campaign, FailureKind, Holder, Ledger, LedgerError, Outcome, Queue, STATE_DIR,
};
use crate::domain::reports;
use crate::domain::task_share::Place;
use crate::domain::tracer::{ElfError, TracerSymbols};
use feeder::Feeder;
use granule::Plan;
use memory_sampler::MemorySetup;
use scratch::Scratch;
use summary::StepSummary;

/// What to run: `pseg-step`'s flags as plain values (see `pseg-step --help` for each).
#[derive(Debug, Clone)]
pub struct Request {
    /// The granule list (a plain list or CLAVR-x's file_list).
    pub files: PathBuf,
    /// clavrxorb: a path, or a name looked up on PATH.
    pub exe: PathBuf,
    /// `None`: clavrx_options beside the list.
    pub options: Option<PathBuf>,
    /// `None`: a file_list's output folder.
    pub out: Option<PathBuf>,
    /// `None`: OUT/pseg-state.
    pub state: Option<PathBuf>,
    /// `None`: a scratch folder in TMPDIR, failed granules' copied to OUT/pseg-failed.
    pub work: Option<PathBuf>,
    /// `None`: the options file's scan_lines.
    pub scan_lines: Option<u32>,
    /// `None`: the CPUs this process may use.
    pub max_workers: Option<usize>,
    pub max_lead: usize,
    pub max_granules: usize,
    pub serial: bool,
    /// Granules per Slurm array element.
    pub chunk_size: Option<usize>,
    pub stall_timeout: Duration,
    pub drain_margin: Duration,
    /// `None`: memory is sampled only at waitpoints.
    pub sample_interval: Option<Duration>,
    /// Bytes this step may use when no cgroup or Slurm limit says.
    pub mem_budget: Option<u64>,
    pub profile: Vec<PathBuf>,
    /// Start a worker only while memory allows one more.
    pub mem_admission: bool,
    pub keep_work: bool,
}

/// Where the step's lines for its user go, one line each, as they happen (the command
/// writes them to stderr).
pub trait Notices {
    /// What the step found or is doing.
    fn notice(&self, line: &str);
    /// Something went wrong that does not stop the step.
    fn warning(&self, line: &str);
    /// Where the granules' progress goes.
    fn progress(&self) -> ProgressOut;
}

/// How a step that could run ended.
#[derive(Debug)]
pub enum Ending {
    /// Nothing was left for this task to do (a notice said why).
    NothingToDo,
    /// Every granule this task claimed ran to its end, done or failed.
    Finished(Closing),
    /// A folder refused a write (the granule's failure says which): the step stopped, and the
    /// granule is redone on the next run without using its retry budget.
    StorageStopped(Closing),
    /// Slurm's time-limit warning (`signal`) came: granules in flight finished, unstarted
    /// ones are left for the next submission.
    TimeLimit {
        signal: i32,
        done: usize,
        not_started: usize,
    },
    /// A terminating signal ended every clavrxorb; the granules in flight were recorded as
    /// interrupted.
    Interrupted { signal: i32, done: usize },
}

/// Runs a step: its inputs checked, this task's share picked, the ledger opened, memory set
/// up, the granules run and the summary written.
pub fn run(req: &Request, notices: &dyn Notices) -> Result<Ending, StepError> {
    unix::close_inherited_fds_on_exec().map_err(StepError::os("closing inherited descriptors"))?;
    let inputs = check_inputs(req, notices)?;
    let Some(chunk) = pick_share(&inputs, notices)? else {
        return Ok(Ending::NothingToDo);
    };
    let folders = open_folders(req, &inputs, notices)?;
    let Some(pending) = pending_granules(&inputs, &folders, chunk, notices)? else {
        return Ok(Ending::NothingToDo);
    };
    let by_name: HashMap<String, &Granule> =
        inputs.list.granules.iter().map(|g| (g.name(), g)).collect();

    unix::become_subreaper().map_err(StepError::os("becoming a child subreaper"))?;
    let mut signals = Signals::install().map_err(StepError::os("setting up signal handling"))?;
    let marker = folders.scratch.as_ref().map(Scratch::marker);
    let mut watchdog =
        Watchdog::start(marker.as_deref()).map_err(StepError::os("starting the watchdog"))?;
    let plan = plan(req, &inputs, &folders, notices)?;
    let total = pending.len();
    say_mode(req, &plan, total, notices);

    let feeder = Feeder {
        plan: &plan,
        ledger: &folders.ledger,
        queue: Queue::new(pending),
        me: &folders.me,
        by_name,
        watchdog: &mut watchdog,
        reports: folders.reports.clone(),
        summary: StepSummary::new(),
        total,
        started: 0,
        slowest_done: None,
        storage_failed: false,
        interrupted_by: None,
        error: None,
    };
    let ran = run_granules(req, &plan, &mut signals, feeder)?;
    Ok(conclude(ran, &plan, &signals, &folders.reports, total))
}

/// The step's inputs, checked; nothing is created yet.
struct Inputs {
    exe: PathBuf,
    /// `None`: clavrxorb runs without the tracer (`--serial` only).
    symbols: Option<TracerSymbols>,
    list: GranuleList,
    files: PathBuf,
    options: ClavrxOptions,
    scan_lines: u32,
    place: Place,
    out_dir: PathBuf,
    state: PathBuf,
}

fn check_inputs(req: &Request, notices: &dyn Notices) -> Result<Inputs, StepError> {
    let exe = exe::find(&req.exe)?;
    let symbols = tracer_symbols(req, &exe, notices)?;
    let files = &req.files;
    let list = read_list(files)?;
    list.check()?;
    let (options, out) = defaults(req, &list)?;
    let options = ClavrxOptions::read(&options)?;
    let scan_lines = req.scan_lines.unwrap_or(options.scan_lines);
    let place = Place::from_env(req.chunk_size)?;
    let out_dir = std::path::absolute(&out).map_err(|source| StepError::NotWritable {
        what: "output directory",
        flag: "--out",
        path: out.clone(),
        source,
    })?;
    let state = req.state.clone().unwrap_or_else(|| out_dir.join(STATE_DIR));
    Ok(Inputs {
        exe,
        symbols,
        list,
        files: files.clone(),
        options,
        scan_lines,
        place,
        out_dir,
        state,
    })
}

/// clavrxorb's tracer symbols; with `--serial`, `None` (and a warning) when it has none or
/// the kernel would not let pseg-step follow them.
fn tracer_symbols(
    req: &Request,
    exe: &Path,
    notices: &dyn Notices,
) -> Result<Option<TracerSymbols>, StepError> {
    match TracerSymbols::read(exe) {
        Ok(symbols) if req.serial => match preflight::memory_access_denied(Path::new("/proc")) {
            Some(why) => {
                notices.warning(&format!(
                    "{why}: pseg-step cannot follow clavrxorb's tracer, so \
                     --serial runs it without, on a weaker proof of completion (exit 0 and \
                     every output non-empty); `pseg-step --check` says how to lift it"
                ));
                Ok(None)
            }
            None => Ok(Some(symbols)),
        },
        Ok(symbols) => Ok(Some(symbols)),
        Err(e) if req.serial => {
            let why = match &e {
                ElfError::NoTracer { .. } => format!("{} has no tracer symbols", exe.display()),
                other => other.to_string(),
            };
            notices.warning(&format!(
                "{why}: --serial runs it without the tracer, on a weaker \
                 proof of completion (exit 0 and every output non-empty)"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// This task's share of the list. An array element owns its chunk; otherwise every task of
/// the step shares the whole list and claims granules one at a time, so a fast task simply
/// takes more. `None`: an array element past the end of a list that has shrunk since the
/// campaign was recorded, which has nothing to do.
fn pick_share(inputs: &Inputs, notices: &dyn Notices) -> Result<Option<Range<usize>>, StepError> {
    let (place, files, list) = (&inputs.place, &inputs.files, &inputs.list);
    match place.owned_chunk(list.granules.len()) {
        Ok(chunk) => Ok(Some(chunk)),
        Err(e) => match shrunk_from(&inputs.state, files, list.granules.len()) {
            Some(was) => {
                notices.notice(&format!(
                    "nothing to do: {}={} (--chunk-size {}) is past the end of {}, \
                     which names {} granule(s) now and named {was} when the campaign was \
                     recorded: the list has shrunk",
                    crate::domain::task_share::ENV_ARRAY_TASK_ID,
                    place.array_index.unwrap_or_default(),
                    place.chunk_size.unwrap_or_default(),
                    files.display(),
                    list.granules.len()
                ));
                Ok(None)
            }
            None => Err(e.into()),
        },
    }
}

/// The folders a step writes, made and proven writable, and its ledger.
struct Folders {
    out: PathBuf,
    work: PathBuf,
    /// Where a failed granule's work folder is copied (when `work` is the scratch folder).
    keep_failed: Option<PathBuf>,
    reports: PathBuf,
    me: Holder,
    ledger: Ledger,
    /// Removed with everything in it when dropped: after the watchdog is told the step ends.
    scratch: Option<Scratch>,
}

/// Makes the output, work and state folders. Every check that creates something comes after
/// the ones that do not; should one of them fail, the folders made so far are removed again.
fn open_folders(
    req: &Request,
    inputs: &Inputs,
    notices: &dyn Notices,
) -> Result<Folders, StepError> {
    work_fits_file_list(req)?;
    let mut made = Made::default();
    let out = writable_dir(&mut made, &inputs.out_dir, "output directory", "--out")?;
    // Node-local scratch by default: clavrxorb and every clone write logs and temporary
    // files there, thousands per granule, which a shared filesystem serves slowly. A failed
    // granule's directory is copied next to the outputs, so its logs outlive the job.
    let me = Holder::current();
    let tmp = std::env::temp_dir();
    let scratch = match &req.work {
        Some(_) => None,
        None => Some(
            Scratch::create(&tmp, &me).map_err(|source| StepError::NotWritable {
                what: "temporary directory",
                flag: "--work (or TMPDIR)",
                path: tmp.clone(),
                source,
            })?,
        ),
    };
    let work = match (&req.work, &scratch) {
        (Some(w), _) => writable_dir(&mut made, w, "work directory", "--work")?,
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("scratch is made when --work is absent"),
    };
    let keep_failed = scratch.as_ref().map(|_| out.join(granule::FAILED_DIR));

    let reports = out.join(reports::DIR);
    let manifests = reports.clone();
    for dir in Ledger::layout(&inputs.state) {
        made.create(&dir)
            .map_err(|source| LedgerError::Create { path: dir, source })?;
    }
    let ledger = Ledger::open(&inputs.state)?
        .with_output_check(move |name| reports::outputs_present(&manifests, name));
    made.keep();
    let swept = scratch::sweep(&tmp, &me, &Liveness::new(Path::new("/proc"), Some(None)));
    if !swept.is_empty() {
        let names: Vec<String> = swept.iter().map(|p| p.display().to_string()).collect();
        notices.notice(&format!(
            "removed {} work folder(s) left by pseg-step runs that died on this \
             host: {}",
            swept.len(),
            names.join(" ")
        ));
    }
    Ok(Folders {
        out,
        work,
        keep_failed,
        reports,
        me,
        ledger,
        scratch,
    })
}

/// Says what the list was read as, records the campaign, and returns the granules of this
/// task's share not yet done nor out of retries; `None` (with a notice) when there is none.
fn pending_granules(
    inputs: &Inputs,
    folders: &Folders,
    chunk: Range<usize>,
    notices: &dyn Notices,
) -> Result<Option<Vec<String>>, StepError> {
    let (list, state, out) = (&inputs.list, &inputs.state, &folders.out);
    // The first progress line: which kind of list this was read as.
    notices.notice(&crate::base::escape::controls(&list.describe()));
    let list_path =
        std::path::absolute(&inputs.files).map_err(StepError::os("resolving --files"))?;
    let campaign =
        Campaign::new(&list_path, out, None, "pseg-step").with_granules(list.granules.len());
    match campaign.remember(state) {
        Err(e) => notices.warning(&e.to_string()),
        Ok(Some(other))
            if !list_path.starts_with(
                std::path::absolute(state)
                    .unwrap_or_default()
                    .join(crate::domain::ledger::RETRY),
            ) =>
        {
            notices.warning(&crate::base::escape::controls(&other))
        }
        Ok(_) => {}
    }
    let candidates: Vec<String> = list.granules[chunk].iter().map(|g| g.name()).collect();
    let pending = folders.ledger.pending(&candidates)?;
    if pending.len() < candidates.len() {
        notices.notice(&format!(
            "{} of {} granule(s) already done or out of retries (see pseg-slurm status {})",
            candidates.len() - pending.len(),
            candidates.len(),
            state.display()
        ));
    }
    if pending.is_empty() {
        notices.notice("nothing left to do for this task");
        return Ok(None);
    }
    Ok(Some(pending))
}

/// What every granule shares, memory set up: the limit found, admission's estimates learnt
/// from the campaign's reports and `--profile`.
fn plan<'n>(
    req: &Request,
    inputs: &Inputs,
    folders: &Folders,
    notices: &'n dyn Notices,
) -> Result<Plan<'n>, StepError> {
    let max_workers = req.max_workers.unwrap_or_else(crate::base::cpus::available);
    let interval = req.sample_interval;
    let memory = MemorySetup::discover(
        interval,
        req.mem_admission,
        req.mem_budget,
        crate::base::cpus::available(),
    );
    memory.learn_from_campaign(&folders.reports);
    if let Err(e) = memory.learn_from_profile(&req.profile) {
        notices.warning(&format!("--profile: {e}; admitting workers without it"));
    }
    Ok(Plan {
        exe: std::path::absolute(&inputs.exe).map_err(StepError::os("resolving the executable"))?,
        symbols: inputs.symbols.clone(),
        serial: req.serial,
        options_text: inputs.options.with_scan_lines(inputs.scan_lines),
        scan_lines: inputs.scan_lines,
        memory,
        out: folders.out.clone(),
        work: folders.work.clone(),
        limits: Limits {
            max_workers,
            max_lead: req.max_lead,
        },
        policy: granule::policy(req.stall_timeout, interval),
        keep_work: req.keep_work,
        keep_failed: folders.keep_failed.clone(),
        drain: run_monitor::DrainPolicy {
            margin: req.drain_margin,
            job_end: drain::job_end(|k| std::env::var(k).ok()),
            prior_wall: None,
        },
        notices,
    })
}

/// The line before the first granule: how many, how they run, under what memory limit.
fn say_mode(req: &Request, plan: &Plan, total: usize, notices: &dyn Notices) {
    let (max_workers, scan_lines) = (plan.limits.max_workers, plan.scan_lines);
    let mode = if req.serial && plan.symbols.is_none() {
        "serially, without the tracer".to_string()
    } else if req.serial {
        format!("serially (tracer without clones), segments of {scan_lines} lines")
    } else {
        format!("with up to {max_workers} workers, segments of {scan_lines} lines")
    };
    let limit = plan.memory.limit.as_ref().map_or_else(
        || "no memory limit known".to_string(),
        |l| {
            format!(
                "memory limit {} ({})",
                crate::base::units::Size(l.bytes),
                l.source
            )
        },
    );
    notices.notice(&format!("{total} granule(s) to claim {mode}; {limit}"));
}

/// What running the granules left: the summary, and why it stopped.
struct Ran {
    summary: StepSummary,
    /// Every granule of the share was claimed.
    queue_done: bool,
    storage_failed: bool,
    interrupted_by: Option<i32>,
}

/// Runs the granules, up to `--max-granules` at once (one with `--serial`), until none is
/// left, a folder refuses a write, or a signal ends the step.
fn run_granules(
    req: &Request,
    plan: &Plan,
    signals: &mut Signals,
    mut feeder: Feeder<'_, '_>,
) -> Result<Ran, StepError> {
    let pool = crate::domain::fanout::Pool {
        // --serial is the reference a fan-out is measured against: one granule at a time.
        max_granules: if req.serial {
            1
        } else {
            req.max_granules.max(1)
        },
        max_workers: plan.limits.max_workers,
    };
    let signal = crate::domain::fanout::supervise(signals, &mut feeder, pool, &plan.policy)
        .map_err(StepError::os("supervising clavrxorb"))?;
    let Feeder {
        summary,
        queue,
        storage_failed,
        interrupted_by,
        error,
        ..
    } = feeder;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(Ran {
        summary,
        queue_done: queue.is_done(),
        storage_failed,
        interrupted_by: interrupted_by.or(signal),
    })
}

/// Writes the step's summary report and says how the step ended.
fn conclude(ran: Ran, plan: &Plan, signals: &Signals, reports: &Path, total: usize) -> Ending {
    let Ran {
        mut summary,
        queue_done,
        storage_failed,
        interrupted_by,
    } = ran;
    summary.write(
        reports,
        plan.memory
            .own
            .as_ref()
            .and_then(|cg| cg.peak().ok().flatten()),
        plan.notices,
    );
    if interrupted_by.is_none() && signals.warned() && !queue_done {
        // Unstarted granules are left: the status a wrapper reads as "submit again".
        return Ending::TimeLimit {
            signal: nix::sys::signal::Signal::SIGUSR1 as i32,
            done: summary.report.done,
            not_started: total.saturating_sub(summary.report.granules),
        };
    }
    if let Some(signal) = interrupted_by {
        return Ending::Interrupted {
            signal,
            done: summary.report.done,
        };
    }
    let closing = summary.close();
    if storage_failed {
        return Ending::StorageStopped(closing);
    }
    Ending::Finished(closing)
}

/// The ledger's view of a failed granule: what kind of failure, for its retry budget.
fn failure_outcome(f: &Failure, oom: bool, message: String) -> Outcome {
    if f.kind == machine::Fault::NotProcessed {
        return Outcome::failed(FailureKind::NotProcessed, message);
    }
    let (signal, exit) = match f.kind {
        machine::Fault::Died(Exit::Signal(s)) | machine::Fault::EndedEarly(Exit::Signal(s)) => {
            (Some(s), None)
        }
        machine::Fault::Died(Exit::Code(c)) | machine::Fault::EndedEarly(Exit::Code(c)) => {
            (None, Some(c))
        }
        _ => (None, None),
    };
    let stalled = matches!(f.kind, machine::Fault::Stalled(_));
    let kind = FailureKind::from_parts(signal, exit, oom, stalled, false);
    let outcome = Outcome::failed(kind, message);
    match exit {
        Some(c) => outcome.with_exit_status(c),
        None => outcome,
    }
}

/// How many granules the campaign's record saw in `files` when it named more than `now`:
/// the list has shrunk since (an array element past its end then has nothing to do).
fn shrunk_from(state: &Path, files: &Path, now: usize) -> Option<usize> {
    let campaign = Campaign::read(state).ok()??;
    let same_list = match (
        std::fs::canonicalize(&campaign.list),
        std::fs::canonicalize(files),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    campaign.granules.filter(|&was| same_list && was > now)
}

/// Folders a starting step created, removed again (only while empty: nothing anyone wrote
/// is ever deleted) unless [`Made::keep`] is called, so a failed check leaves the file
/// system as it found it. Only folders this process itself created count: tasks of one step
/// start together and may race to create the same output folder.
#[derive(Default)]
struct Made(Vec<PathBuf>);

impl Made {
    /// Creates `dir` and its missing ancestors, noting those this call created.
    fn create(&mut self, dir: &Path) -> std::io::Result<()> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_err())
            .collect();
        for a in missing.into_iter().rev() {
            match std::fs::create_dir(a) {
                Ok(()) => self.0.push(a.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every check passed: what was made stays.
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The options file and output folder: the flags, else what the list implies (clavrx_options
/// beside it; a file_list's output folder).
fn defaults(args: &Request, list: &GranuleList) -> Result<(PathBuf, PathBuf), StepError> {
    let options = match &args.options {
        Some(o) => o.clone(),
        None => {
            let beside = list.options_beside();
            if !beside.is_file() {
                return Err(StepError::Usage(format!(
                    "no --options given, and there is no {} beside {} to use instead; give \
                     --options FILE",
                    crate::domain::granule_list::OPTIONS_FILE,
                    list.source.display()
                )));
            }
            beside
        }
    };
    let out = match (&args.out, list.output_dir()) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => o.to_path_buf(),
        (None, None) => {
            return Err(StepError::Usage(format!(
                "no --out given, and {} is a plain granule list, which names no output folder; \
                 give --out DIR (a CLAVR-x file_list names it on line 2)",
                list.source.display()
            )));
        }
    };
    Ok((options, out))
}

/// The work folder (where each granule's staging folder goes) must fit on one line of
/// clavrxorb's `file_list`; checked before anything is created.
fn work_fits_file_list(args: &Request) -> Result<(), StepError> {
    let (path, what, flag) = match &args.work {
        Some(w) => (w.clone(), "work directory", "--work"),
        None => (
            std::env::temp_dir(),
            "temporary directory",
            "--work (or TMPDIR)",
        ),
    };
    match std::path::absolute(&path)
        .ok()
        .and_then(|p| crate::domain::granule_list::file_list_problem(&p))
    {
        Some(why) => Err(StepError::NotForFileList {
            what,
            flag,
            path,
            why,
        }),
        None => Ok(()),
    }
}

/// Creates `dir` if needed and proves a file can be written in it.
fn writable_dir(
    made: &mut Made,
    dir: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<PathBuf, StepError> {
    let fail = |source| StepError::NotWritable {
        what,
        flag,
        path: dir.to_path_buf(),
        source,
    };
    made.create(dir).map_err(fail)?;
    tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::path::absolute(dir).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Keeps the lines the step says, as the command would print them.
    #[derive(Default)]
    struct Said(RefCell<Vec<String>>);

    impl Notices for Said {
        fn notice(&self, line: &str) {
            self.0.borrow_mut().push(line.to_string());
        }

        fn warning(&self, line: &str) {
            self.0.borrow_mut().push(format!("warning: {line}"));
        }

        fn progress(&self) -> ProgressOut {
            ProgressOut {
                live: false,
                write: |_| {},
            }
        }
    }

    fn request(serial: bool) -> Request {
        Request {
            files: "list".into(),
            exe: "/bin/true".into(),
            options: None,
            out: None,
            state: None,
            work: None,
            scan_lines: None,
            max_workers: None,
            max_lead: 2,
            max_granules: 1,
            serial,
            chunk_size: None,
            stall_timeout: Duration::from_secs(600),
            drain_margin: Duration::from_secs(30),
            sample_interval: None,
            mem_budget: None,
            profile: Vec::new(),
            mem_admission: true,
            keep_work: false,
        }
    }

    #[test]
    fn serial_runs_a_build_without_tracer_untraced_and_says_so() {
        let exe = Path::new("/bin/true");
        let said = Said::default();
        let symbols = tracer_symbols(&request(true), exe, &said).expect("serial goes on");
        assert!(symbols.is_none());
        assert_eq!(
            said.0.into_inner(),
            [
                "warning: /bin/true has no tracer symbols: --serial runs it without the tracer, \
              on a weaker proof of completion (exit 0 and every output non-empty)"
            ]
        );

        let said = Said::default();
        let err = tracer_symbols(&request(false), exe, &said).unwrap_err();
        assert!(matches!(err, StepError::Tracer(_)), "{err}");
        assert!(said.0.into_inner().is_empty());
    }
}
