//! A small second process that ends a granule's clavrxorb processes if `pseg-step` itself
//! dies without doing so (SIGKILL, a segfault, the OOM killer).
//!
//! clavrxorb's parent gets a parent-death signal, but the kernel clears that on clone, and a
//! stopped clone would wait forever. So `pseg-step` re-executes itself as a watchdog, tells it
//! through a pipe which process groups are live, and the watchdog acts only when the pipe
//! closes with groups still registered. It ignores SIGINT/SIGTERM/SIGHUP: the closing pipe,
//! not a signal, is what says `pseg-step` is gone (SIGUSR1 is ignored too: Slurm sends it to
//! every process of a step before the time limit).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use super::unix;

/// Set in the environment of a `pseg-step` started as a watchdog.
pub(crate) const ENV: &str = "PSEG_STEP_WATCHDOG";

/// Grace clavrxorb gets to remove its temporary directory before SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// The running watchdog, seen from `pseg-step`.
pub struct Watchdog {
    pipe: File,
    _child: Child,
}

impl Watchdog {
    pub fn start() -> io::Result<Watchdog> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let child = Command::new(std::env::current_exe()?)
            .env(ENV, "1")
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .spawn()?;
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
    let groups = live_groups(io::stdin().lock());
    if groups.is_empty() {
        return true;
    }
    for &g in &groups {
        let _ = unix::signal_group(g, Signal::SIGTERM);
        let _ = unix::signal_group(g, Signal::SIGCONT);
    }
    std::thread::sleep(GRACE);
    for &g in &groups {
        let _ = unix::signal_group(g, Signal::SIGKILL);
    }
    true
}

/// Groups registered and not unregistered by the time the input ends.
fn live_groups(input: impl BufRead) -> BTreeSet<i32> {
    let mut groups = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
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
    groups
}

#[cfg(test)]
mod tests {
    use super::live_groups;

    #[test]
    fn only_groups_still_registered_at_the_end_are_ended() {
        let input = "+100\n+200\n-100\n+300\ngarbage\n+1\n+-5\n";
        let got: Vec<i32> = live_groups(input.as_bytes()).into_iter().collect();
        assert_eq!(got, vec![200, 300]);
    }
}
