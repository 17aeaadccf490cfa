//! The relay's shared state: what every connection handler reaches — the
//! store, the CA, who is online (here and, through the cluster, on the
//! other relays), live notices, limits, the clock — in one [`Relay`],
//! built once by `serve` and shared behind an `Arc`.

use crate::admission::{Every, Gate, RateLimiter, Tally};
use crate::audit::{AnchorPaths, AuditEntry, RefusalLog};
use crate::ca::Ca;
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::config::RelayDir;
use crate::registry::Registry;
use crate::store::{CertStatus, PeerKind, Store};
use crate::ticket::Change;
use anyhow::Result;
use firstline_net::endpoint;
use firstline_proto::ErrorCode;
use firstline_proto::Notice;
use quinn::{Connection, VarInt};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Everything a connection handler needs, shared.
pub struct Relay {
    pub dir: RelayDir,
    pub store: Store,
    pub ca: Arc<Ca>,
    pub registry: Registry,
    /// The other relays of the deployment (none: [`Cluster::Local`]).
    pub cluster: Cluster,
    /// Where "now" comes from (the store's too).
    pub clock: SharedClock,
    /// The audit anchor's key and checkpoints (in the relay folder).
    pub audit_paths: AnchorPaths,
    /// Live notices for `firstline watch`; slow watchers miss old ones.
    pub notices: crate::notices::Channel,
    /// Wakes the webhook sender when a delivery is queued.
    pub webhook_wake: Arc<Notify>,
    /// Wakes the help desk mirror when a change was queued for it.
    pub helpdesk_wake: Arc<Notify>,
    /// Live and not-yet-authenticated connections, bounded.
    pub gate: Arc<Gate>,
    /// Enrollment attempts per source address.
    pub enroll_rate: RateLimiter<IpAddr>,
    /// Monitoring events per agent (paced, never dropped).
    pub event_pace: RateLimiter<String>,
    /// Bytes of monitoring events per agent (paced, never dropped).
    pub event_bytes: RateLimiter<String>,
    /// Certificate renewals per agent ([`RENEWALS_PER_MINUTE`], a burst of
    /// [`RENEWAL_BURST`]); more are refused.
    pub renew_rate: RateLimiter<String>,
    /// Connections refused by a bound: logged once a second, with a count.
    pub refused_log: Every,
    /// Refused enrollment attempts per source: audited once per window,
    /// with a count ([`crate::enroll`]).
    pub enroll_refusals: Tally<IpAddr>,
    /// Refused renewals per agent: audited the same way.
    pub renew_refusals: Tally<String>,
    /// Refused connections are audited, at most one entry per identity a minute.
    pub refusals: RefusalLog,
    /// Agents whose queued actions are being delivered here now (one
    /// delivery loop per agent: `crate::queue::deliver`).
    pub delivering: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Counters and histograms for `/metrics` (`metrics_listen`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set while the audit chain holds rows no relay wrote: audited
    /// actions are refused ([`Relay::audit_guard`]).
    pub audit_alarm: std::sync::atomic::AtomicBool,
}

/// Certificate renewals an agent may make per minute, after a burst of
/// [`RENEWAL_BURST`] (an agent renews once, some weeks before expiry; a
/// few retries are fine, a stream of certificates is not).
pub const RENEWALS_PER_MINUTE: f64 = 1.0;
pub const RENEWAL_BURST: f64 = 3.0;

/// Notices kept for a slow watcher before it starts missing some.
const NOTICE_BUFFER: usize = 1024;

impl Relay {
    /// Open the store and the CA of a relay folder.
    pub fn load(dir: RelayDir) -> Result<Relay> {
        let store = dir.open_store()?;
        let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
        let c = &dir.config;
        let enroll_rate = RateLimiter::per_minute(c.enroll_per_minute);
        let events = f64::from(c.agent_events_per_sec);
        // A burst of ten seconds' worth: an agent back from an outage delivers
        // its first batches at once, and is paced after that.
        let event_pace = RateLimiter::new(events, events * 10.0);
        let bytes = f64::from(c.agent_event_bytes_per_sec);
        let event_bytes = RateLimiter::new(bytes, bytes * 10.0);
        let renew_rate = RateLimiter::new(RENEWALS_PER_MINUTE / 60.0, RENEWAL_BURST);
        Ok(Relay {
            audit_paths: dir.audit_paths(),
            dir,
            store,
            ca: Arc::new(ca),
            registry: Registry::default(),
            cluster: Cluster::Local,
            clock: crate::clock::system(),
            notices: crate::notices::Channel::new(NOTICE_BUFFER),
            webhook_wake: Arc::new(Notify::new()),
            helpdesk_wake: Arc::new(Notify::new()),
            gate: Arc::default(),
            enroll_rate,
            event_pace,
            event_bytes,
            renew_rate,
            refused_log: Every::new(Duration::from_secs(1)),
            enroll_refusals: Tally::new(Tally::<IpAddr>::WINDOW),
            renew_refusals: Tally::new(Tally::<String>::WINDOW),
            refusals: RefusalLog::default(),
            delivering: Default::default(),
            metrics: Arc::default(),
            audit_alarm: Default::default(),
        })
    }

