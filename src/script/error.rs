//! Everything that stops `gen` from printing a script, each case naming what to fix.

use std::path::PathBuf;

use crate::config::{ConfigError, Mode};
use crate::granules::ListError;
use crate::script::layout::LayoutError;
use crate::script::profile::ProfileError;
use crate::script::settings::Source;
use crate::script::templates::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("no {what} given: pass {flag} or set `{key}` in the site config (--config)")]
    Missing {
        what: &'static str,
        flag: &'static str,
        key: &'static str,
    },
    #[error("{what} {path} (from the {from}) {problem}")]
    BadPath {
        what: &'static str,
        path: PathBuf,
        from: Source,
        problem: String,
    },
    #[error("{what} {value:?} cannot go on an #SBATCH line: it is empty or holds a line break")]
    BadValue { what: &'static str, value: String },
    #[error(
        "{flag} only applies to --mode {}, but the mode is {} (from the {from})",
        wanted.name(), mode.name()
    )]
    WrongMode {
        flag: &'static str,
        wanted: Mode,
        mode: Mode,
        from: Source,
    },
    #[error("tasks mode needs a task count: pass --ntasks T or set `ntasks` in the site config")]
    NoTaskCount,
    #[error(
        "cannot find pseg-step beside {beside} or on PATH; pass --pseg-step PATH \
         or set `pseg_step` in the site config"
    )]
    NoPsegStep { beside: PathBuf },
    #[error("cannot create the log folder {path}: {source}")]
    CreateLogDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot determine the current folder: {0}")]
    Cwd(std::io::Error),
}
