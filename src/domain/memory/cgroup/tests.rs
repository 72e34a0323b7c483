//! Tests of `cgroup`: parsers on strings, readers on fixture trees, and live tests that make a
//! v1 memory cgroup of their own (skipped loudly where that is not possible; a failure
//! under `CI=true`, see `base::ci_skip`).

use super::*;
use crate::base::ci_skip;
use crate::domain::memory::fixture;

const MIB: u64 = 1 << 20;

fn discover_fixture(tree: &str) -> MemoryCgroup {
    MemoryCgroup::discover(&fixture(tree), "self")
        .unwrap()
        .expect("a memory cgroup")
}

#[test]
fn parsers_of_control_files() {
    assert_eq!(parse_bytes("2147483648\n"), Ok(2147483648));
    assert!(parse_bytes("max\n").is_err());
    assert_eq!(parse_limit(Version::V1, "9223372036854771712\n"), Ok(None));
    assert_eq!(parse_limit(Version::V1, "4611686018427387904\n"), Ok(None));
    assert_eq!(
        parse_limit(Version::V1, "2147483648\n"),
        Ok(Some(2147483648))
    );
    assert_eq!(parse_limit(Version::V2, "max\n"), Ok(None));
    assert_eq!(parse_limit(Version::V2, "1073741824\n"), Ok(Some(1 << 30)));
    assert_eq!(
        parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        Ok(Some(3))
    );
    assert_eq!(
        parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"),
        Ok(None)
    );
    assert!(parse_oom_kill("oom_kill lots\n").is_err());
    let stat = "cache 10\ninactive_file 7\ntotal_inactive_file 9\n";
    assert_eq!(parse_key(stat, "total_inactive_file"), Ok(Some(9)));
    assert_eq!(parse_key(stat, "inactive_file"), Ok(Some(7)));
    assert_eq!(parse_key(stat, "active_file"), Ok(None));
    assert!(lists_memory("cpuset cpu io memory pids\n"));
    assert!(!lists_memory("hugetlb\n"));
}

#[test]
fn v1_hybrid_slurm_step() {
    let root = fixture("v1-hybrid-slurm");
    let mount = root.join("sys/fs/cgroup/memory");
    let job = mount.join("slurm_localhost/uid_0/job_5");
    let task = job.join("step_0/task_0");
    let cg = discover_fixture("v1-hybrid-slurm");
    assert_eq!(
        cg,
        MemoryCgroup::at(Version::V1, task.clone(), mount.clone())
    );
    assert_eq!(cg.usage().unwrap(), 1246396416);
    assert_eq!(cg.peak().unwrap(), Some(1497714688));
    // Job and step both set 2 GiB: the nearest (the step) is named.
    assert_eq!(
        cg.limit().unwrap(),
        Some(Limit {
            bytes: 2 << 30,
            at: job.join("step_0"),
        })
    );
    assert_eq!(cg.oom_kills().unwrap(), Some(1));
    let at_job = MemoryCgroup::at(Version::V1, job.clone(), mount);
    assert_eq!(at_job.peak().unwrap(), Some(1503238553));
    assert_eq!(at_job.oom_kills().unwrap(), Some(0));
    assert_eq!(at_job.limit().unwrap().unwrap().at, job);
    // 400 MiB of the job's usage is inactive file cache: not working set.
    assert_eq!(at_job.working_set().unwrap(), 1249902592 - 400 * MIB);
    // No memory.stat (the task level here): the working set is the usage.
    assert_eq!(cg.working_set().unwrap(), cg.usage().unwrap());
}

#[test]
fn v1_in_a_container_whose_mount_is_the_job_cgroup() {
    let mount = fixture("v1-container/sys/fs/cgroup/memory");
    let cg = discover_fixture("v1-container");
    assert_eq!(
        cg,
        MemoryCgroup::at(Version::V1, mount.join("step_0/task_0"), mount.clone())
    );
    assert_eq!(cg.peak().unwrap(), Some(3217031168));
    // Step and job (the mount) both set 4 GiB; the walk reaches the mount and stops.
    assert_eq!(cg.limit().unwrap().unwrap().at, mount.join("step_0"));
    let at_mount = MemoryCgroup::at(Version::V1, mount.clone(), mount.clone());
    assert_eq!(
        at_mount.limit().unwrap(),
        Some(Limit {
            bytes: 4 << 30,
            at: mount,
        })
    );
}

