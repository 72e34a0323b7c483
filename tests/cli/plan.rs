//! `pseg-slurm plan` on reports pseg-step wrote for the mock, and `gen --profile` choosing
//! `--cpus-per-task` from them.

use std::process::Command;

use assert_cmd::cargo::cargo_bin;

use crate::support::{Case, Link, text};

/// Runs pseg-step over the case's list into `out` (fan-out unless `extra` says).
fn step(case: &Case, out: &str, env: &[(&str, &str)], extra: &[&str]) {
    let mut cmd = case.step(out);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "pseg-step: {}", text(&o.stderr));
}

/// `pseg-slurm ARGS` in the case's folder, with no scontrol on PATH.
fn slurm(case: &Case, args: &[&str]) -> std::process::Output {
    let bin = case.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    Command::new(cargo_bin!("pseg-slurm"))
        .args(args)
        .current_dir(case.dir.path())
        .env("PATH", bin)
        .env_remove("PSEG_SLURM_CONFIG")
        .output()
        .unwrap()
}

/// A CPU-bound granule: 32 segments of 4 lines, each some tens of milliseconds of work, so
/// a clone's cost (a few milliseconds) and the serial first segment are small beside the
/// rest, even when a busy disk stretches the serial parts.
fn cpu_bound(case: &Case) {
    // Each worker holds 4 MiB of its own (1 MiB per line).
    case.granule(
        "busy.gran",
        128,
        &["--work", "3000000", "--work-mem", "1048576"],
    );
    case.list(&["busy.gran"]);
    case.options(4);
}

