//! `agent.toml`: which relay (or relays), which name, where the identity
//! lives, and the link's timing. Written by `enroll`, read by `run`.
//!
//! Relative paths are relative to the config file's folder.

use anyhow::{Context, Result};
use firstline_net::config::ConfigError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/firstline/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/firstline-agent";
/// Nagios-compatible plugins (`plugin NAME`); monitoring-plugins installs here.
pub const DEFAULT_PLUGINS_DIR: &str = "/usr/lib/nagios/plugins";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `HOST:PORT` of the relay, or a list of relays of the same deployment
    /// (`["a:4433", "b:4433"]`) the link fails over between (written by
    /// `enroll`; missing: not enrolled).
    #[serde(default)]
    pub relay: Relays,
    /// This agent's name (as enrolled; the relay reads it from the certificate).
    #[serde(default)]
    pub name: String,
    /// Folder of `identity.pem` (certificate + key) and `ca.pem`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Time a connection attempt to the relay (the QUIC handshake) has
    /// before it counts as failed: `enroll` then reports the relay as
    /// unreachable, `run` retries after its backoff.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// First reconnect delay; doubles up to `reconnect_max_ms`, with jitter.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Folder of the Nagios-compatible plugins `plugin NAME` may run.
    #[serde(default = "default_plugins_dir")]
    pub plugins_dir: PathBuf,
    /// Renew the certificate when less than this much validity is left.
    #[serde(default = "default_renew_before")]
    pub renew_before_secs: u64,
    /// How often to look at the certificate's expiry.
    #[serde(default = "default_renew_check")]
    pub renew_check_secs: u64,
    /// Use the built-in monitor set when no `[[monitor]]` is configured.
    #[serde(default = "default_true")]
    pub default_monitors: bool,
    /// Consecutive non-ok results that open an incident (flap damping).
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
    /// Consecutive ok results that resolve it.
    #[serde(default = "default_recover_after")]
    pub recover_after: u32,
    /// Outbox bound; when full the oldest plain results are dropped.
    #[serde(default = "default_outbox_max")]
    pub outbox_max_events: u64,
    #[serde(default, rename = "monitor")]
    pub monitors: Vec<MonitorConfig>,
    /// Which fixes this machine allows at all.
    #[serde(default)]
    pub policy: crate::policy::Policy,
    /// Admin scripts for `script NAME` (only with `[policy] scripts = true`).
    #[serde(default = "default_scripts_dir")]
    pub scripts_dir: PathBuf,
    /// Admin runbooks (`*.toml`), in addition to the shipped ones.
    #[serde(default = "default_runbooks_dir")]
    pub runbooks_dir: PathBuf,
    /// The local socket of `firstline-help` (created by the agent, mode
    /// 0666, in a folder it creates 0755; see `crate::help`).
    #[serde(default = "default_help_socket")]
    pub help_socket: PathBuf,
    /// `firstline-help run` and `ask` allowed per local user per minute.
    #[serde(default = "default_help_rate")]
    pub help_rate_per_minute: u32,
    /// The unprivileged user checks and plugins run as in their workers
    /// when the agent runs as root (default: `firstline-agent` where the
    /// packages created it, else `nobody`; see `crate::worker`).
    #[serde(default)]
    pub worker_user: Option<String>,
}

/// The relays this agent dials: `relay = "HOST:PORT"` or
/// `relay = ["HOST:PORT", …]` in agent.toml (a string or a list of strings;
/// written back as a string when there is one). The port defaults to 4433.
/// All of them belong to one deployment: one CA, which `ca.pem` pins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relays(Vec<String>);

