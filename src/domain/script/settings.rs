//! Merging `gen`'s flags over the site config, remembering where every value came from.
//!
//! A flag beats what the granule list implies (a CLAVR-x file_list's output folder,
//! `clavrx_options` beside the list: the run folder's own settings), which beats the config
//! key of the same name, which beats a built-in default; each value is a [`Sourced`] so the
//! script's header can say which one won. No file is read here (relative flag paths are made
//! absolute against the current folder); [`Settings::take_list_defaults`] only `stat`s.

use std::path::{Path, PathBuf};

use crate::base::units::{Percent, Percentile, Size, TimeLimit};
use crate::domain::granule_list::GranuleList;
use crate::domain::script::error::GenError;
use crate::domain::script::request::{self, Request};
use crate::domain::script::sizing::DEFAULT_HEADROOM;
use crate::domain::script::source::{Source, Sourced};
use crate::domain::site_config::{Mode, SiteConfig, is_bare_name};

/// Seconds before the time limit that Slurm warns pseg-step (SIGUSR1) by default.
pub const DEFAULT_WARNING_SECONDS: u16 = 120;

/// pseg-step's default `--drain-margin`: a granule kept on the warning must be projected to
/// end this long before the job does.
const DRAIN_MARGIN_SECONDS: f64 = 30.0;

/// The warning (seconds before the time limit) that leaves room for the slowest measured
/// segment to finish after it, with pseg-step's drain margin on top.
pub fn warning_for(slowest_segment_seconds: Option<f64>) -> Option<u16> {
    let slowest = slowest_segment_seconds.filter(|s| s.is_finite() && *s >= 0.0)?;
    let seconds = (slowest + DRAIN_MARGIN_SECONDS).ceil();
    Some(seconds.min(f64::from(u16::MAX)) as u16)
}

/// The flag if given, else the config key, else nothing.
fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    config: Option<T>,
    key: &'static str,
) -> Option<Sourced<T>> {
    flag.map(|v| Sourced::new(v, Source::Flag(flag_name)))
        .or_else(|| config.map(|v| Sourced::new(v, Source::Config(key))))
}

/// Every setting `gen` uses, merged; paths absolute.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Sourced<Mode>,
    pub partition: Option<Sourced<String>>,
    pub account: Option<Sourced<String>>,
    pub qos: Option<Sourced<String>>,
    pub time: Option<Sourced<TimeLimit>>,
    pub cpus_per_task: Sourced<u32>,
    pub memory: Option<Sourced<Size>>,
    pub job_name: Option<Sourced<String>>,
    pub headroom: Sourced<Percent>,
    pub percentile: Sourced<Percentile>,
    pub chunk_size: Sourced<usize>,
    pub array_limit: Option<Sourced<u32>>,
    pub max_array_size: Option<Sourced<usize>>,
    pub ntasks: Option<Sourced<usize>>,
    /// `--signal=USR1@N`: seconds of warning before the time limit; 0 for none.
    pub warning_seconds: Sourced<u16>,
    pub exe: Option<Sourced<PathBuf>>,
    pub options: Option<Sourced<PathBuf>>,
    pub out: Option<Sourced<PathBuf>>,
    pub work: Option<Sourced<PathBuf>>,
    pub pseg_step: Option<Sourced<PathBuf>>,
    pub max_workers: Option<usize>,
    pub max_lead: Option<usize>,
    pub scan_lines: Option<usize>,
    pub stall_timeout: Option<usize>,
    pub serial: bool,
    pub keep_work: bool,
    pub step_args: Vec<String>,
    pub container_image: Option<Sourced<PathBuf>>,
    pub container_runtime: String,
    pub container_binds: Vec<PathBuf>,
    pub template_file: Option<PathBuf>,
    pub template_dir: Option<PathBuf>,
    pub extra_sbatch: Vec<String>,
    pub setup: Vec<String>,
}

