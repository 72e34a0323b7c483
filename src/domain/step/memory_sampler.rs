//! Memory of one granule while it runs: PSS and RSS of every process, sampled on a timer
//! and at the waitpoints where memory peaks, RSS high-water marks (peaks between samples),
//! the cgroup's usage, and the admission rule that starts a worker only while memory allows
//! one more, by an estimate of one worker's memory that exists before the first clone runs
//! (clavrxorb's own first segment; priors from earlier granules, steps and `--profile`).
//!
//! Summing RSS counts the parent's shared pages once per clone; PSS charges each shared
//! page in shares, and the cgroup (what Slurm enforces) counts each page once. Reading is
//! done by `crate::domain::memory`; this module only decides what to read when.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::base::unix;
use crate::domain::fanout::machine::{FINAL, L1B, Pid, SAVE, SegmentEvent};
use crate::domain::memory::cgroup::{Limit, MemoryCgroup, Version};
use crate::domain::memory::proc::{Rollup, read_smaps_rollup, read_status};
use crate::domain::reports;

/// Where the estimate of one worker's private memory came from, from the farthest to the
/// nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Reports given with `--profile`.
    Profile,
    /// Step summaries of earlier runs of this campaign (`OUT/pseg-reports/step-*`).
    Campaign,
    /// Earlier granules of this step.
    Step,
    /// This granule's clavrxorb, processing its first segment alone before any clone ran.
    FirstSegment,
    /// A worker of this granule, measured.
    Worker,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Profile => "profile",
            Source::Campaign => "campaign",
            Source::Step => "step",
            Source::FirstSegment => "first-segment",
            Source::Worker => "worker",
        }
    }
}

/// Private memory one worker is expected to reach, and who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub bytes: u64,
    pub source: Source,
}

impl Estimate {
    /// The larger of two estimates (the safer one to admit by); on a tie, the measured one.
    fn max(a: Option<Estimate>, b: Option<Estimate>) -> Option<Estimate> {
        match (a, b) {
            (Some(a), Some(b)) if a.bytes > b.bytes => Some(a),
            (Some(_), Some(b)) => Some(b),
            (a, b) => a.or(b),
        }
    }

    pub fn to_report(self) -> reports::WorkerEstimate {
        reports::WorkerEstimate {
            bytes: self.bytes,
            source: self.source.as_str().into(),
        }
    }
}

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
    /// What earlier granules (of this campaign, then of this step) say one worker needs:
    /// admission's estimate until this granule has measured its own.
    pub prior: Cell<Option<Estimate>>,
    /// clavrxorb's own memory (its peak, shared pages included) in earlier granules of this
    /// step: what a new granule's clavrxorb is admitted with while others are in flight.
    pub base: Cell<Option<u64>>,
    /// What each granule in flight holds (its processes' summed PSS at their last samples)
    /// or, while its clavrxorb has not been measured, is expected to reach (the base), by
    /// its clavrxorb's pid: a per-task limit counts every granule's processes, not only
    /// those of the granule admitting a worker.
    pub in_flight: RefCell<HashMap<Pid, u64>>,
    /// The page walks of every granule in flight, against one budget for the step.
    pub walks: WalkBudget,
}

/// Page walks (`smaps_rollup`) take milliseconds each when clavrxorb is large, and the
/// driver serves no process meanwhile: every walk of the step, timed or at a waitpoint, of
/// whichever granule, counts against one budget of 1 % of the step's time, so granules in
/// flight side by side do not each spend their own.
#[derive(Debug, Clone)]
pub struct WalkBudget {
    since: Instant,
    spent: Cell<Duration>,
}

impl WalkBudget {
    pub fn new() -> WalkBudget {
        WalkBudget {
            since: Instant::now(),
            spent: Cell::new(Duration::ZERO),
        }
    }

    fn charge(&self, took: Duration) {
        self.spent.set(self.spent.get() + took);
    }

    /// Whether one more walk fits in the budget now.
    fn allows(&self) -> bool {
        self.allows_after(self.since.elapsed())
    }

    /// Whether the walks so far took at most 1 % of `elapsed` (nothing spent yet: always).
    fn allows_after(&self, elapsed: Duration) -> bool {
        self.spent.get() * 100 <= elapsed
    }
}

