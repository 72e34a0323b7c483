//! A done granule's outputs manifest, `OUT/pseg-reports/NAME.outputs`: the files it
//! published, each with its size and BLAKE3 content hash, written after they were
//! published. It is the evidence behind `done`: the resume rule ([`present`]) compares sizes
//! (a stat per file, cheap enough for every run), and `pseg-slurm verify` ([`check`])
//! reads every file again and compares hashes too.
//!
//! Older pseg-step versions wrote one file name per line and nothing else; such a manifest
//! is still read ([`Manifest::legacy`] is then true), and its files can only be checked for
//! presence. This module reads and writes manifests and output files; it never touches
//! records or claims.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::atomic_file;
use crate::domain::ledger::store;

/// The manifest format written now.
pub const SCHEMA: &str = "pseg-outputs/2";
/// A manifest's file name: `NAME` + this, in the report folder.
pub const SUFFIX: &str = ".outputs";

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Its name in the output folder.
    pub name: String,
    /// Bytes; `None` in a legacy manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// BLAKE3 of the content, 64 hex digits (what `b3sum` prints); `None` in a legacy
    /// manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// What one granule published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub granule: String,
    pub files: Vec<OutputFile>,
}

impl Manifest {
    /// Written by a pseg-step that recorded no sizes or hashes.
    pub fn legacy(&self) -> bool {
        self.files.iter().any(|f| f.size.is_none())
    }
}

/// Where the manifest of granule `name` lives, in the report folder `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SUFFIX}"))
}

