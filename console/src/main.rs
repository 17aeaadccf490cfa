//! `firstline`: the technician's console.

mod client;
mod demo;
mod output;
mod tickets;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use client::{credential_path, Client};
use firstline_net::cli::{exit_with, UsageError};
use firstline_net::credential::{write_private, Credential};
use firstline_proto::{CheckResult, Message, Status};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "firstline",
    version,
    about = "firstline console: run checks on any agent through the relay, follow tickets"
)]
struct Cli {
    /// Use this credential file instead of the logged-in one.
    #[arg(long, global = true)]
    credential: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a credential from `firstline-relay operator add` for the next commands.
    Login,
    /// List agents: name, online, last seen, version, OS.
    Agents {
        #[arg(long)]
        json: bool,
    },
    /// Run a check on an agent and stream its result: `firstline run pc42 disk /var`.
    #[command(disable_help_flag = true)]
    Run {
        agent: String,
        check: String,
        /// The check's own arguments; `--json` and `--ticket N` are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List tickets.
    Tickets {
        /// open, in_progress, resolved or closed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Work on one ticket.
    #[command(subcommand)]
    Ticket(tickets::TicketCommand),
    /// Follow alerts and ticket changes live.
    Watch {
        #[arg(long)]
        json: bool,
    },
    /// A first run: embedded relay and agent on loopback, real enrollment, the checks on this machine.
    Demo {
        /// Keep the demo's folder (relay, agent, credential) instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_with(e),
    }
}

fn run(cli: Cli) -> Result<i32> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let cred = cli.credential.clone();
    match cli.command {
        Command::Login => login(cred),
        Command::Agents { json } => rt.block_on(agents(cred, json)),
        Command::Run { agent, check, args } => rt.block_on(run_check(cred, agent, check, args)),
        Command::Tickets {
            status,
            agent,
            json,
        } => rt.block_on(tickets::list(cred, status, agent, json)),
        Command::Ticket(cmd) => rt.block_on(tickets::command(cred, cmd)),
        Command::Watch { json } => rt.block_on(tickets::watch(cred, json)),
        Command::Demo { keep } => rt.block_on(demo::run(keep)),
    }
}

fn login(credential: Option<PathBuf>) -> Result<i32> {
    let Some(src) = credential else {
        return Err(UsageError("usage: firstline login --credential FILE".into()).into());
    };
    let cred = Credential::load(&src)?;
    cred.client_config()
        .map_err(|e| UsageError(format!("{}: not a usable credential: {e}", src.display())))?;
    let dest = credential_path();
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = std::fs::read(&src)?;
    write_private(&dest, &text).with_context(|| format!("cannot write {}", dest.display()))?;
    output::line(format!(
        "logged in as {} ({}) at relay {}; credential kept in {}",
        cred.name,
        cred.role,
        cred.relay,
        dest.display()
    ));
    Ok(0)
}

async fn agents(cred: Option<PathBuf>, json: bool) -> Result<i32> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(Message::ListAgents {}).await?;
    client.close().await;
    let Message::Agents { agents } = answer else {
        bail!("unexpected answer: {}", answer.kind());
    };
    if json {
        output::json(&agents);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                if a.revoked {
                    "revoked".into()
                } else if a.online {
                    "yes".into()
                } else {
                    "no".into()
                },
                a.last_seen.clone().unwrap_or_else(|| "never".into()),
                a.version.clone().unwrap_or_default(),
                a.os.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["NAME", "ONLINE", "LAST SEEN", "VERSION", "OS"], &rows);
    Ok(0)
}

/// Console flags mixed into a check's trailing arguments.
struct RunFlags {
    json: bool,
    ticket: Option<u64>,
}

fn take_run_flags(args: &mut Vec<String>) -> Result<RunFlags> {
    let mut flags = RunFlags {
        json: false,
        ticket: None,
    };
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.drain(..);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => flags.json = true,
            "--ticket" => {
                let n = it
                    .next()
                    .ok_or_else(|| UsageError("--ticket needs a ticket number".into()))?;
                flags.ticket = Some(
                    n.parse()
                        .map_err(|_| UsageError(format!("--ticket {n}: not a ticket number")))?,
                );
            }
            _ => match a.strip_prefix("--ticket=") {
                Some(n) => {
                    flags.ticket =
                        Some(n.parse().map_err(|_| {
                            UsageError(format!("--ticket {n}: not a ticket number"))
                        })?)
                }
                None => rest.push(a),
            },
        }
    }
    drop(it);
    *args = rest;
    Ok(flags)
}

async fn run_check(
    cred: Option<PathBuf>,
    agent: String,
    check: String,
    mut args: Vec<String>,
) -> Result<i32> {
    let flags = take_run_flags(&mut args)?;
    let client = Client::connect(cred.as_deref()).await?;
    let results = stream_check(&client, &agent, &check, args, flags.ticket, flags.json).await;
    client.close().await;
    let results = results?;
    let all_ok = !results.is_empty() && results.iter().all(|r| r.status == Status::Ok);
    Ok(if all_ok { 0 } else { 1 })
}

/// Run a check through the relay, printing progress and results as they
/// arrive.
pub async fn stream_check(
    client: &Client,
    agent: &str,
    check: &str,
    args: Vec<String>,
    ticket: Option<u64>,
    json: bool,
) -> Result<Vec<CheckResult>> {
    let mut answers = client
        .stream(Message::Run {
            agent: agent.into(),
            check: check.into(),
            args,
            ticket,
        })
        .await?;
    let mut results = Vec::new();
    while let Some(msg) = answers.next().await? {
        match msg {
            Message::Progress { text } if !json => output::line(format!("  … {text}")),
            Message::Result { result } => {
                if json {
                    output::json(&result)
                } else {
                    output::result(&result)
                }
                results.push(result);
            }
            Message::Done {} => break,
            _ => {}
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_are_taken_from_check_args() {
        let mut args: Vec<String> = ["/var", "--json", "--warn", "80", "--ticket", "7"]
            .map(String::from)
            .to_vec();
        let f = take_run_flags(&mut args).unwrap();
        assert!(f.json);
        assert_eq!(f.ticket, Some(7));
        assert_eq!(args, ["/var", "--warn", "80"]);
        let mut bad: Vec<String> = vec!["--ticket".into(), "x".into()];
        assert!(take_run_flags(&mut bad).is_err());
    }
}
