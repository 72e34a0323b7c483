//! The file operations the ledger is built from, each safe with many NFS clients at once.
//!
//! - [`write_atomic`]: a temporary file in the same folder, fsync, rename over the target.
//!   Readers see the old file or the new one, never half of one.
//! - [`create_exclusive`]: the content is written to a temporary file first, then
//!   hard-linked to the target; `link(2)` fails if the target exists, so exactly one
//!   creator wins, and the winner's file is complete from the first moment anyone sees it.
//!   An NFS reply lost and retried can make a successful link report EEXIST, so a failed
//!   link is checked as open(2) advises: a link count of 2 on our temporary file means we won.
//! - [`read_optional`]: a missing file is `None`; ESTALE (the file was replaced while our
//!   client held an old handle) is retried.
//!
//! Temporary files start with `.`, which no key does; they are removed on every path but a
//! crash, and readers skip them.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The prefix of every temporary file.
pub const TMP_PREFIX: &str = ".tmp-";

/// ESTALE on Linux.
const ESTALE: i32 = 116;

fn temp_in(dir: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    // 0666 less the umask, like the outputs: a group sharing a campaign reads its records
    // and reports (tempfile's own default, 0600, would hide them).
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Replaces `dir/name` with `bytes` atomically.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_in(dir, bytes)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// Creates `dir/name` holding `bytes` unless it exists; true if this call created it.
pub fn create_exclusive(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<bool> {
    let tmp = temp_in(dir, bytes)?;
    let won = match std::fs::hard_link(tmp.path(), dir.join(name)) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tmp.as_file().metadata()?.nlink() == 2
        }
        Err(e) => return Err(e),
    };
    drop(tmp); // Removes the temporary name; the link, if ours, stays.
    Ok(won)
}

/// The whole file, or `None` if it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut tries = 0;
    loop {
        match std::fs::read(path) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(ESTALE) && tries < 5 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A small file's content, without the `stat` that `fs::read` spends sizing its buffer
/// (one system call in four, over 100 000 records).
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(1024);
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes a file; already gone is fine.
pub fn remove_optional(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `f` over `items` on a few threads, results in order. Reading many small files is bound
/// by latency (NFS round trips), which threads overlap.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .clamp(4, 16);
    if items.len() < 256 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::testing::files_in as names;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "r.json", b"one").unwrap();
        write_atomic(dir.path(), "r.json", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("r.json")).unwrap(), b"two");
        assert_eq!(names(dir.path()), vec!["r.json"]);
        let missing = dir.path().join("nope/r.json");
        assert!(write_atomic(&dir.path().join("nope"), "r.json", b"x").is_err());
        assert_eq!(read_optional(&missing).unwrap(), None);
    }

    #[test]
    fn files_follow_the_umask_like_outputs() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "r", b"x").unwrap();
        create_exclusive(dir.path(), "c", b"x").unwrap();
        // What a plain create gives under this process's umask is what outputs get.
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let mode = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().mode() & 0o777;
        assert_eq!(mode("r"), mode("plain"));
        assert_eq!(mode("c"), mode("plain"));
    }

    #[test]
    fn exclusive_creation_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        assert!(create_exclusive(dir.path(), "c", b"first").unwrap());
        assert!(!create_exclusive(dir.path(), "c", b"second").unwrap());
        assert_eq!(
            read_optional(&dir.path().join("c")).unwrap().unwrap(),
            b"first"
        );
        assert_eq!(names(dir.path()), vec!["c"]);
        remove_optional(&dir.path().join("c")).unwrap();
        remove_optional(&dir.path().join("c")).unwrap();
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let d = dir.path();
                    s.spawn(move || create_exclusive(d, "race", format!("{i}").as_bytes()).unwrap())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
        assert_eq!(names(dir.path()), vec!["race"]);
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<usize> = (0..10_000).collect();
        let doubled = parallel_map(&items, |i| i * 2);
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }
}
