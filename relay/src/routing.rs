//! Requests routed to an agent: checks, fixes, runbooks, runbook lists.
//!
//! The relay opens a stream on the agent's live connection, sends the
//! agent-side request, and copies every answer to the console as it
//! arrives; with `--ticket`, a check's or a fix's result is appended to the
//! ticket on the way, and a runbook is recorded as one `runbook` entry by
//! the operator who ran it: its parameters, every step's result or why it
//! was skipped, and the verdict with its cause.

use crate::operator::{internal, unknown_agent, Failure};
use crate::server::Relay;
use crate::tickets::TicketStore;
use firstline_net::stream::request;
use firstline_net::{FramedRecv, FramedSend};
use firstline_proto::{ErrorCode, Message};

/// Route `to_agent` to `agent` and stream its answers back.
pub async fn route(
    relay: &Relay,
    agent: &str,
    to_agent: Message,
    ticket: Option<u64>,
    operator: &str,
    mut send: FramedSend,
) -> Result<String, Failure> {
    let conn = match relay.store.agent(agent) {
        Err(e) => return Err(internal(e, send)),
        Ok(None) => return Err(unknown_agent(relay, agent, send)),
        Ok(Some(info)) if info.revoked => {
            return Err((
                ErrorCode::Revoked,
                format!("agent `{agent}` has been revoked"),
                send,
            ))
        }
        Ok(Some(info)) => match relay.registry.agent(agent) {
            Some(conn) => conn,
            None => {
                let seen = info.last_seen.unwrap_or_else(|| "never".into());
                return Err((
                    ErrorCode::AgentOffline,
                    format!("agent `{agent}` is offline (last seen {seen})"),
                    send,
                ));
            }
        },
    };
    if let Some(t) = ticket {
        match relay.store.read(|db| db.get(t)) {
            Ok(Some(_)) => {}
            Ok(None) => return Err((ErrorCode::UnknownTicket, format!("no ticket #{t}"), send)),
            Err(e) => return Err(internal(e, send)),
        }
    }
    let to_agent_kind = to_agent.kind();
    let (_to_agent, mut from_agent) = match request(&conn, to_agent).await {
        Ok(s) => s,
        Err(e) => {
            return Err((
                ErrorCode::AgentOffline,
                format!("agent `{agent}` could not be reached: {e}"),
                send,
            ))
        }
    };
    let record = ticket.map(|t| Record {
        ticket: t,
        operator,
        runbook: matches!(to_agent_kind, "exec_runbook"),
    });
    match relay_answers(relay, agent, record, &mut from_agent, &mut send).await {
        Ok(text) => {
            let _ = send.finish();
            Ok(text)
        }
        Err((code, m)) => Err((code, m, send)),
    }
}

/// Copy the agent's answers to the console until the final message.
/// Where the answers are recorded: a ticket, by whom, and whether they are
/// a runbook's (recorded once, whole, with its verdict).
struct Record<'a> {
    ticket: u64,
    operator: &'a str,
    runbook: bool,
}

impl Record<'_> {
    /// Append an entry, with the time the agent observed what it says.
    fn append(&self, relay: &Relay, kind: &str, author: &str, body: &str, observed: &str) {
        let t = self.ticket;
        let observed = crate::incidents::observed_secs(observed);
        let appended = relay.ticket_tx(|tx| {
            let c = tx.append_observed(t, kind, author, body, observed)?;
            Ok(((), c.into_iter().collect()))
        });
        if let Err(e) = appended {
            tracing::error!("cannot append to ticket {t}: {e}");
        }
    }
}

async fn relay_answers(
    relay: &Relay,
    agent: &str,
    record: Option<Record<'_>>,
    from_agent: &mut FramedRecv,
    to_console: &mut FramedSend,
) -> Result<String, (ErrorCode, String)> {
    let mut last_status = String::from("no result");
    loop {
        let msg = match from_agent.recv_within(relay.request_timeout()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                return Err((
                    ErrorCode::Internal,
                    format!("agent `{agent}` ended the stream without a final message"),
                ))
            }
            Err(e) => {
                from_agent.stop(e.code());
                return Err((e.code(), format!("from agent `{agent}`: {e}")));
            }
        };
        match &msg {
            Message::Result { result } => {
                last_status = format!("{}: {}", result.status, result.summary);
                if let Some(r) = record.as_ref().filter(|r| !r.runbook) {
                    let body = serde_json::to_string(result).unwrap_or_default();
                    r.append(relay, "result", agent, &body, &result.at);
                }
            }
            Message::Verdict(v) => {
                last_status = format!("{} ({}): {}", v.verdict, v.cause, v.message);
                if let Some(r) = &record {
                    let body = serde_json::to_string(v).unwrap_or_default();
                    let observed = v.evidence().last().map_or("", |e| e.at.as_str());
                    r.append(relay, "verdict", r.operator, &body, observed);
                }
            }
            Message::Progress { .. } => {}
            Message::Runbooks { .. } | Message::Checks { .. } => {
                let what = match &msg {
                    Message::Runbooks { runbooks, .. } => format!("{} runbooks", runbooks.len()),
                    Message::Checks { checks } => format!("{} checks", checks.len()),
                    _ => String::new(),
                };
                to_console
                    .send(msg)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
                return Ok(format!("ok: {what}"));
            }
            Message::Done {} => {
                to_console
                    .send(msg)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
                return Ok(last_status);
            }
            Message::Error { code, message } => {
                return Err((*code, format!("agent `{agent}`: {message}")));
            }
            other => {
                return Err((
                    ErrorCode::BadRequest,
                    format!("agent `{agent}` sent an unexpected `{}`", other.kind()),
                ))
            }
        }
        if to_console.send(msg).await.is_err() {
            return Ok("console went away".into());
        }
    }
}
