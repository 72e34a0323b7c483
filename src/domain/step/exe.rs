//! Finding clavrxorb from `--exe`: a path is taken as it is, a bare name is looked up on
//! `PATH`; when that fails, the error says what is wrong (a folder, a file without execute
//! permission, nothing there, not on the `PATH` it names), not only that it failed.
//!
//! [`find_in`] is given `PATH` and the current folder, so it is tested without touching the
//! process environment; [`find`] is the thin reader of both.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why `--exe` names no program this process can run.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("clavrxorb executable {}: no such file; give its path with --exe", path.display())]
    Missing { path: PathBuf },
    #[error(
        "clavrxorb executable {} is a directory, not a program; give the program's path with \
         --exe (e.g. {}/clavrxorb)",
        path.display(), path.display()
    )]
    Directory { path: PathBuf },
    #[error(
        "clavrxorb executable {} is not executable (mode {mode:o}); `chmod +x` it, or give \
         another with --exe",
        path.display()
    )]
    NotExecutable { path: PathBuf, mode: u32 },
    #[error("clavrxorb executable {}: {source}; give another with --exe", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "clavrxorb executable {} is not on PATH (searched {}){}; give its path with --exe, or \
         put its folder on PATH",
        name.display(),
        searched(path),
        unusable_note(unusable)
    )]
    NotOnPath {
        name: PathBuf,
        /// The `PATH` searched; `None` when it is unset.
        path: Option<OsString>,
        /// Files of that name on `PATH` that cannot be run, with why.
        unusable: Vec<(PathBuf, &'static str)>,
    },
}

fn searched(path: &Option<OsString>) -> String {
    match path {
        None => "nothing: PATH is not set".into(),
        Some(p) if p.is_empty() => "nothing: PATH is empty".into(),
        Some(p) => format!("PATH={}", p.to_string_lossy()),
    }
}

fn unusable_note(unusable: &[(PathBuf, &'static str)]) -> String {
    unusable
        .iter()
        .map(|(p, why)| format!("; {} is {why}", p.display()))
        .collect()
}

/// Finds `exe` as a shell would, with this process's `PATH` and folder.
pub fn find(exe: &Path) -> Result<PathBuf, ExeError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    find_in(exe, std::env::var_os("PATH").as_deref(), &cwd)
}

/// A name with a `/` is a path (relative to `cwd`); a bare name is searched on `path`
/// (an empty entry is the current folder, as in a shell).
pub fn find_in(exe: &Path, path: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, ExeError> {
    let bare = !exe.as_os_str().is_empty() && !exe.as_os_str().as_encoded_bytes().contains(&b'/');
    if !bare {
        let full = cwd.join(exe);
        return match inspect(&full) {
            Ok(()) => Ok(full),
            Err(Unusable::Missing) => Err(ExeError::Missing {
                path: exe.to_path_buf(),
            }),
            Err(Unusable::Directory) => Err(ExeError::Directory {
                path: exe.to_path_buf(),
            }),
            Err(Unusable::NotExecutable(mode)) => Err(ExeError::NotExecutable {
                path: exe.to_path_buf(),
                mode,
            }),
            Err(Unusable::Io(source)) => Err(ExeError::Unreadable {
                path: exe.to_path_buf(),
                source,
            }),
        };
    }
    let mut unusable = Vec::new();
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        let candidate = dir.join(exe);
        match inspect(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Unusable::Missing) | Err(Unusable::Io(_)) => {}
            Err(Unusable::Directory) => unusable.push((candidate, "a directory")),
            Err(Unusable::NotExecutable(_)) => unusable.push((candidate, "not executable")),
        }
    }
    Err(ExeError::NotOnPath {
        name: exe.to_path_buf(),
        path: path.map(OsStr::to_os_string),
        unusable,
    })
}

enum Unusable {
    Missing,
    Directory,
    NotExecutable(u32),
    Io(std::io::Error),
}

/// Whether `path` is a program: a file (through symlinks) with an execute bit. The bits, not
/// access(2): root may "execute" any file by access(2), but exec still needs a bit set.
fn inspect(path: &Path) -> Result<(), Unusable> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Unusable::Missing),
        Err(e) => Err(Unusable::Io(e)),
        Ok(m) if m.is_dir() => Err(Unusable::Directory),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(Unusable::NotExecutable(m.permissions().mode() & 0o7777))
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(bin.join("clavrxorb.d")).unwrap();
        std::fs::write(bin.join("clavrxorb"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            bin.join("clavrxorb"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(bin.join("plain"), "").unwrap();
        std::fs::set_permissions(bin.join("plain"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        dir
    }

    #[test]
    fn paths_say_what_is_wrong_with_them() {
        let dir = setup();
        let cwd = dir.path();
        let path = Some(OsStr::new("/nowhere"));
        let found = find_in(Path::new("bin/clavrxorb"), path, cwd).unwrap();
        assert_eq!(found, cwd.join("bin/clavrxorb"));
        let e = find_in(Path::new("bin/clavrxorb.d"), path, cwd).unwrap_err();
        assert!(matches!(e, ExeError::Directory { .. }), "{e}");
        assert!(
            e.to_string().contains("bin/clavrxorb.d is a directory"),
            "{e}"
        );
        let e = find_in(Path::new("bin/plain"), path, cwd).unwrap_err();
        assert!(
            e.to_string()
                .contains("bin/plain is not executable (mode 644)"),
            "{e}"
        );
        let e = find_in(Path::new("bin/none"), path, cwd).unwrap_err();
        assert!(e.to_string().contains("bin/none: no such file"), "{e}");
    }

    #[test]
    fn names_are_searched_on_path_and_the_path_is_named() {
        let dir = setup();
        let cwd = dir.path();
        let bin = cwd.join("bin");
        let path = std::env::join_paths(["/nowhere".as_ref(), bin.as_path()]).unwrap();
        let found = find_in(Path::new("clavrxorb"), Some(&path), cwd).unwrap();
        assert_eq!(found, bin.join("clavrxorb"));
        let e = find_in(
            Path::new("clavrxorb"),
            Some(OsStr::new("/nowhere:/also")),
            cwd,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("clavrxorb is not on PATH (searched PATH=/nowhere:/also)"),
            "{e}"
        );
        let e = find_in(Path::new("plain"), Some(&path), cwd).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("bin/plain is not executable"), "{text}");
        let e = find_in(Path::new("clavrxorb.d"), Some(&path), cwd).unwrap_err();
        assert!(e.to_string().contains("clavrxorb.d is a directory"), "{e}");
        let e = find_in(Path::new("clavrxorb"), None, cwd).unwrap_err();
        assert!(e.to_string().contains("PATH is not set"), "{e}");
        // An empty entry is the current folder, as in a shell.
        let found = find_in(Path::new("clavrxorb"), Some(OsStr::new("/nowhere:")), &bin);
        assert_eq!(found.unwrap(), bin.join("clavrxorb"));
    }
}
