//! `firstline`: the technician's console.

mod admin;
mod bulk;
mod client;
mod demo;
mod fleet;
mod kb;
mod monitors;
mod output;
mod queue;
mod remote;
mod report;
mod tickets;
mod watch;
mod web;

use anyhow::{Context, Result};
use bulk::Target;
use clap::{Parser, Subcommand};
use client::credential_path;
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
    #[arg(long, global = true, value_name = "FILE")]
    credential: Option<PathBuf>,
    /// Give up reaching the relay after this long (`3s`, `500ms`; default
    /// 3s, or $FIRSTLINE_CONNECT_TIMEOUT).
    #[arg(long, global = true, value_name = "DURATION")]
    connect_timeout: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a credential from `firstline-relay operator add` for the next commands.
    Login,
    /// Health at a glance: each agent's online, health, open incidents and
    /// tickets, last seen, tags, OS; then a summary line. `--select
    /// 'tag=floor2,os=debian*'` picks some.
    Agents(fleet::AgentsArgs),
    /// The checks an agent offers, with their arguments and thresholds
    /// (no AGENT: the checks of this console's version).
    Checks {
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a check on an agent and stream its result: `firstline run pc42 disk /var`;
    /// on many, paced: `firstline run --select tag=floor2 disk /var`.
    #[command(
        disable_help_flag = true,
        override_usage = "firstline run <AGENT> <CHECK> [ARGS]... [--ticket N] [--queue-for DUR] [--json]\n       firstline run --select SEL <CHECK> [ARGS]... [--max-in-flight N] [--ticket N] [--queue-for DUR] [--json]\n       firstline run <AGENT> <CHECK> --help"
    )]
    Run {
        /// The machine (none with --select).
        #[arg(required_unless_present_any = ["help", "select"])]
        agent: Option<String>,
        /// The check (`firstline checks AGENT` lists them).
        #[arg(required_unless_present_any = ["help", "select"], allow_hyphen_values = true)]
        check: Option<String>,
        /// The check's own arguments; `--json`, `--ticket N` and `--queue-for DUR` (offline: queue
        /// it for when the machine reconnects, up to 30d) are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Print help (after CHECK: the check's own help, from the agent).
        #[arg(short = 'h', long)]
        help: bool,
        #[command(flatten)]
        bulk: bulk::BulkArgs,
    },
    /// Run a fix on an agent: `firstline fix pc42 clean-temp /tmp --older-than 7d [--dry-run]`;
    /// on many, paced: `firstline fix --select tag=floor2 flush-dns`.
    #[command(
        disable_help_flag = true,
        override_usage = "firstline fix <AGENT> <ACTION> [ARGS]... [--dry-run] [--ticket N] [--queue-for DUR] [--json]\n       firstline fix --select SEL <ACTION> [ARGS]... [--max-in-flight N] [--dry-run] [--ticket N] [--queue-for DUR] [--json]\n       firstline fix <AGENT> <ACTION> --help"
    )]
    Fix {
        /// The machine (none with --select).
        #[arg(required_unless_present_any = ["help", "select"])]
        agent: Option<String>,
        /// flush-dns, restart-service, resume-printer, cancel-print-jobs, clean-temp, vacuum-journal, script.
        #[arg(required_unless_present_any = ["help", "select"], allow_hyphen_values = true)]
        action: Option<String>,
        /// The fix's own arguments; `--dry-run`, `--json` and `--ticket N` are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Print help (after ACTION: the fix's own help, from the agent).
        #[arg(short = 'h', long)]
        help: bool,
        #[command(flatten)]
        bulk: bulk::BulkArgs,
    },
    /// Run a runbook on an agent: `firstline runbook pc42 cant-print printer=ipp://…`;
    /// on many, paced: `firstline runbook --select tag=floor2 cant-print`.
    #[command(
        disable_help_flag = true,
        override_usage = "firstline runbook <AGENT> <NAME> [KEY=VALUE]... [--dry-run] [--ticket N] [--queue-for DUR] [--json]\n       firstline runbook --select SEL <NAME> [KEY=VALUE]... [--max-in-flight N] [--dry-run] [--ticket N] [--queue-for DUR] [--json]\n       firstline runbook <AGENT> <NAME> --help"
    )]
    Runbook {
        /// The machine (none with --select).
        #[arg(required_unless_present_any = ["help", "select"])]
        agent: Option<String>,
        /// The runbook (`firstline runbooks AGENT` lists them).
        #[arg(required_unless_present_any = ["help", "select"], allow_hyphen_values = true)]
        name: Option<String>,
        /// NAME=VALUE parameters; `--dry-run`, `--json` and `--ticket N` are the console's.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
        /// Print help (after NAME: the runbook's parameters, from the agent).
        #[arg(short = 'h', long)]
        help: bool,
        #[command(flatten)]
        bulk: bulk::BulkArgs,
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
    /// List tickets, filtered by status, agent, assignee, priority, text and age.
    Tickets(tickets::ListArgs),
    /// Work on one ticket: N is `12` or `#12`.
    #[command(subcommand)]
    Ticket(tickets::TicketCommand),
    /// Enrollment tokens: list, create, revoke (admins).
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Operators: list, change a role (admins).
    #[command(subcommand)]
    Operator(admin::OperatorCommand),
    /// Agents' enrollment records: list, remove, tag (admins).
    #[command(subcommand)]
    Agent(admin::AgentCommand),
    /// Actions queued for offline machines (`run|fix|runbook … --queue-for 2h`):
    /// pending ones (`--all`: delivered, expired, cancelled too); `queue cancel ID`.
    Queue(queue::QueueArgs),
    /// Central monitor sets: `[[monitor]]` tables defined on the relay for
    /// the agents a selector picks (`set`, `remove`: admins), and per agent
    /// which run and which its policy refused (`show`).
    #[command(subcommand)]
    Monitors(monitors::MonitorsCommand),
    /// Follow alerts and ticket changes live; reconnects by itself.
    Watch(watch::WatchArgs),
    /// Support metrics: tickets opened by source, first-contact resolution rate, share
    /// resolved with no human, response and resolution times, backlog, escalations.
    #[command(long_about = None, after_long_help = report::REPORT_HELP)]
    Report(report::ReportArgs),
    /// The knowledge base: `kb search TEXT`, `kb show ID` (a verdict's `kb`).
    #[command(subcommand)]
    Kb(kb::KbCommand),
    /// Serve the web console on this machine (loopback): the fleet, machines,
    /// tickets, live notices and audit in a browser, as this operator. Prints
    /// a URL with a secret for this launch; Ctrl-C stops it.
    Web(web::WebArgs),
    /// A first run: embedded relay and agent on loopback, real enrollment, the checks on this machine.
    Demo {
        /// Keep the demo's folder (relay, agent, credential) instead of deleting it.
        #[arg(long)]
        keep: bool,
        /// Then serve the web console as the demo's admin, until Ctrl-C.
        #[arg(long)]
        web: bool,
    },
    /// Print the shell completion script: `firstline completions bash > /etc/bash_completion.d/firstline`.
    Completions {
        #[arg(value_enum)]
        shell: firstline_net::cli::Shell,
    },
}