#[test]
fn v2_slurm_step() {
    let root = fixture("v2");
    let mount = root.join("sys/fs/cgroup");
    let job = mount.join("system.slice/slurmstepd.scope/job_7");
    let cg = discover_fixture("v2");
    assert_eq!(
        cg,
        MemoryCgroup::at(Version::V2, job.join("step_0/user/task_0"), mount)
    );
    assert_eq!(cg.usage().unwrap(), 1246396416);
    assert_eq!(cg.peak().unwrap(), Some(2145124352));
    assert_eq!(
        cg.limit().unwrap(),
        Some(Limit {
            bytes: 2 << 30,
            at: job.clone(),
        })
    );
    assert_eq!(cg.oom_kills().unwrap(), Some(1));
    let at_job = MemoryCgroup::at(Version::V2, job.clone(), root.join("sys/fs/cgroup"));
    assert_eq!(at_job.working_set().unwrap(), 1249902592 - 300 * MIB);
}

#[test]
fn v2_without_memory_peak_reports_none() {
    let cg = discover_fixture("v2-no-peak");
    assert_eq!(cg.version, Version::V2);
    assert_eq!(cg.peak().unwrap(), None);
    assert_eq!(cg.usage().unwrap(), 524288000);
    assert_eq!(cg.limit().unwrap().unwrap().bytes, 1 << 30);
    assert_eq!(cg.oom_kills().unwrap(), Some(0));
}

#[test]
fn v2_without_the_memory_controller_is_none() {
    assert_eq!(
        MemoryCgroup::discover(&fixture("v2-memory-disabled"), "self").unwrap(),
        None
    );
}

#[test]
fn the_tightest_limit_wins_over_a_nearer_looser_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().to_path_buf();
    let step = mount.join("job/step");
    std::fs::create_dir_all(&step).unwrap();
    let write =
        |dir: &Path, name: &str, value: &str| std::fs::write(dir.join(name), value).unwrap();
    write(&mount, "memory.limit_in_bytes", "9223372036854771712\n");
    write(&mount.join("job"), "memory.limit_in_bytes", "1073741824\n");
    write(&step, "memory.limit_in_bytes", "2147483648\n");
    let cg = MemoryCgroup::at(Version::V1, step.clone(), mount.clone());
    assert_eq!(
        cg.limit().unwrap(),
        Some(Limit {
            bytes: 1 << 30,
            at: mount.join("job"),
        })
    );
    // Without hierarchical accounting the job's limit does not reach the step.
    write(&step, "memory.use_hierarchy", "0\n");
    assert_eq!(cg.limit().unwrap().unwrap().at, step);
}

#[test]
fn errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let e = MemoryCgroup::discover(tmp.path(), "self").unwrap_err();
    assert!(
        e.to_string()
            .contains(&tmp.path().join("proc/self/cgroup").display().to_string()),
        "{e}"
    );
    let gone = MemoryCgroup::at(Version::V2, tmp.path().join("gone"), tmp.path().into());
    let e = gone.usage().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("gone/memory.current"), "{e}");
    // A vanished cgroup is an error for the limit too, not "unlimited".
    assert!(gone.limit().is_err());
}

#[test]
fn a_cgroup_outside_the_mount_is_an_error_that_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_dir = tmp.path().join("proc/self");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("cgroup"), "4:memory:/slurm/job_10/step_0\n").unwrap();
    std::fs::write(
        proc_dir.join("mountinfo"),
        "35 31 0:32 /slurm/job_9 /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n",
    )
    .unwrap();
    let e = MemoryCgroup::discover(tmp.path(), "self").unwrap_err();
    assert!(matches!(e, CgroupError::Outside { .. }), "{e}");
    assert!(e.to_string().contains("/slurm/job_10/step_0"), "{e}");
}

// ---- live: this machine ----

const V1_MOUNT: &str = "/sys/fs/cgroup/memory";
/// dd reads /dev/zero into one 64 MiB buffer: every page of it is touched.
const TOUCH_64_MIB: &str = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null";

#[test]
fn live_discover_self() {
    let Some(cg) = MemoryCgroup::discover(Path::new("/"), "self").unwrap() else {
        ci_skip::skip("live_discover_self", "needs a memory cgroup controller");
        return;
    };
    match cg.version {
        Version::V1 => assert!(cg.dir.starts_with(V1_MOUNT), "{cg:?}"),
        Version::V2 => assert!(cg.dir.starts_with("/sys/fs/cgroup"), "{cg:?}"),
    }
    // The root cgroup of v2 has no memory.current; every other one reads.
    if cg.dir != cg.mount() || cg.version == Version::V1 {
        assert!(cg.usage().unwrap() > 0);
    }
}

