//! A small second process that ends a granule's clavrxorb processes if `pseg-step` itself
//! dies without doing so (SIGKILL, a segfault, the OOM killer).
//!
//! clavrxorb's parent gets a parent-death signal, but the kernel clears that on clone, and a
//! stopped clone would wait forever. So `pseg-step` re-executes itself as a watchdog, tells it
//! through a pipe which process groups are live, and the watchdog acts only when the pipe
//! closes with groups still registered. It ignores SIGINT/SIGTERM/SIGHUP: the closing pipe,
//! not a signal, is what says `pseg-step` is gone (SIGUSR1 is ignored too: Slurm sends it to
//! every process of a step before the time limit).
//!
//! The watchdog learns a group only once `pseg-step` has started its clavrxorb; killed in
//! between, `pseg-step` never registers it, and clavrxorb's clones (which the parent-death
//! signal does not reach) would outlive it, stopped. So every clavrxorb carries an owner token
//! in its environment (inherited by its clones), and a watchdog whose `pseg-step` died also
//! ends the groups of the processes that carry its token.
//!
//! It also removes `pseg-step`'s temporary work directory when the pipe closes without the
//! `end` line a `pseg-step` that ends normally writes (it then removes its own): only the
//! directory it was started for, and only while that directory still holds its marker file.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::base::{proc_stat, unix};

/// Set in the environment of a `pseg-step` started as a watchdog.
pub(crate) const ENV: &str = "PSEG_STEP_WATCHDOG";
/// The marker file of the work directory to remove should `pseg-step` die.
const ENV_CLEANUP: &str = "PSEG_STEP_WATCHDOG_CLEANUP";
/// In the environment of every clavrxorb `pseg-step` starts: the owner token.
pub const ENV_OWNER: &str = "PSEG_STEP_OWNER";
/// The watchdog's copy of the owner token.
const ENV_TOKEN: &str = "PSEG_STEP_WATCHDOG_TOKEN";
/// What `pseg-step` writes when it ends normally (and so cleans up after itself).
const END: &str = "end";

/// Grace clavrxorb gets to remove its temporary directory before SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// The running watchdog, seen from `pseg-step`.
pub struct Watchdog {
    pipe: File,
    _child: Child,
    token: String,
}

impl Watchdog {
    /// Starts the watchdog; `cleanup` is the marker file of a work directory it removes,
    /// with the directory, should `pseg-step` die.
    pub fn start(cleanup: Option<&Path>) -> io::Result<Watchdog> {
        let (read, write) = unix::pipe()?;
        // Unique to this pseg-step: its pid, and when it started the watchdog.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let token = format!("{}.{}", std::process::id(), since.as_nanos());
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ENV, "1")
            .env(ENV_TOKEN, &token)
            .env_remove(ENV_CLEANUP)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null());
        if let Some(marker) = cleanup {
            cmd.env(ENV_CLEANUP, marker);
        }
        let child = cmd.spawn()?;
        Ok(Watchdog {
            pipe: File::from(write),
            _child: child,
            token,
        })
    }

    /// The owner token to set as [`ENV_OWNER`] in clavrxorb's environment.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The group `pgid` is live: end it should `pseg-step` die.
    pub fn watch(&mut self, pgid: i32) -> io::Result<()> {
        writeln!(self.pipe, "+{pgid}")
    }

    /// The group `pgid` has been ended and reaped.
    pub fn unwatch(&mut self, pgid: i32) -> io::Result<()> {
        writeln!(self.pipe, "-{pgid}")
    }
}

impl Drop for Watchdog {
    /// `pseg-step` is returning (or unwinding): its own drops remove its work directory.
    fn drop(&mut self) {
        let _ = writeln!(self.pipe, "{END}");
    }
}

