//! Everything that stops `gen` from printing a script, each case naming what to fix.

use std::path::PathBuf;

use crate::domain::granule_list::ListError;
use crate::domain::script::layout::LayoutError;
use crate::domain::script::profile::ProfileError;
use crate::domain::script::source::Source;
use crate::domain::script::templates::TemplateError;
use crate::domain::site_config::{ConfigError, Mode};

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
    #[error("no {what} given: pass {flag}, set `{key}` in the site config (--config), or {hint}")]
    Missing {
        what: &'static str,
        flag: &'static str,
        key: &'static str,
        hint: &'static str,
    },
    #[error(
        "the time limit {time} (from the {time_from}) is not longer than the {warning} s warning \
         (from the {warning_from}): pseg-step would be told to stop before it starts; raise \
         --time or lower --warning-seconds"
    )]
    TimeNotAfterWarning {
        time: String,
        time_from: Source,
        warning: u16,
        warning_from: Source,
    },
    #[error(
        "job name {value:?} (from the {from}) is not a plain name: it names the log files in \
         OUT/logs, so use only letters, digits, `.`, `_`, `-` and `+` (not starting with `.`)"
    )]
    BadJobName { value: String, from: Source },
    #[error("`step_args` in the site config set {flag}, which gen sets itself; {instead}")]
    StepArgSetByGen { flag: String, instead: String },
    #[error("pseg-step would refuse the command line gen made{}: {message}", match from {
        Some(s) => format!(" (its extra arguments come from the {s})"),
        None => String::new(),
    })]
    StepArgs {
        message: String,
        from: Option<Source>,
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
