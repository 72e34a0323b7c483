//! The campaign ledger: one record per granule in a state folder on the shared filesystem,
//! and claims that keep two live processes off one granule — with no database server and no
//! advisory locks, only exclusive creation (`link`) and `rename`, which NFS makes atomic.
//!
//! This module is storage: it owns the state folder's layout, the records and claims, the
//! resume rule and the takeover rule, and the outputs manifests that prove a granule done
//! (`outputs.rs`). It runs no granule and decides no failure kind of a run (the driver does,
//! with [`FailureKind::from_parts`]). The campaign operations over it live in
//! `domain::campaign` and go through named storage operations — reading ([`Ledger::scan`],
//! [`Ledger::claims`], a read-only view of the claim files, [`Ledger::liveness`]) and
//! changing a granule under its claim ([`Ledger::release_claim`],
//! [`Ledger::release_unreadable_claim`], [`Ledger::reset_for_retry`],
//! [`Ledger::mark_output_changed`]), never the files themselves. Which claims to release,
//! which granules to retry and what a status means are decided there, not here.
//!
//! # Layout (default `<output dir>/pseg-state`, see [`STATE_DIR`])
//!
//! ```text
//! campaign.yaml            the list, the output folder, the gen call (campaign.rs)
//! records/<ab>/<key>.json  one record per granule, one JSON line, replaced atomically;
//!                          <ab> = 256 shards by hash, <key> = the escaped file name (key.rs)
//! claims/<key>             exists while a process holds the granule; names the holder
//! takeovers/<nonce>        one per claim taken from a dead holder, or released by
//!                          `pseg-slurm release` (who, from whom, why); an unreadable claim
//!                          it released is kept as `<nonce>.unreadable-claim`
//! retry/<list>-retry-N.txt granule lists written by `pseg-slurm retry`
//! ```
//!
//! # Rules
//!
//! - **Only the holder of a granule's claim writes its record.** A claim is made by
//!   creating `claims/<key>` exclusively (content complete before it appears); `finish`
//!   writes the final record, then removes the claim.
//! - **Resume** ([`record::needs_work`]): a granule needs work unless its record is `done`
//!   and its outputs are present with the sizes its manifest recorded (`outputs.rs`), or it
//!   is `failed` (not `output-changed`) with some kind of failure over its
//!   [`RetryBudget`]. After winning a claim the record is read again and the rule applied
//!   again, so a granule another process finished meanwhile is released, not redone.
//! - **Takeover**: a claim is taken from its holder only when the holder is provably dead
//!   (see `alive.rs`): on the same host (same boot, same pid namespace) its pid is gone, is
//!   a zombie, or belongs to a process with another start time; on another host its Slurm
//!   job has ended (`scontrol show job ID -o` shows a final state or "Invalid job id",
//!   asked with a 10 s deadline; without scontrol or an answer, never). Every claim carries
//!   a unique nonce. To take claim N over, a process must first create `takeovers/N`
//!   exclusively — one taker per dead claim wins, the others move on — then check that
//!   `claims/<key>` still holds N and replace it with its own claim by rename. The claim
//!   file never disappears during a takeover, so no fresh claimer can slip in, and a slow
//!   taker that read N long ago can neither win `takeovers/N` nor find N still there. A
//!   takeover file whose own taker died is taken over the same way. The lost attempt is
//!   charged to the granule as a `lost` failure — unless its record already holds an
//!   outcome (the holder died between writing it and removing the claim): that stands.
//! - Relies on close-to-open consistency (NFS's default; not `nocto`) and on clocks that
//!   agree to a few seconds only for throughput figures, never for correctness.
//!
//! # A driver's loop
//!
//! ```no_run
//! use pseg_slurm::domain::ledger::{FailureKind, Holder, Ledger, Outcome, Queue, STATE_DIR};
//! # fn run(name: &str) -> Result<(), (Option<i32>, Option<i32>, bool, bool, bool)> { Ok(()) }
//! # fn main() -> Result<(), pseg_slurm::domain::ledger::LedgerError> {
//! # let out = std::path::Path::new("/out");
//! # let names: Vec<String> = vec![];
//! let ledger = Ledger::open(&out.join(STATE_DIR))?
//!     .with_output_check(|name| std::path::Path::new("/out").join(name).exists());
//! let me = Holder::current();
//! let mut queue = Queue::new(ledger.pending(&names)?);
//! while let Some(mut claim) = ledger.claim_next(&mut queue, &me)? {
//!     ledger.running(&mut claim)?;
//!     let outcome = match run(claim.name()) {
//!         Ok(()) => Outcome::done(),
//!         Err((signal, exit, oom, stalled, interrupted)) => Outcome::failed(
//!             FailureKind::from_parts(signal, exit, oom, stalled, interrupted),
//!             "clavrxorb (pid 4711) was killed by signal 9 (SIGKILL) on segment 3",
//!         ),
//!     };
//!     ledger.finish(claim, outcome)?;
//! }
//! # Ok(()) }
//! ```