/// Merges flags over the config. `cwd` is what relative flag paths are relative to.
pub fn resolve(args: &Request, config: &SiteConfig, cwd: &Path) -> Result<Settings, GenError> {
    let mode = pick(args.mode, "--mode", config.mode, "mode")
        .unwrap_or(Sourced::new(Mode::Array, Source::Default));
    refuse_other_mode_flags(&args.slurm, &mode)?;
    check_sbatch_values(&args.slurm, config)?;
    let job_name = job_name(&args.slurm, config)?;
    let Allocation {
        partition,
        account,
        qos,
        time,
        cpus_per_task,
        memory,
        chunk_size,
        array_limit,
        max_array_size,
        ntasks,
        warning_seconds,
    } = allocation(&args.slurm, config);
    let StepPaths {
        exe,
        options,
        out,
        work,
        pseg_step,
        container_image,
    } = step_paths(&args.step, config, cwd);
    Ok(Settings {
        mode,
        partition,
        account,
        qos,
        time,
        cpus_per_task,
        memory,
        job_name,
        headroom: pick(
            args.sizing.headroom,
            "--headroom",
            config.headroom,
            "headroom",
        )
        .unwrap_or(Sourced::new(DEFAULT_HEADROOM, Source::Default)),
        percentile: pick(
            args.sizing.percentile,
            "--percentile",
            config.percentile,
            "percentile",
        )
        .unwrap_or(Sourced::new(Percentile::MAX, Source::Default)),
        chunk_size,
        array_limit,
        max_array_size,
        ntasks,
        warning_seconds,
        exe,
        options,
        out,
        work,
        pseg_step,
        max_workers: config.max_workers.map(|n| n.get()),
        max_lead: config.max_lead.map(|n| n.get()),
        scan_lines: config.scan_lines.map(|n| n.get()),
        stall_timeout: config.stall_timeout.map(|n| n.get()),
        serial: config.serial.unwrap_or(false),
        keep_work: config.keep_work.unwrap_or(false),
        step_args: config.step_args.clone(),
        container_image,
        container_runtime: config
            .container_runtime
            .clone()
            .unwrap_or_else(|| "apptainer".to_string()),
        container_binds: config.container_binds.clone(),
        template_file: args.template.as_ref().map(|p| cwd.join(p)),
        template_dir: config.template_dir.clone(),
        extra_sbatch: config
            .extra_sbatch
            .iter()
            .map(|l| normalize_directive(l))
            .collect(),
        setup: config.setup.clone(),
    })
}

/// Flags only the other mode reads are refused (config keys of the other mode are fine: one
/// config serves both modes).
fn refuse_other_mode_flags(s: &request::Slurm, mode: &Sourced<Mode>) -> Result<(), GenError> {
    let wrong_mode = |flag: &'static str, wanted: Mode| GenError::WrongMode {
        flag,
        wanted,
        mode: mode.value,
        from: mode.source.clone(),
    };
    if mode.value == Mode::Tasks {
        for (given, flag) in [
            (s.chunk_size.is_some(), "--chunk-size"),
            (s.array_limit.is_some(), "--array-limit"),
            (s.max_array_size.is_some(), "--max-array-size"),
        ] {
            if given {
                return Err(wrong_mode(flag, Mode::Array));
            }
        }
    }
    if mode.value == Mode::Array && s.ntasks.is_some() {
        return Err(wrong_mode("--ntasks", Mode::Tasks));
    }
    Ok(())
}

/// Every value that goes on an `#SBATCH` line, from a flag or the config, stays on it.
fn check_sbatch_values(s: &request::Slurm, config: &SiteConfig) -> Result<(), GenError> {
    for (what, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
        ("--job-name", &s.job_name),
        ("partition", &config.partition),
        ("account", &config.account),
        ("qos", &config.qos),
        ("job_name", &config.job_name),
    ] {
        if let Some(v) = value {
            single_line(what, v)?;
        }
    }
    for line in &config.extra_sbatch {
        single_line("extra_sbatch", line)?;
    }
    Ok(())
}

/// The job name, when given: a plain name, since it names the log files.
fn job_name(s: &request::Slurm, config: &SiteConfig) -> Result<Option<Sourced<String>>, GenError> {
    let job_name = pick(
        s.job_name.clone(),
        "--job-name",
        config.job_name.clone(),
        "job_name",
    );
    if let Some(name) = job_name.as_ref().filter(|n| !is_plain_name(&n.value)) {
        return Err(GenError::BadJobName {
            value: name.value.clone(),
            from: name.source.clone(),
        });
    }
    Ok(job_name)
}

/// What Slurm is asked for and how the list is cut, merged.
struct Allocation {
    partition: Option<Sourced<String>>,
    account: Option<Sourced<String>>,
    qos: Option<Sourced<String>>,
    time: Option<Sourced<TimeLimit>>,
    cpus_per_task: Sourced<u32>,
    memory: Option<Sourced<Size>>,
    chunk_size: Sourced<usize>,
    array_limit: Option<Sourced<u32>>,
    max_array_size: Option<Sourced<usize>>,
    ntasks: Option<Sourced<usize>>,
    warning_seconds: Sourced<u16>,
}

