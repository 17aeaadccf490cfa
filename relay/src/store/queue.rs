//! Actions queued for offline agents (`--queue-for`), written once on the
//! storage primitives.
//!
//! A queued action is `pending` until exactly one of: its agent connects
//! and a relay claims it (`delivered`, before it runs: at most once, even
//! if that relay dies mid-way), it passes `expires_at` (`expired`, by the
//! sweep), or an operator cancels it (`cancelled`). Each of those is one
//! conditional update on `state = 'pending'` ([`Tx::claim_queued`],
//! [`Tx::expire_queued`], [`Tx::end_queued`]), so when several relays
//! share the database and race for one, one wins and the others see
//! nothing to do.
//!
//! Bounds, so a queue cannot grow without end: a time to live of at most
//! [`MAX_TTL_SECS`] (30 days), and at most [`MAX_PENDING_PER_AGENT`]
//! pending per agent.

use super::error::{Missing, StoreError, StoreResult};
use super::tx::{QueueRow, Tx};
use crate::clock::rfc3339;
use firstline_proto::action::{Action, QueueState, QueuedAction};
use firstline_proto::Role;

/// The longest an action may wait for its agent: 30 days.
pub const MAX_TTL_SECS: u64 = 30 * 86_400;

/// The most actions pending for one agent at once.
pub const MAX_PENDING_PER_AGENT: u64 = 100;

/// Ended actions `firstline queue --all` lists at most (the newest).
pub const LIST_ENDED_LIMIT: u32 = 1000;

/// An action to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueued {
    pub agent: String,
    pub action: Action,
    pub ticket: Option<u64>,
    pub operator: String,
    pub role: Role,
    pub ttl_secs: u64,
}

/// Queue `new` for its agent, which must be enrolled and not revoked, with
/// fewer than [`MAX_PENDING_PER_AGENT`] pending.
pub fn enqueue(tx: &mut dyn Tx, new: &NewQueued, now: i64) -> StoreResult<QueuedAction> {
    if new.ttl_secs == 0 || new.ttl_secs > MAX_TTL_SECS {
        return Err(StoreError::Invalid(format!(
            "--queue-for must be between 1 second and 30 days, not {} s",
            new.ttl_secs
        )));
    }
    // The agent's row locked: two enqueues for one agent take turns, so
    // the bound holds across relays too.
    if tx.lock_last_seq(&new.agent)?.is_none() {
        return Err(StoreError::NotFound(Missing::Agent(new.agent.clone())));
    }
    match tx.agent_state(&new.agent)? {
        Some(s) if s.revoked_at.is_none() && s.removed_at.is_none() => {}
        Some(s) if s.revoked_at.is_some() => {
            return Err(StoreError::Conflict(format!(
                "agent `{}` has been revoked: nothing is queued for it",
                new.agent
            )))
        }
        _ => return Err(StoreError::NotFound(Missing::Agent(new.agent.clone()))),
    }
    // Bound to this enrollment of the agent: a machine that enrolls under
    // the name after `agent remove` is another machine, and never gets it.
    let Some(enrollment) = tx.agent_enrollment(&new.agent)? else {
        return Err(StoreError::NotFound(Missing::Agent(new.agent.clone())));
    };
    let pending = tx.count_pending(&new.agent)?;
    if pending >= MAX_PENDING_PER_AGENT {
        return Err(StoreError::Conflict(format!(
            "agent `{}` has {pending} actions queued already (at most {MAX_PENDING_PER_AGENT}): \
             cancel some (`firstline queue`) or wait for it to connect",
            new.agent
        )));
    }
    let mut row = QueueRow {
        id: 0,
        agent: new.agent.clone(),
        action: serde_json::to_string(&new.action)?,
        ticket: new.ticket.map(|t| t.min(i64::MAX as u64) as i64),
        operator: new.operator.clone(),
        role: new.role.as_str().to_string(),
        queued_at: now,
        expires_at: now.saturating_add(new.ttl_secs as i64),
        state: QueueState::Pending.as_str().to_string(),
        ended_at: None,
        outcome: None,
        enrollment: Some(enrollment),
    };
    row.id = tx.insert_queued(&row)?;
    to_action(row)
}

/// Pending actions by id, then (`all`) the newest ended ones.
pub fn list(tx: &mut dyn Tx, all: bool) -> StoreResult<Vec<QueuedAction>> {
    tx.queued_list(all, LIST_ENDED_LIMIT)?
        .into_iter()
        .map(to_action)
        .collect()
}

/// Cancel a pending action: it after; `None` when there is no such action;
/// a [`StoreError::Conflict`] when it is not pending any more.
pub fn cancel(tx: &mut dyn Tx, id: u64, now: i64) -> StoreResult<Option<QueuedAction>> {
    let id = id.min(i64::MAX as u64) as i64;
    let Some(row) = tx.queued(id)? else {
        return Ok(None);
    };
    if !tx.end_queued(id, QueueState::Cancelled.as_str(), now)? {
        return Err(StoreError::Conflict(format!(
            "queued action #{id} is {} already: only a pending action can be cancelled",
            row.state
        )));
    }
    tx.queued(id)?.map(to_action).transpose()
}

/// Claim up to `limit` of `agent`'s pending actions not expired at `now`,
/// by id: each is `delivered` from here on, and handed to this caller only.
/// Only those queued for the agent's current enrollment are claimed (the
/// others were cancelled when it was removed or revoked; a database
/// edited by hand is no reason to run them on another machine).
pub fn claim(tx: &mut dyn Tx, agent: &str, now: i64, limit: u32) -> StoreResult<Vec<QueuedAction>> {
    tx.claim_queued(agent, now, limit)?
        .into_iter()
        .map(to_action)
        .collect()
}

/// Cancel every pending action of `agent` (removed or revoked), with
/// `outcome`: those this call cancelled.
pub fn cancel_for(
    tx: &mut dyn Tx,
    agent: &str,
    outcome: &str,
    now: i64,
) -> StoreResult<Vec<QueuedAction>> {
    tx.cancel_queued_for(agent, outcome, now)?
        .into_iter()
        .map(to_action)
        .collect()
}

/// Record how a delivered action ended (one line: `ok: …`, `refused: …`).
pub fn finish(tx: &mut dyn Tx, id: u64, outcome: &str) -> StoreResult<()> {
    tx.set_queued_outcome(id.min(i64::MAX as u64) as i64, outcome)
}

/// Expire up to `limit` pending actions past their `expires_at`: those
/// this call expired.
pub fn expire(tx: &mut dyn Tx, now: i64, limit: u32) -> StoreResult<Vec<QueuedAction>> {
    tx.expire_queued(now, limit)?
        .into_iter()
        .map(to_action)
        .collect()
}

/// A row as the wire shows it.
fn to_action(r: QueueRow) -> StoreResult<QueuedAction> {
    let bad = |what: &str| StoreError::Backend(format!("queued action #{}: {what}", r.id));
    Ok(QueuedAction {
        id: r.id.max(0) as u64,
        action: serde_json::from_str(&r.action).map_err(|e| bad(&format!("action: {e}")))?,
        ticket: r.ticket.map(|t| t.max(0) as u64),
        role: r.role.parse().map_err(|_| bad("role"))?,
        queued_at: rfc3339(r.queued_at),
        expires_at: rfc3339(r.expires_at),
        state: QueueState::parse(&r.state).ok_or_else(|| bad("state"))?,
        ended_at: r.ended_at.map(rfc3339),
        outcome: r.outcome,
        agent: r.agent,
        operator: r.operator,
    })
}
