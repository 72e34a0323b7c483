//! Is a claim's holder provably dead? The takeover rule's evidence, and nothing else.
//!
//! - Same host, same boot, same pid namespace: `/proc/PID/stat` is missing, shows another
//!   start time (the pid was reused), or shows a zombie -> dead; otherwise alive.
//! - Same host but another boot id -> dead (the host rebooted).
//! - Otherwise (another host, or a pid namespace we cannot see into): its Slurm job has
//!   ended -> dead. `scontrol show job ID -o` is asked with a deadline; a final state
//!   (COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY,
//!   BOOT_FAIL, DEADLINE) or "Invalid job id" (the controller forgot it) proves it. Our own
//!   job is running by definition — unless the holder was an earlier run of it: Slurm
//!   requeues a job (after a node failure) under the same id with a higher
//!   `SLURM_RESTART_COUNT`, so a holder of our job with a lower restart count is dead.
//!   No Slurm ids, no scontrol, no answer: not provably dead.
//!
//! [`parse_show_job`] is pure; [`Liveness::judge`] reads `/proc` under a root and runs
//! scontrol (its own child, by handle, killed at the deadline). Answers per job are cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::base::proc_stat;
use crate::domain::ledger::holder::Holder;

/// Job states after which no process of the job runs.
const FINAL_STATES: [&str; 10] = [
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
    "REVOKED",
];

/// How long one `scontrol show job` may take.
pub const SCONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long "still running" (or "no answer") is believed before asking again.
const RECHECK: Duration = Duration::from_secs(30);

/// The verdict on a holder; the text says why, for messages and takeover files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Dead(String),
    Alive(String),
    /// Cannot tell: treated as alive.
    Unknown(String),
}

/// What `scontrol show job` says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFate {
    /// Ended, with the state (or "unknown to slurmctld").
    Ended(String),
    /// Pending, running, completing, suspended...: its processes may live.
    Active(String),
}

/// Reads `scontrol show job ID -o`: one line per job (several for an array's master id).
/// `None` when the output proves nothing (scontrol failed otherwise, or no state).
pub fn parse_show_job(success: bool, stdout: &str, stderr: &str) -> Option<JobFate> {
    if stderr.contains("Invalid job id") || stdout.contains("Invalid job id") {
        return Some(JobFate::Ended(
            "unknown to slurmctld (ended long ago)".into(),
        ));
    }
    if !success {
        return None;
    }
    let states: Vec<&str> = stdout
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("JobState="))
        .collect();
    if states.is_empty() {
        return None;
    }
    match states.iter().find(|s| !FINAL_STATES.contains(s)) {
        Some(active) => Some(JobFate::Active((*active).to_string())),
        None => Some(JobFate::Ended(states.join(","))),
    }
}

/// Judges holders; one per ledger, so scontrol answers are shared.
pub struct Liveness {
    proc_root: PathBuf,
    /// `Some(None)`: decided there is no scontrol.
    scontrol: OnceLock<Option<PathBuf>>,
    timeout: Duration,
    jobs: Mutex<HashMap<String, (Instant, Option<JobFate>)>>,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness::new(Path::new("/proc"), None)
    }
}

impl Liveness {
    /// `scontrol`: `Some(Some(path))` to use that one, `Some(None)` for none, `None` to look
    /// it up on PATH when first needed.
    pub fn new(proc_root: &Path, scontrol: Option<Option<PathBuf>>) -> Liveness {
        let cell = OnceLock::new();
        if let Some(choice) = scontrol {
            let _ = cell.set(choice);
        }
        Liveness {
            proc_root: proc_root.to_path_buf(),
            scontrol: cell,
            timeout: SCONTROL_TIMEOUT,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// The takeover rule (see the module comment): is `holder` provably dead, seen by `me`?
    pub fn judge(&self, holder: &Holder, me: &Holder) -> Verdict {
        if holder.host == me.host {
            let other_boot = matches!((&holder.boot_id, &me.boot_id), (Some(a), Some(b)) if a != b);
            if other_boot {
                return Verdict::Dead(format!("{} has rebooted since", holder.host));
            }
            let same_ns = match (&holder.pid_namespace, &me.pid_namespace) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if same_ns {
                match self.local(holder) {
                    Verdict::Unknown(_) => {}
                    known => return known,
                }
            }
        }
        self.by_slurm(holder, me)
    }

    fn local(&self, holder: &Holder) -> Verdict {
        let path = proc_stat::path(&self.proc_root, holder.pid);
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Verdict::Dead(format!("pid {} is gone", holder.pid))
            }
            Err(e) => Verdict::Unknown(format!("cannot read {}: {e}", path.display())),
            Ok(text) => match proc_stat::parse(&text) {
                None => Verdict::Unknown(format!("cannot parse {}", path.display())),
                Some(s) if s.start_time != holder.pid_start_time => Verdict::Dead(format!(
                    "pid {} is now another process (started at tick {}, not {})",
                    holder.pid, s.start_time, holder.pid_start_time
                )),
                Some(s) if s.exited() => {
                    Verdict::Dead(format!("pid {} has exited (state {})", holder.pid, s.state))
                }
                Some(_) => Verdict::Alive(format!("pid {} is running", holder.pid)),
            },
        }
    }

