//! Actions queued for machines that are offline (`--queue-for`, issue 14).
//!
//! A run, fix or runbook for an offline machine may wait for it instead of
//! failing: [`enqueue`] stores it (`crate::store::queue`, in the database,
//! so it survives restarts), and when the machine connects its relay
//! claims its pending actions one by one and runs each through
//! [`crate::routing::collect`] — the way a bulk action runs on one machine:
//! results go to the `--ticket` ticket (and so to `watch`), the role is
//! the queuer's, checked again by the agent.
//!
//! **At most once.** An action is marked `delivered` in the claim, before
//! it runs: a relay that dies mid-way loses it rather than running it
//! twice, and of several relays on one database only one claims it.
//! Actions are claimed one at a time, each only while the machine is still
//! connected here, so a machine that drops off loses at most the one it
//! was running.
//!
//! **The sweep** ([`sweep`], every `queue_sweep_ms`, started with the
//! relay) expires pending actions past their time — by the relay's clock
//! — and audits each; it also delivers to machines connected here whose
//! actions were queued while they were connecting (the queue request saw
//! them offline, their connection saw nothing pending yet).
//!
//! Every step is audited: queueing (by the operator), delivery (as the
//! operator who queued it, with how it ended), expiry (by `relay`), and a
//! cancel (`crate::requests::queue`). Bounds: at most 30 days to wait, at
//! most 100 actions pending per machine (`crate::store::queue`).

use crate::clock::rfc3339;
use crate::error::RelayError;
use crate::state::{Holder, Relay};
use crate::store::{AuditEntry, Missing, NewQueued, StoreError};
use firstline_proto::action::{Action, BulkItem, ItemOutcome, QueuedAction};
use firstline_proto::text::{printable, truncate};
use firstline_proto::{ErrorCode, Notice, Role};
use std::sync::Arc;
use std::time::Duration;

pub use crate::store::queue::{MAX_PENDING_PER_AGENT, MAX_TTL_SECS};

/// The longest outcome line kept with a delivered action.
const OUTCOME_LEN: usize = 300;

/// Actions expired per store transaction by the sweep.
const EXPIRE_BATCH: u32 = 500;

/// Keep `action` for `agent` (offline now) for `ttl_secs`, on behalf of
/// `operator` with `role`; its results go to `ticket`. Unknown, removed
/// or revoked agents are refused, never queued; so is an unknown ticket.
pub async fn enqueue(
    relay: &Relay,
    operator: &str,
    role: Role,
    agent: &str,
    action: Action,
    ticket: Option<u64>,
    ttl_secs: u64,
) -> Result<QueuedAction, RelayError> {
    match relay.store.agent(agent).await? {
        None => return Err(relay.unknown_agent(agent).await),
        Some(a) if a.revoked => {
            let why = format!("agent `{agent}` has been revoked: nothing is queued for it");
            return Err(RelayError::new(ErrorCode::Revoked, why));
        }
        Some(_) => {}
    }
    if let Some(t) = ticket {
        if relay.store.ticket(t).await?.is_none() {
            return Err(RelayError::no_ticket(t));
        }
    }
    let new = NewQueued {
        agent: agent.to_string(),
        action,
        ticket,
        operator: operator.to_string(),
        role,
        ttl_secs,
    };
    let q = match relay.store.enqueue_action(new).await {
        Ok(q) => q,
        Err(StoreError::NotFound(Missing::Agent(_))) => {
            return Err(relay.unknown_agent(agent).await)
        }
        Err(e) => return Err(e.into()),
    };
    relay
        .audit(AuditEntry {
            who: q.operator.clone(),
            role: Some(q.role.as_str().into()),
            agent: Some(q.agent.clone()),
            action: format!("queue {}", q.action.describe()),
            args: args_of(&q),
            outcome: format!("queued: #{} until {}", q.id, q.expires_at),
        })
        .await;
    Ok(q)
}

/// `#ID [--ticket N]`, as the audit log shows a queued action's arguments.
fn args_of(q: &QueuedAction) -> String {
    match q.ticket {
        Some(t) => format!("#{} --ticket {t}", q.id),
        None => format!("#{}", q.id),
    }
}

/// Deliver `agent`'s pending actions, one at a time, while it is connected
/// here. Called when it connects (after `welcome`) and by the sweep; one
/// delivery loop per agent and relay at a time.
pub async fn deliver(relay: &Relay, agent: &str) {
    {
        let mut busy = relay.delivering.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(agent.to_string()) {
            return;
        }
    }
    let _done = Busy { relay, agent };
    loop {
        if !matches!(relay.holder(agent), Some(Holder::Here(_))) {
            return;
        }
        let claimed = match relay.store.claim_queued(agent, 1).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%agent, "cannot claim queued actions: {e}");
                return;
            }
        };
        let Some(q) = claimed.into_iter().next() else {
            return;
        };
        run_one(relay, q).await;
    }
}