impl Default for WalkBudget {
    fn default() -> Self {
        WalkBudget::new()
    }
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
            prior: Cell::new(None),
            base: Cell::new(None),
            in_flight: RefCell::new(HashMap::new()),
            walks: WalkBudget::new(),
        }
    }

    /// Takes the largest worker estimate recorded by earlier steps of the campaign in the
    /// report folder `dir` (their `step-*` summaries; the newest few only, so a campaign of
    /// thousands of steps does not slow every start).
    pub fn learn_from_campaign(&self, dir: &Path) {
        let Some(bytes) = campaign_estimate(dir, 64) else {
            return;
        };
        self.learn(Estimate {
            bytes,
            source: Source::Campaign,
        });
    }

    /// Takes the largest private memory of one worker that the `--profile` reports record:
    /// done granules' sampled or high-water figures, step summaries' estimates.
    pub fn learn_from_profile(&self, paths: &[std::path::PathBuf]) -> Result<(), String> {
        let mut best = None;
        for path in paths {
            let mut files = Vec::new();
            report_files(path, &mut files)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if files.is_empty() {
                return Err(format!(
                    "no {} reports under {}",
                    reports::SUFFIX,
                    path.display()
                ));
            }
            for file in files {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let bytes = worker_bytes(&text)
                    .map_err(|e| format!("{} is not a pseg report: {e}", file.display()))?;
                best = best.max(bytes);
            }
        }
        if let Some(bytes) = best {
            self.learn(Estimate {
                bytes,
                source: Source::Profile,
            });
        }
        Ok(())
    }

    /// Keeps the larger of the prior and `e`.
    pub fn learn(&self, e: Estimate) {
        self.prior.set(Estimate::max(self.prior.get(), Some(e)));
    }

    /// Keeps the larger of the known base memory and `bytes`.
    pub fn learn_base(&self, bytes: u64) {
        if bytes > 0 {
            self.base.set(Some(self.base.get().unwrap_or(0).max(bytes)));
        }
    }

    /// Whether one more clavrxorb fits beside the granules in flight, admitted like a worker:
    /// its base memory from earlier granules, against the usage of every process in flight
    /// (the cgroups' working sets), 5 % of each limit kept free. Under a limit, granules do
    /// not overlap until one has been measured (slow start).
    pub fn may_start_granule(&self) -> bool {
        if !self.admission || !self.limited() {
            return true;
        }
        let Some(base) = self.base.get() else {
            return false;
        };
        let fits = |used: u64, limit: u64| used + base + limit / 20 <= limit;
        if let Some((cg, l)) = &self.limit_cgroup
            && !cg.working_set().is_ok_and(|u| fits(u, l.bytes))
        {
            return false;
        }
        if let Some(l) = &self.task_limit {
            // The cgroup's working set sees what samples missed; without a cgroup of our
            // own, the granules' samples (and bases) are what there is.
            let held = self.held_elsewhere(None);
            let used = match self.own.as_ref().map(|cg| cg.working_set()) {
                Some(Ok(u)) => u.max(held),
                Some(Err(_)) => return false,
                None => held,
            };
            if !fits(used, l.bytes) {
                return false;
            }
        }
        true
    }

    /// What the granules in flight other than `own`'s hold or are expected to reach.
    fn held_elsewhere(&self, own: Option<Pid>) -> u64 {
        self.in_flight
            .borrow()
            .iter()
            .filter(|&(&p, _)| Some(p) != own)
            .map(|(_, &b)| b)
            .sum()
    }

    /// Whether admission has a limit to work against.
    fn limited(&self) -> bool {
        self.limit_cgroup.is_some() || self.task_limit.is_some()
    }
}

/// `path` if it is a file, else every `*.pseg.yaml` under it.
fn report_files(path: &Path, found: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        found.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            report_files(&p, found)?;
        } else if p.to_string_lossy().ends_with(reports::SUFFIX) {
            found.push(p);
        }
    }
    Ok(())
}

