//! Sizing arithmetic: from measured peaks and wall times to `--mem-per-cpu` and `--time`.
//!
//! Pure functions on numbers, exact where it matters: headroom is applied in integer
//! basis points and every rounding goes up, once, at the end. Where the numbers come from
//! (reports, flags, config) is the caller's business.

use crate::base::units::MIB;
use crate::base::units::{Percent, Percentile, TimeLimit};

/// The headroom used when neither a flag nor the config sets one.
pub const DEFAULT_HEADROOM: Percent = Percent::from_basis_points(1500);

/// A measured time limit is never below this: job start-up and file staging are not in the
/// reports, and Slurm counts in minutes anyway.
pub const MIN_TIME_SECONDS: u64 = 5 * 60;

/// The `p`-th percentile of `values` by the nearest-rank method: the smallest value with at
/// least `p` % of the values at or below it. `p = 100` is the maximum. `None` when empty.
pub fn percentile<T: Copy + PartialOrd>(values: &[T], p: Percentile) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    let rank = ((p.get() * n as f64) / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// `bytes * (1 + headroom)`, rounded up to a byte.
pub fn with_headroom(bytes: u64, headroom: Percent) -> u64 {
    let scaled = u128::from(bytes) * (10_000 + u128::from(headroom.basis_points));
    u64::try_from(scaled.div_ceil(10_000)).unwrap_or(u64::MAX)
}

/// `--mem-per-cpu` in MiB for a step whose whole peak is `peak_bytes`:
/// `peak * (1 + headroom) / cpus`, rounded up to whole MiB (one rounding, at the end).
pub fn mem_per_cpu_mib(peak_bytes: u64, headroom: Percent, cpus: u32) -> u64 {
    let numerator = u128::from(peak_bytes) * (10_000 + u128::from(headroom.basis_points));
    let denominator = 10_000 * u128::from(cpus.max(1)) * u128::from(MIB);
    u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX)
}

/// A time limit for a task that processes `granules` granules one after another, each taking
/// `wall_seconds`: `wall * granules * (1 + headroom)`, rounded up to whole minutes, at least
/// [`MIN_TIME_SECONDS`].
pub fn time_limit(wall_seconds: f64, granules: usize, headroom: Percent) -> TimeLimit {
    let factor = (10_000.0 + f64::from(headroom.basis_points)) / 10_000.0;
    let seconds = (wall_seconds.max(0.0) * granules as f64 * factor).ceil();
    let seconds = if seconds >= u64::MAX as f64 {
        u64::MAX / 2
    } else {
        seconds as u64
    };
    let minutes = seconds.div_ceil(60);
    TimeLimit::from_seconds((minutes * 60).max(MIN_TIME_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::units::GIB;

    fn pct(p: f64) -> Percentile {
        Percentile::new(p).unwrap()
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, Percentile::MAX), Some(20));
        assert_eq!(percentile(&v, pct(95.0)), Some(19));
        assert_eq!(percentile(&v, pct(50.0)), Some(10));
        assert_eq!(percentile(&v, pct(0.1)), Some(1));
        assert_eq!(percentile(&[7u64], pct(50.0)), Some(7));
        assert_eq!(percentile::<u64>(&[], Percentile::MAX), None);
        // Order of the input does not matter; floats work too.
        assert_eq!(percentile(&[3.0, 1.0, 2.0], Percentile::MAX), Some(3.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], pct(34.0)), Some(2.0));
        // Never the sum of peaks.
        assert_eq!(percentile(&[5u64, 5, 5], Percentile::MAX), Some(5));
    }

    #[test]
    fn headroom_rounds_up() {
        assert_eq!(with_headroom(100, DEFAULT_HEADROOM), 115);
        assert_eq!(with_headroom(101, DEFAULT_HEADROOM), 117); // 116.15 -> 117
        assert_eq!(with_headroom(100, Percent::from_basis_points(0)), 100);
        assert_eq!(with_headroom(u64::MAX, DEFAULT_HEADROOM), u64::MAX);
    }

    #[test]
    fn mem_per_cpu_divides_and_rounds_up_once() {
        // 8 GiB + 15 % = 9420.8 MiB; / 4 = 2355.2 -> 2356.
        assert_eq!(mem_per_cpu_mib(8 * GIB, DEFAULT_HEADROOM, 4), 2356);
        // Exactly divisible stays exact.
        assert_eq!(
            mem_per_cpu_mib(4 * GIB, Percent::from_basis_points(0), 4),
            1024
        );
        // One byte over rounds up to the next MiB.
        assert_eq!(
            mem_per_cpu_mib(4 * GIB + 1, Percent::from_basis_points(0), 4),
            1025
        );
        // One rounding at the end, not per stage: 3 MiB + 1 B over 3 cpus is 2 MiB, not 3.
        assert_eq!(
            mem_per_cpu_mib(3 * MIB + 1, Percent::from_basis_points(0), 3),
            2
        );
        assert_eq!(mem_per_cpu_mib(1, DEFAULT_HEADROOM, 1), 1);
        assert_eq!(mem_per_cpu_mib(0, DEFAULT_HEADROOM, 4), 0);
    }

    #[test]
    fn time_in_whole_minutes_with_floor() {
        // 600 s * 3 granules * 1.15 = 2070 s -> 35 min.
        assert_eq!(time_limit(600.0, 3, DEFAULT_HEADROOM).seconds, 35 * 60);
        // 1 min exactly stays, but the floor wins.
        assert_eq!(
            time_limit(60.0, 1, Percent::from_basis_points(0)).seconds,
            MIN_TIME_SECONDS
        );
        assert_eq!(
            time_limit(3600.0, 2, Percent::from_basis_points(0)).seconds,
            7200
        );
        assert_eq!(
            time_limit(3600.5, 2, Percent::from_basis_points(0)).seconds,
            7260
        );
    }
}
