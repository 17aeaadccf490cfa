//! `firstline-relay`: the relay's command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use firstline_net::cli::{exit_with, init_logging};
use firstline_proto::Role;
use firstline_relay::audit::{Finding, Verification};
use firstline_relay::{admin, RelayDir};
use std::net::SocketAddr;
use std::path::PathBuf;

const DEFAULT_CONFIG: &str = "/etc/firstline/relay.toml";

#[derive(Parser)]
#[command(
    name = "firstline-relay",
    version,
    about = "firstline relay: the QUIC hub between agents and technicians' consoles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a relay directory: relay.toml, a private CA, the relay's certificate and its database.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:4433")]
        listen: SocketAddr,
        /// DNS name agents use for this relay (also put in its certificate).
        #[arg(long, default_value = firstline_proto::RELAY_SERVER_NAME)]
        name: String,
    },
    /// Run the relay.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a relay.toml and exit 0 (valid) or 2 (the error names the file and line).
    Validate {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Enrollment tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Technicians and admins who use the console.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain against its signed anchor
    /// (audit-anchor.log): exit 0 if it holds, 1 (naming the first entry
    /// and what happened to it) if entries were edited, deleted, truncated
    /// or rewritten, or the anchor was tampered with.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new enrollment token (single-use unless --uses).
    Create {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. `24h`, `30m`, `7d` (default: token_ttl_secs of relay.toml).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Add an operator and write their credential file (certificate, key, CA, relay address).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where to write the credential (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke an operator: live connections are closed and the certificate refused for good.
    Revoke {
        name: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Revoke an agent: its live connection is closed and its certificate refused for good.
    Revoke {
        name: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        exit_with(e)
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { dir, listen, name } => {
            let path = admin::init(&dir, listen, &name)?;
            println!("relay initialised: {}", path.display());
            println!("next: firstline-relay serve --config {}", path.display());
        }
        Command::Serve { config } => serve(RelayDir::load(&config)?)?,
        Command::Validate { config } => {
            RelayDir::load(&config)?;
            println!("{}: ok", config.display());
        }
        Command::Token(TokenCommand::Create { config, uses, ttl }) => {
            let dir = RelayDir::load(&config)?;
            let (token, expires) = admin::token_create(&dir, uses, ttl)?;
            println!("{token}");
            eprintln!(
                "valid for {uses} enrollment(s) until {}; on the agent (the token by file or environment, not on the command line): FIRSTLINE_TOKEN=… firstline-agent enroll --relay {}",
                firstline_relay::store::rfc3339(expires),
                dir.config.public_addr()
            );
        }
        Command::Operator(OperatorCommand::Add {
            name,
            role,
            config,
            out,
        }) => {
            admin::operator_add(&RelayDir::load(&config)?, &name, role, &out)?;
            println!(
                "operator {name} ({role}) added; credential written to {}",
                out.display()
            );
            println!("next: firstline login --credential {}", out.display());
        }
        Command::Operator(OperatorCommand::Revoke { name, config }) => {
            admin::revoke(&RelayDir::load(&config)?, "operator", &name)?;
            println!("operator {name} revoked");
        }
        Command::Audit(AuditCommand::Verify { config }) => {
            let dir = RelayDir::load(&config)?;
            let store = firstline_relay::store::Store::open(&dir.database())?;
            let report = firstline_relay::audit::verify(&store, &dir.audit_paths())?;
            render_verification(&dir, &report)?;
        }
        Command::Agent(AgentCommand::Revoke { name, config }) => {
            admin::revoke(&RelayDir::load(&config)?, "agent", &name)?;
            println!("agent {name} revoked");
        }
    }
    Ok(())
}

/// Print what `audit verify` found: warnings and further problems on
/// stderr, then the summary (exit 0) or the first problem as the error
/// (exit 1).
fn render_verification(dir: &RelayDir, v: &Verification) -> Result<()> {
    /// Problems listed one by one; more are counted.
    const SHOWN: usize = 20;
    for w in v.warnings() {
        eprintln!("warning: {w}");
    }
    let errors: Vec<&Finding> = v.errors().collect();
    let Some(first) = errors.first() else {
        let key = match &v.key {
            Some((id, public)) => format!("key {id}, Ed25519 public key {public}"),
            None => "no key yet".into(),
        };
        println!(
            "audit chain holds: {} entries, head {}; {} anchored by signed checkpoints in {} ({key})",
            v.entries,
            v.head,
            v.anchored,
            dir.audit_anchor().display()
        );
        return Ok(());
    };
    for e in errors.iter().skip(1).take(SHOWN) {
        eprintln!("also: {e}");
    }
    if errors.len() > SHOWN + 1 {
        eprintln!("also: {} more problems", errors.len() - SHOWN - 1);
    }
    let more = match errors.len() {
        1 => String::new(),
        n => format!(" ({n} problems in all)"),
    };
    anyhow::bail!("audit chain broken: {first}{more}")
}

fn serve(dir: RelayDir) -> Result<()> {
    init_logging("info");
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let handle = firstline_relay::start(dir).await?;
        tracing::info!(addr = %handle.addr, "relay listening");
        // systemd (Type=notify): READY once bound, WATCHDOG while running, STOPPING.
        let notify = firstline_net::notify::Notifier::from_env();
        notify.ready(&format!("listening on {}", handle.addr));
        notify.drive(wait_for_signal()).await;
        notify.stopping();
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
