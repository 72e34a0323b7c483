//! `pseg-step --check`: can this machine (or container) run the fan-out?
//!
//! Owns the checks' wording and the exit status: one line per check on stdout, `ok:` or
//! `FAIL:` with what to do, then a closing line on stderr. The status is that of the first
//! failing check, from the step's own mapping (see `cmd::step`): 3 clavrxorb not found, 4 no
//! tracer symbols, 11 the operating system refuses what the fan-out needs. What is checked
//! (clavrxorb, its tracer symbols, the ptrace policy, a probe of a child's memory, the memory
//! cgroup) is found by `domain::step::preflight`, as typed results; nothing here touches a
//! process or `/proc` itself.

use std::fmt;
use std::io;
use std::path::Path;

use super::step::{EXE_NOT_FOUND, NO_TRACER, OS_REFUSED};
use crate::domain::memory::{CgroupError, Limit, MemoryCgroup, Version};
use crate::domain::step::exe::ExeError;
use crate::domain::step::preflight::{self, Preflight, ProbeError, Probed, PtraceScope};
use crate::domain::tracer::{ElfError, TracerSymbols};

/// Runs the checks, prints one line each, returns the exit status (0 when all pass).
pub fn run(exe: &Path) -> u8 {
    let proc_root = Path::new("/proc");
    let Preflight {
        exe: found,
        symbols,
        scope,
        cap_sys_ptrace,
        probe,
        memory,
    } = preflight::run(exe, proc_root);
    let findings = [
        exe_finding(&found),
        match (&found, symbols) {
            (Ok(path), Some(symbols)) => tracer_finding(path, symbols),
            _ => Finding::fail(
                EXE_NOT_FOUND,
                "tracer symbols: not checked, there is no clavrxorb to read".to_string(),
            ),
        },
        ptrace_finding(&scope, cap_sys_ptrace),
        probe_finding(proc_root, probe, &scope),
        memory_finding(memory),
    ];

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

// ---- clavrxorb and its tracer symbols ----

fn exe_finding(found: &Result<std::path::PathBuf, ExeError>) -> Finding {
    match found {
        Ok(path) => Finding::ok(format!("clavrxorb: {}", path.display())),
        Err(e) => Finding::fail(EXE_NOT_FOUND, format!("clavrxorb: {e}")),
    }
}

fn tracer_finding(exe: &Path, symbols: Result<TracerSymbols, ElfError>) -> Finding {
    match symbols {
        Ok(symbols) => Finding::ok(format!(
            "tracer symbols: all present in {} ({})",
            exe.display(),
            if symbols.pie {
                "PIE: relocated by its load address at run time"
            } else {
                "static, non-PIE, like real clavrxorb"
            }
        )),
        Err(e) => Finding::fail(
            NO_TRACER,
            format!("tracer symbols: {e}; `pseg-step --serial` still runs it, one core"),
        ),
    }
}

// ---- ptrace policy ----

/// What the policy lets pseg-step do, and what to do when it does not.
fn ptrace_finding(scope: &PtraceScope, cap_sys_ptrace: bool) -> Finding {
    let what = "ptrace policy";
    match scope {
        PtraceScope::NoProc => Finding::fail(
            OS_REFUSED,
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
            OS_REFUSED,
            format!(
                "{what}: kernel.yama.ptrace_scope = 2 (admin only) and this process lacks \
                 CAP_SYS_PTRACE: ask the admins for `sysctl kernel.yama.ptrace_scope=1` \
                 (descendants only, enough for pseg-step), or grant the capability \
                 (docker run --cap-add SYS_PTRACE); meanwhile run with --serial"
            ),
        ),
        PtraceScope::NoAttach => Finding::fail(
            OS_REFUSED,
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

// ---- the memory probe ----

fn probe_finding(
    proc_root: &Path,
    probed: Result<Probed, ProbeError>,
    scope: &PtraceScope,
) -> Finding {
    let what = "child memory";
    match probed {
        Ok(p) => Finding::ok(format!(
            "{what}: read and wrote back a byte of a stopped child of ours (pid {}) at {:#x} \
             through {}",
            p.pid,
            p.addr,
            proc_root.join(p.pid.to_string()).join("mem").display()
        )),
        Err(e) => Finding::fail(
            OS_REFUSED,
            format!("{what}: {e}; {}", probe_advice(&e, scope)),
        ),
    }
}

/// What to do about a failed probe, given the policy seen.
fn probe_advice(e: &ProbeError, scope: &PtraceScope) -> &'static str {
    match e.kind() {
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
        let f = ptrace_finding(&preflight::read_ptrace_scope(empty.path()), true);
        assert_eq!(f.status, 11);
        assert!(f.text.contains("mount -t proc"), "{f}");
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
}
