//! The file-system side of `gen`: every path the script names, made absolute and checked,
//! executables looked up, container binds worked out, and the log folder created.
//!
//! Paths the job reads on the host (list, options, image, a host executable) must exist now;
//! paths inside a container are taken as given, unless they exist on the host, in which case
//! their folder is bound. Each path is refused here if a script could not carry it (a line
//! break, `%` in the log folder, `:` or `,` in a bind). Nothing is created here: the caller
//! creates the log folder once every check passed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::domain::granule_list::GranuleList;
use crate::domain::script::error::GenError;
use crate::domain::script::settings::Settings;
use crate::domain::script::source::{Source, Sourced};
use crate::domain::site_config::is_bare_name;

/// Where a job's logs go, under the output folder.
pub const LOG_SUBDIR: &str = "logs";

/// The step's name on PATH and beside pseg-slurm.
const PSEG_STEP: &str = "pseg-step";
const CLAVRXORB: &str = "clavrxorb";

#[derive(Debug, Clone)]
pub struct Paths {
    pub list: PathBuf,
    pub options: PathBuf,
    pub out: PathBuf,
    pub log_dir: PathBuf,
    pub work: Option<PathBuf>,
    pub exe: Option<Sourced<PathBuf>>,
    pub pseg_step: Sourced<PathBuf>,
    pub container: Option<Container>,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub runtime: String,
    pub image: Sourced<PathBuf>,
    pub binds: Vec<PathBuf>,
}

/// `path` against `cwd` when relative, with `.` components dropped.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    cwd.join(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// `a/b/../c` -> `a/c`, without asking the file system (for comparing folders only).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::ParentDir if out.has_root() => {}
            other => out.push(other),
        }
    }
    out
}

/// Checks and completes every path of the script; creates `<out>/logs`.
pub fn resolve(
    s: &Settings,
    list: &GranuleList,
    list_path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Paths, GenError> {
    let in_container = s.container_image.is_some();
    let options = options_file(s)?;
    let out = output_folder(s)?;
    if let Some(work) = &s.work {
        check_work_folder(work)?;
    }
    let exe = clavrxorb(s, in_container, warnings)?;
    if let Some(exe) = &exe {
        printable("clavrxorb", exe)?;
    }
    let pseg_step = pseg_step(s, in_container)?;
    printable("pseg-step", &pseg_step)?;

    let list_file = Sourced::new(list_path.to_path_buf(), Source::Flag("--files"));
    printable("granule list", &list_file)?;
    let container = match &s.container_image {
        Some(image) => {
            must_be_file("container image", image)?;
            Some(Container {
                runtime: s.container_runtime.clone(),
                image: image.clone(),
                binds: binds(
                    s,
                    list,
                    list_path,
                    &options.value,
                    &out.value,
                    &[exe.as_ref(), Some(&pseg_step)],
                )?,
            })
        }
        None => None,
    };

    let log_dir = out.value.join(LOG_SUBDIR);
    Ok(Paths {
        list: list_path.to_path_buf(),
        options: options.value,
        out: out.value,
        log_dir,
        work: s.work.as_ref().map(|w| w.value.clone()),
        exe,
        pseg_step,
        container,
    })
}

/// The options file: set, and a file.
fn options_file(s: &Settings) -> Result<Sourced<PathBuf>, GenError> {
    let options = required(
        &s.options,
        "options file",
        "--options",
        "options",
        "put a clavrx_options file beside the list",
    )?;
    must_be_file("options file", &options)?;
    Ok(options)
}

/// The output folder: set, and a name a script and Slurm's `--output` can carry.
fn output_folder(s: &Settings) -> Result<Sourced<PathBuf>, GenError> {
    let out = required(
        &s.out,
        "output folder",
        "--out",
        "output_dir",
        "give a CLAVR-x file_list, whose line 2 names it",
    )?;
    printable("output folder", &out)?;
    if out.value.to_string_lossy().contains('%') {
        return Err(bad(
            "output folder",
            &out,
            "contains `%`, which Slurm reads as a pattern in --output; rename it",
        ));
    }
    Ok(out)
}

/// The work folder: a name a script and clavrxorb's file_list can carry.
fn check_work_folder(work: &Sourced<PathBuf>) -> Result<(), GenError> {
    printable("work folder", work)?;
    if let Some(why) = crate::domain::granule_list::file_list_problem(&work.value) {
        return Err(bad(
            "work folder",
            work,
            &format!("{why}, so clavrxorb's file_list cannot name it; rename it"),
        ));
    }
    Ok(())
}

/// clavrxorb as set (looked up on PATH when a bare name, a file when a host path), taken as
/// given inside a container, or found on PATH; `None` (with a warning) leaves it to the job.
fn clavrxorb(
    s: &Settings,
    in_container: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Sourced<PathBuf>>, GenError> {
    Ok(match &s.exe {
        Some(exe) if in_container => Some(exe.clone()),
        Some(exe) if is_bare_name(&exe.value) => Some(on_path("clavrxorb", exe)?),
        Some(exe) => {
            must_be_file("clavrxorb", exe)?;
            Some(exe.clone())
        }
        None if in_container => None,
        None => match which::which(CLAVRXORB) {
            Ok(found) => Some(Sourced::new(found, Source::Derived("clavrxorb on PATH"))),
            Err(_) => {
                warnings.push(
                    "clavrxorb is not on PATH here and no --exe or `clavrxorb` is set; \
                     pseg-step will look for it on the job's PATH"
                        .to_string(),
                );
                None
            }
        },
    })
}

fn required(
    value: &Option<Sourced<PathBuf>>,
    what: &'static str,
    flag: &'static str,
    key: &'static str,
    hint: &'static str,
) -> Result<Sourced<PathBuf>, GenError> {
    value.clone().ok_or(GenError::Missing {
        what,
        flag,
        key,
        hint,
    })
}

fn bad(what: &'static str, path: &Sourced<PathBuf>, problem: &str) -> GenError {
    GenError::BadPath {
        what,
        path: path.value.clone(),
        from: path.source.clone(),
        problem: problem.to_string(),
    }
}

fn must_be_file(what: &'static str, path: &Sourced<PathBuf>) -> Result<(), GenError> {
    match std::fs::metadata(&path.value) {
        Ok(m) if m.is_file() => printable(what, path),
        Ok(_) => Err(bad(what, path, "is not a file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(bad(what, path, "does not exist"))
        }
        Err(e) => Err(bad(what, path, &format!("cannot be read: {e}"))),
    }
}

/// A path goes into the script as UTF-8 text on one line.
fn printable(what: &'static str, path: &Sourced<PathBuf>) -> Result<(), GenError> {
    match path.value.to_str() {
        None => Err(bad(what, path, "is not valid UTF-8; rename it")),
        Some(s) if s.contains(['\n', '\r']) => {
            Err(bad(what, path, "contains a line break; rename it"))
        }
        Some(_) => Ok(()),
    }
}

/// A bare command name, found on this machine's PATH.
fn on_path(what: &'static str, name: &Sourced<PathBuf>) -> Result<Sourced<PathBuf>, GenError> {
    which::which(&name.value)
        .map(|found| Sourced::new(found, name.source.clone()))
        .map_err(|_| bad(what, name, "is not on PATH"))
}

/// The pseg-step the job runs: as set (a bare name is looked up on PATH, except inside a
/// container), else the one installed beside this pseg-slurm, else the one on PATH.
fn pseg_step(s: &Settings, in_container: bool) -> Result<Sourced<PathBuf>, GenError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(PSEG_STEP)))
        .unwrap_or_else(|| PathBuf::from(PSEG_STEP));
    match &s.pseg_step {
        Some(p) if in_container => Ok(p.clone()),
        Some(p) if is_bare_name(&p.value) => on_path("pseg-step", p),
        Some(p) => must_be_file("pseg-step", p).map(|()| p.clone()),
        None if in_container => Ok(Sourced::new(
            PathBuf::from(PSEG_STEP),
            Source::Derived("the container's PATH"),
        )),
        None if beside.is_file() => Ok(Sourced::new(
            beside,
            Source::Derived("installed beside pseg-slurm"),
        )),
        None => which::which(PSEG_STEP)
            .map(|found| Sourced::new(found, Source::Derived("pseg-step on PATH")))
            .map_err(|_| GenError::NoPsegStep { beside }),
    }
}

