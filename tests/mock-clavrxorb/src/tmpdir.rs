//! The process's temporary directory `clavrx_tmp.<pid>` in the working
//! directory: created at start, removed at every controlled exit, and
//! registered with the SIGTERM/SIGINT handler (in `sys`) so a signalled
//! process removes its own directory too. Holds nothing inside it.

use std::io;
use std::path::PathBuf;

use crate::failure::{self, Failure};
use crate::sys;

/// The directory this process owns (none in a clone before it made its own).
pub struct TmpDir {
    path: Option<PathBuf>,
}

impl TmpDir {
    /// Creates `clavrx_tmp.<this pid>` and points the signal handler at it.
    /// Call with SIGTERM/SIGINT blocked if another process's directory may
    /// be registered (a clone inherits its parent's).
    pub fn create() -> Result<TmpDir, Failure> {
        let name = format!("clavrx_tmp.{}", sys::getpid());
        let path = std::env::current_dir()
            .map(|cwd| cwd.join(&name))
            .map_err(|e| Failure::system(format!("working directory: {e}")))?;
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Failure::system(format!("creating {}: {e}", path.display()))),
        }
        sys::set_handler_tmpdir(&path)
            .map_err(|e| Failure::system(format!("registering {}: {e}", path.display())))?;
        Ok(TmpDir { path: Some(path) })
    }

    /// Forgets the directory without removing it (a clone's inherited one
    /// belongs to the parent).
    pub fn disown(&mut self) {
        sys::clear_handler_tmpdir();
        self.path = None;
    }

    /// Removes the directory (if this process owns one).
    pub fn remove(&mut self) {
        sys::clear_handler_tmpdir();
        let Some(path) = self.path.take() else {
            return;
        };
        match std::fs::remove_dir(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                failure::report(format_args!("removing {}: {e}", path.display()));
            }
            _ => {}
        }
    }
}
