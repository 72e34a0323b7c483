//! Out of the box: a CLAVR-x run folder (`file_list`, `clavrx_options`, clavrxorb on PATH)
//! needs no flag and no config; every input a run would trip over later is refused up front
//! with its message and exit status, leaving nothing behind; names are printed escaped, state
//! files follow the umask and the report survives absurd numbers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::cargo_bin;

use crate::support::{Case, Link, text};

/// Granules, their serial reference outputs in `serial`, and a CLAVR-x run folder `run/`
/// over them ([`Case::clavrx_run_folder`]).
pub fn run_folder(case: &Case) -> PathBuf {
    let names = ["g0.gran", "g1.gran", "g2.gran"];
    for (name, lines) in names.iter().zip([40, 73, 1]) {
        case.granule(name, lines, &[]);
    }
    case.list(&names);
    case.options(10);
    let serial = case.step("serial").arg("--serial").output().unwrap();
    assert!(serial.status.success(), "{}", text(&serial.stderr));

    case.clavrx_run_folder(&names)
}

/// PATH with the run folder's `bin/` (clavrxorb) first.
pub fn path_with_clavrxorb(case: &Case) -> OsString {
    let mut path = OsString::from(case.path("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// `pseg-step` with only the given arguments, in `dir`, outside Slurm, with clavrxorb on
/// PATH.
fn bare_step(case: &Case, dir: &Path, args: &[&str]) -> Command {
    let exe = case.path("bin/clavrxorb");
    if !exe.exists() {
        std::fs::create_dir_all(case.path("bin")).unwrap();
        std::os::unix::fs::symlink(case.mock(), exe).unwrap();
    }
    let mut cmd = Command::new(cargo_bin!("pseg-step"));
    cmd.args(args)
        .current_dir(dir)
        .env("PATH", path_with_clavrxorb(case))
        .env("TMPDIR", case.scratch())
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS")
        .env_remove("SLURM_CPUS_PER_TASK");
    cmd
}

/// `pseg-slurm ARGS` in `dir`, without any site config.
fn pseg_slurm(case: &Case, dir: &Path, args: &[&str]) -> Output {
    Command::new(cargo_bin!("pseg-slurm"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path_with_clavrxorb(case))
        .env_remove("PSEG_SLURM_CONFIG")
        .output()
        .unwrap()
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs `cmd`, which must fail with `status` and a message holding every one of `wanted`,
/// and create nothing anywhere in the test's folder.
fn refused(case: &Case, mut cmd: Command, status: i32, wanted: &[&str]) -> String {
    case.scratch();
    let before = tree(case.dir.path());
    let out = cmd.output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{err}");
    assert!(out.stdout.is_empty(), "printed: {}", text(&out.stdout));
    for w in wanted {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert_eq!(
        tree(case.dir.path()),
        before,
        "something was created; {err}"
    );
    err
}

#[test]
fn a_clavrx_run_folder_needs_no_flag_and_no_config() {
    let case = Case::new(Link::Static);
    let run = run_folder(&case);
    let out = bare_step(&case, &run, &["--files", "file_list"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("pseg-step: CLAVR-x file_list file_list: 3 granule(s) in ")
            && first.ends_with("outputs to ./out/"),
        "{first}"
    );
    // Outputs land in the file_list's output folder, byte-identical to a serial run.
    assert_eq!(case.outputs("run/out"), case.outputs("serial"));
    assert_eq!(case.outputs("run/out").len(), 3);
    let campaign: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(run.join("out/pseg-state/campaign.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        campaign["list"].as_str().unwrap(),
        run.join("file_list").to_str().unwrap(),
        "the record holds the list's absolute path"
    );
    // So status works from any folder.
    let status = pseg_slurm(&case, &case.path("data"), &["status", "../run/out"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let shown = text(&status.stdout);
    assert!(shown.contains("done                3  100.0%"), "{shown}");
    assert!(!shown.contains("warning"), "{shown}");

    // gen, in the same folder with no flag and no config, renders the same run and adds
    // its call to the record pseg-step made.
    let generated = pseg_slurm(&case, &run, &["gen", "--files", "file_list"]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let script = text(&generated.stdout);
    for (flag, value) in [
        ("--out", run.join("out")),
        ("--options", run.join("clavrx_options")),
        ("--exe", case.path("bin/clavrxorb")),
    ] {
        let want = format!("{flag} {}", value.display());
        assert!(script.contains(&want), "{want:?} not in:\n{script}");
    }
    assert!(script.contains("# CLAVR-x file_list "), "{script}");
    let campaign = std::fs::read_to_string(run.join("out/pseg-state/campaign.yaml")).unwrap();
    assert!(
        campaign.contains("written_by: pseg-slurm gen"),
        "{campaign}"
    );
    case.assert_no_process_left();
}

/// A case with one granule, `a.gran`, in its list (and no options file yet).
fn one_granule() -> Case {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 10, &[]);
    case.list(&["a.gran"]);
    case
}

#[test]
fn a_plain_list_without_out_is_refused() {
    let case = one_granule();
    std::fs::write(case.path("data/clavrx_options"), "scan_lines = 5\n").unwrap();
    let cmd = bare_step(&case, case.dir.path(), &["--files", "data/list.txt"]);
    refused(
        &case,
        cmd,
        2,
        &["no --out given", "data/list.txt is a plain granule list"],
    );
}

#[test]
fn no_options_file_anywhere_is_refused() {
    let case = one_granule();
    let cmd = bare_step(
        &case,
        case.dir.path(),
        &["--files", "data/list.txt", "--out", "o"],
    );
    refused(
        &case,
        cmd,
        2,
        &[
            "no --options given",
            "no clavrx_options beside data/list.txt",
        ],
    );
}

#[test]
fn an_endless_options_file_is_refused() {
    let case = one_granule();
    let cmd = bare_step(
        &case,
        case.dir.path(),
        &[
            "--files",
            "data/list.txt",
            "--out",
            "o",
            "--options",
            "/dev/zero",
        ],
    );
    refused(&case, cmd, 7, &["/dev/zero", "larger than 1048576 bytes"]);
}

#[test]
fn an_endless_list_is_refused() {
    let case = Case::new(Link::Static);
    case.options(5);
    let cmd = bare_step(
        &case,
        case.dir.path(),
        &[
            "--files",
            "/dev/zero",
            "--out",
            "o",
            "--options",
            "clavrx_options",
        ],
    );
    refused(
        &case,
        cmd,
        5,
        &[
            "granule list /dev/zero is too large (over 128 MiB)",
            "split it",
        ],
    );
}

#[test]
fn a_sample_interval_that_is_not_a_number_is_refused() {
    let case = one_granule();
    case.options(5);
    for bad in ["inf", "nan", "-1"] {
        let mut cmd = case.step("o");
        cmd.arg(format!("--sample-interval={bad}"));
        refused(
            &case,
            cmd,
            2,
            &[&format!("`{bad}` is not a number of seconds")],
        );
    }
}

#[test]
fn a_repeated_scan_lines_is_refused_naming_both_lines() {
    let case = one_granule();
    std::fs::write(
        case.path("clavrx_options"),
        "scan_lines = 10\n! other settings\nscan_lines = 0\n",
    )
    .unwrap();
    refused(
        &case,
        case.step("o"),
        8,
        &["scan_lines is set twice, on line 1 and on line 3"],
    );
}

#[test]
fn a_work_folder_file_list_cannot_name_is_refused() {
    let case = one_granule();
    case.options(5);
    let mut cmd = case.step("o");
    cmd.arg("--work").arg(case.path("w\nx"));
    refused(
        &case,
        cmd,
        9,
        &[
            "work directory",
            "contains a line break, so clavrxorb's file_list cannot name it",
            "--work",
        ],
    );
}

#[test]
fn a_list_folder_file_list_cannot_name_is_refused() {
    let case = Case::new(Link::Static);
    case.options(5);
    let odd = case.path("odd\nfolder");
    std::fs::create_dir_all(&odd).unwrap();
    let granule = case.granule("a.gran", 10, &[]);
    std::fs::rename(granule, odd.join("a.gran")).unwrap();
    std::fs::write(odd.join("list.txt"), "a.gran\n").unwrap();
    let cmd = bare_step(
        &case,
        case.dir.path(),
        &["--out", "o", "--options", "clavrx_options", "--files"],
    );
    let mut cmd = cmd;
    cmd.arg(odd.join("list.txt"));
    refused(
        &case,
        cmd,
        6,
        &[
            "line 1:",
            "contains a line break, so clavrxorb's file_list cannot name it",
        ],
    );
}

/// A list, options and granule for gen; returns the arguments every gen call here shares.
fn gen_case(case: &Case) -> Vec<String> {
    case.granule("a.gran", 10, &[]);
    case.list(&["a.gran"]);
    case.options(5);
    [
        "--files",
        "data/list.txt",
        "--options",
        "clavrx_options",
        "--out",
        "o",
        "--max-array-size",
        "100",
    ]
    .map(String::from)
    .to_vec()
}

fn gen_cmd(case: &Case, args: &[String], extra: &[&str]) -> Command {
    let mut cmd = Command::new(cargo_bin!("pseg-slurm"));
    cmd.arg("gen")
        .args(args)
        .args(extra)
        .current_dir(case.dir.path())
        .env("PATH", path_with_clavrxorb(case))
        .env_remove("PSEG_SLURM_CONFIG");
    cmd
}

/// gen over a fresh `gen_case` plus `extra`, with `site.yaml` holding `site` if given, is
/// `refused` with status 1.
fn gen_refuses(site: Option<&str>, extra: &[&str], wanted: &[&str]) {
    let case = Case::new(Link::Static);
    let args = gen_case(&case);
    if let Some(site) = site {
        std::fs::write(case.path("site.yaml"), site).unwrap();
    }
    refused(&case, gen_cmd(&case, &args, extra), 1, wanted);
}

#[test]
fn gen_refuses_an_endless_config() {
    gen_refuses(
        None,
        &["--config", "/dev/zero"],
        &[
            "cannot read site config /dev/zero",
            "a site config is a few KiB",
        ],
    );
}

#[test]
fn gen_refuses_a_time_limit_within_the_warning() {
    gen_refuses(
        None,
        &["--time", "2"],
        &[
            "the time limit 00:02:00 (from the --time flag) is not longer than the 120 s warning",
            "raise --time or lower --warning-seconds",
        ],
    );
}

#[test]
fn gen_refuses_a_job_name_that_is_not_a_plain_name() {
    gen_refuses(
        None,
        &["--job-name", "../elsewhere"],
        &["job name \"../elsewhere\" (from the --job-name flag) is not a plain name"],
    );
}

#[test]
fn gen_refuses_step_args_pseg_step_would_refuse() {
    gen_refuses(
        Some("step_args: ['--mem-admission', 'sometimes']\n"),
        &["--config", "site.yaml"],
        &[
            "pseg-step would refuse the command line gen made",
            "site config `step_args`",
            "sometimes",
        ],
    );
}

#[test]
fn gen_refuses_to_take_over_another_campaigns_state() {
    let case = Case::new(Link::Static);
    let args = gen_case(&case);
    let out = case.step("o").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(case.path("data/other.txt"), "a.gran\n").unwrap();
    let mut args = args;
    args[1] = "data/other.txt".into();
    let cmd = gen_cmd(&case, &args, &[]);
    refused(
        &case,
        cmd,
        1,
        &[
            "campaign.yaml belongs to another campaign",
            &format!(
                "it records the granule list {}, this pseg-slurm gen has {}",
                case.path("data/list.txt").display(),
                case.path("data/other.txt").display()
            ),
            "give this one its own --out",
        ],
    );
}

#[test]
fn gen_binds_a_host_clavrxorb_into_the_container() {
    let case = Case::new(Link::Static);
    let mut args = gen_case(&case);
    // Nothing else in the test's folder, so no other bind covers the executable's.
    std::fs::copy(
        case.path("clavrx_options"),
        case.path("data/clavrx_options"),
    )
    .unwrap();
    args[3] = "data/clavrx_options".into();
    std::fs::write(case.path("image.sif"), "").unwrap();
    let exe = case.path("tools/clavrxorb");
    std::fs::create_dir_all(case.path("tools")).unwrap();
    std::os::unix::fs::symlink(case.mock(), &exe).unwrap();
    let out = gen_cmd(
        &case,
        &args,
        &["--container", "image.sif", "--exe", exe.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    let bind = format!("--bind {}", case.path("tools").display());
    assert!(script.contains(&bind), "{bind:?} not in:\n{script}");
}

#[test]
fn names_with_control_characters_are_printed_escaped() {
    let case = Case::new(Link::Static);
    // A carriage return cannot be one line of clavrxorb's file_list: refused, shown escaped.
    let name = "red\x1b[31m\rname.gran";
    case.granule(name, 10, &[]);
    case.list(&[name]);
    case.options(5);
    let err = refused(&case, case.step("o"), 6, &["red\\x1b[31m\\rname.gran"]);
    assert!(
        !err.contains(['\x1b', '\r']),
        "raw control character in: {err:?}"
    );
    std::fs::remove_file(case.path("data").join(name)).unwrap();

    let name = "red\x1b[31mname\x07.gran";
    case.granule(name, 10, &[]);
    case.list(&[name]);
    let out = case.step("o").output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains(['\x1b', '\x07']),
        "raw control character in: {err:?}"
    );
    assert!(
        err.contains("[1/1] red\\x1b[31mname\\x07.gran: done"),
        "{err}"
    );
    let status = pseg_slurm(&case, case.dir.path(), &["status", "o"]);
    assert!(status.status.success());
    assert!(!text(&status.stdout).contains(['\x1b', '\x07']));
}

#[test]
fn state_files_follow_the_umask_like_outputs() {
    let case = one_granule();
    case.options(5);
    let step = case.step("o");
    let out = crate::support::wrapped(&step, "sh")
        .arg("-c")
        .arg(r#"umask 022 && exec "$0" "$@""#)
        .arg(step.get_program())
        .args(step.get_args())
        .current_dir(case.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = case.path("o");
    let mut files: Vec<PathBuf> = tree(&o)
        .into_iter()
        .map(|p| o.join(p))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("pseg-state/campaign.yaml"))
    );
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "json"))
    );
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".pseg.yaml"))
    );
    use std::os::unix::fs::MetadataExt;
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", f.display());
    }
}

#[test]
fn the_report_clamps_and_flags_absurd_numbers() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 30, &[]);
    case.list(&["a.gran"]);
    case.options(10);
    let out = case.step("o").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The program's own report and record, with numbers no run can produce.
    let report = case.path("o/pseg-reports/a.gran.pseg.yaml");
    let yaml = std::fs::read_to_string(&report).unwrap();
    let yaml: String = yaml
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("wall_seconds", _)) => "wall_seconds: 1.79e308".to_string(),
            Some(("started_unix", _)) => "started_unix: -1.7e308".to_string(),
            Some(("cpu_seconds", _)) => "cpu_seconds: .nan".to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&report, yaml).unwrap();
    let records = case.path("o/pseg-state/records");
    let record = tree(&records)
        .into_iter()
        .map(|p| records.join(p))
        .find(|p| p.is_file())
        .unwrap();
    let json = std::fs::read_to_string(&record).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["ended"] = serde_json::json!(1.7e308);
    std::fs::write(&record, serde_json::to_string(&value).unwrap()).unwrap();

    for what in [case.path("o"), report] {
        let page = case.path("page.html");
        let out = Command::new("timeout")
            .arg("60")
            .arg(cargo_bin!("pseg-slurm"))
            .arg("report")
            .arg(&what)
            .arg("-o")
            .arg(&page)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {err}", what.display());
        assert!(err.contains("were clamped to plausible ones"), "{err}");
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("were clamped to plausible ones"));
        for absurd in ["NaN", "inf", "e308", "e+308"] {
            let at = html.find(absurd).unwrap_or(0);
            assert!(
                !html.contains(absurd),
                "{absurd} in the page of {}: {}",
                what.display(),
                &html[at.saturating_sub(300)..(at + 100).min(html.len())]
            );
        }
    }
}

