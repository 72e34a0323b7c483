//! Granules in flight at once (`--max-granules`): the next granule's clavrxorb starts while
//! the last one starts up, and yet every output is the serial one, a failure ends only its
//! own granule, and a signal ends and records every granule in flight.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pseg_slurm::domain::ledger::{Ledger, Status};

use crate::support::{Case, Link, text};

/// Start-up CPU time of every mock clavrxorb run: while one starts up, a slot idles.
const STARTUP_MS: &str = "150";

/// When granule `name` started and ended, from its report (Unix seconds).
fn span(case: &Case, out: &str, name: &str) -> (f64, f64) {
    let r = case.report(out, name);
    let start = r["started_unix"].as_f64().expect("started_unix");
    (
        start,
        start + r["wall_seconds"].as_f64().expect("wall_seconds"),
    )
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// pseg-step as a user runs it: two granules in flight is the default.
fn overlapping(case: &Case, out: &str) -> Command {
    let mut cmd = case.step(out);
    cmd.args(["--max-workers", "2"])
        .env("MOCK_CLAVRX_STARTUP_MS", STARTUP_MS);
    cmd
}

#[test]
fn granules_in_flight_at_once_give_the_serial_bytes() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 103, &["--work", "20000"]);
    case.granule("b.gran", 1, &[]);
    case.granule("c.gran", 64, &["--work", "20000"]);
    case.list(&["a.gran", "b.gran", "c.gran"]);
    case.options(10);
    let out = case.step("serial").arg("--serial").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = overlapping(&case, "overlap").output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(case.outputs("serial").len(), 3);
    assert_eq!(case.outputs("serial"), case.outputs("overlap"), "{err}");
    // While a.gran's clavrxorb starts up it holds one of two slots: b.gran starts beside it.
    let (a, b) = (
        span(&case, "overlap", "a.gran"),
        span(&case, "overlap", "b.gran"),
    );
    assert!(
        overlap(a, b),
        "a {a:?} and b {b:?} ran one after the other\n{err}"
    );
    // The serial reference runs one granule at a time, and so does --max-granules 1.
    let out = overlapping(&case, "one")
        .args(["--max-granules", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(case.outputs("serial"), case.outputs("one"));
    for run in ["serial", "one"] {
        let (a, b) = (span(&case, run, "a.gran"), span(&case, run, "b.gran"));
        assert!(!overlap(a, b), "{run}: overlapped granules");
    }
    case.assert_no_process_left();
}

#[test]
fn a_clone_crash_in_one_granule_in_flight_fails_only_that_one() {
    let case = Case::new(Link::Static);
    case.granule("crash.gran", 60, &["--fault", "clone-segv:3"]);
    case.granule("fine.gran", 200, &["--work", "400000"]);
    case.list(&["crash.gran", "fine.gran"]);
    case.options(10);
    // Serially no clone exists to crash: the reference for fine.gran's bytes.
    let out = case.step("serial").arg("--serial").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = overlapping(&case, "overlap").output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "one granule failed:\n{err}");
    assert!(err.contains("crash.gran"), "{err}");
    assert!(err.contains("segment 3"), "{err}");
    let ledger = Ledger::open_existing(&case.path("overlap/pseg-state")).unwrap();
    let status = |n: &str| ledger.record(n).unwrap().expect("a record").status;
    assert_eq!(status("crash.gran"), Status::Failed);
    assert_eq!(status("fine.gran"), Status::Done);
    let (crash, fine) = (
        span(&case, "overlap", "crash.gran"),
        span(&case, "overlap", "fine.gran"),
    );
    assert!(
        overlap(crash, fine),
        "the crash came while fine.gran ran: {crash:?} {fine:?}"
    );
    let serial = case.outputs("serial");
    let outputs = case.outputs("overlap");
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["fine.gran.level2.bin"]);
    assert_eq!(
        outputs["fine.gran.level2.bin"],
        serial["fine.gran.level2.bin"]
    );
    case.assert_no_process_left();
}

#[test]
fn sigterm_with_two_granules_in_flight_ends_both_and_records_both_interrupted() {
    let case = Case::new(Link::Static);
    case.granule("one.gran", 400, &["--work", "2000000"]);
    case.granule("two.gran", 400, &["--work", "2000000"]);
    case.list(&["one.gran", "two.gran"]);
    case.options(10);
    let mut child = overlapping(&case, "out")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = case.path("out/pseg-state");
    let running = |n: &str| {
        Ledger::open_existing(&state)
            .ok()
            .and_then(|l| l.record(n).ok().flatten())
            .is_some_and(|r| r.status == Status::Running)
    };
    let start = Instant::now();
    while !(running("one.gran") && running("two.gran")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "two granules never ran at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    case.assert_no_process_left();
    assert!(
        case.outputs("out").is_empty(),
        "no partial output published"
    );
    let ledger = Ledger::open_existing(&state).unwrap();
    for n in ["one.gran", "two.gran"] {
        let record = ledger.record(n).unwrap().expect("a record");
        assert_eq!(record.status, Status::Interrupted, "{n}\n{err}");
        assert!(
            record.charged.is_empty(),
            "an interruption uses no retry budget"
        );
    }
}

#[test]
fn a_granule_waiting_for_slots_an_older_one_holds_is_not_a_hang() {
    let case = Case::new(Link::Static);
    // The older granule keeps both slots busy for longer than the stall timeout (its
    // segments sleep, using no CPU), while the younger one's clone waits, stopped.
    case.granule("older.gran", 120, &[]);
    case.granule("younger.gran", 30, &[]);
    case.list(&["older.gran", "younger.gran"]);
    case.options(10);
    let out = overlapping(&case, "out")
        .args(["--stall-timeout", "1"])
        .env("MOCK_CLAVRX_SLEEP_MS", "400")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("stopped answering"), "{err}");
    let (older, younger) = (
        span(&case, "out", "older.gran"),
        span(&case, "out", "younger.gran"),
    );
    assert!(overlap(older, younger), "{older:?} {younger:?}");
    case.assert_no_process_left();
}
