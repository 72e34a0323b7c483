//! Memory reports and admission against the mock, whose memory per segment is known.

use crate::support::{Case, Link, needs_cgroups, text};

const MIB: u64 = 1 << 20;

fn num(v: &serde_yaml::Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number: {v:?}", path.join(".")))
}

/// Each worker holds `work_mib` private MiB while it processes a 10-line segment.
fn heavy(case: &Case, name: &str, lines: u32, work_mib: u64, work: &str) {
    let per_line = (work_mib * MIB / 10).to_string();
    case.granule(name, lines, &["--work", work, "--work-mem", &per_line]);
}

#[test]
fn summed_pss_matches_the_known_memory_and_summed_rss_overstates_it() {
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 60, 80, "20000000");
    case.list(&["h.gran"]);
    case.options(10);
    let out = case
        .step("out")
        .args(["--max-workers", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = case.report("out", "h.gran");
    assert_eq!(r["schema"].as_str(), Some("pseg-report/1"));
    assert_eq!(num(&r, &["workers", "max_busy"]), 2.0);
    // Two workers of 80 MiB each at once; the processes' own baseline is a few MiB.
    let expected = (2 * 80 * MIB) as f64;
    let pss = num(&r, &["memory", "pss_peak_bytes"]);
    assert!(
        (pss - expected).abs() <= expected * 0.10,
        "summed PSS peak {} MiB, expected {} MiB within 10 %",
        pss / MIB as f64,
        expected / MIB as f64
    );
    let rss = num(&r, &["memory", "rss_peak_bytes"]);
    assert!(
        rss > pss,
        "clones share the parent's pages: RSS {rss} > PSS {pss}"
    );
    let private = num(&r, &["memory", "worker_private_peak_bytes"]);
    assert!(
        private >= (80 * MIB) as f64 && private < (90 * MIB) as f64,
        "{private}"
    );
    assert_eq!(
        num(&r, &["memory", "peak_bytes"]),
        pss,
        "outside Slurm: size by PSS"
    );
    let segments = r["segment_times"].as_sequence().unwrap();
    assert_eq!(segments.len(), 6);
    for s in &segments[1..] {
        let (q, st, p, w) = (
            num(s, &["queued"]),
            num(s, &["started"]),
            num(s, &["processed"]),
            num(s, &["written"]),
        );
        assert!(q <= st && st <= p && p <= w, "phases in order: {s:?}");
    }
}

#[test]
fn the_reported_cgroup_peak_is_the_kernels() {
    if !needs_cgroups("the_reported_cgroup_peak_is_the_kernels") {
        return;
    }
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 40, 64, "10000000");
    case.list(&["h.gran"]);
    case.options(10);
    let kernel = case.run_in_fresh_cgroup("out", &["--max-workers", "2"]) as f64;
    let r = case.report("out", "h.gran");
    let reported = num(&r, &["memory", "cgroup", "kernel_peak_bytes"]);
    let sampled = num(&r, &["memory", "cgroup", "usage_peak_bytes"]);
    assert!(
        reported <= kernel && reported >= kernel * 0.95,
        "reported kernel peak {reported} vs the kernel's {kernel} after the run"
    );
    assert!(
        sampled <= kernel && sampled >= kernel * 0.80,
        "sampled usage peak {sampled} vs kernel peak {kernel}"
    );
    assert!(
        r["memory"]["cgroup"]["dir"]
            .as_str()
            .unwrap()
            .contains("pseg-test-")
    );
}

#[test]
fn a_memory_budget_caps_workers_below_the_cpu_cap_and_the_report_says_so() {
    let case = Case::new(Link::Static);
    heavy(&case, "h.gran", 100, 80, "2000000");
    case.list(&["h.gran"]);
    case.options(10);
    // 80 MiB a worker: 250 MiB fits two but not three.
    let out = case
        .step("capped")
        .args(["--max-workers", "4", "--mem-budget", "250M"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("memory limit 250 MiB (--mem-budget)"), "{err}");
    let r = case.report("capped", "h.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("memory"), "{err}");
    // A worker past its processing has freed its memory, so a third may start then.
    assert!(num(&r, &["workers", "max_busy"]) < 4.0);
    assert!(num(&r, &["memory", "pss_peak_bytes"]) < (250 * MIB) as f64);

    let out = case
        .step("free")
        .args(["--max-workers", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = case.report("free", "h.gran");
    assert_eq!(r["workers"]["bound_by"].as_str(), Some("cpus"));
    assert!(
        num(&r, &["memory", "pss_peak_bytes"]) > (250 * MIB) as f64,
        "without the budget the same run goes over it"
    );
    assert_eq!(case.outputs("capped"), case.outputs("free"));
}