/// Size and BLAKE3 (hex) of a file's content, read once.
pub fn fingerprint(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// Fingerprints `outputs` (names in the output folder `out`) and writes the manifest of
/// granule `name` into the report folder `dir`, atomically.
pub fn write(dir: &Path, out: &Path, name: &str, outputs: &[String]) -> io::Result<()> {
    let mut files = Vec::with_capacity(outputs.len());
    for o in outputs {
        let (size, hash) = fingerprint(&out.join(o))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", out.join(o).display())))?;
        files.push(OutputFile {
            name: o.clone(),
            size: Some(size),
            blake3: Some(hash),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        schema: SCHEMA.to_string(),
        granule: name.to_string(),
        files,
    };
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    text.push(b'\n');
    std::fs::create_dir_all(dir)?;
    atomic_file::write(dir, format!("{name}{SUFFIX}"), &text)
}

/// Reads manifest text: the current JSON, or a legacy list of names.
pub fn parse(name: &str, text: &str) -> Result<Manifest, String> {
    if text.trim_start().starts_with('{') {
        let m: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if m.granule != name {
            return Err(format!("it is the manifest of {:?}", m.granule));
        }
        return Ok(m);
    }
    Ok(Manifest {
        schema: "legacy".to_string(),
        granule: name.to_string(),
        files: text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| OutputFile {
                name: l.to_string(),
                size: None,
                blake3: None,
            })
            .collect(),
    })
}

/// The manifest of granule `name` in the report folder `dir`; `Ok(None)` if there is none.
pub fn read(dir: &Path, name: &str) -> Result<Option<Manifest>, String> {
    let path = path(dir, name);
    match store::read_optional(&path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => parse(name, &String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The resume rule's check: every listed file is in `out` with the recorded size (a
/// legacy manifest: is there). A truncated output is never taken for done.
pub fn present(out: &Path, manifest: &Manifest) -> bool {
    manifest
        .files
        .iter()
        .all(|f| match std::fs::metadata(out.join(&f.name)) {
            Ok(meta) => meta.is_file() && f.size.is_none_or(|s| s == meta.len()),
            Err(_) => false,
        })
}

/// Whether granule `name` published a manifest in the report folder `dir` whose files are
/// all [`present`] in its parent, the output folder.
pub fn present_in(dir: &Path, name: &str) -> bool {
    let out = dir.parent().unwrap_or(dir);
    matches!(read(dir, name), Ok(Some(m)) if present(out, &m))
}

/// What is wrong with one listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// Another size than recorded.
    Size {
        recorded: u64,
        now: u64,
    },
    /// The same size, another content.
    Content,
    /// Not a regular file, or unreadable.
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => f.write_str("missing"),
            Problem::Size { recorded, now } => {
                write!(f, "changed: {now} bytes, {recorded} when published")
            }
            Problem::Content => f.write_str("changed: same size, other content (BLAKE3 differs)"),
            Problem::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// Reads every file of `manifest` in `out` again: the files that differ from what was
/// published, with what differs. A legacy manifest's files are checked for presence only.
pub fn check(out: &Path, manifest: &Manifest) -> Vec<(String, Problem)> {
    let mut problems = Vec::new();
    for f in &manifest.files {
        let path = out.join(&f.name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                problems.push((f.name.clone(), Problem::Missing));
                continue;
            }
            Err(e) => {
                problems.push((f.name.clone(), Problem::Unreadable(e.to_string())));
                continue;
            }
        };
        if !meta.is_file() {
            problems.push((
                f.name.clone(),
                Problem::Unreadable("not a regular file".into()),
            ));
            continue;
        }
        let (Some(size), Some(hash)) = (f.size, &f.blake3) else {
            continue;
        };
        if meta.len() != size {
            problems.push((
                f.name.clone(),
                Problem::Size {
                    recorded: size,
                    now: meta.len(),
                },
            ));
            continue;
        }
        match fingerprint(&path) {
            Ok((now, _)) if now != size => problems.push((
                f.name.clone(),
                Problem::Size {
                    recorded: size,
                    now,
                },
            )),
            Ok((_, h)) if &h != hash => problems.push((f.name.clone(), Problem::Content)),
            Ok(_) => {}
            Err(e) => problems.push((f.name.clone(), Problem::Unreadable(e.to_string()))),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_fingerprints_what_was_published_and_notices_changes() {
        let out = tempfile::tempdir().unwrap();
        let reports = out.path().join("pseg-reports");
        std::fs::write(out.path().join("a.level2.bin"), vec![7u8; 3000]).unwrap();
        std::fs::write(out.path().join("a.extra"), b"x").unwrap();
        let names = vec!["a.level2.bin".to_string(), "a.extra".to_string()];
        write(&reports, out.path(), "a.gran", &names).unwrap();
        let m = read(&reports, "a.gran").unwrap().unwrap();
        assert_eq!(m.schema, SCHEMA);
        assert!(!m.legacy());
        let bin = m.files.iter().find(|f| f.name == "a.level2.bin").unwrap();
        assert_eq!(bin.size, Some(3000));
        // The hash is BLAKE3's, as `b3sum` prints it.
        assert_eq!(
            bin.blake3.as_deref(),
            Some(blake3::hash(&[7u8; 3000]).to_hex().as_str())
        );
        assert!(present_in(&reports, "a.gran"));
        assert!(check(out.path(), &m).is_empty());

        // Same size, one byte flipped: only the hash can tell.
        let mut bytes = vec![7u8; 3000];
        bytes[1234] = 8;
        std::fs::write(out.path().join("a.level2.bin"), &bytes).unwrap();
        assert!(
            present(out.path(), &m),
            "the resume rule compares sizes only"
        );
        assert_eq!(
            check(out.path(), &m),
            vec![("a.level2.bin".to_string(), Problem::Content)]
        );
        // Truncated: the resume rule sees it too.
        std::fs::write(out.path().join("a.level2.bin"), &bytes[..1000]).unwrap();
        assert!(!present(out.path(), &m));
        std::fs::remove_file(out.path().join("a.extra")).unwrap();
        let problems = check(out.path(), &m);
        assert_eq!(
            problems,
            vec![
                ("a.extra".to_string(), Problem::Missing),
                (
                    "a.level2.bin".to_string(),
                    Problem::Size {
                        recorded: 3000,
                        now: 1000
                    }
                ),
            ]
        );
        assert_eq!(
            problems[1].1.to_string(),
            "changed: 1000 bytes, 3000 when published"
        );
        assert!(read(&reports, "other.gran").unwrap().is_none());
        assert!(!present_in(&reports, "other.gran"));
    }

    #[test]
    fn legacy_manifests_are_checked_for_presence_only() {
        let out = tempfile::tempdir().unwrap();
        let reports = out.path().join("pseg-reports");
        std::fs::create_dir_all(&reports).unwrap();
        // What older pseg-step versions wrote: one name per line.
        std::fs::write(path(&reports, "old.gran"), "old.level2.bin\n").unwrap();
        let m = read(&reports, "old.gran").unwrap().unwrap();
        assert!(m.legacy());
        assert!(!present_in(&reports, "old.gran"));
        std::fs::write(out.path().join("old.level2.bin"), b"short").unwrap();
        assert!(present_in(&reports, "old.gran"));
        assert!(check(out.path(), &m).is_empty());
        // A manifest of another granule under this name is refused.
        write(&reports, out.path(), "old.gran", &["old.level2.bin".into()]).unwrap();
        std::fs::rename(path(&reports, "old.gran"), path(&reports, "new.gran")).unwrap();
        assert!(read(&reports, "new.gran").unwrap_err().contains("old.gran"));
    }
}
