//! `firstline queue`: actions queued for machines that were offline
//! (`run|fix|runbook … --queue-for DUR`), which the relay delivers when
//! each machine reconnects, unless the time is up first. `firstline queue
//! [--all] [--json]` lists them; `firstline queue cancel ID` cancels one
//! still pending. What came from the wire is printed escaped.

use crate::client::{classify, Client};
use crate::output;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use firstline_net::cli::UsageError;
use firstline_proto::action::{QueueState, QueuedAction};
use firstline_proto::text::printable;
use firstline_proto::Message;
use std::path::PathBuf;

/// The longest `--queue-for` the relay accepts: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: Option<QueueCommand>,
    /// Also those delivered (with how they ended), expired or cancelled,
    /// newest first after the pending ones.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Cancel a pending queued action: `firstline queue cancel 12` (technician).
    Cancel {
        /// Its id, from `firstline queue` (`12` or `#12`).
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// `--queue-for DUR` (`30m`, `2h`, `3d`, `1w`): whole seconds, at least
/// one, at most 30 days.
pub fn ttl(value: Option<String>) -> Result<u64> {
    let Some(text) = value else {
        return Err(UsageError("--queue-for needs a duration: 2h, 3d".into()).into());
    };
    let bad = |why: &str| -> anyhow::Error {
        UsageError(format!("--queue-for {}: {why}", printable(&text))).into()
    };
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| bad("not a duration (write 30m, 2h or 3d)"))?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return Err(bad("must be at least 1s"));
    }
    if secs > MAX_TTL_SECS {
        return Err(bad(
            "at most 30d (the relay keeps queued actions 30 days at most)",
        ));
    }
    Ok(secs)
}

/// What `run|fix|runbook --queue-for` prints when the machine is offline.
pub fn queued_line(q: &QueuedAction) -> String {
    printable(&format!(
        "queued as #{} for {} until {}; `firstline queue` shows it",
        q.id, q.agent, q.expires_at
    ))
    .into_owned()
}

pub async fn run(cred: Option<PathBuf>, args: QueueArgs) -> Result<i32> {
    match args.command {
        None => list(cred, args.all, args.json).await,
        Some(QueueCommand::Cancel { id, json }) => cancel(cred, &id, json || args.json).await,
    }
}

async fn list(cred: Option<PathBuf>, all: bool, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(Message::ListQueue { all }).await;
    client.close().await;
    let mut actions = Vec::new();
    for part in parts.map_err(|e| classify(e, Some("firstline queue")))? {
        match part {
            Message::QueuedActions { actions: a } => actions.extend(a),
            other => bail!("unexpected answer from the relay: {}", other.kind()),
        }
    }
    if json {
        output::json(&actions);
        return Ok(0);
    }
    if actions.is_empty() {
        output::line(if all {
            "no queued actions"
        } else {
            "no queued actions pending (`firstline queue --all` shows the others)"
        });
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = actions.iter().map(row).collect();
    output::table(
        &[
            "ID",
            "AGENT",
            "ACTION",
            "STATE",
            "QUEUED BY",
            "EXPIRES",
            "OUTCOME",
        ],
        &rows,
    );
    Ok(0)
}

fn row(q: &QueuedAction) -> Vec<String> {
    let mut action = q.action.describe();
    if let Some(t) = q.ticket {
        action.push_str(&format!(" (ticket #{t})"));
    }
    let outcome = match (&q.outcome, q.state) {
        (Some(o), _) => o.clone(),
        (None, QueueState::Delivered) => "(running)".into(),
        (None, _) => "-".into(),
    };
    vec![
        format!("#{}", q.id),
        q.agent.clone(),
        action,
        q.state.to_string(),
        q.operator.clone(),
        q.expires_at.clone(),
        outcome,
    ]
}

async fn cancel(cred: Option<PathBuf>, id: &str, json: bool) -> Result<i32> {
    let digits = id.trim().trim_start_matches('#');
    let id: u64 = match digits.parse() {
        Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            let why = format!(
                "`{}` is not a queued action's id: write 12 or #12",
                printable(id)
            );
            return Err(UsageError(why).into());
        }
    };
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(Message::QueueCancel { id }).await;
    client.close().await;
    let q = match answer.map_err(|e| classify(e, Some("firstline queue cancel")))? {
        Message::Queued(q) => q,
        other => bail!("unexpected answer from the relay: {}", other.kind()),
    };
    if json {
        output::json(&q);
    } else {
        output::line(printable(&format!(
            "cancelled #{}: {} for {} (queued by {})",
            q.id,
            q.action.describe(),
            q.agent,
            q.operator
        )));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let t = |s: &str| ttl(Some(s.into()));
        assert_eq!(t("2h").unwrap(), 7200);
        assert_eq!(t("3d").unwrap(), 3 * 86_400);
        assert_eq!(t("1500ms").unwrap(), 2, "rounded up");
        assert!(t("0s").is_err());
        assert!(t("31d").is_err());
        assert!(t("soon").is_err());
        assert!(ttl(None).is_err());
    }
}
