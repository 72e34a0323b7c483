//! The container recipes and `pseg-step --check`.
//!
//! The Dockerfile is built by `containers/build.sh` and run with Podman, offline: the base
//! image is imported from the Debian bookworm `ci/rootfs-test.sh` debootstraps (cached under
//! the target directory), pseg-step comes from the binaries under test and clavrxorb is the
//! static mock. The image is built once per test run and shared; Podman's configuration and
//! storage are the tests' own, under the target directory. No Apptainer runs here, so
//! `containers/pseg.def` is proved by building the root filesystem it describes: these tests
//! apply its `%files` and `%post` as written (and the Dockerfile's runtime stage, instruction
//! by instruction) to a copy of the same bookworm, and run `%test`, `%runscript` and
//! `%apprun` (and the Dockerfile's ENTRYPOINT as its non-root USER) in a chroot against the
//! static mock, comparing outputs with the same run outside.
//!
//! Those tests need root (debootstrap, mount, chroot, rootful Podman) and Podman and runc
//! (`ci/install-deps.sh`). Elsewhere they skip loudly; under CI (`CI=true`) a skip is a
//! failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use assert_cmd::cargo::cargo_bin;
use pseg_slurm::domain::ledger::{Ledger, Status};

use crate::support::{Case, Link, is_root, mock, require, text};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_repo(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// pseg-step --check

fn check(exe: &Path) -> Output {
    Command::new(cargo_bin!("pseg-step"))
        .arg("--check")
        .arg("--exe")
        .arg(exe)
        .output()
        .unwrap()
}

/// Every stdout line is one check, `ok:` or `FAIL:`; returns the lines.
fn check_lines(out: &Output) -> Vec<String> {
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 5, "five checks:\n{}", text(&out.stdout));
    for l in &lines {
        assert!(
            l.starts_with("ok: ") || l.starts_with("FAIL: "),
            "not a check line: {l}"
        );
    }
    lines
}

fn assert_check_passes(link: Link) {
    let out = check(mock(link));
    let lines = check_lines(&out);
    assert!(
        out.status.success(),
        "--check on the {link:?} mock failed ({:?}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let expect = [
        "ok: clavrxorb: ",
        "ok: tracer symbols: ",
        "ok: ptrace policy: ",
        "ok: child memory: read and wrote back a byte of a stopped child",
        "ok: memory: ",
    ];
    for (line, start) in lines.iter().zip(expect) {
        assert!(line.starts_with(start), "{line:?} should start {start:?}");
    }
    let kind = match link {
        Link::Static => "static, non-PIE",
        Link::Pie => "PIE",
    };
    assert!(lines[1].contains(kind), "{}", lines[1]);
}

#[test]
fn check_passes_on_the_static_mock() {
    assert_check_passes(Link::Static);
}

#[test]
fn check_passes_on_the_pie_mock() {
    assert_check_passes(Link::Pie);
}

#[test]
fn check_on_a_program_without_tracer_fails_with_status_4() {
    let out = check(Path::new("/bin/true"));
    let lines = check_lines(&out);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    assert!(
        lines[0].starts_with("ok: clavrxorb: /bin/true"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("FAIL: tracer symbols: ")
            && lines[1].contains("__tracer_MOD_wait_number")
            && lines[1].contains("--serial"),
        "{}",
        lines[1]
    );
    // The machine itself is fine: the other checks still pass.
    assert!(
        lines[2..].iter().all(|l| l.starts_with("ok: ")),
        "{lines:?}"
    );
}

#[test]
fn check_without_clavrxorb_fails_with_status_3() {
    let out = check(Path::new("no-such-clavrxorb-here"));
    let lines = check_lines(&out);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        lines[0].starts_with("FAIL: clavrxorb: clavrxorb executable no-such-clavrxorb-here is not on PATH (searched PATH=")
            && lines[0].contains("--exe"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("FAIL: tracer symbols: not checked"));
    assert!(text(&out.stderr).contains("exit status 3"));
}

// ---------------------------------------------------------------------------------------
// The recipes as text

/// An Apptainer definition file: header lines, then `%section [arg]` bodies in file order.
struct Def {
    header: Vec<String>,
    sections: Vec<(String, String)>,
}

impl Def {
    fn parse(text: &str) -> Def {
        let mut header = Vec::new();
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let is_section =
                line.starts_with('%') && line[1..].starts_with(|c: char| c.is_ascii_alphabetic());
            if is_section {
                let name = line[1..].split_whitespace().collect::<Vec<_>>().join(" ");
                sections.push((name, String::new()));
            } else if let Some((_, body)) = sections.last_mut() {
                body.push_str(line);
                body.push('\n');
            } else {
                header.push(line.to_string());
            }
        }
        Def { header, sections }
    }

    /// The body of `%name`; panics when missing or repeated.
    fn section(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .sections
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, b)| b.as_str())
            .collect();
        assert_eq!(found.len(), 1, "pseg.def must have one %{name}");
        found[0]
    }

    /// `Key: value` lines of the header (comments skipped).
    fn header_value(&self, key: &str) -> Option<&str> {
        self.header.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (!l.trim_start().starts_with('#') && k.trim() == key).then(|| v.trim())
        })
    }

    /// `%files` as (source, destination) pairs; a lone source is copied to the same path.
    fn files(&self) -> Vec<(String, String)> {
        self.section("files")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                match parts[..] {
                    [src] => (src.to_string(), src.to_string()),
                    [src, dest] => (src.to_string(), dest.to_string()),
                    _ => panic!("%files line {l:?}: want `source [destination]`"),
                }
            })
            .collect()
    }

    /// `%labels` as key -> value.
    fn labels(&self) -> BTreeMap<String, String> {
        self.section("labels")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                (k.to_string(), v.trim().to_string())
            })
            .collect()
    }
}

