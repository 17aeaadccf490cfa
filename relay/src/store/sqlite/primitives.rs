//! The storage primitives ([`Tx`]) in SQLite's SQL.

use super::error;
use crate::clock::rfc3339;
use crate::store::error::{StoreError, StoreResult};
use crate::store::tx::*;
use crate::ticket::{entry_body, NewTicket, Priority, Ticket, TicketFilter, TicketStatus};
use firstline_proto::message::{AgentRecord, OperatorInfo};
use firstline_proto::{AgentInfo, AuditRecord, Facts, Role, Status, TicketEntry};
use rusqlite::{params, Connection, OptionalExtension};

/// One transaction's connection.
pub(super) struct SqliteTx<'c> {
    c: &'c Connection,
}

impl<'c> SqliteTx<'c> {
    pub(super) fn new(c: &'c Connection) -> SqliteTx<'c> {
        SqliteTx { c }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        error(e)
    }
}

const TOKEN_COLUMNS: &str =
    "id, secret_sha256, uses, uses_left, created_at, expires_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        secret_sha256: r.get(1)?,
        uses: r.get(2)?,
        uses_left: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const AGENT_COLUMNS: &str = "name, last_seen, version, os, hostname, revoked_at";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentInfo> {
    Ok(AgentInfo {
        name: r.get(0)?,
        online: false,
        last_seen: r.get::<_, Option<i64>>(1)?.map(rfc3339),
        version: r.get(2)?,
        os: r.get(3)?,
        hostname: r.get(4)?,
        revoked: r.get::<_, Option<i64>>(5)?.is_some(),
        tags: Vec::new(),
        facts: Facts::default(),
        health: Status::Unknown,
        open_incidents: 0,
        open_tickets: 0,
    })
}

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

fn operator_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorInfo> {
    let role: String = r.get(1)?;
    Ok(OperatorInfo {
        name: r.get(0)?,
        role: parse_column(1, &role)?,
        created_at: rfc3339(r.get(2)?),
        revoked_at: r.get::<_, Option<i64>>(3)?.map(rfc3339),
        online: false,
    })
}

/// A text column parsed into its enum (a bad value is a conversion error).
fn parse_column<T: std::str::FromStr>(i: usize, s: &str) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            e.to_string().into(),
        )
    })
}

const TICKET_COLUMNS: &str = "id, title, agent, check_name, monitor, status, priority, source, assignee, created_at, updated_at, resolved_at, requester";

fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get::<_, i64>(0)? as u64,
        title: r.get(1)?,
        agent: r.get(2)?,
        check: r.get(3)?,
        monitor: r.get(4)?,
        status: parse_column(5, &r.get::<_, String>(5)?)?,
        priority: parse_column(6, &r.get::<_, String>(6)?)?,
        source: parse_column(7, &r.get::<_, String>(7)?)?,
        assignee: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        resolved_at: r.get(11)?,
        requester: r.get(12)?,
    })
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        at: r.get(1)?,
        who: r.get(2)?,
        role: r.get(3)?,
        agent: r.get(4)?,
        action: r.get(5)?,
        args: r.get(6)?,
        outcome: r.get(7)?,
    })
}

fn identity_table(kind: PeerKind) -> StoreResult<&'static str> {
    match kind {
        PeerKind::Agent => Ok("agents"),
        PeerKind::Operator => Ok("operators"),
        PeerKind::Relay => Err(StoreError::Invalid(
            "a relay is no identity to revoke".into(),
        )),
    }
}

const QUEUE_COLUMNS: &str =
    "id, agent, action, ticket, operator, role, queued_at, expires_at, state, ended_at, outcome, enrollment";

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: r.get(0)?,
        agent: r.get(1)?,
        action: r.get(2)?,
        ticket: r.get(3)?,
        operator: r.get(4)?,
        role: r.get(5)?,
        queued_at: r.get(6)?,
        expires_at: r.get(7)?,
        state: r.get(8)?,
        ended_at: r.get(9)?,
        outcome: r.get(10)?,
        enrollment: r.get(11)?,
    })
}

const MONITOR_SET_COLUMNS: &str =
    "name, selector, toml, monitors, role, updated_by, updated_at, suspended";

fn monitor_set_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MonitorSetRow> {
    Ok(MonitorSetRow {
        name: r.get(0)?,
        selector: r.get(1)?,
        toml: r.get(2)?,
        monitors: r.get(3)?,
        role: r.get(4)?,
        updated_by: r.get(5)?,
        updated_at: r.get(6)?,
        suspended: r.get(7)?,
    })
}

impl SqliteTx<'_> {
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self.c.prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let mut stmt = self.c.prepare_cached(sql)?;
        Ok(stmt.query_row(params, f).optional()?)
    }

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<usize> {
        let mut stmt = self.c.prepare_cached(sql)?;
        Ok(stmt.execute(params)?)
    }
}

