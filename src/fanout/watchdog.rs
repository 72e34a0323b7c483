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
//! It also removes `pseg-step`'s temporary work directory when the pipe closes without the
//! `end` line a `pseg-step` that ends normally writes (it then removes its own): only the
//! directory it was started for, and only while that directory still holds its marker file.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use super::unix;

/// Set in the environment of a `pseg-step` started as a watchdog.
pub(crate) const ENV: &str = "PSEG_STEP_WATCHDOG";
/// The marker file of the work directory to remove should `pseg-step` die.
const ENV_CLEANUP: &str = "PSEG_STEP_WATCHDOG_CLEANUP";
/// What `pseg-step` writes when it ends normally (and so cleans up after itself).
const END: &str = "end";

/// Grace clavrxorb gets to remove its temporary directory before SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// The running watchdog, seen from `pseg-step`.
pub struct Watchdog {
    pipe: File,
    _child: Child,
}

impl Watchdog {
    /// Starts the watchdog; `cleanup` is the marker file of a work directory it removes,
    /// with the directory, should `pseg-step` die.
    pub fn start(cleanup: Option<&Path>) -> io::Result<Watchdog> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ENV, "1")
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
        })
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
    let mut ignored = SigSet::empty();
    // Slurm signals every process of a step (SIGUSR1 before the time limit, SIGTERM at it):
    // the watchdog must outlive pseg-step, so only the closing pipe ends it.
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        ignored.add(s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ignored), None);
    let cleanup = std::env::var_os(ENV_CLEANUP).map(PathBuf::from);
    let (groups, ended) = read_pipe(io::stdin().lock());
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
