//! Helpers shared by the ledger's unit tests.

use std::path::Path;

use crate::domain::ledger::Ledger;
use crate::domain::ledger::alive::Liveness;

/// A ledger that never asks a real scontrol.
pub fn ledger(dir: &Path) -> Ledger {
    Ledger::open(dir)
        .unwrap()
        .with_liveness(Liveness::new(Path::new("/proc"), Some(None)))
}

/// The names in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
