//! A granule is `done` only when its output is proven complete, and no failure is silent:
//! `pseg-step` against a file clavrxorb skips, a clavrxorb ended from outside, a program
//! without the tracer, and a full disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use pseg_slurm::domain::ledger::{FailureKind, Ledger, Record, Status};

use crate::support::{Case, Link, needs_root, text};

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = text(&out.stderr);
    assert!(
        out.status.success(),
        "pseg-step failed ({}):\n{err}",
        out.status
    );
    err
}

fn record(case: &Case, out: &str, name: &str) -> Option<Record> {
    let ledger = Ledger::open_existing(&case.path(out).join("pseg-state")).unwrap();
    ledger.record(name).unwrap()
}

/// `pseg-slurm status OUT` as text and as YAML.
fn status(case: &Case, out: &str) -> (String, serde_yaml::Value) {
    let run = |extra: &[&str]| {
        let o = Command::new(cargo_bin!("pseg-slurm"))
            .arg("status")
            .arg(case.path(out))
            .args(extra)
            .env_remove("PSEG_SLURM_CONFIG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        o.stdout
    };
    let yaml = serde_yaml::from_slice(&run(&["--format", "yaml"])).unwrap();
    (text(&run(&[])), yaml)
}

#[test]
fn a_file_clavrxorb_skips_is_not_processed_and_the_others_are_done() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 30, &[]);
    case.granule("c.gran", 45, &[]);
    std::fs::write(case.path("data/bad.gran"), "this is not a level-1b file\n").unwrap();
    case.options(10);
    case.list(&["a.gran", "c.gran"]);
    run_ok(case.step("ref").arg("--serial"));
    case.list(&["a.gran", "bad.gran", "c.gran"]);
    for (out, serial) in [("par", false), ("ser", true)] {
        let mut step = case.step(out);
        if serial {
            step.arg("--serial");
        }
        let run = step.output().unwrap();
        let err = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{out}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("FAILED"))
            .unwrap_or_else(|| panic!("{out}: no failure line:\n{err}"));
        // Named, said why, and quoted clavrxorb's own error line.
        for needle in ["bad.gran", "no segment read", "bad header", "log: "] {
            assert!(line.contains(needle), "{out}: {needle:?} not in {line}");
        }
        assert!(err.contains("2 of 3 granule(s) done, 1 failed"), "{err}");
        assert_eq!(case.outputs(out), case.outputs("ref"), "{out}");

        let bad = record(&case, out, "bad.gran").expect("a record");
        assert_eq!(
            (bad.status, bad.kind),
            (Status::Failed, Some(FailureKind::NotProcessed)),
            "{out}"
        );
        assert!(
            bad.error.as_deref().unwrap_or("").contains("bad header"),
            "{bad:?}"
        );
        for good in ["a.gran", "c.gran"] {
            let r = record(&case, out, good).unwrap();
            assert_eq!(r.status, Status::Done, "{out} {good}");
            assert!(!r.weak_proof, "the tracer proved it");
        }

        let (plain, yaml) = status(&case, out);
        assert_eq!(yaml["counts"]["done"].as_u64(), Some(2), "{plain}");
        assert_eq!(yaml["counts"]["failed"].as_u64(), Some(1), "{plain}");
        let failure = &yaml["failures"][0];
        assert_eq!(failure["name"].as_str(), Some("bad.gran"));
        assert_eq!(failure["kind"].as_str(), Some("not-processed"));
        assert_eq!(failure["retryable"].as_bool(), Some(false), "bad input");
        assert!(plain.contains("not-processed"), "{plain}");

        // Bad input is not retried: a rerun has nothing to do.
        let again = run_ok(&mut case.step(out));
        assert!(again.contains("nothing left to do"), "{again}");
    }
    case.assert_no_process_left();
}

