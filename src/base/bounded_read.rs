//! Reading a user's text file (a list, an options file, a site config) with a size bound, so
//! `/dev/zero`, a FIFO that never ends or a runaway file is an error, never a hang or an
//! out-of-memory abort. Owns nothing else: callers turn the error into their own.

use std::io::{self, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The whole file as UTF-8 text, if it holds at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    String::from_utf8(bytes)
        .map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_devices_and_large_files_stop_at_the_bound() {
        assert!(matches!(
            read_text(Path::new("/dev/zero"), 4096),
            Err(ReadError::TooLarge { limit: 4096 })
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "abcd").unwrap();
        assert_eq!(read_text(&f, 4).unwrap(), "abcd");
        assert!(matches!(read_text(&f, 3), Err(ReadError::TooLarge { .. })));
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_text(&f, 3), Err(ReadError::Io(_))));
    }
}
