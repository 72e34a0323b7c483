//! The base layer: small tools every other layer uses, which call nothing of ours — units,
//! bounded reads, escaping, running a command with a deadline, this process's CPUs, and
//! `unix`, the one module with `unsafe` code and raw OS calls.

pub mod bounded_read;
#[doc(hidden)]
pub mod ci_skip;
pub mod cpus;
pub mod escape;
pub mod size;
pub mod timed_command;
pub mod unix;
