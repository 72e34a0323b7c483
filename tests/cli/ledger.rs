//! The campaign ledger under real processes: many claimers over one state folder (some
//! killed with SIGKILL while holding a granule), racing takers of one dead claim, and the
//! `status` and `retry` commands as a user runs them.
//!
//! Claimers are the fixture program tests/ledger-claimer (built by the harness like the
//! mock): a real process per claimer, killed by handle, nothing shipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pseg_slurm::domain::ledger::{
    Campaign, FailureKind, Holder, Ledger, Outcome, Record, STATE_DIR, Status,
};

use crate::support::{Case, Link, text};

/// Starts a claimer process.
fn spawn(mode: &str, dir: &Path, logs: &Path, id: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(crate::support::ledger_claimer());
    cmd.env("PSEG_LEDGER_CLAIMER", mode)
        .env("PSEG_LEDGER_DIR", dir)
        .env("PSEG_LEDGER_LOGS", logs)
        .env("PSEG_LEDGER_ID", id)
        .env(
            "PSEG_LEDGER_PATIENCE_SECS",
            crate::support::HANG.as_secs().to_string(),
        )
        .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A holder on this host whose process has exited and been reaped.
fn dead_holder() -> Holder {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    Holder {
        pid,
        pid_start_time: 1,
        ..Holder::current()
    }
}

/// Every file under `dir` whose name starts with `.tmp-`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn claimer_processes_share_granules_exactly_once_despite_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut names: Vec<String> = (0..240).map(|i| format!("g{i:03}.hdf")).collect();
    names.extend(
        [
            "a b.hdf",
            ".hidden.hdf",
            "50%.hdf",
            "é.hdf",
            "x\ty.hdf",
            "q\"uote'.hdf",
        ]
        .map(String::from),
    );
    std::fs::write(tmp.path().join("names"), names.join("\n")).unwrap();
    let names_file = (
        "PSEG_LEDGER_NAMES",
        tmp.path().join("names").display().to_string(),
    );
    Ledger::open(&state).unwrap();

    // Victims process a few granules, then hold one until killed. They start first and
    // hold before the workers start: started together, the workers could finish the list
    // before a victim got to its hold.
    let mut victims: Vec<(String, Child)> = (0..3)
        .map(|i| {
            let id = format!("v{i}");
            let extra = [
                names_file.clone(),
                ("PSEG_LEDGER_HANG_AFTER", (i * 3).to_string()),
            ];
            let child = spawn("work", &state, &logs, &id, &extra);
            (id, child)
        })
        .collect();
    let started = Instant::now();
    let mut held: Vec<String> = Vec::new();
    for (id, _) in &victims {
        let holding = logs.join(format!("{id}.holding"));
        while !holding.exists() {
            assert!(
                started.elapsed() < crate::support::HANG,
                "{id} never held a granule"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        held.push(std::fs::read_to_string(&holding).unwrap());
    }
    // Workers start while the victims are alive and holding, so they must pass over live
    // claims; the victims die under them.
    let mut workers: Vec<Child> = (0..8)
        .map(|i| {
            spawn(
                "work",
                &state,
                &logs,
                &format!("w{i}"),
                std::slice::from_ref(&names_file),
            )
        })
        .collect();
    for (_, child) in &mut victims {
        child.kill().unwrap(); // SIGKILL, while it holds its claim.
    }
    // Reap all victims but one: that one stays a zombie, which must count as dead too.
    for (_, child) in victims.iter_mut().skip(1) {
        child.wait().unwrap();
    }
    for w in &mut workers {
        let status = w.wait().unwrap();
        assert!(status.success(), "a claimer failed: {status}");
    }
    victims[0].1.wait().unwrap();
    eprintln!(
        "{} granules, 8 claimers + 3 killed, took {:?}",
        names.len(),
        started.elapsed()
    );

    // Every granule processed exactly once, across all claimers.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in std::fs::read_dir(&logs).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "log") {
            let who = path.file_stem().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                seen.entry(line.to_string()).or_default().push(who.clone());
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let missing: Vec<_> = names.iter().filter(|n| !seen.contains_key(*n)).collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");
    assert_eq!(seen.len(), names.len());

    let ledger = Ledger::open(&state).unwrap();
    for name in &names {
        let r = ledger.record(name).unwrap().unwrap();
        assert_eq!(r.status, Status::Done, "{name}");
        if held.contains(name) {
            assert_eq!(r.attempts, 2, "{name} was taken over once");
            assert_eq!(r.failures.get(&FailureKind::Lost), Some(&1), "{name}");
        } else {
            assert_eq!(r.attempts, 1, "{name}");
        }
    }
    assert_eq!(std::fs::read_dir(state.join("claims")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(state.join("takeovers")).unwrap().count(),
        held.len()
    );
    assert_eq!(temp_files(&state), Vec::<PathBuf>::new());
}

#[test]
fn racing_takers_of_one_dead_claim_have_one_winner() {
    for round in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let ledger = Ledger::open(&state).unwrap();
        let stale = ledger.claim("g.hdf", &dead_holder()).unwrap().unwrap();
        drop(stale); // Its holder "crashed" while holding it.
        let mut racers: Vec<Child> = (0..10)
            .map(|i| spawn("race", &state, &logs, &format!("r{i}"), &[]))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(logs.join("go"), "").unwrap();
        for r in &mut racers {
            assert!(r.wait().unwrap().success());
        }
        let results: Vec<String> = (0..10)
            .map(|i| std::fs::read_to_string(logs.join(format!("r{i}.result"))).unwrap())
            .collect();
        let winners = results.iter().filter(|r| *r == "won").count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        let r = ledger.record("g.hdf").unwrap().unwrap();
        assert_eq!((r.status, r.attempts), (Status::Done, 2), "round {round}");
        assert_eq!(
            std::fs::read_dir(state.join("takeovers")).unwrap().count(),
            1
        );
    }
}

#[test]
fn gen_remembers_the_campaign_and_retry_renders_what_is_left() {
    let c = Case::fake_campaign(&["a.hdf", "b.hdf", "c.hdf", "d.hdf"]);
    let out = c.gen_into(
        "out",
        &[
            "--pseg-step",
            "bin/pseg-step",
            "--max-array-size",
            "1001",
            "--partition",
            "p1",
            "--time",
            "30",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("#SBATCH --signal=USR1@120\n"), "{script}");
    let state = c.path("out").join(STATE_DIR);
    let campaign = Campaign::read(&state)
        .unwrap()
        .expect("gen wrote campaign.yaml");
    assert!(campaign.list.ends_with("data/list.txt"));
    assert!(campaign.output_dir.ends_with("out"));
    assert_eq!(
        campaign.granules,
        Some(4),
        "the list's length, to tell a shrink later"
    );

    // Before any job ran: everything is pending.
    let fresh = c.pseg_slurm_sealed(&["status", "out"]);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    assert!(
        text(&fresh.stdout).contains("  pending             4  100.0%"),
        "{}",
        text(&fresh.stdout)
    );

    // What pseg-step would have recorded.
    let ledger = Ledger::open(&state).unwrap();
    let me = Holder::current();
    let finish = |name: &str, outcome: Outcome| {
        let mut claim = ledger.claim(name, &me).unwrap().unwrap();
        ledger.running(&mut claim).unwrap();
        ledger.finish(claim, outcome).unwrap();
    };
    finish("a.hdf", Outcome::done());
    finish(
        "b.hdf",
        Outcome::failed(
            FailureKind::BadInput,
            "clavrxorb: cannot read level-1b header",
        )
        .with_exit_status(2),
    );
    finish("c.hdf", Outcome::interrupted("SIGUSR1: time limit near"));

    let status = c.pseg_slurm_sealed(&["status", "out"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let s = text(&status.stdout);
    for needle in [
        "  done                1   25.0%",
        "  pending             1   25.0%",
        "  failed              1   25.0%  (0 will be tried again on resume, 1 out of retries)",
        "b.hdf  bad-input  attempt 1, no retries left  clavrxorb: cannot read level-1b header",
    ] {
        assert!(s.contains(needle), "{needle:?} not in:\n{s}");
    }

    // Retry the failed one, from another folder, with a different partition.
    let elsewhere = tempfile::tempdir().unwrap();
    let state_arg = state.display().to_string();
    let out = c
        .pseg_slurm_sealed_cmd(&["retry", &state_arg, "--failed", "--partition", "p2"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    let list = state.join("retry/list-retry-1.txt");
    assert!(script.contains("#SBATCH --partition=p2\n"), "{script}");
    assert!(
        script.contains("#SBATCH --time=00:30:00\n"),
        "the campaign's own flags stay: {script}"
    );
    assert!(
        script.contains(&format!("--files {}", list.display())),
        "{script}"
    );
    assert!(
        script.contains("#SBATCH --job-name=pseg-list-retry-1\n"),
        "{script}"
    );
    let listed: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert_eq!(listed, [c.path("data/b.hdf").display().to_string()]);
    assert!(
        text(&out.stderr).contains("retrying 1 failed (1 with a fresh retry budget) and 0 missing")
    );
    assert_eq!(
        ledger.record("b.hdf").unwrap().unwrap().status,
        Status::Pending
    );

    // Missing: never started, interrupted, and the one sent back to pending.
    let out = c.pseg_slurm_sealed(&["retry", "out", "--missing"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = std::fs::read_to_string(state.join("retry/list-retry-2.txt")).unwrap();
    for name in ["b.hdf", "c.hdf", "d.hdf"] {
        assert!(listed.contains(name), "{name} not in {listed}");
    }
    assert!(!listed.contains("a.hdf"));

    // A --out elsewhere is refused; nothing left is exit 3 with nothing printed.
    let out = c.pseg_slurm_sealed(&["retry", "out", "--out", "other"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is not this campaign's output folder"));
    for name in ["b.hdf", "c.hdf", "d.hdf"] {
        finish(name, Outcome::done());
    }
    let out = c.pseg_slurm_sealed(&["retry", "out"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("nothing to retry"));

    let yaml = c.pseg_slurm_sealed(&["status", "out", "--format", "yaml"]);
    assert!(
        text(&yaml.stdout).contains("done: 4"),
        "{}",
        text(&yaml.stdout)
    );
    let none = c.pseg_slurm_sealed(&["status", "data"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("holds no campaign state"),
        "{}",
        text(&none.stderr)
    );
}

/// 100 000 records: `status` reads and adds them up well within a second in a release
/// build (the figure is printed); the bound here is loose for debug builds on busy machines.
#[test]
fn status_of_100k_records_is_fast() {
    const N: usize = 100_000;
    let tmp = Case::new(Link::Pie);
    let state = tmp.path("out").join(STATE_DIR);
    let ledger = Ledger::open(&state).unwrap();
    let names: Vec<String> = (0..N).map(|i| format!("goes16.2024.{i:06}.gran")).collect();
    std::fs::write(tmp.path("list.txt"), names.join("\n")).unwrap();
    Campaign::new(&tmp.path("list.txt"), &tmp.path("out"), None, "test")
        .write(&state)
        .unwrap();
    let written = Instant::now();
    let host = |i: usize| format!("node{:03}", i % 97);
    for (i, name) in names.iter().enumerate().take(N - 1000) {
        let mut r = Record::new(name);
        r.attempts = 1;
        r.host = Some(host(i));
        r.first_started = Some(1e9 + i as f64);
        r.started = r.first_started;
        r.ended = Some(1e9 + i as f64 + 60.0);
        r.status = match i % 100 {
            0 => {
                r.kind = Some(FailureKind::OutOfMemory);
                r.charged.insert(FailureKind::OutOfMemory, 1);
                r.error = Some(format!("killed for memory on {}", host(i)));
                Status::Failed
            }
            1 => Status::Interrupted,
            2 => {
                r.ended = None;
                Status::Running
            }
            _ => Status::Done,
        };
        let path = ledger.record_path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let mut line = serde_json::to_vec(&r).unwrap();
        line.push(b'\n');
        std::fs::write(path, line).unwrap();
    }
    eprintln!("wrote {} records in {:?}", N - 1000, written.elapsed());
    let started = Instant::now();
    let out = tmp
        .pseg_slurm()
        .args(["status", "--format", "json"])
        .arg(tmp.path("out"))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &summary["counts"];
    assert_eq!(summary["granules"], N);
    assert_eq!(c["pending"], 1000);
    assert_eq!(c["failed"], 990);
    assert_eq!(c["running"], 990);
    assert_eq!(c["done"], N - 1000 - 3 * 990);
    assert_eq!(summary["hosts"].as_array().unwrap().len(), 97);
    eprintln!("pseg-slurm status over {N} records took {took:?}");
    // A bound for a blow-up (work per pair of records), not a speed: a loaded machine may
    // be several times slower than an idle one.
    assert!(took < Duration::from_secs(120), "status took {took:?}");
    let text_out = tmp.pseg_slurm().arg("status").arg(&state).output().unwrap();
    assert!(text(&text_out.stdout).contains("failures (990, first 20; --format yaml lists all)"));
}

/// `pseg-slurm release` over a state folder holding a claim from a host this machine cannot
/// see (no Slurm ids: never provably dead) and one of a live process here.
#[test]
fn release_frees_unprovable_claims_only_with_yes_and_never_live_ones() {
    let case = Case::new(Link::Pie);
    let state = case.path("out").join(STATE_DIR);
    let ledger = Ledger::open(&state).unwrap();
    let foreign = Holder {
        host: "far-node-that-does-not-exist".into(),
        pid: 4242,
        pid_start_time: 77,
        boot_id: Some("another-boot".into()),
        pid_namespace: None,
        slurm: None,
        restart_count: None,
    };
    let mut far = ledger.claim("far.hdf", &foreign).unwrap().unwrap();
    ledger.running(&mut far).unwrap();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let live = Holder::read(Path::new("/proc"), sleeper.id());
    let _live = ledger.claim("live.hdf", &live).unwrap().unwrap();
    let release = |args: &[&str]| {
        let out = case.pseg_slurm_sealed(&[&["release", "out"], args].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };

    // Without --yes: the listing only, exit 0, nothing touched.
    let dry = release(&["--all-unproven"]);
    assert!(
        dry.contains("would release far.hdf: held by far-node-that-does-not-exist pid 4242 since ")
            && dry.contains("not provably alive"),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "keep live.hdf: held by {} pid {}",
            live.host, live.pid
        )),
        "{dry}"
    );
    assert!(dry.contains("run again with --yes"), "{dry}");
    assert!(state.join("claims/far.hdf").exists());
    assert_eq!(
        ledger.record("far.hdf").unwrap().unwrap().status,
        Status::Running
    );

    // Asking for the live one by name still keeps it.
    let named = release(&["--granule", "live.hdf", "--yes"]);
    assert!(named.starts_with("keep live.hdf"), "{named}");
    assert!(state.join("claims/live.hdf").exists());

    // By host, with --yes: released, the record interrupted, no budget charged.
    let done = release(&["--host", "far-node-that-does-not-exist", "--yes"]);
    assert!(
        done.contains("released (record marked interrupted) far.hdf"),
        "{done}"
    );
    assert!(!done.contains("live.hdf"), "{done}");
    assert!(!state.join("claims/far.hdf").exists());
    assert!(state.join("claims/live.hdf").exists());
    let r = ledger.record("far.hdf").unwrap().unwrap();
    assert_eq!((r.status, r.interruptions), (Status::Interrupted, 1));
    assert!(r.failures.is_empty() && r.charged.is_empty(), "{r:?}");
    assert_eq!(
        ledger.pending(&["far.hdf".to_string()]).unwrap(),
        ["far.hdf"]
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}
