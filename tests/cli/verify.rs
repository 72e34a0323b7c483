//! Trusting `done` after the fact: `pseg-slurm verify` against outputs changed behind the
//! campaign's back, the resume rule against a truncated output, and claims that would
//! otherwise block a granule silently (unreadable claim files, a SIGKILLed holder).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use pseg_slurm::domain::ledger::{FailureKind, Ledger, Status};

use crate::support::{Case, HANG, Link, text};

fn pseg_slurm(cwd: &Path, args: &[&str]) -> Output {
    Command::new(cargo_bin!("pseg-slurm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_truncated_output_is_found_by_verify_and_redone_byte_identical() {
    let case = Case::new(Link::Pie);
    case.granule("a.gran", 40, &[]);
    case.granule("b.gran", 30, &[]);
    case.granule("c.gran", 20, &[]);
    case.list(&["a.gran", "b.gran", "c.gran"]);
    case.options(10);
    let first = case.step("out").output().unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let published = case.outputs("out");
    assert_eq!(published.len(), 3, "{:?}", published.keys());

    // Another folder than the campaign's would make every done granule look lost: refused.
    let state = case.path("out/pseg-state");
    let state = state.to_str().unwrap();
    std::fs::create_dir_all(case.path("elsewhere/pseg-reports")).unwrap();
    let wrong = pseg_slurm(case.dir.path(), &["verify", "elsewhere", "--state", state]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("writes into ") && wrong.stdout.is_empty(),
        "{}",
        text(&wrong.stderr)
    );
    let ledger = Ledger::open_existing(&case.path("out/pseg-state")).unwrap();
    for name in ["a.gran", "b.gran", "c.gran"] {
        assert_eq!(ledger.record(name).unwrap().unwrap().status, Status::Done);
    }

    let verify = || pseg_slurm(case.dir.path(), &["verify", "out"]);
    let clean = verify();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    assert!(clean.stdout.is_empty());
    assert!(
        text(&clean.stderr).contains("every output matches"),
        "{}",
        text(&clean.stderr)
    );

    // a: truncated and found by verify; b: one byte changed in place, the same size, which
    // only the hash shows; c: truncated, never verified: the resume rule alone must see it.
    let a = case.path("out/a.gran.level2.bin");
    let a_len = published["a.gran.level2.bin"].len() as u64;
    truncate(&a, a_len / 3);
    let mut b = published["b.gran.level2.bin"].clone();
    b[7] ^= 0xff;
    std::fs::write(case.path("out/b.gran.level2.bin"), &b).unwrap();
    let found = verify();
    assert_eq!(found.status.code(), Some(1), "{}", text(&found.stderr));
    let lines: Vec<String> = text(&found.stdout).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            format!(
                "a.gran: a.gran.level2.bin changed: {} bytes, {a_len} when published",
                a_len / 3
            ),
            "b.gran: b.gran.level2.bin changed: same size, other content (BLAKE3 differs)"
                .to_string(),
        ]
    );
    assert!(
        text(&found.stderr).contains("2 granule(s) recorded as failed (output-changed"),
        "{}",
        text(&found.stderr)
    );
    for name in ["a.gran", "b.gran"] {
        let r = ledger.record(name).unwrap().unwrap();
        assert_eq!(
            (r.status, r.kind),
            (Status::Failed, Some(FailureKind::OutputChanged)),
            "{name}"
        );
        assert!(r.error.unwrap().starts_with("pseg-slurm verify: "));
    }
    let status = pseg_slurm(case.dir.path(), &["status", "out"]);
    let shown = text(&status.stdout);
    assert!(
        shown.contains("(2 will be tried again on resume, 0 out of retries)")
            && shown.contains("output-changed"),
        "{shown}"
    );

    truncate(&case.path("out/c.gran.level2.bin"), 5);
    let again = case.step("out").output().unwrap();
    let err = text(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("3 granule(s) to claim"), "{err}");
    assert_eq!(case.outputs("out"), published, "redone byte-identical");
    let clean = verify();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stdout));
    for name in ["a.gran", "b.gran", "c.gran"] {
        let r = ledger.record(name).unwrap().unwrap();
        assert_eq!(r.status, Status::Done, "{name}");
        assert!(r.charged.is_empty(), "{name}: no retry used: {r:?}");
    }
    case.assert_no_process_left();
}

