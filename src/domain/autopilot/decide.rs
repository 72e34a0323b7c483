//! The autopilot's one decision, pure: given what the ledger says about the granules, whether
//! the campaign's jobs are still queued, and how the last submission was sized, what to do
//! next (wait, submit a pilot, submit the rest, resubmit with a changed sizing, finish, stop
//! at the bound) and why, in words a user reads in the campaign record.
//!
//! No files, no Slurm, no clock: the driver (`autopilot::drive`) gathers a [`View`] and
//! carries out the [`Action`]; the rules are unit-tested on hand-computed cases below.

use serde::{Deserialize, Serialize};

/// How a submitted script asked for resources, read back from its `#SBATCH` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizing {
    pub cpus_per_task: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_per_cpu_mib: Option<u64>,
    /// The time limit in seconds, when the script sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_seconds: Option<u64>,
    /// Granules per array element (per task in tasks mode).
    pub chunk_size: usize,
}

impl Sizing {
    /// Memory of one task, when the script sets it.
    pub fn task_mib(&self) -> Option<u64> {
        self.mem_per_cpu_mib
            .map(|m| m * u64::from(self.cpus_per_task.max(1)))
    }

    /// `--cpus-per-task=4 --mem-per-cpu=900M --time=00:30:00, 3 granule(s) per element`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("--cpus-per-task={}", self.cpus_per_task)];
        parts.push(match self.mem_per_cpu_mib {
            Some(m) => format!("--mem-per-cpu={m}M"),
            None => "no --mem-per-cpu (the cluster's default)".into(),
        });
        parts.push(match self.time_seconds {
            Some(t) => format!("--time={}", crate::base::units::TimeLimit { seconds: t }),
            None => "no --time (the partition's default)".into(),
        });
        format!(
            "{}, {} granule(s) per task",
            parts.join(" "),
            self.chunk_size
        )
    }
}

/// What the driver changes in gen's flags for one submission; `None` leaves gen's choice.
/// Carried from one submission to the next (a pilot's are not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// gen's `--peak-mem`, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_mem_mib: Option<u64>,
    /// gen's `--time`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_seconds: Option<u64>,
    /// gen's `--chunk-size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
    /// gen's `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
}

/// Why a submission was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A few granules with generous limits, to measure the campaign.
    Pilot,
    /// The campaign (what the pilot left), sized by gen.
    Rest,
    /// What is left after earlier jobs, as they were or with a changed sizing.
    Resubmit,
}

/// The last submission, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Last {
    pub purpose: Purpose,
    pub sizing: Sizing,
    pub overrides: Overrides,
    /// Done granules when it was submitted: none more since means it made no progress.
    pub done_before: usize,
}

/// What the ledger and Slurm say now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub granules: usize,
    pub done: usize,
    /// Failed and out of retries, or bad input: nothing will make them succeed.
    pub failed_final: usize,
    /// Never started (no record, or pending).
    pub never_started: usize,
    /// Interrupted (a time limit's drain, a cancel): resumed as they were.
    pub interrupted: usize,
    /// Held by a process that is provably dead.
    pub lost: usize,
    /// Failed for memory, with retries left.
    pub retry_oom: usize,
    /// Failed otherwise (crash, exit, hang), with retries left.
    pub retry_other: usize,
    /// Held by a live process now.
    pub busy: usize,
    /// This campaign's jobs still in Slurm's queue.
    pub jobs_active: usize,
    /// Done granule reports exist that gen can size from.
    pub profile: bool,
    pub submissions: usize,
}

impl View {
    /// Granules a job can still make succeed.
    pub fn todo(&self) -> usize {
        self.never_started + self.interrupted + self.lost + self.retry_oom + self.retry_other
    }
}

/// The bounds a user sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Granules in a pilot; 0 for none.
    pub pilot: usize,
    pub max_submissions: usize,
}

/// The pilot's time limit when the campaign's own is shorter: it must not be cut short.
pub const PILOT_TIME_SECONDS: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Jobs are queued or running, or live processes hold granules: look again later.
    Wait,
    Pilot {
        granules: usize,
        why: String,
    },
    Submit {
        purpose: Purpose,
        overrides: Overrides,
        why: String,
    },
    /// Nothing left that can succeed.
    Finish {
        why: String,
    },
    /// `--max-submissions` reached with work left.
    Bound {
        why: String,
    },
}

