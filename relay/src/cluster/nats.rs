//! The relays of a deployment over NATS (core NATS: no JetStream, nothing
//! stored in the server). Subjects, under the deployment's prefix `P`
//! (`firstline.` and the first 8 hex digits of the CA's fingerprint, so
//! two deployments can share one NATS server without hearing each other):
//!
//! | subject | who publishes | what |
//! |---|---|---|
//! | `P.presence` | every relay | `beat` every `heartbeat_ms`, `up`/`down` per agent, `bye` ([`super::presence`]) |
//! | `P.relay.ID.snapshot` | a relay that missed changes of relay ID | request; ID answers its whole list to the reply inbox |
//! | `P.relay.ID.forward` | a relay whose console asked for an agent ID holds | request; ID streams the agent's answer frames to the reply inbox |
//! | `P.notice` | every relay | each `watch` notice it made (alerts, ticket changes) |
//! | `P.revoked` | a relay that revoked or removed a peer | kind and name: cut off at once (checked against the database) |
//! | `P.audit` | every relay | the signed checkpoint line of each audit entry it wrote |
//!
//! **Streams on an inbox.** The answer to a forward or a snapshot comes on
//! the asker's inbox as numbered messages (header `Fl-Seq`, from 0): first
//! `accepted` (the holder has the request), then items (`frame`: one wire
//! frame's JSON; `snapshot`), each cut into parts of at most a quarter of
//! the server's `max_payload` (`Fl-More: 1` on every part but an item's
//! last). Core NATS keeps the order of one publisher's messages and loses
//! none on a healthy connection; a gap in `Fl-Seq` is reported as a lost
//! answer rather than read past.

use super::bus::{BusKey, Guard};
use super::presence::{Local, Map, Next, PresenceMsg, Snapshot};
use super::{ForwardError, Forwarded, Inbound, Revoked};
use crate::config::RelayDir;
use anyhow::{anyhow, Context, Result};
use async_nats::{Client, HeaderMap, ServerAddr, Subscriber};
use bytes::Bytes;
use firstline_proto::{Envelope, Message, Notice};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub(super) const SEQ: &str = "Fl-Seq";
pub(super) const KIND: &str = "Fl-Kind";
pub(super) const MORE: &str = "Fl-More";

/// Time a relay has to take a forwarded request (say `accepted`).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages waiting to be published before new ones are dropped (presence
/// converges by snapshots; notices are best effort, as for a slow watcher).
const OUTBOX: usize = 65_536;
/// Forwarded requests waiting for a task.
const FORWARD_QUEUE: usize = 1_024;

