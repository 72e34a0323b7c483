//! Telling a storage failure (disk full, quota, I/O error, read-only filesystem) from other
//! failures, in our own writes and in clavrxorb's log. A storage failure is the folder's
//! fault, not the granule's: it uses no retry budget and stops the step (exit 9), since
//! every later granule would hit the same full disk.

use std::io;

use nix::errno::Errno;

/// The errors that mean the filesystem cannot take the write, with the text `strerror`
/// gives them (what clavrxorb's runtime prints in its own error line).
const STORAGE: [(Errno, &str); 4] = [
    (Errno::ENOSPC, "No space left on device"),
    (Errno::EDQUOT, "Disk quota exceeded"),
    (Errno::EIO, "Input/output error"),
    (Errno::EROFS, "Read-only file system"),
];

/// Whether `e` (or the error it wraps) is a storage failure.
pub fn is_storage(e: &io::Error) -> bool {
    if let Some(code) = e.raw_os_error() {
        return STORAGE.iter().any(|(errno, _)| *errno as i32 == code);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<io::Error>())
        .is_some_and(is_storage)
}

/// Whether a line of clavrxorb's log reports a storage failure (it writes its outputs into
/// the work folder, so a full work folder shows only there).
pub fn mentions_storage(line: &str) -> bool {
    STORAGE.iter().any(|(_, text)| line.contains(text))
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
}
