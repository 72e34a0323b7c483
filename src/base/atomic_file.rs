//! Atomic file writes: the content goes to a temporary file in the target's folder, is
//! synced, then renamed over the target, so a reader sees the old file or the new one, never
//! half of one (on NFS too: rename is atomic there).
//!
//! Temporary files start with `.tmp-`, and are removed on every path but a crash; readers of
//! a folder skip names starting with `.`.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The prefix of every temporary file.
const TMP_PREFIX: &str = ".tmp-";

/// The mode of files nothing asks otherwise of: 0666 less the umask, like the outputs, so a
/// group sharing a campaign reads its records and reports (tempfile's own default, 0600,
/// would hide them).
pub const SHARED: u32 = 0o666;

/// A complete, synced temporary file in `dir` holding `bytes`, with `mode` less the umask:
/// ready to be renamed or linked into place.
pub fn temp_file(dir: &Path, bytes: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Replaces `dir/name` with `bytes` atomically; the file gets mode [`SHARED`].
pub fn write(dir: &Path, name: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(dir, name, bytes, SHARED)
}

/// Replaces `dir/name` with `bytes` atomically; the file gets `mode` less the umask.
pub fn write_with_mode(
    dir: &Path,
    name: impl AsRef<Path>,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let tmp = temp_file(dir, bytes, mode)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "r.json", b"one").unwrap();
        write(dir.path(), "r.json", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("r.json")).unwrap(), b"two");
        assert_eq!(names(dir.path()), vec!["r.json"]);
        assert!(write(&dir.path().join("nope"), "r.json", b"x").is_err());
        assert_eq!(names(dir.path()), vec!["r.json"]);
    }

    #[test]
    fn files_follow_the_umask_like_outputs_unless_a_mode_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "r", b"x").unwrap();
        write_with_mode(dir.path(), "page.html", b"x", 0o600).unwrap();
        // What a plain create gives under this process's umask is what outputs get.
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let mode = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().mode() & 0o777;
        assert_eq!(mode("r"), mode("plain"));
        assert_eq!(mode("page.html"), 0o600);
    }
}
