//! `pseg-step`: checks its inputs, picks this Slurm task's granules, and runs them one after
//! another, each fanned out over clones. Failures are per granule; a signal ends everything.

mod cli;
mod error;
mod granule;
mod memwatch;
mod progress;
mod schedstat;
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
use crate::granules::{Granule, read_list};
use crate::ledger::{Campaign, FailureKind, Holder, Ledger, Outcome, Queue, STATE_DIR};
use crate::mapping::Place;
use crate::options::ClavrxOptions;
use crate::report;
use crate::tracer::TracerSymbols;
use granule::{GranuleResult, Plan};
use memwatch::MemorySetup;
use progress::Progress;
use summary::{Summary, done_line};

/// Runs a step; the value is the exit status (0 done, 1 some failed, 128+N interrupted).
pub fn run(args: StepArgs) -> Result<u8, StepError> {
    if args.check {
        return Ok(crate::check::run(&args.exe));
    }
    unix::close_inherited_fds_on_exec().map_err(StepError::os("closing inherited descriptors"))?;
    let (Some(files), Some(options), Some(out)) = (&args.files, &args.options, &args.out) else {
        unreachable!("clap requires --files, --options and --out without --check");
    };

    let exe = which::which(&args.exe).map_err(|source| StepError::ExeNotFound {
        exe: args.exe.clone(),
        source,
    })?;
    let symbols = if args.serial {
        None
    } else {
        Some(TracerSymbols::read(&exe)?)
    };
    let list = read_list(files)?;
    list.check()?;
    let options = ClavrxOptions::read(options)?;
    let scan_lines = args.scan_lines.unwrap_or(options.scan_lines);
    let out = writable_dir(out, "output directory", "--out")?;
    // Node-local scratch by default: clavrxorb and every clone write logs and temporary
    // files there, thousands per granule, which a shared filesystem serves slowly. A failed
    // granule's directory is copied next to the outputs, so its logs outlive the job.
    let scratch = match &args.work {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("pseg-step.")
                .tempdir()
                .map_err(|source| StepError::NotWritable {
                    what: "temporary directory",
                    flag: "--work (or TMPDIR)",
                    path: std::env::temp_dir(),
                    source,
                })?,
        ),
    };
    let work = match (&args.work, &scratch) {
        (Some(w), _) => writable_dir(w, "work directory", "--work")?,
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("scratch is made when --work is absent"),
    };
    let keep_failed = scratch.as_ref().map(|_| out.join("pseg-failed"));

    let place = Place::from_env(args.chunk_size.map(|k| k as usize))?;
    let state = args.state.clone().unwrap_or_else(|| out.join(STATE_DIR));
    let reports = out.join(report::DIR);
    let manifests = reports.clone();
    let ledger = Ledger::open(&state)?
        .with_output_check(move |name| report::outputs_present(&manifests, name));
    if let Err(e) = Campaign::new(files, &out, None, "pseg-step").remember(&state) {
        eprintln!("pseg-step: warning: {e}");
    }
    // An array element owns its chunk; otherwise every task of the step shares the whole
    // list and claims granules one at a time, so a fast task simply takes more.
    let candidates: Vec<String> = list.granules[place.chunk(list.granules.len())]
        .iter()
        .map(|g| g.name())
        .collect();
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
    let mut watchdog = Watchdog::start().map_err(StepError::os("starting the watchdog"))?;
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
    let plan = Plan {
        exe: std::path::absolute(&exe).map_err(StepError::os("resolving the executable"))?,
        symbols,
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
    };
    let mode = if args.serial {
        "serially".to_string()
    } else {
        format!("with up to {max_workers} workers, segments of {scan_lines} lines")
    };
    let limit = plan.memory.limit.as_ref().map_or_else(
        || "no memory limit known".to_string(),
        |l| format!("memory limit {} ({})", crate::size::Size(l.bytes), l.source),
    );
    let total = pending.len();
    eprintln!("pseg-step: {total} granule(s) to claim {mode}; {limit}");

    let me = Holder::current();
    let mut queue = Queue::new(pending);
    let mut summary = Summary::new();
    let mut interrupted_by = None;
    while interrupted_by.is_none() {
        if let Some(unix::Interrupt::Terminate(sig)) =
            signals.drain().map_err(StepError::os("reading signals"))?
        {
            interrupted_by = Some(sig);
            break;
        }
        let Some(mut claim) = ledger.claim_next(&mut queue, &me)? else {
            if !queue.is_done() {
                eprintln!(
                    "pseg-step: {} granule(s) are being processed by other tasks",
                    queue.waiting().len()
                );
            }
            break;
        };
        ledger.running(&mut claim)?;
        let granule = by_name[claim.name()];
        let progress = Progress::new(summary.report.granules, total, &granule.name(), scan_lines);
        let run = granule::run(
            &plan,
            &mut signals,
            &mut watchdog,
            granule,
            progress.clone(),
        );
        let (result, granule_report) = match run {
            Ok(r) => r,
            Err(e) => {
                let why = format!("could not run clavrxorb: {e}");
                progress.say(&format!("FAILED: {why}"));
                let kind = if granule.path.exists() {
                    FailureKind::Exit
                } else {
                    FailureKind::BadInput
                };
                ledger.finish(claim, Outcome::failed(kind, why.clone()))?;
                summary.add_failure(&granule.path, why);
                continue;
            }
        };
        let file = format!("{}{}", granule_report.name, report::SUFFIX);
        let written = report::write(&reports, &file, &granule_report);
        if let Err(e) = &written {
            progress.say(&format!(
                "warning: cannot write its report into {}: {e}",
                reports.display()
            ));
        }
        summary.add(&granule_report, written.is_ok().then(|| file.into()));
        let outcome = match result {
            GranuleResult::Done { outputs } => {
                report::write_outputs(&reports, &granule_report.name, &outputs)
                    .map_err(StepError::os("writing the outputs manifest"))?;
                progress.say(&done_line(&granule_report, args.serial));
                Outcome::done()
            }
            GranuleResult::Failed {
                message,
                failure,
                oom,
            } => {
                progress.say(&format!("FAILED: {message}"));
                summary.failed.push((granule.path.clone(), message.clone()));
                failure_outcome(&failure, oom, message)
            }
            GranuleResult::Interrupted(sig) => {
                interrupted_by = Some(sig);
                Outcome::interrupted(format!("pseg-step got signal {sig}"))
            }
        };
        let outcome = match written {
            Ok(path) => outcome.with_report(path),
            Err(_) => outcome,
        };
        ledger.finish(claim, outcome)?;
    }
    summary.write(
        &reports,
        plan.memory
            .own
            .as_ref()
            .and_then(|cg| cg.peak().ok().flatten()),
    );
    if let Some(sig) = interrupted_by {
        eprintln!(
            "pseg-step: interrupted by signal {sig} after {} granule(s); every clavrxorb \
             process was ended and the granule recorded as interrupted: submit again to resume",
            summary.report.done
        );
        return Ok(128u8.saturating_add(sig as u8));
    }
    Ok(summary.close())
}

/// The ledger's view of a failed granule: what kind of failure, for its retry budget.
fn failure_outcome(f: &Failure, oom: bool, message: String) -> Outcome {
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

/// Creates `dir` if needed and proves a file can be written in it.
fn writable_dir(dir: &Path, what: &'static str, flag: &'static str) -> Result<PathBuf, StepError> {
    let fail = |source| StepError::NotWritable {
        what,
        flag,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::path::absolute(dir).map_err(fail)
}