#[test]
fn plan_projects_real_reports_as_text_and_json() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 24, &["--work", "200000"]);
    case.granule("b.gran", 12, &["--work", "200000"]);
    case.list(&["a.gran", "b.gran"]);
    case.options(3);
    step(&case, "out", &[], &[]);
    // The step summary sits beside the granule reports: read and skipped, not refused.
    let reports: Vec<String> = std::fs::read_dir(case.path("out/pseg-reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        reports.iter().any(|n| n.starts_with("step-")),
        "{reports:?}"
    );

    let o = slurm(&case, &["plan", "--profile", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(table.contains("Replayed 2 granule report(s)"), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.split('|')
                .next()
                .is_some_and(|c| c.trim().parse::<u32>().is_ok())
        })
        .collect();
    let cpus: Vec<u32> = rows
        .iter()
        .map(|l| l.split('|').next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(cpus, [1, 2, 4, 8, 16, 32, 64], "{table}");

    let o = slurm(
        &case,
        &[
            "plan",
            "--profile",
            "out/pseg-reports",
            "--cpus",
            "1,2,6",
            "--granules",
            "95",
            "--array-concurrency",
            "10",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
    let serial = num(&v, "serial_seconds");
    for (r, c) in rows.iter().zip([1.0, 2.0, 6.0]) {
        assert_eq!(num(r, "cpus"), c);
        let wall = num(r, "wall_seconds");
        assert!(wall > 0.0);
        assert!((num(r, "speedup") - serial / wall).abs() < 1e-9);
        assert!((num(r, "efficiency") - serial / wall / c).abs() < 1e-9);
        assert!((num(r, "core_hours_per_1000") - wall * c * 1000.0 / 3600.0).abs() < 1e-9);
        // 95 granules, 10 at a time: 10 rounds.
        assert!((num(r, "campaign_hours") - 10.0 * wall / 3600.0).abs() < 1e-9);
        // Overlapping granules do not make a granule slower (beyond the ramp up and down).
        assert!(num(r, "overlap_wall_seconds") <= wall * 1.01);
    }
    // More CPUs never make a granule slower.
    assert!(num(&rows[2], "wall_seconds") <= num(&rows[0], "wall_seconds"));
    // One report file alone works too.
    let o = slurm(
        &case,
        &[
            "plan",
            "--profile",
            "out/pseg-reports/a.gran.pseg.yaml",
            "--cpus",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("Replayed 1 granule report(s)"));

    // The report page draws the same projection: two bars per CPU count, each carrying its
    // speedup, the JSON's for the same granules.
    let o = slurm(&case, &["report", "out", "-o", "-"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let page = text(&o.stdout);
    let chart = page
        .split("data-chart=\"plan\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no plan chart in the page"));
    let chart = &chart[..chart.find("</svg>").unwrap()];
    let bars: Vec<&str> = chart.split("<rect ").skip(1).collect();
    assert_eq!(bars.len(), 14, "{chart}");
    let o = slurm(&case, &["plan", "--profile", "out", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (bar, row) in bars.iter().step_by(2).zip(v["rows"].as_array().unwrap()) {
        let attr = |k: &str| {
            let from = bar.find(&format!("data-{k}=\"")).unwrap() + k.len() + 7;
            bar[from..from + bar[from..].find('"').unwrap()].to_string()
        };
        assert_eq!(attr("cpus"), row["cpus"].to_string());
        let speedup: f64 = attr("speedup").parse().unwrap();
        assert!((speedup - row["speedup"].as_f64().unwrap()).abs() < 1e-9);
    }
}

#[test]
fn plan_refuses_serial_reports_saying_why() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 6, &[]);
    case.list(&["a.gran"]);
    case.options(3);
    step(&case, "serial", &[], &["--serial"]);
    let o = slurm(&case, &["plan", "--profile", "serial"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("a.gran.pseg.yaml") && err.contains("--serial"),
        "{err}"
    );
}

/// The `--cpus-per-task` gen prints for the case's list from the reports in `out`, with
/// the header lines that say why, and how memory was sized.
fn gen_cpus(case: &Case, out: &str) -> (u32, String) {
    let (cpus, note, _) = gen_script(case, out);
    (cpus, note)
}

/// The script gen writes for the test's list, options and mock into `campaign`, with `extra`.
fn gen_campaign(case: &Case, extra: &[&str]) -> String {
    let mut args = vec![
        "gen",
        "--files",
        "data/list.txt",
        "--exe",
        case.mock().to_str().unwrap(),
        "--options",
        "clavrx_options",
        "--out",
        "campaign",
        "--max-array-size",
        "1001",
    ];
    args.extend(extra);
    let o = slurm(case, &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

fn gen_script(case: &Case, out: &str) -> (u32, String, String) {
    let script = gen_campaign(case, &["--profile", out]);
    let cpus = script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --cpus-per-task="))
        .unwrap()
        .parse()
        .unwrap();
    let note = script
        .lines()
        .find(|l| l.starts_with("# --cpus-per-task="))
        .unwrap()
        .to_string();
    (cpus, note, script)
}

#[test]
fn gen_fans_out_a_cpu_bound_granule_and_not_a_serial_one() {
    let case = Case::new(Link::Static);
    cpu_bound(&case);
    step(&case, "busy", &[], &[]);
    let (cpus, note, script) = gen_script(&case, "busy");
    assert!(cpus > 1, "{note}");
    // More CPUs than the measured run had workers: their memory is added to the peak.
    let report: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(case.path("busy/pseg-reports/busy.gran.pseg.yaml")).unwrap(),
    )
    .unwrap();
    let measured = report["workers"]["max_busy"].as_u64().unwrap() as u32;
    let mem = script
        .lines()
        .find(|l| l.starts_with("# --mem-per-cpu="))
        .unwrap();
    assert_eq!(
        mem.contains(&format!("for the workers {cpus} CPUs add")),
        cpus > measured,
        "{mem}"
    );
    assert!(note.contains("chosen by `pseg-slurm plan`"), "{note}");
    assert!(note.contains("at least 80%"), "{note}");

    // The same list, but clavrxorb spends 1.5 s starting up before any segment: no second
    // CPU pays for itself.
    step(
        &case,
        "slow-start",
        &[("MOCK_CLAVRX_STARTUP_MS", "1500")],
        &[],
    );
    let (cpus, note) = gen_cpus(&case, "slow-start");
    assert_eq!(cpus, 1, "{note}");
    assert!(note.contains("chosen by `pseg-slurm plan`"), "{note}");
}

#[test]
fn gen_without_a_profile_fans_out_unless_the_step_is_serial() {
    let case = Case::new(Link::Static);
    case.granule("a.gran", 6, &[]);
    case.list(&["a.gran"]);
    case.options(3);
    let script_for = |extra: &[&str]| gen_campaign(&case, extra);
    let script = script_for(&[]);
    assert!(script.contains("#SBATCH --cpus-per-task=4\n"), "{script}");
    assert!(
        script.contains("# --cpus-per-task=4: default 4 (no --profile"),
        "{script}"
    );
    std::fs::write(case.path("site.yaml"), "serial: true\n").unwrap();
    let script = script_for(&["--config", "site.yaml"]);
    assert!(script.contains("#SBATCH --cpus-per-task=1\n"), "{script}");
    assert!(script.contains(" --serial"), "{script}");
}
