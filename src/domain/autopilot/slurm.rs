//! The autopilot's calls to Slurm: `sbatch` a script, ask `squeue` whether a job is still
//! queued, and read back a script's sizing. Every call has a deadline (`deadline.rs`): a
//! controller that does not answer is a Slurm error the driver reports, never a hang.
//!
//! The parsers ([`parse_job_id`], [`parse_squeue`], [`script_sizing`]) are pure and
//! unit-tested on strings; the rest is a thin shell around the commands.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::base::units::TimeLimit;
use crate::domain::autopilot::decide::Sizing;

/// How long one `sbatch` or `squeue` may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("{command} did not answer within {} s", CALL_TIMEOUT.as_secs())]
    NoAnswer { command: &'static str },
    #[error("{command} failed: {message}")]
    Failed {
        command: &'static str,
        message: String,
    },
}

/// The job id in `sbatch --parsable`'s answer (`123` or `123;cluster`).
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// Submits `script` from `cwd`; the job id.
pub fn sbatch(script: &Path, cwd: &Path) -> Result<String, SlurmError> {
    let out = run(
        "sbatch",
        Command::new("sbatch")
            .arg("--parsable")
            .arg(script)
            .current_dir(cwd),
    )?;
    parse_job_id(&out).ok_or_else(|| SlurmError::Failed {
        command: "sbatch",
        message: format!("no job id in its answer {:?}", out.trim()),
    })
}

/// Submits the watcher job of `--detach` (`sbatch --wrap`); the job id.
pub fn sbatch_wrap(flags: &[String], command: &str, cwd: &Path) -> Result<String, SlurmError> {
    let out = run(
        "sbatch",
        Command::new("sbatch")
            .arg("--parsable")
            .args(flags)
            .arg("--wrap")
            .arg(command)
            .current_dir(cwd),
    )?;
    parse_job_id(&out).ok_or_else(|| SlurmError::Failed {
        command: "sbatch",
        message: format!("no job id in its answer {:?}", out.trim()),
    })
}

