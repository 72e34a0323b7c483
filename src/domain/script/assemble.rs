//! Putting a script's numbers together: the array or task layout, memory and time, the
//! pseg-step command line, and one header note per setting saying where it came from.
//!
//! Takes checked inputs and returns the template context; the only outside call is asking
//! scontrol for MaxArraySize (array mode, when neither a flag nor the config gives it).

use std::path::Path;

use crate::base::size::Size;
use crate::domain::script::cluster;
use crate::domain::script::context::{ArrayVars, ContainerVars, ScriptContext};
use crate::domain::script::cores;
use crate::domain::script::error::GenError;
use crate::domain::script::layout;
use crate::domain::script::paths::Paths;
use crate::domain::script::profile::Measurements;
use crate::domain::script::quote;
use crate::domain::script::settings::{Settings, Source, Sourced};
use crate::domain::script::sizing;
use crate::domain::site_config::{Mode, Percent, Percentile, TimeLimit};

/// Everything `context` needs, checked.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub paths: &'a Paths,
    pub n_granules: usize,
    pub config_path: Option<&'a Path>,
    pub measurements: &'a Measurements,
    pub peak_mem: Option<Size>,
    /// What renders the script (for the header).
    pub template: &'a str,
    /// What the list is, in words ([`crate::domain::granule_list::GranuleList::describe`]).
    pub list_kind: String,
    /// How gen chose `--cpus-per-task`, when neither a flag nor the config gave it.
    pub cores: Option<&'a cores::Choice>,
}

/// How the list is spread: the array or the tasks, with notes.
struct Spread {
    array: Option<ArrayVars>,
    ntasks: usize,
    /// Granules one task processes one after another.
    granules_per_task: usize,
    notes: Vec<String>,
}