    fn by_slurm(&self, holder: &Holder, me: &Holder) -> Verdict {
        let Some(job) = holder.slurm.as_ref().and_then(|s| s.job_id.clone()) else {
            return Verdict::Unknown(format!(
                "{} is on another host and not in a Slurm job",
                holder.describe()
            ));
        };
        if me.slurm.as_ref().and_then(|s| s.job_id.as_deref()) == Some(job.as_str()) {
            let (theirs, ours) = (holder.run_of_job(), me.run_of_job());
            if theirs < ours {
                return Verdict::Dead(format!(
                    "Slurm job {job} was requeued: the claim is from its run {theirs}, \
                     this is run {ours} (SLURM_RESTART_COUNT)"
                ));
            }
            return Verdict::Alive(format!("Slurm job {job} is our own job"));
        }
        match self.job_fate(&job) {
            Some(JobFate::Ended(state)) => {
                Verdict::Dead(format!("Slurm job {job} ended ({state})"))
            }
            Some(JobFate::Active(state)) => Verdict::Alive(format!("Slurm job {job} is {state}")),
            None => Verdict::Unknown(format!(
                "scontrol cannot tell whether Slurm job {job} ended"
            )),
        }
    }

    fn job_fate(&self, job: &str) -> Option<JobFate> {
        let now = Instant::now();
        if let Some((asked, fate)) = self.jobs.lock().ok()?.get(job) {
            let settled = matches!(fate, Some(JobFate::Ended(_)));
            if settled || now.duration_since(*asked) < RECHECK {
                return fate.clone();
            }
        }
        let scontrol = self
            .scontrol
            .get_or_init(|| which::which("scontrol").ok())
            .clone()?;
        let fate = show_job(&scontrol, job, self.timeout);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(job.to_string(), (now, fate.clone()));
        }
        fate
    }
}