/// What `squeue -h -o %T -j ID` said: `Some(states)` for a job it knows (array elements
/// give one line each), `None` for a job it no longer lists; `Err` for anything else.
pub fn parse_squeue(success: bool, stdout: &str, stderr: &str) -> Result<Vec<String>, String> {
    if !success {
        // The controller forgets a finished job after MinJobAge: it has ended.
        if stderr.contains("Invalid job id") {
            return Ok(Vec::new());
        }
        return Err(crate::domain::ledger::record::one_line(stderr.trim()));
    }
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// True while job `id` (or an element of it) is queued, running or completing.
pub fn queued(id: &str) -> Result<bool, SlurmError> {
    let mut cmd = Command::new("squeue");
    cmd.args(["-h", "-o", "%T", "-j", id]);
    let out = crate::base::timed_command::output_within(&mut cmd, CALL_TIMEOUT)
        .map_err(|source| SlurmError::Spawn {
            command: "squeue",
            source,
        })?
        .ok_or(SlurmError::NoAnswer { command: "squeue" })?;
    let states = parse_squeue(
        out.status.success(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
    .map_err(|message| SlurmError::Failed {
        command: "squeue",
        message,
    })?;
    Ok(!states.is_empty())
}

fn run(command: &'static str, cmd: &mut Command) -> Result<String, SlurmError> {
    let out = crate::base::timed_command::output_within(cmd, CALL_TIMEOUT)
        .map_err(|source| SlurmError::Spawn { command, source })?
        .ok_or(SlurmError::NoAnswer { command })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command,
            message: crate::domain::ledger::record::one_line(
                String::from_utf8_lossy(&out.stderr).trim(),
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sizing a rendered script asks for, from its `#SBATCH` lines; `granules` is the length
/// of its list (the chunk size of an array is what the array's elements share).
pub fn script_sizing(script: &str, granules: usize) -> Sizing {
    let mut s = Sizing {
        cpus_per_task: 1,
        chunk_size: granules.max(1),
        ..Sizing::default()
    };
    for line in script.lines() {
        let Some(directive) = line.strip_prefix("#SBATCH ") else {
            continue;
        };
        let Some((key, value)) = directive.trim().split_once('=') else {
            continue;
        };
        match key {
            "--cpus-per-task" => s.cpus_per_task = value.parse().unwrap_or(1),
            "--mem-per-cpu" => {
                s.mem_per_cpu_mib = value.trim_end_matches(['M', 'm']).parse().ok();
            }
            "--time" => s.time_seconds = value.parse::<TimeLimit>().ok().map(|t| t.seconds),
            "--array" => {
                let elements = array_elements(value);
                if elements > 0 {
                    s.chunk_size = granules.div_ceil(elements).max(1);
                }
            }
            "--ntasks" => {
                let tasks: usize = value.parse().unwrap_or(1);
                if tasks > 1 {
                    s.chunk_size = granules.div_ceil(tasks).max(1);
                }
            }
            _ => {}
        }
    }
    s
}

/// gen's header notes on where the cores, memory and time came from (`--mem-per-cpu=62M:
/// peak 27 MiB (max of 2 granule reports) + ...`), for telling the user why.
pub fn sizing_notes(script: &str) -> Vec<String> {
    script
        .lines()
        .take_while(|l| !l.starts_with("#SBATCH"))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            ["--cpus-per-task", "--mem-per-cpu", "--time"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

/// Elements of an array spec `0-4%2` or `0,3,5`.
fn array_elements(spec: &str) -> usize {
    let spec = spec.split('%').next().unwrap_or_default();
    spec.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_from_sbatch_parsable() {
        assert_eq!(parse_job_id("4242\n").as_deref(), Some("4242"));
        assert_eq!(parse_job_id("4242;cluster1\n").as_deref(), Some("4242"));
        assert_eq!(parse_job_id("Submitted batch job 1\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn squeue_answers_queued_gone_and_broken() {
        assert_eq!(
            parse_squeue(true, "RUNNING\nPENDING\n", ""),
            Ok(vec!["RUNNING".to_string(), "PENDING".to_string()])
        );
        assert_eq!(parse_squeue(true, "", ""), Ok(vec![]));
        assert_eq!(
            parse_squeue(
                false,
                "",
                "slurm_load_jobs error: Invalid job id specified\n"
            ),
            Ok(vec![])
        );
        let e = parse_squeue(
            false,
            "",
            "slurm_load_jobs error: Unable to contact slurm controller\n",
        )
        .unwrap_err();
        assert!(e.contains("Unable to contact"), "{e}");
    }

    #[test]
    fn a_scripts_sizing_is_read_from_its_directives() {
        let array = "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --array=0-2%2\n\
                     #SBATCH --cpus-per-task=4\n#SBATCH --mem-per-cpu=750M\n\
                     #SBATCH --time=01:30:00\nsrun --cpus-per-task=4 x\n";
        assert_eq!(
            script_sizing(array, 7),
            Sizing {
                cpus_per_task: 4,
                mem_per_cpu_mib: Some(750),
                time_seconds: Some(5400),
                chunk_size: 3,
            }
        );
        let tasks = "#SBATCH --ntasks=2\n#SBATCH --cpus-per-task=2\n";
        assert_eq!(
            script_sizing(tasks, 5),
            Sizing {
                cpus_per_task: 2,
                mem_per_cpu_mib: None,
                time_seconds: None,
                chunk_size: 3,
            }
        );
        assert_eq!(array_elements("0,3,5-6"), 4);
    }

    #[test]
    fn gens_notes_say_where_the_sizing_came_from() {
        let script = "#!/bin/bash\n# Written by pseg-slurm\n# --array=0-2: 3 granules\n\
                      # --cpus-per-task=1: default\n# --mem-per-cpu=62M: peak 27 MiB (max of 2 \
                      granule reports)\n# --time=00:01:00: --time flag\n#SBATCH --time=1\n\
                      # --time not a note after the directives\n";
        assert_eq!(
            sizing_notes(script),
            [
                "--cpus-per-task=1: default",
                "--mem-per-cpu=62M: peak 27 MiB (max of 2 granule reports)",
                "--time=00:01:00: --time flag"
            ]
        );
    }
}
