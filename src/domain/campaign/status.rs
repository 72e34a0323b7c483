//! `pseg-slurm status`: what a campaign's records add up to — counts by status, throughput,
//! an ETA, the failures with their one-line errors, and the work per host.
//!
//! [`summarize`] is pure (records, the list, the time in; a [`Overview`] out); the `status`
//! command prints it as text, or as YAML/JSON through serde. [`read`] gathers
//! its inputs from a state folder: the records say what their holders last wrote; only the
//! claim files (one per granule in progress, so few) are judged by the takeover rule
//! (`alive.rs`: `/proc` on this host, `scontrol` for other hosts), so a granule whose holder
//! is provably dead shows as `lost` rather than `running`, and a claim file that cannot be
//! read is shown with its path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::domain::granule_list::read_list;
use crate::domain::ledger::alive::{Liveness, Verdict};
use crate::domain::ledger::campaign_yaml::Campaign;
use crate::domain::ledger::classify::{FailureKind, RetryBudget};
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::key;
use crate::domain::ledger::record::{Record, Status};
use crate::domain::ledger::{ClaimContent, Ledger};

/// Slurm jobs listed as still holding granules.
const MAX_JOBS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub pending: usize,
    pub claimed: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Claimed or running by a holder that is provably dead: the next run takes them over.
    pub lost: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Pending => self.pending += 1,
            Status::Claimed => self.claimed += 1,
            Status::Running => self.running += 1,
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
            Status::Interrupted => self.interrupted += 1,
        }
    }

    /// The granules of `status`.
    pub fn get(&self, status: Status) -> usize {
        match status {
            Status::Pending => self.pending,
            Status::Claimed => self.claimed,
            Status::Running => self.running,
            Status::Done => self.done,
            Status::Failed => self.failed,
            Status::Interrupted => self.interrupted,
        }
    }
}

/// One failed granule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub name: String,
    pub kind: Option<FailureKind>,
    pub attempts: u32,
    /// A resume will try it again (its failures are within the retry budget).
    pub retryable: bool,
    pub exit_status: Option<i32>,
    pub error: Option<String>,
    pub host: Option<String>,
    pub slurm_job: Option<String>,
    pub report: Option<PathBuf>,
}

/// A granule held by a provably dead process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostClaim {
    pub name: String,
    /// `node7 pid 4242 (Slurm job 991)`.
    pub holder: String,
    /// When it was claimed (Unix seconds).
    pub claimed: f64,
    /// The proof, as takeover would give it.
    pub why: String,
}

/// A claim file that cannot be read: it blocks its granule until released.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnreadableClaim {
    pub path: PathBuf,
    /// The granule, when the file name tells.
    pub granule: Option<String>,
    pub why: String,
}

/// The work one host did (by the latest attempt of each granule).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostLine {
    pub host: String,
    pub done: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Claimed or running now.
    pub busy: usize,
    /// Seconds of finished attempts (start to end).
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub state_dir: PathBuf,
    pub list: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    /// Granules in the list (records, when the list cannot be read).
    pub granules: usize,
    pub counts: Counts,
    /// Failed granules a resume will try again.
    pub failed_retryable: usize,
    /// Records of granules not in the list (from an earlier list).
    pub not_in_list: usize,
    pub unreadable_records: usize,
    /// Attempts over all granules, and how many were lost with their holder.
    pub attempts: u64,
    pub lost: u64,
    /// Done granules proven only by exit 0 and non-empty outputs (no tracer symbols).
    pub weak_proof: usize,
    pub first_started: Option<f64>,
    pub last_ended: Option<f64>,
    /// From the first start to now (while anything runs) or to the last end.
    pub elapsed_seconds: f64,
    pub done_per_hour: Option<f64>,
    pub done_last_hour: usize,
    /// Granules still to do: pending, claimed, running, interrupted, failed but retryable.
    pub remaining: usize,
    /// `remaining` at `done_per_hour`.
    pub eta_seconds: Option<f64>,
    /// Slurm jobs of claimed and running records (compare with `squeue`).
    pub running_jobs: Vec<String>,
    pub failures: Vec<Failure>,
    /// Granules counted `lost`, with their dead holder.
    pub lost_claims: Vec<LostClaim>,
    pub unreadable_claims: Vec<UnreadableClaim>,
    pub hosts: Vec<HostLine>,
    pub warnings: Vec<String>,
}

