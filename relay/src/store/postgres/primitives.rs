//! The storage primitives ([`Tx`]) in PostgreSQL's SQL.
//!
//! In a write job, the reads a rule follows with a write of the same row
//! (`lock_last_seq`, `latest_alert_ticket`, `ticket`, `agent_state`,
//! `agent_record`, `operator`) lock that row `FOR UPDATE` until the
//! commit: under READ COMMITTED a second writer then waits and reads what
//! the first committed, as it would behind SQLite's one writer. In a read
//! job (`READ ONLY`) they lock nothing.

use super::error;
use crate::clock::rfc3339;
use crate::store::error::{StoreError, StoreResult};
use crate::store::tx::*;
use crate::ticket::{entry_body, NewTicket, Priority, Ticket, TicketFilter, TicketStatus};
use firstline_proto::message::{AgentRecord, OperatorInfo};
use firstline_proto::{AgentInfo, AuditRecord, Facts, Role, Status, TicketEntry};
use postgres::types::{FromSql, ToSql};
use postgres::{Row, Statement, Transaction};
use std::collections::HashMap;

/// Key of the transaction-scoped advisory lock under which revocations
/// are numbered: `seq` order is then commit order, and a relay polling
/// `revocations_since(seen)` cannot skip a revocation that committed after
/// a later-numbered one.
pub const REVOCATION_LOCK: i64 = 0x6669_7273_746c_7276; // "firstlrv"

/// One transaction, with its connection's prepared statements.
pub(super) struct PgTx<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    statements: &'t mut HashMap<String, Statement>,
    /// A write job: reads before writes lock their rows.
    write: bool,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'t, 'c> PgTx<'t, 'c> {
    pub(super) fn new(
        tx: &'t mut Transaction<'c>,
        statements: &'t mut HashMap<String, Statement>,
        write: bool,
    ) -> Self {
        PgTx {
            tx,
            statements,
            write,
        }
    }

    /// ` FOR UPDATE` in a write job (see the module's doc), else nothing.
    fn lock(&self) -> &'static str {
        if self.write {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    fn statement(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(error)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn all<T>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        f: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let st = self.statement(sql)?;
        self.tx
            .query(&st, params)
            .map_err(error)?
            .iter()
            .map(f)
            .collect()
    }

    fn one<T>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let st = self.statement(sql)?;
        self.tx
            .query_opt(&st, params)
            .map_err(error)?
            .as_ref()
            .map(f)
            .transpose()
    }

    fn exec(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let st = self.statement(sql)?;
        self.tx.execute(&st, params).map_err(error)
    }
}

/// Column `i` of `r`.
fn get<'r, T: FromSql<'r>>(r: &'r Row, i: usize) -> StoreResult<T> {
    r.try_get(i).map_err(error)
}

/// A text column parsed into its enum.
fn parse<T: std::str::FromStr>(r: &Row, i: usize) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    let s: String = get(r, i)?;
    s.parse()
        .map_err(|e: T::Err| StoreError::Backend(format!("column {i}: {e}")))
}

const TOKEN_COLUMNS: &str =
    "id, secret_sha256, uses, uses_left, created_at, expires_at, revoked_at";

fn token_row(r: &Row) -> StoreResult<TokenRow> {
    Ok(TokenRow {
        id: get(r, 0)?,
        secret_sha256: get(r, 1)?,
        uses: get(r, 2)?,
        uses_left: get(r, 3)?,
        created_at: get(r, 4)?,
        expires_at: get(r, 5)?,
        revoked_at: get(r, 6)?,
    })
}

const AGENT_COLUMNS: &str = "name, last_seen, version, os, hostname, revoked_at";

fn agent_row(r: &Row) -> StoreResult<AgentInfo> {
    Ok(AgentInfo {
        name: get(r, 0)?,
        online: false,
        last_seen: get::<Option<i64>>(r, 1)?.map(rfc3339),
        version: get(r, 2)?,
        os: get(r, 3)?,
        hostname: get(r, 4)?,
        revoked: get::<Option<i64>>(r, 5)?.is_some(),
        tags: Vec::new(),
        facts: Facts::default(),
        health: Status::Unknown,
        open_incidents: 0,
        open_tickets: 0,
    })
}

/// A glob ([`AgentFilter`]) as a `LIKE` pattern: `*` → `%`, `?` → `_`,
/// and `%`, `_`, `\` of the glob taken as themselves.
fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

const AGENT_RECORD_COLUMNS: &str = "a.name, a.enrolled_at, a.last_seen, a.revoked_at,
    (SELECT MAX(not_after) FROM certs c WHERE c.kind = 'agent' AND c.name = a.name AND c.revoked_at IS NULL),
    a.version, a.os, a.hostname";

fn agent_record_row(r: &Row) -> StoreResult<AgentRecord> {
    Ok(AgentRecord {
        name: get(r, 0)?,
        enrolled_at: rfc3339(get(r, 1)?),
        last_seen: get::<Option<i64>>(r, 2)?.map(rfc3339),
        online: false,
        revoked_at: get::<Option<i64>>(r, 3)?.map(rfc3339),
        cert_expires: get::<Option<i64>>(r, 4)?.map(rfc3339),
        version: get(r, 5)?,
        os: get(r, 6)?,
        hostname: get(r, 7)?,
    })
}

const OPERATOR_COLUMNS: &str = "name, role, created_at, revoked_at";

