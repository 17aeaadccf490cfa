//! What the three binaries share at their edges: logging set-up, parsing
//! the command line, colour, and the exit code contract (0 ok, 1 a check
//! that is not ok or a refused action, 2 usage or configuration error).
//!
//! Every message that ends a command is one line, starts with `error: `
//! once (never twice: a message that already carries clap's `error: ` is
//! not prefixed again) and says what to do.

use crate::config::ConfigError;
use firstline_proto::{CheckResult, Status};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

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
    let colour = std::io::stderr().is_terminal() && !no_color();
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(colour).init();
    }
}

/// Exit code for an error that ends a command: 2 for usage and
/// configuration problems, 1 for everything else.
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
    eprintln!("error: {}", error_line(&e));
    std::process::exit(exit_code(&e))
}

/// An error and its causes as one line, escaped, without a leading
/// `error: ` of its own (the caller adds one).
pub fn error_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    // A configuration file with several mistakes reports one per line,
    // each `FILE:LINE: …`; anything else is one line.
    let several = e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some());
    let joined = if several { "\n" } else { " " };
    terminal_safe(text).replace('\n', joined)
}

// --- colour ---------------------------------------------------------------

/// Whether NO_COLOR asks for no colour (set and not empty, as
/// <https://no-color.org> says).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether what goes to stdout may be coloured: a terminal, and no
/// NO_COLOR. Never in a file or a pipe.
pub fn colour_stdout() -> bool {
    static COLOUR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COLOUR.get_or_init(|| std::io::stdout().is_terminal() && !no_color())
}

