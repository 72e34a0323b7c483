//! `pseg-step --check`: can this machine (or container) run the fan-out?
//!
//! Owns the checks and their wording: clavrxorb is found, has the tracer symbols, this process
//! may read and write a stopped child's memory (the Yama ptrace policy, explained, then proved
//! on a child of our own), and which cgroup and memory limit it runs under. One line per
//! check on stdout, `ok:` or `FAIL:` with what to do. The status is that of the first failing
//! check, from the step's own mapping: 3 clavrxorb not found, 4 no tracer symbols, 11 the
//! operating system refuses what the fan-out needs.
//!
//! Interpretation is pure (`parse_*`, `*_finding`) and unit-tested on strings; the readers of
//! the live system take a `/proc` root, and the cgroup comes from `memory::cgroup`. The
//! probe's child is a copy of ourselves in watchdog mode, so `run` must be called from
//! `pseg-step` (it is: `pseg-step --check`). It never touches a clavrxorb process: the probe
//! stops, reads and kills a process it started itself, and all signalling and reaping goes
//! through `fanout::unix`.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use crate::base::unix::{self, ChildEvent};
use crate::domain::fanout::machine::Exit;
use crate::domain::memory::{CgroupError, Limit, MemoryCgroup, Version};
use crate::domain::step::StepError;
use crate::domain::tracer::TracerSymbols;

/// Makes `pseg-step` run as its watchdog: a copy of ourselves that blocks reading stdin, so
/// it stays alive until we stop it.
use crate::domain::fanout::orphan_guard::ENV as WATCHDOG_ENV;
/// Capability number of CAP_SYS_PTRACE (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
/// How long the probe child may take to stop, or to go once killed.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Runs the checks, prints one line each, returns the exit status (0 when all pass).
pub fn run(exe: &Path) -> u8 {
    let proc_root = Path::new("/proc");
    let mut findings = Vec::new();
    let (exe_found, path) = exe_finding(exe);
    let status = exe_found.status;
    findings.push(exe_found);
    findings.push(match &path {
        Some(path) => tracer_finding(path),
        None => Finding::fail(
            status,
            "tracer symbols: not checked, there is no clavrxorb to read".to_string(),
        ),
    });
    let scope = read_ptrace_scope(proc_root);
    let cap = read_cap_sys_ptrace(proc_root);
    findings.push(ptrace_finding(&scope, cap));
    findings.push(probe_finding(proc_root, &scope));
    findings.push(memory_finding(MemoryCgroup::discover(
        Path::new("/"),
        "self",
    )));

    for f in &findings {
        println!("{f}");
    }
    let failed: Vec<&Finding> = findings.iter().filter(|f| f.status != 0).collect();
    match failed.first() {
        None => {
            eprintln!(
                "pseg-step --check: all {} checks passed: this machine can run the fan-out",
                findings.len()
            );
            0
        }
        Some(first) => {
            eprintln!(
                "pseg-step --check: {} of {} checks failed; exit status {} (the first failure)",
                failed.len(),
                findings.len(),
                first.status
            );
            first.status
        }
    }
}

/// One check's verdict: status 0 passes; otherwise the exit status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    status: u8,
    text: String,
}

impl Finding {
    fn ok(text: String) -> Finding {
        Finding { status: 0, text }
    }

    fn fail(status: u8, text: String) -> Finding {
        Finding { status, text }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.status == 0 { "ok" } else { "FAIL" };
        write!(f, "{tag}: {}", self.text)
    }
}

/// Status 11, as the step maps an operating system refusal.
fn os_status() -> u8 {
    StepError::Os {
        what: "check",
        source: io::Error::other("check"),
    }
    .exit_status()
}

// ---- clavrxorb and its tracer symbols ----

/// Finds clavrxorb as the step would (a path, or a name on PATH).
fn exe_finding(exe: &Path) -> (Finding, Option<PathBuf>) {
    match crate::domain::step::exe::find(exe) {
        Ok(path) => (
            Finding::ok(format!("clavrxorb: {}", path.display())),
            Some(path),
        ),
        Err(e) => {
            let text = format!("clavrxorb: {e}");
            let status = StepError::from(e).exit_status();
            (Finding::fail(status, text), None)
        }
    }
}

fn tracer_finding(exe: &Path) -> Finding {
    match TracerSymbols::read(exe) {
        Ok(symbols) => Finding::ok(format!(
            "tracer symbols: all present in {} ({})",
            exe.display(),
            if symbols.pie {
                "PIE: relocated by its load address at run time"
            } else {
                "static, non-PIE, like real clavrxorb"
            }
        )),
        Err(e) => {
            let err = StepError::from(e);
            Finding::fail(
                err.exit_status(),
                format!("tracer symbols: {err}; `pseg-step --serial` still runs it, one core"),
            )
        }
    }
}

// ---- ptrace policy ----

