//! The event loop around the processes of the granules in flight (one machine and one
//! process group each, one pool of worker slots for all): child state changes and signals
//! in, machine decisions out, and the guarantee that every process of a granule is gone
//! before it is handed back as ended, whatever happened.
//!
//! It blocks in `poll` on the signalfd; SIGCHLD wakes it the moment a child stops or exits.
//! The only timed wake-ups are for progress output and for noticing a process that neither
//! changes state nor uses CPU (a hang).

use std::collections::HashSet;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::control::{Monitor, ProcControl};
use super::machine::{Exit, Failure, Fanout, Fault, GranuleState, Pid, Role};
use crate::base::proc_stat;
use crate::base::unix::{self, ChildEvent, Interrupt, Signals};

/// How a granule's processes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(Failure),
    /// A terminating signal reached the driver; every process was ended.
    Interrupted(i32),
    /// The step stopped while it ran (another granule's storage failure, see
    /// [`Feed::halted`]): every process was ended before it finished.
    Stopped,
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

/// One granule in flight: its clavrxorb (the leader of its own process group), its
/// protocol machine and its process control, and the caller's own record of it (`tag`).
pub struct Flight<'a, O: Monitor, T> {
    pub leader: Pid,
    pub fanout: Fanout,
    pub ctl: ProcControl<'a, O>,
    pub tag: T,
    live: HashSet<Pid>,
    last_change: Instant,
    last_cpu: u64,
    /// The time-limit warning came and this granule was judged able to finish in time.
    draining: bool,
    /// Judged on the time-limit warning already.
    judged: bool,
    /// CPU seconds of its processes reaped so far (each reap is this granule's alone).
    cpu: f64,
}

impl<'a, O: Monitor, T> Flight<'a, O, T> {
    /// CPU seconds its processes used: with several granules in flight, the step's
    /// children's total would mix them.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu
    }

    pub fn new(leader: Pid, fanout: Fanout, ctl: ProcControl<'a, O>, tag: T) -> Self {
        let live = HashSet::from([leader]);
        let last_cpu = cpu_of(&live);
        Flight {
            leader,
            fanout,
            ctl,
            tag,
            live,
            last_change: Instant::now(),
            last_cpu,
            draining: false,
            judged: false,
            cpu: 0.0,
        }
    }
}

/// Where granules come from, and where they go once ended.
pub trait Feed<'a, O: Monitor, T> {
    /// Claims and starts the next granule; `None` when none is left to start (or none may
    /// start any more). `in_flight` granules run already.
    fn start(&mut self, in_flight: usize) -> io::Result<Option<Flight<'a, O, T>>>;
    /// Whether memory admits one more clavrxorb beside the processes of the granules in
    /// flight.
    fn may_start_granule(&mut self, flights: &[Flight<'a, O, T>]) -> bool;
    /// A granule's processes are all gone: record it. A granule redone from scratch (after an
    /// OOM kill) comes back to take its place.
    fn ended(
        &mut self,
        flight: Flight<'a, O, T>,
        outcome: Outcome,
    ) -> io::Result<Option<Flight<'a, O, T>>>;
    /// The step stops (a folder refused a write, which every granule would hit): the granules
    /// still in flight are ended at once and handed back [`Outcome::Stopped`].
    fn halted(&self) -> bool;
}

/// How many granules may be in flight, and how many processes may work at once among them.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    pub max_granules: usize,
    pub max_workers: usize,
}

