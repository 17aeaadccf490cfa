//! `firstline`: the technician's console.

mod client;
mod demo;
mod output;
mod remote;
mod tickets;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use client::{credential_path, Client};
use firstline_net::cli::{exit_with, UsageError};
use firstline_net::credential::{write_private, Credential};
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
    /// Run a fix on an agent: `firstline fix pc42 clean-temp /tmp --older-than 7d [--dry-run]`.
    #[command(disable_help_flag = true)]
    Fix {
        agent: String,
        /// flush-dns, restart-service, resume-printer, cancel-print-jobs, clean-temp, vacuum-journal, script.
        action: String,
        /// The fix's own arguments; `--dry-run`, `--json` and `--ticket N` are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a runbook on an agent: `firstline runbook pc42 cant-print uri=ipp://…`.
    #[command(disable_help_flag = true)]
    Runbook {
        agent: String,
        name: String,
        /// NAME=VALUE parameters; `--dry-run`, `--json` and `--ticket N` are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// The runbooks an agent has (shipped and its admin's).
    Runbooks {
        agent: String,
        #[arg(long)]
        json: bool,
    },
    /// Who did what, on which agent, with what outcome (technician or admin).
    Audit {
        #[arg(long)]
        agent: Option<String>,
        /// Only the last N entries.
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
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
        Command::Run { agent, check, args } => rt.block_on(remote::run(cred, agent, check, args)),
        Command::Fix {
            agent,
            action,
            args,
        } => rt.block_on(remote::fix(cred, agent, action, args)),
        Command::Runbook {
            agent,
            name,
            params,
        } => rt.block_on(remote::runbook(cred, agent, name, params)),
        Command::Runbooks { agent, json } => rt.block_on(remote::runbooks(cred, agent, json)),
        Command::Audit { agent, limit, json } => {
            rt.block_on(remote::audit(cred, agent, limit, json))
        }
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
    let agents = client.agents().await;
    client.close().await;
    let agents = agents?;
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