fn def() -> Def {
    Def::parse(&read_repo("containers/pseg.def"))
}

/// One Dockerfile instruction: keyword (upper case) and its argument text, continuations joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // comment lines inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (kw, rest) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    out
}

/// The instructions of the Dockerfile's last stage (after its last FROM), and that FROM.
fn dockerfile_runtime() -> (String, Vec<(String, String)>) {
    let all = dockerfile_instructions(&read_repo("containers/Dockerfile"));
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("a FROM");
    (all[last_from].1.clone(), all[last_from + 1..].to_vec())
}

/// `k=v k2="v 2"` pairs of a LABEL or ENV instruction.
fn key_values(args: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("key=value");
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').expect("closing quote");
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = after.trim_start();
    }
    out
}

#[test]
fn recipes_carry_the_version_of_cargo_toml() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        def().labels().get("Version").map(String::as_str),
        Some(version),
        "containers/pseg.def %labels Version must be Cargo.toml's version"
    );
    let (_, stage) = dockerfile_runtime();
    let labels: BTreeMap<String, String> = stage
        .iter()
        .filter(|(k, _)| k == "LABEL")
        .flat_map(|(_, a)| key_values(a))
        .collect();
    assert_eq!(
        labels
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some(version),
        "containers/Dockerfile's image version label must be Cargo.toml's version"
    );
}

