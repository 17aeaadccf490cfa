//! The audit log: who did what, to which agent, when, with what outcome —
//! a hash chain in the database, keyed and anchored outside it.
//!
//! **The chain.** Each row of the `audit` table stores `hash =
//! HMAC-SHA-256(chain key, label ‖ prev_hash ‖ JSON [id, at, who, role,
//! agent, action, args, outcome])` ([`crate::store::audit`]). The chain key
//! is derived from the signing key below (HMAC-SHA-256 keyed with
//! `audit-key.pk8`'s bytes over a label), so the database never holds it
//! and someone with only the database can neither edit a row nor add one
//! that matches its hash. Rows from before the keyed scheme carry the plain
//! SHA-256 hash; they are accepted only before the first keyed row and
//! where a signed checkpoint covers them — the scheme changes at the first
//! keyed entry, and a plain row after it is reported as forged
//! ([`Finding::Unkeyed`]) — so the relays of a deployment are upgraded
//! together: an older relay's plain rows would stop the others. Rows are
//! appended by the store, serialized with
//! every other appender (`serve`, an offline admin command, another relay
//! on the same database), so the chain cannot fork.
//!
//! **Checked before each append.** Each process trusts the chain up to a
//! point: the newest checkpoint in its anchor when it starts, then every
//! row it writes or checks. Before appending (and before each console
//! request, [`crate::state::Relay::audit_guard`]) it checks, in the
//! append's transaction, that the trusted row is still there unchanged and
//! that every row after it links to the one before and carries a valid
//! keyed hash. Rows of the other relays of the deployment do (same key), so
//! relays appending at once, or a relay killed mid-append, never trip it;
//! a row someone wrote in the database does. Then nothing is appended
//! ([`StoreError::Tampered`]), the relay refuses console requests, logs
//! an error and sets `firstline_audit_chain_tampered` on `/metrics`, until
//! an admin looks (`audit verify`) and runs `firstline-relay audit
//! acknowledge` ([`acknowledge`]): a keyed entry naming the rows, after
//! which the relays append again and `verify` reports those rows as
//! acknowledged (warnings).
//!
//! **The anchor.** A keyed chain can still be cut (delete the newest
//! rows), and the key itself lives on the relay's host. So right after a
//! batch of entries commits (on the store's thread, before the next
//! batch), the newest entry's `(id, hash)` is signed with an Ed25519 key
//! the database does not hold (`audit-key.pk8` in the relay folder,
//! PKCS#8, 0600, created on first use) and appended as one line to
//! `audit-anchor.log` (0600, `O_APPEND`):
//!
//! ```text
//! v2 <seq> <id> <hash: 64 hex> <prev: 64 hex> <key id: 16 hex> <signature: 128 hex>
//! ```
//!
//! The signed message is `firstline-audit-anchor v2 <seq> <id> <hash>
//! <prev>`: `seq` numbers the anchor's lines from 1, `prev` is the SHA-256
//! of the previous line's text (zeros for the first), so lines removed
//! from the middle or the start show, and a copied line repeats a sequence
//! number. Writers (`serve`, the offline admin commands, lines kept for
//! other relays) take an exclusive `flock` of the anchor, read its last
//! line and write the next — or nothing, when the newest line already names
//! this entry or a later one (which the chain makes cover it): ids grow
//! along the anchor. The key id is the first 8 bytes of the SHA-256 of the
//! public key. Anchors written before (`v1 <id> <hash> <key id> <sig>`
//! lines, signed `firstline-audit-anchor v1 <id> <hash>`) are still read;
//! a v1 line after the first v2 line is a replay.
//!
//! [`verify`] walks the chain, then compares it with the anchor: an
//! anchored entry missing from the database was deleted (the newest ones:
//! truncated), one whose hash differs was rewritten, a line whose signature
//! fails was tampered with, a line that does not continue the one before
//! was cut out, one that repeats a sequence number was replayed, an anchor
//! whose first checkpoint comes after the first keyed entry was emptied or
//! cut at its start. Entries after the newest checkpoint are a warning
//! while there are at most [`UNANCHORED_GRACE`] (1,024) of them — a
//! process writes each batch's checkpoint (a batch is at most 256 entries)
//! before it stores the next, so a crash between a commit and its
//! checkpoint leaves at most one batch per writing process, and the next
//! append of any relay covers them — and an error beyond: no crash
//! explains them, the anchor's end was cut. A cut of fewer lines than that
//! at the very end cannot be told from a crash (documented in SECURITY.md).
//!
//! **Costs and limits.** A checkpoint is one signature (~20 µs), one
//! `flock`, a read of the anchor's last 16 KiB and one `write` of ~360
//! bytes, after the commit, outside the store's transaction — one per
//! batch. The check before an append reads the rows after the trusted
//! point (usually one). There is **no fsync** per checkpoint: after a
//! power loss (not a mere crash of the process) the newest lines may be
//! lost, and those entries show as unanchored; since the database runs
//! with `synchronous=NORMAL`, a power loss may also lose the newest
//! committed rows while their checkpoints survived, which `verify` reports
//! as a truncation (and the relay's check as a cut log). The anchor
//! protects against whoever holds the database but not the relay folder (a
//! copy, a backup, SQL-level access): whoever holds the folder holds the
//! keys as well. Anchor and key must not be rotated or deleted; copying
//! them (and the public key printed by `audit verify`) elsewhere makes the
//! anchor harder still to reach.
//!
//! **Several relays** (`[cluster]`): one chain in the shared store, and one
//! signing key, which `init --join` copies to each relay (with the anchor
//! so far). Each relay writes the checkpoints of its own entries to its own
//! anchor and sends the lines to the others over NATS, which keep those
//! signed with the key and newer than their own newest checkpoint
//! ([`keep_checkpoint`]; a late or replayed line is covered already and
//! not written); the offline admin commands send theirs too. So every
//! relay's anchor covers every relay's entries, and `audit verify` on any
//! of them checks the whole chain. A checkpoint that did not reach a relay
//! (it was down, or cut off from NATS) is covered by the next checkpoint it
//! writes or keeps; `audit verify --anchor OTHER/audit-anchor.log` counts
//! the other relay's anchor too ([`verify_with`]).
//!
//! Also here: entries for the offline admin commands ([`admin_command`])
//! and for refused connections, rate-limited ([`RefusalLog`]).

use crate::config::RelayDir;
use crate::store::audit::GENESIS;
use crate::store::{wait, Chain, ChainKey, Store, StoreError};
use anyhow::{anyhow, bail, Context, Result};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use crate::store::AuditEntry;

/// The signing key, in the relay folder.
pub const KEY_FILE: &str = "audit-key.pk8";
/// The signed checkpoints, in the relay folder.
pub const ANCHOR_FILE: &str = "audit-anchor.log";
const LINE_VERSION: &str = "v2";
const SIGNED_PREFIX: &str = "firstline-audit-anchor v2";
const SIGNED_PREFIX_V1: &str = "firstline-audit-anchor v1";

/// Keyed entries after the newest checkpoint that `audit verify` takes for
/// a crash between commit and checkpoint (a warning) rather than a cut
/// anchor (an error): a process writes the checkpoint of each batch (at
/// most [`crate::store::AUDIT_BATCH`] = 256 entries) before it stores the
/// next, so a crash leaves at most one batch per writing process without
/// one — this allows four relays killed at once.
pub const UNANCHORED_GRACE: u64 = 4 * crate::store::AUDIT_BATCH as u64;

/// Where the anchor of a relay lives: its key and its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnchorPaths {
    pub key: PathBuf,
    pub log: PathBuf,
    /// Where the other relays are (a relay with `[cluster] nats`): the
    /// offline admin commands send the checkpoints they write to them too.
    pub cluster: Option<crate::cluster::nats::Link>,
}

impl AnchorPaths {
    /// The anchor files in a relay folder.
    pub fn in_dir(dir: &Path) -> AnchorPaths {
        AnchorPaths {
            key: dir.join(KEY_FILE),
            log: dir.join(ANCHOR_FILE),
            cluster: None,
        }
    }
}

impl RelayDir {
    /// The audit anchor's signing key (Ed25519, PKCS#8, 0600).
    pub fn audit_key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }
    /// The audit anchor: signed checkpoints of the audit chain.
    pub fn audit_anchor(&self) -> PathBuf {
        self.dir.join(ANCHOR_FILE)
    }
    pub fn audit_paths(&self) -> AnchorPaths {
        AnchorPaths {
            cluster: crate::cluster::nats::Link::of(self),
            ..AnchorPaths::in_dir(&self.dir)
        }
    }
}

// ---- appending ----

/// Append to the audit log; its signed checkpoint is written to the anchor
/// right after the commit. An `Err` after the append says so: the entry is
/// stored, only unanchored. [`StoreError::Tampered`] (inside the error):
/// the chain's tail holds rows no relay wrote, nothing was appended.
pub async fn record(store: &Store, paths: &AnchorPaths, entry: AuditEntry) -> Result<()> {
    record_checkpoint(store, paths, entry).await.map(drop)
}

/// [`record`], returning the checkpoint line written (which the relay
/// sends to the other relays of its deployment for their anchors), or
/// `None` when the checkpoint of an entry committed with it covers it
/// (that append sends the line).
pub async fn record_checkpoint(
    store: &Store,
    paths: &AnchorPaths,
    entry: AuditEntry,
) -> Result<Option<String>> {
    let chain = chain(paths)?;
    let appended = store.append_audit(entry, &chain).await?;
    appended.checkpoint.map_err(|e| {
        anyhow!(
            "audit entry {} is stored, but its checkpoint could not be written to {}: {e}",
            appended.id,
            paths.log.display()
        )
    })
}