/// One relay's link to the others.
pub struct Nats {
    client: Client,
    prefix: String,
    id: String,
    /// Tells this run of the relay from an earlier one (and from another
    /// relay wrongly given the same id).
    instance: u64,
    heartbeat: Duration,
    ttl: Duration,
    local: Mutex<Local>,
    map: Mutex<Map>,
    /// Signs what this relay publishes, checks what it receives.
    guard: Arc<Guard>,
    outbox: mpsc::Sender<(String, HeaderMap, Bytes)>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    duplicate_warned: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct NoticeMsg {
    relay: String,
    notice: Notice,
}

#[derive(Serialize, Deserialize)]
struct RevokedMsg {
    relay: String,
    kind: String,
    name: String,
}

#[derive(Serialize, Deserialize)]
struct RelayFailure {
    code: firstline_proto::ErrorCode,
    message: String,
}

#[derive(Serialize, Deserialize)]
struct ForwardMsg {
    from: String,
    agent: String,
    request: Envelope,
    /// The operator who asked (for the holding relay's audit entry).
    #[serde(default)]
    operator: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The subject prefix of a deployment: `firstline.` + 8 hex digits of its
/// CA's fingerprint.
pub fn prefix(ca_fingerprint: &str) -> String {
    let hex: String = ca_fingerprint
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("firstline.{hex}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Connect (in the background: a NATS server that is down is retried for
/// ever, the relay serves its own agents meanwhile), subscribe, and start
/// the presence, notice and request tasks.
pub async fn start(
    dir: &RelayDir,
    ca_fingerprint: &str,
    notices: crate::notices::Channel,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(Arc<Nats>, Inbound)> {
    let c = &dir.config.cluster;
    let id = dir.relay_id();
    let link = Link::of(dir).ok_or_else(|| anyhow!("[cluster] nats is not set"))?;
    let (options, addrs, urls) = connect_options(&link)?;
    let guard = Arc::new(Guard::new(
        BusKey::load(&link.audit_key)?,
        &id,
        Some(metrics.clone()),
    ));
    metrics.nats_insecure(!link.authenticated());
    if c.nats_insecure && !link.authenticated() {
        tracing::warn!(
            "cluster: NATS WITHOUT AUTHENTICATION ([cluster] nats_insecure = true): anyone who \
             reaches the NATS server reads this deployment's traffic and can disrupt it; give the \
             relays an nkey (`nats_nkey`, SECURITY.md wall 7)"
        );
    }
    let options = options
        .name(format!("firstline-relay {id}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .event_callback(|event| async move {
            // Errors of reconnection attempts repeat: once a minute.
            static LAST: AtomicU64 = AtomicU64::new(0);
            match event {
                async_nats::Event::Connected => {
                    LAST.store(0, Ordering::Relaxed);
                    tracing::info!("cluster: connected to NATS")
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("cluster: disconnected from NATS; reconnecting")
                }
                other => {
                    let minute = now_ms() / 60_000 + 1;
                    if LAST.swap(minute, Ordering::Relaxed) != minute {
                        tracing::warn!(
                            "cluster: NATS: {other} (this relay serves its own agents meanwhile; \
                             retrying)"
                        )
                    }
                }
            }
        });
    let client = options
        .connect(addrs)
        .await
        .context("cannot start the NATS client")?;
    let prefix = prefix(ca_fingerprint);
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
    let nats = Arc::new(Nats {
        client: client.clone(),
        prefix: prefix.clone(),
        id: id.clone(),
        instance: rand::random::<u64>() | 1,
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        ttl: Duration::from_millis(c.presence_ttl_ms),
        local: Mutex::new(Local::default()),
        map: Mutex::new(Map::new(&id)),
        guard: guard.clone(),
        outbox,
        tasks: Mutex::new(Vec::new()),
        duplicate_warned: AtomicU64::new(0),
    });
    let sub = |s: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(s.clone())
                .await
                .with_context(|| format!("cannot subscribe to {s}"))
        }
    };
    let presence = sub(format!("{prefix}.presence")).await?;
    let notice = sub(format!("{prefix}.notice")).await?;
    let revoked = sub(format!("{prefix}.revoked")).await?;
    let audit = sub(format!("{prefix}.audit")).await?;
    let forward = sub(format!("{prefix}.relay.{id}.forward")).await?;
    let snapshot = sub(format!("{prefix}.relay.{id}.snapshot")).await?;

    let (forwards_tx, forwards) = mpsc::channel(FORWARD_QUEUE);
    let (revocations_tx, revocations) = mpsc::channel(1_024);
    let (checkpoints_tx, checkpoints) = mpsc::channel(16_384);
    let tasks = vec![
        tokio::spawn(publisher(client.clone(), outbox_rx)),
        tokio::spawn(presence_loop(nats.clone(), presence)),
        tokio::spawn(notice_loop(nats.clone(), notice, notices)),
        tokio::spawn(revoked_loop(nats.clone(), revoked, revocations_tx)),
        tokio::spawn(audit_loop(guard.clone(), audit, checkpoints_tx)),
        tokio::spawn(forward_loop(nats.clone(), forward, forwards_tx)),
        tokio::spawn(snapshot_loop(nats.clone(), snapshot)),
    ];
    *lock(&nats.tasks) = tasks;
    tracing::info!(
        relay = %id,
        nats = %urls.iter().map(|u| crate::store::redact(u)).collect::<Vec<_>>().join(","),
        subjects = %format!("{prefix}.>"),
        "cluster: this relay is one of a deployment's relays"
    );
    Ok((
        nats,
        Inbound {
            forwards,
            revocations,
            checkpoints,
        },
    ))
}

/// Read an nkey user seed (`SU…`) from `path`; its public key.
pub fn read_nkey(path: &Path) -> Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU"))
        .ok_or_else(|| anyhow!("{}: no nkey user seed (a line SU…)", path.display()))?
        .to_string();
    let kp = nkeys::KeyPair::from_seed(&seed)
        .map_err(|e| anyhow!("{}: not an nkey seed: {e}", path.display()))?;
    Ok((seed, kp.public_key()))
}

/// The NATS client options of `[cluster]` (the nkey of `nats_nkey`,
/// credentials from the URLs, TLS with `nats_ca`), the servers, and their
/// URLs.
fn connect_options(
    link: &Link,
) -> Result<(async_nats::ConnectOptions, Vec<ServerAddr>, Vec<String>)> {
    let nats_ca = link.nats_ca.as_deref();
    let urls = crate::config::nats_servers(&link.nats).map_err(|e| anyhow!(e))?;
    let mut options = async_nats::ConnectOptions::new();
    if let Some(path) = &link.nats_nkey {
        let (seed, _) = read_nkey(path)?;
        options = options.nkey(seed);
    }
    let mut addrs = Vec::new();
    for url in &urls {
        let addr: ServerAddr = url
            .parse()
            .with_context(|| format!("[cluster] nats: `{}`", crate::store::redact(url)))?;
        match (addr.username(), addr.password()) {
            (Some(user), Some(pass)) => {
                options = options.user_and_password(user.to_string(), pass.to_string())
            }
            (Some(token), None) => options = options.token(token.to_string()),
            _ => {}
        }
        addrs.push(addr);
    }
    if let Some(ca) = nats_ca {
        options = options.tls_client_config(tls_config(ca)?).require_tls(true);
    }
    Ok((options, addrs, urls))
}

/// What an offline admin command needs to reach the other relays: where
/// NATS is, and the CA certificate (whose fingerprint names the subjects).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub nats: String,
    pub nats_ca: Option<PathBuf>,
    /// The nkey seed file the relays authenticate to NATS with.
    pub nats_nkey: Option<PathBuf>,
    pub ca_cert: PathBuf,
    /// The audit signing key: the relays' bus key is derived from it.
    pub audit_key: PathBuf,
}

impl Link {
    /// The link of a relay folder with `[cluster] nats`.
    pub fn of(dir: &RelayDir) -> Option<Link> {
        Some(Link {
            nats: dir.config.cluster.nats.clone()?,
            nats_ca: dir.nats_ca(),
            nats_nkey: dir.nats_nkey(),
            ca_cert: dir.ca_cert(),
            audit_key: dir.audit_key(),
        })
    }