#[test]
fn retry_of_a_file_list_campaign_keeps_its_folders_from_anywhere() {
    let case = Case::new(Link::Static);
    let run = run_folder(&case);
    let generated = pseg_slurm(&case, &run, &["gen", "--files", "file_list"]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    // Nothing ran: every granule is missing. The retry list lives in the state folder, far
    // from the file_list, yet the script keeps the file_list's output folder and options.
    let retried = pseg_slurm(
        &case,
        &case.path("data"),
        &["retry", "../run/out", "--missing"],
    );
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let script = text(&retried.stdout);
    for (flag, value) in [
        ("--out", run.join("out")),
        ("--options", run.join("clavrx_options")),
    ] {
        let want = format!("{flag} {}", value.display());
        assert!(script.contains(&want), "{want:?} not in:\n{script}");
    }
    assert!(
        script.contains("pseg-state/retry/file_list-retry-1.txt"),
        "{script}"
    );
}

#[test]
fn pseg_step_keeps_another_campaigns_record_and_says_so() {
    let case = one_granule();
    case.options(5);
    let first = case.step("o").output().unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let record = case.path("o/pseg-state/campaign.yaml");
    let before = std::fs::read_to_string(&record).unwrap();
    std::fs::write(case.path("data/other.txt"), "a.gran\n").unwrap();
    let mut cmd = case.step("o");
    cmd.arg("--files").arg(case.path("data/other.txt"));
    let second = cmd.output().unwrap();
    let err = text(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        err.contains("campaign.yaml belongs to another campaign: it records the granule list"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&record).unwrap(), before);
}
