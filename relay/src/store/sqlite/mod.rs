//! The embedded backend: one SQLite file (WAL), nothing to install.
//!
//! **Off the async workers.** Every transaction runs on the store's own
//! threads: one writer (SQLite has one writer at a time anyway) and a few
//! readers (WAL lets them read while it writes), each with its own
//! connection. The async side sends a job and awaits its answer.
//!
//! **Batched commits.** The writer takes every job waiting in its queue
//! (up to [`MAX_BATCH`]) into one transaction, each job inside its own
//! savepoint: a job that fails is rolled back alone, and the others commit
//! together. Nobody hears of a job's success before the commit that holds
//! it, so an `ack` to an agent or an answer to a console still means
//! "stored". Under load — a fan-out's audit entries, many agents' events —
//! one commit serves many requests; alone, a job commits at once.
//!
//! **Other processes** (the offline admin commands) open the same file;
//! write transactions start with `BEGIN IMMEDIATE` and wait for each other
//! (busy timeout), so rules that read then write (the audit chain, token
//! spending, `last_seq`) see no other writer in between.
//!
//! Here: the threads and batches; `schema.rs`: the migrations;
//! `primitives.rs`: [`super::tx::Tx`] in SQLite's SQL.

mod primitives;
mod schema;

pub use schema::MIGRATIONS;

use super::error::{StoreError, StoreResult};
use super::{Backend, Job};
use primitives::SqliteTx;
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Jobs committed together at most.
pub const MAX_BATCH: usize = 256;
/// Reader threads (and connections).
const READERS: usize = 2;
/// How long a writer waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<mpsc::Sender<Job>>,
}

impl Sqlite {
    /// Open (creating it 0600 if need be) and migrate the database at
    /// `path`, and start its threads.
    pub fn open(path: &Path) -> StoreResult<Sqlite> {
        // Owner-only (0600) before SQLite opens it: its -wal/-shm take that mode.
        firstline_net::private::private_database(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create database {}: {e}", path.display()))
        })?;
        let mut conn = connect(path, false)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| cannot(path, e))?;
        schema::migrate(&mut conn).map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("{}: {m}", path.display()))
            }
            e => StoreError::Unavailable(format!(
                "cannot migrate the schema of {}: {e}",
                path.display()
            )),
        })?;
        let (writer, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(StoreError::backend)?;
        let (readers, reads) = mpsc::channel::<Job>();
        let reads = Arc::new(Mutex::new(reads));
        for i in 0..READERS {
            let conn = connect(path, true)?;
            let reads = reads.clone();
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || read_loop(conn, reads))
                .map_err(StoreError::backend)?;
        }
        Ok(Sqlite {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
        })
    }
}

impl Backend for Sqlite {
    fn submit(&self, job: Job) {
        let queue = if job.write {
            &self.writer
        } else {
            &self.readers
        };
        let sent = queue.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        if let Err(mpsc::SendError(job)) = sent {
            (job.reply)(Err(StoreError::Unavailable(
                "the database thread has stopped".into(),
            )));
        }
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

fn cannot(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open database {}: {e}", path.display()))
}

fn connect(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|e| cannot(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| cannot(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| cannot(path, e))?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")
            .map_err(|e| cannot(path, e))?;
    }
    // Query planner stability: without it SQLite marks statements whose
    // plan *might* depend on a bound value (any `ORDER BY`/`MAX` over an
    // index here) to be compiled again on every bind — the alert path's
    // ticket lookup was re-prepared for every alert, ~12 % of the relay's
    // CPU during ingest (BENCHMARKS.md "Profiles"). Our queries have one
    // good plan whatever the values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|e| cannot(path, e))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

// ---- the threads ----

fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, batch);
    }
}

