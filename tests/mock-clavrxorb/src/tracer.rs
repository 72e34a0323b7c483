//! The tracer protocol seen from inside the program: the environment
//! switches, the values behind the exported globals (declared in `sys`), the
//! i4 1-D symbol table, the sibling-pid array and the waitpoints.
//! It decides nothing about segments; `run` calls it.

use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering, fence};

use crate::sys;

/// Waitpoint numbers (the protocol's names).
pub mod wp {
    /// Segment input read, clones made.
    pub const L1B: i32 = 1;
    /// Inside processing.
    pub const ECM2: i32 = 2;
    /// Segment processed, not yet written.
    pub const FINAL: i32 = 3;
    /// Inside processing.
    pub const TYPE: i32 = 4;
    /// Inside processing, first.
    pub const BEFORE_ECM2: i32 = 5;
    /// Segment written.
    pub const SAVE: i32 = 6;
    /// All granules done.
    pub const ALL_FINISH: i32 = 7;
}

/// Names of the i4 1-D symbol table, in table order.
pub const SYMBOLS_I4_1D: [&str; 3] = ["bad_scan_flag", "scan_line_number", "sensor_zenith_index"];
/// Bytes per name in the names buffer.
pub const NAME_BYTES: usize = 256;

/// What fills `scan_line_number` past the lines a segment read. Real CLAVR-x allocates the
/// array once per granule, `scan_lines` long, so the short last segment has entries past
/// the granule's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanFill {
    /// -999, as the generic readers leave it (the array is reset each segment).
    Missing,
    /// Numbered on past the granule's end (`Ny_Start + i - 1`), as the VIIRS and FY readers do.
    Numbered,
    /// No entries past the lines read: the array is exactly as long as the segment. Not how
    /// CLAVR-x behaves; kept to show the driver copes with either shape.
    Exact,
}

impl ScanFill {
    fn parse(value: Option<&str>) -> Result<ScanFill, String> {
        match value.map(str::trim) {
            None | Some("" | "missing") => Ok(ScanFill::Missing),
            Some("numbered") => Ok(ScanFill::Numbered),
            Some("exact") => Ok(ScanFill::Exact),
            Some(other) => Err(format!(
                "MOCK_CLAVRX_SCAN_FILL={other:?}: expected missing, numbered or exact"
            )),
        }
    }
}

/// The environment switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `CLAVRX_ENABLE_TRACER=1`.
    pub enabled: bool,
    /// `CLAVRX_TRACER_CLONES` (0 when unset; ignored without the tracer).
    pub clones: usize,
    /// `CLAVRX_SKIP_OUTPUT=1`.
    pub skip_output: bool,
    /// `MOCK_CLAVRX_SCAN_FILL` (the mock's own knob): `missing` (default), `numbered`, `exact`.
    pub scan_fill: ScanFill,
}

impl Settings {
    /// Settings from a variable lookup (`std::env::var` in the program).
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let enabled = var("CLAVRX_ENABLE_TRACER").as_deref() == Some("1");
        let clones = match var("CLAVRX_TRACER_CLONES") {
            Some(v) if enabled => v
                .trim()
                .parse()
                .map_err(|_| format!("CLAVRX_TRACER_CLONES={v:?} is not a count"))?,
            _ => 0,
        };
        Ok(Settings {
            enabled,
            clones,
            skip_output: var("CLAVRX_SKIP_OUTPUT").as_deref() == Some("1"),
            scan_fill: ScanFill::parse(var("MOCK_CLAVRX_SCAN_FILL").as_deref())?,
        })
    }
}

/// The blank-padded names buffer of the i4 1-D table.
pub fn names_buffer() -> Vec<u8> {
    let mut names = vec![b' '; NAME_BYTES * SYMBOLS_I4_1D.len()];
    for (slot, name) in names.chunks_mut(NAME_BYTES).zip(SYMBOLS_I4_1D) {
        slot[..name.len()].copy_from_slice(name.as_bytes());
    }
    names
}

