//! `relay.toml`: where the relay listens and every limit it applies.
//!
//! Paths in the file are relative to the file's own folder, so a relay
//! directory made by `firstline-relay init` can be moved as a whole.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// UDP address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// DNS name of the relay as agents reach it (also in its certificate).
    #[serde(default = "default_name")]
    pub name: String,
    /// `HOST:PORT` agents and consoles dial: written into operators'
    /// credential files and the hints of enrollment tokens. `init` sets it
    /// (`--public-addr`, or `--name` with the listen port); without it the
    /// relay falls back to `listen`, which only works when that is a
    /// specific address (not `0.0.0.0` or `[::]`).
    #[serde(default)]
    pub public_addr: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Time a peer has to send the first message of a stream.
    #[serde(default = "default_first_message")]
    pub first_message_timeout_secs: u64,
    /// Time an agent has to answer a request routed to it.
    #[serde(default = "default_request")]
    pub request_timeout_secs: u64,
    /// Concurrent request streams per peer.
    #[serde(default = "default_streams")]
    pub max_streams_per_peer: u32,
    /// Connections at once, in all; more are refused before the handshake.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections at once that have not shown a valid certificate yet
    /// (handshakes, enrollments).
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: u32,
    /// Of those, at most this many from one source address (an IPv6
    /// source is its /64): one address cannot take every slot.
    #[serde(default = "default_max_unauthenticated_per_address")]
    pub max_unauthenticated_per_address: u32,
    /// And at most this many from one source network, a /24 of IPv4 or a
    /// /64 of IPv6: one network cannot take every slot either.
    #[serde(default = "default_max_unauthenticated_per_network")]
    pub max_unauthenticated_per_network: u32,
    /// Enrollment attempts per source address and minute (a burst of as
    /// many is allowed; a site enrolling hundreds of machines behind one
    /// NAT address at once may need more).
    #[serde(default = "default_enroll_per_minute")]
    pub enroll_per_minute: u32,
    /// Monitoring events per agent and second the relay ingests; faster
    /// senders are slowed down (their acknowledgements wait), never dropped.
    #[serde(default = "default_agent_events_per_sec")]
    pub agent_events_per_sec: u32,
    /// And bytes of events (as received, before they are cut to size) per
    /// agent and second: a few large events are paced as many small ones.
    #[serde(default = "default_agent_event_bytes_per_sec")]
    pub agent_event_bytes_per_sec: u32,
    /// Bytes an agent may answer one request with (every result, progress
    /// and verdict frame counted): past it the relay stops the answer
    /// stream, tells the console, and audits the request as failed.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u32,
    #[serde(default = "default_agent_cert")]
    pub agent_cert_ttl_secs: u64,
    #[serde(default = "default_operator_cert")]
    pub operator_cert_ttl_secs: u64,
    /// How often `serve` looks for revocations made by the admin commands.
    #[serde(default = "default_revocation_poll")]
    pub revocation_poll_ms: u64,
    /// How often the relay expires actions queued for offline machines
    /// past their `--queue-for` (and delivers pending ones to machines
    /// connected here that missed them: `crate::queue`).
    #[serde(default = "default_queue_sweep")]
    pub queue_sweep_ms: u64,
    /// Default lifetime of enrollment tokens.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// A monitor that fails again within this long after its ticket was
    /// resolved reopens that ticket instead of opening a new one.
    #[serde(default = "default_reopen_window")]
    pub reopen_window_secs: u64,
    /// External help desk: each ticket event is POSTed here as JSON.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Key of the `X-Firstline-Signature` HMAC-SHA256 header (required with a URL).
    /// A secret: keep relay.toml 0600 (or 0640 with the relay's group); every
    /// command that loads a config readable by others warns about it.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub webhook_timeout_secs: u64,
    /// Retries back off exponentially up to this delay.
    #[serde(default = "default_webhook_backoff")]
    pub webhook_max_backoff_secs: u64,
    /// This relay's id among the relays of its deployment (letters, digits,
    /// `-`, `_`): `init` and `init --join` write one; without it, an id is
    /// derived from the relay's server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_id: Option<String>,
    /// The deployment's name, the same on every relay of it: the prefix of
    /// webhook event ids and ticket keys (default: `name`; `init --join`
    /// writes the joined relay's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `ADDR:PORT` of the Prometheus `/metrics` endpoint (plain HTTP; see
    /// `crate::metrics`). Unset: no listener. Meant for loopback (or a
    /// private address the scraper reaches); any other is served with a
    /// warning in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// The knowledge base's folder of Markdown articles (`crate::kb`),
    /// relative to this file; unset: `kb` beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kb_dir: Option<String>,
    /// Where tickets, agents and the audit log are stored.
    #[serde(default, skip_serializing_if = "StoreConfig::is_default")]
    pub store: StoreConfig,
    /// The other relays of the deployment (`[cluster] nats`); none by default.
    #[serde(default, skip_serializing_if = "ClusterConfig::is_default")]
    pub cluster: ClusterConfig,
    /// A help desk of record every ticket is mirrored into (`[helpdesk]`,
    /// see `crate::helpdesk`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<HelpdeskConfig>,
}