/// A v1 memory cgroup `NAME` at the top of the hierarchy with a child `task_0`, removed (with
/// retries: exiting processes linger briefly) when dropped.
struct TestCgroup {
    top: PathBuf,
}

impl TestCgroup {
    /// None, after saying why (`ci_skip`: a failure under CI), when this machine cannot
    /// host the test `test`.
    fn create(test: &str, name: &str, limit: u64) -> Option<TestCgroup> {
        match MemoryCgroup::discover(Path::new("/"), "self") {
            Ok(Some(cg)) if cg.version == Version::V1 && cg.mount() == Path::new(V1_MOUNT) => {}
            other => {
                let needs =
                    format!("needs the cgroup v1 memory controller at {V1_MOUNT} ({other:?})");
                ci_skip::skip(test, &needs);
                return None;
            }
        }
        let top = Path::new(V1_MOUNT).join(format!("{name}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&top) {
            let needs = format!("needs root, to create {} ({e})", top.display());
            ci_skip::skip(test, &needs);
            return None;
        }
        let made = TestCgroup { top };
        std::fs::write(made.top.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        std::fs::create_dir(made.task()).unwrap();
        Some(made)
    }

    fn task(&self) -> PathBuf {
        self.top.join("task_0")
    }

    /// `sh` moves itself into task_0, then runs `script`.
    fn spawn(&self, script: &str) -> Running {
        let script = format!("echo $$ > \"$CG/cgroup.procs\" && {script}");
        let child = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("CG", self.task())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Running(child)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in [self.task(), self.top.clone()] {
            for _ in 0..40 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    _ => break,
                }
            }
        }
        if self.top.exists() {
            eprintln!(
                "WARNING: could not remove test cgroup {}",
                self.top.display()
            );
        }
    }
}

/// A child killed and reaped when dropped (before its cgroup is removed).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_v1_cgroup_sees_64_mib_and_the_parent_limit() {
    let Some(cg) = TestCgroup::create(
        "live_v1_cgroup_sees_64_mib_and_the_parent_limit",
        "pseg-memtest",
        512 * MIB,
    ) else {
        return;
    };
    let mut running = cg.spawn(&format!("{TOUCH_64_MIB} && echo touched && exec sleep 60"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(running.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "touched\n");

    let mount = PathBuf::from(V1_MOUNT);
    let task = MemoryCgroup::at(Version::V1, cg.task(), mount.clone());
    let found = MemoryCgroup::discover(Path::new("/"), &running.0.id().to_string())
        .unwrap()
        .unwrap();
    assert_eq!(found, task);

    let peak = task.peak().unwrap().unwrap();
    assert!((64 * MIB..128 * MIB).contains(&peak), "peak {peak}");
    assert!(task.usage().unwrap() <= peak);
    let limit = Some(Limit {
        bytes: 512 * MIB,
        at: cg.top.clone(),
    });
    assert_eq!(task.limit().unwrap(), limit);
    let top = MemoryCgroup::at(Version::V1, cg.top.clone(), mount);
    assert_eq!(top.limit().unwrap(), limit);
    assert!(top.peak().unwrap().unwrap() >= peak);
    assert_eq!(task.oom_kills().unwrap(), Some(0));
}

#[test]
fn live_v1_oom_kill_is_counted_in_the_victims_own_cgroup() {
    let Some(cg) = TestCgroup::create(
        "live_v1_oom_kill_is_counted_in_the_victims_own_cgroup",
        "pseg-memtest-oom",
        32 * MIB,
    ) else {
        return;
    };
    let mut running = cg.spawn(&format!("exec {TOUCH_64_MIB}"));
    let status = running.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "dd should be OOM-killed: {status:?}"
    );
    let mount = PathBuf::from(V1_MOUNT);
    let task = MemoryCgroup::at(Version::V1, cg.task(), mount.clone());
    let top = MemoryCgroup::at(Version::V1, cg.top.clone(), mount);
    assert_eq!(task.oom_kills().unwrap(), Some(1));
    // The limit that was hit is the parent's, yet v1 counts the kill only where the victim was.
    assert_eq!(top.oom_kills().unwrap(), Some(0));
    let peak = top.peak().unwrap().unwrap();
    assert!(peak <= 33 * MIB, "peak {peak} above the 32 MiB limit");
}
