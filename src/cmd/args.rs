//! The `pseg-slurm` command line: clap definitions only.
//!
//! Values are parsed into their types here (sizes, time limits, percentages) so a bad flag is
//! a usage error; merging with the site config and every other check happens in
//! `script::settings`. `pseg-step` has its own command line elsewhere.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::base::units::{Percent, Percentile, Size, TimeLimit};
use crate::domain::site_config;

/// Run CLAVR-x (clavrxorb) over many granules on Slurm, one segment per core.
#[derive(Debug, Parser)]
#[command(name = "pseg-slurm", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an sbatch script for a granule list: `pseg-slurm gen --files list.txt | sbatch`.
    ///
    /// The list is checked first (every bad line is reported); nothing is printed on stdout
    /// unless the whole script is good. Settings come from the flags, then the site config,
    /// then built-in defaults; the script's header comments say where each number came from.
    /// Sizes need a unit and are binary: K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024
    /// (`4000M`, `4G`; a bare `4000` is refused, B means bytes). The campaign
    /// (list, output folder, this command line) is recorded in `OUT/pseg-state/campaign.yaml`
    /// for `pseg-slurm status` and `pseg-slurm retry`.
    ///
    /// Exit status: 0 script printed, 1 a problem with the inputs (message on stderr),
    /// 2 a usage error.
    Gen(Box<GenArgs>),
    /// How a campaign is doing: counts by status, throughput, ETA, failures, hosts.
    ///
    /// Reads the campaign's state folder (`<gen --out>/pseg-state`): one record per granule,
    /// written by pseg-step as it claims, runs and finishes each one.
    ///
    /// Exit status: 0 printed, 1 no campaign state there (or it cannot be read), 2 a usage
    /// error.
    Status(StatusArgs),
    /// Print an sbatch script for the granules that still need it:
    /// `pseg-slurm retry --failed | sbatch`.
    ///
    /// Writes the granules' list into the state folder and renders it as the campaign's
    /// `gen` did (same config, flags and sizing); gen flags given here override those.
    /// Failed granules get a fresh retry budget. Without --failed or --missing, both.
    ///
    /// Exit status: 0 script printed, 1 a problem (message on stderr), 2 a usage error,
    /// 3 nothing to retry (nothing printed).
    Retry(Box<RetryArgs>),
    /// Free claims whose holder can never be proven dead: `pseg-slurm release OUT --host n7`.
    ///
    /// A claim is taken over automatically only when its holder is provably dead; a holder
    /// on another host or in a container without Slurm ids never is, so its granule stays
    /// claimed. This lists the matching claims with their holder (host, pid, job, since when)
    /// and releases those whose holder is not provably alive — never one whose holder is
    /// (on this host with its pid running since the same start time, or in a Slurm job still
    /// active). Their records become `interrupted` (redone on resume, no retry budget used).
    /// Without --yes it only prints what it would do.
    ///
    /// Exit status: 0 listed or released, 1 a problem (message on stderr), 2 a usage error.
    Release(ReleaseArgs),
    /// Check that every done granule's outputs are still what it published:
    /// `pseg-slurm verify OUT`.
    ///
    /// Reads every output file listed in the done granules' manifests
    /// (`OUT/pseg-reports/NAME.outputs`: name, size and BLAKE3 hash of each file, written
    /// when the granule was published) and compares it; files in OUT named after a done
    /// granule that its manifest does not list are reported too. One line per missing,
    /// changed or unexpected file, naming the granule. Those granules are recorded as
    /// failed (`output-changed`, no retry budget used), so the next run or
    /// `pseg-slurm retry --missing` redoes them. Manifests of older pseg-step versions have
    /// no sizes or hashes: their files are only checked to be there (a warning says how many).
    ///
    /// Exit status: 0 every output matches, 1 some do not (or a problem, on stderr), 2 a
    /// usage error.
    Verify(VerifyArgs),
    /// Write one self-contained HTML page about a run: `pseg-slurm report OUT -o report.html`.
    ///
    /// For a campaign (the output folder, with pseg-reports/ and pseg-state/): counts,
    /// throughput and granules running over time, wall times, the slowest and the failed
    /// granules; then, for the slowest few and the failed, each segment per worker over time,
    /// workers busy, and summed PSS and cgroup usage against the limit. For one report file,
    /// that granule alone. Inline SVG, no network, no JavaScript.
    ///
    /// Exit status: 0 written, 1 nothing to report there (or it cannot be read or written),
    /// 2 a usage error.
    Report(ReportArgs),
    /// How many CPUs per granule: projected wall time, speedup, efficiency and core-hours
    /// at each count, from measured granules: `pseg-slurm plan --profile OUT`.
    ///
    /// Replays the granule reports pseg-step wrote (each segment's read, processing and
    /// write, clavrxorb's start-up, the cost of each clone) through pseg-step's own fan-out
    /// logic on a virtual clock: the first segment processed by clavrxorb itself, at most
    /// two segments read ahead (pseg-step's default --max-lead), one writer at a time, the
    /// CPUs shared by everything runnable. Time spent waiting for a CPU on a busy machine is
    /// left out. Also projected: two granules in flight at once, sharing the CPUs
    /// (pseg-step runs one at a time today). Memory is not modelled: gen sizes it from the
    /// reports.
    ///
    /// Exit status: 0 printed, 1 the reports cannot be read or replayed, 2 a usage error.
    Plan(PlanArgs),
    /// Take a campaign from its granule list to verified outputs, hands-off:
    /// `pseg-slurm run --files file_list`.
    ///
    /// Without reports of done granules in OUT/pseg-reports, a pilot job of the largest few
    /// granules (--pilot) runs first with generous limits; the rest is then sized by gen
    /// from their reports (as `gen --profile OUT/pseg-reports`) and submitted through the
    /// same templates. It watches the jobs (squeue) and the records, and resubmits what is
    /// left: interrupted and lost granules as they were, out-of-memory failures with twice
    /// the memory (or half the workers), a job that finished nothing before its time limit
    /// in smaller chunks or with twice the limit; bad input never. Every submission and its
    /// reason is printed and recorded in OUT/pseg-state/campaign.yaml, so a run killed and
    /// started again watches its jobs instead of submitting them twice; a second run of the
    /// same campaign is refused while the first lives. It ends with `verify` and a report
    /// page (OUT/pseg-report.html). Takes every gen flag.
    ///
    /// Exit status: 0 every granule done, 1 some failed for good (listed on stderr) or a
    /// problem with the inputs, 2 a usage error, 3 --max-submissions reached or a Slurm error
    /// it cannot get past (run it again later: it resumes), 4 another run drives this
    /// campaign.
    Run(Box<RunArgs>),
    /// Site configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub gen_args: GenArgs,

    /// Granules in the pilot job (the largest files first); 0 for none.
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = "Run")]
    pub pilot: usize,

    /// At most this many jobs over the campaign, pilot included (earlier runs' count).
    #[arg(long, value_name = "K", default_value_t = 10, help_heading = "Run")]
    pub max_submissions: usize,

    /// Submit a small watcher job that runs this `pseg-slurm run` on the cluster, and
    /// return; if the site refuses it, print how to keep it running under nohup or tmux.
    #[arg(long, help_heading = "Run")]
    pub detach: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print an annotated example site config (the same as slurm/site.example.yaml).
    Init,
    /// Check a site config: unknown keys and bad values are reported with their line.
    Check {
        /// The site config to check.
        #[arg(long, short = 'c', env = "PSEG_SLURM_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
}