/// Data of the i4 1-D entries for a segment from line `start` (0-based), in table order.
/// Like CLAVR-x's per-segment arrays they are `scan_lines` long whatever the segment read
/// (except with [`ScanFill::Exact`]); entries past the lines read are filled per `fill`.
pub fn segment_symbols(
    start: u32,
    inputs: &[u64],
    scan_lines: u32,
    fill: ScanFill,
) -> [Vec<i32>; 3] {
    let len = match fill {
        ScanFill::Exact => inputs.len(),
        ScanFill::Missing | ScanFill::Numbered => (scan_lines as usize).max(inputs.len()),
    };
    let bad_scan_flag = vec![0; len];
    let scan_line_number = (0..len)
        .map(|i| match fill {
            ScanFill::Missing if i >= inputs.len() => -999,
            _ => (start as usize + i + 1) as i32,
        })
        .collect();
    let sensor_zenith_index = (0..len)
        .map(|i| inputs.get(i).map_or(0, |&v| (v % 90) as i32))
        .collect();
    [bad_scan_flag, scan_line_number, sensor_zenith_index]
}

/// Long-lived buffers whose addresses the globals publish. Heap contents do
/// not move, so the addresses stay valid as long as this value lives.
pub struct Tracer {
    settings: Settings,
    names: Box<[u8]>,
    ptrs: Box<[AtomicI64; 3]>,
    shapes: Box<[AtomicI64; 3]>,
    data: [Vec<i32>; 3],
    siblings: Box<[AtomicI32]>,
}

impl Tracer {
    /// Allocates the table and publishes its addresses.
    pub fn new(settings: Settings) -> Tracer {
        let tracer = Tracer {
            settings,
            names: names_buffer().into_boxed_slice(),
            ptrs: Box::new([const { AtomicI64::new(0) }; 3]),
            shapes: Box::new([const { AtomicI64::new(0) }; 3]),
            data: [Vec::new(), Vec::new(), Vec::new()],
            siblings: (0..settings.clones).map(|_| AtomicI32::new(0)).collect(),
        };
        sys::__tracer_MOD_num_symbols_i4_1d.store(SYMBOLS_I4_1D.len() as i64, Ordering::SeqCst);
        sys::__tracer_MOD_symbol_names_i4_1d_ptr
            .store(tracer.names.as_ptr() as i64, Ordering::SeqCst);
        sys::__tracer_MOD_symbol_ptrs_i4_1d_ptr
            .store(tracer.ptrs.as_ptr() as i64, Ordering::SeqCst);
        sys::__tracer_MOD_symbol_shapes_i4_1d_ptr
            .store(tracer.shapes.as_ptr() as i64, Ordering::SeqCst);
        tracer.refresh();
        tracer
    }

    /// The environment switches.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Puts the current segment's arrays in the table.
    pub fn set_segment(&mut self, start: u32, inputs: &[u64], scan_lines: u32) {
        self.data = segment_symbols(start, inputs, scan_lines, self.settings.scan_fill);
        self.refresh();
    }

    /// Writes the data addresses and lengths into the table.
    pub fn refresh(&self) {
        for ((ptr, shape), data) in self.ptrs.iter().zip(self.shapes.iter()).zip(&self.data) {
            ptr.store(data.as_ptr() as i64, Ordering::SeqCst);
            shape.store(data.len() as i64, Ordering::SeqCst);
        }
    }

    /// Publishes the pids of the clones just made (original process only).
    pub fn set_siblings(&self, pids: &[i32]) {
        for (slot, &pid) in self.siblings.iter().zip(pids) {
            slot.store(pid, Ordering::SeqCst);
        }
        sys::__tracer_MOD_sibling_pids_addr.store(self.siblings.as_ptr() as i64, Ordering::SeqCst);
    }

    /// Stops at waitpoint `n` until continued (tracer mode only).
    pub fn waitpoint(&self, n: i32) {
        if !self.settings.enabled {
            return;
        }
        self.refresh();
        sys::__tracer_MOD_wait_number.store(n, Ordering::SeqCst);
        let _ = std::io::stdout().flush();
        fence(Ordering::SeqCst);
        sys::stop_self();
        sys::__tracer_MOD_wait_number.store(0, Ordering::SeqCst);
    }
}

