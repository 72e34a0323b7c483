//! The command layer: one module per thing a user runs. Each turns parsed flags into a plain
//! request to the domain, prints the result and chooses the exit status. clap lives here and
//! nowhere else; `main.rs` and `bin/pseg-step.rs` only call [`pseg_slurm`] and [`pseg_step`].
//!
//! `pseg-slurm` exit status: 0 success (a broken stdout pipe counts as success), 1 a problem
//! with the inputs (explained on stderr, nothing on stdout), 2 a usage error (from clap), 3
//! `retry` found nothing to retry (nothing on stdout); `verify`: 1 also when an output
//! differs; `run`: 1 some granules failed for good, 3 a bound or a Slurm error, 4 another run.

mod args;
mod check;
mod config;
mod r#gen;
mod gen_replay;
mod plan;
mod release;
mod report;
mod retry;
mod run;
mod status;
mod step;
pub mod step_args;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};

use args::{Cli, Command};

/// What a command returns: its exit status, or an error `main` prints with its causes.
type Outcome = Result<u8, Box<dyn std::error::Error>>;

/// `pseg-slurm`'s whole run: parse the command line, run the subcommand, map the outcome to
/// an exit status.
pub fn pseg_slurm() -> ExitCode {
    // The matches too: `retry` asks which flags were typed.
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    match dispatch(cli, &matches) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = crate::base::escape::controls_in_lines(&chain(e.as_ref()));
            eprintln!("pseg-slurm: error: {message}");
            ExitCode::from(1)
        }
    }
}

/// `pseg-step`'s whole run (or, when started as one, the orphan guard's).
pub fn pseg_step() -> ExitCode {
    step::main()
}

fn dispatch(cli: Cli, matches: &ArgMatches) -> Outcome {
    match cli.command {
        Command::Gen(args) => r#gen::run(*args),
        Command::Status(args) => status::run(&args),
        Command::Retry(args) => {
            let given = matches
                .subcommand_matches("retry")
                .expect("clap parsed retry");
            retry::run(*args, given)
        }
        Command::Run(args) => run::run(*args),
        Command::Release(args) => release::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Config(command) => config::run(command),
    }
}

fn warn(warnings: &[String]) {
    for warning in warnings {
        let warning = crate::base::escape::controls_in_lines(warning);
        eprintln!("pseg-slurm: warning: {warning}");
    }
}

/// Writes all of `text` to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// An error and its causes, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}
