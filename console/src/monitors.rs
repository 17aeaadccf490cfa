//! `firstline monitors set|remove|show`: central monitor sets — the
//! `[[monitor]]` tables of a file, defined once on the relay for the
//! agents a selector picks, which run them beside their own.
//!
//! `set` checks the file here first, with the agent's own rules (TOML, the
//! keys of each table, `every`, the check and its arguments: errors as
//! `FILE:LINE:COL`, exit 2) so a typo never reaches the relay; the relay
//! checks it again, and each agent checks it against its own `[policy]`
//! and says which monitors it refused and why — `show` lists that, per
//! agent. Everything printed from the wire is escaped for the terminal.

use crate::client::Client;
use crate::output;
use anyhow::{bail, Context, Result};
use firstline_net::cli::UsageError;
use firstline_proto::central::{self, AgentMonitorReport, MonitorSetInfo, MonitorState};
use firstline_proto::text::printable;
use firstline_proto::Message;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum MonitorsCommand {
    /// Define a monitor set, or replace the one of its name: `firstline
    /// monitors set --select tag=floor2 disks.toml` — the `[[monitor]]`
    /// tables of the file (as in agent.toml) for every agent the selector
    /// picks (keys name, tag, os; `name=*` for all). Admins.
    Set {
        /// The agents that run it: KEY=VALUE,… with keys name (glob), tag,
        /// os (glob).
        #[arg(long, value_name = "SEL")]
        select: String,
        /// The set's name (default: the file's name without `.toml`).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// A TOML file of `[[monitor]]` tables.
        file: PathBuf,
        /// Print the set as stored, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a monitor set: its agents stop its monitors. Admins.
    Remove {
        name: String,
        /// Print the set removed, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The sets, and per agent which of their monitors run and which its
    /// policy refused, and why.
    Show {
        /// `{"sets": […], "agents": […]}` on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cred: Option<PathBuf>, cmd: MonitorsCommand) -> Result<i32> {
    match cmd {
        MonitorsCommand::Set {
            select,
            name,
            file,
            json,
        } => {
            let (name, select, toml) = read_set(&file, name, &select)?;
            let msg = Message::MonitorsSet { name, select, toml };
            let set = one_set(cred, msg).await?;
            if json {
                output::json(&set);
            } else {
                output::line(format!(
                    "monitor set `{}` for {}: {} monitors ({}); sent to the agents it selects — `firstline monitors show` tells which run",
                    printable(&set.name),
                    printable(&set.select),
                    set.monitors.len(),
                    printable(&ids(&set))
                ));
            }
            Ok(0)
        }
        MonitorsCommand::Remove { name, json } => {
            let set = one_set(cred, Message::MonitorsRemove { name }).await?;
            if json {
                output::json(&set);
            } else {
                output::line(format!(
                    "monitor set `{}` removed; its agents stop its monitors",
                    printable(&set.name)
                ));
            }
            Ok(0)
        }
        MonitorsCommand::Show { json } => show(cred, json).await,
    }
}

/// The set's name, selector and text, checked as the agents will check
/// them (but for their policies): a usage error (exit 2) naming the file
/// and the line otherwise.
fn read_set(file: &Path, name: Option<String>, select: &str) -> Result<(String, String, String)> {
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    central::check_set_name(&name).map_err(UsageError)?;
    let select = central::set_selector(select)
        .map_err(|e| UsageError(format!("--select: {e}")))?
        .to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
    let shown = file.display().to_string();
    firstline_net::monitors::parse_with(&shown, &text, firstline_agent::config::check_monitor)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok((name, select, text))
}

fn ids(set: &MonitorSetInfo) -> String {
    set.monitors
        .iter()
        .map(|m| m.id())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn one_set(cred: Option<PathBuf>, msg: Message) -> Result<MonitorSetInfo> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(msg).await;
    client.close().await;
    match answer? {
        Message::MonitorSet(set) => Ok(set),
        other => bail!("unexpected answer: {}", other.kind()),
    }
}

async fn show(cred: Option<PathBuf>, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(Message::MonitorsShow {}).await;
    client.close().await;
    let (mut sets, mut agents) = (Vec::new(), Vec::new());
    for part in parts.context("monitors show")? {
        match part {
            Message::MonitorSets { sets: s } => sets.extend(s),
            Message::AgentMonitors { agents: a } => agents.extend(a),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    if json {
        output::json(&serde_json::json!({ "sets": sets, "agents": agents }));
        return Ok(0);
    }
    if sets.is_empty() {
        output::line(
            "no monitor sets (`firstline monitors set --select SEL FILE.toml` defines one)",
        );
    } else {
        let rows: Vec<Vec<String>> = sets
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.select.clone(),
                    format!("{} by {}", s.updated_at, s.updated_by),
                    ids(s),
                ]
            })
            .collect();
        output::table(&["SET", "SELECT", "UPDATED", "MONITORS"], &rows);
        for s in &sets {
            if let Some(why) = &s.suspended {
                output::line(format!(
                    "set {} is suspended (sent to no agent): {}",
                    s.name,
                    printable(why)
                ));
            }
        }
    }
    if !agents.is_empty() {
        output::line("");
        output::table(
            &["AGENT", "ONLINE", "SET", "MONITOR", "STATE", "WHY"],
            &agent_rows(&agents),
        );
    }
    Ok(0)
}

/// One row per monitor an agent reported; one `pending` row for an agent
/// whose last report is not of the sets that select it now.
fn agent_rows(agents: &[AgentMonitorReport]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for a in agents {
        let online = if a.online { "yes" } else { "no" }.to_string();
        if !a.current {
            let why = match &a.reported_at {
                Some(at) => format!("its last report ({at}) is of other sets: it has not answered since they changed"),
                None => "it has not reported yet (offline, or an agent too old for central monitors)".into(),
            };
            rows.push(vec![
                a.agent.clone(),
                online,
                a.sets.join(","),
                "-".into(),
                "pending".into(),
                why,
            ]);
            continue;
        }
        for m in &a.monitors {
            rows.push(vec![
                a.agent.clone(),
                online.clone(),
                m.set.clone(),
                m.monitor.clone(),
                m.state.as_str().into(),
                match m.state {
                    MonitorState::Active => String::new(),
                    _ => m.reason.clone().unwrap_or_default(),
                },
            ]);
        }
    }
    rows
}
