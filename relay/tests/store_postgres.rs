//! The store on a real PostgreSQL 15 (`firstline_tests::pg`, Debian's
//! `postgresql-15`): the suite every backend passes, then what only a
//! shared database has — two relays (two `Store`s, each with its own pool
//! of connections, as two relay processes have) racing on one database,
//! migrations at once, a newer schema, lost connections, clear errors.

#![allow(clippy::unwrap_used)]

use firstline_proto::{AgentEvent, CheckResult, EventKind, Status};
use firstline_relay::clock::{ManualClock, SharedClock};
use firstline_relay::store::audit::GENESIS;
use firstline_relay::store::{
    AuditEntry, Chain, ChainKey, EnrollRefusal, Location, Options, PeerKind, Sent, Signed, Store,
    TokenError,
};
use firstline_relay::ticket::{NewTicket, Priority, Source, TicketFilter};
use firstline_tests::pg::Postgres;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

// ---- the suite ----

/// The suite's cases share one database (they use names of their own).
fn suite_database() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| Postgres::shared().fresh_database())
}

/// Opens a store on the suite's database; the guard is its URL.
async fn open_pg(options: Options) -> (String, Store) {
    let url = suite_database().to_string();
    let store = Store::open(&Location::Postgres(url.clone()), options).unwrap();
    (url, store)
}

firstline_relay::store_suite!(open_pg);

// ---- two relays on one database ----

/// `postgres://fl@…/NAME` of a new database, and its name.
fn fresh() -> (String, String) {
    let url = Postgres::shared().fresh_database();
    let name = url.rsplit('/').next().unwrap().to_string();
    (url, name)
}

fn open(url: &str, clock: &SharedClock) -> Store {
    let options = Options {
        clock: clock.clone(),
        webhook_source: Some("pg".into()),
        helpdesk: true,
    };
    Store::open(&Location::Postgres(url.into()), options).unwrap()
}

/// Two relays' stores on one new database, with one clock.
fn two_relays() -> [Store; 2] {
    let (url, _) = fresh();
    let clock: SharedClock = ManualClock::new(1_800_000_000);
    [open(&url, &clock), open(&url, &clock)]
}

fn unique(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

fn sign() -> impl FnMut() -> anyhow::Result<Signed<String>> + Send + 'static {
    || {
        let serial = format!("{:016x}", rand::random::<u64>());
        Ok(Signed {
            out: serial.clone(),
            serial,
            not_after: 1_900_000_000,
        })
    }
}

async fn token(s: &Store, uses: u32) -> String {
    let id = unique("t");
    s.add_token(&id, "secret", uses, Duration::from_secs(3600))
        .await
        .unwrap();
    id
}

async fn uses_left(s: &Store, id: &str) -> u32 {
    let t = s.tokens().await.unwrap();
    t.into_iter().find(|t| t.id == id).unwrap().uses_left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_enroll_once_with_a_single_use_token() {
    let relays = two_relays();
    for _round in 0..3 {
        let t = token(&relays[0], 1).await;
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (s, t) = (relays[i % 2].clone(), t.clone());
                tokio::spawn(async move { s.enroll(&t, "secret", &unique("pc"), sign()).await })
            })
            .collect();
        let mut enrolled = 0;
        for r in racers {
            match r.await.unwrap().unwrap() {
                Ok(_) => enrolled += 1,
                Err(e) => assert_eq!(e, EnrollRefusal::Token(TokenError::Used)),
            }
        }
        assert_eq!(enrolled, 1);
        assert_eq!(uses_left(&relays[1], &t).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_enrolling_one_name_spend_one_token() {
    let relays = two_relays();
    let name = unique("pc");
    let mut tokens = Vec::new();
    for _ in 0..6 {
        tokens.push(token(&relays[0], 1).await);
    }
    let racers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (s, t, name) = (relays[i % 2].clone(), t.clone(), name.clone());
            tokio::spawn(async move { s.enroll(&t, "secret", &name, sign()).await })
        })
        .collect();
    let mut enrolled = 0;
    for r in racers {
        match r.await.unwrap().unwrap() {
            Ok(_) => enrolled += 1,
            Err(e) => assert_eq!(e, EnrollRefusal::NameTaken(name.clone())),
        }
    }
    assert_eq!(enrolled, 1);
    let mut left = 0;
    for t in &tokens {
        left += uses_left(&relays[1], t).await;
    }
    assert_eq!(left, 5, "a refused enrollment spends no token");
}

