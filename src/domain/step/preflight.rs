//! Whether this machine (or container) can run the fan-out, as typed findings for
//! `pseg-step --check` to word: clavrxorb found, its tracer symbols read, the kernel's ptrace
//! policy (Yama's `ptrace_scope`, CAP_SYS_PTRACE), a probe that reads and writes a stopped
//! child's memory through the tracer's [`ProcMem`], and the memory cgroup.
//!
//! No wording for the terminal and no exit statuses here: the command prints and chooses.
//! Interpretation is pure (`parse_*`) and unit-tested on strings; the readers of the live
//! system take a `/proc` root. The probe never touches a clavrxorb process: it starts, stops,
//! reads and kills a child of its own, and all signalling and reaping goes through
//! `base::unix`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::exe::{self, ExeError};
use crate::base::unix::{self, ChildEvent};
use crate::domain::fanout::machine::Exit;
use crate::domain::fanout::orphan_guard::ENV as WATCHDOG_ENV;
use crate::domain::memory::{CgroupError, MemoryCgroup};
use crate::domain::tracer::{ElfError, ProcMem, TracerSymbols};

/// Capability number of CAP_SYS_PTRACE (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
/// How long the probe child may take to stop, or to go once killed.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Everything `--check` looks at, in the order it looks.
#[derive(Debug)]
pub struct Preflight {
    /// clavrxorb as the step would find it (a path, or a name on PATH).
    pub exe: Result<PathBuf, ExeError>,
    /// Its tracer symbols; `None` when there is no clavrxorb to read.
    pub symbols: Option<Result<TracerSymbols, ElfError>>,
    pub scope: PtraceScope,
    pub cap_sys_ptrace: bool,
    /// Reading and writing a byte of a stopped child of ours.
    pub probe: Result<Probed, ProbeError>,
    pub memory: Result<Option<MemoryCgroup>, CgroupError>,
}

/// Looks at everything the fan-out needs of this machine. The probe's child is a copy of
/// ourselves in watchdog mode, so this must run in `pseg-step` (it does: `--check`).
pub fn run(exe: &Path, proc_root: &Path) -> Preflight {
    let found = exe::find(exe);
    let symbols = found.as_ref().ok().map(|path| TracerSymbols::read(path));
    let scope = read_ptrace_scope(proc_root);
    let cap_sys_ptrace = read_cap_sys_ptrace(proc_root);
    let probe = probe_self(proc_root);
    Preflight {
        exe: found,
        symbols,
        scope,
        cap_sys_ptrace,
        probe,
        memory: MemoryCgroup::discover(Path::new("/"), "self"),
    }
}

// ---- ptrace policy ----

/// The Yama LSM's `kernel.yama.ptrace_scope`, which decides whose memory a process may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtraceScope {
    /// /proc itself is missing: nothing below can work.
    NoProc,
    /// No Yama in this kernel: only the classic rule (same user, not setuid) applies.
    NoYama,
    /// 0: any process of the same user.
    Classic,
    /// 1: only descendants (clavrxorb and its clones are pseg-step's children).
    Restricted,
    /// 2: only processes with CAP_SYS_PTRACE.
    AdminOnly,
    /// 3: nobody, until reboot.
    NoAttach,
    /// A value this version does not know.
    Unknown(String),
}

/// Interprets the contents of /proc/sys/kernel/yama/ptrace_scope (`None`: the file is absent).
fn parse_ptrace_scope(text: Option<&str>) -> PtraceScope {
    match text.map(str::trim) {
        None => PtraceScope::NoYama,
        Some("0") => PtraceScope::Classic,
        Some("1") => PtraceScope::Restricted,
        Some("2") => PtraceScope::AdminOnly,
        Some("3") => PtraceScope::NoAttach,
        Some(other) => PtraceScope::Unknown(other.to_string()),
    }
}