/// Files named `name` anywhere under `dir`.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(find(&path, name));
        } else if e.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_serial_clavrxorb_ended_from_outside_publishes_nothing_and_a_rerun_is_identical() {
    let case = Case::new(Link::Static);
    case.granule("g.gran", 60, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    run_ok(&mut case.step("ref"));

    let mut child = case
        .step("out")
        .arg("--serial")
        .env("MOCK_CLAVRX_SLEEP_MS", "400")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-granule: once clavrxorb has written a segment to its staged output.
    let start = Instant::now();
    let clavrxorb = loop {
        let staged = find(&case.scratch(), "g.gran.level2.bin");
        let written = staged
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
        let pid = case
            .processes_left()
            .into_iter()
            .find(|(_, stat)| stat.contains("(mock-clavrxorb)"))
            .map(|(p, _)| p);
        if let (true, Some(pid)) = (written, pid) {
            break pid;
        }
        assert!(start.elapsed() < crate::support::HANG, "never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // An outside SIGTERM: clavrxorb cleans up and exits 1, as after a normal end.
    Command::new("kill")
        .args(["-TERM", &clavrxorb.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("exited with status 1"),
        "the failure says what happened:\n{err}"
    );
    assert!(case.outputs("out").is_empty(), "nothing published\n{err}");
    let r = record(&case, "out", "g.gran").expect("a record");
    assert!(
        matches!(r.status, Status::Failed | Status::Interrupted),
        "{r:?}"
    );
    case.assert_no_process_left();

    // The rerun redoes it, serially with the tracer: identical, and reported per segment.
    run_ok(case.step("out").arg("--serial"));
    assert_eq!(case.outputs("out"), case.outputs("ref"));
    assert_eq!(record(&case, "out", "g.gran").unwrap().status, Status::Done);
    let report = case.report("out", "g.gran");
    assert_eq!(report["proof"].as_str(), Some("tracer"));
    assert_eq!(report["segments"].as_i64(), Some(6));
    assert_eq!(report["lines"].as_i64(), Some(60));
    let times = report["segment_times"].as_sequence().unwrap();
    assert_eq!(times.len(), 6, "{report:?}");
    for t in times {
        assert_eq!(t["lines"].as_i64(), Some(10), "{t:?}");
        assert!(t["written"].as_f64().is_some(), "{t:?}");
    }
    assert!(
        report["memory"]["pss_peak_bytes"].as_u64().unwrap() > 0,
        "memory measured"
    );
    case.assert_no_process_left();
}

/// A stand-in for a clavrxorb built without the tracer: writes `text` as the granule's
/// output (nothing when `None`) and exits with `code`.
fn untraced(case: &Case, name: &str, text: Option<&str>, code: i32) -> PathBuf {
    let path = case.path(name);
    let write = text.map_or(String::new(), |t| {
        format!("printf '{t}' > \"$(sed -n 2p file_list)/$(sed -n 3p file_list).level2.txt\"\n")
    });
    std::fs::write(&path, format!("#!/bin/sh\n{write}exit {code}\n")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

#[test]
fn without_tracer_symbols_serial_runs_use_the_weaker_proof_and_say_so() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 10, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let good = untraced(&case, "good.sh", Some("level2\\n"), 0);
    let err = run_ok(case.step("ok").arg("--serial").arg("--exe").arg(&good));
    assert!(
        err.contains("no tracer symbols") || err.contains("not an ELF"),
        "{err}"
    );
    assert!(err.contains("weaker proof"), "{err}");
    assert_eq!(
        case.outputs("ok")
            .get("g.gran.level2.txt")
            .map(Vec::as_slice),
        Some(&b"level2\n"[..])
    );
    assert_eq!(
        case.report("ok", "g.gran")["proof"].as_str(),
        Some("exit-and-outputs")
    );
    assert!(record(&case, "ok", "g.gran").unwrap().weak_proof);
    let (plain, _) = status(&case, "ok");
    assert!(plain.contains("weaker proof"), "{plain}");

    // Exit 0 without output, an empty output, or exit 1 (also clavrxorb's answer to anyone's
    // SIGTERM): never done.
    for (out, exe, kind) in [
        (
            "none",
            untraced(&case, "none.sh", None, 0),
            "no segment read",
        ),
        (
            "empty",
            untraced(&case, "empty.sh", Some(""), 0),
            "is empty",
        ),
        (
            "one",
            untraced(&case, "one.sh", Some("x"), 1),
            "exited with status 1",
        ),
    ] {
        let run = case
            .step(out)
            .arg("--serial")
            .arg("--exe")
            .arg(&exe)
            .output()
            .unwrap();
        let err = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{out}: {err}");
        assert!(err.contains(kind), "{out}: {kind:?} not in\n{err}");
        assert!(case.outputs(out).is_empty(), "{out}: nothing published");
        assert_eq!(
            record(&case, out, "g.gran").unwrap().status,
            Status::Failed,
            "{out}"
        );
    }
}

/// A small tmpfs, unmounted when dropped (also when an assertion fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs on {}", path.display());
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "resizing {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_storage_failure_that_costs_nothing_and_leaves_nothing() {
    if !needs_root("a_full_disk_is_a_storage_failure_that_costs_nothing_and_leaves_nothing") {
        return;
    }
    let case = Case::new(Link::Static);
    // 4000 lines give a 125 KiB output: more than the disk below holds. Two such granules are
    // in flight at once (two slots: the second starts while the first reads its segment 1),
    // and a small one waits behind them.
    case.granule("big.gran", 4000, &[]);
    case.granule("big2.gran", 4000, &[]);
    case.granule("small.gran", 20, &[]);
    let names = ["big.gran", "big2.gran", "small.gran"];
    case.list(&names);
    case.options(500);
    run_ok(&mut case.step("ref"));

    let disk = Tmpfs::mount(&case.path("full"), "96k");
    let run = case
        .step("full")
        .args(["--max-workers", "2", "--max-granules", "2"])
        .output()
        .unwrap();
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(9), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        case.outputs("full").is_empty(),
        "no output, whole or partial, is left: {:?}",
        case.outputs("full").keys().collect::<Vec<_>>()
    );
    // The first to finish fails to publish; the other, in flight then, is ended unfinished:
    // not its fault, so it is recorded interrupted rather than failed in turn.
    let records = ["big.gran", "big2.gran"].map(|n| record(&case, "full", n).expect(n));
    let (failed, stopped) = match records[0].status {
        Status::Failed => (&records[0], &records[1]),
        _ => (&records[1], &records[0]),
    };
    assert_eq!(
        (failed.status, failed.kind),
        (Status::Failed, Some(FailureKind::Storage)),
        "{failed:?}"
    );
    assert!(
        failed.charged.is_empty(),
        "no retry budget used: {failed:?}"
    );
    assert_eq!(failed.failures.get(&FailureKind::Storage), Some(&1));
    assert_eq!(stopped.status, Status::Interrupted, "{stopped:?}\n{err}");
    assert!(
        stopped.charged.is_empty(),
        "no retry budget used: {stopped:?}"
    );
    assert!(err.contains("ended unfinished"), "{err}");
    // The step stopped: the next granule would have hit the same full disk.
    assert!(
        record(&case, "full", "small.gran").is_none_or(|r| r.status == Status::Pending),
        "small.gran was not tried"
    );
    let ledger = Ledger::open_existing(&case.path("full/pseg-state")).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(ledger.pending(&names).unwrap(), names, "all still to do");
    case.assert_no_process_left();

    disk.resize("8m");
    run_ok(&mut case.step("full"));
    assert_eq!(case.outputs("full"), case.outputs("ref"));
    for name in &names {
        assert_eq!(
            record(&case, "full", name).unwrap().status,
            Status::Done,
            "{name}"
        );
    }
    case.assert_no_process_left();

    // A full work folder: clavrxorb's own write fails (and its error line may be lost on the
    // same disk), in both modes.
    for (out, serial) in [("w-par", false), ("w-ser", true)] {
        let work = Tmpfs::mount(&case.path(&format!("{out}-work")), "64k");
        let mut step = case.step(out);
        step.arg("--work").arg(&work.0);
        if serial {
            step.arg("--serial");
        }
        let run = step.output().unwrap();
        let err = text(&run.stderr);
        assert_eq!(run.status.code(), Some(9), "{out}: {err}");
        assert!(err.contains("refuses writes"), "{out}: {err}");
        assert!(case.outputs(out).is_empty(), "{out}: nothing published");
        // One storage failure (whichever big granule hit the full folder first); anything
        // else tried is interrupted, and nothing is charged.
        let tried: Vec<Record> = names.iter().filter_map(|n| record(&case, out, n)).collect();
        let storage = tried
            .iter()
            .filter(|r| r.kind == Some(FailureKind::Storage))
            .count();
        assert_eq!(storage, 1, "{out}: {tried:?}");
        for r in &tried {
            assert!(
                matches!(
                    r.status,
                    Status::Failed | Status::Interrupted | Status::Pending
                ) && r.charged.is_empty(),
                "{out}: no retry budget used: {r:?}"
            );
        }
        case.assert_no_process_left();

        work.resize("8m");
        run_ok(&mut step);
        assert_eq!(case.outputs(out), case.outputs("ref"), "{out}");
        case.assert_no_process_left();
    }

    // A full state folder: the same exit status, nothing published, and the rerun completes.
    let state = Tmpfs::mount(&case.path("state-disk"), "8k");
    let mut step = case.step("s");
    step.arg("--state").arg(&state.0);
    let run = step.output().unwrap();
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(9), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(case.outputs("s").is_empty(), "nothing published: {err}");
    state.resize("8m");
    run_ok(&mut step);
    assert_eq!(case.outputs("s"), case.outputs("ref"));
    case.assert_no_process_left();
}
