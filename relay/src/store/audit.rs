//! The audit chain, appended under the storage primitives: each row stores
//! `hash = SHA-256(prev_hash ‖ JSON [id, at, who, role, agent, action,
//! args, outcome])`, so an edited row no longer matches its hash.
//!
//! An append first serializes with every other appender — of this relay,
//! of an offline admin command, of another relay on the same database
//! ([`Tx::lock_audit`]; SQLite's write transactions are serialized anyway)
//! — then reads the newest row's id and hash and links the new row to it,
//! all in one transaction: the chain cannot fork. Signing the entry into
//! the anchor outside the database is [`crate::audit`]'s, after the commit.

use super::error::StoreResult;
use super::tx::{AuditRow, Tx};

/// The hash before the first audit entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub who: String,
    pub role: Option<String>,
    pub agent: Option<String>,
    pub action: String,
    pub args: String,
    pub outcome: String,
}

/// Append `entry` at `now`: its `(id, hash)`.
pub fn append(tx: &mut dyn Tx, entry: &AuditEntry, now: i64) -> StoreResult<(i64, String)> {
    tx.lock_audit()?;
    let (last, prev) = tx.audit_head()?.unwrap_or_else(|| (0, GENESIS.to_string()));
    let row = AuditRow {
        id: last + 1,
        at: now,
        who: entry.who.clone(),
        role: entry.role.clone(),
        agent: entry.agent.clone(),
        action: entry.action.clone(),
        args: entry.args.clone(),
        outcome: entry.outcome.clone(),
    };
    let hash = row.hash(&prev);
    tx.insert_audit(&row, &prev, &hash)?;
    Ok((row.id, hash))
}

impl AuditRow {
    /// SHA-256 over the previous hash and a JSON array of the fields
    /// (unambiguous, whatever the fields contain).
    pub fn hash(&self, prev: &str) -> String {
        let fields = serde_json::json!([
            self.id,
            self.at,
            self.who,
            self.role,
            self.agent,
            self.action,
            self.args,
            self.outcome
        ]);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(prev.as_bytes());
        ctx.update(fields.to_string().as_bytes());
        hex::encode(ctx.finish())
    }
}
