//! What a caller asks `gen` for: the list, the config and every gen setting the user may
//! give, `None` (or empty) where not given. Plain data, no command-line parsing: the command
//! layer builds it from its flags (`pseg-slurm gen`, `retry`, `run`).

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use crate::base::units::{Percent, Percentile, Size, TimeLimit};
use crate::domain::script::error::GenError;
use crate::domain::site_config::Mode;

/// Checks the pseg-step command line gen made (`argv`, program name first) the way pseg-step
/// will read it; `step_args` are the site config's extra arguments, already in `argv`.
/// Supplied by the caller, which owns pseg-step's parser: a script whose step command line
/// pseg-step would refuse is never printed.
pub type StepArgvCheck = fn(step_args: &[String], argv: &[String]) -> Result<(), GenError>;

/// One gen call.
#[derive(Debug, Clone)]
pub struct Request {
    /// The granule list.
    pub files: PathBuf,
    /// The site config, if any.
    pub config: Option<PathBuf>,
    pub mode: Option<Mode>,
    /// A template replacing the built-in one for the mode.
    pub template: Option<PathBuf>,
    pub sizing: Sizing,
    pub slurm: Slurm,
    pub step: Step,
    pub check_step_argv: StepArgvCheck,
}

impl Request {
    /// A request for `files` with nothing else given.
    pub fn new(files: PathBuf, check_step_argv: StepArgvCheck) -> Request {
        Request {
            files,
            config: None,
            mode: None,
            template: None,
            sizing: Sizing::default(),
            slurm: Slurm::default(),
            step: Step::default(),
            check_step_argv,
        }
    }
}

/// How memory and time are sized.
#[derive(Debug, Clone, Default)]
pub struct Sizing {
    /// Report files or folders of them.
    pub profile: Vec<PathBuf>,
    pub peak_mem: Option<Size>,
    pub headroom: Option<Percent>,
    pub percentile: Option<Percentile>,
}

/// The Slurm allocation; each overrides the site config key of the same name.
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub time: Option<TimeLimit>,
    pub cpus_per_task: Option<NonZeroU32>,
    pub memory: Option<Size>,
    pub job_name: Option<String>,
    pub chunk_size: Option<NonZeroUsize>,
    pub array_limit: Option<NonZeroU32>,
    pub max_array_size: Option<usize>,
    pub ntasks: Option<NonZeroUsize>,
    pub warning_seconds: Option<u16>,
}

/// What each task runs.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub exe: Option<PathBuf>,
    pub options: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub pseg_step: Option<PathBuf>,
    pub container: Option<PathBuf>,
}
