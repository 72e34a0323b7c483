//! Fanning one granule's segments out to clones: the protocol state machine (`machine`), its
//! binding to real processes (`control`), the event loop (`supervisor`) and every OS call
//! (`unix`).

mod control;
pub mod machine;
pub mod orphan_guard;
mod supervisor;

pub use control::{Monitor, ProcControl};
pub use supervisor::{Feed, Flight, Outcome, Policy, Pool, supervise};
