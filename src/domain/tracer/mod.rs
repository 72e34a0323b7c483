//! The driver's view of a clavrxorb process in tracer mode: its globals, read and written while
//! it is stopped. Symbol lookup (`elf`), load address (`maps`) and memory access (`procmem`)
//! are separate; this module joins them into named operations of the protocol.

mod elf;
mod maps;
mod procmem;

use std::path::Path;

pub use elf::{ElfError, TracerSymbols};
pub use procmem::ProcMem;

/// Name of the i4 1-D table entry whose length is the current segment's line count.
const SCAN_LINE_NUMBER: &str = "scan_line_number";
/// Width of one name in the symbol tables (Fortran character(len=256), blank padded).
const NAME_LEN: usize = 256;
/// More entries than any real table has; guards against reading garbage as a count.
const MAX_TABLE_ENTRIES: i64 = 100_000;

/// A stopped-or-running clavrxorb process (parent or clone) and its relocated globals.
#[derive(Debug)]
pub struct Tracee {
    mem: ProcMem,
    symbols: TracerSymbols,
    bias: u64,
}

impl Tracee {
    /// Opens the process's memory. For a PIE the load bias is read from its maps; clones
    /// share their parent's layout, so callers pass a bias they already know with `with_bias`.
    pub fn attach(proc_root: &Path, pid: i32, symbols: &TracerSymbols) -> std::io::Result<Tracee> {
        let bias = if symbols.pie {
            maps::load_bias(proc_root, pid, symbols.first_load_vaddr)?
        } else {
            0
        };
        Self::with_bias(proc_root, pid, symbols, bias)
    }

    pub fn with_bias(
        proc_root: &Path,
        pid: i32,
        symbols: &TracerSymbols,
        bias: u64,
    ) -> std::io::Result<Tracee> {
        Ok(Tracee {
            mem: ProcMem::open(proc_root, pid)?,
            symbols: symbols.clone(),
            bias,
        })
    }

    pub fn bias(&self) -> u64 {
        self.bias
    }

    fn addr(&self, name: &str) -> u64 {
        self.symbols.link_address(name).wrapping_add(self.bias)
    }

    /// The waitpoint the process is stopped at; 0 means it stopped for another reason.
    pub fn wait_number(&self) -> std::io::Result<i32> {
        self.mem.read_i32(self.addr(elf::WAIT_NUMBER))
    }

    pub fn number_of_lines(&self) -> std::io::Result<i32> {
        self.mem.read_i32(self.addr(elf::NUMBER_OF_LINES))
    }

    /// The pids of the clones made at the last waitpoint 1 (`count` as asked for).
    pub fn clone_pids(&self, count: usize) -> std::io::Result<Vec<i32>> {
        let array = self.mem.read_i64(self.addr(elf::SIBLING_PIDS_ADDR))? as u64;
        if array == 0 {
            return Err(std::io::Error::other(
                "the process made no clones (sibling_pids_addr is 0)",
            ));
        }
        let mut buf = vec![0u8; 4 * count];
        self.mem.read_bytes(array, &mut buf)?;
        Ok(buf
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Tells the process to skip processing and writing its current segment.
    pub fn skip_current_segment(&self) -> std::io::Result<()> {
        self.mem.write_i32(self.addr(elf::SKIP_PROCESSING), 1)
    }

    /// Moves the output offset on by `lines`: the lines a clone will write for this process.
    pub fn advance_output_offset(&self, lines: i32) -> std::io::Result<()> {
        let addr = self.addr(elf::OUTPUT_OFFSET);
        let now = self.mem.read_i32(addr)?;
        self.mem.write_i32(addr, now + lines)
    }

    /// Length of the i4 1-D entry `scan_line_number`. Real clavrxorb keeps it `scan_lines` long
    /// for every segment, the short last one included, so it bounds the segment's lines but
    /// is not their count: the caller clamps it to the lines left in the granule.
    pub fn scan_number_length(&self) -> std::io::Result<i32> {
        let count = self.mem.read_i64(self.addr(elf::NUM_I4_1D))?;
        if !(0..=MAX_TABLE_ENTRIES).contains(&count) {
            return Err(std::io::Error::other(format!(
                "i4 1-D symbol table claims {count} entries"
            )));
        }
        let count = count as usize;
        let names_at = self.mem.read_i64(self.addr(elf::NAMES_I4_1D))? as u64;
        let shapes_at = self.mem.read_i64(self.addr(elf::SHAPES_I4_1D))? as u64;
        let mut names = vec![0u8; count * NAME_LEN];
        self.mem.read_bytes(names_at, &mut names)?;
        let index = find_name(&names, SCAN_LINE_NUMBER).ok_or_else(|| {
            std::io::Error::other(format!(
                "the i4 1-D symbol table has no entry {SCAN_LINE_NUMBER}"
            ))
        })?;
        let len = self.mem.read_i64(shapes_at + 8 * index as u64)?;
        i32::try_from(len)
            .map_err(|_| std::io::Error::other(format!("{SCAN_LINE_NUMBER} has length {len}")))
    }
}

/// Index of `wanted` in a table of 256-byte blank-padded names.
fn find_name(names: &[u8], wanted: &str) -> Option<usize> {
    names.chunks_exact(NAME_LEN).position(|raw| {
        let end = raw
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        &raw[..end] == wanted.as_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in names {
            let mut raw = n.as_bytes().to_vec();
            raw.resize(NAME_LEN, b' ');
            out.extend(raw);
        }
        out
    }

    #[test]
    fn names_are_matched_whole_and_blank_padded() {
        let t = table(&["bad_scan_flag", "scan_line_number_x", "scan_line_number"]);
        assert_eq!(find_name(&t, "scan_line_number"), Some(2));
        assert_eq!(find_name(&t, "scan_line"), None);
    }
}
