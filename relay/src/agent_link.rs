//! An agent's live connection, relay side.
//!
//! The agent opens the first stream with `hello`; the relay negotiates the
//! protocol version, answers `welcome` and marks the agent online. After
//! that the relay opens streams to the agent for each routed request, and the
//! agent opens streams to the relay for its own requests (certificate
//! renewal, monitoring events, and the facts it reads of its machine —
//! kernel, addresses, uptime — once after `welcome` — and, for
//! `firstline-help tickets`, the tickets of one of its local users). The relay's first
//! stream carries the agent's central monitor sets ([`crate::central`]). Once it is
//! welcomed, what was queued for it while offline is delivered
//! ([`crate::queue::deliver`]).

use crate::state::{close, Relay};
use crate::store::{AuditEntry, EnrollRefusal, Presence, Signed, StoreError};
use firstline_net::stream::{self, accept_request};
use firstline_net::FramedSend;
use firstline_proto::text::{printable, truncate};
use firstline_proto::{limits, negotiate, ErrorCode, Hello, Message, Welcome};
use firstline_proto::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use quinn::Connection;
use std::sync::Arc;
use std::time::Duration;

/// Held for as long as the agent is connected: the handshake's and the
/// store's futures are boxed so that an idle agent's task keeps only the
/// small state of the accept loop (BENCHMARKS.md "Profiles").
pub async fn run(relay: Arc<Relay>, conn: Connection, name: String) {
    let Some(hello) = Box::pin(greet(&relay, &conn, &name)).await else {
        return;
    };
    tracing::info!(agent = %name, version = %hello.software, remote = %conn.remote_address(), "agent online");
    // Its central monitor sets, on a stream of their own.
    let runs = crate::central::Runs::Said(hello.central_digest.clone());
    crate::central::push_soon(&relay, &name, &conn, runs);
    // What was queued for it while it was offline (`--queue-for`).
    {
        let (relay, name) = (relay.clone(), name.clone());
        tokio::spawn(async move { crate::queue::deliver(&relay, &name).await });
    }
    loop {
        match stream::accept(&conn).await {
            Ok(incoming) => {
                let (relay, name) = (relay.clone(), name.clone());
                tokio::spawn(async move {
                    if let Some((msg, send, recv)) =
                        incoming.first(relay.first_message_timeout()).await
                    {
                        handle(&relay, &name, msg, recv.received(), send).await;
                    }
                });
            }
            Err(e) => {
                tracing::info!(agent = %name, "agent offline: {}", firstline_net::endpoint::describe_connection_error(&e));
                break;
            }
        }
    }
    relay.agent_offline(&name, &conn);
    if let Err(e) = Box::pin(relay.store.agent_left(&name)).await {
        tracing::error!("cannot record agent {name} leaving: {e}");
    }
}

/// Read `hello`, answer `welcome`, register the agent.
async fn greet(relay: &Relay, conn: &Connection, name: &str) -> Option<Hello> {
    let timeout = relay.first_message_timeout();
    let (msg, send, _recv) = match accept_request(conn, timeout, limits::HELLO_FRAME).await {
        Ok(Some(first)) => first,
        _ => {
            close(
                conn,
                ErrorCode::BadRequest,
                "expected `hello` on the first stream",
            );
            return None;
        }
    };
    let Message::Hello(mut hello) = msg else {
        send.fail(ErrorCode::BadRequest, "the first message must be `hello`")
            .await;
        close(
            conn,
            ErrorCode::BadRequest,
            "expected `hello` on the first stream",
        );
        return None;
    };
    let ours = (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION);
    let Some(version) = negotiate(ours, (hello.version_min, hello.version_max)) else {
        let reason = format!(
            "protocol versions {}..={} not supported; this relay speaks {}..={}",
            hello.version_min, hello.version_max, ours.0, ours.1
        );
        send.fail(ErrorCode::UnknownVersion, reason.clone()).await;
        close(conn, ErrorCode::UnknownVersion, &reason);
        return None;
    };
    // What the agent says of itself is shown to technicians: one line each,
    // of a sane length (escaped again wherever it is printed).
    for field in [&mut hello.software, &mut hello.os, &mut hello.hostname] {
        *field = printable(&truncate(field, limits::HELLO_FIELD)).into_owned();
    }
    let presence = Presence {
        version: hello.software.clone(),
        os: hello.os.clone(),
        hostname: hello.hostname.clone(),
    };
    if let Err(e) = relay.store.agent_seen(name, presence).await {
        tracing::error!("cannot record agent {name}: {e}");
    }
    relay.agent_online(name, conn.clone());
    let welcome = Welcome {
        version,
        name: name.to_string(),
        capabilities: vec![],
    };
    send.finish_with(Message::Welcome(welcome)).await.ok()?;
    Some(hello)
}