/// Builds the template context; `warnings` collects what stderr should say.
pub fn context(inputs: &Inputs, warnings: &mut Vec<String>) -> Result<ScriptContext, GenError> {
    let s = inputs.settings;
    let p = inputs.paths;
    let n = inputs.n_granules;
    let mut notes = vec![
        format!(
            "{}{}; all present and readable when generated",
            inputs.list_kind[..1].to_uppercase(),
            &inputs.list_kind[1..]
        ),
        match inputs.config_path {
            Some(path) => format!("Site config: {}", path.display()),
            None => "Site config: none (flags and built-in defaults only)".to_string(),
        },
        format!("Template: {}", inputs.template),
    ];
    let spread = match s.mode.value {
        Mode::Array => array_spread(s, n, warnings)?,
        Mode::Tasks => tasks_spread(s, n)?,
    };
    notes.extend(spread.notes);
    let cpus = s.cpus_per_task.value;
    notes.push(match inputs.cores {
        Some(choice) => format!("--cpus-per-task={cpus}: {}", choice.note),
        None => format!("--cpus-per-task={cpus}: {}", s.cpus_per_task.source),
    });
    let (mem_per_cpu_mib, mem_note) = memory(inputs, warnings);
    notes.push(mem_note);
    let (time, time_note) = time(inputs, spread.granules_per_task, warnings);
    notes.push(time_note);
    let warning = s.warning_seconds.value;
    if let Some(t) = time
        .as_ref()
        .filter(|t| warning > 0 && t.value.seconds <= u64::from(warning))
    {
        return Err(GenError::TimeNotAfterWarning {
            time: t.value.to_string(),
            time_from: t.source.clone(),
            warning,
            warning_from: s.warning_seconds.source.clone(),
        });
    }
    let time = time.map(|t| t.value.to_string());
    for (flag, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
    ] {
        if let Some(v) = value {
            notes.push(format!("{flag}={}: {}", v.value, v.source));
        }
    }
    notes.push(if warning > 0 {
        format!(
            "--signal=USR1@{warning}: {}; on SIGUSR1 this long before the time limit (up to a \
             minute earlier) pseg-step starts no new granule and lets each one in flight \
             finish when it is projected to end in time, recording the others interrupted",
            s.warning_seconds.source
        )
    } else {
        format!("--signal: none ({})", s.warning_seconds.source)
    });
    let job_name = match &s.job_name {
        Some(name) => {
            notes.push(format!("--job-name={}: {}", name.value, name.source));
            name.value.clone()
        }
        None => {
            let name = default_job_name(&p.list);
            notes.push(format!("--job-name={name}: default, pseg-<list name>"));
            name
        }
    };
    let log_path = p.log_dir.join(match s.mode.value {
        Mode::Array => "%x-%A_%a.out",
        Mode::Tasks => "%x-%j.out",
    });
    notes.push(format!(
        "--output: one log per {} in {} (created by gen)",
        match s.mode.value {
            Mode::Array => "array element",
            Mode::Tasks => "job",
        },
        p.log_dir.display()
    ));
    if let Some(exe) = &p.exe {
        notes.push(format!(
            "clavrxorb: {} ({})",
            exe.value.display(),
            exe.source
        ));
    }
    notes.push(format!(
        "pseg-step: {} ({})",
        p.pseg_step.value.display(),
        p.pseg_step.source
    ));

    let step_argv = step_argv(s, p, spread.array.as_ref());
    check_step_argv(s, &step_argv)?;
    let container = p.container.as_ref().map(|c| ContainerVars {
        runtime: c.runtime.clone(),
        image: text(&c.image.value),
        binds: c.binds.iter().map(|b| text(b)).collect(),
    });
    if let (Some(c), Some(image)) = (&container, &p.container) {
        notes.push(format!(
            "Container: {} ({}), run with `{} exec`, binding {}",
            c.image,
            image.image.source,
            c.runtime,
            c.binds.join(", ")
        ));
    }
    let command = command(&step_argv, container.as_ref());
    Ok(ScriptContext {
        version: env!("CARGO_PKG_VERSION").to_string(),
        mode: s.mode.value.name(),
        job_name,
        partition: s.partition.as_ref().map(|v| v.value.clone()),
        account: s.account.as_ref().map(|v| v.value.clone()),
        qos: s.qos.as_ref().map(|v| v.value.clone()),
        time,
        cpus_per_task: cpus,
        mem_per_cpu_mib,
        n_granules: n,
        granules_per_task: spread.granules_per_task,
        array: spread.array,
        ntasks: spread.ntasks,
        warning_seconds: warning,
        log_path: text(&log_path),
        log_dir: text(&p.log_dir),
        list_file: text(&p.list),
        options_file: text(&p.options),
        output_dir: text(&p.out),
        work_dir: p.work.as_deref().map(text),
        exe: p.exe.as_ref().map(|e| text(&e.value)),
        pseg_step: text(&p.pseg_step.value),
        container,
        step_argv,
        command,
        extra_sbatch: s.extra_sbatch.clone(),
        setup: s.setup.clone(),
        notes: notes.iter().map(|n| one_line(n)).collect(),
    })
}

fn array_spread(s: &Settings, n: usize, warnings: &mut Vec<String>) -> Result<Spread, GenError> {
    let max = max_array_size(s, warnings);
    let a = layout::array_layout(n, s.chunk_size.value, max.value)?;
    let limit = s.array_limit.as_ref();
    let spec = match limit {
        Some(k) => format!("0-{}%{}", a.last_index(), k.value),
        None => format!("0-{}", a.last_index()),
    };
    let mut note = format!(
        "--array={spec}: {n} granule{} in {} chunk{} of {} ({})",
        plural(n),
        a.chunks,
        plural(a.chunks),
        a.chunk_size,
        s.chunk_size.source
    );
    if a.grown() {
        note = format!(
            "--array={spec}: {n} granule{} in {} chunk{} of {}; chunks of {} ({}) would need \
             {} elements, more than MaxArraySize {} ({}) allows",
            plural(n),
            a.chunks,
            plural(a.chunks),
            a.chunk_size,
            a.requested,
            s.chunk_size.source,
            n.div_ceil(a.requested),
            max.value,
            max.source
        );
        warnings.push(format!(
            "{n} granules in chunks of {} would exceed MaxArraySize {}; each array element \
             takes {} granules instead",
            a.requested, max.value, a.chunk_size
        ));
    } else {
        note.push_str(&format!("; MaxArraySize {} ({})", max.value, max.source));
    }
    let mut notes = vec![note];
    if let Some(k) = limit {
        notes.push(format!(
            "%{}: at most {} elements at once ({})",
            k.value, k.value, k.source
        ));
    }
    Ok(Spread {
        array: Some(ArrayVars {
            chunk_size: a.chunk_size,
            chunks: a.chunks,
            last_index: a.last_index(),
            limit: limit.map(|k| k.value),
            spec,
            max_array_size: max.value,
        }),
        ntasks: 1,
        granules_per_task: a.chunk_size.min(n),
        notes,
    })
}

