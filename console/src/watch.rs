//! `firstline watch`: alerts and ticket changes, live, one line each.
//!
//! The relay streams every notice to every watcher; this end filters them
//! (`--agent`, `--ticket`, `--kind`) and, when the connection is lost (the
//! relay restarts, the network drops), says so on stderr and reconnects by
//! itself with a capped backoff. Notices sent while it was away are not
//! replayed: the tickets keep the state (`firstline tickets`).

use crate::client::{classify, Client};
use crate::output;
use anyhow::Result;
use firstline_net::cli::UsageError;
use firstline_proto::text::printable;
use firstline_proto::{Message, Notice};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Only notices about this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only notices about this ticket (`12` or `#12`).
    #[arg(long, value_name = "N", value_parser = ticket_number)]
    pub ticket: Option<u64>,
    /// Only notices of this kind: `alert`, `ticket`, `queued` (queued
    /// actions delivered or expired), or one kind such as `ticket_result`
    /// or `alert_incident_opened`; may be repeated.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
    /// One JSON object per notice.
    #[arg(long)]
    pub json: bool,
}

/// Kinds of notices the relay sends; `alert` and `ticket` stand for every
/// kind they begin. Kinds a newer relay adds pass as `alert_…`/`ticket_…`.
const KINDS: &[&str] = &[
    "alert",
    "ticket",
    "alert_incident_opened",
    "alert_incident_updated",
    "alert_incident_resolved",
    "alert_result",
    "ticket_opened",
    "ticket_result",
    "ticket_comment",
    "ticket_status",
    "ticket_assigned",
    "ticket_priority",
    "ticket_diagnostics",
    "ticket_verdict",
    "queued",
    "queued_delivered",
    "queued_expired",
    "lagged",
];

/// Waits between reconnection attempts: doubling, at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

fn ticket_number(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#')
        .parse()
        .map_err(|_| format!("`{text}` is not a ticket number (write 12 or #12)"))
}

/// Which notices to show.
struct Filter {
    agent: Option<String>,
    ticket: Option<u64>,
    kinds: Vec<String>,
}

impl Filter {
    fn new(args: &WatchArgs) -> Result<Filter> {
        for k in &args.kind {
            let known = KINDS.contains(&k.as_str())
                || k.starts_with("alert_")
                || k.starts_with("ticket_")
                || k.starts_with("queued_");
            if !known {
                return Err(UsageError(format!(
                    "--kind {k}: not a kind of notice (kinds: {})",
                    KINDS.join(", ")
                ))
                .into());
            }
        }
        Ok(Filter {
            agent: args.agent.clone(),
            ticket: args.ticket,
            kinds: args.kind.clone(),
        })
    }

    /// Whether `n` is shown. A `lagged` notice is about this watcher
    /// itself (it missed some): always shown.
    fn shows(&self, n: &Notice) -> bool {
        if n.kind == "lagged" {
            return true;
        }
        let agent = self
            .agent
            .as_ref()
            .is_none_or(|a| n.agent.as_ref() == Some(a));
        let ticket = self.ticket.is_none_or(|t| n.ticket == Some(t));
        let kind = self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|k| n.kind == *k || n.kind.starts_with(&format!("{k}_")));
        agent && ticket && kind
    }
}

/// How a watch connection ended.
enum Ended {
    /// The connection or the stream was lost: reconnect.
    Lost(String),
}

