//! How long a process waited for a CPU: the run-queue delay in `/proc/PID/schedstat`.
//!
//! A phase's wall time counts the moments its process was runnable but not running, because
//! other processes (its own granule's, or anyone's on a busy node) held the CPUs. The plan
//! replays phases as work, so the reports record that wait per phase and the plan takes it
//! out. The file holds three numbers: time on a CPU (ns), time waiting on a run queue (ns),
//! timeslices run.

use std::io;
use std::path::Path;

/// Seconds process `pid` has waited on a run queue since it was started.
pub fn run_delay(proc_root: &Path, pid: i32) -> io::Result<f64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("schedstat"))?;
    parse(&text).ok_or_else(|| io::Error::other(format!("unexpected schedstat {text:?}")))
}

/// The second field, in seconds.
fn parse(text: &str) -> Option<f64> {
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_queue_delay() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("42")).unwrap();
        std::fs::write(root.path().join("42/schedstat"), "1641748 378032000 2\n").unwrap();
        let d = run_delay(root.path(), 42).unwrap();
        assert!((d - 0.378032).abs() < 1e-12, "{d}");
        std::fs::write(root.path().join("42/schedstat"), "garbage\n").unwrap();
        assert!(run_delay(root.path(), 42).is_err());
        assert!(run_delay(root.path(), 43).is_err());
        assert_eq!(parse("1 2 3"), Some(2e-9));
    }

    #[test]
    fn this_process_has_one() {
        assert!(run_delay(Path::new("/proc"), std::process::id() as i32).is_ok());
    }
}
