//! The help desk mirror's bookkeeping, written once on the storage
//! primitives (the sender is `crate::helpdesk`). Why a row per ticket and
//! not a row per change, as the webhook outbox has: a help desk ticket must
//! be created before its comments, and comments arrive in order, so one
//! ticket's entries are delivered by one sender at a time. The row
//! (`helpdesk_links`) holds the help desk's id of the ticket, the highest
//! entry queued (raised in the transaction of each change, as the webhook
//! outbox is filled) and the highest delivered; a sender claims a row with
//! a lease (several relays: one at a time; a dead sender's lease runs out)
//! and records its progress only while the lease is still its own.
//!
//! No duplicate: the entry being sent is recorded *before* it is sent, so
//! a sender that takes a row over knows which entry may already be there
//! and looks for it first; a ticket whose id was never recorded is looked
//! for in the help desk (by a tag in its subject) before it is created.

use super::error::StoreResult;
use super::tx::{HelpdeskLink, Tx};
use super::Store;
use crate::ticket::{Change, Ticket, TicketStatus};
use firstline_proto::TicketEntry;
use std::time::Duration;

/// A claimed link, with what is to be delivered.
#[derive(Debug, Clone)]
pub struct Pending {
    pub link: HelpdeskLink,
    /// The claim: progress is recorded only while it is still the link's.
    pub lease_until: i64,
    /// The ticket as it is now.
    pub ticket: Ticket,
    /// The entries not yet delivered, with their ids, in order.
    pub entries: Vec<(i64, TicketEntry)>,
}

fn claim(tx: &mut dyn Tx, now: i64, lease: i64, limit: u32) -> StoreResult<Vec<Pending>> {
    let lease_until = now + lease.max(1);
    let mut out = Vec::new();
    for link in tx.claim_helpdesk(now, lease_until, limit)? {
        let Some(ticket) = tx.ticket(link.ticket_id)? else {
            continue;
        };
        let entries = tx.entries_after(link.ticket_id, link.delivered_entry)?;
        out.push(Pending {
            link,
            lease_until,
            ticket,
            entries,
        });
    }
    Ok(out)
}

/// Resolve ticket `id` because it was resolved in the help desk, once:
/// only while its link is watched (see [`Tx::mark_helpdesk_resolved`]).
fn resolve(
    tx: &mut dyn Tx,
    id: u64,
    author: &str,
    note: &str,
    now: i64,
) -> StoreResult<Option<Change>> {
    if !tx.mark_helpdesk_resolved(id, now)? {
        return Ok(None);
    }
    super::tickets::set_status(tx, id, TicketStatus::Resolved, author, note, None, now)
}

impl Store {
    /// Claim up to `limit` tickets with entries to mirror, for `lease`.
    pub async fn claim_helpdesk(&self, limit: u32, lease: Duration) -> StoreResult<Vec<Pending>> {
        let now = self.now();
        let lease = lease.as_secs().clamp(1, 86_400) as i64;
        self.write(move |tx| claim(tx, now, lease, limit)).await
    }

    /// Record a claimed link's progress and renew the claim for `lease`:
    /// the new claim, or `None` when the claim was lost (the sender must
    /// stop: another one has the ticket now).
    pub async fn save_helpdesk(
        &self,
        link: HelpdeskLink,
        lease_until: i64,
        lease: Duration,
    ) -> StoreResult<Option<i64>> {
        let renew = self.now() + lease.as_secs().clamp(1, 86_400) as i64;
        let renew = renew.max(lease_until + 1);
        let saved = self
            .write(move |tx| tx.save_helpdesk(&link, lease_until, renew))
            .await?;
        Ok(saved.then_some(renew))
    }

    /// End a claim: due again after `backoff_secs`, with `attempts`
    /// failed attempts in a row.
    pub async fn release_helpdesk(
        &self,
        ticket_id: u64,
        lease_until: i64,
        backoff_secs: i64,
        attempts: i64,
    ) -> StoreResult<bool> {
        let next_at = self.now() + backoff_secs.max(0);
        self.write(move |tx| tx.release_helpdesk(ticket_id, lease_until, next_at, attempts))
            .await
    }

    /// Links whose help desk ticket is to be asked whether it was resolved
    /// there (see [`Tx::helpdesk_watched`]).
    pub async fn helpdesk_watched(&self, after: u64, limit: u32) -> StoreResult<Vec<HelpdeskLink>> {
        let now = self.now();
        self.read(move |tx| tx.helpdesk_watched(now, after, limit))
            .await
    }

    /// The mirror's record of ticket `id`.
    pub async fn helpdesk_link(&self, id: u64) -> StoreResult<Option<HelpdeskLink>> {
        self.read(move |tx| tx.helpdesk_link(id)).await
    }

    /// Ticket `id` was resolved in the help desk by `author` (`rt:USER`):
    /// resolve it here, once; `None` when it no longer qualifies.
    pub async fn resolve_from_helpdesk(
        &self,
        id: u64,
        author: &str,
        note: &str,
    ) -> StoreResult<Option<Change>> {
        let (author, note) = (author.to_string(), note.to_string());
        let (change, _) = self
            .change(move |tx, now| {
                let c = resolve(tx, id, &author, &note, now)?;
                Ok((c.clone(), c.into_iter().collect()))
            })
            .await?;
        Ok(change)
    }
}