/// What a state folder holds, read for [`summarize`].
pub struct Inputs {
    pub state_dir: PathBuf,
    pub campaign: Option<Campaign>,
    /// The list's granule names in order, when it could be read.
    pub names: Option<Vec<String>>,
    pub records: Vec<Record>,
    pub unreadable: usize,
    /// Claims whose holder is provably dead, by granule.
    pub dead: HashMap<String, LostClaim>,
    pub unreadable_claims: Vec<UnreadableClaim>,
    pub warnings: Vec<String>,
}

/// Reads the campaign, its list and every record of `state_dir`.
pub fn read(state_dir: &Path) -> Result<Inputs, LedgerError> {
    let ledger = Ledger::open_existing(state_dir)?;
    let campaign = Campaign::read(state_dir)?;
    let mut warnings = Vec::new();
    let names = match &campaign {
        Some(c) => match read_list(&c.list) {
            Ok(list) => Some(list.granules.iter().map(|g| g.name()).collect()),
            Err(e) => {
                warnings.push(format!("{e}; counting records only"));
                None
            }
        },
        None => {
            warnings.push(format!(
                "{} has no campaign.yaml (not started by `pseg-slurm gen`): granules never \
                 started are not counted",
                state_dir.display()
            ));
            None
        }
    };
    let scan = ledger.scan()?;
    for (path, why) in scan.unreadable.iter().take(5) {
        warnings.push(format!("unreadable record {}: {why}", path.display()));
    }
    let (dead, unreadable_claims) = judge_claims(&ledger, &scan.records)?;
    Ok(Inputs {
        state_dir: state_dir.to_path_buf(),
        campaign,
        names,
        records: scan.records,
        unreadable: scan.unreadable.len(),
        dead,
        unreadable_claims,
        warnings,
    })
}

/// The claim files: those of granules in progress whose holder is provably dead (by the
/// takeover rule, seen from this process), and those that cannot be read.
fn judge_claims(
    ledger: &Ledger,
    records: &[Record],
) -> Result<(HashMap<String, LostClaim>, Vec<UnreadableClaim>), LedgerError> {
    let held: HashMap<&str, bool> = records
        .iter()
        .map(|r| (r.name.as_str(), r.is_held()))
        .collect();
    let me = Holder::current();
    let mut unreadable = Vec::new();
    let mut judged = Vec::new();
    for found in ledger.claims()? {
        match found.content {
            ClaimContent::Unreadable(why) => unreadable.push(UnreadableClaim {
                path: found.path,
                granule: key::decode(&found.key),
                why,
            }),
            // A dead holder's claim on a finished record is stale, not lost: its outcome
            // stands, and the next claimer replaces it.
            ClaimContent::Held(c) if !held.get(c.granule()).copied().unwrap_or(true) => {}
            ClaimContent::Held(c) if c.holder().same_process(&me) => {}
            ClaimContent::Held(c) => judged.push(c),
        }
    }
    let holders: Vec<&Holder> = judged.iter().map(|c| c.holder()).collect();
    let verdicts = judge_all(ledger.liveness(), &holders, &me);
    let dead = judged
        .iter()
        .zip(verdicts)
        .filter_map(|(c, verdict)| match verdict {
            Verdict::Dead(why) => Some((
                c.granule().to_string(),
                LostClaim {
                    name: c.granule().to_string(),
                    holder: c.holder().describe(),
                    claimed: c.claimed(),
                    why,
                },
            )),
            Verdict::Alive(_) | Verdict::Unknown(_) => None,
        })
        .collect();
    Ok((dead, unreadable))
}