/// `--mode`: the flag's values for `site_config::Mode`, with their help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A job array: each element processes one chunk of granules.
    Array,
    /// One job of several tasks (`srun`): each task claims the next unclaimed granule until
    /// none are left.
    Tasks,
}

impl From<Mode> for site_config::Mode {
    fn from(mode: Mode) -> site_config::Mode {
        match mode {
            Mode::Array => site_config::Mode::Array,
            Mode::Tasks => site_config::Mode::Tasks,
        }
    }
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: counts, throughput, ETA, the first failures, hosts.
    #[default]
    Text,
    /// Every field, every failure.
    Yaml,
    /// The same as YAML, as JSON.
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The campaign: the output folder given to gen (`--out`), or its `pseg-state` folder.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The output folder given to gen or pseg-step (`--out`).
    #[arg(value_name = "OUT", default_value = ".")]
    pub dir: PathBuf,

    /// The campaign's state folder, when not `OUT/pseg-state` (pseg-step's `--state`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// pseg-step reports: the output folder (`--out`), its pseg-reports folder, or report
    /// files (`NAME.pseg.yaml`) of done fan-out runs. Repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub profile: Vec<PathBuf>,

    /// CPU counts to project, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64"
    )]
    pub cpus: Vec<NonZeroUsize>,

    /// Granules in the campaign, for its wall time.
    #[arg(long, value_name = "N")]
    pub granules: Option<NonZeroUsize>,

    /// Array elements (tasks) running at once, for the campaign's wall time.
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::MIN, requires = "granules")]
    pub array_concurrency: NonZeroUsize,

    /// text (a table), yaml or json (every figure, as data).
    #[arg(long, value_enum, default_value_t = Format::Text, hide_possible_values = true)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The output folder given to pseg-step (`--out`), its pseg-reports or pseg-state
    /// folder, or one granule's report (`NAME.pseg.yaml`).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// The page to write; `-` for stdout.
    #[arg(
        long,
        short = 'o',
        value_name = "FILE",
        default_value = "pseg-report.html"
    )]
    pub output: PathBuf,

    /// Draw this granule in detail too (by name). Repeatable.
    #[arg(long, short = 'g', value_name = "NAME")]
    pub granule: Vec<String>,

    /// Rows of the slowest-granules table.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub slowest: usize,

    /// The slowest granules drawn in detail.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub details: usize,

    /// Failed granules drawn in detail, at most.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub failed_details: usize,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true))]
