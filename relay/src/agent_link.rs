//! An agent's live connection, relay side.
//!
//! The agent opens the first stream with `hello`; the relay negotiates the
//! protocol version, answers `welcome` and marks the agent online. After
//! that the relay opens streams to the agent for each routed request, and the
//! agent opens streams to the relay for its own requests (certificate
//! renewal today; monitoring events later).

use crate::incidents;
use crate::server::{close, Relay};
use crate::store::AuditEntry;
use firstline_net::stream::{self, accept_request};
use firstline_net::FramedSend;
use firstline_proto::{negotiate, ErrorCode, Hello, Message, Notice, Welcome};
use firstline_proto::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use quinn::Connection;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(relay: Arc<Relay>, conn: Connection, name: String) {
    let Some(hello) = greet(&relay, &conn, &name).await else {
        return;
    };
    tracing::info!(agent = %name, version = %hello.software, remote = %conn.remote_address(), "agent online");
    loop {
        match stream::accept(&conn).await {
            Ok(incoming) => {
                let (relay, name) = (relay.clone(), name.clone());
                tokio::spawn(async move {
                    if let Some((msg, send, _recv)) =
                        incoming.first(relay.first_message_timeout()).await
                    {
                        handle(&relay, &name, msg, send).await;
                    }
                });
            }
            Err(e) => {
                tracing::info!(agent = %name, "agent offline: {}", firstline_net::endpoint::describe_connection_error(&e));
                break;
            }
        }
    }
    relay.registry.agent_offline(&name, &conn);
    let _ = relay.store.agent_left(&name);
}

/// Read `hello`, answer `welcome`, register the agent.
async fn greet(relay: &Relay, conn: &Connection, name: &str) -> Option<Hello> {
    let (msg, send, _recv) = match accept_request(conn, relay.first_message_timeout()).await {
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
    let Message::Hello(hello) = msg else {
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
    if let Err(e) = relay
        .store
        .agent_seen(name, &hello.software, &hello.os, &hello.hostname)
    {
        tracing::error!("cannot record agent {name}: {e}");
    }
    relay.registry.agent_online(name, conn.clone());
    let welcome = Welcome {
        version,
        name: name.to_string(),
        capabilities: vec![],
    };
    send.finish_with(Message::Welcome(welcome)).await.ok()?;
    Some(hello)
}

/// A request the agent made of the relay.
async fn handle(relay: &Relay, name: &str, msg: Message, send: FramedSend) {
    match msg {
        Message::Events { events } => {
            let window = relay.dir.config.reopen_window_secs as i64;
            let outcome = relay.ticket_tx(|tx| {
                let mut ingested = incidents::ingest(&**tx, name, &events, window)?;
                let changes = std::mem::take(&mut ingested.changes);
                Ok((ingested, changes))
            });
            match outcome {
                Ok(ingested) => {
                    for ev in &ingested.alerts {
                        relay.notify(Notice {
                            at: ev.result.at.clone(),
                            kind: format!("alert_{}", ev.kind.as_str()),
                            agent: Some(name.to_string()),
                            ticket: None,
                            text: format!(
                                "{name} {}: {} {}",
                                ev.monitor, ev.result.status, ev.result.summary
                            ),
                        });
                    }
                    let _ = send
                        .finish_with(Message::Ack {
                            upto: ingested.upto,
                        })
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
            let ttl = Duration::from_secs(relay.dir.config.agent_cert_ttl_secs);
            let outcome = relay
                .ca
                .sign_agent_csr(name, &csr_pem, ttl)
                .and_then(|issued| {
                    relay
                        .store
                        .record_cert(&issued.serial, "agent", name, issued.not_after)?;
                    Ok(issued)
                });
            let text = match &outcome {
                Ok(i) => format!("renewed, serial {}", i.serial),
                Err(e) => format!("failed: {e:#}"),
            };
            let _ = relay.store.audit(&AuditEntry {
                who: &format!("agent {name}"),
                role: None,
                agent: Some(name),
                action: "renew-certificate",
                args: "",
                outcome: &text,
            });
            match outcome {
                Ok(issued) => {
                    let _ = send
                        .finish_with(Message::Renewed {
                            cert_pem: issued.cert_pem,
                        })
                        .await;
                }
                Err(e) => send.fail(ErrorCode::BadRequest, format!("{e:#}")).await,
            }
        }
        other => {
            send.fail(
                ErrorCode::BadRequest,
                format!("agents may not send `{}`", other.kind()),
            )
            .await
        }
    }
}
