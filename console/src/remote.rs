//! `firstline run`, `fix`, `runbook`, `runbooks`, `checks`: requests
//! executed on an agent through the relay, with progress and results
//! streamed as they arrive. Console flags (`--json`, `--ticket N`,
//! `--dry-run`, `--queue-for DUR`, `--help`) may sit anywhere among the
//! check's or fix's own arguments.
//!
//! `--help` after a check or a fix asks the agent for that check's or
//! fix's own help (its clap definition answers, as it does locally);
//! `--help` after a runbook shows its parameters from the agent's list.

use crate::client::{self, classify, Client, RelayRefused};
use crate::output;
use anyhow::{bail, Result};
use firstline_net::cli::{is_help, UsageError};
use firstline_proto::message::CheckInfo;
use firstline_proto::runbook::{Verdict, VerdictKind};
use firstline_proto::text::printable;
use firstline_proto::{CheckResult, ErrorCode, Message, RunbookInfo, Status};
use std::path::PathBuf;

/// Console flags mixed into trailing arguments.
#[derive(Debug, Default)]
pub struct Flags {
    pub json: bool,
    pub ticket: Option<u64>,
    pub dry_run: bool,
    /// `--help` or `-h`: the agent's help for the check or fix.
    pub help: bool,
    /// `--select SEL` and `--max-in-flight N`: many machines ([`crate::bulk`]).
    pub select: Option<String>,
    pub max_in_flight: Option<u32>,
    /// `--queue-for DUR`: offline machines get it when they reconnect
    /// within DUR, in seconds ([`crate::queue`]).
    pub queue_for: Option<u64>,
}

