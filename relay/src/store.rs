//! The relay's SQLite database (one file, WAL): tokens, agents, operators,
//! issued certificates, revocations, the audit log (appended, anchored and
//! verified in [`crate::audit`]) and tickets.
//!
//! Both `serve` and the admin commands (`token create`, `agent revoke`…)
//! open the same file; WAL and a busy timeout let them write side by side,
//! and `serve` learns of revocations by polling the `revocations` table.

use anyhow::{Context, Result};
use firstline_proto::message::{AgentRecord, OperatorInfo, TokenInfo};
use firstline_proto::{AgentInfo, Role};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = r#"
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
"#;

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown enrollment token (not issued by this relay, or mistyped)")]
    Unknown,
    #[error("enrollment token expired; create a new one with `firstline-relay token create`")]
    Expired,
    #[error(
        "enrollment token already used up; create a new one with `firstline-relay token create`"
    )]
    Used,
    #[error("enrollment token revoked by the relay admin; ask for a new one")]
    Revoked,
}

/// Status of a certificate serial as the relay recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    Unknown,
    Revoked,
    Valid,
}

pub struct Store {
    conn: Mutex<Connection>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        // Owner-only (0600) before SQLite opens it: its -wal/-shm take that mode.
        firstline_net::private::private_database(path)
            .with_context(|| format!("cannot create database {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)
            .and_then(|_| conn.execute_batch(crate::tickets::SCHEMA))
            .with_context(|| format!("cannot create schema in {}", path.display()))?;
        crate::tickets::upgrade(&conn)
            .with_context(|| format!("cannot upgrade the schema of {}", path.display()))?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` in one transaction: all of it is stored, or none.
    pub fn with_tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Read-only access for the ticket queries.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&self.db())
    }

    // ---- tokens ----

    pub fn add_token(
        &self,
        id: &str,
        secret_sha256: &str,
        uses: u32,
        ttl: Duration,
    ) -> Result<i64> {
        let expires = now() + ttl.as_secs() as i64;
        self.db().execute(
            "INSERT INTO tokens (id, secret_sha256, uses_left, expires_at, created_at, uses) VALUES (?1, ?2, ?3, ?4, ?5, ?3)",
            params![id, secret_sha256, uses, expires, now()],
        )?;
        Ok(expires)
    }

    /// Every enrollment token, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revoke a token: it can no longer enroll anything. `None` when there
    /// is no such token; else the token after, and whether this call
    /// revoked it (false: it already was).
    pub fn revoke_token(&self, id: &str) -> Result<Option<(TokenInfo, bool)>> {
        let db = self.db();
        let n = db.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now()],
        )?;
        let token = db
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()?;
        Ok(token.map(|t| (t, n > 0)))
    }

    /// Enroll an agent: check and spend the token, check the name is free,
    /// sign, and record the certificate — all or nothing.
    pub fn enroll<T>(
        &self,
        token_id: &str,
        secret_sha256: &str,
        name: &str,
        sign: impl FnOnce() -> Result<(T, String, i64)>,
    ) -> Result<Result<T, EnrollRefusal>> {
        let mut db = self.db();
        // The write lock up front: no other writer between reading the
        // token's uses and spending one.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let token: Option<(String, i64, i64, Option<i64>)> = tx
            .query_row(
                "SELECT secret_sha256, uses_left, expires_at, revoked_at FROM tokens WHERE id = ?1",
                [token_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        // Only the holder of the secret learns more than "unknown".
        let refusal = match token {
            None => Some(EnrollRefusal::Token(TokenError::Unknown)),
            Some((hash, ..)) if !constant_time_eq(&hash, secret_sha256) => {
                Some(EnrollRefusal::Token(TokenError::Unknown))
            }
            Some((_, _, _, Some(_))) => Some(EnrollRefusal::Token(TokenError::Revoked)),
            Some((_, _, expires, _)) if expires <= now() => {
                Some(EnrollRefusal::Token(TokenError::Expired))
            }
            Some((_, uses, _, _)) if uses <= 0 => Some(EnrollRefusal::Token(TokenError::Used)),
            _ => None,
        };
        if let Some(r) = refusal {
            return Ok(Err(r));
        }
        let existing: Option<Option<i64>> = tx
            .query_row(
                "SELECT revoked_at FROM agents WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(Some(_)) => return Ok(Err(EnrollRefusal::Revoked(name.into()))),
            Some(None) => return Ok(Err(EnrollRefusal::NameTaken(name.into()))),
            None => {}
        }
        let (out, serial, not_after) = sign()?;
        tx.execute(
            "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            [token_id],
        )?;
        tx.execute(
            "INSERT INTO agents (name, enrolled_at) VALUES (?1, ?2)",
            params![name, now()],
        )?;
        insert_cert(&tx, &serial, "agent", name, not_after)?;
        tx.commit()?;
        Ok(Ok(out))
    }

    // ---- certificates, agents, operators ----

    pub fn record_cert(&self, serial: &str, kind: &str, name: &str, not_after: i64) -> Result<()> {
        insert_cert(&self.db(), serial, kind, name, not_after)
    }

    /// Whether the certificate `serial` may log in as `kind` `name`: it
    /// must be on record for that very identity, and neither the certificate
    /// nor the identity revoked. Revocation is of the identity: a
    /// certificate issued for a name after that name was revoked — by any
    /// path — is refused too.
    pub fn cert_status(&self, serial: &str, kind: &str, name: &str) -> Result<CertStatus> {
        /// `(kind, name, cert revoked at, identity: None if gone, else its revoked at)`
        type Row = (String, String, Option<i64>, Option<Option<i64>>);
        let row: Option<Row> = self
            .db()
            .query_row(
                "SELECT c.kind, c.name, c.revoked_at,
                        CASE c.kind
                          WHEN 'agent' THEN (SELECT COALESCE(revoked_at, 0) FROM agents WHERE name = c.name)
                          WHEN 'operator' THEN (SELECT COALESCE(revoked_at, 0) FROM operators WHERE name = c.name)
                        END
                 FROM certs c WHERE c.serial = ?1",
                [serial],
                |r| {
                    let identity: Option<i64> = r.get(3)?;
                    // 0: the identity exists and is live; NULL: no such identity.
                    let identity = identity.map(|at| (at != 0).then_some(at));
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, identity))
                },
            )
            .optional()?;
        Ok(match row {
            None => CertStatus::Unknown,
            Some((k, n, _, _)) if k != kind || n != name => CertStatus::Unknown,
            // A revoked certificate says so, even once its identity is gone
            // (`agent remove`): the peer stops instead of retrying.
            Some((_, _, Some(_), _)) => CertStatus::Revoked,
            Some((_, _, _, None)) => CertStatus::Unknown,
            Some((_, _, _, Some(Some(_)))) => CertStatus::Revoked,
            Some((_, _, None, Some(None))) => CertStatus::Valid,
        })
    }

    /// Renew an agent's certificate: check the agent is still enrolled and
    /// not revoked, sign, and record the certificate — in one write
    /// transaction taken up front, so a revocation either comes first (and
    /// the renewal is refused) or after (and revokes the new certificate
    /// too).
    pub fn renew_agent<T>(
        &self,
        name: &str,
        sign: impl FnOnce() -> Result<(T, String, i64)>,
    ) -> Result<Result<T, EnrollRefusal>> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state: Option<Option<i64>> = tx
            .query_row(
                "SELECT revoked_at FROM agents WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match state {
            None => return Ok(Err(EnrollRefusal::Unknown(name.into()))),
            Some(Some(_)) => return Ok(Err(EnrollRefusal::Revoked(name.into()))),
            Some(None) => {}
        }
        let (out, serial, not_after) = sign()?;
        insert_cert(&tx, &serial, "agent", name, not_after)?;
        tx.commit()?;
        Ok(Ok(out))
    }

    pub fn agent_seen(&self, name: &str, version: &str, os: &str, hostname: &str) -> Result<()> {
        self.db().execute(
            "UPDATE agents SET last_seen = ?2, version = ?3, os = ?4, hostname = ?5 WHERE name = ?1",
            params![name, now(), version, os, hostname],
        )?;
        Ok(())
    }

    pub fn agent_left(&self, name: &str) -> Result<()> {
        self.db().execute(
            "UPDATE agents SET last_seen = ?2 WHERE name = ?1",
            params![name, now()],
        )?;
        Ok(())
    }

    /// Every enrolled agent (not removed); `online` is filled in by the caller.
    pub fn agents(&self) -> Result<Vec<AgentInfo>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT name, last_seen, version, os, hostname, revoked_at FROM agents
             WHERE removed_at IS NULL ORDER BY name",
        )?;
        let rows = stmt.query_map([], agent_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One agent, by primary key. (`run` looks its agent up on every
    /// request: reading every agent here made a fan-out to N agents cost
    /// N² rows under the store lock — 12 s for 2,000 agents.)
    pub fn agent(&self, name: &str) -> Result<Option<AgentInfo>> {
        Ok(self
            .db()
            .query_row(
                "SELECT name, last_seen, version, os, hostname, revoked_at FROM agents
                 WHERE name = ?1 AND removed_at IS NULL",
                [name],
                agent_row,
            )
            .optional()?)
    }

    /// The enrollment records of every agent (not removed), by name;
    /// `online` is filled in by the caller.
    pub fn agent_records(&self) -> Result<Vec<AgentRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE removed_at IS NULL ORDER BY name"
        ))?;
        let rows = stmt.query_map([], agent_record_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Names of the agents (not removed), for messages that list them.
    pub fn agent_names(&self) -> Result<Vec<String>> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT name FROM agents WHERE removed_at IS NULL ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remove an agent's record; `None` when there is no such agent (or it
    /// was removed already). Its tickets are kept.
    ///
    /// * A live agent's record is deleted, its certificates are revoked and
    ///   its connection cut (through `revocations`): the name is free, and
    ///   the machine — reinstalled, say — may enroll under it again with a
    ///   new token, starting a fresh event sequence. Its old certificates
    ///   stay refused.
    /// * A revoked agent's record stays, marked removed: it is no longer
    ///   listed, and the name stays revoked — revocation is of the identity,
    ///   and a revoked name never comes back (`cert_status`, `enroll`).
    pub fn remove_agent(&self, name: &str) -> Result<Option<Removed>> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let record = tx
            .query_row(
                &format!(
                    "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE name = ?1 AND removed_at IS NULL"
                ),
                [name],
                agent_record_row,
            )
            .optional()?;
        let Some(agent) = record else {
            return Ok(None);
        };
        let at = now();
        let name_freed = agent.revoked_at.is_none();
        if name_freed {
            tx.execute("DELETE FROM agents WHERE name = ?1", [name])?;
            tx.execute(
                "UPDATE certs SET revoked_at = ?2 WHERE kind = 'agent' AND name = ?1 AND revoked_at IS NULL",
                params![name, at],
            )?;
            tx.execute(
                "INSERT INTO revocations (kind, name, at) VALUES ('agent', ?1, ?2)",
                params![name, at],
            )?;
        } else {
            tx.execute(
                "UPDATE agents SET removed_at = ?2 WHERE name = ?1",
                params![name, at],
            )?;
        }
        tx.execute("DELETE FROM monitor_status WHERE agent = ?1", [name])?;
        let tickets: i64 = tx.query_row(
            "SELECT COUNT(*) FROM tickets WHERE agent = ?1",
            [name],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(Some(Removed {
            agent,
            name_freed,
            tickets: tickets.max(0) as u64,
        }))
    }

    /// Whether `name` is an agent the relay knows or knew: enrolled (even
    /// revoked or removed) or named by a ticket.
    pub fn agent_known(&self, name: &str) -> Result<bool> {
        Ok(self.db().query_row(
            "SELECT EXISTS (SELECT 1 FROM agents WHERE name = ?1)
                 OR EXISTS (SELECT 1 FROM tickets WHERE agent = ?1)",
            [name],
            |r| r.get(0),
        )?)
    }

    /// Every operator, by name; `online` is filled in by the caller.
    pub fn operators(&self) -> Result<Vec<OperatorInfo>> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT name, role, created_at, revoked_at FROM operators ORDER BY name")?;
        let rows = stmt.query_map([], operator_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One operator: its role and whether it is revoked. This is what
    /// authorizes an operator's every request (see `crate::operator`).
    pub fn operator(&self, name: &str) -> Result<Option<OperatorInfo>> {
        Ok(self
            .db()
            .query_row(
                "SELECT name, role, created_at, revoked_at FROM operators WHERE name = ?1",
                [name],
                operator_row,
            )
            .optional()?)
    }

    /// Change a live operator's role: the operator after and the role
    /// before. It holds from the operator's next request on, whatever role
    /// their certificate names.
    pub fn set_operator_role(
        &self,
        name: &str,
        role: Role,
    ) -> Result<Result<(OperatorInfo, Role), RoleRefusal>> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let before = tx
            .query_row(
                "SELECT name, role, created_at, revoked_at FROM operators WHERE name = ?1",
                [name],
                operator_row,
            )
            .optional()?;
        let before = match before {
            None => return Ok(Err(RoleRefusal::Unknown)),
            Some(op) if op.revoked_at.is_some() => return Ok(Err(RoleRefusal::Revoked)),
            Some(op) => op.role,
        };
        tx.execute(
            "UPDATE operators SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )?;
        let after = tx.query_row(
            "SELECT name, role, created_at, revoked_at FROM operators WHERE name = ?1",
            [name],
            operator_row,
        )?;
        tx.commit()?;
        Ok(Ok((after, before)))
    }

    pub fn add_operator(&self, name: &str, role: Role) -> Result<bool> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO operators (name, role, created_at) VALUES (?1, ?2, ?3)",
            params![name, role.as_str(), now()],
        )?;
        Ok(n == 1)
    }

    /// Revoke every certificate of a peer and record the revocation so a
    /// running relay cuts it off. Returns false when there is no such peer.
    pub fn revoke(&self, kind: &str, name: &str) -> Result<bool> {
        let table = match kind {
            "agent" => "agents",
            _ => "operators",
        };
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            &format!("UPDATE {table} SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL"),
            params![name, now()],
        )?;
        let exists: bool = tx.query_row(
            &format!("SELECT COUNT(*) > 0 FROM {table} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE certs SET revoked_at = ?3 WHERE kind = ?1 AND name = ?2 AND revoked_at IS NULL",
            params![kind, name, now()],
        )?;
        if n > 0 {
            tx.execute(
                "INSERT INTO revocations (kind, name, at) VALUES (?1, ?2, ?3)",
                params![kind, name, now()],
            )?;
        }
        tx.commit()?;
        Ok(exists)
    }

    /// Revocations recorded after `seq`: `(seq, kind, name)`.
    pub fn revocations_since(&self, seq: i64) -> Result<Vec<(i64, String, String)>> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT seq, kind, name FROM revocations WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// An `AgentInfo` from `SELECT name, last_seen, version, os, hostname,
/// revoked_at`; `online` is filled in by the caller.
fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentInfo> {
    Ok(AgentInfo {
        name: r.get(0)?,
        online: false,
        last_seen: r.get::<_, Option<i64>>(1)?.map(rfc3339),
        version: r.get(2)?,
        os: r.get(3)?,
        hostname: r.get(4)?,
        revoked: r.get::<_, Option<i64>>(5)?.is_some(),
    })
}

/// The columns [`token_row`] reads.
const TOKEN_COLUMNS: &str = "id, uses, uses_left, created_at, expires_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let uses_left: i64 = r.get(2)?;
    let expires: i64 = r.get(4)?;
    let revoked: Option<i64> = r.get(5)?;
    let state = if revoked.is_some() {
        "revoked"
    } else if expires <= now() {
        "expired"
    } else if uses_left <= 0 {
        "used"
    } else {
        "active"
    };
    Ok(TokenInfo {
        id: r.get(0)?,
        state: state.into(),
        uses: r
            .get::<_, Option<i64>>(1)?
            .map(|n| n.clamp(0, u32::MAX.into()) as u32),
        uses_left: uses_left.clamp(0, u32::MAX.into()) as u32,
        created_at: rfc3339(r.get(3)?),
        expires_at: rfc3339(expires),
        revoked_at: revoked.map(rfc3339),
    })
}

/// The columns [`agent_record_row`] reads, from `agents a`.
const AGENT_RECORD_COLUMNS: &str = "a.name, a.enrolled_at, a.last_seen, a.revoked_at,
    (SELECT MAX(not_after) FROM certs c WHERE c.kind = 'agent' AND c.name = a.name AND c.revoked_at IS NULL),
    a.version, a.os, a.hostname";

fn agent_record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        name: r.get(0)?,
        enrolled_at: rfc3339(r.get(1)?),
        last_seen: r.get::<_, Option<i64>>(2)?.map(rfc3339),
        online: false,
        revoked_at: r.get::<_, Option<i64>>(3)?.map(rfc3339),
        cert_expires: r.get::<_, Option<i64>>(4)?.map(rfc3339),
        version: r.get(5)?,
        os: r.get(6)?,
        hostname: r.get(7)?,
    })
}

