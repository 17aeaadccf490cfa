//! Text from the wire, made safe to show.
//!
//! Anything a peer sends — an agent's hostname, a TCP banner, a plugin's
//! output, a ticket title — may carry terminal control sequences (clear the
//! screen, retitle the window, move the cursor) or line breaks that forge
//! lines in a log. Every human-readable output goes through [`printable`];
//! JSON output through [`json_safe`]. Nothing is dropped: control
//! characters are shown escaped, so what was sent stays visible.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` changes how a terminal or a log shows the text around it:
/// C0 controls (ESC, CR, LF, BS…), DEL, C1 controls (8-bit CSI…), and the
/// Unicode line separators and bidirectional overrides that make a line read
/// differently from what it holds.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every unsafe character escaped (`\n`, `\r`, `\t`, `\u{1b}`…);
/// borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A line of JSON (as serde_json writes it) with the characters serde_json
/// leaves raw but terminals act on (DEL, C1 controls, bidi overrides)
/// written as `\uXXXX` escapes. Such characters only occur inside JSON
/// strings, where the escape means the same character.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if is_unsafe(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most `max` bytes of `text`, cut at a character boundary and ending
/// in `…` when something was cut (the `…` counts in the `max`).
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let ellipsis = '…'.len_utf8();
    if max < ellipsis {
        // No room for the ellipsis: the longest prefix that fits.
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return Cow::Borrowed(&text[..end]);
    }
    let mut end = max - ellipsis;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_terminals_act_on() {
        assert!(matches!(printable("plain text ü"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;owned\u{7}b\nc\rd\te"),
            "a\\u{1b}]0;owned\\u{7}b\\nc\\rd\\te"
        );
        assert_eq!(printable("x\u{9b}2Jy"), "x\\u{9b}2Jy");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(printable("\u{7f}"), "\\u{7f}");
    }

    #[test]
    fn json_keeps_its_meaning() {
        let v = serde_json::json!({"t": "a\u{1b}[2J\u{9b}\u{202e}"});
        let raw = serde_json::to_string(&v).unwrap();
        let safe = json_safe(&raw);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 5), "é…");
        assert_eq!(truncate("abcdefgh", 6), "abc…");
        assert!(truncate(&"x".repeat(500), 200).len() <= 200);
        for max in 0..8 {
            assert!(truncate("ééééé", max).len() <= max, "{max}");
        }
    }
}