pub(crate) mod alive;
pub(crate) mod campaign_yaml;
pub(crate) mod claim;
pub(crate) mod classify;
pub(crate) mod error;
pub(crate) mod holder;
pub mod key;
pub(crate) mod outputs;
pub mod record;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use campaign_yaml::{Campaign, GenCall};
pub use claim::{Claim, ClaimContent, ClaimFile, FoundClaim, Marked, Queue};
pub use classify::{FailureKind, RetryBudget};
pub use error::LedgerError;
pub use holder::Holder;
pub use record::{Ending, Outcome, Record, Status};

use crate::base::atomic_file;
use crate::base::parallel::parallel_map;
use alive::Liveness;

/// The state folder's name inside the output folder.
pub const STATE_DIR: &str = "pseg-state";
const RECORDS: &str = "records";
const CLAIMS: &str = "claims";
const TAKEOVERS: &str = "takeovers";
pub(crate) const RETRY: &str = "retry";
/// Above this many names, [`Ledger::pending`] lists every record instead of opening one
/// file per name.
const SCAN_ABOVE: usize = 2000;

/// A campaign's state folder.
pub struct Ledger {
    dir: PathBuf,
    budget: RetryBudget,
    output_ok: Box<dyn Fn(&str) -> bool + Send + Sync>,
    alive: Liveness,
}

