//! `pseg-step`: checks its inputs, picks this Slurm task's granules, and runs them one after
//! another, each fanned out over clones. Failures are per granule; a signal ends everything.

mod cli;
mod error;
mod granule;
mod memwatch;
mod progress;
mod timeline;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cli::StepArgs;
pub use error::StepError;

use crate::fanout::machine::Limits;
use crate::fanout::unix::{self, Signals};
use crate::fanout::watchdog::Watchdog;
use crate::granules::read_list;
use crate::mapping::{Place, select};
use crate::options::ClavrxOptions;
use crate::report::{self, StepReport};
use crate::tracer::TracerSymbols;
use granule::{GranuleResult, Plan};
use memwatch::MemorySetup;
use progress::Progress;

/// Runs a step; the value is the exit status (0 done, 1 some failed, 128+N interrupted).
pub fn run(args: StepArgs) -> Result<u8, StepError> {
    unix::close_inherited_fds_on_exec().map_err(StepError::os("closing inherited descriptors"))?;
    if args.check {
        return Ok(crate::check::run(&args.exe));
    }
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
    let work = writable_dir(
        &args.work.clone().unwrap_or_else(|| out.join(".pseg-work")),
        "work directory",
        "--work",
    )?;

    let place = Place::from_env(args.chunk_size.map(|k| k as usize))?;
    let mine: Vec<usize> = select(list.granules.len(), &place).collect();
    if mine.is_empty() {
        eprintln!(
            "pseg-step: no granules for this task (array index {:?}, task {} of {}); nothing to do",
            place.array_index, place.procid, place.ntasks
        );
        return Ok(0);
    }

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
    let reports = out.join(report::DIR);
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
    eprintln!("pseg-step: {} granule(s) {mode}; {limit}", mine.len());
    let step_started = std::time::Instant::now();
    let mut summary = StepReport {
        schema: report::SCHEMA.into(),
        kind: "step".into(),
        host: report::host(),
        slurm: report::SlurmIds::from_env(),
        started_unix: report::unix_now(),
        wall_seconds: 0.0,
        driver_cpu_seconds: 0.0,
        granules: mine.len(),
        done: 0,
        failed: 0,
        interrupted: 0,
        peak_bytes: 0,
        cgroup_kernel_peak_bytes: None,
        reports: Vec::new(),
    };

    let mut failed = Vec::new();
    let mut interrupted_by = None;
    for (i, &index) in mine.iter().enumerate() {
        if let Some(unix::Interrupt::Terminate(sig)) =
            signals.drain().map_err(StepError::os("reading signals"))?
        {
            interrupted_by = Some(sig);
            break;
        }
        let granule = &list.granules[index];
        let progress = Progress::new(i, mine.len(), &granule.name(), scan_lines);
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
                failed.push((granule.path.clone(), why));
                summary.failed += 1;
                continue;
            }
        };
        summary.peak_bytes = summary.peak_bytes.max(granule_report.memory.peak_bytes);
        let file = format!("{}{}", granule_report.name, report::SUFFIX);
        match report::write(&reports, &file, &granule_report) {
            Ok(_) => summary.reports.push(file.into()),
            Err(e) => progress.say(&format!(
                "warning: cannot write its report into {}: {e}",
                reports.display()
            )),
        }
        match result {
            GranuleResult::Done => {
                summary.done += 1;
                progress.say(&done_line(&granule_report, args.serial));
            }
            GranuleResult::Failed { message, .. } => {
                summary.failed += 1;
                progress.say(&format!("FAILED: {message}"));
                failed.push((granule.path.clone(), message));
            }
            GranuleResult::Interrupted(sig) => {
                summary.interrupted += 1;
                interrupted_by = Some(sig);
                break;
            }
        }
    }
    summary.wall_seconds = step_started.elapsed().as_secs_f64();
    summary.driver_cpu_seconds = self_cpu_seconds();
    summary.cgroup_kernel_peak_bytes = plan
        .memory
        .own
        .as_ref()
        .and_then(|cg| cg.peak().ok().flatten());
    let step_file = step_report_name(&summary);
    if let Err(e) = report::write(&reports, &step_file, &summary) {
        eprintln!("pseg-step: warning: cannot write {step_file}: {e}");
    }
    if let Some(sig) = interrupted_by {
        return Ok(interrupted(sig, summary.done, mine.len()));
    }
    if failed.is_empty() {
        eprintln!("pseg-step: all {} granule(s) done", summary.done);
        return Ok(0);
    }
    eprintln!(
        "pseg-step: {} of {} granule(s) done, {} failed:",
        summary.done,
        mine.len(),
        failed.len()
    );
    for (path, why) in &failed {
        eprintln!("  {}: {why}", path.display());
    }
    Ok(1)
}

fn done_line(r: &report::GranuleReport, serial: bool) -> String {
    let peak = crate::size::Size(r.memory.peak_bytes);
    if serial {
        return format!("done in {:.1} s", r.wall_seconds);
    }
    format!(
        "done in {:.1} s ({} segments, {} lines; peak {peak}, up to {} workers, bound by {})",
        r.wall_seconds, r.segments, r.lines, r.workers.max_busy, r.workers.bound_by
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
    format!("step-{id}{}", report::SUFFIX)
}

/// CPU time of this process itself (the driver and its sampler), not its children.
fn self_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn interrupted(sig: i32, done: usize, total: usize) -> u8 {
    eprintln!(
        "pseg-step: interrupted by signal {sig} after {done} of {total} granule(s); \
         every clavrxorb process was ended"
    );
    128u8.saturating_add(sig as u8)
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
