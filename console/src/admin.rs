//! `firstline token …`, `firstline operator …`, `firstline agent …`: the
//! relay's lifecycle for admins, through the relay (the same operations as
//! `firstline-relay token|operator|agent …` on the relay host), and
//! `firstline agent tag NAME +T -T…`. The relay allows them to admins only
//! and audits each.

use crate::client::Client;
use crate::output;
use crate::tickets::parse_age;
use anyhow::{bail, Result};
use firstline_net::cli::UsageError;
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
        /// A tag every agent enrolled with it starts with (`floor2`); may be
        /// given several times, or as `--tag a,b`.
        #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
        tags: Vec<String>,
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
    /// Add (+TAG) and remove (-TAG) an agent's tags: `firstline agent tag
    /// pc-042 +floor2 -lab`. Prints its tags after.
    #[command(override_usage = "firstline agent tag <NAME> <+TAG|-TAG>... [--json]")]
    Tag {
        name: String,
        /// `+TAG` to add, `-TAG` to remove (`--json` among them too).
        #[arg(required = true, allow_hyphen_values = true, value_name = "+TAG|-TAG")]
        changes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// `+a -b` as the tags to add and to remove; a word without its sign is
/// a usage error. `--json` may come among them (it is taken for the flag).
pub fn tag_changes(changes: &[String]) -> Result<(Vec<String>, Vec<String>, bool)> {
    let (mut add, mut remove, mut json) = (Vec::new(), Vec::new(), false);
    for c in changes {
        if c == "--json" {
            json = true;
        } else if let Some(t) = c.strip_prefix('+') {
            add.push(t.to_string());
        } else if let Some(t) = c.strip_prefix('-') {
            remove.push(t.to_string());
        } else {
            return Err(UsageError(format!(
                "`{}`: write +{0} to add the tag, -{0} to remove it",
                printable(c)
            ))
            .into());
        }
    }
    Ok((add, remove, json))
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
                .map(firstline_relay::admin::token_row)
                .collect();
            output::table(firstline_relay::admin::TOKEN_COLUMNS, &rows);
        }
        TokenCommand::Create {
            uses,
            ttl,
            tags,
            json,
        } => {
            let request = Message::TokenCreate {
                uses,
                ttl_secs: ttl,
                tags,
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
            let tagged = if info.tags.is_empty() {
                String::new()
            } else {
                format!(", agents tagged {}", printable(&info.tags.join(",")))
            };
            eprintln!(
                "valid for {uses} enrollment(s) until {}{tagged}; on the agent (the token by file or environment, not on the command line): FIRSTLINE_TOKEN=… firstline-agent enroll --relay {relay}",
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
        AgentCommand::Tag {
            name,
            changes,
            json,
        } => {
            let (add, remove, json_among) = tag_changes(&changes)?;
            let json = json || json_among;
            if add.is_empty() && remove.is_empty() {
                return Err(UsageError(
                    "usage: firstline agent tag NAME +TAG -TAG… (at least one change)".into(),
                )
                .into());
            }
            let request = Message::AgentTag {
                agent: name,
                add,
                remove,
            };
            let Message::AgentTagged { agent, tags } = call(cred, request).await? else {
                bail!("unexpected answer to `agent tag`");
            };
            if json {
                output::json(&serde_json::json!({"agent": agent, "tags": tags}));
            } else if tags.is_empty() {
                output::line(format!("agent {} has no tags", printable(&agent)));
            } else {
                output::line(format!(
                    "agent {} is tagged {}",
                    printable(&agent),
                    printable(&tags.join(","))
                ));
            }
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