impl Tx for SqliteTx<'_> {
    fn insert_token(&mut self, t: &TokenRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO tokens (id, secret_sha256, uses_left, expires_at, created_at, uses, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![t.id, t.secret_sha256, t.uses_left, t.expires_at, t.created_at, t.uses, t.revoked_at],
        )?;
        Ok(())
    }

    fn token(&mut self, id: &str) -> StoreResult<Option<TokenRow>> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
            [id],
            token_row,
        )
    }

    fn tokens(&mut self) -> StoreResult<Vec<TokenRow>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
            [],
            token_row,
        )
    }

    fn revoke_token(&mut self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    fn spend_token(&mut self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tokens SET uses_left = uses_left - 1
             WHERE id = ?1 AND uses_left > 0 AND revoked_at IS NULL AND expires_at > ?2",
            params![id, now],
        )?;
        Ok(n == 1)
    }

    fn insert_cert(
        &mut self,
        serial: &str,
        kind: PeerKind,
        name: &str,
        not_after: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.exec(
            "INSERT INTO certs (serial, kind, name, not_after, issued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![serial, kind.as_str(), name, not_after, now],
        )?;
        Ok(())
    }

    fn cert(&mut self, serial: &str) -> StoreResult<Option<CertRow>> {
        self.one(
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
                Ok(CertRow {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    revoked_at: r.get(2)?,
                    identity: identity.map(|at| (at != 0).then_some(at)),
                })
            },
        )
    }

    fn revoke_certs(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE certs SET revoked_at = ?3 WHERE kind = ?1 AND name = ?2 AND revoked_at IS NULL",
            params![kind.as_str(), name, now],
        )?;
        Ok(())
    }

    fn revoke_identity(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<bool> {
        let table = identity_table(kind)?;
        let n = self.exec(
            &format!("UPDATE {table} SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL"),
            params![name, now],
        )?;
        Ok(n > 0)
    }

    fn identity_exists(&mut self, kind: PeerKind, name: &str) -> StoreResult<bool> {
        let table = identity_table(kind)?;
        Ok(self
            .one(
                &format!("SELECT 1 FROM {table} WHERE name = ?1"),
                [name],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn insert_revocation(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO revocations (kind, name, at) VALUES (?1, ?2, ?3)",
            params![kind.as_str(), name, now],
        )?;
        Ok(())
    }

    fn revocations_since(&mut self, seq: i64) -> StoreResult<Vec<Revocation>> {
        self.all(
            "SELECT seq, kind, name FROM revocations WHERE seq > ?1 ORDER BY seq",
            [seq],
            |r| {
                Ok(Revocation {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                })
            },
        )
    }

    fn agent_state(&mut self, name: &str) -> StoreResult<Option<AgentState>> {
        self.one(
            "SELECT revoked_at, removed_at FROM agents WHERE name = ?1",
            [name],
            |r| {
                Ok(AgentState {
                    revoked_at: r.get(0)?,
                    removed_at: r.get(1)?,
                })
            },
        )
    }

    fn agent_state_any_case(&mut self, name: &str) -> StoreResult<Option<(String, AgentState)>> {
        self.one(
            "SELECT name, revoked_at, removed_at FROM agents WHERE lower(name) = lower(?1)",
            [name],
            |r| {
                Ok((
                    r.get(0)?,
                    AgentState {
                        revoked_at: r.get(1)?,
                        removed_at: r.get(2)?,
                    },
                ))
            },
        )
    }

    fn insert_agent(&mut self, name: &str, enrollment: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "INSERT INTO agents (name, enrolled_at, enrollment) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![name, now, enrollment],
        )?;
        Ok(n == 1)
    }

    fn agent_enrollment(&mut self, name: &str) -> StoreResult<Option<String>> {
        Ok(self
            .one(
                "SELECT enrollment FROM agents
                 WHERE name = ?1 AND revoked_at IS NULL AND removed_at IS NULL",
                [name],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten())
    }

    fn agent_seen(&mut self, name: &str, p: &Presence, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seen = ?2, version = ?3, os = ?4, hostname = ?5 WHERE name = ?1",
            params![name, now, p.version, p.os, p.hostname],
        )?;
        Ok(())
    }

    fn agent_left(&mut self, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seen = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        Ok(())
    }

    fn agent(&mut self, name: &str) -> StoreResult<Option<AgentInfo>> {
        self.one(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1 AND removed_at IS NULL"),
            [name],
            agent_row,
        )
    }

    fn agents(&mut self) -> StoreResult<Vec<AgentInfo>> {
        self.all(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE removed_at IS NULL ORDER BY name"),
            [],
            agent_row,
        )
    }

    fn agent_record(&mut self, name: &str) -> StoreResult<Option<AgentRecord>> {
        self.one(
            &format!(
                "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE name = ?1 AND removed_at IS NULL"
            ),
            [name],
            agent_record_row,
        )
    }

    fn agent_records(&mut self) -> StoreResult<Vec<AgentRecord>> {
        self.all(
            &format!(
                "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE removed_at IS NULL ORDER BY name"
            ),
            [],
            agent_record_row,
        )
    }

    fn agent_names(&mut self, limit: u32) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT name FROM agents WHERE removed_at IS NULL ORDER BY name LIMIT ?1",
            [limit],
            |r| r.get(0),
        )
    }

    fn agent_known(&mut self, name: &str) -> StoreResult<bool> {
        Ok(self
            .one(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE name = ?1)
                     OR EXISTS (SELECT 1 FROM tickets WHERE agent = ?1)",
                [name],
                |r| r.get(0),
            )?
            .unwrap_or(false))
    }

    fn delete_agent(&mut self, name: &str) -> StoreResult<()> {
        self.exec("DELETE FROM agent_tags WHERE agent = ?1", [name])?;
        self.exec("DELETE FROM agent_facts WHERE agent = ?1", [name])?;
        self.exec("DELETE FROM agents WHERE name = ?1", [name])?;
        Ok(())
    }

    fn mark_agent_removed(&mut self, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET removed_at = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        Ok(())
    }

    fn lock_last_seq(&mut self, agent: &str) -> StoreResult<Option<i64>> {
        // The write transaction (BEGIN IMMEDIATE) holds the database's one
        // write lock already: nobody else reads-then-writes in between.
        self.one(
            "SELECT last_seq FROM agents WHERE name = ?1",
            [agent],
            |r| r.get(0),
        )
    }

    fn set_last_seq(&mut self, agent: &str, seq: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seq = ?2 WHERE name = ?1",
            params![agent, seq],
        )?;
        Ok(())
    }

    fn record_monitor_status(
        &mut self,
        agent: &str,
        monitor: &str,
        status: &str,
        summary: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.exec(
            "INSERT INTO monitor_status (agent, monitor, status, summary, at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent, monitor) DO UPDATE SET status = excluded.status, summary = excluded.summary, at = excluded.at",
            params![agent, monitor, status, summary, now],
        )?;
        Ok(())
    }

    fn monitor_status(
        &mut self,
        agent: &str,
        monitor: &str,
    ) -> StoreResult<Option<(String, String)>> {
        self.one(
            "SELECT status, summary FROM monitor_status WHERE agent = ?1 AND monitor = ?2",
            [agent, monitor],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn delete_monitor_status(&mut self, agent: &str) -> StoreResult<()> {
        self.exec("DELETE FROM monitor_status WHERE agent = ?1", [agent])?;
        Ok(())
    }

    fn monitor_statuses(&mut self, agent: &str) -> StoreResult<Vec<MonitorStatusRow>> {
        self.all(
            "SELECT monitor, status, summary, at FROM monitor_status WHERE agent = ?1 ORDER BY monitor",
            [agent],
            |r| {
                Ok(MonitorStatusRow {
                    monitor: r.get(0)?,
                    status: r.get(1)?,
                    summary: r.get(2)?,
                    at: r.get(3)?,
                })
            },
        )
    }

    fn insert_token_tags(&mut self, token: &str, tags: &[String]) -> StoreResult<()> {
        for tag in tags {
            self.exec(
                "INSERT INTO token_tags (token_id, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![token, tag],
            )?;
        }
        Ok(())
    }

    fn token_tags(&mut self, token: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT tag FROM token_tags WHERE token_id = ?1 ORDER BY tag",
            [token],
            |r| r.get(0),
        )
    }

    fn agent_tags(&mut self, agent: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT tag FROM agent_tags WHERE agent = ?1 ORDER BY tag",
            [agent],
            |r| r.get(0),
        )
    }

    fn add_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()> {
        for tag in tags {
            self.exec(
                "INSERT INTO agent_tags (agent, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![agent, tag],
            )?;
        }
        Ok(())
    }

    fn remove_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()> {
        for tag in tags {
            self.exec(
                "DELETE FROM agent_tags WHERE agent = ?1 AND tag = ?2",
                params![agent, tag],
            )?;
        }
        Ok(())
    }

    fn set_agent_facts(&mut self, agent: &str, facts: &Facts, now: i64) -> StoreResult<()> {
        let addresses = serde_json::to_string(&facts.addresses)?;
        let uptime = facts.uptime_secs.map(|u| u.min(i64::MAX as u64) as i64);
        self.exec(
            "INSERT INTO agent_facts (agent, kernel, addresses, uptime_secs, at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent) DO UPDATE SET kernel = excluded.kernel, addresses = excluded.addresses,
                 uptime_secs = excluded.uptime_secs, at = excluded.at",
            params![agent, facts.kernel, addresses, uptime, now],
        )?;
        Ok(())
    }

    fn select_agents(&mut self, filter: &AgentFilter) -> StoreResult<Vec<AgentInfo>> {
        // SQLite's GLOB has `*` and `?` as ours, and classes (`[…]`) we do
        // not: a `[` stands for itself as `[[]`. Its lower() folds ASCII
        // only, as our globs do.
        let globs = |g: &[String]| {
            let g: Vec<String> = g.iter().map(|p| p.replace('[', "[[]")).collect();
            serde_json::to_string(&g)
        };
        let (names, oses) = (globs(&filter.names)?, globs(&filter.oses)?);
        let tags = serde_json::to_string(&filter.tags)?;
        self.all(
            "SELECT a.name, a.last_seen, a.version, a.os, a.hostname, a.revoked_at,
                    f.kernel, f.addresses, f.uptime_secs, f.at,
                    (SELECT group_concat(t.tag, ',') FROM agent_tags t WHERE t.agent = a.name),
                    (SELECT MAX(CASE m.status WHEN 'ok' THEN 0 WHEN 'warn' THEN 2 WHEN 'crit' THEN 3 ELSE 1 END)
                       FROM monitor_status m WHERE m.agent = a.name),
                    (SELECT COUNT(*) FROM tickets k WHERE k.agent = a.name
                       AND k.status IN ('open', 'in_progress') AND k.source = 'alert'),
                    (SELECT COUNT(*) FROM tickets k WHERE k.agent = a.name
                       AND k.status IN ('open', 'in_progress') AND k.source <> 'alert')
             FROM agents a LEFT JOIN agent_facts f ON f.agent = a.name
             WHERE a.removed_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM json_each(?1) g WHERE NOT (a.name GLOB g.value))
               AND NOT EXISTS (SELECT 1 FROM json_each(?2) g
                               WHERE NOT (lower(COALESCE(a.os, '')) GLOB g.value))
               AND NOT EXISTS (SELECT 1 FROM json_each(?3) w WHERE NOT EXISTS
                               (SELECT 1 FROM agent_tags t WHERE t.agent = a.name AND t.tag = w.value))
             ORDER BY a.name",
            params![names, oses, tags],
            |r| {
                let listed = Listed {
                    kernel: r.get(6)?,
                    addresses: r.get(7)?,
                    uptime_secs: r.get(8)?,
                    reported_at: r.get(9)?,
                    tags: r.get(10)?,
                    health: r.get(11)?,
                    open_incidents: r.get(12)?,
                    open_tickets: r.get(13)?,
                };
                Ok(listed.into_agent(agent_row(r)?))
            },
        )
    }

    fn monitor_set(&mut self, name: &str) -> StoreResult<Option<MonitorSetRow>> {
        self.one(
            &format!("SELECT {MONITOR_SET_COLUMNS} FROM monitor_sets WHERE name = ?1"),
            [name],
            monitor_set_row,
        )
    }

    fn monitor_sets(&mut self) -> StoreResult<Vec<MonitorSetRow>> {
        self.all(
            &format!("SELECT {MONITOR_SET_COLUMNS} FROM monitor_sets ORDER BY name"),
            [],
            monitor_set_row,
        )
    }

    fn put_monitor_set(&mut self, row: &MonitorSetRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO monitor_sets (name, selector, toml, monitors, role, updated_by, updated_at, suspended)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO UPDATE SET selector = excluded.selector, toml = excluded.toml,
                 monitors = excluded.monitors, role = excluded.role,
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at,
                 suspended = excluded.suspended",
            params![
                row.name,
                row.selector,
                row.toml,
                row.monitors,
                row.role,
                row.updated_by,
                row.updated_at,
                row.suspended
            ],
        )?;
        Ok(())
    }

    fn suspend_monitor_sets(&mut self, author: &str, why: &str) -> StoreResult<Vec<String>> {
        self.all(
            "UPDATE monitor_sets SET suspended = ?2
             WHERE updated_by = ?1 AND suspended IS NULL RETURNING name",
            params![author, why],
            |r| r.get(0),
        )
    }

    fn delete_monitor_set(&mut self, name: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM monitor_sets WHERE name = ?1", [name])? > 0)
    }

    fn put_monitor_report(&mut self, row: &MonitorReportRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO monitor_reports (agent, digest, report, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent) DO UPDATE SET digest = excluded.digest,
                 report = excluded.report, at = excluded.at",
            params![row.agent, row.digest, row.report, row.at],
        )?;
        Ok(())
    }

    fn monitor_reports(&mut self) -> StoreResult<Vec<MonitorReportRow>> {
        self.all(
            "SELECT agent, digest, report, at FROM monitor_reports ORDER BY agent",
            [],
            |r| {
                Ok(MonitorReportRow {
                    agent: r.get(0)?,
                    digest: r.get(1)?,
                    report: r.get(2)?,
                    at: r.get(3)?,
                })
            },
        )
    }

    fn insert_operator(&mut self, name: &str, role: Role, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "INSERT INTO operators (name, role, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, role.as_str(), now],
        )?;
        Ok(n == 1)
    }

    fn operator(&mut self, name: &str) -> StoreResult<Option<OperatorInfo>> {
        self.one(
            "SELECT name, role, created_at, revoked_at FROM operators WHERE name = ?1",
            [name],
            operator_row,
        )
    }

    fn operators(&mut self) -> StoreResult<Vec<OperatorInfo>> {
        self.all(
            "SELECT name, role, created_at, revoked_at FROM operators ORDER BY name",
            [],
            operator_row,
        )
    }

    fn set_operator_role(&mut self, name: &str, role: Role) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE operators SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )?;
        Ok(n > 0)
    }

    fn insert_ticket(&mut self, t: &NewTicket, now: i64) -> StoreResult<u64> {
        let id: i64 = self
            .one(
                "INSERT INTO tickets (title, agent, check_name, monitor, status, priority, source, created_at, updated_at, requester)
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?7, ?8) RETURNING id",
                params![t.title, t.agent, t.check, t.monitor, t.priority.as_str(), t.source.as_str(), now, t.requester],
                |r| r.get(0),
            )?
            .ok_or_else(|| StoreError::Backend("INSERT … RETURNING returned nothing".into()))?;
        Ok(id as u64)
    }

    fn insert_entry(
        &mut self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let n = self.exec(
            "UPDATE tickets SET updated_at = ?2 WHERE id = ?1",
            params![id as i64, now],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.one(
            "INSERT INTO ticket_entries (ticket_id, at, kind, author, body, observed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            params![id as i64, now, kind, author, body, observed_at],
            |r| r.get(0),
        )
    }

    fn update_status(&mut self, id: u64, status: TicketStatus, now: i64) -> StoreResult<bool> {
        let resolved_at = (status == TicketStatus::Resolved).then_some(now);
        let n = self.exec(
            "UPDATE tickets SET status = ?2, resolved_at = COALESCE(?3, resolved_at) WHERE id = ?1",
            params![id as i64, status.as_str(), resolved_at],
        )?;
        Ok(n > 0)
    }

    fn update_assignee(&mut self, id: u64, operator: &str) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tickets SET assignee = ?2 WHERE id = ?1",
            params![id as i64, operator],
        )?;
        Ok(n > 0)
    }

    fn update_priority(&mut self, id: u64, priority: Priority) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tickets SET priority = ?2 WHERE id = ?1",
            params![id as i64, priority.as_str()],
        )?;
        Ok(n > 0)
    }

    fn ticket(&mut self, id: u64) -> StoreResult<Option<Ticket>> {
        self.one(
            &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"),
            [id as i64],
            ticket_row,
        )
    }

    fn tickets(&mut self, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        let (sql, values) = tickets_query(f);
        self.all(&sql, rusqlite::params_from_iter(values), ticket_row)
    }

    fn entries(&mut self, id: u64) -> StoreResult<Vec<TicketEntry>> {
        self.all(
            "SELECT e.at, e.kind, e.author, e.body, e.observed_at, t.source
             FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE e.ticket_id = ?1 ORDER BY e.id",
            [id as i64],
            |r| {
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
            },
        )
    }

    fn latest_alert_ticket(&mut self, agent: &str, monitor: &str) -> StoreResult<Option<Ticket>> {
        self.one(
            &format!(
                "SELECT {TICKET_COLUMNS} FROM tickets
                 WHERE agent = ?1 AND monitor = ?2 AND source = 'alert'
                 ORDER BY id DESC LIMIT 1"
            ),
            params![agent, monitor],
            ticket_row,
        )
    }

    fn count_tickets(&mut self, agent: &str) -> StoreResult<u64> {
        let n: i64 = self
            .one(
                "SELECT COUNT(*) FROM tickets WHERE agent = ?1",
                [agent],
                |r| r.get(0),
            )?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn timelines_since(&mut self, since: i64) -> StoreResult<Vec<TimelineRow>> {
        self.all(
            r#"SELECT e.ticket_id, e.at, e.kind, e.author,
                      CASE WHEN e.kind IN ('verdict', 'status')
                             OR (e.kind = 'result' AND instr(e.body, '"changed":') > 0)
                           THEN e.body END
               FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
               WHERE t.created_at >= ?1 ORDER BY e.ticket_id, e.id"#,
            [since],
            |r| {
                Ok(TimelineRow {
                    ticket: r.get::<_, i64>(0)?.max(0) as u64,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    author: r.get(3)?,
                    body: r.get(4)?,
                })
            },
        )
    }

    fn count_by_status(&mut self) -> StoreResult<Vec<(String, u64)>> {
        self.all(
            "SELECT status, COUNT(*) FROM tickets GROUP BY status ORDER BY status",
            [],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
        )
    }

    fn lock_audit(&mut self) -> StoreResult<()> {
        // BEGIN IMMEDIATE: this transaction is the only writer already.
        Ok(())
    }

    fn audit_head(&mut self) -> StoreResult<Option<(i64, String)>> {
        self.one(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn insert_audit(&mut self, row: &AuditRow, prev_hash: &str, hash: &str) -> StoreResult<()> {
        self.exec(
            "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                row.id,
                row.at,
                row.who,
                row.role,
                row.agent,
                row.action,
                row.args,
                row.outcome,
                prev_hash,
                hash
            ],
        )?;
        Ok(())
    }

    fn audit_records(
        &mut self,
        agent: Option<&str>,
        limit: Option<u32>,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut out = self.all(
            "SELECT id, at, who, role, agent, action, args, outcome, hash FROM audit
             WHERE (?1 IS NULL OR agent = ?1) ORDER BY id DESC LIMIT ?2",
            params![agent, limit.map_or(-1, i64::from)],
            |r| {
                let row = audit_row(r)?;
                Ok(AuditRecord {
                    id: row.id.max(0) as u64,
                    at: rfc3339(row.at),
                    who: row.who,
                    role: row.role,
                    agent: row.agent,
                    action: row.action,
                    args: row.args,
                    outcome: row.outcome,
                    hash: r.get(8)?,
                })
            },
        )?;
        out.reverse();
        Ok(out)
    }

    fn audit_chain(&mut self) -> StoreResult<Vec<StoredAudit>> {
        self.all(
            "SELECT id, at, who, role, agent, action, args, outcome, prev_hash, hash FROM audit ORDER BY id",
            [],
            |r| {
                Ok(StoredAudit {
                    row: audit_row(r)?,
                    prev_hash: r.get(8)?,
                    hash: r.get(9)?,
                })
            },
        )
    }

    fn audit_from(&mut self, from: i64) -> StoreResult<Vec<StoredAudit>> {
        self.all(
            "SELECT id, at, who, role, agent, action, args, outcome, prev_hash, hash FROM audit
             WHERE id >= ?1 ORDER BY id",
            [from],
            |r| {
                Ok(StoredAudit {
                    row: audit_row(r)?,
                    prev_hash: r.get(8)?,
                    hash: r.get(9)?,
                })
            },
        )
    }

    fn enqueue_webhook(&mut self, event_id: &str, body: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO webhook_outbox (event_id, body, next_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (event_id) DO NOTHING",
            params![event_id, body, now],
        )?;
        Ok(())
    }

    fn claim_webhooks(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let mut out = self.all(
            "UPDATE webhook_outbox SET claimed_until = ?2
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE next_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
                          ORDER BY id LIMIT ?3)
             RETURNING id, event_id, body, attempts",
            params![now, lease_until, limit],
            |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    body: r.get(2)?,
                    attempts: r.get(3)?,
                })
            },
        )?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn delete_webhook(&mut self, id: i64) -> StoreResult<()> {
        self.exec("DELETE FROM webhook_outbox WHERE id = ?1", [id])?;
        Ok(())
    }

    fn retry_webhook(&mut self, id: i64, next_at: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?2, claimed_until = NULL WHERE id = ?1",
            params![id, next_at],
        )?;
        Ok(())
    }

    fn webhook_backlog(&mut self) -> StoreResult<u64> {
        let n: i64 = self
            .one("SELECT COUNT(*) FROM webhook_outbox", [], |r| r.get(0))?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn insert_queued(&mut self, q: &QueueRow) -> StoreResult<i64> {
        self.exec(
            "INSERT INTO queued_actions (agent, action, ticket, operator, role, queued_at, expires_at, state, ended_at, outcome, enrollment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                q.agent, q.action, q.ticket, q.operator, q.role, q.queued_at, q.expires_at,
                q.state, q.ended_at, q.outcome, q.enrollment
            ],
        )?;
        Ok(self.c.last_insert_rowid())
    }

    fn queued(&mut self, id: i64) -> StoreResult<Option<QueueRow>> {
        self.one(
            &format!("SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE id = ?1"),
            [id],
            queue_row,
        )
    }

    fn queued_list(&mut self, all: bool, limit: u32) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE state = 'pending' ORDER BY id"
            ),
            [],
            queue_row,
        )?;
        if all {
            out.extend(self.all(
                &format!(
                    "SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE state <> 'pending'
                     ORDER BY id DESC LIMIT ?1"
                ),
                [limit],
                queue_row,
            )?);
        }
        Ok(out)
    }

    fn count_pending(&mut self, agent: &str) -> StoreResult<u64> {
        let n: i64 = self
            .one(
                "SELECT COUNT(*) FROM queued_actions WHERE agent = ?1 AND state = 'pending'",
                [agent],
                |r| r.get(0),
            )?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn pending_agents(&mut self) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT DISTINCT agent FROM queued_actions WHERE state = 'pending' ORDER BY agent",
            [],
            |r| r.get(0),
        )
    }

    fn claim_queued(&mut self, agent: &str, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "UPDATE queued_actions SET state = 'delivered', ended_at = ?2
                 WHERE id IN (SELECT id FROM queued_actions
                              WHERE agent = ?1 AND state = 'pending' AND expires_at > ?2
                                AND enrollment = (SELECT enrollment FROM agents
                                                  WHERE name = ?1 AND revoked_at IS NULL
                                                    AND removed_at IS NULL)
                              ORDER BY id LIMIT ?3)
                   AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            params![agent, now, limit],
            queue_row,
        )?;
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    fn cancel_queued_for(
        &mut self,
        agent: &str,
        outcome: &str,
        now: i64,
    ) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "UPDATE queued_actions SET state = 'cancelled', ended_at = ?2, outcome = ?3
                 WHERE agent = ?1 AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            params![agent, now, outcome],
            queue_row,
        )?;
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    fn end_queued(&mut self, id: i64, state: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE queued_actions SET state = ?2, ended_at = ?3 WHERE id = ?1 AND state = 'pending'",
            params![id, state, now],
        )?;
        Ok(n == 1)
    }

    fn set_queued_outcome(&mut self, id: i64, outcome: &str) -> StoreResult<()> {
        self.exec(
            "UPDATE queued_actions SET outcome = ?2 WHERE id = ?1",
            params![id, outcome],
        )?;
        Ok(())
    }

    fn expire_queued(&mut self, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "UPDATE queued_actions SET state = 'expired', ended_at = ?1
                 WHERE id IN (SELECT id FROM queued_actions
                              WHERE state = 'pending' AND expires_at <= ?1
                              ORDER BY id LIMIT ?2)
                   AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            params![now, limit],
            queue_row,
        )?;
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    fn enqueue_helpdesk(&mut self, ticket_id: u64, entry_id: i64, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO helpdesk_links (ticket_id, latest_entry, next_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (ticket_id) DO UPDATE
             SET latest_entry = MAX(helpdesk_links.latest_entry, excluded.latest_entry)",
            params![ticket_id as i64, entry_id, now],
        )?;
        Ok(())
    }

    fn claim_helpdesk(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<HelpdeskLink>> {
        let mut out = self.all(
            &claim_helpdesk_sql(),
            params![now, lease_until, limit],
            helpdesk_row,
        )?;
        out.sort_by_key(|l| l.ticket_id);
        Ok(out)
    }

    fn save_helpdesk(
        &mut self,
        l: &HelpdeskLink,
        lease_until: i64,
        renew_until: i64,
    ) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE helpdesk_links SET remote_id = ?2, delivered_entry = ?3, sending_entry = ?4,
                 remote_status = ?5, attempts = ?6, claimed_until = ?8
             WHERE ticket_id = ?1 AND claimed_until = ?7",
            params![
                l.ticket_id as i64,
                l.remote_id,
                l.delivered_entry,
                l.sending_entry,
                l.remote_status,
                l.attempts,
                lease_until,
                renew_until
            ],
        )?;
        Ok(n == 1)
    }

    fn release_helpdesk(
        &mut self,
        ticket_id: u64,
        lease_until: i64,
        next_at: i64,
        attempts: i64,
    ) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE helpdesk_links SET claimed_until = NULL, next_at = ?3, attempts = ?4
             WHERE ticket_id = ?1 AND claimed_until = ?2",
            params![ticket_id as i64, lease_until, next_at, attempts],
        )?;
        Ok(n == 1)
    }

    fn helpdesk_link(&mut self, ticket_id: u64) -> StoreResult<Option<HelpdeskLink>> {
        self.one(
            &format!("SELECT {HELPDESK_COLUMNS} FROM helpdesk_links WHERE ticket_id = ?1"),
            [ticket_id as i64],
            helpdesk_row,
        )
    }

    fn helpdesk_watched(
        &mut self,
        now: i64,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<HelpdeskLink>> {
        self.all(
            &format!(
                "SELECT {HELPDESK_COLUMNS} FROM helpdesk_links
                 WHERE ticket_id > ?2 AND {HELPDESK_WATCHED}
                 ORDER BY ticket_id LIMIT ?3"
            ),
            params![now, after as i64, limit],
            helpdesk_row,
        )
    }

    fn mark_helpdesk_resolved(&mut self, ticket_id: u64, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            &format!(
                "UPDATE helpdesk_links SET remote_status = 'resolved'
                 WHERE ticket_id = ?2 AND {HELPDESK_WATCHED}"
            ),
            params![now, ticket_id as i64],
        )?;
        Ok(n == 1)
    }

    fn entries_after(
        &mut self,
        ticket_id: u64,
        after: i64,
    ) -> StoreResult<Vec<(i64, TicketEntry)>> {
        self.all(
            "SELECT e.at, e.kind, e.author, e.body, e.observed_at, t.source, e.id
             FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE e.ticket_id = ?1 AND e.id > ?2 ORDER BY e.id",
            params![ticket_id as i64, after],
            |r| {
                let kind: String = r.get(1)?;
                let body: String = r.get(3)?;
                let source: String = r.get(5)?;
                Ok((
                    r.get(6)?,
                    TicketEntry {
                        at: rfc3339(r.get(0)?),
                        observed_at: r.get::<_, Option<i64>>(4)?.map(rfc3339),
                        body: entry_body(&kind, source == "alert", &body),
                        kind,
                        author: r.get(2)?,
                    },
                ))
            },
        )
    }
}

