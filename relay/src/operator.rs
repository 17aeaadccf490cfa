//! An operator's (console's) connection: one request per stream, each
//! checked against the operator's role, audited, and answered.
//!
//! **The certificate identifies, the database authorizes.** The operator's
//! name comes from their verified certificate; the role each request is
//! checked against is the one the relay's `operators` table holds at that
//! moment (`firstline-relay operator role` / `firstline operator role`
//! change it), not the role the certificate was issued with. A role
//! change therefore holds from the operator's next request on, on live
//! connections too, without re-issuing anything.
//!
//! `run` requests are routed to the agent's live connection; its frames are
//! streamed back to the console as they arrive and, with `--ticket`,
//! appended to the ticket.

use crate::admin_requests;
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

/// Who sent a request: the name from the verified certificate, the role
/// from the database at the time of the request.
#[derive(Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

/// Serve an operator's connection. `role` is the one the certificate names
/// (as issued); each request is authorized with the database's instead.
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
    let op = match current_role(&relay, &op) {
        Ok(op) => op,
        Err((code, why)) => {
            let (agent, action, args) = describe(&msg);
            audit(
                &relay,
                &op,
                agent.as_deref(),
                &action,
                &args,
                &format!("refused: {why}"),
            );
            send.fail(code, why).await;
            return;
        }
    };
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
        Message::ListTickets {
            status,
            agent,
            assignee,
            priority,
            search,
            since_secs,
            older_than_secs,
        } => {
            let filter = ticket_requests::ListFilter {
                status,
                agent,
                assignee,
                priority,
                search,
                since_secs,
                older_than_secs,
            };
            ticket_requests::list(&relay, filter, send).await
        }
        Message::TicketNew {
            title,
            agent,
            body,
            priority,
        } => {
            let new = ticket_requests::Opening {
                title: &title,
                agent: agent.as_deref(),
                body: body.as_deref(),
                priority: priority.as_deref(),
            };
            ticket_requests::open(&relay, &op, new, send).await
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
        Message::ListChecks { agent } => {
            let request = Message::ExecListChecks {};
            routing::route(&relay, &agent, request, None, &op.name, send).await
        }
        Message::ListAudit { agent, limit } => list_audit(&relay, agent, limit, send).await,
        Message::ListTokens {} => admin_requests::list_tokens(&relay, send).await,
        Message::TokenCreate { uses, ttl_secs } => {
            admin_requests::create_token(&relay, uses, ttl_secs, send).await
        }
        Message::TokenRevoke { id } => admin_requests::revoke_token(&relay, &id, send).await,
        Message::ListOperators {} => admin_requests::list_operators(&relay, send).await,
        Message::OperatorRole { name, role } => {
            admin_requests::set_role(&relay, &name, role, send).await
        }
        Message::ListAgentRecords {} => admin_requests::list_agent_records(&relay, send).await,
        Message::AgentRemove { name } => admin_requests::remove_agent(&relay, &name, send).await,
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

/// The operator with the role the database holds now; refused when the
/// operator is no longer on record or revoked (their connection is being
/// cut off too).
fn current_role(relay: &Relay, op: &Operator) -> Result<Operator, (ErrorCode, String)> {
    match relay.store.operator(&op.name) {
        Ok(Some(o)) if o.revoked_at.is_none() => Ok(Operator {
            name: op.name.clone(),
            role: o.role,
        }),
        Ok(Some(_)) => Err((
            ErrorCode::Revoked,
            format!("operator {} has been revoked by the relay admin", op.name),
        )),
        Ok(None) => Err((
            ErrorCode::Unauthenticated,
            format!("no operator named `{}` at this relay", op.name),
        )),
        Err(e) => Err((ErrorCode::Internal, format!("relay error: {e:#}"))),
    }
}

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
        Message::ListChecks { agent } => (Some(agent.clone()), "list checks".into(), String::new()),
        Message::TicketShow { id } => (None, "show ticket".into(), format!("#{id}")),
        Message::TicketUpdate { id, change } => (
            None,
            "change ticket".into(),
            format!(
                "#{id} {}",
                serde_json::to_string(change).unwrap_or_default()
            ),
        ),
        Message::TicketNew {
            title,
            agent,
            priority,
            ..
        } => (
            agent.clone(),
            "open a ticket".into(),
            match priority {
                Some(p) => format!("{title} --priority {p}"),
                None => title.clone(),
            },
        ),
        Message::ListTickets {
            status,
            agent,
            assignee,
            priority,
            search,
            since_secs,
            older_than_secs,
        } => {
            let mut args = Vec::new();
            let mut flag = |name: &str, value: Option<String>| {
                if let Some(v) = value {
                    args.push(format!("--{name} {v}"));
                }
            };
            flag("status", status.clone());
            flag("assignee", assignee.clone());
            flag("priority", priority.clone());
            flag("search", search.clone());
            flag("since", since_secs.map(|s| format!("{s}s")));
            flag("older-than", older_than_secs.map(|s| format!("{s}s")));
            (agent.clone(), "list tickets".into(), args.join(" "))
        }
        Message::ListTokens {} => (None, "token list".into(), String::new()),
        Message::TokenCreate { uses, ttl_secs } => (
            None,
            "token create".into(),
            match ttl_secs {
                Some(t) => format!("--uses {uses} --ttl {t}s"),
                None => format!("--uses {uses}"),
            },
        ),
        Message::TokenRevoke { id } => (None, "token revoke".into(), id.clone()),
        Message::ListOperators {} => (None, "operator list".into(), String::new()),
        Message::OperatorRole { name, role } => {
            (None, "operator role".into(), format!("{name} {role}"))
        }
        Message::ListAgentRecords {} => (None, "agent list".into(), String::new()),
        Message::AgentRemove { name } => (Some(name.clone()), "agent remove".into(), name.clone()),
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

/// No agent of this name: the message lists the enrolled ones.
pub fn unknown_agent(relay: &Relay, name: &str, send: FramedSend) -> Failure {
    (
        ErrorCode::UnknownAgent,
        crate::admin::unknown_agent(&relay.store, name),
        send,
    )
}
