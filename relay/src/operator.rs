//! An operator's (console's) connection: one request per stream, each
//! checked against the operator's role, audited, and answered.
//!
//! `run` requests are routed to the agent's live connection; its frames are
//! streamed back to the console as they arrive and, with `--ticket`,
//! appended to the ticket.

use crate::answer::send_parts;
use crate::policy::required_role;
use crate::routing;
use crate::server::Relay;
use crate::store::AuditEntry;
use crate::ticket_requests;
use firstline_net::stream;
use firstline_net::FramedSend;
use firstline_proto::{limits, ErrorCode, Message, Role};
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
    // Each stream is served by its own task, its request read there: a
    // stream that stays silent holds up nothing else.
    while let Ok(incoming) = stream::accept(&conn).await {
        let (relay, op) = (relay.clone(), op.clone());
        tokio::spawn(async move {
            let incoming = incoming.limit(limits::CONSOLE_REQUEST_FRAME);
            if let Some((msg, send, _recv)) = incoming.first(relay.first_message_timeout()).await {
                handle(relay, op, msg, send).await;
            }
        });
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
        } => {
            let request = Message::Exec {
                check,
                args,
                role: op.role,
            };
            routing::route(&relay, &agent, request, ticket, &op.name, send).await
        }
        Message::Fix {
            agent,
            action,
            args,
            dry_run,
            ticket,
        } => {
            let request = Message::ExecFix {
                action,
                args,
                dry_run,
                role: op.role,
            };
            routing::route(&relay, &agent, request, ticket, &op.name, send).await
        }
        Message::Runbook {
            agent,
            name,
            params,
            dry_run,
            ticket,
        } => {
            let request = Message::ExecRunbook {
                name,
                params,
                dry_run,
                role: op.role,
            };
            routing::route(&relay, &agent, request, ticket, &op.name, send).await
        }
        Message::ListRunbooks { agent } => {
            routing::route(
                &relay,
                &agent,
                Message::ExecListRunbooks {},
                None,
                &op.name,
                send,
            )
            .await
        }
        Message::ListAudit { agent, limit } => list_audit(&relay, agent, limit, send).await,
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
            with_ticket(args, *ticket),
        ),
        Message::Fix {
            agent,
            action,
            args,
            dry_run,
            ticket,
        } => (
            Some(agent.clone()),
            format!("fix {action}{}", if *dry_run { " (dry run)" } else { "" }),
            with_ticket(args, *ticket),
        ),
        Message::Runbook {
            agent,
            name,
            params,
            dry_run,
            ticket,
        } => (
            Some(agent.clone()),
            format!("runbook {name}{}", if *dry_run { " (dry run)" } else { "" }),
            with_ticket(params, *ticket),
        ),
        Message::ListRunbooks { agent } => {
            (Some(agent.clone()), "list runbooks".into(), String::new())
        }
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

fn with_ticket(args: &[String], ticket: Option<u64>) -> String {
    let mut s = args.join(" ");
    if let Some(t) = ticket {
        s.push_str(&format!(" --ticket {t}"));
    }
    s
}

async fn list_audit(
    relay: &Relay,
    agent: Option<String>,
    limit: Option<u32>,
    send: FramedSend,
) -> Result<String, Failure> {
    match relay.store.audit_records(agent.as_deref(), limit) {
        Ok(entries) => {
            let n = entries.len();
            let sent = send_parts(send, None, entries, |entries| Message::Audit { entries }).await;
            Ok(sent_outcome(sent, format!("ok: {n} entries")))
        }
        Err(e) => Err(internal(e, send)),
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
    let sent = send_parts(send, None, agents, |agents| Message::Agents { agents }).await;
    Ok(sent_outcome(sent, format!("ok: {n} agents")))
}

/// The audit outcome of an answer: `done` only if it was all sent.
pub fn sent_outcome(sent: Result<(), firstline_net::LinkError>, done: String) -> String {
    match sent {
        Ok(()) => done,
        Err(e) => format!("failed: the answer could not be sent: {e}"),
    }
}

pub fn unknown_agent(name: &str, send: FramedSend) -> Failure {
    (
        ErrorCode::UnknownAgent,
        format!("no agent named `{name}` is enrolled at this relay (see `firstline agents`)"),
        send,
    )
}