/// Flag, config, `scontrol show config`, else Slurm's default.
fn max_array_size(s: &Settings, warnings: &mut Vec<String>) -> Sourced<usize> {
    if let Some(max) = &s.max_array_size {
        return max.clone();
    }
    let default =
        |why: &'static str| Sourced::new(cluster::DEFAULT_MAX_ARRAY_SIZE, Source::Derived(why));
    let Ok(scontrol) = which::which("scontrol") else {
        return default("Slurm's default; scontrol is not on PATH");
    };
    match cluster::query_max_array_size(&scontrol, cluster::QUERY_TIMEOUT) {
        Ok(max) => Sourced::new(max, Source::Derived("from scontrol show config")),
        Err(e) => {
            warnings.push(format!(
                "assuming MaxArraySize {}: {e}; pass --max-array-size to set it",
                cluster::DEFAULT_MAX_ARRAY_SIZE
            ));
            default("Slurm's default; scontrol did not tell")
        }
    }
}

fn tasks_spread(s: &Settings, n: usize) -> Result<Spread, GenError> {
    let asked = s.ntasks.as_ref().ok_or(GenError::NoTaskCount)?;
    let ntasks = layout::task_count(n, asked.value);
    let granules_per_task = n.div_ceil(ntasks);
    let mut note = format!("--ntasks={ntasks}: {}", asked.source);
    if ntasks != asked.value {
        note.push_str(&format!(
            ", lowered from {}: there are only {n} granules",
            asked.value
        ));
    }
    note.push_str(&format!(
        "; each task processes up to {granules_per_task} granule{}",
        plural(granules_per_task)
    ));
    Ok(Spread {
        array: None,
        ntasks,
        granules_per_task,
        notes: vec![note],
    })
}

/// "maximum of 12 done granule reports" or "percentile 95 of 12 done granule reports; 2
/// failed or interrupted skipped".
fn statistic(p: Percentile, count: usize, not_done: usize) -> String {
    let what = if p == Percentile::MAX {
        "maximum".to_string()
    } else {
        format!("percentile {p}")
    };
    let skipped = match not_done {
        0 => String::new(),
        n => format!("; {n} failed or interrupted skipped"),
    };
    format!(
        "{what} of {count} done granule report{}{skipped}",
        plural(count)
    )
}

/// `--mem-per-cpu` in MiB (when known) and its note.
fn memory(inputs: &Inputs, warnings: &mut Vec<String>) -> (Option<u64>, String) {
    let s = inputs.settings;
    let cpus = s.cpus_per_task.value;
    let m = &inputs.measurements.granules;
    let headroom = &s.headroom;
    let measured = match inputs.peak_mem {
        Some(peak) => Some((peak.bytes(), "--peak-mem flag".to_string())),
        None => {
            let peaks: Vec<u64> = m.iter().map(|g| g.peak_bytes).collect();
            // Chosen by plan to run more workers than the reports had: theirs on top.
            let extra = inputs.cores.map_or(0, |c| c.extra_peak_bytes);
            sizing::percentile(&peaks, s.percentile.value).map(|peak| {
                let from = statistic(
                    s.percentile.value,
                    peaks.len(),
                    inputs.measurements.not_done,
                );
                if extra == 0 {
                    return (peak, from);
                }
                (
                    peak + extra,
                    format!(
                        "{from}, {} plus {} for the workers {cpus} CPUs add",
                        Size(peak),
                        Size(extra)
                    ),
                )
            })
        }
    };
    if let Some((peak, from)) = measured {
        let mib = sizing::mem_per_cpu_mib(peak, headroom.value, cpus).max(1);
        let total = Size(sizing::with_headroom(peak, headroom.value));
        return (
            Some(mib),
            format!(
                "--mem-per-cpu={mib}M: peak {} ({from}) + {} headroom ({}) = {total} per task, \
                 / {cpus} CPU{}, rounded up to whole MiB",
                Size(peak),
                headroom.value,
                headroom.source,
                plural(cpus as usize)
            ),
        );
    }
    match &s.memory {
        Some(mem) => {
            let mib =
                sizing::mem_per_cpu_mib(mem.value.bytes(), Percent::from_basis_points(0), cpus)
                    .max(1);
            warnings.push(format!(
                "no memory measurement (--profile or --peak-mem): --mem-per-cpu={mib}M comes \
                 from the default memory {} ({})",
                mem.value, mem.source
            ));
            (
                Some(mib),
                format!(
                    "--mem-per-cpu={mib}M: NOT MEASURED; default memory {} per task ({}) \
                     / {cpus} CPU{}, rounded up to whole MiB. Measure and pass --profile.",
                    mem.value,
                    mem.source,
                    plural(cpus as usize)
                ),
            )
        }
        None => {
            warnings.push(
                "no memory measurement (--profile or --peak-mem) and no `memory` setting: \
                 the script leaves memory to the cluster's default"
                    .to_string(),
            );
            (
                None,
                "--mem-per-cpu: not set; nothing measured and no `memory` in the site config, \
                 so the cluster's default applies"
                    .to_string(),
            )
        }
    }
}

