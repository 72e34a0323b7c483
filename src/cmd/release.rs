//! `pseg-slurm release`: lists the matching claims, and with `--yes` releases those whose
//! holder is not provably alive.

use crate::cmd::args::ReleaseArgs;
use crate::cmd::{Outcome, print};
use crate::domain::campaign::release::{self, Decision, Filter, Released};
use crate::domain::ledger::{self, Holder, Ledger};

/// `pseg-slurm release`: lists the matching claims, and with `--yes` releases those whose
/// holder is not provably alive.
pub fn run(args: &ReleaseArgs) -> Outcome {
    let dir = ledger::find_state_dir(&args.dir)?;
    let ledger = Ledger::open_existing(&dir)?;
    let filter = Filter {
        granules: args.granule.clone(),
        host: args.host.clone(),
    };
    let me = Holder::current();
    let plan = release::plan(&ledger, &filter, &me)?;
    let now = crate::base::time::unix_now();
    let mut released = 0;
    // Line by line: if releasing one fails, what was done before is on stdout.
    for found in &plan.found {
        let line = release::describe(found, now);
        let verb = match (&found.decision, args.yes) {
            (Decision::Keep(_), _) => "keep",
            (Decision::Release(_), false) => "would release",
            (Decision::Release(_), true) => match release::release(&ledger, found, &me)? {
                Released::Changed => "left alone (the claim changed meanwhile)",
                Released::Kept => "keep",
                Released::Done { interrupted } => released_verb(interrupted, &mut released),
            },
        };
        print(&format!("{verb} {line}\n"))?;
    }
    for bad in &plan.unreadable {
        let verb = if args.yes {
            match release::release_unreadable(&ledger, bad, &me)? {
                Released::Changed | Released::Kept => "left alone (it changed meanwhile)",
                Released::Done { interrupted } => released_verb(interrupted, &mut released),
            }
        } else {
            "would release"
        };
        print(&format!(
            "{verb} unreadable claim file {} (it names no holder; pseg-step never leaves one)\n",
            bad.describe()
        ))?;
    }
    let n = plan.releasable() + plan.unreadable.len();
    print(
        &match (plan.found.len() + plan.unreadable.len(), args.yes) {
            (0, _) => "no matching claims\n".to_string(),
            (_, true) => format!("released {released} claim(s)\n"),
            (_, false) if n > 0 => {
                format!("dry run: {n} claim(s) would be released; run again with --yes to do it\n")
            }
            (_, false) => "nothing to release: every matching holder is alive\n".to_string(),
        },
    )
}

/// The words for a claim that was released, counting it.
fn released_verb(interrupted: bool, count: &mut usize) -> &'static str {
    *count += 1;
    if interrupted {
        "released (record marked interrupted)"
    } else {
        "released"
    }
}
