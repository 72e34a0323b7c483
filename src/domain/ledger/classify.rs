//! Why a granule's attempt failed, and how many retries each kind of failure earns.
//!
//! The driver (`pseg-step`) decides the kind from what it saw; [`FailureKind::from_parts`]
//! is the pure rule for the common facts (signal, exit status, the cgroup's OOM counter,
//! the stall watchdog, our own interruption), unit-tested below. [`RetryBudget`] says how
//! many times a granule is tried again after failing that way. Nothing here touches files.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an attempt failed. The serde names are what records and `status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The kernel killed a process of the granule for memory (the cgroup's `oom_kill`
    /// counter grew).
    #[serde(rename = "oom")]
    OutOfMemory,
    /// Stopped from outside: Slurm's time limit warning (SIGUSR1), SIGTERM, scancel,
    /// preemption. Not the granule's fault: recorded as `interrupted`, never charged.
    #[serde(rename = "time-limit")]
    TimeLimit,
    /// A process crashed on a signal (SIGSEGV, SIGBUS, SIGABRT, an outside SIGKILL...).
    #[serde(rename = "signal")]
    Signal,
    /// clavrxorb exited with a status it does not exit with on success.
    #[serde(rename = "exit")]
    Exit,
    /// The granule cannot be processed as it is (unreadable, not a granule). Set by the
    /// driver when it knows; never derived by [`FailureKind::from_parts`].
    #[serde(rename = "bad-input")]
    BadInput,
    /// The stall watchdog ended it: no process changed state or used CPU for too long.
    #[serde(rename = "hang")]
    Hang,
    /// The process holding the granule died without recording any outcome (node failure,
    /// pseg-step killed); found and charged by the ledger when it takes the claim over.
    #[serde(rename = "lost")]
    Lost,
    /// A done granule's outputs no longer match its manifest (missing, truncated,
    /// overwritten, or a stray file beside them), found by `pseg-slurm verify`. Redone
    /// without using a retry: the granule was not at fault.
    #[serde(rename = "output-changed")]
    OutputChanged,
    /// clavrxorb ended normally without reading a segment of the granule: it skipped the
    /// file (not level-1b, unreadable). Bad input: the same file fails the same way.
    #[serde(rename = "not-processed")]
    NotProcessed,
    /// The output, work or state folder refused a write (disk full, quota, I/O error,
    /// read-only). The folder's fault, not the granule's: never charged, like a time limit.
    #[serde(rename = "storage")]
    Storage,
}

impl FailureKind {
    #[cfg(test)]
    pub(crate) const ALL: [FailureKind; 10] = [
        FailureKind::OutOfMemory,
        FailureKind::TimeLimit,
        FailureKind::Signal,
        FailureKind::Exit,
        FailureKind::BadInput,
        FailureKind::Hang,
        FailureKind::Lost,
        FailureKind::OutputChanged,
        FailureKind::NotProcessed,
        FailureKind::Storage,
    ];