fn event(seq: u64, kind: EventKind, status: Status, monitor: &str) -> AgentEvent {
    let mut result = CheckResult::new("disk", "/", status, format!("{status} #{seq}"));
    result.at = "2026-01-01T10:00:00Z".into();
    AgentEvent {
        seq,
        monitor: monitor.into(),
        kind,
        in_incident: kind != EventKind::IncidentResolved && kind != EventKind::Result,
        result,
        diagnostics: None,
        help: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_ingesting_the_same_events_make_one_ticket() {
    let relays = two_relays();
    let pc = unique("pc");
    let t = token(&relays[0], 1).await;
    relays[0]
        .enroll(&t, "secret", &pc, sign())
        .await
        .unwrap()
        .unwrap();
    // An agent that reconnected to the other relay delivers its outbox
    // again, while the first relay still ingests it: each round's events
    // reach both at once.
    let rounds = [
        (EventKind::IncidentOpened, Status::Crit),
        (EventKind::Result, Status::Crit),
        (EventKind::IncidentUpdated, Status::Warn),
        (EventKind::IncidentResolved, Status::Ok),
        (EventKind::IncidentOpened, Status::Crit),
    ];
    for (i, (kind, status)) in rounds.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let events = vec![event(seq, kind, status, "disk /")];
        let racers: Vec<_> = (0..4)
            .map(|r| {
                let (s, pc, events) = (relays[r % 2].clone(), pc.clone(), events.clone());
                tokio::spawn(async move { s.ingest_events(&pc, events, 3600).await.unwrap() })
            })
            .collect();
        let mut applied = 0;
        for r in racers {
            let i = r.await.unwrap();
            assert_eq!(i.upto, seq);
            applied += i.applied;
        }
        assert_eq!(applied, 1, "round {seq}: applied once");
    }
    let filter = TicketFilter {
        agent: Some(pc.clone()),
        ..Default::default()
    };
    let tickets = relays[1].list_tickets(filter).await.unwrap();
    assert_eq!(tickets.len(), 1, "one ticket, reopened: {tickets:?}");
    let (ticket, entries) = relays[1]
        .ticket_detail(tickets[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.status.as_str(), "open");
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    // Opened; a plain result outside… nothing; updated: its result;
    // resolved: its result and the status; opened again: reopened and
    // its result.
    assert_eq!(
        kinds,
        ["opened", "result", "result", "status", "status", "result"],
        "each event's entries once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_append_one_audit_chain() {
    let relays = two_relays();
    // Two relays of one deployment: one key, each its own view.
    let key = ChainKey::new(b"deployment key");
    let chains = [Chain::unanchored(key.clone()), Chain::unanchored(key)];
    let chain0 = chains[0].clone();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let s = relays[w % 2].clone();
            let chain = chains[w % 2].clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    let entry = AuditEntry {
                        who: format!("relay{}", w % 2),
                        role: Some("admin".into()),
                        agent: None,
                        action: "run check disk".into(),
                        args: format!("/{w}/{i}"),
                        outcome: "ok".into(),
                    };
                    ids.push(s.append_audit(entry, &chain).await.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for w in writers {
        ids.extend(w.await.unwrap());
    }
    assert_eq!(ids.len(), 120, "every append its own id");
    assert_eq!(
        ids.iter().copied().collect::<Vec<_>>(),
        (1..=120).collect::<Vec<i64>>()
    );
    let chain = relays[1].audit_chain().await.unwrap();
    assert_eq!(chain.len(), 120);
    let mut prev = GENESIS.to_string();
    for row in &chain {
        assert_eq!(row.prev_hash, prev, "entry {} forks the chain", row.row.id);
        assert_eq!(row.row.hash(chain0.key(), &row.prev_hash), row.hash);
        prev = row.hash.clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_claim_each_delivery_once() {
    let relays = two_relays();
    let mut queued = BTreeSet::new();
    for i in 0..20 {
        let t = NewTicket {
            title: format!("vpn down {i}"),
            agent: None,
            check: None,
            monitor: None,
            priority: Priority::Normal,
            source: Source::Technician,
            author: "tina".into(),
            body: None,
            requester: None,
        };
        let c = relays[i % 2].create_ticket(t).await.unwrap();
        queued.insert(firstline_relay::store::webhooks::event_id("pg", &c));
    }
    // Both relays' senders claim at once, a few at a time, until none is left.
    let claimers: Vec<_> = (0..4)
        .map(|i| {
            let s = relays[i % 2].clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = s.claim_webhooks(3, Duration::from_secs(60)).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch);
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let distinct: BTreeSet<String> = claimed.iter().map(|d| d.event_id.clone()).collect();
    assert_eq!(claimed.len(), distinct.len(), "claimed twice: {claimed:?}");
    assert_eq!(distinct, queued);
    // Delivered, whichever relay says so: gone for both.
    for d in &claimed {
        relays[1]
            .finish_webhook(d.id, Sent::Delivered)
            .await
            .unwrap();
    }
    assert_eq!(relays[0].webhook_backlog().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_move_a_ticket_once() {
    let relays = two_relays();
    let t = NewTicket {
        title: "printer".into(),
        agent: None,
        check: None,
        monitor: None,
        priority: Priority::Normal,
        source: Source::Technician,
        author: "tina".into(),
        body: None,
        requester: None,
    };
    let id = relays[0].create_ticket(t).await.unwrap().ticket.id;
    // Technicians on both relays resolve it at once, then close it at
    // once: each move is made once, the others refused by its rule.
    let moves = [
        firstline_proto::TicketChange::Resolve { comment: None },
        firstline_proto::TicketChange::Close {},
    ];
    for change in moves {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let s = relays[i % 2].clone();
                let edit = firstline_relay::ticket::TicketEdit::try_from(change.clone()).unwrap();
                tokio::spawn(async move { s.change_ticket(id, edit, &format!("tech{i}")).await })
            })
            .collect();
        let mut made = 0;
        for r in racers {
            match r.await.unwrap() {
                Ok(_) => made += 1,
                Err(e) => assert!(
                    matches!(e, firstline_relay::store::StoreError::Conflict(_)),
                    "{e}"
                ),
            }
        }
        assert_eq!(made, 1, "{change:?}");
    }
    let (_, entries) = relays[1].ticket_detail(id).await.unwrap().unwrap();
    let moves: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == "status")
        .map(|e| e.body.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(moves, ["open → resolved", "resolved → closed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_relay_misses_no_revocation() {
    let relays = two_relays();
    let names: Vec<String> = (0..40).map(|_| unique("pc")).collect();
    let batch = names
        .iter()
        .map(|n| (n.clone(), unique("serial"), 1_900_000_000))
        .collect();
    relays[0].bulk_enroll(batch).await.unwrap();
    // One relay polls as `server.rs` does (`seq` after the last seen)
    // while both revoke.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (s, done) = (relays[0].clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            let mut names = BTreeSet::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                for r in s.revocations_since(seen).await.unwrap() {
                    seen = r.seq;
                    names.insert(r.name);
                }
                if finished {
                    return names;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let revokers: Vec<_> = names
        .chunks(5)
        .enumerate()
        .map(|(i, chunk)| {
            let (s, chunk) = (relays[i % 2].clone(), chunk.to_vec());
            tokio::spawn(async move {
                for n in chunk {
                    assert!(s.revoke(PeerKind::Agent, &n, "test").await.unwrap().exists);
                }
            })
        })
        .collect();
    for r in revokers {
        r.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = poller.await.unwrap();
    let all: BTreeSet<String> = names.into_iter().collect();
    assert_eq!(seen, all, "every revocation seen by the poller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_slow_to_commit_on_another_relay_is_not_skipped() {
    let (url, db) = fresh();
    let clock: SharedClock = ManualClock::new(1_800_000_000);
    let s = open(&url, &clock);
    let pc = unique("pc");
    s.bulk_enroll(vec![(pc.clone(), unique("serial"), 1_900_000_000)])
        .await
        .unwrap();
    let seen = s.revocations_since(0).await.unwrap().len();
    assert_eq!(seen, 0);
    // Another relay revokes `slow` and takes a second to commit: its
    // `seq` is taken, not yet visible. (Its SQL is what the backend runs.)
    let key = firstline_relay::store::postgres::REVOCATION_LOCK;
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({key}); \
         INSERT INTO revocations (kind, name, at) VALUES ('agent', 'slow', 0); \
         SELECT pg_sleep(1); COMMIT;"
    );
    let other = std::thread::spawn(move || Postgres::shared().psql(&db, &sql));
    let db = url.rsplit('/').next().unwrap().to_string();
    let pg = Postgres::shared();
    let started = std::time::Instant::now();
    while pg
        .psql(
            &db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
        )
        .trim()
        == "0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "psql never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // This relay revokes `pc` meanwhile, and polls as soon as it is done.
    assert!(s.revoke(PeerKind::Agent, &pc, "test").await.unwrap().exists);
    let first = s.revocations_since(0).await.unwrap();
    let seen = first.last().unwrap().seq;
    other.join().unwrap();
    let names: Vec<String> = first
        .into_iter()
        .chain(s.revocations_since(seen).await.unwrap())
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        ["slow".to_string(), pc],
        "in commit order, none skipped"
    );
}

// ---- opening ----

#[test]
fn relays_starting_at_once_migrate_once() {
    let (url, db) = fresh();
    let clock: SharedClock = ManualClock::new(1_800_000_000);
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (url, clock) = (url.clone(), clock.clone());
            std::thread::spawn(move || open(&url, &clock))
        })
        .collect();
    for o in opened {
        drop(o.join().unwrap());
    }
    let pg = Postgres::shared();
    let versions = pg.psql(
        &db,
        "SELECT string_agg(version::text, ',') FROM schema_version",
    );
    let latest = firstline_relay::store::postgres::MIGRATIONS.len();
    let expected: Vec<String> = (1..=latest).map(|v| v.to_string()).collect();
    assert_eq!(versions.trim(), expected.join(","));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM audit_head").trim(), "1");
}

#[test]
fn a_database_newer_than_the_relay_is_refused() {
    let (url, db) = fresh();
    let with_password = url.replace("://fl@", "://fl:s3cret@");
    let clock: SharedClock = ManualClock::new(1_800_000_000);
    drop(open(&with_password, &clock));
    Postgres::shared().psql(
        &db,
        "INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)",
    );
    let e = Store::open(&Location::Postgres(with_password), Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema is version 99, newer than this relay knows"),
        "{e}"
    );
    assert!(
        e.contains(&format!("/{db}")) && !e.contains("s3cret"),
        "{e}"
    );
}

#[test]
fn a_missing_database_is_told_clearly() {
    let pg = Postgres::shared();
    let url = format!("postgres://fl:s3cret@127.0.0.1:{}/no_such_db", pg.port());
    let e = Store::open(&Location::Postgres(url), Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect to the database"), "{e}");
    assert!(e.contains("\"no_such_db\" does not exist"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_serves_too() {
    let (_, db) = fresh();
    let pg = Postgres::shared();
    // The folder of the socket, percent-encoded as the host (libpq's way).
    let dir = pg.dir().display().to_string().replace('/', "%2F");
    let url = format!("postgres://fl@{dir}:{}/{db}", pg.port());
    let s = Store::open(&Location::Postgres(url), Options::default()).unwrap();
    assert!(s
        .add_operator("ann", firstline_proto::Role::Admin)
        .await
        .unwrap());
    assert_eq!(
        s.describe(),
        format!(
            "postgres://fl@{}/.s.PGSQL.{}/{db}",
            pg.dir().display(),
            pg.port()
        )
    );
}

// ---- the pool ----

/// The relay's connections to database `db`.
fn connections(db: &str) -> usize {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = '{db}' AND application_name = 'firstline-relay'"
    );
    Postgres::shared()
        .psql("postgres", &sql)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_bounded_and_outlives_lost_connections() {
    let (url, db) = fresh();
    let clock: SharedClock = ManualClock::new(1_800_000_000);
    let s = open(&format!("{url}?pool=3"), &clock);
    assert!(!s.describe().contains('?'), "{}", s.describe());
    let busy = |s: &Store| {
        let jobs: Vec<_> = (0..30)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.add_operator(&unique(&format!("op{i}")), firstline_proto::Role::Viewer)
                        .await
                })
            })
            .collect();
        async move {
            for j in jobs {
                assert!(j.await.unwrap().unwrap());
            }
        }
    };
    busy(&s).await;
    let n = connections(&db);
    assert!((1..=3).contains(&n), "{n} connections for a pool of 3");
    // Every connection cut (a database restart, a firewall's idle cut):
    // the next jobs get new ones.
    Postgres::shared().psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name = 'firstline-relay'"
        ),
    );
    busy(&s).await;
    assert_eq!(s.operators().await.unwrap().len(), 60);
}
