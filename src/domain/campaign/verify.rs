//! `pseg-slurm verify`: every done granule's outputs read again and compared with its
//! manifest (`outputs.rs`), and the output folder searched for files beside them that no
//! manifest lists. A granule whose listed outputs are missing or changed (or that has no
//! manifest) is recorded `failed` (`output-changed`), under its claim, so the next run or
//! `pseg-slurm retry --missing` redoes it. A stray file alone does not send its granule
//! back: the outputs it published are intact, and a redo would not remove the stray.
//!
//! [`check`] only reads; [`record`] writes the records. This module prints nothing and
//! chooses no exit status.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::base::parallel::parallel_map;
use crate::domain::ledger::Ledger;
use crate::domain::ledger::claim::Marked;
use crate::domain::ledger::error::LedgerError;
use crate::domain::ledger::holder::Holder;
use crate::domain::ledger::outputs::{self, Manifest, Problem};
use crate::domain::ledger::record::Status;
use crate::domain::reports;

/// What is wrong about one granule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A listed file is missing or differs.
    File(String, Problem),
    /// A file in the output folder that its manifest does not list, named after the
    /// granule (or a leftover `.NAME.partial` of one of its outputs).
    Unexpected(String),
    /// Done, but no manifest says what it published.
    NoManifest(PathBuf),
    /// The manifest cannot be read.
    BadManifest(String),
}

/// One finding: a line of `verify`'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub granule: String,
    pub what: What,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.granule;
        match &self.what {
            What::File(file, problem) => write!(f, "{g}: {file} {problem}"),
            What::Unexpected(file) => {
                write!(
                    f,
                    "{g}: {file} unexpected: named after the granule but not in its outputs \
                     manifest (its listed outputs are intact; remove the file if it is not yours)"
                )
            }
            What::NoManifest(path) => write!(f, "{g}: no outputs manifest ({})", path.display()),
            What::BadManifest(why) => write!(f, "{g}: unreadable outputs manifest: {why}"),
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Done granules checked.
    pub checked: usize,
    /// Files read, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Done granules whose manifest is from a pseg-step that recorded no sizes or hashes:
    /// their files were checked for presence only.
    pub legacy: Vec<String>,
    /// By granule, then file.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The granules to redo: those whose published outputs are missing or changed, in
    /// order, each once.
    pub fn to_redo(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.what.needs_redo())
            .map(|f| f.granule.as_str())
            .collect();
        names.dedup();
        names
    }
}

/// One done granule: its manifest and what is wrong with its listed files.
struct Checked {
    name: String,
    manifest: Option<Manifest>,
    findings: Vec<Finding>,
}

fn check_one(reports: &Path, out: &Path, name: &str) -> Checked {
    let finding = |what| Finding {
        granule: name.to_string(),
        what,
    };
    let manifest = match outputs::read(reports, name) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Checked {
                name: name.to_string(),
                manifest: None,
                findings: vec![finding(What::NoManifest(outputs::path(reports, name)))],
            };
        }
        Err(why) => {
            return Checked {
                name: name.to_string(),
                manifest: None,
                findings: vec![finding(What::BadManifest(why))],
            };
        }
    };
    let findings = outputs::check(out, &manifest)
        .into_iter()
        .map(|(file, problem)| finding(What::File(file, problem)))
        .collect();
    Checked {
        name: name.to_string(),
        manifest: Some(manifest),
        findings,
    }
}

/// Checks every done granule of `ledger` against the output folder `out`.
pub fn check(ledger: &Ledger, out: &Path) -> Result<Report, LedgerError> {
    let reports = out.join(reports::DIR);
    let mut done: Vec<String> = ledger
        .scan()?
        .records
        .into_iter()
        .filter(|r| r.status == Status::Done)
        .map(|r| r.name)
        .collect();
    done.sort();
    let checked = parallel_map(&done, |name| check_one(&reports, out, name));
    let mut report = Report {
        checked: checked.len(),
        ..Report::default()
    };
    // Who published which file, for the search for files no manifest lists.
    let mut listed: HashMap<&str, &str> = HashMap::new();
    for c in &checked {
        let Some(m) = &c.manifest else { continue };
        if m.legacy() {
            report.legacy.push(c.name.clone());
        }
        for f in &m.files {
            listed.insert(&f.name, &c.name);
            report.files += 1;
            report.bytes += f.size.unwrap_or(0);
        }
    }
    let owners = Owners::new(done.iter().map(String::as_str));
    let mut unexpected: Vec<Finding> = Vec::new();
    for file in top_level_files(out)? {
        if listed.contains_key(file.as_str()) {
            continue;
        }
        let owner = partial_of(&file)
            .and_then(|o| listed.get(o).copied())
            .or_else(|| owners.of(&file));
        if let Some(granule) = owner {
            unexpected.push(Finding {
                granule: granule.to_string(),
                what: What::Unexpected(file),
            });
        }
    }
    report.findings = checked.into_iter().flat_map(|c| c.findings).collect();
    report.findings.extend(unexpected);
    report
        .findings
        .sort_by(|a, b| a.granule.cmp(&b.granule).then_with(|| key(a).cmp(key(b))));
    Ok(report)
}