/// Folders to bind into the container: the list's folder, folders of granules outside it,
/// the options file's folder, output and work folders, the folders of executables given as
/// host paths (a file here; otherwise the path is the image's own), and the site's extra
/// binds. Nested folders are dropped (their parent is bound already).
fn binds(
    s: &Settings,
    list: &GranuleList,
    list_path: &Path,
    options: &Path,
    out: &Path,
    executables: &[Option<&Sourced<PathBuf>>],
) -> Result<Vec<PathBuf>, GenError> {
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let list_dir = lexical(&parent(list_path));
    let mut wanted: BTreeSet<PathBuf> = BTreeSet::new();
    wanted.insert(list_dir.clone());
    for g in &list.granules {
        let dir = lexical(&list_dir.join(parent(&g.path)));
        if !dir.starts_with(&list_dir) {
            wanted.insert(dir);
        }
    }
    wanted.insert(lexical(&parent(options)));
    wanted.insert(lexical(out));
    if let Some(work) = &s.work {
        wanted.insert(lexical(&work.value));
    }
    for exe in executables.iter().flatten() {
        if !is_bare_name(&exe.value) && exe.value.is_file() {
            wanted.insert(lexical(&parent(&exe.value)));
        }
    }
    wanted.extend(s.container_binds.iter().map(|b| lexical(b)));
    let mut kept: Vec<PathBuf> = Vec::new();
    for dir in wanted {
        if kept.iter().any(|k| dir.starts_with(k)) {
            continue;
        }
        let sourced = Sourced::new(dir.clone(), Source::Derived("container binds"));
        printable("bind folder", &sourced)?;
        if dir.to_string_lossy().contains([':', ',']) {
            return Err(bad(
                "bind folder",
                &sourced,
                "contains `:` or `,`, which apptainer --bind cannot take; rename it",
            ));
        }
        kept.push(dir);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_drops_dots_only() {
        assert_eq!(
            absolute(Path::new("/w"), Path::new("./a/./b.txt")),
            PathBuf::from("/w/a/b.txt")
        );
        assert_eq!(
            absolute(Path::new("/w"), Path::new("/x/../y")),
            PathBuf::from("/x/../y")
        );
        assert_eq!(
            lexical(Path::new("/d/list/../o/./x")),
            PathBuf::from("/d/o/x")
        );
        assert_eq!(lexical(Path::new("/../x")), PathBuf::from("/x"));
    }
}
