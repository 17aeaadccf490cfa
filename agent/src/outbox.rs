//! The durable outbox: monitoring events are written here (SQLite, WAL)
//! before anything is sent, and leave only when the relay acknowledges them.
//!
//! Durability: an event that must not be lost — an incident event, a
//! `firstline-help ask` request — is committed with `synchronous=FULL`, so
//! it survives kill -9 and power loss before the agent says it is queued. A
//! plain scheduled result (the event a full outbox may drop anyway) and the
//! trimming of acknowledged events are committed with `synchronous=NORMAL`:
//! in WAL mode that survives kill -9 and an agent restart, and the next FULL
//! commit (or checkpoint) makes it durable against power loss too. Why: an
//! idle agent with every monitor ok produced two fsyncs per monitor run
//! (the result, then its trimming) for events nobody is waiting for.
//!
//! Sequence numbers are the table's AUTOINCREMENT row ids: strictly
//! increasing and never reused, even after deletes. A plain result can be
//! sent, and its number stored by the relay (which ignores numbers at or
//! below the last it stored), and then be lost from disk with a power
//! loss; so numbers are reserved ahead, [`SEQ_RESERVE`] at a time, in FULL
//! commits, and after a restart the next number is above every reserved
//! one: never a number the relay may already have seen.
//!
//! The outbox is bounded: when full, the oldest plain results are dropped
//! (and counted); incident events are never dropped. It also keeps each
//! monitor's incident state so an agent restart neither forgets an open
//! incident nor opens it twice (the state changes that matter, opening and
//! resolving, come with incident events, so they are FULL commits).
//!
//! **A full disk.** When the outbox cannot be written (a full disk, an I/O
//! error), [`Outbox::push_or_hold`] keeps an incident event in memory, in
//! order, up to [`HELD_MAX`] events, and writes the held events first (in
//! order, each with the monitor state after it) on every later push, so
//! they reach the relay as soon as the disk has room again; plain results
//! are dropped (and counted) meanwhile. The episode is logged once when it
//! begins and once when it ends, and its end is reported to the relay as a
//! result of the monitor `outbox`. Held events live in memory only: an
//! agent restarted while holding them starts again from the state on disk
//! (which none of them moved), so the condition is observed again.

use anyhow::{Context, Result};
use firstline_proto::AgentEvent;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    droppable INTEGER NOT NULL,
    body TEXT NOT NULL
);
-- The oldest droppable event, found when the outbox is full without
-- walking the incidents and help requests queued before it.
CREATE INDEX IF NOT EXISTS events_droppable ON events (seq) WHERE droppable = 1;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_state (
    monitor TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
"#;

/// Sequence numbers reserved by one FULL commit.
pub const SEQ_RESERVE: u64 = 1024;

/// Incident events kept in memory while the outbox cannot be written.
pub const HELD_MAX: usize = 10_000;

/// The monitor name under which the end of a full-disk episode is reported.
pub const OUTBOX_MONITOR: &str = "outbox";

/// What became of an event given to [`Outbox::push_or_hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written, with this sequence number.
    Stored(u64),
    /// A plain result, dropped (the outbox is full, or cannot be written).
    Dropped,
    /// The outbox cannot be written: held in memory, written first when it
    /// can be again.
    Held,
}

/// The events held while the outbox cannot be written, and the episode.
#[derive(Default)]
struct Holding {
    events: VecDeque<(AgentEvent, Option<String>)>,
    /// Since when the outbox cannot be written, and the first error.
    since: Option<(Instant, String)>,
    /// Incident events held and plain results dropped in this episode.
    held: u64,
    dropped: u64,
}

pub struct Outbox {
    db: Mutex<Db>,
    holding: Mutex<Holding>,
    /// [`HELD_MAX`] (lower in tests).
    held_max: usize,
    max_events: u64,
    /// Wakes the sender when an event arrives.
    pub arrived: Notify,
}