/// One worker's private memory as a report records it: a done granule's larger of the sampled
/// and high-water figures, a step summary's estimate; `None` for anything else.
fn worker_bytes(text: &str) -> Result<Option<u64>, serde_yaml::Error> {
    #[derive(serde::Deserialize)]
    struct Any {
        kind: String,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        worker_estimate_bytes: Option<u64>,
        #[serde(default)]
        memory: Option<Mem>,
    }
    #[derive(serde::Deserialize)]
    struct Mem {
        #[serde(default)]
        worker_private_peak_bytes: u64,
        #[serde(default)]
        worker_private_hwm_bytes: u64,
    }
    let r: Any = serde_yaml::from_str(text)?;
    Ok(match r.kind.as_str() {
        "step" => r.worker_estimate_bytes,
        "granule" if r.status.as_deref().is_none_or(|s| s == "done") => r
            .memory
            .map(|m| m.worker_private_peak_bytes.max(m.worker_private_hwm_bytes))
            .filter(|&b| b > 0),
        _ => None,
    })
}

/// The largest `worker_estimate_bytes` of the `newest` most recent step summaries in `dir`.
fn campaign_estimate(dir: &Path, newest: usize) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Step {
        kind: String,
        #[serde(default)]
        worker_estimate_bytes: Option<u64>,
    }
    let mut steps: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("step-") && n.ends_with(reports::SUFFIX)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    steps.sort_by_key(|s| std::cmp::Reverse(s.0));
    steps
        .iter()
        .take(newest)
        .filter_map(|(_, p)| {
            let s: Step = serde_yaml::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
            (s.kind == "step")
                .then_some(s.worker_estimate_bytes)
                .flatten()
        })
        .max()
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    crate::base::unix::thread_cpu_time()
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
    /// RSS when it stopped at waitpoint 1, all of it shared with clavrxorb then.
    rss_at_clone: Option<u64>,
    /// Its RSS high-water mark less `rss_at_clone`: the private memory it reached, even
    /// between samples (pages it copied on write do not raise RSS, which `private_peak` sees).
    hwm_private: u64,
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
    worker_private_hwm: u64,
    parent_hwm: u64,
    /// What earlier granules said one worker needs.
    prior: Option<Estimate>,
    /// What this granule measured: the parent's growth (RSS high-water mark since it read
    /// segment 1) while it processed segment 1 alone, then the most a worker reached.
    measured: Option<Estimate>,
    /// The estimate of the first admission decision that held a worker back (or `None` for
    /// "no estimate yet: one worker only").
    pub held_by: Option<Option<Estimate>>,
    parent_rss_at_read: Option<u64>,
    /// clavrxorb has stopped to write once.
    parent_saved: bool,
    max_running: usize,
    own_usage_peak: u64,
    limit_usage_peak: u64,
    /// The report's `memory.over_time`, in seconds since this watch began.
    born: Instant,
    over_time: Vec<(f64, u64, u64)>,
}

impl Drop for MemWatch<'_> {
    fn drop(&mut self) {
        // Its granule has ended: what it held is free again.
        self.setup.in_flight.borrow_mut().remove(&self.parent);
    }
}

impl<'a> MemWatch<'a> {
    pub fn new(setup: &'a MemorySetup, parent: Pid) -> MemWatch<'a> {
        // Admitted like a worker: until sampled, it counts with the base earlier granules
        // measured.
        setup
            .in_flight
            .borrow_mut()
            .insert(parent, setup.base.get().unwrap_or(0));
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
            worker_private_hwm: 0,
            parent_hwm: 0,
            prior: setup.prior.get(),
            measured: None,
            held_by: None,
            parent_rss_at_read: None,
            parent_saved: false,
            max_running: 0,
            own_usage_peak: 0,
            limit_usage_peak: 0,
            born: Instant::now(),
            over_time: Vec::new(),
        }
    }