/// Take the console's flags out of `args`, leaving the rest in order.
pub fn take_flags(args: &mut Vec<String>) -> Result<Flags> {
    let mut flags = Flags::default();
    let mut rest = Vec::with_capacity(args.len());
    let mut it = std::mem::take(args).into_iter();
    let number = |n: &str| -> Result<u64> {
        n.trim_start_matches('#').parse().map_err(|_| {
            UsageError(format!(
                "--ticket {n}: not a ticket number (write 12 or #12)"
            ))
            .into()
        })
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => flags.json = true,
            "--dry-run" => flags.dry_run = true,
            "--help" | "-h" => flags.help = true,
            "--ticket" => {
                let n = it
                    .next()
                    .ok_or_else(|| UsageError("--ticket needs a ticket number".into()))?;
                flags.ticket = Some(number(&n)?);
            }
            "--queue-for" => flags.queue_for = Some(crate::queue::ttl(it.next())?),
            _ if a.starts_with("--queue-for=") => {
                flags.queue_for = Some(crate::queue::ttl(Some(a[12..].to_string()))?)
            }
            "--select" => flags.select = Some(crate::bulk::selector(it.next())?),
            "--max-in-flight" => flags.max_in_flight = Some(crate::bulk::in_flight(it.next())?),
            _ if a.starts_with("--select=") => flags.select = Some(a[9..].to_string()),
            _ if a.starts_with("--max-in-flight=") => {
                flags.max_in_flight = Some(crate::bulk::in_flight(Some(a[16..].to_string()))?)
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
    /// Queued for the offline machine instead (`--queue-for`).
    pub queued: Option<u64>,
}

impl Outcome {
    /// Exit code: 0 when every result is ok (or the runbook resolved).
    pub fn exit_code(&self) -> i32 {
        if self.queued.is_some() {
            return 0;
        }
        let ok = match &self.verdict {
            Some(v) => matches!(v.verdict, VerdictKind::Resolved | VerdictKind::DryRun),
            None => !self.results.is_empty() && self.results.iter().all(|r| r.status == Status::Ok),
        };
        if ok {
            0
        } else {
            1
        }
    }
}

/// Send `request` for `agent` and print what streams back: results as
/// lines (their status coloured on a terminal) or, with `json`, one JSON
/// object per result naming its agent, and the verdict last.
pub async fn stream(client: &Client, request: Message, agent: &str, json: bool) -> Result<Outcome> {
    let mut answers = client.stream(request).await?;
    let mut out = Outcome::default();
    while let Some(msg) = answers.next().await? {
        match msg {
            Message::Progress { text } if !json => {
                output::line(format!("  … {}", printable(&text)))
            }
            Message::Result { result } => {
                if json {
                    output::json(&firstline_net::cli::result_json(agent, &result))
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
            Message::Queued(q) => {
                if json {
                    output::json(&q);
                } else {
                    output::line(crate::queue::queued_line(&q));
                }
                out.queued = Some(q.id);
            }
            Message::Done {} => break,
            _ => {}
        }
    }
    Ok(out)
}

/// What to say after a refusal, to lead to the valid names or arguments.
enum Hint {
    /// `firstline checks AGENT` lists the checks.
    Checks,
    /// `firstline runbook AGENT NAME --help` shows the runbook's
    /// parameters (`firstline runbooks AGENT` when the name is wrong).
    Runbook(String),
    None,
}

async fn once(
    cred: Option<PathBuf>,
    request: Message,
    agent: &str,
    json: bool,
    command: &str,
    hint: Hint,
) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let outcome = stream(&client, request, agent, json).await;
    client.close().await;
    match outcome {
        Ok(o) => Ok(o.exit_code()),
        Err(e) => Err(explain(e, agent, command, hint)),
    }
}

/// A refusal on one line, as a usage error when it is one, with the
/// command that lists what is valid.
fn explain(e: anyhow::Error, agent: &str, command: &str, hint: Hint) -> anyhow::Error {
    let code = e.downcast_ref::<RelayRefused>().map(|r| r.code);
    let e = classify(e, Some(command));
    let extra = match (code, hint) {
        (Some(ErrorCode::UnknownCheck), Hint::Checks) => {
            format!("`firstline checks {agent}` lists them with their arguments")
        }
        (Some(ErrorCode::BadRequest), Hint::Runbook(name)) => {
            let wrong_name = e.to_string().contains(&format!("no runbook `{name}`"));
            if wrong_name {
                format!("`firstline runbooks {agent}` lists them")
            } else {
                format!("`firstline runbook {agent} {name} --help` shows its parameters")
            }
        }
        _ => return e,
    };
    match e.downcast_ref::<UsageError>() {
        Some(u) => UsageError(format!("{}; {extra}", u.0)).into(),
        None => e,
    }
}

/// Ask the agent for a check's or fix's help: its clap definition answers
/// with the help text as a usage error (`bad_request`), which is what was
/// asked for here: printed on stdout, with the console's command in its
/// usage line, exit 0.
async fn agent_help(
    cred: Option<PathBuf>,
    request: Message,
    agent: &str,
    command: &str,
) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let outcome = stream(&client, request, agent, false).await;
    client.close().await;
    let e = match outcome {
        Ok(o) => return Ok(o.exit_code()),
        Err(e) => e,
    };
    if let Some(r) = e.downcast_ref::<RelayRefused>() {
        let (_, text) = client::split_agent(&r.message);
        if r.code == ErrorCode::BadRequest && is_help(text) {
            output::line(help_for(text, command));
            return Ok(0);
        }
    }
    Err(explain(e, agent, command, Hint::Checks))
}

/// An agent's help text with its `Usage: disk` made `Usage: firstline run
/// pc1 disk` (escaped: it came from the wire).
fn help_for(text: &str, command: &str) -> String {
    let text = firstline_net::cli::terminal_safe(text.trim_end());
    match text.find("Usage: ") {
        Some(at) => {
            let rest = &text[at + "Usage: ".len()..];
            let after_name = rest.find([' ', '\n']).unwrap_or(rest.len());
            format!("{}Usage: {command}{}", &text[..at], &rest[after_name..])
        }
        None => text,
    }
}

pub async fn run(
    cred: Option<PathBuf>,
    agent: String,
    check: String,
    mut args: Vec<String>,
    help: bool,
) -> Result<i32> {
    let f = take_flags(&mut args)?;
    let command = format!("firstline run {agent} {check}");
    if help || f.help {
        let request = Message::Run {
            agent: agent.clone(),
            check,
            args: vec!["--help".into()],
            ticket: None,
            queue_for_secs: None,
        };
        return agent_help(cred, request, &agent, &command).await;
    }
    if f.dry_run {
        return Err(UsageError(
            "--dry-run is for fixes and runbooks; checks change nothing".into(),
        )
        .into());
    }
    let request = Message::Run {
        agent: agent.clone(),
        check,
        args,
        ticket: f.ticket,
        queue_for_secs: f.queue_for,
    };
    once(cred, request, &agent, f.json, &command, Hint::Checks).await
}

pub async fn fix(
    cred: Option<PathBuf>,
    agent: String,
    action: String,
    mut args: Vec<String>,
    help: bool,
) -> Result<i32> {
    let f = take_flags(&mut args)?;
    let command = format!("firstline fix {agent} {action}");
    if help || f.help {
        let request = Message::Fix {
            agent: agent.clone(),
            action,
            args: vec!["--help".into()],
            dry_run: true,
            ticket: None,
            queue_for_secs: None,
        };
        return agent_help(cred, request, &agent, &command).await;
    }
    let request = Message::Fix {
        agent: agent.clone(),
        action,
        args,
        dry_run: f.dry_run,
        ticket: f.ticket,
        queue_for_secs: f.queue_for,
    };
    once(cred, request, &agent, f.json, &command, Hint::None).await
}

pub async fn runbook(
    cred: Option<PathBuf>,
    agent: String,
    name: String,
    mut params: Vec<String>,
    help: bool,
) -> Result<i32> {
    let f = take_flags(&mut params)?;
    let command = format!("firstline runbook {agent} {name}");
    if help || f.help {
        return runbook_help(cred, &agent, &name).await;
    }
    let request = Message::Runbook {
        agent: agent.clone(),
        name: name.clone(),
        params,
        dry_run: f.dry_run,
        ticket: f.ticket,
        queue_for_secs: f.queue_for,
    };
    once(cred, request, &agent, f.json, &command, Hint::Runbook(name)).await
}

/// The runbooks of `agent`, from the agent.
async fn list_runbooks(
    cred: Option<PathBuf>,
    agent: &str,
) -> Result<(Vec<RunbookInfo>, Vec<String>)> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client
        .call(Message::ListRunbooks {
            agent: agent.to_string(),
        })
        .await;
    client.close().await;
    match answer {
        Ok(Message::Runbooks { runbooks, invalid }) => Ok((runbooks, invalid)),
        Ok(other) => bail!("unexpected answer from the relay: {}", other.kind()),
        Err(e) => Err(classify(e, None)),
    }
}

/// `runbook AGENT NAME --help`: what it does and its parameters.
async fn runbook_help(cred: Option<PathBuf>, agent: &str, name: &str) -> Result<i32> {
    let (runbooks, _) = list_runbooks(cred, agent).await?;
    let Some(r) = runbooks.iter().find(|r| r.name == name) else {
        let names: Vec<&str> = runbooks.iter().map(|r| r.name.as_str()).collect();
        return Err(UsageError(format!(
            "agent `{agent}` has no runbook `{name}` (it has: {})",
            names.join(", ")
        ))
        .into());
    };
    output::line(format!(
        "{} — {}",
        printable(&r.name),
        printable(&r.description)
    ));
    output::line(format!(
        "\nUsage: firstline runbook {agent} {} [KEY=VALUE]... [--dry-run] [--ticket N] [--json]",
        printable(&r.name)
    ));
    if !r.params.is_empty() {
        output::line("\nParameters:");
    }
    for p in params(r) {
        let default = match &p.default {
            Some(d) => format!(" (default `{}`)", printable(d)),
            None => " (required)".into(),
        };
        output::line(format!(
            "  {}=…  {}{default}",
            printable(&p.name),
            printable(&p.help)
        ));
    }
    Ok(0)
}

/// One parameter of a runbook, typed (the wire has `NAME=DEFAULT` or
/// `NAME`, and its help).
#[derive(serde::Serialize)]
struct Param {
    name: String,
    default: Option<String>,
    required: bool,
    help: String,
}

fn params(r: &RunbookInfo) -> Vec<Param> {
    r.params
        .iter()
        .map(|(p, help)| {
            let (name, default) = match p.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (p.clone(), None),
            };
            Param {
                name,
                required: default.is_none(),
                default,
                help: help.clone(),
            }
        })
        .collect()
}

