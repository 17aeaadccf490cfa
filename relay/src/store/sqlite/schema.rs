//! SQLite's schema history (see [`crate::store::migrations`]).

use super::error;
use crate::store::error::{StoreError, StoreResult};
use crate::store::migrations::{self, Migration};
use rusqlite::{params, Connection, TransactionBehavior};

type Step = fn(&Connection) -> rusqlite::Result<()>;

/// SQLite's schema history. Version 1 is the schema as it was before
/// versions were recorded, made so that it adopts any database of those
/// relays as it is: tables are created only if missing, and columns added
/// since (`observed_at` and the others) only where missing.
pub const MIGRATIONS: &[Migration<Step>] = &[
    Migration {
        version: 1,
        name: "the schema of relays before versions: tokens, agents, operators, certs, revocations, audit, tickets, webhook outbox",
        apply: v1_adopt,
    },
    Migration {
        version: 2,
        name: "webhook deliveries claimed with a lease; certificates looked up by identity",
        apply: v2_claims,
    },
    Migration {
        version: 3,
        name: "tags of tokens and agents, agents' facts, open tickets counted by agent",
        apply: v3_fleet,
    },
    Migration {
        version: 4,
        name: "actions queued for offline agents",
        apply: v4_queued_actions,
    },
    Migration {
        version: 5,
        name: "central monitor sets, and what each agent reported of them",
        apply: v5_central_monitors,
    },
    Migration {
        version: 6,
        name: "who asked, for an end user's ticket (`firstline-help ask`): its own column, no longer the monitor's",
        apply: v6_requester,
    },
    Migration {
        version: 7,
        name: "tickets mirrored into an external help desk (`[helpdesk]`): the help desk's id and what was delivered",
        apply: v7_helpdesk_links,
    },
    Migration {
        version: 8,
        name: "help desk links with something left to deliver, indexed on their own",
        apply: v8_helpdesk_pending,
    },
    Migration {
        version: 9,
        name: "agent names unique without regard to case (`PC-A` is `pc-a`)",
        apply: v9_agent_names_nocase,
    },
    Migration {
        version: 10,
        name: "authority that dies with its grantor: agents' enrollment ids, queued actions bound to one, central monitor sets suspended",
        apply: v10_enrollments,
    },
];

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    migrations::check(MIGRATIONS).map_err(StoreError::Backend)?;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at INTEGER NOT NULL
            )",
        )
        .map_err(error)?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(error)?;
        let Some(next) = migrations::pending(MIGRATIONS, current as u32)?.first() else {
            return tx.commit().map_err(error);
        };
        (next.apply)(&tx).map_err(error)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![next.version, next.name, crate::clock::unix_now()],
        )
        .map_err(error)?;
        tx.commit().map_err(error)?;
        tracing::info!(
            version = next.version,
            "database schema migrated: {}",
            next.name
        );
    }
}

const V1_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    uses_left INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    uses INTEGER,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER,
    version TEXT,
    os TEXT,
    hostname TEXT,
    revoked_at INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    removed_at INTEGER
);
CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS certs (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT,
    agent TEXT,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_status (
    agent TEXT NOT NULL,
    monitor TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (agent, monitor)
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL
);
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

/// Columns added by relays before versions, missing from older tables:
/// `(table, column, type)`.
const V1_ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("ticket_entries", "observed_at", "INTEGER"),
    ("tokens", "uses", "INTEGER"),
    ("tokens", "revoked_at", "INTEGER"),
    ("agents", "removed_at", "INTEGER"),
];

fn v1_adopt(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(V1_SCHEMA)?;
    for (table, column, kind) in V1_ADDED_COLUMNS {
        add_column(db, table, column, kind)?;
    }
    Ok(())
}

fn v2_claims(db: &Connection) -> rusqlite::Result<()> {
    add_column(db, "webhook_outbox", "claimed_until", "INTEGER")?;
    db.execute_batch(
        "CREATE INDEX IF NOT EXISTS certs_by_identity ON certs (kind, name);
         CREATE INDEX IF NOT EXISTS webhook_due ON webhook_outbox (next_at, id);",
    )
}

/// Tags and facts (`crate::store::fleet`): tables of their own, so the
/// migration touches no existing table but for an index on `tickets`.
fn v3_fleet(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS token_tags (
             token_id TEXT NOT NULL,
             tag TEXT NOT NULL,
             PRIMARY KEY (token_id, tag)
         );
         CREATE TABLE IF NOT EXISTS agent_tags (
             agent TEXT NOT NULL,
             tag TEXT NOT NULL,
             PRIMARY KEY (agent, tag)
         );
         CREATE INDEX IF NOT EXISTS agent_tags_by_tag ON agent_tags (tag, agent);
         CREATE TABLE IF NOT EXISTS agent_facts (
             agent TEXT PRIMARY KEY,
             kernel TEXT,
             addresses TEXT NOT NULL DEFAULT '[]',
             uptime_secs INTEGER,
             at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS tickets_by_agent_status ON tickets (agent, status, source);",
    )
}

/// Actions queued for offline agents (`crate::store::queue`): a table of
/// its own.
fn v4_queued_actions(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS queued_actions (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             agent TEXT NOT NULL,
             action TEXT NOT NULL,
             ticket INTEGER,
             operator TEXT NOT NULL,
             role TEXT NOT NULL,
             queued_at INTEGER NOT NULL,
             expires_at INTEGER NOT NULL,
             state TEXT NOT NULL,
             ended_at INTEGER,
             outcome TEXT
         );
         CREATE INDEX IF NOT EXISTS queued_by_agent ON queued_actions (agent, state, id);
         CREATE INDEX IF NOT EXISTS queued_by_expiry ON queued_actions (state, expires_at);",
    )
}

