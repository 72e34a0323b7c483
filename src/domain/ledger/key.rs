//! Granule names to file names: the only place that decides what a record or claim file is
//! called.
//!
//! A granule is keyed by its file name, which a checked list keeps unique. The key keeps
//! ASCII letters, digits, `-`, `_` and `.` (not as the first character) and writes every
//! other byte as `%XX`, so a key never starts with `.` (temporary files do), never holds `/`,
//! and two names never share a key. A key longer than [`MAX_KEY`] bytes is cut and ends in
//! `~` and a 64-bit hash of the whole name (`~` is always escaped otherwise), so keys stay
//! within NAME_MAX with room for a suffix.

use std::fmt::Write;

/// The longest key; longer ones are cut and hashed.
pub const MAX_KEY: usize = 180;
/// What a cut key keeps of the escaped name before `~HASH`.
const CUT: usize = MAX_KEY - 17;

/// The file-name-safe key of a granule name.
pub fn encode(name: &str) -> String {
    if name.is_empty() {
        // `%` alone cannot come from any other name: a real `%` is escaped as `%25`.
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.len() > MAX_KEY {
        out.truncate(CUT);
        let _ = write!(out, "~{:016x}", fnv1a(name.as_bytes()));
    }
    out
}

/// The granule name a key was made from; `None` for a cut key (the name is longer than the
/// key keeps) or text no [`encode`] makes.
pub fn decode(key: &str) -> Option<String> {
    if key == "%" {
        return Some(String::new());
    }
    if key.contains('~') {
        return None;
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode(&name) == key).then_some(name)
}

/// The record shard (`00`..`ff`) of a granule name: 256 folders keep each one small.
pub fn shard(name: &str) -> String {
    format!("{:02x}", fnv1a(name.as_bytes()) >> 56)
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(
            encode("goes16.2024.001.1200.gran"),
            "goes16.2024.001.1200.gran"
        );
        assert_eq!(encode("a-b_c.hdf"), "a-b_c.hdf");
    }

    #[test]
    fn odd_characters_are_escaped_and_never_collide() {
        assert_eq!(encode(".hidden"), "%2Ehidden");
        assert_eq!(encode("a b"), "a%20b");
        assert_eq!(encode("a%20b"), "a%2520b");
        assert_eq!(encode("x\ny"), "x%0Ay");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode(".."), "%2E.");
        assert_eq!(encode(""), "%");
        let names = [
            "a b", "a%20b", "a_b", "a-b", "a.b", ".ab", "%2Eab", "a~b", "a/b", "A b",
        ];
        let keys: HashSet<String> = names.iter().map(|n| encode(n)).collect();
        assert_eq!(keys.len(), names.len());
        for k in &keys {
            assert!(!k.starts_with('.') && !k.contains('/'), "{k}");
        }
        for n in names.iter().chain(&["", "é", "x\ny", ".."]) {
            assert_eq!(decode(&encode(n)).as_deref(), Some(*n));
        }
        assert_eq!(decode("a%2"), None);
        assert_eq!(decode("a%20"), Some("a ".into()));
        assert_eq!(decode("a b"), None, "no key holds a space");
    }

    #[test]
    fn long_names_are_cut_and_hashed() {
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let (ka, kb) = (encode(&long_a), encode(&long_b));
        assert!(ka.len() <= MAX_KEY && kb.len() <= MAX_KEY);
        assert_ne!(ka, kb);
        assert!(ka.contains('~'));
        assert_eq!(decode(&ka), None);
        // A name just at the limit is not cut.
        assert_eq!(encode(&"z".repeat(MAX_KEY)), "z".repeat(MAX_KEY));
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(
            shard("goes16.2024.001.1200.gran"),
            shard("goes16.2024.001.1200.gran")
        );
        let shards: HashSet<String> = (0..5000).map(|i| shard(&format!("g{i:06}.hdf"))).collect();
        assert!(shards.len() > 200, "{}", shards.len());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