impl Relays {
    /// The addresses, in the order they are tried.
    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// No relay at all (`relay` missing or `""`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The first relay, the one `run` dials first.
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// The command-line form `enroll --relay` takes: one address, or
    /// several separated by commas (`a:4433,b:4433`), in the order given.
    pub fn from_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Relays {
        Relays(
            args.into_iter()
                .flat_map(|a| {
                    a.as_ref()
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    }

    /// What is wrong with the list, if anything: each address's syntax
    /// (no name resolution), an address listed twice.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, addr) in self.0.iter().enumerate() {
            if let Some(p) = address_problem(addr) {
                out.push(p);
            } else if self.0[..i].contains(addr) {
                out.push(format!("relay `{addr}` is listed twice"));
            }
        }
        out
    }
}

/// `a:4433` or `a:4433, b:4433`.
impl std::fmt::Display for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// One address as `enroll --relay` takes it (commas separate several).
impl From<String> for Relays {
    fn from(arg: String) -> Relays {
        Relays::from_args([arg])
    }
}

impl From<&str> for Relays {
    fn from(arg: &str) -> Relays {
        Relays::from_args([arg])
    }
}

/// `--relay` given several times.
impl From<Vec<String>> for Relays {
    fn from(args: Vec<String>) -> Relays {
        Relays::from_args(args)
    }
}

impl Serialize for Relays {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Relays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Relays, D::Error> {
        // A string or a list of strings (an untagged "one or many"), with
        // an error that says so instead of "did not match any variant".
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Relays;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"the relay's "HOST:PORT", or a list of them: ["a:4433", "b:4433"]"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Relays, E> {
                Ok(Relays(match v.trim() {
                    "" => Vec::new(),
                    one => vec![one.to_string()],
                }))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Relays, A::Error> {
                let mut list = Vec::new();
                while let Some(addr) = seq.next_element::<String>()? {
                    list.push(addr.trim().to_string());
                }
                Ok(Relays(list))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// What is wrong with one relay address (`HOST:PORT`, `HOST`, `[IPv6]:PORT`),
/// by its syntax alone: the host must be an IP address or a DNS name, the
/// port 1-65535.
pub fn address_problem(addr: &str) -> Option<String> {
    let bad = |why: &str| Some(format!("relay `{addr}`: {why}"));
    if addr.is_empty() {
        return bad("empty address: write the relay's HOST:PORT");
    }
    if addr
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return bad("an address has no spaces or commas: write each relay as its own string");
    }
    if addr.contains("://") {
        return bad("no scheme: write HOST:PORT, e.g. relay.example.org:4433");
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("`[` without its `]`: write [IPv6]:PORT");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(&format!("`{v6}` is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("after `]` comes `:PORT`"),
            },
        }
    } else if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        return bad("write an IPv6 address in brackets, with its port: [ADDRESS]:4433");
    } else if addr.matches(':').count() > 1 {
        return bad("more than one `:`; an IPv6 address goes in brackets: [ADDRESS]:4433");
    } else {
        match addr.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(addr), None),
        }
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad(&format!("`{port}` is not a port (1-65535)"));
        }
    }
    if let Some(host) = host {
        if host.is_empty() {
            return bad("no host before the port: write HOST:PORT");
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return bad(&format!(
                "`{host}` is neither an IP address nor a host name (letters, digits, `-`, dots between labels)"
            ));
        }
        // All-numeric dotted names are IPv4 addresses or mistakes (`10.0.0.300`).
        if name
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
            && host.parse::<std::net::Ipv4Addr>().is_err()
        {
            return bad(&format!("`{host}` is not an IPv4 address"));
        }
    }
    None
}

fn default_scripts_dir() -> PathBuf {
    PathBuf::from("/etc/firstline/scripts")
}

fn default_help_socket() -> PathBuf {
    PathBuf::from(crate::help::DEFAULT_SOCKET)
}
fn default_help_rate() -> u32 {
    6
}
fn default_runbooks_dir() -> PathBuf {
    PathBuf::from("/etc/firstline/runbooks")
}

/// One `[[monitor]]` table: the check's own command line, and how often.
/// The type lives in the wire contract: central monitor sets
/// ([`firstline_proto::central`]) are the same tables.
pub type MonitorConfig = firstline_proto::central::MonitorSpec;

