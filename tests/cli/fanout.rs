//! `pseg-step` against the mock: parallel output equals serial output byte for byte, faults
//! fail only their granule with a message that names it, and no process outlives a run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pseg_slurm::domain::ledger::{Ledger, Status};

use crate::support::{Case, Link, text};

/// Granules covering the shapes that break offset arithmetic: one segment, an uneven last
/// segment, segments of one line, and a bigger one.
fn shapes(case: &Case) -> Vec<&'static str> {
    case.granule("one-segment.gran", 10, &[]);
    case.granule("uneven.gran", 103, &[]);
    case.granule("single-line.gran", 1, &[]);
    case.granule("big.gran", 640, &["--work", "50"]);
    let names = vec![
        "one-segment.gran",
        "uneven.gran",
        "single-line.gran",
        "big.gran",
    ];
    case.list(&names);
    names
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pseg-step failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// `fill`: what the mock puts in `scan_line_number` past a short segment's lines.
fn parallel_equals_serial(link: Link, fill: &str, scan_lines: &[u32], extra: &[&str]) {
    let case = Case::new(link);
    let names = shapes(&case);
    case.options(10);
    run_ok(case.step("serial").arg("--serial"));
    let serial = case.outputs("serial");
    assert_eq!(serial.len(), names.len(), "one output per granule");
    for n in &names {
        let expected_lines = match *n {
            "one-segment.gran" => 10,
            "uneven.gran" => 103,
            "single-line.gran" => 1,
            _ => 640,
        };
        assert_eq!(
            serial[&format!("{n}.level2.bin")].len(),
            32 * expected_lines
        );
    }
    for &s in scan_lines {
        let out = format!("parallel-{s}");
        let log = run_ok(
            case.step(&out)
                .args(["--scan-lines", &s.to_string()])
                .args(extra)
                .env("MOCK_CLAVRX_SCAN_FILL", fill),
        );
        let parallel = case.outputs(&out);
        for (name, bytes) in &serial {
            assert!(
                parallel.get(name) == Some(bytes),
                "{name} differs from the serial run with scan_lines {s} {extra:?} {fill}\n{log}"
            );
        }
        assert_eq!(parallel.len(), serial.len(), "no stray outputs");
        assert!(log.contains("all 4 granule(s) done"), "{log}");
    }
    case.assert_no_process_left();
}

#[test]
fn pie_parallel_output_is_byte_identical_to_serial() {
    parallel_equals_serial(Link::Pie, "numbered", &[1, 7, 10, 64, 1000], &[]);
}

#[test]
fn static_non_pie_parallel_output_is_byte_identical_to_serial() {
    parallel_equals_serial(Link::Static, "missing", &[1, 7, 64], &[]);
}

#[test]
fn one_worker_and_no_lead_still_give_the_serial_bytes() {
    parallel_equals_serial(
        Link::Static,
        "numbered",
        &[3],
        &["--max-workers", "1", "--max-lead", "1"],
    );
}

#[test]
fn many_workers_give_the_serial_bytes() {
    parallel_equals_serial(
        Link::Pie,
        "missing",
        &[5],
        &["--max-workers", "8", "--max-lead", "4"],
    );
}

#[test]
fn options_file_positional_layout_is_honoured_and_never_edited() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 50, &[]);
    case.list(&["g.gran"]);
    let options = case.path("clavrx_options");
    let original = "1 !E1 messages\n 20  !E2 Num scan lines\n";
    std::fs::write(&options, original).unwrap();
    let log = run_ok(&mut case.step("a"));
    assert!(log.contains("segments of 20 lines"), "{log}");
    let log = run_ok(case.step("b").args(["--scan-lines", "3"]));
    assert!(log.contains("segments of 3 lines"), "{log}");
    assert_eq!(std::fs::read_to_string(&options).unwrap(), original);
    assert_eq!(case.outputs("a"), case.outputs("b"));
}

