//! The event loop around one granule's processes: child state changes and signals in,
//! machine decisions out, and the guarantee that every process of the granule is gone
//! before it returns, whatever happened.
//!
//! It blocks in `poll` on the signalfd; SIGCHLD wakes it the moment a child stops or exits.
//! The only timed wake-ups are for progress output and for noticing a process that neither
//! changes state nor uses CPU (a hang).

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::control::{Monitor, ProcControl};
use super::machine::{Exit, Failure, FailureKind, Fanout, Pid, Role, Status};
use super::unix::{self, ChildEvent, Interrupt, Signals};

/// How a granule's processes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(Failure),
    /// A terminating signal reached the driver; every process was ended.
    Interrupted(i32),
}

/// Timing policy of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A granule whose processes neither change state nor use CPU this long has hung.
    pub stall_timeout: Duration,
    /// Between SIGTERM and SIGKILL when ending a granule's processes.
    pub grace: Duration,
    /// How often the monitor's `tick` runs while nothing happens (memory sampling, progress).
    pub tick: Duration,
}

/// Runs the granule whose clavrxorb process (and process group leader) is `leader`.
pub fn supervise<O: Monitor>(
    signals: &mut Signals,
    leader: Pid,
    fanout: &mut Fanout,
    ctl: &mut ProcControl<'_, O>,
    policy: &Policy,
) -> io::Result<Outcome> {
    let mut live: HashSet<Pid> = HashSet::from([leader]);
    let mut last_change = Instant::now();
    let mut last_cpu = cpu_of(&live);
    let mut last_tick = Instant::now();
    // The time-limit warning came and this granule was judged able to finish in time.
    let mut draining = signals.warned() && ctl.monitor().keep_on_warning(fanout);
    if signals.warned() && !draining {
        return ended_on_warning(signals, leader, policy);
    }
    loop {
        while let Some(event) = unix::next_child_event(leader) {
            let event = match event {
                Ok((_, e)) => e,
                Err(e) if unix::is_no_children(&e) => {
                    let f = Failure {
                        pid: leader,
                        role: Role::Parent,
                        segment: None,
                        kind: FailureKind::Protocol(
                            "every process ended before the granule was finished".into(),
                        ),
                    };
                    return Ok(Outcome::Failed(f));
                }
                Err(e) => return Err(e),
            };
            last_change = Instant::now();
            let status = match event {
                ChildEvent::Stopped(pid) => {
                    live.insert(pid);
                    fanout.on_stop(pid, ctl)
                }
                ChildEvent::Exited(pid, exit) => {
                    live.remove(&pid);
                    ctl.forget(pid);
                    fanout.on_exit(pid, exit)
                }
            };
            match status {
                Status::Running => {}
                Status::Done => {
                    ctl.monitor().tick(fanout);
                    // Without waitpoints only exit 0 gets here: an exit 1 (clavrxorb's answer
                    // to anyone's SIGTERM) is a failure, and a scheduler's signal turns it
                    // into an interruption below.
                    let interrupt = end_group(signals, leader, policy.grace)?;
                    return Ok(match interrupt {
                        Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
                        Some(Interrupt::Warning) | None => Outcome::Done,
                    });
                }
                Status::Failed(f) => {
                    let mut interrupt = end_group(signals, leader, policy.grace)?;
                    if interrupt.is_none() && killed_by_scheduler(&f) {
                        // Slurm signals every process of the step: clavrxorb may die of it a
                        // moment before our own copy of the signal arrives.
                        interrupt = signals.wait(Some(SCHEDULER_SIGNAL_WAIT))?;
                    }
                    return Ok(match interrupt {
                        Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
                        Some(Interrupt::Warning) | None => Outcome::Failed(f),
                    });
                }
            }
        }
        if last_tick.elapsed() >= policy.tick {
            ctl.monitor().tick(fanout);
            last_tick = Instant::now();
            if draining && !ctl.monitor().keep_on_warning(fanout) {
                // Slower than projected when the warning came: no longer in time.
                return ended_on_warning(signals, leader, policy);
            }
        }
        let until_stall = policy.stall_timeout.saturating_sub(last_change.elapsed());
        let wait = until_stall.min(policy.tick).max(Duration::from_millis(1));
        match signals.wait(Some(wait))? {
            Some(Interrupt::Terminate(sig)) => {
                return Ok(interrupted(signals, leader, policy, sig));
            }
            Some(Interrupt::Warning) if !draining => {
                if !ctl.monitor().keep_on_warning(fanout) {
                    return ended_on_warning(signals, leader, policy);
                }
                draining = true;
            }
            Some(Interrupt::Warning) | None => {}
        }
        if last_change.elapsed() >= policy.stall_timeout {
            let cpu = cpu_of(&live);
            if cpu != last_cpu {
                last_cpu = cpu;
                last_change = Instant::now();
                continue;
            }
            // Blame a process that is meant to be running, not one we hold stopped.
            let stuck = live
                .iter()
                .copied()
                .filter(|&p| !unix::is_stopped(p))
                .min()
                .unwrap_or(leader);
            let f = Failure {
                pid: stuck,
                role: if stuck == leader {
                    Role::Parent
                } else {
                    Role::Worker
                },
                segment: fanout.segment_of(stuck),
                kind: FailureKind::Stalled(policy.stall_timeout.as_secs()),
            };
            return Ok(match end_group(signals, leader, policy.grace)? {
                Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
                Some(Interrupt::Warning) | None => Outcome::Failed(f),
            });
        }
    }
}

