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
//!
//! **Times.** Every time of a ticket is the relay's, when it stored the
//! thing: `created_at` (an alert ticket's too: when the incident reached
//! the relay), `updated_at`, and each entry's `at`. An entry an agent's
//! event made also keeps `observed_at`, the time the agent observed it (its
//! result's `at`): after a relay outage the two differ, and the timeline
//! still tells when things really happened.
//!
//! **Bodies.** An entry's body is stored as text; entries that carry data
//! (results, diagnostic bundles, runbook verdicts, the result that opened an
//! alert ticket) hold it as JSON and reach consoles and webhooks as JSON
//! objects ([`entry_body`]), never as strings of JSON.

use crate::store::{now, rfc3339};
use anyhow::{Context, Result};
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
    body TEXT NOT NULL,
    observed_at INTEGER
);
CREATE INDEX IF NOT EXISTS entries_by_ticket ON ticket_entries (ticket_id, id);
"#;

/// Columns added to existing databases since their tables were created —
/// of any table of the relay's database (`crate::store`'s too):
/// `(table, column, type)`. `CREATE TABLE IF NOT EXISTS` leaves an old table
/// as it is, so [`upgrade`] adds what is missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("ticket_entries", "observed_at", "INTEGER"),
    ("tokens", "uses", "INTEGER"),
    ("tokens", "revoked_at", "INTEGER"),
    ("agents", "removed_at", "INTEGER"),
];

/// Bring a database made by an older relay up to [`SCHEMA`]: add each
/// missing column with `ALTER TABLE … ADD COLUMN` (guarded by
/// `PRAGMA table_info`; a column another relay added meanwhile is fine).
/// Idempotent; called by `Store::open` after [`SCHEMA`].
pub fn upgrade(db: &Connection) -> Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let mut stmt = db.prepare(&format!("PRAGMA table_info({table})"))?;
        let present = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .any(|c| c == column);
        if present {
            continue;
        }
        match db.execute(
            &format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"),
            [],
        ) {
            Ok(_) => tracing::info!("database upgraded: {table}.{column} added"),
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(e).with_context(|| format!("cannot add {table}.{column}")),
        }
    }
    Ok(())
}

/// Entry kinds whose body is JSON data (for `opened`, only on alert tickets).
pub const DATA_KINDS: &[&str] = &["result", "diagnostics", "verdict"];

