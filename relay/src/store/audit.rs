//! The audit chain, appended under the storage primitives: each row stores
//! `hash = HMAC-SHA-256(chain key, "firstline-audit-chain v2" ‖ prev_hash ‖
//! JSON [id, at, who, role, agent, action, args, outcome])`, so an edited
//! row no longer matches its hash, and nobody without the chain key — which
//! the database does not hold: it is derived from the relay's audit signing
//! key ([`crate::audit`]) — can write a row a relay takes for its own.
//!
//! Rows written before the keyed scheme (plain `SHA-256(prev_hash ‖ JSON
//! …)`, [`AuditRow::plain_hash`]) stay readable; `audit verify` accepts them
//! only before the first keyed row and where a signed checkpoint covers
//! them (anyone can compute a plain hash).
//!
//! An append first serializes with every other appender — of this relay,
//! of an offline admin command, of another relay on the same database
//! ([`Tx::lock_audit`]; SQLite's write transactions are serialized anyway)
//! — then **checks the tail** ([`check_tail`]): the row this process last
//! knew to be whole (its last checkpoint, or the last row it wrote or
//! checked) must still be there unchanged, and every row after it must
//! link to the one before and carry a valid keyed hash (rows written by
//! other relays of the deployment do: they hold the key). A row that does
//! not — written behind the relays' backs — fails the append with
//! [`StoreError::Tampered`] until an operator acknowledges it (an entry
//! [`ACKNOWLEDGE`], written by `firstline-relay audit acknowledge` with the
//! key). The check runs once before the lock (the bulk of the rows, when
//! this process was away while others appended) and once under it; the
//! new rows link to the head it reached, all in one transaction: the chain
//! cannot fork. Signing the entry
//! into the anchor outside the database is [`crate::audit`]'s, right after
//! the commit ([`Chain`]'s checkpoint hook, on the store's thread).

use super::error::{StoreError, StoreResult};
use super::tx::{AuditRow, StoredAudit, Tx};
use std::sync::Mutex;

/// The hash before the first audit entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The action of an operator's acknowledgement of rows no relay wrote.
pub const ACKNOWLEDGE: &str = "audit acknowledge";

const KEYED_PREFIX: &[u8] = b"firstline-audit-chain v2\0";

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

/// The key of the chain's HMAC (never stored in the database).
#[derive(Clone)]
pub struct ChainKey(ring::hmac::Key);

impl ChainKey {
    /// A key from secret bytes (the relay derives them from its audit
    /// signing key).
    pub fn new(secret: &[u8]) -> ChainKey {
        ChainKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

/// What is written right after a batch commits: the signed checkpoint of
/// its newest entry — `Ok(Some(line))` when a line was written, `Ok(None)`
/// when a newer checkpoint already covers it.
pub type CheckpointHook = Box<dyn Fn(i64, &str) -> Result<Option<String>, String> + Send + Sync>;

/// One process's view of the chain: its key, the newest row it knows to be
/// whole, and where checkpoints go.
pub struct Chain {
    key: ChainKey,
    /// `(id, hash)` of the newest row this process wrote, checked or holds a
    /// signed checkpoint of; `(0, GENESIS)`: check from the start.
    trusted: Mutex<(i64, String)>,
    checkpoint: CheckpointHook,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain(trusted {:?})", self.trusted())
    }
}

impl Chain {
    /// `trusted`: the newest checkpoint this process knows (or `None`).
    pub fn new(key: ChainKey, trusted: Option<(i64, String)>, checkpoint: CheckpointHook) -> Chain {
        Chain {
            key,
            trusted: Mutex::new(trusted.unwrap_or((0, GENESIS.to_string()))),
            checkpoint,
        }
    }

    /// A chain whose checkpoints go nowhere (the store's own tests).
    pub fn unanchored(key: ChainKey) -> std::sync::Arc<Chain> {
        std::sync::Arc::new(Chain::new(key, None, Box::new(|_, _| Ok(None))))
    }

    pub fn key(&self) -> &ChainKey {
        &self.key
    }

