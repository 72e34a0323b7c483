//! pseg-slurm: run clavrxorb over many granules, one segment per core, on Slurm or locally.
//!
//! Three layers, arrows pointing only down (see ARCHITECTURE.md):
//! - [`cmd`]: one module per thing a user runs; clap, terminal output and exit statuses
//!   live here and nowhere else.
//! - [`domain`]: the fan-out, tracer, memory, ledger, sbatch rendering, the report page.
//! - [`base`]: units, files, time, identity and the one module with raw OS calls.
//!
//! The two binaries (`pseg-slurm`, `pseg-step`) only dispatch to [`cmd`].
#![deny(unsafe_code)]

pub mod base;
pub mod cmd;
pub mod domain;