/// Whether the `CapEff` line of a /proc/PID/status holds CAP_SYS_PTRACE.
fn parse_cap_sys_ptrace(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

/// Why the kernel's ptrace policy surely keeps pseg-step from reading its children's
/// memory, or `None` when it may (the probe of `--check` decides the rest). `--serial` then
/// runs clavrxorb without the tracer rather than failing every granule.
pub fn memory_access_denied(proc_root: &Path) -> Option<String> {
    policy_denies(
        &read_ptrace_scope(proc_root),
        read_cap_sys_ptrace(proc_root),
    )
}

fn policy_denies(scope: &PtraceScope, cap_sys_ptrace: bool) -> Option<String> {
    match scope {
        PtraceScope::NoAttach => Some("kernel.yama.ptrace_scope = 3 (no attach)".into()),
        PtraceScope::AdminOnly if !cap_sys_ptrace => Some(
            "kernel.yama.ptrace_scope = 2 (admin only) and this process lacks CAP_SYS_PTRACE"
                .into(),
        ),
        _ => None,
    }
}

pub fn read_ptrace_scope(proc_root: &Path) -> PtraceScope {
    if !proc_root.join("self").exists() {
        return PtraceScope::NoProc;
    }
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/yama/ptrace_scope")).ok();
    parse_ptrace_scope(text.as_deref())
}

pub fn read_cap_sys_ptrace(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("self/status"))
        .is_ok_and(|status| parse_cap_sys_ptrace(&status))
}

// ---- the memory probe ----

/// What the probe did: which process, where it read and wrote.
#[derive(Debug)]
pub struct Probed {
    pub pid: i32,
    pub addr: u64,
}

/// Which step of the probe failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ProbeError {
    what: String,
    source: io::Error,
}

