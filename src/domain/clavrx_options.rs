//! The user's `clavrx_options`: finding the segment size and writing a per-run copy with
//! another one, without ever editing the user's file.
//!
//! Two layouts exist: keyed lines (`scan_lines = 200 ! comment`) and older positional files
//! where the value leads a line tagged `!E2` (`200 !E2 Num scan lines`). Keyed wins.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("cannot read clavrx options file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} has no scan_lines setting; add a line `scan_lines = 200` \
         (or, in an old positional file, `200 !E2 Num scan lines`)"
    )]
    NoScanLines { path: PathBuf },
    #[error(
        "{path}: scan_lines is set twice, on line {first} and on line {second}; clavrxorb \
         builds differ in which one they use, so keep only one"
    )]
    Repeated {
        path: PathBuf,
        first: usize,
        second: usize,
    },
    #[error("{path}:{line}: scan_lines is {value:?}; it must be a whole number of at least 1")]
    BadScanLines {
        path: PathBuf,
        line: usize,
        value: String,
    },
}

/// The largest options file read; real ones are a few KiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// An options file and where its segment size sits.
#[derive(Debug, Clone)]
pub struct ClavrxOptions {
    text: String,
    /// 0-based line index and byte range of the value within that line.
    at: (usize, std::ops::Range<usize>),
    pub scan_lines: u32,
}

impl ClavrxOptions {
    pub fn read(path: &Path) -> Result<ClavrxOptions, OptionsError> {
        let text = crate::base::bounded_read::read_text(path, MAX_BYTES).map_err(|e| {
            OptionsError::Unreadable {
                path: path.to_path_buf(),
                source: match e {
                    crate::base::bounded_read::ReadError::Io(e) => e,
                    too_large => std::io::Error::other(format!(
                        "{too_large}; a clavrx_options file is a few KiB"
                    )),
                },
            }
        })?;
        Self::parse(text, path)
    }

    pub fn parse(text: String, path: &Path) -> Result<ClavrxOptions, OptionsError> {
        let mut keyed = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| keyed_value(l).map(|r| (i, r)));
        let first = keyed.next();
        if let (Some((first, _)), Some((second, _))) = (&first, keyed.next()) {
            return Err(OptionsError::Repeated {
                path: path.to_path_buf(),
                first: first + 1,
                second: second + 1,
            });
        }
        let found = first.or_else(|| {
            text.lines()
                .enumerate()
                .find_map(|(i, l)| positional_value(l).map(|r| (i, r)))
        });
        let Some((line, range)) = found else {
            return Err(OptionsError::NoScanLines {
                path: path.to_path_buf(),
            });
        };
        let value = &text.lines().nth(line).unwrap_or_default()[range.clone()];
        let scan_lines = match value.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => n,
            _ => {
                return Err(OptionsError::BadScanLines {
                    path: path.to_path_buf(),
                    line: line + 1,
                    value: value.to_string(),
                });
            }
        };
        Ok(ClavrxOptions {
            text,
            at: (line, range),
            scan_lines,
        })
    }

    /// The file's text with the segment size set to `scan_lines`; every other byte kept.
    pub fn with_scan_lines(&self, scan_lines: u32) -> String {
        let (index, range) = &self.at;
        let mut out = String::with_capacity(self.text.len() + 8);
        for (i, line) in self.text.split_inclusive('\n').enumerate() {
            if i == *index {
                out.push_str(&line[..range.start]);
                out.push_str(&scan_lines.to_string());
                out.push_str(&line[range.end..]);
            } else {
                out.push_str(line);
            }
        }
        out
    }
}

/// The part of a line before its `!` comment.
fn code_of(line: &str) -> &str {
    line.split('!').next().unwrap_or_default()
}

fn keyed_value(line: &str) -> Option<std::ops::Range<usize>> {
    let code = code_of(line);
    let rest = code.trim_start().strip_prefix("scan_lines")?;
    if !rest.is_empty() && !rest.starts_with(['=', ':']) && !rest.starts_with(char::is_whitespace) {
        return None; // another key that starts with scan_lines
    }
    let rest = rest.trim_start();
    let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    let begin = code.len() - value.len();
    let len = value.split_whitespace().next().map_or(0, str::len);
    Some(begin..begin + len)
}

fn positional_value(line: &str) -> Option<std::ops::Range<usize>> {
    let (code, comment) = line.split_once('!')?;
    if !comment.trim_start().starts_with("E2") {
        return None;
    }
    let token = code.split_whitespace().next()?;
    let begin = code.find(token)?;
    Some(begin..begin + token.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClavrxOptions, OptionsError> {
        ClavrxOptions::parse(text.to_string(), Path::new("clavrx_options"))
    }

    #[test]
    fn keyed_forms() {
        for t in [
            "scan_lines = 200\n",
            "  scan_lines: 200 ! segment size\n",
            "x 1\nscan_lines 200\n",
        ] {
            assert_eq!(parse(t).unwrap().scan_lines, 200, "{t:?}");
        }
    }

    #[test]
    fn positional_form_and_rewrite_keeps_everything_else() {
        let t = "1 !E1 messages\n 200   !E2 Num scan lines\n3 !E3\n";
        let o = parse(t).unwrap();
        assert_eq!(o.scan_lines, 200);
        assert_eq!(
            o.with_scan_lines(7),
            "1 !E1 messages\n 7   !E2 Num scan lines\n3 !E3\n"
        );
    }

    #[test]
    fn keyed_wins_and_rewrite_touches_only_the_value() {
        let t = "100 !E2 old\nscan_lines = 50 ! new\n";
        let o = parse(t).unwrap();
        assert_eq!(o.scan_lines, 50);
        assert_eq!(o.with_scan_lines(1), "100 !E2 old\nscan_lines = 1 ! new\n");
    }

    #[test]
    fn a_repeated_key_names_both_lines() {
        for t in [
            "scan_lines = 10\nx\nscan_lines = 0\n",
            "scan_lines = 10\nx\nscan_lines: 50 ! later\n",
        ] {
            match parse(t) {
                Err(
                    e @ OptionsError::Repeated {
                        first: 1,
                        second: 3,
                        ..
                    },
                ) => {
                    assert!(e.to_string().contains("line 1 and on line 3"), "{e}")
                }
                other => panic!("{t:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_values_name_the_line() {
        for (t, line) in [
            ("a\nscan_lines = 0\n", 2),
            ("scan_lines = -3\n", 1),
            ("scan_lines = 2.5\n", 1),
            ("scan_lines =\n", 1),
            ("abc !E2 lines\n", 1),
        ] {
            match parse(t) {
                Err(OptionsError::BadScanLines { line: l, .. }) => assert_eq!(l, line, "{t:?}"),
                other => panic!("{t:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("scan_linesx = 3\n! E2\n"),
            Err(OptionsError::NoScanLines { .. })
        ));
    }
}