/// Takes the agent out of [`Relay::delivering`] when its loop ends.
struct Busy<'a> {
    relay: &'a Relay,
    agent: &'a str,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.relay
            .delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.agent);
    }
}

/// Run one claimed action, record how it ended, audit and announce it.
async fn run_one(relay: &Relay, q: QueuedAction) {
    tracing::info!(agent = %q.agent, id = q.id, "delivering queued action");
    let item = match role_now(relay, &q).await {
        Ok(role) => {
            crate::routing::collect(relay, &q.operator, role, &q.agent, &q.action, q.ticket).await
        }
        Err(why) => BulkItem {
            agent: q.agent.clone(),
            outcome: ItemOutcome::Refused,
            summary: why,
            result: None,
            verdict: None,
            queued: Some(q.id),
        },
    };
    let line = format!("{}: {}", item.outcome, item.summary);
    let outcome = printable(&truncate(&line, OUTCOME_LEN)).into_owned();
    if let Err(e) = relay.store.finish_queued(q.id, &outcome).await {
        tracing::error!(id = q.id, "cannot record a queued action's outcome: {e}");
    }
    relay
        .audit(AuditEntry {
            who: q.operator.clone(),
            role: Some(q.role.as_str().into()),
            agent: Some(q.agent.clone()),
            action: format!("deliver queued {}", q.action.describe()),
            args: args_of(&q),
            outcome: format!("delivered: {outcome}"),
        })
        .await;
    relay.notify(Notice {
        at: rfc3339(relay.store.now()),
        kind: "queued_delivered".into(),
        agent: Some(q.agent.clone()),
        ticket: q.ticket,
        text: format!(
            "{}: queued action #{} ({}) delivered: {outcome}",
            q.agent,
            q.id,
            q.action.describe()
        ),
    });
}

/// The role the action runs with: the queuer's then, unless their role
/// is lower now; refused when they were revoked or no longer may.
async fn role_now(relay: &Relay, q: &QueuedAction) -> Result<Role, String> {
    let op = match relay.store.operator(&q.operator).await {
        Ok(Some(op)) if op.revoked_at.is_none() => op,
        Ok(_) => {
            return Err(format!(
                "operator `{}` who queued it is no longer an operator of this relay",
                q.operator
            ))
        }
        Err(e) => return Err(format!("relay database error: {e}")),
    };
    let role = q.role.min(op.role);
    let mut needs = q.action.role();
    if q.ticket.is_some() {
        needs = needs.max(Role::Technician);
    }
    if role < needs {
        return Err(format!(
            "operator `{}` who queued it is a {} now; it needs a {}",
            q.operator,
            op.role.as_str(),
            needs.as_str()
        ));
    }
    Ok(role)
}

/// Every `queue_sweep_ms`: expire what is past its time, deliver what
/// waits for agents connected here. Runs until aborted.
pub async fn sweep(relay: Arc<Relay>) {
    let every = Duration::from_millis(relay.dir.config.queue_sweep_ms.max(50));
    loop {
        tokio::time::sleep(every).await;
        expire(&relay).await;
        match relay.store.pending_agents().await {
            Ok(agents) => {
                for agent in agents {
                    if matches!(relay.holder(&agent), Some(Holder::Here(_))) {
                        let relay = relay.clone();
                        tokio::spawn(async move { deliver(&relay, &agent).await });
                    }
                }
            }
            Err(e) => tracing::error!("cannot read queued actions: {e}"),
        }
    }
}

/// Expire the pending actions past their time, auditing and announcing
/// each (every relay sweeps; each action is expired by one).
pub async fn expire(relay: &Relay) {
    loop {
        let expired = match relay.store.expire_queued(EXPIRE_BATCH).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot expire queued actions: {e}");
                return;
            }
        };
        for q in &expired {
            relay
                .audit(AuditEntry {
                    who: "relay".into(),
                    role: None,
                    agent: Some(q.agent.clone()),
                    action: format!("expire queued {}", q.action.describe()),
                    args: format!("{} (queued by {})", args_of(q), q.operator),
                    outcome: format!("expired: not delivered by {}", q.expires_at),
                })
                .await;
            relay.notify(Notice {
                at: rfc3339(relay.store.now()),
                kind: "queued_expired".into(),
                agent: Some(q.agent.clone()),
                ticket: q.ticket,
                text: format!(
                    "{}: queued action #{} ({}) expired: not delivered by {}",
                    q.agent,
                    q.id,
                    q.action.describe(),
                    q.expires_at
                ),
            });
        }
        if expired.len() < EXPIRE_BATCH as usize {
            return;
        }
    }
}