#[test]
fn recipes_agree_on_base_entry_point_and_layout() {
    let d = def();
    assert_eq!(d.header_value("Bootstrap"), Some("docker"));
    assert_eq!(d.header_value("From"), Some("debian:12-slim"));
    assert!(
        d.section("runscript")
            .contains("/opt/pseg/bin/pseg-step \"$@\""),
        "%runscript must pass every argument on to pseg-step"
    );
    let dests: Vec<String> = d.files().into_iter().map(|(_, dest)| dest).collect();
    for bin in ["pseg-step", "pseg-slurm", "clavrxorb"] {
        assert!(dests.contains(&format!("/opt/pseg/bin/{bin}")), "{dests:?}");
    }
    let (from, stage) = dockerfile_runtime();
    assert_eq!(
        from, "debian:12-slim",
        "both images start from the same base"
    );
    let get = |kw: &str| -> Vec<&str> {
        stage
            .iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(get("ENTRYPOINT"), ["[\"/opt/pseg/bin/pseg-step\"]"]);
    let user = get("USER");
    assert!(
        matches!(user.last(), Some(u) if *u != "root" && *u != "0"),
        "the Docker image runs as a non-root user: {user:?}"
    );
    let ignore = read_repo("containers/Dockerfile.dockerignore");
    for needed in ["src", "Cargo.toml", "Cargo.lock", "templates", "tests"] {
        assert!(
            !ignore.lines().any(|l| l.trim() == needed),
            "the dockerignore must keep {needed}"
        );
    }
    for junk in [".git", "target"] {
        assert!(
            ignore.lines().any(|l| l.trim() == junk),
            "{junk} is ignored"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The recipes, applied to a debootstrapped root filesystem

/// True when this process is root; otherwise skips (or fails under CI).
fn root_available(test: &str) -> bool {
    require(
        test,
        is_root(),
        "needs root (debootstrap, mount, chroot); run `bash ci/test.sh` as root",
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The cached debootstrapped bookworm (built by ci/rootfs-test.sh on first use).
fn base_rootfs() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rootfs/bookworm-minbase");
    let out = run_ok(
        Command::new("bash")
            .arg(repo().join("ci/rootfs-test.sh"))
            .arg(&base),
        "ci/rootfs-test.sh",
    );
    eprint!("{}", text(&out.stdout));
    base
}

/// A writable copy of the base root filesystem, with every mount made in it undone on drop
/// (even when the test fails). The copy is removed only once every mount is gone.
struct Rootfs {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Rootfs {
    fn copy_of(base: &Path) -> Rootfs {
        let dir = tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(base.parent().unwrap())
            .unwrap();
        let root = dir.path().join("root");
        run_ok(
            Command::new("cp").arg("-a").arg(base).arg(&root),
            "copying the base rootfs",
        );
        // As `apptainer build` does for %post: the host's name resolution, for the mirror.
        std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        Rootfs {
            dir: Some(dir),
            root,
            mounts: Vec::new(),
        }
    }

    /// `path` (absolute, inside the container) on the host.
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn mount_proc(&mut self) {
        let target = self.at("/proc");
        run_ok(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&target),
            "mounting /proc in the rootfs",
        );
        self.mounts.push(target);
    }

    /// `/bin/sh -c SCRIPT sh ARGS...` inside, as `user` (uid:gid) when given, with a clean
    /// environment plus `env`.
    fn sh(
        &self,
        script: &str,
        args: &[&str],
        user: Option<&str>,
        env: &[(String, String)],
    ) -> Command {
        let mut cmd = Command::new("chroot");
        if let Some(user) = user {
            cmd.arg(format!("--userspec={user}"));
        }
        cmd.arg(&self.root)
            .args(["/bin/sh", "-c", script, "sh"])
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let mut all_gone = true;
        for m in self.mounts.iter().rev() {
            let ok = Command::new("umount")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(m)
                    .status()
                    .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("######## could not unmount {} ########", m.display());
                all_gone = false;
            }
        }
        if !all_gone && let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!(
                "######## kept {} (a mount is still in it) ########",
                kept.display()
            );
        }
    }
}

/// A build context like the repository's, with containers/stage/ made by the documented
/// command from the binaries under test and the static mock as clavrxorb.
fn staged_context(case: &Case) -> PathBuf {
    let context = case.path("context");
    let bins = cargo_bin!("pseg-step").parent().unwrap();
    assert!(bins.join("pseg-slurm").is_file(), "{}", bins.display());
    run_ok(
        Command::new("bash")
            .arg(repo().join("containers/stage.sh"))
            .arg(mock(Link::Static))
            .env("STAGE", context.join("containers/stage"))
            .env("PSEG_BIN_DIR", bins),
        "containers/stage.sh",
    );
    context
}

/// Granules, list and options at `data` inside the rootfs (a folder name with a space, to
/// catch a runscript that splits arguments), and the list's path inside.
fn data_inside(case: &Case, rootfs: &Rootfs) -> &'static str {
    const DATA: &str = "/srv/granule data";
    for (i, lines) in [23, 7, 40].iter().enumerate() {
        case.granule(&format!("g{i}.gran"), *lines, &[]);
    }
    case.list(&["g0.gran", "g1.gran", "g2.gran"]);
    case.options(5);
    let inside = rootfs.at(DATA);
    std::fs::create_dir_all(&inside).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(case.path("data/."))
            .arg(case.path("clavrx_options"))
            .arg(&inside),
        "copying the data into the rootfs",
    );
    DATA
}

/// pseg-step's arguments for a run over the granules in `data`, writing to `out`.
fn step_args(data: &str, out: &str) -> Vec<String> {
    vec![
        "--files".into(),
        format!("{data}/list.txt"),
        "--options".into(),
        format!("{data}/clavrx_options"),
        "--out".into(),
        out.into(),
        "--max-workers".into(),
        "3".into(),
    ]
}

/// The same run outside the rootfs, on the same granule files, with the host's pseg-step.
fn outputs_outside(case: &Case, rootfs: &Rootfs, data: &str) -> BTreeMap<String, Vec<u8>> {
    let out = case.path("out-host");
    run_ok(
        Command::new(cargo_bin!("pseg-step"))
            .args(step_args(
                &rootfs.at(data).to_string_lossy(),
                &out.to_string_lossy(),
            ))
            .arg("--exe")
            .arg(mock(Link::Static)),
        "pseg-step outside",
    );
    outputs(&out)
}

/// Every regular file directly in `dir`, by name.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn assert_same_outputs(inside: &BTreeMap<String, Vec<u8>>, outside: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        outside.len(),
        3,
        "three granules, three outputs: {:?}",
        outside.keys()
    );
    assert_eq!(
        inside.keys().collect::<Vec<_>>(),
        outside.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in outside {
        assert!(
            inside[name] == *bytes,
            "{name}: the container's output differs from the run outside"
        );
    }
}

/// `pseg-step --check` output: every line ok, the five checks there.
fn assert_check_output(out: &Output, what: &str) {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("ok: ")), "{stdout}");
    assert!(
        stdout.contains("ok: clavrxorb: /opt/pseg/bin/clavrxorb"),
        "{stdout}"
    );
}