fn key(f: &Finding) -> &str {
    match &f.what {
        What::File(file, _) | What::Unexpected(file) => file,
        What::NoManifest(_) | What::BadManifest(_) => "",
    }
}

/// Records each granule of [`Report::to_redo`] as `failed` (`output-changed`), checking it
/// again under its claim first; what became of each, in order.
pub fn record(
    ledger: &Ledger,
    out: &Path,
    report: &Report,
    me: &Holder,
) -> Result<Vec<(String, Marked)>, LedgerError> {
    let reports = out.join(reports::DIR);
    let mut marked = Vec::new();
    for name in report.to_redo() {
        let again = || {
            let lines: Vec<String> = check_one(&reports, out, name)
                .findings
                .iter()
                .map(|f| f.what.short())
                .collect();
            (!lines.is_empty()).then(|| format!("pseg-slurm verify: {}", lines.join("; ")))
        };
        marked.push((
            name.to_string(),
            ledger.mark_output_changed(name, me, again)?,
        ));
    }
    Ok(marked)
}

impl What {
    /// A redo fixes it: a published output is missing or changed, or unaccounted for.
    pub fn needs_redo(&self) -> bool {
        !matches!(self, What::Unexpected(_))
    }

    /// Without the granule's name, for its record's error line.
    fn short(&self) -> String {
        match self {
            What::File(file, problem) => format!("{file} {problem}"),
            What::Unexpected(file) => format!("{file} unexpected"),
            What::NoManifest(_) => "no outputs manifest".to_string(),
            What::BadManifest(why) => format!("unreadable outputs manifest: {why}"),
        }
    }
}

/// The regular files (and symbolic links) directly in `out`; folders (pseg-reports,
/// pseg-state, logs...) are not outputs.
fn top_level_files(out: &Path) -> Result<Vec<String>, LedgerError> {
    let entries = std::fs::read_dir(out).map_err(LedgerError::read(out))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(LedgerError::read(out))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(files)
}

/// `X` of `.X.partial`: what pseg-step names an output while copying it into place.
fn partial_of(file: &str) -> Option<&str> {
    file.strip_prefix('.')?.strip_suffix(".partial")
}

/// Done granules by their name and by their name without its last extension: clavrxorb
/// names its outputs after the granule (`clavrx_NAME.level2.hdf`, the mock `NAME.level2.bin`).
struct Owners<'a> {
    by: HashMap<&'a str, &'a str>,
}

