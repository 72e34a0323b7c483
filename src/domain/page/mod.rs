//! `pseg-slurm report`: one self-contained HTML page about a run, drawn from the reports
//! `pseg-step` writes (`pseg-reports/*.pseg.yaml`) and the campaign's ledger records
//! (`pseg-state`). Inline SVG and CSS only: no network, no JavaScript (tooltips are SVG
//! `<title>`s).
//!
//! The campaign part is aggregated so it stays readable and fast for 100 000 granules: time
//! bins, the N slowest, the failed up to a cap; full reports are read only for the granules
//! the page details (the slowest few, the failed, and any asked for by name).
//!
//! - `load.rs`: finding and reading records and reports (the only file access);
//! - `aggregate.rs`: the aggregation (pure);
//! - `svg.rs`, `segment_chart.rs`, `charts.rs`: the drawings (pure); `fmt.rs`: how numbers
//!   read on the page;
//! - `build.rs` and `page.html.tera`: the page around them.

mod aggregate;
mod build;
mod charts;
pub(crate) mod fmt;
mod load;
#[cfg(test)]
mod markup;
mod segment_chart;
mod svg;
#[cfg(test)]
pub(crate) mod testing;

use std::path::{Path, PathBuf};

use crate::domain::ledger::LedgerError;

/// What the page holds beyond the campaign's figures.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows of the slowest-granules table.
    pub slowest: usize,
    /// The slowest granules drawn in detail.
    pub details: usize,
    /// Failed granules drawn in detail, at most.
    pub failed_details: usize,
    /// Rows of the failed-granules table, at most.
    pub failed_rows: usize,
    /// Granules drawn in detail whatever their rank.
    pub granules: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            slowest: 20,
            details: 5,
            failed_details: 10,
            failed_rows: 30,
            granules: Vec::new(),
        }
    }
}

/// Why no page could be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "{path} does not exist: give an output folder (with pseg-reports/ and pseg-state/) or a .pseg.yaml report"
    )]
    NotFound { path: PathBuf },
    #[error(
        "{path} holds no reports (pseg-reports/*.pseg.yaml) and no campaign state (pseg-state/): \
         give the folder pseg-step wrote with --out"
    )]
    NothingThere { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a granule report: {why}")]
    Report { path: PathBuf, why: String },
    #[error("no granule named {name:?} in this campaign{hint}")]
    UnknownGranule { name: String, hint: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the page template failed")]
    Template(#[source] tera::Error),
}

/// A rendered page, and what it holds.
#[derive(Debug)]
pub struct Rendered {
    pub html: String,
    pub granules: usize,
    /// Granules drawn in detail.
    pub details: usize,
    /// Problems worth a line on stderr (unreadable files, missing reports).
    pub warnings: Vec<String>,
}

/// The page for the campaign or report at `path`.
pub fn render(path: &Path, options: &Options) -> Result<Rendered, RenderError> {
    let loaded = load::load(path)?;
    build::build(path, &loaded, options)
}
