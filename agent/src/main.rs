//! `firstline-agent`: the agent's command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use firstline_agent::checks::{self, CheckContext, CheckError};
use firstline_agent::config::{DEFAULT_CONFIG, DEFAULT_STATE_DIR};
use firstline_agent::enroll::{enroll, token_from, EnrollRequest, TOKEN_ENV};
use firstline_agent::link::{self, LinkState};
use firstline_agent::Loaded;
use firstline_net::cli::{
    exit_with, init_logging, is_help, print_json, print_line, print_result, usage_line, UsageError,
};
use firstline_proto::text::printable;
use firstline_proto::Status;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "firstline-agent",
    version,
    about = "firstline agent: L1 checks on this machine, reachable through the relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this machine with a relay, using a token from `firstline-relay token create`.
    ///
    /// The token comes from --token-file, from the FIRSTLINE_TOKEN environment
    /// variable (read when neither option is given), or from --token.
    Enroll {
        /// Relay address, HOST:PORT (port 4433 when omitted); repeat it (or
        /// separate with commas) for several relays of one deployment: the
        /// agent fails over between them.
        #[arg(long, required = true, value_name = "HOST:PORT")]
        relay: Vec<String>,
        /// Enrollment token. Other users can see it in the process list while
        /// enroll runs: prefer --token-file or FIRSTLINE_TOKEN.
        #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// Read the enrollment token from FILE (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Agent name (default: this machine's hostname).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where the identity is kept (default: /var/lib/firstline-agent for the
        /// default config, else the config's folder).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run the agent: keep the link to the relay and serve requests.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check an agent.toml and exit 0 (valid) or 2 (the error names the file and line).
    Validate {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run a runbook on this machine, no relay or enrollment needed, under this
    /// machine's [policy]: `runbook no-internet external=192.0.2.1 --json`.
    #[command(
        disable_help_flag = true,
        override_usage = "firstline-agent runbook [NAME [KEY=VALUE]...] [--json] [--dry-run] [--config FILE]\n       firstline-agent runbook NAME --help"
    )]
    Runbook {
        /// Runbook name (no name: list them).
        name: Option<String>,
        /// Parameters, KEY=VALUE.
        params: Vec<String>,
        /// Print help (after NAME: the runbook's description and parameters).
        #[arg(short = 'h', long)]
        help: bool,
        /// Print each result and the verdict as JSON lines (the verdict last).
        #[arg(long)]
        json: bool,
        /// Fixes only say what they would do.
        #[arg(long)]
        dry_run: bool,
        /// agent.toml for [policy], plugins and runbooks folders (defaults when
        /// the file does not exist).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run one check locally, no relay needed: `check disk /var --warn 80`;
    /// with no NAME, list every check with its arguments and thresholds.
    #[command(
        disable_help_flag = true,
        override_usage = "firstline-agent check [NAME [ARGS]...] [--json]\n       firstline-agent check NAME --help"
    )]
    Check {
        /// Check name (disk, …; no name: list the checks).
        name: Option<String>,
        /// The check's own arguments; `--json` and `--help` may sit among them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Print the result (or the list of checks) as JSON.
        #[arg(long)]
        json: bool,
        /// Print help (after NAME: the check's own help).
        #[arg(short = 'h', long)]
        help: bool,
    },
}

fn main() {
    firstline_agent::worker::child::serve_if_asked();
    let cli: Cli = firstline_net::cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_with(e),
    }
}

/// The agent's async runtime: one thread (tokio's current-thread runtime),
/// plus the blocking pool that `spawn_blocking` starts on demand (statvfs,
/// reads of /proc, the `cpu` window; such threads exit after
/// [`BLOCKING_KEEP_ALIVE`] idle).
///
/// Why not the multi-thread runtime: the agent's work is I/O and timers —
/// one QUIC link, ten or so monitors every few minutes, a request now and
/// then — which one thread serves with room to spare, while each worker
/// thread of a multi-thread runtime (one per core) costs a stack and a
/// malloc arena that stay resident, and wakes other workers to steal work.
/// Measured with 10 monitors every 30 s (BENCHMARKS.md, "Footprint
/// against real peers"). Blocking work stays off this thread: checks use
/// [`checks::blocking`], the outbox's SQLite writes are short appends.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
        .context("cannot start the async runtime")
}

/// How long an idle thread of the blocking pool waits for more work before
/// it exits (tokio's default is 10 s; monitors run every few seconds to
/// minutes, so a thread kept a little longer is not recreated each run).
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(60);

