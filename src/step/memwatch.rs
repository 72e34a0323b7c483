//! Memory of one granule while it runs: PSS and RSS of every process, sampled on a timer
//! and at the waitpoints where memory peaks, the cgroup's usage, and the admission rule that
//! starts a worker only while memory allows one more.
//!
//! Summing RSS counts the parent's shared pages once per clone; PSS charges each shared
//! page in shares, and the cgroup (what Slurm enforces) counts each page once. Reading is
//! done by `crate::memory`; this module only decides what to read when.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fanout::machine::{FINAL, L1B, Pid, SegmentEvent};
use crate::memory::cgroup::{Limit, MemoryCgroup, Version};
use crate::memory::proc::{Rollup, read_smaps_rollup};
use crate::report;

/// Where the memory limit that admission works against came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemLimit {
    pub bytes: u64,
    pub source: String,
}

/// What a step knows about memory before any granule runs.
#[derive(Debug, Clone)]
pub struct MemorySetup {
    /// `None` turns timed sampling off (waitpoint samples stay: admission needs them).
    pub interval: Option<Duration>,
    pub admission: bool,
    /// The tightest limit known, for messages and reports.
    pub limit: Option<MemLimit>,
    /// A limit for this task alone (Slurm's per-task memory, or --mem-budget): compared with
    /// the PSS of this task's processes.
    pub task_limit: Option<MemLimit>,
    /// This process's own memory cgroup, and the one holding the limit.
    pub own: Option<MemoryCgroup>,
    pub limit_cgroup: Option<(MemoryCgroup, Limit)>,
    /// Under Slurm the own cgroup is the task's: its usage is the figure to size by.
    pub in_slurm: bool,
}