/// Runs granules from `feed` until none is left, up to `pool.max_granules` at once sharing
/// `pool.max_workers` slots. The next granule starts only when a slot would otherwise idle
/// (the granules in flight want fewer, ready clones and every running clavrxorb included:
/// start-up, segment 1 and the tail leave one idle); a freed slot goes to the
/// oldest granule's ready clones first. Returns the terminating signal that ended the run.
pub fn supervise<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    pool: Pool,
    policy: &Policy,
) -> io::Result<Option<i32>> {
    let mut flights: Vec<Flight<'a, O, T>> = Vec::new();
    let mut exhausted = false;
    let mut last_tick = Instant::now();
    loop {
        if let Some(sig) =
            start_granules(signals, feed, &mut flights, &mut exhausted, pool, policy)?
        {
            return Ok(Some(sig));
        }
        if feed.halted() {
            // Starting one failed on storage: the granules in flight would hit it too.
            halt(signals, feed, &mut flights, policy)?;
        }
        if flights.is_empty() {
            return Ok(None);
        }
        // The newest granule is in its tail and another may start: the next slot its clones
        // free goes to the next granule's clavrxorb (start-up and segment 1 are the work
        // only it can do), and the tail's last clones fill the slots around it.
        let reserve = usize::from(
            !exhausted
                && flights.len() < pool.max_granules
                && in_tail(&flights, pool)
                && !signals.warned()
                && feed.may_start_granule(&flights),
        );
        let moved = match dispatch(signals, feed, &mut flights, reserve, policy)? {
            ControlFlow::Break(sig) => return Ok(Some(sig)),
            ControlFlow::Continue(moved) => moved,
        };
        if moved || (reserve > 0 && slots_held(&flights) < pool.max_workers) {
            // A granule ended, or a slot is free for the next one: start it now.
            continue;
        }
        if last_tick.elapsed() >= policy.tick {
            last_tick = Instant::now();
            tick_all(signals, feed, &mut flights, policy)?;
        }
        if let Some(Interrupt::Terminate(sig)) = signals.wait(Some(next_wait(&flights, policy)))? {
            interrupt_all(signals, feed, &mut flights, policy, sig)?;
            return Ok(Some(sig));
        }
        if signals.warned() {
            // Each granule in flight is judged once on the warning: kept when projected to
            // finish in time, else ended now.
            judge_on_warning(signals, feed, &mut flights, policy)?;
        }
        if let ControlFlow::Break(sig) = end_stalled(signals, feed, &mut flights, policy)? {
            return Ok(Some(sig));
        }
    }
}

/// Starts granules while a slot would otherwise idle (see [`supervise`]) and the time limit
/// is not near; the terminating signal that came meanwhile, once every granule is ended.
fn start_granules<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    exhausted: &mut bool,
    pool: Pool,
    policy: &Policy,
) -> io::Result<Option<i32>> {
    while !*exhausted
        && flights.len() < pool.max_granules.max(1)
        && (flights.is_empty()
            || ((slots_claimed(flights) < pool.max_workers
                || (in_tail(flights, pool) && slots_held(flights) < pool.max_workers))
                && feed.may_start_granule(flights)))
    {
        // A signal that came meanwhile counts before anything new starts.
        if let Some(Interrupt::Terminate(sig)) = signals.drain()? {
            interrupt_all(signals, feed, flights, policy, sig)?;
            return Ok(Some(sig));
        }
        if signals.warned() {
            // The time limit is near: what is in flight may finish, nothing new starts.
            break;
        }
        match feed.start(flights.len())? {
            Some(f) => flights.push(f),
            None => *exhausted = true,
        }
    }
    Ok(None)
}

/// Child events of every granule, then a poke of each, oldest first: a slot freed in one may
/// start another's ready clone. Whether a granule ended (it makes room for the next one at
/// once, without waiting for a signal), or the terminating signal that ended the run.
fn dispatch<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    reserve: usize,
    policy: &Policy,
) -> io::Result<ControlFlow<i32, bool>> {
    let mut moved = false;
    for poke in [false, true] {
        if poke && flights.len() < 2 && !moved {
            // Alone, a granule's own events dispatch everything it may start.
            break;
        }
        let mut i = 0;
        while i < flights.len() {
            let others = slots_elsewhere(flights, i) + reserve;
            let flight = &mut flights[i];
            flight.ctl.set_slots_held_elsewhere(others);
            let before = unix::children_cpu_seconds();
            let ended = if poke {
                let status = flight.fanout.poke(&mut flight.ctl);
                conclude(flight, status, signals, policy)?
            } else {
                events(flight, signals, policy)?
            };
            flight.cpu += unix::children_cpu_seconds() - before;
            let Some(outcome) = ended else {
                i += 1;
                continue;
            };
            moved = true;
            match settle(signals, feed, flights, i, outcome, policy)? {
                ControlFlow::Break(sig) => return Ok(ControlFlow::Break(sig)),
                ControlFlow::Continue(redone) => i += usize::from(redone),
            }
        }
    }
    Ok(ControlFlow::Continue(moved))
}