/// `[helpdesk]` of relay.toml: the help desk every ticket is mirrored into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskConfig {
    /// The kind of help desk: `rt` (Request Tracker 5, its REST 2 API).
    pub kind: HelpdeskKind,
    /// Its base URL, e.g. `https://rt.example.org` (REST 2 is under
    /// `URL/REST/2.0/`).
    pub url: String,
    /// File holding an RT auth token (relative to relay.toml's folder);
    /// a secret: it must not be readable by others (0600).
    pub token_file: String,
    /// The RT queue tickets are created in.
    #[serde(default = "default_helpdesk_queue")]
    pub queue: String,
    /// How often the relay asks the help desk whether mirrored tickets
    /// were resolved there.
    #[serde(default = "default_helpdesk_poll")]
    pub poll_secs: u64,
    /// Time one request to the help desk may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
    /// Retries back off exponentially up to this delay.
    #[serde(default = "default_webhook_backoff")]
    pub max_backoff_secs: u64,
}

/// The help desks firstline mirrors tickets into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelpdeskKind {
    /// Request Tracker 5.
    Rt,
}

fn default_helpdesk_queue() -> String {
    "General".into()
}
fn default_helpdesk_poll() -> u64 {
    30
}

/// `[cluster]` of relay.toml: the relays of one deployment share a store
/// and talk over NATS (see `crate::cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server(s): `nats://HOST:4222` (`tls://` for TLS), several
    /// separated by commas; `USER:PASSWORD@` or `TOKEN@` before the host
    /// authenticates. Unset: a relay on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    /// PEM file of the CA that signed the NATS servers' certificates
    /// (relative to relay.toml's folder); setting it requires TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_ca: Option<String>,
    /// The deployment's NATS credential: a file holding an nkey user seed
    /// (`SU…`, 0600; relative to relay.toml's folder). `init --nats` writes
    /// `nats.nk` and the nats-server `authorization` block that admits it
    /// (`nats-authorization.conf`); `init --join` copies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_nkey: Option<String>,
    /// Connect to a NATS server without any credential (no nkey, no
    /// `USER:PASSWORD@` or `TOKEN@` in the URL). Refused unless this is
    /// set; when set, the relay says so loudly at every start (log, and
    /// `firstline_cluster_nats_insecure` 1 on /metrics): anyone who
    /// reaches that NATS server reads the deployment's traffic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nats_insecure: bool,
    /// How often this relay tells the others it is alive.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// A relay not heard of for this long is taken for dead, and the agents
    /// it held for offline (within `presence_ttl_ms + heartbeat_ms`).
    #[serde(default = "default_presence_ttl")]
    pub presence_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: None,
            nats_ca: None,
            nats_nkey: None,
            nats_insecure: false,
            heartbeat_ms: default_heartbeat(),
            presence_ttl_ms: default_presence_ttl(),
        }
    }
}