/// Whether `e` (from [`record`]) says the chain was tampered with.
pub fn is_tampered(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<StoreError>(),
        Some(StoreError::Tampered(_))
    )
}

/// Check the chain's tail as an append would, appending nothing.
pub async fn check_tail(store: &Store, paths: &AnchorPaths) -> Result<()> {
    let chain = chain(paths)?;
    store.check_audit_tail(&chain).await?;
    Ok(())
}

/// The chain of an anchor, once per process: the keyed-hash key derived
/// from the signing key, the newest signed checkpoint in the anchor as the
/// trusted point, checkpoints written to the anchor after each commit (the
/// chain makes a checkpoint of entry `k` prove every entry before it, so
/// one signature and one `write()` serve every entry of a batch: 6 % of the
/// relay's CPU in a 5,000-agent fan-out otherwise, BENCHMARKS.md
/// "Profiles").
fn chain(paths: &AnchorPaths) -> Result<Arc<Chain>> {
    static CHAINS: OnceLock<Mutex<HashMap<PathBuf, Arc<Chain>>>> = OnceLock::new();
    let mut chains = CHAINS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = chains.get(&paths.log) {
        return Ok(c.clone());
    }
    let signer = signer(paths)?;
    let trusted = newest_checkpoint(&paths.log, signer.key.public_key().as_ref())?;
    let hook_paths = paths.clone();
    let chain = Arc::new(Chain::new(
        signer.chain_key.clone(),
        trusted,
        Box::new(move |id, hash| {
            write_checkpoint(&hook_paths, id, hash).map_err(|e| format!("{e:#}"))
        }),
    ));
    chains.insert(paths.log.clone(), chain.clone());
    Ok(chain)
}

/// What became of a checkpoint line another relay sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Newer than any in this anchor: written to it (as this anchor's line).
    Kept,
    /// Signed, but not newer than this anchor's newest checkpoint (which
    /// the chain makes cover it): a late or replayed line, not written.
    NotNew,
    /// Not a checkpoint signed with this anchor's key: not written.
    Unsigned,
}

/// Keep a checkpoint line another relay of the deployment wrote (relays
/// made with `init --join` share the signing key): when it is well-formed,
/// signed with this anchor's key, and newer than this anchor's newest
/// checkpoint, its `(id, hash)` is written as the next line of this
/// anchor. So each relay's anchor covers the entries of every relay, and a
/// replayed line adds nothing.
pub fn keep_checkpoint(paths: &AnchorPaths, line: &str) -> Result<Kept> {
    let line = line.trim_end_matches('\n');
    let signer = signer(paths)?;
    let public = signer.key.public_key().as_ref().to_vec();
    let Some(Line::Valid(cp, _)) = check_line(line, &public, &signer.key_id, 0) else {
        return Ok(Kept::Unsigned);
    };
    Ok(
        match write_checkpoint(paths, cp.id as i64, &hex::encode(cp.hash))? {
            Some(_) => Kept::Kept,
            None => Kept::NotNew,
        },
    )
}

/// [`record`], for code that is not async.
pub fn record_blocking(store: &Store, paths: &AnchorPaths, entry: AuditEntry) -> Result<()> {
    wait(record(store, paths, entry))
}

// ---- the anchor: key and checkpoints ----

struct Signer {
    key: Ed25519KeyPair,
    key_id: String,
    /// The chain's HMAC key, derived from the signing key.
    chain_key: ChainKey,
}

/// The signer of an anchor, loaded (or created) once per process.
fn signer(paths: &AnchorPaths) -> Result<Arc<Signer>> {
    static SIGNERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Signer>>>> = OnceLock::new();
    let mut signers = SIGNERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(s) = signers.get(&paths.key) {
        return Ok(s.clone());
    }
    let (key, pkcs8) = load_or_create_key(&paths.key)?;
    end_torn_line(&paths.log)?;
    let signer = Arc::new(Signer {
        key_id: key_id(key.public_key().as_ref()),
        chain_key: derive_chain_key(&pkcs8),
        key,
    });
    signers.insert(paths.key.clone(), signer.clone());
    Ok(signer)
}

/// Read the key, or create it: written 0600 under a name of its own, then
/// hard-linked into place, which fails if another process got there first
/// (then its key is the one).
fn load_or_create_key(path: &Path) -> Result<(Ed25519KeyPair, Vec<u8>)> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok((parse_key(path, &bytes)?, bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow!("cannot generate the audit signing key"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| KEY_FILE.into());
    let staged = path.with_file_name(format!(".{name}.{:016x}.new", rand::random::<u64>()));
    firstline_net::credential::write_private(&staged, pkcs8.as_ref())
        .with_context(|| format!("cannot write {}", staged.display()))?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        // A filesystem without hard links (EPERM): write it in place if
        // still absent (there, two first writers at once could race).
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::Unsupported
            ) =>
        {
            if !path.exists() {
                firstline_net::credential::write_private(path, pkcs8.as_ref())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((parse_key(path, &bytes)?, bytes))
}

/// The chain's HMAC key: HMAC-SHA-256 keyed with the signing key's PKCS#8
/// bytes over a label — so whoever holds `audit-key.pk8` (each relay of
/// the deployment: `init --join` copies it) holds it, and the database
/// does not.
fn derive_chain_key(pkcs8: &[u8]) -> ChainKey {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pkcs8);
    ChainKey::new(ring::hmac::sign(&k, b"firstline-audit-chain-key v2").as_ref())
}

/// The chain key of the anchor at `paths`, if its key exists (reads only).
fn read_chain_key(paths: &AnchorPaths) -> Result<Option<(ChainKey, Vec<u8>)>> {
    match std::fs::read(&paths.key) {
        Ok(bytes) => {
            let public = parse_key(&paths.key, &bytes)?
                .public_key()
                .as_ref()
                .to_vec();
            Ok(Some((derive_chain_key(&bytes), public)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", paths.key.display())),
    }
}

fn parse_key(path: &Path, bytes: &[u8]) -> Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8(bytes)
        .map_err(|e| anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))
}

/// The first 8 bytes of the public key's SHA-256, in hex.
fn key_id(public: &[u8]) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

fn signed_message_v1(id: u64, hash: &str) -> String {
    format!("{SIGNED_PREFIX_V1} {id} {hash}")
}

fn signed_message(seq: u64, id: u64, hash: &str, prev: &str) -> String {
    format!("{SIGNED_PREFIX} {seq} {id} {hash} {prev}")
}

/// The digest a line's successor names (SHA-256 of its text, no newline).
fn line_digest(line: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, line.as_bytes()))
}

fn checkpoint_line(signer: &Signer, seq: u64, id: u64, hash: &str, prev: &str) -> String {
    let sig = signer
        .key
        .sign(signed_message(seq, id, hash, prev).as_bytes());
    format!(
        "{LINE_VERSION} {seq} {id} {hash} {prev} {} {}\n",
        signer.key_id,
        hex::encode(sig.as_ref())
    )
}

fn open_anchor(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The end of an anchor, as its next line must continue it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tail {
    /// The newest entry a line names (any version).
    id: u64,
    /// The last v2 line: its sequence number and digest.
    last: Option<(u64, String)>,
}

/// How much of an anchor's end is read to continue it (a line is ~360
/// bytes).
const TAIL_BYTES: u64 = 16 * 1024;

/// The whole lines at the end of `file` (at most [`TAIL_BYTES`]), newest
/// last.
fn tail_lines(file: &std::fs::File) -> Result<Vec<String>> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    let mut buf = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // maybe cut at the window's start
    }
    Ok(lines)
}

fn tail_of(lines: &[String]) -> Tail {
    let mut tail = Tail::default();
    for line in lines.iter().rev() {
        let Some(p) = parse_line(line) else { continue };
        if tail.id == 0 {
            tail.id = p.cp.id;
        }
        if let Some(seq) = p.seq {
            tail.last = Some((seq, line_digest(line)));
            break;
        }
    }
    tail
}

/// The newest checkpoint signed with `public` at the end of the anchor at
/// `log` (the point a process trusts the chain up to), if any.
fn newest_checkpoint(log: &Path, public: &[u8]) -> Result<Option<(i64, String)>> {
    let file = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", log.display())),
    };
    let our_id = key_id(public);
    let lines = tail_lines(&file)?;
    Ok(lines
        .iter()
        .rev()
        .find_map(|l| match check_line(l, public, &our_id, 0) {
            Some(Line::Valid(cp, _)) => Some((cp.id as i64, hex::encode(cp.hash))),
            _ => None,
        }))
}

