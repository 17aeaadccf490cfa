//! `firstline-relay serve`: the QUIC endpoint, the accept loop and the
//! dispatch of each connection by who it is.
//!
//! Every connection is classified once, from the handshake: the enrollment
//! ALPN goes to [`crate::enroll`]; everything else must present a client
//! certificate issued (and not revoked) by this relay, whose identity sends
//! it to [`crate::agent_link`] or [`crate::operator`].

use crate::admission::{Gate, RateLimiter, Slot};
use crate::audit::RefusalLog;
use crate::ca::Ca;
use crate::config::RelayDir;
use crate::registry::Registry;
use crate::store::{CertStatus, Store};
use crate::tickets::Change;
use anyhow::{Context, Result};
use firstline_net::endpoint;
use firstline_net::Identity;
use firstline_proto::text::printable;
use firstline_proto::ErrorCode;
use firstline_proto::Notice;
use quinn::{Connection, Endpoint, VarInt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinSet;

/// Everything a connection handler needs, shared.
pub struct Relay {
    pub dir: RelayDir,
    pub store: Store,
    pub ca: Ca,
    pub registry: Registry,
    /// Live notices for `firstline watch`; slow watchers miss old ones.
    pub notices: broadcast::Sender<Notice>,
    /// Wakes the webhook sender when a delivery is queued.
    pub webhook_wake: Notify,
    /// Live and not-yet-authenticated connections, bounded.
    pub gate: Arc<Gate>,
    /// Enrollment attempts per source address.
    pub enroll_rate: RateLimiter<IpAddr>,
    /// Monitoring events per agent (paced, never dropped).
    pub event_pace: RateLimiter<String>,
    /// Refused connections are audited, at most one entry per identity a minute.
    pub refusals: RefusalLog,
}

/// Notices kept for a slow watcher before it starts missing some.
const NOTICE_BUFFER: usize = 1024;

impl Relay {
    /// Change tickets in one transaction: the changes are queued for the
    /// webhook in the same transaction, then announced to watchers.
    pub fn ticket_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> anyhow::Result<(T, Vec<Change>)>,
    ) -> anyhow::Result<T> {
        let webhook = self.dir.config.webhook_url.is_some();
        let name = &self.dir.config.name;
        let (out, changes) = self.store.with_tx(|tx| {
            let (out, changes) = f(tx)?;
            if webhook {
                for c in &changes {
                    crate::webhook::enqueue(tx, name, c)?;
                }
            }
            Ok((out, changes))
        })?;
        if webhook && !changes.is_empty() {
            self.webhook_wake.notify_one();
        }
        for c in changes {
            self.notify(Notice {
                at: c.entry.at.clone(),
                kind: format!("ticket_{}", c.entry.kind),
                agent: c.ticket.agent.clone(),
                ticket: Some(c.ticket.id),
                text: notice_text(&c),
            });
        }
        Ok(out)
    }

    /// Tell every watcher (no watcher is fine).
    pub fn notify(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }

    pub fn first_message_timeout(&self) -> Duration {
        Duration::from_secs(self.dir.config.first_message_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.dir.config.request_timeout_secs)
    }
}

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
    let relay = Arc::new(load(dir)?);
    let endpoint = bind(&relay)?;
    let addr = endpoint.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(run(relay.clone(), endpoint, rx));
    Ok(RelayHandle {
        addr,
        relay,
        shutdown,
        task,
    })
}

fn load(dir: RelayDir) -> Result<Relay> {
    let store = Store::open(&dir.database())?;
    let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
    let c = &dir.config;
    let enroll_rate = RateLimiter::per_minute(c.enroll_per_minute);
    let events = f64::from(c.agent_events_per_sec);
    // A burst of ten seconds' worth: an agent back from an outage delivers
    // its first batches at once, and is paced after that.
    let event_pace = RateLimiter::new(events, events * 10.0);
    Ok(Relay {
        dir,
        store,
        ca,
        registry: Registry::default(),
        notices: broadcast::channel(NOTICE_BUFFER).0,
        webhook_wake: Notify::new(),
        gate: Arc::default(),
        enroll_rate,
        event_pace,
        refusals: RefusalLog::default(),
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
    let tls = firstline_net::tls::server_config(chain, key, &ca)?;
    let reset = dir.load_reset_secret()?;
    Ok(endpoint::server(
        tls,
        dir.config.listen,
        dir.config.limits(),
        &reset,
    )?)
}

async fn run(relay: Arc<Relay>, endpoint: Endpoint, mut shutdown: watch::Receiver<bool>) {
    let mut handlers = JoinSet::new();
    let poller = tokio::spawn(poll_revocations(relay.clone()));
    let webhook = tokio::spawn(crate::webhook::deliver(relay.clone()));
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
    webhook.abort();
    endpoint.close(VarInt::from_u32(0), b"relay shutting down");
    while handlers.join_next().await.is_some() {}
    endpoint.wait_idle().await;
}

/// A slot for a new connection, or `None` (logged, rate-limited by the
/// log's own cost only) when the relay holds as many as it may.
fn admit(relay: &Relay, remote: SocketAddr) -> Option<Slot> {
    let c = &relay.dir.config;
    let slot = relay
        .gate
        .admit(c.max_connections as usize, c.max_unauthenticated as usize);
    if slot.is_none() {
        tracing::warn!(
            %remote,
            live = relay.gate.live(),
            unauthenticated = relay.gate.unauthenticated(),
            "connection refused: limit reached (max_connections / max_unauthenticated)"
        );
    }
    slot
}

async fn handle_incoming(relay: Arc<Relay>, incoming: quinn::Incoming, mut slot: Slot) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, "handshake failed: {e}");
            return;
        }
    };
    if endpoint::alpn(&conn).as_deref() == Some(firstline_proto::ALPN_ENROLL) {
        crate::enroll::handle(relay, conn).await;
        return;
    }
    match authenticate(&relay, &conn) {
        Ok(identity) => {
            slot.authenticated();
            match identity {
                Identity::Agent { name } => crate::agent_link::run(relay, conn, name).await,
                Identity::Operator { name, role } => {
                    crate::operator::run(relay, conn, name, role).await
                }
            }
        }
        Err((code, reason)) => {
            tracing::warn!(%remote, "refused: {}", printable(&reason));
            close(&conn, code, &reason);
            let who = endpoint::peer_info(&conn)
                .and_then(|i| i.identity)
                .map_or_else(|| "peer without a certificate".into(), |i| i.describe());
            if let Err(e) = relay.refusals.record(&relay.store, remote, &who, &reason) {
                tracing::error!("cannot audit a refused connection: {e:#}");
            }
        }
    }
}