fn run(cli: Cli) -> Result<i32> {
    let rt = runtime()?;
    match cli.command {
        Command::Enroll {
            relay,
            token,
            token_file,
            name,
            config,
            state_dir,
        } => {
            let token = token_from(token, token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
            let name = match name {
                Some(n) => n,
                None => sysinfo::System::host_name()
                    .map_err(|e| anyhow::anyhow!("no hostname ({e}); pass --name"))?,
            };
            let state_dir = state_dir.unwrap_or_else(|| default_state_dir(&config));
            let loaded = rt.block_on(enroll(EnrollRequest {
                relay,
                token,
                name,
                config_path: config,
                state_dir,
            }))?;
            print_line(format!(
                "enrolled as {} with relay {}",
                loaded.config.name, loaded.config.relay
            ));
            print_line(format!(
                "next: firstline-agent run --config {}",
                loaded.path.display()
            ));
            Ok(0)
        }
        Command::Run { config } => {
            let loaded = Loaded::load(&config)?;
            init_logging("info");
            rt.block_on(run_agent(loaded))?;
            Ok(0)
        }
        Command::Validate { config } => {
            Loaded::load(&config)?;
            print_line(format!("{}: ok", config.display()));
            Ok(0)
        }
        Command::Check {
            name,
            mut args,
            json,
            help,
        } => match name {
            Some(name) => {
                if help {
                    args.push("--help".into());
                }
                rt.block_on(check(&name, args, json))
            }
            None if help => subcommand_help("check"),
            None => list_checks(json),
        },
        Command::Runbook {
            name,
            params,
            help,
            json,
            dry_run,
            config,
        } => {
            let loaded = local_config(&config)?;
            match name {
                Some(name) if help => runbook_help(&loaded, &name),
                Some(name) => rt.block_on(local_runbook(&loaded, &name, &params, json, dry_run)),
                None if help => subcommand_help("runbook"),
                None => list_runbooks(&loaded, json),
            }
        }
    }
}

/// This machine's config, or — on a machine that was never enrolled — the
/// defaults (default policy, shipped runbooks, default folders).
fn local_config(path: &Path) -> Result<Loaded> {
    if path.exists() {
        return Loaded::load(path);
    }
    let name = sysinfo::System::host_name()
        .ok()
        .filter(|h| firstline_net::identity::valid_name(h))
        .unwrap_or_else(|| "this-machine".into());
    let config = toml::from_str(&format!("relay = \"\"\nname = \"{name}\"\n"))
        .context("default configuration")?;
    Ok(Loaded {
        config,
        path: std::path::absolute(path)?,
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        runner: Default::default(),
    })
}

/// `runbook NAME …`: exit 0 when resolved, 1 otherwise, 2 for a usage error.
async fn local_runbook(
    cfg: &Loaded,
    name: &str,
    params: &[String],
    json: bool,
    dry_run: bool,
) -> Result<i32> {
    use firstline_agent::runbook::run;
    use firstline_proto::runbook::VerdictKind;
    use firstline_proto::{ErrorCode, Message, Role};
    // The person at the machine runs it with their own rights: the role is
    // not what limits them here, the policy and the OS are.
    let prepared = match run::prepare(cfg, name, params, Role::Admin) {
        Ok(p) => p,
        Err((ErrorCode::BadRequest, why)) => {
            return Err(UsageError(format!(
                "{why}; `firstline-agent runbook {name} --help` lists its parameters"
            ))
            .into())
        }
        Err((_, why)) => anyhow::bail!(why),
    };
    let agent = cfg.config.name.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                Message::Progress { text } if !json => {
                    print_line(format!("  … {}", printable(&text)))
                }
                Message::Result { result } if json => print_json(&result_json(&agent, &result)),
                Message::Result { result } => print_result(&result),
                Message::Verdict(v) if json => print_json(&v),
                Message::Verdict(v) => v.render().into_iter().for_each(print_line),
                _ => {}
            }
        }
    };
    let (verdict, ()) = tokio::join!(run::drive(cfg, &prepared, dry_run, tx), printer);
    Ok(
        if matches!(verdict.verdict, VerdictKind::Resolved | VerdictKind::DryRun) {
            0
        } else {
            1
        },
    )
}

/// The runbooks of this machine. `--json`: an array of
/// `{name, description, source, params: [{name, default, required, help}]}`
/// (the same shape as `firstline runbooks AGENT --json`); files that do not
/// load are reported on stderr and make the exit status 1.
fn list_runbooks(cfg: &Loaded, json: bool) -> Result<i32> {
    let (books, invalid) = cfg.runbooks();
    if json {
        let list: Vec<_> = books
            .iter()
            .map(|b| {
                let params: Vec<_> = b
                    .params
                    .iter()
                    .map(|(k, p)| {
                        serde_json::json!({"name": k, "default": p.default,
                            "required": p.default.is_none(), "help": p.help})
                    })
                    .collect();
                serde_json::json!({"name": b.name, "description": b.description,
                    "source": b.source, "params": params})
            })
            .collect();
        print_json(&list);
        for bad in &invalid {
            eprintln!("warning: invalid runbook: {}", printable(bad));
        }
    } else {
        for b in &books {
            print_line(format!("{:<14} {}", b.name, b.description));
            for (k, p) in &b.params {
                let default = p
                    .default
                    .as_deref()
                    .map(|d| format!(" (default `{d}`)"))
                    .unwrap_or_default();
                print_line(format!("    {k}={}{default}", p.help));
            }
        }
        for bad in &invalid {
            print_line(format!("invalid runbook: {}", printable(bad)));
        }
    }
    Ok(if invalid.is_empty() { 0 } else { 1 })
}

