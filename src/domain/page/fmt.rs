//! How numbers read on the page: durations in seconds, minutes, hours; sizes binary (the
//! crate's [`Size`]); counts with thin grouping; Unix times as UTC.

use crate::base::size::Size;

/// A byte count, binary: `75.92 MiB`.
pub fn size(bytes: u64) -> String {
    Size(bytes).to_string()
}

/// A count: `1 234 567` (grouped by a narrow space); fractions keep one decimal.
pub fn count(v: f64) -> String {
    if v.fract().abs() > 1e-9 {
        return format!("{v:.1}");
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// A duration: `0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`, `3 d 04 h`.
pub fn seconds(s: f64) -> String {
    let s = s.max(0.0);
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else if s < 86400.0 {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    } else {
        let h = (s / 3600.0).round() as u64;
        format!("{} d {:02} h", h / 24, h % 24)
    }
}

/// A tick label on a time axis whose ticks are `step` seconds apart: `0.2 s`, `30 s`,
/// `5 min`, `2 h`, `3 d`.
pub fn seconds_tick(t: f64, step: f64) -> String {
    if t == 0.0 {
        return "0".into();
    }
    if step >= 86400.0 {
        format!("{} d", trim(t / 86400.0))
    } else if step >= 3600.0 {
        format!("{} h", trim(t / 3600.0))
    } else if step >= 60.0 {
        format!("{} min", trim(t / 60.0))
    } else {
        format!("{} s", trim(t))
    }
}

/// At most three decimals, without trailing zeros.
fn trim(v: f64) -> String {
    let mut s = format!("{v:.3}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_counts() {
        assert_eq!(seconds(1.270964), "1.27 s");
        assert_eq!(seconds(42.04), "42.0 s");
        assert_eq!(seconds(245.0), "4 min 05 s");
        assert_eq!(seconds(7380.0), "2 h 03 min");
        assert_eq!(seconds(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 04 h");
        assert_eq!(size(79_606_784), "75.92 MiB");
        assert_eq!(count(1_234_567.0), "1\u{202f}234\u{202f}567");
        assert_eq!(count(100.0), "100");
        assert_eq!(count(2.5), "2.5");
        assert_eq!(seconds_tick(0.4, 0.2), "0.4 s");
        assert_eq!(seconds_tick(600.0, 300.0), "10 min");
        assert_eq!(seconds_tick(7200.0, 3600.0), "2 h");
        assert_eq!(seconds_tick(0.0, 1.0), "0");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_208_000.5), "2024-02-29 12:00:00 UTC");
        assert_eq!(utc(1_795_243_412.15), "2026-11-21 06:43:32 UTC");
    }
}
