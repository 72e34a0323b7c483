//! Slurm's time-limit warning (`--signal=USR1@N`) is not the limit: a granule in flight that
//! is projected to finish before the job ends goes on; one that is not is ended at once.
//!
//! The projection and the decision are pure; reading the job's end time from Slurm is the
//! one impure part, kept small and bounded in time.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a granule in flight has done so far, as the projection needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Done {
    /// Since the granule's clavrxorb started.
    pub elapsed: Duration,
    pub lines_written: i64,
    /// Lines in the granule, once clavrxorb said (`None` in a run without the tracer).
    pub lines: Option<i64>,
}

/// Time the granule still needs: from its own rate of written lines once it has written any,
/// else from `prior` (wall seconds of a whole granule, measured earlier). `None` when there
/// is nothing to project from.
pub fn remaining(done: Done, prior: Option<f64>) -> Option<Duration> {
    let elapsed = done.elapsed.as_secs_f64();
    match done.lines {
        Some(total) if done.lines_written >= total => Some(Duration::ZERO),
        Some(total) if done.lines_written > 0 && elapsed > 0.0 => {
            let rate = done.lines_written as f64 / elapsed;
            let left = (total - done.lines_written) as f64 / rate;
            // A prior that says "longer" wins: the first segment alone is the slow phase
            // of a granule only at its start, never later.
            let from_prior = prior.map_or(0.0, |p| p - elapsed);
            Some(secs(left.max(from_prior)))
        }
        _ => prior.map(|p| secs((p - elapsed).max(0.0))),
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// What to do with a granule in flight when the warning has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It goes on; the words say why, for progress and the report.
    Keep(String),
    /// It is ended now and recorded interrupted.
    End(String),
}

/// Keeps a granule whose projected finish comes at least `margin` before the job's end.
/// Without a projection or a known end time it ends the granule: the warning then means
/// what it always meant.
pub fn decide(
    remaining: Option<Duration>,
    job_left: Option<Duration>,
    margin: Duration,
) -> Decision {
    let Some(job_left) = job_left else {
        return Decision::End("the job's end time is unknown".into());
    };
    let Some(needs) = remaining else {
        return Decision::End(format!(
            "nothing to project its finish from yet; the job ends in {}",
            whole(job_left)
        ));
    };
    if job_left
        .checked_sub(margin)
        .is_some_and(|slack| needs <= slack)
    {
        Decision::Keep(format!(
            "projected to finish in {}, {} before the job ends",
            whole(needs),
            whole(job_left - needs)
        ))
    } else {
        Decision::End(format!(
            "projected to need {}, but the job ends in {} (less a {} margin)",
            whole(needs),
            whole(job_left),
            whole(margin)
        ))
    }
}

fn whole(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// When the job ends, as Slurm says; `None` outside Slurm or when Slurm does not answer.
/// `SLURM_JOB_END_TIME` (Unix seconds) where the environment has it, else the time left
/// from `squeue`: that needs no clock-zone arithmetic, unlike `scontrol`'s `EndTime`.
pub fn job_end(env: impl Fn(&str) -> Option<String>) -> Option<SystemTime> {
    if let Some(end) = env("SLURM_JOB_END_TIME").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(UNIX_EPOCH + Duration::from_secs(end));
    }
    let job = env("SLURM_JOB_ID")?;
    let mut cmd = Command::new("squeue");
    cmd.args(["-h", "-o", "%L", "-j", job.trim()]);
    let out =
        crate::base::timed_command::output_within(&mut cmd, Duration::from_secs(5)).ok()??;
    if !out.status.success() {
        return None;
    }
    let left = parse_time_left(String::from_utf8_lossy(&out.stdout).trim())?;
    Some(SystemTime::now() + left)
}

/// Slurm's time-left format: `SS`, `MM:SS`, `H:MM:SS` or `D-H:MM:SS`; `None` for
/// `UNLIMITED`, `NOT_SET`, `INVALID` and anything else.
pub fn parse_time_left(s: &str) -> Option<Duration> {
    let (days, clock) = match s.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, s),
    };
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = match parts[..] {
        [sec] => (0, 0, sec),
        [m, sec] => (0, m, sec),
        [h, m, sec] => (h, m, sec),
        _ => return None,
    };
    Some(Duration::from_secs(((days * 24 + h) * 60 + m) * 60 + sec))
}

