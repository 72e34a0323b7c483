//! `pseg-slurm run`, the command: flags in, the autopilot driven, its news printed (a live
//! line on a terminal, plain lines otherwise), the report page written, the exit status
//! chosen. The campaign logic is `crate::domain::autopilot`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::base::time::{Style, duration};
use crate::cmd::args::{ReportArgs, RunArgs};
use crate::domain::autopilot::decide::Limits;
use crate::domain::autopilot::{
    self, Ending, Finished, Observer, Progress, Request, RunError, slurm,
};
use crate::domain::campaign::status::Failure;
use crate::domain::script::quote;

/// `--max-submissions` reached, or Slurm cannot be got past.
const STOPPED: u8 = 3;
/// Another run drives this campaign.
const LOCKED: u8 = 4;

/// Flags of `run` that gen does not take, and whether they carry a value.
const RUN_ONLY: [(&str, bool); 3] = [
    ("--pilot", true),
    ("--max-submissions", true),
    ("--detach", false),
];

pub fn run(args: RunArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args_os()
        .skip_while(|a| a.as_os_str() != "run")
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cwd = std::env::current_dir()?;
    let req = Request {
        gen_request: crate::cmd::r#gen::request(args.gen_args),
        gen_argv: without_run_flags(&argv),
        cwd,
        limits: Limits {
            pilot: args.pilot,
            max_submissions: args.max_submissions,
        },
    };
    if args.detach {
        return detach(&req, &argv);
    }
    let mut observer = Printer::new();
    let finished = autopilot::drive(&req, &mut observer);
    observer.end_line();
    let finished = match finished {
        Ok(f) => f,
        Err(e) => return drive_failed(e),
    };
    if let Ending::Bound(why) = &finished.exit {
        eprintln!(
            "pseg-slurm: stopped: {why}; `pseg-slurm run` again (with a higher \
             --max-submissions) goes on from here"
        );
        return Ok(STOPPED);
    }
    say_verified(&finished);
    write_page(&finished.out);
    if finished.failures.is_empty() {
        eprintln!("pseg-slurm: every granule is done");
        return Ok(0);
    }
    say_failures(&finished.failures);
    Ok(1)
}

/// The exit status of a drive that ended in an error: another run holds the campaign, or
/// Slurm cannot be got past; any other error is main's to print.
fn drive_failed(e: RunError) -> Result<u8, Box<dyn std::error::Error>> {
    match e {
        RunError::Lock(autopilot::lock::LockError::Held { .. }) => {
            eprintln!("pseg-slurm: {e}");
            Ok(LOCKED)
        }
        RunError::Slurm(_) => {
            eprintln!("pseg-slurm: error: {e}");
            Ok(STOPPED)
        }
        e => Err(e.into()),
    }
}

/// What the last verify of the done granules found.
fn say_verified(finished: &Finished) {
    if finished.verify_findings.is_empty() {
        eprintln!(
            "pseg-slurm: verified {} done granule(s): every output matches its manifest",
            finished.verified
        );
    } else {
        eprintln!(
            "pseg-slurm: verify: {} finding(s) left (listed above)",
            finished.verify_findings.len()
        );
    }
}

/// The report page into `out`, as `pseg-slurm report` writes it; a failure only warns.
fn write_page(out: &Path) {
    let report = crate::cmd::report::run(&ReportArgs {
        dir: out.to_path_buf(),
        output: out.join("pseg-report.html"),
        granule: Vec::new(),
        slowest: 20,
        details: 5,
        failed_details: 10,
    });
    if let Err(e) = report {
        eprintln!("pseg-slurm: warning: no report page: {e}");
    }
}

/// The granules that failed for good, one line each.
fn say_failures(failures: &[Failure]) {
    eprintln!("pseg-slurm: {} granule(s) failed for good:", failures.len());
    for f in failures {
        let kind = f.kind.map(|k| k.name()).unwrap_or("unknown");
        let error = f.error.as_deref().unwrap_or("no error recorded");
        let report = f
            .report
            .as_ref()
            .map(|p| format!("; report {}", p.display()))
            .unwrap_or_default();
        let line = format!(
            "  {} ({kind}, {} attempt(s)): {error}{report}",
            f.name, f.attempts
        );
        eprintln!("{}", crate::base::escape::controls(&line));
    }
}

/// `argv` (after `run`) without run's own flags: the gen call to record.
fn without_run_flags(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in argv {
        if std::mem::take(&mut skip) {
            continue;
        }
        match RUN_ONLY
            .iter()
            .find(|(flag, _)| a == flag || a.starts_with(&format!("{flag}=")))
        {
            Some((flag, takes_value)) => skip = *takes_value && a == flag,
            None => out.push(a.clone()),
        }
    }
    out
}