/// The Yama LSM's `kernel.yama.ptrace_scope`, which decides whose memory a process may open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PtraceScope {
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

/// What the policy lets pseg-step do, and what to do when it does not.
fn ptrace_finding(scope: &PtraceScope, cap_sys_ptrace: bool) -> Finding {
    let what = "ptrace policy";
    match scope {
        PtraceScope::NoProc => Finding::fail(
            os_status(),
            format!(
                "{what}: /proc is not mounted here, and the fan-out works through it; mount it \
                 (in a chroot: mount -t proc proc ROOT/proc; apptainer and docker do it \
                 themselves)"
            ),
        ),
        PtraceScope::NoYama => Finding::ok(format!(
            "{what}: no Yama LSM (no /proc/sys/kernel/yama/ptrace_scope): the classic rule \
             applies, a process may open the memory of its own user's processes"
        )),
        PtraceScope::Classic => Finding::ok(format!(
            "{what}: kernel.yama.ptrace_scope = 0 (classic): a process may open the memory \
             of its own user's processes"
        )),
        PtraceScope::Restricted => Finding::ok(format!(
            "{what}: kernel.yama.ptrace_scope = 1 (restricted): only a process's descendants; \
             enough, clavrxorb and its clones are pseg-step's children"
        )),
        PtraceScope::AdminOnly if cap_sys_ptrace => Finding::ok(format!(
            "{what}: kernel.yama.ptrace_scope = 2 (admin only), and this process has \
             CAP_SYS_PTRACE"
        )),
        PtraceScope::AdminOnly => Finding::fail(
            os_status(),
            format!(
                "{what}: kernel.yama.ptrace_scope = 2 (admin only) and this process lacks \
                 CAP_SYS_PTRACE: ask the admins for `sysctl kernel.yama.ptrace_scope=1` \
                 (descendants only, enough for pseg-step), or grant the capability \
                 (docker run --cap-add SYS_PTRACE); meanwhile run with --serial"
            ),
        ),
        PtraceScope::NoAttach => Finding::fail(
            os_status(),
            format!(
                "{what}: kernel.yama.ptrace_scope = 3 (no attach): no process may open \
                 another's memory, and only a reboot lowers it; the admins must set \
                 kernel.yama.ptrace_scope = 1 in /etc/sysctl.d/ and reboot; meanwhile run \
                 with --serial"
            ),
        ),
        PtraceScope::Unknown(v) => Finding::ok(format!(
            "{what}: kernel.yama.ptrace_scope = {v:?} is not a value this version knows; the \
             memory probe below decides"
        )),
    }
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

fn read_ptrace_scope(proc_root: &Path) -> PtraceScope {
    if !proc_root.join("self").exists() {
        return PtraceScope::NoProc;
    }
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/yama/ptrace_scope")).ok();
    parse_ptrace_scope(text.as_deref())
}

fn read_cap_sys_ptrace(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("self/status"))
        .is_ok_and(|status| parse_cap_sys_ptrace(&status))
}

// ---- the memory probe ----

/// What the probe did: which process, where it read and wrote.
#[derive(Debug)]
struct Probed {
    pid: i32,
    addr: u64,
}

/// Which step of the probe failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
struct ProbeError {
    what: String,
    source: io::Error,
}

fn probe_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProbeError {
    let what = what.into();
    move |source| ProbeError { what, source }
}

fn probe_finding(proc_root: &Path, scope: &PtraceScope) -> Finding {
    let what = "child memory";
    let probed = std::env::current_exe()
        .map_err(probe_error("finding our own executable to start a probe"))
        .and_then(|exe| {
            let mut program = Command::new(exe);
            program.env(WATCHDOG_ENV, "1");
            probe_child_memory(proc_root, program)
        });
    match probed {
        Ok(p) => Finding::ok(format!(
            "{what}: read and wrote back a byte of a stopped child of ours (pid {}) at {:#x} \
             through {}",
            p.pid,
            p.addr,
            proc_root.join(p.pid.to_string()).join("mem").display()
        )),
        Err(e) => Finding::fail(
            os_status(),
            format!("{what}: {e}; {}", probe_advice(&e, scope)),
        ),
    }
}

/// What to do about a failed probe, given the policy seen.
fn probe_advice(e: &ProbeError, scope: &PtraceScope) -> &'static str {
    match e.source.kind() {
        io::ErrorKind::NotFound => {
            "is /proc mounted? (inside a chroot: mount -t proc proc ROOT/proc)"
        }
        io::ErrorKind::PermissionDenied => match scope {
            PtraceScope::AdminOnly | PtraceScope::NoAttach | PtraceScope::NoProc => {
                "the ptrace policy above forbids it; see its line"
            }
            _ => {
                "a security module (SELinux, AppArmor, a seccomp profile) or a \
                 proc_mem.force_override setting forbids it; ask the admins to allow a process \
                 to open its own child's /proc/PID/mem; meanwhile run with --serial"
            }
        },
        _ => "the fan-out needs the same operations; meanwhile run with --serial",
    }
}

