//! One granule's record: the schema, how an attempt changes it, and the resume rule.
//!
//! Pure: records are built and judged here, read and written by `store`. A record is one
//! line of JSON (`serde_json` parses 100 000 of them well within a second, which YAML does
//! not); fields are only ever added within `pseg-ledger/1`, and readers ignore what they do
//! not know.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::identity::SlurmIds;
use crate::domain::ledger::classify::{FailureKind, RetryBudget};
use crate::domain::ledger::holder::Holder;

pub const SCHEMA: &str = "pseg-ledger/1";

/// Where a granule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Never started, or sent back by `pseg-slurm retry --failed`. Granules without a
    /// record are pending too.
    Pending,
    /// A process holds it and has not started clavrxorb yet.
    Claimed,
    Running,
    Done,
    Failed,
    /// Stopped from outside (time limit, scancel); redone on resume, never charged.
    Interrupted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Claimed => "claimed",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// A granule's state in the campaign. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// The granule's file name (its key in the ledger).
    pub name: String,
    pub status: Status,
    /// Claims taken on it, all time.
    #[serde(default)]
    pub attempts: u32,
    /// Failures per kind, all time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<FailureKind, u32>,
    /// Failures per kind since the last `retry --failed`: what the retry budget sees.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub charged: BTreeMap<FailureKind, u32>,
    /// Times it was interrupted (time limit, scancel), all time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interruptions: u32,
    /// The kind of the last failure, while the status is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// Who has or had the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmIds>,
    /// When its first attempt started (for the campaign's throughput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started: Option<f64>,
    /// The latest attempt: claimed, clavrxorb started, ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// One line: why the latest attempt failed or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The latest attempt's memory report (`<out>/pseg-reports/<name>.pseg.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Done on the weaker proof (a clavrxorb without tracer symbols: exit 0 and outputs
    /// non-empty), not the tracer's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak_proof: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How an attempt ended, as the driver tells [`Ledger::finish`](crate::domain::ledger::Ledger::finish).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ending: Ending,
    pub exit_status: Option<i32>,
    /// Why it failed or stopped; made one line of at most [`MAX_ERROR`] characters.
    pub error: Option<String>,
    pub report: Option<PathBuf>,
    /// Done on the weaker proof: see [`Record::weak_proof`].
    pub weak_proof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Done,
    /// `Failed(TimeLimit)` is recorded as `interrupted`, like [`Ending::Interrupted`].
    Failed(FailureKind),
    Interrupted,
}

impl Outcome {
    pub fn done() -> Outcome {
        Outcome::new(Ending::Done, None)
    }

    pub fn failed(kind: FailureKind, error: impl Into<String>) -> Outcome {
        Outcome::new(Ending::Failed(kind), Some(error.into()))
    }

    pub fn interrupted(why: impl Into<String>) -> Outcome {
        Outcome::new(Ending::Interrupted, Some(why.into()))
    }

    fn new(ending: Ending, error: Option<String>) -> Outcome {
        Outcome {
            ending,
            exit_status: None,
            error,
            report: None,
            weak_proof: false,
        }
    }

    /// Done, but proven only by exit 0 and non-empty outputs (no tracer symbols).
    pub fn with_weak_proof(mut self) -> Outcome {
        self.weak_proof = true;
        self
    }

    pub fn with_exit_status(mut self, status: i32) -> Outcome {
        self.exit_status = Some(status);
        self
    }

    pub fn with_report(mut self, report: PathBuf) -> Outcome {
        self.report = Some(report);
        self
    }
}

/// The longest error kept in a record, in characters.
pub const MAX_ERROR: usize = 400;

/// `text` on one line, at most [`MAX_ERROR`] characters.
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(MAX_ERROR) {
        Some((cut, _)) => format!("{}...", &joined[..cut]),
        None => joined,
    }
}

impl Record {
    /// A record for a granule never tried.
    pub fn new(name: &str) -> Record {
        Record {
            schema: SCHEMA.to_string(),
            name: name.to_string(),
            status: Status::Pending,
            attempts: 0,
            failures: BTreeMap::new(),
            charged: BTreeMap::new(),
            interruptions: 0,
            kind: None,
            host: None,
            pid: None,
            slurm: None,
            first_started: None,
            claimed: None,
            started: None,
            ended: None,
            exit_status: None,
            error: None,
            report: None,
            weak_proof: false,
        }
    }

