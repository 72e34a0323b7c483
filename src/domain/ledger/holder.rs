//! Who holds a claim: enough to prove later, from another process, that it is dead.
//!
//! A pid alone is not: pids are reused. The pid's start time (field 22 of `/proc/PID/stat`,
//! clock ticks since boot) tells a reused pid, the boot id tells a rebooted host, the pid
//! namespace tells a container whose pids this host cannot see, and the Slurm ids let a
//! process on another node ask the controller. Readers take a `/proc` root so tests can point
//! them elsewhere.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::base::identity::{self, SlurmIds};
use crate::domain::ledger::key;

/// A process that holds (or held) a granule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
    pub pid_start_time: u64,
    /// `/proc/sys/kernel/random/boot_id`: differs after a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The target of `/proc/self/ns/pid`, e.g. `pid:[4026531836]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// Slurm's job, array, step and task ids, inside a Slurm job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmIds>,
    /// `SLURM_RESTART_COUNT`: how often Slurm requeued the job (unset before the first
    /// requeue). A requeued job keeps its job id, so this tells its runs apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
}

impl Holder {
    /// This process.
    pub fn current() -> Holder {
        Holder::read(Path::new("/proc"), std::process::id())
    }

    /// Process `pid` as seen under `proc_root`; unreadable parts are left empty (a start
    /// time of 0 never matches a live process, so such a holder is only ever judged by Slurm).
    pub fn read(proc_root: &Path, pid: u32) -> Holder {
        let text = |rel: &str| std::fs::read_to_string(proc_root.join(rel)).ok();
        let pid_start_time = identity::start_time(proc_root, pid).unwrap_or(0);
        Holder {
            host: identity::host(),
            pid,
            pid_start_time,
            boot_id: text("sys/kernel/random/boot_id").map(|s| s.trim().to_string()),
            pid_namespace: std::fs::read_link(proc_root.join(format!("{pid}/ns/pid")))
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            slurm: SlurmIds::from_env(),
            restart_count: restart_count_from_env(),
        }
    }

    /// Which run of its Slurm job this is: 0 before any requeue (or outside Slurm).
    pub fn run_of_job(&self) -> u32 {
        self.restart_count.unwrap_or(0)
    }

    /// Same process as `other`: same host, pid and start time.
    pub fn same_process(&self, other: &Holder) -> bool {
        self.host == other.host
            && self.pid == other.pid
            && self.pid_start_time == other.pid_start_time
    }

    /// `node7 pid 4242 (Slurm job 991)`, for messages.
    pub fn describe(&self) -> String {
        let mut text = format!("{} pid {}", self.host, self.pid);
        if let Some(job) = self.slurm.as_ref().and_then(|s| s.job_id.as_deref()) {
            text.push_str(&format!(" (Slurm job {job})"));
        }
        text
    }

    /// A name no other claim attempt anywhere will use: host, pid, start, time, counter.
    pub fn nonce(&self) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let host = key::encode(&self.host);
        let host = &host[..host.len().min(64)];
        format!(
            "{host}.{}.{}.{nanos}.{}",
            self.pid,
            self.pid_start_time,
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// `SLURM_RESTART_COUNT`, when set to a number.
fn restart_count_from_env() -> Option<u32> {
    parse_restart_count(std::env::var("SLURM_RESTART_COUNT").ok().as_deref())
}

/// The value of `SLURM_RESTART_COUNT`; `None` when unset, empty or not a number.
pub fn parse_restart_count(value: Option<&str>) -> Option<u32> {
    value?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_count_is_read_and_old_claims_default_to_none() {
        assert_eq!(parse_restart_count(Some("2")), Some(2));
        assert_eq!(parse_restart_count(Some(" 0\n")), Some(0));
        assert_eq!(parse_restart_count(Some("")), None);
        assert_eq!(parse_restart_count(Some("x")), None);
        assert_eq!(parse_restart_count(None), None);
        // A claim written before the field existed still reads.
        let old: Holder =
            serde_json::from_str(r#"{"host":"n1","pid":4,"pid_start_time":5}"#).unwrap();
        assert_eq!(old.restart_count, None);
        assert_eq!(old.run_of_job(), 0);
        let text = serde_json::to_string(&old).unwrap();
        assert!(!text.contains("restart_count"), "{text}");
    }

    #[test]
    fn the_current_process_is_itself_and_nonces_differ() {
        let me = Holder::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.pid_start_time > 0);
        assert!(me.same_process(&Holder::current()));
        let mut other = me.clone();
        other.pid_start_time += 1;
        assert!(!me.same_process(&other));
        assert_ne!(me.nonce(), me.nonce());
        assert!(!me.nonce().contains('/'));
    }
}