impl MemorySetup {
    /// Finds the cgroup and the tightest limit among the cgroup's, Slurm's and `budget`.
    pub fn discover(
        interval: Option<Duration>,
        admission: bool,
        budget: Option<u64>,
        cpus: usize,
    ) -> MemorySetup {
        let own = MemoryCgroup::discover(Path::new("/"), "self")
            .ok()
            .flatten();
        let limit_cgroup = own.as_ref().and_then(|cg| {
            let limit = cg.limit().ok()??;
            let at = MemoryCgroup::at(cg.version, limit.at.clone(), cg.mount().to_path_buf());
            Some((at, limit))
        });
        let env = |k: &str| std::env::var(k).ok();
        let mut task: Vec<MemLimit> = Vec::new();
        task.extend(slurm_limit(
            env("SLURM_MEM_PER_NODE").as_deref(),
            env("SLURM_MEM_PER_CPU").as_deref(),
            cpus,
        ));
        if let Some(b) = budget {
            task.push(MemLimit {
                bytes: b,
                source: "--mem-budget".into(),
            });
        }
        let task_limit = task.into_iter().min_by_key(|l| l.bytes);
        let cgroup_limit = limit_cgroup.as_ref().map(|(_, l)| MemLimit {
            bytes: l.bytes,
            source: format!("cgroup {}", l.at.display()),
        });
        let limit = cgroup_limit
            .into_iter()
            .chain(task_limit.clone())
            .min_by_key(|l| l.bytes);
        MemorySetup {
            interval,
            admission,
            limit,
            task_limit,
            own,
            limit_cgroup,
            in_slurm: env("SLURM_JOB_ID").is_some(),
        }
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// Slurm's memory for this step from its environment (values in MiB).
fn slurm_limit(per_node: Option<&str>, per_cpu: Option<&str>, cpus: usize) -> Option<MemLimit> {
    let mib = |v: Option<&str>| v?.trim().parse::<u64>().ok().filter(|&n| n > 0);
    if let Some(n) = mib(per_node) {
        return Some(MemLimit {
            bytes: n << 20,
            source: "SLURM_MEM_PER_NODE".into(),
        });
    }
    mib(per_cpu).map(|n| MemLimit {
        bytes: (n << 20) * cpus as u64,
        source: format!("SLURM_MEM_PER_CPU x {cpus} CPUs"),
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    last: Rollup,
    private_peak: u64,
}

/// The memory watch of one granule.
pub struct MemWatch<'a> {
    setup: &'a MemorySetup,
    parent: Pid,
    procs: HashMap<Pid, Seen>,
    running: HashSet<Pid>,
    next_sample: Instant,
    interval: Option<Duration>,
    samples: u64,
    pss_peak: u64,
    rss_peak: u64,
    parent_pss_peak: u64,
    worker_private_peak: u64,
    /// Private memory one worker is expected to reach: first from the parent's own first
    /// segment (its RSS growth while processing), then the largest a worker really reached.
    estimate: Option<u64>,
    parent_rss_at_read: Option<u64>,
    own_usage_peak: u64,
    limit_usage_peak: u64,
    /// The report's `memory.over_time`, in seconds since this watch began.
    born: Instant,
    over_time: Vec<(f64, u64, u64)>,
}

impl<'a> MemWatch<'a> {
    pub fn new(setup: &'a MemorySetup, parent: Pid) -> MemWatch<'a> {
        MemWatch {
            setup,
            parent,
            procs: HashMap::from([(parent, Seen::default())]),
            running: HashSet::new(),
            next_sample: Instant::now(),
            interval: setup.interval,
            samples: 0,
            pss_peak: 0,
            rss_peak: 0,
            parent_pss_peak: 0,
            worker_private_peak: 0,
            estimate: None,
            parent_rss_at_read: None,
            own_usage_peak: 0,
            limit_usage_peak: 0,
            born: Instant::now(),
            over_time: Vec::new(),
        }
    }

    /// Reads one process; a process that is gone by now is simply skipped.
    fn read(&mut self, pid: Pid) -> Option<Rollup> {
        let r = read_smaps_rollup(Path::new("/proc"), pid).ok()?;
        let seen = self.procs.entry(pid).or_default();
        seen.last = r;
        seen.private_peak = seen.private_peak.max(r.private);
        if pid == self.parent {
            self.parent_pss_peak = self.parent_pss_peak.max(r.pss);
        } else {
            self.worker_private_peak = self.worker_private_peak.max(seen.private_peak);
        }
        Some(r)
    }

    /// Counts a sample; the value is the summed PSS.
    fn update_sums(&mut self) -> u64 {
        let (pss, rss) = self
            .procs
            .values()
            .fold((0, 0), |(p, r), s| (p + s.last.pss, r + s.last.rss));
        self.pss_peak = self.pss_peak.max(pss);
        self.rss_peak = self.rss_peak.max(rss);
        self.samples += 1;
        pss
    }

    /// Working sets (usage less inactive file cache) of our own cgroup and of the one that
    /// holds the limit; returns the latter.
    fn read_cgroups(&mut self) -> Option<u64> {
        if let Some(own) = &self.setup.own
            && let Ok(u) = own.working_set()
        {
            self.own_usage_peak = self.own_usage_peak.max(u);
        }
        let (cg, _) = self.setup.limit_cgroup.as_ref()?;
        let u = cg.working_set().ok()?;
        self.limit_usage_peak = self.limit_usage_peak.max(u);
        Some(u)
    }

    /// A process stopped at a waitpoint: sample it where its memory peaks.
    pub fn stopped(&mut self, pid: Pid, at: i32) {
        if pid == self.parent && at == L1B {
            // Only the first read matters (the baseline for the worker estimate); the timed
            // sampler covers the parent after that, off the per-segment path.
            if self.parent_rss_at_read.is_none() {
                self.parent_rss_at_read = self.read(pid).map(|r| r.rss);
                let pss = self.update_sums();
                let usage = self.read_cgroups();
                self.push_point(pss, usage);
            }
        } else if at == FINAL {
            let Some(r) = self.read(pid) else { return };
            if pid == self.parent {
                if let Some(before) = self.parent_rss_at_read {
                    self.estimate.get_or_insert(r.rss.saturating_sub(before));
                }
            } else {
                let peak = self.procs[&pid].private_peak;
                self.estimate = Some(self.estimate.map_or(peak, |e| e.max(peak)));
            }
            let pss = self.update_sums();
            let usage = self.read_cgroups();
            self.push_point(pss, usage);
        } else {
            self.procs.entry(pid).or_default();
        }
    }

    pub fn segment(&mut self, pid: Pid, event: SegmentEvent) {
        match event {
            SegmentEvent::Started => {
                self.running.insert(pid);
            }
            SegmentEvent::Written { .. } => {
                self.running.remove(&pid);
            }
            _ => {}
        }
    }

    pub fn gone(&mut self, pid: Pid) {
        self.procs.remove(&pid);
        self.running.remove(&pid);
    }

    /// Samples every live process when the interval is up. The interval stretches so the
    /// sampler never takes more than 1 % of the wall time (smaps_rollup walks page tables:
    /// large processes are slow to read).
    pub fn tick(&mut self) {
        let Some(base) = self.setup.interval else {
            return;
        };
        if Instant::now() < self.next_sample {
            return;
        }
        let began = thread_cpu();
        let pids: Vec<Pid> = self.procs.keys().copied().collect();
        let mut read_any = false;
        for pid in pids {
            if self.read(pid).is_some() {
                read_any = true;
            } else {
                self.procs.remove(&pid);
            }
        }
        let pss = self.update_sums();
        let usage = self.read_cgroups();
        // A tick after every process is gone (the granule's end) measured nothing.
        if read_any {
            self.push_point(pss, usage);
        }
        // CPU time, not wall time: on a busy node the sampler is often preempted mid-read,
        // which costs the workers nothing.
        let took = thread_cpu().saturating_sub(began);
        let interval = base.max(took * 100);
        self.interval = Some(interval);
        self.next_sample = Instant::now() + interval;
    }

    /// Adds a point to the memory series: summed PSS and the cgroup's usage (at the level
    /// of the limit, else this process's own cgroup).
    fn push_point(&mut self, pss: u64, limit_usage: Option<u64>) {
        let usage = limit_usage
            .or_else(|| self.setup.own.as_ref()?.working_set().ok())
            .unwrap_or(0);
        self.over_time
            .push((self.born.elapsed().as_secs_f64(), pss, usage));
        if self.over_time.len() >= 1024 {
            // Halve the series, keeping the higher of each pair: peaks survive.
            self.over_time = self
                .over_time
                .chunks(2)
                .map(|p| {
                    p.iter()
                        .fold(p[0], |a, b| (a.0, a.1.max(b.1), a.2.max(b.2)))
                })
                .collect();
        }
    }

    /// Whether one more worker fits under every known limit, each compared with usage at
    /// its own scope: the cgroup's limit with that cgroup's working set (every task of the
    /// job counts there), a per-task limit with the PSS of this task's processes. What is
    /// added: the estimate for the new worker and what running workers are still expected
    /// to grow; 5 % of each limit stays free.
    pub fn may_start_worker(&mut self) -> bool {
        if !self.setup.admission {
            return true;
        }
        let estimate = self.estimate.unwrap_or(0);
        let growth: u64 = self
            .running
            .iter()
            .map(|p| {
                let now = self.procs.get(p).map_or(0, |s| s.last.private);
                estimate.saturating_sub(now)
            })
            .sum();
        let need = estimate + growth;
        let fits = |used: u64, limit: u64| used + need + limit / 20 <= limit;
        if let Some((_, l)) = &self.setup.limit_cgroup {
            let limit = l.bytes;
            if let Some(used) = self.read_cgroups()
                && !fits(used, limit)
            {
                return false;
            }
        }
        if let Some(l) = &self.setup.task_limit {
            let pss: u64 = self.procs.values().map(|s| s.last.pss).sum();
            if !fits(pss, l.bytes) {
                return false;
            }
        }
        true
    }

    /// The report's memory section.
    pub fn report(&self) -> report::Memory {
        let cgroup = self.setup.own.as_ref().map(|own| {
            let limit = self.setup.limit_cgroup.as_ref().map(|(_, l)| l);
            report::Cgroup {
                version: match own.version {
                    Version::V1 => "v1".into(),
                    Version::V2 => "v2".into(),
                },
                dir: own.dir.clone(),
                usage_peak_bytes: self.own_usage_peak,
                kernel_peak_bytes: own.peak().ok().flatten(),
                limit_bytes: limit.map(|l| l.bytes),
                limit_at: limit.map(|l| l.at.clone()),
            }
        });
        let peak_bytes = if self.setup.in_slurm {
            self.pss_peak.max(self.own_usage_peak)
        } else {
            self.pss_peak
        };
        let mean_interval = self.interval.unwrap_or_default().as_secs_f64();
        report::Memory {
            peak_bytes,
            pss_peak_bytes: self.pss_peak,
            rss_peak_bytes: self.rss_peak,
            parent_pss_peak_bytes: self.parent_pss_peak,
            worker_private_peak_bytes: self.worker_private_peak,
            limit_bytes: self.setup.limit.as_ref().map(|l| l.bytes),
            limit_source: self.setup.limit.as_ref().map(|l| l.source.clone()),
            cgroup,
            samples: self.samples,
            sample_interval_seconds: mean_interval,
            over_time: self.over_time.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_memory_comes_per_node_or_per_cpu_in_mib() {
        assert_eq!(
            slurm_limit(Some("2048"), Some("100"), 4),
            Some(MemLimit {
                bytes: 2 << 30,
                source: "SLURM_MEM_PER_NODE".into()
            })
        );
        assert_eq!(slurm_limit(None, Some("512"), 4).unwrap().bytes, 2 << 30);
        assert_eq!(slurm_limit(Some("junk"), None, 4), None);
        assert_eq!(slurm_limit(Some("0"), None, 4), None);
    }
}
