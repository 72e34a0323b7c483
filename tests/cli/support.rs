//! Test harness: builds the mock clavrxorb (PIE and static) and the ledger claimer fixture,
//! gives each test its own directory with builders for the commands it runs, checks that no
//! mock process of a test outlives it, and holds `require`, the one way a test skips for
//! want of root, cgroups, Slurm or a tool (a failure under `CI=true`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use tempfile::TempDir;

/// How the mock is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Position independent, dynamically linked: relocated through /proc/PID/maps.
    Pie,
    /// Static, non-PIE, like real clavrxorb: symbol values are runtime addresses.
    Static,
}

fn build_mock(link: Link) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join(match link {
        Link::Pie => "mock-pie",
        Link::Static => "mock-static",
    });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "mock-clavrxorb",
        "--manifest-path",
    ])
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target)
    .env_remove("CARGO_ENCODED_RUSTFLAGS");
    match link {
        Link::Pie => cmd.env("RUSTFLAGS", "-C relocation-model=pie"),
        Link::Static => cmd.env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        ),
    };
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building the mock ({link:?}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("release/mock-clavrxorb")
}

/// The mock clavrxorb, built once per test run.
pub fn mock(link: Link) -> &'static Path {
    static PIE: OnceLock<PathBuf> = OnceLock::new();
    static STATIC: OnceLock<PathBuf> = OnceLock::new();
    match link {
        Link::Pie => PIE.get_or_init(|| build_mock(Link::Pie)),
        Link::Static => STATIC.get_or_init(|| build_mock(Link::Static)),
    }
}

/// The ledger claimer fixture (tests/ledger-claimer), built once per test run. In a target
/// folder of its own, as the mock: the `cargo test` running us holds the lock of ours.
pub fn ledger_claimer() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--locked",
                "-p",
                "ledger-claimer",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the ledger claimer failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug/ledger-claimer")
    })
}

/// One test's world: granules, a list, an options file, output directories.
pub struct Case {
    pub dir: TempDir,
    pub link: Link,
}

impl Case {
    pub fn new(link: Link) -> Case {
        Case {
            dir: tempfile::tempdir().expect("tempdir"),
            link,
        }
    }

