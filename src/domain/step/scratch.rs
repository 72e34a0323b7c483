//! `pseg-step`'s temporary work directory, `TMPDIR/pseg-step.XXXXXX`, and the removal of
//! those a dead `pseg-step` left behind.
//!
//! Each is made with a marker file naming its owner (host, pid and the pid's start time), so
//! it can be told from a user's folder of a similar name and removed once its owner is
//! provably dead: by the watchdog the moment `pseg-step` dies, or, should the watchdog die
//! too (Slurm kills every process of a step), by the next `pseg-step` on the same host. A
//! folder without a readable marker, or whose owner may be alive (another host, a pid
//! namespace we cannot see into), is never touched.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::ledger::Holder;
use crate::domain::ledger::alive::{Liveness, Verdict};

/// Every scratch folder's name starts with this.
pub const PREFIX: &str = "pseg-step.";
/// The marker file inside a scratch folder.
pub const MARKER: &str = ".pseg-step-work";
const SCHEMA: &str = "pseg-step-work/1";
/// A marker is a few hundred bytes; anything much larger is not ours.
const MARKER_MAX: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    schema: String,
    owner: Holder,
}

/// This process's scratch folder; removed (with everything in it) when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Makes `tmp/pseg-step.XXXXXX` with its marker naming `owner`.
    pub fn create(tmp: &Path, owner: &Holder) -> io::Result<Scratch> {
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(tmp)?;
        let marker = Marker {
            schema: SCHEMA.into(),
            owner: owner.clone(),
        };
        let text = serde_yaml::to_string(&marker).map_err(io::Error::other)?;
        std::fs::write(dir.path().join(MARKER), text)?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The marker file: while it exists, the folder is still this run's.
    pub fn marker(&self) -> PathBuf {
        self.dir.path().join(MARKER)
    }
}

/// The owner a folder's marker names, if the folder is a `pseg-step` scratch folder.
fn owner(dir: &Path) -> Option<Holder> {
    let marker = dir.join(MARKER);
    let meta = std::fs::symlink_metadata(&marker).ok()?;
    if !meta.is_file() || meta.len() > MARKER_MAX {
        return None;
    }
    let text = std::fs::read_to_string(&marker).ok()?;
    let marker: Marker = serde_yaml::from_str(&text).ok()?;
    (marker.schema == SCHEMA).then_some(marker.owner)
}

/// Removes every scratch folder in `tmp` whose owner `alive` proves dead, as seen by `me`;
/// returns those removed. Folders of other names, symlinks, folders without a marker and
/// folders of live or unprovable owners are left alone.
pub fn sweep(tmp: &Path, me: &Holder, alive: &Liveness) -> Vec<PathBuf> {
    // Without a readable /proc (a chroot without it), every pid would look gone.
    if me.pid_start_time == 0 {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let is_ours = entry.file_name().to_string_lossy().starts_with(PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_ours {
            continue;
        }
        let dir = entry.path();
        let Some(owner) = owner(&dir) else { continue };
        if owner.same_process(me) || owner.pid_start_time == 0 {
            continue;
        }
        if let Verdict::Dead(_) = alive.judge(&owner, me)
            && std::fs::remove_dir_all(&dir).is_ok()
        {
            removed.push(dir);
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc` where only `pid` runs, started at tick 100.
    fn proc_with(pid: u32) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} (pseg-step) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0"
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        root
    }

    fn holder(host: &str, pid: u32) -> Holder {
        Holder {
            host: host.into(),
            pid,
            pid_start_time: 100,
            boot_id: None,
            pid_namespace: None,
            slurm: None,
            restart_count: None,
        }
    }

    #[test]
    fn only_marked_folders_of_dead_owners_on_this_host_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let me = holder("node1", 10);
        let live = Scratch::create(tmp.path(), &holder("node1", 20)).unwrap();
        let dead = Scratch::create(tmp.path(), &holder("node1", 30)).unwrap();
        let elsewhere = Scratch::create(tmp.path(), &holder("node2", 30)).unwrap();
        std::fs::create_dir_all(dead.path().join("g.gran/output")).unwrap();
        // A user's folder of the same name, without a marker, or with one that is not ours.
        let user = tmp.path().join("pseg-step.mine");
        std::fs::create_dir(&user).unwrap();
        std::fs::write(user.join("notes.txt"), "keep").unwrap();
        let forged = tmp.path().join("pseg-step.forged");
        std::fs::create_dir(&forged).unwrap();
        std::fs::write(forged.join(MARKER), "schema: something-else/1\n").unwrap();
        // A marked folder by another name is not a scratch folder.
        let other = tmp.path().join("results");
        std::fs::create_dir(&other).unwrap();
        std::fs::copy(dead.marker(), other.join(MARKER)).unwrap();

        let proc = proc_with(20);
        let alive = Liveness::new(proc.path(), Some(None));
        let removed = sweep(tmp.path(), &me, &alive);
        assert_eq!(removed, vec![dead.path().to_path_buf()]);
        assert!(!dead.path().exists());
        for kept in [live.path(), elsewhere.path(), &user, &forged, &other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // Our own folder is never swept, whatever /proc says.
        let mine = Scratch::create(tmp.path(), &me).unwrap();
        assert!(sweep(tmp.path(), &me, &alive).is_empty());
        assert!(mine.path().exists());
        // Nor is anything when /proc could not be read, then or now: no pid proves dead.
        let blind = Holder {
            pid_start_time: 0,
            ..holder("node1", 40)
        };
        let unproven = Scratch::create(tmp.path(), &blind).unwrap();
        assert!(sweep(tmp.path(), &me, &alive).is_empty());
        let gone = Scratch::create(tmp.path(), &holder("node1", 50)).unwrap();
        assert!(sweep(tmp.path(), &blind, &alive).is_empty());
        assert!(unproven.path().exists() && gone.path().exists());
        assert_eq!(
            sweep(tmp.path(), &me, &alive),
            vec![gone.path().to_path_buf()]
        );
    }

    #[test]
    fn a_scratch_folder_is_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Scratch::create(tmp.path(), &holder("h", 1)).unwrap();
        let path = s.path().to_path_buf();
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(PREFIX)
        );
        assert_eq!(owner(&path).unwrap(), holder("h", 1));
        drop(s);
        assert!(!path.exists());
    }
}
