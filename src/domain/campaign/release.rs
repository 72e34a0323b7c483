//! `pseg-slurm release`: frees claims whose holder can never be proven dead (another host or
//! a container, no Slurm ids), which the takeover rule leaves in place for ever, and claim
//! files that cannot be read at all (empty, garbage, a dangling symbolic link), which block
//! their granule just as long.
//!
//! A claim is released only when its holder is not provably alive by the same evidence the
//! takeover rule uses (`alive.rs`): a holder proven alive (same host, pid running with the
//! same start time; a Slurm job still active) is always kept. Releasing goes through the
//! takeover protocol (`takeovers/<nonce>` won exclusively, the claim replaced by ours), so
//! it never races a claimer; then a record still `claimed` or `running` is marked
//! `interrupted` (redone on resume, no retry budget charged) and the claim is removed.
//! An unreadable claim names no holder to judge, and pseg-slurm never leaves one (claims
//! appear complete, by link or rename), so it is released when asked for: moved into
//! `takeovers/` (kept as evidence) only if it is still the very file judged.
//! This module selects (which claims, and why) and describes; the ledger acts
//! ([`Ledger::release_claim`], [`Ledger::release_unreadable_claim`]). It prints nothing and
//! parses no flags.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::base::time::{Style, duration};
use crate::domain::ledger::alive::Verdict;
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::{ClaimContent, FoundClaim, Ledger, key};

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
    claim: FoundClaim,
}

/// A claim file that cannot be read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub path: PathBuf,
    /// The granule, when its key tells.
    pub granule: Option<String>,
    pub why: String,
    claim: FoundClaim,
    /// Device and inode of the file judged: only that file is released.
    id: Option<(u64, u64)>,
}

impl Unreadable {
    /// `claims/KEY (granule NAME): empty`.
    pub fn describe(&self) -> String {
        match &self.granule {
            Some(g) => format!("{} (granule {g}): {}", self.path.display(), self.why),
            None => format!("{}: {}", self.path.display(), self.why),
        }
    }
}

/// The claims a `release` would touch.
#[derive(Debug, Default)]
pub struct Plan {
    /// Matching claims, by granule name.
    pub found: Vec<Found>,
    /// Matching claim files that cannot be read: by name (`--granule`), or every one
    /// (`--all-unproven` alone).
    pub unreadable: Vec<Unreadable>,
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
    let mut plan = Plan::default();
    for found in ledger.claims()? {
        let claim = match &found.content {
            ClaimContent::Unreadable(why) => {
                let named = filter.granules.iter().find(|g| key::encode(g) == found.key);
                let every = filter.granules.is_empty() && filter.host.is_none();
                if named.is_some() || every {
                    plan.unreadable.push(Unreadable {
                        granule: named.cloned().or_else(|| key::decode(&found.key)),
                        id: found
                            .path
                            .symlink_metadata()
                            .ok()
                            .map(|m| (m.dev(), m.ino())),
                        path: found.path.clone(),
                        why: why.clone(),
                        claim: found,
                    });
                }
                continue;
            }
            ClaimContent::Held(c) => c.clone(),
        };
        if !filter.matches(claim.granule(), claim.holder()) {
            continue;
        }
        let decision = if claim.holder().same_process(me) {
            Decision::Keep("held by this very process".into())
        } else {
            match ledger.liveness().judge(claim.holder(), me) {
                Verdict::Alive(why) => Decision::Keep(format!("alive: {why}")),
                Verdict::Dead(why) => Decision::Release(format!("provably dead: {why}")),
                Verdict::Unknown(why) => Decision::Release(format!("not provably alive: {why}")),
            }
        };
        plan.found.push(Found {
            granule: claim.granule().to_string(),
            holder: claim.holder().clone(),
            claimed: claim.claimed(),
            decision,
            claim: found,
        });
    }
    plan.found.sort_by(|a, b| a.granule.cmp(&b.granule));
    Ok(plan)
}

