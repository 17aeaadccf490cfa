//! The PostgreSQL backend, for several relays on one database:
//! `[store] url = "postgres://USER:PASSWORD@HOST[:PORT]/DB[?pool=N]"` in
//! relay.toml.
//!
//! **Off the async workers.** A pool of `pool` threads (default
//! [`DEFAULT_POOL`]), each with one connection of its own (the synchronous
//! `postgres` client, which drives its connection with a small runtime of
//! its own on that thread: a job never needs the caller's runtime), takes
//! jobs from one queue. A thread connects when it first has a job, and
//! again after its connection was lost (a database restart, an idle
//! connection cut): a `BEGIN` that fails on a connection already used is
//! tried once more on a new one, as nothing of the job has run yet.
//!
//! **Isolation: READ COMMITTED plus explicit row locks** for write jobs,
//! `REPEATABLE READ READ ONLY` for reads (one snapshot per job, as SQLite's
//! readers have; such transactions never fail to serialize). The rules
//! were written for SQLite, whose writers run one at a time; here each
//! read-then-write of a rule is kept whole by a lock on what it read,
//! held to the commit (see `primitives.rs`):
//! * `lock_last_seq`, `latest_alert_ticket`, `ticket`, `agent_state`,
//!   `agent_record`, `operator` read with `FOR UPDATE` in a write job, so
//!   a second writer waits, then reads what the first committed;
//! * `lock_audit` locks the one row of `audit_head`: appends of every
//!   relay take turns, and each reads the chain's head after the previous
//!   one committed;
//! * `spend_token` is one conditional `UPDATE` (PostgreSQL re-checks its
//!   condition on the row the other writer committed); `claim_webhooks`
//!   picks rows `FOR UPDATE SKIP LOCKED`;
//! * revocations are numbered under a transaction-scoped advisory lock, so
//!   their `seq` order is their commit order and a relay polling
//!   `revocations_since` never skips one committed late.
//!
//! Under REPEATABLE READ or SERIALIZABLE the same rules would also be
//! correct, with every lost race a serialization failure and a rerun; but
//! the audit head and an agent's row are hot (every console request
//! appends to the chain), and there each wait for a lock would end in a
//! failure and a rerun instead of simply going on: under load, storms of
//! retries. READ COMMITTED waits and goes on. Deadlocks (SQLSTATE 40P01)
//! and serialization failures (40001) still become
//! [`StoreError::Retry`], and the whole job runs again
//! ([`super::with_retries`]).
//!
//! Migrations: [`MIGRATIONS`] (`schema.rs`), applied at open under an
//! advisory lock, so relays starting at once migrate one after the other.
//!
//! No TLS to the server: plain TCP (a private network) or a Unix socket
//! (`postgres://USER@%2Frun%2Fpostgresql/DB`); `sslmode=require` is
//! refused at open, with a message that says so.

mod primitives;
mod schema;

pub use primitives::REVOCATION_LOCK;
pub use schema::MIGRATIONS;

use super::error::{StoreError, StoreResult};
use super::{Backend, Job, Location, Output};
use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls, Statement};
use primitives::PgTx;
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Connections (and threads) of a relay's pool when the URL gives no
/// `pool=N`. PostgreSQL's default `max_connections` is 100: eight relays
/// of eight fit, with room for psql and the admin commands.
pub const DEFAULT_POOL: usize = 8;
/// The most a URL may ask for.
pub const MAX_POOL: usize = 64;
/// How long to wait for the server to answer a new connection, unless the
/// URL says (`connect_timeout=SECS`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The backend: a queue of jobs and the threads of the pool.
pub struct Postgres {
    /// `postgres://USER@HOST:PORT/DB`, never a password.
    description: String,
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// Where to connect and how many connections to keep.
#[derive(Clone)]
struct Target {
    config: Config,
    pool: usize,
    description: String,
}

/// Open the database at `location` (a `postgres://` or `postgresql://`
/// URL): connect, migrate, and start the pool's threads.
pub fn open(location: &Location) -> StoreResult<Box<dyn Backend>> {
    let Location::Postgres(url) = location else {
        return Err(StoreError::Backend(format!(
            "{location:?} is no PostgreSQL URL"
        )));
    };
    let target = target(url)?;
    // Connect and migrate on a thread of our own: the client runs its own
    // runtime, which must not start inside the caller's.
    let first = target.clone();
    std::thread::Builder::new()
        .name("store-pg-migrate".into())
        .spawn(move || {
            let mut client = connect(&first)?;
            schema::migrate(&mut client).map_err(|e| match e {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("{}: {m}", first.description))
                }
                e => StoreError::Unavailable(format!(
                    "cannot migrate the schema of {}: {e}",
                    first.description
                )),
            })
        })
        .map_err(StoreError::backend)?
        .join()
        .map_err(|_| StoreError::Backend("the migration thread panicked".into()))??;
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let target = Arc::new(target);
    for i in 0..target.pool {
        let (target, queue) = (target.clone(), queue.clone());
        std::thread::Builder::new()
            .name(format!("store-pg-{i}"))
            .spawn(move || work_loop(&target, &queue))
            .map_err(StoreError::backend)?;
    }
    tracing::info!(
        "store: {} (a pool of {} connections)",
        target.description,
        target.pool
    );
    Ok(Box::new(Postgres {
        description: target.description.clone(),
        jobs: Mutex::new(jobs),
    }))
}