/// `--time` (when known) and its note.
/// How much earlier than asked Slurm may deliver the `--signal` warning (its event loop
/// runs about once a minute).
const SIGNAL_RESOLUTION_SECONDS: f64 = 60.0;

fn time(
    inputs: &Inputs,
    granules_per_task: usize,
    warnings: &mut Vec<String>,
) -> (Option<Sourced<TimeLimit>>, String) {
    let s = inputs.settings;
    // Measured at another CPU count than the one chosen: stretched to the projection.
    let scale = inputs.cores.map_or(1.0, |c| c.wall_scale);
    let walls: Vec<f64> = inputs
        .measurements
        .granules
        .iter()
        .map(|g| g.wall_seconds * scale)
        .collect();
    if let Some(t) = s
        .time
        .as_ref()
        .filter(|t| matches!(t.source, Source::Flag(_)))
    {
        if let Some(slowest) = walls.iter().copied().reduce(f64::max) {
            // Slurm's warning lands up to a minute before the asked-for time: a granule
            // must fit between the job's start and that earliest warning to finish at all.
            let needs = slowest + f64::from(s.warning_seconds.value) + SIGNAL_RESOLUTION_SECONDS;
            if (t.value.seconds as f64) < needs {
                warnings.push(format!(
                    "--time {} is shorter than one granule needs: {slowest:.0} s measured \
                     (slowest of {}) + {} s warning + {SIGNAL_RESOLUTION_SECONDS:.0} s Slurm \
                     signal resolution = {needs:.0} s; granules will be interrupted on every \
                     submission",
                    t.value,
                    walls.len(),
                    s.warning_seconds.value
                ));
            }
        }
        return (Some(t.clone()), format!("--time={}: {}", t.value, t.source));
    }
    if let Some(wall) = sizing::percentile(&walls, s.percentile.value) {
        let limit = sizing::time_limit(wall, granules_per_task, s.headroom.value);
        return (
            Some(Sourced::new(
                limit,
                Source::Derived("the measured wall time"),
            )),
            format!(
                "--time={limit}: wall {wall:.1} s per granule ({}{}) x {granules_per_task} \
                 granule{} per task + {} headroom, rounded up to whole minutes (at least {})",
                statistic(
                    s.percentile.value,
                    walls.len(),
                    inputs.measurements.not_done
                ),
                if scale > 1.0 {
                    format!(
                        ", x {scale:.2}: projected at {} CPUs against the measured run",
                        s.cpus_per_task.value
                    )
                } else {
                    String::new()
                },
                plural(granules_per_task),
                s.headroom.value,
                sizing::MIN_TIME_SECONDS / 60
            ),
        );
    }
    match &s.time {
        Some(t) => (
            Some(t.clone()),
            format!("--time={}: {} (no wall time measured)", t.value, t.source),
        ),
        None => {
            warnings.push(
                "no wall time measured and no time limit set: the partition's default applies"
                    .to_string(),
            );
            (
                None,
                "--time: not set; the partition's default time limit applies".to_string(),
            )
        }
    }
}

