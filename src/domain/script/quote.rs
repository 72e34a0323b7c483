//! Quoting for the two languages a script speaks: bash words and `#SBATCH` directive values.
//!
//! Pure string functions, also registered as the Tera filters `sh` and `sbatch`. Safe text is
//! left bare so scripts stay readable; everything else is quoted so no path can break the
//! script.

/// Characters that need no quoting in a bash word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-+=./,:@%".contains(c)
}

/// One bash word: bare when safe, else single-quoted (`'` written as `'\''`).
pub fn sh(word: &str) -> String {
    if !word.is_empty() && word.chars().all(is_plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Several words, each quoted, separated by single spaces.
pub fn sh_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| sh(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value after `#SBATCH --opt=`: sbatch reads directive lines itself (not bash), splitting
/// on white space, honouring double quotes and `\` escapes, and ending the directive at an
/// unquoted `#`. So a value with white space, quotes, `#` or `\` is double-quoted, with `\`
/// and `"` escaped.
pub fn sbatch(value: &str) -> String {
    let special = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '#' | '\\');
    if !value.is_empty() && !value.contains(special) {
        return value.to_string();
    }
    format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_words() {
        assert_eq!(sh("/data/list.txt"), "/data/list.txt");
        assert_eq!(sh("--chunk-size=4"), "--chunk-size=4");
        assert_eq!(sh(""), "''");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh("$HOME"), "'$HOME'");
        assert_eq!(sh("a\nb"), "'a\nb'");
        assert_eq!(sh_join(&["a", "b c"]), "a 'b c'");
    }

    #[test]
    fn bash_reads_back_what_was_quoted() {
        let nasty = [
            "plain",
            "two words",
            "it's",
            "$(rm -rf /)",
            "`x`",
            "a\"b",
            "tab\there",
            "*",
        ];
        let script = format!("printf '%s\\n' {}", sh_join(&nasty));
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(got.lines().collect::<Vec<_>>(), nasty);
    }

    #[test]
    fn directive_values() {
        assert_eq!(sbatch("/out/logs/%x-%A_%a.out"), "/out/logs/%x-%A_%a.out");
        assert_eq!(sbatch("/my out/x"), "\"/my out/x\"");
        assert_eq!(sbatch("a\"b c"), "\"a\\\"b c\"");
        // sbatch ends a directive at an unquoted `#` and reads `\` as an escape.
        assert_eq!(sbatch("/tmp/rv/out#x/logs"), "\"/tmp/rv/out#x/logs\"");
        assert_eq!(sbatch(r"/a\b"), r#""/a\\b""#);
        assert_eq!(sbatch(""), "\"\"");
    }
}
