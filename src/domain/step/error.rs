//! Why `pseg-step` could not start (or had to stop): one variant per reason the command maps
//! to its own exit status. No exit codes here: `cmd::step` chooses them.

use std::path::PathBuf;

use super::exe::ExeError;
use crate::domain::clavrx_options::OptionsError;
use crate::domain::granule_list::ListError;
use crate::domain::ledger::LedgerError;
use crate::domain::task_share::MappingError;
use crate::domain::tracer::ElfError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    ExeNotFound(#[from] ExeError),
    #[error(transparent)]
    Tracer(#[from] ElfError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(
        "cannot write to {what} {path}: {source}; choose a directory you can write with {flag}"
    )]
    NotWritable {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} {path} {why}, so clavrxorb's file_list cannot name it; choose another with {flag}"
    )]
    NotForFileList {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        why: &'static str,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Slurm(#[from] MappingError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        source: std::io::Error,
    },
}

impl StepError {
    /// A folder refused a write (disk full, quota, I/O error, read-only): the folder's fault,
    /// like a granule's `storage` failure. A full state folder counts like a full output folder.
    pub fn is_storage_failure(&self) -> bool {
        match self {
            StepError::Os { source, .. } | StepError::Ledger(LedgerError::Write { source, .. }) => {
                super::storage::is_storage(source)
            }
            _ => false,
        }
    }

    pub fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> StepError {
        move |source| StepError::Os { what, source }
    }
}