/// Identity of an authenticated connection, or why it is refused.
fn authenticate(relay: &Relay, conn: &Connection) -> Result<Identity, (ErrorCode, String)> {
    let Some(info) = endpoint::peer_info(conn) else {
        return Err((
            ErrorCode::Unauthenticated,
            "a client certificate issued by this relay is required: enroll the agent \
             (`firstline-agent enroll`) or log in with an operator credential"
                .into(),
        ));
    };
    let Some(identity) = info.identity else {
        return Err((
            ErrorCode::Unauthenticated,
            "the client certificate carries no firstline identity".into(),
        ));
    };
    let (kind, name) = match &identity {
        Identity::Agent { name } => ("agent", name),
        Identity::Operator { name, .. } => ("operator", name),
    };
    match relay.store.cert_status(&info.serial, kind, name) {
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

/// Close a connection with a firstline error code and a reason the peer
/// shows to its user.
pub fn close(conn: &Connection, code: ErrorCode, reason: &str) {
    conn.close(VarInt::from_u32(code.quic_code()), reason.as_bytes());
}

/// Cut off peers revoked by `firstline-relay agent|operator revoke` (or
/// agents removed by `agent remove`), which runs as a separate process and
/// only writes the database.
async fn poll_revocations(relay: Arc<Relay>) {
    let every = Duration::from_millis(relay.dir.config.revocation_poll_ms.max(50));
    let mut seen = match relay.store.revocations_since(0) {
        Ok(rows) => rows.last().map(|r| r.0).unwrap_or(0),
        Err(_) => 0,
    };
    loop {
        tokio::time::sleep(every).await;
        let rows = match relay.store.revocations_since(seen) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("cannot read revocations: {e}");
                continue;
            }
        };
        for (seq, kind, name) in rows {
            seen = seq;
            // `agent remove` of a live agent deletes its record and cuts it
            // off through this table too.
            let removed = kind == "agent" && matches!(relay.store.agent(&name), Ok(None));
            let reason = if removed {
                format!("agent {name} was removed by the relay admin; enroll it again to reconnect")
            } else {
                format!("{kind} {name} has been revoked by the relay admin")
            };
            let n = cut_off(&relay, &kind, &name, &reason);
            tracing::info!(%kind, %name, connections = n, "revoked");
        }
    }
}

/// Close the live connections of `kind` `name` whose certificate is no
/// longer valid; returns how many. A connection made since with a new,
/// valid certificate (an agent removed and enrolled again under its name)
/// stays.
pub fn cut_off(relay: &Relay, kind: &str, name: &str, reason: &str) -> usize {
    let mut n = 0;
    for conn in relay.registry.connections_of(kind, name) {
        let valid = endpoint::peer_info(&conn).is_some_and(|i| {
            matches!(
                relay.store.cert_status(&i.serial, kind, name),
                Ok(CertStatus::Valid)
            )
        });
        if !valid {
            close(&conn, ErrorCode::Revoked, reason);
            n += 1;
        }
    }
    n
}

/// What a ticket notice says, from the entry the change added (not the
/// ticket's title, which an ok result would contradict): `#12 opened: …`,
/// `#12 OK disk /: 40% used`, `#12 status open → resolved: …`, `#12
/// comment by tina: …`, `#12 assigned to bob`, `#12 runbook …: verdict`.
fn notice_text(c: &Change) -> String {
    use firstline_proto::runbook::Verdict;
    use firstline_proto::CheckResult;
    let id = c.ticket.id;
    let e = &c.entry;
    let text = e.body.as_str().map(str::to_string);
    let result = || serde_json::from_value::<CheckResult>(e.body.clone()).ok();
    match e.kind.as_str() {
        "opened" => format!("#{id} opened: {}", c.ticket.title),
        "result" => match result() {
            Some(r) => format!(
                "#{id} {} {} {}: {}",
                r.status.label(),
                r.check,
                r.target,
                r.summary
            ),
            None => format!("#{id} result: {}", text.unwrap_or_default()),
        },
        "comment" => format!(
            "#{id} comment by {}: {}",
            e.author,
            text.unwrap_or_default()
        ),
        "status" => format!("#{id} status {}", text.unwrap_or_default()),
        "diagnostics" => format!("#{id} diagnostic bundle attached"),
        "verdict" => match serde_json::from_value::<Verdict>(e.body.clone()) {
            Ok(v) => format!("#{id} runbook {}: {} ({})", v.runbook, v.verdict, v.cause),
            Err(_) => format!("#{id} runbook verdict"),
        },
        kind => match text {
            Some(t) => format!("#{id} {t}"),
            None => format!("#{id} {kind}"),
        },
    }
}