impl ClusterConfig {
    fn is_default(&self) -> bool {
        self == &ClusterConfig::default()
    }
}

fn default_heartbeat() -> u64 {
    1_000
}
fn default_presence_ttl() -> u64 {
    5_000
}

/// Whether `id` may be a relay id: 1-64 letters, digits, `-` or `_` (it is
/// part of NATS subjects).
pub fn valid_relay_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new relay id: `r-` and 8 random hex digits.
pub fn new_relay_id() -> String {
    format!("r-{:08x}", rand::random::<u32>())
}

/// `[store]` of relay.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:FILE` (relative to relay.toml's folder) or
    /// `postgres://USER:PASSWORD@HOST/DB`; default: `sqlite:relay.db`.
    #[serde(default)]
    pub url: Option<String>,
}

impl StoreConfig {
    /// The store of relays made before `[store]`: relay.db beside relay.toml.
    pub const DEFAULT_URL: &str = "sqlite:relay.db";

    fn is_default(&self) -> bool {
        self == &StoreConfig::default()
    }
}

fn default_name() -> String {
    firstline_proto::RELAY_SERVER_NAME.into()
}
fn default_keep_alive() -> u64 {
    5
}
fn default_idle() -> u64 {
    20
}
fn default_first_message() -> u64 {
    10
}
fn default_request() -> u64 {
    60
}
fn default_streams() -> u32 {
    16
}
fn default_max_connections() -> u32 {
    100_000
}
fn default_max_unauthenticated() -> u32 {
    1_000
}
fn default_max_unauthenticated_per_address() -> u32 {
    32
}
fn default_max_unauthenticated_per_network() -> u32 {
    128
}
fn default_enroll_per_minute() -> u32 {
    60
}
fn default_agent_events_per_sec() -> u32 {
    50
}
fn default_agent_event_bytes_per_sec() -> u32 {
    256 * 1024
}
fn default_max_answer_bytes() -> u32 {
    8 << 20
}
fn default_agent_cert() -> u64 {
    90 * 86_400
}
fn default_operator_cert() -> u64 {
    365 * 86_400
}
fn default_revocation_poll() -> u64 {
    500
}
fn default_queue_sweep() -> u64 {
    30_000
}
fn default_token_ttl() -> u64 {
    86_400
}
fn default_reopen_window() -> u64 {
    3_600
}
fn default_webhook_timeout() -> u64 {
    10
}
fn default_webhook_backoff() -> u64 {
    300
}

impl RelayConfig {
    pub fn new(listen: SocketAddr, name: String) -> Self {
        let mut c: RelayConfig =
            toml::from_str(&format!("listen = \"{listen}\"")).expect("defaults parse");
        c.name = name;
        c
    }

    /// The connection bounds of [`crate::admission::Gate::admit`].
    pub fn bounds(&self) -> crate::admission::Bounds {
        crate::admission::Bounds {
            live: self.max_connections as usize,
            unauthenticated: self.max_unauthenticated as usize,
            per_address: self.max_unauthenticated_per_address as usize,
            per_network: self.max_unauthenticated_per_network as usize,
        }
    }

    pub fn limits(&self) -> firstline_net::endpoint::Limits {
        firstline_net::endpoint::Limits {
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_streams: self.max_streams_per_peer,
        }
    }

    /// The address agents and consoles dial.
    pub fn public_addr(&self) -> String {
        self.public_addr
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// [`RelayConfig::public_addr`] if others can dial it: `None` when it
    /// falls back to a wildcard `listen` address (`0.0.0.0`, `[::]`).
    pub fn dialable_public_addr(&self) -> Option<String> {
        let addr = self.public_addr();
        match addr.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => None,
            _ => Some(addr),
        }
    }
}

