//! The command layer: one module per thing a user runs. Each turns parsed flags into a plain
//! request to the domain, prints the result and chooses the exit status. clap lives here and
//! nowhere else; `main.rs` and `bin/pseg-step.rs` only call [`pseg_slurm`] and [`pseg_step`].
//!
//! `pseg-slurm` exit status: 0 success (a broken stdout pipe counts as success), 1 a problem
//! with the inputs (explained on stderr, nothing on stdout), 2 a usage error (from clap), 3
//! `retry` found nothing to retry (nothing on stdout); `verify`: 1 also when an output
//! differs; `run`: 1 some granules failed for good, 3 a bound or a Slurm error, 4 another run.

pub mod args;
pub mod check;
pub mod gen_replay;
mod plan;
mod release;
pub mod report;
pub mod run;
mod step;
pub mod step_args;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::domain::campaign::status;
use crate::domain::ledger::{self, RetryBudget};
use crate::domain::script;
use crate::domain::site_config::{EXAMPLE, SiteConfig};
use args::{Cli, Command, ConfigCommand, Format};
use gen_replay::{self as regen, Retried};

/// What a command returns: its exit status, or an error `main` prints with its causes.
pub type Outcome = Result<u8, Box<dyn std::error::Error>>;

/// `retry` found nothing to retry.
const NOTHING_TO_RETRY: u8 = 3;

/// `pseg-slurm`'s whole run: parse the command line, run the subcommand, map the outcome to
/// an exit status.
pub fn pseg_slurm() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
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

fn dispatch(cli: Cli) -> Outcome {
    match cli.command {
        Command::Gen(args) => {
            let generated = script::generate(&args)?;
            warn(&generated.warnings);
            let argv: Vec<_> = std::env::args_os().collect();
            regen::remember_gen(&generated, &argv)?;
            generated.create_log_dir()?;
            print(&generated.script)
        }
        Command::Status(args) => {
            let dir = ledger::find_state_dir(&args.dir)?;
            let summary = status::summarize(
                status::read(&dir)?,
                &RetryBudget::default(),
                crate::domain::reports::unix_now(),
            );
            let text = match args.format {
                Format::Text => status::render_text(&summary),
                Format::Yaml => serde_yaml::to_string(&summary)?,
                Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
            };
            print(&text)
        }
        Command::Retry(args) => match regen::run(*args)? {
            Retried::Nothing(selection) => {
                eprintln!(
                    "pseg-slurm: nothing to retry{}",
                    match selection.busy.len() {
                        0 => String::new(),
                        n => format!(" ({n} granule(s) are being processed now)"),
                    }
                );
                Ok(NOTHING_TO_RETRY)
            }
            Retried::Script {
                generated,
                list,
                selection,
                reset,
            } => {
                warn(&generated.warnings);
                eprintln!(
                    "pseg-slurm: retrying {} failed ({reset} with a fresh retry budget) and {} \
                     missing granule(s), listed in {}{}",
                    selection.failed.len(),
                    selection.missing.len(),
                    list.display(),
                    match selection.busy.len() {
                        0 => String::new(),
                        n => format!("; {n} being processed now are left out"),
                    }
                );
                print(&generated.script)
            }
        },
        Command::Run(args) => run::run(*args),
        Command::Release(args) => release::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Config(ConfigCommand::Init) => print(EXAMPLE),
        Command::Config(ConfigCommand::Check { config }) => {
            SiteConfig::load(&config)?;
            eprintln!("pseg-slurm: {} is a valid site config", config.display());
            Ok(0)
        }
    }
}

pub fn warn(warnings: &[String]) {
    for warning in warnings {
        let warning = crate::base::escape::controls_in_lines(warning);
        eprintln!("pseg-slurm: warning: {warning}");
    }
}

/// Writes all of `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn print(text: &str) -> Outcome {
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