    /// Counts a failure of `kind` (all time, and against the budget when the kind is
    /// charged at all).
    pub fn charge(&mut self, kind: FailureKind) {
        *self.failures.entry(kind).or_default() += 1;
        if kind.is_charged() {
            *self.charged.entry(kind).or_default() += 1;
        }
    }

    /// A new attempt by `who`, claimed at `now`.
    pub fn start_attempt(&mut self, who: &Holder, now: f64) {
        self.attempts += 1;
        self.status = Status::Claimed;
        self.kind = None;
        self.host = Some(who.host.clone());
        self.pid = Some(who.pid);
        self.slurm = who.slurm.clone();
        self.claimed = Some(now);
        self.started = None;
        self.ended = None;
        self.exit_status = None;
        self.error = None;
        self.report = None;
    }

    /// clavrxorb started at `now`.
    pub fn mark_running(&mut self, now: f64) {
        self.status = Status::Running;
        self.started = Some(now);
        self.first_started.get_or_insert(now);
    }

    /// The attempt ended at `now` as `outcome` says.
    pub fn end_attempt(&mut self, outcome: &Outcome, now: f64) {
        self.ended = Some(now);
        if self.started.is_none() {
            self.started = self.claimed;
            self.first_started = self.first_started.or(self.claimed);
        }
        self.exit_status = outcome.exit_status;
        self.error = outcome.error.as_deref().map(one_line);
        self.report = outcome.report.clone();
        self.weak_proof = outcome.ending == Ending::Done && outcome.weak_proof;
        self.kind = None;
        match outcome.ending {
            Ending::Done => self.status = Status::Done,
            Ending::Interrupted | Ending::Failed(FailureKind::TimeLimit) => {
                self.status = Status::Interrupted;
                self.interruptions += 1;
            }
            Ending::Failed(kind) => {
                self.status = Status::Failed;
                self.kind = Some(kind);
                self.charge(kind);
            }
        }
    }

    /// `retry --failed`: back to pending with a fresh budget; history stays.
    pub fn reset_for_retry(&mut self) {
        self.status = Status::Pending;
        self.charged.clear();
    }

    /// `pseg-slurm verify` found this done granule's outputs changed: failed, to be redone,
    /// with no retry used (the kind's budget is unlimited).
    pub fn mark_output_changed(&mut self, why: &str) {
        self.status = Status::Failed;
        self.kind = Some(FailureKind::OutputChanged);
        *self.failures.entry(FailureKind::OutputChanged).or_default() += 1;
        self.error = Some(one_line(why));
    }

    /// A failed granule is tried again: its outputs changed after it was done, or every
    /// kind of failure charged to it is within `budget`.
    pub fn retryable(&self, budget: &RetryBudget) -> bool {
        self.kind == Some(FailureKind::OutputChanged) || budget.allows(&self.charged)
    }

    /// Is the status one a live process is working under?
    pub fn is_held(&self) -> bool {
        matches!(self.status, Status::Claimed | Status::Running)
    }
}