    /// A campaign of fakes, for the commands that only read its inputs (`gen`, `status`,
    /// `retry`): an empty `data/NAME` for each of `names`, listed in `data/list.txt`, an
    /// options file, and `bin/pseg-step` and `clavrx/clavrxorb` scripts that exit 0.
    pub fn fake_campaign<S: AsRef<str>>(names: &[S]) -> Case {
        let case = Case::new(Link::Pie);
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let data = case.path("data");
        std::fs::create_dir_all(&data).unwrap();
        for name in &names {
            std::fs::write(data.join(name), "").unwrap();
        }
        case.list(&names);
        case.write(FAKE_OPTIONS, "scan_lines 64\n");
        case.executable("bin/pseg-step", "exit 0");
        case.executable("clavrx/clavrxorb", "exit 0");
        case
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The TMPDIR `pseg-step` runs with.
    pub fn scratch(&self) -> PathBuf {
        let p = self.path("tmp");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn mock(&self) -> &'static Path {
        mock(self.link)
    }

    /// Generates `data/NAME` with the mock: `args` are extra `generate` flags.
    pub fn granule(&self, name: &str, lines: u32, args: &[&str]) -> PathBuf {
        let path = self.path("data").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let out = Command::new(self.mock())
            .arg("generate")
            .arg("--lines")
            .arg(lines.to_string())
            .arg("--seed")
            .arg((name.len() as u32 * 31 + lines).to_string())
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Writes `data/list.txt` naming `names` (relative to the list's folder).
    pub fn list(&self, names: &[&str]) -> PathBuf {
        let path = self.path("data/list.txt");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = String::from("# granules for this test\n\n");
        for n in names {
            text.push_str(n);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes an options file with the keyed `scan_lines`.
    pub fn options(&self, scan_lines: u32) -> PathBuf {
        let path = self.path("clavrx_options");
        std::fs::write(
            &path,
            format!("! mock options\nscan_lines = {scan_lines} ! segment size\n"),
        )
        .unwrap();
        path
    }

    /// `pseg-step` over the list into `out`, with the mock as clavrxorb.
    pub fn step(&self, out: &str) -> Command {
        let mut cmd = Command::new(cargo_bin!("pseg-step"));
        cmd.arg("--files")
            .arg(self.path("data/list.txt"))
            .arg("--exe")
            .arg(self.mock())
            .arg("--options")
            .arg(self.path("clavrx_options"))
            .arg("--out")
            .arg(self.path(out))
            .current_dir(self.dir.path())
            // pseg-step's scratch (and so clavrxorb's working directory) inside the test's
            // own directory, where `processes_left` looks.
            .env("TMPDIR", self.scratch())
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_PROCID")
            .env_remove("SLURM_NTASKS")
            .env_remove("SLURM_CPUS_PER_TASK");
        cmd
    }

    /// Two granules of 6 segments, listed, with options; the serial reference in `serial`.
    pub fn two_granules(&self) {
        self.granule("first.gran", 57, &[]);
        self.granule("second.gran", 60, &[]);
        self.list(&["first.gran", "second.gran"]);
        self.options(10);
        let out = self.step("serial").arg("--serial").output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    /// Starts `step` under nohup (SIGHUP to an orphaned group then ends nothing, as on a
    /// login node), from the test's directory, its output dropped.
    pub fn start_nohup(&self, step: &Command) -> std::process::Child {
        wrapped(step, "nohup")
            .arg(step.get_program())
            .args(step.get_args())
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A CLAVR-x run folder `run/` over granules already in `data/`: `file_list` (line 1 the
    /// granules' folder, line 2 `out/`, relative to the run folder as clavrxorb reads it, then
    /// `names`), a copy of the test's `clavrx_options`, and `bin/clavrxorb` (the mock) to put
    /// on PATH.
    pub fn clavrx_run_folder(&self, names: &[&str]) -> PathBuf {
        let run = self.path("run");
        std::fs::create_dir_all(&run).unwrap();
        let mut file_list = format!("{}/\nout/\n", self.path("data").display());
        for n in names {
            file_list.push_str(n);
            file_list.push('\n');
        }
        std::fs::write(run.join("file_list"), file_list).unwrap();
        std::fs::copy(self.path("clavrx_options"), run.join("clavrx_options")).unwrap();
        let bin = self.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(self.mock(), bin.join("clavrxorb")).unwrap();
        run
    }

    /// `pseg-slurm` run from the test's directory; the caller adds the arguments.
    pub fn pseg_slurm(&self) -> Command {
        let mut cmd = Command::new(cargo_bin!("pseg-slurm"));
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// `pseg-slurm ARGS` from the test's directory with PATH its `bin/` only and no
    /// `PSEG_SLURM_CONFIG`, so no scontrol, sbatch, clavrxorb or site config of the machine
    /// can leak in.
    pub fn pseg_slurm_sealed(&self, args: &[&str]) -> Output {
        self.pseg_slurm_sealed_cmd(args).output().unwrap()
    }

    /// The command [`Case::pseg_slurm_sealed`] runs, for a caller that changes its folder.
    pub fn pseg_slurm_sealed_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.pseg_slurm();
        cmd.args(args)
            .env("PATH", self.path("bin"))
            .env_remove("PSEG_SLURM_CONFIG");
        cmd
    }

    /// `pseg-slurm gen` over a [`Case::fake_campaign`]'s list and options into `out`, plus
    /// `extra`, sealed as [`Case::pseg_slurm_sealed`].
    pub fn gen_into(&self, out: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "gen",
            "--files",
            "data/list.txt",
            "--options",
            FAKE_OPTIONS,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        self.pseg_slurm_sealed(&args)
    }

    /// Writes `text` to `rel`, making its folders.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a `/bin/sh` script running `body` to `rel`, executable.
    pub fn executable(&self, rel: &str, body: &str) -> PathBuf {
        let path = self.write(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `pseg-slurm gen` over the list with `exe` as clavrxorb and the test's options file, run
    /// from the test's directory; the caller adds the rest.
    pub fn gen_cmd(&self, exe: &Path) -> Command {
        let mut cmd = self.pseg_slurm();
        cmd.arg("gen")
            .arg("--files")
            .arg(self.path("data/list.txt"))
            .arg("--exe")
            .arg(exe)
            .arg("--options")
            .arg(self.path("clavrx_options"));
        cmd
    }

    /// Every regular file directly in `out`, by name.
    pub fn outputs(&self, out: &str) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.path(out))
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                e.file_type().unwrap().is_file().then(|| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
            })
            .collect()
    }

    /// Pids of live processes whose working directory is inside this test's directory.
    pub fn processes_left(&self) -> Vec<(i32, String)> {
        let root = std::fs::canonicalize(self.dir.path()).unwrap();
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
                continue;
            };
            if cwd.starts_with(&root) {
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                left.push((pid, stat));
            }
        }
        left
    }

    pub fn assert_no_process_left(&self) {
        let left = self.processes_left();
        assert!(
            left.is_empty(),
            "processes left behind:\n{}",
            describe(&left)
        );
    }

    /// Waits until no process runs in this test's directory any more, after `what` (a kill,
    /// say). The bound is for a hang, not a speed: a loaded machine may take seconds to
    /// end and reap a group. Returns how long it took, for the log.
    pub fn wait_no_process_left(&self, what: &str) -> Duration {
        let start = Instant::now();
        let mut said = false;
        loop {
            let left = self.processes_left();
            if !said && !left.is_empty() && start.elapsed() > Duration::from_secs(5) {
                said = true;
                eprintln!("still there 5 s after {what}:\n{}", describe(&left));
            }
            if left.is_empty() {
                let took = start.elapsed();
                eprintln!("nothing left {took:?} after {what}");
                return took;
            }
            assert!(
                start.elapsed() < HANG,
                "processes left behind {HANG:?} after {what}:\n{}",
                describe(&left)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where [`Case::fake_campaign`] puts its options file, relative to the test's directory.
pub const FAKE_OPTIONS: &str = "etc/clavrx_options";

/// How long a test waits for something that must happen before it calls it a hang: long,
/// since CI's two cores also build, debootstrap and run Slurm jobs meanwhile, and a disk
/// that busy can take seconds per fsync.
pub const HANG: Duration = Duration::from_secs(240);

/// Each process's `/proc/PID/stat` line and command line, for a failure message.
pub fn describe(left: &[(i32, String)]) -> String {
    left.iter()
        .map(|(pid, stat)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_else(|e| format!("({e})"));
            format!("  stat: {}\n  cmdline: {cmdline}\n", stat.trim_end())
        })
        .collect()
}

/// A command running `program` with `step`'s environment changes; the caller adds the
/// arguments (usually ending with `step`'s program and arguments).
pub fn wrapped(step: &Command, program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, v) in step.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// Output of a command as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cgroup v1 memory controller of a test's own, removed when dropped (once its processes
/// are gone). Needs root and cgroup v1 (as on the test bed).
pub struct TestCgroup {
    pub dir: PathBuf,
}

impl TestCgroup {
    /// `memory.max_usage_in_bytes`: the peak the kernel charged, the figure Slurm enforces.
    pub fn peak(&self) -> u64 {
        self.read("memory.max_usage_in_bytes")
            .trim()
            .parse()
            .unwrap()
    }

    /// Processes the OOM killer killed here (`oom_kill` of `memory.oom_control`).
    pub fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control")
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .expect("the kernel counts OOM kills (Linux 4.13+)")
            .trim()
            .parse()
            .unwrap()
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Case {
    /// A fresh memory cgroup for the run into `out`, limited to `limit` bytes if given.
    pub fn fresh_cgroup(&self, out: &str, limit: Option<u64>) -> TestCgroup {
        let dir = Path::new("/sys/fs/cgroup/memory").join(format!(
            "pseg-test-{}-{}-{out}",
            std::process::id(),
            self.dir.path().file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir(&dir).expect("root can create a memory cgroup (cgroup v1)");
        if let Some(bytes) = limit {
            std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).unwrap();
        }
        TestCgroup { dir }
    }

    /// Runs `step` (with `extra` arguments) inside `cg`.
    pub fn run_in_cgroup(
        &self,
        cg: &TestCgroup,
        step: &Command,
        extra: &[&str],
    ) -> std::process::Output {
        wrapped(step, "sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && shift && exec "$@""#)
            .arg(&cg.dir)
            .arg("--")
            .arg(step.get_program())
            .args(step.get_args())
            .args(extra)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs `pseg-step` into `out` inside a fresh cgroup v1 memory controller and returns
    /// the kernel's `max_usage_in_bytes` for the whole run: the figure Slurm enforces. Needs
    /// root and cgroup v1 (as on the test bed).
    pub fn run_in_fresh_cgroup(&self, out: &str, extra: &[&str]) -> u64 {
        let cg = self.fresh_cgroup(out, None);
        let run = self.run_in_cgroup(&cg, &self.step(out), extra);
        assert!(run.status.success(), "{}", text(&run.stderr));
        cg.peak()
    }

    /// The campaign in `out` as `pseg-slurm status --format yaml` tells it.
    pub fn status(&self, out: &str) -> serde_yaml::Value {
        let o = self
            .pseg_slurm()
            .args(["status", "--format", "yaml"])
            .arg(self.path(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_yaml::from_slice(&o.stdout).unwrap()
    }

    /// The granule report `pseg-step` wrote for `name` into `out`.
    pub fn report(&self, out: &str, name: &str) -> serde_yaml::Value {
        let path = self
            .path(out)
            .join("pseg-reports")
            .join(format!("{name}.pseg.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no report {}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap()
    }
}

/// Whether `test` may run: true when what it needs is `met`. Otherwise a loud skip naming
/// what is `missing` (and how to get it), and under `CI=true` a failure. Every skip of the
/// integration tests goes through here, to the one helper the unit tests use too.
pub fn require(test: &str, met: bool, missing: &str) -> bool {
    pseg_slurm::base::ci_skip::runs(test, met, missing)
}

/// True when this process may create memory cgroups (root, cgroup v1 memory mounted).
pub fn can_make_cgroups() -> bool {
    is_root() && Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `require`s root and cgroup v1.
pub fn needs_cgroups(test: &str) -> bool {
    require(
        test,
        can_make_cgroups(),
        "needs root and a cgroup v1 memory controller",
    )
}

/// `require`s root (to mount a filesystem).
pub fn needs_root(test: &str) -> bool {
    require(test, is_root(), "needs root")
}

/// True when a Slurm cluster answers; otherwise skips (or fails under CI).
pub fn slurm_available(test: &str) -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            let states = text(&o.stdout);
            o.status.success()
                && ["idle", "mixed", "allocated", "completing"]
                    .iter()
                    .any(|s| states.contains(s))
        });
    require(
        test,
        up,
        "no Slurm cluster answers `sinfo`; run `bash ci/test.sh` as root: it starts the \
         one-node test bed",
    )
}

/// Runs `CMD | sbatch --parsable` for `gen_cmd` (gen or retry, with its arguments, folder and
/// environment); the job id.
pub fn submit(gen_cmd: &Command) -> String {
    let mut cmd = wrapped(gen_cmd, "bash");
    cmd.arg("-c")
        .arg(r#"set -o pipefail; "$0" "$@" | sbatch --parsable"#)
        .arg(gen_cmd.get_program())
        .args(gen_cmd.get_args())
        .stdin(std::process::Stdio::null());
    if let Some(dir) = gen_cmd.get_current_dir() {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} | sbatch failed:\n{}",
        gen_cmd.get_program().to_string_lossy(),
        text(&out.stderr)
    );
    text(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}
