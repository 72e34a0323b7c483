//! `pseg-slurm release`: frees claims whose holder can never be proven dead (another host or
//! a container, no Slurm ids), which the takeover rule leaves in place for ever.
//!
//! A claim is released only when its holder is not provably alive by the same evidence the
//! takeover rule uses (`alive.rs`): a holder proven alive (same host, pid running with the
//! same start time; a Slurm job still active) is always kept. Releasing goes through the
//! takeover protocol (`takeovers/<nonce>` won exclusively, the claim replaced by ours), so
//! it never races a claimer; then a record still `claimed` or `running` is marked
//! `interrupted` (redone on resume, no retry budget charged) and the claim is removed.
//! This module selects, acts and describes; it prints nothing and parses no flags.

use std::path::PathBuf;

use crate::ledger::alive::Verdict;
use crate::ledger::claim::{ClaimFile, ClaimState, read_claim};
use crate::ledger::error::LedgerError;
use crate::ledger::holder::Holder;
use crate::ledger::record::Outcome;
use crate::ledger::status::duration;
use crate::ledger::{Ledger, key};
use crate::report::unix_now;

/// Which claims to consider. Empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Granule names; empty: any.
    pub granules: Vec<String>,
    /// The holder's host; `None`: any.
    pub host: Option<String>,
}

impl Filter {
    fn matches(&self, granule: &str, holder: &Holder) -> bool {
        (self.granules.is_empty() || self.granules.iter().any(|g| g == granule))
            && self.host.as_deref().is_none_or(|h| h == holder.host)
    }
}

/// What to do with one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its holder is provably dead, or cannot be proven alive; the text says which and why.
    Release(String),
    /// Its holder is provably alive (or is this process).
    Keep(String),
}

/// One claim file found.
#[derive(Debug, Clone)]
pub struct Found {
    pub granule: String,
    pub holder: Holder,
    /// When it was claimed (Unix seconds).
    pub claimed: f64,
    pub decision: Decision,
    key: String,
    claim: Box<ClaimFile>,
}

/// The claims a `release` would touch.
#[derive(Debug, Default)]
pub struct Plan {
    /// Matching claims, by granule name.
    pub found: Vec<Found>,
    /// Claim files that cannot be read (left alone: delete by hand if sure).
    pub unreadable: Vec<PathBuf>,
}

impl Plan {
    /// How many claims would be released.
    pub fn releasable(&self) -> usize {
        self.found
            .iter()
            .filter(|f| matches!(f.decision, Decision::Release(_)))
            .count()
    }
}

/// What releasing one claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// Released; `true` if its record was marked interrupted.
    Done { interrupted: bool },
    /// The claim changed (finished, taken over) since it was judged: left alone.
    Changed,
    /// Its holder is provably alive: never released.
    Kept,
}

/// Reads every claim matching `filter` and judges its holder, as seen by `me`.
pub fn plan(ledger: &Ledger, filter: &Filter, me: &Holder) -> Result<Plan, LedgerError> {
    let mut keys: Vec<String> = ledger.claimed_keys()?.into_iter().collect();
    keys.sort();
    let mut plan = Plan::default();
    for key in keys {
        let path = ledger.claim_path(&key);
        let claim = match read_claim(&path)? {
            ClaimState::Missing => continue,
            ClaimState::Unreadable => {
                if filter.granules.is_empty()
                    || filter.granules.iter().any(|g| key::encode(g) == key)
                {
                    plan.unreadable.push(path);
                }
                continue;
            }
            ClaimState::Present(c) => c,
        };
        if !filter.matches(&claim.granule, &claim.holder) {
            continue;
        }
        let decision = if claim.holder.same_process(me) {
            Decision::Keep("held by this very process".into())
        } else {
            match ledger.alive.judge(&claim.holder, me) {
                Verdict::Alive(why) => Decision::Keep(format!("alive: {why}")),
                Verdict::Dead(why) => Decision::Release(format!("provably dead: {why}")),
                Verdict::Unknown(why) => Decision::Release(format!("not provably alive: {why}")),
            }
        };
        plan.found.push(Found {
            granule: claim.granule.clone(),
            holder: claim.holder.clone(),
            claimed: claim.claimed,
            decision,
            key,
            claim,
        });
    }
    plan.found.sort_by(|a, b| a.granule.cmp(&b.granule));
    Ok(plan)
}

