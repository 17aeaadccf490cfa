//! Text made safe to show: `text::printable`, `text::json_safe`,
//! `text::truncate` on arbitrary UTF-8.
//!
//! Checked:
//! * `printable` and `json_safe` output never holds a char for which
//!   `text::is_unsafe` is true, and is borrowed (unchanged) exactly when the
//!   input held none; `printable` keeps every safe char, in order;
//! * `json_safe` keeps the meaning of JSON as serde_json writes it: for the
//!   input as a JSON string, and for the input parsed as any JSON value
//!   when it is one, the escaped line parses back to the same value;
//! * `truncate(s, max)` is `s` when it fits, else a prefix of `s` cut at
//!   the last char boundary that leaves room for `…`, then `…`; at most
//!   `max` bytes in all.
#![no_main]

use firstline_proto::text::{is_unsafe, json_safe, printable, truncate};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;


fn check_json_safe(raw: &str) {
    let safe = json_safe(raw);
    assert!(
        !safe.chars().any(is_unsafe),
        "json_safe left an unsafe char: {safe:?}"
    );
    assert_eq!(
        matches!(safe, Cow::Borrowed(_)),
        !raw.chars().any(is_unsafe)
    );
    let a: serde_json::Value = serde_json::from_str(raw).expect("serde_json output reparses");
    let b: serde_json::Value = serde_json::from_str(&safe)
        .unwrap_or_else(|e| panic!("json_safe output is not JSON ({e}): {safe:?}"));
    assert_eq!(a, b, "json_safe changed the meaning of {raw:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let has_unsafe = s.chars().any(is_unsafe);

    // printable
    let p = printable(s);
    assert!(
        !p.chars().any(is_unsafe),
        "printable left an unsafe char: {p:?}"
    );
    assert_eq!(matches!(p, Cow::Borrowed(_)), !has_unsafe);
    if !has_unsafe {
        assert_eq!(p, s);
    }
    // Every safe char of the input is kept, in order (escapes only add).
    let mut out = p.chars();
    for c in s.chars().filter(|c| !is_unsafe(*c)) {
        assert!(out.any(|o| o == c), "printable dropped {c:?}");
    }

    // json_safe on serde_json's own output.
    let as_string = serde_json::to_string(s).expect("a str serializes");
    check_json_safe(&as_string);
    let back: String = serde_json::from_str(&json_safe(&as_string)).expect("string reparses");
    assert_eq!(back, s, "json_safe string round trip");
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
        check_json_safe(&serde_json::to_string(&v).expect("a value serializes"));
    }

    // truncate: at most `max` bytes, the `…` included, cut as late as a
    // char boundary allows.
    let first = s.chars().next().map_or(0, |c| c as usize);
    for max in [
        0,
        1,
        2,
        3,
        4,
        first % 64,
        s.len() / 2,
        s.len().saturating_sub(1),
        s.len(),
    ] {
        let t = truncate(s, max);
        if s.len() <= max {
            assert!(matches!(t, Cow::Borrowed(x) if x == s));
            continue;
        }
        assert!(
            t.len() <= max,
            "truncate({s:?}, {max}) = {t:?}: over {max} bytes"
        );
        let ellipsis = '…'.len_utf8();
        let kept = if max < ellipsis {
            // No room for the ellipsis: a bare prefix.
            &t[..]
        } else {
            t.strip_suffix('…').expect("cut text ends with …")
        };
        assert!(s.starts_with(kept));
        let room = if max < ellipsis { max } else { max - ellipsis };
        assert!(room - kept.len() < 4, "cut more than one char too far");
    }
});