#[test]
fn apptainer_recipe_builds_tests_and_runs_in_a_chroot() {
    if !root_available("apptainer_recipe_builds_tests_and_runs_in_a_chroot") {
        return;
    }
    let def = def();
    let case = Case::new(Link::Static);
    let context = staged_context(&case);
    let mut rootfs = Rootfs::copy_of(&base_rootfs());
    rootfs.mount_proc();

    // %files, then %post, as `apptainer build` does them.
    for (src, dest) in def.files() {
        let from = context.join(&src);
        assert!(from.exists(), "%files source {src} is not staged");
        let to = rootfs.at(&dest);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        run_ok(
            Command::new("cp").arg("-fLr").arg(&from).arg(&to),
            &format!("%files {src} {dest}"),
        );
    }
    let started = std::time::Instant::now();
    run_ok(&mut rootfs.sh(def.section("post"), &[], None, &[]), "%post");
    eprintln!("%post took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        rootfs.at("/usr/bin/nm").exists(),
        "%post installs binutils (nm)"
    );

    // %environment is sourced before %test, %runscript and %apprun.
    let env = def.section("environment");
    let with_env = |body: &str| format!("{env}\n{body}");

    let out = run_ok(
        &mut rootfs.sh(&with_env(def.section("test")), &[], None, &[]),
        "%test",
    );
    assert_check_output(&out, "%test");

    let data = data_inside(&case, &rootfs);
    let outside = outputs_outside(&case, &rootfs, data);
    let args = step_args(data, "/srv/out-apptainer");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(
        &mut rootfs.sh(&with_env(def.section("runscript")), &args, None, &[]),
        "%runscript",
    );
    assert_same_outputs(&outputs(&rootfs.at("/srv/out-apptainer")), &outside);

    let app = run_ok(
        &mut rootfs.sh(
            &with_env(def.section("apprun pseg-slurm")),
            &["--version"],
            None,
            &[],
        ),
        "%apprun pseg-slurm",
    );
    let host = run_ok(
        Command::new(cargo_bin!("pseg-slurm")).arg("--version"),
        "pseg-slurm --version",
    );
    assert_eq!(text(&app.stdout), text(&host.stdout));
}

#[test]
fn dockerfile_runtime_stage_runs_as_its_user_in_a_chroot() {
    if !root_available("dockerfile_runtime_stage_runs_as_its_user_in_a_chroot") {
        return;
    }
    let case = Case::new(Link::Static);
    let context = staged_context(&case);
    // The binaries stage (built in the Rust image or staged) puts them in /out; the binaries under test
    // stand in for its result.
    let build_out = case.path("build-out");
    std::fs::create_dir_all(&build_out).unwrap();
    for bin in ["pseg-step", "pseg-slurm"] {
        std::fs::copy(
            context.join("containers/stage/bin").join(bin),
            build_out.join(bin),
        )
        .unwrap();
    }
    let mut rootfs = Rootfs::copy_of(&base_rootfs());
    rootfs.mount_proc();

    let (_, stage) = dockerfile_runtime();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut user = None;
    let mut workdir = "/".to_string();
    let mut entrypoint: Vec<String> = Vec::new();
    for (kw, args) in &stage {
        match kw.as_str() {
            "ARG" => {
                let (k, v) = args.split_once('=').unwrap_or((args, ""));
                env.push((k.to_string(), v.trim_matches('"').to_string()));
            }
            "LABEL" | "CMD" => {}
            "ENV" => env.extend(key_values(args)),
            "RUN" => {
                run_ok(
                    &mut rootfs.sh(args, &[], None, &env),
                    &format!("RUN {args}"),
                );
            }
            "COPY" => {
                let mut words: Vec<&str> = args.split_whitespace().collect();
                let dest = words.pop().unwrap();
                let from_build = words.first() == Some(&"--from=binaries");
                if from_build {
                    words.remove(0);
                }
                assert!(words.iter().all(|w| !w.starts_with("--")), "COPY {args}");
                for src in words {
                    let from = if from_build {
                        assert_eq!(src, "/out/", "the binaries stage's output folder");
                        build_out.clone()
                    } else {
                        context.join(src)
                    };
                    docker_copy(&from, &rootfs.at(dest), dest.ends_with('/'));
                }
            }
            "USER" => user = Some(args.clone()),
            "WORKDIR" => {
                workdir = args.clone();
                std::fs::create_dir_all(rootfs.at(&workdir)).unwrap();
            }
            "ENTRYPOINT" => {
                entrypoint = serde_yaml::from_str(args).expect("ENTRYPOINT in exec form");
            }
            other => panic!("the Dockerfile emulation does not know {other} {args}"),
        }
    }
    let user = user.expect("a USER");
    let ids = numeric_user(&rootfs, &user);
    let home = format!("/home/{user}");
    env.push(("HOME".into(), home));

    // ENTRYPOINT + arguments, as the image's user, in its WORKDIR.
    let run = |args: &[&str]| -> Command {
        let script = format!("cd \"{workdir}\" && exec \"$@\"");
        let mut all: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        rootfs.sh(&script, &all, Some(&ids), &env)
    };

    let out = run_ok(
        &mut run(&["--check", "--exe", "/opt/pseg/bin/clavrxorb"]),
        "docker run IMAGE --check",
    );
    assert_check_output(&out, "--check as the image's user");
    // The default clavrxorb is found on the image's PATH.
    let out = run_ok(&mut run(&["--check"]), "docker run IMAGE --check (PATH)");
    assert_check_output(&out, "--check with clavrxorb from PATH");

    let data = data_inside(&case, &rootfs);
    let outside = outputs_outside(&case, &rootfs, data);
    let out_dir = rootfs.at("/srv/out-docker");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (uid, gid) = ids.split_once(':').unwrap();
    nix::unistd::chown(
        &out_dir,
        Some(nix::unistd::Uid::from_raw(uid.parse().unwrap())),
        Some(nix::unistd::Gid::from_raw(gid.parse().unwrap())),
    )
    .unwrap();
    let args = step_args(data, "/srv/out-docker");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&mut run(&args), "docker run IMAGE --files ...");
    assert_same_outputs(&outputs(&out_dir), &outside);
}

