//! `firstline-relay serve`: the QUIC endpoint, the accept loop and the
//! dispatch of each connection by who it is.
//!
//! Every connection is classified once, from the handshake: the enrollment
//! ALPN goes to [`crate::enroll`]; everything else must present a client
//! certificate issued (and not revoked) by this relay, whose identity sends
//! it to [`crate::agent_link`] or [`crate::console`].

use crate::admission::Slot;
use crate::cluster::Inbound;
use crate::config::RelayDir;
use crate::state::{close, Relay};
use crate::store::{CertStatus, PeerKind};
use anyhow::{Context, Result};
use firstline_net::endpoint;
use firstline_net::Identity;
use firstline_proto::text::printable;
use firstline_proto::ErrorCode;
use quinn::{Connection, Endpoint, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running relay: its address and the way to stop it.
pub struct RelayHandle {
    pub addr: SocketAddr,
    pub relay: Arc<Relay>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Stop accepting, close every connection, wait for handlers to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Bind the endpoint and start serving in the background.
pub async fn start(dir: RelayDir) -> Result<RelayHandle> {
    let mut relay = Relay::load(dir)?;
    tracing::info!(store = %relay.store.describe(), "store open");
    // The knowledge base read once now, so that its problems are in the
    // log at start (again only when the folder changes).
    crate::kb::current_async(relay.dir.kb_dir()).await;
    let fingerprint = relay.ca.fingerprint()?;
    let (cluster, inbound) = crate::cluster::Cluster::start(
        &relay.dir,
        &fingerprint,
        relay.notices.clone(),
        relay.metrics.clone(),
    )
    .await?;
    relay.cluster = cluster;
    let relay = Arc::new(relay);
    let endpoint = match bind(&relay) {
        Ok(e) => e,
        Err(e) => {
            relay.cluster.shutdown().await;
            return Err(e);
        }
    };
    let addr = endpoint.local_addr()?;
    let metrics = match relay.dir.config.metrics_listen {
        Some(at) => match crate::metrics::bind(at).await {
            Ok(l) => Some(l),
            Err(e) => {
                relay.cluster.shutdown().await;
                return Err(e);
            }
        },
        None => None,
    };
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(run(relay.clone(), endpoint, rx, inbound, metrics));
    Ok(RelayHandle {
        addr,
        relay,
        shutdown,
        task,
    })
}

fn bind(relay: &Relay) -> Result<Endpoint> {
    let dir = &relay.dir;
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let chain = firstline_net::pem::certs(&(read(dir.server_cert())? + &relay.ca.cert_pem))?;
    let key = firstline_net::pem::key(&read(dir.server_key())?)?;
    let ca = firstline_net::pem::certs(&relay.ca.cert_pem)?;
    let metrics = relay.metrics.clone();
    let tls =
        firstline_net::tls::server_config(chain, key, &ca, move || metrics.session_resumed())?;
    let reset = dir.load_reset_secret()?;
    Ok(endpoint::server(
        tls,
        dir.config.listen,
        dir.config.limits(),
        &reset,
    )?)
}

async fn run(
    relay: Arc<Relay>,
    endpoint: Endpoint,
    mut shutdown: watch::Receiver<bool>,
    inbound: Inbound,
    metrics: Option<tokio::net::TcpListener>,
) {
    let mut handlers = JoinSet::new();
    let metrics = metrics.map(|listener| {
        let counted = relay.clone();
        tokio::spawn(crate::metrics::serve(
            listener,
            crate::metrics::Source {
                metrics: relay.metrics.clone(),
                store: relay.store.clone(),
                agents_online: Box::new(move || counted.registry.agent_count()),
            },
        ))
    });
    let poller = tokio::spawn(poll_revocations(relay.clone()));
    let queue_sweep = tokio::spawn(crate::queue::sweep(relay.clone()));
    let cluster = tokio::spawn(from_other_relays(relay.clone(), inbound));
    let central = tokio::spawn(crate::central::follow(relay.clone()));
    let refusals = tokio::spawn(crate::enroll::flush_refusals(
        relay.clone(),
        Duration::from_secs(5),
    ));
    let webhook = tokio::spawn(crate::webhook::deliver(
        relay.store.clone(),
        relay.dir.config.clone(),
        relay.webhook_wake.clone(),
    ));
    let helpdesk = tokio::spawn(crate::helpdesk::run(
        relay.clone(),
        relay.helpdesk_wake.clone(),
    ));
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if let Some(slot) = admit(&relay, incoming.remote_address()) {
                    handlers.spawn(handle_incoming(relay.clone(), incoming, slot));
                } else {
                    incoming.refuse();
                }
            }
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    poller.abort();
    queue_sweep.abort();
    webhook.abort();
    helpdesk.abort();
    cluster.abort();
    central.abort();
    refusals.abort();
    crate::enroll::write_refusals(&relay, true).await;
    if let Some(m) = metrics {
        m.abort();
    }
    relay.cluster.shutdown().await;
    endpoint.close(VarInt::from_u32(0), b"relay shutting down");
    while handlers.join_next().await.is_some() {}
    endpoint.wait_idle().await;
}

/// A slot for a new connection, or `None` when the relay holds as many
/// as it may — in all, unauthenticated, from this address or from its
/// network. Refusals are logged at most once a second (with a count), so a
/// flood does not write the log at its own rate.
fn admit(relay: &Relay, remote: SocketAddr) -> Option<Slot> {
    let c = &relay.dir.config;
    match relay.gate.admit(remote.ip(), c.bounds()) {
        Ok(slot) => Some(slot),
        Err(full) => {
            if let Some(n) = relay.refused_log.tick() {
                let (from_address, from_network) = relay.gate.unauthenticated_from(remote.ip());
                tracing::warn!(
                    %remote,
                    live = relay.gate.live(),
                    unauthenticated = relay.gate.unauthenticated(),
                    from_address,
                    from_network,
                    refused = n,
                    "connection refused: limit reached ({})",
                    full.key()
                );
            }
            None
        }
    }
}

async fn handle_incoming(relay: Arc<Relay>, incoming: quinn::Incoming, mut slot: Slot) {
    let remote = incoming.remote_address();
    // Boxed, as the other steps below: the task of a connection lives as
    // long as the connection, and its size is that of its largest step.
    let conn = match Box::pin(std::future::IntoFuture::into_future(incoming)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, "handshake failed: {e}");
            return;
        }
    };
    // Until here, and for an enrollment throughout, the peer may open one
    // stream and have a few KiB in flight (`endpoint::server`).
    if endpoint::alpn(&conn).as_deref() == Some(firstline_proto::ALPN_ENROLL) {
        Box::pin(crate::enroll::handle(relay, conn)).await;
        return;
    }
    match Box::pin(authenticate(&relay, &conn)).await {
        Ok(identity) => {
            slot.authenticated();
            match identity {
                Identity::Agent { name } => {
                    endpoint::authenticated(&conn, endpoint::AGENT_STREAMS);
                    Box::pin(crate::agent_link::run(relay, conn, name)).await
                }
                Identity::Operator { name, role } => {
                    let streams = relay.dir.config.limits().max_streams;
                    endpoint::authenticated(&conn, streams);
                    Box::pin(crate::console::run(relay, conn, name, role)).await
                }
            }
        }
        Err((code, reason)) => {
            tracing::warn!(%remote, "refused: {}", printable(&reason));
            close(&conn, code, &reason);
            let who = endpoint::peer_info(&conn)
                .and_then(|i| i.identity)
                .map_or_else(|| "peer without a certificate".into(), |i| i.describe());
            let refusals = &relay.refusals;
            let logged =
                refusals.record_checkpoint(&relay.store, &relay.audit_paths, remote, &who, &reason);
            match Box::pin(logged).await {
                Ok(Some(Some(line))) => relay.cluster.publish_checkpoint(&line),
                Ok(_) => {}
                Err(e) => tracing::error!("cannot audit a refused connection: {e:#}"),
            }
        }
    }
}

