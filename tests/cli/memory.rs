//! Memory reports and admission against the mock, whose memory per segment is known.

use std::process::Output;

use crate::support::{Case, Link, TestCgroup, needs_cgroups, text};

const MIB: u64 = 1 << 20;

fn num(v: &serde_yaml::Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number: {v:?}", path.join(".")))
}

/// Each worker holds `work_mib` private MiB while it processes a 10-line segment.
fn heavy(case: &Case, name: &str, lines: u32, work_mib: u64, work: &str) {
    let per_line = (work_mib * MIB / 10).to_string();
    case.granule(name, lines, &["--work", work, "--work-mem", &per_line]);
}

#[test]
fn summed_pss_matches_the_known_memory_and_summed_rss_overstates_it() {
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 60, 80, "20000000");
    case.list(&["h.gran"]);
    case.options(10);
    let out = case
        .step("out")
        .args(["--max-workers", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = case.report("out", "h.gran");
    assert_eq!(r["schema"].as_str(), Some("pseg-report/1"));
    assert_eq!(num(&r, &["workers", "max_busy"]), 2.0);
    // Two workers of 80 MiB each at once; the processes' own baseline is a few MiB.
    let expected = (2 * 80 * MIB) as f64;
    let pss = num(&r, &["memory", "pss_peak_bytes"]);
    assert!(
        (pss - expected).abs() <= expected * 0.10,
        "summed PSS peak {} MiB, expected {} MiB within 10 %",
        pss / MIB as f64,
        expected / MIB as f64
    );
    let rss = num(&r, &["memory", "rss_peak_bytes"]);
    assert!(
        rss > pss,
        "clones share the parent's pages: RSS {rss} > PSS {pss}"
    );
    let private = num(&r, &["memory", "worker_private_peak_bytes"]);
    assert!(
        private >= (80 * MIB) as f64 && private < (90 * MIB) as f64,
        "{private}"
    );
    assert_eq!(
        num(&r, &["memory", "peak_bytes"]),
        pss,
        "outside Slurm: size by PSS"
    );
    let segments = r["segment_times"].as_sequence().unwrap();
    assert_eq!(segments.len(), 6);
    for s in &segments[1..] {
        let (q, st, p, w) = (
            num(s, &["queued"]),
            num(s, &["started"]),
            num(s, &["processed"]),
            num(s, &["written"]),
        );
        assert!(q <= st && st <= p && p <= w, "phases in order: {s:?}");
    }
}

#[test]
fn the_reported_cgroup_peak_is_the_kernels() {
    if !needs_cgroups("the_reported_cgroup_peak_is_the_kernels") {
        return;
    }
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 40, 64, "10000000");
    case.list(&["h.gran"]);
    case.options(10);
    let kernel = case.run_in_fresh_cgroup("out", &["--max-workers", "2"]) as f64;
    let r = case.report("out", "h.gran");
    let reported = num(&r, &["memory", "cgroup", "kernel_peak_bytes"]);
    let sampled = num(&r, &["memory", "cgroup", "usage_peak_bytes"]);
    assert!(
        reported <= kernel && reported >= kernel * 0.95,
        "reported kernel peak {reported} vs the kernel's {kernel} after the run"
    );
    assert!(
        sampled <= kernel && sampled >= kernel * 0.80,
        "sampled usage peak {sampled} vs kernel peak {kernel}"
    );
    assert!(
        r["memory"]["cgroup"]["dir"]
            .as_str()
            .unwrap()
            .contains("pseg-test-")
    );
}