/// pseg-step's command line, one word each.
fn step_argv(s: &Settings, p: &Paths, array: Option<&ArrayVars>) -> Vec<String> {
    let mut argv = vec![text(&p.pseg_step.value), "--files".into(), text(&p.list)];
    if let Some(exe) = &p.exe {
        argv.extend(["--exe".into(), text(&exe.value)]);
    }
    argv.extend(["--options".into(), text(&p.options)]);
    argv.extend(["--out".into(), text(&p.out)]);
    if let Some(work) = &p.work {
        argv.extend(["--work".into(), text(work)]);
    }
    for (flag, value) in [
        ("--scan-lines", s.scan_lines),
        ("--max-workers", s.max_workers),
        ("--max-lead", s.max_lead),
        ("--stall-timeout", s.stall_timeout),
    ] {
        if let Some(v) = value {
            argv.extend([flag.to_string(), v.to_string()]);
        }
    }
    if s.serial {
        argv.push("--serial".into());
    }
    if s.keep_work {
        argv.push("--keep-work".into());
    }
    argv.extend(s.step_args.iter().cloned());
    if let Some(a) = array {
        argv.extend(["--chunk-size".into(), a.chunk_size.to_string()]);
    }
    argv
}

/// The per-task command, quoted: `[runtime exec --bind DIR... IMAGE] pseg-step ARGS`.
fn command(step_argv: &[String], container: Option<&ContainerVars>) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(c) = container {
        words.extend([c.runtime.clone(), "exec".into()]);
        for b in &c.binds {
            words.extend(["--bind".into(), b.clone()]);
        }
        words.push(c.image.clone());
    }
    words.extend(step_argv.iter().cloned());
    quote::sh_join(&words)
}

/// `pseg-<list file name without extension>`, anything but a plain name's characters
/// made `_`.
fn default_job_name(list: &Path) -> String {
    let stem: String = list
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("pseg-{stem}")
}

/// Flags gen sets itself from its own flags or config keys; `step_args` may not set them.
const SET_BY_GEN: &[(&str, &str)] = &[
    ("files", "it is the list given to gen"),
    ("exe", "use --exe or the config key `clavrxorb`"),
    ("options", "use --options or the config key `options`"),
    ("out", "use --out or the config key `output_dir`"),
    ("work", "use --work or the config key `work_dir`"),
    ("state", "the campaign's state folder is OUT/pseg-state"),
    (
        "chunk_size",
        "use --chunk-size or the config key `granules_per_task`",
    ),
    ("scan_lines", "use the config key `scan_lines`"),
    ("max_workers", "use the config key `max_workers`"),
    ("max_lead", "use the config key `max_lead`"),
    ("stall_timeout", "use the config key `stall_timeout`"),
    ("serial", "use the config key `serial`"),
    ("keep_work", "use the config key `keep_work`"),
];

/// Parses the step's command line with pseg-step's own parser, so a bad `step_args` fails
/// here, not in every array element at once; `step_args` may not set what gen sets.
fn check_step_argv(s: &Settings, argv: &[String]) -> Result<(), GenError> {
    use clap::{CommandFactory, FromArgMatches};
    let from = || Some(Source::Config("step_args"));
    // `--check` stands in for the list gen adds (it makes --files optional); the full
    // command line below tells whether step_args set it too.
    let extra = crate::cmd::step_args::StepArgs::command()
        .try_get_matches_from(
            ["pseg-step", "--check"]
                .into_iter()
                .chain(s.step_args.iter().map(String::as_str)),
        )
        .map_err(|e| GenError::StepArgs {
            message: first_line(&e.to_string()),
            from: from(),
        })?;
    for (id, instead) in SET_BY_GEN.iter().filter(|(id, _)| *id != "check") {
        if extra.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let long = crate::cmd::step_args::StepArgs::command()
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_long().map(|l| format!("--{l}")))
                .unwrap_or_else(|| id.to_string());
            return Err(GenError::StepArgSetByGen {
                flag: long,
                instead: instead.to_string(),
            });
        }
    }
    let matches = crate::cmd::step_args::StepArgs::command()
        .try_get_matches_from(argv)
        .map_err(|e| GenError::StepArgs {
            message: first_line(&e.to_string()),
            from: (!s.step_args.is_empty()).then(from).flatten(),
        })?;
    let parsed = crate::cmd::step_args::StepArgs::from_arg_matches(&matches).map_err(|e| {
        GenError::StepArgs {
            message: first_line(&e.to_string()),
            from: None,
        }
    })?;
    if parsed.check {
        return Err(GenError::StepArgSetByGen {
            flag: "--check".into(),
            instead: "a job does not check, it runs".into(),
        });
    }
    Ok(())
}

