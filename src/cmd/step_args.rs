//! `pseg-step`'s command line (clap definitions only).

use std::path::PathBuf;

use clap::Parser;

pub const EXIT_STATUSES: &str = "\
Exit status:
  0    every granule of this task is done
  1    some granules failed (each is named above, with its log)
  2    bad command line
  3    clavrxorb not found (--exe, or PATH): missing, a directory, not executable, not on PATH
  4    the executable has no tracer symbols (needs a CLAVR-x built with tracer support; or use --serial)
  5    the granule list cannot be read, is too large, or names no granule
  6    the list names a missing, unreadable or repeated granule
  7    the options file cannot be read
  8    the options file has no scan_lines, sets it twice, or it is not a whole number >= 1
  9    the output, work or state directory cannot be written, at the start or later (disk
       full, quota, I/O error, read-only): that granule is recorded as a `storage` failure
       without using its retry budget, none of its outputs is left, and the step stops: no
       granule starts after it, the others in flight are ended and recorded interrupted (no
       retry budget used, nothing of theirs left in the output folder), granules done before
       stay done; or a path cannot be written into clavrxorb's file_list (a line break, or
       blanks at either end)
  10   the Slurm environment (SLURM_PROCID, SLURM_NTASKS, SLURM_ARRAY_TASK_ID) is inconsistent,
       e.g. an array element past the end of the list (exit 0, with a notice, if the list is
       known to have shrunk since the campaign was recorded)
  11   the operating system refused something pseg-step needs (signals, processes)
  12   the campaign state directory (--state) cannot be read or written (not a storage failure)
  128+N  interrupted by signal N: 138 SIGUSR1 (Slurm's warning before the time limit),
       143 SIGTERM, 130 SIGINT, 129 SIGHUP; every clavrxorb was ended first and the granule
       recorded as interrupted: submitting again resumes it

With --check: 0 all checks passed, 3 and 4 as above, 11 the OS forbids reading and writing a
child's memory (ptrace policy, security module, no /proc).";

/// A finite, non-negative number of seconds, at most a day (`inf` and `nan` are not).
fn seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not a number of seconds; write a finite number from 0 to 86400, e.g. 0.25"
        )),
    }
}

/// Run clavrxorb over granules, fanning each granule's segments out to clones in parallel.
#[derive(Debug, Parser)]
#[command(name = "pseg-step", version, after_help = EXIT_STATUSES, args_override_self = true)]
pub struct StepArgs {
    /// Granule list: one path per line, relative to the list's folder; `#` comments allowed.
    /// Or CLAVR-x's own file_list (line 1 the input folder, line 2 the output folder, then
    /// granule names relative to the input folder), recognised by its first line naming a
    /// folder.
    #[arg(long, value_name = "LIST", required_unless_present = "check")]
    pub files: Option<PathBuf>,

    /// The clavrxorb executable (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH", default_value = "clavrxorb")]
    pub exe: PathBuf,

    /// Your clavrx_options file. It is copied per granule, never edited [default:
    /// clavrx_options beside the list, as clavrxorb reads it in its run folder].
    #[arg(long, value_name = "FILE")]
    pub options: Option<PathBuf>,

    /// Where finished outputs go. A granule's outputs appear here only once it succeeded
    /// [default: a file_list's output folder (line 2); required with a plain list].
    #[arg(long, value_name = "DIR")]
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

    /// Granules in flight at once: the next one's clavrxorb starts while the last starts up,
    /// processes its first segment or finishes its last ones, so no worker slot idles between
    /// granules (1: one granule after another). All share the --max-workers slots, a
    /// clavrxorb starting up or on its first segment counting as one. --serial runs one.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_granules: u64,

    /// No fan-out: clavrxorb processes every segment itself, the tracer on without clones
    /// (followed, timed and proven complete all the same). A build without tracer symbols
    /// runs without the tracer, on the weaker proof: exit 0 and every output non-empty.
    #[arg(long)]
    pub serial: bool,

    /// Granules per Slurm array element (set by `pseg-slurm gen`).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: Option<u64>,

    /// Seconds a granule's processes may go without a state change or any CPU use.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: u64,

    /// On Slurm's time-limit warning (SIGUSR1), a granule in flight goes on only when it is
    /// projected to finish at least this long before the job ends.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_margin: u64,

    /// Seconds between memory samples of every process (0: only at waitpoints). The interval
    /// stretches by itself so sampling never takes over 1 % of the time.
    #[arg(long, value_name = "SECS", default_value_t = 0.25, value_parser = seconds)]
    pub sample_interval: f64,

    /// Memory this step may use, when no cgroup or Slurm limit says (e.g. 12G; binary units).
    #[arg(long, value_name = "SIZE")]
    pub mem_budget: Option<crate::base::units::Size>,

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
