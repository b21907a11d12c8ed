//! `ConfigError` and TOML parsing that reports the dotted key and the line of a fault.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// A config fault: which file, which key (dotted path, e.g. `answer.answer_after_rings`,
/// `nodes.main.options.3`, or `line 4, column 9` for TOML syntax), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses `text` (the contents of `file`) into `T`, naming the failing key and line.
pub(crate) fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let key = match e.span() {
            Some(span) => line_col(text, span.start),
            None => "syntax".to_string(),
        };
        ConfigError::new(file, key, format!("TOML syntax: {}", e.message().trim()))
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            "(top level)".to_string()
        } else {
            path
        };
        let inner = e.inner();
        let mut reason = inner.message().trim().to_string();
        if let Some(span) = inner.span() {
            reason.push_str(&format!(" ({})", line_col(text, span.start)));
        }
        ConfigError::new(file, key, reason)
    })
}

/// "line L, column C" (1-based) of byte offset `at`.
fn line_col(text: &str, at: usize) -> String {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u8,
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = parse::<T>(Path::new("x.toml"), "a = 1\nb = = 2\n").unwrap_err();
        assert!(e.key.starts_with("line 2"), "{e}");
        assert!(e.to_string().starts_with("x.toml: line 2"), "{e}");
    }

    #[test]
    fn type_error_names_key_and_line() {
        let e = parse::<T>(Path::new("x.toml"), "\na = 300\n").unwrap_err();
        assert_eq!(e.key, "a");
        assert!(e.reason.contains("line 2"), "{e}");
    }

    #[test]
    fn line_col_is_safe_on_any_offset() {
        assert_eq!(line_col("ab\ncd", 4), "line 2, column 2");
        assert_eq!(line_col("é", 1), "line 1, column 1");
        assert_eq!(line_col("", 99), "line 1, column 1");
    }
}
