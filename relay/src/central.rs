//! Central monitors, relay side: sending each agent the monitor sets that
//! select it ([`crate::store::monitors`]) and keeping what it answers.
//!
//! **When.** On the stream the relay opens after `welcome` (every
//! connection: an agent that was offline, or held by another relay, when a
//! set changed gets the current sets on its next connect), and again when
//! they may have changed: a set set or removed, an agent's tags changed.
//! Those changes are announced as `watch` notices (`monitors_changed`,
//! `agent_tagged`), which already reach every relay of the deployment once
//! ([`crate::cluster`]); [`follow`] listens to them on each relay and
//! pushes to the agents held *there* — so one mechanism serves a relay on
//! its own and many relays, and `firstline watch` shows the changes too.
//! The follower reads only these kinds, from a channel of their own
//! ([`crate::notices::Channel`]): ticket and alert notices, thousands a
//! second in a storm, cannot make it fall behind. One that fell behind all
//! the same (a burst of tag changes) pushes to all its agents.
//!
//! **Order.** Pushes to one agent take turns (a lock per agent name), and
//! each reads the store as it starts: the last one to reach the agent
//! carries the sets as they are now, however changes and connections
//! interleave.
//!
//! **Authority.** A set holds only while its author is an admin
//! ([`crate::store::monitors`]: judged on every read of what to send).
//! Besides the notices, [`follow`] reads which sets are in force every
//! [`AUTHORITY_CHECK`] and pushes to every agent here when that changed:
//! an author revoked or demoted by an offline command, or on another
//! relay, stops their sets on every agent within that time.
//!
//! **The answer** (`central_monitors_report`: which monitors are active,
//! which refused and why — the agent's wall decides, see the agent's
//! `monitor::central`) is stored for `firstline monitors show`. An agent
//! too old to know central monitors answers an error: logged, nothing
//! stored (`monitors show` then lists it as not current).

use crate::notices::{AGENT_TAGGED, MONITORS_CHANGED};
use crate::state::Relay;
use firstline_net::stream::request;
use firstline_proto::{Message, Notice};
use quinn::Connection;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use tokio::sync::broadcast::error::RecvError;

type Turn = tokio::sync::Mutex<()>;

/// How often [`follow`] checks which sets are in force.
pub const AUTHORITY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// One lock per agent name, alive while a push holds or waits for it.
static TURNS: LazyLock<Mutex<HashMap<String, Weak<Turn>>>> = LazyLock::new(Default::default);

fn turns() -> std::sync::MutexGuard<'static, HashMap<String, Weak<Turn>>> {
    TURNS.lock().unwrap_or_else(|p| p.into_inner())
}

fn turn(agent: &str) -> Arc<Turn> {
    let mut turns = turns();
    if let Some(t) = turns.get(agent).and_then(Weak::upgrade) {
        return t;
    }
    let t = Arc::new(Turn::default());
    turns.insert(agent.to_string(), Arc::downgrade(&t));
    t
}

/// Give up `agent`'s turn: its entry goes with the last holder, so the
/// map holds only agents with a push under way — no sweep of the whole
/// map per push (a set change pushes to every agent: that sweep made it
/// quadratic in the agents held).
fn done(agent: &str, t: Arc<Turn>) {
    let mut turns = turns();
    if Arc::strong_count(&t) == 1 {
        turns.remove(agent);
    }
}

/// What the relay knows of the sets an agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// Nothing (the sets changed): send them.
    Unknown,
    /// What its `hello` said: the digest of its sets, none if it never
    /// received any.
    Said(Option<String>),
}

/// Send `agent` (on `conn`) the sets that select it, and store its report
/// — unless the agent said it runs them already (its `hello`: the same
/// digest; or none received and none to send). Every connection asks, so
/// that case costs one read of the sets and no stream.
pub async fn push(relay: &Relay, agent: &str, conn: &Connection, runs: Runs) {
    let t = turn(agent);
    {
        let _held = t.lock().await;
        send(relay, agent, conn, runs).await;
    }
    done(agent, t);
}

