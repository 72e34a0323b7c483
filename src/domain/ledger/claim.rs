//! Claiming granules: exclusive claim files, takeover from dead holders, the record writes
//! of one attempt (claimed, running, finished), and the few changes other commands make
//! under a claim (`retry --failed`, `verify`, `release`). The rules are in the module
//! comment of `ledger`; this file is their implementation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::atomic_file;
use crate::base::time::unix_now;
use crate::domain::ledger::alive::Verdict;
use crate::domain::ledger::classify::FailureKind;
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::record::{self, Outcome, Record, Status};
use crate::domain::ledger::{Ledger, key, store};

/// How often one claim looks again after its view went stale (a claim vanished or was
/// replaced under it) before it counts the granule as held.
const ROUNDS: usize = 4;
/// How deep a takeover goes: taking over a takeover whose taker died, and so on.
const MAX_DEPTH: usize = 2;

/// What a claim file (and a takeover file) holds. Read-only outside the ledger: found by
/// [`Ledger::claims`], given back to [`Ledger::release_claim`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimFile {
    /// Unique to this claim: what a takeover names.
    nonce: String,
    granule: String,
    holder: Holder,
    claimed: f64,
    /// Takeover files: the nonce of the claim taken over, its holder, and the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaces: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Holder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

impl ClaimFile {
    /// The granule claimed.
    pub fn granule(&self) -> &str {
        &self.granule
    }

    /// The process that made the claim.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// When it was claimed (Unix seconds).
    pub fn claimed(&self) -> f64 {
        self.claimed
    }

    /// A fresh claim of `granule` by `me`, made now.
    fn new(granule: &str, me: &Holder, why: Option<String>) -> ClaimFile {
        ClaimFile {
            nonce: me.nonce(),
            granule: granule.to_string(),
            holder: me.clone(),
            claimed: unix_now(),
            replaces: None,
            previous: None,
            why,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

enum ClaimState {
    Missing,
    /// Not a claim file we can read (the text says why): nobody can prove its holder dead,
    /// so it blocks its granule until `pseg-slurm release` removes it. pseg-slurm never
    /// leaves one (claims appear complete, by link or rename): it was damaged or made by hand.
    Unreadable(String),
    Present(Box<ClaimFile>),
}

/// One file in `claims/`, as [`Ledger::claims`] found it.
#[derive(Debug, Clone)]
pub struct FoundClaim {
    /// The file's name: the escaped granule name (`key.rs`).
    pub key: String,
    pub path: PathBuf,
    pub content: ClaimContent,
}

/// What a claim file found holds.
#[derive(Debug, Clone)]
pub enum ClaimContent {
    /// Not a claim file we can read (the text says why): nobody can prove its holder dead,
    /// so it blocks its granule until `pseg-slurm release` removes it.
    Unreadable(String),
    Held(Box<ClaimFile>),
}

/// How a claim file became ours.
enum Acquired {
    Fresh,
    TakenOver { from: Box<Holder>, why: String },
}

/// What trying one granule came to.
enum Attempt {
    Acquired(Box<Claim>),
    /// Needs no work (done, or out of retries): released again.
    Settled,
    /// A live (or not provably dead) process holds it.
    Held,
}

/// Proof that this process holds a granule. Give it back with [`Ledger::finish`]; dropping
/// it leaves the claim in place, as a crash would, for a takeover to resolve.
#[derive(Debug)]
#[must_use = "a claim not finished stays held until its holder is proven dead"]
pub struct Claim {
    name: String,
    key: String,
    nonce: String,
    record: Record,
    /// Only the tests ask whom a claim was taken from; the record says it for users.
    #[cfg(test)]
    taken_over_from: Option<Holder>,
}

impl Claim {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This attempt's number, from 1.
    #[cfg(test)]
    pub(crate) fn attempt(&self) -> u32 {
        self.record.attempts
    }

    /// The dead holder this claim was taken from, if it was.
    #[cfg(test)]
    pub(crate) fn taken_over_from(&self) -> Option<&Holder> {
        self.taken_over_from.as_ref()
    }

    /// The record as this attempt last wrote it.
    #[cfg(test)]
    pub(crate) fn record(&self) -> &Record {
        &self.record
    }
}

/// Candidates for [`Ledger::claim_next`], in order, with what is left to try.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    names: Vec<String>,
    next: usize,
    waiting: Vec<String>,
}

impl Queue {
    /// Usually the result of [`Ledger::pending`].
    pub fn new(names: Vec<String>) -> Queue {
        Queue {
            names,
            next: 0,
            waiting: Vec::new(),
        }
    }

    /// Granules another live process held when last tried. `claim_next` tries them again
    /// on every call, so one whose holder died is taken over.
    pub fn waiting(&self) -> &[String] {
        &self.waiting
    }

    /// Nothing left: every candidate was claimed by us or settled.
    pub fn is_done(&self) -> bool {
        self.next >= self.names.len() && self.waiting.is_empty()
    }
}

/// What [`Ledger::mark_output_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// Recorded as `failed` (`output-changed`).
    Marked,
    /// Its outputs match after all (redone meanwhile): left `done`.
    Fine,
    /// No longer `done` (being redone, or reset): left alone.
    NotDone,
    /// Another process holds it now: left alone.
    Held,
}

/// What [`Ledger::check_holder`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimCheck {
    /// Nobody holds the granule.
    Free,
    /// Its holder is provably dead.
    Dead,
    /// Held by a live process, or one not provably dead.
    Alive,
}