/// Sign `(id, hash)` as the anchor's next line, unless its newest line
/// already names `id` or a later entry (which the chain makes cover it):
/// the line written, or `None`. Under an exclusive lock of the anchor
/// (`flock`): the serving relay, the offline admin commands and the lines
/// kept for other relays take turns, so each line continues the last one
/// (sequence number and digest). No fsync: see the module's doc.
fn write_checkpoint(paths: &AnchorPaths, id: i64, hash: &str) -> Result<Option<String>> {
    let signer = signer(paths)?;
    let file =
        open_anchor(&paths.log).with_context(|| format!("cannot open {}", paths.log.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", paths.log.display()))?;
    let id = id.max(0) as u64;
    let tail = tail_of(&tail_lines(&file)?);
    if tail.id >= id {
        return Ok(None);
    }
    let (seq, prev) = match tail.last {
        Some((seq, digest)) => (seq + 1, digest),
        None => (1, GENESIS.to_string()),
    };
    let line = checkpoint_line(&signer, seq, id, hash, &prev);
    // One write() of the whole line on an O_APPEND file, under the lock: it
    // lands whole, or (a full disk: a short write or none) what landed is
    // cut off again, so no torn line is left for the next one to glue to.
    let before = file.metadata()?.len();
    let written = (&file).write(line.as_bytes());
    if !matches!(written, Ok(n) if n == line.len()) {
        let undone = file.set_len(before);
        let what = match written {
            Ok(n) => format!("short write ({n} of {} bytes)", line.len()),
            Err(e) => e.to_string(),
        };
        match undone {
            Ok(()) => bail!("cannot write the checkpoint line: {what}"),
            Err(e) => bail!(
                "cannot write the checkpoint line: {what}; and cannot cut the torn line off: {e}"
            ),
        }
    }
    tracing::debug!(seq, id, hash, "audit checkpoint");
    Ok(Some(line))
}

/// A line cut short by a crash would glue itself to the next one: end it.
fn end_torn_line(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if file.metadata()?.len() == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        open_anchor(path)?.write_all(b"\n")?;
    }
    Ok(())
}

// ---- verifying ----

/// Something `audit verify` found. All are errors but [`Finding::TornLine`],
/// [`Finding::Unanchored`] and [`Finding::Acknowledged`], which are
/// warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The row's fields do not give its stored hash.
    Edited { id: u64 },
    /// The row's `prev_hash` is not the previous row's hash.
    Unlinked { id: u64 },
    /// Anchored entries missing from the database; `truncated` when no
    /// newer entry is left.
    Deleted {
        first: u64,
        last: u64,
        truncated: bool,
    },
    /// Entries whose hash differs from their signed checkpoint (the chain
    /// was recomputed after an edit, or rows were replaced).
    Rewritten { first: u64, last: u64 },
    /// The database has entries but there is no anchor.
    AnchorMissing { entries: u64, path: PathBuf },
    /// There is an anchor but no key to check its signatures with.
    KeyMissing { path: PathBuf },
    /// An anchor line that is no checkpoint.
    Malformed { line: usize },
    /// An anchor line whose signature does not hold.
    BadSignature { line: usize, id: u64 },
    /// An anchor line signed by another key.
    ForeignKey { line: usize, key_id: String },
    /// A row whose hash is the plain (unkeyed) one where only a keyed hash
    /// may be: after the first keyed row, or not covered by a checkpoint.
    Unkeyed { id: u64 },
    /// Warning: a row no relay wrote (edited or unkeyed), acknowledged by
    /// an operator in entry `by`.
    Acknowledged { id: u64, by: u64 },
    /// An anchor line that is not newer than the one before it (a copy of
    /// an earlier line, or a v1 line after v2 lines began); not counted.
    Replayed { line: usize, seq: Option<u64> },
    /// An anchor line that does not continue the one before it: lines
    /// between were removed (or, `after` 0, the anchor's start).
    Cut { line: usize, after: u64, seq: u64 },
    /// Keyed entries older than every checkpoint: the anchor was emptied
    /// or cut at its start.
    AnchorStartsLate {
        first_keyed: u64,
        first_checkpoint: Option<u64>,
    },
    /// More entries after the newest checkpoint than a crash can leave
    /// ([`UNANCHORED_GRACE`]): the anchor's end was cut.
    UnsignedTail { count: u64, first: u64, last: u64 },
    /// Warning: an anchor line cut short by a crash or a full disk;
    /// ignored. `last`: the anchor's last line (nothing was written after).
    TornLine { line: usize, last: bool },
    /// Warning: a few entries after the newest checkpoint (at most
    /// [`UNANCHORED_GRACE`]), written just before a crash.
    Unanchored { count: u64, first: u64, last: u64 },
    /// A problem of a line in another anchor file given to `audit verify`.
    Elsewhere {
        path: PathBuf,
        finding: Box<Finding>,
    },
}

impl Finding {
    pub fn is_error(&self) -> bool {
        match self {
            Finding::Elsewhere { finding, .. } => finding.is_error(),
            _ => !matches!(
                self,
                Finding::TornLine { .. }
                    | Finding::Unanchored { .. }
                    | Finding::Acknowledged { .. }
            ),
        }
    }

    /// The first entry it is about, if any.
    pub fn entry(&self) -> Option<u64> {
        match self {
            Finding::Edited { id }
            | Finding::Unlinked { id }
            | Finding::Unkeyed { id }
            | Finding::Acknowledged { id, .. } => Some(*id),
            Finding::Deleted { first, .. }
            | Finding::Rewritten { first, .. }
            | Finding::UnsignedTail { first, .. }
            | Finding::Unanchored { first, .. } => Some(*first),
            Finding::AnchorStartsLate { first_keyed, .. } => Some(*first_keyed),
            Finding::BadSignature { id, .. } => Some(*id),
            Finding::Elsewhere { finding, .. } => finding.entry(),
            _ => None,
        }
    }

    /// Errors first: the anchor's own, then by entry; warnings last.
    fn rank(&self) -> (u8, u64) {
        let class = match self {
            Finding::Elsewhere { finding, .. } => return finding.rank(),
            Finding::AnchorMissing { .. } | Finding::KeyMissing { .. } => 0,
            Finding::Malformed { .. }
            | Finding::BadSignature { .. }
            | Finding::ForeignKey { .. }
            | Finding::Replayed { .. }
            | Finding::Cut { .. }
            | Finding::AnchorStartsLate { .. } => 1,
            Finding::TornLine { .. }
            | Finding::Unanchored { .. }
            | Finding::Acknowledged { .. } => 3,
            _ => 2,
        };
        (class, self.entry().unwrap_or(0))
    }
}

fn range(first: u64, last: u64) -> String {
    if first == last {
        format!("entry {first}")
    } else {
        format!("entries {first}..{last}")
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Edited { id } => {
                write!(f, "entry {id}: its content does not match its hash (edited)")
            }
            Finding::Unlinked { id } => write!(
                f,
                "entry {id}: does not follow the previous entry (an entry before it was removed or changed)"
            ),
            Finding::Deleted {
                first,
                last,
                truncated,
            } => {
                let verb = if first == last { "was" } else { "were" };
                let tail = if *truncated { " (truncated)" } else { "" };
                write!(f, "{} {verb} deleted{tail}", range(*first, *last))
            }
            Finding::Rewritten { first, last } => {
                write!(
                    f,
                    "entry {first} was rewritten (its hash differs from the signed checkpoint)"
                )?;
                if last > first {
                    write!(f, ", and so {}", range(first + 1, *last))?;
                    write!(f, " {}", if last - first == 1 { "was" } else { "were" })?;
                }
                Ok(())
            }
            Finding::AnchorMissing { entries, path } => write!(
                f,
                "the audit anchor {} is missing while the database holds {entries} entries: \
                 nothing shows the log was not cut or rewritten",
                path.display()
            ),
            Finding::KeyMissing { path } => write!(
                f,
                "the audit key {} is missing: the anchor's signatures cannot be checked",
                path.display()
            ),
            Finding::Malformed { line } => write!(
                f,
                "anchor line {line} is not a checkpoint (the anchor was tampered with)"
            ),
            Finding::BadSignature { line, id } => write!(
                f,
                "anchor line {line} (entry {id}) has a bad signature (the anchor was tampered with)"
            ),
            Finding::ForeignKey { line, key_id } => write!(
                f,
                "anchor line {line} is signed by another key ({key_id}) (the anchor was tampered with)"
            ),
            Finding::Unkeyed { id } => write!(
                f,
                "entry {id} carries no keyed hash: no relay wrote it (added or rewritten in the database)"
            ),
            Finding::Acknowledged { id, by } => write!(
                f,
                "entry {id} was not written by a relay; acknowledged by an operator in entry {by}"
            ),
            Finding::Replayed { line, seq } => match seq {
                Some(seq) => write!(
                    f,
                    "anchor line {line} repeats sequence number {seq} (a replayed line); not counted"
                ),
                None => write!(
                    f,
                    "anchor line {line} is an old-format line after the new ones began (a replayed line); not counted"
                ),
            },
            Finding::Cut { line, after, seq } => {
                if *after == 0 {
                    write!(f, "anchor line {line} has sequence number {seq}, not 1: the anchor's first lines were removed (cut)")
                } else {
                    write!(f, "anchor line {line} (sequence {seq}) does not continue sequence {after}: lines between were removed (cut)")
                }
            }
            Finding::AnchorStartsLate {
                first_keyed,
                first_checkpoint,
            } => match first_checkpoint {
                Some(c) => write!(
                    f,
                    "the anchor's first checkpoint is of entry {c}, after entry {first_keyed}: the anchor was emptied or cut at its start"
                ),
                None => write!(
                    f,
                    "the anchor holds no checkpoint of the chain's entries (from entry {first_keyed}): it was emptied"
                ),
            },
            Finding::UnsignedTail { count, first, last } => write!(
                f,
                "{count} entries ({}) have no signed checkpoint, more than a crash can leave ({UNANCHORED_GRACE}): the anchor's end was cut",
                range(*first, *last)
            ),
            Finding::TornLine { line, last: true } => write!(
                f,
                "anchor line {line}: torn last line (a crash or full disk while writing); ignored"
            ),
            Finding::TornLine { line, last: false } => write!(
                f,
                "anchor line {line} is incomplete (cut short by a crash or a full disk while written); ignored"
            ),
            Finding::Elsewhere { path, finding } => write!(f, "{}: {finding}", path.display()),
            Finding::Unanchored { count, first, last } => write!(
                f,
                "{count} entr{} ({}) ha{} no signed checkpoint yet: written just before a crash \
                 (at most {UNANCHORED_GRACE} are taken for that), or its checkpoint has not \
                 reached this relay",
                if *count == 1 { "y" } else { "ies" },
                range(*first, *last),
                if *count == 1 { "s" } else { "ve" },
            ),
        }
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Entries in the database.
    pub entries: u64,
    /// The newest entry's hash (the genesis hash when there is none).
    pub head: String,
    /// Entries whose hash matches a valid checkpoint.
    pub anchored: u64,
    /// The anchor key's id and public key (hex), when the key exists.
    pub key: Option<(String, String)>,
    /// Errors first (the anchor's own, then by entry), then warnings.
    pub findings: Vec<Finding>,
}