/// Runs the watchdog when this process was started as one; returns whether it was.
pub fn run_if_watchdog() -> bool {
    if std::env::var_os(ENV).is_none() {
        return false;
    }
    // Slurm signals every process of a step (SIGUSR1 before the time limit, SIGTERM at it):
    // the watchdog must outlive pseg-step, so only the closing pipe ends it.
    let _ = unix::block_signals(&[
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ]);
    let cleanup = std::env::var_os(ENV_CLEANUP).map(PathBuf::from);
    let (mut groups, ended) = read_pipe(io::stdin().lock());
    if let (false, Ok(token)) = (ended, std::env::var(ENV_TOKEN)) {
        groups.extend(groups_with_env(
            Path::new("/proc"),
            &format!("{ENV_OWNER}={token}"),
        ));
        // Never our own (pseg-step's) group.
        groups.remove(&unix::own_process_group());
    }
    if !groups.is_empty() {
        for &g in &groups {
            let _ = unix::signal_group(g, Signal::SIGTERM);
            let _ = unix::signal_group(g, Signal::SIGCONT);
        }
        let deadline = Instant::now() + GRACE;
        while groups.iter().any(|&g| unix::group_exists(g)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        for &g in &groups {
            let _ = unix::signal_group(g, Signal::SIGKILL);
        }
    }
    if let (false, Some(marker)) = (ended, cleanup) {
        remove_work_dir(&marker);
    }
    true
}

/// How often the grace period looks whether the groups are gone.
const POLL: Duration = Duration::from_millis(20);

/// Removes the directory holding `marker`, if the marker is still there (else the directory
/// is no longer the one we were started for). A killed process may still finish a write
/// while the first attempt runs, so it is tried a few times.
fn remove_work_dir(marker: &Path) {
    let Some(dir) = marker.parent() else { return };
    if !marker.is_file() {
        return;
    }
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => std::thread::sleep(POLL),
            _ => return,
        }
    }
}

/// Process groups of the processes under `proc_root` whose environment holds `entry`
/// (`KEY=VALUE`); processes that cannot be read are skipped.
fn groups_with_env(proc_root: &Path, entry: &str) -> BTreeSet<i32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| {
            e.file_name().to_str()?.parse::<i32>().ok()?;
            let env = std::fs::read(e.path().join("environ")).ok()?;
            env.split(|&b| b == 0)
                .any(|v| v == entry.as_bytes())
                .then_some(())?;
            Some(proc_stat::parse(&std::fs::read_to_string(e.path().join("stat")).ok()?)?.pgid)
        })
        .filter(|&g| g > 1)
        .collect()
}

/// Groups registered and not unregistered by the time the input ends, and whether
/// `pseg-step` said it ends normally.
fn read_pipe(input: impl BufRead) -> (BTreeSet<i32>, bool) {
    let mut groups = BTreeSet::new();
    let mut ended = false;
    for line in input.lines() {
        let Ok(line) = line else { break };
        if line == END {
            ended = true;
            continue;
        }
        let (sign, pgid) = line.split_at(line.len().min(1));
        match (sign, pgid.parse::<i32>()) {
            ("+", Ok(g)) if g > 1 => {
                groups.insert(g);
            }
            ("-", Ok(g)) => {
                groups.remove(&g);
            }
            _ => {}
        }
    }
    (groups, ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_groups_still_registered_at_the_end_are_ended() {
        let input = "+100\n+200\n-100\n+300\ngarbage\n+1\n+-5\n";
        let (groups, ended) = read_pipe(input.as_bytes());
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), vec![200, 300]);
        assert!(!ended, "no end line: pseg-step died");
        assert!(read_pipe("+100\n-100\nend\n".as_bytes()).1);
    }

    #[test]
    fn groups_are_found_by_the_owner_token_in_their_environment() {
        let proc = tempfile::tempdir().unwrap();
        let process = |pid: i32, pgid: i32, env: &[u8]| {
            let dir = proc.path().join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("environ"), env).unwrap();
            let stat = format!(
                "{pid} (a) b) T 1 {pgid} {pgid} 0 -1 4194304 111 0 0 0 5 6 0 0 20 0 1 0 98765 0 0\n"
            );
            std::fs::write(dir.join("stat"), stat).unwrap();
        };
        let ours = b"HOME=/root\0PSEG_STEP_OWNER=42.7\0PATH=/bin\0";
        process(100, 100, ours);
        process(101, 100, ours);
        process(200, 200, b"PSEG_STEP_OWNER=42.77\0");
        process(300, 300, b"X=PSEG_STEP_OWNER=42.7\0");
        process(400, 1, ours);
        std::fs::create_dir_all(proc.path().join("500")).unwrap();
        std::fs::create_dir_all(proc.path().join("self")).unwrap();
        let found = groups_with_env(proc.path(), "PSEG_STEP_OWNER=42.7");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![100]);
        assert!(groups_with_env(&proc.path().join("missing"), "A=1").is_empty());
    }

    #[test]
    fn a_work_dir_is_removed_only_while_its_marker_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pseg-step.abc");
        std::fs::create_dir_all(dir.join("g.gran/output")).unwrap();
        std::fs::write(dir.join("g.gran/clavrx.stderr"), "log").unwrap();
        let marker = dir.join(".marker");
        remove_work_dir(&marker);
        assert!(dir.exists(), "no marker: not ours any more");
        std::fs::write(&marker, "").unwrap();
        remove_work_dir(&marker);
        assert!(!dir.exists());
        assert!(tmp.path().exists());
    }
}