pub struct ReleaseArgs {
    /// The campaign: the output folder given to gen (`--out`), or its `pseg-state` folder.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// The claim of this granule (by name). Repeatable.
    #[arg(long, short = 'g', value_name = "NAME", group = "which")]
    pub granule: Vec<String>,

    /// Claims whose holder ran on this host.
    #[arg(long, value_name = "HOST", group = "which")]
    pub host: Option<String>,

    /// Every claim whose holder is not provably alive (with --granule or --host: those).
    #[arg(long, group = "which")]
    pub all_unproven: bool,

    /// Release them; without it, only print what would be released.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The campaign: the output folder given to gen (`--out`), or its `pseg-state` folder.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// The granules that failed, including those out of retries (their budget starts
    /// again).
    #[arg(long)]
    pub failed: bool,

    /// The granules never finished: never started, interrupted, or held by a process that
    /// is provably dead.
    #[arg(long)]
    pub missing: bool,

    // --config, --mode and --template are gen's, but not flattened from a shared group: here
    // each replaces what the campaign's gen used (its help says so), and --config takes no
    // PSEG_SLURM_CONFIG, which would silently replace the campaign's config. `--files` is the
    // retry list. The flag groups below are gen's own.
    /// Site config, instead of the one the campaign's gen used.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// array or tasks, instead of the campaign's.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// A Tera template, instead of the campaign's.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,

    #[command(flatten)]
    pub sizing: SizingArgs,

    #[command(flatten)]
    pub slurm: SlurmArgs,

    #[command(flatten)]
    pub step: StepFlags,
}

#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// The granule list: one granule path per line, relative to the list's folder; or a
    /// CLAVR-x file_list (line 1 the input folder, line 2 the output folder, then granule
    /// names), recognised by its first line naming a folder.
    #[arg(long, short = 'f', value_name = "LIST")]
    pub files: PathBuf,

    /// Site config (YAML); `pseg-slurm config init` prints an annotated example.
    #[arg(long, short = 'c', env = "PSEG_SLURM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// array: a job array, one element per chunk of granules. tasks: one job whose srun tasks
    /// share the list. [default: the config's `mode`, else array]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// A Tera template replacing the built-in one for the chosen mode (overrides the config's
    /// `template_dir`). It may `{% extends "array.sbatch.tera" %}` and override blocks.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,

    #[command(flatten)]
    pub sizing: SizingArgs,

    #[command(flatten)]
    pub slurm: SlurmArgs,

    #[command(flatten)]
    pub step: StepFlags,
}