/// The `public_addr` `init` writes: `--public-addr` as given; else `--name`
/// with the listen port; else the listen address when it is a specific one
/// (`None` for a wildcard such as `0.0.0.0:4433`: nobody can dial that).
pub fn default_public_addr(
    listen: SocketAddr,
    name: Option<&str>,
    public_addr: Option<&str>,
) -> Option<String> {
    if let Some(p) = public_addr {
        return Some(p.to_string());
    }
    if let Some(n) = name {
        return Some(format!("{n}:{}", listen.port()));
    }
    (!listen.ip().is_unspecified()).then(|| listen.to_string())
}

/// Why a `public_addr` value is not `HOST:PORT` others can dial; `None`
/// when it is.
pub fn public_addr_problem(addr: &str) -> Option<String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some(format!(
            "public_addr `{addr}` needs a port: HOST:PORT, e.g. relay.example.org:4433"
        ));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Some(format!(
            "public_addr `{addr}`: `{port}` is not a port (1-65535)"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Some(format!("public_addr `{addr}` needs a host name or address"));
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Some(format!(
            "public_addr `{addr}` is a wildcard address nobody can dial: use this machine's name or address"
        ));
    }
    None
}

/// A loaded config and the folder its relative paths start from.
#[derive(Debug, Clone)]
pub struct RelayDir {
    pub config: RelayConfig,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl RelayDir {
    pub fn load(config_path: &Path) -> Result<RelayDir> {
        let config: RelayConfig = firstline_net::config::load(config_path)?;
        validate(config_path, &config)?;
        warn_if_exposed(config_path, &config);
        let dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(RelayDir {
            config,
            dir,
            config_path: config_path.to_path_buf(),
        })
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("relay.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("relay-key.pem")
    }
    /// The SQLite file of the default store (see [`RelayDir::store_location`]).
    pub fn database(&self) -> PathBuf {
        self.dir.join("relay.db")
    }

    /// Where the store is: `[store] url`, relative to this folder; relay.db
    /// beside relay.toml when not set.
    pub fn store_location(&self) -> Result<crate::store::Location> {
        let url = self
            .config
            .store
            .url
            .as_deref()
            .unwrap_or(StoreConfig::DEFAULT_URL);
        crate::store::Location::parse(url, &self.dir).map_err(|e| anyhow::anyhow!(e))
    }

    /// Open the store this relay uses, with the system clock; ticket
    /// changes are queued for the webhook when one is configured.
    pub fn open_store(&self) -> Result<crate::store::Store> {
        let options = crate::store::Options {
            clock: crate::clock::system(),
            webhook_source: self.config.webhook_url.is_some().then(|| self.deployment()),
            helpdesk: self.config.helpdesk.is_some(),
        };
        Ok(crate::store::Store::open(&self.store_location()?, options)?)
    }
    /// The deployment's name (`deployment`, else `name`): what webhook ids
    /// and ticket keys start with, the same on every relay of it.
    pub fn deployment(&self) -> String {
        self.config
            .deployment
            .clone()
            .unwrap_or_else(|| self.config.name.clone())
    }

    /// This relay's id: `relay_id`, else `r-` and the first 8 hex digits
    /// of the SHA-256 of its server certificate file (stable, and its own).
    pub fn relay_id(&self) -> String {
        if let Some(id) = &self.config.relay_id {
            return id.clone();
        }
        match std::fs::read(self.server_cert()) {
            Ok(pem) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, &pem);
                format!("r-{}", hex::encode(&digest.as_ref()[..4]))
            }
            Err(_) => self.config.name.clone(),
        }
    }

    /// The knowledge base's folder: `kb_dir`, relative to this folder;
    /// `kb` beside relay.toml when not set.
    pub fn kb_dir(&self) -> PathBuf {
        self.dir.join(self.config.kb_dir.as_deref().unwrap_or("kb"))
    }

    /// `[helpdesk] token_file`, relative to this folder.
    pub fn helpdesk_token_file(&self) -> Option<PathBuf> {
        self.config
            .helpdesk
            .as_ref()
            .map(|h| self.dir.join(&h.token_file))
    }

    /// `[cluster] nats_ca`, relative to this folder.
    pub fn nats_ca(&self) -> Option<PathBuf> {
        self.config
            .cluster
            .nats_ca
            .as_ref()
            .map(|p| self.dir.join(p))
    }

