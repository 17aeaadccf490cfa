//! `firstline agents [--select SEL] [--sort name|health|last-seen] [--json]`:
//! health at a glance. One row per machine — online, health (the worst
//! latest status of its monitors, coloured on a terminal), open incidents
//! and tickets, last seen, tags, OS — and a one-line summary of the fleet
//! listed. All of it comes from the relay's store: no agent is asked.
//!
//! `--json` prints the array of agents on stdout (one object each, as
//! before, with `tags`, `facts`, `health`, `open_incidents`,
//! `open_tickets`) and the summary line on stderr, so scripts read the
//! array alone.

use crate::client::Client;
use crate::output;
use anyhow::{bail, Result};
use firstline_net::cli::{colour_stdout, paint, UsageError};
use firstline_proto::select::health_rank;
use firstline_proto::text::printable;
use firstline_proto::{AgentInfo, FleetSummary, Message, Selector};
use std::path::PathBuf;

/// How rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sort {
    /// By name.
    #[default]
    Name,
    /// Worst first: crit, warn, unknown, ok; then by name.
    Health,
    /// Longest unseen first: never seen, then offline by last seen, then
    /// online; then by name.
    LastSeen,
}

#[derive(clap::Args)]
pub struct AgentsArgs {
    /// Only the agents every term picks: KEY=VALUE,… with keys name (glob),
    /// tag, os (glob), online (true|false), health (ok|warn|crit|unknown);
    /// e.g. `tag=floor2,os=debian*`.
    #[arg(long, value_name = "SEL")]
    select: Option<String>,
    /// Order of the rows.
    #[arg(long, value_enum, default_value_t = Sort::Name)]
    sort: Sort,
    /// The agents as a JSON array on stdout (the summary line on stderr).
    #[arg(long)]
    json: bool,
}

pub async fn agents(cred: Option<PathBuf>, args: AgentsArgs) -> Result<i32> {
    // A bad selector is told here, before any connection (exit 2).
    if let Some(text) = &args.select {
        Selector::parse(text).map_err(|e| UsageError(format!("--select: {e}")))?;
    }
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client
        .parts(Message::SelectAgents {
            select: args.select.clone(),
        })
        .await;
    client.close().await;
    let mut agents: Vec<AgentInfo> = Vec::new();
    let mut summary = None;
    for part in parts? {
        match part {
            Message::Agents { agents: a } => agents.extend(a),
            Message::FleetSummary(s) => summary = Some(s),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    let summary = summary.unwrap_or_else(|| FleetSummary::of(&agents));
    sort(&mut agents, args.sort);
    if args.json {
        output::json(&agents);
        eprintln!("{}", summary_line(&summary));
        return Ok(0);
    }
    table(&agents);
    output::line(summary_line(&summary));
    Ok(0)
}

/// Order `agents` by `by` (a stable sort over the relay's order, by name).
pub fn sort(agents: &mut [AgentInfo], by: Sort) {
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    match by {
        Sort::Name => {}
        Sort::Health => {
            agents.sort_by_key(|a| std::cmp::Reverse(health_rank(a.health)));
        }
        Sort::LastSeen => {
            // RFC 3339 times of one relay's clock compare as text.
            agents.sort_by_cached_key(|x| match (x.online, &x.last_seen) {
                (true, _) => (2, None),
                (false, None) => (0, None),
                (false, Some(t)) => (1, Some(t.clone())),
            });
        }
    }
}

const HEADER: [&str; 8] = [
    "NAME",
    "ONLINE",
    "HEALTH",
    "INCIDENTS",
    "TICKETS",
    "LAST SEEN",
    "TAGS",
    "OS",
];
/// The column whose cells are coloured by health.
const HEALTH: usize = 2;

/// The cells of one row, each escaped whole (text from the wire).
fn row(a: &AgentInfo) -> Vec<String> {
    let online = if a.revoked {
        "revoked"
    } else if a.online {
        "yes"
    } else {
        "no"
    };
    let last_seen = if a.online {
        "now".to_string()
    } else {
        a.last_seen.clone().unwrap_or_else(|| "never".into())
    };
    let tags = if a.tags.is_empty() {
        "-".to_string()
    } else {
        a.tags.join(",")
    };
    [
        a.name.clone(),
        online.into(),
        a.health.as_str().into(),
        a.open_incidents.to_string(),
        a.open_tickets.to_string(),
        last_seen,
        tags,
        a.os.clone().unwrap_or_default(),
    ]
    .iter()
    .map(|c| printable(c).into_owned())
    .collect()
}

/// The rows under [`HEADER`], padded to fit; the health cell coloured on
/// a terminal, after the padding (escape codes take no column).
fn table(agents: &[AgentInfo]) {
    let rows: Vec<Vec<String>> = agents.iter().map(row).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String], health: Option<firstline_proto::Status>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                };
                match health {
                    Some(h) if i == HEALTH => {
                        let pad = padded.len() - c.len();
                        format!("{}{}", paint(h, c), " ".repeat(pad))
                    }
                    _ => padded,
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    output::line(render(&header, None));
    for (a, r) in agents.iter().zip(&rows) {
        let line = render(r, Some(a.health));
        if colour_stdout() {
            // Every cell was escaped above; only the colour's codes are raw.
            raw_line(&line);
        } else {
            output::line(line);
        }
    }
}

/// Print a line as it is (a reader gone away: exit quietly, as
/// [`output::line`] does).
fn raw_line(text: &str) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{text}").is_err() {
        std::process::exit(0);
    }
}

