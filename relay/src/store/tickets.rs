//! The ticket rules, written once on the storage primitives: opening a
//! ticket with its `opened` entry, the timeline, status moves (the rules
//! themselves are [`TicketStatus::transition`]'s), assignment and
//! priority. Each change returns a [`Change`]: the ticket after it and the
//! entry it added, which becomes a live notice and a webhook delivery.

use super::error::{Missing, StoreError, StoreResult};
use super::tx::Tx;
use crate::clock::rfc3339;
use crate::ticket::{entry_body, Change, NewTicket, Priority, Source, TicketEdit, TicketStatus};
use firstline_proto::TicketEntry;

/// Open a ticket; `observed_at` is when an agent observed what opened it.
pub fn create(
    tx: &mut dyn Tx,
    t: &NewTicket,
    observed_at: Option<i64>,
    now: i64,
) -> StoreResult<Change> {
    let id = tx.insert_ticket(t, now)?;
    let body = t.body.as_deref().unwrap_or(&t.title);
    append(tx, id, "opened", &t.author, body, observed_at, now)?
        .ok_or_else(|| StoreError::Backend("ticket vanished after insert".into()))
}

/// Add an entry to the timeline; `None` when there is no such ticket.
pub fn append(
    tx: &mut dyn Tx,
    id: u64,
    kind: &str,
    author: &str,
    body: &str,
    observed_at: Option<i64>,
    now: i64,
) -> StoreResult<Option<Change>> {
    let Some(entry_id) = tx.insert_entry(id, kind, author, body, observed_at, now)? else {
        return Ok(None);
    };
    let ticket = tx
        .ticket(id)?
        .ok_or_else(|| StoreError::Backend(format!("ticket #{id} vanished")))?;
    let body = entry_body(kind, ticket.source == Source::Alert, body);
    Ok(Some(Change {
        ticket: ticket.summary(),
        entry: TicketEntry {
            at: rfc3339(now),
            observed_at: observed_at.map(rfc3339),
            kind: kind.into(),
            author: author.into(),
            body,
        },
        entry_id,
    }))
}

/// Move a ticket to `to`, recording who and why (`from → to: note`);
/// `None` when there is no such ticket, [`StoreError::Conflict`] when its
/// status does not allow the move.
pub fn set_status(
    tx: &mut dyn Tx,
    id: u64,
    to: TicketStatus,
    author: &str,
    note: &str,
    observed_at: Option<i64>,
    now: i64,
) -> StoreResult<Option<Change>> {
    let Some(current) = tx.ticket(id)? else {
        return Ok(None);
    };
    current
        .status
        .transition(id, to)
        .map_err(StoreError::Conflict)?;
    tx.update_status(id, to, now)?;
    let body = if note.is_empty() {
        format!("{} → {to}", current.status)
    } else {
        format!("{} → {to}: {note}", current.status)
    };
    append(tx, id, "status", author, &body, observed_at, now)
}

pub fn assign(
    tx: &mut dyn Tx,
    id: u64,
    operator: &str,
    author: &str,
    now: i64,
) -> StoreResult<Option<Change>> {
    if !tx.update_assignee(id, operator)? {
        return Ok(None);
    }
    let body = format!("assigned to {operator}");
    append(tx, id, "assigned", author, &body, None, now)
}

/// Set the priority, recorded as a `priority` entry `normal → urgent`.
pub fn change_priority(
    tx: &mut dyn Tx,
    id: u64,
    priority: Priority,
    author: &str,
    now: i64,
) -> StoreResult<Option<Change>> {
    let Some(current) = tx.ticket(id)? else {
        return Ok(None);
    };
    tx.update_priority(id, priority)?;
    let body = format!("{} → {priority}", current.priority);
    append(tx, id, "priority", author, &body, None, now)
}

/// A person's change to a ticket; [`Missing::Ticket`] when there is none.
pub fn edit(
    tx: &mut dyn Tx,
    id: u64,
    edit: &TicketEdit,
    author: &str,
    now: i64,
) -> StoreResult<Change> {
    let change = match edit {
        TicketEdit::Comment(text) => append(tx, id, "comment", author, text, None, now)?,
        TicketEdit::Assign(operator) => {
            // Only a live operator can be assigned a ticket.
            match tx.operator(operator)? {
                Some(o) if o.revoked_at.is_none() => {}
                _ => return Err(StoreError::NotFound(Missing::Operator(operator.clone()))),
            }
            assign(tx, id, operator, author, now)?
        }
        TicketEdit::Priority(p) => change_priority(tx, id, *p, author, now)?,
        TicketEdit::Status { to, note } => set_status(tx, id, *to, author, note, None, now)?,
    };
    change.ok_or(StoreError::NotFound(Missing::Ticket(id)))
}
