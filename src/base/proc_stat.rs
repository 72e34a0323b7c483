//! `/proc/PID/stat`, the one parser of it: a process's state, group, CPU time and start time.
//!
//! The command name (field 2) may hold blanks and parentheses, so fields are counted after
//! its last `)`. Parsing is pure ([`parse`]); [`read`] takes a `/proc` root so tests can
//! point it at fixture files.

use std::path::Path;

/// The fields of one `/proc/PID/stat` line this crate uses (numbered as in proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `D`, `T` (stopped), `Z` (zombie: exited, not yet reaped), `X`...
    pub state: char,
    /// Field 5: the process group.
    pub pgid: i32,
    /// Fields 14 and 15: user and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: when the process started, in clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    /// A zombie or dead task has exited: it will never finish a granule.
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// True when the process is stopped (state `T`).
    pub fn stopped(&self) -> bool {
        self.state == 'T'
    }

    /// CPU time (user + system) used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses a `/proc/PID/stat` line; `None` when it is not one.
pub fn parse(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of the line.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: field(3)?.chars().next()?,
        pgid: field(5)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// Process `pid`'s stat under `proc_root`; `None` when it is gone or unreadable.
pub fn read(proc_root: &Path, pid: u32) -> Option<Stat> {
    parse(&std::fs::read_to_string(path(proc_root, pid)).ok()?)
}

/// Where process `pid`'s stat is under `proc_root`.
pub fn path(proc_root: &Path, pid: u32) -> std::path::PathBuf {
    proc_root.join(pid.to_string()).join("stat")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    #[test]
    fn a_real_stat_line_with_a_hostile_name() {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join("stat-clone.txt")).unwrap();
        let stat = parse(&text).unwrap();
        assert_eq!(stat.cpu_ticks(), 1234 + 56);
        assert_eq!(stat.state, 'S');
        assert!(!stat.stopped() && !stat.exited());
        let field = |n: usize| -> i64 {
            text[text.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .nth(n - 3)
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(i64::from(stat.pgid), field(5));
        assert_eq!(stat.start_time as i64, field(22));
    }

    #[test]
    fn odd_command_names_and_zombies() {
        let line = "77 (a) b (c)) Z 1 76 77 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 1 0 98765 0 0";
        let stat = parse(line).unwrap();
        assert_eq!((stat.state, stat.pgid), ('Z', 76));
        assert_eq!((stat.cpu_ticks(), stat.start_time), (11, 98765));
        assert!(stat.exited());
        assert_eq!(parse("77 (x) S 1 2"), None);
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn read_takes_a_proc_root() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("42")).unwrap();
        let line = "42 (sleep) T 1 40 40 0 -1 4194304 0 0 0 0 7 8 0 0 20 0 1 0 555 0 0\n";
        std::fs::write(path(proc.path(), 42), line).unwrap();
        let stat = read(proc.path(), 42).unwrap();
        assert!(stat.stopped());
        assert_eq!(
            (stat.pgid, stat.cpu_ticks(), stat.start_time),
            (40, 15, 555)
        );
        assert_eq!(read(proc.path(), 43), None);
        assert!(read(Path::new("/proc"), std::process::id()).is_some());
    }
}