impl ProbeError {
    /// The kind of the operating system's refusal (not found, permission denied...).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

fn probe_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProbeError {
    let what = what.into();
    move |source| ProbeError { what, source }
}

/// Probes a copy of ourselves in watchdog mode: it blocks reading stdin, so it stays alive
/// until we stop it.
fn probe_self(proc_root: &Path) -> Result<Probed, ProbeError> {
    let exe = std::env::current_exe()
        .map_err(probe_error("finding our own executable to start a probe"))?;
    let mut program = Command::new(exe);
    program.env(WATCHDOG_ENV, "1");
    probe_child_memory(proc_root, program)
}

/// Starts `program` as a child of ours, stops it, opens its memory read+write, reads one
/// byte of a writable mapping and writes it back, then kills and reaps it.
fn probe_child_memory(proc_root: &Path, mut program: Command) -> Result<Probed, ProbeError> {
    // The child's stdin is a pipe we hold open, so a watchdog copy of ourselves waits on it.
    let (read, write) = unix::pipe().map_err(probe_error("creating a pipe"))?;
    program
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid =
        unix::spawn_group_leader(&mut program).map_err(probe_error("starting a probe process"))?;
    let child = ProbeChild { pid, _stdin: write };

    unix::signal_group(pid, Signal::SIGSTOP)
        .map_err(probe_error(format!("stopping the probe process {pid}")))?;
    child.wait_for(|ev| match ev {
        ChildEvent::Stopped(_) => Ok(true),
        ChildEvent::Exited(_, exit) => Err(io::Error::other(format!(
            "it ended ({}) before it could be stopped",
            describe(exit)
        ))),
    })?;

    let dir = proc_root.join(pid.to_string());
    let maps = std::fs::read_to_string(dir.join("maps")).map_err(probe_error(format!(
        "reading {}",
        dir.join("maps").display()
    )))?;
    let addr = parse_writable_mapping(&maps).ok_or_else(|| {
        probe_error(format!("{}", dir.join("maps").display()))(io::Error::other(
            "no readable and writable mapping listed",
        ))
    })?;
    // Through the tracer's own access, so the probe proves what the fan-out does.
    let mem_path = dir.join("mem");
    let mem = ProcMem::open(proc_root, pid).map_err(probe_error(format!(
        "opening {} for reading and writing",
        mem_path.display()
    )))?;
    let mut byte = [0u8; 1];
    let in_mem = || probe_error(mem_path.display().to_string());
    mem.read_bytes(addr, &mut byte).map_err(in_mem())?;
    mem.write_bytes(addr, &byte).map_err(in_mem())?;
    drop(mem);
    child.end()?;
    Ok(Probed { pid, addr })
}

/// The probe process; killed and reaped when dropped, whatever happened.
struct ProbeChild {
    pid: i32,
    _stdin: std::os::fd::OwnedFd,
}

impl ProbeChild {
    /// Waits until `done` says an event of the child is the one wanted.
    fn wait_for(
        &self,
        mut done: impl FnMut(ChildEvent) -> io::Result<bool>,
    ) -> Result<(), ProbeError> {
        let what = || format!("waiting for the probe process {}", self.pid);
        let deadline = Instant::now() + PROBE_DEADLINE;
        loop {
            match unix::next_child_event(self.pid) {
                Some(Ok((_, ev))) => {
                    if done(ev).map_err(probe_error(what()))? {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(probe_error(what())(e)),
                None if Instant::now() >= deadline => {
                    return Err(probe_error(what())(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer in {} s", PROBE_DEADLINE.as_secs()),
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// SIGKILL, then reaps it.
    fn end(&self) -> Result<(), ProbeError> {
        unix::kill_now(self.pid).map_err(probe_error(format!(
            "killing the probe process {}",
            self.pid
        )))?;
        self.wait_for(|ev| Ok(matches!(ev, ChildEvent::Exited(..))))
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        // Already reaped on the good path: then the group is gone and this is a no-op.
        if unix::group_exists(self.pid) {
            let _ = self.end();
        }
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit status {c}"),
        Exit::Signal(s) => format!("signal {s}"),
    }
}

/// Start address of the first private read-write mapping in a /proc/PID/maps text: where a
/// tracer writes (clavrxorb's globals live in such a mapping).
fn parse_writable_mapping(maps: &str) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        if !perms.starts_with("rw") {
            return None;
        }
        u64::from_str_radix(range.split('-').next()?, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptrace_scope_values_are_read_as_the_kernel_documents_them() {
        assert_eq!(parse_ptrace_scope(None), PtraceScope::NoYama);
        assert_eq!(parse_ptrace_scope(Some("0\n")), PtraceScope::Classic);
        assert_eq!(parse_ptrace_scope(Some("1\n")), PtraceScope::Restricted);
        assert_eq!(parse_ptrace_scope(Some("2\n")), PtraceScope::AdminOnly);
        assert_eq!(parse_ptrace_scope(Some("3")), PtraceScope::NoAttach);
        assert_eq!(
            parse_ptrace_scope(Some("7\n")),
            PtraceScope::Unknown("7".into())
        );
    }

    #[test]
    fn a_missing_proc_is_named_not_taken_for_no_yama() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_ptrace_scope(empty.path()), PtraceScope::NoProc);
        std::fs::create_dir(empty.path().join("self")).unwrap();
        assert_eq!(read_ptrace_scope(empty.path()), PtraceScope::NoYama);
    }

    #[test]
    fn cap_sys_ptrace_is_bit_19_of_cap_eff() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                    CapEff:\t000001ffffffffff\n";
        assert!(parse_cap_sys_ptrace(root));
        let user = "CapPrm:\t0000000000080000\nCapEff:\t0000000000000000\n";
        assert!(!parse_cap_sys_ptrace(user));
        assert!(parse_cap_sys_ptrace("CapEff:\t0000000000080000\n"));
        assert!(!parse_cap_sys_ptrace("no caps here"));
    }

    #[test]
    fn the_probe_writes_where_a_tracer_would_a_private_writable_mapping() {
        let maps = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/proc/maps-pie.txt"
        ));
        assert_eq!(parse_writable_mapping(maps), Some(0x55d0c3a6e000));
        assert_eq!(
            parse_writable_mapping("00400000-00401000 r-xp 0 0:0 0 /x\n"),
            None
        );
    }

    #[test]
    fn probing_a_child_of_ours_reads_and_writes_its_memory_and_reaps_it() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let probed = probe_child_memory(Path::new("/proc"), sleep).expect("probe");
        assert!(probed.addr > 0);
        assert!(
            !Path::new("/proc").join(probed.pid.to_string()).exists(),
            "probe process {} left behind",
            probed.pid
        );
    }

    #[test]
    fn a_probe_that_cannot_start_says_so() {
        let err =
            probe_child_memory(Path::new("/proc"), Command::new("/no/such/program")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().starts_with("starting a probe process: "),
            "{err}"
        );
    }

    #[test]
    fn only_a_policy_that_surely_denies_turns_serial_runs_untraced() {
        assert!(policy_denies(&PtraceScope::NoAttach, true).is_some());
        assert!(policy_denies(&PtraceScope::AdminOnly, false).is_some());
        assert!(policy_denies(&PtraceScope::AdminOnly, true).is_none());
        for scope in [
            PtraceScope::Classic,
            PtraceScope::Restricted,
            PtraceScope::NoYama,
            PtraceScope::Unknown("9".into()),
        ] {
            assert!(policy_denies(&scope, false).is_none(), "{scope:?}");
        }
    }
}