/// `--detach`: a watcher job running this very `run` (without `--detach`).
fn detach(req: &Request, argv: &[String]) -> Result<u8, Box<dyn std::error::Error>> {
    let generated = autopilot::check(req)?;
    generated.create_log_dir()?;
    let me = std::env::current_exe()?;
    let mut words = vec![me.to_string_lossy().into_owned(), "run".to_string()];
    words.extend(argv.iter().filter(|a| *a != "--detach").cloned());
    let command = format!("exec {}", quote::sh_join(&words));
    let log: PathBuf = generated.log_dir.join("pseg-run-%j.log");
    let mut flags = vec![
        "--job-name=pseg-run".to_string(),
        "--ntasks=1".into(),
        "--cpus-per-task=1".into(),
        "--mem=512M".into(),
        format!("--output={}", log.display()),
        format!("--chdir={}", req.cwd.display()),
    ];
    let s = &req.gen_request.slurm;
    for (flag, value) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
    ] {
        if let Some(v) = value {
            flags.push(format!("{flag}={v}"));
        }
    }
    match slurm::sbatch_wrap(&flags, &command, &req.cwd) {
        Ok(id) => {
            eprintln!(
                "pseg-slurm: the campaign is driven by watcher job {id} (log {}); \
                 `pseg-slurm status {}` shows how it does",
                log.display(),
                generated.out.display()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "pseg-slurm: the site refused a watcher job ({e}); keep the run alive on this \
                 login node instead:\n  nohup {} > pseg-run.log 2>&1 &\nor inside tmux \
                 (`tmux new -s pseg`, run it, detach with Ctrl-b d)",
                quote::sh_join(&words)
            );
            Ok(STOPPED)
        }
    }
}

/// Prints the autopilot's news on stderr: a live line on a terminal, else a plain line each
/// time the numbers change.
struct Printer {
    tty: bool,
    live: bool,
    last: Option<Progress>,
}

impl Printer {
    fn new() -> Printer {
        Printer {
            tty: std::io::stderr().is_terminal(),
            live: false,
            last: None,
        }
    }

    fn end_line(&mut self) {
        if std::mem::take(&mut self.live) {
            eprintln!();
        }
    }
}

impl Observer for Printer {
    fn say(&mut self, line: &str) {
        if self.tty && self.live {
            eprint!("\r\x1b[2K");
            self.live = false;
        }
        eprintln!("pseg-slurm: {}", crate::base::escape::controls(line));
    }

    fn progress(&mut self, p: &Progress) {
        let line = progress_line(p);
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            self.live = true;
        } else if !self.last.as_ref().is_some_and(|l| l.same_counts(p)) {
            eprintln!("pseg-slurm: {line}");
        }
        self.last = Some(p.clone());
    }
}

/// `12 granule(s): 5 done, 1 failed, 2 running, 4 pending; 40.0/h, ETA 6 min; job 17`.
fn progress_line(p: &Progress) -> String {
    let mut line = format!(
        "{} granule(s): {} done, {} failed, {} running, {} pending",
        p.granules, p.done, p.failed, p.running, p.pending
    );
    if let Some(rate) = p.done_per_hour {
        line.push_str(&format!("; {rate:.1}/h"));
    }
    if let Some(eta) = p.eta_seconds.filter(|_| p.pending + p.running > 0) {
        line.push_str(&format!(", ETA {}", duration(eta, Style::Whole)));
    }
    match p.jobs.len() {
        0 => {}
        1 => line.push_str(&format!("; job {}", p.jobs[0])),
        _ => line.push_str(&format!("; jobs {}", p.jobs.join(", "))),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_own_flags_are_not_part_of_the_recorded_gen_call() {
        let argv: Vec<String> = [
            "--files",
            "file_list",
            "--pilot",
            "3",
            "--time=5",
            "--max-submissions=4",
            "--detach",
            "--chunk-size",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            without_run_flags(&argv),
            ["--files", "file_list", "--time=5", "--chunk-size", "2"]
        );
    }

    #[test]
    fn the_live_line_counts_rate_eta_and_jobs() {
        let p = Progress {
            granules: 12,
            done: 5,
            failed: 1,
            running: 2,
            pending: 4,
            done_per_hour: Some(40.0),
            eta_seconds: Some(360.0),
            jobs: vec!["17".into()],
        };
        assert_eq!(
            progress_line(&p),
            "12 granule(s): 5 done, 1 failed, 2 running, 4 pending; 40.0/h, ETA 6 min 00 s; \
             job 17"
        );
    }
}
