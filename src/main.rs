//! `pseg-slurm`: parse the command line, run the subcommand, map the outcome to an exit code.
//!
//! Exit status: 0 success (a broken stdout pipe counts as success), 1 a problem with the
//! inputs (explained on stderr, nothing on stdout), 2 a usage error (from clap).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pseg_slurm::cli::{Cli, Command, ConfigCommand};
use pseg_slurm::config::{EXAMPLE, SiteConfig};
use pseg_slurm::script;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pseg-slurm: error: {}", chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Gen(args) => {
            let generated = script::generate(&args)?;
            for warning in &generated.warnings {
                eprintln!("pseg-slurm: warning: {warning}");
            }
            print(&generated.script)
        }
        Command::Config(ConfigCommand::Init) => print(EXAMPLE),
        Command::Config(ConfigCommand::Check { config }) => {
            SiteConfig::load(&config)?;
            eprintln!("pseg-slurm: {} is a valid site config", config.display());
            Ok(())
        }
    }
}

/// Writes all of `text` to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
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
