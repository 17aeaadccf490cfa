//! `firstline run`, `fix`, `runbook`, `runbooks`: requests executed on an
//! agent through the relay, with progress and results streamed as they
//! arrive. Console flags (`--json`, `--ticket N`, `--dry-run`) may sit
//! anywhere among the check's or fix's own arguments.

use crate::client::Client;
use crate::output;
use anyhow::{bail, Result};
use firstline_net::cli::UsageError;
use firstline_proto::runbook::{Verdict, VerdictKind};
use firstline_proto::text::printable;
use firstline_proto::{CheckResult, Message, Status};
use std::path::PathBuf;

/// Console flags mixed into trailing arguments.
#[derive(Debug, Default)]
pub struct Flags {
    pub json: bool,
    pub ticket: Option<u64>,
    pub dry_run: bool,
}

/// Take the console's flags out of `args`, leaving the rest in order.
pub fn take_flags(args: &mut Vec<String>) -> Result<Flags> {
    let mut flags = Flags::default();
    let mut rest = Vec::with_capacity(args.len());
    let mut it = std::mem::take(args).into_iter();
    let number = |n: &str| -> Result<u64> {
        n.parse()
            .map_err(|_| UsageError(format!("--ticket {n}: not a ticket number")).into())
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => flags.json = true,
            "--dry-run" => flags.dry_run = true,
            "--ticket" => {
                let n = it
                    .next()
                    .ok_or_else(|| UsageError("--ticket needs a ticket number".into()))?;
                flags.ticket = Some(number(&n)?);
            }
            _ => match a.strip_prefix("--ticket=") {
                Some(n) => flags.ticket = Some(number(n)?),
                None => rest.push(a),
            },
        }
    }
    *args = rest;
    Ok(flags)
}

/// What came back from an agent.
#[derive(Debug, Default)]
pub struct Outcome {
    pub results: Vec<CheckResult>,
    /// A runbook's verdict.
    pub verdict: Option<Verdict>,
}

impl Outcome {
    /// Exit code: 0 when every result is ok (or the runbook resolved).
    pub fn exit_code(&self) -> i32 {
        let ok = match &self.verdict {
            Some(v) => v.verdict == VerdictKind::Resolved,
            None => !self.results.is_empty() && self.results.iter().all(|r| r.status == Status::Ok),
        };
        if ok {
            0
        } else {
            1
        }
    }
}

/// Send `request` and print what streams back.
pub async fn stream(client: &Client, request: Message, json: bool) -> Result<Outcome> {
    let mut answers = client.stream(request).await?;
    let mut out = Outcome::default();
    while let Some(msg) = answers.next().await? {
        match msg {
            Message::Progress { text } if !json => {
                output::line(format!("  … {}", printable(&text)))
            }
            Message::Result { result } => {
                if json {
                    output::json(&result)
                } else {
                    output::result(&result)
                }
                out.results.push(result);
            }
            Message::Verdict(v) => {
                if json {
                    output::json(&v);
                } else {
                    for line in v.render() {
                        output::line(line);
                    }
                }
                out.verdict = Some(v);
            }
            Message::Done {} => break,
            _ => {}
        }
    }
    Ok(out)
}

async fn once(cred: Option<PathBuf>, request: Message, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let outcome = stream(&client, request, json).await;
    client.close().await;
    Ok(outcome?.exit_code())
}

pub async fn run(
    cred: Option<PathBuf>,
    agent: String,
    check: String,
    mut args: Vec<String>,
) -> Result<i32> {
    let f = take_flags(&mut args)?;
    if f.dry_run {
        return Err(UsageError(
            "--dry-run is for fixes and runbooks; checks change nothing".into(),
        )
        .into());
    }
    once(
        cred,
        Message::Run {
            agent,
            check,
            args,
            ticket: f.ticket,
        },
        f.json,
    )
    .await
}

pub async fn fix(
    cred: Option<PathBuf>,
    agent: String,
    action: String,
    mut args: Vec<String>,
) -> Result<i32> {
    let f = take_flags(&mut args)?;
    let request = Message::Fix {
        agent,
        action,
        args,
        dry_run: f.dry_run,
        ticket: f.ticket,
    };
    once(cred, request, f.json).await
}

pub async fn runbook(
    cred: Option<PathBuf>,
    agent: String,
    name: String,
    mut params: Vec<String>,
) -> Result<i32> {
    let f = take_flags(&mut params)?;
    let request = Message::Runbook {
        agent,
        name,
        params,
        dry_run: f.dry_run,
        ticket: f.ticket,
    };
    once(cred, request, f.json).await
}

pub async fn runbooks(cred: Option<PathBuf>, agent: String, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(Message::ListRunbooks { agent }).await;
    client.close().await;
    let Message::Runbooks { runbooks, invalid } = answer? else {
        bail!("unexpected answer from the relay");
    };
    if json {
        output::json(&serde_json::json!({"runbooks": runbooks, "invalid": invalid}));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = runbooks
        .iter()
        .map(|r| {
            let params: Vec<&str> = r.params.iter().map(|(p, _)| p.as_str()).collect();
            vec![
                r.name.clone(),
                r.source.clone(),
                params.join(" "),
                r.description.clone(),
            ]
        })
        .collect();
    output::table(&["NAME", "SOURCE", "PARAMS", "DESCRIPTION"], &rows);
    for bad in &invalid {
        output::line(format!("invalid runbook: {}", printable(bad)));
    }
    Ok(0)
}

pub async fn audit(
    cred: Option<PathBuf>,
    agent: Option<String>,
    limit: Option<u32>,
    json: bool,
) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(Message::ListAudit { agent, limit }).await;
    client.close().await;
    let mut entries = Vec::new();
    for part in parts? {
        match part {
            Message::Audit { entries: e } => entries.extend(e),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    if json {
        output::json(&entries);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.clone(),
                format!(
                    "{}{}",
                    e.who,
                    e.role
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                e.agent.clone().unwrap_or_default(),
                format!("{} {}", e.action, e.args).trim().to_string(),
                e.outcome.clone(),
            ]
        })
        .collect();
    output::table(&["ID", "AT", "WHO", "AGENT", "WHAT", "OUTCOME"], &rows);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_taken_from_trailing_args() {
        let mut args: Vec<String> = [
            "/var",
            "--json",
            "--warn",
            "80",
            "--ticket",
            "7",
            "--dry-run",
        ]
        .map(String::from)
        .to_vec();
        let f = take_flags(&mut args).unwrap();
        assert!(f.json && f.dry_run);
        assert_eq!(f.ticket, Some(7));
        assert_eq!(args, ["/var", "--warn", "80"]);
        let mut bad: Vec<String> = vec!["--ticket".into(), "x".into()];
        assert!(take_flags(&mut bad).is_err());
    }
}
