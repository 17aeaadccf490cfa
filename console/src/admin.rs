//! `firstline token …`, `firstline operator …`, `firstline agent …`: the
//! relay's lifecycle for admins, through the relay (the same operations as
//! `firstline-relay token|operator|agent …` on the relay host). The relay
//! allows them to admins only and audits each.

use crate::client::Client;
use crate::output;
use crate::tickets::parse_age;
use anyhow::{bail, Result};
use firstline_proto::message::{AgentRecord, OperatorInfo, TokenInfo};
use firstline_proto::text::printable;
use firstline_proto::{Message, Role};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Enrollment tokens: id, state (active, expired, used, revoked), uses left, expiry.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print a new enrollment token (single-use unless --uses).
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime: 30m, 24h, 7d (default: the relay's token_ttl_secs).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        ttl: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: nothing enrolls with it any more (ID as `token list` shows it).
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum OperatorCommand {
    /// Operators: name, role, online, created, revoked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change an operator's role (viewer, technician, admin); it holds from
    /// their next request on, with the credential they already have.
    Role {
        name: String,
        role: Role,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// Enrolled agents' records: online, enrolled, last seen, certificate expiry, revoked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent's record (its tickets are kept). A live agent's name is
    /// freed (certificates revoked, connection closed; it may enroll again); a
    /// revoked agent's name stays revoked.
    Remove {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// Send a request whose answer is a list in parts; the parts.
async fn parts(cred: Option<PathBuf>, request: Message) -> Result<Vec<Message>> {
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(request).await;
    client.close().await;
    parts
}

/// Send a request with one answer.
async fn call(cred: Option<PathBuf>, request: Message) -> Result<Message> {
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(request).await;
    client.close().await;
    answer
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub async fn token(cred: Option<PathBuf>, cmd: TokenCommand) -> Result<i32> {
    match cmd {
        TokenCommand::List { json } => {
            let mut tokens: Vec<TokenInfo> = Vec::new();
            for part in parts(cred, Message::ListTokens {}).await? {
                match part {
                    Message::Tokens { tokens: t } => tokens.extend(t),
                    other => bail!("unexpected answer: {}", other.kind()),
                }
            }
            if json {
                output::json(&tokens);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    let uses = match t.uses {
                        Some(n) => format!("{}/{n}", t.uses_left),
                        None => t.uses_left.to_string(),
                    };
                    vec![
                        t.id.clone(),
                        t.state.clone(),
                        uses,
                        t.expires_at.clone(),
                        t.created_at.clone(),
                        or_dash(&t.revoked_at),
                    ]
                })
                .collect();
            output::table(
                &["ID", "STATE", "USES LEFT", "EXPIRES", "CREATED", "REVOKED"],
                &rows,
            );
        }
        TokenCommand::Create { uses, ttl, json } => {
            let request = Message::TokenCreate {
                uses,
                ttl_secs: ttl,
            };
            let Message::TokenCreated { token, info, relay } = call(cred, request).await? else {
                bail!("unexpected answer to `token create`");
            };
            if json {
                output::json(&serde_json::json!({"token": token, "info": info, "relay": relay}));
                return Ok(0);
            }
            output::line(printable(&token));
            let relay = if relay.is_empty() {
                "HOST:PORT".to_string()
            } else {
                printable(&relay).into_owned()
            };
            eprintln!(
                "valid for {uses} enrollment(s) until {}; on the agent (the token by file or environment, not on the command line): FIRSTLINE_TOKEN=… firstline-agent enroll --relay {relay}",
                printable(&info.expires_at)
            );
        }
        TokenCommand::Revoke { id, json } => {
            let Message::TokenRevoked { token } = call(cred, Message::TokenRevoke { id }).await?
            else {
                bail!("unexpected answer to `token revoke`");
            };
            if json {
                output::json(&token);
            } else {
                output::line(format!(
                    "token {} revoked: it can no longer enroll anything",
                    printable(&token.id)
                ));
            }
        }
    }
    Ok(0)
}

pub async fn operator(cred: Option<PathBuf>, cmd: OperatorCommand) -> Result<i32> {
    match cmd {
        OperatorCommand::List { json } => {
            let mut operators: Vec<OperatorInfo> = Vec::new();
            for part in parts(cred, Message::ListOperators {}).await? {
                match part {
                    Message::Operators { operators: o } => operators.extend(o),
                    other => bail!("unexpected answer: {}", other.kind()),
                }
            }
            if json {
                output::json(&operators);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = operators
                .iter()
                .map(|o| {
                    vec![
                        o.name.clone(),
                        o.role.to_string(),
                        if o.online { "yes" } else { "no" }.into(),
                        o.created_at.clone(),
                        or_dash(&o.revoked_at),
                    ]
                })
                .collect();
            output::table(&["NAME", "ROLE", "ONLINE", "CREATED", "REVOKED"], &rows);
        }
        OperatorCommand::Role { name, role, json } => {
            let request = Message::OperatorRole { name, role };
            let Message::OperatorUpdated { operator } = call(cred, request).await? else {
                bail!("unexpected answer to `operator role`");
            };
            if json {
                output::json(&operator);
            } else {
                output::line(format!(
                    "operator {} is {}, from their next request on",
                    printable(&operator.name),
                    operator.role
                ));
            }
        }
    }
    Ok(0)
}

pub async fn agent(cred: Option<PathBuf>, cmd: AgentCommand) -> Result<i32> {
    match cmd {
        AgentCommand::List { json } => {
            let mut agents: Vec<AgentRecord> = Vec::new();
            for part in parts(cred, Message::ListAgentRecords {}).await? {
                match part {
                    Message::AgentRecords { agents: a } => agents.extend(a),
                    other => bail!("unexpected answer: {}", other.kind()),
                }
            }
            if json {
                output::json(&agents);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        if a.online { "yes" } else { "no" }.into(),
                        a.enrolled_at.clone(),
                        a.last_seen.clone().unwrap_or_else(|| "never".into()),
                        or_dash(&a.cert_expires),
                        or_dash(&a.revoked_at),
                    ]
                })
                .collect();
            output::table(
                &[
                    "NAME",
                    "ONLINE",
                    "ENROLLED",
                    "LAST SEEN",
                    "CERT EXPIRES",
                    "REVOKED",
                ],
                &rows,
            );
        }
        AgentCommand::Remove { name, json } => {
            let answer = call(cred, Message::AgentRemove { name }).await?;
            let Message::AgentRemoved {
                agent,
                name_freed,
                tickets,
            } = answer
            else {
                bail!("unexpected answer to `agent remove`");
            };
            if json {
                output::json(&serde_json::json!({
                    "agent": agent, "name_freed": name_freed, "tickets": tickets
                }));
            } else {
                let what = if name_freed {
                    "its certificates are revoked and the name may enroll again"
                } else {
                    "it was revoked: the name stays revoked"
                };
                output::line(format!(
                    "agent {} removed: {what}; its {tickets} ticket(s) are kept",
                    printable(&agent.name)
                ));
            }
        }
    }
    Ok(0)
}
