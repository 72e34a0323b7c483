//! A claimer over one ledger state folder: the process the ledger tests
//! (tests/cli/ledger.rs) start many of, kill with SIGKILL while it holds a claim, and race
//! for one dead claim. A real program, built by the test harness like the mock clavrxorb,
//! so that every claimer is its own process with its own pid (the ledger's notion of a
//! live holder) and nothing of it ships.
//!
//! Configured by environment, as the tests set it:
//! - `PSEG_LEDGER_CLAIMER`: `work` (claim granules of `PSEG_LEDGER_NAMES` until none is
//!   left, logging each to `LOGS/ID.log`; with `PSEG_LEDGER_HANG_AFTER=N`, hold the N+1th
//!   until killed, naming it in `LOGS/ID.holding`) or `race` (wait for `LOGS/go`, claim
//!   `g.hdf` once, write `won` or `lost` to `LOGS/ID.result`);
//! - `PSEG_LEDGER_DIR` the state folder, `PSEG_LEDGER_LOGS`, `PSEG_LEDGER_ID`;
//! - `PSEG_LEDGER_PATIENCE_SECS`: how long `work` waits for others' claims before it calls
//!   it a hang.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pseg_slurm::domain::ledger::{Holder, Ledger, Outcome, Queue};

fn var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("ledger-claimer: {k} is not set"))
}

fn main() {
    let mode = var("PSEG_LEDGER_CLAIMER");
    let dir = PathBuf::from(var("PSEG_LEDGER_DIR"));
    let id = var("PSEG_LEDGER_ID");
    let logs = PathBuf::from(var("PSEG_LEDGER_LOGS"));
    let ledger = Ledger::open(&dir).unwrap();
    let me = Holder::current();
    match mode.as_str() {
        "work" => {
            let names: Vec<String> = std::fs::read_to_string(var("PSEG_LEDGER_NAMES"))
                .unwrap()
                .lines()
                .map(String::from)
                .collect();
            let hang_after: Option<usize> = std::env::var("PSEG_LEDGER_HANG_AFTER")
                .ok()
                .and_then(|n| n.parse().ok());
            let patience = Duration::from_secs(var("PSEG_LEDGER_PATIENCE_SECS").parse().unwrap());
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{id}.log")))
                .unwrap();
            let mut queue = Queue::new(ledger.pending(&names).unwrap());
            let deadline = Instant::now() + patience;
            let mut processed = 0;
            loop {
                match ledger.claim_next(&mut queue, &me).unwrap() {
                    Some(mut claim) => {
                        ledger.running(&mut claim).unwrap();
                        if hang_after == Some(processed) {
                            // Hold the granule until killed; tell the parent which one.
                            let tmp = logs.join(format!(".{id}.holding"));
                            std::fs::write(&tmp, claim.name()).unwrap();
                            std::fs::rename(&tmp, logs.join(format!("{id}.holding"))).unwrap();
                            std::thread::sleep(Duration::from_secs(600));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        writeln!(log, "{}", claim.name()).unwrap();
                        log.sync_data().unwrap();
                        ledger.finish(claim, Outcome::done()).unwrap();
                        processed += 1;
                    }
                    None if queue.is_done() => break,
                    None => {
                        assert!(Instant::now() < deadline, "{id}: waited too long");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        "race" => {
            let go = logs.join("go");
            while !go.exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let result = match ledger.claim("g.hdf", &me).unwrap() {
                Some(claim) => {
                    std::thread::sleep(Duration::from_millis(300));
                    ledger.finish(claim, Outcome::done()).unwrap();
                    "won"
                }
                None => "lost",
            };
            std::fs::write(logs.join(format!("{id}.result")), result).unwrap();
        }
        other => panic!("ledger-claimer: unknown PSEG_LEDGER_CLAIMER mode {other}"),
    }
}
