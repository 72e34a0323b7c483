//! `pseg-slurm status`, the command: the campaign's [`Overview`] (from
//! `crate::domain::campaign::status`) printed as text for a person, or as YAML or JSON.
//! The text is made here, part by part; the figures are the domain's.

use std::fmt::Write;

use crate::base::time::{Style, duration};
use crate::cmd::args::{Format, StatusArgs};
use crate::cmd::{Outcome, print};
use crate::domain::campaign::status::{self, Overview};
use crate::domain::ledger::classify::FailureKind;
use crate::domain::ledger::record::Status;
use crate::domain::ledger::{self, RetryBudget};

/// Failures (and lost claims) listed in the text; YAML and JSON list them all.
const TEXT_FAILURES: usize = 20;

/// Runs `pseg-slurm status`.
pub fn run(args: &StatusArgs) -> Outcome {
    let dir = ledger::find_state_dir(&args.dir)?;
    let summary = status::summarize(
        status::read(&dir)?,
        &RetryBudget::default(),
        crate::base::time::unix_now(),
    );
    let text = match args.format {
        Format::Text => render_text(&summary),
        Format::Yaml => serde_yaml::to_string(&summary)?,
        Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
    };
    print(&text)
}

/// The text a person reads.
fn render_text(s: &Overview) -> String {
    let mut out = String::new();
    let w = &mut out;
    campaign(w, s);
    counts(w, s);
    pace(w, s);
    failures(w, s);
    lost_claims(w, s);
    unreadable_claims(w, s);
    hosts(w, s);
    for warning in &s.warnings {
        let _ = writeln!(w, "warning: {warning}");
    }
    // Names and messages come from files anyone may name: no control character reaches the
    // terminal raw.
    crate::base::escape::controls_in_lines(&out)
}

/// Which campaign, and where its state is.
fn campaign(w: &mut String, s: &Overview) {
    match (&s.list, &s.output_dir) {
        (Some(list), Some(dir)) => {
            let _ = writeln!(w, "campaign: {} -> {}", list.display(), dir.display());
        }
        _ => {
            let _ = writeln!(w, "campaign: (no campaign.yaml)");
        }
    }
    let _ = writeln!(w, "state:    {}", s.state_dir.display());
    let _ = writeln!(w);
}

/// Granules by status, with their share of the list; then the attempts.
fn counts(w: &mut String, s: &Overview) {
    let _ = writeln!(w, "  granules     {:>8}", s.granules);
    for status in [
        Some(Status::Done),
        Some(Status::Running),
        Some(Status::Claimed),
        None,
        Some(Status::Pending),
        Some(Status::Interrupted),
        Some(Status::Failed),
    ] {
        // `None`: lost, held by a provably dead process.
        let (name, n) = match status {
            Some(status) => (status.name(), s.counts.get(status)),
            None if s.counts.lost == 0 => continue,
            None => ("lost", s.counts.lost),
        };
        let _ = write!(w, "  {name:<12} {n:>8}  {}", percent(n, s.granules));
        if status.is_none() {
            let _ = write!(w, "  (holder provably dead: the next run takes them over)");
        }
        let Some(status) = status else {
            let _ = writeln!(w);
            continue;
        };
        if status == Status::Failed && n > 0 {
            let _ = write!(
                w,
                "  ({} will be tried again on resume, {} out of retries)",
                s.failed_retryable,
                n - s.failed_retryable
            );
        }
        let _ = writeln!(w);
    }
    if s.not_in_list > 0 {
        let _ = writeln!(
            w,
            "  ({} records of granules not in the list)",
            s.not_in_list
        );
    }
    if s.attempts > 0 {
        let _ = writeln!(
            w,
            "  attempts     {:>8}  ({} lost with their holder)",
            s.attempts, s.lost
        );
    }
    let _ = writeln!(w);
}

/// Throughput, ETA, and the Slurm jobs holding granules.
fn pace(w: &mut String, s: &Overview) {
    match s.done_per_hour {
        Some(rate) => {
            let _ = writeln!(
                w,
                "throughput: {rate:.1} granules/hour over {} ({} done in the last hour)",
                duration(s.elapsed_seconds, Style::Whole),
                s.done_last_hour
            );
        }
        None => {
            let _ = writeln!(w, "throughput: nothing done yet");
        }
    }
    match s.eta_seconds {
        Some(_) if s.remaining == 0 => {
            let _ = writeln!(w, "ETA:        nothing left to do");
        }
        Some(eta) => {
            let _ = writeln!(
                w,
                "ETA:        {} for {} granules at that rate",
                duration(eta, Style::Whole),
                s.remaining
            );
        }
        None => {
            let _ = writeln!(
                w,
                "ETA:        unknown until a granule is done ({} to do)",
                s.remaining
            );
        }
    }
    if !s.running_jobs.is_empty() {
        let _ = writeln!(w, "held by Slurm jobs: {}", s.running_jobs.join(" "));
    }
}

