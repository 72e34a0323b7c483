//! `pseg-step`: turns its flags into a [`step::Request`], runs the engine (or `--check`),
//! writes the engine's notices and closing lines on stderr, and chooses the exit status.
//!
//! Every status `pseg-step --help` documents ([`EXIT_STATUSES`](super::step_args::EXIT_STATUSES))
//! is chosen here and nowhere else: from the engine's [`Ending`] when it ran, from the kind of
//! [`StepError`] when it could not.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use super::step_args::StepArgs;
use crate::domain::clavrx_options::OptionsError;
use crate::domain::granule_list::ListError;
use crate::domain::step::{self, Closing, Ending, Notices, ProgressOut, StepError};

/// Every granule of this task is done (or none was left to do).
const ALL_DONE: u8 = 0;
/// Some granules failed.
const SOME_FAILED: u8 = 1;
const USAGE: u8 = 2;
pub(super) const EXE_NOT_FOUND: u8 = 3;
pub(super) const NO_TRACER: u8 = 4;
const LIST_UNREADABLE: u8 = 5;
const LIST_BAD_GRANULE: u8 = 6;
const OPTIONS_UNREADABLE: u8 = 7;
const OPTIONS_BAD: u8 = 8;
/// A folder cannot be written, at the start or later (a storage failure).
const NOT_WRITABLE: u8 = 9;
const SLURM_ENV: u8 = 10;
pub(super) const OS_REFUSED: u8 = 11;
const STATE_DIR: u8 = 12;
/// Interrupted by signal N: this plus N.
const SIGNALLED: u8 = 128;

/// `pseg-step`: the watchdog, `--check`, or a step.
pub fn main() -> ExitCode {
    if crate::domain::fanout::orphan_guard::run_if_watchdog() {
        return ExitCode::SUCCESS;
    }
    let args = StepArgs::parse();
    if args.check {
        return ExitCode::from(super::check::run(&args.exe));
    }
    let status = match step::run(&request(args), &Stderr) {
        Ok(ending) => say_ending(ending),
        Err(e) => {
            let message = crate::base::escape::controls_in_lines(&e.to_string());
            eprintln!("pseg-step: error: {message}");
            exit_status(&e)
        }
    };
    ExitCode::from(status)
}

/// The engine's request from the parsed flags (`--check` is handled before).
fn request(args: StepArgs) -> step::Request {
    let Some(files) = args.files else {
        unreachable!("clap requires --files without --check");
    };
    step::Request {
        files,
        exe: args.exe,
        options: args.options,
        out: args.out,
        state: args.state,
        work: args.work,
        scan_lines: args.scan_lines,
        max_workers: args.max_workers.map(|n| n as usize),
        max_lead: args.max_lead as usize,
        max_granules: args.max_granules as usize,
        serial: args.serial,
        chunk_size: args.chunk_size.map(|k| k as usize),
        stall_timeout: Duration::from_secs(args.stall_timeout),
        drain_margin: Duration::from_secs(args.drain_margin),
        sample_interval: (args.sample_interval > 0.0)
            .then(|| Duration::from_secs_f64(args.sample_interval)),
        mem_budget: args.mem_budget.map(|s| s.bytes()),
        profile: args.profile,
        mem_admission: args.mem_admission == "on",
        keep_work: args.keep_work,
    }
}

/// The engine's notices, on stderr.
struct Stderr;

impl Notices for Stderr {
    fn notice(&self, line: &str) {
        eprintln!("pseg-step: {line}");
    }

    fn warning(&self, line: &str) {
        eprintln!("pseg-step: warning: {line}");
    }

    fn progress(&self) -> ProgressOut {
        ProgressOut {
            live: std::io::stderr().is_terminal() && std::env::var("TERM").as_deref() != Ok("dumb"),
            write: write_stderr,
        }
    }
}