/// The record of `name` in `out`, once it says `running`.
fn wait_running(case: &Case, name: &str) {
    let start = Instant::now();
    loop {
        if let Ok(ledger) = Ledger::open_existing(&case.path("out/pseg-state")) {
            if let Ok(Some(r)) = ledger.record(name) {
                if r.status == Status::Running {
                    return;
                }
            }
        }
        assert!(start.elapsed() < HANG, "never running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until clavrxorb has processed a segment of `name`: past its first waitpoint, so
/// pseg-step drives it (and its watchdog knows its processes).
fn wait_processed_one_segment(case: &Case, name: &str) {
    let start = Instant::now();
    loop {
        let processed = std::fs::read_dir(case.scratch())
            .unwrap()
            .flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join(name).join("clavrx.stdout")).ok())
            .any(|out| out.contains("processed"));
        if processed {
            return;
        }
        assert!(start.elapsed() < HANG, "{name} never processed a segment");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unreadable_claims_are_shown_and_released_and_a_killed_holder_is_lost() {
    let case = Case::new(Link::Pie);
    for name in ["a.gran", "b.gran", "slow.gran"] {
        case.granule(name, 30, &[]);
    }
    case.list(&["slow.gran", "a.gran", "b.gran"]);
    case.options(10);

    // A pseg-step SIGKILLed while it runs slow.gran: its claim stays, its pid is gone.
    // One granule at a time: a.gran and b.gran must never have been claimed, as their
    // claim files are damaged below (with two in flight a.gran would be running too).
    let mut killed = case
        .step("out")
        .args(["--max-granules", "1"])
        .env("MOCK_CLAVRX_SLEEP_MS", "400")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&case, "slow.gran");
    wait_processed_one_segment(&case, "slow.gran");
    let dead_pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();
    case.wait_no_process_left("pseg-step's SIGKILL");
    // Two claim files nothing can read: damaged, or made by hand.
    let claims = case.path("out/pseg-state/claims");
    std::fs::write(claims.join("a.gran"), b"").unwrap();
    std::os::unix::fs::symlink("/nonexistent/claim", claims.join("b.gran")).unwrap();

    let status = pseg_slurm(case.dir.path(), &["status", "out"]);
    let shown = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    for needle in [
        "  lost                1".to_string(),
        "slow.gran  held by ".to_string(),
        format!("pid {dead_pid} is gone"),
        "unreadable claim files (2)".to_string(),
        "out/pseg-state/claims/a.gran (granule a.gran): empty".to_string(),
        "out/pseg-state/claims/b.gran (granule b.gran): a symbolic link to /nonexistent/claim, \
         which does not exist"
            .to_string(),
    ] {
        assert!(shown.contains(&needle), "{needle:?} not in:\n{shown}");
    }
    let json = pseg_slurm(case.dir.path(), &["status", "out", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (&json["counts"]["running"], &json["counts"]["lost"]),
        (&0.into(), &1.into()),
        "{json}"
    );
    assert_eq!(json["lost_claims"][0]["name"], "slow.gran");

    // A run takes the dead holder's granule over; the unreadable claims still block theirs.
    let run = case.step("out").output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        case.outputs("out").keys().collect::<Vec<_>>(),
        ["slow.gran.level2.bin"]
    );
    // pseg-step says what blocks them and how to free them, not "another task has them".
    let said = text(&run.stderr);
    for name in ["a.gran", "b.gran"] {
        assert!(
            said.contains(&format!("{name} is blocked by an unreadable claim"))
                && said.contains(&format!("pseg-slurm release --granule {name} --yes")),
            "{said}"
        );
    }
    assert!(!said.contains("being processed by other tasks"), "{said}");

    let dry = pseg_slurm(case.dir.path(), &["release", "out", "--all-unproven"]);
    let dry = text(&dry.stdout);
    assert!(
        dry.contains("would release unreadable claim file")
            && dry.contains("dry run: 2 claim(s) would be released"),
        "{dry}"
    );
    let released = pseg_slurm(
        case.dir.path(),
        &["release", "out", "--granule", "a.gran", "--yes"],
    );
    let said = text(&released.stdout);
    assert!(released.status.success(), "{}", text(&released.stderr));
    assert!(
        said.contains("released unreadable claim file") && said.contains("released 1 claim(s)"),
        "{said}"
    );
    let released = pseg_slurm(
        case.dir.path(),
        &["release", "out", "--granule", "b.gran", "--yes"],
    );
    assert!(
        text(&released.stdout).contains("released 1 claim(s)"),
        "{}",
        text(&released.stdout)
    );
    let status = text(&pseg_slurm(case.dir.path(), &["status", "out"]).stdout);
    assert!(!status.contains("unreadable claim"), "{status}");
    let run = case.step("out").output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(case.outputs("out").len(), 3);
    let ledger = Ledger::open_existing(&case.path("out/pseg-state")).unwrap();
    let slow = ledger.record("slow.gran").unwrap().unwrap();
    assert_eq!(
        (slow.status, slow.failures.get(&FailureKind::Lost)),
        (Status::Done, Some(&1))
    );
    case.assert_no_process_left();
}
