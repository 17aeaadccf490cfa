//! The durable outbox: monitoring events are written here (SQLite, WAL,
//! `synchronous=FULL`, so a committed event survives kill -9 and power loss)
//! before anything is sent, and leave only when the relay acknowledges them.
//!
//! Sequence numbers are the table's AUTOINCREMENT row ids: strictly
//! increasing and never reused, even after deletes. The outbox is bounded:
//! when full, the oldest plain results are dropped (and counted); incident
//! events are never dropped. It also keeps each monitor's incident state so
//! an agent restart neither forgets an open incident nor opens it twice.

use anyhow::{Context, Result};
use firstline_proto::AgentEvent;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::Notify;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    droppable INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_state (
    monitor TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
"#;

pub struct Outbox {
    db: Mutex<Connection>,
    max_events: u64,
    /// Wakes the sender when an event arrives.
    pub arrived: Notify,
}

impl Outbox {
    pub fn open(path: &Path, max_events: u64) -> Result<Outbox> {
        // Owner-only (0600) before SQLite opens it: its -wal/-shm take that mode.
        firstline_net::private::private_database(path)
            .with_context(|| format!("cannot create outbox {}", path.display()))?;
        let db = Connection::open(path)
            .with_context(|| format!("cannot open outbox {}", path.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Outbox {
            db: Mutex::new(db),
            max_events: max_events.max(1),
            arrived: Notify::new(),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store an event (its `seq` is assigned here) and, in the same
    /// transaction (one fsync, and no crash can leave them apart), the
    /// monitor's incident state after it. Returns the sequence number, or
    /// `None` when a plain result was dropped because the outbox is full of
    /// events that must not be dropped.
    pub fn push(&self, event: &AgentEvent, state: Option<&str>) -> Result<Option<u64>> {
        let droppable = event.kind.droppable();
        let mut db = self.db();
        let tx = db.transaction()?;
        if let Some(state) = state {
            tx.execute(
                "INSERT INTO monitor_state (monitor, state) VALUES (?1, ?2)
                 ON CONFLICT(monitor) DO UPDATE SET state = excluded.state",
                params![event.monitor, state],
            )?;
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        if count as u64 >= self.max_events {
            let oldest: Option<i64> = tx
                .query_row("SELECT MIN(seq) FROM events WHERE droppable = 1", [], |r| {
                    r.get(0)
                })
                .optional()?
                .flatten();
            match oldest {
                Some(seq) => {
                    tx.execute("DELETE FROM events WHERE seq = ?1", [seq])?;
                    bump(&tx, "dropped")?;
                }
                None if droppable => {
                    bump(&tx, "dropped")?;
                    tx.commit()?;
                    return Ok(None);
                }
                None => {}
            }
        }
        let mut body = serde_json::to_value(event)?;
        if let Some(obj) = body.as_object_mut() {
            obj.remove("seq");
        }
        tx.execute(
            "INSERT INTO events (droppable, body) VALUES (?1, ?2)",
            params![droppable, body.to_string()],
        )?;
        let seq = tx.last_insert_rowid() as u64;
        tx.commit()?;
        drop(db);
        self.arrived.notify_one();
        Ok(Some(seq))
    }

    /// The oldest `limit` events, in sequence order.
    pub fn peek(&self, limit: usize) -> Result<Vec<AgentEvent>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT seq, body FROM events ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            let mut value: serde_json::Value = serde_json::from_str(&body)?;
            value["seq"] = seq.into();
            out.push(
                serde_json::from_value(value)
                    .with_context(|| format!("outbox event {seq} unreadable"))?,
            );
        }
        Ok(out)
    }

    /// Whether the event `seq` still waits for the relay.
    pub fn holds(&self, seq: u64) -> Result<bool> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM events WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// The `firstline-help ask` requests of `user` still waiting, oldest
    /// first.
    pub fn help_requests(&self, user: &str) -> Result<Vec<AgentEvent>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT body FROM events WHERE droppable = 0 AND body LIKE '%\"help_request\"%' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows.flatten() {
            let mut value: serde_json::Value = serde_json::from_str(&body)?;
            value["seq"] = 0.into();
            if let Ok(ev) = serde_json::from_value::<AgentEvent>(value) {
                if ev.help.as_ref().is_some_and(|h| h.user == user) {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }

    /// The relay stored everything up to `upto`.
    pub fn ack(&self, upto: u64) -> Result<usize> {
        Ok(self
            .db()
            .execute("DELETE FROM events WHERE seq <= ?1", [upto as i64])?)
    }

    pub fn len(&self) -> Result<u64> {
        let n: i64 = self
            .db()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Plain results dropped because the outbox was full.
    pub fn dropped(&self) -> Result<u64> {
        let n: Option<i64> = self
            .db()
            .query_row(
                "SELECT value FROM counters WHERE name = 'dropped'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// A monitor's saved incident state (JSON), if any.
    pub fn load_state(&self, monitor: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row(
                "SELECT state FROM monitor_state WHERE monitor = ?1",
                [monitor],
                |r| r.get(0),
            )
            .optional()?)
    }
}

fn bump(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [name],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::{CheckResult, EventKind, Status};

    fn event(kind: EventKind) -> AgentEvent {
        AgentEvent {
            seq: 0,
            monitor: "disk /".into(),
            kind,
            in_incident: kind != EventKind::Result,
            result: CheckResult::new("disk", "/", Status::Crit, "full"),
            diagnostics: None,
            help: None,
        }
    }

    #[test]
    fn sequence_survives_reopen_and_ack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let ob = Outbox::open(&path, 100).unwrap();
        assert_eq!(ob.push(&event(EventKind::Result), None).unwrap(), Some(1));
        assert_eq!(
            ob.push(&event(EventKind::IncidentOpened), None).unwrap(),
            Some(2)
        );
        ob.ack(2).unwrap();
        drop(ob);
        let ob = Outbox::open(&path, 100).unwrap();
        assert!(ob.is_empty().unwrap());
        assert_eq!(
            ob.push(&event(EventKind::Result), None).unwrap(),
            Some(3),
            "seq never reused"
        );
        let peeked = ob.peek(10).unwrap();
        assert_eq!(peeked.len(), 1);
        assert_eq!(peeked[0].seq, 3);
        assert_eq!(peeked[0].result.summary, "full");
    }

    #[test]
    fn state_is_stored_with_the_event_even_when_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 1).unwrap();
        ob.push(
            &event(EventKind::IncidentOpened),
            Some("{\"open\":\"crit\"}"),
        )
        .unwrap();
        assert_eq!(
            ob.push(&event(EventKind::Result), Some("{\"s\":2}"))
                .unwrap(),
            None
        );
        assert_eq!(
            ob.load_state("disk /").unwrap().as_deref(),
            Some("{\"s\":2}")
        );
    }

    #[test]
    fn full_outbox_drops_oldest_plain_results_only() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 3).unwrap();
        ob.push(&event(EventKind::Result), None).unwrap();
        ob.push(&event(EventKind::IncidentOpened), None).unwrap();
        ob.push(&event(EventKind::Result), None).unwrap();
        ob.push(&event(EventKind::IncidentUpdated), None).unwrap();
        let kinds: Vec<_> = ob
            .peek(10)
            .unwrap()
            .iter()
            .map(|e| (e.seq, e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (2, EventKind::IncidentOpened),
                (3, EventKind::Result),
                (4, EventKind::IncidentUpdated)
            ]
        );
        ob.push(&event(EventKind::IncidentResolved), None).unwrap();
        // Only incident events left: a new plain result is dropped, an incident event is kept.
        assert_eq!(ob.push(&event(EventKind::Result), None).unwrap(), None);
        assert!(ob
            .push(&event(EventKind::IncidentOpened), None)
            .unwrap()
            .is_some());
        assert_eq!(ob.len().unwrap(), 4);
        assert_eq!(ob.dropped().unwrap(), 3);
    }
}