/// `text` in the colour of `status` (OK green, WARN yellow, CRIT red,
/// UNKNOWN magenta) when stdout takes colour, else as it is.
pub fn paint(status: Status, text: &str) -> String {
    if !colour_stdout() {
        return text.to_string();
    }
    let code = match status {
        Status::Ok => "32",
        Status::Warn => "33",
        Status::Crit => "31",
        Status::Unknown => "35",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Print a result's line ([`CheckResult::line`], the one renderer), its
/// status label coloured on a terminal. The colour is added after the
/// line was made safe, so nothing from the wire carries an escape.
pub fn print_result(r: &CheckResult) {
    let line = terminal_safe(&r.line());
    let label = r.status.label();
    let line = match line.strip_prefix(label) {
        Some(rest) if colour_stdout() => format!("{}{rest}", paint(r.status, label)),
        _ => line,
    };
    write_stdout(&line);
}

/// A result as JSON, naming the agent that produced it (`"agent"` beside
/// `check` and `target`): what every `--json` prints for a result.
pub fn result_json(agent: &str, r: &CheckResult) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(fields) = v.as_object_mut() {
        fields.insert("agent".into(), agent.into());
    }
    v
}

/// Checks for a person: per check, its name and what it does, then its
/// synopsis with the defaults (thresholds) on an indented line. Every
/// field is escaped whole (it may come from an agent).
pub fn check_list(checks: &[firstline_proto::message::CheckInfo]) -> Vec<String> {
    use firstline_proto::text::printable;
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    for c in checks {
        lines.push(
            format!("{:<width$}  {}", printable(&c.name), printable(&c.about))
                .trim_end()
                .to_string(),
        );
        lines.push(format!("{:<width$}  {}", "", printable(&c.synopsis)));
    }
    lines
}

// --- usage errors -----------------------------------------------------------

/// A clap usage message (or any other) as one line: clap's `error: `
/// dropped, the items of a line ending in `:` (arguments not provided)
/// kept, its `tip:` kept, and its usage line kept with the program named
/// `command` (`firstline run pc1 disk`) when given. Help texts are not
/// usage errors and are not passed here.
///
/// `error: unexpected argument '--wrn' found … Usage: disk [OPTIONS] [PATH]`
/// becomes `unexpected argument '--wrn' found (tip: a similar argument
/// exists: '--warn'); usage: firstline run pc1 disk [OPTIONS] [PATH]`.
pub fn usage_line(message: &str, command: Option<&str>) -> String {
    let mut lines = message
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .peekable();
    let first = lines.next().map_or("bad arguments", str::trim);
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if line.ends_with(':') {
        while let Some(item) = lines.next_if(|l| l.starts_with(char::is_whitespace)) {
            if item.trim().is_empty() {
                break;
            }
            line.push(' ');
            line.push_str(item.trim());
        }
    }
    let rest: Vec<&str> = lines.map(str::trim).collect();
    if let Some(tip) = rest.iter().find(|l| l.starts_with("tip: ")) {
        line.push_str(&format!(" ({tip})"));
    }
    if let Some(usage) = rest.iter().find_map(|l| l.strip_prefix("Usage: ")) {
        let usage = match (command, usage.split_once(' ')) {
            (Some(c), Some((_, args))) => format!("{c} {args}"),
            (Some(c), None) => c.to_string(),
            (None, _) => usage.to_string(),
        };
        line.push_str(&format!("; usage: {usage}"));
    }
    line
}

/// Whether a message from clap is a help text (asked for with `--help`)
/// rather than an error.
pub fn is_help(message: &str) -> bool {
    let m = message.trim_start();
    !m.starts_with("error:") && (m.starts_with("Usage:") || m.contains("\nUsage:"))
}

/// The candidate closest to `word` when it is a likely typo (at most two
/// edits, and fewer than half the word): `dsk` → `disk`.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().div_ceil(2));
    candidates
        .iter()
        .map(|c| (edits(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

// --- the command line -------------------------------------------------------

/// The name of the hidden subcommand that writes the man pages.
const MANPAGES: &str = "manpages";

/// Parse the command line of `T`: help and version to stdout (exit 0),
/// usage errors on one line (exit 2), and a hidden `manpages DIR` that
/// writes the binary's man pages (one per command) for the packages.
pub fn parse<T: clap::Parser>() -> T {
    parse_from(std::env::args_os())
}

/// [`parse`] of the given words (the first is the program).
pub fn parse_from<T: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> T {
    let with_pages = T::command().subcommand(
        clap::Command::new(MANPAGES)
            .hide(true)
            .about("Write this program's man pages into DIR (for packaging)")
            .arg(
                clap::Arg::new("dir")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
    );
    let parsed = with_pages
        .try_get_matches_from(args)
        .and_then(|mut m| match m.subcommand() {
            Some((MANPAGES, sub)) => {
                let dir = sub.get_one::<PathBuf>("dir").cloned().unwrap_or_default();
                match write_man_pages(T::command(), &dir) {
                    Ok(pages) => {
                        for p in pages {
                            print_line(p.display().to_string());
                        }
                        std::process::exit(0)
                    }
                    Err(e) => exit_with(e),
                }
            }
            _ => T::from_arg_matches_mut(&mut m),
        });
    parsed.unwrap_or_else(|e| usage_exit(e))
}

/// End on a clap error: help and version as clap prints them, anything
/// else as one line with exit status 2.
pub fn usage_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        _ => {
            let text = e.render().to_string();
            eprintln!("error: {}", terminal_safe(&usage_line(&text, None)));
            std::process::exit(2)
        }
    }
}

/// The programs of the project: their man pages are theirs. A subcommand
/// whose page would take one of these names (`firstline agent` →
/// `firstline-agent.1`, the agent's own page) gets none; the page of its
/// parent lists it, and `--help` shows it.
const PROGRAMS: &[&str] = &[
    "firstline",
    "firstline-agent",
    "firstline-relay",
    "firstline-help",
];

/// Write `NAME.1` and `NAME-SUB….1` for `cmd` and every visible
/// subcommand into `dir` (see [`PROGRAMS`]); the paths written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    fn generate(
        cmd: clap::Command,
        dir: &Path,
        root: bool,
        out: &mut Vec<PathBuf>,
    ) -> anyhow::Result<()> {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
        if !root && PROGRAMS.contains(&name.as_str()) {
            return Ok(());
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            generate(sub, dir, false, out)?;
        }
        let page = clap_mangen::Man::new(cmd)
            .generate_to(dir)
            .with_context(|| {
                format!("cannot write the man page of {name} into {}", dir.display())
            })?;
        out.push(page);
        Ok(())
    }
    // Man pages are for everyone: 0755, whatever the umask.
    crate::private::create_dir(dir, 0o755)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    generate(cmd, dir, true, &mut pages)?;
    pages.sort();
    Ok(pages)
}

/// The completion script of `cmd` for `shell`, on stdout.
pub fn print_completions(mut cmd: clap::Command, shell: Shell) {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    use std::io::Write;
    if std::io::stdout().lock().write_all(&out).is_err() {
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAP_ERROR: &str = "error: unexpected argument '--wrn' found\n\n  tip: a similar argument exists: '--warn'\n\nUsage: disk [OPTIONS] [PATH]\n\nFor more information, try '--help'.\n";

    #[test]
    fn usage_errors_are_one_line() {
        let line = usage_line(CLAP_ERROR, Some("firstline run pc1 disk"));
        assert_eq!(
            line,
            "unexpected argument '--wrn' found (tip: a similar argument exists: '--warn'); usage: firstline run pc1 disk [OPTIONS] [PATH]"
        );
        let missing = "error: the following required arguments were not provided:\n  <TARGET>\n\nUsage: tcp <TARGET>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(missing, None),
            "the following required arguments were not provided: <TARGET>; usage: tcp <TARGET>"
        );
        assert_eq!(
            usage_line("--warn must not be above --crit", Some("x")),
            "--warn must not be above --crit"
        );
        assert!(!is_help(CLAP_ERROR));
        assert!(is_help("Disk space\n\nUsage: disk [OPTIONS]\n"));
        assert!(is_help("Usage: disk"));
    }

    #[test]
    fn suggestions() {
        let names = ["ping", "dns", "disk", "du", "http", "tcp"];
        assert_eq!(did_you_mean("dsk", &names), Some("disk"));
        assert_eq!(did_you_mean("pnig", &names), Some("ping"));
        assert_eq!(did_you_mean("teleport", &names), None);
        assert_eq!(did_you_mean("x", &names), None);
    }

    #[test]
    fn one_error_prefix() {
        let e = anyhow::anyhow!("error: twice");
        assert_eq!(error_line(&e), "twice");
        let e = anyhow::Error::new(UsageError("a\nb".into()));
        assert_eq!(error_line(&e), "a b");
        assert_eq!(exit_code(&e), 2);
    }

    #[test]
    fn man_pages_for_every_command() {
        #[derive(clap::Parser)]
        #[command(name = "firstline", about = "a tool")]
        struct Cli {
            #[command(subcommand)]
            cmd: Cmd,
        }
        #[derive(clap::Subcommand)]
        enum Cmd {
            /// Do one thing.
            One,
            /// Do the other.
            Two,
            /// Named like another program of the project: no page.
            Agent,
        }
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(<Cli as clap::CommandFactory>::command(), dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["firstline-one.1", "firstline-two.1", "firstline.1"]);
    }
}