/// How memory and time are sized.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sizing")]
pub struct SizingArgs {
    /// pseg report files (`*.pseg.yaml`) or folders searched recursively for them; memory and
    /// time are sized from the measured granules. Repeatable.
    #[arg(long, value_name = "REPORT")]
    pub profile: Vec<PathBuf>,

    /// Measured peak memory of one granule's step (e.g. 7.2G); overrides the reports' memory.
    #[arg(long, value_name = "SIZE")]
    pub peak_mem: Option<Size>,

    /// Added to measured memory and time, in percent. [default: config, else 15]
    #[arg(long, value_name = "PERCENT")]
    pub headroom: Option<Percent>,

    /// Size by this percentile of the measured granules; 100 is the maximum.
    /// [default: config, else 100]
    #[arg(long, value_name = "P")]
    pub percentile: Option<Percentile>,
}

/// Slurm allocation flags; each overrides the site config key of the same name.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Slurm")]
pub struct SlurmArgs {
    /// Slurm partition (config `partition`).
    #[arg(long, short = 'p')]
    pub partition: Option<String>,

    /// Slurm account to charge (config `account`).
    #[arg(long, short = 'A')]
    pub account: Option<String>,

    /// Slurm quality of service (config `qos`).
    #[arg(long)]
    pub qos: Option<String>,

    /// Time limit: minutes, HH:MM:SS or D-HH:MM:SS; overrides any measured time.
    #[arg(long, short = 't', value_name = "TIME")]
    pub time: Option<TimeLimit>,

    /// Cores for one pseg-step (one segment per core). Default: the config's
    /// `cpus_per_task`, else the most cores `pseg-slurm plan` projects at `min_efficiency`
    /// from --profile (within the partition's nodes), else 4.
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<NonZeroU32>,

    /// Memory for one pseg-step when nothing is measured (config key `memory`).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<Size>,

    /// Job name, a plain name (letters, digits, `.`, `_`, `-`, `+`): it names the log files.
    /// [default: config `job_name`, else pseg-LISTNAME]
    #[arg(long, short = 'J', value_name = "NAME")]
    pub job_name: Option<String>,

    /// Array mode: granules per array element (grows when the array would be too large).
    #[arg(long, value_name = "K")]
    pub chunk_size: Option<NonZeroUsize>,

    /// Array mode: at most this many elements run at once (`--array=...%K`).
    #[arg(long, value_name = "K")]
    pub array_limit: Option<NonZeroU32>,

    /// Array mode: the cluster's MaxArraySize. [default: asked from `scontrol show config`,
    /// else 1001]
    #[arg(long, value_name = "N")]
    pub max_array_size: Option<usize>,

    /// Tasks mode: number of srun tasks.
    #[arg(long, short = 'n', value_name = "T")]
    pub ntasks: Option<NonZeroUsize>,

    /// Seconds before the time limit at which Slurm sends SIGUSR1 to pseg-step: it starts
    /// no new granule, lets each one in flight finish when projected to end in time, records
    /// the others interrupted (resumed later) and exits 138; 0 for none. [default: 120]
    #[arg(long, value_name = "SECS")]
    pub warning_seconds: Option<u16>,
}

