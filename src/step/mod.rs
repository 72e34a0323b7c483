//! `pseg-step`: checks its inputs, picks this Slurm task's granules, and runs them one after
//! another, each fanned out over clones. Failures are per granule; a signal ends everything.

mod cli;
mod drain;
mod error;
pub mod exe;
mod feeder;
mod granule;
mod memwatch;
mod progress;
mod schedstat;
pub mod scratch;
mod storage;
mod summary;
mod timeline;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cli::StepArgs;
pub use error::StepError;

use crate::fanout::machine::{self, Exit, Failure, Limits};
use crate::fanout::unix::{self, Signals};
use crate::fanout::watchdog::Watchdog;
use crate::granules::{Granule, GranuleList, read_list};
use crate::ledger::alive::Liveness;
use crate::ledger::{
    Campaign, FailureKind, Holder, Ledger, LedgerError, Outcome, Queue, STATE_DIR,
};
use crate::mapping::Place;
use crate::options::ClavrxOptions;
use crate::report;
use crate::tracer::{ElfError, TracerSymbols};
use feeder::Feeder;
use granule::Plan;
use memwatch::MemorySetup;
use scratch::Scratch;
use summary::Summary;

/// Runs a step; the value is the exit status (0 done, 1 some failed, 128+N interrupted).
pub fn run(args: StepArgs) -> Result<u8, StepError> {
    if args.check {
        return Ok(crate::check::run(&args.exe));
    }
    unix::close_inherited_fds_on_exec().map_err(StepError::os("closing inherited descriptors"))?;
    let Some(files) = &args.files else {
        unreachable!("clap requires --files without --check");
    };

    let exe = exe::find(&args.exe)?;
    let symbols = match TracerSymbols::read(&exe) {
        Ok(symbols) if args.serial => {
            match crate::check::memory_access_denied(Path::new("/proc")) {
                Some(why) => {
                    eprintln!(
                        "pseg-step: warning: {why}: pseg-step cannot follow clavrxorb's tracer, so \
                     --serial runs it without, on a weaker proof of completion (exit 0 and \
                     every output non-empty); `pseg-step --check` says how to lift it"
                    );
                    None
                }
                None => Some(symbols),
            }
        }
        Ok(symbols) => Some(symbols),
        Err(e) if args.serial => {
            let why = match &e {
                ElfError::NoTracer { .. } => format!("{} has no tracer symbols", exe.display()),
                other => other.to_string(),
            };
            eprintln!(
                "pseg-step: warning: {why}: --serial runs it without the tracer, on a weaker \
                 proof of completion (exit 0 and every output non-empty)"
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    let list = read_list(files)?;
    list.check()?;
    let (options, out) = defaults(&args, &list)?;
    let options = ClavrxOptions::read(&options)?;
    let scan_lines = args.scan_lines.unwrap_or(options.scan_lines);
    let place = Place::from_env(args.chunk_size.map(|k| k as usize))?;
    let out_dir = std::path::absolute(&out).map_err(|source| StepError::NotWritable {
        what: "output directory",
        flag: "--out",
        path: out.clone(),
        source,
    })?;
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| out_dir.join(STATE_DIR));
    // An array element owns its chunk; otherwise every task of the step shares the whole
    // list and claims granules one at a time, so a fast task simply takes more.
    let chunk = match place.owned_chunk(list.granules.len()) {
        Ok(chunk) => chunk,
        Err(e) => match shrunk_from(&state, files, list.granules.len()) {
            Some(was) => {
                eprintln!(
                    "pseg-step: nothing to do: {}={} (--chunk-size {}) is past the end of {}, \
                     which names {} granule(s) now and named {was} when the campaign was \
                     recorded: the list has shrunk",
                    crate::mapping::ENV_ARRAY_TASK_ID,
                    place.array_index.unwrap_or_default(),
                    place.chunk_size.unwrap_or_default(),
                    files.display(),
                    list.granules.len()
                );
                return Ok(0);
            }
            None => return Err(e.into()),
        },
    };

    // Every check that creates something comes after the ones that do not; should one of
    // them fail, the folders made so far are removed again.
    work_fits_file_list(&args)?;
    let mut made = Made::default();
    let out = writable_dir(&mut made, &out_dir, "output directory", "--out")?;
    // Node-local scratch by default: clavrxorb and every clone write logs and temporary
    // files there, thousands per granule, which a shared filesystem serves slowly. A failed
    // granule's directory is copied next to the outputs, so its logs outlive the job.
    let me = Holder::current();
    let tmp = std::env::temp_dir();
    let scratch = match &args.work {
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
    let work = match (&args.work, &scratch) {
        (Some(w), _) => writable_dir(&mut made, w, "work directory", "--work")?,
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("scratch is made when --work is absent"),
    };
    let keep_failed = scratch.as_ref().map(|_| out.join(granule::FAILED_DIR));

    let reports = out.join(report::DIR);
    let manifests = reports.clone();
    for dir in Ledger::layout(&state) {
        made.create(&dir)
            .map_err(|source| LedgerError::Create { path: dir, source })?;
    }
    let ledger = Ledger::open(&state)?
        .with_output_check(move |name| report::outputs_present(&manifests, name));
    made.keep();
    let swept = scratch::sweep(&tmp, &me, &Liveness::new(Path::new("/proc"), Some(None)));
    if !swept.is_empty() {
        let names: Vec<String> = swept.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "pseg-step: removed {} work folder(s) left by pseg-step runs that died on this \
             host: {}",
            swept.len(),
            names.join(" ")
        );
    }
    // The first progress line: which kind of list this was read as.
    eprintln!("pseg-step: {}", crate::escape::controls(&list.describe()));
    let list_path = std::path::absolute(files).map_err(StepError::os("resolving --files"))?;
    let campaign =
        Campaign::new(&list_path, &out, None, "pseg-step").with_granules(list.granules.len());
    match campaign.remember(&state) {
        Err(e) => eprintln!("pseg-step: warning: {e}"),
        Ok(Some(other))
            if !list_path.starts_with(
                std::path::absolute(&state)
                    .unwrap_or_default()
                    .join(crate::ledger::RETRY),
            ) =>
        {
            eprintln!("pseg-step: warning: {}", crate::escape::controls(&other))
        }
        Ok(_) => {}
    }
    let candidates: Vec<String> = list.granules[chunk].iter().map(|g| g.name()).collect();
    let pending = ledger.pending(&candidates)?;
    if pending.len() < candidates.len() {
        eprintln!(
            "pseg-step: {} of {} granule(s) already done or out of retries (see pseg-slurm status {})",
            candidates.len() - pending.len(),
            candidates.len(),
            state.display()
        );
    }
    if pending.is_empty() {
        eprintln!("pseg-step: nothing left to do for this task");
        return Ok(0);
    }
    let by_name: HashMap<String, &Granule> = list.granules.iter().map(|g| (g.name(), g)).collect();

    unix::become_subreaper().map_err(StepError::os("becoming a child subreaper"))?;
    let mut signals = Signals::install().map_err(StepError::os("setting up signal handling"))?;
    let marker = scratch.as_ref().map(Scratch::marker);
    let mut watchdog =
        Watchdog::start(marker.as_deref()).map_err(StepError::os("starting the watchdog"))?;
    let max_workers = args
        .max_workers
        .map_or_else(crate::cpus::available, |n| n as usize);
    let interval =
        (args.sample_interval > 0.0).then(|| Duration::from_secs_f64(args.sample_interval));
    let memory = MemorySetup::discover(
        interval,
        args.mem_admission == "on",
        args.mem_budget.map(|s| s.bytes()),
        crate::cpus::available(),
    );
    memory.learn_from_campaign(&reports);
    if let Err(e) = memory.learn_from_profile(&args.profile) {
        eprintln!("pseg-step: warning: --profile: {e}; admitting workers without it");
    }
    let plan = Plan {
        exe: std::path::absolute(&exe).map_err(StepError::os("resolving the executable"))?,
        symbols,
        serial: args.serial,
        options_text: options.with_scan_lines(scan_lines),
        scan_lines,
        memory,
        out,
        work,
        limits: Limits {
            max_workers,
            max_lead: args.max_lead as usize,
        },
        policy: granule::policy(Duration::from_secs(args.stall_timeout), interval),
        keep_work: args.keep_work,
        keep_failed,
        drain: watch::DrainPolicy {
            margin: Duration::from_secs(args.drain_margin),
            job_end: drain::job_end(|k| std::env::var(k).ok()),
            prior_wall: None,
        },
    };
    let mode = if args.serial && plan.symbols.is_none() {
        "serially, without the tracer".to_string()
    } else if args.serial {
        format!("serially (tracer without clones), segments of {scan_lines} lines")
    } else {
        format!("with up to {max_workers} workers, segments of {scan_lines} lines")
    };
    let limit = plan.memory.limit.as_ref().map_or_else(
        || "no memory limit known".to_string(),
        |l| format!("memory limit {} ({})", crate::size::Size(l.bytes), l.source),
    );
    let total = pending.len();
    eprintln!("pseg-step: {total} granule(s) to claim {mode}; {limit}");

    let pool = crate::fanout::Pool {
        // --serial is the reference a fan-out is measured against: one granule at a time.
        max_granules: if args.serial {
            1
        } else {
            args.max_granules.max(1) as usize
        },
        max_workers,
    };
    let mut feeder = Feeder {
        plan: &plan,
        ledger: &ledger,
        queue: Queue::new(pending),
        me: &me,
        by_name,
        watchdog: &mut watchdog,
        reports: reports.clone(),
        summary: Summary::new(),
        total,
        started: 0,
        slowest_done: None,
        storage_failed: false,
        interrupted_by: None,
        error: None,
    };
    let signal = crate::fanout::supervise(&mut signals, &mut feeder, pool, &plan.policy)
        .map_err(StepError::os("supervising clavrxorb"))?;
    let Feeder {
        mut summary,
        queue,
        storage_failed,
        mut interrupted_by,
        error,
        ..
    } = feeder;
    if let Some(e) = error {
        return Err(e);
    }
    interrupted_by = interrupted_by.or(signal);
    summary.write(
        &reports,
        plan.memory
            .own
            .as_ref()
            .and_then(|cg| cg.peak().ok().flatten()),
    );
    if interrupted_by.is_none() && signals.warned() && !queue.is_done() {
        // Unstarted granules are left: the status a wrapper reads as "submit again".
        let sig = nix::sys::signal::Signal::SIGUSR1 as i32;
        eprintln!(
            "pseg-step: Slurm's time-limit warning came: {} granule(s) done, {} not started; \
             submit again to resume",
            summary.report.done,
            total.saturating_sub(summary.report.granules)
        );
        return Ok(128u8.saturating_add(sig as u8));
    }
    if let Some(sig) = interrupted_by {
        eprintln!(
            "pseg-step: interrupted by signal {sig} after {} granule(s); every clavrxorb \
             process was ended and the granule recorded as interrupted: submit again to resume",
            summary.report.done
        );
        return Ok(128u8.saturating_add(sig as u8));
    }
    let status = summary.close();
    if storage_failed {
        eprintln!(
            "pseg-step: stopped: a folder refused a write (see the failure above), so no \
             granule started after it and those in flight were ended unfinished; free space \
             or fix it, then run again: they are redone without using their retry budget"
        );
        return Ok(STORAGE_EXIT);
    }
    Ok(status)
}

/// The exit status of a step stopped by a storage failure; the same as a folder found not
/// writable at the start.
pub const STORAGE_EXIT: u8 = 9;

/// The ledger's view of a failed granule: what kind of failure, for its retry budget.
fn failure_outcome(f: &Failure, oom: bool, message: String) -> Outcome {
    if f.kind == machine::FailureKind::NotProcessed {
        return Outcome::failed(FailureKind::NotProcessed, message);
    }
    let (signal, exit) = match f.kind {
        machine::FailureKind::Died(Exit::Signal(s))
        | machine::FailureKind::EndedEarly(Exit::Signal(s)) => (Some(s), None),
        machine::FailureKind::Died(Exit::Code(c))
        | machine::FailureKind::EndedEarly(Exit::Code(c)) => (None, Some(c)),
        _ => (None, None),
    };
    let stalled = matches!(f.kind, machine::FailureKind::Stalled(_));
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
fn defaults(args: &StepArgs, list: &GranuleList) -> Result<(PathBuf, PathBuf), StepError> {
    let options = match &args.options {
        Some(o) => o.clone(),
        None => {
            let beside = list.options_beside();
            if !beside.is_file() {
                return Err(StepError::Usage(format!(
                    "no --options given, and there is no {} beside {} to use instead; give \
                     --options FILE",
                    crate::granules::OPTIONS_FILE,
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
fn work_fits_file_list(args: &StepArgs) -> Result<(), StepError> {
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
        .and_then(|p| crate::granules::file_list_problem(&p))
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
