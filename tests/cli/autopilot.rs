//! `pseg-slurm run` hands-off on the real one-node Slurm: from a CLAVR-x run folder to
//! verified outputs through a pilot, a time-limit drain and resubmissions, killed midway and
//! started again, with one granule that crashes every time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

use crate::out_of_box::path_with_clavrxorb;
use crate::support::{Case, Link, slurm_available, text};

const GOOD: [(&str, u32); 7] = [
    ("g0.gran", 50),
    ("g1.gran", 49),
    ("g2.gran", 40),
    ("g3.gran", 38),
    ("g4.gran", 39),
    ("g5.gran", 37),
    ("g6.gran", 36),
];
const BAD: &str = "crash.gran";

/// The granules (the bad one first in the list, smallest, so the pilot leaves it), their
/// serial outputs in `serial`, and the run folder `run/` with `file_list` (output folder
/// `out/`), `clavrx_options` and clavrxorb on PATH (`bin/`).
fn run_folder(case: &Case) -> PathBuf {
    // 30 MB per segment (bytes per line): gen's sizing from the reports dwarfs Slurm's own
    // processes.
    for (name, lines) in GOOD {
        case.granule(name, lines, &["--work-mem", "3000000"]);
    }
    case.granule(BAD, 12, &["--fault", "parent-exit3:1"]);
    let good: Vec<&str> = GOOD.iter().map(|(n, _)| *n).collect();
    case.list(&good);
    case.options(10);
    let serial = case.step("serial").arg("--serial").output().unwrap();
    assert!(serial.status.success(), "{}", text(&serial.stderr));

    let mut listed = vec![BAD];
    listed.extend(&good);
    case.clavrx_run_folder(&listed)
}

/// `pseg-slurm run --files file_list` in the run folder, the mock as clavrxorb on PATH, no
/// site config; the caller adds the rest.
fn run_cmd(case: &Case, run: &Path) -> Command {
    let mut cmd = Command::new(cargo_bin!("pseg-slurm"));
    cmd.args(["run", "--files", "file_list"])
        .current_dir(run)
        .env("PATH", path_with_clavrxorb(case))
        .env_remove("PSEG_SLURM_CONFIG");
    cmd
}

/// `pseg-slurm run --files file_list` in the run folder, its stderr into `log`. One minute
/// (Slurm's least) cannot hold the campaign's granules, slowed to 4 s a segment (about 70 s
/// of work even on the 2 cores gen may choose); the warning comes 50 s before it.
fn start_run(case: &Case, run: &Path, log: &str) -> Child {
    let log = std::fs::File::create(case.path(log)).unwrap();
    run_cmd(case, run)
        .args([
            "--chunk-size",
            "10",
            "--time",
            "1",
            "--warning-seconds",
            "50",
            "--memory",
            "300M",
            // Room for Slurm's own processes in the job's cgroup beside the measured step.
            "--headroom",
            "100",
        ])
        .env("TMPDIR", case.scratch())
        .env("MOCK_CLAVRX_SLEEP_MS", "4000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn campaign(run: &Path) -> serde_yaml::Value {
    let path = run.join("out/pseg-state/campaign.yaml");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_yaml::from_str(&t).ok())
        .unwrap_or(serde_yaml::Value::Null)
}

