//! `firstline tickets`, `firstline ticket …` and `firstline watch`.

use crate::client::Client;
use crate::output;
use anyhow::{bail, Result};
use firstline_proto::text::printable;
use firstline_proto::{Message, Notice, TicketChange, TicketEntry, TicketSummary};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum TicketCommand {
    /// Open a ticket.
    New {
        title: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The ticket and its whole timeline.
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Add a comment.
    Comment { id: u64, text: String },
    /// Assign to an operator.
    Assign { id: u64, operator: String },
    /// Mark as being worked on (open → in_progress).
    Start { id: u64 },
    /// Resolve, with an optional comment.
    Resolve {
        id: u64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Close for good.
    Close { id: u64 },
}

pub async fn list(
    cred: Option<PathBuf>,
    status: Option<String>,
    agent: Option<String>,
    json: bool,
) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(Message::ListTickets { status, agent }).await;
    client.close().await;
    let mut tickets = Vec::new();
    for part in parts? {
        match part {
            Message::Tickets { tickets: t } => tickets.extend(t),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    if json {
        output::json(&tickets);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = tickets.iter().map(row).collect();
    output::table(
        &[
            "ID", "STATUS", "PRIORITY", "AGENT", "SOURCE", "ASSIGNEE", "TITLE",
        ],
        &rows,
    );
    Ok(0)
}

fn row(t: &TicketSummary) -> Vec<String> {
    vec![
        format!("#{}", t.id),
        t.status.clone(),
        t.priority.clone(),
        t.agent.clone().unwrap_or_default(),
        t.source.clone(),
        t.assignee.clone().unwrap_or_default(),
        t.title.clone(),
    ]
}

pub async fn command(cred: Option<PathBuf>, cmd: TicketCommand) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let (request, json) = match cmd {
        TicketCommand::New { title, agent, json } => (
            Message::TicketNew {
                title,
                agent,
                body: None,
            },
            json,
        ),
        TicketCommand::Show { id, json } => (Message::TicketShow { id }, json),
        TicketCommand::Comment { id, text } => (update(id, TicketChange::Comment { text }), false),
        TicketCommand::Assign { id, operator } => {
            (update(id, TicketChange::Assign { operator }), false)
        }
        TicketCommand::Start { id } => (update(id, TicketChange::Start {}), false),
        TicketCommand::Resolve { id, comment } => {
            (update(id, TicketChange::Resolve { comment }), false)
        }
        TicketCommand::Close { id } => (update(id, TicketChange::Close {}), false),
    };
    let answer = match request {
        Message::TicketShow { .. } => detail(client.parts(request).await),
        _ => client.call(request).await,
    };
    client.close().await;
    match answer? {
        Message::Ticket { ticket } if json => output::json(&ticket),
        Message::Ticket { ticket } => output::line(format!(
            "#{} [{}] {}",
            ticket.id,
            ticket.status,
            printable(&ticket.title)
        )),
        Message::TicketDetail { ticket, entries } if json => {
            output::json(&serde_json::json!({ "ticket": ticket, "entries": entries }))
        }
        Message::TicketDetail { ticket, entries } => show(&ticket, &entries),
        other => bail!("unexpected answer: {}", other.kind()),
    }
    Ok(0)
}

/// A ticket and its timeline, put back together from its parts.
fn detail(parts: Result<Vec<Message>>) -> Result<Message> {
    let mut parts = parts?.into_iter();
    let Some(Message::TicketDetail {
        ticket,
        mut entries,
    }) = parts.next()
    else {
        bail!("unexpected answer to `ticket show`");
    };
    for part in parts {
        match part {
            Message::TicketEntries { entries: e } => entries.extend(e),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    Ok(Message::TicketDetail { ticket, entries })
}

fn update(id: u64, change: TicketChange) -> Message {
    Message::TicketUpdate { id, change }
}

fn show(t: &TicketSummary, entries: &[TicketEntry]) {
    output::line(format!("#{} {}", t.id, printable(&t.title)));
    output::line(format!(
        "status {} · priority {} · source {} · agent {} · assignee {} · opened {}",
        t.status,
        t.priority,
        t.source,
        printable(t.agent.as_deref().unwrap_or("-")),
        printable(t.assignee.as_deref().unwrap_or("-")),
        t.created_at
    ));
    for e in entries {
        output::line(format!(
            "{}  {:<11} {:<12} {}",
            e.at,
            printable(&e.kind),
            printable(&e.author),
            printable(&summarize(&e.kind, &e.body))
        ));
    }
}

/// Results are stored as JSON; show their one-line summary.
fn summarize(kind: &str, body: &str) -> String {
    if kind == "result" || kind == "opened" {
        if let Ok(r) = serde_json::from_str::<firstline_proto::CheckResult>(body) {
            return format!("{} {} {}: {}", r.status, r.check, r.target, r.summary);
        }
    }
    if kind == "diagnostics" {
        return "diagnostic bundle (top processes, disks, route, DNS) — see --json".into();
    }
    body.to_string()
}

pub async fn watch(cred: Option<PathBuf>, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let mut answers = client.stream(Message::Watch {}).await?;
    if !json {
        output::line(format!(
            "watching alerts and tickets at {} (Ctrl-C to stop)",
            client.credential.relay
        ));
    }
    while let Some(msg) = answers.next().await? {
        if let Message::Notice(n) = msg {
            if json {
                output::json(&n);
            } else {
                print_notice(&n);
            }
        }
    }
    Ok(0)
}

fn print_notice(n: &Notice) {
    output::line(format!(
        "{}  {:<24} {}",
        printable(&n.at),
        printable(&n.kind),
        printable(&n.text)
    ));
}
