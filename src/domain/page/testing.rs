//! Test helpers: a reader for the markup this module writes (every attribute double-quoted
//! and escaped), and small reports with known numbers.

use crate::domain::reports::{GranuleReport, SCHEMA};

pub use super::markup::elements;

/// A granule report with known times: five segments on two workers. Built from JSON, so
/// fields the schema gains later keep their defaults.
pub fn report(name: &str) -> GranuleReport {
    let gib = 1u64 << 30;
    serde_json::from_value(serde_json::json!({
        "schema": SCHEMA,
        "kind": "granule",
        "granule": format!("/data/{name}"),
        "name": name,
        "status": "done",
        "host": "node-1",
        "started_unix": 1_700_000_000.0,
        "wall_seconds": 10.0,
        "cpu_seconds": 30.0,
        "scan_lines": 100,
        "segments": 5,
        "lines": 500,
        "workers": {
            "cap": 2,
            "bound_by": "cpus",
            "max_busy": 2,
            "busy_over_time": [
                [0.0, 0], [1.0, 1], [1.5, 2], [4.0, 1], [4.0, 2], [6.0, 1], [7.0, 2],
                [8.5, 1], [9.5, 0]
            ],
            "ready_wait_mean_seconds": 0.5,
            "ready_wait_max_seconds": 2.5,
        },
        "memory": {
            "peak_bytes": 3 * gib,
            "pss_peak_bytes": 3 * gib,
            "rss_peak_bytes": 5 * gib,
            "parent_pss_peak_bytes": gib,
            "worker_private_peak_bytes": gib,
            "limit_bytes": 4 * gib,
            "limit_source": "--mem-budget",
            "samples": 5,
            "sample_interval_seconds": 2.0,
            "over_time": [
                [1.0, gib, 3 * gib / 2],
                [3.0, 2 * gib, 5 * gib / 2],
                [5.0, 5 * gib / 2, 3 * gib],
                [7.0, 2 * gib, 5 * gib / 2],
                [9.0, gib, 3 * gib / 2],
            ],
        },
        "segment_times": [
            {"segment": 1, "pid": 1001, "lines": 100, "written": 1.0},
            {"segment": 2, "pid": 1002, "lines": 100, "queued": 1.0, "started": 1.0,
             "processed": 3.5, "written": 4.0},
            {"segment": 3, "pid": 1003, "lines": 100, "queued": 1.5, "started": 1.5,
             "processed": 5.5, "written": 6.0},
            {"segment": 4, "pid": 1004, "lines": 100, "queued": 2.0, "started": 4.0,
             "processed": 7.0, "written": 8.5},
            {"segment": 5, "pid": 1005, "lines": 100, "queued": 2.5, "started": 7.0,
             "processed": 9.0, "written": 9.5},
        ],
    }))
    .expect("a valid report")
}
