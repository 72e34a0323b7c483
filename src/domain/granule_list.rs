//! The granule list: parsing a list file into granules, and checking it before any work starts.
//!
//! Two kinds are read. A plain list has one granule path per line, relative to the list's own
//! folder. A CLAVR-x `file_list` has the input folder on its first line, the output folder on
//! its second, then granule names relative to the input folder; it is recognised by its first
//! line naming a folder (an existing one, or one written with a trailing `/`), which no plain
//! list can do. Both allow blank lines and `#` comments. The list is read with a bound, so a
//! device or a runaway file is an error, not a hang. This module only reads the list and
//! `stat`s its entries; it never opens a granule's contents.

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
    pub kind: ListKind,
}

/// What kind of list a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// One granule path per line, relative to the list's folder.
    Plain,
    /// CLAVR-x's own `file_list`: its folders as written on lines 1 and 2, resolved against
    /// the list's folder (clavrxorb's run folder).
    FileList { input: PathBuf, output: PathBuf },
}

/// The largest list read: about a million granules of 128-character paths.
pub const MAX_LIST_BYTES: u64 = 128 << 20;
/// The most granules one list may name.
pub const MAX_GRANULES: usize = 1_000_000;
/// The name clavrxorb reads its options from, in its run folder.
pub const OPTIONS_FILE: &str = "clavrx_options";

impl GranuleList {
    /// The list's folder (`.` for a bare file name).
    pub fn folder(&self) -> &Path {
        folder_of(&self.source)
    }

    /// `clavrx_options` beside the list, as clavrxorb would read it in that run folder.
    pub fn options_beside(&self) -> PathBuf {
        self.folder().join(OPTIONS_FILE)
    }

    /// The output folder a `file_list` names, if this is one.
    pub fn output_dir(&self) -> Option<&Path> {
        match &self.kind {
            ListKind::FileList { output, .. } => Some(output),
            ListKind::Plain => None,
        }
    }

    /// One line saying what was read, for the first progress line and gen's header.
    pub fn describe(&self) -> String {
        let n = self.granules.len();
        match &self.kind {
            ListKind::Plain => format!(
                "granule list (plain, one path per line) {}: {n} granule(s)",
                self.source.display()
            ),
            ListKind::FileList { input, output } => format!(
                "CLAVR-x file_list {}: {n} granule(s) in {}, outputs to {}",
                self.source.display(),
                input.display(),
                output.display()
            ),
        }
    }
}

/// Why `path` cannot be one line of clavrxorb's `file_list`, if it cannot: clavrxorb reads
/// the file line by line and trims the blanks at the ends of each line.
pub fn file_list_problem(path: &Path) -> Option<&'static str> {
    let Some(text) = path.to_str() else {
        return Some("is not valid UTF-8");
    };
    if text.contains(['\n', '\r']) {
        Some("contains a line break")
    } else if text.trim() != text {
        Some("begins or ends with a blank")
    } else {
        None
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
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
    /// Its folder or name cannot be written as one line of clavrxorb's `file_list`.
    NotForFileList(&'static str),
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
            ProblemKind::NotForFileList(why) => write!(
                f,
                "line {}: {p} {why}, so clavrxorb's file_list cannot name it; rename it",
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
    #[error(
        "granule list {path} is too large ({what}); split it into lists of at most \
         {MAX_GRANULES} granules and {} MiB, and run each",
        MAX_LIST_BYTES >> 20
    )]
    TooLarge { path: PathBuf, what: String },
    #[error(
        "{path} is read as a CLAVR-x file_list (line {line} names the folder {input}) but the \
         next line names no output folder; write the output folder on line 2 (or, in a plain \
         list, name granule files only)"
    )]
    NoOutputFolder {
        path: PathBuf,
        line: usize,
        input: PathBuf,
    },
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

#[cfg(test)]
impl ListError {
    /// True when the list itself is fine but some granule it names is missing or unreadable.
    fn is_missing_granule(&self) -> bool {
        matches!(self, ListError::Bad { problems, .. }
            if problems.iter().any(|p| matches!(p.kind, ProblemKind::Missing | ProblemKind::NotAFile | ProblemKind::Unreadable(_))))
    }
}

/// Parses list text; `base` is the folder relative paths (and a file_list's folders) are
/// resolved against.
pub fn parse_list(text: &str, base: &Path, source: &Path) -> Result<GranuleList, ListError> {
    let mut entries = text.lines().enumerate().filter_map(|(i, raw)| {
        let entry = raw.trim();
        (!entry.is_empty() && !entry.starts_with('#')).then_some((i + 1, entry))
    });
    let mut first = entries.next();
    let mut kind = ListKind::Plain;
    let mut granule_base = base.to_path_buf();
    let names_folder = |entry: &str| entry.ends_with('/') || base.join(entry).is_dir();
    if let Some((line, entry)) = first.filter(|(_, e)| names_folder(e)) {
        let input = base.join(entry);
        let no_output = || ListError::NoOutputFolder {
            path: source.to_path_buf(),
            line,
            input: input.clone(),
        };
        let (_, output) = entries.next().ok_or_else(no_output)?;
        // A plain list whose first line is a folder by mistake would otherwise lose its
        // second granule to the output folder.
        if base.join(output).is_file() {
            return Err(no_output());
        }
        granule_base = input.clone();
        kind = ListKind::FileList {
            input,
            output: base.join(output),
        };
        first = None;
    }
    let mut granules = Vec::new();
    for (line, entry) in first.into_iter().chain(entries) {
        if granules.len() == MAX_GRANULES {
            return Err(ListError::TooLarge {
                path: source.to_path_buf(),
                what: format!("more than {MAX_GRANULES} granules"),
            });
        }
        granules.push(Granule {
            path: granule_base.join(entry),
            line,
        });
    }
    Ok(GranuleList {
        source: source.to_path_buf(),
        granules,
        kind,
    })
}

