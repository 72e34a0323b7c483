//! `pseg-slurm gen`: from a granule list, a site config and flags to one complete sbatch
//! script, with a header that says where every number came from.
//!
//! The caller asks with a [`Request`] (plain data: the command layer turns flags into it).
//! [`generate`] reads and checks the inputs (list, config, reports, paths), then the pure
//! parts decide: [`layout`] cuts the list, [`sizing`] turns measurements into memory and
//! time, [`templates`] renders [`context::ScriptContext`]. Nothing is written to stdout or
//! created here, so a refused input leaves nothing behind; the caller creates the log folder
//! ([`Generated::create_log_dir`]) once it accepted the script.

pub mod cluster;
pub mod context;
pub mod cores;
pub mod error;
pub mod layout;
pub mod profile;
pub mod quote;
pub mod request;
pub mod settings;
pub mod sizing;
pub mod source;
pub mod templates;

mod assemble;
mod paths;

use std::path::PathBuf;

use crate::domain::granule_list::read_list;
use crate::domain::site_config::SiteConfig;
use source::{Source, Sourced};

pub use error::GenError;
pub use request::{Request, StepArgvCheck};

/// A rendered script and what the user should hear about it on stderr.
#[derive(Debug, Clone)]
pub struct Generated {
    pub script: String,
    pub warnings: Vec<String>,
    /// The granule list, the output folder and the site config the script was made from,
    /// absolute (for the campaign's state folder).
    pub list: PathBuf,
    pub out: PathBuf,
    pub config: Option<PathBuf>,
    /// Where the job's logs go; Slurm does not create it.
    pub log_dir: PathBuf,
}

impl Generated {
    /// Creates the log folder the script names.
    pub fn create_log_dir(&self) -> Result<(), GenError> {
        std::fs::create_dir_all(&self.log_dir).map_err(|source| GenError::CreateLogDir {
            path: self.log_dir.clone(),
            source,
        })
    }
}

/// Runs `gen`: checks everything, then renders. See the module comment.
pub fn generate(args: &Request) -> Result<Generated, GenError> {
    let cwd = std::env::current_dir().map_err(GenError::Cwd)?;
    generate_in(args, &cwd)
}

/// [`generate`] with relative paths in `args` taken against `cwd` instead of the current
/// folder (`pseg-slurm retry` replays a gen call made elsewhere).
pub fn generate_in(args: &Request, cwd: &std::path::Path) -> Result<Generated, GenError> {
    let cwd = cwd.to_path_buf();
    let config_path = args.config.as_ref().map(|p| paths::absolute(&cwd, p));
    let config = match &config_path {
        Some(path) => SiteConfig::load(path)?,
        None => SiteConfig::default(),
    };
    let list_path = paths::absolute(&cwd, &args.files);
    let list = read_list(&list_path)?;
    list.check()?;
    let mut settings = settings::resolve(args, &config, &cwd)?;
    settings.take_list_defaults(&list);
    let reports: Vec<PathBuf> = args
        .sizing
        .profile
        .iter()
        .map(|p| paths::absolute(&cwd, p))
        .collect();
    let measurements = profile::read_all(&reports)?;
    let mut warnings = Vec::new();
    if settings.warning_seconds.source == Source::Default
        && let Some(warning) = settings::warning_for(measurements.slowest_segment_seconds())
        && warning > settings.warning_seconds.value
        // A limit given by hand that the longer warning would not fit under keeps the default.
        && settings
            .time
            .as_ref()
            .is_none_or(|t| t.value.seconds > u64::from(warning))
    {
        settings.warning_seconds = Sourced::new(
            warning,
            Source::Derived(
                "the profile's slowest segment plus pseg-step's 30 s drain margin, so a \
                 segment in flight when the warning comes can still be written",
            ),
        );
    }
    let cores = (settings.cpus_per_task.source == Source::Default).then(|| {
        let choice = cores::choose(&settings, config.min_efficiency, &reports, &mut warnings);
        settings.cpus_per_task.value = choice.cpus;
        choice
    });
    let paths = paths::resolve(&settings, &list, &list_path, &mut warnings)?;
    let templates = templates::Templates::load(
        settings.mode.value,
        settings.template_file.as_deref(),
        settings.template_dir.as_deref(),
    )?;
    let inputs = assemble::Inputs {
        settings: &settings,
        paths: &paths,
        n_granules: list.granules.len(),
        config_path: config_path.as_deref(),
        measurements: &measurements,
        peak_mem: args.sizing.peak_mem,
        check_step_argv: args.check_step_argv,
        template: &templates.what,
        list_kind: list.describe(),
        cores: cores.as_ref(),
    };
    let context = assemble::context(&inputs, &mut warnings)?;
    let script = templates.render(&context)?;
    Ok(Generated {
        script,
        warnings,
        list: list_path,
        out: paths.out,
        config: config_path,
        log_dir: paths.log_dir,
    })
}
