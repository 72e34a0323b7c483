//! Memory measurement readers: per-process rollups (`proc`) and the memory cgroup Slurm
//! enforces against (`cgroup`, with the `/proc/PID/cgroup` and mountinfo parsing it needs in
//! `mounts`).
//!
//! Readers only: every function takes a root path (`/proc`, or `/` for cgroups) so tests run on
//! fixture trees, parsing is a pure `parse_*(&str)`, and nothing here samples, keeps state,
//! creates cgroups or signals processes; that is the sampler's and the supervisor's business.

pub mod cgroup;
pub mod mounts;
pub mod proc;

use std::path::{Path, PathBuf};

pub use cgroup::{CgroupError, Limit, MemoryCgroup, Version};
pub use proc::{Rollup, RssMark, parse_smaps_rollup, parse_status, read_smaps_rollup, read_status};

/// What is wrong with the text of a `/proc` or cgroup file; the reader adds the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no `{field}` line")]
    MissingField { field: &'static str },
    #[error("line {line}: cannot read `{text}` as {expected}")]
    BadLine {
        line: usize,
        text: String,
        expected: &'static str,
    },
}

/// A file that could not be read or understood, with its path.
///
/// The `read_*` functions return it inside a `std::io::Error` of the same kind (`InvalidData`
/// for text that does not parse), so callers can still test for `NotFound`.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
}

impl From<FileError> for std::io::Error {
    fn from(e: FileError) -> std::io::Error {
        let kind = match &e {
            FileError::Read { source, .. } => source.kind(),
            FileError::Parse { .. } => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

/// The whole text of a small file; `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads `path` and parses it, naming the path in any error.
fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| FileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Like `read_parsed`, but `Ok(None)` when the file does not exist.
fn read_parsed_optional<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, FileError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    parse(&text).map(Some).map_err(|source| FileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Where the test fixtures of this module live.
#[cfg(test)]
fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/memory")
        .join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_kind_and_name_the_path() {
        let missing = fixture("no-such-file");
        let e: std::io::Error = read_parsed(&missing, |_| Ok(())).unwrap_err().into();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no-such-file"), "{e}");

        let bad = fixture("README.md");
        let e: std::io::Error = read_parsed(&bad, |_| {
            Err::<(), _>(ParseError::MissingField { field: "Rss" })
        })
        .unwrap_err()
        .into();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), format!("{}: no `Rss` line", bad.display()));
    }

    #[test]
    fn optional_files_that_do_not_exist_are_none() {
        assert_eq!(
            read_parsed_optional(&fixture("no-such-file"), |_| Ok(1)).unwrap(),
            None
        );
    }
}