/// Every record of a state folder.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Record files that could not be read or parsed, with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Ledger {
    /// Opens the state folder `dir`, creating its layout if missing. The retry budget is
    /// [`RetryBudget::default`]; a done record is trusted to have its output until
    /// [`Ledger::with_output_check`] says otherwise.
    pub fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        for path in Ledger::layout(dir) {
            std::fs::create_dir_all(&path)
                .map_err(|source| LedgerError::Create { path, source })?;
        }
        Ok(Ledger::at(dir))
    }

    /// The folders [`Ledger::open`] creates in the state folder `dir`.
    pub fn layout(dir: &Path) -> [PathBuf; 3] {
        [RECORDS, CLAIMS, TAKEOVERS].map(|sub| dir.join(sub))
    }

    /// An existing state folder, for reading only (`status`): nothing is created, so a
    /// read-only mount will do.
    pub fn open_existing(dir: &Path) -> Result<Ledger, LedgerError> {
        if !dir.join(RECORDS).is_dir() && !dir.join(campaign_yaml::FILE).is_file() {
            return Err(LedgerError::NoState {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Ledger::at(dir))
    }

    fn at(dir: &Path) -> Ledger {
        Ledger {
            dir: dir.to_path_buf(),
            budget: RetryBudget::default(),
            output_ok: Box::new(|_| true),
            alive: Liveness::default(),
        }
    }

    /// The retry budget that [`Ledger::pending`] and the claims apply.
    #[cfg(test)]
    fn with_budget(mut self, budget: RetryBudget) -> Ledger {
        self.budget = budget;
        self
    }

    /// How to tell that a done granule's output is still there (asked for done records
    /// only, with the granule's name); a done granule without output is redone.
    pub fn with_output_check(mut self, f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Ledger {
        self.output_ok = Box::new(f);
        self
    }

    #[cfg(test)]
    fn with_liveness(mut self, alive: Liveness) -> Ledger {
        self.alive = alive;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    pub(crate) fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Judges claim holders by the takeover rule, with this ledger's evidence (`alive.rs`).
    pub fn liveness(&self) -> &Liveness {
        &self.alive
    }

    /// Where a granule's record lives.
    pub fn record_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(RECORDS)
            .join(key::shard(name))
            .join(format!("{}.json", key::encode(name)))
    }

    fn claims_dir(&self) -> PathBuf {
        self.dir.join(CLAIMS)
    }

    fn takeovers_dir(&self) -> PathBuf {
        self.dir.join(TAKEOVERS)
    }

    /// A granule's record, `None` if it has none.
    pub fn record(&self, name: &str) -> Result<Option<Record>, LedgerError> {
        let path = self.record_path(name);
        let Some(bytes) = store::read_optional(&path).map_err(LedgerError::read(&path))? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if record.name != name {
            return Err(LedgerError::Corrupt {
                path,
                message: format!("it is the record of {:?}", record.name),
            });
        }
        Ok(Some(record))
    }

    /// Like [`Ledger::record`], but an unreadable record counts as none (the granule is
    /// then simply redone; its next record replaces the bad file).
    fn record_lenient(&self, name: &str) -> Result<Option<Record>, LedgerError> {
        match self.record(name) {
            Err(LedgerError::Corrupt { .. }) => Ok(None),
            other => other,
        }
    }

    /// Writes a record (by the holder of its claim only).
    fn write_record(&self, record: &Record) -> Result<(), LedgerError> {
        let path = self.record_path(&record.name);
        let dir = path.parent().unwrap_or(&self.dir);
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut line = serde_json::to_vec(record).map_err(|e| LedgerError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        match atomic_file::write(dir, &file, &line) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(LedgerError::write(dir))?;
                atomic_file::write(dir, &file, &line).map_err(LedgerError::write(&path))
            }
            other => other.map_err(LedgerError::write(&path)),
        }
    }

    /// Every record in the folder, read in parallel.
    pub fn scan(&self) -> Result<Scan, LedgerError> {
        let root = self.dir.join(RECORDS);
        let shards: Vec<PathBuf> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(LedgerError::Read {
                    path: root,
                    source: e,
                });
            }
        };
        let listed = parallel_map(&shards, |shard| -> Result<Vec<PathBuf>, LedgerError> {
            let entries = std::fs::read_dir(shard).map_err(LedgerError::read(shard))?;
            Ok(entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    !name.starts_with('.') && name.ends_with(".json")
                })
                .map(|e| e.path())
                .collect())
        });
        let mut files = Vec::new();
        for part in listed {
            files.extend(part?);
        }
        let parsed = parallel_map(&files, |path| match store::read_small(path) {
            Ok(bytes) => serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        });
        let mut scan = Scan::default();
        for (path, result) in files.into_iter().zip(parsed) {
            match result {
                Ok(record) => scan.records.push(record),
                Err(why) => scan.unreadable.push((path, why)),
            }
        }
        Ok(scan)
    }

    /// The resume rule over `names`: those that still need work, in their order. See
    /// [`record::needs_work`]; unreadable records count as none.
    pub fn pending(&self, names: &[String]) -> Result<Vec<String>, LedgerError> {
        let records: HashMap<String, Record> = if names.len() > SCAN_ABOVE {
            self.scan()?
                .records
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect()
        } else {
            let read = parallel_map(names, |n| self.record_lenient(n));
            let mut map = HashMap::new();
            for record in read {
                if let Some(r) = record? {
                    map.insert(r.name.clone(), r);
                }
            }
            map
        };
        Ok(names
            .iter()
            .filter(|n| record::needs_work(records.get(*n), || (self.output_ok)(n), &self.budget))
            .cloned()
            .collect())
    }
}