/// Central monitor sets (`crate::store::monitors`) and each agent's last
/// report of them: tables of their own.
/// `tickets.requester`; the end users' tickets opened before it kept the
/// requester in `monitor` as `user:NAME`: moved.
fn v6_requester(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "ALTER TABLE tickets ADD COLUMN requester TEXT;
         UPDATE tickets SET requester = substr(monitor, 6), monitor = NULL
          WHERE source = 'user' AND monitor LIKE 'user:%';",
    )
}

fn v5_central_monitors(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS monitor_sets (
             name TEXT PRIMARY KEY,
             selector TEXT NOT NULL,
             toml TEXT NOT NULL,
             monitors TEXT NOT NULL,
             role TEXT NOT NULL,
             updated_by TEXT NOT NULL,
             updated_at INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS monitor_reports (
             agent TEXT PRIMARY KEY,
             digest TEXT NOT NULL,
             report TEXT NOT NULL,
             at INTEGER NOT NULL
         );",
    )
}

/// Tickets mirrored into an external help desk (`crate::store::helpdesk`):
/// one row per ticket, claimed with a lease like the webhook outbox.
fn v7_helpdesk_links(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(HELPDESK_LINKS)
}

/// As PostgreSQL's version 6.
const HELPDESK_LINKS: &str = "
CREATE TABLE IF NOT EXISTS helpdesk_links (
    ticket_id BIGINT PRIMARY KEY,
    remote_id BIGINT,
    latest_entry BIGINT NOT NULL,
    delivered_entry BIGINT NOT NULL DEFAULT 0,
    sending_entry BIGINT,
    remote_status TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_until BIGINT
);
CREATE INDEX IF NOT EXISTS helpdesk_due ON helpdesk_links (next_at, ticket_id);
";

/// The help desk mirror claims links with something left to deliver; every
/// ticket ever mirrored keeps its link, with a `next_at` long past, so the
/// claim walked them all (`helpdesk_due` narrows nothing): these alone.
fn v8_helpdesk_pending(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(HELPDESK_PENDING)
}

/// As PostgreSQL's version 7.
pub(super) const HELPDESK_PENDING: &str = "
CREATE INDEX IF NOT EXISTS helpdesk_pending ON helpdesk_links (ticket_id)
    WHERE latest_entry > delivered_entry;
";

/// `ALTER TABLE … ADD COLUMN` unless the column is there.
fn add_column(db: &Connection, table: &str, column: &str, kind: &str) -> rusqlite::Result<()> {
    let mut stmt = db.prepare(&format!("PRAGMA table_info({table})"))?;
    let present = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .any(|c| c == column);
    if !present {
        db.execute(
            &format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"),
            [],
        )?;
        tracing::info!("database upgraded: {table}.{column} added");
    }
    Ok(())
}

/// Agent names are one name whatever their case: `PC-A` cannot enroll
/// beside `pc-a`. A database that already holds two such names is not
/// migrated until one is gone: which one is the admin's to say.
fn v9_agent_names_nocase(db: &Connection) -> rusqlite::Result<()> {
    let twins: Option<String> = db.query_row(
        "SELECT group_concat(name, ', ') FROM agents WHERE lower(name) IN \
         (SELECT lower(name) FROM agents GROUP BY lower(name) HAVING COUNT(*) > 1)",
        [],
        |r| r.get(0),
    )?;
    if let Some(twins) = twins {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some(format!(
            "agents whose names differ only in case are enrolled ({twins}): remove all but one \
             of each (`firstline-relay agent remove NAME`) with the previous firstline-relay, \
             then start this one"
            )),
        ));
    }
    db.execute_batch(AGENT_NAMES_NOCASE)
}

/// As PostgreSQL's version 8.
pub(super) const AGENT_NAMES_NOCASE: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS agents_name_nocase ON agents (lower(name));
";

/// Queued actions are bound to the enrollment of the agent they were
/// queued for, not its name; central monitor sets can be suspended. Each
/// agent enrolled before gets an enrollment id of its own; a pending
/// action is bound to its agent's enrollment when that agent enrolled no
/// later than it was queued, and cancelled otherwise (it was queued for
/// an enrollment since removed). As PostgreSQL's version 9.
fn v10_enrollments(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "ALTER TABLE agents ADD COLUMN enrollment TEXT;
         UPDATE agents SET enrollment = 'before-v10:' || name || ':' || enrolled_at;
         CREATE INDEX IF NOT EXISTS agents_by_enrollment ON agents (enrollment);
         ALTER TABLE queued_actions ADD COLUMN enrollment TEXT;
         UPDATE queued_actions SET enrollment =
             (SELECT a.enrollment FROM agents a
              WHERE a.name = queued_actions.agent AND a.revoked_at IS NULL
                AND a.removed_at IS NULL AND a.enrolled_at <= queued_actions.queued_at)
          WHERE state = 'pending';
         UPDATE queued_actions SET state = 'cancelled',
             ended_at = CAST(strftime('%s', 'now') AS INTEGER),
             outcome = 'cancelled: queued for an enrollment of its agent that was removed or revoked since'
          WHERE state = 'pending' AND enrollment IS NULL;
         ALTER TABLE monitor_sets ADD COLUMN suspended TEXT;",
    )
}