/// Starts `program` as a child of ours, stops it, opens its memory read+write, reads one
/// byte of a writable mapping and writes it back, then kills and reaps it.
fn probe_child_memory(proc_root: &Path, mut program: Command) -> Result<Probed, ProbeError> {
    // The child's stdin is a pipe we hold open, so a watchdog copy of ourselves waits on it.
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| probe_error("creating a pipe")(e.into()))?;
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
    let mem_path = dir.join("mem");
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mem_path)
        .map_err(probe_error(format!(
            "opening {} for reading and writing",
            mem_path.display()
        )))?;
    let mut byte = [0u8; 1];
    mem.read_exact_at(&mut byte, addr)
        .map_err(probe_error(format!(
            "reading {} at {addr:#x}",
            mem_path.display()
        )))?;
    mem.write_all_at(&byte, addr).map_err(probe_error(format!(
        "writing {} at {addr:#x}",
        mem_path.display()
    )))?;
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

// ---- cgroup and memory limit ----

fn memory_finding(found: Result<Option<MemoryCgroup>, CgroupError>) -> Finding {
    let what = "memory";
    let blind = "the fan-out runs, but cannot see the job's memory limit";
    let cgroup = match found {
        Ok(Some(cgroup)) => cgroup,
        Ok(None) => {
            return Finding::ok(format!(
                "{what}: no memory cgroup controller is mounted here; {blind}"
            ));
        }
        Err(e) => return Finding::ok(format!("{what}: cannot tell the cgroup ({e}); {blind}")),
    };
    let version = match cgroup.version {
        Version::V1 => "v1",
        Version::V2 => "v2",
    };
    let limit = match cgroup.limit() {
        Ok(Some(Limit { bytes, at })) => {
            format!("memory limit {} (set at {})", gib(bytes), at.display())
        }
        Ok(None) => "no memory limit".to_string(),
        Err(e) => format!("memory limit unreadable ({e})"),
    };
    Finding::ok(format!(
        "{what}: cgroup {version} at {}, {limit}",
        cgroup.dir.display()
    ))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
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
    fn scopes_0_and_1_suffice_2_needs_the_capability_3_never() {
        for scope in [
            PtraceScope::NoYama,
            PtraceScope::Classic,
            PtraceScope::Restricted,
        ] {
            assert_eq!(ptrace_finding(&scope, false).status, 0, "{scope:?}");
        }
        assert_eq!(ptrace_finding(&PtraceScope::AdminOnly, true).status, 0);
        let f = ptrace_finding(&PtraceScope::AdminOnly, false);
        assert_eq!(f.status, 11);
        assert!(f.to_string().starts_with("FAIL: ptrace policy"), "{f}");
        assert!(f.text.contains("kernel.yama.ptrace_scope=1"), "{f}");
        let f = ptrace_finding(&PtraceScope::NoAttach, true);
        assert_eq!(f.status, 11);
        assert!(
            f.text.contains("reboot") && f.text.contains("--serial"),
            "{f}"
        );
        assert!(
            ptrace_finding(&PtraceScope::Restricted, false)
                .to_string()
                .starts_with("ok: ptrace policy: kernel.yama.ptrace_scope = 1")
        );
    }

    #[test]
    fn a_missing_proc_is_named_not_taken_for_no_yama() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_ptrace_scope(empty.path()), PtraceScope::NoProc);
        let f = ptrace_finding(&PtraceScope::NoProc, true);
        assert_eq!(f.status, 11);
        assert!(f.text.contains("mount -t proc"), "{f}");
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
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().starts_with("starting a probe process: "),
            "{err}"
        );
    }

    #[test]
    fn memory_names_version_and_the_tightest_limit() {
        let t = tempfile::tempdir().unwrap();
        let mount = t.path().join("sys/fs/cgroup");
        let job = mount.join("slurm/job_7");
        let step = job.join("step_0");
        std::fs::create_dir_all(&step).unwrap();
        std::fs::write(mount.join("slurm/memory.max"), "max\n").unwrap();
        std::fs::write(job.join("memory.max"), "2147483648\n").unwrap();
        std::fs::write(step.join("memory.max"), "max\n").unwrap();
        let cgroup = MemoryCgroup::at(Version::V2, step.clone(), mount);
        let f = memory_finding(Ok(Some(cgroup)));
        assert_eq!(f.status, 0);
        assert_eq!(
            f.to_string(),
            format!(
                "ok: memory: cgroup v2 at {}, memory limit 2.0 GiB (set at {})",
                step.display(),
                job.display()
            )
        );
    }

    #[test]
    fn no_cgroup_is_said_but_not_a_failure() {
        let f = memory_finding(Ok(None));
        assert_eq!(f.status, 0);
        assert!(f.text.contains("no memory cgroup controller"), "{f}");
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