/// `uid:gid` of `user` from the rootfs's /etc/passwd.
fn numeric_user(rootfs: &Rootfs, user: &str) -> String {
    let passwd = std::fs::read_to_string(rootfs.at("/etc/passwd")).unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| format!("{}:{}", f[2], f[3]))
        })
        .unwrap_or_else(|| panic!("USER {user} is not in the image's /etc/passwd"))
}

/// Docker's COPY: a folder's contents go into the destination folder; a file goes to the
/// destination path, or into it when it ends in `/`.
fn docker_copy(from: &Path, to: &Path, into_dir: bool) {
    assert!(from.exists(), "COPY source {} is missing", from.display());
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        run_ok(
            Command::new("cp").arg("-a").arg(from.join(".")).arg(to),
            "COPY folder",
        );
    } else {
        let target = if into_dir {
            std::fs::create_dir_all(to).unwrap();
            to.join(from.file_name().unwrap())
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            to.to_path_buf()
        };
        std::fs::copy(from, target).unwrap();
    }
}

#[test]
fn def_parser_reads_sections_files_and_labels() {
    let d = Def::parse(
        "Bootstrap: docker\nFrom: debian:12-slim\n# From: other\n%labels\n    Version 9.9\n\
         %files\n    a/b /x/b\n    # comment\n    c\n%apprun tool\n    exec tool \"$@\"\n",
    );
    assert_eq!(d.header_value("From"), Some("debian:12-slim"));
    assert_eq!(d.labels()["Version"], "9.9");
    assert_eq!(
        d.files(),
        vec![
            ("a/b".to_string(), "/x/b".to_string()),
            ("c".to_string(), "c".to_string())
        ]
    );
    assert_eq!(d.section("apprun tool"), "    exec tool \"$@\"\n");
    let ins = dockerfile_instructions(
        "# syntax=x\nFROM a AS b\nRUN one \\\n # note\n && two\nLABEL k=\"v w\" k2=x\n",
    );
    assert_eq!(ins[1], ("RUN".into(), "one  && two".into()));
    assert_eq!(
        key_values(&ins[2].1),
        vec![("k".into(), "v w".into()), ("k2".into(), "x".into())]
    );
}

// ---------------------------------------------------------------------------------------
// The Docker recipe, built by containers/build.sh and run by Podman

/// Podman flags every `podman run` here needs, as the README gives them: Podman's default
/// open-files limit is above what this machine allows a container, so it cannot start one
/// without them. pseg-step needs no network.
const RUN_FLAGS: [&str; 6] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
    "--network",
    "none",
];

const IMAGE: &str = "localhost/pseg-test:latest";

/// The tests' own Podman configuration and storage (under the target directory, so the
/// base image and the cached layers survive between runs and nothing of the machine's
/// Podman is touched): runc, as the default crun refuses this machine's hybrid cgroup
/// layout, and cgroupfs, as there is no systemd. Storage on overlay where the kernel allows
/// it (a cached rebuild in seconds), else on vfs (every layer a full copy: minutes).
fn podman_env() -> &'static [(String, PathBuf)] {
    static ENV: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("podman");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let storage = dir.join("storage.conf");
        for driver in ["overlay", "vfs"] {
            // One storage folder per driver: neither can read the other's.
            std::fs::write(
                &storage,
                format!(
                    "[storage]\ndriver = \"{driver}\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                    dir.join(format!("run-{driver}")).display(),
                    dir.join(format!("storage-{driver}")).display()
                ),
            )
            .unwrap();
            let works = Command::new("podman")
                .arg("info")
                .env("CONTAINERS_CONF", &conf)
                .env("CONTAINERS_STORAGE_CONF", &storage)
                .output()
                .is_ok_and(|o| o.status.success());
            if works {
                eprintln!("podman storage: {driver}");
                break;
            }
        }
        vec![
            ("CONTAINERS_CONF".to_string(), conf),
            ("CONTAINERS_STORAGE_CONF".to_string(), storage),
        ]
    })
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.envs(podman_env().iter().map(|(k, v)| (k, v)));
    cmd
}

