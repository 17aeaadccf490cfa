//! TOML configuration files whose errors name the file and the line.
//!
//! Both daemons read their config through [`load`], so "bad config" always
//! reads `FILE:LINE:COL: what is wrong`.

use serde::de::DeserializeOwned;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Read and parse a TOML file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parse TOML text; `name` is the file name used in errors.
pub fn parse<T: DeserializeOwned>(name: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (line, column) = line_col(text, offset);
        ConfigError::Invalid {
            path: name.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// An error about one key of an already parsed file, located by searching
/// for `key =` (for checks that serde cannot express).
pub fn invalid_key(name: &str, text: &str, key: &str, message: String) -> ConfigError {
    invalid_key_at(name, text, key, 0, message)
}

/// Like [`invalid_key`], for the `nth` (0-based) occurrence of `key` — the
/// key of the nth table of an array of tables such as `[[monitor]]`.
pub fn invalid_key_at(
    name: &str,
    text: &str,
    key: &str,
    nth: usize,
    message: String,
) -> ConfigError {
    let offset = text
        .lines()
        .scan(0usize, |pos, l| {
            let start = *pos;
            *pos += l.len() + 1;
            Some((start, l))
        })
        .filter(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .nth(nth)
        .map(|(start, _)| start)
        .unwrap_or(0);
    let (line, column) = line_col(text, offset);
    ConfigError::Invalid {
        path: name.to_string(),
        line,
        column,
        message,
    }
}

/// An error about `key` of the `index`-th (0-based) `[[table]]` of an
/// array of tables (`[[monitor]]`): the line of `key =` inside that table,
/// else the table's `[[table]]` line. (A key only some tables have, such
/// as `args`, cannot be found by counting its occurrences in the file.)
pub fn table_key(
    name: &str,
    text: &str,
    table: &str,
    index: usize,
    key: &str,
    message: String,
) -> ConfigError {
    let lines: Vec<&str> = text.lines().collect();
    let squeezed = |l: &str| l.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let header_text = format!("[[{table}]]");
    let header = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| squeezed(l).starts_with(&header_text))
        .nth(index)
        .map(|(n, _)| n);
    let Some(header) = header else {
        return invalid_key_at(name, text, key, index, message);
    };
    let found = lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
    let (line, text_line) = found.map_or((header, lines[header]), |(n, l)| (n, *l));
    ConfigError::Invalid {
        path: name.to_string(),
        line: line + 1,
        column: text_line.len() - text_line.trim_start().len() + 1,
        message,
    }
}

/// Several errors as one: the first, then each of the others on a line of
/// its own (`FILE:LINE:COL: …`), so a command prints them all. `None` when
/// there are none.
pub fn combine(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
    if errors.is_empty() {
        return None;
    }
    let rest: Vec<String> = errors.drain(1..).map(|e| e.to_string()).collect();
    let first = errors.remove(0);
    if rest.is_empty() {
        return Some(first);
    }
    Some(match first {
        ConfigError::Invalid {
            path,
            line,
            column,
            message,
        } => ConfigError::Invalid {
            path,
            line,
            column,
            message: format!("{message}\n{}", rest.join("\n")),
        },
        read => read,
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        listen: String,
        port: Option<u16>,
    }

    #[test]
    fn error_names_file_and_line() {
        let text = "listen = \"x\"\n\nport = \"not a number\"\n";
        let err = parse::<Demo>("relay.toml", text).unwrap_err().to_string();
        assert!(err.starts_with("relay.toml:3:"), "{err}");
    }

    #[test]
    fn unknown_key_located() {
        let text = "listen = \"x\"\nlisten_port = 3\n";
        let err = parse::<Demo>("a.toml", text).unwrap_err().to_string();
        assert!(err.starts_with("a.toml:2:"), "{err}");
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn invalid_key_finds_line() {
        let text = "a = 1\n  every = \"5x\"\n";
        let err = invalid_key("f.toml", text, "every", "bad".into()).to_string();
        assert_eq!(err, "f.toml:2:1: bad");
    }
}
