//! `pseg-slurm retry`: which granules of a campaign still need a job, their list, and a
//! fresh retry budget for the failed ones.
//!
//! - failed: records with status `failed` (out of retries or not);
//! - missing: granules of the campaign's list without a `done` or `failed` record that no
//!   live process holds: never started, interrupted, or claimed by a holder that is
//!   provably dead (a live holder's granule is left out: it is being processed); and
//!   done granules whose outputs `pseg-slurm verify` found changed (`output-changed`).
//!
//! A done granule whose output was deleted is not found here until `verify` records it
//! (the records do not list outputs); the driver's resume rule redoes it anyway. Rendering the script is
//! `regen`'s part.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::granule_list::{Granule, GranuleList};
use crate::domain::ledger::claim::ClaimCheck;
use crate::domain::ledger::classify::FailureKind::OutputChanged;
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::record::{Record, Status};
use crate::domain::ledger::{Ledger, RETRY, key};

/// The granules a retry covers, in list order.
#[derive(Debug, Default)]
pub struct Selection {
    pub failed: Vec<Granule>,
    pub missing: Vec<Granule>,
    /// Left out: a live process holds them now.
    pub busy: Vec<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty() && self.missing.is_empty()
    }

    /// Failed and missing granules together, in list order.
    pub fn granules(&self) -> Vec<&Granule> {
        let mut all: Vec<&Granule> = self.failed.iter().chain(&self.missing).collect();
        all.sort_by_key(|g| g.line);
        all
    }
}

/// Picks the granules of `list` to retry.
pub fn select(
    ledger: &Ledger,
    list: &GranuleList,
    failed: bool,
    missing: bool,
    me: &Holder,
) -> Result<Selection, LedgerError> {
    let records: HashMap<String, Record> = ledger
        .scan()?
        .records
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let claimed: HashSet<String> = ledger.claimed_keys()?;
    let mut sel = Selection::default();
    for g in &list.granules {
        let name = g.name();
        let record = records.get(&name);
        match record.map(|r| r.status) {
            Some(Status::Done) => {}
            // Outputs that changed after it was done: missing, not the granule's failure.
            Some(Status::Failed) if record.and_then(|r| r.kind) == Some(OutputChanged) => {
                if missing {
                    sel.missing.push(g.clone());
                }
            }
            Some(Status::Failed) => {
                if failed {
                    sel.failed.push(g.clone());
                }
            }
            _ if !missing => {}
            _ => {
                let held = claimed.contains(&key::encode(&name))
                    && ledger.check_holder(&name, me)? == ClaimCheck::Alive;
                if held {
                    sel.busy.push(name);
                } else {
                    sel.missing.push(g.clone());
                }
            }
        }
    }
    Ok(sel)
}