fn submissions(run: &Path) -> Vec<serde_yaml::Value> {
    campaign(run)["submissions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
}

fn queued(job: &str) -> bool {
    let o = Command::new("squeue")
        .args(["-h", "-o", "%T", "-j", job])
        .output()
        .unwrap();
    o.status.success() && !text(&o.stdout).trim().is_empty()
}

/// The folder of a script's `#SBATCH --output=` logs.
fn log_dir(script: &Path) -> PathBuf {
    let text = std::fs::read_to_string(script).unwrap();
    let output = text
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --output="))
        .unwrap();
    Path::new(output.trim_matches('\''))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn wait_exit(child: &mut Child, limit: Duration, log: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "run did not end within {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_campaign_runs_hands_off_through_a_pilot_a_drain_a_kill_and_resubmissions() {
    if !slurm_available(
        "a_campaign_runs_hands_off_through_a_pilot_a_drain_a_kill_and_resubmissions",
    ) {
        return;
    }
    let case = Case::new(Link::Static);
    let run = run_folder(&case);

    // Killed once the campaign's own job (after the pilot) is queued.
    let mut first = start_run(&case, &run, "run1.log");
    let start = Instant::now();
    let job = loop {
        let subs = submissions(&run);
        if let Some(s) = subs.get(1) {
            break s["job_id"].as_str().unwrap().to_string();
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "run ended early:\n{}",
            std::fs::read_to_string(case.path("run1.log")).unwrap()
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no second job");
        std::thread::sleep(Duration::from_millis(200));
    };
    // A second run of the same campaign is refused while the first lives.
    let second = run_cmd(&case, &run).output().unwrap();
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{err}");
    assert!(
        err.contains("another `pseg-slurm run` drives this campaign"),
        "{err}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let log1 = std::fs::read_to_string(case.path("run1.log")).unwrap();
    // The pilot, then the campaign sized from the pilot's reports: its choice printed.
    assert!(log1.contains("(pilot, 2 granule(s))"), "{log1}");
    assert!(log1.contains("sized by gen from the reports"), "{log1}");
    let subs = submissions(&run);
    let pilot_list = std::fs::read_to_string(subs[0]["list"].as_str().unwrap()).unwrap();
    assert!(
        pilot_list.contains("g0.gran") && pilot_list.contains("g1.gran"),
        "the largest first: {pilot_list}"
    );
    let mem = subs[1]["sizing"]["mem_per_cpu_mib"].as_u64().unwrap();
    assert_ne!(
        mem, 300,
        "memory sized from the pilot's reports, not --memory"
    );
    // Cores as gen chose them from the pilot's reports (`plan`), capped at the node's 2.
    let cpus = subs[1]["sizing"]["cpus_per_task"].as_u64().unwrap();
    assert!((1..=2).contains(&cpus), "{:?}", subs[1]);
    assert!(
        log1.contains(&format!(
            "job {job} asks for --cpus-per-task={cpus} --mem-per-cpu={mem}M"
        )),
        "{log1}"
    );
    assert!(
        log1.contains("gen: --cpus-per-task="),
        "how the cores were chosen is printed: {log1}"
    );
    // ... and where it came from: the pilot's measured peak, through gen.
    assert!(
        log1.contains(&format!("gen: --mem-per-cpu={mem}M: peak ")),
        "{log1}"
    );

    // Started again: it watches the job it finds in the record, and carries on.
    let mut again = start_run(&case, &run, "run2.log");
    let code = wait_exit(&mut again, Duration::from_secs(240), &case.path("run2.log"));
    let log2 = std::fs::read_to_string(case.path("run2.log")).unwrap();
    assert_eq!(code, 1, "{log2}");
    assert!(
        log2.contains(&format!("resuming: the campaign record names job(s) {job}")),
        "{log2}"
    );
    // No duplicate: each job was submitted after the one before it left the queue.
    let subs = submissions(&run);
    for pair in subs.windows(2) {
        let ended = pair[0]["ended_unix"].as_f64().unwrap();
        let next = pair[1]["submitted_unix"].as_f64().unwrap();
        assert!(next >= ended, "overlapping jobs: {subs:#?}");
    }
    assert!(
        subs.iter().any(|s| s["purpose"] == "resubmit"),
        "a resubmission: {subs:#?}"
    );
    for s in &subs {
        assert!(!queued(s["job_id"].as_str().unwrap()), "job left: {s:?}");
    }
    // The time limit stopped a job midway: pseg-step said so in the job's log (its warning
    // drained the job, or, when Slurm's timer sent none in time, the limit's SIGTERM).
    let logs = log_dir(Path::new(subs[1]["script"].as_str().unwrap()));
    let all: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert!(
        all.iter()
            .any(|t| t.contains("Slurm's time-limit warning came")
                || t.contains("pseg-step: interrupted by signal")),
        "no drain in {}:\n{}\n{log2}",
        logs.display(),
        all.join("\n")
    );
    // The crashing granule failed for good, with its kind and report; every other is done,
    // byte-identical to the serial run.
    assert!(
        log2.contains("1 granule(s) failed for good:")
            && log2.contains("crash.gran (exit, 3 attempt(s))"),
        "{log2}"
    );
    assert!(log2.contains("crash.gran.pseg.yaml"), "{log2}");
    let serial = case.outputs("serial");
    let mut got = case.outputs("run/out");
    assert!(got.remove("pseg-report.html").is_some(), "no report page");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        serial.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &serial {
        assert!(got[name] == *bytes, "{name} differs from the serial run");
    }
    let verify = Command::new(cargo_bin!("pseg-slurm"))
        .args(["verify", "out"])
        .current_dir(&run)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert_eq!(campaign(&run)["run_outcome"]["exit"].as_u64(), Some(1));
    assert!(!run.join("out/pseg-state/run.lock").exists());
    case.assert_no_process_left();
}

#[test]
fn the_submission_bound_stops_a_run_before_anything_is_submitted() {
    // No Slurm needed: with nothing submitted yet, the bound is reached before any call.
    let case = Case::new(Link::Static);
    let run = crate::out_of_box::run_folder(&case);
    let out = run_cmd(&case, &run)
        .args(["--max-submissions", "0"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("stopped: --max-submissions 0 reached with 3 granule(s) left to do"),
        "{err}"
    );
    let record = campaign(&run);
    assert_eq!(
        record["run_outcome"]["exit"].as_u64(),
        Some(3),
        "{record:?}"
    );
    // The gen call is recorded without run's own flags, so `retry` can replay it.
    assert_eq!(
        record["gen"]["args"].as_sequence().unwrap().len(),
        2,
        "{record:?}"
    );
    assert!(!run.join("out/pseg-state/run.lock").exists());
}

#[test]
fn detach_leaves_the_run_to_a_watcher_job() {
    if !slurm_available("detach_leaves_the_run_to_a_watcher_job") {
        return;
    }
    // A bound of 0: the watcher's run stops at once, so the test shows the hand-over only.
    let case = Case::new(Link::Static);
    let run = crate::out_of_box::run_folder(&case);
    let out = Command::new(cargo_bin!("pseg-slurm"))
        .args([
            "run",
            "--files",
            "file_list",
            "--max-submissions",
            "0",
            "--detach",
        ])
        .current_dir(&run)
        .env("PATH", path_with_clavrxorb(&case))
        .env_remove("PSEG_SLURM_CONFIG")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let job = err
        .split("watcher job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no watcher job named: {err}"));
    let start = Instant::now();
    while queued(job) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "watcher {job} still queued"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(run.join(format!("out/logs/pseg-run-{job}.log")))
        .unwrap_or_else(|e| panic!("no watcher log: {e}; {err}"));
    assert!(
        log.contains("stopped: --max-submissions 0 reached"),
        "{log}"
    );
    assert_eq!(campaign(&run)["run_outcome"]["exit"].as_u64(), Some(3));
    case.assert_no_process_left();
}