fn allocation(s: &request::Slurm, config: &SiteConfig) -> Allocation {
    Allocation {
        partition: pick(
            s.partition.clone(),
            "--partition",
            config.partition.clone(),
            "partition",
        ),
        account: pick(
            s.account.clone(),
            "--account",
            config.account.clone(),
            "account",
        ),
        qos: pick(s.qos.clone(), "--qos", config.qos.clone(), "qos"),
        time: pick(s.time, "--time", config.time, "time"),
        cpus_per_task: pick(
            s.cpus_per_task.map(|n| n.get()),
            "--cpus-per-task",
            config.cpus_per_task.map(|n| n.get()),
            "cpus_per_task",
        )
        .unwrap_or(Sourced::new(1, Source::Default)),
        memory: pick(s.memory, "--memory", config.memory, "memory"),
        chunk_size: pick(
            s.chunk_size.map(|n| n.get()),
            "--chunk-size",
            config.granules_per_task.map(|n| n.get()),
            "granules_per_task",
        )
        .unwrap_or(Sourced::new(1, Source::Default)),
        array_limit: pick(
            s.array_limit.map(|n| n.get()),
            "--array-limit",
            config.array_limit.map(|n| n.get()),
            "array_limit",
        ),
        max_array_size: pick(
            s.max_array_size,
            "--max-array-size",
            config.max_array_size,
            "max_array_size",
        ),
        ntasks: pick(
            s.ntasks.map(|n| n.get()),
            "--ntasks",
            config.ntasks.map(|n| n.get()),
            "ntasks",
        ),
        warning_seconds: s
            .warning_seconds
            .map(|n| Sourced::new(n, Source::Flag("--warning-seconds")))
            .unwrap_or(Sourced::new(DEFAULT_WARNING_SECONDS, Source::Default)),
    }
}

/// The files and folders each task uses, merged; flag paths absolute against `cwd`.
struct StepPaths {
    exe: Option<Sourced<PathBuf>>,
    options: Option<Sourced<PathBuf>>,
    out: Option<Sourced<PathBuf>>,
    work: Option<Sourced<PathBuf>>,
    pseg_step: Option<Sourced<PathBuf>>,
    container_image: Option<Sourced<PathBuf>>,
}

fn step_paths(st: &request::Step, config: &SiteConfig, cwd: &Path) -> StepPaths {
    let abs = |p: &PathBuf| cwd.join(p);
    // Executables: a bare name (no folder) stays a name, looked up on PATH later.
    let command = |p: &PathBuf| if is_bare_name(p) { p.clone() } else { abs(p) };
    StepPaths {
        exe: pick(
            st.exe.as_ref().map(command),
            "--exe",
            config.clavrxorb.clone(),
            "clavrxorb",
        ),
        options: pick(
            st.options.as_ref().map(abs),
            "--options",
            config.options.clone(),
            "options",
        ),
        out: pick(
            st.out.as_ref().map(abs),
            "--out",
            config.output_dir.clone(),
            "output_dir",
        ),
        work: pick(
            st.work.as_ref().map(abs),
            "--work",
            config.work_dir.clone(),
            "work_dir",
        ),
        pseg_step: pick(
            st.pseg_step.as_ref().map(command),
            "--pseg-step",
            config.pseg_step.clone(),
            "pseg_step",
        ),
        container_image: pick(
            st.container.as_ref().map(abs),
            "--container",
            config.container_image.clone(),
            "container_image",
        ),
    }
}

impl Settings {
    /// Takes what the list implies where no flag said otherwise: a file_list's output folder,
    /// and `clavrx_options` beside the list when it is there.
    pub fn take_list_defaults(&mut self, list: &GranuleList) {
        let flagged = |v: &Option<Sourced<PathBuf>>| {
            matches!(
                v,
                Some(Sourced {
                    source: Source::Flag(_),
                    ..
                })
            )
        };
        if let Some(out) = list.output_dir().filter(|_| !flagged(&self.out)) {
            self.out = Some(Sourced::new(
                out.to_path_buf(),
                Source::Derived("line 2 of the CLAVR-x file_list"),
            ));
        }
        let beside = list.options_beside();
        if !flagged(&self.options) && beside.is_file() {
            self.options = Some(Sourced::new(
                beside,
                Source::Derived("clavrx_options beside the list"),
            ));
        }
    }
}

