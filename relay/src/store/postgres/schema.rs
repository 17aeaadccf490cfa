//! PostgreSQL's schema history (see [`crate::store::migrations`]).
//!
//! Its own list, not SQLite's: there were no PostgreSQL databases before
//! versions, so version 1 is the whole schema of SQLite's version 2 —
//! `BIGINT` times and counters, `BIGSERIAL` ids where SQLite has
//! `AUTOINCREMENT` (the audit's ids are given by the chain) — plus the
//! one-row `audit_head` table whose lock serializes audit appends.

use super::error;
use crate::store::error::{StoreError, StoreResult};
use crate::store::migrations::{self, Migration};
use postgres::Client;

pub const MIGRATIONS: &[Migration<&str>] = &[
    Migration {
        version: 1,
        name: "tokens, agents, operators, certs, revocations, audit with its head, monitor status, tickets, webhook outbox with leases",
        apply: V1,
    },
    Migration {
        version: 2,
        name: "tags of tokens and agents, agents' facts, open tickets counted by agent",
        apply: V2_FLEET,
    },
    Migration {
        version: 3,
        name: "actions queued for offline agents",
        apply: V3_QUEUED_ACTIONS,
    },
    Migration {
        version: 4,
        name: "central monitor sets, and what each agent reported of them",
        apply: V4_CENTRAL_MONITORS,
    },
    Migration {
        version: 5,
        name: "who asked, for an end user's ticket (`firstline-help ask`): its own column, no longer the monitor's",
        apply: V5_REQUESTER,
    },
    Migration {
        version: 6,
        name: "tickets mirrored into an external help desk (`[helpdesk]`): the help desk's id and what was delivered",
        apply: V6_HELPDESK_LINKS,
    },
    Migration {
        version: 7,
        name: "help desk links with something left to deliver, indexed on their own",
        apply: V7_HELPDESK_PENDING,
    },
    Migration {
        version: 8,
        name: "agent names unique without regard to case (`PC-A` is `pc-a`)",
        apply: V8_AGENT_NAMES_NOCASE,
    },
    Migration {
        version: 9,
        name: "authority that dies with its grantor: agents' enrollment ids, queued actions bound to one, central monitor sets suspended",
        apply: V9_ENROLLMENTS,
    },
];

/// As SQLite's version 10: queued actions are bound to the enrollment of
/// the agent they were queued for, not its name; central monitor sets can
/// be suspended. A pending action is bound to its agent's enrollment when
/// that agent enrolled no later than it was queued, and cancelled
/// otherwise (it was queued for an enrollment since removed).
const V9_ENROLLMENTS: &str = r#"
ALTER TABLE agents ADD COLUMN enrollment TEXT;
UPDATE agents SET enrollment = 'before-v10:' || name || ':' || enrolled_at;
CREATE INDEX agents_by_enrollment ON agents (enrollment);
ALTER TABLE queued_actions ADD COLUMN enrollment TEXT;
UPDATE queued_actions SET enrollment =
    (SELECT a.enrollment FROM agents a
     WHERE a.name = queued_actions.agent AND a.revoked_at IS NULL
       AND a.removed_at IS NULL AND a.enrolled_at <= queued_actions.queued_at)
 WHERE state = 'pending';
UPDATE queued_actions SET state = 'cancelled',
    ended_at = EXTRACT(EPOCH FROM now())::BIGINT,
    outcome = 'cancelled: queued for an enrollment of its agent that was removed or revoked since'
 WHERE state = 'pending' AND enrollment IS NULL;
ALTER TABLE monitor_sets ADD COLUMN suspended TEXT;
"#;

/// As SQLite's version 9: `PC-A` cannot enroll beside `pc-a`. A database
/// that already holds two such names is not migrated until one is gone.
const V8_AGENT_NAMES_NOCASE: &str = r#"
DO $$
DECLARE twins TEXT;
BEGIN
    SELECT string_agg(name, ', ') INTO twins FROM agents WHERE lower(name) IN
        (SELECT lower(name) FROM agents GROUP BY lower(name) HAVING COUNT(*) > 1);
    IF twins IS NOT NULL THEN
        RAISE EXCEPTION 'agents whose names differ only in case are enrolled (%): remove all but one of each (`firstline-relay agent remove NAME`) with the previous firstline-relay, then start this one', twins;
    END IF;
END
$$;
CREATE UNIQUE INDEX agents_name_nocase ON agents (lower(name));
"#;

/// As SQLite's version 8: the claim of the help desk mirror reads only the
/// links with something left to deliver, not every ticket ever mirrored.
const V7_HELPDESK_PENDING: &str = r#"
CREATE INDEX helpdesk_pending ON helpdesk_links (ticket_id)
    WHERE latest_entry > delivered_entry;
"#;

/// Key of the session advisory lock a relay holds while it migrates: two
/// relays starting at once on an empty database do not both create it.
const MIGRATION_LOCK: i64 = 0x6669_7273_746c_6d31; // "firstlm1"