/// Judges holders on up to 16 threads: a holder on another host costs an `scontrol` call
/// (up to its deadline), and each element of a job array is a job of its own.
fn judge_all(alive: &Liveness, holders: &[&Holder], me: &Holder) -> Vec<Verdict> {
    const THREADS: usize = 16;
    if holders.len() < 2 {
        return holders.iter().map(|h| alive.judge(h, me)).collect();
    }
    let chunk = holders.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = holders
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || part.iter().map(|h| alive.judge(h, me)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Adds the records up; `now` in Unix seconds.
pub fn summarize(inputs: Inputs, budget: &RetryBudget, now: f64) -> Overview {
    let Inputs {
        state_dir,
        campaign,
        names,
        records,
        unreadable,
        mut dead,
        unreadable_claims,
        warnings,
    } = inputs;
    let listed = in_list_order(names.as_deref(), &records);
    let mut s = Overview {
        state_dir,
        list: campaign.as_ref().map(|c| c.list.clone()),
        output_dir: campaign.as_ref().map(|c| c.output_dir.clone()),
        granules: listed.granules,
        counts: Counts {
            pending: listed.unrecorded,
            ..Counts::default()
        },
        failed_retryable: 0,
        not_in_list: listed.not_in_list,
        unreadable_records: unreadable,
        attempts: 0,
        lost: 0,
        weak_proof: 0,
        first_started: None,
        last_ended: None,
        elapsed_seconds: 0.0,
        done_per_hour: None,
        done_last_hour: 0,
        remaining: 0,
        eta_seconds: None,
        running_jobs: Vec::new(),
        failures: Vec::new(),
        lost_claims: Vec::new(),
        unreadable_claims,
        hosts: Vec::new(),
        warnings,
    };
    let mut hosts: BTreeMap<&str, HostLine> = BTreeMap::new();
    let mut jobs: BTreeSet<&str> = BTreeSet::new();
    for r in &listed.counted {
        let lost = if r.is_held() {
            dead.remove(&r.name)
        } else {
            None
        };
        let is_lost = lost.is_some();
        s.count(r, lost, now);
        if r.status != Status::Pending {
            let host = hosts
                .entry(r.host.as_deref().unwrap_or("?"))
                .or_insert_with(|| HostLine {
                    host: r.host.clone().unwrap_or_else(|| "?".into()),
                    ..HostLine::default()
                });
            host.add(r, is_lost);
        }
        if r.is_held() && !is_lost {
            if let Some(job) = r.slurm.as_ref().and_then(|j| j.job_id.as_deref()) {
                jobs.insert(job);
            }
        }
        if r.status == Status::Failed {
            let failure = Failure::of(r, budget);
            s.failed_retryable += usize::from(failure.retryable);
            s.failures.push(failure);
        }
    }
    if s.weak_proof > 0 {
        s.warnings.push(format!(
            "{} done granule(s) rest on the weaker proof: clavrxorb had no tracer symbols, so \
             only its exit 0 and non-empty outputs were checked (a truncated output is not \
             caught)",
            s.weak_proof
        ));
    }
    s.hosts = hosts.into_values().collect();
    s.running_jobs = jobs.iter().take(MAX_JOBS).map(|j| j.to_string()).collect();
    s.estimate(now);
    s
}

/// The records that count, and what the list says of the rest.
struct Listed<'a> {
    /// In list order (or by name without a list), each granule once.
    counted: Vec<&'a Record>,
    /// Granules in the list (records, without one).
    granules: usize,
    /// Granules in the list with no record yet: pending.
    unrecorded: usize,
    /// Records of granules not in the list (from an earlier list).
    not_in_list: usize,
}

fn in_list_order<'a>(names: Option<&[String]>, records: &'a [Record]) -> Listed<'a> {
    let mut by_name: HashMap<&str, &Record> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut counted: Vec<&Record> = Vec::with_capacity(records.len());
    let mut unrecorded = 0;
    let granules = match names {
        Some(names) => {
            for name in names {
                match by_name.remove(name.as_str()) {
                    Some(r) => counted.push(r),
                    None => unrecorded += 1,
                }
            }
            names.len()
        }
        None => {
            counted = by_name.drain().map(|(_, r)| r).collect();
            counted.sort_by(|a, b| a.name.cmp(&b.name));
            counted.len()
        }
    };
    Listed {
        counted,
        granules,
        unrecorded,
        not_in_list: by_name.len(),
    }
}

