//! Finding where a PIE executable was loaded, from `/proc/PID/maps`.
//!
//! Parsing is a pure function over the file's text so it is tested on fixtures; `load_bias`
//! is the thin reader for a live process.

use std::path::Path;

/// The lowest mapping of `exe` whose file offset is 0: the load address of its first segment.
pub fn parse_load_base(maps: &str, exe: &str) -> Option<u64> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let _perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _dev = fields.next()?;
            let _inode = fields.next()?;
            let path = fields.collect::<Vec<_>>().join(" ");
            let path = path.strip_suffix(" (deleted)").unwrap_or(&path);
            if offset != 0 || path != exe {
                return None;
            }
            u64::from_str_radix(range.split('-').next()?, 16).ok()
        })
        .min()
}

/// The load bias of a running PIE process: add it to a link-time address.
pub fn load_bias(proc_root: &Path, pid: i32, first_load_vaddr: u64) -> std::io::Result<u64> {
    let dir = proc_root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe"))?;
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let maps = std::fs::read_to_string(dir.join("maps"))?;
    let base = parse_load_base(&maps, exe).ok_or_else(|| {
        std::io::Error::other(format!(
            "{}: no mapping of {exe} at offset 0",
            dir.join("maps").display()
        ))
    })?;
    Ok(base.wrapping_sub(first_load_vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/proc/maps-pie.txt"
    ));

    #[test]
    fn finds_the_offset_zero_mapping_of_the_executable() {
        assert_eq!(
            parse_load_base(FIXTURE, "/work/target/mock/debug/mock-clavrxorb"),
            Some(0x55d0c3a00000)
        );
        assert_eq!(parse_load_base(FIXTURE, "/usr/bin/other"), None);
    }

    #[test]
    fn live_process_bias_matches_a_symbol_of_our_own() {
        // This test binary is a PIE: the runtime address of a function minus its bias must be
        // a plausible link-time address (below the runtime one, page aligned bias).
        let bias = load_bias(Path::new("/proc"), std::process::id() as i32, 0).unwrap();
        assert_eq!(bias % 4096, 0);
        let here = live_process_bias_matches_a_symbol_of_our_own as fn() as usize as u64;
        assert!(here > bias);
    }
}