/// What keeps a `[[monitor]]` from running on this agent, whatever its
/// policy says, beyond what any table is held to
/// ([`firstline_net::monitors::spec_problems`]: `every`, the counters): a
/// check this agent does not have, arguments the check's parser or its own
/// rules reject. `(key, message)`; local tables and central sets are
/// checked alike (`firstline monitors set` runs it on the console too).
pub fn check_monitor(m: &MonitorConfig) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if !crate::checks::NAMES.contains(&m.check.as_str()) {
        errors.push((
            "check",
            format!(
                "unknown check `{}` (this agent offers: {})",
                firstline_proto::text::printable(&m.check),
                crate::checks::NAMES.join(", ")
            ),
        ));
        return errors;
    }
    if let Err(e) = crate::checks::validate_args(&m.check, &m.args) {
        let why = match e {
            crate::checks::CheckError::Usage(msg) => crate::checks::usage_line(&msg),
            other => other.to_string(),
        };
        errors.push((
            "args",
            format!(
                "monitor `{}`: bad arguments for `{}`: {why}",
                m.id(),
                m.check
            ),
        ));
    }
    errors
}

/// Whether this agent's `[policy]` lets the monitor `m` run: its plugin
/// in the allow-list (the only check the policy names).
pub fn policy_allows_monitor(
    policy: &crate::policy::Policy,
    m: &MonitorConfig,
) -> Result<(), String> {
    if m.check == "plugin" {
        let plugin: Result<crate::checks::plugin::PluginArgs, _> =
            crate::checks::parse_args("plugin", &m.args);
        if let Ok(p) = plugin {
            return policy.allows_plugin(&p.name);
        }
    }
    Ok(())
}

fn default_true() -> bool {
    true
}
fn default_fail_after() -> u32 {
    3
}
fn default_recover_after() -> u32 {
    2
}
fn default_outbox_max() -> u64 {
    10_000
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".")
}
fn default_plugins_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PLUGINS_DIR)
}
fn default_keep_alive() -> u64 {
    5
}
fn default_idle() -> u64 {
    20
}
/// Default of `connect_timeout_ms`: a relay that has not answered a
/// handshake in 3 s (a loopback or LAN handshake takes milliseconds, one
/// across continents well under a second) is reported as unreachable.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;

fn default_connect_timeout() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}
fn default_reconnect_min() -> u64 {
    250
}
fn default_reconnect_max() -> u64 {
    30_000
}
fn default_renew_before() -> u64 {
    30 * 86_400
}
fn default_renew_check() -> u64 {
    3_600
}

/// A loaded config with its paths resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: AgentConfig,
    pub path: PathBuf,
    /// `state_dir`, resolved against the config's folder.
    pub state_dir: PathBuf,
    /// How actions run: in sandboxed workers for the daemon
    /// ([`Loaded::with_workers`]), in this process for local commands.
    pub runner: crate::worker::Runner,
}

impl Loaded {
    pub fn load(path: &Path) -> Result<Loaded> {
        // Relative folders in the file are resolved against the file's own
        // folder; with a relative config path that folder must be made
        // absolute now, or a plugin started in another working directory
        // would be looked up from there.
        let path = &std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let config: AgentConfig = firstline_net::config::load(path)?;
        let text = std::fs::read_to_string(path)?;
        let name = path.display().to_string();
        if let Some(e) = firstline_net::config::combine(problems(&config, &name, &text)) {
            return Err(e.into());
        }
        let state_dir = resolve(path, &config.state_dir);
        Ok(Loaded {
            config,
            path: path.to_path_buf(),
            state_dir,
            runner: Default::default(),
        })
    }

    /// The same config, its checks, plugins, fixes and runbook steps run in
    /// sandboxed workers (what `firstline-agent run` serves with).
    pub fn with_workers(mut self) -> Loaded {
        let user = self
            .config
            .worker_user
            .clone()
            .unwrap_or_else(crate::worker::default_user);
        self.runner = crate::worker::Runner::worker(user);
        self
    }

    pub fn identity_path(&self) -> PathBuf {
        self.state_dir.join("identity.pem")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.state_dir.join("ca.pem")
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.state_dir.join("outbox.db")
    }

    /// The monitors to run: the configured ones, or the built-in set.
    pub fn monitors(&self) -> Vec<crate::monitor::Monitor> {
        let c = &self.config;
        let configured: Vec<MonitorConfig> = if c.monitors.is_empty() && c.default_monitors {
            self.default_monitor_set()
        } else {
            c.monitors.clone()
        };
        configured
            .into_iter()
            .filter(|m| crate::checks::NAMES.contains(&m.check.as_str()))
            .map(|m| self.monitor_of(m))
            .collect()
    }