/// What each task runs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Step")]
pub struct StepFlags {
    /// clavrxorb executable. [default: config `clavrxorb`, else clavrxorb on PATH]
    // A command: a bare name is looked up on PATH (retry keeps it a name, too).
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::CommandName)]
    pub exe: Option<PathBuf>,

    /// The clavrxorb options file. [default: clavrx_options beside the list, else config
    /// `options`]
    #[arg(long, value_name = "FILE")]
    pub options: Option<PathBuf>,

    /// Output folder; job logs go to its `logs/` folder, which gen creates. [default: a
    /// file_list's output folder, else config `output_dir`]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Work folder for pseg-step.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,

    /// The pseg-step to run. [default: config `pseg_step`, else the one beside pseg-slurm]
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::CommandName)]
    pub pseg_step: Option<PathBuf>,

    /// Run the step in this Apptainer/Singularity image (config `container_image`).
    #[arg(long, value_name = "IMAGE")]
    pub container: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_values() {
        let cli = Cli::try_parse_from([
            "pseg-slurm",
            "gen",
            "--files",
            "l.txt",
            "--peak-mem",
            "3.5G",
            "--time",
            "1-00:00:00",
            "--headroom",
            "20%",
            "--mode",
            "tasks",
        ])
        .unwrap();
        let Command::Gen(g) = cli.command else {
            panic!()
        };
        assert_eq!(g.sizing.peak_mem, Some(Size(3584 << 20)));
        assert_eq!(g.slurm.time.unwrap().seconds, 86400);
        assert_eq!(g.sizing.headroom.unwrap().basis_points, 2000);
        assert_eq!(g.mode, Some(Mode::Tasks));
        let e = Cli::try_parse_from(["pseg-slurm", "gen", "--files", "l", "--peak-mem", "8GB"])
            .unwrap_err();
        assert!(e.to_string().contains("write `G`"), "{e}");
        for flag in ["--peak-mem", "--memory"] {
            let e = Cli::try_parse_from(["pseg-slurm", "gen", "--files", "l", flag, "7500"])
                .unwrap_err();
            assert!(e.to_string().contains("`7500M`"), "{flag}: {e}");
        }
    }

    #[test]
    fn release_needs_a_selection() {
        let e = Cli::try_parse_from(["pseg-slurm", "release", "out"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let cli = Cli::try_parse_from([
            "pseg-slurm",
            "release",
            "out",
            "-g",
            "a",
            "-g",
            "b",
            "--host",
            "n7",
            "--yes",
        ])
        .unwrap();
        let Command::Release(r) = cli.command else {
            panic!()
        };
        assert_eq!(r.granule, ["a", "b"]);
        assert_eq!(r.host.as_deref(), Some("n7"));
        assert!(r.yes && !r.all_unproven);
    }

    #[test]
    fn verify_takes_the_output_folder_and_a_state_folder() {
        let cli = Cli::try_parse_from(["pseg-slurm", "verify", "out", "--state", "s"]).unwrap();
        let Command::Verify(v) = cli.command else {
            panic!()
        };
        assert_eq!((v.dir, v.state), ("out".into(), Some("s".into())));
    }

    #[test]
    fn status_and_retry_take_a_folder_and_gen_flags() {
        let cli = Cli::try_parse_from(["pseg-slurm", "status", "out", "--format", "json"]).unwrap();
        let Command::Status(s) = cli.command else {
            panic!()
        };
        assert_eq!((s.dir, s.format), (PathBuf::from("out"), Format::Json));
        let cli = Cli::try_parse_from([
            "pseg-slurm",
            "retry",
            "--failed",
            "--partition",
            "long",
            "--time",
            "90",
            "--warning-seconds",
            "300",
        ])
        .unwrap();
        let Command::Retry(r) = cli.command else {
            panic!()
        };
        assert_eq!(r.dir, PathBuf::from("."));
        assert!(r.failed && !r.missing);
        assert_eq!(r.slurm.partition.as_deref(), Some("long"));
        assert_eq!(r.slurm.time.unwrap().seconds, 5400);
        assert_eq!(r.slurm.warning_seconds, Some(300));
        assert!(Cli::try_parse_from(["pseg-slurm", "retry", "--files", "l.txt"]).is_err());
        assert!(
            Cli::try_parse_from([
                "pseg-slurm",
                "gen",
                "--files",
                "l",
                "--warning-seconds",
                "70000"
            ])
            .is_err()
        );
    }
}