impl<'a> Owners<'a> {
    fn new(names: impl Iterator<Item = &'a str>) -> Owners<'a> {
        let mut by = HashMap::new();
        for name in names {
            by.insert(name, name);
            if let Some((stem, _)) = name.rsplit_once('.') {
                if !stem.is_empty() {
                    by.entry(stem).or_insert(name);
                }
            }
        }
        Owners { by }
    }

    /// The granule a file is named after: the longest granule name (or stem) found in the
    /// file name between separators (`.`, `_`, `-`) or its ends.
    fn of(&self, file: &str) -> Option<&'a str> {
        let sep = |c: char| matches!(c, '.' | '_' | '-');
        let starts: Vec<usize> = std::iter::once(0)
            .chain(file.match_indices(sep).map(|(i, s)| i + s.len()))
            .collect();
        let ends: Vec<usize> = file
            .match_indices(sep)
            .map(|(i, _)| i)
            .chain(std::iter::once(file.len()))
            .collect();
        let mut best: Option<(&'a str, usize)> = None;
        for &s in &starts {
            for &e in ends.iter().filter(|&&e| e > s) {
                if let Some(&g) = self.by.get(&file[s..e]) {
                    if best.is_none_or(|(_, len)| e - s > len) {
                        best = Some((g, e - s));
                    }
                }
            }
        }
        best.map(|(g, _)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::Outcome;
    use crate::domain::ledger::testing::ledger;

    #[test]
    fn files_are_attributed_to_the_granule_they_are_named_after() {
        let names = ["MYD021KM.A2013001.0000.006.hdf", "a.gran", "a.gran2"];
        let owners = Owners::new(names.into_iter());
        assert_eq!(
            owners.of("clavrx_MYD021KM.A2013001.0000.006.level2.hdf"),
            Some("MYD021KM.A2013001.0000.006.hdf")
        );
        assert_eq!(owners.of("a.gran.level2.bin"), Some("a.gran"));
        assert_eq!(owners.of("a.gran2.level2.bin"), Some("a.gran2"));
        assert_eq!(owners.of("notes.txt"), None);
        assert_eq!(owners.of("ba.gran.x"), None, "only between separators");
        assert_eq!(
            partial_of(".a.gran.level2.bin.partial"),
            Some("a.gran.level2.bin")
        );
        assert_eq!(partial_of("a.partial"), None);
    }

    /// A done granule `name` whose one output `NAME.level2.bin` holds `bytes`.
    fn done(l: &Ledger, out: &Path, name: &str, bytes: &[u8]) {
        let me = Holder::current();
        let c = l.claim(name, &me).unwrap().unwrap();
        let file = format!("{name}.level2.bin");
        std::fs::write(out.join(&file), bytes).unwrap();
        reports::write_outputs(&out.join(reports::DIR), name, &[file]).unwrap();
        l.finish(c, Outcome::done()).unwrap();
    }

    #[test]
    fn changed_missing_and_stray_files_send_their_granule_back() {
        let out = tempfile::tempdir().unwrap();
        let l = ledger(&out.path().join("pseg-state"));
        let out = out.path();
        for name in ["a.gran", "b.gran", "c.gran", "d.gran"] {
            done(&l, out, name, &[1u8; 500]);
        }
        std::fs::create_dir_all(out.join("logs")).unwrap();
        std::fs::write(out.join("logs/job.out"), b"x").unwrap();
        let me = Holder::current();
        let clean = check(&l, out).unwrap();
        assert_eq!((clean.checked, clean.files, clean.bytes), (4, 4, 2000));
        assert!(clean.findings.is_empty(), "{:?}", clean.findings);

        std::fs::write(out.join("a.gran.level2.bin"), [1u8; 100]).unwrap();
        std::fs::remove_file(out.join("b.gran.level2.bin")).unwrap();
        std::fs::write(out.join(".c.gran.level2.bin.partial"), b"half").unwrap();
        let r = check(&l, out).unwrap();
        let lines: Vec<String> = r.findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            lines,
            [
                "a.gran: a.gran.level2.bin changed: 100 bytes, 500 when published",
                "b.gran: b.gran.level2.bin missing",
                "c.gran: .c.gran.level2.bin.partial unexpected: named after the granule but \
                 not in its outputs manifest (its listed outputs are intact; remove the file if \
                 it is not yours)",
            ]
        );
        assert_eq!(r.to_redo(), ["a.gran", "b.gran"]);
        // The resume rule already sees the truncation and the loss, not the stray file.
        let names: Vec<String> = ["a.gran", "b.gran", "c.gran", "d.gran"]
            .map(String::from)
            .to_vec();
        let l = l.with_output_check({
            let reports = out.join(reports::DIR);
            move |n| reports::outputs_present(&reports, n)
        });
        assert_eq!(l.pending(&names).unwrap(), ["a.gran", "b.gran"]);

        // Redone meanwhile (as another process would): left done.
        std::fs::write(out.join("b.gran.level2.bin"), [1u8; 500]).unwrap();
        let marked = record(&l, out, &r, &me).unwrap();
        assert_eq!(
            marked,
            [
                ("a.gran".to_string(), Marked::Marked),
                ("b.gran".to_string(), Marked::Fine),
            ]
        );
        let a = l.record("a.gran").unwrap().unwrap();
        assert_eq!(
            (a.status, a.kind),
            (
                Status::Failed,
                Some(crate::domain::ledger::FailureKind::OutputChanged)
            )
        );
        assert!(a.error.unwrap().contains("100 bytes, 500 when published"));
        assert!(l.budget().allows(&a.charged), "no retry used");
        assert_eq!(l.pending(&names).unwrap(), ["a.gran"]);
        for name in ["b.gran", "c.gran"] {
            assert_eq!(l.record(name).unwrap().unwrap().status, Status::Done);
        }
        assert!(crate::domain::ledger::testing::files_in(&l.dir().join("claims")).is_empty());
    }
}