/// The body of an entry as consoles and webhooks get it: the JSON object
/// stored for a data entry ([`DATA_KINDS`], and the `opened` entry of an
/// alert ticket), text for everything else — and text too when a data
/// entry's body is not a JSON object (an entry of an older relay).
pub fn entry_body(kind: &str, alert: bool, stored: &str) -> serde_json::Value {
    let data = DATA_KINDS.contains(&kind) || (kind == "opened" && alert);
    if data {
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(stored) {
            return v;
        }
    }
    serde_json::Value::String(stored.to_string())
}

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
    /// `None` when there is no such ticket. `observed_at` (Unix seconds) is
    /// when an agent observed what it reports.
    fn insert_entry(
        &self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
    ) -> Result<Option<i64>>;
    /// Set status (and `resolved_at` when resolving); false if no ticket.
    fn update_status(&self, id: u64, status: &str) -> Result<bool>;
    fn update_assignee(&self, id: u64, operator: &str) -> Result<bool>;
    fn set_priority(&self, id: u64, priority: &str) -> Result<()>;
    fn get(&self, id: u64) -> Result<Option<TicketSummary>>;
    /// The tickets matching every filter given, by id.
    fn list(&self, filter: &TicketFilter<'_>) -> Result<Vec<TicketSummary>>;
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
        self.create_observed(t, None)
    }

    /// [`TicketStore::create`] for what an agent observed at `observed_at`
    /// (Unix seconds): the `opened` entry keeps that time.
    fn create_observed(&self, t: &NewTicket<'_>, observed_at: Option<i64>) -> Result<Change> {
        let id = self.insert_ticket(t)?;
        self.append_observed(
            id,
            "opened",
            t.author,
            t.body.unwrap_or(t.title),
            observed_at,
        )?
        .context("ticket vanished after insert")
    }

    /// Add an entry to the timeline; `None` when there is no such ticket.
    fn append(&self, id: u64, kind: &str, author: &str, body: &str) -> Result<Option<Change>> {
        self.append_observed(id, kind, author, body, None)
    }

    /// [`TicketStore::append`] of what an agent observed at `observed_at`.
    fn append_observed(
        &self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
    ) -> Result<Option<Change>> {
        let Some(entry_id) = self.insert_entry(id, kind, author, body, observed_at)? else {
            return Ok(None);
        };
        let ticket = self.get(id)?.context("ticket vanished")?;
        let body = entry_body(kind, ticket.source == "alert", body);
        Ok(Some(Change {
            ticket,
            entry: TicketEntry {
                at: rfc3339(now()),
                observed_at: observed_at.map(rfc3339),
                kind: kind.into(),
                author: author.into(),
                body,
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
        self.set_status_observed(id, status, author, note, None)
    }

    /// [`TicketStore::set_status`] because of what an agent observed at
    /// `observed_at` (a recovery, a failure that is back).
    fn set_status_observed(
        &self,
        id: u64,
        status: &str,
        author: &str,
        note: &str,
        observed_at: Option<i64>,
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
            return Err(NotAllowed(format!(
                "ticket #{id} is {}; it cannot move to {status}",
                current.status
            ))
            .into());
        }
        self.update_status(id, status)?;
        let body = if note.is_empty() {
            format!("{} → {status}", current.status)
        } else {
            format!("{} → {status}: {note}", current.status)
        };
        self.append_observed(id, "status", author, &body, observed_at)
    }

    fn assign(&self, id: u64, operator: &str, author: &str) -> Result<Option<Change>> {
        if !self.update_assignee(id, operator)? {
            return Ok(None);
        }
        self.append(id, "assigned", author, &format!("assigned to {operator}"))
    }

    /// Set a ticket's priority (one of [`PRIORITIES`]), recorded as a
    /// `priority` entry `normal → urgent`.
    fn change_priority(&self, id: u64, priority: &str, author: &str) -> Result<Option<Change>> {
        check_priority(priority)?;
        let Some(current) = self.get(id)? else {
            return Ok(None);
        };
        self.set_priority(id, priority)?;
        self.append(
            id,
            "priority",
            author,
            &format!("{} → {priority}", current.priority),
        )
    }
}

/// What `tickets` may filter on; `None` matches everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct TicketFilter<'a> {
    pub status: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub assignee: Option<&'a str>,
    pub priority: Option<&'a str>,
    /// Case-insensitive (ASCII) substring of the title, the opening text of
    /// a technician's ticket, or a comment.
    pub search: Option<&'a str>,
    /// Opened at or after this time (Unix seconds).
    pub created_after: Option<i64>,
    /// Opened at or before this time (Unix seconds).
    pub created_before: Option<i64>,
}

/// A ticket's statuses and priorities, as the wire names them.
pub use firstline_proto::message::{PRIORITIES, STATUSES};

/// A refused ticket value (an unknown status or priority): the message
/// lists the valid ones.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

pub fn check_priority(p: &str) -> Result<(), InvalidValue> {
    if PRIORITIES.contains(&p) {
        return Ok(());
    }
    Err(InvalidValue(format!(
        "unknown priority `{p}`: use one of {}",
        PRIORITIES.join(", ")
    )))
}

pub fn check_status(s: &str) -> Result<(), InvalidValue> {
    if STATUSES.contains(&s) {
        return Ok(());
    }
    Err(InvalidValue(format!(
        "unknown status `{s}`: use one of {}",
        STATUSES.join(", ")
    )))
}

/// A status change the ticket's state does not allow (a closed ticket
/// cannot be resolved).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

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

    fn insert_entry(
        &self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
    ) -> Result<Option<i64>> {
        let n = self.execute(
            "UPDATE tickets SET updated_at = ?2 WHERE id = ?1",
            params![id as i64, now()],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.execute(
            "INSERT INTO ticket_entries (ticket_id, at, kind, author, body, observed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id as i64, now(), kind, author, body, observed_at],
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

    fn list(&self, f: &TicketFilter<'_>) -> Result<Vec<TicketSummary>> {
        let mut stmt = self.prepare(&format!(
            "SELECT {COLUMNS} FROM tickets t
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent = ?2)
               AND (?3 IS NULL OR assignee = ?3) AND (?4 IS NULL OR priority = ?4)
               AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at <= ?6)
               AND (?7 IS NULL
                    OR instr(lower(title), lower(?7)) > 0
                    OR EXISTS (SELECT 1 FROM ticket_entries e
                               WHERE e.ticket_id = t.id
                                 AND (e.kind = 'comment' OR (e.kind = 'opened' AND t.source <> 'alert'))
                                 AND instr(lower(e.body), lower(?7)) > 0))
             ORDER BY id"
        ))?;
        let rows = stmt.query_map(
            params![
                f.status,
                f.agent,
                f.assignee,
                f.priority,
                f.created_after,
                f.created_before,
                f.search
            ],
            row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn entries(&self, id: u64) -> Result<Vec<TicketEntry>> {
        let mut stmt = self.prepare(
            "SELECT e.at, e.kind, e.author, e.body, e.observed_at, t.source
             FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE e.ticket_id = ?1 ORDER BY e.id",
        )?;
        let rows = stmt.query_map([id as i64], |r| {
            let kind: String = r.get(1)?;
            let body: String = r.get(3)?;
            let source: String = r.get(5)?;
            Ok(TicketEntry {
                at: rfc3339(r.get(0)?),
                observed_at: r.get::<_, Option<i64>>(4)?.map(rfc3339),
                body: entry_body(&kind, source == "alert", &body),
                kind,
                author: r.get(2)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::{json, Value};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("relay.db")).unwrap();
        (dir, s)
    }

    fn ticket<'a>(source: &'a str, body: Option<&'a str>) -> NewTicket<'a> {
        NewTicket {
            title: "disk full",
            agent: Some("pc1"),
            check: Some("disk"),
            monitor: Some("disk /"),
            priority: "high",
            source,
            author: "pc1",
            body,
        }
    }

    #[test]
    fn data_entries_are_json_objects_and_text_stays_text() {
        let (_d, s) = store();
        let result = r#"{"check":"disk","target":"/","status":"crit","summary":"95% used","metrics":{},"duration_ms":1,"at":"2026-01-01T00:00:00Z"}"#;
        let (alert, tech) = s
            .with_tx(|tx| {
                let alert = tx.create_observed(&ticket("alert", Some(result)), Some(1_000))?;
                assert!(alert.entry.body.is_object(), "{:?}", alert.entry);
                assert_eq!(
                    alert.entry.observed_at.as_deref(),
                    Some("1970-01-01T00:16:40Z")
                );
                let id = alert.ticket.id;
                let c = tx
                    .append_observed(id, "diagnostics", "pc1", r#"{"top_cpu":[]}"#, Some(1_001))?
                    .unwrap();
                assert_eq!(c.entry.body, json!({"top_cpu": []}));
                tx.append(id, "comment", "tina", r#"{"looks":"like json"}"#)?;
                // A technician's ticket whose text looks like JSON is text.
                let tech = tx.create(&ticket("technician", Some(r#"{"a":1}"#)))?;
                assert!(tech.entry.body.is_string());
                assert_eq!(tech.entry.observed_at, None);
                Ok((id, tech.ticket.id))
            })
            .unwrap();
        let entries = s.read(|db| db.entries(alert)).unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["opened", "diagnostics", "comment"]);
        assert_eq!(entries[0].body["summary"], "95% used");
        assert_eq!(
            entries[1].observed_at.as_deref(),
            Some("1970-01-01T00:16:41Z")
        );
        assert_eq!(
            entries[2].body,
            Value::String(r#"{"looks":"like json"}"#.into())
        );
        assert_eq!(entries[2].observed_at, None);
        let entries = s.read(|db| db.entries(tech)).unwrap();
        assert_eq!(entries[0].body, Value::String(r#"{"a":1}"#.into()));
        // On the wire: objects, not strings of JSON.
        let wire = serde_json::to_value(s.read(|db| db.entries(alert)).unwrap()).unwrap();
        assert!(wire[0]["body"].is_object(), "{wire}");
        assert!(wire[0].get("observed_at").is_some(), "{wire}");
    }

    #[test]
    fn filters_match_exactly_the_tickets_asked_for() {
        let (_d, s) = store();
        let open = |title: &'static str, agent: &'static str, body: Option<&'static str>| {
            s.with_tx(|tx| {
                let mut t = ticket("technician", body);
                t.title = title;
                t.agent = Some(agent);
                t.priority = "normal";
                Ok(tx.create(&t)?.ticket.id)
            })
            .unwrap()
        };
        let a = open("Printer jammed", "pc1", None);
        let b = open("slow login", "pc2", Some("user says PRINTER is fine"));
        let c = open("disk", "pc1", None);
        s.with_tx(|tx| {
            tx.append(c, "comment", "tina", "Toner low on floor 2")?;
            tx.assign(a, "tina", "bob")?;
            tx.change_priority(c, "urgent", "bob")?;
            assert!(tx.change_priority(c, "soon", "bob").is_err());
            tx.set_status(b, "in_progress", "bob", "")?;
            Ok(())
        })
        .unwrap();
        // Ticket `a` is old.
        s.with_tx(|tx| {
            tx.execute(
                "UPDATE tickets SET created_at = created_at - 86400 * 10 WHERE id = ?1",
                [a as i64],
            )?;
            Ok(())
        })
        .unwrap();
        let ids = |f: TicketFilter<'_>| -> Vec<u64> {
            s.read(|db| db.list(&f))
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect()
        };
        assert_eq!(ids(TicketFilter::default()), [a, b, c]);
        let search = |text| TicketFilter {
            search: Some(text),
            ..Default::default()
        };
        assert_eq!(
            ids(search("printer")),
            [a, b],
            "title and opening text, any case"
        );
        assert_eq!(ids(search("TONER")), [c], "comments");
        assert_eq!(
            ids(search("50%")),
            Vec::<u64>::new(),
            "no pattern characters"
        );
        assert_eq!(
            ids(TicketFilter {
                assignee: Some("tina"),
                ..Default::default()
            }),
            [a]
        );
        assert_eq!(
            ids(TicketFilter {
                priority: Some("urgent"),
                ..Default::default()
            }),
            [c]
        );
        assert_eq!(
            ids(TicketFilter {
                status: Some("in_progress"),
                ..Default::default()
            }),
            [b]
        );
        assert_eq!(
            ids(TicketFilter {
                agent: Some("pc1"),
                status: Some("open"),
                ..Default::default()
            }),
            [a, c]
        );
        let day_ago = now() - 86_400;
        assert_eq!(
            ids(TicketFilter {
                created_after: Some(day_ago),
                ..Default::default()
            }),
            [b, c]
        );
        assert_eq!(
            ids(TicketFilter {
                created_before: Some(day_ago),
                ..Default::default()
            }),
            [a]
        );
        let entries = s.read(|db| db.entries(c)).unwrap();
        let last = entries.last().unwrap();
        assert_eq!(
            (last.kind.as_str(), last.body.as_str()),
            ("priority", Some("normal → urgent"))
        );
        assert!(check_status("opn")
            .unwrap_err()
            .0
            .contains("open, in_progress, resolved, closed"));
        assert!(check_priority("hi")
            .unwrap_err()
            .0
            .contains("low, normal, high, urgent"));
    }

    #[test]
    fn a_data_entry_that_is_not_an_object_stays_text() {
        assert_eq!(entry_body("result", true, "{}"), json!({}));
        assert_eq!(entry_body("result", true, "not json"), json!("not json"));
        assert_eq!(entry_body("verdict", false, "[1]"), json!("[1]"));
        assert_eq!(entry_body("opened", false, "{}"), json!("{}"));
        assert_eq!(entry_body("status", true, "{}"), json!("{}"));
    }

    #[test]
    fn entries_of_older_peers_still_parse() {
        let old =
            r#"{"at":"2026-01-01T00:00:00Z","kind":"result","author":"pc1","body":"{\"a\":1}"}"#;
        let e: TicketEntry = serde_json::from_str(old).unwrap();
        assert_eq!(e.observed_at, None);
        assert_eq!(e.body, json!("{\"a\":1}"));
    }

    #[test]
    fn a_database_of_an_older_relay_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let db = Connection::open(&path).unwrap();
            // The ticket tables as an older relay made them.
            db.execute_batch(&SCHEMA.replace(",\n    observed_at INTEGER", ""))
                .unwrap();
            db.execute(
                "INSERT INTO tickets (title, status, priority, source, created_at, updated_at)
                 VALUES ('old', 'open', 'normal', 'alert', 1, 1)",
                [],
            )
            .unwrap();
            db.execute(
                "INSERT INTO ticket_entries (ticket_id, at, kind, author, body)
                 VALUES (1, 1, 'result', 'pc1', '{\"status\":\"crit\"}')",
                [],
            )
            .unwrap();
            let has =
                |db: &Connection| db.prepare("SELECT observed_at FROM ticket_entries").is_ok();
            assert!(!has(&db), "the old table has no observed_at");
        }
        // Opening it upgrades it.
        let s = Store::open(&path).unwrap();
        let entries = s.read(|db| db.entries(1)).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].observed_at, None);
        assert_eq!(entries[0].body["status"], "crit");
        s.with_tx(|tx| tx.append_observed(1, "result", "pc1", "{}", Some(5)))
            .unwrap()
            .unwrap();
        let entries = s.read(|db| db.entries(1)).unwrap();
        assert_eq!(
            entries[1].observed_at.as_deref(),
            Some("1970-01-01T00:00:05Z")
        );
        // Again: nothing left to add.
        s.read(upgrade).unwrap();
        s.read(upgrade).unwrap();
    }

    #[test]
    fn an_insert_into_an_older_table_upgrades_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&SCHEMA.replace(",\n    observed_at INTEGER", ""))
            .unwrap();
        let s = Store::open(&path).unwrap();
        let c = s
            .with_tx(|tx| tx.create_observed(&ticket("alert", Some("{}")), Some(7)))
            .unwrap();
        let entries = s.read(|db| db.entries(c.ticket.id)).unwrap();
        assert_eq!(
            entries[0].observed_at.as_deref(),
            Some("1970-01-01T00:00:07Z")
        );
    }
}
