//! Making control characters visible before a name reaches a terminal or a log: a granule
//! named with ESC or CR must not move the cursor, recolour the screen or hide a line.
//! Owns only that; HTML escaping is the report page's own.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character written as an escape (`\r`, `\x1b`), the rest kept.
pub fn controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`controls`] for text of several lines: the line breaks stay, every other control
/// character is made visible.
pub fn controls_in_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| controls(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_made_visible_and_the_rest_kept() {
        assert!(matches!(
            controls("plain.nc ü"),
            Cow::Borrowed("plain.nc ü")
        ));
        assert_eq!(controls("a\x1b[2Jb\rc\u{9b}"), "a\\x1b[2Jb\\rc\\x9b");
        assert_eq!(controls("x\u{7f}\n"), "x\\x7f\\n");
        assert_eq!(controls_in_lines("a\x1b\nb\r\n"), "a\\x1b\nb\\r\n");
    }
}