impl Ledger {
    /// Claims one specific granule (static mapping). `None` if it needs no work (done by
    /// anyone, or out of retries) or another live process holds it.
    pub fn claim(&self, name: &str, me: &Holder) -> Result<Option<Claim>, LedgerError> {
        match self.attempt(name, me)? {
            Attempt::Acquired(claim) => Ok(Some(*claim)),
            Attempt::Settled | Attempt::Held => Ok(None),
        }
    }

    /// Dynamic claiming: the first granule of `queue` that nobody alive holds and that still
    /// needs work, taking over claims of dead holders. Each candidate is tried once; those
    /// held by live processes are kept in [`Queue::waiting`] and tried again on each later
    /// call. `None`: nothing can be claimed now — if `queue.waiting()` is not empty, others
    /// still hold granules, and a later call takes over those whose holder died.
    pub fn claim_next(&self, queue: &mut Queue, me: &Holder) -> Result<Option<Claim>, LedgerError> {
        while queue.next < queue.names.len() {
            let name = queue.names[queue.next].clone();
            queue.next += 1;
            match self.attempt(&name, me) {
                Ok(Attempt::Acquired(claim)) => return Ok(Some(*claim)),
                Ok(Attempt::Settled) => {}
                Ok(Attempt::Held) => queue.waiting.push(name),
                Err(e) => {
                    queue.waiting.push(name);
                    return Err(e);
                }
            }
        }
        let mut waiting = std::mem::take(&mut queue.waiting).into_iter();
        while let Some(name) = waiting.next() {
            match self.attempt(&name, me) {
                Ok(Attempt::Acquired(claim)) => {
                    queue.waiting.extend(waiting);
                    return Ok(Some(*claim));
                }
                Ok(Attempt::Settled) => {}
                Ok(Attempt::Held) => queue.waiting.push(name),
                Err(e) => {
                    queue.waiting.push(name);
                    queue.waiting.extend(waiting);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// clavrxorb starts: the record says `running`, with the start time.
    pub fn running(&self, claim: &mut Claim) -> Result<(), LedgerError> {
        self.check_held(claim)?;
        claim.record.mark_running(unix_now());
        self.write_record(&claim.record)
    }

    /// The attempt ended: writes the record, then releases the claim.
    pub fn finish(&self, claim: Claim, outcome: Outcome) -> Result<(), LedgerError> {
        self.check_held(&claim)?;
        let mut record = claim.record.clone();
        record.end_attempt(&outcome, unix_now());
        self.write_record(&record)?;
        self.release(&claim.key)
    }

    /// Who holds `name`, judged by the takeover rule, without touching anything.
    pub fn check_holder(&self, name: &str, me: &Holder) -> Result<ClaimCheck, LedgerError> {
        Ok(match read_claim(&self.claim_path(&key::encode(name)))? {
            ClaimState::Missing => ClaimCheck::Free,
            ClaimState::Unreadable(_) => ClaimCheck::Alive,
            ClaimState::Present(c) if c.holder.same_process(me) => ClaimCheck::Alive,
            ClaimState::Present(c) => match self.alive.judge(&c.holder, me) {
                Verdict::Dead(_) => ClaimCheck::Dead,
                Verdict::Alive(_) | Verdict::Unknown(_) => ClaimCheck::Alive,
            },
        })
    }

    /// The keys of every claim file now.
    pub fn claimed_keys(&self) -> Result<std::collections::HashSet<String>, LedgerError> {
        let dir = self.claims_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => {
                return Err(LedgerError::Read {
                    path: dir,
                    source: e,
                });
            }
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect())
    }

    /// Every claim file now, sorted by key, with what it holds; one that cannot be read at
    /// all (a folder, no permission) counts as unreadable, with why.
    pub fn claims(&self) -> Result<Vec<FoundClaim>, LedgerError> {
        let mut keys: Vec<String> = self.claimed_keys()?.into_iter().collect();
        keys.sort();
        let mut claims = Vec::with_capacity(keys.len());
        for key in keys {
            let path = self.claim_path(&key);
            let content = match read_claim(&path) {
                Ok(ClaimState::Missing) => continue,
                Ok(ClaimState::Unreadable(why)) => ClaimContent::Unreadable(why),
                Ok(ClaimState::Present(c)) => ClaimContent::Held(c),
                Err(LedgerError::Read { source, .. }) => {
                    ClaimContent::Unreadable(source.to_string())
                }
                Err(e) => return Err(e),
            };
            claims.push(FoundClaim { key, path, content });
        }
        Ok(claims)
    }

    /// Of `names`, those whose claim file cannot be read (empty, garbage, a dangling link):
    /// (name, claim path, why). Such a claim names no holder, so nothing ever takes it over.
    pub fn unreadable_claims(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, std::path::PathBuf, String)>, LedgerError> {
        let mut found = Vec::new();
        for name in names {
            let path = self.claim_path(&key::encode(name));
            let why = match read_claim(&path) {
                Ok(ClaimState::Unreadable(why)) => why,
                Err(LedgerError::Read { source, .. }) => source.to_string(),
                Ok(_) => continue,
                Err(e) => return Err(e),
            };
            found.push((name.clone(), path, why));
        }
        Ok(found)
    }

    /// `retry --failed`: a failed granule goes back to `pending` with a fresh retry budget,
    /// under its claim like every record write. False if it is held or not failed.
    pub fn reset_for_retry(&self, name: &str, me: &Holder) -> Result<bool, LedgerError> {
        let key = key::encode(name);
        let ours = ClaimFile::new(name, me, Some("pseg-slurm retry --failed".into()));
        if self.acquire(&key, &ours, me)?.is_none() {
            return Ok(false);
        }
        let result = match self.record_lenient(name) {
            Ok(Some(mut record)) if record.status == Status::Failed => {
                record.reset_for_retry();
                self.write_record(&record).map(|()| true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        self.release(&key)?;
        result
    }

    /// `pseg-slurm verify`: a done granule whose outputs changed becomes `failed`
    /// (`output-changed`), so the next run redoes it. Under its claim like every record
    /// write; `problems` is asked again while the claim is held (a granule redone since it
    /// was checked is fine now) and says what changed, or `None`.
    pub fn mark_output_changed(
        &self,
        name: &str,
        me: &Holder,
        problems: impl FnOnce() -> Option<String>,
    ) -> Result<Marked, LedgerError> {
        let key = key::encode(name);
        let ours = ClaimFile::new(name, me, Some("pseg-slurm verify".into()));
        if self.acquire(&key, &ours, me)?.is_none() {
            return Ok(Marked::Held);
        }
        let result = match self.record_lenient(name) {
            Ok(Some(mut record)) if record.status == Status::Done => match problems() {
                Some(why) => {
                    record.mark_output_changed(&why);
                    self.write_record(&record).map(|()| Marked::Marked)
                }
                None => Ok(Marked::Fine),
            },
            Ok(_) => Ok(Marked::NotDone),
            Err(e) => Err(e),
        };
        self.release(&key)?;
        result
    }

    /// `pseg-slurm release`: takes `found`'s claim (whose holder the caller judged
    /// releasable) over through the takeover protocol, so it never races a claimer; marks a
    /// record still `claimed` or `running` interrupted (`why`); removes the claim.
    /// `Ok(None)`: the claim changed since it was read (finished, taken over): left alone.
    /// `Ok(Some(interrupted))`: released, and whether the record was marked.
    pub fn release_claim(
        &self,
        found: &FoundClaim,
        me: &Holder,
        why: &str,
    ) -> Result<Option<bool>, LedgerError> {
        let ClaimContent::Held(claim) = &found.content else {
            return Ok(None);
        };
        let now = unix_now();
        let ours = ClaimFile::new(&claim.granule, me, Some(why.to_string()));
        let dir = self.claims_dir();
        if !self.take_over(&dir, &found.key, claim, &ours.bytes(), me, why, 0)? {
            return Ok(None);
        }
        // We hold the claim now: only we may write the record.
        self.interrupt_held(&claim.granule, &found.key, why, now)
            .map(Some)
    }

    /// `pseg-slurm release` of an unreadable claim file: moves it into `takeovers/` (kept as
    /// evidence) only if it is still the very file found (same device and inode `id`), then
    /// marks its granule's record interrupted if a holder had it (`why`).
    /// `Ok(None)`: the file changed since it was read: left alone.
    /// `Ok(Some(interrupted))`: released, and whether the record was marked.
    pub fn release_unreadable_claim(
        &self,
        found: &FoundClaim,
        id: Option<(u64, u64)>,
        granule: Option<&str>,
        me: &Holder,
        why: &str,
    ) -> Result<Option<bool>, LedgerError> {
        use std::os::unix::fs::MetadataExt;
        let path = &found.path;
        let id_of = |p: &Path| p.symlink_metadata().ok().map(|m| (m.dev(), m.ino()));
        let still = matches!(read_claim(path)?, ClaimState::Unreadable(_));
        if !still || id.is_none() || id_of(path) != id {
            return Ok(None);
        }
        let aside = self
            .takeovers_dir()
            .join(format!("{}.unreadable-claim", key::encode(&me.nonce())));
        match std::fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LedgerError::Write {
                    path: path.clone(),
                    source,
                });
            }
        }
        if id_of(&aside) != id {
            // Replaced between the check and the move (another release, then a fresh claim):
            // put that claim back where its holder expects it.
            std::fs::hard_link(&aside, path).map_err(LedgerError::write(path))?;
            store::remove_optional(&aside).map_err(LedgerError::write(&aside))?;
            return Ok(None);
        }
        let Some(granule) = granule else {
            return Ok(Some(false));
        };
        // A record left `claimed` or `running` under the bad claim: only its claim's holder
        // may write it, so claim it (fresh) first.
        let ours = ClaimFile::new(granule, me, Some(why.to_string()));
        if self.acquire(&found.key, &ours, me)?.is_none() {
            return Ok(Some(false));
        }
        self.interrupt_held(granule, &found.key, why, unix_now())
            .map(Some)
    }

    /// Under our claim on `key`: marks a record still `claimed` or `running` interrupted
    /// (redone on resume, no retry charged), then removes the claim. True if it was marked.
    fn interrupt_held(
        &self,
        granule: &str,
        key: &str,
        why: &str,
        now: f64,
    ) -> Result<bool, LedgerError> {
        let marked = match self.record_lenient(granule) {
            Ok(Some(mut record)) if record.is_held() => {
                record.end_attempt(&Outcome::interrupted(why), now);
                self.write_record(&record).map(|()| true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        self.release(key)?;
        marked
    }

    fn claim_path(&self, key: &str) -> PathBuf {
        self.claims_dir().join(key)
    }

    fn release(&self, key: &str) -> Result<(), LedgerError> {
        let path = self.claim_path(key);
        store::remove_optional(&path).map_err(LedgerError::write(&path))
    }

    /// Errors unless `claim` is still the granule's claim file.
    fn check_held(&self, claim: &Claim) -> Result<(), LedgerError> {
        let path = self.claim_path(&claim.key);
        let now = match read_claim(&path)? {
            ClaimState::Present(c) if c.nonce == claim.nonce => return Ok(()),
            ClaimState::Present(c) => format!("it is now held by {}", c.holder.describe()),
            ClaimState::Missing => "it is gone".to_string(),
            ClaimState::Unreadable(why) => {
                format!("it was replaced by something unreadable: {why}")
            }
        };
        Err(LedgerError::ClaimLost {
            name: claim.name.clone(),
            path,
            now,
        })
    }

    /// Claims `name` if it can, then applies the resume rule to its current record.
    fn attempt(&self, name: &str, me: &Holder) -> Result<Attempt, LedgerError> {
        let key = key::encode(name);
        let ours = ClaimFile::new(name, me, None);
        let Some(acquired) = self.acquire(&key, &ours, me)? else {
            return Ok(Attempt::Held);
        };
        match self.settle(name, &key, ours, acquired, me) {
            Ok(attempt) => Ok(attempt),
            Err(e) => {
                // Give the granule back rather than leave it held by a live process.
                let _ = self.release(&key);
                Err(e)
            }
        }
    }

    /// We hold `key`: start an attempt, or release it if the granule needs no work.
    fn settle(
        &self,
        name: &str,
        key: &str,
        ours: ClaimFile,
        acquired: Acquired,
        me: &Holder,
    ) -> Result<Attempt, LedgerError> {
        let now = unix_now();
        let mut record = self
            .record_lenient(name)?
            .unwrap_or_else(|| Record::new(name));
        #[cfg_attr(not(test), allow(unused_variables))]
        let (lost, taken_over_from) = match acquired {
            // The dead holder wrote its outcome and died before releasing the claim: that
            // outcome stands; only the stale claim is replaced.
            Acquired::TakenOver { from, .. } if !record.is_held() => (None, Some(*from)),
            Acquired::TakenOver { from, why } => (
                Some(format!(
                    "{} stopped without an outcome: {why}",
                    from.describe()
                )),
                Some(*from),
            ),
            Acquired::Fresh if record.is_held() => (
                Some(format!(
                    "{} stopped without an outcome (its claim was removed)",
                    record.host.as_deref().unwrap_or("an unknown host")
                )),
                None,
            ),
            Acquired::Fresh => (None, None),
        };
        if let Some(why) = &lost {
            // The lost attempt failed; the resume rule below decides whether to try again.
            record.charge(FailureKind::Lost);
            record.status = Status::Failed;
            record.kind = Some(FailureKind::Lost);
            record.error = Some(record::one_line(why));
            record.ended = Some(now);
        }
        if !record::needs_work(Some(&record), || (self.output_ok)(name), &self.budget) {
            if lost.is_some() {
                self.write_record(&record)?;
            }
            self.release(key)?;
            return Ok(Attempt::Settled);
        }
        record.start_attempt(me, now);
        self.write_record(&record)?;
        Ok(Attempt::Acquired(Box::new(Claim {
            name: name.to_string(),
            key: key.to_string(),
            nonce: ours.nonce,
            record,
            #[cfg(test)]
            taken_over_from,
        })))
    }

    /// Makes `claims/<key>` ours: created fresh, or taken from a provably dead holder.
    /// `None`: held by someone alive (or not provably dead).
    fn acquire(
        &self,
        key: &str,
        ours: &ClaimFile,
        me: &Holder,
    ) -> Result<Option<Acquired>, LedgerError> {
        let dir = self.claims_dir();
        let path = dir.join(key);
        let bytes = ours.bytes();
        for _ in 0..ROUNDS {
            if store::create_exclusive(&dir, key, &bytes).map_err(LedgerError::write(&path))? {
                return Ok(Some(Acquired::Fresh));
            }
            let current = match read_claim(&path)? {
                ClaimState::Missing => continue,
                ClaimState::Unreadable(_) => return Ok(None),
                ClaimState::Present(c) => c,
            };
            if current.holder.same_process(me) {
                return Ok(None);
            }
            let Verdict::Dead(why) = self.alive.judge(&current.holder, me) else {
                return Ok(None);
            };
            if self.take_over(&dir, key, &current, &bytes, me, &why, 0)? {
                return Ok(Some(Acquired::TakenOver {
                    from: Box::new(current.holder),
                    why,
                }));
            }
        }
        Ok(None)
    }

    /// Replaces `dir/name`, which held `current` (whose holder is dead), with `ours` — if
    /// this process wins `takeovers/<current.nonce>` and `dir/name` still holds `current`.
    #[allow(clippy::too_many_arguments)]
    fn take_over(
        &self,
        dir: &std::path::Path,
        name: &str,
        current: &ClaimFile,
        ours: &[u8],
        me: &Holder,
        why: &str,
        depth: usize,
    ) -> Result<bool, LedgerError> {
        let locks = self.takeovers_dir();
        let lock_name = key::encode(&current.nonce);
        let lock_path = locks.join(&lock_name);
        let lock = ClaimFile {
            nonce: me.nonce(),
            granule: current.granule.clone(),
            holder: me.clone(),
            claimed: unix_now(),
            replaces: Some(current.nonce.clone()),
            previous: Some(current.holder.clone()),
            why: Some(why.to_string()),
        }
        .bytes();
        let won = store::create_exclusive(&locks, &lock_name, &lock)
            .map_err(LedgerError::write(&lock_path))?;
        if !won {
            // Another taker got there first. If it died before finishing, take its
            // takeover file over the same way; otherwise it will hold the granule.
            if depth >= MAX_DEPTH {
                return Ok(false);
            }
            let ClaimState::Present(stale) = read_claim(&lock_path)? else {
                return Ok(false);
            };
            if stale.holder.same_process(me) {
                return Ok(false);
            }
            let Verdict::Dead(why) = self.alive.judge(&stale.holder, me) else {
                return Ok(false);
            };
            if !self.take_over(&locks, &lock_name, &stale, &lock, me, &why, depth + 1)? {
                return Ok(false);
            }
        }
        // We hold the right to replace `current`; nobody else can change `dir/name` while
        // it holds `current`, whose holder is dead.
        let target = dir.join(name);
        match read_claim(&target)? {
            ClaimState::Present(c) if c.nonce == current.nonce => {
                atomic_file::write(dir, name, ours).map_err(LedgerError::write(&target))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn read_claim(path: &Path) -> Result<ClaimState, LedgerError> {
    let Some(bytes) = store::read_optional(path).map_err(LedgerError::read(path))? else {
        // A dangling symbolic link reads as missing, yet takes the name: no claim can be
        // created there.
        return Ok(match std::fs::read_link(path) {
            Ok(target) => ClaimState::Unreadable(format!(
                "a symbolic link to {}, which does not exist",
                target.display()
            )),
            Err(_) => ClaimState::Missing,
        });
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ClaimState::Unreadable("empty".into()));
    }
    Ok(match serde_json::from_slice(&bytes) {
        Ok(c) => ClaimState::Present(Box::new(c)),
        Err(e) => ClaimState::Unreadable(format!("not a claim pseg-step wrote ({e})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::identity::SlurmIds;
    use crate::domain::ledger::alive::Liveness;
    use crate::domain::ledger::record::Ending;
    use crate::domain::ledger::testing::{files_in, ledger};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A holder on this host whose process has exited (a reaped child's pid).
    fn dead_here() -> Holder {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        Holder {
            pid,
            pid_start_time: 1,
            ..Holder::current()
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_attempt_from_claim_to_done() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let me = Holder::current();
        let mut c = l.claim("a.hdf", &me).unwrap().unwrap();
        assert_eq!((c.name(), c.attempt()), ("a.hdf", 1));
        assert_eq!(l.record("a.hdf").unwrap().unwrap().status, Status::Claimed);
        assert!(
            l.claim("a.hdf", &me).unwrap().is_none(),
            "held by us already"
        );
        l.running(&mut c).unwrap();
        let r = l.record("a.hdf").unwrap().unwrap();
        assert_eq!(r.status, Status::Running);
        assert_eq!(r.pid, Some(std::process::id()));
        l.finish(
            c,
            Outcome::done().with_report("/o/pseg-reports/a.hdf.pseg.yaml".into()),
        )
        .unwrap();
        let r = l.record("a.hdf").unwrap().unwrap();
        assert_eq!((r.status, r.attempts), (Status::Done, 1));
        assert!(r.started.unwrap() <= r.ended.unwrap());
        assert!(files_in(&dir.path().join("claims")).is_empty());
        assert!(
            l.claim("a.hdf", &me).unwrap().is_none(),
            "done: nothing to do"
        );
        assert!(
            files_in(&dir.path().join("claims")).is_empty(),
            "released again"
        );
    }

    #[test]
    fn failures_are_retried_within_the_budget_only() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let me = Holder::current();
        for attempt in 1..=2 {
            let c = l.claim("big.hdf", &me).unwrap().expect("retryable");
            assert_eq!(c.attempt(), attempt);
            l.finish(
                c,
                Outcome::failed(FailureKind::OutOfMemory, "oom").with_exit_status(137),
            )
            .unwrap();
        }
        assert!(
            l.claim("big.hdf", &me).unwrap().is_none(),
            "oom budget is 1 retry"
        );
        let r = l.record("big.hdf").unwrap().unwrap();
        assert_eq!(r.failures[&FailureKind::OutOfMemory], 2);
        assert_eq!(
            (r.status, r.kind, r.exit_status),
            (Status::Failed, Some(FailureKind::OutOfMemory), Some(137))
        );
        // Interruptions never use the budget.
        for _ in 0..5 {
            let c = l.claim("slow.hdf", &me).unwrap().unwrap();
            l.finish(
                c,
                Outcome {
                    ending: Ending::Failed(FailureKind::TimeLimit),
                    ..Outcome::interrupted("SIGUSR1")
                },
            )
            .unwrap();
        }
        assert_eq!(l.record("slow.hdf").unwrap().unwrap().interruptions, 5);
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let dead = dead_here();
        let stale = l.claim("g.hdf", &dead).unwrap().unwrap();
        drop(stale); // The holder "crashed".
        let me = Holder::current();
        let mut c = l.claim("g.hdf", &me).unwrap().expect("taken over");
        assert_eq!(c.taken_over_from().unwrap().pid, dead.pid);
        assert_eq!(c.attempt(), 2);
        assert_eq!(c.record().failures[&FailureKind::Lost], 1);
        assert_eq!(files_in(&dir.path().join("takeovers")).len(), 1);
        l.running(&mut c).unwrap();
        l.finish(c, Outcome::done()).unwrap();
        assert_eq!(l.record("g.hdf").unwrap().unwrap().status, Status::Done);
    }

    /// A holder that wrote its outcome with `finish` and died before removing its claim:
    /// the claim file is put back after `finish` removed it.
    fn finished_but_not_released(l: &Ledger, dir: &Path, name: &str, outcome: Outcome) {
        let c = l.claim(name, &dead_here()).unwrap().unwrap();
        let claim = dir.join("claims").join(key::encode(name));
        let bytes = std::fs::read(&claim).unwrap();
        l.finish(c, outcome).unwrap();
        std::fs::write(&claim, bytes).unwrap();
    }

    #[test]
    fn a_dead_holders_written_outcome_is_not_charged_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let me = Holder::current();
        // Failed within its budget: retried, the real failure kept, nothing lost.
        finished_but_not_released(
            &l,
            dir.path(),
            "oom.hdf",
            Outcome::failed(FailureKind::OutOfMemory, "oom").with_exit_status(137),
        );
        let c = l.claim("oom.hdf", &me).unwrap().expect("taken over");
        assert!(c.taken_over_from().is_some());
        let r = c.record();
        assert_eq!(r.failures.get(&FailureKind::Lost), None, "{r:?}");
        assert_eq!(r.charged[&FailureKind::OutOfMemory], 1);
        l.finish(c, Outcome::done()).unwrap();
        // Failed over its budget: stays failed as it was, and the stale claim is gone.
        finished_but_not_released(
            &l,
            dir.path(),
            "bad.hdf",
            Outcome::failed(FailureKind::BadInput, "not a granule"),
        );
        assert!(l.claim("bad.hdf", &me).unwrap().is_none());
        let r = l.record("bad.hdf").unwrap().unwrap();
        assert_eq!(
            (r.status, r.kind, r.error.as_deref()),
            (
                Status::Failed,
                Some(FailureKind::BadInput),
                Some("not a granule")
            )
        );
        assert_eq!(r.failures.get(&FailureKind::Lost), None);
        // Interrupted: redone, never charged.
        finished_but_not_released(&l, dir.path(), "cut.hdf", Outcome::interrupted("SIGTERM"));
        let c = l.claim("cut.hdf", &me).unwrap().expect("taken over");
        assert!(c.record().failures.is_empty(), "{:?}", c.record());
        assert_eq!(c.record().interruptions, 1);
        l.finish(c, Outcome::done()).unwrap();
        assert!(files_in(&dir.path().join("claims")).is_empty());
    }

    #[test]
    fn a_live_holder_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alive = Holder::read(Path::new("/proc"), sleeper.id());
        let _held = l.claim("g.hdf", &alive).unwrap().unwrap();
        let me = Holder::current();
        let mut q = Queue::new(names(&["g.hdf", "h.hdf"]));
        let c = l.claim_next(&mut q, &me).unwrap().unwrap();
        assert_eq!(c.name(), "h.hdf");
        assert_eq!(q.waiting(), ["g.hdf"]);
        l.finish(c, Outcome::done()).unwrap();
        assert!(l.claim_next(&mut q, &me).unwrap().is_none());
        assert_eq!(q.waiting(), ["g.hdf"]);
        assert!(!q.is_done());
        // The holder dies: the next call takes it over.
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let c = l
            .claim_next(&mut q, &me)
            .unwrap()
            .expect("taken over after death");
        assert_eq!(c.name(), "g.hdf");
        l.finish(c, Outcome::done()).unwrap();
        assert!(l.claim_next(&mut q, &me).unwrap().is_none());
        assert!(q.is_done());
    }

    #[test]
    fn lost_holders_use_up_the_lost_budget() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        for _ in 0..3 {
            let _ = l.claim("poison.hdf", &dead_here()).unwrap().unwrap();
        }
        // Three holders died on it: over the budget of 2, it is failed, not claimed again.
        assert!(l.claim("poison.hdf", &Holder::current()).unwrap().is_none());
        let r = l.record("poison.hdf").unwrap().unwrap();
        assert_eq!(
            (r.status, r.kind),
            (Status::Failed, Some(FailureKind::Lost))
        );
        assert_eq!(r.failures[&FailureKind::Lost], 3);
        assert!(r.error.unwrap().contains("stopped without an outcome"));
        assert!(files_in(&dir.path().join("claims")).is_empty());
    }

    #[test]
    fn a_claim_taken_away_cannot_be_finished() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let me = Holder::current();
        let c = l.claim("g.hdf", &me).unwrap().unwrap();
        std::fs::remove_file(dir.path().join("claims/g.hdf")).unwrap();
        let other = l.claim("g.hdf", &dead_here()).unwrap().unwrap();
        let e = l.finish(c, Outcome::done()).unwrap_err();
        assert!(matches!(e, LedgerError::ClaimLost { .. }), "{e}");
        assert!(e.to_string().contains("now held by"), "{e}");
        assert_eq!(other.attempt(), 2);
    }

    fn fake_scontrol(dir: &Path, state: &str) -> PathBuf {
        let path = dir.join("scontrol");
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"JobId=$3 JobState={state} Reason=None\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn other_hosts_claims_are_taken_over_only_when_their_job_ended() {
        let other = Holder {
            host: "elsewhere-node".into(),
            pid: 1,
            pid_start_time: 1,
            boot_id: None,
            pid_namespace: None,
            slurm: Some(SlurmIds {
                job_id: Some("4711".into()),
                ..SlurmIds::default()
            }),
            restart_count: None,
        };
        let me = Holder::current();
        for (state, taken) in [("RUNNING", false), ("COMPLETED", true), ("TIMEOUT", true)] {
            let dir = tempfile::tempdir().unwrap();
            let bin = tempfile::tempdir().unwrap();
            let scontrol = fake_scontrol(bin.path(), state);
            // A script written just now may be "text file busy" for a moment.
            let mut got = None;
            for _ in 0..50 {
                let l = Ledger::open(dir.path())
                    .unwrap()
                    .with_liveness(Liveness::new(
                        Path::new("/proc"),
                        Some(Some(scontrol.clone())),
                    ));
                if !dir.path().join("claims/g.hdf").exists() {
                    let _ = l.claim("g.hdf", &other).unwrap().unwrap();
                }
                got = l.claim("g.hdf", &me).unwrap();
                if got.is_some() || state == "RUNNING" {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(got.is_some(), taken, "{state}");
        }
        // No scontrol: a claim from another host stays.
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let _ = l.claim("g.hdf", &other).unwrap().unwrap();
        assert!(l.claim("g.hdf", &me).unwrap().is_none());
    }

    #[test]
    fn a_taker_that_died_mid_takeover_is_taken_over_too() {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path());
        let first = dead_here();
        let _ = l.claim("g.hdf", &first).unwrap().unwrap();
        // A taker won takeovers/<nonce> and died before replacing the claim.
        let claim: ClaimFile =
            serde_json::from_slice(&std::fs::read(dir.path().join("claims/g.hdf")).unwrap())
                .unwrap();
        let taker = dead_here();
        let lock = ClaimFile {
            nonce: taker.nonce(),
            granule: "g.hdf".into(),
            holder: taker,
            claimed: 0.0,
            replaces: Some(claim.nonce.clone()),
            previous: Some(first),
            why: None,
        };
        std::fs::write(
            dir.path().join("takeovers").join(key::encode(&claim.nonce)),
            lock.bytes(),
        )
        .unwrap();
        let c = l
            .claim("g.hdf", &Holder::current())
            .unwrap()
            .expect("taken over");
        assert_eq!(files_in(&dir.path().join("takeovers")).len(), 2);
        l.finish(c, Outcome::done()).unwrap();
    }
}
