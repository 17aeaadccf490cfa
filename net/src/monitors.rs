//! Files of `[[monitor]]` tables — a central monitor set
//! (`firstline monitors set --select SEL FILE.toml`) — read with errors
//! that name the file and the line, as `agent.toml` is.
//!
//! This is the part of a monitor's validation that needs no agent: TOML,
//! the keys of each table, `every`, the counters, the sizes, ids unique in
//! the file. Here because the console and the relay both check a set before
//! it is stored, and the relay does not link the agent. Whether the check
//! exists and takes these arguments, and whether the agent's `[policy]`
//! lets it run, is the agent's to say (`firstline_agent::config::
//! check_monitor`, which the console also runs, and each agent again as it
//! receives the set: it answers with a reason for each one it refuses).

use crate::config::{self, ConfigError};
use firstline_proto::central::{self, MonitorSpec};
use firstline_proto::{limits, text::printable};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFile {
    #[serde(default)]
    monitor: Vec<MonitorSpec>,
}

/// The problems of one table that need no agent: `(key, message)`.
pub fn spec_problems(m: &MonitorSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match humantime::parse_duration(&m.every) {
        Ok(d) if d >= Duration::from_secs(1) => {}
        Ok(_) => out.push(("every", "every must be at least 1s".to_string())),
        Err(e) => out.push((
            "every",
            format!(
                "every = \"{}\": {e} (use 30s, 5m, 1h…)",
                printable(&m.every)
            ),
        )),
    }
    if m.fail_after == Some(0) {
        out.push(("fail_after", "fail_after must be at least 1".into()));
    }
    if m.recover_after == Some(0) {
        out.push(("recover_after", "recover_after must be at least 1".into()));
    }
    out
}

/// Sizes and names that a set sent over the wire is held to, beyond
/// [`spec_problems`]: `(key, message)`.
fn wire_problems(m: &MonitorSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    if !word(&m.check) {
        out.push((
            "check",
            format!("check `{}` is not a check's name", printable(&m.check)),
        ));
    }
    if m.args.len() > central::MAX_ARGS || m.args.iter().any(|a| a.len() > central::MAX_ARG_LEN) {
        out.push((
            "args",
            format!(
                "at most {} arguments of {} bytes each",
                central::MAX_ARGS,
                central::MAX_ARG_LEN
            ),
        ));
    }
    if let Some(name) = &m.name {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            out.push(("name", "a monitor's name is one line of text".into()));
        }
    }
    if m.id().len() > limits::MONITOR_ID {
        out.push((
            "name",
            format!(
                "the monitor's id is longer than {} bytes: give it a shorter `name`",
                limits::MONITOR_ID
            ),
        ));
    }
    out
}

/// Read a set file's text (`name` is the file name errors give): its
/// monitors, or every problem found, one `FILE:LINE:COL: …` line each.
pub fn parse(name: &str, text: &str) -> Result<Vec<MonitorSpec>, ConfigError> {
    parse_with(name, text, |_| Vec::new())
}

/// [`parse`], with `more` problems of each table (`(key, message)`: the
/// agent's checks, on the console) reported with theirs, in order.
pub fn parse_with(
    name: &str,
    text: &str,
    more: impl Fn(&MonitorSpec) -> Vec<(&'static str, String)>,
) -> Result<Vec<MonitorSpec>, ConfigError> {
    let at_top = |message: String| ConfigError::Invalid {
        path: name.to_string(),
        line: 1,
        column: 1,
        message,
    };
    if text.len() > central::MAX_TOML {
        return Err(at_top(format!(
            "{} bytes: a monitor set is at most {} bytes",
            text.len(),
            central::MAX_TOML
        )));
    }
    let file: SetFile = config::parse(name, text)?;
    if file.monitor.is_empty() {
        return Err(at_top(
            "no [[monitor]] table: a set is [[monitor]] tables as in agent.toml \
             (check, args, every…); to drop a set, `firstline monitors remove NAME`"
                .into(),
        ));
    }
    if file.monitor.len() > central::MAX_MONITORS_PER_SET {
        return Err(at_top(format!(
            "{} monitors: a set has at most {}",
            file.monitor.len(),
            central::MAX_MONITORS_PER_SET
        )));
    }
    let mut errors = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (i, m) in file.monitor.iter().enumerate() {
        let at = |key: &str, msg: String| config::table_key(name, text, "monitor", i, key, msg);
        let problems = spec_problems(m).into_iter().chain(wire_problems(m));
        for (key, msg) in problems.chain(more(m)) {
            errors.push(at(key, msg));
        }
        let id = m.id();
        if ids.contains(&id) {
            errors.push(at(
                "name",
                format!(
                    "two monitors with the id `{}`: give one a `name`",
                    printable(&id)
                ),
            ));
        }
        ids.push(id);
    }
    match config::combine(errors) {
        Some(e) => Err(e),
        None => Ok(file.monitor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_monitor_tables() {
        let text = "[[monitor]]\ncheck = \"tcp\"\nargs = [\"127.0.0.1:9\"]\nevery = \"5s\"\nfail_after = 1\n\n[[monitor]]\nname = \"root\"\ncheck = \"disk\"\nargs = [\"/\"]\nevery = \"1m\"\n";
        let set = parse("s.toml", text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].id(), "tcp 127.0.0.1:9");
        assert_eq!(set[1].id(), "root");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("s.toml", "[[monitor]]\ncheck = \"tcp\"\nevry = \"5s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:3:") && e.contains("evry"), "{e}");
        let e = parse("s.toml", "relay = \"x\"\n").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:1:") && e.contains("relay"), "{e}");
        let e = parse("s.toml", "").unwrap_err().to_string();
        assert!(e.contains("no [[monitor]]"), "{e}");
        let e = parse(
            "s.toml",
            "[[monitor]]\ncheck = \"disk\"\nargs = [\"/\"]\nevery = \"5m\"\n\n[[monitor]]\ncheck = \"disk\"\nevery = \"soon\"\nfail_after = 0\n\n[[monitor]]\ncheck = \"disk\"\nevery = \"1m\"\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(
            lines[0].starts_with("s.toml:8:") && lines[0].contains("soon"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("s.toml:9:") && lines[1].contains("fail_after"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("s.toml:11:") && lines[2].contains("two monitors"),
            "{e}"
        );
        let e = parse(
            "s.toml",
            "[[monitor]]\ncheck = \"rm -rf\"\nevery = \"5m\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.toml:2:") && e.contains("not a check"),
            "{e}"
        );
    }
}