    /// Tell watchers of ticket changes the store made (and queued for the
    /// webhook in the same transaction): wake the sender, send notices.
    pub fn announce(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        if self.dir.config.webhook_url.is_some() {
            self.webhook_wake.notify_one();
        }
        if self.dir.config.helpdesk.is_some() {
            self.helpdesk_wake.notify_one();
        }
        for c in changes {
            self.notify(crate::notices::of_change(c));
        }
    }

    /// Tell every watcher, on every relay of the deployment (no watcher is
    /// fine).
    pub fn notify(&self, notice: Notice) {
        self.cluster.publish_notice(&notice);
        self.notices.send(notice);
    }

    /// Write an audit entry; a failure is logged (the request it records
    /// has happened either way). Its signed checkpoint goes to the other
    /// relays' anchors too.
    pub async fn audit(&self, entry: AuditEntry) {
        let _ = self.audit_checked(entry).await;
    }

    /// [`Relay::audit`], saying whether the entry and its checkpoint were
    /// written (`Err`: why not, for the requester). Console requests use
    /// this: an answer whose audit entry cannot be written is withheld.
    pub async fn audit_checked(&self, entry: AuditEntry) -> Result<(), String> {
        match crate::audit::record_checkpoint(&self.store, &self.audit_paths, entry).await {
            Ok(Some(line)) => {
                self.cluster.publish_checkpoint(&line);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) if crate::audit::is_tampered(&e) => {
                self.raise_audit_alarm(&e);
                Err(format!("{e:#}"))
            }
            Err(e) => {
                tracing::error!("cannot write audit entry: {e:#}");
                Err(format!("{e:#}"))
            }
        }
    }

    /// The audit chain holds rows no relay wrote: say so loudly, once, and
    /// refuse audited actions until it is acknowledged.
    fn raise_audit_alarm(&self, e: &anyhow::Error) {
        use std::sync::atomic::Ordering;
        let newly = !self.audit_alarm.swap(true, Ordering::SeqCst);
        self.metrics.audit_tampered(true, newly);
        tracing::error!(
            "AUDIT CHAIN TAMPERED WITH: {e:#}; this relay refuses audited actions until an admin \
             checks `firstline-relay audit verify` and runs `firstline-relay audit acknowledge`"
        );
    }

    /// Before an audited action: the chain's tail checked as the next
    /// append will check it (rows after this relay's last checkpoint must
    /// carry the deployment's keyed hash). `Err` (the reason, for the
    /// requester) while rows no relay wrote are there unacknowledged.
    pub async fn audit_guard(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        match crate::audit::check_tail(&self.store, &self.audit_paths).await {
            Ok(()) => {
                if self.audit_alarm.swap(false, Ordering::SeqCst) {
                    self.metrics.audit_tampered(false, false);
                    tracing::warn!("audit chain acknowledged by an admin: audited actions resume");
                }
                Ok(())
            }
            Err(e) if crate::audit::is_tampered(&e) => {
                self.raise_audit_alarm(&e);
                Err(format!(
                    "this relay refuses audited actions: the audit log holds entries no relay wrote ({e:#}); \
                     an admin must check `firstline-relay audit verify` and run `firstline-relay audit acknowledge`"
                ))
            }
            // The database not answering is not tampering: the action's
            // own use of the store will say so.
            Err(e) => {
                tracing::warn!("cannot check the audit chain before a request: {e:#}");
                Ok(())
            }
        }
    }

