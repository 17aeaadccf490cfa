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
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
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

/// Print a line on stdout; a reader that went away (`… | head`) is not an
/// error: exit quietly with success.
pub fn print_line(text: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", text.as_ref()).is_err() {
        std::process::exit(0);
    }
}

/// An error in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Print `error: …` with its causes on one line and exit with the contract's code.
pub fn exit_with(e: anyhow::Error) -> ! {
    eprintln!("error: {e:#}");
    std::process::exit(exit_code(&e))
}