/// clap's message on one line, without its usage and help hints.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

/// A checked path as text (paths were refused earlier unless UTF-8).
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Notes become `#` comment lines: no line breaks inside.
fn one_line(note: &str) -> String {
    note.replace(['\n', '\r'], " ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::args::{Cli, Command};
    use crate::cmd::step_args::StepArgs;
    use crate::domain::script::settings;
    use crate::domain::script::settings::Sourced;
    use crate::domain::site_config::SiteConfig;
    use clap::Parser;
    use std::path::PathBuf;

    fn settings(config: &str, extra: &[&str]) -> Settings {
        let mut argv = vec!["pseg-slurm", "gen", "--files", "l.txt"];
        argv.extend_from_slice(extra);
        let Command::Gen(g) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        let c = SiteConfig::parse(config, Path::new("/etc/site.yaml")).unwrap();
        settings::resolve(&g, &c, Path::new("/w")).unwrap()
    }

    fn paths() -> Paths {
        Paths {
            list: "/d/file_list".into(),
            options: "/d/clavrx_options".into(),
            out: "/o".into(),
            log_dir: "/o/logs".into(),
            work: Some("/scratch/w".into()),
            exe: Some(Sourced::new("/opt/clavrxorb".into(), Source::Default)),
            pseg_step: Sourced::new("/bin/pseg-step".into(), Source::Default),
            container: None,
        }
    }

    /// The contract between gen and pseg-step: every flag gen writes means to pseg-step
    /// what gen meant.
    #[test]
    fn the_step_command_line_parses_as_pseg_step_reads_it() {
        let s = settings(
            "scan_lines: 50\nmax_workers: 3\nmax_lead: 4\nstall_timeout: 99\nserial: true\n\
             keep_work: true\nstep_args: ['--mem-admission', 'off', '--sample-interval=0.5']\n",
            &[],
        );
        let array = ArrayVars {
            chunk_size: 7,
            chunks: 2,
            last_index: 1,
            limit: None,
            spec: "0-1".into(),
            max_array_size: 1001,
        };
        let argv = step_argv(&s, &paths(), Some(&array));
        check_step_argv(&s, &argv).unwrap();
        let a = StepArgs::try_parse_from(&argv).unwrap();
        assert_eq!(a.files, Some(PathBuf::from("/d/file_list")));
        assert_eq!(a.options, Some(PathBuf::from("/d/clavrx_options")));
        assert_eq!(a.out, Some(PathBuf::from("/o")));
        assert_eq!(a.work, Some(PathBuf::from("/scratch/w")));
        assert_eq!(a.exe, PathBuf::from("/opt/clavrxorb"));
        assert_eq!(a.scan_lines, Some(50));
        assert_eq!(a.max_workers, Some(3));
        assert_eq!(a.max_lead, 4);
        assert_eq!(a.stall_timeout, 99);
        assert!(a.serial && a.keep_work && !a.check);
        assert_eq!(a.chunk_size, Some(7));
        assert_eq!(a.mem_admission, "off");
        assert_eq!(a.sample_interval, 0.5);
    }

    #[test]
    fn step_args_pseg_step_would_refuse_are_refused_now() {
        for (step_args, wanted) in [
            ("['--no-such-flag']", "--no-such-flag"),
            ("['--sample-interval', 'inf']", "inf"),
            ("['--max-lead', '0']", "--max-lead"),
        ] {
            let s = settings(&format!("step_args: {step_args}\n"), &[]);
            let argv = step_argv(&s, &paths(), None);
            let e = check_step_argv(&s, &argv).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, GenError::StepArgs { .. }), "{msg}");
            assert!(
                msg.contains(wanted) && msg.contains("site config `step_args`"),
                "{msg}"
            );
        }
        for (flag, args, key) in [
            ("--out", "['--out', '5']", "output_dir"),
            ("--scan-lines", "['--scan-lines=5']", "scan_lines"),
            ("--check", "['--check']", "runs"),
        ] {
            let s = settings(&format!("step_args: {args}\n"), &[]);
            let e = check_step_argv(&s, &step_argv(&s, &paths(), None)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(flag) && msg.contains(key), "{msg}");
        }
    }
}