/// Run `batch` in one transaction, each job in its own savepoint; answer
/// each after the commit (or with its own error at once).
fn write_batch(conn: &mut Connection, batch: Vec<Job>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = error(e);
            for job in batch {
                (job.reply)(Err(e.clone()));
            }
            return;
        }
    };
    let alone = batch.len() == 1;
    let mut done = Vec::with_capacity(batch.len());
    for mut job in batch {
        if !alone {
            if let Err(e) = step(&tx, "SAVEPOINT job") {
                (job.reply)(Err(error(e)));
                continue;
            }
        }
        let out = run(&mut job, &tx);
        let closed = if alone {
            Ok(())
        } else if out.is_ok() {
            step(&tx, "RELEASE job")
        } else {
            step(&tx, "ROLLBACK TO job").and_then(|()| step(&tx, "RELEASE job"))
        };
        match (out, closed) {
            (Ok(v), Ok(())) => done.push((job.reply, v)),
            (Err(e), _) => (job.reply)(Err(e)),
            (Ok(_), Err(e)) => (job.reply)(Err(error(e))),
        }
    }
    if done.is_empty() {
        let _ = tx.rollback();
        return;
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, v) in done {
                reply(Ok(v));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (reply, _) in done {
                reply(Err(StoreError::Backend(format!("commit failed: {msg}"))));
            }
        }
    }
}

/// One statement of the batch's bookkeeping, prepared once per connection
/// (`execute_batch` parsed the SQL again for every job: ~2 % of the relay's
/// CPU during alert ingest, BENCHMARKS.md "Profiles").
fn step(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn read_loop(mut conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.recv()
        };
        let Ok(mut job) = job else { return };
        let out = match conn.transaction() {
            Ok(tx) => {
                let out = run(&mut job, &tx);
                let _ = tx.rollback();
                out
            }
            Err(e) => Err(error(e)),
        };
        (job.reply)(out);
    }
}

/// Run a job's work; a panic in it is its error, not the thread's end.
fn run(job: &mut Job, conn: &Connection) -> StoreResult<super::Output> {
    let mut tx = SqliteTx::new(conn);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.work)(&mut tx)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a store job panicked".into())))
}

