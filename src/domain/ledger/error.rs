//! What can go wrong with a campaign's state folder, each naming the file involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the campaign state folder {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a file pseg-slurm wrote ({message}); move it out of the state folder \
         and run again"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "granule {name}: this process no longer holds its claim {path} ({now}); its outcome \
         was not recorded, so the new holder's work is not overwritten"
    )]
    ClaimLost {
        name: String,
        path: PathBuf,
        now: String,
    },
    #[error(
        "{dir} holds no campaign state (no campaign.yaml or records/ there or in {dir}/{}); \
         pass the output folder given to `gen --out`, or its state folder",
        crate::domain::ledger::STATE_DIR
    )]
    NoState { dir: PathBuf },
    #[error(
        "{path} does not exist: this campaign was not started by `pseg-slurm gen`, so its \
         granule list is unknown"
    )]
    NoCampaign { path: PathBuf },
    #[error(
        "{path} belongs to another campaign: {how}; give this one its own --out (or remove {path} to start over)"
    )]
    OtherCampaign { path: PathBuf, how: String },
}

impl LedgerError {
    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LedgerError {
        let path = path.into();
        move |source| LedgerError::Write { path, source }
    }

    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LedgerError {
        let path = path.into();
        move |source| LedgerError::Read { path, source }
    }
}