    pub fn trusted(&self) -> (i64, String) {
        self.trusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Move the trusted point forward (never back).
    pub(super) fn trust(&self, point: (i64, String)) {
        let mut t = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
        if point.0 >= t.0 {
            *t = point;
        }
    }

    pub(super) fn write_checkpoint(&self, id: i64, hash: &str) -> Result<Option<String>, String> {
        (self.checkpoint)(id, hash)
    }
}

/// Append `entries` at `now` with `key`, from the trusted point `trusted`
/// (moved to the newest new row): their `(id, hash)`. The tail is checked
/// once before the lock (the bulk of it, when this process has been away
/// while others appended: without holding up the other appenders) and
/// again under it (what came in between); then the rows follow the head
/// the check reached. A batch holding an acknowledgement is not checked
/// (it is what lets appends resume).
pub fn append(
    tx: &mut dyn Tx,
    key: &ChainKey,
    trusted: &mut (i64, String),
    entries: &[AuditEntry],
    now: i64,
) -> StoreResult<Vec<(i64, String)>> {
    let acknowledging = entries.iter().any(|e| e.action == ACKNOWLEDGE);
    if !acknowledging {
        check_tail(tx, key, trusted)?;
    }
    tx.lock_audit()?;
    let (mut last, mut prev) = if acknowledging {
        tx.audit_head()?.unwrap_or_else(|| (0, GENESIS.to_string()))
    } else {
        check_tail(tx, key, trusted)?;
        trusted.clone()
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
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
        let hash = row.hash(key, &prev);
        tx.insert_audit(&row, &prev, &hash)?;
        (last, prev) = (row.id, hash.clone());
        out.push((row.id, hash));
    }
    *trusted = (last, prev);
    Ok(out)
}

/// Check the rows from `trusted` on: the trusted row unchanged, every later
/// row linked and keyed (an acknowledgement, keyed, forgives what came
/// before it). Moves `trusted` to the head when all holds.
pub fn check_tail(tx: &mut dyn Tx, key: &ChainKey, trusted: &mut (i64, String)) -> StoreResult<()> {
    let rows = tx.audit_from(trusted.0)?;
    let (next, problems) = tail_problems(key, trusted, &rows);
    match problems.first() {
        None => {
            *trusted = next;
            Ok(())
        }
        Some(first) => Err(StoreError::Tampered(if problems.len() == 1 {
            first.clone()
        } else {
            format!("{first} (and {} more)", problems.len() - 1)
        })),
    }
}

/// The head reached and what is wrong in `rows` (by id, from the trusted
/// row on), checked from `trusted`.
fn tail_problems(
    key: &ChainKey,
    trusted: &(i64, String),
    rows: &[StoredAudit],
) -> ((i64, String), Vec<String>) {
    let mut problems = Vec::new();
    let mut rows = rows.iter().peekable();
    let (mut id, mut prev) = trusted.clone();
    if id > 0 {
        match rows.peek() {
            Some(r) if r.row.id == id && r.hash == prev => {
                rows.next();
            }
            Some(r) if r.row.id == id => problems.push(format!(
                "audit entry {id} differs from the one this relay last checked (signed checkpoint): the log was rewritten"
            )),
            _ => problems.push(format!(
                "audit entry {id}, which this relay last checked, is gone: the log was cut"
            )),
        }
    }
    for r in rows {
        let keyed = r.row.hash(key, &r.prev_hash) == r.hash;
        if r.prev_hash != prev || r.row.id != id + 1 {
            problems.push(format!(
                "audit entry {} does not follow entry {id}: entries were removed or changed",
                r.row.id
            ));
        } else if !keyed {
            problems.push(format!(
                "audit entry {} carries no valid keyed hash: no relay wrote it (added or edited in the database)",
                r.row.id
            ));
        }
        if keyed && r.row.action == ACKNOWLEDGE {
            problems.clear();
        }
        id = r.row.id;
        prev = r.hash.clone();
    }
    ((id, prev), problems)
}

impl AuditRow {
    /// The keyed hash: HMAC-SHA-256 over a label, the previous hash and a
    /// JSON array of the fields (unambiguous, whatever they contain).
    pub fn hash(&self, key: &ChainKey, prev: &str) -> String {
        let mut ctx = ring::hmac::Context::with_key(&key.0);
        ctx.update(KEYED_PREFIX);
        ctx.update(prev.as_bytes());
        ctx.update(self.fields().as_bytes());
        hex::encode(ctx.sign().as_ref())
    }

    /// The hash of rows written before the keyed scheme: SHA-256 over the
    /// previous hash and the same JSON (anyone can compute it).
    pub fn plain_hash(&self, prev: &str) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(prev.as_bytes());
        ctx.update(self.fields().as_bytes());
        hex::encode(ctx.finish())
    }

    fn fields(&self) -> String {
        serde_json::json!([
            self.id,
            self.at,
            self.who,
            self.role,
            self.agent,
            self.action,
            self.args,
            self.outcome
        ])
        .to_string()
    }
}
