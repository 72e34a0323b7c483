//! Every signal, wait and process-group call of the driver, and the one place with `unsafe`.
//!
//! Signals arrive through a signalfd (blocked in the process mask), never through handler
//! logic; children are reaped with `waitpid(-1, WUNTRACED | __WALL)` because clones made with
//! `CLONE_PARENT` are our children too. Nothing here knows the tracer protocol.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, killpg, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How a child ended, as `waitpid` said: its exit status, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "was killed by signal {s} ({})", signal_name(*s)),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        _ => "signal",
    }
}

/// What happened to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEvent {
    Stopped(i32),
    Exited(i32, Exit),
}

/// Signals that end or interrupt a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Terminate(i32),
    /// SIGUSR1: Slurm's warning that the time limit is near. Not an end by itself.
    Warning,
}

/// The driver's signal intake: SIGCHLD wakes the loop; SIGTERM, SIGINT, SIGHUP and SIGUSR1
/// (Slurm's warning before the time limit) ask it to stop.
pub struct Signals {
    fd: SignalFd,
    warned: bool,
}

/// The signals the driver takes in. SIGUSR1 is Slurm's early warning before a time limit
/// (`--signal=USR1@N`). SIGHUP and SIGINT are left out when inherited as ignored: under
/// `nohup`, or a shell's background job, they must not stop a run (blocking them would undo
/// the ignoring, since the kernel queues a blocked signal instead of dropping it).
fn watched(ignored: u64) -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        let optional = matches!(s, Signal::SIGINT | Signal::SIGHUP);
        if !(optional && ignored & (1 << (s as i32 - 1)) != 0) {
            set.add(s);
        }
    }
    set
}

/// The mask of ignored signals from `/proc/self/status` (`SigIgn:`, hex; bit N-1 for N).
fn parse_sig_ign(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

impl Signals {
    /// Blocks the watched signals in this thread and opens a signalfd for them. Call before
    /// starting any thread, so every thread inherits the mask. Children get a clean mask
    /// from `std::process::Command`.
    pub fn install() -> io::Result<Signals> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let set = watched(parse_sig_ign(&status).unwrap_or(0));
        // An inherited SIGCHLD set to SIG_IGN makes the kernel reap children itself, and
        // waitpid would never see a clone exit.
        // SAFETY: SIG_DFL installs no handler, so no code of ours runs in signal context;
        // this runs before any thread starts.
        unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) }
            .map_err(io::Error::from)?;
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io::Error::from)?;
        Ok(Signals { fd, warned: false })
    }

    /// Waits until a watched signal arrives or `timeout` passes. Returns a terminating signal
    /// if one came; SIGCHLD only wakes the caller.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Option<Interrupt>> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.drain()
    }

    /// Reads every pending signal without blocking. A terminating signal outranks the
    /// warning; the warning is also remembered (see [`Signals::warned`]).
    pub fn drain(&mut self) -> io::Result<Option<Interrupt>> {
        let mut interrupt = None;
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    if signo == Signal::SIGUSR1 as i32 {
                        self.warned = true;
                        interrupt.get_or_insert(Interrupt::Warning);
                    } else if signo != Signal::SIGCHLD as i32
                        && !matches!(interrupt, Some(Interrupt::Terminate(_)))
                    {
                        interrupt = Some(Interrupt::Terminate(signo));
                    }
                }
                Ok(None) | Err(Errno::EAGAIN) => return Ok(interrupt),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the time-limit warning has come at any point.
    pub fn warned(&self) -> bool {
        self.warned
    }
}

/// Collects one state change of a child in process group `pgid` without blocking; `None`
/// when there is none right now, `Some(Err)` with ECHILD when the group has no children left.
/// Children outside the group (the watchdog) are not touched.
pub fn next_child_event(pgid: i32) -> Option<io::Result<(i32, ChildEvent)>> {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::__WALL;
    loop {
        return match waitpid(Pid::from_raw(-pgid), Some(flags)) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Stopped(pid, _)) => {
                Some(Ok((pid.as_raw(), ChildEvent::Stopped(pid.as_raw()))))
            }
            Ok(WaitStatus::Exited(pid, code)) => Some(Ok((
                pid.as_raw(),
                ChildEvent::Exited(pid.as_raw(), Exit::Code(code)),
            ))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => Some(Ok((
                pid.as_raw(),
                ChildEvent::Exited(pid.as_raw(), Exit::Signal(sig as i32)),
            ))),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => Some(Err(e.into())),
        };
    }
}

/// True when `err` says there are no children left to wait for.
pub fn is_no_children(err: &io::Error) -> bool {
    err.raw_os_error() == Some(Errno::ECHILD as i32)
}