/// A SQLite error as a store error: a busy database may be retried.
pub(super) fn error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Retry(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations;
    use crate::store::{Options, Store};
    use firstline_proto::Role;
    use rusqlite::OptionalExtension;

    async fn open(options: Options) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::store::Location::Sqlite(dir.path().join("relay.db"));
        let store = Store::open(&location, options).unwrap();
        (dir, store)
    }

    crate::store_suite!(open);

    /// A cached statement with `ORDER BY … LIMIT` over bound values is
    /// compiled once, not again at every use (see `connect`).
    #[test]
    fn cached_statements_are_not_prepared_again_on_bind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let mut conn = connect(&path, false).unwrap();
        schema::migrate(&mut conn).unwrap();
        let sql = "SELECT id FROM tickets WHERE agent = ?1 AND monitor = ?2 AND source = 'alert'
                   ORDER BY id DESC LIMIT 1";
        for (i, agent) in ["a", "b", "c"].into_iter().enumerate() {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let _: Option<i64> = stmt
                .query_row([agent, "disk"], |r| r.get(0))
                .optional()
                .unwrap();
            let again = stmt.get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(again, 0, "use {i}: the statement was prepared again");
        }
    }

    /// One agent's tickets are found through an index, not a walk of every
    /// ticket (see `primitives::tickets_query`).
    #[test]
    fn the_ticket_list_filtered_by_agent_uses_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("relay.db"), false).unwrap();
        schema::migrate(&mut conn).unwrap();
        let plan = |f: &crate::ticket::TicketFilter| {
            let (sql, values) = primitives::tickets_query(f);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap();
            rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
        };
        let mut f = crate::ticket::TicketFilter {
            agent: Some("pc1".into()),
            ..Default::default()
        };
        let by_agent = plan(&f);
        assert!(by_agent.contains("USING INDEX"), "{by_agent}");
        f.status = Some(crate::ticket::TicketStatus::Open);
        f.search = Some("printer".into());
        let more = plan(&f);
        assert!(more.contains("USING INDEX"), "{more}");
        // No filter: every ticket, in order.
        let all = plan(&Default::default());
        assert!(!all.contains("USING INDEX"), "{all}");
    }

    /// The help desk claim reads the links with something left to deliver,
    /// not every ticket ever mirrored.
    #[test]
    fn the_help_desk_claim_reads_only_pending_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("relay.db"), false).unwrap();
        schema::migrate(&mut conn).unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", primitives::claim_helpdesk_sql());
        let mut stmt = conn.prepare(&sql).unwrap();
        let plan = stmt
            .query_map(rusqlite::params![0, 0, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("; ");
        assert!(plan.contains("helpdesk_pending"), "{plan}");
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        migrations::check(MIGRATIONS).unwrap();
    }

    /// The tables as relays before `schema_version` made them: no
    /// `observed_at`, no `claimed_until`, no version.
    const OLD_TICKETS: &str = "
        CREATE TABLE tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, agent TEXT,
            check_name TEXT, monitor TEXT, status TEXT NOT NULL, priority TEXT NOT NULL,
            source TEXT NOT NULL, assignee TEXT, created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL, resolved_at INTEGER);
        CREATE TABLE ticket_entries (id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_id INTEGER NOT NULL REFERENCES tickets(id), at INTEGER NOT NULL,
            kind TEXT NOT NULL, author TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE webhook_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL);
        INSERT INTO tickets (title, status, priority, source, created_at, updated_at)
            VALUES ('old', 'open', 'normal', 'alert', 1, 1);
        INSERT INTO ticket_entries (ticket_id, at, kind, author, body)
            VALUES (1, 1, 'result', 'pc1', '{\"status\":\"crit\"}');";

    #[tokio::test]
    async fn a_database_of_a_relay_before_versions_is_adopted_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(OLD_TICKETS)
            .unwrap();
        let s = Store::open_sqlite(&path).unwrap();
        let (_, entries) = s.ticket_detail(1).await.unwrap().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].observed_at, None);
        assert_eq!(entries[0].body["status"], "crit");
        s.append_to_ticket(1, "result", "pc1", "{}", Some(5))
            .await
            .unwrap()
            .unwrap();
        let (_, entries) = s.ticket_detail(1).await.unwrap().unwrap();
        assert_eq!(
            entries[1].observed_at.as_deref(),
            Some("1970-01-01T00:00:05Z")
        );
        let raw = Connection::open(&path).unwrap();
        let versions: Vec<i64> = raw
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let all: Vec<i64> = schema::MIGRATIONS
            .iter()
            .map(|m| i64::from(m.version))
            .collect();
        assert_eq!(versions, all, "every migration applied, in order");
        assert!(raw
            .prepare("SELECT claimed_until FROM webhook_outbox")
            .is_ok());
        assert!(raw.prepare("SELECT agent, tag FROM agent_tags").is_ok());
        assert!(raw
            .prepare("SELECT agent, state FROM queued_actions")
            .is_ok());
        drop(s);
        // Opened again: nothing left to do.
        let s = Store::open_sqlite(&path).unwrap();
        assert!(s.ticket(1).await.unwrap().is_some());
    }

    #[test]
    fn a_database_newer_than_the_relay_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(Store::open_sqlite(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)",
                [],
            )
            .unwrap();
        let e = Store::open_sqlite(&path).unwrap_err().to_string();
        assert!(
            e.contains("schema is version 99, newer than this relay knows"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failing_job_in_a_batch_takes_only_itself_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("relay.db")).unwrap();
        // Many at once, so the writer commits them in batches; every other
        // one fails halfway (after its insert).
        let jobs: Vec<_> = (0..200)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let name = format!("op{i}");
                    s.write(move |tx| {
                        tx.insert_operator(&name, Role::Viewer, 0)?;
                        if i % 2 == 1 {
                            return Err(StoreError::Invalid("no".into()));
                        }
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        let mut failed = 0;
        for j in jobs {
            failed += j.await.unwrap().is_err() as usize;
        }
        assert_eq!(failed, 100);
        let names = s.operators().await.unwrap();
        assert_eq!(names.len(), 100);
        assert!(names
            .iter()
            .all(|o| o.name[2..].parse::<u32>().unwrap() % 2 == 0));
    }

    #[test]
    fn the_store_works_from_code_that_is_not_async() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("relay.db")).unwrap();
        assert!(crate::store::wait(s.add_operator("ann", Role::Admin)).unwrap());
        assert_eq!(crate::store::wait(s.operators()).unwrap().len(), 1);
    }
}
