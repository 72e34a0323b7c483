//! Value types a user writes as text, on the command line and in YAML: memory [`Size`]s
//! (`3.5G`), Slurm [`TimeLimit`]s (`01:30:00`), [`Percent`]ages (`15%`) and
//! [`Percentile`]s (`p95`).
//!
//! Each type's `FromStr` is its one parser, and its error the message a user reads. YAML
//! goes through the same parser: [`deserialize`] is the one serde deserializer of them all,
//! and a type only says what a bare YAML number means to it ([`Unit::from_number`]). Nothing
//! here knows Slurm scripts, reports or configs.

mod percent;
mod size;
mod time_limit;

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{Error, Unexpected, Visitor};

pub use percent::{Percent, PercentError, Percentile, PercentileError};
pub use size::{GIB, KIB, MIB, Size, SizeError, TIB, parse_size};
pub use time_limit::{TimeLimit, TimeLimitError};

/// A bare YAML number, as serde hands it over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Unsigned(v) => write!(f, "{v}"),
            Number::Signed(v) => write!(f, "{v}"),
            Number::Float(v) => write!(f, "{v}"),
        }
    }
}

/// A value type read from text, whose YAML form is that same text.
pub trait Unit: FromStr<Err: fmt::Display> {
    /// What a value looks like, for serde's "invalid type: ..., expected ..." message.
    const EXPECTING: &'static str;

    /// A bare YAML number: `None` refuses it as the wrong type. By default the number is
    /// read as the text it was written as.
    fn from_number(n: Number) -> Option<Result<Self, String>> {
        Some(n.to_string().parse().map_err(|e: Self::Err| e.to_string()))
    }
}

/// The serde deserializer of every [`Unit`]: text through `FromStr`, numbers through
/// [`Unit::from_number`]; anything else is refused naming [`Unit::EXPECTING`].
pub fn deserialize<'de, D: serde::Deserializer<'de>, T: Unit>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(UnitVisitor(PhantomData))
}

struct UnitVisitor<T>(PhantomData<T>);

impl<T: Unit> UnitVisitor<T> {
    fn number<E: Error>(self, n: Number, unexpected: Unexpected) -> Result<T, E> {
        match T::from_number(n) {
            Some(parsed) => parsed.map_err(E::custom),
            None => Err(E::invalid_type(unexpected, &self)),
        }
    }
}

impl<T: Unit> Visitor<'_> for UnitVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        self.number(Number::Unsigned(v), Unexpected::Unsigned(v))
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        self.number(Number::Signed(v), Unexpected::Signed(v))
    }
    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        self.number(Number::Float(v), Unexpected::Float(v))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: Unit + for<'de> serde::Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn text_goes_through_the_same_parser_as_flags() {
        assert_eq!(yaml::<Size>("3584M"), Ok("3.5G".parse().unwrap()));
        assert_eq!(yaml::<TimeLimit>("1-00:00:00").unwrap().seconds, 86400);
        assert_eq!(
            yaml::<Percent>("12.5%"),
            Ok(Percent::from_basis_points(1250))
        );
        assert_eq!(yaml::<Percentile>("p99.5").unwrap().get(), 99.5);
        let e = yaml::<TimeLimit>("soon").unwrap_err();
        assert!(e.contains("`soon` is not a Slurm time limit"), "{e}");
        let e = yaml::<Percent>("lots").unwrap_err();
        assert!(e.contains("`lots` is not a percentage"), "{e}");
    }

    #[test]
    fn each_unit_says_what_a_bare_number_means() {
        // A time limit counts minutes, as Slurm's `--time=90` does; 0 leaves no time.
        assert_eq!(yaml::<TimeLimit>("90").unwrap().seconds, 5400);
        let e = yaml::<TimeLimit>("0").unwrap_err();
        assert!(e.contains("0 minutes leaves no time to run"), "{e}");
        let e = yaml::<TimeLimit>("1.5").unwrap_err();
        assert!(e.contains("invalid type: floating point `1.5`"), "{e}");
        assert!(e.contains("expected a time limit such as"), "{e}");
        // A percentage or percentile reads as written.
        assert_eq!(yaml::<Percent>("7.5"), Ok(Percent::from_basis_points(750)));
        let e = yaml::<Percent>("-5").unwrap_err();
        assert!(e.contains("invalid type: integer `-5`"), "{e}");
        assert_eq!(yaml::<Percentile>("95").unwrap().get(), 95.0);
        let e = yaml::<Percentile>("-5").unwrap_err();
        assert!(e.contains("`-5` is not a percentile"), "{e}");
        // A size has no unit to guess: refused with a suggestion.
        let e = yaml::<Size>("-1").unwrap_err();
        assert!(e.contains("write `-1M`"), "{e}");
        let e = yaml::<Size>("true").unwrap_err();
        assert!(e.contains("expected a size such as 8G"), "{e}");
    }
}
