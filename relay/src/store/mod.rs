//! The relay's store: one async interface of use cases — enroll, ingest
//! events, change a ticket, append to the audit log, claim webhook
//! deliveries, presence… — over two backends chosen by URL: SQLite (the
//! embedded default, [`sqlite`]) and PostgreSQL ([`postgres`], for several
//! relays on one database). Callers never see a connection, a transaction
//! or an SQL dialect.
//!
//! Inside, three layers:
//! * [`tx::Tx`]: the storage primitives, each backend's SQL;
//! * the rules, written once on `&mut dyn Tx`: [`tickets`], [`incidents`]
//!   (the alert → ticket engine), [`audit`] (the hash chain), [`identity`]
//!   (tokens, enrollment, certificates, revocation, operators),
//!   [`fleet`] (tags, facts, listings by selector), [`monitors`] (central
//!   monitor sets and agents' reports of them), [`webhooks`] (the
//!   outbox), [`queue`] (actions queued for offline agents), [`report`]
//!   (support metrics from the tickets' timelines), [`helpdesk`] (tickets
//!   mirrored into an external help desk: claims and progress);
//! * [`Store`]: each use case runs its rules in one transaction as a job
//!   on the backend's own threads — never on the async workers — and
//!   awaits the answer, which comes after the commit.
//!
//! Time comes from the [`crate::clock::Clock`] the store is opened with:
//! the rules never read the system clock.

pub mod audit;
pub mod error;
pub mod fleet;
pub mod helpdesk;
pub mod identity;
pub mod incidents;
pub mod migrations;
pub mod monitors;
pub mod postgres;
pub mod queue;
pub mod report;
pub mod sqlite;
pub mod suite;
pub mod tickets;
pub mod tx;
pub mod webhooks;

pub use audit::{AuditEntry, Chain, ChainKey};
pub use error::{Missing, StoreError, StoreResult};
pub use identity::{CertStatus, EnrollRefusal, Removed, Revoked, RoleRefusal, Signed, TokenError};
pub use incidents::Ingested;
pub use queue::NewQueued;
pub use tx::{
    AgentFilter, Delivery, MonitorStatusRow, PeerKind, Presence, Revocation, StoredAudit,
};
pub use webhooks::Sent;

use crate::clock::SharedClock;
use crate::ticket::{Change, NewTicket, Ticket, TicketEdit, TicketFilter};
use firstline_proto::message::{AgentRecord, OperatorInfo, TokenInfo};
use firstline_proto::{AgentEvent, AgentInfo, AuditRecord, Facts, Role, Selector, TicketEntry};
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tx::{TokenRow, Tx};

/// Where the store is.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host/db`).
    Postgres(String),
}

impl Location {
    /// From `[store] url`: `sqlite:relay.db` (relative to `base`, the relay
    /// folder), `sqlite:///abs/path.db`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str, base: &Path) -> Result<Location, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Its syntax, `pool` and `sslmode` now (no connection), so that
            // `validate` tells of a bad URL before the relay starts.
            postgres::check_url(url)?;
            return Ok(Location::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("`sqlite:` needs a file: sqlite:relay.db".into());
            }
            return Ok(Location::Sqlite(base.join(path)));
        }
        Err(format!(
            "unknown store url `{}`: use sqlite:FILE or postgres://USER@HOST/DB",
            redact(url)
        ))
    }
}

/// A URL with its password (if any: `user:PASSWORD@`, or a `password=`
/// query parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (url, None),
    };
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => p,
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// How the store behaves beyond where it is.
#[derive(Clone)]
pub struct Options {
    /// Where "now" comes from.
    pub clock: SharedClock,
    /// The relay deployment's name when ticket changes are to be queued
    /// for the webhook (in the transaction of the change); `None`: not.
    pub webhook_source: Option<String>,
    /// Ticket changes are queued for the help desk mirror (`[helpdesk]`,
    /// see [`helpdesk`]) in the transaction of the change.
    pub helpdesk: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: crate::clock::system(),
            webhook_source: None,
            helpdesk: false,
        }
    }
}

/// A job's answer, type-erased on its way through the backend.
pub type Output = Box<dyn Any + Send>;

/// A job's rules, run in a transaction (again after a [`StoreError::Retry`]).
pub type Work = Box<dyn FnMut(&mut dyn Tx) -> StoreResult<Output> + Send>;
/// A job's answer, called once.
pub type Answer = Box<dyn FnOnce(StoreResult<Output>) + Send>;