    /// `[cluster] nats_nkey`, relative to this folder.
    pub fn nats_nkey(&self) -> Option<PathBuf> {
        self.config
            .cluster
            .nats_nkey
            .as_ref()
            .map(|p| self.dir.join(p))
    }

    /// Secret for QUIC stateless resets, kept across restarts.
    pub fn reset_key(&self) -> PathBuf {
        self.dir.join("reset-key")
    }

    /// The stateless-reset secret, created on first use.
    pub fn load_reset_secret(&self) -> Result<Vec<u8>> {
        let path = self.reset_key();
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
            _ => {
                let secret: [u8; 32] = rand::random();
                firstline_net::credential::write_private(&path, &secret)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                Ok(secret.to_vec())
            }
        }
    }
}

/// `webhook_secret` in a file that other users can read is warned about, not
/// refused: refusing would stop a relay (and its alerts) over a mode an admin
/// can fix at leisure. `init` writes relay.toml 0600 and the packages install
/// it 0640 root:firstline-relay, which is not warned about: the group is the
/// relay's own (the process's, or that of relay.db beside the config).
fn warn_if_exposed(path: &Path, c: &RelayConfig) {
    use std::os::unix::fs::MetadataExt;
    let mut held = Vec::new();
    if c.webhook_secret.is_some() {
        held.push("webhook_secret");
    }
    if c.store.url.as_deref().is_some_and(carries_secret) {
        held.push("the store's password ([store] url)");
    }
    if c.cluster.nats.as_deref().is_some_and(carries_secret) {
        held.push("the NATS credentials ([cluster] nats)");
    }
    if held.is_empty() {
        return;
    }
    let db = path.with_file_name("relay.db");
    let relay_group: Vec<u32> = std::fs::metadata(db).map(|m| m.gid()).into_iter().collect();
    if let Ok(Some(mode)) = firstline_net::private::exposed(path, &relay_group) {
        let msg = format!(
            "{} holds {} but other users can read it (mode {mode:04o}): \
             chmod 600 it (or 640 with the relay's group)",
            path.display(),
            held.join(" and ")
        );
        // `serve` and `validate` load the config before logging is set up.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!("{msg}");
        } else {
            eprintln!("warning: {msg}");
        }
    }
}

/// Whether a store or NATS URL (NATS: a comma-separated list) carries a
/// secret: a `USER:PASSWORD@` or `TOKEN@` before a host.
pub fn carries_secret(url: &str) -> bool {
    url.split(',').any(|part| {
        let rest = part.trim().split_once("://").map_or(part, |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        authority.contains('@')
    })
}

/// The environment variable `init` reads the store URL from.
pub const STORE_URL_ENV: &str = "FIRSTLINE_STORE_URL";
/// The environment variable `init` reads the NATS URL from.
pub const NATS_URL_ENV: &str = "FIRSTLINE_NATS_URL";

/// A store or NATS URL for `init`, from (first found) `--store URL` /
/// `--nats URL` (`flag`: on the command line, which every local user can
/// read — warned about when it carries a password), `--store-file FILE` /
/// `--nats-file FILE` (`file`: its first line), or the environment
/// variable `env`. `what` names the option in messages (`store`, `nats`).
pub fn url_from(
    what: &str,
    flag: Option<String>,
    file: Option<&Path>,
    env: &str,
) -> Result<Option<String>> {
    if let Some(url) = flag {
        if carries_secret(&url) {
            eprintln!(
                "warning: --{what} carries a password on the command line, where every local \
                 user can read it (ps, /proc): give it with --{what}-file FILE or ${env} instead"
            );
        }
        return Ok(Some(url));
    }
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --{what}-file {}", file.display()))?;
        let url = text.lines().next().unwrap_or_default().trim().to_string();
        if url.is_empty() {
            anyhow::bail!(
                "--{what}-file {} is empty: write the URL on its first line",
                file.display()
            );
        }
        return Ok(Some(url));
    }
    match std::env::var(env) {
        Ok(url) if !url.trim().is_empty() => Ok(Some(url.trim().to_string())),
        _ => Ok(None),
    }
}