impl Backend for Postgres {
    fn submit(&self, job: Job) {
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if let Err(mpsc::SendError(job)) = sent {
            (job.reply)(Err(StoreError::Unavailable(
                "the database threads have stopped".into(),
            )));
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

// ---- the URL ----

/// Whether `url` is one this backend can use (its syntax, `pool`,
/// `sslmode`), without connecting: the reason if not, with no password.
pub fn check_url(url: &str) -> Result<(), String> {
    target(url).map(drop).map_err(|e| e.to_string())
}

/// The connection settings of `url`, its `pool=N` taken out (the client
/// knows no such parameter), with our defaults where it says nothing.
fn target(url: &str) -> StoreResult<Target> {
    let (url, pool) = take_pool(url).map_err(StoreError::Unavailable)?;
    let mut config: Config = url.parse().map_err(|e| {
        StoreError::Unavailable(format!(
            "store url `{}`: {}",
            super::redact(&url),
            chain(&e)
        ))
    })?;
    let description = describe(&config);
    if config.get_ssl_mode() == SslMode::Require {
        return Err(StoreError::Unavailable(format!(
            "{description}: sslmode=require, but this relay does not speak TLS to PostgreSQL; \
             connect over a Unix socket or a private network (sslmode=disable or prefer)"
        )));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("firstline-relay");
    }
    config.notice_callback(|notice| {
        tracing::debug!("PostgreSQL {}: {}", notice.severity(), notice.message())
    });
    Ok(Target {
        config,
        pool: pool.unwrap_or(DEFAULT_POOL),
        description,
    })
}

/// `url` without its `pool=N` query parameter, and N.
fn take_pool(url: &str) -> Result<(String, Option<usize>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut pool = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool", n)) => {
                let n = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_POOL).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "`pool={n}` in the store url: give the number of connections, 1 to {MAX_POOL}"
                        )
                    })?;
                pool = Some(n);
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, pool))
}

/// `postgres://USER@HOST:PORT/DB`, from the parsed settings: whatever the
/// URL held (a password in the authority or as `password=`), none of it.
fn describe(c: &Config) -> String {
    let ports = c.get_ports();
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!(
        "postgres://{user}{}/{}",
        hosts.join(","),
        c.get_dbname().unwrap_or_default()
    )
}

// ---- the threads ----

/// A pool thread's connection and its prepared statements (by SQL text).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

fn connect(target: &Target) -> StoreResult<Client> {
    target.config.connect(NoTls).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot connect to the database {}: {}",
            target.description,
            chain(&e)
        ))
    })
}

fn work_loop(target: &Target, queue: &Mutex<mpsc::Receiver<Job>>) {
    let mut conn: Option<Conn> = None;
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(mut job) = job else { return };
        let out = super::with_retries(|| attempt(target, &mut conn, &mut job));
        (job.reply)(out);
    }
}