/// `12 machines, 10 online · ok 8 · warn 1 · crit 1 · unknown 2 · 3 open
/// incidents · 1 open ticket`.
pub fn summary_line(s: &FleetSummary) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    format!(
        "{}, {} online · ok {} · warn {} · crit {} · unknown {} · {} · {}",
        plural(s.machines, "machine", "machines"),
        s.online,
        s.ok,
        s.warn,
        s.crit,
        s.unknown,
        plural(s.open_incidents, "open incident", "open incidents"),
        plural(s.open_tickets, "open ticket", "open tickets"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::{Facts, Status};

    fn agent(name: &str, online: bool, health: Status, last_seen: Option<&str>) -> AgentInfo {
        AgentInfo {
            name: name.into(),
            online,
            last_seen: last_seen.map(str::to_string),
            version: None,
            os: Some("Debian GNU/Linux 12".into()),
            hostname: None,
            revoked: false,
            tags: vec!["floor2".into(), "lab".into()],
            facts: Facts::default(),
            health,
            open_incidents: 0,
            open_tickets: 0,
        }
    }

    fn names(a: &[AgentInfo]) -> Vec<&str> {
        a.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn sorts() {
        let mut a = vec![
            agent("d", true, Status::Ok, Some("2026-01-01T00:00:09Z")),
            agent("c", false, Status::Warn, Some("2026-01-01T00:00:05Z")),
            agent("b", false, Status::Crit, Some("2026-01-01T00:00:01Z")),
            agent("a", false, Status::Unknown, None),
            agent("e", true, Status::Crit, Some("2026-01-01T00:00:02Z")),
        ];
        sort(&mut a, Sort::Name);
        assert_eq!(names(&a), ["a", "b", "c", "d", "e"]);
        sort(&mut a, Sort::Health);
        assert_eq!(names(&a), ["b", "e", "c", "a", "d"]);
        sort(&mut a, Sort::LastSeen);
        assert_eq!(names(&a), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn rows_and_summary() {
        let mut a = agent("pc1", true, Status::Crit, Some("x"));
        a.open_incidents = 2;
        assert_eq!(
            row(&a),
            [
                "pc1",
                "yes",
                "crit",
                "2",
                "0",
                "now",
                "floor2,lab",
                "Debian GNU/Linux 12"
            ]
        );
        a.online = false;
        a.tags.clear();
        a.os = Some("evil\u{1b}[2J".into());
        let r = row(&a);
        assert_eq!((r[5].as_str(), r[6].as_str()), ("x", "-"));
        assert!(!r[7].contains('\u{1b}'), "escaped: {r:?}");
        let s = FleetSummary {
            machines: 12,
            online: 10,
            ok: 8,
            warn: 1,
            crit: 1,
            unknown: 2,
            open_incidents: 3,
            open_tickets: 1,
        };
        assert_eq!(
            summary_line(&s),
            "12 machines, 10 online · ok 8 · warn 1 · crit 1 · unknown 2 · 3 open incidents · 1 open ticket"
        );
    }
}
