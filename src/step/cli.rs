//! `pseg-step`'s command line (clap definitions only).

use std::path::PathBuf;

use clap::Parser;

pub const EXIT_STATUSES: &str = "\
Exit status:
  0    every granule of this task is done
  1    some granules failed (each is named above, with its log)
  2    bad command line
  3    clavrxorb not found (--exe, or PATH)
  4    the executable has no tracer symbols (needs a CLAVR-x built with tracer support; or use --serial)
  5    the granule list cannot be read, or names no granule
  6    the list names a missing, unreadable or repeated granule
  7    the options file cannot be read
  8    the options file has no scan_lines, or it is not a whole number >= 1
  9    the output or work directory cannot be written
  10   the Slurm environment (SLURM_PROCID, SLURM_NTASKS, SLURM_ARRAY_TASK_ID) is inconsistent
  11   the operating system refused something pseg-step needs (signals, processes)
  12   the campaign state directory (--state) cannot be read or written
  128+N  interrupted by signal N: 138 SIGUSR1 (Slurm's warning before the time limit),
       143 SIGTERM, 130 SIGINT, 129 SIGHUP; every clavrxorb was ended first and the granule
       recorded as interrupted: submitting again resumes it

With --check: 0 all checks passed, 3 and 4 as above, 11 the OS forbids reading and writing a
child's memory (ptrace policy, security module, no /proc).";

/// Run clavrxorb over granules, fanning each granule's segments out to clones in parallel.
#[derive(Debug, Parser)]
#[command(name = "pseg-step", version, after_help = EXIT_STATUSES, args_override_self = true)]
pub struct StepArgs {
    /// Granule list: one path per line, relative to the list's folder; `#` comments allowed.
    #[arg(long, value_name = "LIST", required_unless_present = "check")]
    pub files: Option<PathBuf>,

    /// The clavrxorb executable (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH", default_value = "clavrxorb")]
    pub exe: PathBuf,

    /// Your clavrx_options file. It is copied per granule, never edited.
    #[arg(long, value_name = "FILE", required_unless_present = "check")]
    pub options: Option<PathBuf>,

    /// Where finished outputs go. A granule's outputs appear here only once it succeeded.
    #[arg(long, value_name = "DIR", required_unless_present = "check")]
    pub out: Option<PathBuf>,

    /// The campaign's state: one record per granule, claims [default: OUT/pseg-state].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// Working directories, one per granule, with clavrxorb's logs, kept when a granule fails
    /// [default: a temporary directory in TMPDIR, with failed granules' copied to
    /// OUT/pseg-failed].
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,

    /// Segment size in scan lines, instead of the options file's scan_lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub scan_lines: Option<u32>,

    /// Clones processing at once [default: the CPUs this process may use].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_workers: Option<u64>,

    /// Segments the reading process may run ahead of the workers.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_lead: u64,

    /// Run clavrxorb plainly, one granule after another, without the tracer.
    #[arg(long)]
    pub serial: bool,

    /// Granules per Slurm array element (set by `pseg-slurm gen`).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: Option<u64>,

    /// Seconds a granule's processes may go without a state change or any CPU use.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: u64,

    /// Seconds between memory samples of every process (0: only at waitpoints). The interval
    /// stretches by itself so sampling never takes over 1 % of the time.
    #[arg(long, value_name = "SECS", default_value_t = 0.25)]
    pub sample_interval: f64,

    /// Memory this step may use, when no cgroup or Slurm limit says (e.g. 12G; binary units).
    #[arg(long, value_name = "SIZE")]
    pub mem_budget: Option<crate::size::Size>,

    /// Reports of earlier runs (granule reports, step summaries, or folders of them): their
    /// workers' private memory is admission's estimate until this step measures its own.
    #[arg(long, value_name = "PATH")]
    pub profile: Vec<std::path::PathBuf>,

    /// Start a worker only while memory allows one more (needs a known limit).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub mem_admission: String,

    /// Keep each granule's working directory even when it succeeded.
    #[arg(long)]
    pub keep_work: bool,

    /// Check this machine instead of running: clavrxorb and its tracer symbols, permission
    /// to read and write a child's memory, the cgroup and memory limit. Non-zero when
    /// something is missing, with the reason.
    #[arg(long)]
    pub check: bool,
}
