//! Memory sizes: parsing `3.5G`, `3584M`, `3.5GiB`, `512K` or `4096B`, and display as
//! MiB/GiB.
//!
//! Sizes are binary everywhere: `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` all mean
//! powers of 1024, as in Slurm's own `--mem` flags. Decimal-looking units (`GB`, `MB`) are
//! refused rather than guessed, and so is a bare number (`4000`): Slurm users mean MB by it,
//! a byte count would be 4000 bytes; the unit is required (`B` for bytes). This module does arithmetic on byte counts only; it knows
//! nothing about Slurm or reports.

use std::fmt;
use std::str::FromStr;

/// Bytes in one KiB, MiB, GiB, TiB.
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// A byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// Why a size string was refused. Carries the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size is empty; write e.g. 3.5G, 3584M or 512K")]
    Empty,
    #[error("`{text}` is not a size; write a number with an optional unit, e.g. 3.5G, 3584M, 512K")]
    NotANumber { text: String },
    #[error(
        "`{text}`: unit `{unit}` is not known; use K, M, G, T (or KiB, MiB, GiB, TiB), \
         all powers of 1024"
    )]
    UnknownUnit { text: String, unit: String },
    #[error(
        "`{text}`: `{unit}` could mean powers of 1000 or 1024; write `{binary}` \
         (sizes here are binary: 1G = 1024M)"
    )]
    Ambiguous {
        text: String,
        unit: String,
        binary: String,
    },
    #[error(
        "`{text}` has no unit; write `{suggestion}` for MiB (or G, K, T; `B` for bytes): \
         sizes here are binary and a bare number is not guessed"
    )]
    NoUnit { text: String, suggestion: String },
    #[error("`{text}`: a byte count must be a whole number; use a unit such as K or M")]
    FractionalBytes { text: String },
    #[error("`{text}` is too large")]
    TooLarge { text: String },
}

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole MiB, rounded up: what `--mem-per-cpu=<N>M` needs.
    #[cfg(test)]
    fn mib_ceil(self) -> u64 {
        self.0.div_ceil(MIB)
    }
}

/// Parses a size; see the module comment for the units.
pub fn parse_size(text: &str) -> Result<Size, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let not_a_number = || SizeError::NotANumber {
        text: text.to_string(),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(not_a_number());
    }
    if unit.is_empty() {
        return Err(no_unit(text, number));
    }
    let multiplier = unit_multiplier(text, unit)?;
    if multiplier == 1 && !frac.trim_end_matches('0').is_empty() {
        return Err(SizeError::FractionalBytes {
            text: text.to_string(),
        });
    }
    let too_large = || SizeError::TooLarge {
        text: text.to_string(),
    };
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    // The fraction, exactly: frac_digits / 10^len, times the unit, rounded up to a byte.
    let frac = frac.get(..18).unwrap_or(frac);
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| not_a_number())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let bytes = whole
        .checked_mul(u128::from(multiplier))
        .and_then(|w| w.checked_add((frac_value * u128::from(multiplier)).div_ceil(scale)))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map(Size).map_err(|_| too_large())
}

/// A bare number refused, suggesting it in MiB.
fn no_unit(text: &str, number: &str) -> SizeError {
    SizeError::NoUnit {
        text: text.to_string(),
        suggestion: format!("{number}M"),
    }
}

fn unit_multiplier(text: &str, unit: &str) -> Result<u64, SizeError> {
    let lower = unit.to_ascii_lowercase();
    let m = match lower.as_str() {
        "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => TIB,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(SizeError::Ambiguous {
                text: text.to_string(),
                unit: unit.to_string(),
                binary: unit[..1].to_ascii_uppercase(),
            });
        }
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    Ok(m)
}

impl FromStr for Size {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s)
    }
}

/// `8 GiB`, `3.5 GiB`, `900 MiB`, `1.25 MiB`, `512 KiB`, `17 B`: at most two decimals,
/// trailing zeros dropped.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, name) = match self.0 {
            b if b >= TIB => (TIB, "TiB"),
            b if b >= GIB => (GIB, "GiB"),
            b if b >= MIB => (MIB, "MiB"),
            b if b >= KIB => (KIB, "KiB"),
            _ => return write!(f, "{} B", self.0),
        };
        // Hundredths, rounded to nearest.
        let hundredths = (u128::from(self.0) * 100 + u128::from(unit) / 2) / u128::from(unit);
        let (int, frac) = (hundredths / 100, hundredths % 100);
        match frac {
            0 => write!(f, "{int} {name}"),
            f2 if f2 % 10 == 0 => write!(f, "{int}.{} {name}", f2 / 10),
            f2 => write!(f, "{int}.{f2:02} {name}"),
        }
    }
}