/// Reads a list file and resolves its entries against the list's folder (or a file_list's
/// input folder). Does not check entries.
pub fn read_list(path: &Path) -> Result<GranuleList, ListError> {
    let unreadable = |source| ListError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let text = match crate::base::bounded_read::read_text(path, MAX_LIST_BYTES) {
        Ok(text) => text,
        Err(crate::base::bounded_read::ReadError::TooLarge { limit }) => {
            return Err(ListError::TooLarge {
                path: path.to_path_buf(),
                what: format!("over {} MiB", limit >> 20),
            });
        }
        Err(crate::base::bounded_read::ReadError::Io(e)) => return Err(unreadable(e)),
    };
    let list = parse_list(&text, folder_of(path), path)?;
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
            let folder = std::path::absolute(folder_of(&g.path)).unwrap_or_default();
            let carried = file_list_problem(&folder)
                .or_else(|| file_list_problem(Path::new(&g.name())))
                .or_else(|| g.path.to_str().is_none().then_some("is not valid UTF-8"));
            let kind = match std::fs::metadata(&g.path) {
                _ if carried.is_some() => carried.map(ProblemKind::NotForFileList),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(ProblemKind::Missing),
                Err(e) => Some(ProblemKind::Unreadable(e.to_string())),
                Ok(m) if !m.is_file() => Some(ProblemKind::NotAFile),
                Ok(_) => crate::base::unix::check_readable(&g.path)
                    .err()
                    .map(|e| ProblemKind::Unreadable(e.to_string())),
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
        )
        .unwrap();
        assert_eq!(list.kind, ListKind::Plain);
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

    #[test]
    fn a_clavrx_file_list_is_recognised_by_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("in")).unwrap();
        let list = d.join("file_list");
        std::fs::write(&list, "in\n/out/\na.gran\n\nb.gran\n").unwrap();
        let l = read_list(&list).unwrap();
        assert_eq!(
            l.kind,
            ListKind::FileList {
                input: d.join("in"),
                output: PathBuf::from("/out/")
            }
        );
        let got: Vec<_> = l
            .granules
            .iter()
            .map(|g| (g.path.clone(), g.line))
            .collect();
        assert_eq!(
            got,
            vec![(d.join("in/a.gran"), 3), (d.join("in/b.gran"), 5)]
        );
        assert_eq!(l.options_beside(), d.join("clavrx_options"));
        assert!(l.describe().starts_with("CLAVR-x file_list"));
        // A folder not there yet still counts when written with a trailing `/`.
        std::fs::write(&list, "/nowhere/\n").unwrap();
        let e = read_list(&list).unwrap_err();
        assert!(
            matches!(e, ListError::NoOutputFolder { line: 1, .. }),
            "{e}"
        );
        std::fs::write(&list, "/nowhere/\n/out\n").unwrap();
        assert!(matches!(read_list(&list), Err(ListError::Empty { .. })));
        // A plain list starting with a folder by mistake: its granule is not taken for the
        // output folder.
        std::fs::write(d.join("a.gran"), "").unwrap();
        std::fs::write(&list, "in\na.gran\n").unwrap();
        let e = read_list(&list).unwrap_err();
        assert!(e.to_string().contains("names no output folder"), "{e}");
    }

    #[test]
    fn paths_a_file_list_cannot_carry_are_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("odd\nfolder");
        std::fs::create_dir(&odd).unwrap();
        std::fs::write(odd.join("a.gran"), "").unwrap();
        std::fs::write(dir.path().join(" b.gran"), "").unwrap();
        let list = parse_list(
            "odd\nfolder/a.gran\n",
            dir.path(),
            &dir.path().join("l.txt"),
        )
        .unwrap();
        // Two lines of a list cannot make one path; build the entry by hand.
        let list = GranuleList {
            granules: vec![
                Granule {
                    path: odd.join("a.gran"),
                    line: 1,
                },
                Granule {
                    path: dir.path().join(" b.gran"),
                    line: 2,
                },
            ],
            ..list
        };
        let Err(ListError::Bad { problems, .. }) = list.check() else {
            panic!("accepted")
        };
        let kinds: Vec<_> = problems.iter().map(|p| (p.line, p.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (1, ProblemKind::NotForFileList("contains a line break")),
                (
                    2,
                    ProblemKind::NotForFileList("begins or ends with a blank")
                ),
            ]
        );
    }

    #[test]
    fn a_list_past_the_bound_is_refused() {
        let e = read_list(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }
}
