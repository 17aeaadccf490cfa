//! How the console prints: aligned tables for people, JSON for scripts, and
//! a broken pipe (`firstline agents | head`) treated as success.

use firstline_proto::{CheckResult, Status};

pub use firstline_net::cli::print_line as line;

/// Print rows as a table with a header, columns padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    line(render(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        line(render(row.clone()));
    }
}

/// `OK    disk /  summary` — one line per result.
pub fn result(r: &CheckResult) {
    let tag = match r.status {
        Status::Ok => "OK  ",
        Status::Warn => "WARN",
        Status::Crit => "CRIT",
        Status::Unknown => "UNKN",
    };
    line(format!(
        "{tag}  {} {}: {} ({} ms)",
        r.check, r.target, r.summary, r.duration_ms
    ));
}

pub fn json(value: &impl serde::Serialize) {
    line(serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
}
