//! Slurm time limits (`--time`): parsing Slurm's spellings and printing `D-HH:MM:SS`.

use std::fmt;
use std::str::FromStr;

/// A Slurm time limit, held in whole seconds. Accepts Slurm's forms: `minutes`,
/// `minutes:seconds`, `hours:minutes:seconds`, `days-hours`, `days-hours:minutes`,
/// `days-hours:minutes:seconds`; in YAML also a plain integer of minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeLimit {
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a Slurm time limit; write minutes (90), HH:MM:SS (01:30:00) \
     or D-HH:MM:SS (1-12:00:00)"
)]
pub struct TimeLimitError(pub String);

impl TimeLimit {
    pub fn from_seconds(seconds: u64) -> TimeLimit {
        TimeLimit { seconds }
    }
}

impl FromStr for TimeLimit {
    type Err = TimeLimitError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || TimeLimitError(text.to_string());
        let t = text.trim();
        let num = |s: &str| -> Result<u64, TimeLimitError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (days, clock) = match t.split_once('-') {
            Some((d, rest)) => (Some(num(d)?), rest),
            None => (None, t),
        };
        let parts = clock.split(':').map(num).collect::<Result<Vec<u64>, _>>()?;
        let seconds = match (days, parts.as_slice()) {
            (None, [m]) => m * 60,
            (None, [m, s]) => m * 60 + s,
            (None, [h, m, s]) => h * 3600 + m * 60 + s,
            (Some(d), [h]) => d * 86400 + h * 3600,
            (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
            (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
            _ => return Err(bad()),
        };
        if seconds == 0 {
            return Err(bad());
        }
        Ok(TimeLimit { seconds })
    }
}

/// `HH:MM:SS`, or `D-HH:MM:SS` from one day on.
impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
        if d > 0 {
            write!(f, "{d}-{h:02}:{m:02}:{sec:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{sec:02}")
        }
    }
}

/// In YAML a bare integer counts minutes, as Slurm's `--time=90` does.
impl super::Unit for TimeLimit {
    const EXPECTING: &'static str =
        "a time limit such as \"02:00:00\", \"1-00:00:00\" or 90 (minutes)";
    fn from_number(n: super::Number) -> Option<Result<TimeLimit, String>> {
        match n {
            super::Number::Unsigned(0) => {
                Some(Err("a time limit of 0 minutes leaves no time to run".into()))
            }
            super::Number::Unsigned(v) => Some(Ok(TimeLimit { seconds: v * 60 })),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for TimeLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits() {
        let t = |s: &str| s.parse::<TimeLimit>().map(|t| t.seconds);
        assert_eq!(t("90"), Ok(5400));
        assert_eq!(t("90:30"), Ok(5430));
        assert_eq!(t("01:30:00"), Ok(5400));
        assert_eq!(t("2-12"), Ok(2 * 86400 + 12 * 3600));
        assert_eq!(t("2-12:30"), Ok(2 * 86400 + 12 * 3600 + 1800));
        assert_eq!(t("1-00:00:01"), Ok(86401));
        assert!(t("").is_err() && t("1:2:3:4").is_err() && t("0").is_err());
        assert!(t("-1").is_err() && t("1h").is_err());
        assert_eq!(TimeLimit::from_seconds(5400).to_string(), "01:30:00");
        assert_eq!(
            TimeLimit::from_seconds(86400 + 61).to_string(),
            "1-00:01:01"
        );
    }
}