/// Apply the pending migrations, each in one transaction with the row that
/// records it, under [`MIGRATION_LOCK`].
pub(super) fn migrate(client: &mut Client) -> StoreResult<()> {
    migrations::check(MIGRATIONS).map_err(StoreError::Backend)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(error)?;
    let migrated = apply_pending(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    migrated?;
    unlocked.map_err(error)?;
    Ok(())
}

fn apply_pending(client: &mut Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .map_err(error)?;
    loop {
        let mut tx = client.transaction().map_err(error)?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .and_then(|r| r.try_get(0))
            .map_err(error)?;
        let current = u32::try_from(current).unwrap_or(u32::MAX);
        let Some(next) = migrations::pending(MIGRATIONS, current)?.first() else {
            return tx.commit().map_err(error);
        };
        tx.batch_execute(next.apply).map_err(error)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
            &[
                &i64::from(next.version),
                &next.name,
                &crate::clock::unix_now(),
            ],
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

const V1: &str = r#"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    uses_left BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    uses BIGINT,
    revoked_at BIGINT
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    enrolled_at BIGINT NOT NULL,
    last_seen BIGINT,
    version TEXT,
    os TEXT,
    hostname TEXT,
    revoked_at BIGINT,
    last_seq BIGINT NOT NULL DEFAULT 0,
    removed_at BIGINT
);
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE certs (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX certs_by_identity ON certs (kind, name);
CREATE TABLE revocations (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    who TEXT NOT NULL,
    role TEXT,
    agent TEXT,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_agent ON audit (agent, id);
-- One row, locked (SELECT ... FOR UPDATE) by each audit append until its
-- commit: the appends of every relay take turns, so the chain cannot fork.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1)
);
INSERT INTO audit_head (id) VALUES (1);
CREATE TABLE monitor_status (
    agent TEXT NOT NULL,
    monitor TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (agent, monitor)
);
CREATE TABLE webhook_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_until BIGINT
);
CREATE INDEX webhook_due ON webhook_outbox (next_at, id);
CREATE TABLE tickets (
    id BIGSERIAL PRIMARY KEY,
    title TEXT NOT NULL,
    agent TEXT,
    check_name TEXT,
    monitor TEXT,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    source TEXT NOT NULL,
    assignee TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX tickets_by_monitor ON tickets (agent, monitor, id);
CREATE TABLE ticket_entries (
    id BIGSERIAL PRIMARY KEY,
    ticket_id BIGINT NOT NULL REFERENCES tickets(id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    observed_at BIGINT
);
CREATE INDEX entries_by_ticket ON ticket_entries (ticket_id, id);
"#;

/// Tags and facts (`crate::store::fleet`): tables of their own, so the
/// migration touches no existing table but for an index on `tickets`.
const V2_FLEET: &str = r#"
CREATE TABLE token_tags (
    token_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (token_id, tag)
);
CREATE TABLE agent_tags (
    agent TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (agent, tag)
);
CREATE INDEX agent_tags_by_tag ON agent_tags (tag, agent);
CREATE TABLE agent_facts (
    agent TEXT PRIMARY KEY,
    kernel TEXT,
    addresses TEXT NOT NULL DEFAULT '[]',
    uptime_secs BIGINT,
    at BIGINT NOT NULL
);
CREATE INDEX tickets_by_agent_status ON tickets (agent, status, source);
"#;

/// Actions queued for offline agents (`crate::store::queue`): a table of
/// its own.
const V3_QUEUED_ACTIONS: &str = r#"
CREATE TABLE queued_actions (
    id BIGSERIAL PRIMARY KEY,
    agent TEXT NOT NULL,
    action TEXT NOT NULL,
    ticket BIGINT,
    operator TEXT NOT NULL,
    role TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    ended_at BIGINT,
    outcome TEXT
);
CREATE INDEX queued_by_agent ON queued_actions (agent, state, id);
CREATE INDEX queued_by_expiry ON queued_actions (state, expires_at);
"#;

/// Tickets mirrored into an external help desk (`crate::store::helpdesk`):
/// as SQLite's version 7.
const V6_HELPDESK_LINKS: &str = r#"
CREATE TABLE helpdesk_links (
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
CREATE INDEX helpdesk_due ON helpdesk_links (next_at, ticket_id);
"#;

/// Central monitor sets (`crate::store::monitors`) and each agent's last
/// report of them: tables of their own.
/// As SQLite's version 6.
const V5_REQUESTER: &str = r#"
ALTER TABLE tickets ADD COLUMN requester TEXT;
UPDATE tickets SET requester = substr(monitor, 6), monitor = NULL
 WHERE source = 'user' AND monitor LIKE 'user:%';
"#;

const V4_CENTRAL_MONITORS: &str = r#"
CREATE TABLE monitor_sets (
    name TEXT PRIMARY KEY,
    selector TEXT NOT NULL,
    toml TEXT NOT NULL,
    monitors TEXT NOT NULL,
    role TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE monitor_reports (
    agent TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    report TEXT NOT NULL,
    at BIGINT NOT NULL
);
"#;