fn operator_row(r: &Row) -> StoreResult<OperatorInfo> {
    Ok(OperatorInfo {
        name: get(r, 0)?,
        role: parse(r, 1)?,
        created_at: rfc3339(get(r, 2)?),
        revoked_at: get::<Option<i64>>(r, 3)?.map(rfc3339),
        online: false,
    })
}

const TICKET_COLUMNS: &str = "id, title, agent, check_name, monitor, status, priority, source, assignee, created_at, updated_at, resolved_at, requester";

fn ticket_row(r: &Row) -> StoreResult<Ticket> {
    Ok(Ticket {
        id: get::<i64>(r, 0)?.max(0) as u64,
        title: get(r, 1)?,
        agent: get(r, 2)?,
        check: get(r, 3)?,
        monitor: get(r, 4)?,
        status: parse(r, 5)?,
        priority: parse(r, 6)?,
        source: parse(r, 7)?,
        assignee: get(r, 8)?,
        created_at: get(r, 9)?,
        updated_at: get(r, 10)?,
        resolved_at: get(r, 11)?,
        requester: get(r, 12)?,
    })
}

fn audit_row(r: &Row) -> StoreResult<AuditRow> {
    Ok(AuditRow {
        id: get(r, 0)?,
        at: get(r, 1)?,
        who: get(r, 2)?,
        role: get(r, 3)?,
        agent: get(r, 4)?,
        action: get(r, 5)?,
        args: get(r, 6)?,
        outcome: get(r, 7)?,
    })
}

fn delivery_row(r: &Row) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: get(r, 0)?,
        event_id: get(r, 1)?,
        body: get(r, 2)?,
        attempts: get(r, 3)?,
    })
}

const QUEUE_COLUMNS: &str =
    "id, agent, action, ticket, operator, role, queued_at, expires_at, state, ended_at, outcome, enrollment";

