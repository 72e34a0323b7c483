//! `pseg-slurm gen` and `pseg-slurm config`, driven as a user would: rendered scripts compared
//! with snapshots under tests/cli/snapshots/, refusals checked for their messages.
//!
//! Every test gets its own folder (granules, list, options, a fake pseg-step and clavrxorb)
//! and runs gen there with PATH limited to the folder's `bin/`, so no scontrol or clavrxorb
//! of the machine can leak in. Snapshots hold `<TMP>` for that folder and `<VERSION>` for
//! the crate version; `PSEG_UPDATE_SNAPSHOTS=1 cargo test` rewrites them.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use clap::Parser;
// pseg-step's own parser: the contract test below feeds it gen's step arguments.
use pseg_slurm::cmd::step_args::StepArgs;

use crate::support::{Case, text};

/// A fake campaign of `n` granules, `g000000.hdf` on.
fn campaign(n: usize) -> Case {
    let names: Vec<String> = (0..n).map(|i| format!("g{i:06}.hdf")).collect();
    Case::fake_campaign(&names)
}

/// `pseg-slurm gen` with the folder's list, options, output and executables, plus `extra`;
/// the script it printed (gen must succeed).
fn gen_ok(g: &Case, extra: &[&str]) -> String {
    let mut args = vec!["--exe", "clavrx/clavrxorb", "--pseg-step", "bin/pseg-step"];
    args.extend_from_slice(extra);
    gen_bare(g, &args)
}

/// `pseg-slurm gen` with the folder's list, options and output only, plus `extra`.
fn gen_bare(g: &Case, extra: &[&str]) -> String {
    let out = g.gen_into("out", extra);
    assert!(
        out.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout.clone()).unwrap();
    assert_bash_parses(&script);
    script
}

/// Stable text: the folder as `<TMP>`, the version as `<VERSION>`.
fn normalize(g: &Case, text: &str) -> String {
    let mut text = text.to_string();
    let canonical = std::fs::canonicalize(g.dir.path()).unwrap();
    for dir in [canonical.as_path(), g.dir.path()] {
        text = text.replace(&dir.display().to_string(), "<TMP>");
    }
    text.replace(env!("CARGO_PKG_VERSION"), "<VERSION>")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refusal: status 1, nothing on stdout, every one of `wanted` on stderr.
fn assert_refused(out: &Output, wanted: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(out.stdout.is_empty(), "printed: {}", text(&out.stdout));
    assert_contains(&stderr(out), wanted);
}

/// Every one of `needles` is in `text`.
fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

fn assert_bash_parses(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sbatch");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "bash -n refuses the script:\n{}\n{script}",
        stderr(&out)
    );
}

/// Compares with tests/cli/snapshots/NAME, showing a line diff on failure.
fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/snapshots")
        .join(name);
    if std::env::var_os("PSEG_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read snapshot {}: {e}\nrun with PSEG_UPDATE_SNAPSHOTS=1 to create it; got:\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs (- expected, + actual); PSEG_UPDATE_SNAPSHOTS=1 accepts the new text:\n{}",
            path.display(),
            line_diff(&expected, actual)
        );
    }
}

/// A plain line diff (longest common subsequence), enough for scripts of a few dozen lines.
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", a[i]);
            i += 1;
        }
    }
    if old.ends_with('\n') != new.ends_with('\n') {
        out += "(the two differ in the final line break)\n";
    }
    out
}

fn report(peak_bytes: u64, wall: f64) -> String {
    format!(
        "schema: pseg-report/1\nkind: granule\nwall_seconds: {wall}\n\
         memory:\n  peak_bytes: {peak_bytes}\n  source: cgroup-v1\nsomething_new: true\n"
    )
}

const SITE: &str = "\
partition: batch
account: proj-42
qos: normal
time: \"03:00:00\"
cpus_per_task: 4
memory: 6G
granules_per_task: 2
array_limit: 3
max_array_size: 1001
extra_sbatch: ['#SBATCH --constraint=skylake', '--exclusive']
setup: ['module load clavrx/6.0', 'export OMP_NUM_THREADS=1']
";

#[test]
fn array_mode_snapshot() {
    let g = campaign(5);
    g.write("site.yaml", SITE);
    let script = gen_ok(&g, &["--config", "site.yaml", "--work", "work"]);
    assert_snapshot("array.sbatch", &normalize(&g, &script));
    assert!(g.path("out/logs").is_dir(), "gen creates the log folder");
}