    /// A `[[monitor]]` table ready to run, with this agent's defaults
    /// (`fail_after`, `recover_after`).
    pub fn monitor_of(&self, m: MonitorConfig) -> crate::monitor::Monitor {
        let c = &self.config;
        crate::monitor::Monitor {
            id: m.id(),
            every: humantime::parse_duration(&m.every).unwrap_or(Duration::from_secs(300)),
            fail_after: m.fail_after.unwrap_or(c.fail_after),
            recover_after: m.recover_after.unwrap_or(c.recover_after),
            check: m.check,
            args: m.args,
        }
    }

    /// Disk on `/`, memory, DNS of the relay's name, and the CUPS default
    /// printer when CUPS is installed.
    fn default_monitor_set(&self) -> Vec<MonitorConfig> {
        let mon = |check: &str, args: &[&str], every: &str| MonitorConfig {
            name: None,
            check: check.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            every: every.into(),
            fail_after: None,
            recover_after: None,
        };
        let mut set = vec![mon("disk", &["/"], "5m"), mon("memory", &[], "1m")];
        let mut hosts: Vec<&str> = Vec::new();
        for relay in self.config.relay.list() {
            let host = match relay.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => relay.split(':').next().unwrap_or_default(),
            };
            if host.parse::<std::net::IpAddr>().is_err()
                && !host.is_empty()
                && !hosts.contains(&host)
            {
                hosts.push(host);
            }
        }
        for host in hosts {
            set.push(mon("dns", &[host], "5m"));
        }
        if Path::new("/etc/cups").exists() {
            set.push(mon("printer", &[], "5m"));
        }
        set
    }

    /// The context checks run in on this agent.
    pub fn check_context(&self) -> crate::checks::CheckContext {
        crate::checks::CheckContext {
            progress: Default::default(),
            plugins_dir: resolve(&self.path, &self.config.plugins_dir),
            policy: std::sync::Arc::new(self.config.policy.clone()),
            runner: self.runner.clone(),
        }
    }

    /// The context fixes run in on this agent.
    pub fn fix_context(&self, dry_run: bool) -> crate::fixes::FixContext {
        crate::fixes::FixContext {
            progress: Default::default(),
            scripts_dir: resolve(&self.path, &self.config.scripts_dir),
            dry_run,
            policy: std::sync::Arc::new(self.config.policy.clone()),
            runner: self.runner.clone(),
        }
    }

    /// Shipped runbooks plus the admin's; invalid files as errors.
    /// A self-service runbook that asks for more than `[policy]` allows
    /// the person at the machine is refused whole, like an invalid file.
    pub fn runbooks(&self) -> (Vec<crate::runbook::Runbook>, Vec<String>) {
        let (books, mut errors) =
            crate::runbook::load_all(&resolve(&self.path, &self.config.runbooks_dir));
        let books = books
            .into_iter()
            .filter(
                |b| match crate::runbook::self_service_error(b, &self.config.policy) {
                    Some(e) => {
                        errors.push(e);
                        false
                    }
                    None => true,
                },
            )
            .collect();
        (books, errors)
    }

    /// The socket `firstline-help` reaches the agent on.
    pub fn help_socket(&self) -> PathBuf {
        resolve(&self.path, &self.config.help_socket)
    }

    pub fn limits(&self) -> firstline_net::endpoint::Limits {
        firstline_net::endpoint::Limits {
            keep_alive: Duration::from_secs(self.config.keep_alive_secs),
            idle_timeout: Duration::from_secs(self.config.idle_timeout_secs),
            max_streams: 64,
        }
    }

    /// How long a connection attempt to the relay may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.config.connect_timeout_ms)
    }

    /// TLS client config from the identity on disk, resuming the
    /// `sessions` of earlier connections made with the same certificate;
    /// with the flag that turns true if the handshake is a full one.
    pub fn tls(
        &self,
        sessions: &mut firstline_net::tls::Sessions,
    ) -> Result<(rustls::ClientConfig, firstline_net::tls::Handshake)> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "cannot read {} (is this agent enrolled? run `firstline-agent enroll`)",
                    p.display()
                )
            })
        };
        let identity = read(self.identity_path())?;
        let ca = read(self.ca_path())?;
        let chain = firstline_net::pem::certs(&identity)?;
        let key = firstline_net::pem::key(&identity)?;
        let ca = firstline_net::pem::certs(&ca)?;
        Ok(sessions.client_config(chain, key, &ca)?)
    }
}