fn send(pid: i32, sig: Signal) -> io::Result<()> {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn resume(pid: i32) -> io::Result<()> {
    send(pid, Signal::SIGCONT)
}

/// The protocol's ending: SIGTERM (acted on once running), then SIGCONT.
pub fn terminate(pid: i32) -> io::Result<()> {
    send(pid, Signal::SIGTERM)?;
    send(pid, Signal::SIGCONT)
}

/// SIGKILL, for a process that did not act on SIGTERM.
pub fn kill_now(pid: i32) -> io::Result<()> {
    send(pid, Signal::SIGKILL)
}

/// True while any process (zombies included) is in the group `pgid`.
pub fn group_exists(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None::<Signal>).is_ok()
}

/// Signals a whole process group; a group that is already gone is not an error.
pub fn signal_group(pgid: i32, sig: Signal) -> io::Result<()> {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Orphaned descendants of our children are reparented to us, so every process a clavrxorb
/// leaves behind can still be reaped.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Marks every inherited descriptor above 2 close-on-exec: a clone reopens each descriptor it
/// inherits through /proc and dies on one it cannot reopen (a socket, a pipe end).
pub fn close_inherited_fds_on_exec() -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: `fd` was listed open in /proc/self/fd just now and nothing closes
        // descriptors concurrently (this runs before any thread starts); the borrow lives only
        // for this fcntl call. The directory's own descriptor is closed by then and yields
        // EBADF, which is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = match nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD) {
            Ok(f) => f,
            Err(Errno::EBADF) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut flags = nix::fcntl::FdFlag::from_bits_truncate(flags);
        flags.insert(nix::fcntl::FdFlag::FD_CLOEXEC);
        nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_SETFD(flags))?;
    }
    Ok(())
}

