//! The mock granule file: its 4096-byte header (format and parse, pure), the
//! `generate` writer, and reading a segment's records through a descriptor
//! that stays open for the whole granule (the one clones must reopen).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::work;

/// Bytes of the header, padding included.
pub const HEADER_BYTES: usize = 4096;
/// Bytes of one input record (u64 little endian).
pub const INPUT_RECORD_BYTES: u64 = 8;

/// A failure the mock injects when a given (1-based) segment comes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The original process exits 3 after making the segment's clones.
    ParentExit3(u32),
    /// A clone processing the segment dies by SIGSEGV.
    CloneSegv(u32),
    /// The process processing the segment sends itself SIGSTOP (no waitpoint).
    SelfStop(u32),
    /// The process processing the segment sleeps forever.
    Hang(u32),
}

impl Fault {
    /// Parses `KIND:K` (K >= 1) or `none`.
    pub fn parse(text: &str) -> Result<Option<Fault>, String> {
        if text == "none" {
            return Ok(None);
        }
        let (kind, k) = text
            .split_once(':')
            .ok_or_else(|| format!("fault {text:?}: expected KIND:SEGMENT or none"))?;
        let k: u32 = k
            .parse()
            .ok()
            .filter(|&k| k >= 1)
            .ok_or_else(|| format!("fault {text:?}: segment must be an integer >= 1"))?;
        match kind {
            "parent-exit3" => Ok(Some(Fault::ParentExit3(k))),
            "clone-segv" => Ok(Some(Fault::CloneSegv(k))),
            "self-stop" => Ok(Some(Fault::SelfStop(k))),
            "hang" => Ok(Some(Fault::Hang(k))),
            _ => Err(format!(
                "fault {text:?}: kind must be parent-exit3, clone-segv, self-stop or hang"
            )),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ParentExit3(k) => write!(f, "parent-exit3:{k}"),
            Fault::CloneSegv(k) => write!(f, "clone-segv:{k}"),
            Fault::SelfStop(k) => write!(f, "self-stop:{k}"),
            Fault::Hang(k) => write!(f, "hang:{k}"),
        }
    }
}

/// Everything the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Scan lines (records) in the granule, 1..=i32::MAX.
    pub lines: u32,
    /// Seed of the record values.
    pub seed: u64,
    /// Mixing rounds per line.
    pub work: u64,
    /// Bytes per scan line allocated after reading a segment.
    pub read_mem: u64,
    /// Bytes per scan line allocated while processing a segment.
    pub work_mem: u64,
    /// Injected failure, if any.
    pub fault: Option<Fault>,
}

impl Header {
    /// The header line, newline included, without padding.
    pub fn line(&self) -> String {
        let fault = self
            .fault
            .map_or_else(|| "none".to_string(), |f| f.to_string());
        format!(
            "MOCKGRAN 1 lines={} seed={} work={} read_mem={} work_mem={} fault={fault}\n",
            self.lines, self.seed, self.work, self.read_mem, self.work_mem
        )
    }

    /// The full 4096-byte header.
    pub fn block(&self) -> Vec<u8> {
        let mut bytes = self.line().into_bytes();
        bytes.resize(HEADER_BYTES, b' ');
        bytes
    }

    /// Parses a full header block.
    pub fn parse(bytes: &[u8]) -> Result<Header, String> {
        if bytes.len() != HEADER_BYTES {
            return Err(format!(
                "header is {} bytes, expected {HEADER_BYTES}",
                bytes.len()
            ));
        }
        let end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no newline in the header")?;
        if bytes[end + 1..].iter().any(|&b| b != b' ') {
            return Err("header padding is not all spaces".into());
        }
        let line = std::str::from_utf8(&bytes[..end]).map_err(|_| "header is not ASCII")?;
        let fields: Vec<&str> = line.split(' ').collect();
        let keys = ["lines", "seed", "work", "read_mem", "work_mem", "fault"];
        if fields.len() != 2 + keys.len() || fields[0] != "MOCKGRAN" || fields[1] != "1" {
            return Err(format!("not a MOCKGRAN 1 header: {line:?}"));
        }
        let mut values = [""; 6];
        for ((value, key), field) in values.iter_mut().zip(keys).zip(&fields[2..]) {
            *value = field
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or_else(|| format!("expected {key}=..., found {field:?}"))?;
        }
        let number = |i: usize| -> Result<u64, String> {
            values[i]
                .parse()
                .map_err(|_| format!("{}={:?} is not a number", keys[i], values[i]))
        };
        let lines = number(0)?;
        let lines = u32::try_from(lines)
            .ok()
            .filter(|&n| n >= 1 && n <= i32::MAX as u32)
            .ok_or_else(|| format!("lines={lines} must be 1..={}", i32::MAX))?;
        Ok(Header {
            lines,
            seed: number(1)?,
            work: number(2)?,
            read_mem: number(3)?,
            work_mem: number(4)?,
            fault: Fault::parse(values[5])?,
        })
    }

    /// Bytes the whole granule file must have.
    pub fn file_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + INPUT_RECORD_BYTES * u64::from(self.lines)
    }
}