/// One use case's transaction, for a backend to run.
pub struct Job {
    /// A write transaction (else read-only).
    pub write: bool,
    /// The rules; may be run again after a [`StoreError::Retry`].
    pub work: Work,
    /// Called once, after the commit (or with the error).
    pub reply: Answer,
}

/// What a backend provides: running jobs, off the caller's async workers.
pub trait Backend: Send + Sync {
    /// Run `job` in a transaction on the backend's own threads, then call
    /// its `reply`. Must not block for long (queue it).
    fn submit(&self, job: Job);
    /// Where it is, for logs (no password).
    fn describe(&self) -> String;
}

/// Run `attempt` again while it fails with [`StoreError::Retry`], a few
/// times, with a short growing pause: for backends whose transactions can
/// lose races (PostgreSQL's serialization failures).
pub fn with_retries<T>(mut attempt: impl FnMut() -> StoreResult<T>) -> StoreResult<T> {
    const ATTEMPTS: u32 = 8;
    let mut n = 0;
    loop {
        match attempt() {
            Err(StoreError::Retry(_)) if n + 1 < ATTEMPTS => {
                n += 1;
                std::thread::sleep(Duration::from_millis(2u64 << n));
            }
            other => return other,
        }
    }
}

/// Wait for a store future from code that is not async (the offline admin
/// commands): it parks the thread until the store's thread answers. Also
/// fine inside an async runtime's thread, as blocking work is.
pub fn wait<F: Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The store: cheap to clone, shared by every task of the relay.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    clock: SharedClock,
    webhook_source: Option<String>,
    helpdesk: bool,
    /// Audit entries waiting for the append in flight ([`Store::append_audit`]).
    audit: std::sync::Mutex<AuditQueue>,
}

/// Audit appends are batched: every append takes the chain's head in turn
/// (on PostgreSQL a row lock held to the commit), so one transaction per
/// entry made a fan-out's appends wait on each other's commits — the
/// PostgreSQL fan-out's bottleneck (BENCHMARKS.md "Performance round
/// two"). While one batch is being stored, the next waits here; each
/// caller still returns only after the commit that holds its entry *and*
/// the signed checkpoint covering it (written right after the commit, on
/// the store's thread, before the next batch: a crash leaves at most one
/// batch of a process without a checkpoint).
#[derive(Default)]
struct AuditQueue {
    waiting: Vec<(AuditEntry, Arc<Chain>, AuditReply)>,
    in_flight: bool,
}

/// An appended entry: its id and hash, and the checkpoint line written for
/// it (the newest entry of its batch only), or why none could be written.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: i64,
    pub hash: String,
    pub checkpoint: Result<Option<String>, String>,
}

type AuditReply = tokio::sync::oneshot::Sender<StoreResult<Appended>>;

/// Audit entries stored in one transaction at most.
pub const AUDIT_BATCH: usize = 256;

impl Inner {
    fn audit_queue(&self) -> std::sync::MutexGuard<'_, AuditQueue> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The waiting entries of one chain (at most [`AUDIT_BATCH`]), or
    /// `None` (and nothing in flight) when there are none.
    fn next_audit_batch(&self) -> Option<Vec<(AuditEntry, Arc<Chain>, AuditReply)>> {
        let mut q = self.audit_queue();
        let Some((_, first, _)) = q.waiting.first() else {
            q.in_flight = false;
            return None;
        };
        let first = first.clone();
        let at = q
            .waiting
            .iter()
            .take(AUDIT_BATCH)
            .take_while(|(_, c, _)| Arc::ptr_eq(c, &first))
            .count();
        let rest = q.waiting.split_off(at);
        Some(std::mem::replace(&mut q.waiting, rest))
    }
}

