//! Slurm's time-limit warning (SIGUSR1) drains the work in flight: a granule projected to
//! finish before the job ends goes on and is published, nothing new starts, and the step
//! exits 138 so a wrapper resubmits; a granule that cannot finish is ended at once.
//!
//! Slurm sends the warning to every process of the step, clavrxorb and its clones too, so
//! these tests do the same. The Slurm test bed variant is in `slurm.rs`.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{Case, Link, text};

/// Segments written so far, from the mock's own stdout logs under `dir` (parent and clones).
fn segments_written(dir: &Path) -> usize {
    let mut n = 0;
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("clavrx.stdout") {
            let log = std::fs::read_to_string(&entry).unwrap_or_default();
            n += log.matches("processed, written at scan").count();
        }
    }
    n
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// Starts a slowed pseg-step whose job ends `job_left` from now, waits until it has written
/// `after` segments of its first granule, then warns it and every process it started.
fn warn_midway(case: &Case, out: &str, job_left: Duration, after: usize) -> (Child, String) {
    let end = SystemTime::now() + job_left;
    let mut child = case
        .step(out)
        .args(["--max-workers", "1"])
        .env("MOCK_CLAVRX_SLEEP_MS", "600")
        .env(
            "SLURM_JOB_END_TIME",
            end.duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                .to_string(),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while segments_written(&case.scratch()) < after {
        assert!(
            started.elapsed() < crate::support::HANG,
            "pseg-step never wrote {after} segments"
        );
        assert!(child.try_wait().unwrap().is_none(), "pseg-step ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // As Slurm does: the step's processes, clavrxorb and its clones included.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGUSR1).unwrap();
    for (pid, _) in case.processes_left() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGUSR1);
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (child, stderr)
}

#[test]
fn a_granule_that_can_finish_goes_on_after_the_warning_and_nothing_new_starts() {
    let case = Case::new(Link::Static);
    case.two_granules();
    let (mut child, log) = warn_midway(&case, "out", Duration::from_secs(3600), 2);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(138), "{log}");
    assert!(log.contains("time-limit warning: kept"), "{log}");
    assert!(log.contains("1 not started"), "{log}");
    let serial = case.outputs("serial");
    let got = case.outputs("out");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec!["first.gran.level2.bin"],
        "only the granule in flight is published:\n{log}"
    );
    assert!(got["first.gran.level2.bin"] == serial["first.gran.level2.bin"]);
    let report = case.report("out", "first.gran");
    assert_eq!(report["status"].as_str(), Some("done"));
    assert!(
        report["time_limit_warning"]
            .as_str()
            .is_some_and(|w| w.starts_with("kept: projected to finish")),
        "{report:?}"
    );
    let s = case.status("out");
    assert_eq!(s["counts"]["done"].as_u64(), Some(1), "{s:?}");
    assert_eq!(s["counts"]["pending"].as_u64(), Some(1), "{s:?}");
    case.assert_no_process_left();

    // The next submission does the rest.
    let out = case.step("out").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(case.outputs("out"), serial);
}

#[test]
fn a_granule_that_cannot_finish_before_the_end_is_ended_at_once() {
    let case = Case::new(Link::Static);
    case.two_granules();
    // The job ends in 20 s: inside the 30 s margin, so nothing can be kept.
    let (mut child, log) = warn_midway(&case, "out", Duration::from_secs(20), 1);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(138), "{log}");
    assert!(log.contains("time-limit warning: ended"), "{log}");
    assert!(case.outputs("out").is_empty(), "nothing published:\n{log}");
    let report = case.report("out", "first.gran");
    assert_eq!(report["status"].as_str(), Some("interrupted"));
    assert!(
        report["lines"].as_i64().unwrap() < 57,
        "it was ended, not run to the end: {report:?}"
    );
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("ended on Slurm's time-limit warning")),
        "{report:?}"
    );
    case.assert_no_process_left();
}

#[test]
fn gen_warns_when_the_time_limit_cannot_hold_one_granule() {
    let case = Case::new(Link::Static);
    case.granule("g.gran", 20, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let out = case.step("out").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gen_with = |time: &str| {
        case.gen_cmd(case.mock())
            .arg("--out")
            .arg(case.path("out"))
            .arg("--profile")
            .arg(case.path("out/pseg-reports/g.gran.pseg.yaml"))
            .args(["--time", time, "--warning-seconds", "60"])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap()
    };
    // 2 minutes cannot hold a granule plus a 60 s warning plus Slurm's minute.
    let short = gen_with("2");
    assert!(short.status.success(), "{}", text(&short.stderr));
    let said = text(&short.stderr);
    assert!(
        said.contains("--time 00:02:00 is shorter than one granule needs"),
        "{said}"
    );
    let long = gen_with("10");
    assert!(long.status.success(), "{}", text(&long.stderr));
    assert!(
        !text(&long.stderr).contains("shorter than one granule needs"),
        "{}",
        text(&long.stderr)
    );
}

#[test]
fn gen_with_a_profile_warns_early_enough_for_its_slowest_segment() {
    let case = Case::new(Link::Static);
    case.granule("g.gran", 40, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let out = case.step("out").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The report pseg-step wrote, with one segment made to take 200 s, as a real CLAVR-x
    // segment can.
    let path = case.path("out/pseg-reports/g.gran.pseg.yaml");
    let mut report: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let segment = report["segment_times"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s.get("started").is_some())
        .expect("a segment a worker started");
    let started = segment["started"].as_f64().unwrap();
    segment["written"] = (started + 200.0).into();
    std::fs::write(&path, serde_yaml::to_string(&report).unwrap()).unwrap();

    let gen_with = |extra: &[&str]| {
        let o = case
            .gen_cmd(case.mock())
            .arg("--out")
            .arg(case.path("out"))
            .arg("--profile")
            .arg(&path)
            .args(extra)
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    // 200 s + the 30 s drain margin: more than the 120 s default.
    let script = gen_with(&[]);
    assert!(script.contains("#SBATCH --signal=USR1@230\n"), "{script}");
    assert!(
        script.contains("the profile's slowest segment plus pseg-step's 30 s drain margin"),
        "{script}"
    );
    // A warning asked for by flag is kept as it is.
    let script = gen_with(&["--warning-seconds", "90"]);
    assert!(script.contains("#SBATCH --signal=USR1@90\n"), "{script}");
}