/// A request the agent made of the relay, `bytes` long on the wire.
async fn handle(relay: &Relay, name: &str, msg: Message, bytes: u64, send: FramedSend) {
    match msg {
        Message::Events { events } => {
            if events.len() > limits::EVENTS_PER_MESSAGE {
                let why = format!(
                    "{} events in one message; send at most {}",
                    events.len(),
                    limits::EVENTS_PER_MESSAGE
                );
                send.fail(ErrorCode::BadRequest, why).await;
                return;
            }
            // Paced per agent, by events and by bytes: a flood waits for
            // its acknowledgement (and stays in the agent's outbox
            // meanwhile); nothing is dropped.
            let key = name.to_string();
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            let wait = relay
                .event_pace
                .reserve(&key, events.len())
                .max(relay.event_bytes.reserve(&key, bytes));
            if !wait.is_zero() {
                tracing::debug!(agent = %name, ?wait, "pacing events");
                tokio::time::sleep(wait).await;
            }
            let events: Vec<_> = events.into_iter().map(|e| e.bounded()).collect();
            let window = relay.dir.config.reopen_window_secs as i64;
            let started = std::time::Instant::now();
            match relay.store.ingest_events(name, events, window).await {
                Ok(ingested) => {
                    let kinds: Vec<&'static str> =
                        ingested.alerts.iter().map(|e| e.kind.as_str()).collect();
                    let took = started.elapsed();
                    relay.metrics.ingested(ingested.applied, &kinds, took);
                    relay.announce(&ingested.changes);
                    for ev in &ingested.alerts {
                        relay.notify(crate::notices::of_alert(name, ev));
                    }
                    let _ = send
                        .finish_with(Message::Ack {
                            upto: ingested.upto,
                        })
                        .await;
                }
                Err(StoreError::Invalid(why)) => {
                    tracing::warn!(agent = %name, "events refused: {why}");
                    send.fail(ErrorCode::BadRequest, format!("events refused: {why}"))
                        .await;
                }
                Err(e) => {
                    tracing::error!(agent = %name, "cannot ingest events: {e:#}");
                    send.fail(
                        ErrorCode::Internal,
                        format!("relay cannot store events: {e}"),
                    )
                    .await;
                }
            }
        }
        Message::Renew { csr_pem } => {
            if !relay.renew_rate.allow(&name.to_string()) {
                let why = format!(
                    "too many certificate renewals: at most {} at once and {} a minute \
                     after that; try again in a minute",
                    crate::state::RENEWAL_BURST,
                    crate::state::RENEWALS_PER_MINUTE
                );
                // Audited once per agent and window; the others are
                // counted into one more row when the window is over.
                if relay.renew_refusals.count(name.to_string(), &why) {
                    tracing::warn!(agent = %name, "renewal refused: {why}");
                    relay
                        .audit(AuditEntry {
                            who: format!("agent {name}"),
                            role: None,
                            agent: Some(name.into()),
                            action: "renew-certificate".into(),
                            args: String::new(),
                            outcome: format!("refused: {why}"),
                        })
                        .await;
                }
                send.fail(ErrorCode::Refused, why).await;
                return;
            }
            let ttl = Duration::from_secs(relay.dir.config.agent_cert_ttl_secs);
            // Checked and recorded in one transaction with the agent's
            // revocation state: a revoked agent is never re-issued a
            // certificate, however the renewal and the revocation interleave.
            let (ca, agent) = (relay.ca.clone(), name.to_string());
            let outcome = relay
                .store
                .renew_agent(name, move || {
                    let issued = ca.sign_agent_csr(&agent, &csr_pem, ttl)?;
                    Ok(Signed {
                        serial: issued.serial.clone(),
                        not_after: issued.not_after,
                        out: issued,
                    })
                })
                .await;
            let outcome = match outcome {
                Ok(Ok(issued)) => Ok(issued),
                Ok(Err(refusal)) => Err((refusal_code(&refusal), refusal.to_string())),
                Err(e) => Err((ErrorCode::BadRequest, e.to_string())),
            };
            // No certificate goes out that could not be audited (checked
            // after signing, before sending: the renewal is only recorded).
            let outcome = match (outcome, relay.audit_guard().await) {
                (Ok(_), Err(why)) => Err((ErrorCode::Internal, why)),
                (outcome, _) => outcome,
            };
            let text = match &outcome {
                Ok(i) => format!("renewed, serial {}", i.serial),
                Err((_, e)) => format!("refused: {e}"),
            };
            relay
                .audit(AuditEntry {
                    who: format!("agent {name}"),
                    role: None,
                    agent: Some(name.into()),
                    action: "renew-certificate".into(),
                    args: String::new(),
                    outcome: text,
                })
                .await;
            match outcome {
                Ok(issued) => {
                    let _ = send
                        .finish_with(Message::Renewed {
                            cert_pem: issued.cert_pem,
                        })
                        .await;
                }
                Err((code, why)) => send.fail(code, why).await,
            }
        }
        Message::Facts(facts) => match relay.store.agent_facts(name, facts.bounded()).await {
            Ok(()) => {
                let _ = send.finish_with(Message::Done {}).await;
            }
            Err(e) => {
                tracing::error!(agent = %name, "cannot record facts: {e:#}");
                send.fail(
                    ErrorCode::Internal,
                    format!("relay cannot store facts: {e}"),
                )
                .await;
            }
        },
        // `firstline-help tickets`: only this agent's (the certificate's
        // name, never one the agent says) tickets of that local user.
        Message::HelpTickets { user } => {
            if user.is_empty() || user.len() > firstline_proto::event::HELP_USER {
                send.fail(
                    ErrorCode::BadRequest,
                    "help_tickets: a local user name of 1 to 64 bytes",
                )
                .await;
                return;
            }
            match relay.store.help_tickets(name, &user, HELP_TICKETS).await {
                Ok(tickets) => {
                    let _ = send.finish_with(Message::HelpTicketsList { tickets }).await;
                }
                Err(e) => {
                    tracing::error!(agent = %name, "cannot list a user's tickets: {e:#}");
                    send.fail(
                        ErrorCode::Internal,
                        format!("relay cannot list tickets: {e}"),
                    )
                    .await;
                }
            }
        }
        // `firstline-help run`: the article a verdict names, for the
        // person at the machine (articles are no secret; not audited).
        Message::KbShow { id } => match crate::kb::article(relay.dir.kb_dir(), &id).await {
            Ok(article) => {
                let _ = send.finish_with(Message::KbArticle(article)).await;
            }
            Err(e) => send.fail(e.code, e.message).await,
        },
        other => {
            send.fail(
                ErrorCode::BadRequest,
                format!("agents may not send `{}`", other.kind()),
            )
            .await
        }
    }
}

/// Most tickets `firstline-help tickets` gets (the newest).
const HELP_TICKETS: usize = 20;

fn refusal_code(r: &EnrollRefusal) -> ErrorCode {
    match r {
        EnrollRefusal::Revoked(_) => ErrorCode::Revoked,
        _ => ErrorCode::BadRequest,
    }
}
