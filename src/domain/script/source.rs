//! Where a gen setting came from (a flag, a config key, a default, or gen's own finding),
//! and a value paired with it, so the script's header and every error can say so.

use std::fmt;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `gen` flag, e.g. `--partition`.
    Flag(&'static str),
    /// A site config key, e.g. `partition`.
    Config(&'static str),
    /// Built into pseg-slurm.
    Default,
    /// Found or worked out by gen, e.g. `clavrxorb on PATH`.
    Derived(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag} flag"),
            Source::Config(key) => write!(f, "site config `{key}`"),
            Source::Default => f.write_str("default"),
            Source::Derived(how) => f.write_str(how),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Sourced<T> {
        Sourced { value, source }
    }
}