struct Db {
    conn: Connection,
    /// Whether the connection commits with `synchronous=FULL` now.
    full: bool,
    /// The highest sequence number handed out or, after a restart, the
    /// highest that may have been (the reservation read at open).
    last_seq: u64,
    /// Sequence numbers up to this one are reserved on disk.
    reserved: u64,
    /// The rows in `events`: counted once at open, then kept by every
    /// write that adds or removes rows, after its commit. Not a
    /// `COUNT(*)` per event: that walks the whole table, and the table
    /// sits at the limit while the relay is unreachable. `None` while a
    /// write is under way and after one that failed (a failed commit may
    /// or may not have reached the file): the next use counts again.
    events: Option<u64>,
}

impl Db {
    /// Commit the next transactions with `synchronous=FULL` (or NORMAL).
    fn durable(&mut self, full: bool) -> Result<()> {
        if self.full != full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full = full;
        }
        Ok(())
    }

    /// The rows in `events` (see the field).
    fn events(&mut self) -> Result<u64> {
        match self.events {
            Some(n) => Ok(n),
            None => {
                let n = count_events(&self.conn)?;
                self.events = Some(n);
                Ok(n)
            }
        }
    }
}

/// Walks the whole table: at open, and after a failed write only.
fn count_events(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
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
        // As the relay's store: no re-preparing of cached statements on
        // every bind (SQLite's STAT4 build otherwise may; see the relay's
        // `store::sqlite::connect`).
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        db.execute_batch(SCHEMA)?;
        let handed_out: i64 = db.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            [],
            |r| r.get(0),
        )?;
        let reserved: Option<i64> = db
            .query_row(
                "SELECT value FROM counters WHERE name = 'seq_reserved'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let reserved = reserved.unwrap_or(0).max(0) as u64;
        let events = count_events(&db)?;
        Ok(Outbox {
            db: Mutex::new(Db {
                conn: db,
                full: true,
                // Numbers up to the reservation may have been handed out
                // (and sent) in commits a power loss took back.
                last_seq: (handed_out.max(0) as u64).max(reserved),
                reserved,
                events: Some(events),
            }),
            holding: Mutex::new(Holding::default()),
            held_max: HELD_MAX,
            max_events: max_events.max(1),
            arrived: Notify::new(),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store an event (its `seq` is assigned here) and, in the same
    /// transaction (no crash can leave them apart), the monitor's incident
    /// state after it; on disk before this returns unless the event is a
    /// plain result (see the module's doc). Returns the sequence number, or
    /// `None` when a plain result was dropped because the outbox is full of
    /// events that must not be dropped.
    pub fn push(&self, event: &AgentEvent, state: Option<&str>) -> Result<Option<u64>> {
        let droppable = event.kind.droppable();
        let mut guard = self.db();
        let db = &mut *guard;
        let next = db.last_seq + 1;
        let reserve = next > db.reserved;
        let count = db.events()?;
        db.durable(!droppable || reserve)?;
        // Unknown until the commit: a write that fails and rolls back
        // (returning early below) leaves it to be counted again.
        db.events = None;
        let tx = db.conn.transaction()?;
        if reserve {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('seq_reserved', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(next - 1 + SEQ_RESERVE) as i64],
            )?;
        }
        if let Some(state) = state {
            tx.prepare_cached(
                "INSERT INTO monitor_state (monitor, state) VALUES (?1, ?2)
                 ON CONFLICT(monitor) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![event.monitor, state])?;
        }
        // Rows this transaction removes to make room.
        let mut removed = 0;
        if count >= self.max_events {
            let oldest: Option<i64> = tx
                .query_row("SELECT MIN(seq) FROM events WHERE droppable = 1", [], |r| {
                    r.get(0)
                })
                .optional()?
                .flatten();
            match oldest {
                Some(seq) => {
                    removed = tx.execute("DELETE FROM events WHERE seq = ?1", [seq])? as u64;
                    bump(&tx, "dropped")?;
                }
                None if droppable => {
                    bump(&tx, "dropped")?;
                    tx.commit()?;
                    db.events = Some(count);
                    return Ok(None);
                }
                None => {}
            }
        }
        let mut body = serde_json::to_value(event)?;
        if let Some(obj) = body.as_object_mut() {
            obj.remove("seq");
        }
        // Above every number handed out before, including those of commits
        // a power loss may have taken back (AUTOINCREMENT alone would give
        // one of them again).
        let added = tx
            .prepare_cached("INSERT INTO events (seq, droppable, body) VALUES (?1, ?2, ?3)")?
            .execute(params![next as i64, droppable, body.to_string()])? as u64;
        tx.commit()?;
        // `removed` is at most 1 (one row by its key).
        db.events = (count + added).checked_sub(removed);
        db.last_seq = next;
        if reserve {
            db.reserved = next - 1 + SEQ_RESERVE;
        }
        drop(guard);
        self.arrived.notify_one();
        Ok(Some(next))
    }

    /// [`Outbox::push`], for a monitor's event: the events held before it
    /// are written first; when the outbox cannot be written an incident
    /// event is held in memory (in order) and a plain result dropped. `Err`
    /// only when [`HELD_MAX`] events are held already: the caller keeps its
    /// previous state, so it observes the transition again.
    pub fn push_or_hold(&self, event: &AgentEvent, state: Option<&str>) -> Result<Pushed> {
        let mut h = self.holding.lock().unwrap_or_else(|p| p.into_inner());
        let flushed = self.flush_locked(&mut h);
        let error = match flushed {
            Ok(()) => match self.push(event, state) {
                Ok(Some(seq)) => {
                    self.end_episode(&mut h);
                    return Ok(Pushed::Stored(seq));
                }
                Ok(None) => return Ok(Pushed::Dropped),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if h.since.is_none() {
            tracing::error!(
                "cannot write to the outbox: {error:#}; incident events are held in memory \
                 (up to {HELD_MAX}) and written first when it can be written again, plain \
                 results are dropped meanwhile"
            );
            h.since = Some((Instant::now(), format!("{error:#}")));
        }
        if event.kind.droppable() {
            h.dropped += 1;
            return Ok(Pushed::Dropped);
        }
        if h.events.len() >= self.held_max {
            anyhow::bail!(
                "cannot write to the outbox ({error:#}) and {} incident events are held already",
                self.held_max
            );
        }
        h.events
            .push_back((event.clone(), state.map(str::to_string)));
        h.held += 1;
        Ok(Pushed::Held)
    }

    /// Write the held events, in order; `Err` at the first that fails.
    fn flush_locked(&self, h: &mut Holding) -> Result<()> {
        while let Some((event, state)) = h.events.front() {
            self.push(event, state.as_deref())?;
            h.events.pop_front();
        }
        Ok(())
    }

    /// Write the held events now if the outbox can be written (the sender
    /// calls this too, so they leave even while no monitor runs).
    pub fn flush_held(&self) {
        let mut h = self.holding.lock().unwrap_or_else(|p| p.into_inner());
        if h.since.is_some() && self.flush_locked(&mut h).is_ok() {
            self.end_episode(&mut h);
        }
    }

    /// The events held in memory now.
    pub fn held(&self) -> usize {
        self.holding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .len()
    }

    /// The outbox could be written (nothing is held): end the episode, if
    /// one was under way — logged, and reported to the relay.
    fn end_episode(&self, h: &mut Holding) {
        if !h.events.is_empty() {
            return;
        }
        let Some((since, error)) = h.since.take() else {
            return;
        };
        let (held, dropped) = (std::mem::take(&mut h.held), std::mem::take(&mut h.dropped));
        let secs = since.elapsed().as_secs();
        let summary = format!(
            "the outbox could not be written for {secs} s ({error}): {held} incident events were \
             held in memory and are written now, {dropped} plain results were dropped"
        );
        tracing::warn!("the outbox can be written again: {summary}");
        let mut result = firstline_proto::CheckResult::new(
            OUTBOX_MONITOR,
            "",
            firstline_proto::Status::Warn,
            summary,
        )
        .field("held", held.to_string())
        .field("dropped", dropped.to_string())
        .field("seconds", secs.to_string());
        result.at = crate::checks::now_rfc3339();
        let event = AgentEvent {
            seq: 0,
            monitor: OUTBOX_MONITOR.into(),
            kind: firstline_proto::EventKind::Result,
            in_incident: false,
            result,
            diagnostics: None,
            help: None,
        };
        if let Err(e) = self.push(&event, None) {
            tracing::warn!("cannot report the outbox's episode to the relay: {e:#}");
        }
    }

    /// The oldest `limit` events, in sequence order.
    pub fn peek(&self, limit: usize) -> Result<Vec<AgentEvent>> {
        let db = self.db();
        let mut stmt = db
            .conn
            .prepare_cached("SELECT seq, body FROM events ORDER BY seq LIMIT ?1")?;
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
        let n: i64 = self.db().conn.query_row(
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
        let mut stmt = db.conn.prepare(
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

    /// The relay stored everything up to `upto`. Not a FULL commit: if a
    /// power loss takes it back, those events are sent again and the relay
    /// ignores them (at-least-once).
    pub fn ack(&self, upto: u64) -> Result<usize> {
        let mut db = self.db();
        db.durable(false)?;
        // Unknown until the delete is committed (see `Db::events`).
        let before = db.events.take();
        let n = db
            .conn
            .prepare_cached("DELETE FROM events WHERE seq <= ?1")?
            .execute([upto as i64])?;
        db.events = before.and_then(|c| c.checked_sub(n as u64));
        Ok(n)
    }

    /// The events waiting (the kept count: no walk of the table).
    pub fn len(&self) -> Result<u64> {
        self.db().events()
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Plain results dropped because the outbox was full.
    pub fn dropped(&self) -> Result<u64> {
        let n: Option<i64> = self
            .db()
            .conn
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
            .conn
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
        // After a restart, above every reserved number.
        let after = SEQ_RESERVE + 1;
        assert_eq!(
            ob.push(&event(EventKind::Result), None).unwrap(),
            Some(after),
            "seq never reused"
        );
        let peeked = ob.peek(10).unwrap();
        assert_eq!(peeked.len(), 1);
        assert_eq!(peeked[0].seq, after);
        assert_eq!(peeked[0].result.summary, "full");
        assert_eq!(
            ob.push(&event(EventKind::IncidentOpened), None).unwrap(),
            Some(after + 1)
        );
    }

    /// Plain results are not FULL commits: a power loss may take back the
    /// last of them after the relay stored their numbers. Simulated here by
    /// removing them from the file; the numbers that follow are still new.
    #[test]
    fn numbers_lost_with_a_power_loss_are_never_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let ob = Outbox::open(&path, 100_000).unwrap();
        let mut last = 0;
        for _ in 0..(SEQ_RESERVE + 10) {
            last = ob.push(&event(EventKind::Result), None).unwrap().unwrap();
        }
        assert_eq!(last, SEQ_RESERVE + 10, "consecutive while running");
        drop(ob);
        // What the disk could hold after losing the commits since the last
        // FULL one (the reservation at seq SEQ_RESERVE + 1).
        let db = Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "DELETE FROM events WHERE seq > {r}; UPDATE sqlite_sequence SET seq = {r} WHERE name = 'events';",
            r = SEQ_RESERVE + 1
        ))
        .unwrap();
        drop(db);
        let ob = Outbox::open(&path, 100_000).unwrap();
        let next = ob.push(&event(EventKind::Result), None).unwrap().unwrap();
        assert!(next > last, "{next} after {last}");
        assert_eq!(next, 2 * SEQ_RESERVE + 1);
    }

    /// Incident events are FULL commits, plain results and trimming are not.
    #[test]
    fn only_what_must_not_be_lost_waits_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 100).unwrap();
        let full = |ob: &Outbox| {
            let n: i64 = ob
                .db()
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            n == 2
        };
        // The first number of a reservation is a FULL commit.
        ob.push(&event(EventKind::Result), None).unwrap();
        assert!(full(&ob));
        ob.push(&event(EventKind::Result), None).unwrap();
        assert!(!full(&ob), "a plain result");
        ob.push(&event(EventKind::IncidentOpened), None).unwrap();
        assert!(full(&ob), "an incident event");
        ob.ack(3).unwrap();
        assert!(!full(&ob), "trimming");
        ob.push(&event(EventKind::HelpRequest), None).unwrap();
        assert!(full(&ob), "a help request");
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

    /// The kept count, which must be known (not left to a recount), and
    /// the rows really in the table.
    fn kept_and_real(ob: &Outbox) -> (Option<u64>, u64) {
        let db = ob.db();
        (db.events, count_events(&db.conn).unwrap())
    }

    #[track_caller]
    fn assert_count(ob: &Outbox, expected: u64) {
        assert_eq!(kept_and_real(ob), (Some(expected), expected));
        assert_eq!(ob.len().unwrap(), expected);
    }

    fn help(user: &str) -> AgentEvent {
        let mut ev = event(EventKind::HelpRequest);
        ev.help = Some(firstline_proto::HelpRequest {
            user: user.into(),
            text: "printer".into(),
            after: None,
        });
        ev
    }

    /// The count each push checks against the limit is kept, not counted
    /// per event; it stays exact through drops, incident events and help
    /// requests past the limit, acks and a reopen.
    #[test]
    fn kept_count_stays_exact_through_drops_acks_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let ob = Outbox::open(&path, 4).unwrap();
        assert_count(&ob, 0);
        // Up to the limit.
        ob.push(&event(EventKind::Result), None).unwrap();
        assert_count(&ob, 1);
        ob.push(
            &event(EventKind::IncidentOpened),
            Some("{\"open\":\"crit\"}"),
        )
        .unwrap();
        assert_count(&ob, 2);
        ob.push(&help("ann"), None).unwrap();
        assert_count(&ob, 3);
        ob.push(&event(EventKind::Result), None).unwrap();
        assert_count(&ob, 4);
        // Past it: each push drops the oldest plain result (seq 1, then 4).
        assert_eq!(ob.push(&event(EventKind::Result), None).unwrap(), Some(5));
        assert_count(&ob, 4);
        assert_eq!(
            ob.push(&event(EventKind::IncidentUpdated), None).unwrap(),
            Some(6)
        );
        assert_count(&ob, 4);
        assert_eq!(ob.dropped().unwrap(), 2);
        // Seq 5 is the last plain result: dropped for a help request, then
        // only events that are never dropped are left, and they go past
        // the limit.
        ob.push(&help("bob"), None).unwrap();
        assert_count(&ob, 4);
        ob.push(&event(EventKind::IncidentResolved), None).unwrap();
        assert_count(&ob, 5);
        ob.push(&help("ann"), None).unwrap();
        assert_count(&ob, 6);
        // A plain result now is dropped itself: no row added or removed.
        assert_eq!(
            ob.push(&event(EventKind::Result), Some("{}")).unwrap(),
            None
        );
        assert_count(&ob, 6);
        assert_eq!(ob.dropped().unwrap(), 4);
        assert_eq!(ob.help_requests("ann").unwrap().len(), 2);
        let seqs: Vec<u64> = ob.peek(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 6, 7, 8, 9]);
        // Acks count the rows they delete, none when nothing is left
        // below their number.
        assert_eq!(ob.ack(3).unwrap(), 2);
        assert_count(&ob, 4);
        assert_eq!(ob.ack(5).unwrap(), 0);
        assert_count(&ob, 4);
        assert_eq!(ob.ack(7).unwrap(), 2);
        assert_count(&ob, 2);
        drop(ob);
        // Reopened: counted again, then kept again.
        let ob = Outbox::open(&path, 4).unwrap();
        assert_count(&ob, 2);
        for n in 3..=4 {
            ob.push(&event(EventKind::Result), None).unwrap();
            assert_count(&ob, n);
        }
        ob.push(&event(EventKind::Result), None).unwrap();
        assert_count(&ob, 4);
        assert_eq!(ob.dropped().unwrap(), 5);
        drop(ob);
        // Reopened with a lower limit than it holds: a push drops one, adds one.
        let ob = Outbox::open(&path, 2).unwrap();
        assert_count(&ob, 4);
        ob.push(&event(EventKind::Result), None).unwrap();
        assert_count(&ob, 4);
        ob.ack(u64::MAX >> 1).unwrap();
        assert_count(&ob, 0);
        assert!(ob.is_empty().unwrap());
    }

    /// A write whose transaction rolls back (here after it dropped a row
    /// to make room) changes neither the rows nor the count.
    #[test]
    fn a_write_that_rolls_back_leaves_the_count_exact() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 3).unwrap();
        for _ in 0..3 {
            ob.push(&event(EventKind::Result), None).unwrap();
        }
        assert_count(&ob, 3);
        // The insert of seq 4 fails, after the delete of seq 1 ran.
        ob.db()
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail_insert BEFORE INSERT ON events
                 WHEN NEW.seq = 4 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        assert!(ob.push(&event(EventKind::Result), None).is_err());
        assert_eq!(kept_and_real(&ob).1, 3);
        assert_eq!(ob.len().unwrap(), 3);
        assert_eq!(ob.dropped().unwrap(), 0);
        assert_eq!(ob.peek(1).unwrap()[0].seq, 1, "the drop rolled back");
        ob.db()
            .conn
            .execute_batch(
                "DROP TRIGGER fail_insert;
                 CREATE TEMP TRIGGER fail_delete BEFORE DELETE ON events
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        assert!(ob.ack(2).is_err());
        assert_eq!(ob.len().unwrap(), 3);
        ob.db()
            .conn
            .execute_batch("DROP TRIGGER fail_delete;")
            .unwrap();
        assert_eq!(ob.push(&event(EventKind::Result), None).unwrap(), Some(4));
        assert_count(&ob, 3);
        assert_eq!(ob.ack(2).unwrap(), 1);
        assert_count(&ob, 2);
    }

    /// An outbox that cannot be written (a trigger fails every insert, as
    /// a full disk would): incident events are held in order with their
    /// states, plain results dropped; once it can be written the held
    /// events go first, then the new one, then the episode's report.
    #[test]
    fn incident_events_are_held_while_the_outbox_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(&dir.path().join("o.db"), 100_000).unwrap();
        ob.held_max = 50;
        const HELD_MAX: usize = 50;
        assert_eq!(
            ob.push_or_hold(&event(EventKind::Result), Some("s0"))
                .unwrap(),
            Pushed::Stored(1)
        );
        ob.db()
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER full BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        let kinds = [
            EventKind::IncidentOpened,
            EventKind::Result,
            EventKind::IncidentResolved,
            EventKind::IncidentOpened,
        ];
        let got: Vec<Pushed> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                ob.push_or_hold(&event(*k), Some(&format!("s{}", i + 1)))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            got,
            [Pushed::Held, Pushed::Dropped, Pushed::Held, Pushed::Held]
        );
        assert_eq!(ob.held(), 3);
        assert_eq!(ob.load_state("disk /").unwrap().as_deref(), Some("s0"));
        assert_eq!(ob.peek(10).unwrap().len(), 1, "nothing written");
        // Bounded: past HELD_MAX an incident event is refused (the monitor
        // keeps its previous state), a result still dropped.
        for _ in 3..HELD_MAX {
            assert_eq!(
                ob.push_or_hold(&event(EventKind::IncidentUpdated), Some("s4"))
                    .unwrap(),
                Pushed::Held
            );
        }
        assert!(ob
            .push_or_hold(&event(EventKind::IncidentUpdated), None)
            .is_err());
        assert_eq!(
            ob.push_or_hold(&event(EventKind::Result), None).unwrap(),
            Pushed::Dropped
        );
        assert_eq!(ob.held(), HELD_MAX);
        ob.db().conn.execute_batch("DROP TRIGGER full;").unwrap();
        // The sender's flush writes them all, in order, then the report.
        ob.flush_held();
        assert_eq!(ob.held(), 0);
        let all = ob.peek(HELD_MAX + 10).unwrap();
        assert_eq!(all.len(), 1 + HELD_MAX + 1);
        let kinds: Vec<EventKind> = all.iter().take(4).map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Result,
                EventKind::IncidentOpened,
                EventKind::IncidentResolved,
                EventKind::IncidentOpened
            ]
        );
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
        let report = all.last().unwrap();
        assert_eq!(report.monitor, OUTBOX_MONITOR);
        assert_eq!(report.result.fields["held"], HELD_MAX.to_string());
        assert_eq!(report.result.fields["dropped"], "2");
        assert_eq!(ob.load_state("disk /").unwrap().as_deref(), Some("s4"));
        // A new episode-free push: written, no second report.
        assert!(matches!(
            ob.push_or_hold(&event(EventKind::Result), None).unwrap(),
            Pushed::Stored(_)
        ));
        assert_eq!(ob.len().unwrap(), (1 + HELD_MAX + 2) as u64);
    }
}