pub async fn run(cred: Option<PathBuf>, args: WatchArgs) -> Result<i32> {
    let filter = Filter::new(&args)?;
    // The first connection must work: a wrong credential or an unknown
    // agent is reported at once, as by any other command.
    let client = Client::connect(cred.as_deref()).await?;
    if let Some(agent) = &filter.agent {
        known_agent(&client, agent).await?;
    }
    let relay = client.credential.relay.clone();
    status(&format!(
        "watching alerts and tickets at relay {relay}{} (Ctrl-C to stop)",
        describe(&filter)
    ));
    let mut client = Some(client);
    let mut backoff = Duration::from_secs(1);
    loop {
        let current = match client.take() {
            Some(c) => c,
            None => match Client::connect(cred.as_deref()).await {
                Ok(c) => {
                    status(&format!(
                        "reconnected to relay {relay}; watching again (notices sent while away are not replayed: `firstline tickets` has them)"
                    ));
                    backoff = Duration::from_secs(1);
                    c
                }
                Err(e) => {
                    status(&format!(
                        "relay {relay} still unreachable ({}); next try in {} s",
                        firstline_net::cli::error_line(&e),
                        backoff.as_secs()
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let Ended::Lost(why) = follow(&current, &filter, args.json).await?;
        current.close().await;
        status(&format!("lost the relay ({why}); reconnecting…"));
    }
}

/// Print the notices of one connection until it is lost. A refusal (the
/// role may not watch) ends the command.
async fn follow(client: &Client, filter: &Filter, json: bool) -> Result<Ended> {
    let mut answers = match client.stream(Message::Watch {}).await {
        Ok(a) => a,
        Err(e) => return Ok(Ended::Lost(firstline_net::cli::error_line(&e))),
    };
    loop {
        match answers.next().await {
            Ok(Some(Message::Notice(n))) if filter.shows(&n) => {
                if json {
                    output::json(&n);
                } else {
                    output::line(line(&n));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(Ended::Lost("the relay ended the watch".into())),
            Err(e) if e.downcast_ref::<crate::client::RelayRefused>().is_some() => {
                return Err(classify(e, None))
            }
            Err(e) => return Ok(Ended::Lost(firstline_net::cli::error_line(&e))),
        }
    }
}

/// One notice, one line: `2026-11-29T19:06:33Z  ticket_result   #12 …`.
/// Every field is escaped whole: a notice is one line.
pub fn line(n: &Notice) -> String {
    format!(
        "{}  {:<23} {}",
        printable(&time(&n.at)),
        printable(&n.kind),
        printable(&n.text)
    )
}

/// RFC 3339 times to the second, in UTC, whatever precision they came
/// with: agents stamp milliseconds, the relay seconds.
fn time(at: &str) -> String {
    let bytes = at.as_bytes();
    let whole = at.len() >= 20
        && bytes.get(10) == Some(&b'T')
        && bytes.get(19).is_some_and(|b| *b == b'.' || *b == b'Z');
    if whole && at.ends_with('Z') {
        format!("{}Z", &at[..19])
    } else {
        at.to_string()
    }
}

/// ` (agent pc1, ticket #3, kinds alert)` for the filters given.
fn describe(f: &Filter) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &f.agent {
        parts.push(format!("agent {a}"));
    }
    if let Some(t) = f.ticket {
        parts.push(format!("ticket #{t}"));
    }
    if !f.kinds.is_empty() {
        parts.push(format!("kind {}", f.kinds.join("|")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" (only {})", parts.join(", "))
    }
}

/// A line about the watch itself, on stderr: stdout has only notices.
fn status(text: &str) {
    eprintln!("watch: {}", firstline_net::cli::terminal_safe(text));
}

/// `Ok` when `agent` is enrolled; a usage error naming the agents if not.
async fn known_agent(client: &Client, agent: &str) -> Result<()> {
    let agents = client.agents().await?;
    if agents.iter().any(|a| a.name == agent) {
        return Ok(());
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    Err(UsageError(format!(
        "--agent {agent}: no agent of that name is enrolled (there are: {}; see `firstline agents`)",
        names.join(", ")
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: &str, agent: Option<&str>, ticket: Option<u64>) -> Notice {
        Notice {
            at: "2026-11-29T19:06:33.271Z".into(),
            kind: kind.into(),
            agent: agent.map(str::to_string),
            ticket,
            text: "#3 OK disk /: 40% used".into(),
        }
    }

    fn args(agent: Option<&str>, ticket: Option<u64>, kinds: &[&str]) -> WatchArgs {
        WatchArgs {
            agent: agent.map(str::to_string),
            ticket,
            kind: kinds.iter().map(|k| k.to_string()).collect(),
            json: false,
        }
    }

    #[test]
    fn filters() {
        let f = Filter::new(&args(Some("pc1"), None, &["alert"])).unwrap();
        assert!(f.shows(&notice("alert_incident_opened", Some("pc1"), None)));
        assert!(!f.shows(&notice("alert_incident_opened", Some("pc2"), None)));
        assert!(!f.shows(&notice("ticket_result", Some("pc1"), Some(3))));
        assert!(f.shows(&notice("lagged", None, None)));
        let f = Filter::new(&args(None, Some(3), &["ticket_result"])).unwrap();
        assert!(f.shows(&notice("ticket_result", Some("pc1"), Some(3))));
        assert!(!f.shows(&notice("ticket_result", Some("pc1"), Some(4))));
        assert!(!f.shows(&notice("ticket_comment", Some("pc1"), Some(3))));
        let bad = Filter::new(&args(None, None, &["alerts"])).err().unwrap();
        assert!(bad.to_string().contains("kinds: alert, ticket"), "{bad}");
        assert_eq!(ticket_number("#12"), Ok(12));
    }

    #[test]
    fn one_line_one_time_format() {
        let l = line(&notice("ticket_result", Some("pc1"), Some(3)));
        assert_eq!(
            l,
            "2026-11-29T19:06:33Z  ticket_result           #3 OK disk /: 40% used"
        );
        assert_eq!(time("2026-11-29T19:06:33Z"), "2026-11-29T19:06:33Z");
        assert_eq!(time("soon"), "soon");
        let mut n = notice("alert_result", None, None);
        n.text = "two\nlines".into();
        assert!(!line(&n).contains('\n'));
    }
}