/// An operator from `SELECT name, role, created_at, revoked_at`.
fn operator_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorInfo> {
    let role: String = r.get(1)?;
    let role = role.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(OperatorInfo {
        name: r.get(0)?,
        role,
        created_at: rfc3339(r.get(2)?),
        revoked_at: r.get::<_, Option<i64>>(3)?.map(rfc3339),
        online: false,
    })
}

/// What `remove_agent` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The record as it was.
    pub agent: AgentRecord,
    /// The name may enroll again (it was not revoked).
    pub name_freed: bool,
    /// Its tickets, kept.
    pub tickets: u64,
}

/// Why a role change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRefusal {
    Unknown,
    Revoked,
}

/// Why an enrollment was refused (besides internal errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    #[error("{0}")]
    Token(TokenError),
    #[error("an agent named `{0}` is already enrolled; pick another --name, or remove the old one first (`firstline-relay agent remove {0}`)")]
    NameTaken(String),
    #[error("the agent named `{0}` was revoked; enroll under a new --name")]
    Revoked(String),
    #[error("no agent named `{0}` is enrolled at this relay")]
    Unknown(String),
}

/// Audit entries are written by [`crate::audit`]; the name stays here for
/// the modules that import it from the store.
pub use crate::audit::AuditEntry;

fn insert_cert(
    db: &Connection,
    serial: &str,
    kind: &str,
    name: &str,
    not_after: i64,
) -> Result<()> {
    db.execute(
        "INSERT INTO certs (serial, kind, name, not_after, issued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![serial, kind, name, not_after, now()],
    )?;
    Ok(())
}

