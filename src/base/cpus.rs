//! How many CPUs this process may use: the affinity mask and cgroup quota (as the standard
//! library reads them), capped by Slurm's per-task allocation when running inside a job.

/// CPUs available to this process.
pub fn available() -> usize {
    let os = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slurm = std::env::var("SLURM_CPUS_PER_TASK").ok();
    cap(os, slurm.as_deref())
}

/// `os` capped by a Slurm CPUs-per-task value when it is a positive number.
fn cap(os: usize, slurm_cpus_per_task: Option<&str>) -> usize {
    match slurm_cpus_per_task.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n > 0 => os.min(n),
        _ => os,
    }
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::cap;

    #[test]
    fn slurm_allocation_caps_the_affinity_count() {
        assert_eq!(cap(8, Some("2")), 2);
        assert_eq!(cap(2, Some("8")), 2);
        assert_eq!(cap(4, None), 4);
        assert_eq!(cap(4, Some("junk")), 4);
        assert_eq!(cap(4, Some("0")), 4);
    }

    #[test]
    fn at_least_one() {
        assert!(super::available() >= 1);
    }
}