/// Releases one claim the plan decided to release (others are left alone: `Kept`).
pub fn release(ledger: &Ledger, found: &Found, me: &Holder) -> Result<Released, LedgerError> {
    let Decision::Release(why) = &found.decision else {
        return Ok(Released::Kept);
    };
    let why = format!(
        "released by pseg-slurm release: {} ({why})",
        found.holder.describe()
    );
    let now = unix_now();
    let ours = ClaimFile::new(&found.granule, me, Some(why.clone()));
    let dir = ledger.claims_dir();
    if !ledger.take_over(&dir, &found.key, &found.claim, &ours.bytes(), me, &why, 0)? {
        return Ok(Released::Changed);
    }
    // We hold the claim now: only we may write the record.
    let marked = match ledger.record_lenient(&found.granule) {
        Ok(Some(mut record)) if record.is_held() => {
            record.end_attempt(&Outcome::interrupted(&why), now);
            ledger.write_record(&record).map(|()| true)
        }
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    ledger.release(&found.key)?;
    Ok(Released::Done {
        interrupted: marked?,
    })
}

/// One line about a claim: `g.hdf: held by node9 pid 4242 (Slurm job 991) since
/// 2026-01-01 12:00:00 UTC (3 h 05 min ago); not provably alive: ...`.
pub fn describe(found: &Found, now: f64) -> String {
    let why = match &found.decision {
        Decision::Release(why) | Decision::Keep(why) => why,
    };
    format!(
        "{}: held by {} since {} ({} ago); {why}",
        found.granule,
        found.holder.describe(),
        crate::render::fmt::utc(found.claimed),
        duration(now - found.claimed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::record::Status;
    use crate::ledger::testing::ledger;
    use std::path::Path;

    fn foreign(host: &str) -> Holder {
        Holder {
            host: host.into(),
            pid: 4242,
            pid_start_time: 77,
            boot_id: None,
            pid_namespace: None,
            slurm: None,
            restart_count: None,
        }
    }

    #[test]
    fn unproven_holders_are_released_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let mut far = l.claim("far.hdf", &foreign("far-node")).unwrap().unwrap();
        l.running(&mut far).unwrap();
        let _other = l
            .claim("other.hdf", &foreign("other-node"))
            .unwrap()
            .unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alive = Holder::read(Path::new("/proc"), sleeper.id());
        let _live = l.claim("live.hdf", &alive).unwrap().unwrap();
        let me = Holder::current();

        let all = plan(&l, &Filter::default(), &me).unwrap();
        let names: Vec<_> = all.found.iter().map(|f| f.granule.as_str()).collect();
        assert_eq!(names, ["far.hdf", "live.hdf", "other.hdf"]);
        assert!(matches!(&all.found[1].decision, Decision::Keep(why) if why.contains("running")));
        assert_eq!(all.releasable(), 2);
        // The live holder's claim is never released, even when asked for by name.
        let by_name = Filter {
            granules: vec!["live.hdf".into()],
            host: None,
        };
        let p = plan(&l, &by_name, &me).unwrap();
        assert_eq!(release(&l, &p.found[0], &me).unwrap(), Released::Kept);
        assert!(dir.path().join("claims/live.hdf").exists());

        let by_host = Filter {
            granules: vec![],
            host: Some("far-node".into()),
        };
        let p = plan(&l, &by_host, &me).unwrap();
        assert_eq!(p.found.len(), 1);
        let line = describe(&p.found[0], unix_now());
        assert!(
            line.starts_with("far.hdf: held by far-node pid 4242 since ")
                && line.contains("not provably alive"),
            "{line}"
        );
        assert_eq!(
            release(&l, &p.found[0], &me).unwrap(),
            Released::Done { interrupted: true }
        );
        assert!(!dir.path().join("claims/far.hdf").exists());
        let r = l.record("far.hdf").unwrap().unwrap();
        assert_eq!(r.status, Status::Interrupted);
        assert!(r.charged.is_empty() && r.failures.is_empty(), "{r:?}");
        assert!(r.error.unwrap().contains("pseg-slurm release"));
        // Released: the next claimer gets it at once.
        assert!(l.claim("far.hdf", &me).unwrap().is_some());
        // A plan gone stale (the claim changed since) does nothing.
        assert_eq!(release(&l, &p.found[0], &me).unwrap(), Released::Changed);
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