/// Checks serde cannot express; each error names the file and line.
fn validate(path: &Path, c: &RelayConfig) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let name = path.display().to_string();
    let bad = |key: &str, msg: &str| {
        Err(firstline_net::config::invalid_key(&name, &text, key, msg.to_string()).into())
    };
    if c.keep_alive_secs == 0 || c.keep_alive_secs >= c.idle_timeout_secs {
        return bad(
            "keep_alive_secs",
            "keep_alive_secs must be at least 1 and below idle_timeout_secs",
        );
    }
    if c.max_streams_per_peer == 0 {
        return bad(
            "max_streams_per_peer",
            "max_streams_per_peer must be at least 1",
        );
    }
    for (key, value) in [
        ("max_connections", c.max_connections),
        ("max_unauthenticated", c.max_unauthenticated),
        (
            "max_unauthenticated_per_address",
            c.max_unauthenticated_per_address,
        ),
        (
            "max_unauthenticated_per_network",
            c.max_unauthenticated_per_network,
        ),
        ("enroll_per_minute", c.enroll_per_minute),
        ("agent_events_per_sec", c.agent_events_per_sec),
        ("agent_event_bytes_per_sec", c.agent_event_bytes_per_sec),
        ("max_answer_bytes", c.max_answer_bytes),
    ] {
        if value == 0 {
            return bad(key, &format!("{key} must be at least 1"));
        }
    }
    if c.agent_cert_ttl_secs < 60 {
        return bad(
            "agent_cert_ttl_secs",
            "agent_cert_ttl_secs must be at least 60",
        );
    }
    if let Some(url) = &c.webhook_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return bad(
                "webhook_url",
                "webhook_url must be an http:// or https:// URL",
            );
        }
        if c.webhook_secret.as_deref().unwrap_or_default().len() < 16 {
            return bad(
                "webhook_url",
                "webhook_url needs webhook_secret (at least 16 characters) to sign deliveries",
            );
        }
    }
    if !firstline_net::identity::valid_name(&c.name) {
        return bad(
            "name",
            "name must be a DNS-like name (letters, digits, . _ -)",
        );
    }
    if let Some(problem) = c.public_addr.as_deref().and_then(public_addr_problem) {
        return bad("public_addr", &problem);
    }
    if let Some(url) = &c.store.url {
        if let Err(problem) = crate::store::Location::parse(url, Path::new(".")) {
            return bad("url", &problem);
        }
    }
    if let Some(id) = &c.relay_id {
        if !valid_relay_id(id) {
            return bad(
                "relay_id",
                "relay_id must be 1-64 letters, digits, `-` or `_`",
            );
        }
    }
    if let Some(d) = &c.deployment {
        if !firstline_net::identity::valid_name(d) {
            return bad(
                "deployment",
                "deployment must be a DNS-like name (letters, digits, . _ -)",
            );
        }
    }
    if let Some(h) = &c.helpdesk {
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return bad("url", "[helpdesk] url must be an http:// or https:// URL");
        }
        if h.queue.trim().is_empty() || h.queue.contains('\'') {
            return bad("queue", "[helpdesk] queue must be the name of an RT queue");
        }
        if h.poll_secs == 0 || h.timeout_secs == 0 {
            return bad(
                "poll_secs",
                "[helpdesk] poll_secs and timeout_secs must be at least 1",
            );
        }
        let token = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(&h.token_file);
        if let Err(problem) = read_helpdesk_token(&token) {
            return bad("token_file", &problem);
        }
    }
    let k = &c.cluster;
    if let Some(nats) = &k.nats {
        if let Err(problem) = nats_servers(nats) {
            return bad("nats", &problem);
        }
        if k.nats_nkey.is_none() && !carries_secret(nats) && !k.nats_insecure {
            return bad(
                "nats",
                "NATS without authentication: anyone who reaches that server could read the \
                 deployment's traffic and speak for its relays. Give the relays a credential \
                 (`nats_nkey = \"nats.nk\"` — `firstline-relay init --nats` makes one and the \
                 nats-server block that admits it —, or USER:PASSWORD@ / TOKEN@ in the URL), or \
                 set `nats_insecure = true` in [cluster] to run without (SECURITY.md)",
            );
        }
    }
    if k.heartbeat_ms < 50 {
        return bad("heartbeat_ms", "heartbeat_ms must be at least 50");
    }
    if k.presence_ttl_ms < 2 * k.heartbeat_ms {
        return bad(
            "presence_ttl_ms",
            "presence_ttl_ms must be at least twice heartbeat_ms (a relay misses one heartbeat before it counts as dead)",
        );
    }
    Ok(())
}