/// Writes a granule file: header, then the records.
pub fn generate(header: &Header, out: &Path) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(out)?);
    w.write_all(&header.block())?;
    for line in 0..u64::from(header.lines) {
        w.write_all(&work::input_value(header.seed, line).to_le_bytes())?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// An open granule: the descriptor stays open until this is dropped.
pub struct Granule {
    /// Path as opened.
    pub path: PathBuf,
    /// The parsed header.
    pub header: Header,
    file: File,
}

impl Granule {
    /// Opens `path` and checks its header and length.
    pub fn open(path: &Path) -> Result<Granule, Failure> {
        let shown = path.display();
        let mut file =
            File::open(path).map_err(|e| Failure::input(format!("granule {shown}: {e}")))?;
        let mut block = vec![0u8; HEADER_BYTES];
        file.read_exact(&mut block).map_err(|e| {
            let why = match e.kind() {
                io::ErrorKind::UnexpectedEof => "shorter than the 4096-byte header".to_string(),
                _ => e.to_string(),
            };
            Failure::input(format!("granule {shown}: bad header: {why}"))
        })?;
        let header = Header::parse(&block)
            .map_err(|e| Failure::input(format!("granule {shown}: bad header: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| Failure::input(format!("granule {shown}: {e}")))?
            .len();
        if len < header.file_bytes() {
            return Err(Failure::input(format!(
                "granule {shown}: {len} bytes, header promises {}",
                header.file_bytes()
            )));
        }
        Ok(Granule {
            path: path.to_path_buf(),
            header,
            file,
        })
    }

    /// Reads `count` records from line `start` (lseek + read on the kept fd).
    pub fn read_records(&mut self, start: u32, count: u32) -> Result<Vec<u64>, Failure> {
        let offset = HEADER_BYTES as u64 + INPUT_RECORD_BYTES * u64::from(start);
        let mut bytes = vec![0u8; count as usize * INPUT_RECORD_BYTES as usize];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| {
                Failure::input(format!(
                    "granule {}: reading lines {}-{}: {e}",
                    self.path.display(),
                    start + 1,
                    start + count
                ))
            })?;
        Ok(bytes
            .chunks_exact(INPUT_RECORD_BYTES as usize)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            lines: 1000,
            seed: 7,
            work: 3,
            read_mem: 4096,
            work_mem: 0,
            fault: Some(Fault::CloneSegv(2)),
        }
    }

    #[test]
    fn header_line_format() {
        assert_eq!(
            header().line(),
            "MOCKGRAN 1 lines=1000 seed=7 work=3 read_mem=4096 work_mem=0 fault=clone-segv:2\n"
        );
        let none = Header {
            fault: None,
            ..header()
        };
        assert!(none.line().ends_with(" fault=none\n"));
    }

    #[test]
    fn header_round_trip() {
        let bytes = header().block();
        assert_eq!(bytes.len(), HEADER_BYTES);
        assert_eq!(Header::parse(&bytes), Ok(header()));
        for fault in [
            None,
            Some(Fault::ParentExit3(1)),
            Some(Fault::SelfStop(3)),
            Some(Fault::Hang(9)),
        ] {
            let h = Header { fault, ..header() };
            assert_eq!(Header::parse(&h.block()), Ok(h));
        }
    }

    fn padded(line: &str) -> Vec<u8> {
        let mut b = line.as_bytes().to_vec();
        b.resize(HEADER_BYTES, b' ');
        b
    }

    #[test]
    fn bad_headers() {
        let good = "MOCKGRAN 1 lines=5 seed=1 work=0 read_mem=0 work_mem=0 fault=none\n";
        assert!(Header::parse(&padded(good)).is_ok());
        for bad in [
            "MOCKGRAN 2 lines=5 seed=1 work=0 read_mem=0 work_mem=0 fault=none\n",
            "MOCKGRAN 1 lines=0 seed=1 work=0 read_mem=0 work_mem=0 fault=none\n",
            "MOCKGRAN 1 lines=x seed=1 work=0 read_mem=0 work_mem=0 fault=none\n",
            "MOCKGRAN 1 seed=1 lines=5 work=0 read_mem=0 work_mem=0 fault=none\n",
            "MOCKGRAN 1 lines=5 seed=1 work=0 read_mem=0 work_mem=0\n",
            "MOCKGRAN 1 lines=5 seed=1 work=0 read_mem=0 work_mem=0 fault=boom:1\n",
            "MOCKGRAN 1 lines=5 seed=1 work=0 read_mem=0 work_mem=0 fault=hang:0\n",
            "MOCKGRAN 1 lines=5 seed=1 work=0 read_mem=0 work_mem=0 fault=none",
            "MOCKGRAN 1 lines=3000000000 seed=1 work=0 read_mem=0 work_mem=0 fault=none\n",
        ] {
            assert!(Header::parse(&padded(bad)).is_err(), "accepted {bad:?}");
        }
        let mut junk = padded(good);
        junk[HEADER_BYTES - 1] = b'x';
        assert!(Header::parse(&junk).is_err());
        assert!(Header::parse(good.as_bytes()).is_err());
    }

    #[test]
    fn file_bytes() {
        assert_eq!(header().file_bytes(), 4096 + 8000);
    }
}
