//! `pseg-step`: runs inside a Slurm job (or locally) and drives clavrxorb's tracer mode.

use std::process::ExitCode;

use clap::Parser;
use pseg_slurm::step::{StepArgs, run};

fn main() -> ExitCode {
    if pseg_slurm::fanout::watchdog::run_if_watchdog() {
        return ExitCode::SUCCESS;
    }
    match run(StepArgs::parse()) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            let message = pseg_slurm::escape::controls_in_lines(&e.to_string());
            eprintln!("pseg-step: error: {message}");
            ExitCode::from(e.exit_status())
        }
    }
}