/// Runs `scontrol show job JOB -o`, killing it at the deadline.
fn show_job(scontrol: &Path, job: &str, timeout: Duration) -> Option<JobFate> {
    let mut cmd = Command::new(scontrol);
    cmd.args(["show", "job", job, "-o"]);
    let out = crate::base::timed_command::output_within(&mut cmd, timeout).ok()??;
    parse_show_job(
        out.status.success(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::identity::SlurmIds;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_scontrol_answers() {
        let line = "JobId=991 JobName=pseg-list UserId=u(1) JobState=RUNNING Reason=None";
        assert_eq!(
            parse_show_job(true, line, ""),
            Some(JobFate::Active("RUNNING".into()))
        );
        for state in [
            "COMPLETED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
        ] {
            let text = format!("JobId=991 JobState={state} Reason=x\n");
            assert_eq!(
                parse_show_job(true, &text, ""),
                Some(JobFate::Ended(state.into()))
            );
        }
        assert_eq!(
            parse_show_job(true, "JobId=1 JobState=COMPLETING Reason=None", ""),
            Some(JobFate::Active("COMPLETING".into())),
            "completing jobs may still have processes"
        );
        let array =
            "JobId=5 ArrayJobId=5 JobState=COMPLETED\nJobId=6 ArrayJobId=5 JobState=RUNNING\n";
        assert_eq!(
            parse_show_job(true, array, ""),
            Some(JobFate::Active("RUNNING".into()))
        );
        assert!(matches!(
            parse_show_job(false, "", "slurm_load_jobs error: Invalid job id specified"),
            Some(JobFate::Ended(_))
        ));
        assert_eq!(
            parse_show_job(false, "", "Unable to contact slurm controller"),
            None
        );
        assert_eq!(parse_show_job(true, "no state here", ""), None);
    }

    fn holder(host: &str, pid: u32, start: u64, job: Option<&str>) -> Holder {
        Holder {
            host: host.into(),
            pid,
            pid_start_time: start,
            boot_id: Some("boot-a".into()),
            pid_namespace: Some("pid:[1]".into()),
            slurm: job.map(|j| SlurmIds {
                job_id: Some(j.into()),
                ..SlurmIds::default()
            }),
            restart_count: None,
        }
    }

    /// A fake /proc with one process 4242 in `state`, started at tick 500.
    fn fake_proc(state: char) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("4242")).unwrap();
        std::fs::write(
            dir.path().join("4242/stat"),
            format!(
                "4242 (pseg-step) {state} 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"
            ),
        )
        .unwrap();
        dir
    }

    #[test]
    fn same_host_is_judged_by_pid_and_start_time() {
        let me = holder("n1", 1, 1, None);
        let proc = fake_proc('S');
        let live = Liveness::new(proc.path(), Some(None));
        assert!(matches!(
            live.judge(&holder("n1", 4242, 500, None), &me),
            Verdict::Alive(_)
        ));
        let reused = live.judge(&holder("n1", 4242, 499, None), &me);
        assert!(
            matches!(&reused, Verdict::Dead(why) if why.contains("another process")),
            "{reused:?}"
        );
        assert!(matches!(
            live.judge(&holder("n1", 4243, 500, None), &me),
            Verdict::Dead(_)
        ));
        let zombie = Liveness::new(fake_proc('Z').path(), Some(None));
        assert!(matches!(
            zombie.judge(&holder("n1", 4242, 500, None), &me),
            Verdict::Dead(_)
        ));
        let mut rebooted = holder("n1", 4242, 500, None);
        rebooted.boot_id = Some("boot-b".into());
        assert!(
            matches!(live.judge(&rebooted, &me), Verdict::Dead(why) if why.contains("rebooted"))
        );
        // Another pid namespace on the same host: its pids mean nothing here.
        let mut contained = holder("n1", 4243, 500, None);
        contained.pid_namespace = Some("pid:[2]".into());
        assert!(matches!(live.judge(&contained, &me), Verdict::Unknown(_)));
    }

    fn fake_scontrol(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("scontrol");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A script written just now can be briefly "text file busy" while another test thread
    /// forks; judge again until the answer is not that.
    fn judge_settled(live: &Liveness, h: &Holder, me: &Holder) -> Verdict {
        for _ in 0..50 {
            match live.judge(h, me) {
                Verdict::Unknown(_) => {
                    live.jobs.lock().unwrap().clear();
                    std::thread::sleep(Duration::from_millis(20));
                }
                v => return v,
            }
        }
        live.judge(h, me)
    }

    #[test]
    fn other_hosts_are_judged_by_their_slurm_job() {
        let proc = tempfile::tempdir().unwrap();
        let me = holder("n1", 1, 1, Some("100"));
        let bin = tempfile::tempdir().unwrap();
        let scontrol = fake_scontrol(
            bin.path(),
            "case \"$3\" in\n 7) echo 'JobId=7 JobState=COMPLETED Reason=None' ;;\n \
             8) echo 'JobId=8 JobState=RUNNING Reason=None' ;;\n \
             *) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;\nesac",
        );
        let live = Liveness::new(proc.path(), Some(Some(scontrol)));
        let v = judge_settled(&live, &holder("n2", 5, 5, Some("7")), &me);
        assert!(
            matches!(&v, Verdict::Dead(why) if why.contains("COMPLETED")),
            "{v:?}"
        );
        let v = judge_settled(&live, &holder("n2", 5, 5, Some("8")), &me);
        assert!(matches!(v, Verdict::Alive(_)), "{v:?}");
        let v = judge_settled(&live, &holder("n2", 5, 5, Some("9")), &me);
        assert!(matches!(v, Verdict::Dead(_)), "{v:?}");
        // Our own job runs; a holder outside Slurm on another host cannot be judged.
        assert!(matches!(
            live.judge(&holder("n2", 5, 5, Some("100")), &me),
            Verdict::Alive(_)
        ));
        assert!(matches!(
            live.judge(&holder("n2", 5, 5, None), &me),
            Verdict::Unknown(_)
        ));
        // Without scontrol, nothing on another host is provably dead.
        let blind = Liveness::new(proc.path(), Some(None));
        assert!(matches!(
            blind.judge(&holder("n2", 5, 5, Some("7")), &me),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn an_earlier_run_of_our_requeued_job_is_dead() {
        let proc = tempfile::tempdir().unwrap();
        // No scontrol: only the restart count can prove anything.
        let live = Liveness::new(proc.path(), Some(None));
        let with_run = |host: &str, run: Option<u32>| Holder {
            restart_count: run,
            ..holder(host, 5, 5, Some("100"))
        };
        let me = with_run("n1", Some(1));
        let first = live.judge(&with_run("n2", None), &me);
        assert!(
            matches!(&first, Verdict::Dead(why) if why.contains("requeued")),
            "{first:?}"
        );
        assert!(matches!(
            live.judge(&with_run("n2", Some(0)), &me),
            Verdict::Dead(_)
        ));
        // The same run (another task of it) and a later run are alive.
        assert!(matches!(
            live.judge(&with_run("n2", Some(1)), &me),
            Verdict::Alive(_)
        ));
        assert!(matches!(
            live.judge(&with_run("n2", Some(2)), &me),
            Verdict::Alive(_)
        ));
        // Never requeued: both unset, the same run.
        assert!(matches!(
            live.judge(&with_run("n2", None), &with_run("n1", None)),
            Verdict::Alive(_)
        ));
    }

    #[test]
    fn a_hanging_scontrol_is_given_up_on() {
        let bin = tempfile::tempdir().unwrap();
        let slow = fake_scontrol(bin.path(), "exec sleep 30");
        let started = Instant::now();
        let fate = (0..50)
            .map(|_| show_job(&slow, "7", Duration::from_millis(200)))
            .find(|_| started.elapsed() > Duration::from_millis(150));
        assert_eq!(fate, Some(None));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
