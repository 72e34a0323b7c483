//! Telling a storage failure (disk full, quota, I/O error, read-only filesystem) from other
//! failures, in our own writes and in clavrxorb's log. A storage failure is the folder's
//! fault, not the granule's: it uses no retry budget and stops the step (exit 9), since
//! every later granule would hit the same full disk.

use std::io::{self, Write};
use std::path::Path;

use nix::errno::Errno;

/// The errors that mean the filesystem cannot take the write, with the text `strerror`
/// gives them (what clavrxorb's runtime prints in its own error line).
const STORAGE: [(Errno, &str); 4] = [
    (Errno::ENOSPC, "No space left on device"),
    (Errno::EDQUOT, "Disk quota exceeded"),
    (Errno::EIO, "Input/output error"),
    (Errno::EROFS, "Read-only file system"),
];

/// Whether `e`, or an OS error it wraps (tempfile and others add the path that way), is a
/// storage failure.
pub fn is_storage(e: &io::Error) -> bool {
    if let Some(code) = e.raw_os_error() {
        return STORAGE.iter().any(|(errno, _)| *errno as i32 == code);
    }
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
    ) {
        return true;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(err) = next {
        if let Some(inner) = err.downcast_ref::<io::Error>() {
            return is_storage(inner);
        }
        // tempfile's own wrapper hides the OS error from `source` and from downcasts; only
        // its text still carries the code (EIO has no error kind of its own).
        let text = err.to_string();
        if STORAGE
            .iter()
            .any(|(errno, _)| text.contains(&format!("(os error {})", *errno as i32)))
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Whether a line of clavrxorb's log reports a storage failure (it writes its outputs into
/// the work folder, so a full work folder shows only there).
pub fn mentions_storage(line: &str) -> bool {
    STORAGE.iter().any(|(_, text)| line.contains(text))
}

/// Bytes [`refuses_writes`] tries to write: more than a filesystem's last free block or two,
/// less than anything a granule would notice.
const PROBE_BYTES: usize = 64 * 1024;

/// The storage error `dir` answers a write with now, if any. After clavrxorb failed, the sign
/// that its own writes there failed the same way: its error line may well be lost, its log
/// being on the same full disk.
pub fn refuses_writes(dir: &Path) -> Option<io::Error> {
    let probe = || -> io::Result<()> {
        // Unnamed: nothing to clean up, whatever happens.
        let mut f = tempfile::tempfile_in(dir)?;
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()
    };
    probe().err().filter(is_storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_are_told_from_others() {
        for errno in [Errno::ENOSPC, Errno::EDQUOT, Errno::EIO, Errno::EROFS] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert!(is_storage(&e), "{e}");
            assert!(mentions_storage(&format!("ERROR: writing x: {e}")), "{e}");
            let wrapped = io::Error::other(e);
            assert!(is_storage(&wrapped), "wrapped {errno}");
            // As tempfile wraps it: the OS error as the source of an error of its own.
            #[derive(Debug)]
            struct WithPath(io::Error);
            impl std::fmt::Display for WithPath {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    write!(f, "{} at /somewhere", self.0)
                }
            }
            impl std::error::Error for WithPath {
                fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                    Some(&self.0)
                }
            }
            let with_path = io::Error::other(WithPath(io::Error::from_raw_os_error(errno as i32)));
            assert!(is_storage(&with_path), "with a path {errno}");
            // As tempfile really wraps it (its wrapper type is private).
            let dir = tempfile::tempdir().unwrap();
            let real = tempfile::Builder::new()
                .tempfile_in(dir.path().join("missing"))
                .unwrap_err();
            assert!(!is_storage(&real), "{real}");
        }
        for errno in [Errno::EACCES, Errno::ENOENT, Errno::EEXIST] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert!(!is_storage(&e), "{e}");
            assert!(!mentions_storage(&e.to_string()), "{e}");
        }
        assert!(!is_storage(&io::Error::other(
            "no space, but not an OS error"
        )));
    }

    #[test]
    fn a_folder_with_room_takes_the_probe_and_keeps_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(refuses_writes(dir.path()).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A folder that does not exist refuses, but not for lack of storage.
        assert!(refuses_writes(&dir.path().join("gone")).is_none());
    }
}
