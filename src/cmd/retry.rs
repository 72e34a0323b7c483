//! `pseg-slurm retry`, the command: the campaign's stored gen call replayed over the
//! granules that still need it (`crate::cmd::gen_replay`), the script printed, what was
//! chosen said on stderr.

use clap::ArgMatches;

use crate::cmd::args::RetryArgs;
use crate::cmd::gen_replay::{self, Retried};
use crate::cmd::{Outcome, print, warn};

/// `retry` found nothing to retry.
const NOTHING_TO_RETRY: u8 = 3;

/// Runs `pseg-slurm retry`; `given` are its parsed flags.
pub fn run(args: RetryArgs, given: &ArgMatches) -> Outcome {
    match gen_replay::run(args, given)? {
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
    }
}