/// True when this process is root and Podman and runc are installed; otherwise skips (or
/// fails under CI).
fn podman_available(test: &str) -> bool {
    if !root_available(test) {
        return false;
    }
    let missing: Vec<&str> = ["podman", "runc"]
        .into_iter()
        .filter(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    require(
        test,
        missing.is_empty(),
        &format!(
            "{} not installed (bash ci/install-deps.sh)",
            missing.join(", ")
        ),
    )
}

/// The image, built once per test run by `containers/build.sh` from the binaries under
/// test and the static mock as clavrxorb, offline: base image imported from the
/// debootstrapped rootfs, pseg-step from the host-built binaries.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let context = Path::new(env!("CARGO_TARGET_TMPDIR")).join("podman/context");
        let _ = std::fs::remove_dir_all(&context);
        std::fs::create_dir_all(&context).unwrap();
        // The binaries under test without their debug info (140 MB of it, copied into
        // several layers and the saved archive); the code is the same.
        let bins = context.with_file_name("bins");
        std::fs::create_dir_all(&bins).unwrap();
        for bin in [cargo_bin!("pseg-step"), cargo_bin!("pseg-slurm")] {
            run_ok(
                Command::new("strip")
                    .arg("--strip-debug")
                    .arg("-o")
                    .arg(bins.join(bin.file_name().unwrap()))
                    .arg(bin),
                "strip --strip-debug",
            );
        }
        let started = std::time::Instant::now();
        let out = Command::new("bash")
            .arg(repo().join("containers/build.sh"))
            .arg(mock(Link::Static))
            .arg(IMAGE)
            .envs(podman_env().iter().map(|(k, v)| (k, v)))
            .env("ENGINE", "podman")
            .env("CONTEXT", &context)
            .env("PSEG_BIN_DIR", &bins)
            .env("BASE_ROOTFS", base_rootfs())
            .output()
            .map_err(|e| format!("containers/build.sh: {e}"))?;
        eprintln!(
            "containers/build.sh took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if !out.status.success() {
            return Err(format!(
                "containers/build.sh failed ({}):\n{}",
                out.status,
                text(&out.stderr)
            ));
        }
        // The images of earlier runs, untagged now, would pile up in the cache.
        let _ = podman().args(["image", "prune", "-f"]).output();
        let stderr = text(&out.stderr);
        // No registry here: both fallbacks must have been taken, or the test proves less.
        if !stderr.contains("pseg-step from: stage") {
            return Err(format!(
                "build.sh did not use the staged binaries:\n{stderr}"
            ));
        }
        Ok(())
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    IMAGE
}

/// A container removed (with everything in it) on drop, even when the test fails.
struct Container(String);

impl Container {
    /// `podman run -d ARGS` (ARGS after the run flags).
    fn start(args: &[&str]) -> Container {
        let out = run_ok(
            podman().args(["run", "-d"]).args(RUN_FLAGS).args(args),
            "podman run -d",
        );
        Container(text(&out.stdout).trim().to_string())
    }