/// Releases an unreadable claim file: moves it into `takeovers/` if it is still the file
/// the plan judged, then marks its granule's record `interrupted` if a holder had it.
pub fn release_unreadable(
    ledger: &Ledger,
    bad: &Unreadable,
    me: &Holder,
) -> Result<Released, LedgerError> {
    let why = format!(
        "released by pseg-slurm release: its claim file was unreadable ({})",
        bad.why
    );
    Ok(
        match ledger.release_unreadable_claim(
            &bad.claim,
            bad.id,
            bad.granule.as_deref(),
            me,
            &why,
        )? {
            Some(interrupted) => Released::Done { interrupted },
            None => Released::Changed,
        },
    )
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
    Ok(match ledger.release_claim(&found.claim, me, &why)? {
        Some(interrupted) => Released::Done { interrupted },
        None => Released::Changed,
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
        crate::base::time::utc(found.claimed),
        duration(now - found.claimed, Style::Whole)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::time::unix_now;
    use crate::domain::ledger::record::Status;
    use crate::domain::ledger::testing::ledger;
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

    #[test]
    fn unreadable_claims_block_until_released_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let me = Holder::current();
        let claims = dir.path().join("claims");
        // A holder that got as far as running, then its claim file was emptied.
        let mut c = l.claim("empty.hdf", &foreign("far-node")).unwrap().unwrap();
        l.running(&mut c).unwrap();
        std::fs::write(claims.join("empty.hdf"), b"").unwrap();
        std::fs::write(claims.join("junk%20x.hdf"), b"\x00garbage").unwrap();
        std::os::unix::fs::symlink("/nonexistent/claim", claims.join("link.hdf")).unwrap();
        for name in ["empty.hdf", "junk x.hdf", "link.hdf"] {
            assert!(l.claim(name, &me).unwrap().is_none(), "{name} is blocked");
        }

        let by_host = Filter {
            granules: vec![],
            host: Some("far-node".into()),
        };
        assert!(plan(&l, &by_host, &me).unwrap().unreadable.is_empty());
        let every = plan(&l, &Filter::default(), &me).unwrap();
        let whys: Vec<String> = every.unreadable.iter().map(|u| u.describe()).collect();
        assert_eq!(whys.len(), 3, "{whys:?}");
        assert!(whys[0].ends_with("claims/empty.hdf (granule empty.hdf): empty"));
        assert!(whys[1].contains("(granule junk x.hdf): not a claim pseg-step wrote"));
        assert!(whys[2].ends_with("a symbolic link to /nonexistent/claim, which does not exist"));

        for (name, interrupted) in [("empty.hdf", true), ("link.hdf", false)] {
            let by_name = Filter {
                granules: vec![name.into()],
                host: None,
            };
            let p = plan(&l, &by_name, &me).unwrap();
            assert_eq!((p.found.len(), p.unreadable.len()), (0, 1));
            assert_eq!(
                release_unreadable(&l, &p.unreadable[0], &me).unwrap(),
                Released::Done { interrupted }
            );
            // Kept as evidence, and released only once.
            assert_eq!(
                release_unreadable(&l, &p.unreadable[0], &me).unwrap(),
                Released::Changed
            );
            assert!(l.claim(name, &me).unwrap().is_some(), "{name} is free");
        }
        let r = l.record("empty.hdf").unwrap().unwrap();
        assert_eq!((r.status, r.attempts), (Status::Claimed, 2));
        assert_eq!(
            r.interruptions, 1,
            "the blocked attempt was interrupted, not charged"
        );
        let evidence = crate::domain::ledger::testing::files_in(&dir.path().join("takeovers"));
        assert_eq!(
            evidence
                .iter()
                .filter(|f| f.ends_with(".unreadable-claim"))
                .count(),
            2
        );
        // A bad claim replaced by a good one since the plan is left alone.
        let p = plan(&l, &Filter::default(), &me).unwrap();
        std::fs::remove_file(claims.join("junk%20x.hdf")).unwrap();
        let _fresh = l.claim("junk x.hdf", &me).unwrap().unwrap();
        assert_eq!(
            release_unreadable(&l, &p.unreadable[0], &me).unwrap(),
            Released::Changed
        );
        let now = l.claims().unwrap();
        let junk = now.iter().find(|c| c.key == "junk%20x.hdf").unwrap();
        assert!(matches!(junk.content, ClaimContent::Held(_)));
    }
}
