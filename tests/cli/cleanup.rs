//! `pseg-step` leaves nothing behind and says exactly what is wrong: its work directories go
//! when it is killed, a redone granule's kept failure goes with it, a failed check creates
//! nothing, and a bad array element or `--exe` gets a message that names the problem.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

use crate::support::{Case, Link, text};

/// The `pseg-step.*` folders in the test's TMPDIR.
fn work_dirs(case: &Case) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(case.scratch())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pseg-step."))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ppid field of a `/proc/PID/stat` line.
fn ppid(stat: &str) -> Option<i32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_killed_pseg_step_leaves_no_clavrxorb_and_no_work_directory() {
    let case = Case::new(Link::Static);
    case.granule("bad.gran", 30, &["--fault", "clone-segv:2"]);
    case.granule("slow.gran", 400, &["--work", "2000000"]);
    case.list(&["bad.gran", "slow.gran"]);
    case.options(10);
    let mut child = case.start_nohup(&case.step("out"));
    let kept = case.path("out/pseg-failed/bad.gran");
    // bad.gran has failed and been kept; slow.gran's clones are at work.
    wait_for("slow.gran's clones", || {
        kept.join("clavrx.stderr").exists() && case.processes_left().len() >= 4
    });
    assert_eq!(
        work_dirs(&case).len(),
        1,
        "one work directory while it runs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Waited for, not timed (a loaded machine is slow to end and reap a group); the time
    // it took is printed for the record.
    let killed = Instant::now();
    wait_for("the watchdog's cleanup", || {
        case.processes_left().is_empty() && work_dirs(&case).is_empty()
    });
    eprintln!("cleaned up {:?} after SIGKILL", killed.elapsed());
    case.assert_no_process_left();
    assert_eq!(
        work_dirs(&case),
        Vec::<PathBuf>::new(),
        "work directory left"
    );
    // The failed granule's copy stays where the README says; the killed one has none.
    assert!(kept.join("clavrx.stderr").is_file());
    assert!(!case.path("out/pseg-failed/slow.gran").exists());
    assert!(!case.path("out/slow.gran.level2.bin").exists());
}

#[test]
fn the_next_run_removes_work_directories_whose_watchdog_died_too() {
    let case = Case::new(Link::Static);
    case.granule("slow.gran", 400, &["--work", "2000000"]);
    case.granule("quick.gran", 10, &[]);
    case.list(&["slow.gran"]);
    case.options(10);
    // A user's folder of the same name, and one with a marker that is not pseg-step's.
    let user = case.scratch().join("pseg-step.mine");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("notes.txt"), "mine").unwrap();
    let forged = case.scratch().join("pseg-step.forged");
    std::fs::create_dir_all(&forged).unwrap();
    std::fs::write(forged.join(".pseg-step-work"), "schema: other/1\n").unwrap();
    // Serial: clavrxorb has no clones and dies with its parent, so killing pseg-step and its
    // watchdog at once (as Slurm does to a step) leaves only the work directory.
    let mut child = case.start_nohup(case.step("out").arg("--serial"));
    let me = child.id() as i32;
    let mut watchdog = None;
    wait_for("the watchdog and clavrxorb", || {
        let left = case.processes_left();
        watchdog = left
            .iter()
            .find(|(_, stat)| stat.contains("(pseg-step)") && ppid(stat) == Some(me))
            .map(|(pid, _)| *pid);
        watchdog.is_some() && left.len() >= 3
    });
    let dirs = work_dirs(&case);
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    let theirs: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| **d != user && **d != forged)
        .collect();
    Command::new("kill")
        .args(["-KILL", &watchdog.unwrap().to_string(), &me.to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    wait_for("clavrxorb's end", || case.processes_left().is_empty());
    assert!(theirs[0].exists(), "nobody was left to remove it");

    case.list(&["quick.gran"]);
    let out = case.step("out2").output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("removed 1 work folder(s) left by pseg-step runs that died on this host")
            && err.contains(&theirs[0].display().to_string()),
        "{err}"
    );
    assert_eq!(work_dirs(&case), vec![forged, user.clone()]);
    assert_eq!(
        std::fs::read_to_string(user.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// `pseg-slurm status` of an output folder, as text.
fn status(case: &Case, out: &str) -> String {
    let run = Command::new(cargo_bin!("pseg-slurm"))
        .arg("status")
        .arg(case.path(out))
        .output()
        .unwrap();
    text(&run.stdout) + &text(&run.stderr)
}

#[test]
fn a_successful_redo_removes_the_kept_failure() {
    let case = Case::new(Link::Pie);
    case.granule("a.gran", 20, &[]);
    case.granule("bad.gran", 30, &["--fault", "clone-segv:2"]);
    case.list(&["a.gran", "bad.gran"]);
    case.options(10);
    let run = case.step("out").output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let kept = case.path("out/pseg-failed/bad.gran");
    assert!(kept.join("clavrx.stderr").is_file());
    let before = status(&case, "out");
    assert!(
        before.contains("bad.gran") && before.contains(&kept.display().to_string()),
        "{before}"
    );

    // Fixed: the redo succeeds, and its old failure is gone from disk and from status.
    case.granule("bad.gran", 30, &[]);
    let run = case.step("out").output().unwrap();
    let err = text(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(case.path("out/bad.gran.level2.bin").is_file());
    assert!(!kept.exists(), "the old failure's copy is still there");
    assert!(
        !case.path("out/pseg-failed").exists(),
        "an empty pseg-failed stays"
    );
    let after = status(&case, "out");
    assert!(!after.contains("pseg-failed"), "{after}");
    assert!(!after.contains("failures"), "{after}");
}

/// Runs `cmd`: one line of error with every needle, this exit status, and `out` not made.
fn refused(cmd: &mut Command, status: i32, needles: &[&str], out: &Path) -> String {
    let run = cmd.output().unwrap();
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(status), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} in {err}");
    }
    assert!(!out.exists(), "{} was created: {err}", out.display());
    err
}

#[test]
fn a_failed_check_creates_nothing() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 10, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let file = case.path("a-file");
    std::fs::write(&file, "").unwrap();
    let out = case.path("new/out");
    // The output folder is fine; the work or state folder is not.
    refused(
        case.step("new/out").arg("--work").arg(file.join("work")),
        9,
        &["a-file/work", "--work"],
        &case.path("new"),
    );
    refused(
        case.step("new/out").arg("--state").arg(file.join("state")),
        12,
        &["a-file/state"],
        &case.path("new"),
    );
    refused(
        case.step("new/out").env("TMPDIR", file.join("tmp")),
        9,
        &["a-file/tmp", "TMPDIR"],
        &case.path("new"),
    );
    assert_eq!(work_dirs(&case), Vec::<PathBuf>::new());
    // And the same call with good folders runs.
    let run = case.step("new/out").output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(out.join("g.gran.level2.bin").is_file());
}

#[test]
fn an_array_element_past_the_end_of_the_list_is_an_error_unless_the_list_shrank() {
    let case = Case::new(Link::Pie);
    let names = ["a.gran", "b.gran", "c.gran", "d.gran", "e.gran"];
    for n in names {
        case.granule(n, 10, &[]);
    }
    case.list(&names[..3]);
    case.options(10);
    let element = |case: &Case, out: &str, id: &str| {
        let mut cmd = case.step(out);
        cmd.args(["--chunk-size", "2"])
            .env("SLURM_ARRAY_TASK_ID", id);
        cmd
    };
    // Three granules in chunks of two: elements 0 and 1. Element 2 has none.
    refused(
        &mut element(&case, "out", "2"),
        10,
        &[
            "SLURM_ARRAY_TASK_ID=2",
            "--chunk-size 2",
            "list of 3 granule(s)",
            "array elements 0-1",
        ],
        &case.path("out"),
    );

    // A campaign run over five granules, then the list is cut to three: a known shrink.
    let shrink = Case::new(Link::Pie);
    for n in names {
        shrink.granule(n, 10, &[]);
    }
    shrink.list(&names);
    shrink.options(10);
    let run = element(&shrink, "out", "2").output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let before = shrink.outputs("out");
    assert_eq!(before.len(), 1, "element 2 of five granules is e.gran");
    shrink.list(&names[..3]);
    let listing = |dir: &Path| {
        let mut all: Vec<PathBuf> = walk(dir);
        all.sort();
        all
    };
    let files_before = listing(&shrink.path("out"));
    let run = element(&shrink, "out", "2").output().unwrap();
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("past the end of") && err.contains("names 3 granule(s) now and named 5"),
        "{err}"
    );
    assert_eq!(
        listing(&shrink.path("out")),
        files_before,
        "nothing touched"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            all.extend(walk(&p));
        }
        all.push(p);
    }
    all
}

#[test]
fn exe_messages_say_what_is_wrong() {
    let case = Case::new(Link::Pie);
    case.granule("g.gran", 10, &[]);
    case.list(&["g.gran"]);
    case.options(10);
    let out = case.path("o");
    let dir = case.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    refused(
        case.step("o").arg("--exe").arg(&dir),
        3,
        &[&format!("{} is a directory", dir.display()), "--exe"],
        &out,
    );
    let plain = dir.join("clavrxorb");
    std::fs::copy(case.mock(), &plain).unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    refused(
        case.step("o").arg("--exe").arg(&plain),
        3,
        &[&format!("{} is not executable (mode 644)", plain.display())],
        &out,
    );
    let path = format!("/no/such/dir:{}", dir.display());
    refused(
        case.step("o")
            .args(["--exe", "clavrxorb"])
            .env("PATH", &path),
        3,
        &[
            &format!("clavrxorb is not on PATH (searched PATH={path})"),
            &format!("{} is not executable", plain.display()),
        ],
        &out,
    );
    refused(
        case.step("o").args(["--exe", "/no/such/clavrxorb"]),
        3,
        &["/no/such/clavrxorb: no such file", "--exe"],
        &out,
    );
}
