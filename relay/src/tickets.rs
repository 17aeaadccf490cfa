//! Tickets: id, title, agent, check, monitor, status (open → in_progress →
//! resolved → closed), priority, source (alert | technician), assignee,
//! timestamps, and a timeline of entries.
//!
//! Everything goes through the [`TicketStore`] trait: a few storage
//! primitives that each store implements (SQLite here, on a connection or —
//! through deref — a transaction, so the incident engine chains them inside
//! the transaction of the event it ingests; PostgreSQL would implement the
//! same on its transaction), and the ticket rules (status transitions, the
//! timeline) written once on top of them. Each change returns a [`Change`]:
//! the ticket after it and the entry it added, which the relay turns into
//! live notices and webhook deliveries.

use crate::store::{now, rfc3339};
use anyhow::{bail, Context, Result};
use firstline_proto::{TicketEntry, TicketSummary};
use rusqlite::{params, Connection, OptionalExtension};

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    agent TEXT,
    check_name TEXT,
    monitor TEXT,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    source TEXT NOT NULL,
    assignee TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE INDEX IF NOT EXISTS tickets_by_monitor ON tickets (agent, monitor, id);
CREATE TABLE IF NOT EXISTS ticket_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_ticket ON ticket_entries (ticket_id, id);
"#;

/// A ticket as it is after a change, and the entry the change added.
#[derive(Debug, Clone)]
pub struct Change {
    pub ticket: TicketSummary,
    pub entry: TicketEntry,
    pub entry_id: i64,
}

pub struct NewTicket<'a> {
    pub title: &'a str,
    pub agent: Option<&'a str>,
    pub check: Option<&'a str>,
    pub monitor: Option<&'a str>,
    pub priority: &'a str,
    pub source: &'a str,
    pub author: &'a str,
    pub body: Option<&'a str>,
}

/// What the ticket engine needs of a store.
pub trait TicketStore {
    // ---- primitives, one per store ----

    /// Insert an open ticket; its id.
    fn insert_ticket(&self, t: &NewTicket<'_>) -> Result<u64>;
    /// Append a timeline entry and touch `updated_at`; the entry's id, or
    /// `None` when there is no such ticket.
    fn insert_entry(&self, id: u64, kind: &str, author: &str, body: &str) -> Result<Option<i64>>;
    /// Set status (and `resolved_at` when resolving); false if no ticket.
    fn update_status(&self, id: u64, status: &str) -> Result<bool>;
    fn update_assignee(&self, id: u64, operator: &str) -> Result<bool>;
    fn set_priority(&self, id: u64, priority: &str) -> Result<()>;
    fn get(&self, id: u64) -> Result<Option<TicketSummary>>;
    fn list(&self, status: Option<&str>, agent: Option<&str>) -> Result<Vec<TicketSummary>>;
    fn entries(&self, id: u64) -> Result<Vec<TicketEntry>>;
    /// The most recent alert ticket of a monitor, with its resolution time.
    fn latest_for_monitor(
        &self,
        agent: &str,
        monitor: &str,
    ) -> Result<Option<(TicketSummary, Option<i64>)>>;
    /// Highest event sequence number ingested for an agent.
    fn last_seq(&self, agent: &str) -> Result<i64>;
    fn set_last_seq(&self, agent: &str, seq: i64) -> Result<()>;
    /// Latest result of a monitor (for dashboards).
    fn record_monitor_status(
        &self,
        agent: &str,
        monitor: &str,
        status: &str,
        summary: &str,
    ) -> Result<()>;

    // ---- the rules, written once ----

    fn create(&self, t: &NewTicket<'_>) -> Result<Change> {
        let id = self.insert_ticket(t)?;
        self.append(id, "opened", t.author, t.body.unwrap_or(t.title))?
            .context("ticket vanished after insert")
    }

    /// Add an entry to the timeline; `None` when there is no such ticket.
    fn append(&self, id: u64, kind: &str, author: &str, body: &str) -> Result<Option<Change>> {
        let Some(entry_id) = self.insert_entry(id, kind, author, body)? else {
            return Ok(None);
        };
        let ticket = self.get(id)?.context("ticket vanished")?;
        Ok(Some(Change {
            ticket,
            entry: TicketEntry {
                at: rfc3339(now()),
                kind: kind.into(),
                author: author.into(),
                body: body.into(),
            },
            entry_id,
        }))
    }

    /// Move a ticket to `status` (open → in_progress → resolved → closed;
    /// resolved or in_progress back to open), recording who and why.
    fn set_status(
        &self,
        id: u64,
        status: &str,
        author: &str,
        note: &str,
    ) -> Result<Option<Change>> {
        let Some(current) = self.get(id)? else {
            return Ok(None);
        };
        let allowed = match status {
            "in_progress" => matches!(current.status.as_str(), "open"),
            "resolved" => matches!(current.status.as_str(), "open" | "in_progress"),
            "closed" => current.status != "closed",
            "open" => matches!(current.status.as_str(), "resolved" | "in_progress"),
            _ => false,
        };
        if !allowed {
            bail!(
                "ticket #{id} is {}; it cannot move to {status}",
                current.status
            );
        }
        self.update_status(id, status)?;
        let body = if note.is_empty() {
            format!("{} → {status}", current.status)
        } else {
            format!("{} → {status}: {note}", current.status)
        };
        self.append(id, "status", author, &body)
    }

    fn assign(&self, id: u64, operator: &str, author: &str) -> Result<Option<Change>> {
        if !self.update_assignee(id, operator)? {
            return Ok(None);
        }
        self.append(id, "assigned", author, &format!("assigned to {operator}"))
    }
}

const COLUMNS: &str =
    "id, title, agent, check_name, status, priority, source, monitor, assignee, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketSummary> {
    Ok(TicketSummary {
        id: r.get::<_, i64>(0)? as u64,
        title: r.get(1)?,
        agent: r.get(2)?,
        check: r.get(3)?,
        status: r.get(4)?,
        priority: r.get(5)?,
        source: r.get(6)?,
        monitor: r.get(7)?,
        assignee: r.get(8)?,
        created_at: rfc3339(r.get(9)?),
        updated_at: rfc3339(r.get(10)?),
    })
}

