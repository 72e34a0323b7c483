//! `pseg-slurm gen`, the command: flags in, a script out on stdout, the campaign recorded.
//! Also what gen's rendering (`crate::domain::script`) takes from the command layer: the
//! plain request built from gen's flags, and pseg-step's parser as the judge of the step
//! command line a script runs (the domain must not know pseg-step's clap definitions).

use crate::cmd::args::GenArgs;
use crate::cmd::gen_replay;
use crate::cmd::step_args::StepArgs;
use crate::cmd::{Outcome, print, warn};
use crate::domain::script::error::GenError;
use crate::domain::script::request::{Request, Sizing, Slurm, Step};
use crate::domain::script::source::Source;

/// Runs `pseg-slurm gen`.
pub fn run(args: GenArgs) -> Outcome {
    let generated = crate::domain::script::generate(&request(args))?;
    warn(&generated.warnings);
    let argv: Vec<_> = std::env::args_os().collect();
    gen_replay::remember_gen(&generated, &argv)?;
    generated.create_log_dir()?;
    print(&generated.script)
}

/// gen's flags as the domain's request, judged by pseg-step's parser.
pub fn request(args: GenArgs) -> Request {
    let GenArgs {
        files,
        config,
        mode,
        template,
        sizing,
        slurm,
        step,
    } = args;
    Request {
        files,
        config,
        mode: mode.map(Into::into),
        template,
        sizing: Sizing {
            profile: sizing.profile,
            peak_mem: sizing.peak_mem,
            headroom: sizing.headroom,
            percentile: sizing.percentile,
        },
        slurm: Slurm {
            partition: slurm.partition,
            account: slurm.account,
            qos: slurm.qos,
            time: slurm.time,
            cpus_per_task: slurm.cpus_per_task,
            memory: slurm.memory,
            job_name: slurm.job_name,
            chunk_size: slurm.chunk_size,
            array_limit: slurm.array_limit,
            max_array_size: slurm.max_array_size,
            ntasks: slurm.ntasks,
            warning_seconds: slurm.warning_seconds,
        },
        step: Step {
            exe: step.exe,
            options: step.options,
            out: step.out,
            work: step.work,
            pseg_step: step.pseg_step,
            container: step.container,
        },
        check_step_argv,
    }
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

/// [`crate::domain::script::StepArgvCheck`] with pseg-step's own parser, so a bad `step_args` fails here,
/// not in every array element at once; `step_args` may not set what gen sets.
fn check_step_argv(step_args: &[String], argv: &[String]) -> Result<(), GenError> {
    use clap::{CommandFactory, FromArgMatches};
    let from = || Some(Source::Config("step_args"));
    // `--check` stands in for the list gen adds (it makes --files optional); the full
    // command line below tells whether step_args set it too.
    let extra = StepArgs::command()
        .try_get_matches_from(
            ["pseg-step", "--check"]
                .into_iter()
                .chain(step_args.iter().map(String::as_str)),
        )
        .map_err(|e| GenError::StepArgs {
            message: first_line(&e.to_string()),
            from: from(),
        })?;
    for (id, instead) in SET_BY_GEN.iter().filter(|(id, _)| *id != "check") {
        if extra.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let long = StepArgs::command()
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
    let matches = StepArgs::command()
        .try_get_matches_from(argv)
        .map_err(|e| GenError::StepArgs {
            message: first_line(&e.to_string()),
            from: (!step_args.is_empty()).then(from).flatten(),
        })?;
    let parsed = StepArgs::from_arg_matches(&matches).map_err(|e| GenError::StepArgs {
        message: first_line(&e.to_string()),
        from: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::args::{Cli, Command};
    use clap::Parser;
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// The real check, remembering the command line it was shown.
    fn seen_and_checked(step_args: &[String], argv: &[String]) -> Result<(), GenError> {
        SEEN.with(|s| *s.borrow_mut() = argv.to_vec());
        check_step_argv(step_args, argv)
    }

    /// gen over a one-granule list in `dir` with `config` and `flags`: the step command
    /// line the script runs, or gen's refusal.
    fn step_argv(dir: &Path, config: &str, flags: &[&str]) -> Result<Vec<String>, GenError> {
        for file in ["g1.hdf", "clavrx_options", "clavrxorb", "pseg-step"] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        std::fs::write(dir.join("list.txt"), "g1.hdf\n").unwrap();
        std::fs::write(dir.join("site.yaml"), config).unwrap();
        let mut argv = vec![
            "pseg-slurm",
            "gen",
            "--files",
            "list.txt",
            "--config",
            "site.yaml",
            "--exe",
            "./clavrxorb",
            "--pseg-step",
            "./pseg-step",
            "--out",
            "out",
            "--work",
            "/scratch/w",
            "--max-array-size",
            "1001",
        ];
        argv.extend_from_slice(flags);
        let Command::Gen(g) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        let mut request = request(*g);
        request.check_step_argv = seen_and_checked;
        crate::domain::script::generate_in(&request, dir)?;
        Ok(SEEN.with(|s| s.borrow().clone()))
    }

    /// The contract between gen and pseg-step: every flag gen writes means to pseg-step
    /// what gen meant.
    #[test]
    fn the_step_command_line_parses_as_pseg_step_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let argv = step_argv(
            d,
            "scan_lines: 50\nmax_workers: 3\nmax_lead: 4\nstall_timeout: 99\nserial: true\n\
             keep_work: true\nstep_args: ['--mem-admission', 'off', '--sample-interval=0.5']\n",
            &["--chunk-size", "7"],
        )
        .unwrap();
        let a = StepArgs::try_parse_from(&argv).unwrap();
        assert_eq!(a.files, Some(d.join("list.txt")));
        assert_eq!(a.options, Some(d.join("clavrx_options")));
        assert_eq!(a.out, Some(d.join("out")));
        assert_eq!(a.work, Some(PathBuf::from("/scratch/w")));
        assert_eq!(a.exe, d.join("clavrxorb"));
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
        let dir = tempfile::tempdir().unwrap();
        for (step_args, wanted) in [
            ("['--no-such-flag']", "--no-such-flag"),
            ("['--sample-interval', 'inf']", "inf"),
            ("['--max-lead', '0']", "--max-lead"),
        ] {
            let e = step_argv(dir.path(), &format!("step_args: {step_args}\n"), &[]).unwrap_err();
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
            let e = step_argv(dir.path(), &format!("step_args: {args}\n"), &[]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(flag) && msg.contains(key), "{msg}");
        }
    }
}