/// Store `batch` (entries of one chain) in one write job; its answer,
/// given on the store's thread, writes the checkpoint, answers each caller
/// and sends the next batch. Nothing here awaits: a caller's future
/// dropped midway strands no one.
fn append_audit_batch(inner: Arc<Inner>, batch: Vec<(AuditEntry, Arc<Chain>, AuditReply)>) {
    let now = inner.clock.now();
    let entries: Vec<AuditEntry> = batch.iter().map(|(e, _, _)| e.clone()).collect();
    let chain = batch[0].1.clone();
    let next = inner.clone();
    let worker = chain.clone();
    inner.backend.submit(Job {
        write: true,
        work: Box::new(move |tx| {
            let mut trusted = worker.trusted();
            let ids = audit::append(tx, worker.key(), &mut trusted, &entries, now)?;
            Ok(Box::new(ids) as Output)
        }),
        reply: Box::new(move |out| {
            let ids = out.and_then(|o| {
                o.downcast::<Vec<(i64, String)>>()
                    .map(|v| *v)
                    .map_err(|_| StoreError::Backend("a job answered with the wrong type".into()))
            });
            match ids {
                Ok(ids) => {
                    let newest = ids.last().cloned();
                    let line = match &newest {
                        Some((id, hash)) => {
                            chain.trust((*id, hash.clone()));
                            chain.write_checkpoint(*id, hash)
                        }
                        None => Ok(None),
                    };
                    let n = ids.len();
                    for (i, ((_, _, reply), (id, hash))) in batch.into_iter().zip(ids).enumerate() {
                        let checkpoint = match (&line, i + 1 == n) {
                            (Ok(line), true) => Ok(line.clone()),
                            (Ok(_), false) => Ok(None),
                            (Err(e), _) => Err(e.clone()),
                        };
                        let _ = reply.send(Ok(Appended {
                            id,
                            hash,
                            checkpoint,
                        }));
                    }
                }
                Err(e) => {
                    for (_, _, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            if let Some(more) = next.next_audit_batch() {
                append_audit_batch(next, more);
            }
        }),
    });
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.inner.backend.describe())
    }
}

impl Store {
    /// Open (and migrate) the store at `location`.
    pub fn open(location: &Location, options: Options) -> StoreResult<Store> {
        let backend: Box<dyn Backend> = match location {
            Location::Sqlite(path) => Box::new(sqlite::Sqlite::open(path)?),
            Location::Postgres(_) => postgres::open(location)?,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                clock: options.clock,
                webhook_source: options.webhook_source,
                helpdesk: options.helpdesk,
                audit: Default::default(),
            }),
        })
    }

    /// A SQLite store at `path`, with the system clock and no webhook.
    pub fn open_sqlite(path: &Path) -> StoreResult<Store> {
        Store::open(&Location::Sqlite(path.to_path_buf()), Options::default())
    }

    /// Where the store is, for logs.
    pub fn describe(&self) -> String {
        self.inner.backend.describe()
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    async fn submit<T: Send + 'static>(
        &self,
        write: bool,
        mut f: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.inner.backend.submit(Job {
            write,
            work: Box::new(move |tx| f(tx).map(|v| Box::new(v) as Output)),
            reply: Box::new(move |out| {
                let _ = answer.send(out);
            }),
        });
        let out = answered
            .await
            .map_err(|_| StoreError::Unavailable("the database thread has stopped".into()))??;
        out.downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Backend("a job answered with the wrong type".into()))
    }

    /// Run `f` in one write transaction (all of it is stored, or none).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(true, f).await
    }

    /// Run `f` in one read-only transaction.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.submit(false, f).await
    }

    /// Change tickets in one transaction with `f`, the changes queued for
    /// the webhook and the help desk mirror (when configured) in the same
    /// transaction.
    async fn change<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut dyn Tx, i64) -> StoreResult<(T, Vec<Change>)> + Send + 'static,
    ) -> StoreResult<(T, Vec<Change>)> {
        let now = self.now();
        let source = self.inner.webhook_source.clone();
        let helpdesk = self.inner.helpdesk;
        self.write(move |tx| {
            let (out, changes) = f(tx, now)?;
            if let Some(source) = &source {
                for c in &changes {
                    webhooks::enqueue(tx, source, c, now)?;
                }
            }
            if helpdesk {
                for c in &changes {
                    tx.enqueue_helpdesk(c.ticket.id, c.entry_id, now)?;
                }
            }
            Ok((out, changes))
        })
        .await
    }

    // ---- enrollment tokens ----

    /// Record a new token (its secret hashed); when it expires.
    pub async fn add_token(
        &self,
        id: &str,
        secret_sha256: &str,
        uses: u32,
        ttl: Duration,
    ) -> StoreResult<i64> {
        self.add_token_tagged(id, secret_sha256, uses, ttl, Vec::new())
            .await
    }

    /// [`Store::add_token`] with the tags its agents start with (checked
    /// by the caller: [`fleet::tidy_tags`]).
    pub async fn add_token_tagged(
        &self,
        id: &str,
        secret_sha256: &str,
        uses: u32,
        ttl: Duration,
        tags: Vec<String>,
    ) -> StoreResult<i64> {
        let now = self.now();
        let row = TokenRow {
            id: id.into(),
            secret_sha256: secret_sha256.into(),
            uses: Some(uses.into()),
            uses_left: uses.into(),
            created_at: now,
            expires_at: now.saturating_add(ttl.as_secs().min(i64::MAX as u64) as i64),
            revoked_at: None,
        };
        let expires = row.expires_at;
        self.write(move |tx| {
            tx.insert_token(&row)?;
            tx.insert_token_tags(&row.id, &tags)
        })
        .await?;
        Ok(expires)
    }

    /// Every enrollment token, oldest first, never a secret.
    pub async fn tokens(&self) -> StoreResult<Vec<TokenInfo>> {
        let now = self.now();
        self.read(move |tx| {
            tx.tokens()?
                .iter()
                .map(|t| identity::token_info_tagged(tx, t, now))
                .collect()
        })
        .await
    }

    /// Revoke a token: the token after, and whether this call revoked it
    /// (false: it already was). `None` when there is no such token.
    pub async fn revoke_token(&self, id: &str) -> StoreResult<Option<(TokenInfo, bool)>> {
        let (id, now) = (id.to_string(), self.now());
        self.write(move |tx| {
            let newly = tx.revoke_token(&id, now)?;
            match tx.token(&id)? {
                Some(t) => Ok(Some((identity::token_info_tagged(tx, &t, now)?, newly))),
                None => Ok(None),
            }
        })
        .await
    }

    // ---- enrollment, certificates, revocation ----

    /// Enroll an agent: check and spend the token, check the name is free,
    /// `sign`, and record the certificate — all or nothing.
    pub async fn enroll<T: Send + 'static>(
        &self,
        token_id: &str,
        secret_sha256: &str,
        name: &str,
        mut sign: impl FnMut() -> anyhow::Result<Signed<T>> + Send + 'static,
    ) -> StoreResult<Result<T, EnrollRefusal>> {
        let (token_id, secret, name) = (
            token_id.to_string(),
            secret_sha256.to_string(),
            name.to_string(),
        );
        let now = self.now();
        self.write(move |tx| identity::enroll(tx, &token_id, &secret, &name, now, &mut sign))
            .await
    }

    /// Renew an agent's certificate (refused once it is revoked or removed).
    pub async fn renew_agent<T: Send + 'static>(
        &self,
        name: &str,
        mut sign: impl FnMut() -> anyhow::Result<Signed<T>> + Send + 'static,
    ) -> StoreResult<Result<T, EnrollRefusal>> {
        let (name, now) = (name.to_string(), self.now());
        self.write(move |tx| identity::renew(tx, &name, now, &mut sign))
            .await
    }

    /// Record a certificate issued outside enrollment (operators', the relay's).
    pub async fn record_cert(
        &self,
        serial: &str,
        kind: PeerKind,
        name: &str,
        not_after: i64,
    ) -> StoreResult<()> {
        let (serial, name, now) = (serial.to_string(), name.to_string(), self.now());
        self.write(move |tx| tx.insert_cert(&serial, kind, &name, not_after, now))
            .await
    }

    /// Whether certificate `serial` may log in as `kind` `name`.
    pub async fn cert_status(
        &self,
        serial: &str,
        kind: PeerKind,
        name: &str,
    ) -> StoreResult<CertStatus> {
        let (serial, name) = (serial.to_string(), name.to_string());
        self.read(move |tx| identity::cert_status(tx, &serial, kind, &name))
            .await
    }

    /// Revoke an agent or operator for good, on `by`'s word (see
    /// [`identity::revoke`]: what was stored on its authority goes too).
    pub async fn revoke(&self, kind: PeerKind, name: &str, by: &str) -> StoreResult<Revoked> {
        let (name, by, now) = (name.to_string(), by.to_string(), self.now());
        self.write(move |tx| identity::revoke(tx, kind, &name, &by, now))
            .await
    }

    /// Revocations recorded after `seq`, in order.
    pub async fn revocations_since(&self, seq: i64) -> StoreResult<Vec<Revocation>> {
        self.read(move |tx| tx.revocations_since(seq)).await
    }

    /// Record agents and their certificates at once: `(name, serial,
    /// not_after)`; all or nothing.
    pub async fn bulk_enroll(&self, agents: Vec<(String, String, i64)>) -> StoreResult<()> {
        let now = self.now();
        self.write(move |tx| identity::bulk_enroll(tx, &agents, now))
            .await
    }

    // ---- agents and presence ----

    /// An agent connected and said who it is.
    pub async fn agent_seen(&self, name: &str, presence: Presence) -> StoreResult<()> {
        let (name, now) = (name.to_string(), self.now());
        self.write(move |tx| tx.agent_seen(&name, &presence, now))
            .await
    }

    /// What an agent reported of its machine.
    pub async fn agent_facts(&self, name: &str, facts: Facts) -> StoreResult<()> {
        let (name, now) = (name.to_string(), self.now());
        self.write(move |tx| tx.set_agent_facts(&name, &facts, now))
            .await
    }

    /// The agents (not removed) `sel` picks, by name, with their tags,
    /// facts, health and open tickets — every term checked but `online`,
    /// the caller's to fill and check (see [`fleet::select`]).
    pub async fn select_agents(&self, sel: &Selector) -> StoreResult<Vec<AgentInfo>> {
        let sel = sel.clone();
        self.read(move |tx| fleet::select(tx, &sel)).await
    }

    /// Add and remove an agent's tags (see [`fleet::tag`]): its tags after.
    pub async fn tag_agent(
        &self,
        name: &str,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        let name = name.to_string();
        self.write(move |tx| fleet::tag(tx, &name, &add, &remove))
            .await
    }

    /// An agent's connection ended.
    pub async fn agent_left(&self, name: &str) -> StoreResult<()> {
        let (name, now) = (name.to_string(), self.now());
        self.write(move |tx| tx.agent_left(&name, now)).await
    }

    /// Every enrolled agent (not removed); `online` is the caller's to fill.
    pub async fn agents(&self) -> StoreResult<Vec<AgentInfo>> {
        self.read(|tx| tx.agents()).await
    }

    pub async fn agent(&self, name: &str) -> StoreResult<Option<AgentInfo>> {
        let name = name.to_string();
        self.read(move |tx| tx.agent(&name)).await
    }

    /// Enrollment records of every agent (not removed).
    pub async fn agent_records(&self) -> StoreResult<Vec<AgentRecord>> {
        self.read(|tx| tx.agent_records()).await
    }

    /// Names of the agents (not removed), for messages that list them.
    /// The first `limit` agents not removed, by name.
    pub async fn agent_names(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.read(move |tx| tx.agent_names(limit)).await
    }

    /// Whether `name` is an agent the relay knows or knew: enrolled (even
    /// revoked or removed) or named by a ticket.
    pub async fn agent_known(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.read(move |tx| tx.agent_known(&name)).await
    }

    /// Remove an agent's record (see [`identity::remove_agent`]).
    pub async fn remove_agent(&self, name: &str, by: &str) -> StoreResult<Option<Removed>> {
        let (name, by, now) = (name.to_string(), by.to_string(), self.now());
        self.write(move |tx| identity::remove_agent(tx, &name, &by, now))
            .await
    }

    /// `(status, summary)` of a monitor's latest result.
    pub async fn monitor_status(
        &self,
        agent: &str,
        monitor: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let (agent, monitor) = (agent.to_string(), monitor.to_string());
        self.read(move |tx| tx.monitor_status(&agent, &monitor))
            .await
    }

    /// Every monitor of `agent` with its latest status, by monitor id.
    pub async fn monitor_statuses(&self, agent: &str) -> StoreResult<Vec<MonitorStatusRow>> {
        let agent = agent.to_string();
        self.read(move |tx| tx.monitor_statuses(&agent)).await
    }

    // ---- central monitors ----

    /// Store a central monitor set, replacing the one of its name (see
    /// [`monitors::put`]): the set as stored, and whether one was replaced.
    pub async fn put_monitor_set(
        &self,
        set: monitors::NewSet,
    ) -> StoreResult<(firstline_proto::central::MonitorSetInfo, bool)> {
        let now = self.now();
        self.write(move |tx| monitors::put(tx, &set, now)).await
    }

    /// Remove a central monitor set: the set removed, if there was one.
    pub async fn remove_monitor_set(
        &self,
        name: &str,
    ) -> StoreResult<Option<firstline_proto::central::MonitorSetInfo>> {
        let name = name.to_string();
        self.write(move |tx| monitors::remove(tx, &name)).await
    }

    /// The central monitor sets that select `agent`, and their digest.
    pub async fn central_monitors(
        &self,
        agent: &str,
    ) -> StoreResult<(Vec<firstline_proto::central::CentralSet>, String)> {
        let agent = agent.to_string();
        self.read(move |tx| monitors::for_agent(tx, &agent)).await
    }

    /// The central monitor sets in force, by name (a set suspended, or
    /// whose author is not an admin now, is not): what a relay watches to
    /// push again when an author loses the role by any path.
    pub async fn monitor_sets_in_force(&self) -> StoreResult<Vec<String>> {
        self.read(monitors::in_force_names).await
    }

    /// Keep what `agent` reported of its central monitors.
    pub async fn record_monitor_report(
        &self,
        agent: &str,
        report: firstline_proto::central::CentralReport,
    ) -> StoreResult<()> {
        let (agent, now) = (agent.to_string(), self.now());
        self.write(move |tx| monitors::record_report(tx, &agent, &report, now))
            .await
    }

    /// The sets, and each agent's central monitors (see
    /// [`monitors::overview`]; `online` is the caller's to fill).
    pub async fn monitors_overview(
        &self,
    ) -> StoreResult<(
        Vec<firstline_proto::central::MonitorSetInfo>,
        Vec<firstline_proto::central::AgentMonitorReport>,
    )> {
        self.read(monitors::overview).await
    }

    // ---- operators ----

    /// Add an operator; false when the name is taken (revoked names stay taken).
    pub async fn add_operator(&self, name: &str, role: Role) -> StoreResult<bool> {
        let (name, now) = (name.to_string(), self.now());
        self.write(move |tx| tx.insert_operator(&name, role, now))
            .await
    }

    pub async fn operators(&self) -> StoreResult<Vec<OperatorInfo>> {
        self.read(|tx| tx.operators()).await
    }

    /// One operator: its role and whether it is revoked — what authorizes
    /// each of its requests.
    pub async fn operator(&self, name: &str) -> StoreResult<Option<OperatorInfo>> {
        let name = name.to_string();
        self.read(move |tx| tx.operator(&name)).await
    }

    /// Change a live operator's role: the operator after, the role before.
    pub async fn set_operator_role(
        &self,
        name: &str,
        role: Role,
        by: &str,
    ) -> StoreResult<Result<(OperatorInfo, Role), RoleRefusal>> {
        let (name, by, now) = (name.to_string(), by.to_string(), self.now());
        self.write(move |tx| identity::set_role(tx, &name, role, &by, now))
            .await
    }

    // ---- tickets ----

    /// Open a ticket.
    pub async fn create_ticket(&self, t: NewTicket) -> StoreResult<Change> {
        let (change, _) = self
            .change(move |tx, now| {
                let c = tickets::create(tx, &t, None, now)?;
                Ok((c.clone(), vec![c]))
            })
            .await?;
        Ok(change)
    }

    /// A person's change to ticket `id`.
    pub async fn change_ticket(
        &self,
        id: u64,
        edit: TicketEdit,
        author: &str,
    ) -> StoreResult<Change> {
        let author = author.to_string();
        let (change, _) = self
            .change(move |tx, now| {
                let c = tickets::edit(tx, id, &edit, &author, now)?;
                Ok((c.clone(), vec![c]))
            })
            .await?;
        Ok(change)
    }

    /// Append an entry (a routed result, a runbook's verdict) to ticket
    /// `id`; `None` when there is no such ticket.
    pub async fn append_to_ticket(
        &self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
    ) -> StoreResult<Option<Change>> {
        let (kind, author, body) = (kind.to_string(), author.to_string(), body.to_string());
        let (change, _) = self
            .change(move |tx, now| {
                let c = tickets::append(tx, id, &kind, &author, &body, observed_at, now)?;
                Ok((c.clone(), c.into_iter().collect()))
            })
            .await?;
        Ok(change)
    }

    pub async fn ticket(&self, id: u64) -> StoreResult<Option<Ticket>> {
        self.read(move |tx| tx.ticket(id)).await
    }

    /// The tickets matching every filter given, by id.
    pub async fn list_tickets(&self, filter: TicketFilter) -> StoreResult<Vec<Ticket>> {
        self.read(move |tx| tx.tickets(&filter)).await
    }

    /// A ticket and its timeline, read together.
    pub async fn ticket_detail(&self, id: u64) -> StoreResult<Option<(Ticket, Vec<TicketEntry>)>> {
        self.read(move |tx| {
            Ok(match tx.ticket(id)? {
                Some(t) => Some((t, tx.entries(id)?)),
                None => None,
            })
        })
        .await
    }

    /// Support metrics over the tickets opened in the last `since_secs`
    /// (see [`report`]), by the store's clock.
    pub async fn support_report(
        &self,
        since_secs: u64,
    ) -> StoreResult<firstline_proto::report::SupportReport> {
        let now = self.now();
        let since = now.saturating_sub(i64::try_from(since_secs).unwrap_or(i64::MAX));
        self.read(move |tx| report::report(tx, since, now)).await
    }

    /// How many tickets there are of each status (for `/metrics`).
    pub async fn ticket_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        self.read(|tx| tx.count_by_status()).await
    }

    /// Ingest an agent's monitoring events, idempotently (see
    /// [`incidents`]); the ticket changes are in [`Ingested::changes`].
    pub async fn ingest_events(
        &self,
        agent: &str,
        events: Vec<AgentEvent>,
        reopen_window_secs: i64,
    ) -> StoreResult<Ingested> {
        let agent = agent.to_string();
        let (mut ingested, changes) = self
            .change(move |tx, now| {
                let mut i = incidents::ingest(tx, &agent, &events, reopen_window_secs, now)?;
                let changes = std::mem::take(&mut i.changes);
                Ok((i, changes))
            })
            .await?;
        ingested.changes = changes;
        Ok(ingested)
    }

    /// `firstline-help tickets`: the tickets the local user `user` of
    /// `agent` opened (see [`incidents::requested_by`]), newest first, at
    /// most `limit`, each with the technicians' public replies (comments).
    pub async fn help_tickets(
        &self,
        agent: &str,
        user: &str,
        limit: usize,
    ) -> StoreResult<Vec<firstline_proto::HelpTicket>> {
        let (agent, user) = (agent.to_string(), user.to_string());
        self.read(move |tx| {
            let filter = crate::ticket::TicketFilter {
                agent: Some(agent.clone()),
                ..Default::default()
            };
            let mut mine: Vec<_> = tx
                .tickets(&filter)?
                .into_iter()
                .filter(|t| incidents::requested_by(t, &agent, &user))
                .collect();
            mine.reverse();
            mine.truncate(limit);
            let mut out = Vec::new();
            for t in mine {
                // The last few replies, each cut short: the answer stays
                // one frame whatever the timeline holds.
                let mut replies: Vec<_> = tx
                    .entries(t.id)?
                    .into_iter()
                    .filter(|e| e.kind == "comment")
                    .collect();
                replies.drain(..replies.len().saturating_sub(10));
                for r in &mut replies {
                    if let serde_json::Value::String(text) = &mut r.body {
                        *text = firstline_proto::text::truncate(text, 4096).into_owned();
                    }
                }
                out.push(firstline_proto::HelpTicket {
                    ticket: t.summary(),
                    replies,
                });
            }
            Ok(out)
        })
        .await
    }

    // ---- audit ----

    /// Append to the audit chain under `chain` (its key, the tail check
    /// from its trusted point, its checkpoint written after the commit;
    /// [`crate::audit::record`] gives the relay's). Fails with
    /// [`StoreError::Tampered`] when the tail holds rows no relay wrote.
    pub async fn append_audit(
        &self,
        entry: AuditEntry,
        chain: &Arc<Chain>,
    ) -> StoreResult<Appended> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let batch = {
            let mut q = self.inner.audit_queue();
            q.waiting.push((entry, chain.clone(), answer));
            if q.in_flight {
                None
            } else {
                q.in_flight = true;
                drop(q);
                self.inner.next_audit_batch()
            }
        };
        if let Some(batch) = batch {
            append_audit_batch(self.inner.clone(), batch);
        }
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the database thread has stopped".into()))?
    }

    /// Check the chain's tail from `chain`'s trusted point, appending
    /// nothing (what an append checks first): `Err(Tampered)` while rows no
    /// relay wrote are there unacknowledged.
    pub async fn check_audit_tail(&self, chain: &Arc<Chain>) -> StoreResult<()> {
        let worker = chain.clone();
        let head = self
            .read(move |tx| {
                let mut trusted = worker.trusted();
                audit::check_tail(tx, worker.key(), &mut trusted)?;
                Ok(trusted)
            })
            .await?;
        chain.trust(head);
        Ok(())
    }

    /// Audit entries, oldest first, optionally of one agent, the last `limit`.
    pub async fn audit_records(
        &self,
        agent: Option<&str>,
        limit: Option<u32>,
    ) -> StoreResult<Vec<AuditRecord>> {
        let agent = agent.map(str::to_string);
        self.read(move |tx| tx.audit_records(agent.as_deref(), limit))
            .await
    }

    /// Every audit entry with its links, by id.
    pub async fn audit_chain(&self) -> StoreResult<Vec<StoredAudit>> {
        self.read(|tx| tx.audit_chain()).await
    }

    // ---- webhook deliveries ----

    /// Claim up to `limit` due deliveries for `lease`: nobody else gets
    /// them until it runs out or they are finished.
    pub async fn claim_webhooks(&self, limit: u32, lease: Duration) -> StoreResult<Vec<Delivery>> {
        let now = self.now();
        let lease = lease.as_secs().clamp(1, 86_400) as i64;
        self.write(move |tx| webhooks::claim(tx, now, lease, limit))
            .await
    }

    /// What became of a claimed delivery.
    pub async fn finish_webhook(&self, id: i64, sent: Sent) -> StoreResult<()> {
        let now = self.now();
        self.write(move |tx| webhooks::finish(tx, id, sent, now))
            .await
    }

    /// Deliveries still queued.
    pub async fn webhook_backlog(&self) -> StoreResult<u64> {
        self.read(|tx| tx.webhook_backlog()).await
    }

    // ---- actions queued for offline agents (see [`queue`]) ----

    /// Queue an action for an offline agent.
    pub async fn enqueue_action(
        &self,
        new: NewQueued,
    ) -> StoreResult<firstline_proto::action::QueuedAction> {
        let now = self.now();
        self.write(move |tx| queue::enqueue(tx, &new, now)).await
    }

    /// Pending queued actions, then (`all`) the newest ended ones.
    pub async fn queued_actions(
        &self,
        all: bool,
    ) -> StoreResult<Vec<firstline_proto::action::QueuedAction>> {
        self.read(move |tx| queue::list(tx, all)).await
    }

    /// Cancel a pending queued action (see [`queue::cancel`]).
    pub async fn cancel_queued(
        &self,
        id: u64,
    ) -> StoreResult<Option<firstline_proto::action::QueuedAction>> {
        let now = self.now();
        self.write(move |tx| queue::cancel(tx, id, now)).await
    }

    /// Claim up to `limit` of an agent's pending actions, once (see
    /// [`queue::claim`]).
    pub async fn claim_queued(
        &self,
        agent: &str,
        limit: u32,
    ) -> StoreResult<Vec<firstline_proto::action::QueuedAction>> {
        let (agent, now) = (agent.to_string(), self.now());
        // Read first: every agent connection asks, and almost always there
        // is nothing queued — a read on a reader costs no write on the
        // store's single writer (SQLite) or row locks (PostgreSQL).
        let probe = agent.clone();
        if self.read(move |tx| tx.count_pending(&probe)).await? == 0 {
            return Ok(Vec::new());
        }
        self.write(move |tx| queue::claim(tx, &agent, now, limit))
            .await
    }

    /// The agents with an action pending.
    pub async fn pending_agents(&self) -> StoreResult<Vec<String>> {
        self.read(|tx| tx.pending_agents()).await
    }

    /// Record how a delivered action ended.
    pub async fn finish_queued(&self, id: u64, outcome: &str) -> StoreResult<()> {
        let outcome = outcome.to_string();
        self.write(move |tx| queue::finish(tx, id, &outcome)).await
    }

    /// Expire up to `limit` pending actions past their time (see
    /// [`queue::expire`]): those this call expired.
    pub async fn expire_queued(
        &self,
        limit: u32,
    ) -> StoreResult<Vec<firstline_proto::action::QueuedAction>> {
        let now = self.now();
        self.write(move |tx| queue::expire(tx, now, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_from_urls() {
        let base = Path::new("/etc/firstline");
        assert_eq!(
            Location::parse("sqlite:relay.db", base),
            Ok(Location::Sqlite("/etc/firstline/relay.db".into()))
        );
        assert_eq!(
            Location::parse("sqlite:///var/lib/r.db", base),
            Ok(Location::Sqlite("/var/lib/r.db".into()))
        );
        let pg = Location::parse("postgres://fl:s3cret@db.example/fl", base).unwrap();
        assert_eq!(format!("{pg:?}"), "postgres://fl:***@db.example/fl");
        assert!(Location::parse("mysql://x", base).is_err());
        let e = Location::parse("postgres://fl:s3cret@db/fl?pool=0", base).unwrap_err();
        assert!(e.contains("pool=0") && !e.contains("s3cret"), "{e}");
        assert!(Location::parse("sqlite:", base).is_err());
        assert_eq!(
            redact("postgres://db.example/fl"),
            "postgres://db.example/fl"
        );
        assert_eq!(
            redact("postgres://fl@db.example/fl?pool=4&password=s3cret"),
            "postgres://fl@db.example/fl?pool=4&password=***"
        );
    }

    #[test]
    fn an_unreachable_postgres_says_so_without_its_password() {
        // Nothing listens on port 1 of the loopback: refused at once.
        let loc = Location::Postgres("postgres://u:s3cret@127.0.0.1:1/x".into());
        let e = Store::open(&loc, Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot connect to the database postgres://u@127.0.0.1:1/x"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
}