#[test]
fn tasks_mode_snapshot_sized_from_reports() {
    let g = campaign(5);
    g.write("site.yaml", SITE);
    g.write("reports/a/g1.pseg.yaml", &report(3 << 30, 100.0));
    g.write("reports/a/g2.pseg.yaml", &report(4 << 30, 200.0));
    g.write("reports/g3.pseg.yaml", &report(3584 << 20, 150.0));
    let script = gen_ok(
        &g,
        &[
            "--config",
            "site.yaml",
            "--mode",
            "tasks",
            "--ntasks",
            "2",
            "--profile",
            "reports",
        ],
    );
    // 4 GiB * 1.15 / 4 CPUs = 1177.6 MiB -> 1178; 200 s * 3 granules * 1.15 = 690 s -> 12 min.
    assert_contains(
        &script,
        &["#SBATCH --mem-per-cpu=1178M\n", "#SBATCH --time=00:12:00\n"],
    );
    assert_snapshot("tasks.sbatch", &normalize(&g, &script));
}

#[test]
fn site_template_snapshot_with_container() {
    let g = campaign(3);
    // A granule outside the list's folder must be bound too.
    g.write("elsewhere/far.hdf", "");
    let list = std::fs::read_to_string(g.path("data/list.txt")).unwrap();
    g.write("data/list.txt", &format!("{list}../elsewhere/far.hdf\n"));
    g.write("images/clavrx.sif", "");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/site-template.example.tera");
    // Inside the container: pseg-step and clavrxorb are the image's own.
    let script = gen_bare(
        &g,
        &[
            "--template",
            template.to_str().unwrap(),
            "--container",
            "images/clavrx.sif",
            "--peak-mem",
            "3.5G",
            "--cpus-per-task",
            "2",
            "--max-array-size",
            "1001",
            "--job-name",
            "my-run.v1",
        ],
    );
    let normalized = normalize(&g, &script).replace(env!("CARGO_MANIFEST_DIR"), "<REPO>");
    assert_snapshot("site-template.sbatch", &normalized);
}

