//! The domain layer: what pseg-slurm knows about CLAVR-x, Slurm and a campaign. No clap, no
//! printing to the terminal, no exit codes: commands (`crate::cmd`) do that. Uses only
//! `crate::base` below it.

pub mod autopilot;
pub(crate) mod campaign;
pub(crate) mod clavrx_options;
pub mod fanout;
pub mod granule_list;
pub mod ledger;
pub mod memory;
pub mod page;
pub(crate) mod plan;
pub(crate) mod reports;
pub(crate) mod script;
pub(crate) mod site_config;
pub(crate) mod step;
pub mod task_share;
pub(crate) mod tracer;
