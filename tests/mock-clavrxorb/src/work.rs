//! The numbers: granule record values, the per-line "CPU work", the output
//! record and its checksum, and memory ballast that stands in for the real
//! program's arrays. Pure functions only (besides allocating); no I/O.

use std::hint::black_box;

/// Bytes of one output record: four little-endian u64.
pub const RECORD_BYTES: usize = 32;

/// SplitMix64 output for state `x` (one step from state `x`).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Record `line` (0-based) of a granule generated with `seed`.
pub fn input_value(seed: u64, line: u64) -> u64 {
    splitmix64(seed ^ line)
}

/// A 64-bit mixing function (Murmur3's finaliser).
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// `value` put through [`mix64`] `rounds` times; the compiler cannot see
/// through the loop bound or the value, so the work is really done.
pub fn work(value: u64, rounds: u64) -> u64 {
    let mut x = black_box(value);
    for _ in 0..black_box(rounds) {
        x = black_box(mix64(x));
    }
    x
}

/// Checksum over one record's three fields.
pub fn checksum(line: u64, input: u64, work: u64) -> u64 {
    mix64(line.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ input.rotate_left(21) ^ work.rotate_left(42))
}

/// The output record of scan line `line` (0-based, granule-wide).
pub fn record(line: u64, input: u64, rounds: u64) -> [u64; 4] {
    let w = work(input, rounds);
    [line, input, w, checksum(line, input, w)]
}

/// Output bytes for the segment starting at line `start` with `inputs`.
pub fn segment_bytes(start: u64, inputs: &[u64], rounds: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(inputs.len() * RECORD_BYTES);
    for (i, &input) in inputs.iter().enumerate() {
        for field in record(start + i as u64, input, rounds) {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    out
}

/// Memory that is really resident: every page written with a non-zero byte.
pub struct Ballast {
    /// Held only to keep the pages resident until the ballast is dropped.
    _bytes: Vec<u8>,
}

impl Ballast {
    /// `len` bytes, every page touched (`len` 0 allocates nothing).
    pub fn touched(len: usize) -> Ballast {
        let mut bytes = vec![0u8; len];
        let mut at = 0;
        while at < len {
            bytes[at] = 1;
            at += 4096;
        }
        if let Some(last) = bytes.last_mut() {
            *last = 1;
        }
        Ballast {
            _bytes: black_box(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference() {
        // First output of the reference SplitMix64 seeded with 0.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(input_value(0, 0), splitmix64(0));
        assert_eq!(input_value(5, 3), splitmix64(6));
    }

    #[test]
    fn work_zero_rounds_is_identity() {
        assert_eq!(work(42, 0), 42);
        assert_eq!(work(42, 2), mix64(mix64(42)));
    }

    #[test]
    fn record_fields() {
        let r = record(7, 99, 3);
        assert_eq!(r[0], 7);
        assert_eq!(r[1], 99);
        assert_eq!(r[2], work(99, 3));
        assert_eq!(r[3], checksum(7, 99, r[2]));
    }

    #[test]
    fn misplaced_segment_changes_bytes() {
        let inputs = [1, 2, 3];
        assert_ne!(segment_bytes(0, &inputs, 1), segment_bytes(3, &inputs, 1));
    }

    #[test]
    fn segment_bytes_layout() {
        let bytes = segment_bytes(10, &[5, 6], 0);
        assert_eq!(bytes.len(), 64);
        assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 11);
        assert_eq!(u64::from_le_bytes(bytes[40..48].try_into().unwrap()), 6);
        assert_eq!(u64::from_le_bytes(bytes[48..56].try_into().unwrap()), 6);
    }

    #[test]
    fn ballast_touches_pages() {
        let b = Ballast::touched(10_000)._bytes;
        assert_eq!(b.len(), 10_000);
        assert_eq!((b[0], b[4095], b[4096], b[9_999]), (1, 0, 1, 1));
        assert!(Ballast::touched(0)._bytes.is_empty());
    }
}