/// [`push`], its turn held.
async fn send(relay: &Relay, agent: &str, conn: &Connection, runs: Runs) {
    let (sets, digest) = match relay.store.central_monitors(agent).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(agent = %agent, "cannot read the central monitors: {e}");
            return;
        }
    };
    let current = match &runs {
        Runs::Unknown => false,
        Runs::Said(Some(k)) => *k == digest,
        Runs::Said(None) => sets.is_empty(),
    };
    if current {
        tracing::debug!(agent = %agent, sets = sets.len(), "central monitors current");
        return;
    }
    let count = sets.len();
    let answer = async {
        let (_send, mut recv) = request(conn, Message::CentralMonitors { digest, sets }).await?;
        recv.recv_within(relay.request_timeout()).await
    }
    .await;
    match answer {
        Ok(Some(Message::CentralMonitorsReport(report))) => {
            let refused = report
                .monitors
                .iter()
                .filter(|m| m.state != firstline_proto::central::MonitorState::Active)
                .count();
            tracing::debug!(agent = %agent, sets = count, refused, "central monitors sent");
            if let Err(e) = relay.store.record_monitor_report(agent, report).await {
                tracing::error!(agent = %agent, "cannot store the central monitors' report: {e}");
            }
        }
        Ok(Some(Message::Error { message, .. })) => tracing::info!(
            agent = %agent,
            "the agent did not take central monitors (an older agent?): {}",
            firstline_proto::text::printable(&message)
        ),
        Ok(other) => tracing::debug!(
            agent = %agent,
            "no answer to central monitors: {:?}",
            other.map(|m| m.kind())
        ),
        Err(e) => tracing::debug!(agent = %agent, "sending central monitors failed: {e}"),
    }
}

/// [`push`] in a task of its own.
pub fn push_soon(relay: &Arc<Relay>, agent: &str, conn: &Connection, runs: Runs) {
    let (relay, agent, conn) = (relay.clone(), agent.to_string(), conn.clone());
    tokio::spawn(async move { push(&relay, &agent, &conn, runs).await });
}

/// Push to every agent connected here.
fn push_all(relay: &Arc<Relay>) {
    for (agent, conn) in relay.registry.agents() {
        push_soon(relay, &agent, &conn, Runs::Unknown);
    }
}

/// The notice of a change of the central monitor sets.
pub fn changed_notice(relay: &Relay, text: String) -> Notice {
    Notice {
        at: crate::clock::rfc3339(relay.store.now()),
        kind: MONITORS_CHANGED.into(),
        agent: None,
        ticket: None,
        text,
    }
}

/// The notice of a change of an agent's tags.
pub fn tagged_notice(relay: &Relay, agent: &str, tags: &[String]) -> Notice {
    Notice {
        at: crate::clock::rfc3339(relay.store.now()),
        kind: AGENT_TAGGED.into(),
        agent: Some(agent.to_string()),
        ticket: None,
        text: format!("{agent}: tags now {}", tags.join(", ")),
    }
}

/// Follow this relay's notices (its own and the other relays'), and push
/// to the agents held here when their sets may have changed.
pub async fn follow(relay: Arc<Relay>) {
    // Only these kinds, on a channel of their own: the ticket and alert
    // notices of a storm would make this follower fall behind and push to
    // every agent (`crate::notices::Channel`).
    let mut notices = relay.notices.subscribe_monitors();
    let mut check = tokio::time::interval(AUTHORITY_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_force: Option<Vec<String>> = None;
    loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = check.tick() => {
                match relay.store.monitor_sets_in_force().await {
                    Ok(now) => {
                        if in_force.as_ref().is_some_and(|was| *was != now) {
                            tracing::info!(
                                in_force = %now.join(","),
                                "central monitor sets in force changed: pushing again"
                            );
                            push_all(&relay);
                        }
                        in_force = Some(now);
                    }
                    Err(e) => tracing::error!("cannot read the central monitor sets: {e}"),
                }
                continue;
            }
        };
        match notice {
            Ok(n) if n.kind == MONITORS_CHANGED => push_all(&relay),
            Ok(n) if n.kind == AGENT_TAGGED => {
                if let Some(conn) = n.agent.as_deref().and_then(|a| relay.registry.agent(a)) {
                    let agent = n.agent.as_deref().unwrap_or_default();
                    push_soon(&relay, agent, &conn, Runs::Unknown);
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => push_all(&relay),
            Err(RecvError::Closed) => return,
        }
    }
}