/// The first failures, one line each.
fn failures(w: &mut String, s: &Overview) {
    if s.failures.is_empty() {
        return;
    }
    let _ = writeln!(w);
    let shown = s.failures.len().min(TEXT_FAILURES);
    let _ = write!(w, "failures ({}", s.failures.len());
    if shown < s.failures.len() {
        let _ = write!(w, ", first {shown}; --format yaml lists all");
    }
    let _ = writeln!(w, "):");
    let width = s.failures[..shown]
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for f in &s.failures[..shown] {
        let kind = f.kind.map_or("?", FailureKind::name);
        let _ = writeln!(
            w,
            "  {:<width$}  {kind:<10} attempt {}{}  {}",
            f.name,
            f.attempts,
            if f.retryable { "" } else { ", no retries left" },
            f.error.as_deref().unwrap_or("(no message)")
        );
    }
}

/// Granules whose holder is provably dead.
fn lost_claims(w: &mut String, s: &Overview) {
    if s.lost_claims.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "\nlost ({}; the next run takes them over, or `pseg-slurm retry --missing`):",
        s.lost_claims.len()
    );
    for l in s.lost_claims.iter().take(TEXT_FAILURES) {
        let _ = writeln!(
            w,
            "  {}  held by {} since {}: {}",
            l.name,
            l.holder,
            crate::base::time::utc(l.claimed),
            l.why
        );
    }
}

/// Claim files that cannot be read, and how to free their granules.
fn unreadable_claims(w: &mut String, s: &Overview) {
    if s.unreadable_claims.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "\nunreadable claim files ({}): each blocks its granule until released with \
         `pseg-slurm release OUT --granule NAME --yes`:",
        s.unreadable_claims.len()
    );
    for u in &s.unreadable_claims {
        let granule = u
            .granule
            .as_ref()
            .map_or(String::new(), |g| format!(" (granule {g})"));
        let _ = writeln!(w, "  {}{granule}: {}", u.path.display(), u.why);
    }
}

/// The work per host, as a table.
fn hosts(w: &mut String, s: &Overview) {
    if s.hosts.is_empty() {
        return;
    }
    let _ = writeln!(w);
    let width = s
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        w,
        "  {:<width$}  {:>8} {:>8} {:>11} {:>6} {:>12}",
        "host", "done", "failed", "interrupted", "busy", "time"
    );
    for h in &s.hosts {
        let _ = writeln!(
            w,
            "  {:<width$}  {:>8} {:>8} {:>11} {:>6} {:>12}",
            h.host,
            h.done,
            h.failed,
            h.interrupted,
            h.busy,
            duration(h.seconds, Style::Whole)
        );
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        String::new()
    } else {
        format!("{:5.1}%", part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::status::testing::{fixture, inputs, rec};
    use crate::domain::campaign::status::{LostClaim, UnreadableClaim, summarize};

    #[test]
    fn the_text_names_counts_rates_and_failures() {
        let s = summarize(fixture(), &RetryBudget::default(), 4600.0);
        let text = render_text(&s);
        for needle in [
            "campaign: /l.txt -> /out",
            "  done                3   37.5%",
            "(1 will be tried again on resume, 1 out of retries)",
            "throughput: 3.0 granules/hour over 1 h 00 min",
            "ETA:        1 h 20 min for 4 granules",
            "held by Slurm jobs: 991",
            "d.hdf  oom        attempt 2, no retries left  killed for memory (peak 7.9 GiB)",
            "(1 records of granules not in the list)",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn the_text_shows_lost_and_unreadable_claims() {
        let mut input = fixture();
        input.dead.insert(
            "f.hdf".into(),
            LostClaim {
                name: "f.hdf".into(),
                holder: "n1 pid 4242 (Slurm job 991)".into(),
                claimed: 4000.0,
                why: "pid 4242 is gone".into(),
            },
        );
        input.unreadable_claims.push(UnreadableClaim {
            path: "/out/pseg-state/claims/h.hdf".into(),
            granule: Some("h.hdf".into()),
            why: "empty".into(),
        });
        let text = render_text(&summarize(input, &RetryBudget::default(), 4600.0));
        for needle in [
            "  lost                1   12.5%  (holder provably dead",
            "  f.hdf  held by n1 pid 4242 (Slurm job 991) since 1970-01-01 01:06:40 UTC: pid \
             4242 is gone",
            "unreadable claim files (1)",
            "  /out/pseg-state/claims/h.hdf (granule h.hdf): empty",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn the_eta_says_when_it_is_unknown_and_when_all_is_done() {
        let empty = summarize(
            inputs(Some(vec!["a"]), vec![]),
            &RetryBudget::default(),
            0.0,
        );
        assert!(
            render_text(&empty).contains("ETA:        unknown until a granule is done (1 to do)")
        );
        let finished = summarize(
            inputs(
                Some(vec!["a"]),
                vec![rec("a", Status::Done, "n", 0.0, Some(60.0))],
            ),
            &RetryBudget::default(),
            1e6,
        );
        assert!(render_text(&finished).contains("nothing left to do"));
    }
}