impl Overview {
    /// Counts one record (its claim `lost` with a dead holder, if so) and its times.
    fn count(&mut self, r: &Record, lost: Option<LostClaim>, now: f64) {
        if let Some(claim) = lost {
            self.counts.lost += 1;
            self.lost_claims.push(claim);
        } else {
            self.counts.add(r.status);
        }
        self.attempts += u64::from(r.attempts);
        self.lost += u64::from(r.failures.get(&FailureKind::Lost).copied().unwrap_or(0));
        self.weak_proof += usize::from(r.status == Status::Done && r.weak_proof);
        if let Some(t) = r.first_started.or(r.started).or(r.claimed) {
            self.first_started = Some(self.first_started.map_or(t, |f| f.min(t)));
        }
        if let Some(t) = r.ended {
            self.last_ended = Some(self.last_ended.map_or(t, |l| l.max(t)));
            if r.status == Status::Done && now - t <= 3600.0 {
                self.done_last_hour += 1;
            }
        }
    }

    /// What remains, the time so far, the rate and the time to go, once everything is
    /// counted.
    fn estimate(&mut self, now: f64) {
        let c = &self.counts;
        self.remaining =
            c.pending + c.claimed + c.running + c.lost + c.interrupted + self.failed_retryable;
        if let Some(first) = self.first_started {
            let busy = c.claimed + c.running > 0;
            let end = if busy {
                now
            } else {
                self.last_ended.unwrap_or(now)
            };
            self.elapsed_seconds = (end - first).max(0.0);
        }
        if c.done > 0 && self.elapsed_seconds > 0.0 {
            let rate = c.done as f64 * 3600.0 / self.elapsed_seconds;
            self.done_per_hour = Some(rate);
            self.eta_seconds = Some(self.remaining as f64 * 3600.0 / rate);
        } else if self.remaining == 0 {
            self.eta_seconds = Some(0.0);
        }
    }
}

impl HostLine {
    /// Adds a record's latest attempt (not pending); a `lost` claim is not busy.
    fn add(&mut self, r: &Record, lost: bool) {
        if let (Some(a), Some(b)) = (r.started, r.ended) {
            self.seconds += (b - a).max(0.0);
        }
        match r.status {
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
            Status::Interrupted => self.interrupted += 1,
            Status::Claimed | Status::Running | Status::Pending => self.busy += usize::from(!lost),
        }
    }
}

impl Failure {
    /// A failed record as the overview lists it.
    fn of(r: &Record, budget: &RetryBudget) -> Failure {
        Failure {
            name: r.name.clone(),
            kind: r.kind,
            attempts: r.attempts,
            retryable: r.retryable(budget),
            exit_status: r.exit_status,
            error: r.error.clone(),
            host: r.host.clone(),
            slurm_job: r.slurm.as_ref().and_then(|j| j.job_id.clone()),
            report: r.report.clone(),
        }
    }
}