/// The next step; see the module comment. Rules, first that applies:
/// 1. jobs of the campaign are queued -> wait;
/// 2. nothing left to do -> wait while live processes hold granules, else finish;
/// 3. the bound is reached -> stop;
/// 4. no profile and no submission yet (or only pilots that measured nothing) -> pilot;
/// 5. memory failures -> twice the last task's memory, or half the cores when the script
///    set no memory;
/// 6. interrupted granules after a job that finished none -> smaller chunks (half), or
///    twice the time limit when chunks are single granules;
/// 7. otherwise the rest (after a pilot: sized from its reports) or a resubmission as before.
pub fn decide(view: &View, last: Option<&Last>, limits: Limits) -> Action {
    if view.jobs_active > 0 {
        return Action::Wait;
    }
    if view.todo() == 0 {
        if view.busy > 0 {
            return Action::Wait;
        }
        return Action::Finish {
            why: format!(
                "{} of {} granule(s) done, {} failed for good; nothing left that can succeed",
                view.done, view.granules, view.failed_final
            ),
        };
    }
    if view.submissions >= limits.max_submissions {
        return Action::Bound {
            why: format!(
                "--max-submissions {} reached with {} granule(s) left to do",
                limits.max_submissions,
                view.todo()
            ),
        };
    }
    let only_pilots = last.is_none_or(|l| l.purpose == Purpose::Pilot);
    if !view.profile && only_pilots && limits.pilot > 0 && view.retry_oom == 0 {
        return pilot(view, last, limits);
    }
    // What a resubmission keeps: the last real submission's changes, never a pilot's.
    let base = match last {
        Some(l) if l.purpose != Purpose::Pilot => l.overrides.clone(),
        _ => Overrides::default(),
    };
    if let Some(l) = last.filter(|_| view.retry_oom > 0) {
        return more_memory(view, l, base);
    }
    if let Some(l) = last.filter(|l| view.interrupted > 0 && view.done <= l.done_before) {
        return more_time(view, l, base);
    }
    match last {
        None
        | Some(Last {
            purpose: Purpose::Pilot,
            ..
        }) => submit(Purpose::Rest, base, rest_why(view, last)),
        Some(_) => submit(Purpose::Resubmit, base, resubmit_why(view)),
    }
}

/// Rule 4: a pilot of the largest granules, the first time or again after one measured
/// nothing.
fn pilot(view: &View, last: Option<&Last>, limits: Limits) -> Action {
    let n = limits.pilot.min(view.todo());
    let why = match last {
        None => format!(
            "no report of a done granule to size the campaign from: a pilot of the {n} \
             largest granule(s) with generous limits measures it"
        ),
        Some(_) => format!(
            "the pilot finished no granule: another pilot of {n} granule(s) measures the \
             campaign"
        ),
    };
    Action::Pilot { granules: n, why }
}

/// Rule 5: granules ran out of memory under the last submission `l`: more memory per task,
/// else fewer workers sharing it.
fn more_memory(view: &View, l: &Last, base: Overrides) -> Action {
    let mut o = base;
    let why = if let Some(task) = l.sizing.task_mib() {
        o.peak_mem_mib = Some(task * 2);
        format!(
            "{} granule(s) ran out of memory with {task} MiB per task: resubmitting with \
             twice that ({} MiB measured peak, before headroom)",
            view.retry_oom,
            task * 2
        )
    } else if l.sizing.cpus_per_task > 1 {
        let cpus = l.sizing.cpus_per_task / 2;
        o.cpus_per_task = Some(cpus);
        format!(
            "{} granule(s) ran out of memory and the script set no memory to raise: \
             resubmitting with {cpus} worker(s) instead of {}",
            view.retry_oom, l.sizing.cpus_per_task
        )
    } else {
        format!(
            "{} granule(s) ran out of memory; with one core and no memory setting there is \
             nothing to change: resubmitting as before (pass --memory to raise it)",
            view.retry_oom
        )
    };
    submit(Purpose::Resubmit, o, why)
}

/// Rule 6: the last submission `l` finished nothing before its time ran out: more time per
/// granule, by smaller chunks or else a longer time limit.
fn more_time(view: &View, l: &Last, base: Overrides) -> Action {
    let mut o = base;
    let why = if l.sizing.chunk_size > 1 {
        let chunk = l.sizing.chunk_size / 2;
        o.chunk_size = Some(chunk);
        format!(
            "{} granule(s) interrupted and the last job finished none: resubmitting in \
             smaller chunks ({chunk} granule(s) per task instead of {})",
            view.interrupted, l.sizing.chunk_size
        )
    } else if let Some(t) = l.sizing.time_seconds {
        o.time_seconds = Some(t * 2);
        format!(
            "{} granule(s) interrupted and the last job finished none, one granule per \
             task: resubmitting with twice the time limit ({})",
            view.interrupted,
            crate::base::units::TimeLimit { seconds: t * 2 }
        )
    } else {
        format!(
            "{} granule(s) interrupted and the last job finished none; no time limit to \
             raise: resubmitting as before",
            view.interrupted
        )
    };
    submit(Purpose::Resubmit, o, why)
}

