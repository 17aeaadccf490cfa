//! First contact of an agent: one `enroll` request on the enrollment ALPN.
//!
//! The agent sent its CSR and token; the relay checks the token (known, not
//! expired, not used up — told apart), that the name is free, signs the CSR
//! with its CA and answers with the certificate and the CA. The connection
//! carries nothing else and is closed afterwards.
//!
//! The peer is not authenticated: its request is read with a small frame
//! cap, rate-limited per source address, and its size and name checked
//! before anything of it is logged, audited or stored.

use crate::state::Relay;
use crate::store::{AuditEntry, EnrollRefusal, Signed, TokenError};
use crate::token::Token;
use firstline_net::identity::valid_name;
use firstline_net::stream::accept_request;
use firstline_net::FramedSend;
use firstline_proto::text::printable;
use firstline_proto::{limits, ErrorCode, Message};
use quinn::{Connection, VarInt};
use std::sync::Arc;
use std::time::Duration;

pub async fn handle(relay: Arc<Relay>, conn: Connection) {
    let remote = conn.remote_address();
    let timeout = relay.first_message_timeout();
    match accept_request(&conn, timeout, limits::ENROLL_FRAME).await {
        Ok(Some((
            Message::Enroll {
                token,
                name,
                csr_pem,
            },
            send,
            _recv,
        ))) => {
            // Nothing from this unauthenticated peer is logged, audited or
            // stored before it is checked: sizes, the name's alphabet, the
            // source's rate.
            let outcome = match screen(&relay, remote, &token, &name, &csr_pem) {
                // No certificate is issued that could not be audited.
                Ok(()) => match relay.audit_guard().await {
                    Ok(()) => enroll(&relay, &token, &name, &csr_pem).await,
                    Err(why) => Err((ErrorCode::Internal, why)),
                },
                Err(refusal) => Err(refusal),
            };
            let shown = if valid_name(&name) {
                name.clone()
            } else {
                format!("(invalid name, {} bytes)", name.len())
            };
            let text = match &outcome {
                Ok(_) => "enrolled".to_string(),
                Err((_, m)) => format!("refused: {m}"),
            };
            // Every enrollment is audited; refusals once per source and
            // window in full, the rest counted into one more row when the
            // window is over ([`flush_refusals`]): a flood of attempts
            // from any number of addresses cannot fill the audit log.
            let write = match &outcome {
                Ok(_) => true,
                Err((_, why)) => relay
                    .enroll_refusals
                    .count(crate::admission::source(remote.ip()), why),
            };
            if write {
                tracing::info!(%remote, name = %shown, "enrollment {}", printable(&text));
                relay
                    .audit(AuditEntry {
                        who: format!("enrollment from {remote}"),
                        role: None,
                        agent: valid_name(&name).then(|| name.clone()),
                        action: "enroll".into(),
                        args: String::new(),
                        outcome: text,
                    })
                    .await;
            } else {
                tracing::debug!(%remote, name = %shown, "enrollment {}", printable(&text));
            }
            reply(send, outcome).await;
        }
        Ok(Some((other, send, _))) => {
            send.fail(
                ErrorCode::BadRequest,
                format!(
                    "only `enroll` is accepted before enrollment, got `{}`",
                    other.kind()
                ),
            )
            .await;
        }
        Ok(None) => {
            let why = "no enrollment request in time";
            conn.close(
                VarInt::from_u32(ErrorCode::Timeout.quic_code()),
                why.as_bytes(),
            );
            return;
        }
        Err(_) => {}
    }
    // Let the agent read the answer and close first; do not wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    conn.close(VarInt::from_u32(0), b"enrollment done");
}

/// Checks that cost nothing and touch no storage, done before anything
/// else: the source's rate, then the sizes and the name's alphabet.
fn screen(
    relay: &Relay,
    remote: std::net::SocketAddr,
    token: &str,
    name: &str,
    csr_pem: &str,
) -> Result<(), (ErrorCode, String)> {
    if !relay
        .enroll_rate
        .allow(&crate::admission::source(remote.ip()))
    {
        return Err((
            ErrorCode::Refused,
            format!(
                "too many enrollment attempts from {}; wait a minute (enroll_per_minute in relay.toml)",
                remote.ip()
            ),
        ));
    }
    if token.len() > limits::TOKEN_LEN || csr_pem.len() > limits::CSR_LEN {
        return Err((
            ErrorCode::BadRequest,
            "enrollment request too large (token or CSR)".into(),
        ));
    }
    if !valid_name(name) {
        return Err((
            ErrorCode::BadRequest,
            "invalid agent name: use 1-64 letters, digits, `.`, `_` or `-`".into(),
        ));
    }
    Ok(())
}