/// Time from now until `end` (zero when it has passed).
pub fn until(end: SystemTime) -> Duration {
    end.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(elapsed: u64, written: i64, lines: Option<i64>) -> Done {
        Done {
            elapsed: Duration::from_secs(elapsed),
            lines_written: written,
            lines,
        }
    }

    #[test]
    fn projection_from_the_granules_own_rate() {
        // Half the lines in 60 s: another 60 s.
        let r = remaining(done(60, 500, Some(1000)), None);
        assert_eq!(r, Some(Duration::from_secs(60)));
        // A prior that needs longer than the rate says wins.
        let r = remaining(done(60, 500, Some(1000)), Some(200.0));
        assert_eq!(r, Some(Duration::from_secs(140)));
        // A prior that is shorter does not shorten it.
        let r = remaining(done(60, 500, Some(1000)), Some(80.0));
        assert_eq!(r, Some(Duration::from_secs(60)));
        assert_eq!(
            remaining(done(60, 1000, Some(1000)), None),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn projection_before_any_line_is_written_comes_from_the_prior() {
        assert_eq!(
            remaining(done(10, 0, Some(1000)), Some(100.0)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(remaining(done(10, 0, Some(1000)), None), None);
        assert_eq!(remaining(done(10, 0, None), None), None);
        // Past the prior already: no time is promised.
        assert_eq!(
            remaining(done(150, 0, None), Some(100.0)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn decision_keeps_what_finishes_before_the_end_less_the_margin() {
        let margin = Duration::from_secs(30);
        let s = Duration::from_secs;
        assert!(matches!(
            decide(Some(s(60)), Some(s(120)), margin),
            Decision::Keep(_)
        ));
        // Exactly at the margin: still in time.
        assert!(matches!(
            decide(Some(s(90)), Some(s(120)), margin),
            Decision::Keep(_)
        ));
        let Decision::End(why) = decide(Some(s(91)), Some(s(120)), margin) else {
            panic!("one second past the margin must end it");
        };
        assert!(why.contains("91 s") && why.contains("120 s"), "{why}");
        assert!(matches!(
            decide(None, Some(s(120)), margin),
            Decision::End(_)
        ));
        assert!(matches!(decide(Some(s(1)), None, margin), Decision::End(_)));
        // The end is nearer than the margin: nothing can be kept.
        assert!(matches!(
            decide(Some(s(0)), Some(s(10)), margin),
            Decision::End(_)
        ));
    }

    #[test]
    fn slurm_time_left_formats() {
        let s = Duration::from_secs;
        assert_eq!(parse_time_left("45"), Some(s(45)));
        assert_eq!(parse_time_left("1:05"), Some(s(65)));
        assert_eq!(parse_time_left("2:00:01"), Some(s(7201)));
        assert_eq!(parse_time_left("1-00:00:00"), Some(s(86_400)));
        assert_eq!(parse_time_left("3-4:05:06"), Some(s(273_906)));
        for bad in ["UNLIMITED", "NOT_SET", "INVALID", "", "1:2:3:4", "x-1:00"] {
            assert_eq!(parse_time_left(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn job_end_from_the_environment_needs_no_slurm() {
        let end = job_end(|k| (k == "SLURM_JOB_END_TIME").then(|| "2000000000".to_string()));
        assert_eq!(end, Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert_eq!(job_end(|_| None), None, "outside Slurm there is no end");
    }
}