/// Records and inputs for tests of the overview and of its text (`cmd::status`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::base::identity::SlurmIds;

    pub fn rec(name: &str, status: Status, host: &str, start: f64, end: Option<f64>) -> Record {
        let mut r = Record::new(name);
        r.status = status;
        r.attempts = 1;
        r.host = Some(host.into());
        r.first_started = Some(start);
        r.started = Some(start);
        r.ended = end;
        r
    }

    pub fn inputs(names: Option<Vec<&str>>, records: Vec<Record>) -> Inputs {
        Inputs {
            state_dir: "/out/pseg-state".into(),
            campaign: Some(Campaign::new(
                Path::new("/l.txt"),
                Path::new("/out"),
                None,
                "test",
            )),
            names: names.map(|v| v.into_iter().map(String::from).collect()),
            records,
            unreadable: 0,
            dead: HashMap::new(),
            unreadable_claims: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn fixture() -> Inputs {
        let mut oom = rec("d.hdf", Status::Failed, "n2", 1000.0, Some(1500.0));
        oom.kind = Some(FailureKind::OutOfMemory);
        oom.charged.insert(FailureKind::OutOfMemory, 2);
        oom.attempts = 2;
        oom.error = Some("killed for memory (peak 7.9 GiB)".into());
        let mut crash = rec("e.hdf", Status::Failed, "n1", 1000.0, Some(1100.0));
        crash.kind = Some(FailureKind::Signal);
        crash.charged.insert(FailureKind::Signal, 1);
        let mut running = rec("f.hdf", Status::Running, "n1", 4000.0, None);
        running.slurm = Some(SlurmIds {
            job_id: Some("991".into()),
            ..SlurmIds::default()
        });
        running.failures.insert(FailureKind::Lost, 1);
        inputs(
            Some(vec![
                "a.hdf", "b.hdf", "c.hdf", "d.hdf", "e.hdf", "f.hdf", "g.hdf", "h.hdf",
            ]),
            vec![
                rec("a.hdf", Status::Done, "n1", 1000.0, Some(1600.0)),
                rec("b.hdf", Status::Done, "n1", 1600.0, Some(2200.0)),
                rec("c.hdf", Status::Done, "n2", 1000.0, Some(4600.0)),
                oom,
                crash,
                running,
                rec("g.hdf", Status::Interrupted, "n2", 3000.0, Some(3100.0)),
                rec("old.hdf", Status::Done, "n3", 10.0, Some(20.0)),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fixture, inputs, rec};
    use super::*;

    #[test]
    fn adds_up_fixture_records() {
        let s = summarize(fixture(), &RetryBudget::default(), 4600.0);
        assert_eq!(s.granules, 8);
        assert_eq!(
            s.counts,
            Counts {
                pending: 1,
                claimed: 0,
                running: 1,
                done: 3,
                failed: 2,
                interrupted: 1,
                lost: 0,
            }
        );
        assert_eq!(s.not_in_list, 1, "old.hdf is from another list");
        assert_eq!(
            s.failed_retryable, 1,
            "the crash; the oom is out of retries"
        );
        assert_eq!(s.remaining, 1 + 1 + 1 + 1);
        assert_eq!(s.first_started, Some(1000.0));
        // Running: the window ends now. 3 done in 3600 s.
        assert_eq!(s.elapsed_seconds, 3600.0);
        assert_eq!(s.done_per_hour, Some(3.0));
        assert_eq!(s.eta_seconds, Some(4.0 * 3600.0 / 3.0));
        assert_eq!(s.done_last_hour, 3);
        assert_eq!(s.lost, 1);
        assert_eq!(s.running_jobs, vec!["991"]);
        let names: Vec<&str> = s.failures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["d.hdf", "e.hdf"], "list order");
        assert!(!s.failures[0].retryable && s.failures[1].retryable);
        let n1 = &s.hosts[0];
        assert_eq!(
            (n1.host.as_str(), n1.done, n1.failed, n1.busy),
            ("n1", 2, 1, 1)
        );
        assert_eq!(n1.seconds, 600.0 + 600.0 + 100.0);
        assert_eq!(s.hosts.len(), 2);

        let yaml = serde_yaml::to_string(&s).unwrap();
        assert!(yaml.contains("kind: oom"), "{yaml}");
        let json = serde_json::to_string(&s).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["counts"]["done"], 3);
    }

    #[test]
    fn dead_holders_count_as_lost_and_bad_claims_are_shown() {
        let mut input = fixture();
        let lost = LostClaim {
            name: "f.hdf".into(),
            holder: "n1 pid 4242 (Slurm job 991)".into(),
            claimed: 4000.0,
            why: "pid 4242 is gone".into(),
        };
        input.dead.insert("f.hdf".into(), lost.clone());
        // A dead holder of a finished granule is not a lost granule.
        input.dead.insert(
            "a.hdf".into(),
            LostClaim {
                name: "a.hdf".into(),
                ..lost.clone()
            },
        );
        input.unreadable_claims.push(UnreadableClaim {
            path: "/out/pseg-state/claims/h.hdf".into(),
            granule: Some("h.hdf".into()),
            why: "empty".into(),
        });
        let s = summarize(input, &RetryBudget::default(), 4600.0);
        assert_eq!((s.counts.running, s.counts.lost, s.counts.done), (0, 1, 3));
        assert_eq!(s.lost_claims, [lost]);
        assert_eq!(s.remaining, 4, "lost granules are still to do");
        assert!(
            s.running_jobs.is_empty(),
            "a dead holder's job holds nothing"
        );
        assert_eq!(s.hosts[0].busy, 0);
        assert_eq!(s.unreadable_claims.len(), 1);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""lost":1"#), "{json}");
    }

    #[test]
    fn claims_are_judged_by_the_takeover_rule() {
        use crate::domain::ledger::Outcome;
        use crate::domain::ledger::testing::ledger;
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let dead = |n: u32| {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            Holder {
                pid,
                pid_start_time: u64::from(n),
                ..Holder::current()
            }
        };
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = Holder::read(Path::new("/proc"), sleeper.id());
        let far = Holder {
            host: "far-node".into(),
            slurm: None,
            ..dead(1)
        };
        let mut gone = l.claim("gone.hdf", &dead(2)).unwrap().unwrap();
        l.running(&mut gone).unwrap();
        let _claimed = l.claim("claimed.hdf", &dead(3)).unwrap().unwrap();
        let _live = l.claim("live.hdf", &live).unwrap().unwrap();
        let _far = l.claim("far.hdf", &far).unwrap().unwrap();
        // Finished, then died before removing its claim: its outcome stands.
        let finished = l.claim("finished.hdf", &dead(4)).unwrap().unwrap();
        let claim_file = dir.path().join("claims/finished.hdf");
        let kept = std::fs::read(&claim_file).unwrap();
        l.finish(finished, Outcome::done()).unwrap();
        std::fs::write(&claim_file, kept).unwrap();
        std::fs::write(dir.path().join("claims/bad.hdf"), b"{").unwrap();

        let records = l.scan().unwrap().records;
        let (lost, bad) = judge_claims(&l, &records).unwrap();
        let mut names: Vec<&str> = lost.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["claimed.hdf", "gone.hdf"]);
        assert!(
            lost["gone.hdf"].why.contains("is gone"),
            "{:?}",
            lost["gone.hdf"]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].granule.as_deref(), Some("bad.hdf"));
        assert!(
            bad[0].why.starts_with("not a claim pseg-step wrote"),
            "{bad:?}"
        );
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn without_a_list_records_are_all_there_is() {
        let mut input = fixture();
        input.names = None;
        let s = summarize(input, &RetryBudget::default(), 9000.0);
        assert_eq!((s.granules, s.counts.pending, s.not_in_list), (8, 0, 0));
        let empty = summarize(
            inputs(Some(vec!["a"]), vec![]),
            &RetryBudget::default(),
            0.0,
        );
        assert_eq!(
            (empty.counts.pending, empty.done_per_hour, empty.eta_seconds),
            (1, None, None)
        );
        let finished = summarize(
            inputs(
                Some(vec!["a"]),
                vec![rec("a", Status::Done, "n", 0.0, Some(60.0))],
            ),
            &RetryBudget::default(),
            1e6,
        );
        assert_eq!(
            finished.elapsed_seconds, 60.0,
            "ends at the last end when idle"
        );
        assert_eq!(finished.remaining, 0);
    }
}