    /// Host pids of the container's processes whose command is `comm`.
    fn host_pids(&self, comm: &str) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if cgroup.contains(&self.0) && name.trim() == comm {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

/// A folder to bind into the container, owned by the image's user (uid and gid 1000), as a
/// user's own data folder is.
fn bound_folder(case: &Case) -> PathBuf {
    let dir = case.path("bound");
    std::fs::create_dir_all(&dir).unwrap();
    let id = Some(nix::unistd::Uid::from_raw(1000));
    nix::unistd::chown(&dir, id, Some(nix::unistd::Gid::from_raw(1000))).unwrap();
    dir
}

/// One granule made with the mock's `generate` flags `args`, its list and options, in a
/// bound folder (see `bound_folder`).
fn one_granule_bound(name: &str, lines: u32, args: &[&str]) -> (Case, PathBuf) {
    let case = Case::new(Link::Static);
    let bound = bound_folder(&case);
    case.granule(name, lines, args);
    case.list(&[name]);
    case.options(10);
    for f in [
        format!("data/{name}"),
        "data/list.txt".into(),
        "clavrx_options".into(),
    ] {
        std::fs::copy(
            case.path(&f),
            bound.join(Path::new(&f).file_name().unwrap()),
        )
        .unwrap();
    }
    (case, bound)
}

#[test]
fn podman_image_checks_and_runs_the_example_as_its_user_like_the_host() {
    if !podman_available("podman_image_checks_and_runs_the_example_as_its_user_like_the_host") {
        return;
    }
    let image = image();
    let out = run_ok(
        podman()
            .args(["run", "--rm"])
            .args(RUN_FLAGS)
            .args([image, "--check"]),
        "podman run IMAGE --check",
    );
    assert_check_output(&out, "--check in the image");
    let app = run_ok(
        podman().args(["run", "--rm"]).args(RUN_FLAGS).args([
            "--entrypoint",
            "pseg-slurm",
            image,
            "--version",
        ]),
        "podman run --entrypoint pseg-slurm IMAGE --version",
    );
    let host = run_ok(
        Command::new(cargo_bin!("pseg-slurm")).arg("--version"),
        "pseg-slurm --version",
    );
    assert_eq!(text(&app.stdout), text(&host.stdout));

    // The bundled example, in a folder of the user's bound at /data.
    let case = Case::new(Link::Static);
    let bound = bound_folder(&case);
    let example = repo().join("tests/example");
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(example.join("."))
            .arg(&bound),
        "copying the example",
    );
    // The same run on the host, meanwhile (each takes seconds).
    let host = case.path("out-host");
    let host_run = Command::new(cargo_bin!("pseg-step"))
        .args(step_args(
            &example.to_string_lossy(),
            &host.to_string_lossy(),
        ))
        .arg("--exe")
        .arg(mock(Link::Static))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let volume = format!("{}:/data", bound.display());
    run_ok(
        podman()
            .args(["run", "--rm"])
            .args(RUN_FLAGS)
            .args(["-v", &volume, image])
            .args(step_args("/data", "/data/out")),
        "podman run IMAGE --files /data/list.txt ...",
    );
    let out = host_run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the example on the host: {}",
        text(&out.stderr)
    );
    let inside = bound.join("out");
    assert_same_outputs(&outputs(&inside), &outputs(&host));
    for (name, _) in outputs(&inside) {
        let meta = std::fs::metadata(inside.join(&name)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            1000,
            "{name} is written by the image's user, not root"
        );
    }
}

