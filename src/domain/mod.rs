//! The domain layer: what pseg-slurm knows about CLAVR-x, Slurm and a campaign. No clap, no
//! printing to the terminal, no exit codes: commands (`crate::cmd`) do that. Uses only
//! `crate::base` below it.

pub mod autopilot;
pub mod campaign;
pub mod clavrx_options;
pub mod fanout;
pub mod granule_list;
pub mod ledger;
pub mod memory;
pub mod page;
pub mod plan;
pub mod reports;
pub mod script;
pub mod site_config;
pub mod step;
pub mod task_share;
pub mod tracer;