/// Rule 7's first submission of the campaign proper: after a pilot, or without one.
fn rest_why(view: &View, last: Option<&Last>) -> String {
    match (last, view.profile) {
        (Some(_), _) => format!(
            "the pilot measured the campaign: the other {} granule(s), sized by gen \
             from the reports",
            view.todo()
        ),
        (None, true) => format!(
            "{} granule(s), sized by gen from the reports of done granules",
            view.todo()
        ),
        (None, false) => format!(
            "{} granule(s), sized by gen from the flags and config (no pilot)",
            view.todo()
        ),
    }
}

fn submit(purpose: Purpose, overrides: Overrides, why: String) -> Action {
    Action::Submit {
        purpose,
        overrides,
        why,
    }
}

/// `2 interrupted, 1 lost, 1 failed with retries left: resubmitting them as before`.
fn resubmit_why(view: &View) -> String {
    let parts: Vec<String> = [
        (view.never_started, "never started"),
        (view.interrupted, "interrupted"),
        (view.lost, "lost with their job"),
        (view.retry_other, "failed with retries left"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    format!("{}: resubmitting them as before", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        pilot: 2,
        max_submissions: 10,
    };

    fn view(granules: usize) -> View {
        View {
            granules,
            never_started: granules,
            ..View::default()
        }
    }

    fn last(purpose: Purpose, sizing: Sizing, done_before: usize) -> Last {
        Last {
            purpose,
            sizing,
            overrides: Overrides::default(),
            done_before,
        }
    }

    fn sizing(cpus: u32, mem: Option<u64>, time: Option<u64>, chunk: usize) -> Sizing {
        Sizing {
            cpus_per_task: cpus,
            mem_per_cpu_mib: mem,
            time_seconds: time,
            chunk_size: chunk,
        }
    }

    #[test]
    fn a_new_campaign_without_reports_starts_with_a_pilot_then_the_rest() {
        let v = view(10);
        assert!(matches!(
            decide(&v, None, LIMITS),
            Action::Pilot { granules: 2, .. }
        ));
        // Only one granule: the pilot is that one.
        assert!(matches!(
            decide(&view(1), None, LIMITS),
            Action::Pilot { granules: 1, .. }
        ));
        // While the pilot is queued: wait.
        let queued = View {
            jobs_active: 1,
            submissions: 1,
            ..v.clone()
        };
        let pilot = last(Purpose::Pilot, sizing(1, None, Some(3600), 1), 0);
        assert_eq!(decide(&queued, Some(&pilot), LIMITS), Action::Wait);
        // The pilot did two: the rest, with nothing carried from the pilot's limits.
        let after = View {
            done: 2,
            never_started: 8,
            profile: true,
            submissions: 1,
            ..v.clone()
        };
        let Action::Submit {
            purpose, overrides, ..
        } = decide(&after, Some(&pilot), LIMITS)
        else {
            panic!()
        };
        assert_eq!((purpose, overrides), (Purpose::Rest, Overrides::default()));
    }

    #[test]
    fn reports_already_there_or_no_pilot_wanted_submit_the_campaign_at_once() {
        let with_profile = View {
            profile: true,
            ..view(5)
        };
        assert!(matches!(
            decide(&with_profile, None, LIMITS),
            Action::Submit {
                purpose: Purpose::Rest,
                ..
            }
        ));
        let no_pilot = Limits { pilot: 0, ..LIMITS };
        assert!(matches!(
            decide(&view(5), None, no_pilot),
            Action::Submit {
                purpose: Purpose::Rest,
                ..
            }
        ));
    }

    #[test]
    fn a_pilot_that_finished_nothing_is_followed_by_another() {
        let v = View {
            failed_final: 2,
            never_started: 8,
            submissions: 1,
            ..view(10)
        };
        let pilot = last(Purpose::Pilot, sizing(1, None, Some(3600), 1), 0);
        assert!(matches!(
            decide(&v, Some(&pilot), LIMITS),
            Action::Pilot { granules: 2, .. }
        ));
    }

    #[test]
    fn interrupted_granules_after_progress_go_again_as_they_were() {
        // 6 in one job, a time limit drained it after 4 done: the other 2 as before.
        let v = View {
            done: 6,
            interrupted: 1,
            never_started: 1,
            retry_other: 1,
            failed_final: 0,
            submissions: 2,
            profile: true,
            ..view(9)
        };
        let mut l = last(Purpose::Rest, sizing(2, Some(500), Some(60), 10), 2);
        l.overrides.peak_mem_mib = Some(2000);
        let Action::Submit {
            purpose,
            overrides,
            why,
        } = decide(&v, Some(&l), LIMITS)
        else {
            panic!()
        };
        assert_eq!(purpose, Purpose::Resubmit);
        // What the last real submission changed is kept.
        assert_eq!(overrides.peak_mem_mib, Some(2000));
        assert_eq!(overrides.chunk_size, None);
        assert_eq!(
            why,
            "1 never started, 1 interrupted, 1 failed with retries left: resubmitting them \
             as before"
        );
    }

    #[test]
    fn a_job_that_finished_nothing_before_its_limit_gets_smaller_chunks_then_more_time() {
        let v = View {
            done: 3,
            interrupted: 4,
            never_started: 0,
            submissions: 2,
            profile: true,
            ..view(7)
        };
        let l = last(Purpose::Rest, sizing(1, None, Some(600), 4), 3);
        let Action::Submit { overrides, why, .. } = decide(&v, Some(&l), LIMITS) else {
            panic!()
        };
        assert_eq!(overrides.chunk_size, Some(2));
        assert!(why.contains("2 granule(s) per task instead of 4"), "{why}");
        let l = last(Purpose::Resubmit, sizing(1, None, Some(600), 1), 3);
        let Action::Submit { overrides, why, .. } = decide(&v, Some(&l), LIMITS) else {
            panic!()
        };
        assert_eq!(overrides.time_seconds, Some(1200));
        assert!(why.contains("twice the time limit (00:20:00)"), "{why}");
    }

    #[test]
    fn out_of_memory_doubles_the_task_memory_or_halves_the_workers() {
        let v = View {
            done: 5,
            retry_oom: 2,
            never_started: 0,
            submissions: 2,
            profile: true,
            ..view(7)
        };
        // 4 cores x 750 MiB = 3000 MiB per task: 6000 MiB peak asked of gen.
        let l = last(Purpose::Rest, sizing(4, Some(750), Some(600), 1), 0);
        let Action::Submit { overrides, why, .. } = decide(&v, Some(&l), LIMITS) else {
            panic!()
        };
        assert_eq!(overrides.peak_mem_mib, Some(6000));
        assert!(why.contains("3000 MiB per task"), "{why}");
        let l = last(Purpose::Rest, sizing(4, None, Some(600), 1), 0);
        let Action::Submit { overrides, .. } = decide(&v, Some(&l), LIMITS) else {
            panic!()
        };
        assert_eq!(
            (overrides.cpus_per_task, overrides.peak_mem_mib),
            (Some(2), None)
        );
    }

    #[test]
    fn bad_input_and_spent_retries_end_the_campaign_and_the_bound_stops_it() {
        let v = View {
            done: 8,
            failed_final: 1,
            never_started: 0,
            submissions: 3,
            ..view(9)
        };
        let l = last(Purpose::Resubmit, sizing(1, None, None, 1), 8);
        let Action::Finish { why } = decide(&v, Some(&l), LIMITS) else {
            panic!()
        };
        assert_eq!(
            why,
            "8 of 9 granule(s) done, 1 failed for good; nothing left that can succeed"
        );
        // Someone else's live process holds a granule: wait for it, do not finish.
        let busy = View {
            busy: 1,
            ..v.clone()
        };
        assert_eq!(decide(&busy, Some(&l), LIMITS), Action::Wait);
        let left = View {
            interrupted: 1,
            done: 7,
            ..v
        };
        let bound = Limits {
            max_submissions: 3,
            ..LIMITS
        };
        assert!(matches!(
            decide(&left, Some(&l), bound),
            Action::Bound { .. }
        ));
    }

    #[test]
    fn a_script_sizing_reads_as_flags() {
        assert_eq!(
            sizing(2, Some(600), Some(90), 3).describe(),
            "--cpus-per-task=2 --mem-per-cpu=600M --time=00:01:30, 3 granule(s) per task"
        );
        assert_eq!(sizing(2, Some(600), None, 1).task_mib(), Some(1200));
    }
}
