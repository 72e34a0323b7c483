//! The variables a script template sees: the one contract between `gen` and site templates.
//!
//! Every field below is a Tera variable of the same name. Paths are absolute strings, left
//! unquoted (quote them in a template with the `sh` filter for bash, `sbatch` for a
//! directive value); `command` is already quoted. Optional values are absent (`null`) when
//! unset, so templates test them with `{% if partition %}`. Renaming a field breaks site
//! templates: add, don't rename.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ScriptContext {
    /// pseg-slurm's version.
    pub version: String,
    /// `array` or `tasks`.
    pub mode: &'static str,
    /// `--job-name`.
    pub job_name: String,
    /// `--partition`, `--account`, `--qos`, when set.
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--time` in Slurm's form (`HH:MM:SS` or `D-HH:MM:SS`), when known.
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: u32,
    /// `--mem-per-cpu` in MiB, when known.
    pub mem_per_cpu_mib: Option<u64>,
    /// Granules in the list.
    pub n_granules: usize,
    /// The most granules one task processes one after another.
    pub granules_per_task: usize,
    /// Array mode only.
    pub array: Option<ArrayVars>,
    /// Tasks in the job (tasks mode) or per array element (1).
    pub ntasks: usize,
    /// `--signal=USR1@N`: seconds before the time limit that Slurm sends SIGUSR1 to the job
    /// steps (pseg-step records its granule interrupted and stops); 0 for no warning.
    pub warning_seconds: u16,
    /// `--output`: the log file pattern (`%x`, `%A`, `%a`, `%j` are Slurm's).
    pub log_path: String,
    /// The folder of the logs (created by gen).
    pub log_dir: String,
    /// The granule list.
    pub list_file: String,
    /// The clavrxorb options file.
    pub options_file: String,
    /// The output folder.
    pub output_dir: String,
    /// The work folder, when set.
    pub work_dir: Option<String>,
    /// The clavrxorb executable, when set (else pseg-step finds it).
    pub exe: Option<String>,
    /// The pseg-step executable (a bare name inside a container).
    pub pseg_step: String,
    /// The container, when the step runs in one.
    pub container: Option<ContainerVars>,
    /// pseg-step and its arguments, one word each, unquoted.
    pub step_argv: Vec<String>,
    /// The whole command to launch per task, container wrapper included, quoted for bash.
    pub command: String,
    /// Extra `#SBATCH` options from the site config (without the `#SBATCH` prefix).
    pub extra_sbatch: Vec<String>,
    /// Shell lines from the site config, run before the step.
    pub setup: Vec<String>,
    /// One line per setting: its value and where it came from. For the header comments.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArrayVars {
    /// Granules per element.
    pub chunk_size: usize,
    /// Number of elements.
    pub chunks: usize,
    /// Highest element index (`chunks - 1`).
    pub last_index: usize,
    /// `%K`: elements running at once, when limited.
    pub limit: Option<u32>,
    /// The whole `--array` value, e.g. `0-99%20`.
    pub spec: String,
    /// The cluster's MaxArraySize the array was fitted to.
    pub max_array_size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerVars {
    /// `apptainer` or `singularity`.
    pub runtime: String,
    /// The image path.
    pub image: String,
    /// Folders bound into the container at the same path.
    pub binds: Vec<String>,
}