fn main() {
    // `firstline demo` embeds an agent, whose workers are this binary.
    firstline_agent::worker::child::serve_if_asked();
    let cli: Cli = firstline_net::cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_with(client::classify(e, None)),
    }
}

/// The async runtime of a command. Most commands are a few requests on
/// one connection, I/O bound: one thread, started in microseconds (a
/// multi-thread runtime starts a worker per core first, and every wake-up
/// then crosses threads). `web` and `demo` serve (a browser; an embedded
/// relay and agent) and get the worker pool.
fn runtime(command: &Command) -> Result<tokio::runtime::Runtime> {
    let mut builder = match command {
        Command::Web(_) | Command::Demo { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> Result<i32> {
    client::set_connect_timeout(cli.connect_timeout.as_deref())?;
    let rt = runtime(&cli.command)?;
    let cred = cli.credential.clone();
    match cli.command {
        Command::Login => login(cred),
        Command::Agents(args) => rt.block_on(fleet::agents(cred, args)),
        Command::Checks { agent, json } => rt.block_on(remote::checks(cred, agent, json)),
        Command::Run {
            agent,
            check,
            args,
            help,
            bulk,
        } => match bulk.split(agent, check, args, help)? {
            Target::Many(many) => rt.block_on(bulk::run(cred, bulk::Kind::Run, many)),
            Target::One(Some(agent), Some(check), args) => {
                rt.block_on(remote::run(cred, agent, check, args, help))
            }
            _ => subcommand_help("run"),
        },
        Command::Fix {
            agent,
            action,
            args,
            help,
            bulk,
        } => match bulk.split(agent, action, args, help)? {
            Target::Many(many) => rt.block_on(bulk::run(cred, bulk::Kind::Fix, many)),
            Target::One(Some(agent), Some(action), args) => {
                rt.block_on(remote::fix(cred, agent, action, args, help))
            }
            _ => subcommand_help("fix"),
        },
        Command::Runbook {
            agent,
            name,
            params,
            help,
            bulk,
        } => match bulk.split(agent, name, params, help)? {
            Target::Many(many) => rt.block_on(bulk::run(cred, bulk::Kind::Runbook, many)),
            Target::One(Some(agent), Some(name), params) => {
                rt.block_on(remote::runbook(cred, agent, name, params, help))
            }
            _ => subcommand_help("runbook"),
        },
        Command::Runbooks { agent, json } => rt.block_on(remote::runbooks(cred, agent, json)),
        Command::Audit { agent, limit, json } => {
            rt.block_on(remote::audit(cred, agent, limit, json))
        }
        Command::Tickets(args) => rt.block_on(tickets::list(cred, args)),
        Command::Ticket(cmd) => rt.block_on(tickets::command(cred, cmd)),
        Command::Token(cmd) => rt.block_on(admin::token(cred, cmd)),
        Command::Operator(cmd) => rt.block_on(admin::operator(cred, cmd)),
        Command::Agent(cmd) => rt.block_on(admin::agent(cred, cmd)),
        Command::Queue(args) => rt.block_on(queue::run(cred, args)),
        Command::Monitors(cmd) => rt.block_on(monitors::run(cred, cmd)),
        Command::Watch(args) => rt.block_on(watch::run(cred, args)),
        Command::Report(args) => rt.block_on(report::run(cred, args)),
        Command::Kb(cmd) => rt.block_on(kb::run(cred, cmd)),
        Command::Web(args) => rt.block_on(web::run(cred, args)),
        Command::Demo { keep, web } => rt.block_on(demo::run(keep, web)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            firstline_net::cli::print_completions(Cli::command(), shell);
            Ok(0)
        }
    }
}

/// The long help of one subcommand (for those whose `--help` after their
/// free arguments belongs to the agent).
fn subcommand_help(name: &str) -> Result<i32> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    if let Some(sub) = cmd.find_subcommand_mut(name) {
        output::line(sub.render_long_help().to_string().trim_end());
    }
    Ok(0)
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
        // Holds the operator's credential: 0700, whatever the umask.
        firstline_net::private::create_dir(dir, 0o700)
            .with_context(|| format!("cannot create {}", dir.display()))?;
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
