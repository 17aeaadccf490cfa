//! Console requests about the relay's lifecycle, for admins: enrollment
//! tokens (`list_tokens`, `token_create`, `token_revoke`), operators
//! (`list_operators`, `operator_role`) and agents' records
//! (`list_agent_records`, `agent_remove`). The role check (admin only,
//! `crate::policy`) and the audit entry happen in [`crate::operator`]
//! before and after these run; the operations are those of the offline
//! commands ([`crate::admin`]), so both refuse the same things alike.

use crate::admin::{self, Refused};
use crate::answer::send_parts;
use crate::operator::{internal, sent_outcome, Failure};
use crate::server::Relay;
use firstline_net::FramedSend;
use firstline_proto::{Message, Role};
use std::time::Duration;

/// An operation's error as a console failure: a [`Refused`] keeps its
/// code, anything else is the relay's own error.
fn failure(e: anyhow::Error, send: FramedSend) -> Failure {
    match e.downcast::<Refused>() {
        Ok(r) => (r.code, r.message, send),
        Err(e) => internal(e, send),
    }
}

/// The answer and the audit outcome of a one-message answer.
async fn answer(send: FramedSend, msg: Message, done: String) -> Result<String, Failure> {
    let sent = send.finish_with(msg).await;
    Ok(sent_outcome(sent, done))
}

pub async fn list_tokens(relay: &Relay, send: FramedSend) -> Result<String, Failure> {
    match admin::list_tokens(&relay.store) {
        Ok(tokens) => {
            let n = tokens.len();
            let sent = send_parts(send, None, tokens, |tokens| Message::Tokens { tokens }).await;
            Ok(sent_outcome(sent, format!("ok: {n} tokens")))
        }
        Err(e) => Err(failure(e, send)),
    }
}

/// A new token; the audit entry names its id (in the outcome), never its
/// secret.
pub async fn create_token(
    relay: &Relay,
    uses: u32,
    ttl_secs: Option<u64>,
    send: FramedSend,
) -> Result<String, Failure> {
    let ttl = Duration::from_secs(ttl_secs.unwrap_or(relay.dir.config.token_ttl_secs));
    let created = admin::new_token(&relay.store, &relay.ca, uses, ttl).and_then(|(token, _)| {
        let info = relay
            .store
            .tokens()?
            .into_iter()
            .find(|t| t.id == token.id)
            .ok_or_else(|| anyhow::anyhow!("token {} vanished", token.id))?;
        Ok((token, info))
    });
    let (token, info) = match created {
        Ok(c) => c,
        Err(e) => return Err(failure(e, send)),
    };
    let Some(relay_addr) = relay.dir.config.dialable_public_addr() else {
        // The token is made; only the hint is missing.
        tracing::warn!("{}", admin::no_public_addr(&relay.dir));
        let done = format!(
            "ok: {} (no public_addr for the hint)",
            admin::token_args(&info.id, uses, ttl)
        );
        let msg = Message::TokenCreated {
            token: token.to_string(),
            info,
            relay: String::new(),
        };
        return answer(send, msg, done).await;
    };
    let done = format!(
        "ok: {}, valid until {}",
        admin::token_args(&info.id, uses, ttl),
        info.expires_at
    );
    let msg = Message::TokenCreated {
        token: token.to_string(),
        info,
        relay: relay_addr,
    };
    answer(send, msg, done).await
}

pub async fn revoke_token(relay: &Relay, id: &str, send: FramedSend) -> Result<String, Failure> {
    match admin::revoke_token(&relay.store, id) {
        Ok(done) => {
            let outcome = admin::revoke_outcome(&done);
            answer(send, Message::TokenRevoked { token: done.0 }, outcome).await
        }
        Err(e) => Err(failure(e, send)),
    }
}

pub async fn list_operators(relay: &Relay, send: FramedSend) -> Result<String, Failure> {
    match relay.store.operators() {
        Ok(mut operators) => {
            for o in &mut operators {
                o.online = relay.registry.operator_is_online(&o.name);
            }
            let n = operators.len();
            let sent = send_parts(send, None, operators, |operators| Message::Operators {
                operators,
            })
            .await;
            Ok(sent_outcome(sent, format!("ok: {n} operators")))
        }
        Err(e) => Err(internal(e, send)),
    }
}

pub async fn set_role(
    relay: &Relay,
    name: &str,
    role: Role,
    send: FramedSend,
) -> Result<String, Failure> {
    match admin::set_role(&relay.store, name, role) {
        Ok(done) => {
            let outcome = admin::role_outcome(&done);
            let (mut operator, _) = done;
            operator.online = relay.registry.operator_is_online(name);
            answer(send, Message::OperatorUpdated { operator }, outcome).await
        }
        Err(e) => Err(failure(e, send)),
    }
}

pub async fn list_agent_records(relay: &Relay, send: FramedSend) -> Result<String, Failure> {
    match relay.store.agent_records() {
        Ok(mut agents) => {
            for a in &mut agents {
                a.online = relay.registry.is_online(&a.name);
            }
            let n = agents.len();
            let sent = send_parts(send, None, agents, |agents| Message::AgentRecords {
                agents,
            })
            .await;
            Ok(sent_outcome(sent, format!("ok: {n} agents")))
        }
        Err(e) => Err(internal(e, send)),
    }
}

/// Remove an agent's record; a live connection of a freed name is cut at
/// once (the revocation poll would within `revocation_poll_ms` too).
pub async fn remove_agent(relay: &Relay, name: &str, send: FramedSend) -> Result<String, Failure> {
    match admin::remove_agent(&relay.store, name) {
        Ok(removed) => {
            if removed.name_freed {
                let why = format!(
                    "agent {name} was removed by the relay admin; enroll it again to reconnect"
                );
                crate::server::cut_off(relay, "agent", name, &why);
            }
            let outcome = admin::remove_outcome(&removed);
            let msg = Message::AgentRemoved {
                agent: removed.agent,
                name_freed: removed.name_freed,
                tickets: removed.tickets,
            };
            answer(send, msg, outcome).await
        }
        Err(e) => Err(failure(e, send)),
    }
}
