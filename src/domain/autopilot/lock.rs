//! The campaign's driver lock, `pseg-state/run.lock`: at most one `pseg-slurm run` drives a
//! campaign. It names its holder (host, pid, start time, Slurm job for a `--detach` watcher);
//! a second run refuses while that holder may be alive, and takes the lock over once the
//! takeover rule of claims (`ledger::alive`) proves it dead (a run killed by SIGKILL, a
//! watcher job that ended). Released when the [`RunLock`] is dropped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::time::{Style, duration, unix_now};
use crate::domain::ledger::Holder;
use crate::domain::ledger::alive::{Liveness, Verdict};
use crate::domain::ledger::store;

pub const FILE: &str = "run.lock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LockFile {
    holder: Holder,
    since_unix: f64,
}

/// The lock, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    me: Holder,
    /// The holder it took the lock from, and the proof that it was dead.
    pub took_over: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `pseg-slurm run` drives this campaign: {holder}, since {since} ({why}); \
         watch it with `pseg-slurm status`, or stop it first (if it is gone for sure: remove \
         {path})"
    )]
    Held {
        holder: String,
        since: String,
        why: String,
        path: PathBuf,
    },
    #[error("cannot use the run lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RunLock {
    /// Takes the lock of `state_dir` for `me`, or says who holds it.
    pub fn acquire(state_dir: &Path, me: &Holder, alive: &Liveness) -> Result<RunLock, LockError> {
        let path = state_dir.join(FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_yaml::to_string(&LockFile {
            holder: me.clone(),
            since_unix: unix_now(),
        })
        .unwrap_or_default();
        let mut took_over = None;
        // A few tries: a dead holder's file is removed, and another run may race us to it.
        for _ in 0..3 {
            if store::create_exclusive(state_dir, FILE, text.as_bytes()).map_err(io)? {
                return Ok(RunLock {
                    path,
                    me: me.clone(),
                    took_over,
                });
            }
            let Some(bytes) = store::read_optional(&path).map_err(io)? else {
                continue;
            };
            let old: Option<LockFile> = serde_yaml::from_slice(&bytes).ok();
            let verdict = match &old {
                Some(old) if old.holder.same_process(me) => {
                    Verdict::Dead("it is this process".into())
                }
                Some(old) => alive.judge(&old.holder, me),
                // Written whole (atomic link) by us only: unreadable means not ours to judge.
                None => Verdict::Unknown("the lock file cannot be read".into()),
            };
            match (verdict, old) {
                (Verdict::Dead(why), Some(old)) => {
                    // Only the file judged dead is removed: another run may have replaced it.
                    if store::read_optional(&path).map_err(io)?.as_deref() == Some(&bytes[..]) {
                        std::fs::remove_file(&path).map_err(io)?;
                    }
                    took_over = Some((old.holder.describe(), why));
                }
                (Verdict::Dead(_), None) => unreachable!("an unreadable lock is never judged"),
                (Verdict::Alive(why) | Verdict::Unknown(why), old) => {
                    return Err(LockError::Held {
                        holder: old
                            .as_ref()
                            .map(|o| o.holder.describe())
                            .unwrap_or_else(|| "unknown holder".into()),
                        since: old
                            .map(|o| {
                                let ago = unix_now() - o.since_unix;
                                format!("{} ago", duration(ago, Style::Whole))
                            })
                            .unwrap_or_else(|| "?".into()),
                        why,
                        path,
                    });
                }
            }
        }
        Err(io(std::io::Error::other(
            "the lock changed hands repeatedly while taking it",
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Ours only: never remove a lock someone took over meanwhile.
        let ours = store::read_optional(&self.path)
            .ok()
            .flatten()
            .and_then(|b| serde_yaml::from_slice::<LockFile>(&b).ok())
            .is_some_and(|l| l.holder.same_process(&self.me));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_is_refused_and_a_dead_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let alive = Liveness::new(Path::new("/proc"), Some(None));
        let me = Holder::current();
        // Another live process on this host: pid 1.
        let init = Holder::read(Path::new("/proc"), 1);
        let other = RunLock::acquire(dir.path(), &init, &alive).unwrap();
        let e = RunLock::acquire(dir.path(), &me, &alive).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("another `pseg-slurm run` drives this campaign")
                && text.contains(" pid 1,"),
            "{text}"
        );
        std::mem::forget(other);
        // A holder whose process is gone: its start time no longer matches.
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let mut dead = me.clone();
        dead.pid_start_time += 1;
        std::mem::forget(RunLock::acquire(dir.path(), &dead, &alive).unwrap());
        let lock = RunLock::acquire(dir.path(), &me, &alive).unwrap();
        assert!(lock.took_over.is_some(), "{lock:?}");
        drop(lock);
        assert!(!dir.path().join(FILE).exists(), "released on drop");
    }
}
