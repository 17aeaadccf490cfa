//! The webhook outbox, written once on the storage primitives: each ticket
//! change is queued in the transaction that made it (a transactional
//! outbox); senders claim due deliveries with a lease, so with several
//! relays on one database each delivery is sent by one of them at a time,
//! and a claim whose sender died runs out and is taken again.

use super::error::StoreResult;
use super::tx::{Delivery, Tx};
use crate::ticket::Change;

/// The event id of a change: stable, so a receiver dedupes retries.
pub fn event_id(source: &str, change: &Change) -> String {
    format!("{source}-{}-{}", change.ticket.id, change.entry_id)
}

/// Queue one ticket change for delivery (inside the change's transaction).
/// `source` is the relay deployment's name, the prefix of ids and keys.
pub fn enqueue(tx: &mut dyn Tx, source: &str, change: &Change, now: i64) -> StoreResult<()> {
    let event_id = event_id(source, change);
    let body = serde_json::json!({
        "event_id": event_id,
        "ticket_key": format!("{source}-{}", change.ticket.id),
        "event": change.entry.kind,
        "ticket": change.ticket,
        "entry": change.entry,
    });
    tx.enqueue_webhook(&event_id, &body.to_string(), now)
}

/// Claim what is due at `now` for `lease_secs`.
pub fn claim(tx: &mut dyn Tx, now: i64, lease_secs: i64, limit: u32) -> StoreResult<Vec<Delivery>> {
    tx.claim_webhooks(now, now + lease_secs.max(1), limit)
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The receiver answered 2xx: forget it.
    Delivered,
    /// Try again after `backoff_secs` (capped exponential, by the caller).
    Failed { backoff_secs: i64 },
}

pub fn finish(tx: &mut dyn Tx, id: i64, sent: Sent, now: i64) -> StoreResult<()> {
    match sent {
        Sent::Delivered => tx.delete_webhook(id),
        Sent::Failed { backoff_secs } => tx.retry_webhook(id, now + backoff_secs),
    }
}
