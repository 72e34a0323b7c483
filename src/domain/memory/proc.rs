//! One process's memory from `/proc/PID/smaps_rollup` (RSS, PSS and the private/shared split
//! that tells a clavrxorb parent's pages from those its copy-on-write clones share) and from
//! `/proc/PID/status` (RSS now and its high-water mark, which catches a peak between samples).
//!
//! Reads and parses only; summing over processes, and deciding what to report, belong to the
//! sampler. Takes the proc root so tests read fixtures.

use std::path::Path;

use super::{FileError, ParseError, read_parsed};

/// A process's memory totals in bytes (the file says kB, meaning KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollup {
    pub rss: u64,
    pub pss: u64,
    /// Private_Clean + Private_Dirty.
    pub private: u64,
    /// Shared_Clean + Shared_Dirty.
    pub shared: u64,
    pub swap: u64,
    pub swap_pss: u64,
}

/// Parses `smaps_rollup`. Lines that are not `Key: N kB` (the `[rollup]` header) and keys
/// we do not use are skipped; a key seen more than once is summed, so the full per-mapping
/// `smaps` of kernels before 4.14 parses to the same totals. `Rss` and `Pss` must be present;
/// the other fields default to 0 (old kernels have no `SwapPss`).
pub fn parse_smaps_rollup(text: &str) -> Result<Rollup, ParseError> {
    let mut rollup = Rollup::default();
    let (mut saw_rss, mut saw_pss) = (false, false);
    for (index, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "Rss" => {
                saw_rss = true;
                &mut rollup.rss
            }
            "Pss" => {
                saw_pss = true;
                &mut rollup.pss
            }
            "Private_Clean" | "Private_Dirty" => &mut rollup.private,
            "Shared_Clean" | "Shared_Dirty" => &mut rollup.shared,
            "Swap" => &mut rollup.swap,
            "SwapPss" => &mut rollup.swap_pss,
            _ => continue,
        };
        let bytes = parse_kib(value).ok_or_else(|| ParseError::BadLine {
            line: index + 1,
            text: line.to_string(),
            expected: "`Key: N kB`",
        })?;
        *field = field.saturating_add(bytes);
    }
    if !saw_rss {
        return Err(ParseError::MissingField { field: "Rss" });
    }
    if !saw_pss {
        return Err(ParseError::MissingField { field: "Pss" });
    }
    Ok(rollup)
}

/// `   1616 kB` in bytes.
fn parse_kib(value: &str) -> Option<u64> {
    let number = value.trim().strip_suffix("kB")?.trim_end();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

/// Reads `PROC_ROOT/PID/smaps_rollup`, or `PROC_ROOT/PID/smaps` on kernels without it.
/// Errors name the file; a process that has exited gives `NotFound`.
pub fn read_smaps_rollup(proc_root: &Path, pid: i32) -> std::io::Result<Rollup> {
    let dir = proc_root.join(pid.to_string());
    match read_parsed(&dir.join("smaps_rollup"), parse_smaps_rollup) {
        Err(FileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && dir.is_dir() =>
        {
            Ok(read_parsed(&dir.join("smaps"), parse_smaps_rollup)?)
        }
        other => Ok(other?),
    }
}

/// RSS now and its high-water mark, from `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssMark {
    pub rss: u64,
    /// `VmHWM`: the most RSS the process ever had (or since its mark was reset).
    pub hwm: u64,
}

/// Parses `VmRSS` and `VmHWM` of `/proc/PID/status`; both must be there (a kernel thread or
/// a process that is exiting has neither).
pub fn parse_status(text: &str) -> Result<RssMark, ParseError> {
    let (mut rss, mut hwm) = (None, None);
    for (index, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "VmRSS" => &mut rss,
            "VmHWM" => &mut hwm,
            _ => continue,
        };
        *field = Some(parse_kib(value).ok_or_else(|| ParseError::BadLine {
            line: index + 1,
            text: line.to_string(),
            expected: "`Key: N kB`",
        })?);
    }
    Ok(RssMark {
        rss: rss.ok_or(ParseError::MissingField { field: "VmRSS" })?,
        hwm: hwm.ok_or(ParseError::MissingField { field: "VmHWM" })?,
    })
}