/// A list of good, faulty, good: only the faulty granule fails, with one message that names
/// it and what happened, and nothing is left running.
fn fault_fails_only_its_granule(fault: &str, expect: &[&str], extra: &[&str]) -> Case {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 30, &[]);
    case.granule("bad.gran", 60, &["--fault", fault]);
    case.granule("c.gran", 30, &[]);
    case.list(&["a.gran", "bad.gran", "c.gran"]);
    case.options(10);
    let out = case.step("out").args(extra).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no failure line:\n{err}"));
    assert!(line.contains("bad.gran"), "{line}");
    assert!(line.contains("pid "), "{line}");
    assert!(line.contains("log: "), "{line}");
    for e in expect {
        assert!(line.contains(e), "expected {e:?} in: {line}");
    }
    assert!(err.contains("2 of 3 granule(s) done, 1 failed"), "{err}");
    let outputs = case.outputs("out");
    assert!(outputs.contains_key("a.gran.level2.bin"));
    assert!(outputs.contains_key("c.gran.level2.bin"));
    assert!(
        !outputs.contains_key("bad.gran.level2.bin"),
        "a failed granule leaves no output"
    );
    let log = line
        .split("log: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        std::path::Path::new(log).exists(),
        "the named log {log} exists"
    );
    case.assert_no_process_left();
    case
}

#[test]
fn a_clone_that_segfaults_fails_its_granule() {
    let case =
        fault_fails_only_its_granule("clone-segv:3", &["segment 3", "SIGSEGV", "clone"], &[]);
    let r = case.report("out", "bad.gran");
    assert_eq!(r["status"].as_str(), Some("failed"));
    assert_eq!(r["exit_signal"].as_i64(), Some(11));
    let good = case.report("out", "a.gran");
    assert_eq!(good["status"].as_str(), Some("done"));
    assert_eq!(good["exit_status"].as_i64(), Some(0));
}

#[test]
fn a_parent_that_exits_3_fails_its_granule() {
    fault_fails_only_its_granule(
        "parent-exit3:4",
        &["exited with status 3", "segment 4"],
        &[],
    );
}

#[test]
fn a_hung_process_fails_its_granule_after_the_stall_timeout() {
    fault_fails_only_its_granule(
        "hang:2",
        &["stopped answering", "segment 2"],
        &["--stall-timeout", "2"],
    );
}

#[test]
fn a_process_that_stops_itself_outside_a_waitpoint_is_continued() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 60, &["--fault", "self-stop:3"]);
    case.list(&["g.gran"]);
    case.options(10);
    run_ok(&mut case.step("par"));
    case.granule("g.gran", 60, &[]);
    run_ok(case.step("ser").arg("--serial"));
    assert_eq!(case.outputs("par"), case.outputs("ser"));
    case.assert_no_process_left();
}

