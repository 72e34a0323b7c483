//! Time as people read it: the one duration formatter, the one UTC formatter, and the clock.
//!
//! A duration reads as its two largest units (`4 min 05 s`, `2 h 03 min`, `3 d 04 h`); a
//! [`Style`] says how fine the shortest durations get and how the last unit is counted,
//! so the page, the status text and the live progress line each keep their own look.

use std::time::{SystemTime, UNIX_EPOCH};

/// How a duration is counted and how fine it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The report page: `0.42 s` under 10 s, `12.3 s` under a minute, then two units with
    /// the last one rounded.
    Fine,
    /// Status, ETAs and ages: whole seconds (rounded), then two units, the last one cut:
    /// `12 s`, `3 min 20 s`.
    Whole,
    /// A clock that runs: `12.3 s` under a minute, then whole units cut, never rounded up
    /// (a clock does not show a minute before it has passed); hours are the largest unit.
    Clock,
}

/// A duration in seconds, as [`Style`] says; negative durations read as zero.
pub fn duration(seconds: f64, style: Style) -> String {
    let s = seconds.max(0.0);
    match style {
        Style::Fine if s < 10.0 => return format!("{s:.2} s"),
        Style::Fine | Style::Clock if s < 60.0 => return format!("{s:.1} s"),
        _ => {}
    }
    // The smaller of the two units shown, and how many of it.
    let (unit, count) = match style {
        Style::Fine => {
            let unit = if s < 3600.0 {
                1
            } else if s < 86400.0 {
                60
            } else {
                3600
            };
            (unit, (s / unit as f64).round() as u64)
        }
        Style::Whole => {
            let t = s.round() as u64;
            let unit = match t {
                t if t < 60 => return format!("{t} s"),
                t if t < 3600 => 1,
                t if t < 86400 => 60,
                _ => 3600,
            };
            (unit, t / unit)
        }
        Style::Clock => {
            let t = s as u64;
            let unit = if t < 3600 { 1 } else { 60 };
            (unit, t / unit)
        }
    };
    match unit {
        1 => format!("{} min {:02} s", count / 60, count % 60),
        60 => format!("{} h {:02} min", count / 60, count % 60),
        _ => format!("{} d {:02} h", count / 24, count % 24),
    }
}

/// A Unix time as `2024-01-01 12:00:00 UTC`.
pub fn utc(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let (days, rest) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_reads_fine_durations_rounded() {
        let d = |s| duration(s, Style::Fine);
        assert_eq!(d(1.270964), "1.27 s");
        assert_eq!(d(42.04), "42.0 s");
        assert_eq!(d(245.0), "4 min 05 s");
        assert_eq!(d(125.7), "2 min 06 s");
        assert_eq!(d(7380.0), "2 h 03 min");
        assert_eq!(d(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 04 h");
        assert_eq!(d(-1.0), "0.00 s");
    }

    #[test]
    fn status_reads_whole_seconds() {
        let d = |s| duration(s, Style::Whole);
        assert_eq!(d(12.4), "12 s");
        assert_eq!(d(59.6), "1 min 00 s");
        assert_eq!(d(200.0), "3 min 20 s");
        assert_eq!(d(7500.0), "2 h 05 min");
        assert_eq!(d(7559.0), "2 h 05 min");
        assert_eq!(d(86400.0 + 4.0 * 3600.0), "1 d 04 h");
        assert_eq!(d(-5.0), "0 s");
    }

    #[test]
    fn a_clock_never_shows_time_not_yet_passed() {
        let d = |s| duration(s, Style::Clock);
        assert_eq!(d(1.5), "1.5 s");
        assert_eq!(d(245.0), "4 min 05 s");
        assert_eq!(d(125.7), "2 min 05 s");
        assert_eq!(d(3720.0), "1 h 02 min");
        assert_eq!(d(3779.9), "1 h 02 min");
        assert_eq!(d(2.0 * 86400.0), "48 h 00 min");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_704_110_400.5), "2024-01-01 12:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_208_000.5), "2024-02-29 12:00:00 UTC");
        assert_eq!(utc(1_795_243_412.15), "2026-11-21 06:43:32 UTC");
        assert!(unix_now() > 1_704_110_400.0);
    }
}