fn queue_row(r: &Row) -> StoreResult<QueueRow> {
    Ok(QueueRow {
        id: get(r, 0)?,
        agent: get(r, 1)?,
        action: get(r, 2)?,
        ticket: get(r, 3)?,
        operator: get(r, 4)?,
        role: get(r, 5)?,
        queued_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        state: get(r, 8)?,
        ended_at: get(r, 9)?,
        outcome: get(r, 10)?,
        enrollment: get(r, 11)?,
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

/// A ticket id as stored (`BIGINT`).
fn ticket_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

const MONITOR_SET_COLUMNS: &str =
    "name, selector, toml, monitors, role, updated_by, updated_at, suspended";

fn monitor_set_row(r: &Row) -> StoreResult<MonitorSetRow> {
    Ok(MonitorSetRow {
        name: get(r, 0)?,
        selector: get(r, 1)?,
        toml: get(r, 2)?,
        monitors: get(r, 3)?,
        role: get(r, 4)?,
        updated_by: get(r, 5)?,
        updated_at: get(r, 6)?,
        suspended: get(r, 7)?,
    })
}

impl Tx for PgTx<'_, '_> {
    fn insert_token(&mut self, t: &TokenRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO tokens (id, secret_sha256, uses_left, expires_at, created_at, uses, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&t.id, &t.secret_sha256, &t.uses_left, &t.expires_at, &t.created_at, &t.uses, &t.revoked_at],
        )?;
        Ok(())
    }

    fn token(&mut self, id: &str) -> StoreResult<Option<TokenRow>> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
            &[&id],
            token_row,
        )
    }

    fn tokens(&mut self) -> StoreResult<Vec<TokenRow>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
            &[],
            token_row,
        )
    }

    fn revoke_token(&mut self, id: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now],
        )?;
        Ok(n > 0)
    }

    fn spend_token(&mut self, id: &str, now: i64) -> StoreResult<bool> {
        // One statement: a second spender waits for the first's commit,
        // then PostgreSQL checks the condition again on the row it left.
        let n = self.exec(
            "UPDATE tokens SET uses_left = uses_left - 1
             WHERE id = $1 AND uses_left > 0 AND revoked_at IS NULL AND expires_at > $2",
            &[&id, &now],
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
            "INSERT INTO certs (serial, kind, name, not_after, issued_at) VALUES ($1, $2, $3, $4, $5)",
            &[&serial, &kind.as_str(), &name, &not_after, &now],
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
             FROM certs c WHERE c.serial = $1",
            &[&serial],
            |r| {
                let identity: Option<i64> = get(r, 3)?;
                // 0: the identity exists and is live; NULL: no such identity.
                Ok(CertRow {
                    kind: get(r, 0)?,
                    name: get(r, 1)?,
                    revoked_at: get(r, 2)?,
                    identity: identity.map(|at| (at != 0).then_some(at)),
                })
            },
        )
    }

    fn revoke_certs(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE certs SET revoked_at = $3 WHERE kind = $1 AND name = $2 AND revoked_at IS NULL",
            &[&kind.as_str(), &name, &now],
        )?;
        Ok(())
    }

    fn revoke_identity(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<bool> {
        let table = identity_table(kind)?;
        let n = self.exec(
            &format!("UPDATE {table} SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL"),
            &[&name, &now],
        )?;
        Ok(n > 0)
    }

    fn identity_exists(&mut self, kind: PeerKind, name: &str) -> StoreResult<bool> {
        let table = identity_table(kind)?;
        Ok(self
            .one(
                &format!("SELECT 1 FROM {table} WHERE name = $1"),
                &[&name],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn insert_revocation(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()> {
        self.exec("SELECT pg_advisory_xact_lock($1)", &[&REVOCATION_LOCK])?;
        self.exec(
            "INSERT INTO revocations (kind, name, at) VALUES ($1, $2, $3)",
            &[&kind.as_str(), &name, &now],
        )?;
        Ok(())
    }

    fn revocations_since(&mut self, seq: i64) -> StoreResult<Vec<Revocation>> {
        self.all(
            "SELECT seq, kind, name FROM revocations WHERE seq > $1 ORDER BY seq",
            &[&seq],
            |r| {
                Ok(Revocation {
                    seq: get(r, 0)?,
                    kind: get(r, 1)?,
                    name: get(r, 2)?,
                })
            },
        )
    }

    fn agent_state(&mut self, name: &str) -> StoreResult<Option<AgentState>> {
        let sql = format!(
            "SELECT revoked_at, removed_at FROM agents WHERE name = $1{}",
            self.lock()
        );
        self.one(&sql, &[&name], |r| {
            Ok(AgentState {
                revoked_at: get(r, 0)?,
                removed_at: get(r, 1)?,
            })
        })
    }

    fn agent_state_any_case(&mut self, name: &str) -> StoreResult<Option<(String, AgentState)>> {
        let sql = format!(
            "SELECT name, revoked_at, removed_at FROM agents WHERE lower(name) = lower($1){}",
            self.lock()
        );
        self.one(&sql, &[&name], |r| {
            Ok((
                get(r, 0)?,
                AgentState {
                    revoked_at: get(r, 1)?,
                    removed_at: get(r, 2)?,
                },
            ))
        })
    }

    fn insert_agent(&mut self, name: &str, enrollment: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "INSERT INTO agents (name, enrolled_at, enrollment) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&name, &now, &enrollment],
        )?;
        Ok(n == 1)
    }

    fn agent_enrollment(&mut self, name: &str) -> StoreResult<Option<String>> {
        let sql = format!(
            "SELECT enrollment FROM agents
             WHERE name = $1 AND revoked_at IS NULL AND removed_at IS NULL{}",
            self.lock()
        );
        Ok(self
            .one(&sql, &[&name], |r| get::<Option<String>>(r, 0))?
            .flatten())
    }

    fn agent_seen(&mut self, name: &str, p: &Presence, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seen = $2, version = $3, os = $4, hostname = $5 WHERE name = $1",
            &[&name, &now, &p.version, &p.os, &p.hostname],
        )?;
        Ok(())
    }

    fn agent_left(&mut self, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seen = $2 WHERE name = $1",
            &[&name, &now],
        )?;
        Ok(())
    }

    fn agent(&mut self, name: &str) -> StoreResult<Option<AgentInfo>> {
        self.one(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = $1 AND removed_at IS NULL"),
            &[&name],
            agent_row,
        )
    }

    fn agents(&mut self) -> StoreResult<Vec<AgentInfo>> {
        self.all(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE removed_at IS NULL ORDER BY name"),
            &[],
            agent_row,
        )
    }

    fn agent_record(&mut self, name: &str) -> StoreResult<Option<AgentRecord>> {
        let lock = if self.write { " FOR UPDATE OF a" } else { "" };
        self.one(
            &format!(
                "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE name = $1 AND removed_at IS NULL{lock}"
            ),
            &[&name],
            agent_record_row,
        )
    }

    fn agent_records(&mut self) -> StoreResult<Vec<AgentRecord>> {
        self.all(
            &format!(
                "SELECT {AGENT_RECORD_COLUMNS} FROM agents a WHERE removed_at IS NULL ORDER BY name"
            ),
            &[],
            agent_record_row,
        )
    }

    fn agent_names(&mut self, limit: u32) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT name FROM agents WHERE removed_at IS NULL ORDER BY name LIMIT $1",
            &[&i64::from(limit)],
            |r| get(r, 0),
        )
    }

    fn agent_known(&mut self, name: &str) -> StoreResult<bool> {
        Ok(self
            .one(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE name = $1)
                     OR EXISTS (SELECT 1 FROM tickets WHERE agent = $1)",
                &[&name],
                |r| get(r, 0),
            )?
            .unwrap_or(false))
    }

    fn delete_agent(&mut self, name: &str) -> StoreResult<()> {
        self.exec("DELETE FROM agent_tags WHERE agent = $1", &[&name])?;
        self.exec("DELETE FROM agent_facts WHERE agent = $1", &[&name])?;
        self.exec("DELETE FROM agents WHERE name = $1", &[&name])?;
        Ok(())
    }

    fn mark_agent_removed(&mut self, name: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET removed_at = $2 WHERE name = $1",
            &[&name, &now],
        )?;
        Ok(())
    }

    fn lock_last_seq(&mut self, agent: &str) -> StoreResult<Option<i64>> {
        // Held to the commit: the same events ingested by two relays at
        // once are applied by the first; the second waits, then reads the
        // `last_seq` the first left.
        self.one(
            "SELECT last_seq FROM agents WHERE name = $1 FOR UPDATE",
            &[&agent],
            |r| get(r, 0),
        )
    }

    fn set_last_seq(&mut self, agent: &str, seq: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE agents SET last_seq = $2 WHERE name = $1",
            &[&agent, &seq],
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
            "INSERT INTO monitor_status (agent, monitor, status, summary, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (agent, monitor) DO UPDATE
             SET status = EXCLUDED.status, summary = EXCLUDED.summary, at = EXCLUDED.at",
            &[&agent, &monitor, &status, &summary, &now],
        )?;
        Ok(())
    }

    fn monitor_status(
        &mut self,
        agent: &str,
        monitor: &str,
    ) -> StoreResult<Option<(String, String)>> {
        self.one(
            "SELECT status, summary FROM monitor_status WHERE agent = $1 AND monitor = $2",
            &[&agent, &monitor],
            |r| Ok((get(r, 0)?, get(r, 1)?)),
        )
    }

    fn delete_monitor_status(&mut self, agent: &str) -> StoreResult<()> {
        self.exec("DELETE FROM monitor_status WHERE agent = $1", &[&agent])?;
        Ok(())
    }

    fn monitor_statuses(&mut self, agent: &str) -> StoreResult<Vec<MonitorStatusRow>> {
        self.all(
            "SELECT monitor, status, summary, at FROM monitor_status WHERE agent = $1 ORDER BY monitor",
            &[&agent],
            |r| {
                Ok(MonitorStatusRow {
                    monitor: get(r, 0)?,
                    status: get(r, 1)?,
                    summary: get(r, 2)?,
                    at: get(r, 3)?,
                })
            },
        )
    }

    fn insert_token_tags(&mut self, token: &str, tags: &[String]) -> StoreResult<()> {
        self.exec(
            "INSERT INTO token_tags (token_id, tag) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING",
            &[&token, &tags],
        )?;
        Ok(())
    }

    fn token_tags(&mut self, token: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT tag FROM token_tags WHERE token_id = $1 ORDER BY tag",
            &[&token],
            |r| get(r, 0),
        )
    }

    fn agent_tags(&mut self, agent: &str) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT tag FROM agent_tags WHERE agent = $1 ORDER BY tag",
            &[&agent],
            |r| get(r, 0),
        )
    }

    fn add_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()> {
        self.exec(
            "INSERT INTO agent_tags (agent, tag) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING",
            &[&agent, &tags],
        )?;
        Ok(())
    }

    fn remove_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()> {
        self.exec(
            "DELETE FROM agent_tags WHERE agent = $1 AND tag = ANY($2::text[])",
            &[&agent, &tags],
        )?;
        Ok(())
    }

    fn set_agent_facts(&mut self, agent: &str, facts: &Facts, now: i64) -> StoreResult<()> {
        let addresses = serde_json::to_string(&facts.addresses)?;
        let uptime = facts
            .uptime_secs
            .map(|u| i64::try_from(u).unwrap_or(i64::MAX));
        self.exec(
            "INSERT INTO agent_facts (agent, kernel, addresses, uptime_secs, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (agent) DO UPDATE SET kernel = excluded.kernel, addresses = excluded.addresses,
                 uptime_secs = excluded.uptime_secs, at = excluded.at",
            &[&agent, &facts.kernel, &addresses, &uptime, &now],
        )?;
        Ok(())
    }

    fn select_agents(&mut self, filter: &AgentFilter) -> StoreResult<Vec<AgentInfo>> {
        // LIKE with the globs' wildcards; the OS folded to ASCII lowercase
        // by translate() — not lower(), whose folding of other letters
        // depends on the locale and would differ from the globs'.
        let names: Vec<String> = filter.names.iter().map(|g| like_pattern(g)).collect();
        let oses: Vec<String> = filter.oses.iter().map(|g| like_pattern(g)).collect();
        self.all(
            "SELECT a.name, a.last_seen, a.version, a.os, a.hostname, a.revoked_at,
                    f.kernel, f.addresses, f.uptime_secs, f.at,
                    (SELECT string_agg(t.tag, ',') FROM agent_tags t WHERE t.agent = a.name),
                    (SELECT MAX(CASE m.status WHEN 'ok' THEN 0 WHEN 'warn' THEN 2 WHEN 'crit' THEN 3 ELSE 1 END)::BIGINT
                       FROM monitor_status m WHERE m.agent = a.name),
                    (SELECT COUNT(*) FROM tickets k WHERE k.agent = a.name
                       AND k.status IN ('open', 'in_progress') AND k.source = 'alert'),
                    (SELECT COUNT(*) FROM tickets k WHERE k.agent = a.name
                       AND k.status IN ('open', 'in_progress') AND k.source <> 'alert')
             FROM agents a LEFT JOIN agent_facts f ON f.agent = a.name
             WHERE a.removed_at IS NULL
               AND a.name LIKE ALL ($1::text[])
               AND translate(COALESCE(a.os, ''), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
                   LIKE ALL ($2::text[])
               AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) w(tag) WHERE NOT EXISTS
                               (SELECT 1 FROM agent_tags t WHERE t.agent = a.name AND t.tag = w.tag))
             ORDER BY a.name",
            &[&names, &oses, &filter.tags],
            |r| {
                let listed = Listed {
                    kernel: get(r, 6)?,
                    addresses: get(r, 7)?,
                    uptime_secs: get(r, 8)?,
                    reported_at: get(r, 9)?,
                    tags: get(r, 10)?,
                    health: get(r, 11)?,
                    open_incidents: get(r, 12)?,
                    open_tickets: get(r, 13)?,
                };
                Ok(listed.into_agent(agent_row(r)?))
            },
        )
    }

    fn monitor_set(&mut self, name: &str) -> StoreResult<Option<MonitorSetRow>> {
        let sql = format!(
            "SELECT {MONITOR_SET_COLUMNS} FROM monitor_sets WHERE name = $1{}",
            self.lock()
        );
        self.one(&sql, &[&name], monitor_set_row)
    }

    fn monitor_sets(&mut self) -> StoreResult<Vec<MonitorSetRow>> {
        self.all(
            &format!("SELECT {MONITOR_SET_COLUMNS} FROM monitor_sets ORDER BY name"),
            &[],
            monitor_set_row,
        )
    }

    fn put_monitor_set(&mut self, row: &MonitorSetRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO monitor_sets (name, selector, toml, monitors, role, updated_by, updated_at, suspended)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET selector = excluded.selector, toml = excluded.toml,
                 monitors = excluded.monitors, role = excluded.role,
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at,
                 suspended = excluded.suspended",
            &[
                &row.name,
                &row.selector,
                &row.toml,
                &row.monitors,
                &row.role,
                &row.updated_by,
                &row.updated_at,
                &row.suspended,
            ],
        )?;
        Ok(())
    }

    fn suspend_monitor_sets(&mut self, author: &str, why: &str) -> StoreResult<Vec<String>> {
        self.all(
            "UPDATE monitor_sets SET suspended = $2
             WHERE updated_by = $1 AND suspended IS NULL RETURNING name",
            &[&author, &why],
            |r| get(r, 0),
        )
    }

    fn delete_monitor_set(&mut self, name: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM monitor_sets WHERE name = $1", &[&name])? > 0)
    }

    fn put_monitor_report(&mut self, row: &MonitorReportRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO monitor_reports (agent, digest, report, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent) DO UPDATE SET digest = excluded.digest,
                 report = excluded.report, at = excluded.at",
            &[&row.agent, &row.digest, &row.report, &row.at],
        )?;
        Ok(())
    }

    fn monitor_reports(&mut self) -> StoreResult<Vec<MonitorReportRow>> {
        self.all(
            "SELECT agent, digest, report, at FROM monitor_reports ORDER BY agent",
            &[],
            |r| {
                Ok(MonitorReportRow {
                    agent: get(r, 0)?,
                    digest: get(r, 1)?,
                    report: get(r, 2)?,
                    at: get(r, 3)?,
                })
            },
        )
    }

    fn insert_operator(&mut self, name: &str, role: Role, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "INSERT INTO operators (name, role, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &role.as_str(), &now],
        )?;
        Ok(n == 1)
    }

    fn operator(&mut self, name: &str) -> StoreResult<Option<OperatorInfo>> {
        let sql = format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE name = $1{}",
            self.lock()
        );
        self.one(&sql, &[&name], operator_row)
    }

    fn operators(&mut self) -> StoreResult<Vec<OperatorInfo>> {
        self.all(
            &format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name"),
            &[],
            operator_row,
        )
    }

    fn set_operator_role(&mut self, name: &str, role: Role) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE operators SET role = $2 WHERE name = $1",
            &[&name, &role.as_str()],
        )?;
        Ok(n > 0)
    }

    fn insert_ticket(&mut self, t: &NewTicket, now: i64) -> StoreResult<u64> {
        let id: i64 = self
            .one(
                "INSERT INTO tickets (title, agent, check_name, monitor, status, priority, source, created_at, updated_at, requester)
                 VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $7, $8) RETURNING id",
                &[&t.title, &t.agent, &t.check, &t.monitor, &t.priority.as_str(), &t.source.as_str(), &now, &t.requester],
                |r| get(r, 0),
            )?
            .ok_or_else(|| StoreError::Backend("INSERT … RETURNING returned nothing".into()))?;
        Ok(id.max(0) as u64)
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
        let id = ticket_id(id);
        let n = self.exec(
            "UPDATE tickets SET updated_at = $2 WHERE id = $1",
            &[&id, &now],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.one(
            "INSERT INTO ticket_entries (ticket_id, at, kind, author, body, observed_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&id, &now, &kind, &author, &body, &observed_at],
            |r| get(r, 0),
        )
    }

    fn update_status(&mut self, id: u64, status: TicketStatus, now: i64) -> StoreResult<bool> {
        let resolved_at = (status == TicketStatus::Resolved).then_some(now);
        let n = self.exec(
            "UPDATE tickets SET status = $2, resolved_at = COALESCE($3, resolved_at) WHERE id = $1",
            &[&ticket_id(id), &status.as_str(), &resolved_at],
        )?;
        Ok(n > 0)
    }

    fn update_assignee(&mut self, id: u64, operator: &str) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tickets SET assignee = $2 WHERE id = $1",
            &[&ticket_id(id), &operator],
        )?;
        Ok(n > 0)
    }

    fn update_priority(&mut self, id: u64, priority: Priority) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE tickets SET priority = $2 WHERE id = $1",
            &[&ticket_id(id), &priority.as_str()],
        )?;
        Ok(n > 0)
    }

    fn ticket(&mut self, id: u64) -> StoreResult<Option<Ticket>> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1{}",
            self.lock()
        );
        self.one(&sql, &[&ticket_id(id)], ticket_row)
    }

    fn tickets(&mut self, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        // Only the filters that are set, as SQLite's `tickets_query`: a
        // prepared `($2 IS NULL OR agent = $2)` gets a generic plan after a
        // few runs, which cannot use an index for one agent's tickets.
        let status = f.status.map(TicketStatus::as_str);
        let priority = f.priority.map(Priority::as_str);
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        fn add<'a>(
            (clauses, params): (&mut Vec<String>, &mut Vec<&'a (dyn ToSql + Sync)>),
            clause: &str,
            value: &'a (dyn ToSql + Sync),
        ) {
            params.push(value);
            clauses.push(clause.replace("{p}", &format!("${}", params.len())));
        }
        if let Some(status) = &status {
            add((&mut clauses, &mut params), "status = {p}", status);
        }
        if let Some(agent) = &f.agent {
            add((&mut clauses, &mut params), "agent = {p}", agent);
        }
        if let Some(assignee) = &f.assignee {
            add((&mut clauses, &mut params), "assignee = {p}", assignee);
        }
        if let Some(priority) = &priority {
            add((&mut clauses, &mut params), "priority = {p}", priority);
        }
        if let Some(after) = &f.created_after {
            add((&mut clauses, &mut params), "created_at >= {p}", after);
        }
        if let Some(before) = &f.created_before {
            add((&mut clauses, &mut params), "created_at <= {p}", before);
        }
        if let Some(search) = &f.search {
            // ASCII case folding (COLLATE "C"), as SQLite's lower().
            add(
                (&mut clauses, &mut params),
                r#"(strpos(lower(title COLLATE "C"), lower({p}::text COLLATE "C")) > 0
                   OR EXISTS (SELECT 1 FROM ticket_entries e
                              WHERE e.ticket_id = t.id
                                AND (e.kind = 'comment' OR (e.kind = 'opened' AND t.source <> 'alert'))
                                AND strpos(lower(e.body COLLATE "C"), lower({p}::text COLLATE "C")) > 0))"#,
                search,
            );
        }
        let filter = match clauses.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", clauses.join(" AND ")),
        };
        self.all(
            &format!("SELECT {TICKET_COLUMNS} FROM tickets t {filter} ORDER BY id"),
            &params,
            ticket_row,
        )
    }

    fn entries(&mut self, id: u64) -> StoreResult<Vec<TicketEntry>> {
        self.all(
            "SELECT e.at, e.kind, e.author, e.body, e.observed_at, t.source
             FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE e.ticket_id = $1 ORDER BY e.id",
            &[&ticket_id(id)],
            |r| {
                let kind: String = get(r, 1)?;
                let body: String = get(r, 3)?;
                let source: String = get(r, 5)?;
                Ok(TicketEntry {
                    at: rfc3339(get(r, 0)?),
                    observed_at: get::<Option<i64>>(r, 4)?.map(rfc3339),
                    body: entry_body(&kind, source == "alert", &body),
                    kind,
                    author: get(r, 2)?,
                })
            },
        )
    }

    fn latest_alert_ticket(&mut self, agent: &str, monitor: &str) -> StoreResult<Option<Ticket>> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets
             WHERE agent = $1 AND monitor = $2 AND source = 'alert'
             ORDER BY id DESC LIMIT 1{}",
            self.lock()
        );
        self.one(&sql, &[&agent, &monitor], ticket_row)
    }

    fn count_tickets(&mut self, agent: &str) -> StoreResult<u64> {
        let n: i64 = self
            .one(
                "SELECT COUNT(*) FROM tickets WHERE agent = $1",
                &[&agent],
                |r| get(r, 0),
            )?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn timelines_since(&mut self, since: i64) -> StoreResult<Vec<TimelineRow>> {
        self.all(
            r#"SELECT e.ticket_id, e.at, e.kind, e.author,
                      CASE WHEN e.kind IN ('verdict', 'status')
                             OR (e.kind = 'result' AND strpos(e.body, '"changed":') > 0)
                           THEN e.body END
               FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
               WHERE t.created_at >= $1 ORDER BY e.ticket_id, e.id"#,
            &[&since],
            |r| {
                Ok(TimelineRow {
                    ticket: get::<i64>(r, 0)?.max(0) as u64,
                    at: get(r, 1)?,
                    kind: get(r, 2)?,
                    author: get(r, 3)?,
                    body: get(r, 4)?,
                })
            },
        )
    }

    fn count_by_status(&mut self) -> StoreResult<Vec<(String, u64)>> {
        self.all(
            "SELECT status, COUNT(*) FROM tickets GROUP BY status ORDER BY status",
            &[],
            |r| Ok((get(r, 0)?, get::<i64>(r, 1)?.max(0) as u64)),
        )
    }

    fn lock_audit(&mut self) -> StoreResult<()> {
        // Every relay's appends take turns on this row until their commit;
        // the next reads the head after the previous one committed.
        self.one(
            "SELECT id FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
            |_| Ok(()),
        )?
        .ok_or_else(|| {
            StoreError::Backend(
                "the row of audit_head is missing: the audit chain cannot be appended to safely"
                    .into(),
            )
        })
    }

    fn audit_head(&mut self) -> StoreResult<Option<(i64, String)>> {
        self.one(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            &[],
            |r| Ok((get(r, 0)?, get(r, 1)?)),
        )
    }

    fn insert_audit(&mut self, row: &AuditRow, prev_hash: &str, hash: &str) -> StoreResult<()> {
        self.exec(
            "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &row.id,
                &row.at,
                &row.who,
                &row.role,
                &row.agent,
                &row.action,
                &row.args,
                &row.outcome,
                &prev_hash,
                &hash,
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
             WHERE ($1::text IS NULL OR agent = $1) ORDER BY id DESC LIMIT $2",
            &[&agent, &limit.map(i64::from)],
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
                    hash: get(r, 8)?,
                })
            },
        )?;
        out.reverse();
        Ok(out)
    }

    fn audit_chain(&mut self) -> StoreResult<Vec<StoredAudit>> {
        self.all(
            "SELECT id, at, who, role, agent, action, args, outcome, prev_hash, hash FROM audit ORDER BY id",
            &[],
            |r| {
                Ok(StoredAudit {
                    row: audit_row(r)?,
                    prev_hash: get(r, 8)?,
                    hash: get(r, 9)?,
                })
            },
        )
    }

    fn audit_from(&mut self, from: i64) -> StoreResult<Vec<StoredAudit>> {
        self.all(
            "SELECT id, at, who, role, agent, action, args, outcome, prev_hash, hash FROM audit
             WHERE id >= $1 ORDER BY id",
            &[&from],
            |r| {
                Ok(StoredAudit {
                    row: audit_row(r)?,
                    prev_hash: get(r, 8)?,
                    hash: get(r, 9)?,
                })
            },
        )
    }

    fn enqueue_webhook(&mut self, event_id: &str, body: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO webhook_outbox (event_id, body, next_at) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &body, &now],
        )?;
        Ok(())
    }

    fn claim_webhooks(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        // SKIP LOCKED: a delivery another relay is claiming right now is
        // not waited for, but left to it; one claimed and committed no
        // longer matches (PostgreSQL checks the row it left again).
        let mut out = self.all(
            "UPDATE webhook_outbox SET claimed_until = $2
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                          ORDER BY id LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, event_id, body, attempts",
            &[&now, &lease_until, &i64::from(limit)],
            delivery_row,
        )?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn delete_webhook(&mut self, id: i64) -> StoreResult<()> {
        self.exec("DELETE FROM webhook_outbox WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn retry_webhook(&mut self, id: i64, next_at: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = $2, claimed_until = NULL WHERE id = $1",
            &[&id, &next_at],
        )?;
        Ok(())
    }

    fn webhook_backlog(&mut self) -> StoreResult<u64> {
        let n: i64 = self
            .one("SELECT COUNT(*) FROM webhook_outbox", &[], |r| get(r, 0))?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn insert_queued(&mut self, q: &QueueRow) -> StoreResult<i64> {
        let id = self.one(
            "INSERT INTO queued_actions (agent, action, ticket, operator, role, queued_at, expires_at, state, ended_at, outcome, enrollment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &q.agent, &q.action, &q.ticket, &q.operator, &q.role, &q.queued_at,
                &q.expires_at, &q.state, &q.ended_at, &q.outcome, &q.enrollment,
            ],
            |r| get::<i64>(r, 0),
        )?;
        id.ok_or_else(|| StoreError::Backend("INSERT … RETURNING id returned no row".into()))
    }

    fn queued(&mut self, id: i64) -> StoreResult<Option<QueueRow>> {
        let sql = format!(
            "SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE id = $1{}",
            self.lock()
        );
        self.one(&sql, &[&id], queue_row)
    }

    fn queued_list(&mut self, all: bool, limit: u32) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE state = 'pending' ORDER BY id"
            ),
            &[],
            queue_row,
        )?;
        if all {
            out.extend(self.all(
                &format!(
                    "SELECT {QUEUE_COLUMNS} FROM queued_actions WHERE state <> 'pending'
                     ORDER BY id DESC LIMIT $1"
                ),
                &[&i64::from(limit)],
                queue_row,
            )?);
        }
        Ok(out)
    }

    fn count_pending(&mut self, agent: &str) -> StoreResult<u64> {
        let n: i64 = self
            .one(
                "SELECT COUNT(*) FROM queued_actions WHERE agent = $1 AND state = 'pending'",
                &[&agent],
                |r| get(r, 0),
            )?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    fn pending_agents(&mut self) -> StoreResult<Vec<String>> {
        self.all(
            "SELECT DISTINCT agent FROM queued_actions WHERE state = 'pending' ORDER BY agent",
            &[],
            |r| get(r, 0),
        )
    }

    fn claim_queued(&mut self, agent: &str, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>> {
        // Row locks: a pending action another relay is claiming right now
        // is skipped (it is theirs); `state = 'pending'` is checked again on
        // the row as committed, so one claimed and committed is not taken
        // twice.
        let mut out = self.all(
            &format!(
                "UPDATE queued_actions SET state = 'delivered', ended_at = $2
                 WHERE id IN (SELECT id FROM queued_actions
                              WHERE agent = $1 AND state = 'pending' AND expires_at > $2
                                AND enrollment = (SELECT enrollment FROM agents
                                                  WHERE name = $1 AND revoked_at IS NULL
                                                    AND removed_at IS NULL)
                              ORDER BY id LIMIT $3
                              FOR UPDATE SKIP LOCKED)
                   AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            &[&agent, &now, &i64::from(limit)],
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
                "UPDATE queued_actions SET state = 'cancelled', ended_at = $2, outcome = $3
                 WHERE agent = $1 AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            &[&agent, &now, &outcome],
            queue_row,
        )?;
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    fn end_queued(&mut self, id: i64, state: &str, now: i64) -> StoreResult<bool> {
        let n = self.exec(
            "UPDATE queued_actions SET state = $2, ended_at = $3 WHERE id = $1 AND state = 'pending'",
            &[&id, &state, &now],
        )?;
        Ok(n == 1)
    }

    fn set_queued_outcome(&mut self, id: i64, outcome: &str) -> StoreResult<()> {
        self.exec(
            "UPDATE queued_actions SET outcome = $2 WHERE id = $1",
            &[&id, &outcome],
        )?;
        Ok(())
    }

    fn expire_queued(&mut self, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>> {
        let mut out = self.all(
            &format!(
                "UPDATE queued_actions SET state = 'expired', ended_at = $1
                 WHERE id IN (SELECT id FROM queued_actions
                              WHERE state = 'pending' AND expires_at <= $1
                              ORDER BY id LIMIT $2
                              FOR UPDATE SKIP LOCKED)
                   AND state = 'pending'
                 RETURNING {QUEUE_COLUMNS}"
            ),
            &[&now, &i64::from(limit)],
            queue_row,
        )?;
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    fn enqueue_helpdesk(&mut self, ticket_id: u64, entry_id: i64, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO helpdesk_links (ticket_id, latest_entry, next_at) VALUES ($1, $2, $3)
             ON CONFLICT (ticket_id) DO UPDATE
             SET latest_entry = GREATEST(helpdesk_links.latest_entry, EXCLUDED.latest_entry)",
            &[&self::ticket_id(ticket_id), &entry_id, &now],
        )?;
        Ok(())
    }

    fn claim_helpdesk(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<HelpdeskLink>> {
        // As `claim_webhooks`: SKIP LOCKED leaves a link another relay is
        // claiming right now to it.
        let mut out = self.all(
            &format!(
                "UPDATE helpdesk_links SET claimed_until = $2
                 WHERE ticket_id IN (SELECT ticket_id FROM helpdesk_links
                     WHERE latest_entry > delivered_entry AND next_at <= $1
                       AND (claimed_until IS NULL OR claimed_until <= $1)
                     ORDER BY ticket_id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {HELPDESK_COLUMNS}"
            ),
            &[&now, &lease_until, &i64::from(limit)],
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
            "UPDATE helpdesk_links SET remote_id = $2, delivered_entry = $3, sending_entry = $4,
                 remote_status = $5, attempts = $6, claimed_until = $8
             WHERE ticket_id = $1 AND claimed_until = $7",
            &[
                &self::ticket_id(l.ticket_id),
                &l.remote_id,
                &l.delivered_entry,
                &l.sending_entry,
                &l.remote_status,
                &l.attempts,
                &lease_until,
                &renew_until,
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
            "UPDATE helpdesk_links SET claimed_until = NULL, next_at = $3, attempts = $4
             WHERE ticket_id = $1 AND claimed_until = $2",
            &[
                &self::ticket_id(ticket_id),
                &lease_until,
                &next_at,
                &attempts,
            ],
        )?;
        Ok(n == 1)
    }

    fn helpdesk_link(&mut self, ticket_id: u64) -> StoreResult<Option<HelpdeskLink>> {
        self.one(
            &format!("SELECT {HELPDESK_COLUMNS} FROM helpdesk_links WHERE ticket_id = $1"),
            &[&self::ticket_id(ticket_id)],
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
                 WHERE ticket_id > $2 AND {HELPDESK_WATCHED}
                 ORDER BY ticket_id LIMIT $3"
            ),
            &[&now, &self::ticket_id(after), &i64::from(limit)],
            helpdesk_row,
        )
    }

    fn mark_helpdesk_resolved(&mut self, ticket_id: u64, now: i64) -> StoreResult<bool> {
        // One conditional update: a second relay waits for the first's row
        // lock, then finds the conditions no longer hold.
        let n = self.exec(
            &format!(
                "UPDATE helpdesk_links SET remote_status = 'resolved'
                 WHERE ticket_id = $2 AND {HELPDESK_WATCHED}"
            ),
            &[&now, &self::ticket_id(ticket_id)],
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
             WHERE e.ticket_id = $1 AND e.id > $2 ORDER BY e.id",
            &[&self::ticket_id(ticket_id), &after],
            |r| {
                let kind: String = get(r, 1)?;
                let body: String = get(r, 3)?;
                let source: String = get(r, 5)?;
                Ok((
                    get(r, 6)?,
                    TicketEntry {
                        at: rfc3339(get(r, 0)?),
                        observed_at: get::<Option<i64>>(r, 4)?.map(rfc3339),
                        body: entry_body(&kind, source == "alert", &body),
                        kind,
                        author: get(r, 2)?,
                    },
                ))
            },
        )
    }
}

const HELPDESK_COLUMNS: &str =
    "ticket_id, remote_id, latest_entry, delivered_entry, sending_entry, remote_status, attempts";

/// What [`Tx::helpdesk_watched`] and [`Tx::mark_helpdesk_resolved`] ask of
/// a link (`$1` is now).
const HELPDESK_WATCHED: &str = "remote_id IS NOT NULL AND delivered_entry >= latest_entry
     AND (claimed_until IS NULL OR claimed_until <= $1)
     AND (remote_status IS NULL OR remote_status <> 'resolved')
     AND ticket_id IN (SELECT id FROM tickets WHERE status IN ('open', 'in_progress'))";

fn helpdesk_row(r: &Row) -> StoreResult<HelpdeskLink> {
    Ok(HelpdeskLink {
        ticket_id: get::<i64>(r, 0)?.max(0) as u64,
        remote_id: get(r, 1)?,
        latest_entry: get(r, 2)?,
        delivered_entry: get(r, 3)?,
        sending_entry: get(r, 4)?,
        remote_status: get(r, 5)?,
        attempts: get(r, 6)?,
    })
}
