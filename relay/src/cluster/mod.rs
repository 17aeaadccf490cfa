//! The other relays of the deployment, if any.
//!
//! Any number of relays share one store (PostgreSQL, or one SQLite file on
//! one machine) and one NATS server or cluster (`[cluster] nats` in
//! relay.toml). The store already makes what they write consistent (a
//! token spent once, events ingested once, one audit chain, webhook
//! deliveries claimed once); this module carries what lives in memory:
//!
//! * **presence** — which relay holds which agent's connection, replicated
//!   to every relay ([`presence`]): `firstline agents` on any relay shows
//!   agents online on any relay; a relay killed with -9 has its agents
//!   shown offline within `presence_ttl_ms + heartbeat_ms`;
//! * **forwarding** — a console request for an agent another relay holds is
//!   sent to that relay, which streams the agent's answer frames back
//!   (`crate::routing` records tickets and audits on the asking relay);
//! * **notices** — every relay's `watch` notices reach the watchers of
//!   every relay, each once;
//! * **revocations** — a peer revoked or removed through one relay is cut
//!   off at once on the others (each also polls the database);
//! * **audit checkpoints** — each relay keeps the signed checkpoints of
//!   every relay's audit entries in its own anchor.
//!
//! [`Cluster::Local`] is a relay on its own (the default: everything stays
//! in the process, as before); [`Cluster::Nats`] is one of several
//! ([`nats`] for subjects and wire).

pub mod bus;
pub mod nats;
pub mod presence;

use crate::config::RelayDir;
use anyhow::Result;
use firstline_proto::{Message, Notice};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use nats::{RemoteAnswers, ReplySink};

/// This relay's link to the others of its deployment.
#[derive(Clone, Default)]
pub enum Cluster {
    /// A relay on its own.
    #[default]
    Local,
    /// One of several relays, over NATS.
    Nats(Arc<nats::Nats>),
}

/// What the other relays send this one, for `crate::server` to act on.
pub struct Inbound {
    /// Requests for agents this relay holds.
    pub forwards: mpsc::Receiver<Forwarded>,
    /// Peers revoked through another relay.
    pub revocations: mpsc::Receiver<Revoked>,
    /// Signed audit checkpoint lines another relay wrote.
    pub checkpoints: mpsc::Receiver<String>,
}

impl Inbound {
    /// Nothing will ever come (a relay on its own).
    pub fn none() -> Inbound {
        Inbound {
            forwards: mpsc::channel(1).1,
            revocations: mpsc::channel(1).1,
            checkpoints: mpsc::channel(1).1,
        }
    }
}

/// A request another relay forwarded for an agent held here.
pub struct Forwarded {
    /// The asking relay's id (as signed).
    pub from: String,
    /// The operator who asked, as the asking relay says.
    pub operator: String,
    pub agent: String,
    /// The agent-side request (`exec`, `exec_fix`, `exec_runbook`, …).
    pub request: Message,
    /// Where the agent's answer frames go, in order.
    pub reply: ReplySink,
}

/// A peer revoked through another relay.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub relay: String,
    pub kind: String,
    pub name: String,
}

/// Why a forwarded request got no (whole) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// The holding relay is no longer heard of (killed, cut off from NATS).
    Gone,
    /// Nobody listens on the holding relay's subject.
    NoResponder,
    /// No answer within this long.
    Timeout(Duration),
    /// Part of the answer went missing, or made no sense.
    Lost(String),
    /// The NATS client failed.
    Nats(String),
    /// The holding relay refused or failed the request itself (the agent
    /// left it, did not answer in time…), in the words a local request
    /// would have got.
    Refused {
        code: firstline_proto::ErrorCode,
        message: String,
    },
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Gone => f.write_str("that relay stopped answering (no heartbeat)"),
            ForwardError::NoResponder => f.write_str("that relay does not listen on NATS"),
            ForwardError::Timeout(d) => write!(f, "no answer from that relay within {d:?}"),
            ForwardError::Lost(why) => write!(f, "part of the answer was lost: {why}"),
            ForwardError::Nats(why) => write!(f, "NATS: {why}"),
            ForwardError::Refused { message, .. } => f.write_str(message),
        }
    }
}

impl Cluster {
    /// Join the other relays when `[cluster] nats` is set; else a relay on
    /// its own. Notices from other relays go to `notices`.
    pub async fn start(
        dir: &RelayDir,
        ca_fingerprint: &str,
        notices: crate::notices::Channel,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<(Cluster, Inbound)> {
        if dir.config.cluster.nats.is_none() {
            return Ok((Cluster::Local, Inbound::none()));
        }
        let (n, inbound) = nats::start(dir, ca_fingerprint, notices, metrics).await?;
        Ok((Cluster::Nats(n), inbound))
    }

    /// This relay's id, when one of several.
    pub fn id(&self) -> Option<&str> {
        match self {
            Cluster::Local => None,
            Cluster::Nats(n) => Some(n.id()),
        }
    }

    /// An agent connected here at `since` (ms since the epoch).
    pub fn agent_held(&self, agent: &str, since: u64) {
        if let Cluster::Nats(n) = self {
            n.agent_held(agent, since);
        }
    }

    /// An agent's connection here ended.
    pub fn agent_released(&self, agent: &str) {
        if let Cluster::Nats(n) = self {
            n.agent_released(agent);
        }
    }

    /// Another relay holding `agent`: its id and the claim's start.
    pub fn holder(&self, agent: &str) -> Option<(String, u64)> {
        match self {
            Cluster::Local => None,
            Cluster::Nats(n) => n.holder(agent),
        }
    }

    /// The other relays alive, with the number of agents each holds.
    pub fn relays(&self) -> Vec<(String, usize)> {
        match self {
            Cluster::Local => Vec::new(),
            Cluster::Nats(n) => n.relays(),
        }
    }

    pub fn publish_notice(&self, notice: &Notice) {
        if let Cluster::Nats(n) = self {
            n.publish_notice(notice);
        }
    }

    pub fn publish_revocation(&self, kind: &str, name: &str) {
        if let Cluster::Nats(n) = self {
            n.publish_revocation(kind, name);
        }
    }

    pub fn publish_checkpoint(&self, line: &str) {
        if let Cluster::Nats(n) = self {
            n.publish_checkpoint(line);
        }
    }

    /// Send `request` for `agent` to `relay`, which holds it.
    pub async fn forward(
        &self,
        relay: &str,
        agent: &str,
        request: Message,
        operator: &str,
    ) -> Result<RemoteAnswers, ForwardError> {
        match self {
            Cluster::Local => Err(ForwardError::NoResponder),
            Cluster::Nats(n) => n.forward(relay, agent, request, operator).await,
        }
    }

    /// Tell the others this relay stops.
    pub async fn shutdown(&self) {
        if let Cluster::Nats(n) = self {
            n.shutdown().await;
        }
    }
}