impl Verification {
    /// The chain holds and matches the anchor (warnings allowed).
    pub fn holds(&self) -> bool {
        !self.findings.iter().any(Finding::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.is_error())
    }
}

type Hash = [u8; 32];

fn decode_hash(text: &str) -> Option<Hash> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// Walk the chain in `store`, then compare it with the anchor at `paths`.
/// Reads only: creates neither key nor anchor.
pub fn verify(store: &Store, paths: &AnchorPaths) -> Result<Verification> {
    verify_with(store, paths, &[])
}

/// [`verify`], with the checkpoints of more anchor files (other relays'
/// `audit-anchor.log`, signed with the same key) counted too: for entries
/// whose checkpoints did not reach this relay's anchor (written while it
/// was down or cut off from NATS, or by an offline admin command run on
/// another relay's folder).
pub fn verify_with(store: &Store, paths: &AnchorPaths, extra: &[PathBuf]) -> Result<Verification> {
    let mut findings = Vec::new();
    let key = read_chain_key(paths)?;
    let walked = walk_chain(store, key.as_ref().map(|k| &k.0), &mut findings)?;
    let rows = &walked.rows;
    let entries = rows.len() as u64;
    let public = key.map(|k| k.1);
    let anchor = match std::fs::read(&paths.log) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", paths.log.display())),
    };
    let mut anchored = 0;
    match (&anchor, &public) {
        (None, _) => {
            if entries > 0 {
                findings.push(Finding::AnchorMissing {
                    entries,
                    path: paths.log.clone(),
                });
            }
        }
        (Some(_), None) => findings.push(Finding::KeyMissing {
            path: paths.key.clone(),
        }),
        (Some(text), Some(public)) => {
            let mut checkpoints = read_anchor(text, public, &mut findings);
            for path in extra {
                let text = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mut theirs = Vec::new();
                checkpoints.extend(read_anchor(&text, public, &mut theirs));
                findings.extend(theirs.into_iter().map(|f| Finding::Elsewhere {
                    path: path.clone(),
                    finding: Box::new(f),
                }));
            }
            let first_checkpoint = checkpoints.iter().map(|c| c.id).min();
            let proven;
            (anchored, proven) = compare(rows, checkpoints, &mut findings);
            // Plain hashes are trusted only where a checkpoint covers them.
            for &id in walked.plain.iter().filter(|&&id| id > proven) {
                findings.push(Finding::Unkeyed { id });
            }
            if let Some(first_keyed) = walked.first_keyed {
                if first_checkpoint.is_none_or(|c| c > first_keyed) {
                    findings.push(Finding::AnchorStartsLate {
                        first_keyed,
                        first_checkpoint,
                    });
                }
            }
        }
    }
    // Rows no relay wrote, which an operator acknowledged afterwards.
    for f in findings.iter_mut() {
        if let Finding::Edited { id } | Finding::Unkeyed { id } = *f {
            if let Some(&(_, _, by)) = walked
                .acknowledged
                .iter()
                .find(|(first, last, by)| (*first..=*last).contains(&id) && *by > id)
            {
                *f = Finding::Acknowledged { id, by };
            }
        }
    }
    findings.sort_by_key(Finding::rank);
    Ok(Verification {
        entries,
        head: walked.head,
        anchored,
        key: public.map(|p| (key_id(&p), hex::encode(p))),
        findings,
    })
}

/// What walking the chain found besides its breaks.
struct Walked {
    /// Every row's `(id, stored hash)` in id order.
    rows: Vec<(u64, Hash)>,
    /// The newest row's hash (the genesis hash when there is none).
    head: String,
    /// Rows with a plain (unkeyed) hash before the first keyed one.
    plain: Vec<u64>,
    /// The first row with a keyed hash.
    first_keyed: Option<u64>,
    /// Ranges of rows acknowledged as not written by a relay: `(first,
    /// last, by entry)`.
    acknowledged: Vec<(u64, u64, u64)>,
}

/// Walk the chain: links and hashes (keyed, or plain before the first
/// keyed row; without the key, links only); breaks go to `findings`.
fn walk_chain(
    store: &Store,
    key: Option<&ChainKey>,
    findings: &mut Vec<Finding>,
) -> Result<Walked> {
    let chain = wait(store.audit_chain())?;
    let mut prev = GENESIS.to_string();
    let mut w = Walked {
        rows: Vec::with_capacity(chain.len()),
        head: String::new(),
        plain: Vec::new(),
        first_keyed: None,
        acknowledged: Vec::new(),
    };
    for stored in chain {
        let id = stored.row.id.max(0) as u64;
        if stored.prev_hash != prev {
            findings.push(Finding::Unlinked { id });
        }
        // Against the row's own prev_hash: one edit is one finding, not a
        // cascade.
        if let Some(key) = key {
            if stored.row.hash(key, &stored.prev_hash) == stored.hash {
                w.first_keyed.get_or_insert(id);
                if stored.row.action == crate::store::audit::ACKNOWLEDGE {
                    w.acknowledged.extend(
                        acknowledged_ranges(&stored.row.args)
                            .into_iter()
                            .map(|(a, b)| (a, b, id)),
                    );
                }
            } else if stored.row.plain_hash(&stored.prev_hash) == stored.hash {
                if w.first_keyed.is_some() {
                    findings.push(Finding::Unkeyed { id });
                } else {
                    w.plain.push(id);
                }
            } else {
                findings.push(Finding::Edited { id });
            }
        }
        // A stored hash that is not even hex matches no checkpoint.
        w.rows
            .push((id, decode_hash(&stored.hash).unwrap_or([0; 32])));
        prev = stored.hash;
    }
    w.head = prev;
    Ok(w)
}

