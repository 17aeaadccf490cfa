//! The PostgreSQL backend, for several relays on one database
//! (`[store] url = "postgres://…"` in relay.toml): **not built yet**.
//!
//! What it has to do (see `super::tx` for the guarantees of each
//! primitive, `super::sqlite` for a complete backend to follow):
//! * `open(url)` connects (the sync `postgres` crate on the backend's own
//!   threads, or `tokio-postgres` driven by a runtime the backend owns:
//!   jobs never run on the caller's async workers), runs [`MIGRATIONS`]
//!   with `super::migrations::pending` under an advisory lock, and starts
//!   a pool of connections;
//! * `Backend::submit` runs `job.work` in a transaction on one of them
//!   (`job.write` false: a read-only one), inside
//!   `super::with_retries` so a serialization failure (SQLSTATE 40001)
//!   or deadlock (40P01) — mapped to `StoreError::Retry` — runs the whole
//!   job again, and answers `job.reply` after the commit;
//! * the primitives in PostgreSQL's SQL: `FOR UPDATE` in `lock_last_seq`,
//!   `SELECT … FROM audit_head FOR UPDATE` in `lock_audit`, `FOR UPDATE
//!   SKIP LOCKED` in `claim_webhooks`, `RETURNING id` for new rows,
//!   `ON CONFLICT … DO NOTHING` where SQLite's are.
//!
//! Then `crate::store::suite::run` must pass on it, as it does on SQLite.

use super::error::{StoreError, StoreResult};
use super::Backend;

/// PostgreSQL's schema history (to write: the same tables as SQLite's
/// version 2, with `BIGSERIAL`/`BIGINT` ids and times, and the one-row
/// `audit_head` table that serializes audit appends).
pub const MIGRATIONS: &[super::migrations::Migration<&str>] = &[];

/// Open the database at `url` (a `postgres://` or `postgresql://` URL).
pub fn open(url: &super::Location) -> StoreResult<Box<dyn Backend>> {
    Err(StoreError::Unavailable(format!(
        "{url:?}: this relay has no PostgreSQL backend yet; use the SQLite default \
         (remove `url` from [store] in relay.toml)"
    )))
}