/// A name that stays one plain file name inside `OUT/logs/` (Slurm's `%x`).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// A value that goes on an `#SBATCH` line must stay on it.
fn single_line(what: &'static str, value: &str) -> Result<(), GenError> {
    if value.trim().is_empty() || value.contains(|c: char| c.is_control()) {
        return Err(GenError::BadValue {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// `#SBATCH --x`, `--x` and ` --x ` all become `--x`.
fn normalize_directive(line: &str) -> String {
    let t = line.trim();
    t.strip_prefix("#SBATCH").unwrap_or(t).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    /// A request for `l.txt` (`gen --files l.txt`) with what `set` gives on top.
    fn args(set: impl FnOnce(&mut Request)) -> Request {
        let mut r = Request::new("l.txt".into(), |_, _| Ok(()));
        set(&mut r);
        r
    }

    fn none(_: &mut Request) {}

    fn config(text: &str) -> SiteConfig {
        SiteConfig::parse(text, Path::new("/etc/site.yaml")).unwrap()
    }

    #[test]
    fn flags_beat_config_beats_default() {
        let c = config("partition: short\ncpus_per_task: 8\nqos: low\n");
        let s = resolve(
            &args(|r| r.slurm.partition = Some("long".into())),
            &c,
            Path::new("/w"),
        )
        .unwrap();
        let p = s.partition.unwrap();
        assert_eq!(
            (p.value.as_str(), p.source),
            ("long", Source::Flag("--partition"))
        );
        assert_eq!(s.cpus_per_task.value, 8);
        assert_eq!(s.cpus_per_task.source, Source::Config("cpus_per_task"));
        assert_eq!(s.qos.unwrap().source.to_string(), "site config `qos`");
        assert_eq!(s.headroom.value, DEFAULT_HEADROOM);
        assert_eq!(s.headroom.source, Source::Default);
        assert_eq!(s.mode.value, Mode::Array);
        assert!(s.account.is_none());
    }

    #[test]
    fn flag_paths_are_absolute_against_cwd() {
        let s = resolve(
            &args(|r| {
                r.step.options = Some("o.txt".into());
                r.step.out = Some("/abs/out".into());
                r.step.pseg_step = Some("pseg-step".into());
            }),
            &SiteConfig::default(),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(s.options.unwrap().value, PathBuf::from("/w/o.txt"));
        assert_eq!(s.out.unwrap().value, PathBuf::from("/abs/out"));
        assert_eq!(s.pseg_step.unwrap().value, PathBuf::from("pseg-step"));
    }

    #[test]
    fn flags_of_the_other_mode_are_refused() {
        let e = resolve(
            &args(|r| {
                r.mode = Some(Mode::Tasks);
                r.slurm.chunk_size = NonZeroUsize::new(3);
            }),
            &SiteConfig::default(),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--chunk-size"), "{e}");
        let e = resolve(
            &args(|r| r.slurm.ntasks = NonZeroUsize::new(3)),
            &config("mode: array\n"),
            Path::new("/w"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--ntasks") && msg.contains("site config `mode`"),
            "{msg}"
        );
        // Config keys of the other mode are fine: one config serves both modes.
        assert!(resolve(&args(none), &config("ntasks: 4\n"), Path::new("/w")).is_ok());
    }

    #[test]
    fn job_names_are_plain_names() {
        for bad in ["../x", "a/b", "a b", ".hidden", "x%j"] {
            let e = resolve(
                &args(|r| r.slurm.job_name = Some(bad.into())),
                &SiteConfig::default(),
                Path::new("/w"),
            )
            .unwrap_err();
            assert!(matches!(e, GenError::BadJobName { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("--job-name flag"), "{e}");
        }
        let e = resolve(&args(none), &config("job_name: logs/x\n"), Path::new("/w")).unwrap_err();
        assert!(e.to_string().contains("site config `job_name`"), "{e}");
        let s = resolve(
            &args(|r| r.slurm.job_name = Some("pseg-2024.v1_a+b".into())),
            &SiteConfig::default(),
            Path::new("/w"),
        );
        assert!(s.is_ok());
    }

    #[test]
    fn values_for_directives_stay_on_one_line() {
        let e = resolve(
            &args(|r| r.slurm.job_name = Some("a\nb".into())),
            &SiteConfig::default(),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--job-name"), "{e}");
        let c = config("extra_sbatch: ['']\n");
        assert!(resolve(&args(none), &c, Path::new("/w")).is_err());
    }

    #[test]
    fn bare_executable_names_stay_names() {
        let s = resolve(
            &args(|r| {
                r.step.exe = Some("clavrxorb".into());
                r.step.pseg_step = Some("./pseg-step".into());
            }),
            &SiteConfig::default(),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(s.exe.unwrap().value, PathBuf::from("clavrxorb"));
        assert_eq!(s.pseg_step.unwrap().value, PathBuf::from("/w/pseg-step"));
    }

    #[test]
    fn directives_lose_their_prefix() {
        let c = config("extra_sbatch: ['#SBATCH --exclusive', ' --constraint=x ']\n");
        let s = resolve(&args(none), &c, Path::new("/w")).unwrap();
        assert_eq!(s.extra_sbatch, vec!["--exclusive", "--constraint=x"]);
    }

    #[test]
    fn the_warning_covers_the_slowest_segment_and_the_drain_margin() {
        assert_eq!(warning_for(Some(200.0)), Some(230));
        assert_eq!(warning_for(Some(0.4)), Some(31));
        assert_eq!(warning_for(None), None);
        assert_eq!(warning_for(Some(f64::NAN)), None);
        assert_eq!(warning_for(Some(1e9)), Some(u16::MAX));
    }
}
