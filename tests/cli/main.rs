//! End-to-end tests: the shipped binaries driven against the mock clavrxorb.
//!
//! One test binary (as ripgrep does) so the mock is built once per run.

mod autopilot;
mod cleanup;
mod container;
mod drain;
mod fanout;
mod gen_script;
mod ledger;
mod memory;
mod out_of_box;
mod overlap;
mod plan;
mod report_html;
mod slurm;
mod support;
mod trust;
mod verify;