#[test]
fn a_memory_budget_caps_workers_below_the_cpu_cap_and_the_report_says_so() {
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 100, 80, "2000000");
    case.list(&["h.gran"]);
    case.options(10);
    // 80 MiB a worker: 250 MiB fits two but not three.
    let out = case
        .step("capped")
        .args(["--max-workers", "4", "--mem-budget", "250M"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("memory limit 250 MiB (--mem-budget)"), "{err}");
    let r = case.report("capped", "h.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("memory"), "{err}");
    // A worker past its processing has freed its memory, so a third may start then.
    assert!(num(&r, &["workers", "max_busy"]) < 4.0);
    assert!(num(&r, &["memory", "pss_peak_bytes"]) < (250 * MIB) as f64);

    // Four workers hold their memory at once (the mock waits for each other), so the peak
    // does not hang on how the machine happens to schedule them.
    let out = case
        .step("free")
        .args(["--max-workers", "4"])
        .env("MOCK_CLAVRX_HOLD", "4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = case.report("free", "h.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("cpus"));
    assert!(
        num(&r, &["memory", "pss_peak_bytes"]) > (250 * MIB) as f64,
        "without the budget the same run goes over it"
    );
    assert_eq!(case.outputs("capped"), case.outputs("free"));
}

/// Workers of 80 MiB that the mock frees before its next waitpoint (`MOCK_CLAVRX_SPIKE`):
/// only a high-water mark sees them. 150 MiB holds clavrxorb, pseg-step and one worker, not
/// two.
fn spiky(case: &Case) {
    heavy(case, "s.gran", 30, 80, "3000000");
    case.list(&["s.gran"]);
    case.options(10);
    let out = case.step("serial").arg("--serial").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

const TWO_DO_NOT_FIT: u64 = 150 * MIB;

/// `pseg-step` into `out` with the spike on (and `env`), run with `args` in a fresh cgroup
/// limited to `limit` bytes; the cgroup, the run and its stderr.
fn spiking(
    case: &Case,
    out: &str,
    limit: u64,
    env: &[(&str, &str)],
    args: &[&str],
) -> (TestCgroup, Output, String) {
    let cg = case.fresh_cgroup(out, Some(limit));
    let mut step = case.step(out);
    step.env("MOCK_CLAVRX_SPIKE", "1").envs(env.iter().copied());
    let run = case.run_in_cgroup(&cg, &step, args);
    let err = text(&run.stderr);
    (cg, run, err)
}

#[test]
fn admission_from_the_first_segment_keeps_a_fresh_step_inside_a_limit_two_workers_exceed() {
    if !needs_cgroups("admission_from_the_first_segment_keeps_a_fresh_step_inside_a_limit") {
        return;
    }
    let case = Case::new(Link::Static);
    spiky(&case);
    // Samples only at the waitpoints, where the spike is already gone: the high-water marks
    // alone see it.
    let (cg, run, err) = spiking(
        &case,
        "admitted",
        TWO_DO_NOT_FIT,
        &[],
        &["--max-workers", "2", "--sample-interval", "0"],
    );
    assert!(run.status.success(), "{err}");
    assert_eq!(cg.oom_kills(), 0, "no OOM kill: {err}");
    assert!(
        err.contains("memory holds workers at 1: one more would not fit")
            && err.contains("(first-segment estimate)"),
        "{err}"
    );
    let r = case.report("admitted", "s.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("memory"), "{err}");
    assert_eq!(num(&r, &["workers", "max_busy"]), 1.0);
    assert!(r["oom_retries"].is_null(), "no redo was needed: {r:?}");
    // Known before any clone ran: clavrxorb's own first segment, seen by its high-water mark.
    assert!(
        r["memory"]["held_by"]
            .as_str()
            .unwrap()
            .contains("first-segment"),
        "{r:?}"
    );
    let hwm = num(&r, &["memory", "worker_private_hwm_bytes"]);
    let sampled = num(&r, &["memory", "worker_private_peak_bytes"]);
    assert!(
        hwm >= (75 * MIB) as f64 && hwm < (90 * MIB) as f64,
        "a worker's high-water mark shows its 80 MiB: {hwm}"
    );
    assert!(
        sampled < (20 * MIB) as f64,
        "the samples miss it: {sampled}"
    );
    assert!(
        num(&r, &["memory", "peak_bytes"]) >= num(&r, &["memory", "pss_peak_bytes"]) + hwm * 0.9,
        "sized by the high-water figure, the larger: {r:?}"
    );
    assert_eq!(case.outputs("admitted"), case.outputs("serial"));
    case.assert_no_process_left();
}

#[test]
fn an_oom_kill_is_redone_in_the_step_with_fewer_workers() {
    if !needs_cgroups("an_oom_kill_is_redone_in_the_step_with_fewer_workers") {
        return;
    }
    let case = Case::new(Link::Static);
    spiky(&case);
    // Each worker holds its memory a second: the two overlap however loaded the machine is.
    let (cg, run, err) = spiking(
        &case,
        "redone",
        TWO_DO_NOT_FIT,
        &[("MOCK_CLAVRX_SLEEP_MS", "1000")],
        &["--max-workers", "2", "--mem-admission", "off"],
    );
    assert!(run.status.success(), "{err}");
    assert!(cg.oom_kills() >= 1, "two workers do not fit: {err}");
    assert!(
        err.contains("out of memory with 2 worker(s) at once")
            && err.contains("redoing it with at most 1"),
        "{err}"
    );
    let r = case.report("redone", "s.gran");
    assert_eq!(r["status"].as_str(), Some("done"));
    let retries = r["oom_retries"]
        .as_sequence()
        .expect("the redo is recorded");
    assert_eq!(retries.len(), 1, "{r:?}");
    assert_eq!(num(&retries[0], &["cap"]), 2.0);
    assert_eq!(num(&retries[0], &["max_busy"]), 2.0);
    assert!(
        retries[0]["error"].as_str().unwrap().contains("SIGKILL"),
        "{retries:?}"
    );
    assert_eq!(num(&r, &["workers", "cap"]), 1.0, "the cap that held");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("memory"));
    assert_eq!(case.outputs("redone"), case.outputs("serial"));
    assert!(
        !case.path("redone/pseg-failed").exists(),
        "nothing kept as failed"
    );
    case.assert_no_process_left();

    // Segment 1 alone does not fit: OOM-killed with one worker, recorded failed as `oom`.
    let (_cg, run, err) = spiking(
        &case,
        "starved",
        60 * MIB,
        &[],
        &["--max-workers", "2", "--mem-admission", "off"],
    );
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("FAILED") && err.contains("SIGKILL") && err.contains("out of memory"),
        "{err}"
    );
    assert!(case.outputs("starved").is_empty(), "no partial output");
    let status = std::process::Command::new(assert_cmd::cargo::cargo_bin!("pseg-slurm"))
        .args(["status", "--format", "yaml"])
        .arg(case.path("starved"))
        .output()
        .unwrap();
    let listing = text(&status.stdout);
    assert!(listing.contains("oom"), "{listing}");
    case.assert_no_process_left();
}

/// `pseg-slurm ARGS` from the test's directory.
fn pseg_slurm(case: &Case, args: &[&str]) -> std::process::Output {
    std::process::Command::new(assert_cmd::cargo::cargo_bin!("pseg-slurm"))
        .args(args)
        .current_dir(case.dir.path())
        .output()
        .unwrap()
}

/// The `--mem-per-cpu` a script asks for, in MiB.
fn mem_per_cpu(script: &str) -> u64 {
    script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --mem-per-cpu="))
        .and_then(|v| v.strip_suffix('M'))
        .unwrap_or_else(|| panic!("no --mem-per-cpu in:\n{script}"))
        .parse()
        .unwrap()
}

#[test]
fn gen_and_retry_size_jobs_from_what_pseg_step_wrote() {
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 30, 40, "0");
    case.granule("bad.gran", 30, &["--fault", "clone-segv:2"]);
    case.list(&["h.gran", "bad.gran"]);
    case.options(10);
    let run = case
        .step("out")
        .args(["--max-workers", "2"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let reports = case.path("out/pseg-reports");
    let summaries: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .collect();
    assert_eq!(
        summaries.len(),
        1,
        "the step wrote its summary beside the reports"
    );
    let peak = num(&case.report("out", "h.gran"), &["memory", "peak_bytes"]);
    // 15 % headroom on one CPU, rounded up to whole MiB.
    let sized = (peak * 1.15 / MIB as f64).ceil() as u64;
    let mock = case.mock().to_str().unwrap();
    let gen_args = |out: &str, profile: &str| -> Vec<String> {
        [
            "gen",
            "--files",
            "data/list.txt",
            "--exe",
            mock,
            "--options",
            "clavrx_options",
            "--max-array-size",
            "1001",
            "--out",
            out,
            "--profile",
            profile,
        ]
        .map(String::from)
        .to_vec()
    };
    for profile in [
        "out",
        "out/pseg-reports",
        "out/pseg-reports/h.gran.pseg.yaml",
    ] {
        let args = gen_args("next", profile);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let made = pseg_slurm(&case, &args);
        let err = text(&made.stderr);
        assert!(made.status.success(), "--profile {profile}: {err}");
        let script = text(&made.stdout);
        assert_eq!(
            mem_per_cpu(&script),
            sized,
            "--profile {profile}:\n{script}"
        );
        assert!(
            script.contains("maximum of 1 done granule report"),
            "{script}"
        );
    }

    // A campaign sized from that folder: retry reads the stored --profile again, step
    // summary and all.
    let args = gen_args("again", "out/pseg-reports");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let made = pseg_slurm(&case, &args);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let run = case
        .step("again")
        .args(["--max-workers", "2"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let retry = pseg_slurm(&case, &["retry", "again", "--failed"]);
    let err = text(&retry.stderr);
    assert!(retry.status.success(), "{err}");
    let script = text(&retry.stdout);
    assert_eq!(mem_per_cpu(&script), sized, "{script}");
    assert!(script.contains("list-retry-1.txt"), "{script}");
}
