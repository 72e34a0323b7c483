//! Who and where this process is: the host name, a process's start time (what tells a
//! reused pid apart), and the Slurm job, array, step and task ids from the environment.
//!
//! Records, claims and reports store these; this module only reads them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::base::{proc_stat, unix};

/// The host name; `unknown` when it cannot be read.
pub fn host() -> String {
    unix::hostname().unwrap_or_else(|_| "unknown".into())
}

/// When process `pid` under `proc_root` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); `None` when it cannot be read.
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    proc_stat::read(proc_root, pid).map(|s| s.start_time)
}

/// Where in Slurm a step ran, when it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmIds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procid: Option<String>,
}

impl SlurmIds {
    /// From the environment Slurm gives a task; `None` outside Slurm.
    pub fn from_env() -> Option<SlurmIds> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let ids = SlurmIds {
            job_id: get("SLURM_JOB_ID"),
            array_job_id: get("SLURM_ARRAY_JOB_ID"),
            array_task_id: get("SLURM_ARRAY_TASK_ID"),
            step_id: get("SLURM_STEP_ID"),
            procid: get("SLURM_PROCID"),
        };
        ids.job_id.is_some().then_some(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_host() {
        let proc = Path::new("/proc");
        let me = start_time(proc, std::process::id()).unwrap();
        assert!(me > 0);
        assert_eq!(start_time(proc, std::process::id()), Some(me));
        assert_eq!(start_time(&proc.join("missing"), 1), None);
        assert!(!host().is_empty());
    }

    #[test]
    fn slurm_ids_leave_out_what_is_unset() {
        let ids = SlurmIds {
            job_id: Some("991".into()),
            ..SlurmIds::default()
        };
        let text = serde_yaml::to_string(&ids).unwrap();
        assert_eq!(text, "job_id: '991'\n");
        assert_eq!(serde_yaml::from_str::<SlurmIds>(&text).unwrap(), ids);
    }
}
