//! What a whole campaign's records add up to and what can be done about them: `status`
//! (counts, throughput, failures), `retry` (what still needs a job), `release` (claims no
//! one can prove dead) and `verify` (outputs against their manifests). Built on the
//! ledger's storage (`crate::domain::ledger`), which knows nothing of these.

pub mod release;
pub mod retry;
pub mod status;
pub mod verify;
