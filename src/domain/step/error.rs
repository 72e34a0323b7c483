//! Why `pseg-step` could not start, and the exit status each reason maps to.

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
    /// The documented exit status (see `pseg-step --help`).
    pub fn exit_status(&self) -> u8 {
        match self {
            StepError::ExeNotFound(_) => 3,
            StepError::Tracer(_) => 4,
            StepError::List(ListError::Bad { .. }) => 6,
            StepError::List(_) => 5,
            StepError::Options(OptionsError::Unreadable { .. }) => 7,
            StepError::Options(_) => 8,
            StepError::NotWritable { .. } | StepError::NotForFileList { .. } => 9,
            StepError::Usage(_) => 2,
            StepError::Slurm(_) => 10,
            StepError::Os { source, .. } if super::storage::is_storage(source) => {
                super::STORAGE_EXIT
            }
            StepError::Os { .. } => 11,
            // A full state folder is a storage failure like a full output folder.
            StepError::Ledger(LedgerError::Write { source, .. })
                if super::storage::is_storage(source) =>
            {
                super::STORAGE_EXIT
            }
            StepError::Ledger(_) => 12,
        }
    }

    pub fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> StepError {
        move |source| StepError::Os { what, source }
    }
}