    /// Whether the relays present a credential to NATS (an nkey, or one in
    /// the URL).
    pub fn authenticated(&self) -> bool {
        self.nats_nkey.is_some() || crate::config::carries_secret(&self.nats)
    }
}

/// Send one audit checkpoint line to the relays of a deployment, from a
/// process that runs no relay (the offline admin commands): connect,
/// publish, flush, all within 2 s.
pub fn publish_checkpoint_blocking(link: &Link, line: &str) -> Result<()> {
    let pem = std::fs::read_to_string(&link.ca_cert)
        .with_context(|| format!("cannot read {}", link.ca_cert.display()))?;
    let der = firstline_net::pem::certs(&pem)?;
    let ca = der
        .first()
        .ok_or_else(|| anyhow!("{}: no certificate", link.ca_cert.display()))?;
    let subject = format!("{}.audit", prefix(&firstline_net::fingerprint(ca)));
    let (options, addrs, _) = connect_options(link)?;
    let payload = Bytes::from(line.as_bytes().to_vec());
    let guard = Guard::new(BusKey::load(&link.audit_key)?, "admin", None);
    let headers = guard.sign(&subject, None, &payload);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sent = async move {
            let client = options
                .connection_timeout(Duration::from_secs(2))
                .connect(addrs)
                .await?;
            client
                .publish_with_headers(subject, headers, payload)
                .await?;
            client.flush().await?;
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(2), sent)
            .await
            .map_err(|_| anyhow!("NATS did not answer within 2 s"))?
    })
}

