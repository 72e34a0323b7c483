//! `pseg-step`: checks its inputs, picks this Slurm task's granules, and runs them one after
//! another, each fanned out over clones. Failures are per granule; a signal ends everything.

mod cli;
mod error;
mod granule;
mod progress;

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
use crate::tracer::TracerSymbols;
use granule::{GranuleResult, Plan};
use progress::Progress;

/// Runs a step; the value is the exit status (0 done, 1 some failed, 128+N interrupted).
pub fn run(args: StepArgs) -> Result<u8, StepError> {
    unix::close_inherited_fds_on_exec().map_err(StepError::os("closing inherited descriptors"))?;

    let exe = which::which(&args.exe).map_err(|source| StepError::ExeNotFound {
        exe: args.exe.clone(),
        source,
    })?;
    let symbols = if args.serial {
        None
    } else {
        Some(TracerSymbols::read(&exe)?)
    };
    let list = read_list(&args.files)?;
    list.check()?;
    let options = ClavrxOptions::read(&args.options)?;
    let scan_lines = args.scan_lines.unwrap_or(options.scan_lines);
    let out = writable_dir(&args.out, "output directory", "--out")?;
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
    let plan = Plan {
        exe: std::path::absolute(&exe).map_err(StepError::os("resolving the executable"))?,
        symbols,
        options_text: options.with_scan_lines(scan_lines),
        out,
        work,
        limits: Limits {
            max_workers,
            max_lead: args.max_lead as usize,
        },
        policy: granule::policy(Duration::from_secs(args.stall_timeout)),
        keep_work: args.keep_work,
    };
    let mode = if args.serial {
        "serially".to_string()
    } else {
        format!("with up to {max_workers} workers, segments of {scan_lines} lines")
    };
    eprintln!("pseg-step: {} granule(s) {mode}", mine.len());

    let mut failed = Vec::new();
    let mut done = 0;
    for (i, &index) in mine.iter().enumerate() {
        if let Some(unix::Interrupt::Terminate(sig)) =
            signals.drain().map_err(StepError::os("reading signals"))?
        {
            return Ok(interrupted(sig, done, mine.len()));
        }
        let granule = &list.granules[index];
        let mut progress = Progress::new(i, mine.len(), &granule.name(), scan_lines);
        let result = granule::run(&plan, &mut signals, &mut watchdog, granule, &mut progress)
            .unwrap_or_else(|e| GranuleResult::Failed(format!("could not run clavrxorb: {e}")));
        match result {
            GranuleResult::Done {
                seconds,
                segments,
                lines,
            } => {
                done += 1;
                progress.say(&if args.serial {
                    format!("done in {seconds:.1} s")
                } else {
                    format!("done in {seconds:.1} s ({segments} segments, {lines} lines)")
                });
            }
            GranuleResult::Failed(why) => {
                progress.say(&format!("FAILED: {why}"));
                failed.push((granule.path.clone(), why));
            }
            GranuleResult::Interrupted(sig) => return Ok(interrupted(sig, done, mine.len())),
        }
    }
    if failed.is_empty() {
        eprintln!("pseg-step: all {done} granule(s) done");
        return Ok(0);
    }
    eprintln!(
        "pseg-step: {done} of {} granule(s) done, {} failed:",
        mine.len(),
        failed.len()
    );
    for (path, why) in &failed {
        eprintln!("  {}: {why}", path.display());
    }
    Ok(1)
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