/// The id ranges an acknowledgement's args name: `entries 4..7, 9`.
fn acknowledged_ranges(args: &str) -> Vec<(u64, u64)> {
    let list = args.strip_prefix("entries ").unwrap_or(args);
    list.split(',')
        .filter_map(|r| {
            let r = r.trim();
            match r.split_once("..") {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => r.parse().ok().map(|n| (n, n)),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Checkpoint {
    id: u64,
    hash: Hash,
}

enum Line {
    /// A checkpoint signed with the key; for a v2 line, its sequence
    /// number, its digest and the digest it names as its predecessor's.
    Valid(Checkpoint, Option<(u64, String, String)>),
    Bad(Finding),
}

/// One line checked against the key (`n`: its line number, for findings).
fn check_line(line: &str, public: &[u8], our_id: &str, n: usize) -> Option<Line> {
    let p = parse_line(line)?;
    if p.kid != our_id {
        return Some(Line::Bad(Finding::ForeignKey {
            line: n,
            key_id: p.kid.to_string(),
        }));
    }
    let hash = hex::encode(p.cp.hash);
    let msg = match (p.seq, &p.prev) {
        (Some(seq), Some(prev)) => signed_message(seq, p.cp.id, &hash, prev),
        _ => signed_message_v1(p.cp.id, &hash),
    };
    let key = UnparsedPublicKey::new(&ED25519, public);
    Some(match key.verify(msg.as_bytes(), &p.sig) {
        Ok(()) => Line::Valid(
            p.cp,
            p.seq
                .map(|seq| (seq, line_digest(line), p.prev.unwrap_or_default())),
        ),
        Err(_) => Line::Bad(Finding::BadSignature {
            line: n,
            id: p.cp.id,
        }),
    })
}

/// Parse and check every line; the valid checkpoints, problems to
/// `findings`. The v2 lines must continue each other from sequence 1
/// (each naming its predecessor's digest): a line missing before one is a
/// cut, a sequence number not above the last one's a replay (not counted).
fn read_anchor(text: &[u8], public: &[u8], findings: &mut Vec<Finding>) -> Vec<Checkpoint> {
    let our_id = key_id(public);
    let text = String::from_utf8_lossy(text);
    let ends_whole = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    // The last v2 line kept: sequence number, digest.
    let mut last: Option<(u64, String)> = None;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = match check_line(line, public, &our_id, n) {
            Some(p) => Some(p),
            // A torn line followed by a whole one on the same line (a
            // writer appended before the tear was ended).
            None => ["v2 ", "v1 "]
                .iter()
                .filter_map(|v| line.rfind(v))
                .max()
                .filter(|&at| at > 0)
                .and_then(|at| {
                    let rest = check_line(&line[at..], public, &our_id, n)?;
                    findings.push(Finding::TornLine {
                        line: n,
                        last: false,
                    });
                    Some(rest)
                }),
        };
        match parsed {
            Some(Line::Valid(cp, None)) => {
                if last.is_some() {
                    // Relays write v2 lines only, once they have begun.
                    findings.push(Finding::Replayed { line: n, seq: None });
                } else {
                    out.push(cp);
                }
            }
            Some(Line::Valid(cp, Some((seq, digest, prev)))) => {
                let (want_seq, want_prev) = match &last {
                    Some((s, d)) => (s + 1, d.clone()),
                    None => (1, GENESIS.to_string()),
                };
                if last.as_ref().is_some_and(|(s, _)| seq <= *s) {
                    findings.push(Finding::Replayed {
                        line: n,
                        seq: Some(seq),
                    });
                    continue;
                }
                if seq != want_seq || prev != want_prev {
                    findings.push(Finding::Cut {
                        line: n,
                        after: last.as_ref().map_or(0, |l| l.0),
                        seq,
                    });
                }
                last = Some((seq, digest));
                out.push(cp);
            }
            Some(Line::Bad(f)) => findings.push(f),
            None if looks_torn(line) || (i + 1 == lines.len() && !ends_whole) => {
                findings.push(Finding::TornLine {
                    line: n,
                    last: lines[i + 1..].iter().all(|l| l.trim().is_empty()),
                })
            }
            None => findings.push(Finding::Malformed { line: n }),
        }
    }
    out
}

/// A checkpoint line's fields.
struct Parsed<'a> {
    cp: Checkpoint,
    /// v2 only.
    seq: Option<u64>,
    prev: Option<String>,
    kid: &'a str,
    sig: Vec<u8>,
}

/// `v2 SEQ ID HASH PREV KEYID SIG` (or the older `v1 ID HASH KEYID SIG`),
/// each field well-formed.
fn parse_line(line: &str) -> Option<Parsed<'_>> {
    let fields: Vec<&str> = line.split(' ').collect();
    let hex_of = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let number = |s: &str| s.parse::<u64>().ok().filter(|n| *n > 0);
    let (seq, id, hash, prev, kid, sig) = match fields[..] {
        ["v2", seq, id, hash, prev, kid, sig] => {
            (Some(number(seq)?), id, hash, Some(prev), kid, sig)
        }
        ["v1", id, hash, kid, sig] => (None, id, hash, None, kid, sig),
        _ => return None,
    };
    if !hex_of(hash, 64)
        || !hex_of(kid, 16)
        || !hex_of(sig, 128)
        || prev.is_some_and(|p| !hex_of(p, 64))
    {
        return None;
    }
    Some(Parsed {
        cp: Checkpoint {
            id: number(id)?,
            hash: decode_hash(hash)?,
        },
        seq,
        prev: prev.map(str::to_string),
        kid,
        sig: hex::decode(sig).ok()?,
    })
}

/// A proper prefix of a checkpoint line: what a crash mid-write leaves.
fn looks_torn(line: &str) -> bool {
    let fields: Vec<&str> = line.split(' ').collect();
    let max: &[usize] = match fields.first() {
        Some(f) if "v1".starts_with(f) && fields.len() <= 5 && *f != "v" => &[2, 20, 64, 16, 128],
        _ => &[2, 20, 20, 64, 64, 16, 128],
    };
    fields.len() <= max.len()
        && fields.iter().enumerate().all(|(i, f)| {
            f.len() <= max[i]
                && match i {
                    0 => "v2".starts_with(f) || "v1".starts_with(f),
                    1 => f.bytes().all(|b| b.is_ascii_digit()),
                    2 if max.len() == 7 => f.bytes().all(|b| b.is_ascii_digit()),
                    _ => f.bytes().all(|b| b.is_ascii_hexdigit()),
                }
        })
}

/// Match the rows (in id order) with the valid checkpoints; the number of
/// anchored entries, problems to `findings`.
fn compare(
    rows: &[(u64, Hash)],
    mut cps: Vec<Checkpoint>,
    findings: &mut Vec<Finding>,
) -> (u64, u64) {
    cps.sort_unstable();
    cps.dedup();
    let mut missing: Vec<u64> = Vec::new();
    let mut rewritten: Vec<u64> = Vec::new();
    let mut unanchored: Vec<u64> = Vec::new();
    let mut anchored = 0;
    let mut proven = 0;
    let mut i = 0;
    // Runs of missing ids are split where a row lies between them.
    let mut deleted: Vec<(u64, u64)> = Vec::new();
    let mut flush = |missing: &mut Vec<u64>| {
        missing.dedup();
        for (first, last) in runs(missing) {
            deleted.push((first, last));
        }
        missing.clear();
    };
    for &(id, hash) in rows {
        while i < cps.len() && cps[i].id < id {
            missing.push(cps[i].id);
            i += 1;
        }
        flush(&mut missing);
        let (mut matched, mut differs) = (false, false);
        while i < cps.len() && cps[i].id == id {
            if cps[i].hash == hash {
                matched = true;
            } else {
                differs = true;
            }
            i += 1;
        }
        if differs {
            rewritten.push(id);
        } else if matched {
            anchored += 1;
            proven = id;
        } else {
            unanchored.push(id);
        }
    }
    // A checkpoint proves its entry and, the chain being whole (walked
    // before this), every entry before it: concurrent appends share one.
    let shared = unanchored.iter().take_while(|&&u| u < proven).count();
    unanchored.drain(..shared);
    anchored += shared as u64;
    let newest = rows.last().map(|r| r.0).unwrap_or(0);
    missing.extend(cps[i..].iter().map(|c| c.id));
    flush(&mut missing);
    for (first, last) in deleted {
        findings.push(Finding::Deleted {
            first,
            last,
            truncated: first > newest,
        });
    }
    for (first, last) in runs(&rewritten) {
        findings.push(Finding::Rewritten { first, last });
    }
    if let (Some(&first), Some(&last)) = (unanchored.first(), unanchored.last()) {
        let count = unanchored.len() as u64;
        findings.push(if count > UNANCHORED_GRACE {
            Finding::UnsignedTail { count, first, last }
        } else {
            Finding::Unanchored { count, first, last }
        });
    }
    (anchored, proven)
}

/// Runs of consecutive ids in a sorted list, as `(first, last)`.
fn runs(ids: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => out.push((id, id)),
        }
    }
    out
}

// ---- offline admin commands ----

/// Who runs an offline admin command: `admin (local user NAME, uid N)`,
/// NAME from `$USER` or `$LOGNAME` (which the user can set), the uid from
/// the process (which they cannot).
pub fn local_admin() -> String {
    use std::os::unix::fs::MetadataExt;
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty());
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    match (user, uid) {
        (Some(u), Some(uid)) => format!("admin (local user {u}, uid {uid})"),
        (Some(u), None) => format!("admin (local user {u})"),
        (None, Some(uid)) => format!("admin (local user uid {uid})"),
        (None, None) => "admin (local user unknown)".into(),
    }
}

/// Audit an offline admin command: `Ok(outcome)` or the error it ended
/// with. Not being able to write the entry is a warning on stderr, not an
/// error: the command's effect has already happened.
pub fn admin_command(
    store: &Store,
    paths: &AnchorPaths,
    action: &str,
    agent: Option<&str>,
    args: &str,
    outcome: Result<String, &anyhow::Error>,
) {
    let outcome = match outcome {
        Ok(text) => text,
        Err(e) => format!("error: {e:#}"),
    };
    let entry = AuditEntry {
        who: local_admin(),
        role: None,
        agent: agent.map(str::to_string),
        action: action.into(),
        args: args.into(),
        outcome,
    };
    match wait(record_checkpoint(store, paths, entry)) {
        Ok(None) => {}
        Ok(Some(line)) => {
            if let Some(link) = &paths.cluster {
                if let Err(e) = crate::cluster::nats::publish_checkpoint_blocking(link, &line) {
                    eprintln!(
                        "warning: the other relays did not get the audit checkpoint of `{action}` \
                         ({e:#}); `audit verify --anchor` with this relay's anchor counts it there"
                    );
                }
            }
        }
        Err(e) => eprintln!("warning: `{action}` was not audited: {e:#}"),
    }
}