    /// An agent's connection is up here: register it, tell the other relays.
    pub fn agent_online(&self, name: &str, conn: Connection) {
        let since = self.registry.agent_online(name, conn);
        self.cluster.agent_held(name, since);
    }

    /// An agent's connection here ended (unless a newer one replaced it).
    pub fn agent_offline(&self, name: &str, conn: &Connection) {
        if self.registry.agent_offline(name, conn) {
            self.cluster.agent_released(name);
        }
    }

    /// Whether an agent is connected to this relay or another one of the
    /// deployment.
    pub fn is_online(&self, name: &str) -> bool {
        self.registry.is_online(name) || self.cluster.holder(name).is_some()
    }

    /// Where an agent's live connection is: here, or on another relay
    /// (the newest connection wins when it shows on two, as after a move
    /// the old relay has not noticed yet).
    pub fn holder(&self, name: &str) -> Option<Holder> {
        let here = self.registry.agent_since(name);
        let there = self.cluster.holder(name);
        match (here, there) {
            (Some((_, since)), Some((relay, theirs))) if theirs > since => {
                Some(Holder::Relay(relay))
            }
            (Some((conn, _)), _) => Some(Holder::Here(conn)),
            (None, Some((relay, _))) => Some(Holder::Relay(relay)),
            (None, None) => None,
        }
    }

    /// A peer was revoked or removed through this relay: cut it off here
    /// and tell the other relays to (each checks the database first).
    pub async fn revoked_here(&self, kind: PeerKind, name: &str, reason: &str) -> usize {
        self.cluster.publish_revocation(kind.as_str(), name);
        self.cut_off(kind, name, reason).await
    }

    /// No agent of this name: the message lists the enrolled ones.
    pub async fn unknown_agent(&self, name: &str) -> crate::error::RelayError {
        let names = self
            .store
            .agent_names(crate::admin::AGENTS_NAMED)
            .await
            .unwrap_or_default();
        crate::error::RelayError::new(
            firstline_proto::ErrorCode::UnknownAgent,
            crate::admin::unknown_agent_text(name, &names),
        )
    }

    /// No operator of this name: the message lists the live ones.
    pub async fn unknown_operator(&self, name: &str) -> crate::error::RelayError {
        let live = self.store.operators().await.unwrap_or_default();
        crate::error::RelayError::new(
            firstline_proto::ErrorCode::UnknownOperator,
            crate::admin::unknown_operator_text(name, &live),
        )
    }

    /// Close the live connections of `kind` `name` whose certificate is no
    /// longer valid; returns how many. A connection made since with a new,
    /// valid certificate (an agent removed and enrolled again under its name)
    /// stays.
    pub async fn cut_off(&self, kind: PeerKind, name: &str, reason: &str) -> usize {
        let mut n = 0;
        for conn in self.registry.connections_of(kind.as_str(), name) {
            let valid = match endpoint::peer_info(&conn) {
                Some(i) => matches!(
                    self.store.cert_status(&i.serial, kind, name).await,
                    Ok(CertStatus::Valid)
                ),
                None => false,
            };
            if !valid {
                close(&conn, ErrorCode::Revoked, reason);
                n += 1;
            }
        }
        n
    }

    pub fn first_message_timeout(&self) -> Duration {
        Duration::from_secs(self.dir.config.first_message_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.dir.config.request_timeout_secs)
    }
}

/// Where an agent's live connection is.
pub enum Holder {
    /// On this relay.
    Here(Connection),
    /// On the relay of this id.
    Relay(String),
}

/// Close a connection with a firstline error code and a reason the peer
/// shows to its user.
pub fn close(conn: &Connection, code: ErrorCode, reason: &str) {
    conn.close(VarInt::from_u32(code.quic_code()), reason.as_bytes());
}
