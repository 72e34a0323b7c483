//! pseg-slurm: run clavrxorb over many granules, one segment per core, on Slurm or locally.
//!
//! The two binaries (`pseg-slurm`, `pseg-step`) are thin shells over this library.
#![deny(unsafe_code)]

pub mod autopilot;
pub mod bounded;
pub mod check;
pub mod cli;
pub mod config;
pub mod cpus;
pub mod deadline;
pub mod escape;
pub mod fanout;
pub mod granules;
pub mod ledger;
pub mod mapping;
pub mod memory;
pub mod options;
pub mod plan;
pub mod render;
pub mod report;
pub mod script;
pub mod size;
pub mod step;
pub mod tracer;