/// `audit acknowledge`: an admin, having looked at `audit verify`, records
/// that the chain holds rows no relay wrote (or lost rows a relay wrote),
/// so that the relays append again. The entry (action
/// [`crate::store::audit::ACKNOWLEDGE`], keyed: only a key holder can write
/// it) names the rows (`entries 4..7, 9`) and what the relays' check
/// found; relays accept the chain from it on, and `audit verify` reports
/// the rows it names as acknowledged (warnings) — deletions and rewrites
/// stay errors. What was acknowledged, for the command to print.
pub fn acknowledge(store: &Store, paths: &AnchorPaths) -> Result<String> {
    let v = verify(store, paths)?;
    let mut ids: Vec<u64> = v
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Edited { id } | Finding::Unkeyed { id } => Some(*id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let tail = wait(check_tail(store, paths)).err();
    if ids.is_empty() && tail.is_none() {
        bail!("nothing to acknowledge: every entry after this relay's last checkpoint was written by a relay");
    }
    let args = format!(
        "entries {}",
        runs(&ids)
            .iter()
            .map(|(a, b)| if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let outcome = match &tail {
        Some(e) => format!("acknowledged: {e:#}"),
        None => format!("acknowledged: {} entries no relay wrote", ids.len()),
    };
    let entry = AuditEntry {
        who: local_admin(),
        role: None,
        agent: None,
        action: crate::store::audit::ACKNOWLEDGE.into(),
        args: args.clone(),
        outcome: outcome.clone(),
    };
    if let Some(line) = wait(record_checkpoint(store, paths, entry))? {
        if let Some(link) = &paths.cluster {
            if let Err(e) = crate::cluster::nats::publish_checkpoint_blocking(link, &line) {
                eprintln!("warning: the other relays did not get the checkpoint of the acknowledgement ({e:#})");
            }
        }
    }
    Ok(format!("{args}: {outcome}"))
}

// ---- refused connections ----

/// Audits refused connections (unknown or revoked certificate, no identity)
/// without letting a flood of them flood the log: at most one entry per
/// identity per window; the next entry after the window counts the ones
/// left out.
pub struct RefusalLog {
    window: Duration,
    slots: Mutex<Slots>,
}

struct Slots {
    map: HashMap<String, Slot>,
    /// No expired slot can be swept before this.
    no_sweep_before: Option<Instant>,
    /// Sweeps so far (what the tests look at).
    sweeps: u64,
}

struct Slot {
    logged: Instant,
    logged_unix: i64,
    suppressed: u64,
}

/// Identities tracked at once; past it, expired ones are forgotten (with
/// their count of left-out refusals) and new ones share one slot.
const MAX_SLOTS: usize = 4096;
const SHARED_SLOT: &str = "\0others";

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(RefusalLog::WINDOW)
    }
}

impl RefusalLog {
    /// The default window: one entry per identity per minute.
    pub const WINDOW: Duration = Duration::from_secs(60);

    pub fn new(window: Duration) -> RefusalLog {
        RefusalLog {
            window,
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                no_sweep_before: None,
                sweeps: 0,
            }),
        }
    }

    /// The slot of a refusal of `identity` at `now`: `None` when it is
    /// left out (within its window), else what the entry must say was
    /// left out before it (count, since when).
    fn take(&self, identity: &str, now: Instant) -> Option<(u64, i64)> {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slots = &mut *guard;
        let full = |s: &Slots| s.map.len() >= MAX_SLOTS && !s.map.contains_key(identity);
        if full(slots) && slots.no_sweep_before.is_none_or(|t| now >= t) {
            slots
                .map
                .retain(|_, s| now.duration_since(s.logged) < self.window);
            slots.sweeps += 1;
            // No slot expires before the oldest one kept: until then a
            // sweep would free nothing, and a flood of new identities
            // made every refusal scan all MAX_SLOTS slots.
            slots.no_sweep_before = slots.map.values().map(|s| s.logged + self.window).min();
        }
        let key = if full(slots) { SHARED_SLOT } else { identity };
        let fresh = Slot {
            logged: now,
            logged_unix: crate::clock::unix_now(),
            suppressed: 0,
        };
        match slots.map.get_mut(key) {
            Some(s) if now.duration_since(s.logged) < self.window => {
                s.suppressed += 1;
                None
            }
            Some(s) => {
                let left_out = (s.suppressed, s.logged_unix);
                *s = fresh;
                Some(left_out)
            }
            None => {
                slots.map.insert(key.to_string(), fresh);
                Some((0, 0))
            }
        }
    }

    /// Audit that a connection from `remote` presenting `identity` (e.g.
    /// `agent pc1`, `certificate 1a2b (unknown)`, `no client certificate`)
    /// was refused for `reason`. `Ok(true)` when an entry was written,
    /// `Ok(false)` when it was left out (counted in the next one).
    pub async fn record(
        &self,
        store: &Store,
        paths: &AnchorPaths,
        remote: SocketAddr,
        identity: &str,
        reason: &str,
    ) -> Result<bool> {
        let line = self
            .record_checkpoint(store, paths, remote, identity, reason)
            .await?;
        Ok(line.is_some())
    }

    /// [`RefusalLog::record`]: `None` when left out, else the checkpoint
    /// line written for the entry (as [`record_checkpoint`]).
    pub async fn record_checkpoint(
        &self,
        store: &Store,
        paths: &AnchorPaths,
        remote: SocketAddr,
        identity: &str,
        reason: &str,
    ) -> Result<Option<Option<String>>> {
        let Some(left_out) = self.take(identity, Instant::now()) else {
            return Ok(None);
        };
        let outcome = match left_out {
            (0, _) => format!("refused: {reason}"),
            (n, since) => format!(
                "refused: {reason} ({n} more refused connection{} since {} not logged one by one)",
                if n == 1 { "" } else { "s" },
                crate::clock::rfc3339(since)
            ),
        };
        let entry = AuditEntry {
            who: identity.into(),
            role: None,
            agent: None,
            action: "connect".into(),
            args: format!("from {remote}"),
            outcome,
        };
        Ok(Some(record_checkpoint(store, paths, entry).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tx::AuditRow;
    use rusqlite::{params, Connection};
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("relay.db")).unwrap();
        (dir, s)
    }

    fn paths_of(s: &Store) -> AnchorPaths {
        let db = s.describe();
        let db = Path::new(db.strip_prefix("sqlite:").unwrap());
        AnchorPaths::in_dir(db.parent().unwrap())
    }

    fn entry(who: &str) -> AuditEntry {
        AuditEntry {
            who: who.into(),
            role: None,
            agent: None,
            action: "list agents".into(),
            args: String::new(),
            outcome: "ok".into(),
        }
    }

    fn append(s: &Store, who: &str, i: usize) {
        let entry = AuditEntry {
            who: who.into(),
            role: Some("admin".into()),
            agent: Some("pc1".into()),
            action: "run check disk".into(),
            args: format!("/{i}"),
            outcome: "ok".into(),
        };
        record_blocking(s, &paths_of(s), entry).unwrap();
    }

    trait Verify {
        fn verify_audit(&self) -> Result<Verification>;
        fn records(
            &self,
            agent: Option<&str>,
            limit: Option<u32>,
        ) -> Vec<firstline_proto::AuditRecord>;
    }

    impl Verify for Store {
        fn verify_audit(&self) -> Result<Verification> {
            verify(self, &paths_of(self))
        }
        fn records(
            &self,
            agent: Option<&str>,
            limit: Option<u32>,
        ) -> Vec<firstline_proto::AuditRecord> {
            wait(self.audit_records(agent, limit)).unwrap()
        }
    }

    fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
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

    fn filled(n: usize) -> (tempfile::TempDir, Store, Connection) {
        let (d, s) = store();
        for i in 0..n {
            append(&s, "alice", i);
        }
        let raw = Connection::open(d.path().join("relay.db")).unwrap();
        (d, s, raw)
    }

    fn errors(v: &Verification) -> Vec<Finding> {
        v.errors().cloned().collect()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// What an attacker with the database does after editing row `from`:
    /// recompute every hash from there with the (keyless) chain hash.
    fn recompute_from(raw: &Connection, from: i64) {
        let mut prev: String = raw
            .query_row("SELECT prev_hash FROM audit WHERE id = ?1", [from], |r| {
                r.get(0)
            })
            .unwrap();
        let rows: Vec<AuditRow> = raw
            .prepare(
                "SELECT id, at, who, role, agent, action, args, outcome FROM audit WHERE id >= ?1 ORDER BY id",
            )
            .unwrap()
            .query_map([from], read_row)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for row in rows {
            let hash = row.plain_hash(&prev);
            raw.execute(
                "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE id = ?1",
                params![row.id, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
    }

    #[test]
    fn audit_append_and_verify_hold() {
        let (d, s, _raw) = filled(5);
        let v = s.verify_audit().unwrap();
        assert!(v.holds(), "{:?}", v.findings);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert_eq!((v.entries, v.anchored, v.head.len()), (5, 5, 64));
        let paths = AnchorPaths::in_dir(d.path());
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.log), 0o600);
        let text = std::fs::read_to_string(&paths.log).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().all(|l| l.starts_with("v2 ")));
        // Each line continues the one before: sequence 1, 2, 3…
        let seqs: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(seqs, ["1", "2", "3", "4", "5"]);
        let recs = s.records(Some("pc1"), Some(2));
        assert_eq!(recs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(v.key.as_ref().unwrap().1.len(), 64);
    }

    /// Appends committed together share a checkpoint; each still returns
    /// covered, and `verify` finds every entry anchored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_concurrent_appends_share_checkpoints() {
        let (d, s) = store();
        let s = Arc::new(s);
        let paths = paths_of(&s);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (s, paths) = (s.clone(), paths.clone());
            tasks.spawn(async move {
                let entry = AuditEntry {
                    who: "alice".into(),
                    role: Some("admin".into()),
                    agent: Some(format!("pc{i}")),
                    action: "run".into(),
                    args: "disk /".into(),
                    outcome: "ok".into(),
                };
                record_checkpoint(&s, &paths, entry).await.unwrap();
                // Returned: a checkpoint covering this entry is on disk.
                std::fs::read_to_string(&paths.log).unwrap().lines().count()
            });
        }
        while let Some(lines) = tasks.join_next().await {
            assert!(lines.unwrap() >= 1);
        }
        let v = s.verify_audit().unwrap();
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert_eq!((v.entries, v.anchored), (200, 200));
        let lines = std::fs::read_to_string(d.path().join(ANCHOR_FILE)).unwrap();
        let lines = lines.lines().count();
        assert!(
            lines < 200,
            "{lines} checkpoints for 200 entries committed in batches"
        );
    }

    #[test]
    fn audit_empty_log_without_anchor_holds() {
        let (_d, s) = store();
        let v = s.verify_audit().unwrap();
        assert!(v.holds() && v.findings.is_empty() && v.entries == 0);
    }

    #[test]
    fn audit_deleting_the_newest_is_truncation() {
        let (_d, s, raw) = filled(5);
        raw.execute("DELETE FROM audit WHERE id >= 4", []).unwrap();
        let v = s.verify_audit().unwrap();
        assert!(!v.holds());
        let want = Finding::Deleted {
            first: 4,
            last: 5,
            truncated: true,
        };
        assert_eq!(errors(&v), vec![want.clone()]);
        assert_eq!(want.to_string(), "entries 4..5 were deleted (truncated)");
    }

    #[test]
    fn audit_deleting_one_in_the_middle_is_told() {
        let (_d, s, raw) = filled(5);
        raw.execute("DELETE FROM audit WHERE id = 3", []).unwrap();
        let v = s.verify_audit().unwrap();
        assert_eq!(
            errors(&v),
            vec![
                Finding::Deleted {
                    first: 3,
                    last: 3,
                    truncated: false
                },
                Finding::Unlinked { id: 4 },
            ]
        );
    }

    #[test]
    fn audit_edited_row_is_edited() {
        let (_d, s, raw) = filled(4);
        raw.execute("UPDATE audit SET outcome = 'forbidden' WHERE id = 2", [])
            .unwrap();
        let v = s.verify_audit().unwrap();
        assert_eq!(errors(&v), vec![Finding::Edited { id: 2 }]);
        assert_eq!(
            v.findings[0].to_string(),
            "entry 2: its content does not match its hash (edited)"
        );
        raw.execute("UPDATE audit SET outcome = 'ok' WHERE id = 2", [])
            .unwrap();
        assert!(s.verify_audit().unwrap().holds());
    }

    #[test]
    fn audit_recomputed_chain_is_rewritten() {
        let (_d, s, raw) = filled(5);
        raw.execute("UPDATE audit SET who = 'mallory' WHERE id = 2", [])
            .unwrap();
        recompute_from(&raw, 2);
        let v = s.verify_audit().unwrap();
        let mut want = vec![Finding::Rewritten { first: 2, last: 5 }];
        want.extend((2..=5).map(|id| Finding::Unkeyed { id }));
        let mut got = errors(&v);
        got.sort_by_key(|f| format!("{f:?}"));
        want.sort_by_key(|f| format!("{f:?}"));
        assert_eq!(got, want);
        let text = v
            .findings
            .iter()
            .find(|f| matches!(f, Finding::Rewritten { .. }))
            .unwrap()
            .to_string();
        assert!(
            text.starts_with("entry 2 was rewritten (its hash differs from the signed checkpoint)"),
            "{text}"
        );
        // The relay appends nothing after rows it did not write.
        let e = record_blocking(&s, &paths_of(&s), entry("alice")).unwrap_err();
        assert!(is_tampered(&e), "{e:#}");
        // Truncate: the relay notices (the row it last wrote is gone) and
        // appends nothing; verify tells the truncation.
        let (_d, s, raw) = filled(5);
        raw.execute("DELETE FROM audit WHERE id >= 4", []).unwrap();
        drop(raw);
        let e = record_blocking(&s, &paths_of(&s), entry("mallory")).unwrap_err();
        assert!(is_tampered(&e), "{e:#}");
        assert!(
            format!("{e:#}").contains("is gone: the log was cut"),
            "{e:#}"
        );
        let v = s.verify_audit().unwrap();
        assert_eq!(
            errors(&v),
            vec![Finding::Deleted {
                first: 4,
                last: 5,
                truncated: true
            }]
        );
    }

    #[test]
    fn audit_tampered_anchor_line_is_a_bad_signature() {
        let (d, s, _raw) = filled(3);
        let path = AnchorPaths::in_dir(d.path()).log;
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Point checkpoint 2 at another hash (still well-formed).
        let fields: Vec<&str> = lines[1].split(' ').collect();
        let other = "ab".repeat(32);
        let mut changed = fields.clone();
        changed[3] = &other;
        lines[1] = changed.join(" ");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let v = s.verify_audit().unwrap();
        // Line 3 no longer continues a valid line either.
        assert_eq!(
            errors(&v),
            vec![
                Finding::Cut {
                    line: 3,
                    after: 1,
                    seq: 3
                },
                Finding::BadSignature { line: 2, id: 2 }
            ]
        );
        // Its entry has no valid checkpoint of its own left, but
        // checkpoint 3 proves it (the chain up to 3 is whole).
        assert!(!v
            .warnings()
            .any(|w| matches!(w, Finding::Unanchored { .. })));
        assert_eq!(v.anchored, 3);

        // A line signed with a key of the attacker's own.
        let (d2, s2, _raw2) = filled(1);
        let other_log = std::fs::read_to_string(AnchorPaths::in_dir(d2.path()).log).unwrap();
        std::fs::write(&path, text.clone() + &other_log).unwrap();
        drop(s2);
        let v = s.verify_audit().unwrap();
        assert!(
            matches!(errors(&v)[..], [Finding::ForeignKey { line: 4, .. }]),
            "{:?}",
            v.findings
        );
        // Garbage.
        std::fs::write(&path, text + "hello there\n").unwrap();
        let v = s.verify_audit().unwrap();
        assert_eq!(errors(&v), vec![Finding::Malformed { line: 4 }]);
    }

    #[test]
    fn audit_missing_anchor_or_key_is_an_error() {
        let (d, s, _raw) = filled(2);
        let paths = AnchorPaths::in_dir(d.path());
        std::fs::rename(&paths.key, d.path().join("key.bak")).unwrap();
        assert!(matches!(
            errors(&s.verify_audit().unwrap())[..],
            [Finding::KeyMissing { .. }]
        ));
        std::fs::remove_file(&paths.log).unwrap();
        assert!(matches!(
            errors(&s.verify_audit().unwrap())[..],
            [Finding::AnchorMissing { entries: 2, .. }]
        ));
    }

    #[test]
    fn audit_unanchored_and_torn_lines_are_warnings() {
        let (d, s, _raw) = filled(3);
        let path = AnchorPaths::in_dir(d.path()).log;
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        // The last checkpoint was lost, and a crash left half a line.
        let torn = &text.lines().nth(2).unwrap()[..100];
        std::fs::write(&path, kept.join("\n") + "\n" + torn).unwrap();
        let v = s.verify_audit().unwrap();
        assert!(v.holds(), "{:?}", v.findings);
        assert_eq!(
            v.findings,
            vec![
                Finding::TornLine {
                    line: 3,
                    last: true
                },
                Finding::Unanchored {
                    count: 1,
                    first: 3,
                    last: 3
                }
            ]
        );
        assert_eq!(
            v.findings[0].to_string(),
            "anchor line 3: torn last line (a crash or full disk while writing); ignored"
        );
        // This process's signer is loaded: the next line glues onto the
        // torn one, and is still read.
        append(&s, "alice", 4);
        let v = s.verify_audit().unwrap();
        assert!(v.holds(), "{:?}", v.findings);
        // Checkpoint 4 proves entry 3 too.
        assert_eq!(v.anchored, 4);
        assert!(v.findings.contains(&Finding::TornLine {
            line: 3,
            last: false
        }));
    }

    #[test]
    fn audit_a_new_process_ends_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(ANCHOR_FILE);
        std::fs::write(&log, "v1 1 abc").unwrap();
        end_torn_line(&log).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "v1 1 abc\n");
        end_torn_line(&log).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "v1 1 abc\n");
    }

    #[test]
    fn audit_concurrent_writers_do_not_fork() {
        let (d, s) = store();
        append(&s, "first", 0);
        let db = d.path().join("relay.db");
        // Two connections, as `serve` and an admin command have.
        std::thread::scope(|scope| {
            for who in ["serve", "admin"] {
                let db = db.clone();
                scope.spawn(move || {
                    let s = Store::open_sqlite(&db).unwrap();
                    for i in 0..40 {
                        append(&s, who, i);
                    }
                });
            }
        });
        let v = s.verify_audit().unwrap();
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert_eq!((v.entries, v.anchored), (81, 81));
        let ids: Vec<u64> = s.records(None, None).iter().map(|r| r.id).collect();
        assert_eq!(ids, (1..=81).collect::<Vec<_>>());
    }

    #[test]
    fn audit_refusals_are_rate_limited_per_identity() {
        let (_d, s) = store();
        let log = RefusalLog::new(Duration::from_millis(300));
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let revoked = "agent pc9 has been revoked";
        let p = paths_of(&s);
        let rec = |who: &str, why: &str| wait(log.record(&s, &p, remote, who, why)).unwrap();
        assert!(rec("agent pc9", revoked));
        for _ in 0..4 {
            assert!(!rec("agent pc9", revoked));
        }
        assert!(rec("operator eve (admin)", "unknown"));
        std::thread::sleep(Duration::from_millis(350));
        assert!(rec("agent pc9", revoked));
        let recs = s.records(None, None);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (
                recs[0].who.as_str(),
                recs[0].action.as_str(),
                recs[0].args.as_str()
            ),
            ("agent pc9", "connect", "from 192.0.2.7:5000")
        );
        assert_eq!(recs[0].outcome, format!("refused: {revoked}"));
        assert!(
            recs[2]
                .outcome
                .contains("(4 more refused connections since"),
            "{}",
            recs[2].outcome
        );
        assert!(s.verify_audit().unwrap().holds());
    }

    #[test]
    fn a_flood_of_new_identities_does_not_sweep_the_refusal_slots_each_time() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_SLOTS + 5_000 {
            log.take(&format!("certificate {i:x} (unknown)"), t0);
        }
        let sweeps = |log: &RefusalLog| log.slots.lock().unwrap().sweeps;
        assert!(
            sweeps(&log) <= 1,
            "{} sweeps: every refusal of a new identity scanned all slots",
            sweeps(&log)
        );
        // Past the window the slots are free again for new identities.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(log.take("agent fresh", later), Some((0, 0)));
        let slots = log.slots.lock().unwrap();
        assert!(
            slots.map.contains_key("agent fresh"),
            "not given its own slot"
        );
        assert!(
            slots.map.len() < MAX_SLOTS,
            "{} slots kept",
            slots.map.len()
        );
    }

    #[test]
    fn audit_admin_commands_name_the_local_user() {
        let (_d, s) = store();
        let p = paths_of(&s);
        admin_command(&s, &p, "token create", None, "id 1234abcd", Ok("ok".into()));
        let e = anyhow!("no agent named `x` at this relay");
        admin_command(&s, &p, "agent revoke", Some("x"), "x", Err(&e));
        let recs = s.records(None, None);
        assert!(
            recs[0].who.starts_with("admin (local user "),
            "{}",
            recs[0].who
        );
        assert_eq!(recs[0].role, None);
        assert_eq!(recs[1].agent.as_deref(), Some("x"));
        assert_eq!(recs[1].outcome, "error: no agent named `x` at this relay");
    }

    #[test]
    fn audit_relays_sharing_a_key_keep_each_others_checkpoints() {
        // Relay A and relay B (joined: A's key copied) on one store.
        let (d, s) = store();
        let a = paths_of(&s);
        let b_dir = tempfile::tempdir().unwrap();
        let b = AnchorPaths::in_dir(b_dir.path());
        append(&s, "tina", 0); // creates A's key
        std::fs::copy(&a.key, &b.key).unwrap();
        let entry = |i: usize| AuditEntry {
            who: "tom".into(),
            role: None,
            agent: None,
            action: "list agents".into(),
            args: format!("{i}"),
            outcome: "ok".into(),
        };
        // B writes two entries; A keeps the first's checkpoint (sent over
        // NATS), the second's never reached it.
        let line1 = wait(record_checkpoint(&s, &b, entry(1))).unwrap().unwrap();
        let _line2 = wait(record_checkpoint(&s, &b, entry(2))).unwrap();
        assert_eq!(keep_checkpoint(&a, &line1).unwrap(), Kept::Kept);
        // Received again (replayed, or late): not kept twice.
        assert_eq!(keep_checkpoint(&a, &line1).unwrap(), Kept::NotNew);
        let v = verify(&s, &a).unwrap();
        assert!(v.holds(), "{:?}", v.findings);
        assert_eq!((v.entries, v.anchored), (3, 2));
        assert!(matches!(
            v.findings[..],
            [Finding::Unanchored { first: 3, .. }]
        ));
        // B's anchor given too: all anchored.
        let v = verify_with(&s, &a, std::slice::from_ref(&b.log)).unwrap();
        assert_eq!((v.entries, v.anchored), (3, 3), "{:?}", v.findings);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        // A line signed by another key, or tampered with, is not kept.
        let (_other, s2) = store();
        let c = paths_of(&s2);
        let foreign = wait(record_checkpoint(&s2, &c, entry(3))).unwrap().unwrap();
        assert_eq!(keep_checkpoint(&a, &foreign).unwrap(), Kept::Unsigned);
        let forged = line1.replacen(" 2 ", " 9 ", 1);
        assert_ne!(forged, line1);
        assert_eq!(keep_checkpoint(&a, &forged).unwrap(), Kept::Unsigned);
        assert_eq!(keep_checkpoint(&a, "v1 garbage").unwrap(), Kept::Unsigned);
        // Truncation is still told, with every anchor given.
        let raw = Connection::open(d.path().join("relay.db")).unwrap();
        let n = raw.execute("DELETE FROM audit WHERE id >= 3", []).unwrap();
        assert_eq!(n, 1);
        let v = verify_with(&s, &a, std::slice::from_ref(&b.log)).unwrap();
        assert!(!v.holds(), "{:?}", v.findings);
        assert!(
            v.errors().any(|f| matches!(
                f,
                Finding::Deleted {
                    truncated: true,
                    ..
                }
            )),
            "{:?}",
            v.findings
        );
        // A bad line in another relay's anchor is named with its file.
        std::fs::write(&b.log, "nonsense\n").unwrap();
        let v = verify_with(&s, &a, std::slice::from_ref(&b.log)).unwrap();
        assert!(v
            .errors()
            .any(|f| f.to_string().starts_with(&b.log.display().to_string())));
    }

    /// A row appended in the database with a recomputed plain SHA-256
    /// hash: the relay appends nothing after it, `verify` tells it, and an
    /// admin's acknowledgement lets the relay append again.
    #[test]
    fn audit_a_forged_row_stops_appends_until_acknowledged() {
        let (_d, s, raw) = filled(3);
        let head: String = raw
            .query_row("SELECT hash FROM audit WHERE id = 3", [], |r| r.get(0))
            .unwrap();
        let forged = AuditRow {
            id: 4,
            at: 0,
            who: "mallory".into(),
            role: Some("admin".into()),
            agent: None,
            action: "token create".into(),
            args: String::new(),
            outcome: "ok".into(),
        };
        raw.execute(
            "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash)
             VALUES (4, 0, 'mallory', 'admin', NULL, 'token create', '', 'ok', ?1, ?2)",
            params![head, forged.plain_hash(&head)],
        )
        .unwrap();
        let e = record_blocking(&s, &paths_of(&s), entry("alice")).unwrap_err();
        assert!(is_tampered(&e), "{e:#}");
        assert!(
            format!("{e:#}").contains("entry 4 carries no valid keyed hash"),
            "{e:#}"
        );
        let v = s.verify_audit().unwrap();
        assert_eq!(errors(&v), vec![Finding::Unkeyed { id: 4 }]);
        assert_eq!(v.entries, 4);
        // Acknowledged: the relay appends again; verify holds, with the row
        // reported.
        let said = acknowledge(&s, &paths_of(&s)).unwrap();
        assert!(said.starts_with("entries 4:"), "{said}");
        append(&s, "alice", 6);
        let v = s.verify_audit().unwrap();
        assert!(v.holds(), "{:?}", v.findings);
        assert_eq!(v.findings, vec![Finding::Acknowledged { id: 4, by: 5 }]);
        assert!(acknowledge(&s, &paths_of(&s)).is_err(), "nothing left");
        // A forged acknowledgement (plain hash) forgives nothing.
        let (_d, s, raw) = filled(2);
        let head: String = raw
            .query_row("SELECT hash FROM audit WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        let ack = AuditRow {
            id: 3,
            at: 0,
            who: "mallory".into(),
            role: None,
            agent: None,
            action: crate::store::audit::ACKNOWLEDGE.into(),
            args: "entries 3".into(),
            outcome: "ok".into(),
        };
        raw.execute(
            "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash)
             VALUES (3, 0, 'mallory', NULL, NULL, ?1, 'entries 3', 'ok', ?2, ?3)",
            params![ack.action, head, ack.plain_hash(&head)],
        )
        .unwrap();
        let e = record_blocking(&s, &paths_of(&s), entry("alice")).unwrap_err();
        assert!(is_tampered(&e), "{e:#}");
        assert_eq!(
            errors(&s.verify_audit().unwrap()),
            vec![Finding::Unkeyed { id: 3 }]
        );
    }

    #[test]
    fn audit_an_emptied_or_cut_anchor_is_an_error() {
        let (d, s, _raw) = filled(4);
        let log = AnchorPaths::in_dir(d.path()).log;
        let text = std::fs::read_to_string(&log).unwrap();
        // Emptied.
        std::fs::write(&log, "").unwrap();
        let v = s.verify_audit().unwrap();
        assert!(
            errors(&v).contains(&Finding::AnchorStartsLate {
                first_keyed: 1,
                first_checkpoint: None
            }),
            "{:?}",
            v.findings
        );
        // Emptied, and the relay wrote on: its new anchor starts late.
        append(&s, "alice", 5);
        let v = s.verify_audit().unwrap();
        assert!(
            errors(&v).contains(&Finding::AnchorStartsLate {
                first_keyed: 1,
                first_checkpoint: Some(5)
            }),
            "{:?}",
            v.findings
        );
        // Cut in the middle.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&log, [lines[0], lines[1], lines[3]].join("\n") + "\n").unwrap();
        let v = s.verify_audit().unwrap();
        assert!(
            errors(&v).contains(&Finding::Cut {
                line: 3,
                after: 2,
                seq: 4
            }),
            "{:?}",
            v.findings
        );
        // Cut at its start.
        std::fs::write(&log, [lines[2], lines[3]].join("\n") + "\n").unwrap();
        let v = s.verify_audit().unwrap();
        assert!(!v.holds());
        assert!(
            errors(&v).contains(&Finding::Cut {
                line: 1,
                after: 0,
                seq: 3
            }),
            "{:?}",
            v.findings
        );
        // A replayed line (a copy of an earlier one) is flagged, not counted.
        std::fs::write(&log, text.clone() + lines[1] + "\n").unwrap();
        let v = s.verify_audit().unwrap();
        assert!(
            errors(&v).contains(&Finding::Replayed {
                line: 5,
                seq: Some(2)
            }),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn audit_an_unsigned_tail_beyond_the_grace_is_an_error() {
        let rows: Vec<(u64, Hash)> = (1..=UNANCHORED_GRACE + 2).map(|id| (id, [7; 32])).collect();
        let cp = Checkpoint {
            id: 1,
            hash: [7; 32],
        };
        let mut findings = Vec::new();
        let (anchored, proven) = compare(&rows[..2], vec![cp], &mut findings);
        assert_eq!((anchored, proven), (1, 1));
        assert_eq!(
            findings,
            vec![Finding::Unanchored {
                count: 1,
                first: 2,
                last: 2
            }]
        );
        let mut findings = Vec::new();
        compare(&rows, vec![cp], &mut findings);
        assert_eq!(
            findings,
            vec![Finding::UnsignedTail {
                count: UNANCHORED_GRACE + 1,
                first: 2,
                last: UNANCHORED_GRACE + 2
            }]
        );
        assert!(findings[0].is_error());
    }
}
