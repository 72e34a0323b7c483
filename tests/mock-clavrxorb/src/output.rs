//! Writing one segment into the granule's `.level2.bin` file at this
//! process's `num_scans_level2_hdf`, with the flock check for a second
//! writer, then advancing the counter. Knows nothing of waitpoints.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::failure::{Failure, code};
use crate::tracer;
use crate::work::RECORD_BYTES;

/// Writes `bytes` (the records of `count` scan lines) and adds `count` to
/// `num_scans_level2_hdf`. At offset 0 the file is created or truncated;
/// later segments reopen it without `O_CREAT`.
pub fn write_segment(path: &Path, bytes: &[u8], count: u32) -> Result<(), Failure> {
    let shown = path.display();
    let offset_lines = tracer::num_scans_level2_hdf();
    if offset_lines < 0 {
        return Err(Failure::new(
            code::OUTPUT,
            format!("output file {shown}: num_scans_level2_hdf is {offset_lines}"),
        ));
    }
    let file = open(path, offset_lines == 0).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound && offset_lines != 0 {
            Failure::new(
                code::OUTPUT,
                format!("output file {shown} missing (segment at scan {offset_lines}): {e}"),
            )
        } else {
            Failure::new(code::OUTPUT, format!("output file {shown}: {e}"))
        }
    })?;
    let locked = crate::sys::try_lock_exclusive(&file)
        .map_err(|e| Failure::new(code::OUTPUT, format!("output file {shown}: flock: {e}")))?;
    if !locked {
        return Err(Failure::new(
            code::CONCURRENT_WRITER,
            format!("concurrent writer detected on output file {shown}"),
        ));
    }
    let at = offset_lines as u64 * RECORD_BYTES as u64;
    file.write_all_at(bytes, at)
        .map_err(|e| Failure::new(code::OUTPUT, format!("output file {shown}: write: {e}")))?;
    crate::sys::unlock(&file)
        .map_err(|e| Failure::new(code::OUTPUT, format!("output file {shown}: unlock: {e}")))?;
    drop(file);
    tracer::set_num_scans_level2_hdf(offset_lines + count as i32);
    Ok(())
}

fn open(path: &Path, first: bool) -> io::Result<File> {
    if first {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    } else {
        OpenOptions::new().write(true).open(path)
    }
}