/// Writes the selection as a new list in `<state>/retry/`, named `<list>-retry-N.txt` with
/// the first free N; paths are absolute, one per line.
pub fn write_list(
    ledger: &Ledger,
    campaign_list: &Path,
    sel: &Selection,
) -> Result<PathBuf, LedgerError> {
    let dir = ledger.dir().join(RETRY);
    std::fs::create_dir_all(&dir).map_err(|source| LedgerError::Create {
        path: dir.clone(),
        source,
    })?;
    let stem = campaign_list
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "list".into());
    let mut text = format!(
        "# pseg-slurm retry of {}: {} failed, {} missing granule(s)\n",
        campaign_list.display(),
        sel.failed.len(),
        sel.missing.len()
    );
    for g in sel.granules() {
        let path = std::path::absolute(&g.path).unwrap_or_else(|_| g.path.clone());
        text.push_str(&path.to_string_lossy());
        text.push('\n');
    }
    for n in 1.. {
        let path = dir.join(format!("{stem}-retry-{n}.txt"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(LedgerError::write(&path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LedgerError::Write { path, source: e }),
        }
    }
    unreachable!("some retry list number is free")
}

/// Gives the failed granules of `sel` a fresh retry budget (status back to pending). Those
/// a live process holds are left alone; returns how many were reset.
pub fn reset_failed(ledger: &Ledger, sel: &Selection, me: &Holder) -> Result<usize, LedgerError> {
    let mut reset = 0;
    for g in &sel.failed {
        if ledger.reset_for_retry(&g.name(), me)? {
            reset += 1;
        }
    }
    Ok(reset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::granule_list::parse_list;
    use crate::domain::ledger::classify::FailureKind;
    use crate::domain::ledger::record::Outcome;
    use crate::domain::ledger::testing::ledger;

    #[test]
    fn selects_failed_and_missing_and_resets_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(&dir.path().join("state"));
        let me = Holder::current();
        let finish = |name: &str, outcome: Outcome| {
            let c = l.claim(name, &me).unwrap().unwrap();
            l.finish(c, outcome).unwrap();
        };
        finish("done.hdf", Outcome::done());
        finish(
            "bad.hdf",
            Outcome::failed(FailureKind::BadInput, "not a granule"),
        );
        finish("cut.hdf", Outcome::interrupted("time limit"));
        finish("moved.hdf", Outcome::done());
        let why = || Some("moved.hdf.level2.bin missing".to_string());
        assert_eq!(
            l.mark_output_changed("moved.hdf", &me, why).unwrap(),
            crate::domain::ledger::claim::Marked::Marked
        );
        // A live process (this one) holds one; a dead one held another.
        let _held = l.claim("busy.hdf", &me).unwrap().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = Holder {
            pid: child.id(),
            pid_start_time: 1,
            ..Holder::current()
        };
        child.wait().unwrap();
        let _lost = l.claim("lost.hdf", &dead).unwrap().unwrap();
        let list = parse_list(
            "done.hdf\nbad.hdf\nnew.hdf\ncut.hdf\nbusy.hdf\nlost.hdf\nmoved.hdf\n",
            Path::new("/data"),
            Path::new("/data/l.txt"),
        )
        .unwrap();
        let names = |v: &[Granule]| v.iter().map(|g| g.name()).collect::<Vec<_>>();
        // The check comes from another process than the live holder: judge as a stranger.
        let other = Holder {
            pid: 1,
            pid_start_time: 1,
            ..Holder::current()
        };
        let sel = select(&l, &list, true, true, &other).unwrap();
        assert_eq!(names(&sel.failed), ["bad.hdf"]);
        assert_eq!(
            names(&sel.missing),
            ["new.hdf", "cut.hdf", "lost.hdf", "moved.hdf"]
        );
        assert_eq!(sel.busy, ["busy.hdf"]);
        let only_failed = select(&l, &list, true, false, &other).unwrap();
        assert!(only_failed.missing.is_empty() && only_failed.busy.is_empty());

        let path = write_list(&l, Path::new("/data/l.txt"), &sel).unwrap();
        assert!(path.ends_with("retry/l-retry-1.txt"), "{}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "/data/bad.hdf",
                "/data/new.hdf",
                "/data/cut.hdf",
                "/data/lost.hdf",
                "/data/moved.hdf"
            ]
        );
        let again = write_list(&l, Path::new("/data/l.txt"), &sel).unwrap();
        assert!(again.ends_with("retry/l-retry-2.txt"));

        assert!(
            l.pending(&["bad.hdf".to_string()]).unwrap().is_empty(),
            "out of retries"
        );
        assert_eq!(reset_failed(&l, &sel, &me).unwrap(), 1);
        let r = l.record("bad.hdf").unwrap().unwrap();
        assert_eq!(r.status, Status::Pending);
        assert_eq!(r.failures[&FailureKind::BadInput], 1, "history stays");
        assert_eq!(l.pending(&["bad.hdf".to_string()]).unwrap(), ["bad.hdf"]);
    }
}