/// Progress text as it is (a live bar's control sequences included), flushed at once.
fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// The closing lines of a step that ran; its exit status.
fn say_ending(ending: Ending) -> u8 {
    match ending {
        Ending::NothingToDo => ALL_DONE,
        Ending::Finished(closing) => say_closing(&closing),
        Ending::StorageStopped(closing) => {
            say_closing(&closing);
            eprintln!(
                "pseg-step: stopped: a folder refused a write (see the failure above), so no \
                 granule started after it and those in flight were ended unfinished; free space \
                 or fix it, then run again: they are redone without using their retry budget"
            );
            NOT_WRITABLE
        }
        Ending::TimeLimit {
            signal,
            done,
            not_started,
        } => {
            eprintln!(
                "pseg-step: Slurm's time-limit warning came: {done} granule(s) done, \
                 {not_started} not started; submit again to resume"
            );
            signalled(signal)
        }
        Ending::Interrupted { signal, done } => {
            eprintln!(
                "pseg-step: interrupted by signal {signal} after {done} granule(s); every \
                 clavrxorb process was ended and the granule recorded as interrupted: submit \
                 again to resume"
            );
            signalled(signal)
        }
    }
}

/// Every granule done, or which failed and why; 0 or 1.
fn say_closing(closing: &Closing) -> u8 {
    if closing.failed.is_empty() {
        eprintln!("pseg-step: all {} granule(s) done", closing.done);
        return ALL_DONE;
    }
    eprintln!(
        "pseg-step: {} of {} granule(s) done, {} failed:",
        closing.done,
        closing.granules,
        closing.failed.len()
    );
    for (path, why) in &closing.failed {
        let line = format!("{}: {why}", path.display());
        eprintln!("  {}", crate::base::escape::controls(&line));
    }
    SOME_FAILED
}

fn signalled(signal: i32) -> u8 {
    SIGNALLED.saturating_add(signal as u8)
}

/// The documented exit status of a step that could not run (see `pseg-step --help`).
fn exit_status(e: &StepError) -> u8 {
    match e {
        StepError::ExeNotFound(_) => EXE_NOT_FOUND,
        StepError::Tracer(_) => NO_TRACER,
        StepError::List(ListError::Bad { .. }) => LIST_BAD_GRANULE,
        StepError::List(_) => LIST_UNREADABLE,
        StepError::Options(OptionsError::Unreadable { .. }) => OPTIONS_UNREADABLE,
        StepError::Options(_) => OPTIONS_BAD,
        StepError::NotWritable { .. } | StepError::NotForFileList { .. } => NOT_WRITABLE,
        StepError::Usage(_) => USAGE,
        StepError::Slurm(_) => SLURM_ENV,
        // A folder refusing a write later is the same failure as one found not writable at
        // the start.
        _ if e.is_storage_failure() => NOT_WRITABLE,
        StepError::Os { .. } => OS_REFUSED,
        StepError::Ledger(_) => STATE_DIR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::LedgerError;
    use nix::errno::Errno;

    fn os(errno: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno as i32)
    }

    #[test]
    fn a_full_disk_is_a_storage_failure_whichever_folder_refused() {
        let full = StepError::os("writing")(os(Errno::ENOSPC));
        assert_eq!(exit_status(&full), 9);
        let state_full = StepError::Ledger(LedgerError::Write {
            path: "state/records/x".into(),
            source: os(Errno::ENOSPC),
        });
        assert_eq!(exit_status(&state_full), 9);
        // Not a storage failure: the OS refused something else, or the state folder did.
        assert_eq!(exit_status(&StepError::os("signals")(os(Errno::EPERM))), 11);
        let state_denied = StepError::Ledger(LedgerError::Write {
            path: "state/records/x".into(),
            source: os(Errno::EACCES),
        });
        assert_eq!(exit_status(&state_denied), 12);
    }

    #[test]
    fn interrupted_is_128_plus_the_signal() {
        let warned = Ending::TimeLimit {
            signal: 10,
            done: 0,
            not_started: 1,
        };
        assert_eq!(say_ending(warned), 138);
        assert_eq!(
            say_ending(Ending::Interrupted {
                signal: 15,
                done: 0
            }),
            143
        );
    }
}
