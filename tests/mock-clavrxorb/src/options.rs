//! The two input files clavrxorb reads from its working directory:
//! `clavrx_options` (only the segment size matters) and `file_list`.
//! Pure `parse_*` functions on text plus thin `read_*` wrappers.

use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// Segment size from the text of a `clavrx_options` file.
///
/// Keyed (`scan_lines = 200`, `scan_lines: 200`, `scan_lines 200`) wins over
/// positional (`200 !E2 ...`, the first line whose comment starts with `E2`).
/// With several keyed lines the first one counts (a driver rewrites the
/// value where it finds it, in a copy of the file).
pub fn parse_scan_lines(text: &str) -> Result<u32, String> {
    let mut keyed: Option<(usize, &str)> = None;
    let mut positional: Option<(usize, &str)> = None;
    for (index, raw) in text.lines().enumerate() {
        let (body, comment) = match raw.split_once('!') {
            Some((body, comment)) => (body, Some(comment)),
            None => (raw, None),
        };
        let body = body.trim();
        if let Some(value) = keyed_value(body) {
            keyed = keyed.or(Some((index + 1, value)));
            continue;
        }
        if positional.is_none() && comment.is_some_and(|c| c.trim().starts_with("E2")) {
            positional = Some((index + 1, body.split_whitespace().next().unwrap_or("")));
        }
    }
    let (line, value) = keyed
        .or(positional)
        .ok_or("no scan_lines setting (neither `scan_lines = N` nor `N !E2 ...`)")?;
    value
        .parse::<i32>()
        .ok()
        .filter(|&n| n >= 1)
        .map(|n| n as u32)
        .ok_or_else(|| format!("line {line}: scan_lines {value:?} is not a positive integer"))
}

/// The value of a `scan_lines` line (comment already removed), `Some("")`
/// when the key has no value, `None` when the line sets something else.
fn keyed_value(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("scan_lines")?;
    let separated =
        rest.is_empty() || rest.starts_with(['=', ':']) || rest.starts_with(char::is_whitespace);
    if !separated {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
    Some(rest.split_whitespace().next().unwrap_or(""))
}

/// Reads the segment size from the `clavrx_options` file at `path`.
pub fn read_scan_lines(path: &Path) -> Result<u32, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    parse_scan_lines(&text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

/// What `file_list` says.
#[derive(Debug, PartialEq, Eq)]
pub struct FileList {
    /// Directory the granules are read from.
    pub input_dir: PathBuf,
    /// Directory the `.level2.bin` files are written to.
    pub output_dir: PathBuf,
    /// Granule file names, relative to `input_dir`.
    pub granules: Vec<String>,
}

impl FileList {
    /// Path of granule `name`.
    pub fn input_path(&self, name: &str) -> PathBuf {
        self.input_dir.join(name)
    }

    /// Path of the output file of granule `name`.
    pub fn output_path(&self, name: &str) -> PathBuf {
        self.output_dir.join(format!("{name}.level2.bin"))
    }
}

/// Parses the text of `file_list`: input dir, output dir, then granule names;
/// blank lines are ignored and lines are trimmed.
pub fn parse_file_list(text: &str) -> Result<FileList, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let input_dir = lines
        .next()
        .ok_or("empty: line 1 must be the input directory")?;
    let output_dir = lines
        .next()
        .ok_or("no output directory: line 2 must be the output directory")?;
    Ok(FileList {
        input_dir: PathBuf::from(input_dir),
        output_dir: PathBuf::from(output_dir),
        granules: lines.map(String::from).collect(),
    })
}

/// Reads `file_list` at `path`.
pub fn read_file_list(path: &Path) -> Result<FileList, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    parse_file_list(&text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_forms() {
        for text in [
            "scan_lines = 200 ! comment",
            "scan_lines=200",
            "scan_lines:200",
            "scan_lines : 200",
            "scan_lines\t200",
            "  scan_lines 200  ",
        ] {
            assert_eq!(parse_scan_lines(text), Ok(200), "{text:?}");
        }
    }

    #[test]
    fn positional_form() {
        let text = "1 !E1 something\n200 !E2 Num scan lines\n300 !E2 again\n";
        assert_eq!(parse_scan_lines(text), Ok(200));
        assert_eq!(parse_scan_lines("  17   !   E2 Num scan lines"), Ok(17));
    }

    #[test]
    fn keyed_wins_and_first_keyed_counts() {
        let text = "200 !E2 Num scan lines\nscan_lines = 50\n";
        assert_eq!(parse_scan_lines(text), Ok(50));
        let text = "scan_lines = 50\n200 !E2 Num scan lines\nscan_lines = 7\n";
        assert_eq!(parse_scan_lines(text), Ok(50));
    }

    #[test]
    fn not_keyed() {
        // Other keys, commented-out settings and values inside comments.
        let text = "scan_lines_max = 9\n! scan_lines = 5\nfoo = 1 ! scan_lines = 3\n";
        assert!(parse_scan_lines(text).is_err());
        assert_eq!(parse_scan_lines(&format!("{text}4 !E2 x\n")), Ok(4));
    }

    #[test]
    fn bad_values() {
        for text in [
            "",
            "! nothing\n",
            "scan_lines = 0",
            "scan_lines = -3",
            "scan_lines = 2.5",
            "scan_lines =",
            "scan_lines",
            "abc !E2 Num scan lines",
            "!E2 Num scan lines",
            "scan_lines = 99999999999",
        ] {
            assert!(parse_scan_lines(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn keyed_bad_value_is_an_error_even_with_positional() {
        assert!(parse_scan_lines("200 !E2 x\nscan_lines = zero\n").is_err());
    }

    #[test]
    fn file_list() {
        let list = parse_file_list("/in\n\n /out \na.gran\n\nb.gran\n").unwrap();
        assert_eq!(list.input_dir, PathBuf::from("/in"));
        assert_eq!(list.output_dir, PathBuf::from("/out"));
        assert_eq!(list.granules, ["a.gran", "b.gran"]);
        assert_eq!(list.input_path("a.gran"), PathBuf::from("/in/a.gran"));
        assert_eq!(
            list.output_path("a.gran"),
            PathBuf::from("/out/a.gran.level2.bin")
        );
        assert!(parse_file_list("/in\n").is_err());
        assert!(parse_file_list("\n\n").is_err());
        assert_eq!(parse_file_list("/in\n/out\n").unwrap().granules.len(), 0);
    }
}
