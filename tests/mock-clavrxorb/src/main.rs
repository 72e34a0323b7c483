//! `mock-clavrxorb`: a protocol-faithful stand-in for CLAVR-x's clavrxorb,
//! for tests only (see /work/shared/TRACER-PROTOCOL.md). This file only
//! dispatches the command line and maps failures to exit statuses.
#![deny(unsafe_code)]

mod cli;
mod clones;
mod failure;
mod granule;
mod options;
mod output;
mod run;
mod sys;
mod tmpdir;
mod tracer;
mod work;

use std::process::ExitCode;

use failure::code;

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let command = args
        .map_err(|a| format!("argument {a:?} is not UTF-8"))
        .and_then(|args| cli::parse(&args));
    let status = match command {
        Err(why) => {
            failure::report(format_args!("{why}\n{}", cli::USAGE));
            code::INPUT
        }
        Ok(cli::Command::Generate { header, out }) => match granule::generate(&header, &out) {
            Ok(()) => 0,
            Err(e) => {
                failure::report(format_args!("writing {}: {e}", out.display()));
                code::INPUT
            }
        },
        Ok(cli::Command::Run) => match run::run() {
            Ok(()) => 0,
            Err(failure) => {
                failure::report(&failure);
                failure.code
            }
        },
    };
    ExitCode::from(status as u8)
}
