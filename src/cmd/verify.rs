//! `pseg-slurm verify`: one line per finding on stdout, what was recorded on stderr; 1 if
//! anything differs.

use std::path::Path;

use crate::cmd::args::VerifyArgs;
use crate::cmd::{Outcome, print};
use crate::domain::campaign::verify;
use crate::domain::ledger::claim::Marked;
use crate::domain::ledger::{self, Holder, Ledger, STATE_DIR};

/// `pseg-slurm verify`: one line per finding on stdout, what was recorded on stderr; 1 if
/// anything differs.
pub fn run(args: &VerifyArgs) -> Outcome {
    let out = &args.dir;
    let state = args.state.clone().unwrap_or_else(|| out.join(STATE_DIR));
    let ledger = open_campaign_of(out, &state)?;
    let report = verify::check(&ledger, out)?;
    for finding in &report.findings {
        print(&format!("{finding}\n"))?;
    }
    if !report.legacy.is_empty() {
        eprintln!(
            "pseg-slurm: warning: {} granule(s) have an outputs manifest from an older \
             pseg-step, without sizes or hashes (first: {}): their files were only checked to \
             be there",
            report.legacy.len(),
            report.legacy[0]
        );
    }
    let checked = format!(
        "{} done granule(s), {} file(s), {}",
        report.checked,
        report.files,
        crate::base::units::Size(report.bytes)
    );
    if report.findings.is_empty() {
        eprintln!("pseg-slurm: verified {checked}: every output matches its manifest");
        return Ok(0);
    }
    let marked = verify::record(&ledger, out, &report, &Holder::current())?;
    say_recorded(&report, &checked, &marked);
    Ok(1)
}

/// The ledger of the campaign whose output folder is `out`, refusing a folder that is not
/// one: checking the wrong folder would send every done granule back.
fn open_campaign_of(out: &Path, state: &Path) -> Result<Ledger, Box<dyn std::error::Error>> {
    if ledger::find_state_dir(out).is_ok_and(|s| s == out) {
        return Err(format!(
            "{} is a state folder: pass the output folder (`--out`), and --state if the state \
             folder is elsewhere",
            out.display()
        )
        .into());
    }
    let ledger = Ledger::open_existing(state)?;
    // Unless the campaign's folder no longer exists: moved, and OUT is where it went.
    let elsewhere = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    };
    if let Some(campaign) = ledger::Campaign::read(state)? {
        if elsewhere(&campaign.output_dir, out) {
            return Err(format!(
                "the campaign of {} writes into {}, not {}: pass that folder",
                state.display(),
                campaign.output_dir.display(),
                out.display()
            )
            .into());
        }
    }
    if !out.join(crate::domain::reports::DIR).is_dir() {
        return Err(format!(
            "{} has no {} folder: it is not the output folder of a pseg-step run",
            out.display(),
            crate::domain::reports::DIR
        )
        .into());
    }
    Ok(ledger)
}

/// What verify recorded of its findings, and why a granule was not recorded.
fn say_recorded(report: &verify::Report, checked: &str, marked: &[(String, Marked)]) {
    let count = |m: Marked| marked.iter().filter(|(_, x)| *x == m).count();
    eprintln!(
        "pseg-slurm: checked {checked}: {} finding(s); {} granule(s) recorded as failed \
         (output-changed, no retry used): the next run or `pseg-slurm retry --missing` redoes \
         them",
        report.findings.len(),
        count(Marked::Marked)
    );
    for (name, m) in marked {
        let why = match m {
            Marked::Marked => continue,
            Marked::Fine => "matches again now (redone meanwhile?)",
            Marked::NotDone => "is no longer done (being redone?)",
            Marked::Held => "is held by a running process",
        };
        eprintln!("pseg-slurm: {name} not recorded: it {why}");
    }
}