/// Identity of an authenticated connection, or why it is refused.
async fn authenticate(relay: &Relay, conn: &Connection) -> Result<Identity, (ErrorCode, String)> {
    let Some(info) = endpoint::peer_info(conn) else {
        return Err((
            ErrorCode::Unauthenticated,
            "a client certificate issued by this relay is required: enroll the agent \
             (`firstline-agent enroll`) or log in with an operator credential"
                .into(),
        ));
    };
    // rustls checks the dates in a full handshake only: a TLS 1.3 session
    // resumed from a ticket skips the certificate verifier, so an expired
    // certificate could come back through a session made while it was
    // valid (tests/resume.rs). The same clock rustls uses.
    let now = crate::clock::unix_now();
    if now < info.not_before || now > info.not_after {
        return Err((
            ErrorCode::Unauthenticated,
            format!(
                "certificate {} is expired or not yet valid: renew it, or enroll or log in again",
                info.serial
            ),
        ));
    }
    let Some(identity) = info.identity else {
        return Err((
            ErrorCode::Unauthenticated,
            "the client certificate carries no firstline identity".into(),
        ));
    };
    let (kind, name) = match &identity {
        Identity::Agent { name } => (PeerKind::Agent, name),
        Identity::Operator { name, .. } => (PeerKind::Operator, name),
    };
    match relay.store.cert_status(&info.serial, kind, name).await {
        Ok(CertStatus::Valid) => Ok(identity),
        Ok(CertStatus::Revoked) => Err((
            ErrorCode::Revoked,
            format!(
                "{} has been revoked by the relay admin",
                identity.describe()
            ),
        )),
        Ok(CertStatus::Unknown) => Err((
            ErrorCode::Unauthenticated,
            format!("certificate {} is not on this relay's records", info.serial),
        )),
        Err(e) => Err((ErrorCode::Internal, format!("relay database error: {e}"))),
    }
}