/// Every problem serde cannot see, each naming the file and line: the
/// link's timing, the name, each `[[monitor]]` (its `every`, its check, its
/// `args` parsed by that check's own parser, a plugin the policy does not
/// allow) and the `[policy]`.
fn problems(config: &AgentConfig, name: &str, text: &str) -> Vec<ConfigError> {
    use firstline_net::config::invalid_key;
    let mut errors = Vec::new();
    if config.relay.is_empty() && config.name.is_empty() {
        // A packaged agent.toml before `enroll` wrote its relay and name.
        errors.push(invalid_key(
            name,
            text,
            "relay",
            "this agent is not enrolled (no `relay` and `name` yet): enroll it with a token from \
             `firstline-relay token create`: FIRSTLINE_TOKEN=… firstline-agent enroll --relay HOST:PORT"
                .into(),
        ));
        return errors;
    }
    if config.relay.is_empty() {
        errors.push(invalid_key(
            name,
            text,
            "relay",
            "relay must be the relay's HOST:PORT, or a list of them: [\"a:4433\", \"b:4433\"]"
                .into(),
        ));
    }
    for problem in config.relay.problems() {
        errors.push(invalid_key(name, text, "relay", problem));
    }
    if config.keep_alive_secs == 0 || config.keep_alive_secs >= config.idle_timeout_secs {
        errors.push(invalid_key(
            name,
            text,
            "keep_alive_secs",
            "keep_alive_secs must be at least 1 and below idle_timeout_secs".into(),
        ));
    }
    if config.connect_timeout_ms < 100 {
        errors.push(invalid_key(
            name,
            text,
            "connect_timeout_ms",
            "connect_timeout_ms must be at least 100".into(),
        ));
    }
    if config.reconnect_min_ms == 0 || config.reconnect_min_ms > config.reconnect_max_ms {
        errors.push(invalid_key(
            name,
            text,
            "reconnect_min_ms",
            "reconnect_min_ms must be at least 1 and at most reconnect_max_ms".into(),
        ));
    }
    if !firstline_net::identity::valid_name(&config.name) {
        errors.push(invalid_key(
            name,
            text,
            "name",
            "name must be 1-64 letters, digits, `.`, `_` or `-`".into(),
        ));
    }
    for (i, m) in config.monitors.iter().enumerate() {
        let at = |key: &str, msg: String| {
            firstline_net::config::table_key(name, text, "monitor", i, key, msg)
        };
        let problems = check_monitor(m);
        let valid = problems.is_empty();
        for (key, msg) in firstline_net::monitors::spec_problems(m)
            .into_iter()
            .chain(problems)
        {
            errors.push(at(key, msg));
        }
        if valid {
            if let Err(why) = policy_allows_monitor(&config.policy, m) {
                errors.push(at("args", why));
            }
        }
    }
    for (key, msg) in config.policy.problems() {
        errors.push(invalid_key(name, text, key, msg));
    }
    errors
}