/// Audit the refused enrollment attempts left out of the audit log
/// ([`crate::admission::Tally`]) once their window is over — every
/// `every`, and all of them when `shutdown` fires.
pub async fn flush_refusals(relay: Arc<Relay>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        write_refusals(&relay, false).await;
    }
}

/// One audit row per source whose window left refusals out (enrollments
/// per source address, renewals per agent).
pub async fn write_refusals(relay: &Relay, all: bool) {
    for left in relay.renew_refusals.due(all) {
        let agent = left.source.clone();
        let who = agent
            .as_ref()
            .map_or_else(|| "other agents".to_string(), |a| format!("agent {a}"));
        let outcome = format!(
            "refused: {} more renewal{} since {} not audited one by one (the last: {})",
            left.count,
            if left.count == 1 { "" } else { "s" },
            crate::clock::rfc3339(left.since),
            left.last
        );
        relay
            .audit(AuditEntry {
                who,
                role: None,
                agent,
                action: "renew-certificate".into(),
                args: String::new(),
                outcome,
            })
            .await;
    }
    for left in relay.enroll_refusals.due(all) {
        let from = left
            .source
            .map_or_else(|| "other sources".to_string(), |ip| ip.to_string());
        let outcome = format!(
            "refused: {} more attempt{} from {from} since {} not audited one by one (the last: {})",
            left.count,
            if left.count == 1 { "" } else { "s" },
            crate::clock::rfc3339(left.since),
            left.last
        );
        tracing::info!("enrollment {}", printable(&outcome));
        relay
            .audit(AuditEntry {
                who: format!("enrollment from {from}"),
                role: None,
                agent: None,
                action: "enroll".into(),
                args: String::new(),
                outcome,
            })
            .await;
    }
}

async fn reply(send: FramedSend, outcome: Result<Message, (ErrorCode, String)>) {
    match outcome {
        Ok(msg) => {
            let _ = send.finish_with(msg).await;
        }
        Err((code, message)) => send.fail(code, message).await,
    }
}

async fn enroll(
    relay: &Relay,
    token: &str,
    name: &str,
    csr_pem: &str,
) -> Result<Message, (ErrorCode, String)> {
    let token = Token::parse(token).map_err(|m| (ErrorCode::TokenUnknown, m))?;
    let ours = relay
        .ca
        .fingerprint()
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    if token.ca_fingerprint != ours {
        return Err((
            ErrorCode::TokenUnknown,
            "this token was made by another relay (its CA fingerprint differs)".into(),
        ));
    }
    let ttl = Duration::from_secs(relay.dir.config.agent_cert_ttl_secs);
    let (ca, agent, csr) = (relay.ca.clone(), name.to_string(), csr_pem.to_string());
    let result = relay
        .store
        .enroll(&token.id, &token.secret_sha256(), name, move || {
            let issued = ca.sign_agent_csr(&agent, &csr, ttl)?;
            Ok(Signed {
                out: issued.cert_pem,
                serial: issued.serial,
                not_after: issued.not_after,
            })
        })
        .await
        .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
    match result {
        Ok(cert_pem) => Ok(Message::Enrolled {
            name: name.to_string(),
            cert_pem,
            ca_pem: relay.ca.cert_pem.clone(),
        }),
        Err(refusal) => Err((refusal_code(&refusal), refusal.to_string())),
    }
}

fn refusal_code(r: &EnrollRefusal) -> ErrorCode {
    match r {
        EnrollRefusal::Token(TokenError::Unknown) => ErrorCode::TokenUnknown,
        EnrollRefusal::Token(TokenError::Expired) => ErrorCode::TokenExpired,
        EnrollRefusal::Token(TokenError::Used) => ErrorCode::TokenUsed,
        EnrollRefusal::Token(TokenError::Revoked) => ErrorCode::TokenRevoked,
        EnrollRefusal::NameTaken(_) => ErrorCode::BadRequest,
        EnrollRefusal::Revoked(_) => ErrorCode::Revoked,
        EnrollRefusal::Unknown(_) => ErrorCode::UnknownAgent,
    }
}
