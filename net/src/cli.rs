//! What the three binaries share at their edges: logging set-up and the exit
//! code contract (0 ok, 1 failed check or refused action, 2 usage or
//! configuration error).

use crate::config::ConfigError;

/// Log to stderr, filtered by `RUST_LOG` (default `info`). Under systemd
/// (`JOURNAL_STREAM` set) timestamps are left to the journal.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Colours only on a terminal (never in a file or the journal), and
    // never when NO_COLOR is set.
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(colour).init();
    }
}

/// Exit code for an error that ends a command: 2 for configuration
/// problems, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some() || c.downcast_ref::<UsageError>().is_some()
    }) {
        2
    } else {
        1
    }
}

/// Print text for a person on stdout. Text from the wire may be in it, so
/// every control character but the line break is shown escaped (a banner
/// or a hostname cannot clear the screen or retitle the terminal); fields
/// that must stay on one line are escaped whole by the caller
/// ([`firstline_proto::text::printable`]). A reader that went away
/// (`… | head`) is not an error: exit quietly with success.
pub fn print_line(text: impl AsRef<str>) {
    write_stdout(&terminal_safe(text.as_ref()));
}

/// Print one line of JSON on stdout, with the characters serde_json leaves
/// raw but terminals act on written as `\uXXXX` escapes.
pub fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    write_stdout(&firstline_proto::text::json_safe(&text));
}

fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// `text` with every unsafe character escaped except line breaks.
pub fn terminal_safe(text: &str) -> String {
    text.split('\n')
        .map(firstline_proto::text::printable)
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Print `error: …` with its causes on one line and exit with the contract's code.
pub fn exit_with(e: anyhow::Error) -> ! {
    eprintln!("error: {}", terminal_safe(&format!("{e:#}")));
    std::process::exit(exit_code(&e))
}