/// Granule `i` has ended with `outcome`. A terminating signal is every granule's outcome: the
/// others are ended and handed back interrupted too, and the loop breaks with the signal.
/// Any other outcome is handed back alone ([`hand_back`]); whether a redo took its place.
fn settle<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    i: usize,
    outcome: Outcome,
    policy: &Policy,
) -> io::Result<ControlFlow<i32, bool>> {
    let Some(sig) = terminated(&outcome) else {
        return hand_back(signals, feed, flights, i, outcome, policy).map(ControlFlow::Continue);
    };
    let first = flights.remove(i);
    feed.ended(first, outcome)?;
    interrupt_all(signals, feed, flights, policy, sig)?;
    Ok(ControlFlow::Break(sig))
}

/// Granule `i` has ended with `outcome`: it is handed to the feed, and its redo (after an OOM
/// kill) takes its place. Whether a redo came back.
fn hand_back<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    i: usize,
    outcome: Outcome,
    policy: &Policy,
) -> io::Result<bool> {
    let flight = flights.remove(i);
    let redo = feed.ended(flight, outcome)?;
    let redone = redo.is_some();
    if let Some(redo) = redo {
        flights.insert(i, redo);
    }
    if feed.halted() {
        // Before the others' pending events: what they did after the failure must not
        // publish.
        halt(signals, feed, flights, policy)?;
    }
    Ok(redone)
}

