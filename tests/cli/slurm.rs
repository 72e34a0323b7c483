//! End to end on a real Slurm: `pseg-slurm gen --files list.txt | sbatch`, in both modes,
//! against the mock, and real cgroup memory enforcement.
//!
//! Needs the one-node test bed (`bash ci/slurm-testbed.sh up`, done by `ci/test.sh` as
//! root). Without it these tests skip loudly; under CI (`CI=true`) that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

use crate::support::{Case, Link, slurm_available, submit, text};

/// Granules of a few shapes, the list, options, and the serial reference outputs in `serial`.
fn campaign(case: &Case, extra: &[&str]) {
    let mut names = Vec::new();
    for (i, lines) in [40, 73, 10, 55, 1].iter().enumerate() {
        let name = format!("g{i}.gran");
        case.granule(&name, *lines, extra);
        names.push(name);
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    case.list(&names);
    case.options(10);
    let out = case.step("serial").arg("--serial").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `pseg-slurm gen ARGS | sbatch --parsable`, run from the test's directory; the job id.
fn gen_and_submit(case: &Case, args: &[&str]) -> String {
    submit(case.gen_cmd(case.mock()).args(args))
}

/// `gen_and_submit` of a 5-minute job into `out`, with `extra`; waits for it to end and
/// returns its elements' (JobState, ExitCode).
fn run_job(case: &Case, out: &str, extra: &[&str]) -> Vec<(String, String)> {
    let dir = case.path(out);
    let mut args = vec!["--time", "5", "--out", dir.to_str().unwrap()];
    args.extend(extra);
    wait_job(&gen_and_submit(case, &args), Duration::from_secs(180))
}

/// Waits for every element of job `id` to finish; returns (JobState, ExitCode) per element.
fn wait_job(id: &str, limit: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let out = Command::new("scontrol")
            .args(["show", "job", id, "-o"])
            .output()
            .unwrap();
        let listing = text(&out.stdout);
        let elements: Vec<(String, String)> = listing
            .lines()
            .map(|l| (field(l, "JobState"), field(l, "ExitCode")))
            .collect();
        let running = [
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "COMPLETING",
            "SUSPENDED",
        ];
        if !elements.is_empty() && elements.iter().all(|(s, _)| !running.contains(&s.as_str())) {
            return elements;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} still not finished after {limit:?}:\n{listing}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// Every job log under `out/logs`, concatenated, for messages.
fn logs(case: &Case, out: &str) -> String {
    let dir = case.path(out).join("logs");
    let mut all = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        all.push_str(&format!("== {}\n", e.path().display()));
        all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    all
}

fn assert_same_as_serial(case: &Case, out: &str) {
    let serial = case.outputs("serial");
    let got = case.outputs(out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        serial.keys().collect::<Vec<_>>(),
        "{}",
        logs(case, out)
    );
    for (name, bytes) in &serial {
        assert!(got[name] == *bytes, "{name} differs from the serial run");
    }
}

#[test]
fn array_job_outputs_equal_a_serial_run() {
    if !slurm_available("array_job_outputs_equal_a_serial_run") {
        return;
    }
    let case = Case::new(Link::Static);
    campaign(&case, &[]);
    let states = run_job(
        &case,
        "out-array",
        &[
            "--mode",
            "array",
            "--chunk-size",
            "2",
            "--cpus-per-task",
            "1",
            "--memory",
            "300M",
        ],
    );
    assert_eq!(states.len(), 3, "5 granules in chunks of 2: 3 elements");
    for (state, _) in &states {
        assert_eq!(state, "COMPLETED", "{}", logs(&case, "out-array"));
    }
    assert_same_as_serial(&case, "out-array");
    case.assert_no_process_left();
}

#[test]
fn tasks_job_outputs_equal_a_serial_run() {
    if !slurm_available("tasks_job_outputs_equal_a_serial_run") {
        return;
    }
    let case = Case::new(Link::Static);
    campaign(&case, &[]);
    let states = run_job(
        &case,
        "out-tasks",
        &[
            "--mode",
            "tasks",
            "--ntasks",
            "2",
            "--cpus-per-task",
            "1",
            "--memory",
            "300M",
        ],
    );
    assert_eq!(
        states,
        vec![("COMPLETED".into(), "0:0".into())],
        "{}",
        logs(&case, "out-tasks")
    );
    let log = logs(&case, "out-tasks");
    // Both tasks worked: each says what it claims.
    assert_eq!(log.matches("granule(s) to claim").count(), 2, "{log}");
    assert_same_as_serial(&case, "out-tasks");
}

#[test]
fn memory_sized_from_a_measured_peak_fits_and_far_too_little_is_oom_killed() {
    if !slurm_available("memory_sized_from_a_measured_peak_fits_and_far_too_little_is_oom_killed") {
        return;
    }
    let case = Case::new(Link::Static);
    // 10-line segments: 10 MiB read (shared with the clone), 80 MiB private per worker.
    let memory = ["--read-mem", "1048576", "--work-mem", "8388608"];
    case.granule("heavy.gran", 40, &memory);
    case.list(&["heavy.gran"]);
    case.options(10);
    // Both workers' memory at once, whatever the load: the peak the sized job may meet.
    let cg = case.fresh_cgroup("local", None);
    let mut step = case.step("local");
    step.env("MOCK_CLAVRX_HOLD", "2");
    let run = case.run_in_cgroup(&cg, &step, &["--max-workers", "2"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let peak = cg.peak();
    assert!(
        peak > 150 << 20,
        "two workers of 80 MiB each must show: {peak} bytes"
    );
    let peak_mem = format!("{}K", peak.div_ceil(1024));
    let states = run_job(
        &case,
        "out-fits",
        &["--cpus-per-task", "2", "--peak-mem", &peak_mem],
    );
    assert_eq!(states[0].0, "COMPLETED", "{}", logs(&case, "out-fits"));
    assert_eq!(case.outputs("out-fits"), case.outputs("local"));

    let states = run_job(
        &case,
        "out-starved",
        &["--cpus-per-task", "2", "--peak-mem", "40M"],
    );
    let log = logs(&case, "out-starved");
    assert_ne!(states[0].0, "COMPLETED", "{log}");
    assert!(
        log.contains("oom-kill") || log.contains("Out Of Memory"),
        "the cgroup killed it: {log}"
    );
    assert!(log.contains("FAILED") && log.contains("SIGKILL"), "{log}");
    assert!(case.outputs("out-starved").is_empty(), "no partial output");
}

/// `--max-workers 4` where the job's memory fits two workers: admission holds the cap at two
/// and the job finishes; without admission the same job is OOM-killed.
#[test]
fn memory_admission_keeps_a_job_inside_its_limit() {
    if !slurm_available("memory_admission_keeps_a_job_inside_its_limit") {
        return;
    }
    let case = Case::new(Link::Static);
    let per_line = (8u64 << 20).to_string(); // 80 MiB a worker on 10-line segments
    case.granule(
        "heavy.gran",
        80,
        &["--work", "3000000", "--work-mem", &per_line],
    );
    case.list(&["heavy.gran"]);
    case.options(10);
    let submit = |out: &str, step_args: &str| {
        let config = case.path(&format!("{out}.yaml"));
        std::fs::write(
            &config,
            format!("max_workers: 4\nstep_args: [{step_args}]\n"),
        )
        .unwrap();
        // 217 MiB + 15 % headroom: a 250 MiB job, room for two 80 MiB workers, not four.
        run_job(
            &case,
            out,
            &[
                "--config",
                config.to_str().unwrap(),
                "--cpus-per-task",
                "2",
                "--peak-mem",
                "217M",
                "--headroom",
                "15",
            ],
        )
    };

    let states = submit("admitted", "");
    let log = logs(&case, "admitted");
    assert_eq!(states[0].0, "COMPLETED", "{log}");
    assert!(log.contains("memory limit 250 MiB (cgroup"), "{log}");
    let r = case.report("admitted", "heavy.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("memory"), "{log}");
    // A worker past its processing has freed its memory, so a third may start then.
    assert!(r["workers"]["max_busy"].as_u64().unwrap() < 4, "{log}");
    assert_eq!(r["workers"]["cap"].as_u64(), Some(4));

    // Without admission the cgroup kills a worker; pseg-step redoes the granule with fewer
    // workers in the same job, so it still ends done.
    let _ = submit("unadmitted", "\"--mem-admission\", \"off\"");
    let log = logs(&case, "unadmitted");
    assert!(log.contains("out of memory with"), "{log}");
    assert!(log.contains("redoing it with at most"), "{log}");
    let r = case.report("unadmitted", "heavy.gran");
    assert_eq!(r["status"].as_str(), Some("done"), "{log}");
    assert!(!r["oom_retries"].as_sequence().unwrap().is_empty(), "{log}");
    assert_eq!(case.outputs("unadmitted"), case.outputs("admitted"));
}

/// What `pseg-step` measured sizes the next job: `gen --profile OUT/pseg-reports | sbatch`
/// asks for no more than 1.3x the peak the measured job really reached, and the sized job
/// completes without an OOM kill.
#[test]
fn a_job_sized_from_pseg_steps_own_reports_fits_its_measured_peak() {
    if !slurm_available("a_job_sized_from_pseg_steps_own_reports_fits_its_measured_peak") {
        return;
    }
    let case = Case::new(Link::Static);
    // 10-line segments: 10 MiB read (shared with the clone), 80 MiB private per worker.
    let memory = [
        "--work",
        "2000000",
        "--read-mem",
        "1048576",
        "--work-mem",
        "8388608",
    ];
    case.granule("heavy.gran", 40, &memory);
    case.list(&["heavy.gran"]);
    case.options(10);
    let states = run_job(
        &case,
        "first",
        &["--cpus-per-task", "2", "--peak-mem", "1G"],
    );
    assert_eq!(states[0].0, "COMPLETED", "{}", logs(&case, "first"));
    let first = case.path("first");

    let sized = case.path("sized");
    let args = [
        "--cpus-per-task",
        "2",
        "--time",
        "5",
        "--profile",
        &format!("{}/pseg-reports", first.display()),
        "--out",
        sized.to_str().unwrap(),
    ];
    let script = case.gen_cmd(case.mock()).args(args).output().unwrap();
    assert!(script.status.success(), "{}", text(&script.stderr));
    let script = text(&script.stdout);
    let per_cpu: u64 = script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --mem-per-cpu="))
        .and_then(|v| v.strip_suffix('M'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no --mem-per-cpu:\n{script}"));
    let id = gen_and_submit(&case, &args);
    let states = wait_job(&id, Duration::from_secs(180));
    let log = logs(&case, "sized");
    assert_eq!(states[0].0, "COMPLETED", "{log}");
    assert!(
        !log.contains("out of memory") && !log.contains("oom-kill"),
        "{log}"
    );
    assert_eq!(case.outputs("sized"), case.outputs("first"));
    let r = case.report("sized", "heavy.gran");
    assert!(r["oom_retries"].is_null(), "{log}");
    // Measured: the peak the kernel charged the first job's task (what the reports sized).
    let first = case.report("first", "heavy.gran");
    let measured = first["memory"]["cgroup"]["kernel_peak_bytes"]
        .as_u64()
        .unwrap();
    let requested = (per_cpu * 2) << 20;
    eprintln!(
        "requested {} MiB for a measured peak of {} MiB: {:.2}x; the sized job peaked at {} MiB \
         with up to {} workers",
        requested >> 20,
        measured >> 20,
        requested as f64 / measured as f64,
        r["memory"]["cgroup"]["kernel_peak_bytes"].as_u64().unwrap() >> 20,
        r["workers"]["max_busy"].as_u64().unwrap()
    );
    assert!(
        requested as f64 <= measured as f64 * 1.3 && requested > measured,
        "requested {requested} bytes for a measured peak of {measured}\n{script}"
    );
}

/// A copy of the mock of our own, so its processes are ours to count.
fn own_clavrxorb(case: &Case) -> PathBuf {
    let exe = case.path("clavrxorb");
    std::fs::copy(case.mock(), &exe).unwrap();
    exe
}

/// gen of a one-task, one-CPU job over the list into `out` with `exe` as clavrxorb, a time
/// limit of `minutes` and a 30 s warning; the caller adds the rest.
fn slowed_job(case: &Case, exe: &Path, minutes: &str, sleep_ms: &str) -> Command {
    let mut cmd = case.gen_cmd(exe);
    cmd.args(["--mode", "tasks", "--ntasks", "1", "--cpus-per-task", "1"])
        .args([
            "--memory",
            "300M",
            "--time",
            minutes,
            "--warning-seconds",
            "30",
        ])
        .arg("--out")
        .arg(case.path("out"))
        // Seen by the mock inside the job (sbatch exports the environment): each segment
        // takes this long, without changing the output.
        .env("MOCK_CLAVRX_SLEEP_MS", sleep_ms);
    cmd
}

/// Slurm's time-limit warning, to every step of job `id`, as `--signal=USR1@N` sends it.
fn warn(id: &str) {
    let sent = Command::new("scancel")
        .args(["--signal=USR1", id])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", text(&sent.stderr));
}

fn assert_no_clavrxorb(exe: &Path) {
    assert_eq!(
        processes_of(exe),
        Vec::<i32>::new(),
        "clavrxorb left behind"
    );
}

/// Live processes running the executable at `exe`.
fn processes_of(exe: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            (std::fs::read_link(e.path().join("exe")).ok()? == exe).then_some(pid)
        })
        .collect()
}

#[test]
fn a_time_limit_interrupts_midway_and_a_second_submission_completes_the_campaign() {
    if !slurm_available(
        "a_time_limit_interrupts_midway_and_a_second_submission_completes_the_campaign",
    ) {
        return;
    }
    let case = Case::new(Link::Static);
    campaign(&case, &[]);
    let exe = own_clavrxorb(&case);
    let submit_slowed = |sleep_ms: &str| submit(&slowed_job(&case, &exe, "5", sleep_ms));

    // 5 granules of 1 to 8 segments at 4 s each: about 100 s of work. Slurm's own warning
    // (`--signal=USR1@30`) lands up to a minute early, so the test sends it itself, at a
    // chosen point: one granule done, the next in flight.
    let id = submit_slowed("4000");
    let started = Instant::now();
    loop {
        let c = case.status("out")["counts"].clone();
        if c["done"].as_u64() >= Some(1) && c["running"].as_u64() == Some(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "never one done and one running: {c:?}\n{}",
            logs(&case, "out")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    warn(&id);
    let states = wait_job(&id, Duration::from_secs(240));
    let log = logs(&case, "out");
    assert_ne!(
        states[0].0, "COMPLETED",
        "the first job must not finish: {log}"
    );
    // The warning either ended the granule in flight (not projected to finish in time) or
    // let it finish and started nothing new; either way work was left undone.
    assert!(
        log.contains("interrupted by signal") || log.contains("time-limit warning came"),
        "{log}"
    );
    let s = case.status("out");
    let counts = &s["counts"];
    assert_eq!(counts["running"].as_u64(), Some(0), "{s:?}");
    assert_eq!(counts["claimed"].as_u64(), Some(0), "{s:?}");
    assert!(counts["done"].as_u64().unwrap() < 5, "{s:?}");
    assert_no_clavrxorb(&exe);
    let done_first = counts["done"].as_u64().unwrap();

    let states = wait_job(&submit_slowed("0"), Duration::from_secs(240));
    let log = logs(&case, "out");
    assert_eq!(states[0].0, "COMPLETED", "{log}");
    let s = case.status("out");
    assert_eq!(s["counts"]["done"].as_u64(), Some(5), "{s:?}");
    assert!(
        log.contains(&format!("{done_first} of 5 granule(s) already done")) || done_first == 0,
        "the second job skips what the first finished: {log}"
    );
    assert_same_as_serial(&case, "out");
}

#[test]
fn a_failed_granule_is_listed_by_status_and_produced_by_retry_once_fixed() {
    if !slurm_available("a_failed_granule_is_listed_by_status_and_produced_by_retry_once_fixed") {
        return;
    }
    let case = Case::new(Link::Static);
    case.granule("good.gran", 30, &[]);
    case.granule("bad.gran", 40, &["--fault", "clone-segv:2"]);
    case.list(&["good.gran", "bad.gran"]);
    case.options(10);
    run_job(&case, "out", &["--cpus-per-task", "1", "--memory", "300M"]);
    let out = case.path("out");
    let s = case.status("out");
    assert_eq!(s["counts"]["done"].as_u64(), Some(1), "{s:?}");
    assert_eq!(s["counts"]["failed"].as_u64(), Some(1), "{s:?}");
    let listing = Command::new(cargo_bin!("pseg-slurm"))
        .arg("status")
        .arg(&out)
        .output()
        .unwrap();
    let listing = text(&listing.stdout);
    assert!(
        listing.contains("bad.gran") && listing.contains("SIGSEGV"),
        "{listing}"
    );

    // The fault removed: the same granule, generated again without it.
    case.granule("bad.gran", 40, &[]);
    case.list(&["bad.gran"]);
    assert!(
        case.step("fixed-serial")
            .arg("--serial")
            .status()
            .unwrap()
            .success()
    );
    case.list(&["good.gran", "bad.gran"]);
    let id = submit(
        Command::new(cargo_bin!("pseg-slurm"))
            .arg("retry")
            .arg(&out)
            .arg("--failed")
            .current_dir(case.dir.path()),
    );
    let states = wait_job(&id, Duration::from_secs(180));
    assert!(
        states.iter().all(|(s, _)| s == "COMPLETED"),
        "{states:?} {}",
        logs(&case, "out")
    );
    let s = case.status("out");
    assert_eq!(s["counts"]["done"].as_u64(), Some(2), "{s:?}");
    assert_eq!(
        case.outputs("out")["bad.gran.level2.bin"],
        case.outputs("fixed-serial")["bad.gran.level2.bin"]
    );
}

#[test]
fn a_warning_midway_lets_the_granule_in_flight_finish_and_the_job_exit_138() {
    if !slurm_available("a_warning_midway_lets_the_granule_in_flight_finish_and_the_job_exit_138") {
        return;
    }
    let case = Case::new(Link::Static);
    case.two_granules();
    let exe = own_clavrxorb(&case);
    let submit_slowed = |sleep_ms: &str| {
        submit(
            slowed_job(&case, &exe, "10", sleep_ms)
                .arg("--work")
                .arg(case.path("work")),
        )
    };
    // 6 segments of about a second each, one worker: the warning lands about half-way.
    let id = submit_slowed("1000");
    let started = Instant::now();
    let first = case.path("work/first.gran");
    loop {
        let written = std::fs::read_dir(&first)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("clavrx.stdout"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .matches("processed, written at scan")
                    .count()
            })
            .sum::<usize>();
        if written >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never got half-way: {}",
            logs(&case, "out")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    warn(&id);
    let states = wait_job(&id, Duration::from_secs(120));
    let log = logs(&case, "out");
    assert_eq!(
        states[0].1, "138:0",
        "exit 138 asks for a resubmission: {log}"
    );
    assert!(log.contains("time-limit warning: kept"), "{log}");
    let s = case.status("out");
    assert_eq!(s["counts"]["done"].as_u64(), Some(1), "{s:?}\n{log}");
    assert_eq!(
        s["counts"]["pending"].as_u64(),
        Some(1),
        "nothing new started: {s:?}"
    );
    assert_no_clavrxorb(&exe);
    let serial = case.outputs("serial");
    let got = case.outputs("out");
    assert!(got["first.gran.level2.bin"] == serial["first.gran.level2.bin"]);
    assert!(!got.contains_key("second.gran.level2.bin"), "{log}");

    let id = submit_slowed("0");
    let states = wait_job(&id, Duration::from_secs(120));
    assert_eq!(states[0].0, "COMPLETED", "{}", logs(&case, "out"));
    assert_same_as_serial(&case, "out");
}

/// In a CLAVR-x run folder, with clavrxorb on PATH and no site config, `gen --files
/// file_list | sbatch` is all it takes: the outputs land in the file_list's output folder,
/// byte-identical to a serial run.
#[test]
fn a_clavrx_run_folder_is_submitted_with_no_flag_and_no_config() {
    if !slurm_available("a_clavrx_run_folder_is_submitted_with_no_flag_and_no_config") {
        return;
    }
    let case = Case::new(Link::Static);
    let run = crate::out_of_box::run_folder(&case);
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" gen --files file_list | sbatch --parsable"#)
        .arg(cargo_bin!("pseg-slurm"))
        .current_dir(&run)
        .env("PATH", crate::out_of_box::path_with_clavrxorb(&case))
        .env_remove("PSEG_SLURM_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen | sbatch failed:\n{}",
        text(&out.stderr)
    );
    let id = text(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let states = wait_job(&id, Duration::from_secs(180));
    for (state, _) in &states {
        assert_eq!(state, "COMPLETED", "{}", logs(&case, "run/out"));
    }
    assert_eq!(case.outputs("run/out"), case.outputs("serial"));
    assert_eq!(case.outputs("run/out").len(), 3);
    // With no flag the job fans out: more than one core per task, as many workers.
    let log = logs(&case, "run/out");
    assert!(log.contains("to claim with up to 2 workers"), "{log}");
    case.assert_no_process_left();
}

#[test]
fn a_script_whose_cpus_plan_chose_runs_on_the_test_bed() {
    if !slurm_available("a_script_whose_cpus_plan_chose_runs_on_the_test_bed") {
        return;
    }
    let case = Case::new(Link::Static);
    case.granule("busy.gran", 48, &["--work", "1000000"]);
    case.list(&["busy.gran"]);
    case.options(4);
    for (out, extra) in [("profile", None), ("serial", Some("--serial"))] {
        let o = case.step(out).args(extra).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    // No --cpus-per-task: gen projects the profile and asks scontrol how big the nodes are.
    let out = case.path("out-planned");
    let o = case
        .gen_cmd(case.mock())
        .arg("--out")
        .arg(&out)
        .arg("--profile")
        .arg(case.path("profile"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let script = text(&o.stdout);
    let note = script
        .lines()
        .find(|l| l.starts_with("# --cpus-per-task="))
        .unwrap_or_else(|| panic!("{script}"));
    assert!(
        note.contains("chosen by `pseg-slurm plan`") && note.contains("smallest node (scontrol)"),
        "{note}"
    );
    std::fs::write(case.path("planned.sbatch"), &script).unwrap();
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(case.path("planned.sbatch"))
        .current_dir(case.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let states = wait_job(&id, Duration::from_secs(180));
    for (state, _) in &states {
        assert_eq!(state, "COMPLETED", "{}", logs(&case, "out-planned"));
    }
    assert_same_as_serial(&case, "out-planned");
    case.assert_no_process_left();
}