/// The SQLite store (a transaction derefs to a connection).
impl TicketStore for Connection {
    fn insert_ticket(&self, t: &NewTicket<'_>) -> Result<u64> {
        self.execute(
            "INSERT INTO tickets (title, agent, check_name, monitor, status, priority, source, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?7)",
            params![t.title, t.agent, t.check, t.monitor, t.priority, t.source, now()],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn insert_entry(&self, id: u64, kind: &str, author: &str, body: &str) -> Result<Option<i64>> {
        let n = self.execute(
            "UPDATE tickets SET updated_at = ?2 WHERE id = ?1",
            params![id as i64, now()],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.execute(
            "INSERT INTO ticket_entries (ticket_id, at, kind, author, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id as i64, now(), kind, author, body],
        )?;
        Ok(Some(self.last_insert_rowid()))
    }

    fn update_status(&self, id: u64, status: &str) -> Result<bool> {
        let resolved_at = (status == "resolved").then(now);
        let n = self.execute(
            "UPDATE tickets SET status = ?2, resolved_at = COALESCE(?3, resolved_at) WHERE id = ?1",
            params![id as i64, status, resolved_at],
        )?;
        Ok(n > 0)
    }

    fn update_assignee(&self, id: u64, operator: &str) -> Result<bool> {
        let n = self.execute(
            "UPDATE tickets SET assignee = ?2 WHERE id = ?1",
            params![id as i64, operator],
        )?;
        Ok(n > 0)
    }

    fn set_priority(&self, id: u64, priority: &str) -> Result<()> {
        self.execute(
            "UPDATE tickets SET priority = ?2 WHERE id = ?1",
            params![id as i64, priority],
        )?;
        Ok(())
    }

    fn get(&self, id: u64) -> Result<Option<TicketSummary>> {
        Ok(self
            .query_row(
                &format!("SELECT {COLUMNS} FROM tickets WHERE id = ?1"),
                [id as i64],
                row,
            )
            .optional()?)
    }

    fn list(&self, status: Option<&str>, agent: Option<&str>) -> Result<Vec<TicketSummary>> {
        let mut stmt = self.prepare(&format!(
            "SELECT {COLUMNS} FROM tickets WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent = ?2) ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![status, agent], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn entries(&self, id: u64) -> Result<Vec<TicketEntry>> {
        let mut stmt = self.prepare(
            "SELECT at, kind, author, body FROM ticket_entries WHERE ticket_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id as i64], |r| {
            Ok(TicketEntry {
                at: rfc3339(r.get(0)?),
                kind: r.get(1)?,
                author: r.get(2)?,
                body: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn latest_for_monitor(
        &self,
        agent: &str,
        monitor: &str,
    ) -> Result<Option<(TicketSummary, Option<i64>)>> {
        let id: Option<(i64, Option<i64>)> = self
            .query_row(
                "SELECT id, resolved_at FROM tickets WHERE agent = ?1 AND monitor = ?2 AND source = 'alert'
                 ORDER BY id DESC LIMIT 1",
                params![agent, monitor],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match id {
            Some((id, resolved_at)) => Ok(self.get(id as u64)?.map(|t| (t, resolved_at))),
            None => Ok(None),
        }
    }

    fn last_seq(&self, agent: &str) -> Result<i64> {
        Ok(self.query_row(
            "SELECT last_seq FROM agents WHERE name = ?1",
            [agent],
            |r| r.get(0),
        )?)
    }

    fn set_last_seq(&self, agent: &str, seq: i64) -> Result<()> {
        self.execute(
            "UPDATE agents SET last_seq = ?2 WHERE name = ?1",
            params![agent, seq],
        )?;
        Ok(())
    }

    fn record_monitor_status(
        &self,
        agent: &str,
        monitor: &str,
        status: &str,
        summary: &str,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO monitor_status (agent, monitor, status, summary, at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(agent, monitor) DO UPDATE SET status = excluded.status, summary = excluded.summary, at = excluded.at",
            params![agent, monitor, status, summary, now()],
        )?;
        Ok(())
    }
}
