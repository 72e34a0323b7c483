//! Where the supervisor's granules come from and go: claims the next granule from the
//! ledger only when it is about to start (so tasks sharing a list stay fair), starts it, and
//! records each one as it ends (report, outputs manifest, ledger, step summary).
//!
//! It never stops the run by returning an error while granules are in flight: a ledger
//! error is kept, nothing new starts, and the step reports it once every granule has ended.
//! A storage failure stops the step: nothing new starts and the supervisor ends the granules
//! in flight, which are recorded interrupted (the folder's fault, not theirs).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use super::error::StepError;
use super::failure_outcome;
use super::granule::{self, Ended, GranuleFlight, GranuleResult, Plan};
use super::progress::Progress;
use super::run_monitor::Watch;
use super::storage;
use super::summary::{StepSummary, done_line};
use crate::domain::fanout::orphan_guard::Watchdog;
use crate::domain::fanout::{Feed, Outcome as RunOutcome};
use crate::domain::granule_list::Granule;
use crate::domain::ledger::{Claim, FailureKind, Holder, Ledger, Outcome, Queue};
use crate::domain::reports::{self, GranuleReport};

pub struct Feeder<'p, 'w> {
    pub plan: &'p Plan<'p>,
    pub ledger: &'p Ledger,
    pub queue: Queue,
    pub me: &'p Holder,
    pub by_name: HashMap<String, &'p Granule>,
    pub watchdog: &'w mut Watchdog,
    pub reports: PathBuf,
    pub summary: StepSummary,
    pub total: usize,
    /// Granules started so far: the next one's number on its progress line.
    pub started: usize,
    /// Wall time of the slowest granule done so far: the prior for judging one that has
    /// written nothing yet when the time-limit warning comes.
    pub slowest_done: Option<f64>,
    /// A folder refused a write: every later granule would hit the same full disk.
    pub storage_failed: bool,
    pub interrupted_by: Option<i32>,
    pub error: Option<StepError>,
}

impl<'p> Feed<'p, Watch<'p>, granule::Running<Claim>> for Feeder<'p, '_> {
    fn start(&mut self, _in_flight: usize) -> io::Result<Option<GranuleFlight<'p, Claim>>> {
        loop {
            if self.storage_failed || self.interrupted_by.is_some() || self.error.is_some() {
                return Ok(None);
            }
            let claimed = self.ledger.claim_next(&mut self.queue, self.me);
            let mut claim = match claimed {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.say_why_none_left();
                    return Ok(None);
                }
                Err(e) => {
                    self.error = Some(e.into());
                    return Ok(None);
                }
            };
            if let Err(e) = self.ledger.running(&mut claim) {
                self.error = Some(e.into());
                return Ok(None);
            }
            let granule = self.by_name[claim.name()];
            let progress = Progress::new(
                self.plan.notices.progress(),
                self.started,
                self.total,
                &granule.name(),
                self.plan.scan_lines,
            );
            self.started += 1;
            match granule::start(
                self.plan,
                self.watchdog,
                granule,
                progress.clone(),
                self.slowest_done,
                claim,
            ) {
                Ok(flight) => return Ok(Some(flight)),
                Err((claim, e)) => self.record(claim, granule, &progress, Err(e)),
            }
        }
    }

    fn may_start_granule(&mut self, flights: &[GranuleFlight<'p, Claim>]) -> bool {
        flights.is_empty() || self.plan.memory.may_start_granule()
    }

    fn halted(&self) -> bool {
        // A ledger error is not a full folder: what is in flight may still finish (above).
        self.storage_failed
    }

    fn ended(
        &mut self,
        flight: GranuleFlight<'p, Claim>,
        outcome: RunOutcome,
    ) -> io::Result<Option<GranuleFlight<'p, Claim>>> {
        match granule::end(self.plan, self.watchdog, flight, outcome) {
            Ended::Redo(redo) => Ok(Some(redo)),
            Ended::Over(claim, granule, progress, result) => {
                self.record(claim, &granule, &progress, result);
                Ok(None)
            }
        }
    }
}

impl Feeder<'_, '_> {
    /// Nothing left to claim: says which granules other tasks hold or a stale claim blocks.
    fn say_why_none_left(&mut self) {
        if self.queue.is_done() {
            return;
        }
        let blocked = match self.ledger.unreadable_claims(self.queue.waiting()) {
            Ok(b) => b,
            Err(e) => {
                self.error = Some(e.into());
                return;
            }
        };
        for (name, path, why) in &blocked {
            self.plan.notices.notice(&format!(
                "{} is blocked by an unreadable claim {} ({why}): no \
                 process holds it; free it with `pseg-slurm release --granule {} --yes`",
                crate::base::escape::controls(name),
                path.display(),
                crate::base::escape::controls(name)
            ));
        }
        let held = self.queue.waiting().len() - blocked.len();
        if held > 0 {
            self.plan.notices.notice(&format!(
                "{held} granule(s) are being processed by other tasks"
            ));
        }
    }

