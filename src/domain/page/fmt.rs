//! How numbers read on the page: durations in seconds, minutes, hours; sizes binary (the
//! crate's [`Size`]); counts with thin grouping; Unix times as UTC.

use crate::base::time::{self, Style};
use crate::base::units::Size;

/// Unix times read as UTC on the page, as everywhere.
pub use crate::base::time::utc;

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
    time::duration(s, Style::Fine)
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
}