#[test]
fn podman_a_crashing_clone_leaves_no_process_in_the_container() {
    if !podman_available("podman_a_crashing_clone_leaves_no_process_in_the_container") {
        return;
    }
    let image = image();
    let (_case, bound) = one_granule_bound("bad.gran", 40, &["--fault", "clone-segv:2"]);
    // PID 1 is a `sleep` that reaps nothing: a clone or clavrxorb left behind by pseg-step
    // stays in the container's process list, alive, stopped or as a zombie.
    let volume = format!("{}:/data", bound.display());
    let c = Container::start(&["-v", &volume, "--entrypoint", "sleep", image, "infinity"]);
    let out = podman()
        .args(["exec", &c.0, "pseg-step"])
        .args(step_args("/data", "/data/out"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the granule fails:\n{err}");
    for needed in ["bad.gran", "segment 2", "SIGSEGV"] {
        assert!(err.contains(needed), "{needed:?} missing:\n{err}");
    }
    assert_nothing_left(&c);
}

/// No process but PID 1 alive in `c`'s process namespace, and none dead there but
/// unreaped except pseg-step's watchdog. The watchdog outlives pseg-step by design until
/// its pipe closes (orphaned to PID 1 then, and reaped by any init that reaps), so live
/// processes get a bounded wait to go; a stopped clone never would. A clavrxorb dead but
/// unreaped was never waited for by pseg-step.
fn assert_nothing_left(c: &Container) {
    let started = std::time::Instant::now();
    let left = loop {
        let left: Vec<ProcStat> = c
            .processes()
            .into_iter()
            .filter(|p| p.pid != 1 && p.state != 'Z')
            .collect();
        if left.is_empty() || started.elapsed() > crate::support::HANG {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        left.is_empty(),
        "processes left in the container: {left:#?}"
    );
    let zombies: Vec<ProcStat> = c
        .processes()
        .into_iter()
        .filter(|p| p.state == 'Z' && !(p.comm == "pseg-step" && p.ppid == 1))
        .collect();
    assert!(
        zombies.is_empty(),
        "unreaped in the container: {zombies:#?}"
    );
}

/// One line of /proc/PID/stat: pid, command, state, parent.
#[derive(Debug)]
struct ProcStat {
    pid: i32,
    comm: String,
    state: char,
    ppid: i32,
}

impl ProcStat {
    fn parse(line: &str) -> Option<ProcStat> {
        let (pid, rest) = line.split_once(" (")?;
        let (comm, rest) = rest.rsplit_once(") ")?;
        let mut fields = rest.split_whitespace();
        Some(ProcStat {
            pid: pid.parse().ok()?,
            comm: comm.to_string(),
            state: fields.next()?.chars().next()?,
            ppid: fields.next()?.parse().ok()?,
        })
    }
}

impl Container {
    /// Every process in the container (but the shell that lists them), seen from inside.
    fn processes(&self) -> Vec<ProcStat> {
        let out = run_ok(
            podman().args([
                "exec",
                &self.0,
                "sh",
                "-c",
                "for d in /proc/[0-9]*; do [ \"${d#/proc/}\" = $$ ] && continue; \
                 read -r stat < \"$d/stat\" 2>/dev/null && echo \"$stat\"; done",
            ]),
            "listing the container's processes",
        );
        text(&out.stdout)
            .lines()
            .map(|l| ProcStat::parse(l).unwrap_or_else(|| panic!("/proc stat line {l:?}")))
            .collect()
    }
}

#[test]
fn podman_stop_ends_every_clavrxorb_records_the_granule_interrupted_and_exits_143() {
    if !podman_available(
        "podman_stop_ends_every_clavrxorb_records_the_granule_interrupted_and_exits_143",
    ) {
        return;
    }
    let image = image();
    // pseg-step as the container's PID 1 (as `podman run IMAGE ...` runs it), where a
    // signal nobody handles is dropped; then as a plain process in the process namespace of
    // a keeper whose PID 1 reaps nothing, where a clavrxorb that outlived pseg-step stays
    // visible after the stop.
    let keeper = Container::start(&["--entrypoint", "sleep", image, "infinity"]);
    let shared = format!("container:{}", keeper.0);
    for pidns in [None, Some(shared.as_str())] {
        // Enough work per line that the run is certainly busy when the signal lands.
        let (_case, bound) = one_granule_bound("slow.gran", 400, &["--work", "2000000"]);
        let volume = format!("{}:/data", bound.display());
        let mut args = vec!["-v", volume.as_str()];
        if let Some(ns) = pidns {
            args.extend(["--pid", ns]);
        }
        args.push(image);
        let step = step_args("/data", "/data/out");
        args.extend(step.iter().map(String::as_str));
        let c = Container::start(&args);
        // Clones at work: more than the one clavrxorb that reads the segments.
        let start = std::time::Instant::now();
        while c.host_pids("clavrxorb").len() < 2 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "clones never started in the container"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SIGTERM to pseg-step; SIGKILL (137) only after 60 s.
        run_ok(podman().args(["stop", "-t", "60", &c.0]), "podman stop");
        let waited = run_ok(podman().args(["wait", &c.0]), "podman wait");
        let logs = run_ok(podman().args(["logs", &c.0]), "podman logs");
        let err = format!("{}{}", text(&logs.stdout), text(&logs.stderr));
        assert_eq!(text(&waited.stdout).trim(), "143", "{pidns:?}: {err}");
        assert!(
            err.contains("interrupted by signal 15") && err.contains("every clavrxorb"),
            "{err}"
        );
        let ledger = Ledger::open_existing(&bound.join("out/pseg-state")).unwrap();
        let record = ledger.record("slow.gran").unwrap().expect("a record");
        assert_eq!(record.status, Status::Interrupted);
        assert!(
            outputs(&bound.join("out")).is_empty(),
            "no partial output published"
        );
        if pidns.is_some() {
            assert_nothing_left(&keeper);
        }
    }
}

#[test]
fn podman_saves_the_image_as_an_oci_archive_for_apptainer() {
    if !podman_available("podman_saves_the_image_as_an_oci_archive_for_apptainer") {
        return;
    }
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("pseg.tar");
    run_ok(
        podman()
            .args(["save", "--uncompressed", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg(image),
        "podman save --uncompressed --format oci-archive",
    );
    // What `apptainer build pseg.sif oci-archive://pseg.tar` reads: an OCI layout whose
    // index names the image.
    let listing = run_ok(
        Command::new("tar").arg("-tf").arg(&archive),
        "listing the archive",
    );
    let names = text(&listing.stdout);
    for needed in ["oci-layout", "index.json"] {
        assert!(
            names.lines().any(|l| l == needed),
            "{needed} missing:\n{names}"
        );
    }
    let member = |name: &str| -> serde_json::Value {
        let out = run_ok(
            Command::new("tar").arg("-xOf").arg(&archive).arg(name),
            &format!("reading {name} from the archive"),
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let blob = |descriptor: &serde_json::Value| -> serde_json::Value {
        let digest = descriptor["digest"].as_str().expect("a digest");
        member(&format!("blobs/{}", digest.replacen(':', "/", 1)))
    };
    let index = member("index.json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    let manifest = blob(&manifests[0]);
    let layers = manifest["layers"].as_array().expect("layers");
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap().replacen(':', "/", 1);
        assert!(
            names.lines().any(|l| l == format!("blobs/{digest}")),
            "layer {digest} is not in the archive"
        );
    }
    // The image's entry point and user travel with it (Apptainer's runscript comes from
    // them).
    let config = blob(&manifest["config"]);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/opt/pseg/bin/pseg-step"])
    );
    assert_eq!(config["config"]["User"], "pseg");
}