/// The monitor's periodic look at each granule in flight (memory, progress); one kept on the
/// time-limit warning that has fallen behind is ended.
fn tick_all<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    policy: &Policy,
) -> io::Result<()> {
    let mut i = 0;
    while i < flights.len() {
        let flight = &mut flights[i];
        flight.ctl.monitor().tick(&flight.fanout);
        if flight.draining && !flight.ctl.monitor().keep_on_warning(&flight.fanout) {
            // Slower than projected when the warning came: no longer in time.
            let outcome = end_interrupted(flight, signals, policy, Signal::SIGUSR1 as i32);
            hand_back(signals, feed, flights, i, outcome, policy)?;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// How long the loop may sleep: until the next tick, or until a granule that keeps still
/// would be judged hung.
fn next_wait<O: Monitor, T>(flights: &[Flight<'_, O, T>], policy: &Policy) -> Duration {
    let until_stall = flights
        .iter()
        .map(|f| policy.stall_timeout.saturating_sub(f.last_change.elapsed()))
        .min()
        .unwrap_or(policy.stall_timeout);
    until_stall.min(policy.tick).max(Duration::from_millis(1))
}

/// A terminating signal came: every granule in flight is ended and handed back interrupted.
fn interrupt_all<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    policy: &Policy,
    sig: i32,
) -> io::Result<()> {
    for mut flight in flights.drain(..) {
        let outcome = end_interrupted(&mut flight, signals, policy, sig);
        feed.ended(flight, outcome)?;
    }
    Ok(())
}

/// Judges each granule not judged yet on the time-limit warning: kept (to drain) when its
/// monitor projects it to finish in time, else ended now.
fn judge_on_warning<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    policy: &Policy,
) -> io::Result<()> {
    let mut i = 0;
    while i < flights.len() {
        let flight = &mut flights[i];
        if flight.judged {
            i += 1;
            continue;
        }
        flight.judged = true;
        if flight.ctl.monitor().keep_on_warning(&flight.fanout) {
            flight.draining = true;
            i += 1;
            continue;
        }
        let outcome = end_interrupted(flight, signals, policy, Signal::SIGUSR1 as i32);
        let flight = flights.remove(i);
        feed.ended(flight, outcome)?;
        if feed.halted() {
            halt(signals, feed, flights, policy)?;
        }
    }
    Ok(())
}

/// Ends the granules that have hung, and hands each back; the terminating signal that came
/// meanwhile, once every granule is ended.
fn end_stalled<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    policy: &Policy,
) -> io::Result<ControlFlow<i32>> {
    let mut i = 0;
    while i < flights.len() {
        let before = unix::children_cpu_seconds();
        let stall = stalled(&mut flights[i], signals, policy)?;
        flights[i].cpu += unix::children_cpu_seconds() - before;
        match stall {
            None => i += 1,
            Some(outcome) => {
                if let ControlFlow::Break(sig) = settle(signals, feed, flights, i, outcome, policy)?
                {
                    return Ok(ControlFlow::Break(sig));
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// The step stops: every granule still in flight is ended and handed back as
/// [`Outcome::Stopped`] (or interrupted, should a terminating signal come meanwhile).
fn halt<'a, O: Monitor, T>(
    signals: &mut Signals,
    feed: &mut impl Feed<'a, O, T>,
    flights: &mut Vec<Flight<'a, O, T>>,
    policy: &Policy,
) -> io::Result<()> {
    for mut flight in flights.drain(..) {
        let before = unix::children_cpu_seconds();
        let ended = end_group(
            signals,
            flight.leader,
            policy.grace.min(Duration::from_secs(1)),
        );
        flight.cpu += unix::children_cpu_seconds() - before;
        let outcome = match ended {
            Ok(Some(Interrupt::Terminate(sig))) => Outcome::Interrupted(sig),
            Ok(_) => Outcome::Stopped,
            Err(e) => {
                let warning = format!("ending clavrxorb as the step stops: {e}");
                flight.ctl.monitor().warning(&warning);
                Outcome::Stopped
            }
        };
        feed.ended(flight, outcome)?;
    }
    Ok(())
}

/// Slots the granules in flight would use now: their busy and ready clones, and every
/// clavrxorb that runs.
fn slots_claimed<O: Monitor, T>(flights: &[Flight<'_, O, T>]) -> usize {
    flights.iter().map(|f| f.fanout.slots_wanted()).sum()
}

/// Slots the granules in flight hold now: their busy clones, and each clavrxorb doing the
/// work nobody else can.
fn slots_held<O: Monitor, T>(flights: &[Flight<'_, O, T>]) -> usize {
    flights.iter().map(|f| f.fanout.slots_held()).sum()
}

/// Whether the newest granule in flight (so every one) has read its last segment, and its
/// tail will leave a slot idle: with a single slot, its last clones keep it busy themselves,
/// and starting the next granule early would only hold more memory (and more work to lose at
/// a time limit).
fn in_tail<O: Monitor, T>(flights: &[Flight<'_, O, T>], pool: Pool) -> bool {
    pool.max_workers > 1 && flights.last().is_some_and(|f| f.fanout.in_tail())
}

/// What granule `i` must leave to the others: the slots they hold, and the ones older
/// granules' ready clones take first.
fn slots_elsewhere<O: Monitor, T>(flights: &[Flight<'_, O, T>], i: usize) -> usize {
    flights
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(j, f)| f.fanout.slots_held() + if j < i { f.fanout.waiting_workers() } else { 0 })
        .sum()
}

/// The signal, when an outcome is an interruption every granule shares (not one granule
/// ended on the time-limit warning).
fn terminated(outcome: &Outcome) -> Option<i32> {
    match outcome {
        Outcome::Interrupted(sig) if *sig != Signal::SIGUSR1 as i32 => Some(*sig),
        _ => None,
    }
}

/// Feeds a granule's pending child events to its machine; its outcome once it has ended.
fn events<O: Monitor, T>(
    flight: &mut Flight<'_, O, T>,
    signals: &mut Signals,
    policy: &Policy,
) -> io::Result<Option<Outcome>> {
    let leader = flight.leader;
    while let Some(event) = unix::next_child_event(leader) {
        let event = match event {
            Ok((_, e)) => e,
            Err(e) if unix::is_no_children(&e) => {
                let f = Failure {
                    pid: leader,
                    role: Role::Parent,
                    segment: None,
                    kind: Fault::Protocol(
                        "every process ended before the granule was finished".into(),
                    ),
                };
                return Ok(Some(Outcome::Failed(f)));
            }
            Err(e) => return Err(e),
        };
        flight.last_change = Instant::now();
        let status = match event {
            ChildEvent::Stopped(pid) => {
                flight.live.insert(pid);
                flight.fanout.on_stop(pid, &mut flight.ctl)
            }
            ChildEvent::Exited(pid, exit) => {
                flight.live.remove(&pid);
                flight.ctl.forget(pid);
                flight.fanout.on_exit(pid, exit)
            }
        };
        if let Some(outcome) = conclude(flight, status, signals, policy)? {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

/// Ends a granule the machine says is over; `None` while it runs.
fn conclude<O: Monitor, T>(
    flight: &mut Flight<'_, O, T>,
    status: GranuleState,
    signals: &mut Signals,
    policy: &Policy,
) -> io::Result<Option<Outcome>> {
    let leader = flight.leader;
    Ok(match status {
        GranuleState::Running => None,
        GranuleState::Done => {
            flight.ctl.monitor().tick(&flight.fanout);
            // Without waitpoints only exit 0 gets here: an exit 1 (clavrxorb's answer to
            // anyone's SIGTERM) is a failure, and a scheduler's signal turns it into an
            // interruption below.
            let interrupt = end_group(signals, leader, policy.grace)?;
            Some(match interrupt {
                Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
                Some(Interrupt::Warning) | None => Outcome::Done,
            })
        }
        GranuleState::Failed(f) => {
            let mut interrupt = end_group(signals, leader, policy.grace)?;
            if interrupt.is_none() && killed_by_scheduler(&f) {
                // Slurm signals every process of the step: clavrxorb may die of it a moment
                // before our own copy of the signal arrives.
                interrupt = signals.wait(Some(SCHEDULER_SIGNAL_WAIT))?;
            }
            Some(match interrupt {
                Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
                Some(Interrupt::Warning) | None => Outcome::Failed(f),
            })
        }
    })
}

/// A granule whose processes neither changed state nor used CPU for the stall timeout has
/// hung: it is ended, and the process meant to be running is blamed.
fn stalled<O: Monitor, T>(
    flight: &mut Flight<'_, O, T>,
    signals: &mut Signals,
    policy: &Policy,
) -> io::Result<Option<Outcome>> {
    if flight.last_change.elapsed() < policy.stall_timeout {
        return Ok(None);
    }
    let f = &flight.fanout;
    if f.waiting_workers() > 0 && f.slots_wanted() == f.waiting_workers() {
        // Nothing of it runs: its clones wait for slots other granules hold. Waiting is
        // not hanging, however long the older granule's segments take.
        flight.last_change = Instant::now();
        return Ok(None);
    }
    let cpu = cpu_of(&flight.live);
    if cpu != flight.last_cpu {
        flight.last_cpu = cpu;
        flight.last_change = Instant::now();
        return Ok(None);
    }
    let leader = flight.leader;
    // Blame a process that is meant to be running, not one we hold stopped.
    let stuck = flight
        .live
        .iter()
        .copied()
        .filter(|&p| !proc_stat::read(Path::new("/proc"), p as u32).is_some_and(|s| s.stopped()))
        .min()
        .unwrap_or(leader);
    let f = Failure {
        pid: stuck,
        role: if stuck == leader {
            Role::Parent
        } else {
            Role::Worker
        },
        segment: flight.fanout.segment_of(stuck),
        kind: Fault::Stalled(policy.stall_timeout.as_secs()),
    };
    Ok(Some(match end_group(signals, leader, policy.grace)? {
        Some(Interrupt::Terminate(sig)) => Outcome::Interrupted(sig),
        Some(Interrupt::Warning) | None => Outcome::Failed(f),
    }))
}

/// Ends every process of the granule after a terminating signal: the interruption is the
/// outcome even if ending the processes went wrong.
fn interrupted(
    signals: &mut Signals,
    leader: Pid,
    policy: &Policy,
    sig: i32,
    monitor: &mut impl Monitor,
) -> Outcome {
    if let Err(e) = end_group(signals, leader, policy.grace.min(Duration::from_secs(1))) {
        monitor.warning(&format!("ending clavrxorb after signal {sig}: {e}"));
    }
    Outcome::Interrupted(sig)
}

/// Ends a granule's processes after signal `sig` (SIGUSR1: the time-limit warning leaves it
/// no time to finish), counting the CPU of those reaped.
fn end_interrupted<O: Monitor, T>(
    flight: &mut Flight<'_, O, T>,
    signals: &mut Signals,
    policy: &Policy,
    sig: i32,
) -> Outcome {
    let before = unix::children_cpu_seconds();
    let outcome = interrupted(signals, flight.leader, policy, sig, flight.ctl.monitor());
    flight.cpu += unix::children_cpu_seconds() - before;
    outcome
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
        Fault::Died(Exit::Signal(s)) => scheduler.iter().any(|&q| q as i32 == s),
        Fault::EndedEarly(Exit::Code(1)) => true,
        _ => false,
    }
}

fn cpu_of(pids: &HashSet<Pid>) -> u64 {
    pids.iter()
        .filter_map(|&p| proc_stat::read(Path::new("/proc"), p as u32))
        .map(|s| s.cpu_ticks())
        .sum()
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