/// rustls with the `ring` provider (the workspace's one) and the CA of
/// `[cluster] nats_ca` as the only root.
fn tls_config(ca: &std::path::Path) -> Result<rustls::ClientConfig> {
    let pem =
        std::fs::read_to_string(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in firstline_net::pem::certs(&pem)? {
        roots
            .add(cert)
            .with_context(|| format!("{}: not a CA certificate", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Publish the outbox in order (presence changes must not overtake each
/// other).
async fn publisher(client: Client, mut rx: mpsc::Receiver<(String, HeaderMap, Bytes)>) {
    while let Some((subject, headers, payload)) = rx.recv().await {
        if let Err(e) = client.publish_with_headers(subject, headers, payload).await {
            tracing::debug!("cluster: publish failed: {e}");
        }
    }
}

impl Nats {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sign and queue a message to the other relays.
    fn queue(&self, subject: String, payload: Vec<u8>) {
        let headers = self.guard.sign(&subject, None, &payload);
        if self
            .outbox
            .try_send((subject, headers, payload.into()))
            .is_err()
        {
            tracing::warn!(
                "cluster: outbox full (NATS down?); a message to the other relays was dropped"
            );
        }
    }

    fn queue_presence(&self, msg: &PresenceMsg) {
        if let Ok(body) = serde_json::to_vec(msg) {
            self.queue(format!("{}.presence", self.prefix), body);
        }
    }

    /// An agent connected here at `since` (ms since the epoch).
    pub fn agent_held(&self, agent: &str, since: u64) {
        let mut local = lock(&self.local);
        let version = local.up(agent, since);
        self.queue_presence(&PresenceMsg::Up {
            relay: self.id.clone(),
            instance: self.instance,
            version,
            agent: agent.to_string(),
            since,
        });
    }

    /// An agent's connection here ended.
    pub fn agent_released(&self, agent: &str) {
        let mut local = lock(&self.local);
        if let Some(version) = local.down(agent) {
            self.queue_presence(&PresenceMsg::Down {
                relay: self.id.clone(),
                instance: self.instance,
                version,
                agent: agent.to_string(),
            });
        }
    }

    /// The other relay holding `agent` by the newest claim, and the claim's
    /// start (ms since the epoch).
    pub fn holder(&self, agent: &str) -> Option<(String, u64)> {
        lock(&self.map).holder(agent)
    }

    /// The other relays alive, with the number of agents each holds.
    pub fn relays(&self) -> Vec<(String, usize)> {
        lock(&self.map).relays()
    }

    pub fn publish_notice(&self, notice: &Notice) {
        let msg = NoticeMsg {
            relay: self.id.clone(),
            notice: notice.clone(),
        };
        if let Ok(body) = serde_json::to_vec(&msg) {
            self.queue(format!("{}.notice", self.prefix), body);
        }
    }

    pub fn publish_revocation(&self, kind: &str, name: &str) {
        let msg = RevokedMsg {
            relay: self.id.clone(),
            kind: kind.to_string(),
            name: name.to_string(),
        };
        if let Ok(body) = serde_json::to_vec(&msg) {
            self.queue(format!("{}.revoked", self.prefix), body);
        }
    }

    pub fn publish_checkpoint(&self, line: &str) {
        self.queue(format!("{}.audit", self.prefix), line.as_bytes().to_vec());
    }

    /// Ask relay `relay` to run `request` on `agent`; its answers come on
    /// the returned stream once it has taken the request.
    pub async fn forward(
        self: &Arc<Self>,
        relay: &str,
        agent: &str,
        request: Message,
        operator: &str,
    ) -> Result<RemoteAnswers, ForwardError> {
        let instance = lock(&self.map).alive(relay);
        let Some(instance) = instance else {
            return Err(ForwardError::Gone);
        };
        let body = serde_json::to_vec(&ForwardMsg {
            from: self.id.clone(),
            agent: agent.to_string(),
            request: Envelope::new(request),
            operator: operator.to_string(),
        })
        .map_err(|e| ForwardError::Nats(e.to_string()))?;
        let inbox = self.client.new_inbox();
        let sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| ForwardError::Nats(e.to_string()))?;
        let subject = format!("{}.relay.{relay}.forward", self.prefix);
        let headers = self.guard.sign(&subject, Some(&inbox), &body);
        self.client
            .publish_with_reply_and_headers(subject, inbox, headers, body.into())
            .await
            .map_err(|e| ForwardError::Nats(e.to_string()))?;
        let mut answers = RemoteAnswers {
            nats: self.clone(),
            relay: relay.to_string(),
            instance,
            inbox: InboxReader::new(sub, self.guard.clone()),
        };
        match answers.item(ACCEPT_TIMEOUT).await? {
            (kind, _) if kind == "accepted" => Ok(answers),
            (kind, _) => Err(ForwardError::Lost(format!(
                "expected `accepted`, got `{kind}`"
            ))),
        }
    }

    /// Say goodbye (the others drop this relay's agents at once) and stop.
    pub async fn shutdown(&self) {
        let bye = PresenceMsg::Bye {
            relay: self.id.clone(),
            instance: self.instance,
        };
        if let Ok(body) = serde_json::to_vec(&bye) {
            let subject = format!("{}.presence", self.prefix);
            let headers = self.guard.sign(&subject, None, &body);
            let _ = self
                .client
                .publish_with_headers(subject, headers, body.into())
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }

    fn duplicate_id(&self) {
        // Once a minute at most.
        let now = now_ms() / 60_000;
        if self.duplicate_warned.swap(now, Ordering::Relaxed) != now {
            tracing::error!(
                relay = %self.id,
                "cluster: another relay uses this relay's id: give each relay its own \
                 `relay_id` in relay.toml (`firstline-relay init --join` does)"
            );
        }
    }
}

/// The answers of a forwarded request, as they come.
pub struct RemoteAnswers {
    nats: Arc<Nats>,
    relay: String,
    instance: u64,
    inbox: InboxReader,
}

impl RemoteAnswers {
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// The next item, waiting at most `timeout` — less when the holding
    /// relay is taken for dead meanwhile.
    async fn item(&mut self, timeout: Duration) -> Result<(String, Vec<u8>), ForwardError> {
        let end = tokio::time::Instant::now() + timeout;
        let check = self.nats.heartbeat.max(Duration::from_millis(200));
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ForwardError::Timeout(timeout));
            }
            match tokio::time::timeout(left.min(check), self.inbox.next_item()).await {
                Ok(item) => return item,
                Err(_) => {
                    let alive = lock(&self.nats.map).alive(&self.relay);
                    if alive != Some(self.instance) {
                        return Err(ForwardError::Gone);
                    }
                }
            }
        }
    }

    /// The next answer frame of the agent (relayed), waiting at most
    /// `timeout` for it.
    pub async fn next(&mut self, timeout: Duration) -> Result<Message, ForwardError> {
        let (kind, bytes) = self.item(timeout).await?;
        if kind == "error" {
            let e: RelayFailure =
                serde_json::from_slice(&bytes).map_err(|e| ForwardError::Lost(e.to_string()))?;
            return Err(ForwardError::Refused {
                code: e.code,
                message: e.message,
            });
        }
        if kind != "frame" {
            return Err(ForwardError::Lost(format!("unexpected `{kind}`")));
        }
        firstline_proto::frame::decode_payload(&bytes)
            .map(|e| e.msg)
            .map_err(|e| ForwardError::Lost(e.to_string()))
    }
}

/// Reads a numbered, possibly cut stream of items off an inbox.
struct InboxReader {
    sub: Subscriber,
    guard: Arc<Guard>,
    seq: u64,
    /// The parts of an item read so far (kept across a cancelled read).
    buf: Vec<u8>,
}

impl InboxReader {
    fn new(sub: Subscriber, guard: Arc<Guard>) -> InboxReader {
        InboxReader {
            sub,
            guard,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// The next whole item: `(kind, bytes)`. Cancel-safe: a part read
    /// before the future was dropped stays read.
    async fn next_item(&mut self) -> Result<(String, Vec<u8>), ForwardError> {
        loop {
            let Some(msg) = self.sub.next().await else {
                return Err(ForwardError::Nats("subscription ended".into()));
            };
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(ForwardError::NoResponder);
            }
            // Only a relay's answer parts count (dropped, counted and
            // logged otherwise; a part missing then shows as a gap).
            if self.guard.check(&msg).is_err() {
                continue;
            }
            let headers = msg.headers.unwrap_or_default();
            let get = |k: &str| headers.get(k).map(|v| v.as_str().to_string());
            let seq: Option<u64> = get(SEQ).and_then(|s| s.parse().ok());
            if seq != Some(self.seq) {
                return Err(ForwardError::Lost(format!(
                    "part {} of the answer is missing",
                    self.seq
                )));
            }
            self.seq += 1;
            self.buf.extend_from_slice(&msg.payload);
            if get(MORE).as_deref() != Some("1") {
                return Ok((get(KIND).unwrap_or_default(), std::mem::take(&mut self.buf)));
            }
        }
    }
}

/// Writes a numbered stream of items to an inbox, cutting large ones.
pub struct ReplySink {
    client: Client,
    guard: Arc<Guard>,
    subject: String,
    seq: u64,
    part: usize,
}

impl ReplySink {
    fn new(client: Client, guard: Arc<Guard>, subject: String) -> ReplySink {
        // A quarter of the server's cap (1 MiB by default) leaves room for
        // headers; never under 16 KiB.
        let part = (client.server_info().max_payload / 4).max(16 * 1024);
        ReplySink {
            client,
            guard,
            subject,
            seq: 0,
            part,
        }
    }

    async fn item(&mut self, kind: &str, bytes: &[u8]) -> Result<(), String> {
        let parts: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(self.part).collect()
        };
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let mut h = HeaderMap::new();
            h.insert(SEQ, self.seq.to_string().as_str());
            h.insert(KIND, kind);
            if i < last {
                h.insert(MORE, "1");
            }
            self.guard.sign_into(&self.subject, &mut h, part);
            self.seq += 1;
            self.client
                .publish_with_headers(self.subject.clone(), h, Bytes::copy_from_slice(part))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Send one of the agent's answer frames back to the asking relay.
    pub async fn send(&mut self, msg: Message) -> Result<(), String> {
        let frame =
            firstline_proto::frame::encode(&Envelope::new(msg)).map_err(|e| e.to_string())?;
        // Without the length prefix: the item is the payload.
        self.item("frame", &frame[4..]).await
    }

    /// End the answer with the holding relay's own error (not the agent's):
    /// the asking relay reports it as it is.
    pub async fn fail(&mut self, code: firstline_proto::ErrorCode, message: &str) {
        let failure = RelayFailure {
            code,
            message: message.to_string(),
        };
        if let Ok(body) = serde_json::to_vec(&failure) {
            let _ = self.item("error", &body).await;
        }
        self.flush().await;
    }

    /// Push what was sent to the server (after the final frame).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
    }
}

async fn presence_loop(nats: Arc<Nats>, mut sub: Subscriber) {
    let mut tick = tokio::time::interval(nats.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if nats.guard.check(&msg).is_err() {
                    continue;
                }
                let Ok(p) = serde_json::from_slice::<PresenceMsg>(&msg.payload) else {
                    tracing::debug!("cluster: undecodable presence message");
                    continue;
                };
                let next = lock(&nats.map).apply(p, Instant::now());
                match next {
                    Next::Nothing => {}
                    Next::DuplicateId => nats.duplicate_id(),
                    Next::AskSnapshot(relay) => {
                        tokio::spawn(ask_snapshot(nats.clone(), relay));
                    }
                }
            }
            _ = tick.tick() => {
                let (version, agents) = {
                    let local = lock(&nats.local);
                    (local.version, local.agents.len() as u64)
                };
                nats.queue_presence(&PresenceMsg::Beat {
                    relay: nats.id.clone(),
                    instance: nats.instance,
                    version,
                    agents,
                });
                let dead = lock(&nats.map).sweep(Instant::now(), nats.ttl);
                for relay in dead {
                    tracing::warn!(
                        %relay,
                        ttl_ms = nats.ttl.as_millis() as u64,
                        "cluster: relay not heard of within presence_ttl_ms: its agents are offline"
                    );
                }
            }
        }
    }
}

async fn ask_snapshot(nats: Arc<Nats>, relay: String) {
    let inbox = nats.client.new_inbox();
    let Ok(sub) = nats.client.subscribe(inbox.clone()).await else {
        return;
    };
    let subject = format!("{}.relay.{relay}.snapshot", nats.prefix);
    let headers = nats.guard.sign(&subject, Some(&inbox), &[]);
    if nats
        .client
        .publish_with_reply_and_headers(subject, inbox, headers, Bytes::new())
        .await
        .is_err()
    {
        return;
    }
    let mut reader = InboxReader::new(sub, nats.guard.clone());
    match tokio::time::timeout(ACCEPT_TIMEOUT, reader.next_item()).await {
        Ok(Ok((kind, bytes))) if kind == "snapshot" => {
            match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) => {
                    tracing::debug!(%relay, version = s.version, agents = s.agents.len(), "cluster: snapshot");
                    lock(&nats.map).apply_snapshot(s, Instant::now());
                }
                Err(e) => tracing::warn!(%relay, "cluster: undecodable snapshot: {e}"),
            }
        }
        Ok(Ok((kind, _))) => tracing::warn!(%relay, "cluster: expected a snapshot, got `{kind}`"),
        Ok(Err(e)) => tracing::debug!(%relay, "cluster: no snapshot: {e}"),
        Err(_) => tracing::debug!(%relay, "cluster: no snapshot in time"),
    }
}