/// Cut off peers revoked by `firstline-relay agent|operator revoke` (or
/// agents removed by `agent remove`), which runs as a separate process and
/// only writes the database.
async fn poll_revocations(relay: Arc<Relay>) {
    let every = Duration::from_millis(relay.dir.config.revocation_poll_ms.max(50));
    let mut seen = match relay.store.revocations_since(0).await {
        Ok(rows) => rows.last().map(|r| r.seq).unwrap_or(0),
        Err(_) => 0,
    };
    loop {
        tokio::time::sleep(every).await;
        let rows = match relay.store.revocations_since(seen).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("cannot read revocations: {e}");
                continue;
            }
        };
        for r in rows {
            seen = r.seq;
            let Some(kind) = PeerKind::parse(&r.kind) else {
                continue;
            };
            let name = r.name;
            // `agent remove` of a live agent deletes its record and cuts it
            // off through this table too.
            let removed =
                kind == PeerKind::Agent && matches!(relay.store.agent(&name).await, Ok(None));
            let reason = if removed {
                format!("agent {name} was removed by the relay admin; enroll it again to reconnect")
            } else {
                format!("{kind} {name} has been revoked by the relay admin")
            };
            let n = relay.cut_off(kind, &name, &reason).await;
            tracing::info!(%kind, %name, connections = n, "revoked");
        }
    }
}

/// Act on what the other relays of the deployment send: requests for the
/// agents held here (each in its own task), revocations made through them
/// (cut off here at once, after checking the database: a message alone
/// cuts nothing), and their audit checkpoints (kept in this relay's
/// anchor when signed with its key).
async fn from_other_relays(relay: Arc<Relay>, inbound: Inbound) {
    let Inbound {
        mut forwards,
        mut revocations,
        mut checkpoints,
    } = inbound;
    let mut requests = JoinSet::new();
    loop {
        tokio::select! {
            Some(f) = forwards.recv() => {
                let relay = relay.clone();
                requests.spawn(async move { crate::routing::serve_forwarded(&relay, f).await });
            }
            Some(r) = revocations.recv() => {
                let Some(kind) = PeerKind::parse(&r.kind) else { continue };
                let reason = match kind {
                    PeerKind::Agent if matches!(relay.store.agent(&r.name).await, Ok(None)) => format!(
                        "agent {} was removed by the relay admin; enroll it again to reconnect",
                        r.name
                    ),
                    _ => format!("{kind} {} has been revoked by the relay admin", r.name),
                };
                let n = relay.cut_off(kind, &r.name, &reason).await;
                tracing::info!(%kind, name = %r.name, from = %r.relay, connections = n, "revoked through another relay");
            }
            Some(line) = checkpoints.recv() => {
                let paths = relay.audit_paths.clone();
                let kept = tokio::task::spawn_blocking(move || crate::audit::keep_checkpoint(&paths, &line)).await;
                match kept {
                    Ok(Ok(crate::audit::Kept::Kept)) => {}
                    // Late (a newer checkpoint is here already) or replayed.
                    Ok(Ok(crate::audit::Kept::NotNew)) => tracing::debug!("cluster: an audit checkpoint not newer than this relay's newest was not kept"),
                    Ok(Ok(crate::audit::Kept::Unsigned)) => tracing::warn!("cluster: an audit checkpoint not signed with this relay's audit key was ignored (relays of one deployment share audit-key.pk8: `init --join` copies it)"),
                    Ok(Err(e)) => tracing::error!("cannot keep another relay's audit checkpoint: {e:#}"),
                    Err(_) => {}
                }
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            else => break,
        }
    }
}
