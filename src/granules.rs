//! The granule list: parsing a list file into granules, and checking it before any work starts.
//!
//! A list has one granule path per line, relative to the list's own folder; blank lines and
//! `#` comments are allowed. This module only reads the list and `stat`s its entries; it never
//! opens a granule's contents.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One granule named by the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granule {
    /// The path as resolved against the list's folder.
    pub path: PathBuf,
    /// 1-based line of the list that names it.
    pub line: usize,
}

impl Granule {
    /// The granule's file name: what clavrxorb sees and what names its outputs.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A parsed list, in list order.
#[derive(Debug, Clone)]
pub struct GranuleList {
    /// The list file, for messages.
    pub source: PathBuf,
    pub granules: Vec<Granule>,
}

/// What is wrong with one line of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    Missing,
    NotAFile,
    Unreadable(String),
    /// Names the same file as an earlier line.
    Duplicate {
        first_line: usize,
    },
    /// Has the same file name as an earlier line: both would write the same outputs.
    SameName {
        first_line: usize,
    },
}

/// One bad line of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub path: PathBuf,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ProblemKind::Missing => write!(f, "line {}: granule {p} does not exist", self.line),
            ProblemKind::NotAFile => write!(f, "line {}: {p} is not a regular file", self.line),
            ProblemKind::Unreadable(e) => {
                write!(f, "line {}: granule {p} cannot be read: {e}", self.line)
            }
            ProblemKind::Duplicate { first_line } => write!(
                f,
                "line {}: {p} is listed already on line {first_line}; remove one of them",
                self.line
            ),
            ProblemKind::SameName { first_line } => write!(
                f,
                "line {}: {p} has the same file name as line {first_line}; \
                 their outputs would overwrite each other, so process them in separate runs",
                self.line
            ),
        }
    }
}

/// Why a list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read granule list {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("granule list {path} names no granules; put one granule path per line")]
    Empty { path: PathBuf },
    #[error("granule list {path} has {} bad line(s):\n  {}", problems.len(), list_problems(problems))]
    Bad {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list_problems(problems: &[Problem]) -> String {
    const SHOWN: usize = 20;
    let mut lines: Vec<String> = problems.iter().take(SHOWN).map(|p| p.to_string()).collect();
    if problems.len() > SHOWN {
        lines.push(format!("... and {} more", problems.len() - SHOWN));
    }
    lines.join("\n  ")
}

impl ListError {
    /// True when the list itself is fine but some granule it names is missing or unreadable.
    pub fn is_missing_granule(&self) -> bool {
        matches!(self, ListError::Bad { problems, .. }
            if problems.iter().any(|p| matches!(p.kind, ProblemKind::Missing | ProblemKind::NotAFile | ProblemKind::Unreadable(_))))
    }
}

/// Parses list text; `base` is the folder relative paths are resolved against.
pub fn parse_list(text: &str, base: &Path, source: &Path) -> GranuleList {
    let granules = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                return None;
            }
            Some(Granule {
                path: base.join(entry),
                line: i + 1,
            })
        })
        .collect();
    GranuleList {
        source: source.to_path_buf(),
        granules,
    }
}

/// Reads a list file and resolves its entries against the list's folder. Does not check entries.
pub fn read_list(path: &Path) -> Result<GranuleList, ListError> {
    let text = std::fs::read_to_string(path).map_err(|source| ListError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let list = parse_list(&text, base, path);
    if list.granules.is_empty() {
        return Err(ListError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(list)
}

impl GranuleList {
    /// Checks every entry: exists, is a readable file, is not listed twice, and does not share
    /// its file name with another entry. Returns every problem, not just the first.
    pub fn check(&self) -> Result<(), ListError> {
        let mut problems = Vec::new();
        let mut seen_path: HashMap<PathBuf, usize> = HashMap::new();
        let mut seen_name: HashMap<String, usize> = HashMap::new();
        let mut folders: HashMap<PathBuf, PathBuf> = HashMap::new();
        for g in &self.granules {
            let kind = match std::fs::metadata(&g.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(ProblemKind::Missing),
                Err(e) => Some(ProblemKind::Unreadable(e.to_string())),
                Ok(m) if !m.is_file() => Some(ProblemKind::NotAFile),
                Ok(_) => nix::unistd::access(&g.path, nix::unistd::AccessFlags::R_OK)
                    .err()
                    .map(|e| ProblemKind::Unreadable(std::io::Error::from(e).to_string())),
            };
            if let Some(kind) = kind {
                problems.push(Problem {
                    line: g.line,
                    path: g.path.clone(),
                    kind,
                });
                continue;
            }
            // Resolving each folder once, not each file, keeps 100 000 entries fast.
            let parent = g.path.parent().unwrap_or(Path::new("."));
            let folder = match folders.get(parent) {
                Some(f) => f,
                None => {
                    let real = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.into());
                    folders.entry(parent.to_path_buf()).or_insert(real)
                }
            };
            let key = match std::fs::symlink_metadata(&g.path) {
                Ok(m) if m.file_type().is_symlink() => {
                    std::fs::canonicalize(&g.path).unwrap_or_else(|_| g.path.clone())
                }
                _ => folder.join(g.path.file_name().unwrap_or_default()),
            };
            if let Some(&first_line) = seen_path.get(&key) {
                problems.push(Problem {
                    line: g.line,
                    path: g.path.clone(),
                    kind: ProblemKind::Duplicate { first_line },
                });
                continue;
            }
            seen_path.insert(key, g.line);
            if let Some(&first_line) = seen_name.get(&g.name()) {
                problems.push(Problem {
                    line: g.line,
                    path: g.path.clone(),
                    kind: ProblemKind::SameName { first_line },
                });
                continue;
            }
            seen_name.insert(g.name(), g.line);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ListError::Bad {
                path: self.source.clone(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_relative_paths() {
        let list = parse_list(
            "# header\n\na.gran\n  sub/b.gran  \n# c.gran\n/abs/d.gran\n",
            Path::new("/data"),
            Path::new("/data/list.txt"),
        );
        let got: Vec<_> = list
            .granules
            .iter()
            .map(|g| (g.path.clone(), g.line))
            .collect();
        assert_eq!(
            got,
            vec![
                (PathBuf::from("/data/a.gran"), 3),
                (PathBuf::from("/data/sub/b.gran"), 4),
                (PathBuf::from("/abs/d.gran"), 6),
            ]
        );
    }

    #[test]
    fn empty_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# nothing\n\n").unwrap();
        let err = read_list(&list).unwrap_err();
        assert!(matches!(err, ListError::Empty { .. }));
        assert!(err.to_string().contains("list.txt"));
    }

    #[test]
    fn check_reports_every_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("a.gran"), "").unwrap();
        std::fs::write(dir.path().join("x/a.gran"), "").unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "a.gran\nmissing.gran\n./a.gran\nx/a.gran\nx\n").unwrap();
        let err = read_list(&list).unwrap().check().unwrap_err();
        let ListError::Bad { problems, .. } = &err else {
            panic!("{err}")
        };
        let kinds: Vec<_> = problems.iter().map(|p| (p.line, p.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (2, ProblemKind::Missing),
                (3, ProblemKind::Duplicate { first_line: 1 }),
                (4, ProblemKind::SameName { first_line: 1 }),
                (5, ProblemKind::NotAFile),
            ]
        );
        assert!(err.to_string().contains("line 2: granule"));
        assert!(err.is_missing_granule());
    }
}
