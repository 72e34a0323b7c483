//! The one error type of the mock: a message for stderr and the exit status
//! it maps to. Owns the exit-status table and the one-line stderr report.

use std::fmt;
use std::io::Write;

/// Exit statuses (besides 0, and 1 for a clone that cannot reopen a
/// descriptor or for SIGTERM/SIGINT).
pub mod code {
    /// Usage error, bad `clavrx_options` or `file_list`, or a granule that cannot be read
    /// past its header. (A granule that cannot be opened is skipped with an error line, as
    /// clavrxorb does, and the run ends with 0.)
    pub const INPUT: i32 = 2;
    /// Fault `parent-exit3`.
    pub const PARENT_EXIT3: i32 = 3;
    /// Another process holds the output file's lock.
    pub const CONCURRENT_WRITER: i32 = 4;
    /// Output file missing or not writable.
    pub const OUTPUT: i32 = 5;
    /// Anything else the OS refused (temporary dir, clone, ...).
    pub const SYSTEM: i32 = 6;
}

/// Why the mock stops early.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: i32,
    /// One line for stderr, naming the file or segment concerned.
    pub message: String,
}

impl Failure {
    /// A failure with exit status `code`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        Failure::new(code::INPUT, message)
    }

    /// An OS call that failed (exit 6).
    pub fn system(message: impl Into<String>) -> Self {
        Failure::new(code::SYSTEM, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Writes `mock-clavrxorb: <message>` to stderr in one write, so lines from
/// a parent and its clones sharing a stderr do not interleave.
pub fn report(message: impl fmt::Display) {
    let line = format!("mock-clavrxorb: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
