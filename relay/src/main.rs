//! `firstline-relay`: the relay's command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use firstline_net::cli::{exit_with, init_logging, print_json, print_line};
use firstline_proto::text::printable;
use firstline_proto::Role;
use firstline_relay::audit::{Finding, Verification};
use firstline_relay::store::PeerKind;
use firstline_relay::{admin, config, RelayDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use admin::{DEFAULT_CONFIG, DEFAULT_DIR};

#[derive(Parser)]
#[command(
    name = "firstline-relay",
    version,
    about = "firstline relay: the QUIC hub between agents and technicians' consoles",
    after_help = "Every command but `init` reads /etc/firstline/relay.toml unless given --config; \
                  `init` writes a relay there unless given --dir."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a relay directory: relay.toml, a private CA, the relay's certificate and its database;
    /// with --join, another relay of an existing deployment (same CA, store and NATS).
    Init {
        /// Folder of the new relay (its relay.toml is what --config of the
        /// other commands names; the default is where they look).
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:4433")]
        listen: SocketAddr,
        /// DNS name of this relay, put in its certificate (default: firstline-relay).
        #[arg(long)]
        name: Option<String>,
        /// HOST:PORT agents and consoles dial, written into relay.toml and from
        /// there into token hints and operators' credential files (default:
        /// --name with the --listen port; else --listen when it is a specific
        /// address).
        #[arg(long, value_name = "HOST:PORT")]
        public_addr: Option<String>,
        /// Make another relay of the deployment this relay.toml belongs to: the same
        /// CA, store, NATS, settings and audit key, its own certificate, id and
        /// addresses (the relay.toml of a copy of that relay's folder will do).
        #[arg(long, value_name = "DIR/relay.toml", conflicts_with_all = ["store", "nats", "store_file", "nats_file", "nats_nkey"])]
        join: Option<PathBuf>,
        /// Store of the relay's data, shared by every relay of the deployment:
        /// postgres://USER:PASSWORD@HOST/DB (default: sqlite:relay.db, beside relay.toml).
        /// A password here shows in the process list: prefer --store-file or
        /// $FIRSTLINE_STORE_URL.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// A file whose first line is the store URL (kept out of the process list;
        /// relay.toml, 0600, holds it from then on). Also: $FIRSTLINE_STORE_URL.
        #[arg(long, value_name = "FILE", conflicts_with = "store")]
        store_file: Option<PathBuf>,
        /// NATS server(s) the relays of the deployment meet on: nats://HOST:4222
        /// (written as [cluster] nats; other relays then join with --join).
        /// Credentials here show in the process list: prefer --nats-file or
        /// $FIRSTLINE_NATS_URL.
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// A file whose first line is the NATS URL (with its credentials).
        /// Also: $FIRSTLINE_NATS_URL.
        #[arg(long, value_name = "FILE", conflicts_with = "nats")]
        nats_file: Option<PathBuf>,
        /// The nkey user seed (SU…) the NATS server admits the relays with, when
        /// it exists already; without it `init --nats` makes one (nats.nk) and
        /// writes the nats-server block that admits it (nats-authorization.conf).
        #[arg(long, value_name = "FILE")]
        nats_nkey: Option<PathBuf>,
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
    /// Check the audit log's keyed hash chain against its signed anchor
    /// (audit-anchor.log): exit 0 if it holds, 1 (naming the first entry
    /// and what happened to it) if entries were edited, forged (no keyed
    /// hash), deleted, truncated or rewritten, or the anchor was tampered
    /// with, cut, emptied or given a replayed line.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also count the checkpoints of another relay's anchor (its
        /// audit-anchor.log; relays of one deployment share the audit key);
        /// may be given several times.
        #[arg(long, value_name = "FILE")]
        anchor: Vec<PathBuf>,
    },
    /// After `audit verify` showed entries no relay wrote (added or edited
    /// in the database) — the relays then refuse audited actions —: record
    /// that an admin has seen them, so that the relays work again. The
    /// entries stay in the log, reported as acknowledged.
    Acknowledge {
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
        /// A tag every agent enrolled with it starts with (`floor2`); may be
        /// given several times, or as `--tag a,b`.
        #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// List enrollment tokens: id, state (active, expired, used, revoked), uses, expiry.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: nothing enrolls with it any more (ID: the part after `fl1.`).
    Revoke {
        id: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
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
    /// List operators: name, role, created, revoked.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Change an operator's role (viewer, technician, admin); it holds from
    /// their next request on, with the credential they already have.
    Role {
        name: String,
        role: Role,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
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
    /// List enrolled agents: enrolled, last seen, certificate expiry, revoked.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent: its live connection is closed and its certificate refused for good.
    Revoke {
        name: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Remove an agent's record (its tickets are kept). A live agent's name is
    /// freed (its certificates revoked, its connection closed; it may enroll
    /// again); a revoked agent's name stays revoked.
    Remove {
        name: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn main() {
    let cli: Cli = firstline_net::cli::parse();
    if let Err(e) = run(cli) {
        exit_with(e)
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            dir,
            listen,
            name,
            public_addr,
            join,
            store,
            store_file,
            nats,
            nats_file,
            nats_nkey,
        } => {
            let public =
                config::default_public_addr(listen, name.as_deref(), public_addr.as_deref());
            let name = name.unwrap_or_else(|| firstline_proto::RELAY_SERVER_NAME.to_string());
            let path = match join {
                Some(with) => {
                    let joined = admin::join(&dir, &with, listen, &name, public.as_deref())?;
                    println!(
                        "relay {} joined the deployment of {} ({}): same CA, store ({}) and NATS; its own certificate",
                        joined.relay_id,
                        joined.with,
                        with.display(),
                        joined.store
                    );
                    if joined.sqlite {
                        println!(
                            "note: these relays share a SQLite file: they must run on this machine; \
                             relays on several machines need PostgreSQL ([store] url = \"postgres://…\")"
                        );
                    }
                    joined.config_path
                }
                None => {
                    let store = config::url_from(
                        "store",
                        store,
                        store_file.as_deref(),
                        config::STORE_URL_ENV,
                    )?;
                    let nats =
                        config::url_from("nats", nats, nats_file.as_deref(), config::NATS_URL_ENV)?;
                    let shared = admin::Shared {
                        store,
                        nats,
                        nats_nkey,
                    };
                    admin::init_shared(&dir, listen, &name, public.as_deref(), &shared)?
                }
            };
            let made = RelayDir::load(&path)?;
            if let Some(nkey) = made.nats_nkey() {
                let auth = made.dir.join(admin::NATS_AUTH_FILE);
                println!(
                    "NATS: this relay authenticates with the nkey in {} (0600; `init --join` copies it); \
                     the NATS server must admit it — {} holds the nats-server block:\n{}",
                    nkey.display(),
                    auth.display(),
                    std::fs::read_to_string(&auth).unwrap_or_default().trim_end()
                );
            }
            println!("relay initialised: {}", path.display());
            match &public {
                Some(p) => println!("agents and consoles dial {p} (public_addr)"),
                // On stdout: the packages' setup runs `init` with its output
                // silenced and brings its own relay.toml.
                None => println!(
                    "note: no public_addr yet ({listen} is not an address anyone can dial): \
                     set public_addr = \"HOST:PORT\" in {} before adding operators",
                    path.display()
                ),
            }
            if path == Path::new(DEFAULT_CONFIG) {
                println!("next: firstline-relay serve");
            } else {
                println!("next: firstline-relay serve --config {}", path.display());
            }
        }
        Command::Serve { config } => serve(RelayDir::load(&config)?)?,
        Command::Validate { config } => {
            let dir = RelayDir::load(&config)?;
            if dir.config.dialable_public_addr().is_none() {
                eprintln!("warning: {}", admin::no_public_addr(&dir));
            }
            println!("{}: ok", config.display());
        }
        Command::Token(TokenCommand::Create {
            config,
            uses,
            ttl,
            tags,
        }) => {
            let dir = RelayDir::load(&config)?;
            let (token, expires) = admin::token_create_tagged(&dir, uses, ttl, &tags)?;
            println!("{token}");
            let relay = dir
                .config
                .dialable_public_addr()
                .unwrap_or_else(|| "HOST:PORT".into());
            let tagged = if tags.is_empty() {
                String::new()
            } else {
                format!(", agents tagged {}", tags.join(","))
            };
            eprintln!(
                "valid for {uses} enrollment(s) until {}{tagged}; on the agent (the token by file or environment, not on the command line): FIRSTLINE_TOKEN=… firstline-agent enroll --relay {relay}",
                firstline_relay::clock::rfc3339(expires),
            );
            if dir.config.dialable_public_addr().is_none() {
                eprintln!("warning: {}", admin::no_public_addr(&dir));
            }
        }
        Command::Token(TokenCommand::List { config, json }) => {
            let tokens = admin::token_list(&RelayDir::load(&config)?)?;
            if json {
                print_json(&tokens);
            } else {
                let rows = tokens.iter().map(admin::token_row).collect::<Vec<_>>();
                table(admin::TOKEN_COLUMNS, &rows);
            }
        }
        Command::Token(TokenCommand::Revoke { id, config }) => {
            let (token, newly) = admin::token_revoke(&RelayDir::load(&config)?, &id)?;
            if newly {
                println!(
                    "token {} revoked: it can no longer enroll anything",
                    token.id
                );
            } else {
                println!("token {} was already revoked", token.id);
            }
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
        Command::Operator(OperatorCommand::List { config, json }) => {
            let operators = admin::operator_list(&RelayDir::load(&config)?)?;
            if json {
                print_json(&operators);
            } else {
                let rows = operators
                    .iter()
                    .map(|o| {
                        vec![
                            o.name.clone(),
                            o.role.to_string(),
                            o.created_at.clone(),
                            o.revoked_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["NAME", "ROLE", "CREATED", "REVOKED"], &rows);
            }
        }
        Command::Operator(OperatorCommand::Role { name, role, config }) => {
            let (op, before) = admin::operator_role(&RelayDir::load(&config)?, &name, role)?;
            if before == op.role {
                println!("operator {name} is already {role}");
            } else {
                println!(
                    "operator {name}: {before} → {}; it holds from their next request on",
                    op.role
                );
            }
        }
        Command::Operator(OperatorCommand::Revoke { name, config }) => {
            let revoked = admin::revoke(&RelayDir::load(&config)?, PeerKind::Operator, &name)?;
            println!("operator {name} revoked");
            if !revoked.suspended.is_empty() {
                println!(
                    "central monitor sets they set, suspended until an admin sets them again: {}",
                    revoked.suspended.join(", ")
                );
            }
        }
        Command::Audit(AuditCommand::Verify { config, anchor }) => {
            let dir = RelayDir::load(&config)?;
            let store = dir.open_store()?;
            let report = firstline_relay::audit::verify_with(&store, &dir.audit_paths(), &anchor)?;
            render_verification(&dir, &report)?;
        }
        Command::Audit(AuditCommand::Acknowledge { config }) => {
            let dir = RelayDir::load(&config)?;
            let store = dir.open_store()?;
            let said = firstline_relay::audit::acknowledge(&store, &dir.audit_paths())?;
            println!("audit: {said}; relays append again");
        }
        Command::Agent(AgentCommand::List { config, json }) => {
            let agents = admin::agent_list(&RelayDir::load(&config)?)?;
            if json {
                print_json(&agents);
            } else {
                let rows = agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.enrolled_at.clone(),
                            a.last_seen.clone().unwrap_or_else(|| "never".into()),
                            a.cert_expires.clone().unwrap_or_else(|| "-".into()),
                            a.revoked_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(
                    &["NAME", "ENROLLED", "LAST SEEN", "CERT EXPIRES", "REVOKED"],
                    &rows,
                );
            }
        }
        Command::Agent(AgentCommand::Revoke { name, config }) => {
            let revoked = admin::revoke(&RelayDir::load(&config)?, PeerKind::Agent, &name)?;
            println!("agent {name} revoked");
            if !revoked.cancelled.is_empty() {
                println!(
                    "{} actions queued for it cancelled",
                    revoked.cancelled.len()
                );
            }
        }
        Command::Agent(AgentCommand::Remove { name, config }) => {
            let removed = admin::agent_remove(&RelayDir::load(&config)?, &name)?;
            let what = if removed.name_freed {
                "its certificates are revoked and the name may enroll again"
            } else {
                "it was revoked: the name stays revoked"
            };
            println!(
                "agent {name} removed: {what}; its {} ticket(s) are kept",
                removed.tickets
            );
        }
    }
    Ok(())
}

/// Rows under a header, columns padded to fit; each cell escaped whole.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    print_line(render(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        print_line(render(row));
    }
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
    if dir.config.dialable_public_addr().is_none() {
        tracing::warn!("{}", admin::no_public_addr(&dir));
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn init_writes_where_the_other_commands_look() {
        let written = std::path::Path::new(super::DEFAULT_DIR).join("relay.toml");
        assert_eq!(written, std::path::Path::new(super::DEFAULT_CONFIG));
    }
}