/// Reads `PROC_ROOT/PID/status`: a few hundred bytes the kernel fills without walking page
/// tables, so it is cheap enough to read at every waitpoint. Errors name the file.
pub fn read_status(proc_root: &Path, pid: i32) -> std::io::Result<RssMark> {
    let path = proc_root.join(pid.to_string()).join("status");
    Ok(read_parsed(&path, parse_status)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::memory::fixture;

    const KIB: u64 = 1024;

    fn parse_fixture(name: &str) -> Rollup {
        let text = std::fs::read_to_string(fixture(&format!("proc/{name}"))).unwrap();
        parse_smaps_rollup(&text).unwrap()
    }

    #[test]
    fn real_rollup_of_a_small_process() {
        assert_eq!(
            parse_fixture("rollup-small.txt"),
            Rollup {
                rss: 1616 * KIB,
                pss: 353 * KIB,
                private: (68 + 112) * KIB,
                shared: 1436 * KIB,
                swap: 0,
                swap_pss: 0,
            }
        );
    }

    #[test]
    fn copy_on_write_parent_and_child_share_most_pages() {
        let parent = parse_fixture("rollup-cow-parent.txt");
        let child = parse_fixture("rollup-cow-child.txt");
        assert_eq!(parent.rss, 62824 * KIB);
        assert_eq!(parent.pss, 32288 * KIB);
        assert_eq!(parent.shared, (4452 + 55132) * KIB);
        assert_eq!(parent.private, (2328 + 912) * KIB);
        assert_eq!(child.private, 9200 * KIB);
        // Summing RSS counts the shared 54 MiB twice; summing PSS does not.
        assert!(parent.rss + child.rss > 120 * 1024 * KIB);
        assert!(parent.pss + child.pss < 72 * 1024 * KIB);
    }

    #[test]
    fn swap_lines_are_read() {
        let r = parse_fixture("rollup-swap-edited.txt");
        assert_eq!((r.swap, r.swap_pss), (20480 * KIB, 10240 * KIB));
    }

    #[test]
    fn old_kernel_without_swap_pss_defaults_to_zero() {
        let r = parse_fixture("rollup-old-no-swappss.txt");
        assert_eq!((r.rss, r.pss, r.swap_pss), (67336 * KIB, 37911 * KIB, 0));
    }

    #[test]
    fn full_smaps_is_summed_over_mappings() {
        let r = parse_fixture("smaps-three-mappings.txt");
        assert_eq!(
            r,
            Rollup {
                rss: 8 * KIB,
                pss: 6 * KIB,
                private: 4 * KIB,
                shared: 4 * KIB,
                swap: 0,
                swap_pss: 0,
            }
        );
    }

    #[test]
    fn missing_rss_or_pss_is_an_error_naming_the_field() {
        assert_eq!(
            parse_smaps_rollup("Pss: 1 kB\n"),
            Err(ParseError::MissingField { field: "Rss" })
        );
        assert_eq!(
            parse_smaps_rollup("Rss: 1 kB\nSwap: 0 kB\n"),
            Err(ParseError::MissingField { field: "Pss" })
        );
        assert_eq!(
            parse_smaps_rollup(""),
            Err(ParseError::MissingField { field: "Rss" })
        );
    }

    #[test]
    fn a_used_field_without_kb_is_an_error_with_its_line() {
        let e = parse_smaps_rollup("[rollup]\nRss: 12 kB\nPss: 12 pages\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::BadLine {
                line: 3,
                text: "Pss: 12 pages".into(),
                expected: "`Key: N kB`",
            }
        );
        // Fields we do not use may say anything.
        assert!(parse_smaps_rollup("Rss: 1 kB\nPss: 1 kB\nTHPeligible: 0\nVmFlags: rd\n").is_ok());
    }

    #[test]
    fn live_rollup_of_this_process() {
        let r = read_smaps_rollup(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert!(r.rss >= r.pss && r.pss > 0, "{r:?}");
        assert!(r.private + r.shared <= r.rss, "{r:?}");
    }

    #[test]
    fn status_gives_rss_and_its_high_water_mark() {
        // A python process that touched 64 MiB and freed it again: the mark keeps the peak.
        let text = std::fs::read_to_string(fixture("proc/status-after-peak.txt")).unwrap();
        assert_eq!(
            parse_status(&text).unwrap(),
            RssMark {
                rss: 13532 * KIB,
                hwm: 78936 * KIB
            }
        );
        let text = std::fs::read_to_string(fixture("proc/status-kernel-thread.txt")).unwrap();
        assert_eq!(
            parse_status(&text),
            Err(ParseError::MissingField { field: "VmRSS" })
        );
        assert!(matches!(
            parse_status("VmHWM:\t12 pages\nVmRSS:\t1 kB\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn live_status_of_this_process_has_its_mark_at_or_above_rss() {
        let m = read_status(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert!(m.hwm >= m.rss && m.rss > 0, "{m:?}");
        let e = read_status(Path::new("/proc"), i32::MAX).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/proc/2147483647/status"), "{e}");
    }

    #[test]
    fn a_process_that_is_gone_is_not_found_and_named() {
        let e = read_smaps_rollup(Path::new("/proc"), i32::MAX).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(
            e.to_string().contains("/proc/2147483647/smaps_rollup"),
            "{e}"
        );
    }
}