    /// Reads one process; a process that is gone by now is simply skipped.
    fn read(&mut self, pid: Pid) -> Option<Rollup> {
        let began = thread_cpu();
        let read = read_smaps_rollup(Path::new("/proc"), pid);
        self.setup.walks.charge(thread_cpu().saturating_sub(began));
        let r = read.ok()?;
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
        // Until its clavrxorb is past segment 1 it may still grow to the base.
        let base = match self.parent_hwm {
            0 => self.setup.base.get().unwrap_or(0),
            _ => 0,
        };
        self.setup
            .in_flight
            .borrow_mut()
            .insert(self.parent, pss.max(base));
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

    /// The estimate admission works with: the larger of the prior and this granule's own.
    pub fn estimate(&self) -> Option<Estimate> {
        Estimate::max(self.prior, self.measured)
    }

    /// clavrxorb's own peak in this granule: the base memory of the next ones.
    pub fn parent_peak(&self) -> u64 {
        self.parent_hwm.max(self.parent_pss_peak)
    }

    /// This granule's own measurement, for the next granules of the step.
    pub fn measured(&self) -> Option<Estimate> {
        self.measured
    }

    fn measure(&mut self, bytes: u64, source: Source) {
        self.measured = Estimate::max(self.measured, Some(Estimate { bytes, source }));
    }

    /// Reads a stopped process's RSS high-water mark: a worker's private peak is its mark
    /// less what it held (all shared) when cloned; clavrxorb's growth since it read segment
    /// 1 is one worker's private memory, measured before any clone runs.
    fn read_mark(&mut self, pid: Pid) {
        let mark = read_status(Path::new("/proc"), pid).ok();
        if pid == self.parent {
            let Some(mark) = mark else { return };
            self.parent_hwm = self.parent_hwm.max(mark.hwm);
            if let Some(before) = self.parent_rss_at_read {
                self.measure(mark.hwm.saturating_sub(before), Source::FirstSegment);
            }
            return;
        }
        let seen = self.procs.entry(pid).or_default();
        if let (Some(mark), Some(at_clone)) = (mark, seen.rss_at_clone) {
            seen.hwm_private = seen.hwm_private.max(mark.hwm.saturating_sub(at_clone));
        }
        let (hwm, peak) = (seen.hwm_private, seen.hwm_private.max(seen.private_peak));
        self.worker_private_hwm = self.worker_private_hwm.max(hwm);
        self.measure(peak, Source::Worker);
    }

    /// A process stopped at a waitpoint: sample it where its memory peaks.
    pub fn stopped(&mut self, pid: Pid, at: i32) {
        if pid == self.parent && at == L1B {
            // Only the first read matters (the baseline for the worker estimate); the timed
            // sampler covers the parent after that, off the per-segment path.
            if self.parent_rss_at_read.is_none() {
                // From here on the mark is segment 1's peak, not start-up's.
                let _ = unix::reset_peak_rss(Path::new("/proc"), pid);
                self.parent_rss_at_read = read_status(Path::new("/proc"), pid).ok().map(|m| m.rss);
                if self.parent_walk_due() {
                    self.read(pid);
                    let pss = self.update_sums();
                    let usage = self.read_cgroups();
                    self.push_point(pss, usage);
                }
            }
        } else if at == L1B {
            let rss = read_status(Path::new("/proc"), pid).ok().map(|m| m.rss);
            self.procs.entry(pid).or_default().rss_at_clone = rss;
        } else if at == FINAL {
            // A page walk takes milliseconds when clavrxorb is large (hundreds of MiB,
            // shared by every clone), all the while the process waits stopped and the driver
            // serves nobody else: beyond the granule's first worker, the walks share the
            // step's 1 % budget, and the cheap mark (below) measures every process all the
            // same.
            if !self.final_walk_due(pid) {
                self.read_mark(pid);
                return;
            }
            if self.read(pid).is_none() {
                return;
            }
            self.read_mark(pid);
            let pss = self.update_sums();
            let usage = self.read_cgroups();
            self.push_point(pss, usage);
        } else if at == SAVE {
            // Writing can peak too; the mark holds it, and reading it costs no page walk.
            self.read_mark(pid);
            if pid == self.parent {
                // Once a granule: clavrxorb has freed segment 1's working memory, and a
                // sample from before would hold the first workers back. (Without clones it
                // passes here every segment; later samples are the timed sampler's.)
                if !self.parent_saved {
                    self.parent_saved = true;
                    if self.parent_walk_due() {
                        self.read(pid);
                    }
                }
                // Its peak so far (start-up and segment 1) is what another clavrxorb needs:
                // the next granule may be admitted now, not only once this one has ended.
                self.setup.learn_base(self.parent_peak());
            }
        } else {
            self.procs.entry(pid).or_default();
        }
    }

    /// Whether a page walk is due: always when sampling is only at waitpoints, else while
    /// the step's walks fit their budget.
    fn walk_due(&self) -> bool {
        self.interval.is_none() || self.setup.walks.allows()
    }

    /// Whether clavrxorb gets a page walk at its first read or first save: also whenever
    /// admission under a limit works with the sample (else it is only the report's).
    fn parent_walk_due(&self) -> bool {
        (self.setup.admission && self.setup.limited()) || self.walk_due()
    }

    /// Whether a process at its last waitpoint gets a page walk: also for the granule's
    /// first worker.
    fn final_walk_due(&self, pid: Pid) -> bool {
        self.walk_due() || (pid != self.parent && self.worker_private_peak == 0)
    }

    pub fn segment(&mut self, pid: Pid, event: SegmentEvent) {
        match event {
            SegmentEvent::Started => {
                self.running.insert(pid);
                self.max_running = self.max_running.max(self.running.len());
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
    /// large processes are slow to read), and a tick waits while the step's walks (every
    /// granule's) are over their budget.
    pub fn tick(&mut self) {
        let Some(base) = self.setup.interval else {
            return;
        };
        if Instant::now() < self.next_sample || !self.setup.walks.allows() {
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

    /// Adds a point to the memory series: summed PSS and the working set of the cgroup
    /// whose limit applies (under Slurm, the job's). A cgroup without a limit above it holds
    /// whatever else runs there and enforces nothing: 0, not plotted.
    fn push_point(&mut self, pss: u64, limit_usage: Option<u64>) {
        let usage = limit_usage.unwrap_or(0);
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

    /// What the running workers hold beyond their last samples, and what they are still
    /// expected to grow by to reach `estimate`. A sample may predate a worker's growth: its
    /// RSS growth since it was cloned (`live_rss`, cheap to read) is taken when larger than
    /// the private memory sampled.
    fn running_beyond_samples(
        &self,
        estimate: u64,
        live_rss: impl Fn(Pid) -> Option<u64>,
    ) -> (u64, u64) {
        self.running.iter().fold((0, 0), |(unsampled, growth), &p| {
            let seen = self.procs.get(&p).copied().unwrap_or_default();
            let grown = match (seen.rss_at_clone, live_rss(p)) {
                (Some(at_clone), Some(rss)) => rss.saturating_sub(at_clone),
                _ => 0,
            };
            let holds = seen.last.private.max(grown);
            (
                unsampled + holds - seen.last.private,
                growth + estimate.saturating_sub(holds),
            )
        })
    }

    /// Whether one more worker fits under every known limit, each compared with usage at
    /// its own scope: the cgroup's limit with that cgroup's working set (every task of the
    /// job counts there), a per-task limit with the PSS of this task's processes. What is
    /// added: the estimate for the new worker and what running workers are still expected
    /// to grow; 5 % of each limit stays free. With no estimate yet, one worker runs alone
    /// until one exists (slow start).
    pub fn may_start_worker(&mut self) -> bool {
        self.admits(|p| read_status(Path::new("/proc"), p).ok().map(|m| m.rss))
    }

    /// [`Self::may_start_worker`], with each worker's RSS read by `live_rss`.
    fn admits(&mut self, live_rss: impl Fn(Pid) -> Option<u64>) -> bool {
        if !self.setup.admission || !self.setup.limited() {
            return true;
        }
        let Some(estimate) = self.estimate() else {
            self.held_by.get_or_insert(None);
            return false;
        };
        let (unsampled, growth) = self.running_beyond_samples(estimate.bytes, live_rss);
        let need = estimate.bytes + growth;
        let fits = |used: u64, limit: u64| used + need + limit / 20 <= limit;
        let mut fit = true;
        if let Some((_, l)) = &self.setup.limit_cgroup {
            let limit = l.bytes;
            if let Some(used) = self.read_cgroups()
                && !fits(used, limit)
            {
                fit = false;
            }
        }
        if let Some(l) = &self.setup.task_limit {
            // Unlike the cgroup's usage, the samples miss what workers allocated since.
            let pss: u64 = self.procs.values().map(|s| s.last.pss).sum::<u64>()
                + unsampled
                + self.setup.held_elsewhere(Some(self.parent));
            if !fits(pss, l.bytes) {
                fit = false;
            }
        }
        if !fit {
            self.held_by.get_or_insert(Some(estimate));
        }
        fit
    }

    /// The report's memory section.
    pub fn report(&self) -> reports::Memory {
        let limit_at = self.setup.limit_cgroup.as_ref().map(|(_, l)| l);
        let cgroup = self.setup.own.as_ref().map(|own| reports::Cgroup {
            version: match own.version {
                Version::V1 => "v1".into(),
                Version::V2 => "v2".into(),
            },
            dir: own.dir.clone(),
            usage_peak_bytes: self.own_usage_peak,
            kernel_peak_bytes: own.peak().ok().flatten(),
            limit_bytes: limit_at.map(|l| l.bytes),
            limit_at: limit_at.map(|l| l.at.clone()),
        });
        let cgroup_note = match (&self.setup.own, limit_at) {
            (Some(own), None) => Some(format!(
                "no memory limit on cgroup {} or above it: its usage counts whatever else runs there, and nothing enforces it, so it is not plotted",
                own.dir.display()
            )),
            (None, _) => Some("no memory cgroup found for this process".into()),
            (Some(_), Some(_)) => None,
        };
        // A worker's spike between samples shows in its high-water mark only: add what the
        // samples missed, once for each worker that ran at the same time.
        let missed = self
            .worker_private_hwm
            .saturating_sub(self.worker_private_peak);
        let hwm_peak = self.pss_peak + missed * self.max_running as u64;
        let sampled_peak = if self.setup.in_slurm {
            self.pss_peak.max(self.own_usage_peak)
        } else {
            self.pss_peak
        };
        let mean_interval = self.interval.unwrap_or_default().as_secs_f64();
        reports::Memory {
            peak_bytes: sampled_peak.max(hwm_peak),
            pss_peak_bytes: self.pss_peak,
            hwm_peak_bytes: hwm_peak,
            rss_peak_bytes: self.rss_peak,
            parent_pss_peak_bytes: self.parent_pss_peak,
            parent_hwm_bytes: self.parent_hwm,
            worker_private_peak_bytes: self.worker_private_peak,
            worker_private_hwm_bytes: self.worker_private_hwm,
            worker_estimate: self.estimate().map(Estimate::to_report),
            held_by: self.held_by.map(|e| match e {
                Some(e) => format!(
                    "{} a worker ({} estimate)",
                    crate::base::units::Size(e.bytes),
                    e.source.as_str()
                ),
                None => "no estimate of a worker's memory yet: one worker at a time".into(),
            }),
            limit_bytes: self.setup.limit.as_ref().map(|l| l.bytes),
            limit_source: self.setup.limit.as_ref().map(|l| l.source.clone()),
            cgroup,
            cgroup_note,
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

    fn setup(task_limit: Option<u64>) -> MemorySetup {
        MemorySetup {
            interval: None,
            admission: true,
            limit: None,
            task_limit: task_limit.map(|bytes| MemLimit {
                bytes,
                source: "--mem-budget".into(),
            }),
            own: None,
            limit_cgroup: None,
            in_slurm: false,
            prior: Cell::new(None),
            base: Cell::new(None),
            in_flight: RefCell::new(HashMap::new()),
            walks: WalkBudget::new(),
        }
    }

    #[test]
    fn a_new_clavrxorb_is_admitted_with_the_base_memory_earlier_granules_measured() {
        let mib = 1u64 << 20;
        assert!(
            setup(None).may_start_granule(),
            "no limit, nothing to hold against"
        );
        let dir = tempfile::tempdir().unwrap();
        let usage = |bytes: u64| {
            std::fs::write(dir.path().join("memory.current"), bytes.to_string()).unwrap()
        };
        std::fs::write(dir.path().join("memory.stat"), "inactive_file 0\n").unwrap();
        let mut s = setup(Some(1000 * mib));
        s.own = Some(MemoryCgroup::at(
            Version::V2,
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
        ));
        usage(100 * mib);
        assert!(
            !s.may_start_granule(),
            "slow start: no granule measured yet"
        );
        s.learn_base(300 * mib);
        s.learn_base(200 * mib);
        assert_eq!(s.base.get(), Some(300 * mib), "the largest base is kept");
        assert!(
            s.may_start_granule(),
            "100 + 300 MiB and 5 % fit in 1000 MiB"
        );
        usage(700 * mib);
        assert!(!s.may_start_granule(), "700 + 300 MiB do not");
    }

    #[test]
    fn a_task_limit_counts_every_granule_in_flight_a_new_clavrxorb_at_its_base() {
        let mib = 1u64 << 20;
        let s = setup(Some(1000 * mib));
        s.learn(Estimate {
            bytes: 100 * mib,
            source: Source::Campaign,
        });
        // Pids with no /proc entry: nothing is read, only what the test sets.
        let mut a = MemWatch::new(&s, i32::MAX - 1);
        assert!(a.admits(|_| None), "alone: 100 MiB and 5 % fit");
        s.learn_base(870 * mib);
        let b = MemWatch::new(&s, i32::MAX - 2);
        assert!(
            !a.admits(|_| None),
            "a clavrxorb starting up counts with its base: 870 + 100 MiB and 5 % do not fit"
        );
        drop(b);
        assert!(
            a.admits(|_| None),
            "its granule ended: the room is free again"
        );
        assert!(
            s.may_start_granule(),
            "nothing sampled yet: 870 MiB and 5 % fit"
        );
        a.procs.get_mut(&a.parent).unwrap().last.pss = 200 * mib;
        a.parent_hwm = 1;
        a.update_sums();
        assert_eq!(s.held_elsewhere(None), 200 * mib);
        assert!(
            !s.may_start_granule(),
            "200 MiB in flight and a new clavrxorb's 870 MiB do not fit"
        );
        drop(a);
        assert_eq!(s.held_elsewhere(None), 0);
    }

    #[test]
    fn without_an_estimate_one_worker_runs_alone_then_the_estimate_admits() {
        let mib = 1u64 << 20;
        let s = setup(Some(1000 * mib));
        // No process of ours is read: pid 0 has no /proc entry.
        let mut w = MemWatch::new(&s, 0);
        assert!(!w.may_start_worker(), "slow start");
        assert_eq!(w.held_by, Some(None));
        s.learn(Estimate {
            bytes: 100 * mib,
            source: Source::Campaign,
        });
        let mut w = MemWatch::new(&s, 0);
        assert!(w.may_start_worker());
        assert_eq!(w.estimate().unwrap().source, Source::Campaign);
        // This granule's own, larger measurement takes over, and it does not fit.
        w.measure(990 * mib, Source::FirstSegment);
        assert!(!w.may_start_worker());
        assert_eq!(
            w.held_by,
            Some(Some(Estimate {
                bytes: 990 * mib,
                source: Source::FirstSegment
            }))
        );
        // Without a limit admission has nothing to hold against.
        let free = setup(None);
        assert!(MemWatch::new(&free, 0).may_start_worker());
    }

    #[test]
    fn workers_grown_since_their_last_sample_count_against_a_task_limit() {
        let mib = 1u64 << 20;
        // 250 MiB, 80 MiB a worker: two workers fit, three do not.
        let s = setup(Some(250 * mib));
        let mut w = MemWatch::new(&s, 0);
        w.measure(80 * mib, Source::FirstSegment);
        w.procs.get_mut(&0).unwrap().last.pss = 10 * mib;
        let at_clone = 30 * mib;
        for pid in [11, 12] {
            w.segment(pid, SegmentEvent::Started);
            w.procs.entry(pid).or_default().rss_at_clone = Some(at_clone);
        }
        // Both just continued, nothing allocated yet: each will grow by a whole worker.
        assert!(!w.admits(|_| Some(at_clone)));
        // Both hold their 80 MiB, which no sample has seen yet.
        assert!(!w.admits(|_| Some(at_clone + 80 * mib)));
        // Sampled at their peak: the same memory, counted once.
        for pid in [11, 12] {
            let seen = w.procs.get_mut(&pid).unwrap();
            seen.last.private = 80 * mib;
            seen.last.pss = 80 * mib;
        }
        assert!(!w.admits(|_| Some(at_clone + 80 * mib)));
        // One has written its segment and is gone: a second fits beside the other.
        w.segment(12, SegmentEvent::Written { lines: 10 });
        w.gone(12);
        assert!(w.admits(|_| Some(at_clone + 80 * mib)));
        // Unsampled, a grown worker still counts once, not twice.
        w.procs.get_mut(&11).unwrap().last = Rollup::default();
        assert!(w.admits(|_| Some(at_clone + 80 * mib)));
    }

    #[test]
    fn page_walks_cost_at_most_one_percent_of_the_steps_time() {
        let b = WalkBudget::new();
        assert!(
            b.allows_after(Duration::ZERO),
            "the step's first walk is free"
        );
        b.charge(Duration::from_millis(10));
        assert!(!b.allows_after(Duration::from_millis(999)));
        assert!(b.allows_after(Duration::from_secs(1)));
    }

    #[test]
    fn granules_in_flight_spend_one_walk_budget_between_them() {
        let me = std::process::id() as Pid;
        let mut s = setup(None);
        s.interval = Some(Duration::from_millis(1));
        let mut a = MemWatch::new(&s, me);
        a.tick();
        assert_eq!(a.samples, 1, "a granule samples within the budget");
        // Another granule in flight spent the step's budget for a long time to come.
        s.walks.charge(Duration::from_secs(3600));
        let mut b = MemWatch::new(&s, me);
        b.tick();
        assert_eq!(
            b.samples, 0,
            "a tick waits while the step's walks are over budget"
        );
        a.next_sample = Instant::now();
        a.tick();
        assert_eq!(a.samples, 1, "the older granule waits too");
        // Without a limit, clavrxorb's waitpoint walks are the report's alone: budgeted too.
        b.stopped(me, SAVE);
        assert_eq!(b.procs[&me].last.pss, 0);
        let mut fresh = setup(None);
        fresh.interval = Some(Duration::from_millis(1));
        let mut c = MemWatch::new(&fresh, me);
        c.stopped(me, SAVE);
        assert!(
            c.procs[&me].last.pss > 0,
            "within the budget the walk is taken"
        );
        // With timed sampling off the waitpoints are the only samples: they walk regardless.
        let off = setup(None);
        off.walks.charge(Duration::from_secs(3600));
        let mut d = MemWatch::new(&off, me);
        d.stopped(me, SAVE);
        assert!(d.procs[&me].last.pss > 0, "sampling only at waitpoints");
    }

    #[test]
    fn the_campaign_prior_is_the_largest_of_the_newest_step_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let step = |name: &str, estimate: Option<u64>| {
            let r = reports::StepReport {
                schema: reports::SCHEMA.into(),
                kind: "step".into(),
                host: "node1".into(),
                slurm: None,
                started_unix: 0.0,
                wall_seconds: 1.0,
                driver_cpu_seconds: 0.1,
                granules: 1,
                done: 1,
                failed: 0,
                interrupted: 0,
                peak_bytes: 1,
                worker_estimate_bytes: estimate,
                cgroup_kernel_peak_bytes: None,
                reports: Vec::new(),
            };
            reports::write(dir.path(), name, &r).unwrap();
        };
        assert_eq!(campaign_estimate(dir.path(), 64), None);
        step("step-1.0.pseg.yaml", Some(5));
        step("step-2.0.pseg.yaml", Some(9));
        step("step-3.0.pseg.yaml", None);
        std::fs::write(dir.path().join("g.pseg.yaml"), "not read").unwrap();
        assert_eq!(campaign_estimate(dir.path(), 64), Some(9));
        let s = setup(None);
        s.learn_from_campaign(dir.path());
        assert_eq!(
            s.prior.get(),
            Some(Estimate {
                bytes: 9,
                source: Source::Campaign
            })
        );
        assert_eq!(campaign_estimate(&dir.path().join("missing"), 64), None);
    }

    #[test]
    fn profile_reports_give_the_larger_worker_figure_of_done_granules() {
        let dir = tempfile::tempdir().unwrap();
        let mut done = crate::domain::page::testing::report("a.gran");
        done.memory.worker_private_peak_bytes = 70;
        done.memory.worker_private_hwm_bytes = 80;
        reports::write(&dir.path().join("r"), "a.gran.pseg.yaml", &done).unwrap();
        let mut failed = crate::domain::page::testing::report("b.gran");
        failed.status = reports::Verdict::Failed;
        failed.memory.worker_private_hwm_bytes = 500;
        reports::write(&dir.path().join("r"), "b.gran.pseg.yaml", &failed).unwrap();
        let s = setup(None);
        s.learn_from_profile(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            s.prior.get(),
            Some(Estimate {
                bytes: 80,
                source: Source::Profile
            })
        );
        let e = s
            .learn_from_profile(&[dir.path().join("nothing-here")])
            .unwrap_err();
        assert!(e.contains("nothing-here"), "{e}");
        std::fs::write(dir.path().join("r/junk.pseg.yaml"), "[1, 2]").unwrap();
        let e = s.learn_from_profile(&[dir.path().join("r")]).unwrap_err();
        assert!(e.contains("junk.pseg.yaml is not a pseg report"), "{e}");
    }
}
