//! Putting a script's numbers together: the array or task layout, memory and time, the
//! pseg-step command line, and one header note per setting saying where it came from.
//!
//! Takes checked inputs and returns the template context; the only outside call is asking
//! scontrol for MaxArraySize (array mode, when neither a flag nor the config gives it). The
//! pseg-step command line is judged by the caller's check ([`Inputs::check_step_argv`]):
//! pseg-step's parser belongs to the command layer.

use std::path::Path;

use crate::base::units::Size;
use crate::base::units::{Percent, Percentile, TimeLimit};
use crate::domain::script::cluster;
use crate::domain::script::context::{ArrayVars, ContainerVars, ScriptContext};
use crate::domain::script::cores;
use crate::domain::script::error::GenError;
use crate::domain::script::layout;
use crate::domain::script::paths::Paths;
use crate::domain::script::profile::Measurements;
use crate::domain::script::quote;
use crate::domain::script::settings::Settings;
use crate::domain::script::sizing;
use crate::domain::script::source::{Source, Sourced};
use crate::domain::site_config::Mode;

/// Everything `context` needs, checked.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub paths: &'a Paths,
    pub n_granules: usize,
    pub config_path: Option<&'a Path>,
    pub measurements: &'a Measurements,
    pub peak_mem: Option<Size>,
    /// pseg-step's judgement of the step command line.
    pub check_step_argv: crate::domain::script::StepArgvCheck,
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
    let mut notes = input_notes(inputs);
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
    let time = time_after_warning(s, time)?;
    notes.extend(queue_notes(s));
    notes.push(signal_note(s));
    let job_name = job_name(s, p, &mut notes);
    let log_path = log_path(s, p, &mut notes);
    notes.extend(program_notes(p));

    let step_argv = step_argv(s, p, spread.array.as_ref());
    (inputs.check_step_argv)(&s.step_args, &step_argv)?;
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

/// The header's first notes: what the list is, the site config, the template.
fn input_notes(inputs: &Inputs) -> Vec<String> {
    vec![
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
    ]
}

/// The time limit as `--time` says it, checked to leave room for the warning signal.
fn time_after_warning(
    s: &Settings,
    time: Option<Sourced<TimeLimit>>,
) -> Result<Option<String>, GenError> {
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
    Ok(time.map(|t| t.value.to_string()))
}

/// Where `--partition`, `--account` and `--qos` came from, for those given.
fn queue_notes(s: &Settings) -> Vec<String> {
    let mut notes = Vec::new();
    for (flag, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
    ] {
        if let Some(v) = value {
            notes.push(format!("{flag}={}: {}", v.value, v.source));
        }
    }
    notes
}

/// What `--signal` asks for and what pseg-step does on it.
fn signal_note(s: &Settings) -> String {
    let warning = s.warning_seconds.value;
    if warning > 0 {
        format!(
            "--signal=USR1@{warning}: {}; on SIGUSR1 this long before the time limit (up to a \
             minute earlier) pseg-step starts no new granule and lets each one in flight \
             finish when it is projected to end in time, recording the others interrupted",
            s.warning_seconds.source
        )
    } else {
        format!("--signal: none ({})", s.warning_seconds.source)
    }
}

/// `--job-name`: given, or pseg-<list name>; its note goes to `notes`.
fn job_name(s: &Settings, p: &Paths, notes: &mut Vec<String>) -> String {
    match &s.job_name {
        Some(name) => {
            notes.push(format!("--job-name={}: {}", name.value, name.source));
            name.value.clone()
        }
        None => {
            let name = default_job_name(&p.list);
            notes.push(format!("--job-name={name}: default, pseg-<list name>"));
            name
        }
    }
}

/// `--output`: one log per array element or job in the log folder; its note goes to `notes`.
fn log_path(s: &Settings, p: &Paths, notes: &mut Vec<String>) -> std::path::PathBuf {
    notes.push(format!(
        "--output: one log per {} in {} (created by gen)",
        match s.mode.value {
            Mode::Array => "array element",
            Mode::Tasks => "job",
        },
        p.log_dir.display()
    ));
    p.log_dir.join(match s.mode.value {
        Mode::Array => "%x-%A_%a.out",
        Mode::Tasks => "%x-%j.out",
    })
}

/// Which clavrxorb and pseg-step the script runs, and where each came from.
fn program_notes(p: &Paths) -> Vec<String> {
    let mut notes = Vec::new();
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
    notes
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
