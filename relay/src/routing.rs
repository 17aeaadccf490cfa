//! Requests routed to an agent: checks, fixes, runbooks, runbook lists.
//!
//! The relay opens a stream on the agent's live connection, sends the
//! agent-side request, and copies every answer to the console as it
//! arrives; with `--ticket`, a check's or a fix's result is appended to the
//! ticket on the way, and a runbook is recorded as one `verdict` entry by
//! the operator who ran it: its parameters, every step's result or why it
//! was skipped, and the verdict with its cause.

use crate::clock::parse_rfc3339;
use crate::error::RelayError;
use crate::reply::{Outcome, Reply};
use crate::state::Relay;
use firstline_net::stream::request;
use firstline_net::FramedRecv;
use firstline_proto::{ErrorCode, Message};

/// A request on its way to an agent.
pub struct Routed<'a> {
    agent: &'a str,
    request: Message,
    ticket: Option<u64>,
    runbook: bool,
}

impl<'a> Routed<'a> {
    pub fn new(agent: &'a str, request: Message) -> Routed<'a> {
        Routed {
            agent,
            request,
            ticket: None,
            runbook: false,
        }
    }

    /// Record the answers in this ticket.
    pub fn ticket(mut self, ticket: Option<u64>) -> Self {
        self.ticket = ticket;
        self
    }

    /// A runbook's answers: recorded once, whole, with its verdict.
    pub fn runbook(mut self) -> Self {
        self.runbook = true;
        self
    }
}

/// What `route` needs of the request's context.
pub trait Requester {
    fn relay(&self) -> &Relay;
    /// The operator's name (who a runbook's verdict is recorded by).
    fn operator(&self) -> &str;
}

/// Route the request to its agent and stream its answers back.
pub async fn route(
    ctx: &impl Requester,
    routed: Routed<'_>,
    reply: &mut Reply,
) -> Result<Outcome, RelayError> {
    let relay = ctx.relay();
    let agent = routed.agent;
    let conn = live_connection(relay, agent).await?;
    if let Some(t) = routed.ticket {
        if relay.store.ticket(t).await?.is_none() {
            return Err(RelayError::no_ticket(t));
        }
    }
    let (_to_agent, mut from_agent) = request(&conn, routed.request).await.map_err(|e| {
        RelayError::new(
            ErrorCode::AgentOffline,
            format!("agent `{agent}` could not be reached: {e}"),
        )
    })?;
    let record = routed.ticket.map(|ticket| Record {
        ticket,
        operator: ctx.operator(),
        runbook: routed.runbook,
    });
    let text = relay_answers(relay, agent, record, &mut from_agent, reply).await?;
    reply.finish();
    Ok(Outcome(text))
}

/// The agent's live connection, or why there is none.
async fn live_connection(relay: &Relay, agent: &str) -> Result<quinn::Connection, RelayError> {
    let Some(info) = relay.store.agent(agent).await? else {
        return Err(relay.unknown_agent(agent).await);
    };
    if info.revoked {
        let why = format!("agent `{agent}` has been revoked");
        return Err(RelayError::new(ErrorCode::Revoked, why));
    }
    relay.registry.agent(agent).ok_or_else(|| {
        let seen = info.last_seen.unwrap_or_else(|| "never".into());
        RelayError::new(
            ErrorCode::AgentOffline,
            format!("agent `{agent}` is offline (last seen {seen})"),
        )
    })
}

/// Where the answers are recorded: a ticket, by whom, and whether they are
/// a runbook's (recorded once, whole, with its verdict).
struct Record<'a> {
    ticket: u64,
    operator: &'a str,
    runbook: bool,
}

impl Record<'_> {
    /// Append an entry, with the time the agent observed what it says.
    async fn append(&self, relay: &Relay, kind: &str, author: &str, body: &str, observed: &str) {
        let t = self.ticket;
        let observed = parse_rfc3339(observed);
        match relay
            .store
            .append_to_ticket(t, kind, author, body, observed)
            .await
        {
            Ok(change) => relay.announce(&change.into_iter().collect::<Vec<_>>()),
            Err(e) => tracing::error!("cannot append to ticket {t}: {e}"),
        }
    }
}

/// Copy the agent's answers to the console until the final message.
async fn relay_answers(
    relay: &Relay,
    agent: &str,
    record: Option<Record<'_>>,
    from_agent: &mut FramedRecv,
    to_console: &mut Reply,
) -> Result<String, RelayError> {
    let mut last_status = String::from("no result");
    let internal =
        |e: firstline_net::LinkError| RelayError::new(ErrorCode::Internal, e.to_string());
    loop {
        let msg = match from_agent.recv_within(relay.request_timeout()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                return Err(RelayError::new(
                    ErrorCode::Internal,
                    format!("agent `{agent}` ended the stream without a final message"),
                ))
            }
            Err(e) => {
                from_agent.stop(e.code());
                return Err(RelayError::new(
                    e.code(),
                    format!("from agent `{agent}`: {e}"),
                ));
            }
        };
        match &msg {
            Message::Result { result } => {
                last_status = format!("{}: {}", result.status, result.summary);
                if let Some(r) = record.as_ref().filter(|r| !r.runbook) {
                    let body = serde_json::to_string(result).unwrap_or_default();
                    r.append(relay, "result", agent, &body, &result.at).await;
                }
            }
            Message::Verdict(v) => {
                last_status = format!("{} ({}): {}", v.verdict, v.cause, v.message);
                if let Some(r) = &record {
                    let body = serde_json::to_string(v).unwrap_or_default();
                    let observed = v.evidence().last().map_or("", |e| e.at.as_str());
                    r.append(relay, "verdict", r.operator, &body, observed)
                        .await;
                }
            }
            Message::Progress { .. } => {}
            Message::Runbooks { .. } | Message::Checks { .. } => {
                let what = match &msg {
                    Message::Runbooks { runbooks, .. } => format!("{} runbooks", runbooks.len()),
                    Message::Checks { checks } => format!("{} checks", checks.len()),
                    _ => String::new(),
                };
                to_console.send(msg).await.map_err(internal)?;
                return Ok(format!("ok: {what}"));
            }
            Message::Done {} => {
                to_console.send(msg).await.map_err(internal)?;
                return Ok(last_status);
            }
            Message::Error { code, message } => {
                return Err(RelayError::new(
                    *code,
                    format!("agent `{agent}`: {message}"),
                ));
            }
            other => {
                return Err(RelayError::bad_request(format!(
                    "agent `{agent}` sent an unexpected `{}`",
                    other.kind()
                )))
            }
        }
        if to_console.send(msg).await.is_err() {
            return Ok("console went away".into());
        }
    }
}
