//! The file operations the ledger is built from, each safe with many NFS clients at once.
//!
//! - Replacing a file is `base::atomic_file::write`: a temporary file in the same folder,
//!   fsync, rename over the target. Readers see the old file or the new one, never half of one.
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

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::base::atomic_file;

/// ESTALE on Linux.
const ESTALE: i32 = 116;

/// Creates `dir/name` holding `bytes` unless it exists; true if this call created it.
pub fn create_exclusive(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<bool> {
    let tmp = atomic_file::temp_file(dir, bytes, atomic_file::SHARED)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::testing::files_in as names;

    #[test]
    fn created_files_follow_the_umask_like_outputs() {
        let dir = tempfile::tempdir().unwrap();
        create_exclusive(dir.path(), "c", b"x").unwrap();
        // What a plain create gives under this process's umask is what outputs get.
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let mode = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().mode() & 0o777;
        assert_eq!(mode("c"), mode("plain"));
        assert_eq!(read_optional(&dir.path().join("nope/c")).unwrap(), None);
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
}
