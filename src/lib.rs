//! pseg-slurm: run clavrxorb over many granules, one segment per core, on Slurm or locally.
//!
//! The two binaries (`pseg-slurm`, `pseg-step`) are thin shells over this library.
#![deny(unsafe_code)]

pub mod granules;