/// The help desk token in `path`, trimmed; refused when the file is
/// missing, empty, or readable by other users (it is a secret: 0600).
pub fn read_helpdesk_token(path: &Path) -> Result<String, String> {
    let shown = path.display();
    match firstline_net::private::exposed(path, &[]) {
        Ok(Some(mode)) => {
            return Err(format!(
                "{shown} (the help desk token) can be read by other users (mode {mode:04o}): chmod 600 it"
            ))
        }
        Ok(None) => {}
        Err(e) => return Err(format!("cannot read the help desk token {shown}: {e}")),
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the help desk token {shown}: {e}"))?;
    let token = token.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(format!("{shown} must hold one RT auth token"));
    }
    Ok(token)
}

/// The NATS servers of `[cluster] nats`: comma-separated `nats://` or
/// `tls://` URLs (a bare `HOST:PORT` is taken as `nats://`).
pub fn nats_servers(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = if part.contains("://") {
            part.to_string()
        } else {
            format!("nats://{part}")
        };
        let scheme = url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "nats" | "tls") {
            return Err(format!(
                "`{}`: use nats://HOST:PORT (or tls://HOST:PORT)",
                crate::store::redact(part)
            ));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err("nats needs a server: nats://HOST:4222".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_seen() {
        for url in [
            "postgres://fl:pw@127.0.0.1/db",
            "nats://tok@127.0.0.1:4222",
            "nats://a:4222, tls://u:p@b:4222",
            "postgres://fl:pw@h/db?sslmode=require",
        ] {
            assert!(carries_secret(url), "{url}");
        }
        for url in [
            "sqlite:relay.db",
            "postgres://127.0.0.1/db",
            "nats://127.0.0.1:4222",
            "postgres://h/db?user=a@b",
        ] {
            assert!(!carries_secret(url), "{url}");
        }
    }

    #[test]
    fn public_addr_defaults_from_the_name_or_a_specific_listen_address() {
        let any: SocketAddr = "0.0.0.0:4433".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            default_public_addr(any, Some("relay.example.org"), None).as_deref(),
            Some("relay.example.org:4433")
        );
        assert_eq!(
            default_public_addr(any, Some("r"), Some("x.example:1")).as_deref(),
            Some("x.example:1")
        );
        assert_eq!(
            default_public_addr(lo, None, None).as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(default_public_addr(any, None, None), None);
        let mut c = RelayConfig::new(any, "r".into());
        assert_eq!(c.dialable_public_addr(), None);
        c.public_addr = Some("relay.example.org:4433".into());
        assert_eq!(
            c.dialable_public_addr().as_deref(),
            Some("relay.example.org:4433")
        );
        assert!(public_addr_problem("relay.example.org:4433").is_none());
        assert!(
            !toml::to_string(&c).unwrap().contains("[store]"),
            "no [store] unless set"
        );
        assert!(public_addr_problem("[::1]:4433").is_none());
        for bad in [
            "relay.example.org",
            "0.0.0.0:4433",
            "[::]:1",
            ":4433",
            "h:0",
            "h:x",
        ] {
            assert!(public_addr_problem(bad).is_some(), "{bad}");
        }
    }
}