/// A YAML size: a string with a unit (`8G`); a bare number is refused (see
/// [`SizeError::NoUnit`]).
impl super::Unit for Size {
    const EXPECTING: &'static str = "a size such as 8G, 3584M or 512K (binary units)";
    fn from_number(n: super::Number) -> Option<Result<Size, String>> {
        let text = n.to_string();
        Some(Err(no_unit(&text, &text).to_string()))
    }
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary() {
        assert_eq!(parse_size("3.5G").unwrap(), Size(3584 * MIB));
        assert_eq!(parse_size("3584M").unwrap(), Size(3584 * MIB));
        assert_eq!(parse_size("3.5GiB").unwrap(), Size(3584 * MIB));
        assert_eq!(parse_size("3.5 gib").unwrap(), Size(3584 * MIB));
        assert_eq!(parse_size("512K").unwrap(), Size(512 * 1024));
        assert_eq!(parse_size("512KiB").unwrap(), Size(512 * 1024));
        assert_eq!(parse_size("2T").unwrap(), Size(2 * TIB));
        assert_eq!(parse_size("1024B").unwrap(), Size(1024));
        assert_eq!(parse_size("0M").unwrap(), Size(0));
        assert_eq!(parse_size(" 7 M ").unwrap(), Size(7 * MIB));
        assert_eq!(parse_size(".5G").unwrap(), Size(512 * MIB));
        assert_eq!(parse_size("1.0B").unwrap(), Size(1));
    }

    #[test]
    fn fractions_round_up_to_a_byte() {
        // 0.1 KiB = 102.4 bytes -> 103.
        assert_eq!(parse_size("0.1K").unwrap(), Size(103));
        assert_eq!(parse_size("1.001K").unwrap(), Size(1026));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(
            parse_size("lots"),
            Err(SizeError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("1.2.3G"),
            Err(SizeError::NotANumber { .. })
        ));
        assert!(matches!(parse_size("G"), Err(SizeError::NotANumber { .. })));
        assert!(matches!(
            parse_size("-1G"),
            Err(SizeError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("3X"),
            Err(SizeError::UnknownUnit { .. })
        ));
        let e = parse_size("8GB").unwrap_err();
        assert!(e.to_string().contains("write `G`"), "{e}");
        assert!(matches!(
            parse_size("1.5B"),
            Err(SizeError::FractionalBytes { .. })
        ));
        assert!(matches!(
            parse_size("99999999T"),
            Err(SizeError::TooLarge { .. })
        ));
    }

    #[test]
    fn bare_numbers_are_refused_with_a_suggestion() {
        for text in ["4000", " 7500 ", "0", "1.5", "4096"] {
            let e = parse_size(text).unwrap_err();
            assert!(matches!(e, SizeError::NoUnit { .. }), "{text}: {e}");
        }
        let e = parse_size("4000").unwrap_err();
        assert!(e.to_string().contains("write `4000M`"), "{e}");
        let e: SizeError = "7500".parse::<Size>().unwrap_err();
        assert!(e.to_string().contains("`7500M`"), "{e}");
    }

    #[test]
    fn display_in_mib_and_gib() {
        assert_eq!(Size(8 * GIB).to_string(), "8 GiB");
        assert_eq!(Size(3584 * MIB).to_string(), "3.5 GiB");
        assert_eq!(Size(900 * MIB).to_string(), "900 MiB");
        assert_eq!(Size(MIB + MIB / 4).to_string(), "1.25 MiB");
        assert_eq!(Size(512 * KIB).to_string(), "512 KiB");
        assert_eq!(Size(17).to_string(), "17 B");
        assert_eq!(Size(GIB + 1).to_string(), "1 GiB");
    }

    #[test]
    fn mib_rounds_up() {
        assert_eq!(Size(0).mib_ceil(), 0);
        assert_eq!(Size(1).mib_ceil(), 1);
        assert_eq!(Size(MIB).mib_ceil(), 1);
        assert_eq!(Size(MIB + 1).mib_ceil(), 2);
    }

    #[test]
    fn yaml_wants_a_unit() {
        let s: Size = serde_yaml::from_str("8G").unwrap();
        assert_eq!(s, Size(8 * GIB));
        for bare in ["4000", "0", "4000.5", "-1"] {
            let e = serde_yaml::from_str::<Size>(bare).unwrap_err();
            assert!(e.to_string().contains("M`"), "{bare}: {e}");
        }
        let e = serde_yaml::from_str::<Size>("4000").unwrap_err();
        assert!(e.to_string().contains("`4000M`"), "{e}");
        let e = serde_yaml::from_str::<Size>("8GB").unwrap_err();
        assert!(e.to_string().contains("binary"), "{e}");
    }
}