/// One run of `job` in a transaction of its own, on this thread's
/// connection (made first if need be).
fn attempt(target: &Target, slot: &mut Option<Conn>, job: &mut Job) -> StoreResult<Output> {
    let mut fresh = false;
    loop {
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = Some(Conn {
                client: connect(target)?,
                statements: HashMap::new(),
            });
            fresh = true;
        }
        let Some(conn) = slot.as_mut() else {
            continue;
        };
        match run(conn, job) {
            Ran::Done(out) => {
                if let Err(StoreError::Backend(_) | StoreError::Unavailable(_)) = &out {
                    // A failed statement may have been a stale prepared
                    // one (a table changed under it): prepare them anew.
                    // (A rule's refusal, a conflict, says nothing of them.)
                    conn.statements.clear();
                    if conn.client.is_closed() {
                        *slot = None;
                    }
                }
                return out;
            }
            Ran::NotBegun(e) => {
                // Nothing ran: a connection lost while idle (a server
                // restart) is replaced, and the job tried once more.
                *slot = None;
                if fresh {
                    return Err(StoreError::Unavailable(format!(
                        "cannot start a transaction on {}: {}",
                        target.description,
                        chain(&e)
                    )));
                }
            }
        }
    }
}

enum Ran {
    Done(StoreResult<Output>),
    /// `BEGIN` failed: nothing of the job ran.
    NotBegun(postgres::Error),
}

fn run(conn: &mut Conn, job: &mut Job) -> Ran {
    let Conn { client, statements } = conn;
    let isolation = if job.write {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::RepeatableRead
    };
    let mut tx = match client
        .build_transaction()
        .isolation_level(isolation)
        .read_only(!job.write)
        .start()
    {
        Ok(tx) => tx,
        Err(e) => return Ran::NotBegun(e),
    };
    let out = {
        let mut ptx = PgTx::new(&mut tx, statements, job.write);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.work)(&mut ptx)))
            .unwrap_or_else(|_| Err(StoreError::Backend("a store job panicked".into())))
    };
    Ran::Done(match out {
        Ok(v) => tx.commit().map(|()| v).map_err(|e| match error(e) {
            // The commit's fate is unknown when the connection went: no rerun.
            StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                "the connection to the database was lost at commit (the change may or may not be stored): {m}"
            )),
            e => e,
        }),
        Err(e) => {
            let _ = tx.rollback();
            Err(e)
        }
    })
}

// ---- errors ----

/// A client error as a store error: a lost race (serialization failure,
/// deadlock) may be retried; a lost connection makes the store
/// unavailable for now. Messages never hold the URL.
pub(super) fn error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let message = format!("{} (SQLSTATE {})", db.message(), code.code());
        return if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            StoreError::Retry(message)
        } else if code.code().starts_with("08") || code.code().starts_with("57P") {
            // Connection exceptions; the server shutting down or
            // terminating this connection.
            StoreError::Unavailable(format!("the database connection ended: {message}"))
        } else {
            StoreError::Backend(message)
        };
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(format!(
            "lost the connection to the database: {}",
            chain(&e)
        ));
    }
    StoreError::Backend(chain(&e))
}

/// An error and its causes, `: `-separated (the client's own `Display`
/// says only its kind: "error connecting to server").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations;

    #[test]
    fn migrations_are_numbered_in_order() {
        migrations::check(MIGRATIONS).unwrap();
    }

    #[test]
    fn the_pool_size_comes_from_the_url() {
        let t = target("postgres://fl:s3cret@db.example:5433/fl?pool=3&sslmode=disable").unwrap();
        assert_eq!(t.pool, 3);
        assert_eq!(t.description, "postgres://fl@db.example:5433/fl");
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(target("postgres://fl@db/fl").unwrap().pool, DEFAULT_POOL);
        for bad in ["0", "65", "x", ""] {
            let e = target(&format!("postgres://fl:s3cret@db/fl?pool={bad}"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("1 to 64") && !e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn no_password_is_told() {
        for url in [
            "postgres://fl:s3cret@db.example/fl",
            "postgres://fl@db.example/fl?password=s3cret",
            "postgresql://fl:s3cret@[::1]:6000,db2/fl",
        ] {
            let t = target(url).unwrap();
            assert!(!t.description.contains("s3cret"), "{}", t.description);
            assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
        }
        assert_eq!(
            target("postgresql://fl:s3cret@[::1]:6000,db2/fl")
                .unwrap()
                .description,
            "postgres://fl@[::1]:6000,db2:5432/fl"
        );
        let e = target("postgres://fl:s3cret@db/fl?bogus=1")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bogus") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn tls_required_is_refused_with_a_reason() {
        let e = target("postgres://fl:s3cret@db/fl?sslmode=require")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not speak TLS"), "{e}");
    }
}