    /// Records a granule that has ended: its report, its outputs manifest, the ledger.
    fn record(
        &mut self,
        claim: Claim,
        granule: &Granule,
        progress: &Progress,
        run: io::Result<(GranuleResult, GranuleReport)>,
    ) {
        if let Err(e) = self.record_or_fail(claim, granule, progress, run) {
            self.error.get_or_insert(e.into());
        }
    }

    fn record_or_fail(
        &mut self,
        claim: Claim,
        granule: &Granule,
        progress: &Progress,
        run: io::Result<(GranuleResult, GranuleReport)>,
    ) -> Result<(), crate::domain::ledger::LedgerError> {
        let (result, granule_report) = match run {
            Ok(r) => r,
            Err(e) => return self.not_started(claim, granule, progress, e),
        };
        let written = self.write_report(&granule_report, progress);
        let outcome = match result {
            GranuleResult::Done { outputs, proof } => {
                self.vouch(granule, &granule_report, progress, &outputs, proof)
            }
            GranuleResult::Storage { message } => {
                progress.say(&format!("FAILED: {message}"));
                self.summary
                    .failed
                    .push((granule.path.clone(), message.clone()));
                self.storage_failed = true;
                Outcome::failed(FailureKind::Storage, message)
            }
            GranuleResult::Failed {
                message,
                failure,
                oom,
            } => {
                progress.say(&format!("FAILED: {message}"));
                self.summary
                    .failed
                    .push((granule.path.clone(), message.clone()));
                failure_outcome(&failure, oom, message)
            }
            GranuleResult::Interrupted(sig) => {
                self.interrupted_by = Some(sig);
                Outcome::interrupted(format!("pseg-step got signal {sig}"))
            }
            GranuleResult::Stopped => {
                progress.say(granule::STOPPED);
                Outcome::interrupted(granule::STOPPED)
            }
        };
        let outcome = match written {
            Ok(path) => outcome.with_report(path),
            Err(_) => outcome,
        };
        self.ledger.finish(claim, outcome)
    }

    /// Records a granule clavrxorb never ran on: its work folder could not be made (the
    /// storage's fault, which every granule would hit) or clavrxorb could not be started.
    fn not_started(
        &mut self,
        claim: Claim,
        granule: &Granule,
        progress: &Progress,
        e: io::Error,
    ) -> Result<(), crate::domain::ledger::LedgerError> {
        if storage::is_storage(&e) {
            let why = format!(
                "cannot prepare its work folder under {}: {e}",
                self.plan.work.display()
            );
            progress.say(&format!("FAILED: {why}"));
            self.ledger
                .finish(claim, Outcome::failed(FailureKind::Storage, why.clone()))?;
            self.summary.add_failure(&granule.path, why);
            self.storage_failed = true;
            return Ok(());
        }
        let why = format!("could not run clavrxorb: {e}");
        progress.say(&format!("FAILED: {why}"));
        let kind = if granule.path.exists() {
            FailureKind::Exit
        } else {
            FailureKind::BadInput
        };
        self.ledger
            .finish(claim, Outcome::failed(kind, why.clone()))?;
        self.summary.add_failure(&granule.path, why);
        Ok(())
    }

    /// Writes the granule's report and counts it in the summary; a report that cannot be
    /// written is warned about, and the granule is recorded without it.
    fn write_report(
        &mut self,
        granule_report: &GranuleReport,
        progress: &Progress,
    ) -> io::Result<PathBuf> {
        let reports = &self.reports;
        let file = format!("{}{}", granule_report.name, reports::SUFFIX);
        let written = reports::write(reports, &file, granule_report);
        if let Err(e) = &written {
            progress.say(&format!(
                "warning: cannot write its report into {}: {e}",
                reports.display()
            ));
        }
        self.summary
            .add(granule_report, written.is_ok().then(|| file.into()));
        written
    }

    /// A granule proven done is done once its outputs manifest vouches for what it published.
    fn vouch(
        &mut self,
        granule: &Granule,
        granule_report: &GranuleReport,
        progress: &Progress,
        outputs: &[String],
        proof: reports::Proof,
    ) -> Outcome {
        let plan = self.plan;
        let reports = &self.reports;
        match reports::write_outputs(reports, &granule_report.name, outputs) {
            Ok(()) => {
                self.slowest_done = Some(
                    self.slowest_done
                        .unwrap_or(0.0)
                        .max(granule_report.wall_seconds),
                );
                progress.say(&done_line(granule_report));
                match proof {
                    reports::Proof::Tracer => Outcome::done(),
                    reports::Proof::ExitAndOutputs => Outcome::done().with_weak_proof(),
                }
            }
            Err(e) => {
                // Without its manifest a published output is not vouched for: take it
                // back, so the record and the folder agree that it is not done.
                granule::unpublish(&plan.out, outputs, plan.notices);
                let why = format!(
                    "cannot write its outputs manifest into {}: {e}; its outputs were \
                     removed again",
                    reports.display()
                );
                progress.say(&format!("FAILED: {why}"));
                self.summary
                    .failed
                    .push((granule.path.clone(), why.clone()));
                self.storage_failed = true;
                Outcome::failed(FailureKind::Storage, why)
            }
        }
    }
}
