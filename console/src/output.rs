//! How the console prints: aligned tables for people, JSON for scripts, and
//! a broken pipe (`firstline agents | head`) treated as success. Colour
//! only on a terminal, never in a file or a pipe, never with NO_COLOR.

use firstline_proto::text::printable;
use firstline_proto::CheckResult;

pub use firstline_net::cli::print_json as json;
pub use firstline_net::cli::print_line as line;

/// Print rows as a table with a header, columns padded to fit. Cells come
/// from the wire: each is escaped whole (one cell, one line).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let rows = &rows;
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

/// `OK      disk /: summary (3 ms)` — one line per result, its status
/// coloured when stdout is a terminal (and NO_COLOR is not set).
pub fn result(r: &CheckResult) {
    firstline_net::cli::print_result(r);
}