/// Reads `skip_processing` and resets it to -1; true if it was 1.
pub fn take_skip_processing() -> bool {
    sys::__tracer_MOD_skip_processing.swap(-1, Ordering::SeqCst) == 1
}

/// Sets `number_of_lines`.
pub fn set_number_of_lines(n: u32) {
    sys::__tracer_MOD_number_of_lines.store(n as i32, Ordering::SeqCst);
}

/// This process's `num_scans_level2_hdf`.
pub fn num_scans_level2_hdf() -> i32 {
    sys::__pixel_common_mod_MOD_num_scans_level2_hdf.load(Ordering::SeqCst)
}

/// Sets `num_scans_level2_hdf` (0 when a granule is opened).
pub fn set_num_scans_level2_hdf(n: i32) {
    sys::__pixel_common_mod_MOD_num_scans_level2_hdf.store(n, Ordering::SeqCst);
}

/// `wait_number` (0 while running).
pub fn wait_number() -> i32 {
    sys::__tracer_MOD_wait_number.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(|k| map.get(k).cloned())
    }

    #[test]
    fn env_switches() {
        let off = settings(&[("CLAVRX_TRACER_CLONES", "3")]).unwrap();
        assert_eq!(
            (off.enabled, off.clones, off.skip_output),
            (false, 0, false)
        );
        let on = settings(&[("CLAVRX_ENABLE_TRACER", "1")]).unwrap();
        assert_eq!((on.enabled, on.clones), (true, 0));
        let two = settings(&[
            ("CLAVRX_ENABLE_TRACER", "1"),
            ("CLAVRX_TRACER_CLONES", "2"),
            ("CLAVRX_SKIP_OUTPUT", "1"),
        ])
        .unwrap();
        assert_eq!((two.enabled, two.clones, two.skip_output), (true, 2, true));
        assert!(
            !settings(&[("CLAVRX_ENABLE_TRACER", "yes")])
                .unwrap()
                .enabled
        );
        assert!(settings(&[("CLAVRX_ENABLE_TRACER", "1"), ("CLAVRX_TRACER_CLONES", "x")]).is_err());
    }

    #[test]
    fn names_are_blank_padded() {
        let names = names_buffer();
        assert_eq!(names.len(), 768);
        assert!(names[..256].starts_with(b"bad_scan_flag "));
        assert_eq!(&names[256..272], b"scan_line_number");
        assert!(names[272..512].iter().all(|&b| b == b' '));
        assert!(names[512..].starts_with(b"sensor_zenith_index"));
    }

    #[test]
    fn segment_symbol_data() {
        let [bad, line, zen] = segment_symbols(200, &[0, 91, 179], 3, ScanFill::Missing);
        assert_eq!(bad, [0, 0, 0]);
        assert_eq!(line, [201, 202, 203]);
        assert_eq!(zen, [0, 1, 89]);
    }

    #[test]
    fn a_short_segment_keeps_a_full_length_array() {
        let [bad, line, zen] = segment_symbols(200, &[0, 91], 4, ScanFill::Missing);
        assert_eq!((bad.len(), zen.len()), (4, 4));
        assert_eq!(line, [201, 202, -999, -999]);
        let [_, line, _] = segment_symbols(200, &[0, 91], 4, ScanFill::Numbered);
        assert_eq!(line, [201, 202, 203, 204]);
        let [_, line, _] = segment_symbols(200, &[0, 91], 4, ScanFill::Exact);
        assert_eq!(line, [201, 202]);
    }

    #[test]
    fn scan_fill_switch() {
        let fill = |v: &str| settings(&[("MOCK_CLAVRX_SCAN_FILL", v)]).map(|s| s.scan_fill);
        assert_eq!(settings(&[]).unwrap().scan_fill, ScanFill::Missing);
        assert_eq!(fill("numbered"), Ok(ScanFill::Numbered));
        assert_eq!(fill("exact"), Ok(ScanFill::Exact));
        assert!(fill("sometimes").is_err());
    }
}
