//! The knowledge base on the wire: articles the relay keeps as Markdown
//! files in its `kb/` folder, found by `kb_search` and read by `kb_show`
//! (consoles, viewers up) — and `kb_show` from an agent, for
//! `firstline-help` to show the person at the machine the article a
//! verdict names (`Verdict::kb`).
//!
//! Ids are short slugs (`printer-needs-attention`): [`valid_id`] says
//! which, so that an id from the wire is never a path, and a web link
//! built from one needs no escaping.

use serde::{Deserialize, Serialize};

/// Longest article id, in bytes.
pub const ID_LEN: usize = 64;
/// Longest search text, in bytes.
pub const SEARCH_LEN: usize = 200;

/// Whether `id` is an article id: 1 to [`ID_LEN`] bytes of `a-z`, `0-9`,
/// `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// One article found by `kb_search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbHit {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The first body line that matched (or the first line), trimmed.
    #[serde(default)]
    pub excerpt: String,
}

/// A whole article (`kb_show`): its body is Markdown, shown as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbArticle {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_slugs() {
        for ok in ["disk-full", "network-dns", "a", "printing_2.x"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "../etc", "-x", "A", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