async fn snapshot_loop(nats: Arc<Nats>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        if nats.guard.check(&msg).is_err() {
            continue;
        }
        let Some(reply) = msg.reply else { continue };
        let snapshot = lock(&nats.local).snapshot(&nats.id, nats.instance);
        let Ok(body) = serde_json::to_vec(&snapshot) else {
            continue;
        };
        let client = nats.client.clone();
        let guard = nats.guard.clone();
        tokio::spawn(async move {
            let mut sink = ReplySink::new(client, guard, reply.to_string());
            if sink.item("snapshot", &body).await.is_ok() {
                sink.flush().await;
            }
        });
    }
}

async fn notice_loop(nats: Arc<Nats>, mut sub: Subscriber, notices: crate::notices::Channel) {
    let me = nats.id.clone();
    while let Some(msg) = sub.next().await {
        if nats.guard.check(&msg).is_err() {
            continue;
        }
        match serde_json::from_slice::<NoticeMsg>(&msg.payload) {
            // Our own never come back (no echo); a relay with our id is
            // reported by the presence loop.
            Ok(n) if n.relay != me => {
                notices.send(n.notice);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("cluster: undecodable notice: {e}"),
        }
    }
}

async fn revoked_loop(nats: Arc<Nats>, mut sub: Subscriber, tx: mpsc::Sender<Revoked>) {
    let me = nats.id.clone();
    while let Some(msg) = sub.next().await {
        if nats.guard.check(&msg).is_err() {
            continue;
        }
        match serde_json::from_slice::<RevokedMsg>(&msg.payload) {
            Ok(r) if r.relay != me => {
                let _ = tx.try_send(Revoked {
                    relay: r.relay,
                    kind: r.kind,
                    name: r.name,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("cluster: undecodable revocation: {e}"),
        }
    }
}

async fn audit_loop(guard: Arc<Guard>, mut sub: Subscriber, tx: mpsc::Sender<String>) {
    while let Some(msg) = sub.next().await {
        // Signed twice: by a relay on the bus (fresh, not replayed), and
        // with the audit key in the line (checked when kept).
        if guard.check(&msg).is_err() {
            continue;
        }
        if let Ok(line) = String::from_utf8(msg.payload.to_vec()) {
            if tx.try_send(line).is_err() {
                tracing::warn!("cluster: audit checkpoints arrive faster than they are kept; one was dropped (it shows as unanchored here)");
            }
        }
    }
}

async fn forward_loop(nats: Arc<Nats>, mut sub: Subscriber, tx: mpsc::Sender<Forwarded>) {
    while let Some(msg) = sub.next().await {
        // A request no relay of this deployment sent (forged, replayed,
        // stale) is dropped unanswered: nothing reaches an agent.
        let Ok(sender) = nats.guard.check(&msg) else {
            continue;
        };
        let Some(reply) = msg.reply else { continue };
        let mut sink = ReplySink::new(nats.client.clone(), nats.guard.clone(), reply.to_string());
        let fwd = match serde_json::from_slice::<ForwardMsg>(&msg.payload) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cluster: undecodable forwarded request: {e}");
                continue;
            }
        };
        let nats = nats.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if sink.item("accepted", &[]).await.is_err() {
                return;
            }
            tracing::debug!(from = %fwd.from, agent = %fwd.agent, relay = %nats.id, "cluster: forwarded request");
            let forwarded = Forwarded {
                from: sender,
                operator: fwd.operator,
                agent: fwd.agent,
                request: fwd.request.msg,
                reply: sink,
            };
            if let Err(mpsc::error::TrySendError::Full(mut f)) = tx.try_send(forwarded) {
                let why = format!(
                    "relay {} is too busy to take requests for its agents; try again",
                    nats.id
                );
                f.reply
                    .fail(firstline_proto::ErrorCode::Internal, &why)
                    .await;
            }
        });
    }
}
