//! Percentages held exactly in basis points (`15%`, `12.5%`), and percentiles in (0, 100].

use std::fmt;
use std::str::FromStr;

/// A percentage held exactly in hundredths of a percent (basis points): `15`, `15%`, `12.5%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent {
    pub basis_points: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a percentage; write e.g. 15 or 15% (at most two decimals, at most 1000%)")]
pub struct PercentError(pub String);

impl Percent {
    pub const fn from_basis_points(basis_points: u32) -> Percent {
        Percent { basis_points }
    }
}

impl FromStr for Percent {
    type Err = PercentError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || PercentError(text.to_string());
        let t = text.trim();
        let t = t.strip_suffix('%').unwrap_or(t).trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        if whole > 1000 {
            return Err(bad());
        }
        Ok(Percent {
            basis_points: whole * 100 + frac,
        })
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, r) = (self.basis_points / 100, self.basis_points % 100);
        match r {
            0 => write!(f, "{w}%"),
            r if r % 10 == 0 => write!(f, "{w}.{}%", r / 10),
            r => write!(f, "{w}.{r:02}%"),
        }
    }
}

/// In YAML a bare number reads as written (`15`, `7.5`); a negative one is the wrong type.
impl super::Unit for Percent {
    const EXPECTING: &'static str = "a percentage such as 15 or 15%";
    fn from_number(n: super::Number) -> Option<Result<Percent, String>> {
        match n {
            super::Number::Signed(_) => None,
            n => Some(
                n.to_string()
                    .parse()
                    .map_err(|e: PercentError| e.to_string()),
            ),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize(d)
    }
}

/// A percentile in (0, 100]: 100 is the maximum, 95 the value 95 % of granules stay within.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percentile(f64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a percentile; write a number above 0 and at most 100 (100 = the maximum)")]
pub struct PercentileError(pub String);

impl Percentile {
    pub const MAX: Percentile = Percentile(100.0);

    pub fn new(p: f64) -> Option<Percentile> {
        (p > 0.0 && p <= 100.0).then_some(Percentile(p))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Percentile {
    type Err = PercentileError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let t = t.strip_prefix('p').unwrap_or(t);
        t.parse::<f64>()
            .ok()
            .and_then(Percentile::new)
            .ok_or_else(|| PercentileError(text.to_string()))
    }
}

impl fmt::Display for Percentile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl super::Unit for Percentile {
    const EXPECTING: &'static str = "a percentile such as 95 or p99.5 (100 = the maximum)";
}

impl<'de> serde::Deserialize<'de> for Percentile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents() {
        let p = |s: &str| s.parse::<Percent>().map(|p| p.basis_points);
        assert_eq!(p("15"), Ok(1500));
        assert_eq!(p("15%"), Ok(1500));
        assert_eq!(p("12.5%"), Ok(1250));
        assert_eq!(p("0.25"), Ok(25));
        assert_eq!(p("0"), Ok(0));
        assert!(p("-5").is_err() && p("1.234").is_err() && p("%").is_err());
        assert_eq!(Percent::from_basis_points(1250).to_string(), "12.5%");
        assert_eq!(Percent::from_basis_points(1525).to_string(), "15.25%");
    }

    #[test]
    fn percentiles() {
        assert_eq!("95".parse::<Percentile>().unwrap().get(), 95.0);
        assert_eq!("p99.5".parse::<Percentile>().unwrap().get(), 99.5);
        assert!("0".parse::<Percentile>().is_err());
        assert!("101".parse::<Percentile>().is_err());
    }
}