/// The state folder named by `dir`: `dir` itself if it holds one, else `dir/pseg-state`.
pub fn find_state_dir(dir: &Path) -> Result<PathBuf, LedgerError> {
    let is_state = |d: &Path| d.join(campaign_yaml::FILE).is_file() || d.join(RECORDS).is_dir();
    if is_state(dir) {
        return Ok(dir.to_path_buf());
    }
    let inside = dir.join(STATE_DIR);
    if is_state(&inside) {
        return Ok(inside);
    }
    Err(LedgerError::NoState {
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_makes_the_layout_and_finds_it_again() {
        let out = tempfile::tempdir().unwrap();
        let state = out.path().join(STATE_DIR);
        assert!(find_state_dir(out.path()).is_err());
        assert!(Ledger::open_existing(&state).is_err());
        let ledger = Ledger::open(&state).unwrap();
        for sub in [RECORDS, CLAIMS, TAKEOVERS] {
            assert!(state.join(sub).is_dir(), "{sub}");
        }
        assert_eq!(find_state_dir(out.path()).unwrap(), state);
        assert_eq!(find_state_dir(&state).unwrap(), state);
        let path = ledger.record_path("a b.hdf");
        assert!(path.starts_with(state.join(RECORDS)));
        assert!(path.ends_with("a%20b.hdf.json"));
    }

    #[test]
    fn records_are_written_atomically_and_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let mut names = Vec::new();
        for i in 0..300 {
            let mut r = Record::new(&format!("g{i}.hdf"));
            r.status = if i % 3 == 0 {
                Status::Done
            } else {
                Status::Failed
            };
            ledger.write_record(&r).unwrap();
            ledger.write_record(&r).unwrap();
            names.push(r.name);
        }
        assert_eq!(
            ledger.record("g3.hdf").unwrap().unwrap().status,
            Status::Done
        );
        assert_eq!(ledger.record("nope").unwrap(), None);
        let bad = ledger.record_path("bad.hdf");
        std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
        std::fs::write(&bad, "{ not json").unwrap();
        let scan = ledger.scan().unwrap();
        assert_eq!(scan.records.len(), 300);
        assert_eq!(scan.unreadable.len(), 1);
        assert!(ledger.record("bad.hdf").is_err());
        // No temporary file anywhere.
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                assert!(
                    !e.file_name().to_string_lossy().starts_with('.'),
                    "{:?}",
                    e.path()
                );
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }

    #[test]
    fn pending_applies_the_resume_rule_in_list_order() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path())
            .unwrap()
            .with_output_check(|name| name != "done-no-output");
        let write = |name: &str, status: Status, charged: &[(FailureKind, u32)]| {
            let mut r = Record::new(name);
            r.status = status;
            r.charged = charged.iter().copied().collect();
            ledger.write_record(&r).unwrap();
        };
        write("done", Status::Done, &[]);
        write("done-no-output", Status::Done, &[]);
        write("interrupted", Status::Interrupted, &[]);
        write("oom-once", Status::Failed, &[(FailureKind::OutOfMemory, 1)]);
        write(
            "oom-twice",
            Status::Failed,
            &[(FailureKind::OutOfMemory, 2)],
        );
        write("bad-input", Status::Failed, &[(FailureKind::BadInput, 1)]);
        write("running", Status::Running, &[]);
        let corrupt = ledger.record_path("corrupt");
        std::fs::create_dir_all(corrupt.parent().unwrap()).unwrap();
        std::fs::write(&corrupt, "x").unwrap();
        let names: Vec<String> = [
            "never",
            "done",
            "done-no-output",
            "interrupted",
            "oom-once",
            "oom-twice",
            "bad-input",
            "running",
            "corrupt",
        ]
        .map(String::from)
        .to_vec();
        let want = [
            "never",
            "done-no-output",
            "interrupted",
            "oom-once",
            "running",
            "corrupt",
        ];
        assert_eq!(ledger.pending(&names).unwrap(), want);
        // The same answer through the scan used for long lists.
        let mut long = names.clone();
        long.extend((0..SCAN_ABOVE).map(|i| format!("extra{i}")));
        let got = ledger.pending(&long).unwrap();
        assert_eq!(&got[..want.len()], want);
        assert_eq!(got.len(), want.len() + SCAN_ABOVE);
        let generous = Ledger::open(dir.path()).unwrap().with_budget(RetryBudget {
            oom: 5,
            bad_input: 1,
            ..RetryBudget::default()
        });
        assert!(
            generous
                .pending(&names)
                .unwrap()
                .contains(&"oom-twice".to_string())
        );
        assert!(
            generous
                .pending(&names)
                .unwrap()
                .contains(&"bad-input".to_string())
        );
    }
}