/// Several errors as one: the first, then each of the others on a line of
/// its own (`FILE:LINE:COL: …`), so the command prints them all and exits 2.
/// `p` relative to the folder of `config_path`, unless absolute.
pub fn resolve(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let base = config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if p == Path::new(".") {
        base.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_value_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"127.0.0.1:4433\"\nname = \"pc1\"\nkeep_alive_secs = \"often\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Loaded::load(&p).unwrap_err());
        assert!(err.contains("agent.toml:3:"), "{err}");
    }

    #[test]
    fn monitor_errors_name_the_right_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"x:1\"\nname = \"pc1\"\n\n[[monitor]]\ncheck = \"disk\"\nevery = \"5m\"\n\n[[monitor]]\ncheck = \"disk\"\nevery = \"soon\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Loaded::load(&p).unwrap_err());
        assert!(err.contains("agent.toml:10:"), "{err}");
    }

    #[test]
    fn every_monitor_error_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"x:1\"\nname = \"pc1\"\n\n\
             [[monitor]]\ncheck = \"tcp\"\nevery = \"5m\"\n\n\
             [[monitor]]\ncheck = \"disk\"\nargs = [\"/\", \"--wrn\", \"80\"]\nevery = \"5m\"\n\n\
             [[monitor]]\ncheck = \"teleport\"\nevery = \"5m\"\n\n\
             [[monitor]]\ncheck = \"memory\"\nargs = [\"--warn\", \"lots\"]\nevery = \"soon\"\n\n\
             [[monitor]]\ncheck = \"disk\"\nargs = [\"/var\", \"--warn\", \"70\"]\nevery = \"5m\"\n",
        )
        .unwrap();
        let err = Loaded::load(&p).unwrap_err();
        assert_eq!(firstline_net::cli::exit_code(&err), 2);
        let err = format!("{err:#}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 5, "{err}");
        for (line, what) in [
            // tcp without its target: no `args` key, the table's line.
            ("agent.toml:4:", "tcp"),
            ("agent.toml:10:", "unexpected argument '--wrn'"),
            ("agent.toml:14:", "unknown check `teleport`"),
            ("agent.toml:19:", "lots"),
            ("agent.toml:20:", "every = \"soon\""),
        ] {
            assert!(
                lines.iter().any(|l| l.contains(line) && l.contains(what)),
                "{line} {what} in:\n{err}"
            );
        }
        assert!(err.contains("similar argument exists: '--warn'"), "{err}");
        assert!(
            !err.contains("Usage:"),
            "usage cut to its first line: {err}"
        );
    }

    #[test]
    fn monitors_from_config_or_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "relay = \"relay.example:4433\"\nname = \"pc1\"\nfail_after = 5\n\n[[monitor]]\ncheck = \"disk\"\nargs = [\"/var\", \"--warn\", \"80\"]\nevery = \"30s\"\n").unwrap();
        let m = Loaded::load(&p).unwrap().monitors();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "disk /var --warn 80");
        assert_eq!(m[0].every, Duration::from_secs(30));
        assert_eq!(m[0].fail_after, 5);
        std::fs::write(&p, "relay = \"relay.example:4433\"\nname = \"pc1\"\n").unwrap();
        let ids: Vec<String> = Loaded::load(&p)
            .unwrap()
            .monitors()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert!(ids.contains(&"disk /".to_string()), "{ids:?}");
    }

    #[test]
    fn relative_folders_are_resolved_from_the_config_file_whatever_the_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"x:1\"\nname = \"pc1\"\nplugins_dir = \"plugins\"\nscripts_dir = \"scripts\"\n",
        )
        .unwrap();
        // The same file through a relative path from the working directory.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let relative = PathBuf::from(up).join(p.strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        let loaded = Loaded::load(&relative).unwrap();
        let base = dir.path().canonicalize().unwrap();
        let plugins = loaded.check_context().plugins_dir;
        let scripts = loaded.fix_context(false).scripts_dir;
        for (folder, name) in [(plugins, "plugins"), (scripts, "scripts")] {
            assert!(folder.is_absolute(), "{}", folder.display());
            assert_eq!(folder.file_name(), Some(std::ffi::OsStr::new(name)));
            let parent = folder.parent().unwrap().canonicalize().unwrap();
            assert_eq!(parent, base, "{}", folder.display());
        }
    }

    #[test]
    fn monitor_plugin_must_be_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"x:1\"\nname = \"pc1\"\n\n[[monitor]]\ncheck = \"plugin\"\nargs = [\"check_log\", \"-F\", \"/etc/shadow\"]\nevery = \"5m\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Loaded::load(&p).unwrap_err());
        assert!(
            err.contains("agent.toml:6:") && err.contains("check_log"),
            "{err}"
        );
    }

    fn load(text: &str) -> Result<Loaded> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        Loaded::load(&p)
    }

    #[test]
    fn relay_is_a_string_or_a_list() {
        let one = load("relay = \"a.example:4433\"\nname = \"pc1\"\n").unwrap();
        assert_eq!(one.config.relay.list(), ["a.example:4433"]);
        let many = load("relay = [\"a.example:4433\", \"10.0.0.2:4433\", \"[2001:db8::1]:4433\", \"c.example\"]\nname = \"pc1\"\n")
            .unwrap();
        assert_eq!(
            many.config.relay.list(),
            [
                "a.example:4433",
                "10.0.0.2:4433",
                "[2001:db8::1]:4433",
                "c.example"
            ]
        );
        assert_eq!(
            many.config.relay.to_string(),
            "a.example:4433, 10.0.0.2:4433, [2001:db8::1]:4433, c.example"
        );
        // Written back: a string for one, a list for several.
        let back = toml::to_string(&one.config).unwrap();
        assert!(back.starts_with("relay = \"a.example:4433\"\n"), "{back}");
        let back = toml::to_string(&many.config).unwrap();
        assert!(back.starts_with("relay = [\"a.example:4433\", "), "{back}");
        // A DNS check for each relay known by name, once.
        let named = load("relay = [\"a.example:4433\", \"a.example:4434\", \"b.example\", \"10.0.0.2:1\"]\nname = \"pc1\"\n")
            .unwrap();
        let dns: Vec<String> = named
            .monitors()
            .into_iter()
            .filter(|m| m.check == "dns")
            .map(|m| m.id)
            .collect();
        assert_eq!(dns, ["dns a.example", "dns b.example"]);
    }

    #[test]
    fn each_relay_address_is_checked_with_its_line() {
        let err = load("name = \"pc1\"\n\nrelay = 4433\n").unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("agent.toml:3:") && err.contains("a list of them"),
            "{err}"
        );
        let err = load(
            "name = \"pc1\"\nrelay = [\n  \"a.example:4433\",\n  \"b.example:99999\",\n  \"::1\",\n  \"a.example:4433\",\n  \"\",\n]\n",
        )
        .unwrap_err();
        assert_eq!(firstline_net::cli::exit_code(&err), 2);
        let err = format!("{err:#}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 4, "{err}");
        for (what, line) in [
            ("`99999` is not a port", lines[0]),
            ("IPv6 address in brackets", lines[1]),
            ("`a.example:4433` is listed twice", lines[2]),
            ("empty address", lines[3]),
        ] {
            assert!(
                line.contains("agent.toml:2:") && line.contains(what),
                "{what}:\n{err}"
            );
        }
        assert!(load("name = \"pc1\"\nrelay = []\n").is_err());
    }

    #[test]
    fn address_syntax() {
        for ok in [
            "relay.example.org:4433",
            "relay.example.org",
            "relay.example.org.:4433",
            "10.1.2.3:4433",
            "[::1]:4433",
            "[2001:db8::1]",
            "relay-2_a:1",
        ] {
            assert_eq!(address_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("quic://relay:4433", "no scheme"),
            ("relay:0", "not a port"),
            ("relay:https", "not a port"),
            ("relay:", "not a port"),
            (":4433", "no host"),
            ("::1", "brackets"),
            ("[::1", "without its `]`"),
            ("[::1]4433", "after `]`"),
            ("[nope]:1", "not an IPv6"),
            ("a b:1", "no spaces"),
            ("a:1,b:1", "commas"),
            ("-relay:1", "neither an IP address nor a host name"),
            ("re..lay:1", "neither"),
            ("10.0.0.300:1", "not an IPv4"),
            ("a:1:2", "more than one"),
        ] {
            let p = address_problem(bad).unwrap_or_default();
            assert!(p.contains(why), "{bad}: {p}");
        }
    }

    #[test]
    fn semantic_error_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "relay = \"x:1\"\nname = \"pc1\"\n\nreconnect_min_ms = 0\n",
        )
        .unwrap();
        let err = format!("{:#}", Loaded::load(&p).unwrap_err());
        assert!(err.contains("agent.toml:4:"), "{err}");
    }
}