#[test]
fn sigterm_ends_every_process_within_slurms_kill_wait() {
    for signal in ["TERM", "INT", "USR1"] {
        let case = Case::new(Link::Static);
        // Enough work per line that the run is certainly busy when the signal lands.
        case.granule("slow.gran", 400, &["--work", "2000000"]);
        case.list(&["slow.gran"]);
        case.options(10);
        let mut child = case.step("out").stderr(Stdio::piped()).spawn().unwrap();
        // Wait until clones exist (more than pseg-step and the parent clavrxorb).
        let start = Instant::now();
        while case.processes_left().len() < 3 {
            assert!(
                start.elapsed() < crate::support::HANG,
                "clones never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = Instant::now();
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let took = sent.elapsed();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        // Slurm sends SIGKILL KillWait (30 s by default) after SIGTERM, and a pseg-step
        // killed then records nothing: the bar is that, not a speed (a loaded machine may
        // take seconds to end and reap the group and write the records).
        eprintln!("{signal}: pseg-step ended {took:?} after the signal");
        assert!(took < Duration::from_secs(30), "took {took:?}\n{err}");
        let expected = match signal {
            "TERM" => 143,
            "INT" => 130,
            _ => 138, // Slurm's warning before the time limit
        };
        assert_eq!(status.code(), Some(expected), "{err}");
        assert!(err.contains("interrupted"), "{err}");
        case.assert_no_process_left();
        assert!(
            case.outputs("out").is_empty(),
            "no partial output published"
        );
        let ledger = Ledger::open_existing(&case.path("out/pseg-state")).unwrap();
        let record = ledger.record("slow.gran").unwrap().expect("a record");
        assert_eq!(record.status, Status::Interrupted, "{signal}");
        assert!(
            record.charged.is_empty(),
            "an interruption uses no retry budget"
        );
    }
}

#[test]
fn an_inherited_socket_does_not_reach_clavrxorb() {
    // A clone dies when it cannot reopen an inherited descriptor; sockets cannot be reopened.
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 40, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let step = case.step("out");
    let args: Vec<String> = std::iter::once(step.get_program())
        .chain(step.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = "import socket, subprocess, sys\n\
                  a, b = socket.socketpair()\n\
                  a.set_inheritable(True)\n\
                  sys.exit(subprocess.run(sys.argv[1:], pass_fds=[a.fileno()]).returncode)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&args)
        .env_remove("SLURM_PROCID")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(case.outputs("out").len(), 1);
}

/// Bad input: one clear line naming the culprit, and a distinct exit status.
#[test]
fn bad_input_gets_a_clear_error_and_its_own_exit_status() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 10, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let check = |cmd: &mut Command, status: i32, needles: &[&str]| {
        let out = cmd.output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} in {err}");
        }
    };
    check(
        case.step("o").args(["--exe", "/no/such/clavrxorb"]),
        3,
        &["/no/such/clavrxorb", "--exe"],
    );
    check(
        case.step("o").args(["--exe", "/bin/true"]),
        4,
        &["/bin/true", "tracer support"],
    );
    let empty = case.path("empty.txt");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    check(
        case.step("o").arg("--files").arg(&empty),
        5,
        &["empty.txt", "no granules"],
    );
    let missing = case.path("data/missing.txt");
    std::fs::write(&missing, "g.gran\nnot-there.gran\n").unwrap();
    let out = case
        .step("o")
        .arg("--files")
        .arg(&missing)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("line 2") && err.contains("not-there.gran"),
        "{err}"
    );
    check(
        case.step("o").args(["--options", "/no/such/options"]),
        7,
        &["/no/such/options"],
    );
    let bad = case.path("bad_options");
    std::fs::write(&bad, "scan_lines = many\n").unwrap();
    check(
        case.step("o").arg("--options").arg(&bad),
        8,
        &["bad_options:1", "many"],
    );
    let file = case.path("a-file");
    std::fs::write(&file, "").unwrap();
    check(
        case.step("o").arg("--out").arg(file.join("sub")),
        9,
        &["a-file/sub", "--out"],
    );
    assert!(!case.path("o").exists() || case.outputs("o").is_empty());
}

