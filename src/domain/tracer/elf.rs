//! Reading the tracer's global variables out of a clavrxorb executable with the `object` crate.
//!
//! Owns symbol lookup and the link-time layout facts needed to relocate a PIE build. It never
//! touches a running process; `maps.rs` supplies the load address.

use std::path::{Path, PathBuf};

use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol};

/// The globals the driver reads or writes, by their gfortran module symbol names.
pub const WAIT_NUMBER: &str = "__tracer_MOD_wait_number";
pub const SKIP_PROCESSING: &str = "__tracer_MOD_skip_processing";
pub const SIBLING_PIDS_ADDR: &str = "__tracer_MOD_sibling_pids_addr";
pub const NUMBER_OF_LINES: &str = "__tracer_MOD_number_of_lines";
pub const OUTPUT_OFFSET: &str = "__pixel_common_mod_MOD_num_scans_level2_hdf";
pub const NUM_I4_1D: &str = "__tracer_MOD_num_symbols_i4_1d";
pub const NAMES_I4_1D: &str = "__tracer_MOD_symbol_names_i4_1d_ptr";
pub const PTRS_I4_1D: &str = "__tracer_MOD_symbol_ptrs_i4_1d_ptr";
pub const SHAPES_I4_1D: &str = "__tracer_MOD_symbol_shapes_i4_1d_ptr";

const ALL: [&str; 9] = [
    WAIT_NUMBER,
    SKIP_PROCESSING,
    SIBLING_PIDS_ADDR,
    NUMBER_OF_LINES,
    OUTPUT_OFFSET,
    NUM_I4_1D,
    NAMES_I4_1D,
    PTRS_I4_1D,
    SHAPES_I4_1D,
];

/// Link-time addresses of the tracer globals, plus what relocation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracerSymbols {
    /// Link-time address of each global in `ALL` order.
    addrs: [u64; 9],
    /// Position independent: runtime address = link address + load bias.
    pub pie: bool,
    /// Link-time address of the first loadable segment (page aligned), for the bias.
    pub first_load_vaddr: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF executable this driver can read: {reason}")]
    NotElf { path: PathBuf, reason: String },
    #[error(
        "{path} has no tracer symbols (missing {missing}); pseg-step needs a CLAVR-x built with \
         tracer support (any clavrx since 2022-11-14), or use --serial to run it without fan-out"
    )]
    NoTracer { path: PathBuf, missing: String },
}

impl TracerSymbols {
    /// Reads the executable at `path` and finds every tracer global.
    pub fn read(path: &Path) -> Result<TracerSymbols, ElfError> {
        let data = std::fs::read(path).map_err(|source| ElfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&data).map_err(|e| match e {
            Missing::NotElf(reason) => ElfError::NotElf {
                path: path.to_path_buf(),
                reason,
            },
            Missing::Symbols(names) => ElfError::NoTracer {
                path: path.to_path_buf(),
                missing: names.join(", "),
            },
        })
    }

    fn parse(data: &[u8]) -> Result<TracerSymbols, Missing> {
        let file = object::File::parse(data).map_err(|e| Missing::NotElf(e.to_string()))?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(Missing::NotElf(format!("{:?} file", file.format())));
        }
        let pie = match file.kind() {
            ObjectKind::Executable => false,
            ObjectKind::Dynamic => true,
            other => return Err(Missing::NotElf(format!("{other:?} object, not a program"))),
        };
        let mut addrs = [None; 9];
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            let Ok(name) = sym.name() else { continue };
            if let Some(i) = ALL.iter().position(|n| *n == name)
                && sym.is_definition()
            {
                addrs[i].get_or_insert(sym.address());
            }
        }
        let missing: Vec<String> = ALL
            .iter()
            .zip(&addrs)
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| n.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Missing::Symbols(missing));
        }
        let first_load_vaddr = file
            .segments()
            .map(|s| s.address() & !0xfff)
            .min()
            .unwrap_or(0);
        Ok(TracerSymbols {
            addrs: addrs.map(|a| a.unwrap_or_default()),
            pie,
            first_load_vaddr,
        })
    }

    /// Link-time address of one of the globals named by the constants above.
    pub fn link_address(&self, name: &str) -> u64 {
        let i = ALL
            .iter()
            .position(|n| *n == name)
            .expect("tracer symbol names come from this module's constants");
        self.addrs[i]
    }
}

enum Missing {
    NotElf(String),
    Symbols(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_without_tracer_names_what_is_missing() {
        let exe = std::env::current_exe().unwrap();
        let err = TracerSymbols::read(&exe).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ElfError::NoTracer { .. }), "{msg}");
        assert!(msg.contains("__tracer_MOD_wait_number"), "{msg}");
        assert!(msg.contains("tracer support"), "{msg}");
    }

    #[test]
    fn a_text_file_is_not_elf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clavrxorb");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let err = TracerSymbols::read(&p).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err}");
    }
}