/// Compare two hex digests without an early exit on the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("relay.db")).unwrap();
        (dir, s)
    }

    fn sign() -> Result<((), String, i64)> {
        Ok(((), format!("{:x}", rand::random::<u64>()), now() + 60))
    }

    #[test]
    fn single_use_token_then_used() {
        let (_d, s) = store();
        s.add_token("t1", "h", 1, Duration::from_secs(60)).unwrap();
        assert_eq!(s.enroll("t1", "h", "a1", sign).unwrap(), Ok(()));
        assert_eq!(
            s.enroll("t1", "h", "a2", sign).unwrap(),
            Err(EnrollRefusal::Token(TokenError::Used))
        );
    }

    #[test]
    fn unknown_wrong_secret_and_expired() {
        let (_d, s) = store();
        s.add_token("t1", "h", 5, Duration::from_secs(0)).unwrap();
        s.add_token("t2", "h", 5, Duration::from_secs(60)).unwrap();
        let e = |r: Result<Result<(), EnrollRefusal>>| r.unwrap().unwrap_err();
        assert_eq!(
            e(s.enroll("nope", "h", "a", sign)),
            EnrollRefusal::Token(TokenError::Unknown)
        );
        assert_eq!(
            e(s.enroll("t2", "x", "a", sign)),
            EnrollRefusal::Token(TokenError::Unknown)
        );
        assert_eq!(
            e(s.enroll("t1", "h", "a", sign)),
            EnrollRefusal::Token(TokenError::Expired)
        );
    }

    #[test]
    fn name_taken_and_revoked_do_not_spend_token() {
        let (_d, s) = store();
        s.add_token("t", "h", 3, Duration::from_secs(60)).unwrap();
        s.enroll("t", "h", "pc", sign).unwrap().unwrap();
        assert!(matches!(
            s.enroll("t", "h", "pc", sign).unwrap(),
            Err(EnrollRefusal::NameTaken(_))
        ));
        assert!(s.revoke("agent", "pc").unwrap());
        assert!(matches!(
            s.enroll("t", "h", "pc", sign).unwrap(),
            Err(EnrollRefusal::Revoked(_))
        ));
        s.enroll("t", "h", "pc2", sign).unwrap().unwrap();
        assert_eq!(s.revocations_since(0).unwrap().len(), 1);
        assert!(!s.revoke("agent", "ghost").unwrap());
    }

    #[test]
    fn revocation_is_of_the_identity() {
        let (_d, s) = store();
        s.add_token("t", "h", 3, Duration::from_secs(60)).unwrap();
        s.enroll("t", "h", "pc", sign).unwrap().unwrap();
        let renewed = |s: &Store| {
            let serial = format!("{:x}", rand::random::<u64>());
            let out = s.renew_agent("pc", || Ok(((), serial.clone(), now() + 60)));
            (out.unwrap(), serial)
        };
        let (ok, live) = renewed(&s);
        assert_eq!(ok, Ok(()));
        assert_eq!(
            s.cert_status(&live, "agent", "pc").unwrap(),
            CertStatus::Valid
        );
        assert_eq!(
            s.cert_status(&live, "operator", "pc").unwrap(),
            CertStatus::Unknown,
            "a serial logs in only as the identity it was issued to"
        );
        assert!(s.revoke("agent", "pc").unwrap());
        assert_eq!(
            s.cert_status(&live, "agent", "pc").unwrap(),
            CertStatus::Revoked
        );
        let (refused, _) = renewed(&s);
        assert!(matches!(refused, Err(EnrollRefusal::Revoked(_))));
        // A certificate recorded for the name by any other path after the
        // revocation is refused too.
        insert_cert(&s.db(), "late", "agent", "pc", now() + 60).unwrap();
        assert_eq!(
            s.cert_status("late", "agent", "pc").unwrap(),
            CertStatus::Revoked
        );
        assert!(matches!(
            s.renew_agent("ghost", sign).unwrap(),
            Err(EnrollRefusal::Unknown(_))
        ));
    }

    #[test]
    fn a_revoked_token_enrolls_nothing_and_is_listed_so() {
        let (_d, s) = store();
        s.add_token("t1", "h", 5, Duration::from_secs(60)).unwrap();
        s.add_token("t2", "h", 1, Duration::from_secs(0)).unwrap();
        s.enroll("t1", "h", "a1", sign).unwrap().unwrap();
        let (t, newly) = s.revoke_token("t1").unwrap().unwrap();
        assert!(newly);
        assert_eq!(t.state, "revoked");
        assert_eq!((t.uses, t.uses_left), (Some(5), 4));
        assert!(t.revoked_at.is_some());
        assert!(!s.revoke_token("t1").unwrap().unwrap().1, "already revoked");
        assert!(s.revoke_token("nope").unwrap().is_none());
        // A wrong secret learns nothing more than "unknown".
        assert_eq!(
            s.enroll("t1", "x", "a2", sign).unwrap(),
            Err(EnrollRefusal::Token(TokenError::Unknown))
        );
        assert_eq!(
            s.enroll("t1", "h", "a2", sign).unwrap(),
            Err(EnrollRefusal::Token(TokenError::Revoked))
        );
        let states: Vec<(String, String)> = s
            .tokens()
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.state))
            .collect();
        assert_eq!(
            states,
            [
                ("t1".into(), "revoked".into()),
                ("t2".into(), "expired".into())
            ]
        );
    }

    #[test]
    fn removing_a_live_agent_frees_its_name_and_a_revoked_one_keeps_it_revoked() {
        let (_d, s) = store();
        s.add_token("t", "h", 10, Duration::from_secs(60)).unwrap();
        let serial = |s: &Store, name: &str| {
            let serial = format!("{:x}", rand::random::<u64>());
            s.enroll("t", "h", name, || Ok(((), serial.clone(), now() + 60)))
                .unwrap()
                .unwrap();
            serial
        };
        let old = serial(&s, "pc");
        s.with_tx(|tx| {
            use crate::tickets::{NewTicket, TicketStore};
            tx.create(&NewTicket {
                title: "t",
                agent: Some("pc"),
                check: None,
                monitor: None,
                priority: "normal",
                source: "technician",
                author: "alice",
                body: None,
            })
        })
        .unwrap();
        let removed = s.remove_agent("pc").unwrap().unwrap();
        assert!(removed.name_freed);
        assert_eq!(removed.tickets, 1);
        assert!(s.agent("pc").unwrap().is_none());
        assert!(s.agent_known("pc").unwrap(), "its tickets remember it");
        assert_eq!(s.revocations_since(0).unwrap().len(), 1, "cut off");
        assert_eq!(
            s.cert_status(&old, "agent", "pc").unwrap(),
            CertStatus::Revoked
        );
        assert!(s.remove_agent("pc").unwrap().is_none());
        // The name enrolls again; the old certificate stays refused.
        let new = serial(&s, "pc");
        assert_eq!(
            s.cert_status(&new, "agent", "pc").unwrap(),
            CertStatus::Valid
        );
        assert_eq!(
            s.cert_status(&old, "agent", "pc").unwrap(),
            CertStatus::Revoked
        );

        // A revoked agent: no longer listed, the name stays revoked.
        let gone = serial(&s, "pc2");
        assert!(s.revoke("agent", "pc2").unwrap());
        let removed = s.remove_agent("pc2").unwrap().unwrap();
        assert!(!removed.name_freed);
        assert!(s.agent("pc2").unwrap().is_none());
        let listed: Vec<String> = s.agents().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(listed, ["pc"]);
        assert_eq!(s.agent_records().unwrap().len(), 1);
        assert!(matches!(
            s.enroll("t", "h", "pc2", sign).unwrap(),
            Err(EnrollRefusal::Revoked(_))
        ));
        assert_eq!(
            s.cert_status(&gone, "agent", "pc2").unwrap(),
            CertStatus::Revoked
        );
        assert!(s.remove_agent("pc2").unwrap().is_none());
    }

    #[test]
    fn an_operators_role_changes_in_the_database() {
        let (_d, s) = store();
        assert!(s.add_operator("bob", Role::Technician).unwrap());
        let (after, before) = s.set_operator_role("bob", Role::Viewer).unwrap().unwrap();
        assert_eq!((before, after.role), (Role::Technician, Role::Viewer));
        assert_eq!(s.operator("bob").unwrap().unwrap().role, Role::Viewer);
        assert_eq!(
            s.set_operator_role("ghost", Role::Admin).unwrap(),
            Err(RoleRefusal::Unknown)
        );
        assert!(s.revoke("operator", "bob").unwrap());
        assert_eq!(
            s.set_operator_role("bob", Role::Admin).unwrap(),
            Err(RoleRefusal::Revoked)
        );
        assert_eq!(s.operators().unwrap().len(), 1);
    }

    #[test]
    fn tickets_and_timeline() {
        use crate::tickets::{NewTicket, TicketStore};
        let (_d, s) = store();
        let t = s
            .with_tx(|tx| {
                tx.create(&NewTicket {
                    title: "printer down",
                    agent: Some("pc"),
                    check: None,
                    monitor: None,
                    priority: "normal",
                    source: "technician",
                    author: "alice",
                    body: None,
                })
            })
            .unwrap()
            .ticket;
        assert_eq!(t.status, "open");
        s.with_tx(|tx| {
            assert!(tx.append(t.id, "result", "pc", "{}")?.is_some());
            assert!(tx.append(999, "result", "pc", "{}")?.is_none());
            assert!(tx.set_status(t.id, "closed", "alice", "")?.is_some());
            assert!(tx.set_status(t.id, "resolved", "alice", "").is_err());
            Ok(())
        })
        .unwrap();
        let entries = s.read(|db| db.entries(t.id)).unwrap();
        assert_eq!(entries.len(), 3);
        let closed = crate::tickets::TicketFilter {
            status: Some("closed"),
            ..Default::default()
        };
        assert_eq!(s.read(|db| db.list(&closed)).unwrap().len(), 1);
    }
}