#[test]
fn a_killed_pseg_step_leaves_no_clavrxorb_behind() {
    // SIGKILL gives pseg-step no chance to clean up: its watchdog must. Under nohup (as on a
    // login node) SIGHUP is ignored, so the kernel's SIGHUP to an orphaned stopped group does
    // not end the clones either.
    let case = Case::new(Link::Static);
    case.granule("slow.gran", 400, &["--work", "2000000"]);
    case.list(&["slow.gran"]);
    case.options(10);
    let mut child = case.start_nohup(&case.step("out"));
    let start = Instant::now();
    while case.processes_left().len() < 4 {
        assert!(
            start.elapsed() < crate::support::HANG,
            "clones never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    case.wait_no_process_left("pseg-step's SIGKILL");
}

#[test]
fn a_scheduler_terminating_every_process_interrupts_and_publishes_nothing() {
    // Slurm signals every process of a step: clavrxorb (which exits 1 on SIGTERM) may go a
    // moment before pseg-step hears of it. That is an interruption, not a finished or failed
    // granule, in both modes.
    for serial in [true, false] {
        let case = Case::new(Link::Static);
        case.granule("g.gran", 60, &[]);
        case.list(&["g.gran"]);
        case.options(10);
        let mut step = case.step("out");
        if serial {
            step.arg("--serial");
        }
        let mut child = step
            .env("MOCK_CLAVRX_SLEEP_MS", "300")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let me = child.id() as i32;
        let start = Instant::now();
        let others = loop {
            let pids: Vec<i32> = case
                .processes_left()
                .into_iter()
                .map(|(p, _)| p)
                .filter(|&p| p != me)
                .collect();
            // The watchdog shares the test's directory; clavrxorb runs in the scratch below.
            if pids.len() >= 2 {
                break pids;
            }
            assert!(start.elapsed() < crate::support::HANG, "never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(500));
        for p in &others {
            let _ = Command::new("kill")
                .args(["-TERM", &p.to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(10));
        Command::new("kill")
            .args(["-TERM", &me.to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(143), "serial {serial}: {err}");
        assert!(
            case.outputs("out").is_empty(),
            "serial {serial}: nothing published\n{err}"
        );
        let ledger = Ledger::open_existing(&case.path("out/pseg-state")).unwrap();
        let record = ledger.record("g.gran").unwrap().expect("a record");
        assert_eq!(record.status, Status::Interrupted, "serial {serial}: {err}");
        assert!(record.charged.is_empty(), "no retry budget used");
    }
}

/// Real CLAVR-x keeps `scan_line_number` `scan_lines` long for the short last segment too,
/// filled with -999 or numbered on past the granule's end: line counts that are not a
/// multiple of the segment size must still finish, identical to serial, counted right.
#[test]
fn granules_with_a_short_last_segment_finish_in_both_fill_modes() {
    let case = Case::new(Link::Static);
    let granules: [(&str, i64); 4] = [
        ("g1000.gran", 1000),
        ("g237.gran", 237),
        ("g50.gran", 50),
        ("g4999.gran", 4999),
    ];
    for (name, lines) in granules {
        case.granule(name, lines as u32, &[]);
    }
    let names: Vec<&str> = granules.iter().map(|(n, _)| *n).collect();
    case.list(&names);
    case.options(100);
    run_ok(case.step("serial").arg("--serial"));
    let serial = case.outputs("serial");
    for fill in ["missing", "numbered"] {
        let out = format!("parallel-{fill}");
        let log = run_ok(
            case.step(&out)
                .args(["--max-workers", "2"])
                .env("MOCK_CLAVRX_SCAN_FILL", fill),
        );
        assert!(log.contains("all 4 granule(s) done"), "{fill}:\n{log}");
        assert_eq!(case.outputs(&out), serial, "{fill}: differs from serial");
        for (index, (name, lines)) in granules.into_iter().enumerate() {
            let segments = (lines + 99) / 100;
            let done = format!("[{}/4] {name}: done in", index + 1);
            let counts = format!("({segments} segments, {lines} lines;");
            assert!(
                log.lines()
                    .any(|l| l.contains(&done) && l.contains(&counts)),
                "{fill}: no `{done} .. {counts}` line:\n{log}"
            );
            let report = case.report(&out, name);
            assert_eq!(report["lines"].as_i64(), Some(lines), "{fill} {name}");
            assert_eq!(report["segments"].as_i64(), Some(segments), "{fill} {name}");
            let per_segment: Vec<i64> = report["segment_times"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|s| s["lines"].as_i64().unwrap())
                .collect();
            let expected: Vec<i64> = (0..segments).map(|k| (lines - 100 * k).min(100)).collect();
            assert_eq!(per_segment, expected, "{fill} {name}: lines per segment");
        }
    }
    case.assert_no_process_left();
}