const HELPDESK_COLUMNS: &str =
    "ticket_id, remote_id, latest_entry, delivered_entry, sending_entry, remote_status, attempts";

/// What [`Tx::helpdesk_watched`] and [`Tx::mark_helpdesk_resolved`] ask of
/// a link (`?1` is now).
const HELPDESK_WATCHED: &str = "remote_id IS NOT NULL AND delivered_entry >= latest_entry
     AND (claimed_until IS NULL OR claimed_until <= ?1)
     AND (remote_status IS NULL OR remote_status <> 'resolved')
     AND ticket_id IN (SELECT id FROM tickets WHERE status IN ('open', 'in_progress'))";

fn helpdesk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HelpdeskLink> {
    Ok(HelpdeskLink {
        ticket_id: r.get::<_, i64>(0)? as u64,
        remote_id: r.get(1)?,
        latest_entry: r.get(2)?,
        delivered_entry: r.get(3)?,
        sending_entry: r.get(4)?,
        remote_status: r.get(5)?,
        attempts: r.get(6)?,
    })
}

/// The ticket list's query with only the filters that are set, and their
/// values, so that SQLite can use an index for them: a `(?2 IS NULL OR
/// agent = ?2)` form is planned once for any value (query planner
/// stability, `connect`) and walks every ticket — one agent's tickets
/// (`firstline-help tickets`, a machine page) cost a scan of the table.
pub(super) fn tickets_query(f: &TicketFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |clause: &str, value: Value| {
        values.push(value);
        clauses.push(clause.replace("{p}", &format!("?{}", values.len())));
    };
    let text = |s: &str| Value::Text(s.to_string());
    if let Some(status) = f.status {
        add("status = {p}", text(status.as_str()));
    }
    if let Some(agent) = &f.agent {
        add("agent = {p}", text(agent));
    }
    if let Some(assignee) = &f.assignee {
        add("assignee = {p}", text(assignee));
    }
    if let Some(priority) = f.priority {
        add("priority = {p}", text(priority.as_str()));
    }
    if let Some(after) = f.created_after {
        add("created_at >= {p}", Value::Integer(after));
    }
    if let Some(before) = f.created_before {
        add("created_at <= {p}", Value::Integer(before));
    }
    if let Some(search) = &f.search {
        add(
            "(instr(lower(title), lower({p})) > 0
              OR EXISTS (SELECT 1 FROM ticket_entries e
                         WHERE e.ticket_id = t.id
                           AND (e.kind = 'comment' OR (e.kind = 'opened' AND t.source <> 'alert'))
                           AND instr(lower(e.body), lower({p})) > 0))",
            text(search),
        );
    }
    let filter = match clauses.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", clauses.join(" AND ")),
    };
    (
        format!("SELECT {TICKET_COLUMNS} FROM tickets t {filter} ORDER BY id"),
        values,
    )
}

/// The help desk mirror's claim: links with something left to deliver
/// (`latest_entry > delivered_entry`, the partial index `helpdesk_pending`),
/// due and not leased to another relay.
pub(super) fn claim_helpdesk_sql() -> String {
    format!(
        "UPDATE helpdesk_links SET claimed_until = ?2
         WHERE ticket_id IN (SELECT ticket_id FROM helpdesk_links
             WHERE latest_entry > delivered_entry AND next_at <= ?1
               AND (claimed_until IS NULL OR claimed_until <= ?1)
             ORDER BY ticket_id LIMIT ?3)
         RETURNING {HELPDESK_COLUMNS}"
    )
}
