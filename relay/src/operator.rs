//! An operator's (console's) connection: one request per stream, each
//! checked against the operator's role, audited, and answered.
//!
//! `run` requests are routed to the agent's live connection; its frames are
//! streamed back to the console as they arrive and, with `--ticket`,
//! appended to the ticket.

use crate::policy::required_role;
use crate::server::Relay;
use crate::store::AuditEntry;
use crate::ticket_requests;
use crate::tickets;
use firstline_net::stream::{accept_request, request};
use firstline_net::{FramedRecv, FramedSend};
use firstline_proto::{ErrorCode, Message, Role};
use quinn::Connection;
use std::sync::Arc;

/// Who sent a request, as read from the verified certificate.
#[derive(Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

pub async fn run(relay: Arc<Relay>, conn: Connection, name: String, role: Role) {
    relay.registry.operator_online(&name, conn.clone());
    let op = Operator { name, role };
    loop {
        match accept_request(&conn, relay.first_message_timeout()).await {
            Ok(Some((msg, send, _recv))) => {
                tokio::spawn(handle(relay.clone(), op.clone(), msg, send));
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    relay.registry.operator_offline(&conn);
}

async fn handle(relay: Arc<Relay>, op: Operator, msg: Message, send: FramedSend) {
    let Some(needed) = required_role(&msg) else {
        send.fail(
            ErrorCode::BadRequest,
            format!("`{}` is not a console request", msg.kind()),
        )
        .await;
        return;
    };
    let (agent, action, args) = describe(&msg);
    if op.role < needed {
        let why = format!(
            "{} may not {action}: needs role {needed} or above, {} has {}",
            op.name, op.name, op.role
        );
        audit(
            &relay,
            &op,
            agent.as_deref(),
            &action,
            &args,
            &format!("forbidden: {why}"),
        );
        send.fail(ErrorCode::Forbidden, why).await;
        return;
    }
    let outcome = match msg {
        Message::ListAgents {} => list_agents(&relay, send).await,
        Message::ListTickets { status, agent } => {
            ticket_requests::list(&relay, status, agent, send).await
        }
        Message::TicketNew { title, agent, body } => {
            ticket_requests::open(&relay, &op, &title, agent.as_deref(), body.as_deref(), send)
                .await
        }
        Message::TicketShow { id } => ticket_requests::show(&relay, id, send).await,
        Message::TicketUpdate { id, change } => {
            ticket_requests::update(&relay, &op, id, change, send).await
        }
        Message::Watch {} => ticket_requests::watch(&relay, send).await,
        Message::Run {
            agent,
            check,
            args,
            ticket,
        } => run_check(&relay, &agent, check, args, ticket, send).await,
        _ => Err((ErrorCode::BadRequest, "unsupported request".into(), send)),
    };
    let (text, failure) = match outcome {
        Ok(text) => (text, None),
        Err((code, message, send)) => (
            format!("error {code:?}: {message}"),
            Some((code, message, send)),
        ),
    };
    audit(&relay, &op, agent.as_deref(), &action, &args, &text);
    if let Some((code, message, send)) = failure {
        send.fail(code, message).await;
    }
}

/// A failed request: code, message, and the stream to report it on.
pub type Failure = (ErrorCode, String, FramedSend);

fn describe(msg: &Message) -> (Option<String>, String, String) {
    match msg {
        Message::Run {
            agent,
            check,
            args,
            ticket,
        } => (
            Some(agent.clone()),
            format!("run check {check}"),
            format!(
                "{}{}",
                args.join(" "),
                ticket.map(|t| format!(" --ticket {t}")).unwrap_or_default()
            ),
        ),
        Message::TicketShow { id } => (None, "show ticket".into(), format!("#{id}")),
        Message::TicketUpdate { id, change } => (
            None,
            "change ticket".into(),
            format!(
                "#{id} {}",
                serde_json::to_string(change).unwrap_or_default()
            ),
        ),
        Message::TicketNew { title, agent, .. } => {
            (agent.clone(), "open a ticket".into(), title.clone())
        }
        other => (None, other.kind().replace('_', " "), String::new()),
    }
}

fn audit(
    relay: &Relay,
    op: &Operator,
    agent: Option<&str>,
    action: &str,
    args: &str,
    outcome: &str,
) {
    let entry = AuditEntry {
        who: &op.name,
        role: Some(op.role.as_str()),
        agent,
        action,
        args,
        outcome,
    };
    if let Err(e) = relay.store.audit(&entry) {
        tracing::error!("cannot write audit entry: {e}");
    }
}

pub fn internal(e: anyhow::Error, send: FramedSend) -> Failure {
    (ErrorCode::Internal, format!("relay error: {e:#}"), send)
}

async fn list_agents(relay: &Relay, send: FramedSend) -> Result<String, Failure> {
    let mut agents = match relay.store.agents() {
        Ok(a) => a,
        Err(e) => return Err(internal(e, send)),
    };
    for a in &mut agents {
        a.online = relay.registry.is_online(&a.name);
    }
    let n = agents.len();
    let _ = send.finish_with(Message::Agents { agents }).await;
    Ok(format!("ok: {n} agents"))
}

pub fn unknown_agent(name: &str, send: FramedSend) -> Failure {
    (
        ErrorCode::UnknownAgent,
        format!("no agent named `{name}` is enrolled at this relay (see `firstline agents`)"),
        send,
    )
}

/// Route a check to an agent and stream its answers back.
async fn run_check(
    relay: &Relay,
    agent: &str,
    check: String,
    args: Vec<String>,
    ticket: Option<u64>,
    mut send: FramedSend,
) -> Result<String, Failure> {
    let conn = match relay.store.agent(agent) {
        Err(e) => return Err(internal(e, send)),
        Ok(None) => return Err(unknown_agent(agent, send)),
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
        match relay.store.read(|db| tickets::get(db, t)) {
            Ok(Some(_)) => {}
            Ok(None) => return Err((ErrorCode::UnknownTicket, format!("no ticket #{t}"), send)),
            Err(e) => return Err(internal(e, send)),
        }
    }
    let (_to_agent, mut from_agent) = match request(&conn, Message::Exec { check, args }).await {
        Ok(s) => s,
        Err(e) => {
            return Err((
                ErrorCode::AgentOffline,
                format!("agent `{agent}` could not be reached: {e}"),
                send,
            ))
        }
    };
    match relay_answers(relay, agent, ticket, &mut from_agent, &mut send).await {
        Ok(text) => {
            let _ = send.finish();
            Ok(text)
        }
        Err((code, m)) => Err((code, m, send)),
    }
}

/// Copy the agent's answers to the console until the final message.
async fn relay_answers(
    relay: &Relay,
    agent: &str,
    ticket: Option<u64>,
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
                if let Some(t) = ticket {
                    let body = serde_json::to_string(result).unwrap_or_default();
                    let appended = relay.ticket_tx(|tx| {
                        let c = tickets::append(tx, t, "result", agent, &body)?;
                        Ok(((), c.into_iter().collect()))
                    });
                    if let Err(e) = appended {
                        tracing::error!("cannot append to ticket {t}: {e}");
                    }
                }
            }
            Message::Progress { .. } => {}
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