/// `runbooks AGENT`: a table, or with `--json` an array of `{name,
/// description, source, params: [{name, default, required, help}]}`.
/// Runbook files the agent rejected follow the table (`invalid runbook:
/// …`), or go to stderr beside the JSON.
pub async fn runbooks(cred: Option<PathBuf>, agent: String, json: bool) -> Result<i32> {
    let (runbooks, invalid) = list_runbooks(cred, &agent).await?;
    if json {
        let list: Vec<serde_json::Value> = runbooks
            .iter()
            .map(|r| {
                serde_json::json!({"name": r.name, "description": r.description,
                    "source": r.source, "params": params(r)})
            })
            .collect();
        output::json(&list);
        for bad in &invalid {
            eprintln!(
                "warning: agent `{agent}` could not load a runbook: {}",
                printable(bad)
            );
        }
    } else {
        let rows: Vec<Vec<String>> = runbooks
            .iter()
            .map(|r| {
                let names: Vec<String> = params(r).into_iter().map(|p| p.name).collect();
                vec![
                    r.name.clone(),
                    r.source.clone(),
                    names.join(" "),
                    r.description.clone(),
                ]
            })
            .collect();
        output::table(&["NAME", "SOURCE", "PARAMS", "DESCRIPTION"], &rows);
        for bad in &invalid {
            output::line(format!("invalid runbook: {}", printable(bad)));
        }
    }
    Ok(0)
}