/// Ends every process of the granule after a terminating signal: the interruption is the
/// outcome even if ending the processes went wrong.
fn interrupted(signals: &mut Signals, leader: Pid, policy: &Policy, sig: i32) -> Outcome {
    if let Err(e) = end_group(signals, leader, policy.grace.min(Duration::from_secs(1))) {
        eprintln!("pseg-step: warning: ending clavrxorb after signal {sig}: {e}");
    }
    Outcome::Interrupted(sig)
}

/// Ends a granule the time-limit warning leaves no time to finish.
fn ended_on_warning(signals: &mut Signals, leader: Pid, policy: &Policy) -> io::Result<Outcome> {
    Ok(interrupted(signals, leader, policy, Signal::SIGUSR1 as i32))
}

/// How long a process killed by a scheduler's signal waits for that signal to reach us too.
const SCHEDULER_SIGNAL_WAIT: Duration = Duration::from_secs(1);

/// Whether a process died of a signal a scheduler sends to a whole step.
fn killed_by_scheduler(f: &Failure) -> bool {
    let scheduler = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ];
    // clavrxorb turns SIGTERM and SIGINT into exit 1, so that counts too.
    match f.kind {
        FailureKind::Died(Exit::Signal(s)) => scheduler.iter().any(|&q| q as i32 == s),
        FailureKind::EndedEarly(Exit::Code(1)) => true,
        _ => false,
    }
}

fn cpu_of(pids: &HashSet<Pid>) -> u64 {
    pids.iter().filter_map(|&p| unix::cpu_ticks(p)).sum()
}

/// Ends every process of the group `pgid` (SIGTERM and SIGCONT, SIGKILL after `grace`) and
/// reaps every child. Returns a terminating signal that arrived meanwhile.
fn end_group(signals: &mut Signals, pgid: Pid, grace: Duration) -> io::Result<Option<Interrupt>> {
    unix::signal_group(pgid, Signal::SIGTERM)?;
    unix::signal_group(pgid, Signal::SIGCONT)?;
    let start = Instant::now();
    let mut killed = false;
    let mut interrupt = None;
    loop {
        while let Some(event) = unix::next_child_event(pgid) {
            match event {
                // Stopped before our SIGTERM landed: let it run into it.
                Ok((pid, ChildEvent::Stopped(_))) => unix::resume(pid)?,
                Ok(_) => {}
                Err(e) if unix::is_no_children(&e) => {
                    // Children are all reaped; anything still in the group is not ours to
                    // wait for (it left our tree), so it gets no grace.
                    if unix::group_exists(pgid) {
                        unix::signal_group(pgid, Signal::SIGKILL)?;
                    }
                    // A signal that came while the last children were reaped counts too.
                    return Ok(interrupt.or(signals.drain()?));
                }
                Err(e) => return Err(e),
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= grace && !killed {
            // SIGKILL leaves clavrxorb's temporary directory behind; only for the unresponsive.
            unix::signal_group(pgid, Signal::SIGKILL)?;
            killed = true;
        }
        if elapsed >= grace + Duration::from_secs(5) {
            return Err(io::Error::other(format!(
                "processes of group {pgid} survived SIGKILL for 5 s"
            )));
        }
        let left = if killed {
            Duration::from_millis(50)
        } else {
            grace - elapsed
        };
        if let Some(i) = signals.wait(Some(left))? {
            interrupt.get_or_insert(i);
        }
    }
}