    /// The name records and `status` use.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::OutOfMemory => "oom",
            FailureKind::TimeLimit => "time-limit",
            FailureKind::Signal => "signal",
            FailureKind::Exit => "exit",
            FailureKind::BadInput => "bad-input",
            FailureKind::Hang => "hang",
            FailureKind::Lost => "lost",
            FailureKind::OutputChanged => "output-changed",
            FailureKind::NotProcessed => "not-processed",
            FailureKind::Storage => "storage",
        }
    }

    /// Whether failures of this kind count against the granule's retry budget.
    pub fn is_charged(self) -> bool {
        !matches!(self, FailureKind::TimeLimit | FailureKind::Storage)
    }

    /// Classifies a failed attempt from what the driver saw, first rule that applies:
    ///
    /// 1. `interrupted` (we were told to stop: SIGUSR1 before the time limit, SIGTERM,
    ///    SIGINT) -> [`TimeLimit`](FailureKind::TimeLimit), whatever the processes did;
    /// 2. `oom_events_grew` -> [`OutOfMemory`](FailureKind::OutOfMemory): an OOM kill
    ///    explains a SIGKILL, and also the errors or hangs of the processes that survived it;
    /// 3. `stalled` -> [`Hang`](FailureKind::Hang) (the watchdog's own kill is not a crash);
    /// 4. a `signal` -> [`Signal`](FailureKind::Signal) (a SIGKILL without OOM events came
    ///    from outside: an admin, or a node health check);
    /// 5. anything else, an `exit` status or nothing known -> [`Exit`](FailureKind::Exit).
    pub fn from_parts(
        signal: Option<i32>,
        exit: Option<i32>,
        oom_events_grew: bool,
        stalled: bool,
        interrupted: bool,
    ) -> FailureKind {
        let _ = exit; // Any exit status classifies the same way; kept for the call's clarity.
        if interrupted {
            FailureKind::TimeLimit
        } else if oom_events_grew {
            FailureKind::OutOfMemory
        } else if stalled {
            FailureKind::Hang
        } else if signal.is_some() {
            FailureKind::Signal
        } else {
            FailureKind::Exit
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Retries a granule earns per kind of failure, counted since the last
/// `pseg-slurm retry --failed` (which starts the count again). A granule whose failures of
/// some kind exceed that kind's budget is not retried on resume; `time-limit` never counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudget {
    pub oom: u32,
    /// Crashes on a signal.
    pub signal: u32,
    pub exit: u32,
    pub hang: u32,
    pub bad_input: u32,
    /// Holders that died without an outcome.
    pub lost: u32,
    /// clavrxorb skipped the file without reading a segment.
    pub not_processed: u32,
}

impl Default for RetryBudget {
    /// oom 1 (the same memory will fail again; size it and `retry`), signal 2, exit 2,
    /// hang 1, bad-input 0, lost 2, not-processed 0.
    fn default() -> RetryBudget {
        RetryBudget {
            oom: 1,
            signal: 2,
            exit: 2,
            hang: 1,
            bad_input: 0,
            lost: 2,
            not_processed: 0,
        }
    }
}

impl RetryBudget {
    /// Retries after failures of `kind`; `None` is unlimited (time limits, storage,
    /// changed outputs).
    pub fn retries(&self, kind: FailureKind) -> Option<u32> {
        match kind {
            FailureKind::OutOfMemory => Some(self.oom),
            FailureKind::TimeLimit => None,
            FailureKind::Signal => Some(self.signal),
            FailureKind::Exit => Some(self.exit),
            FailureKind::BadInput => Some(self.bad_input),
            FailureKind::Hang => Some(self.hang),
            FailureKind::Lost => Some(self.lost),
            FailureKind::OutputChanged => None,
            FailureKind::NotProcessed => Some(self.not_processed),
            FailureKind::Storage => None,
        }
    }

    /// True while every kind's failure count is within its budget: `n` failures of a kind
    /// with budget `b` leave the granule retryable while `n <= b`.
    pub fn allows(&self, charged: &BTreeMap<FailureKind, u32>) -> bool {
        charged
            .iter()
            .all(|(&kind, &n)| self.retries(kind).is_none_or(|b| n <= b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGKILL: i32 = 9;
    const SIGSEGV: i32 = 11;
    const SIGTERM: i32 = 15;

    #[test]
    fn classification_rules() {
        use FailureKind::*;
        // (signal, exit, oom grew, stalled, interrupted) -> kind
        let table = [
            (Some(SIGKILL), None, true, false, false, OutOfMemory),
            (Some(SIGKILL), None, false, false, false, Signal),
            (Some(SIGSEGV), None, false, false, false, Signal),
            (None, Some(2), false, false, false, Exit),
            (None, None, false, false, false, Exit),
            // An OOM kill of one clone makes the reader exit with an error: still OOM.
            (None, Some(1), true, false, false, OutOfMemory),
            // The watchdog's SIGKILL of a stalled granule is a hang, not a crash.
            (Some(SIGKILL), None, false, true, false, Hang),
            // A stall after an OOM kill: the OOM is the cause.
            (Some(SIGKILL), None, true, true, false, OutOfMemory),
            // We were told to stop: nothing else matters.
            (Some(SIGTERM), None, true, true, true, TimeLimit),
            (None, Some(3), false, false, true, TimeLimit),
        ];
        for (signal, exit, oom, stalled, interrupted, want) in table {
            assert_eq!(
                FailureKind::from_parts(signal, exit, oom, stalled, interrupted),
                want,
                "{signal:?} {exit:?} oom={oom} stalled={stalled} interrupted={interrupted}"
            );
        }
    }

    #[test]
    fn serde_names() {
        for kind in FailureKind::ALL {
            let yaml = serde_yaml::to_string(&kind).unwrap();
            assert_eq!(yaml.trim(), kind.name());
            let back: FailureKind = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn retry_budget_per_kind() {
        let b = RetryBudget::default();
        let charged = |pairs: &[(FailureKind, u32)]| pairs.iter().copied().collect();
        let cases = [
            (vec![], true),
            (vec![(FailureKind::OutOfMemory, 1)], true),
            (vec![(FailureKind::OutOfMemory, 2)], false),
            (vec![(FailureKind::Signal, 2)], true),
            (vec![(FailureKind::Signal, 3)], false),
            (vec![(FailureKind::Exit, 2), (FailureKind::Hang, 1)], true),
            (vec![(FailureKind::Exit, 1), (FailureKind::Hang, 2)], false),
            (vec![(FailureKind::BadInput, 1)], false),
            (vec![(FailureKind::Lost, 2)], true),
            (vec![(FailureKind::Lost, 3)], false),
            (vec![(FailureKind::TimeLimit, 1000)], true),
            (vec![(FailureKind::OutputChanged, 1000)], true),
            (vec![(FailureKind::NotProcessed, 1)], false),
            (vec![(FailureKind::Storage, 1000)], true),
        ];
        for (pairs, want) in cases {
            assert_eq!(b.allows(&charged(&pairs)), want, "{pairs:?}");
        }
        let none = RetryBudget {
            oom: 0,
            signal: 0,
            exit: 0,
            hang: 0,
            bad_input: 0,
            lost: 0,
            not_processed: 0,
        };
        assert!(!none.allows(&charged(&[(FailureKind::Exit, 1)])));
        let partial: RetryBudget = serde_yaml::from_str("oom: 3\n").unwrap();
        assert_eq!(partial.oom, 3);
        assert_eq!(partial.signal, 2, "unset keys keep their defaults");
    }
}