/// `checks [AGENT]`: the checks an agent offers (asked of the agent), or
/// with no AGENT those of this console's version; their synopsis shows
/// every argument and its default (the thresholds).
pub async fn checks(cred: Option<PathBuf>, agent: Option<String>, json: bool) -> Result<i32> {
    let list = match &agent {
        None => firstline_agent::checks::catalog(),
        Some(agent) => agent_checks(cred, agent).await?,
    };
    if json {
        output::json(&list);
        return Ok(0);
    }
    for line in firstline_net::cli::check_list(&list) {
        output::line(line);
    }
    let agent = agent.as_deref().unwrap_or("AGENT");
    output::line(format!(
        "\nRun one: firstline run {agent} CHECK [ARGS...]; its help: firstline run {agent} CHECK --help"
    ));
    Ok(0)
}

/// The checks `agent` offers. A relay or agent too old to answer
/// `list_checks` is told apart from a refusal: then the checks of this
/// console's version are shown, saying so, once the agent is known.
async fn agent_checks(cred: Option<PathBuf>, agent: &str) -> Result<Vec<CheckInfo>> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client
        .call(Message::ListChecks {
            agent: agent.to_string(),
        })
        .await;
    let checks = match answer {
        Ok(Message::Checks { checks }) => Ok(checks),
        Ok(other) => Err(anyhow::anyhow!(
            "unexpected answer from the relay: {}",
            other.kind()
        )),
        Err(e) if not_understood(&e) => known_agent(&client, agent)
            .await
            .map(|()| {
                eprintln!(
                    "note: this relay or agent cannot list an agent's checks yet; these are the checks of firstline {}",
                    env!("CARGO_PKG_VERSION")
                );
                firstline_agent::checks::catalog()
            }),
        Err(e) => Err(classify(e, None)),
    };
    client.close().await;
    checks
}

/// Whether a refusal says the request itself is not known (an older relay
/// or agent), rather than that it is not allowed.
fn not_understood(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RelayRefused>().is_some_and(|r| {
        matches!(
            r.code,
            ErrorCode::BadRequest | ErrorCode::Malformed | ErrorCode::Other
        ) && (r.message.contains("list_checks")
            || r.message.contains("unsupported request")
            || r.message.contains("do not serve"))
    })
}

/// `Ok` when `agent` is enrolled; a usage error naming the agents if not.
async fn known_agent(client: &Client, agent: &str) -> Result<()> {
    let agents = client.agents().await?;
    if agents.iter().any(|a| a.name == agent) {
        return Ok(());
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    Err(UsageError(format!(
        "no agent named `{agent}` is enrolled at this relay (there are: {}; see `firstline agents`)",
        names.join(", ")
    ))
    .into())
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
        assert!(f.json && f.dry_run && !f.help);
        assert_eq!(f.ticket, Some(7));
        assert_eq!(args, ["/var", "--warn", "80"]);
        let mut bad: Vec<String> = vec!["--ticket".into(), "x".into()];
        assert!(take_flags(&mut bad).is_err());
        let mut hashed: Vec<String> = vec!["--ticket=#12".into(), "-h".into()];
        let f = take_flags(&mut hashed).unwrap();
        assert_eq!(f.ticket, Some(12));
        assert!(f.help && hashed.is_empty());
    }

    #[test]
    fn agent_help_names_the_console_command() {
        let text = "Disk space\n\nUsage: disk [OPTIONS] [PATH]\n\nOptions:\n  --warn <WARN>\n";
        let shown = help_for(text, "firstline run pc1 disk");
        assert!(
            shown.contains("Usage: firstline run pc1 disk [OPTIONS] [PATH]"),
            "{shown}"
        );
        assert!(shown.starts_with("Disk space"));
    }
}