/// The script run for real by bash (`srun_argv`): paths with spaces and quotes reach pseg-step
/// intact.
#[test]
fn awkward_paths_reach_pseg_step_intact() {
    let g = campaign(0);
    let data = "it's my data";
    g.write(&format!("{data}/a b.hdf"), "");
    g.write(&format!("{data}/list.txt"), "a b.hdf\n");
    let out = g.pseg_slurm_sealed(&[
        "gen",
        "--files",
        &format!("{data}/list.txt"),
        "--options",
        "etc/clavrx_options",
        "--out",
        "out $1",
        "--work",
        "work \"dir\"",
        "--pseg-step",
        "bin/pseg-step",
        "--max-array-size",
        "1001",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    assert_bash_parses(&script);
    assert!(
        script.contains("#SBATCH --output=\"") && script.contains("out $1/logs/%x-%A_%a.out\""),
        "{script}"
    );
    let argv = srun_argv(&g, &script);
    let root = std::fs::canonicalize(g.dir.path()).unwrap();
    let list = root.join(data).join("list.txt");
    let work = root.join("work \"dir\"");
    assert!(argv.iter().any(|a| a == list.to_str().unwrap()), "{argv:?}");
    assert!(argv.iter().any(|a| a == work.to_str().unwrap()), "{argv:?}");
    assert!(work.is_dir(), "the script creates the work folder");
}

#[test]
fn directive_values_with_hash_or_backslash_are_quoted() {
    let g = campaign(1);
    let out = g.gen_into(
        r"out#x\y",
        &["--pseg-step", "bin/pseg-step", "--max-array-size", "1001"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let script = normalize(&g, &String::from_utf8(out.stdout).unwrap());
    assert_bash_parses(&script);
    // sbatch would end the value at the bare `#` and read `\y` as an escape.
    let line = script
        .lines()
        .find(|l| l.starts_with("#SBATCH --output="))
        .unwrap();
    assert_eq!(
        line, r#"#SBATCH --output="<TMP>/out#x\\y/logs/%x-%A_%a.out""#,
        "{script}"
    );
}

#[test]
fn template_dir_from_config_serves_its_mode_only() {
    let g = campaign(2);
    g.write(
        "site/templates/tasks.sbatch.tera",
        "#!/bin/bash\n#SBATCH --ntasks={{ ntasks }}\n# site tasks template\nsrun {{ command }}\n",
    );
    g.write("site/site.yaml", "template_dir: templates\nntasks: 2\n");
    let tasks = gen_ok(&g, &["--config", "site/site.yaml", "--mode", "tasks"]);
    assert!(tasks.contains("# site tasks template"), "{tasks}");
    let array = gen_ok(&g, &["--config", "site/site.yaml", "--max-array-size", "9"]);
    assert!(
        array.contains("Template: built-in array.sbatch.tera"),
        "{array}"
    );
}

#[test]
fn bad_list_reports_every_line_and_prints_nothing() {
    let g = campaign(2);
    g.write(
        "data/list.txt",
        "g000000.hdf\nmissing1.hdf\ng000001.hdf\n\n./g000000.hdf\nmissing2.hdf\n",
    );
    assert_refused(
        &g.gen_into("o", &[]),
        &[
            "line 2:",
            "line 5:",
            "line 6:",
            "list.txt has 3 bad line(s)",
        ],
    );
}

#[test]
fn empty_list_is_refused() {
    let g = campaign(0);
    let out = g.pseg_slurm_sealed(&["gen", "--files", "data/list.txt"]);
    assert_refused(&out, &["names no granules"]);
}

#[test]
fn unknown_config_key_names_file_line_and_key() {
    let g = campaign(1);
    g.write(
        "site.yaml",
        "partition: batch\ncpus_per_task: 2\npartiton: debug\n",
    );
    for args in [
        vec!["gen", "--files", "data/list.txt", "--config", "site.yaml"],
        vec!["config", "check", "--config", "site.yaml"],
    ] {
        assert_refused(
            &g.pseg_slurm_sealed(&args),
            &["site.yaml, line 3: unknown key `partiton` (did you mean `partition`?)"],
        );
    }
}

#[test]
fn config_init_prints_the_shipped_example() {
    let g = campaign(0);
    let out = g.pseg_slurm_sealed(&["config", "init"]);
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/site.example.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), shipped);
    // And it is a valid config.
    g.write("site.yaml", &shipped);
    let out = g.pseg_slurm_sealed(&["config", "check", "--config", "site.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_settings_say_which_flag_or_key() {
    let g = campaign(1);
    let out = g.pseg_slurm_sealed(&["gen", "--files", "data/list.txt", "--out", "o"]);
    assert_refused(
        &out,
        &[
            "no options file given: pass --options, set `options` in the site config \
           (--config), or put a clavrx_options file beside the list",
        ],
    );
    let out = g.pseg_slurm_sealed(&[
        "gen",
        "--files",
        "data/list.txt",
        "--out",
        "o",
        "--options",
        "nope.txt",
    ]);
    assert_refused(&out, &["nope.txt (from the --options flag) does not exist"]);
    assert_refused(&g.gen_into("o", &["--mode", "tasks"]), &["--ntasks"]);
}

#[test]
fn no_measurement_says_so_on_stderr_and_in_the_script() {
    let g = campaign(1);
    let out = g.gen_into(
        "o",
        &[
            "--memory",
            "8G",
            "--cpus-per-task",
            "4",
            "--max-array-size",
            "1001",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let script = String::from_utf8(out.stdout.clone()).unwrap();
    assert_contains(
        &script,
        &[
            "#SBATCH --mem-per-cpu=2048M\n",
            "# --mem-per-cpu=2048M: NOT MEASURED",
        ],
    );
    assert!(
        stderr(&out).contains("no memory measurement"),
        "{}",
        stderr(&out)
    );
}

/// Sized by the reports in `r/` alone: no headroom, and no scontrol to ask.
const SIZED_BY_R: &[&str] = &[
    "--profile",
    "r",
    "--max-array-size",
    "1001",
    "--headroom",
    "0",
];

#[test]
fn percentile_sizes_by_the_distribution_not_the_sum() {
    let g = campaign(1);
    for i in 1..=20 {
        g.write(&format!("r/{i}.pseg.yaml"), &report(i << 30, 60.0));
    }
    let max = gen_ok(&g, SIZED_BY_R);
    // 20 GiB over the default 4 CPUs (these reports hold no phase timings to plan from).
    assert!(max.contains("--mem-per-cpu=5120M\n"), "{max}");
    let p95 = gen_ok(&g, &[SIZED_BY_R, &["--percentile", "95"]].concat());
    assert_contains(
        &p95,
        &[
            "--mem-per-cpu=4864M\n",
            "percentile 95 of 20 done granule reports",
        ],
    );
}

#[test]
fn failed_reports_do_not_size_the_job_and_the_header_says_so() {
    let g = campaign(1);
    g.write("r/a.pseg.yaml", &report(2 << 30, 600.0));
    // Written before reports had a status: counts as done.
    g.write("r/b.pseg.yaml", &report(1 << 30, 300.0));
    // A hung granule (wall time includes the stall timeout) and an OOM kill.
    g.write(
        "r/hung.pseg.yaml",
        &report(1 << 30, 7200.0).replace("kind: granule", "kind: granule\nstatus: failed"),
    );
    g.write(
        "r/oom.pseg.yaml",
        &report(9 << 30, 60.0).replace("kind: granule", "kind: granule\nstatus: failed"),
    );
    g.write(
        "r/done.pseg.yaml",
        &report(1 << 30, 60.0).replace("kind: granule", "kind: granule\nstatus: done"),
    );
    let script = gen_ok(&g, SIZED_BY_R);
    // 2 GiB / 4 CPUs (the default); 600 s -> 10 min: neither the hung nor the OOM report
    // counts.
    assert_contains(
        &script,
        &[
            "--mem-per-cpu=512M\n",
            "--time=00:10:00\n",
            "maximum of 3 done granule reports; 2 failed or interrupted skipped",
        ],
    );
}

#[test]
fn report_of_another_schema_is_refused_by_name() {
    let g = campaign(1);
    g.write("r/x.pseg.yaml", "schema: pseg-report/9\nkind: granule\n");
    assert_refused(
        &g.gen_into("o", &["--profile", "r"]),
        &["x.pseg.yaml has schema `pseg-report/9`"],
    );
}

#[test]
fn scontrol_max_array_size_grows_the_chunks() {
    let g = campaign(10);
    g.executable(
        "bin/scontrol",
        "[ \"$1 $2\" = 'show config' ] || exit 2\necho 'MaxArraySize            = 4'",
    );
    let script = gen_ok(&g, &[]);
    assert_contains(
        &script,
        &[
            "#SBATCH --array=0-3\n",
            "--chunk-size 3\n",
            "MaxArraySize 4 (from scontrol show config)",
        ],
    );
}

#[test]
fn broken_scontrol_falls_back_to_1001_and_says_why() {
    let g = campaign(2);
    g.executable("bin/scontrol", "exit 1");
    let out = g.gen_into("o", &["--pseg-step", "bin/pseg-step"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("assuming MaxArraySize 1001"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn default_pseg_step_is_the_one_beside_pseg_slurm() {
    let g = campaign(1);
    let out = g.gen_into("o", &["--max-array-size", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let beside = cargo_bin!("pseg-slurm").with_file_name("pseg-step");
    let script = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        script.contains(&format!(
            "srun --ntasks=1 --cpus-per-task=4 {} ",
            beside.display()
        )),
        "{script}"
    );
}

/// 100 000 granules: the list check and the render together stay well under a second in a
/// release build; the bound here is loose for debug builds on busy machines.
#[test]
fn a_list_of_100k_granules_renders_without_quadratic_work() {
    let g = campaign(100_000);
    let started = Instant::now();
    let script = gen_ok(&g, &["--chunk-size", "50", "--max-array-size", "1001"]);
    let took = started.elapsed();
    assert_contains(&script, &["#SBATCH --array=0-999\n", "--chunk-size 100\n"]);
    eprintln!("gen over 100k granules took {took:?}");
    // A bound for a blow-up, not a speed: work per pair of granules (10^10 steps here) takes
    // far longer than this on any machine, a loaded one included.
    assert!(took < Duration::from_secs(120), "gen took {took:?}");
}

/// The script run for real by bash, with a fake srun that records its arguments: srun's own
/// flags dropped, pseg-step's command line exactly as pseg-step would receive it.
fn srun_argv(g: &Case, script: &str) -> Vec<String> {
    g.executable("bin/srun", r#"printf '%s\0' "$@" > "$SRUN_ARGV""#);
    let job = g.write("job.sbatch", script);
    let ran = Command::new("bash")
        .arg(&job)
        .current_dir(g.path("."))
        .env("PATH", format!("{}:/usr/bin:/bin", g.path("bin").display()))
        .env("SRUN_ARGV", g.path("srun.argv"))
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let words: Vec<String> = String::from_utf8(std::fs::read(g.path("srun.argv")).unwrap())
        .unwrap()
        .split_terminator('\0')
        .map(String::from)
        .collect();
    let program = words
        .iter()
        .position(|w| !w.starts_with('-'))
        .unwrap_or_else(|| panic!("srun ran no program: {words:?}"));
    words[program..].to_vec()
}

/// `path` as gen should hand it on: absolute, the same file as `expected`.
fn assert_same_file(path: Option<&Path>, expected: &Path, what: &str) {
    let path = path.unwrap_or_else(|| panic!("{what}: not passed to pseg-step"));
    assert!(path.is_absolute(), "{what}: {} is relative", path.display());
    assert_eq!(
        std::fs::canonicalize(path).unwrap(),
        std::fs::canonicalize(expected).unwrap(),
        "{what}"
    );
}

/// The contract between gen and pseg-step: the command line gen writes into the script,
/// parsed by pseg-step's own parser, holds what was asked of gen, for both modes and the
/// flags and config keys that reach pseg-step. Gen's sizing and Slurm flags (--profile,
/// --memory, --time) go to sbatch only: pseg-step learns its limits from the cgroup and
/// Slurm's signals, so they must not reappear as pseg-step flags.
#[test]
fn gen_step_arguments_parse_with_pseg_steps_parser_as_asked() {
    let g = campaign(5);
    g.write(
        "step.yaml",
        "max_workers: 3\nmax_lead: 4\nscan_lines: 50\nstall_timeout: 99\nkeep_work: true\n\
         step_args: ['--mem-admission', 'off', '--sample-interval=0.5']\n",
    );
    g.write("serial.yaml", "serial: true\n");
    g.write("reports/g1.pseg.yaml", &report(3 << 30, 100.0));
    let array = gen_ok(
        &g,
        &[
            "--config",
            "step.yaml",
            "--work",
            "work",
            "--memory",
            "8G",
            "--time",
            "02:00:00",
            "--chunk-size",
            "2",
            "--max-array-size",
            "1001",
        ],
    );
    let tasks = gen_ok(
        &g,
        &[
            "--config",
            "serial.yaml",
            "--mode",
            "tasks",
            "--ntasks",
            "2",
            "--profile",
            "reports",
            "--peak-mem",
            "3G",
        ],
    );
    assert!(array.contains("#SBATCH --array=0-2\n"), "{array}");

    let parse = |script: &str| {
        let argv = srun_argv(&g, script);
        assert_same_file(
            Some(Path::new(&argv[0])),
            &g.path("bin/pseg-step"),
            "program",
        );
        StepArgs::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("pseg-step refuses {argv:?}:\n{e}"))
    };
    for (mode, script) in [("array", &array), ("tasks", &tasks)] {
        let a = parse(script);
        assert_same_file(a.files.as_deref(), &g.path("data/list.txt"), mode);
        assert_same_file(Some(&a.exe), &g.path("clavrx/clavrxorb"), mode);
        assert_same_file(a.options.as_deref(), &g.path("etc/clavrx_options"), mode);
        assert_same_file(a.out.as_deref(), &g.path("out"), mode);
        assert_eq!(a.state, None, "{mode}: the default, OUT/pseg-state");
        assert!(a.profile.is_empty(), "{mode}: {:?}", a.profile);
        assert!(a.mem_budget.is_none(), "{mode}: {:?}", a.mem_budget);
        assert!(!a.check, "{mode}");
    }

    let a = parse(&array);
    assert_same_file(a.work.as_deref(), &g.path("work"), "array --work");
    assert_eq!(
        (a.max_workers, a.max_lead, a.scan_lines, a.stall_timeout),
        (Some(3), 4, Some(50), 99)
    );
    assert!(a.keep_work && !a.serial);
    assert_eq!((a.mem_admission.as_str(), a.sample_interval), ("off", 0.5));
    assert_eq!(a.chunk_size, Some(2), "array elements take 2 granules each");

    let t = parse(&tasks);
    assert!(t.serial && !t.keep_work);
    assert_eq!(t.work, None, "no --work given: pseg-step's temporary one");
    assert_eq!(
        t.chunk_size, None,
        "tasks mode splits the list by SLURM_PROCID"
    );
    assert_eq!((t.max_workers, t.scan_lines), (None, None));
    assert_eq!(t.mem_admission, "on");
}
