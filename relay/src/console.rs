//! An operator's (console's) connection: one request per stream, each
//! parsed once into a [`ConsoleRequest`], checked against the operator's
//! role, answered, and audited.
//!
//! **The certificate identifies, the database authorizes.** The operator's
//! name comes from their verified certificate; the role each request is
//! checked against is the one the relay's `operators` table holds at that
//! moment (`firstline-relay operator role` / `firstline operator role`
//! change it), not the role the certificate was issued with. A role
//! change therefore holds from the operator's next request on, on live
//! connections too, without re-issuing anything.
//!
//! **Fail closed.** A request's answer ends only after its audit entry is
//! written: the reply holds its last message (the console shows nothing
//! before it) until then, and when the entry cannot be written (a full
//! disk, the database down) the console gets an error instead — an action
//! already done by then is reported as done but unaudited.

use crate::error::RelayError;
use crate::reply::Reply;
use crate::requests::{AuditLine, ConsoleRequest, Ctx, Operator};
use crate::state::Relay;
use crate::store::AuditEntry;
use firstline_net::stream;
use firstline_net::FramedSend;
use firstline_proto::{limits, ErrorCode, Message, Role};
use quinn::Connection;
use std::sync::Arc;

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
                let (kind, started) = (msg.kind(), std::time::Instant::now());
                let outcome = handle(&relay, op, msg, send).await;
                relay
                    .metrics
                    .console_request(kind, outcome, started.elapsed());
            }
        });
    }
    relay.registry.operator_offline(&conn);
}

/// Answer one request; how it ended, for the metrics.
async fn handle(relay: &Relay, op: Operator, msg: Message, send: FramedSend) -> &'static str {
    let mut reply = Reply::held(send);
    let request = match ConsoleRequest::parse(msg) {
        Ok(r) => r,
        Err(e) => {
            reply.fail(e.code, e.message).await;
            return "bad_request";
        }
    };
    let line = request.audit();
    let op = match current_role(relay, &op).await {
        Ok(op) => op,
        Err(e) => {
            let _ = audit(relay, &op, line, format!("refused: {}", e.message)).await;
            reply.fail(e.code, e.message).await;
            return "refused";
        }
    };
    let needed = request.role();
    if op.role < needed {
        let why = format!(
            "{} may not {}: needs role {needed} or above, {} has {}",
            op.name, line.action, op.name, op.role
        );
        let _ = audit(relay, &op, line, format!("forbidden: {why}")).await;
        reply.fail(ErrorCode::Forbidden, why).await;
        return "forbidden";
    }
    // Nothing is done that could not be audited in a chain a relay wrote.
    if let Err(why) = relay.audit_guard().await {
        let _ = audit(relay, &op, line, format!("refused: {why}")).await;
        reply.fail(ErrorCode::Internal, why).await;
        return "refused";
    }
    let ctx = Ctx {
        relay,
        operator: &op,
    };
    match request.handle(&ctx, &mut reply).await {
        Ok(outcome) => match audit(relay, &op, line, outcome.0).await {
            Ok(()) => {
                let _ = reply.release().await;
                "ok"
            }
            Err(why) => {
                reply
                    .fail(
                        ErrorCode::Internal,
                        format!(
                            "the relay cannot write this request's audit entry, so it withholds \
                             the answer (anything the request changed is done, unaudited): {why}"
                        ),
                    )
                    .await;
                "unaudited"
            }
        },
        Err(e) => {
            let _ = audit(relay, &op, line, e.audit_text()).await;
            reply.fail(e.code, e.message).await;
            "error"
        }
    }
}

/// The operator with the role the database holds now; refused when the
/// operator is no longer on record or revoked (their connection is being
/// cut off too).
async fn current_role(relay: &Relay, op: &Operator) -> Result<Operator, RelayError> {
    match relay.store.operator(&op.name).await? {
        Some(o) if o.revoked_at.is_none() => Ok(Operator {
            name: op.name.clone(),
            role: o.role,
        }),
        Some(_) => Err(RelayError::new(
            ErrorCode::Revoked,
            format!("operator {} has been revoked by the relay admin", op.name),
        )),
        None => Err(RelayError::new(
            ErrorCode::Unauthenticated,
            format!("no operator named `{}` at this relay", op.name),
        )),
    }
}

async fn audit(
    relay: &Relay,
    op: &Operator,
    line: AuditLine,
    outcome: String,
) -> Result<(), String> {
    relay
        .audit_checked(AuditEntry {
            who: op.name.clone(),
            role: Some(op.role.as_str().into()),
            agent: line.agent,
            action: line.action,
            args: line.args,
            outcome,
        })
        .await
}