/// Starts `cmd` as the leader of a new process group, killed if this driver dies.
pub fn spawn_group_leader(cmd: &mut Command) -> io::Result<i32> {
    cmd.process_group(0);
    let driver = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only calls sigprocmask(2),
    // sigaction(2), prctl(2) and getppid(2), all async-signal-safe: no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            // Our blocked SIGTERM would otherwise be inherited: clavrxorb could not be ended,
            // and a clone continued after SIGTERM goes on to clone the next segment.
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            // Slurm sends its time-limit warning to every process of the step, and SIGUSR1's
            // default action would kill clavrxorb and its clones, throwing away a granule
            // the warning leaves time to finish. An ignored signal stays ignored across exec
            // and clone; the driver alone decides what the warning ends.
            // SAFETY: SIG_IGN installs no handler, so nothing of ours runs in signal context.
            nix::sys::signal::signal(Signal::SIGUSR1, nix::sys::signal::SigHandler::SigIgn)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // A driver killed between fork and prctl sends no signal: its child would run
            // on unwatched (the watchdog learns a group only once spawn returns) and stop
            // at its first waitpoint for ever.
            if nix::unistd::getppid() != driver {
                return Err(io::Error::from(Errno::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The child is reaped through waitpid(-1); std's handle is not used for waiting.
    Ok(child.id() as i32)
}

/// CPU seconds (user + system) of this process itself: the driver and its sampler.
pub fn own_cpu_seconds() -> f64 {
    rusage_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// CPU seconds (user + system) of every child reaped so far: clavrxorb and its clones.
pub fn children_cpu_seconds() -> f64 {
    rusage_seconds(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
}

fn rusage_seconds(who: nix::sys::resource::UsageWho) -> f64 {
    nix::sys::resource::getrusage(who).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// A pipe whose ends are closed on exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Blocks `signals` in this thread (and the threads it starts): they stay pending, so their
/// default action (ending the process) never runs.
pub fn block_signals(signals: &[Signal]) -> io::Result<()> {
    let set: SigSet = signals.iter().copied().collect();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(io::Error::from)
}

/// This process's process group.
pub fn own_process_group() -> i32 {
    nix::unistd::getpgrp().as_raw()
}

/// CPU time the calling thread has used; zero if the clock cannot be read.
pub fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// Whether this process may read `path` (access(2) with `R_OK`: permissions and ACLs as the
/// kernel sees them, which mode bits alone do not tell).
pub fn check_readable(path: &std::path::Path) -> io::Result<()> {
    Ok(nix::unistd::access(path, nix::unistd::AccessFlags::R_OK)?)
}

/// The host name.
pub fn hostname() -> io::Result<String> {
    Ok(nix::unistd::gethostname()?.to_string_lossy().into_owned())
}

/// Resets a process's RSS high-water mark (`VmHWM`) to its RSS now (`clear_refs` 5, Linux
/// 4.0+), so the mark read later is the peak since this moment. Allowed for our own children.
pub fn reset_peak_rss(proc_root: &std::path::Path, pid: i32) -> io::Result<()> {
    std::fs::write(proc_root.join(pid.to_string()).join("clear_refs"), "5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_ignored_hangup_and_interrupt_are_not_watched() {
        let status = "Name:\tpseg-step\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000003\n";
        let ignored = parse_sig_ign(status).unwrap();
        assert_eq!(ignored, 0b11, "SIGHUP (1) and SIGINT (2)");
        let set = watched(ignored);
        assert!(!set.contains(Signal::SIGHUP) && !set.contains(Signal::SIGINT));
        assert!(set.contains(Signal::SIGTERM) && set.contains(Signal::SIGUSR1));
        let all = watched(0);
        assert!(all.contains(Signal::SIGHUP) && all.contains(Signal::SIGINT));
    }

    #[test]
    fn a_childs_peak_rss_resets_to_its_rss_now() {
        // The peak (`VmHWM`) and the RSS now (`VmRSS`), in bytes.
        #[derive(Debug)]
        struct Marks {
            hwm: u64,
            rss: u64,
        }
        let read_status = |proc: &std::path::Path, pid: i32| -> io::Result<Marks> {
            let text = std::fs::read_to_string(proc.join(pid.to_string()).join("status"))?;
            let kib = |key: &str| -> u64 {
                let line = text.lines().find_map(|l| l.strip_prefix(key)).unwrap();
                line.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
                    << 10
            };
            Ok(Marks {
                hwm: kib("VmHWM:"),
                rss: kib("VmRSS:"),
            })
        };
        let proc = std::path::Path::new("/proc");
        let mut cmd = Command::new("sh");
        // Builds an 8 MiB string, drops it, then waits: its peak stays, its RSS falls.
        cmd.args([
            "-c",
            r#"x=$(head -c 8388608 /dev/zero | tr '\0' a); x=; read _"#,
        ])
        .stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        let mut before = read_status(proc, pid).unwrap();
        for _ in 0..200 {
            if before.hwm > before.rss + (4 << 20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            before = read_status(proc, pid).unwrap();
        }
        assert!(before.hwm > before.rss + (4 << 20), "{before:?}");
        reset_peak_rss(proc, pid).unwrap();
        let after = read_status(proc, pid).unwrap();
        assert!(
            after.hwm < before.hwm - (4 << 20),
            "{before:?} then {after:?}"
        );
        drop(child.stdin.take());
        child.wait().unwrap();
        let e = reset_peak_rss(proc, i32::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_pipe_carries_bytes_and_is_closed_on_exec() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (read, write) = pipe().unwrap();
        for fd in [read.as_raw_fd(), write.as_raw_fd()] {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
            let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
            assert_ne!(flags & 0o2000000, 0, "O_CLOEXEC on {fd}: {info}");
        }
        std::fs::File::from(write).write_all(b"+42\n").unwrap();
        let mut text = String::new();
        std::fs::File::from(read).read_to_string(&mut text).unwrap();
        assert_eq!(text, "+42\n");
    }

    #[test]
    fn blocked_signals_show_in_the_thread_mask() {
        // A thread of its own: the mask is per thread, and the test harness's stays as it is.
        let blocked = std::thread::spawn(|| {
            block_signals(&[Signal::SIGUSR1, Signal::SIGHUP]).unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .unwrap();
            u64::from_str_radix(hex.trim(), 16).unwrap()
        })
        .join()
        .unwrap();
        let bit = |s: Signal| 1u64 << (s as i32 - 1);
        assert_eq!(
            blocked & (bit(Signal::SIGUSR1) | bit(Signal::SIGHUP)),
            bit(Signal::SIGUSR1) | bit(Signal::SIGHUP)
        );
        assert_eq!(blocked & bit(Signal::SIGTERM), 0);
    }

    #[test]
    fn identity_and_access_facts() {
        let me = crate::base::proc_stat::read(std::path::Path::new("/proc"), std::process::id());
        let pgid = me.unwrap().pgid;
        assert_eq!(own_process_group(), pgid);
        assert!(!hostname().unwrap().is_empty());
        let busy: u64 = (0..100_000u64).map(std::hint::black_box).sum();
        assert!(busy > 0 && thread_cpu_time() > Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list.txt");
        std::fs::write(&file, "a\n").unwrap();
        assert!(check_readable(&file).is_ok());
        let e = check_readable(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_gone_process_is_not_an_error_to_signal() {
        // Pids above pid_max do not exist.
        assert!(resume(i32::MAX).is_ok());
        assert!(signal_group(i32::MAX, Signal::SIGTERM).is_ok());
    }

    #[test]
    fn a_started_program_ignores_the_time_limit_warning_but_not_sigterm() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let pid = spawn_group_leader(&mut cmd).unwrap();
        let status = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ignored = parse_sig_ign(&status(pid)).unwrap();
        assert_ne!(
            ignored & (1 << (Signal::SIGUSR1 as i32 - 1)),
            0,
            "SIGUSR1 ignored"
        );
        assert_eq!(
            ignored & (1 << (Signal::SIGTERM as i32 - 1)),
            0,
            "SIGTERM not"
        );
        signal_group(pid, Signal::SIGUSR1).unwrap();
        signal_group(pid, Signal::SIGTERM).unwrap();
        let reaped = waitpid(Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            reaped,
            WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGTERM, false),
            "SIGUSR1 did not end it; SIGTERM did"
        );
    }
}
