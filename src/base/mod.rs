//! The base layer: small tools the domain and the commands build on. Base imports nothing of
//! ours, neither the domain layer nor the commands: only the standard library and crates.
//!
//! - [`units`]: the value types users write as text (sizes, time limits, percentages), with
//!   one parse-from-string serde deserializer for all of them.
//! - [`time`]: the one duration formatter, the one UTC formatter, the clock.
//! - [`identity`]: the host, a process's start time, the Slurm ids.
//! - [`proc_stat`]: the one `/proc/PID/stat` parser.
//! - [`atomic_file`]: writes a reader never sees half of; [`parallel`]: a map over threads.
//! - [`unix`]: the one module with `unsafe` code and raw OS calls (signals, waiting, process
//!   groups, pipes), and how a child ended ([`unix::Exit`]).
//! - [`bounded_read`], [`escape`], [`timed_command`], [`cpus`]: reading at most N bytes,
//!   shell/HTML escaping, running a command with a deadline, this process's CPUs.

pub mod atomic_file;
pub mod bounded_read;
#[doc(hidden)]
pub mod ci_skip;
pub mod cpus;
pub mod escape;
pub mod identity;
pub mod parallel;
pub mod proc_stat;
pub mod time;
pub mod timed_command;
pub mod units;
pub mod unix;