fn default_state_dir(config: &Path) -> PathBuf {
    if config == Path::new(DEFAULT_CONFIG) {
        PathBuf::from(DEFAULT_STATE_DIR)
    } else {
        firstline_agent::config::resolve(config, Path::new("."))
    }
}

async fn run_agent(loaded: Loaded) -> Result<()> {
    // Every action it serves runs in a sandboxed worker (`worker`); the
    // resident cannot be read or traced by them (not dumpable).
    let loaded = loaded.with_workers();
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let (state_tx, mut state) = tokio::sync::watch::channel(LinkState::Connecting);
    // systemd (Type=notify): READY, STATUS, WATCHDOG from the main loop, STOPPING.
    let notify = firstline_net::notify::Notifier::from_env();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        notify.stopping();
        let _ = shutdown_tx.send(true);
    });
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let line = state.borrow().to_string();
            tracing::debug!(state = %line, "link state");
            notify.status(&line);
        }
    });
    notify.ready(&LinkState::Connecting.to_string());
    notify.drive(link::run(loaded, shutdown, state_tx)).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `runbook NAME --help`: what the runbook does and its parameters.
fn runbook_help(cfg: &Loaded, name: &str) -> Result<i32> {
    let (books, _) = cfg.runbooks();
    let Some(b) = books.iter().find(|b| b.name == name) else {
        let names: Vec<&str> = books.iter().map(|b| b.name.as_str()).collect();
        return Err(UsageError(format!(
            "no runbook `{name}` here (there are: {})",
            names.join(", ")
        ))
        .into());
    };
    print_line(format!("{} — {}", b.name, b.description));
    print_line(format!(
        "\nUsage: firstline-agent runbook {} [KEY=VALUE]... [--json] [--dry-run] [--config FILE]",
        b.name
    ));
    if !b.params.is_empty() {
        print_line("\nParameters:");
    }
    for (k, p) in &b.params {
        let default = p
            .default
            .as_deref()
            .map_or(" (required)".to_string(), |d| format!(" (default `{d}`)"));
        print_line(format!("  {k}=…  {}{default}", p.help));
    }
    Ok(0)
}

/// The long help of one subcommand, its usage naming the whole command.
fn subcommand_help(name: &str) -> Result<i32> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    if let Some(sub) = cmd.find_subcommand_mut(name) {
        print_line(sub.render_long_help().to_string().trim_end());
    }
    Ok(0)
}

/// `check` with no name: every check, what it does, and its synopsis with
/// the defaults (thresholds); `--json`: an array of check descriptions.
fn list_checks(json: bool) -> Result<i32> {
    let list = checks::catalog();
    if json {
        print_json(&list);
    } else {
        for line in firstline_net::cli::check_list(&list) {
            print_line(line);
        }
        print_line("\nRun one: firstline-agent check NAME [ARGS...] [--json]; its help: firstline-agent check NAME --help");
    }
    Ok(0)
}

/// A result as JSON, naming the agent that produced it.
fn result_json(agent: &str, r: &firstline_proto::CheckResult) -> serde_json::Value {
    firstline_net::cli::result_json(agent, r)
}

/// `check NAME ARGS… [--json]`: exit 0 for ok, 1 otherwise, 2 for a usage
/// error (one line, with the check's usage).
async fn check(name: &str, mut args: Vec<String>, json: bool) -> Result<i32> {
    let json = take_flag(&mut args, "--json") || json;
    let ctx = local_context();
    let result = match checks::run(name, &args, &ctx).await {
        Ok(r) => r,
        Err(CheckError::Usage(m)) if is_help(&m) => {
            let usage = format!("Usage: firstline-agent check {name}");
            print_line(m.replacen(&format!("Usage: {name}"), &usage, 1));
            return Ok(0);
        }
        Err(e @ CheckError::Refused(_)) => return Err(e.into()),
        Err(CheckError::Usage(m)) => {
            let command = format!("firstline-agent check {name}");
            return Err(UsageError(usage_line(&m, Some(&command))).into());
        }
        Err(e) => {
            return Err(UsageError(format!(
                "{e}; `firstline-agent check` lists them with their arguments"
            ))
            .into())
        }
    };
    if json {
        print_json(&result_json(&local_name(), &result));
    } else {
        print_result(&result);
        for (k, v) in &result.metrics {
            print_line(format!("  {k} = {v}"));
        }
        for (k, v) in &result.fields {
            print_line(format!("  {k} = {}", printable(v)));
        }
    }
    Ok(if result.status == Status::Ok { 0 } else { 1 })
}

/// This machine's agent name: the one in the default config, else the
/// hostname.
fn local_name() -> String {
    Loaded::load(Path::new(DEFAULT_CONFIG))
        .map(|l| l.config.name)
        .ok()
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_else(|| "this-machine".into())
}

/// The context of a local check: the plugins folder of the default config
/// when it can be read, else the default folder.
fn local_context() -> CheckContext {
    Loaded::load(Path::new(DEFAULT_CONFIG))
        .map(|l| l.check_context())
        .unwrap_or_default()
}

/// Remove every `flag` from `args`; whether it was there.
fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}