/// The resume rule: does this granule still need work?
///
/// - no record, `pending`, `interrupted`: yes;
/// - `claimed` or `running`: yes; the claim decides whether its holder is alive;
/// - `done`: only if its output is gone (`output_ok` is asked for done records only);
/// - `failed`: while every kind of failure is within `budget`, and always after
///   `output-changed` (never charged).
pub fn needs_work(
    record: Option<&Record>,
    output_ok: impl FnOnce() -> bool,
    budget: &RetryBudget,
) -> bool {
    let Some(r) = record else { return true };
    match r.status {
        Status::Pending | Status::Interrupted | Status::Claimed | Status::Running => true,
        Status::Done => !output_ok(),
        Status::Failed => r.retryable(budget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            host: "node7".into(),
            pid: 4242,
            pid_start_time: 123,
            boot_id: None,
            pid_namespace: None,
            slurm: Some(SlurmIds {
                job_id: Some("991".into()),
                ..SlurmIds::default()
            }),
            restart_count: None,
        }
    }

    #[test]
    fn a_record_round_trips_as_one_json_line() {
        let mut r = Record::new("goes16 \"odd\" name.gran");
        r.start_attempt(&holder(), 100.0);
        r.mark_running(101.5);
        r.end_attempt(
            &Outcome::failed(FailureKind::OutOfMemory, "killed\nby the kernel")
                .with_exit_status(137)
                .with_report("/out/pseg-reports/x.pseg.yaml".into()),
            160.25,
        );
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains(r#""failures":{"oom":1}"#), "{text}");
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.error.as_deref(), Some("killed by the kernel"));
        assert_eq!(back.status, Status::Failed);
        assert_eq!(back.kind, Some(FailureKind::OutOfMemory));
        // Readers ignore fields they do not know, and old records lack new ones.
        let old = r#"{"schema":"pseg-ledger/1","name":"a","status":"done","later":1}"#;
        let parsed: Record = serde_json::from_str(old).unwrap();
        assert_eq!((parsed.status, parsed.attempts), (Status::Done, 0));
    }

    #[test]
    fn an_attempt_walks_through_the_states() {
        let mut r = Record::new("g");
        r.start_attempt(&holder(), 10.0);
        assert_eq!((r.status, r.attempts), (Status::Claimed, 1));
        r.mark_running(11.0);
        r.end_attempt(&Outcome::interrupted("SIGUSR1: time limit near"), 20.0);
        assert_eq!((r.status, r.interruptions), (Status::Interrupted, 1));
        assert!(r.charged.is_empty(), "interruptions are never charged");
        r.start_attempt(&holder(), 30.0);
        assert_eq!(r.started, None, "a new attempt forgets the old times");
        r.end_attempt(&Outcome::failed(FailureKind::TimeLimit, "SIGTERM"), 31.0);
        assert_eq!(r.status, Status::Interrupted);
        assert_eq!(r.started, Some(30.0), "never running: started is the claim");
        assert_eq!(r.first_started, Some(11.0));
        r.start_attempt(&holder(), 40.0);
        r.end_attempt(&Outcome::done(), 50.0);
        assert_eq!(
            (r.status, r.attempts, r.error.clone()),
            (Status::Done, 3, None)
        );
    }

    #[test]
    fn errors_are_kept_short_on_one_line() {
        assert_eq!(one_line("  a\n\tb  c \r\n"), "a b c");
        let long = "é".repeat(MAX_ERROR + 10);
        let short = one_line(&long);
        assert_eq!(short.chars().count(), MAX_ERROR + 3);
        assert!(short.ends_with("..."));
    }

    #[test]
    fn resume_rule() {
        let budget = RetryBudget::default();
        let with = |status: Status, charged: &[(FailureKind, u32)]| {
            let mut r = Record::new("g");
            r.status = status;
            r.charged = charged.iter().copied().collect();
            r
        };
        let yes = || true;
        let no = || false;
        // Done after three exits (a budget since reset), then its output changed.
        let mut changed = with(Done, &[(FailureKind::Exit, 3)]);
        changed.mark_output_changed("a.level2.bin missing");
        assert!(!changed.charged.contains_key(&FailureKind::OutputChanged));
        use FailureKind::*;
        use Status::*;
        let table: Vec<(Option<Record>, bool, bool)> = vec![
            // (record, output present, needs work)
            (None, true, true),
            (Some(with(Pending, &[])), true, true),
            (Some(with(Interrupted, &[])), true, true),
            (Some(with(Claimed, &[])), true, true),
            (Some(with(Running, &[])), true, true),
            (Some(with(Done, &[])), true, false),
            (Some(with(Done, &[])), false, true),
            (Some(with(Failed, &[(OutOfMemory, 1)])), true, true),
            (Some(with(Failed, &[(OutOfMemory, 2)])), true, false),
            (Some(with(Failed, &[(BadInput, 1)])), true, false),
            (Some(with(Failed, &[(Signal, 2), (Exit, 1)])), true, true),
            (Some(with(Pending, &[])), false, true),
            // Changed outputs are redone whatever else the granule went through.
            (Some(changed.clone()), true, true),
        ];
        for (record, output, want) in table {
            let got = if output {
                needs_work(record.as_ref(), yes, &budget)
            } else {
                needs_work(record.as_ref(), no, &budget)
            };
            assert_eq!(got, want, "{record:?} output={output}");
        }
        // The output is only looked at for done records.
        let asked = std::cell::Cell::new(false);
        needs_work(Some(&with(Failed, &[])), || asked.replace(true), &budget);
        assert!(!asked.get());
        let mut reset = with(Failed, &[(OutOfMemory, 2)]);
        reset.failures = reset.charged.clone();
        reset.reset_for_retry();
        assert!(needs_work(Some(&reset), yes, &budget));
        assert_eq!(reset.failures[&OutOfMemory], 2, "history stays");
    }
}
