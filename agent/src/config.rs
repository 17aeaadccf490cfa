//! `agent.toml`: which relay, which name, where the identity lives, and
//! the link's timing. Written by `enroll`, read by `run`.
//!
//! Relative paths are relative to the config file's folder.

use anyhow::{Context, Result};
use firstline_net::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/firstline/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/firstline-agent";
/// Nagios-compatible plugins (`plugin NAME`); monitoring-plugins installs here.
pub const DEFAULT_PLUGINS_DIR: &str = "/usr/lib/nagios/plugins";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `HOST:PORT` of the relay (written by `enroll`; missing: not enrolled).
    #[serde(default)]
    pub relay: String,
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
}

fn default_scripts_dir() -> PathBuf {
    PathBuf::from("/etc/firstline/scripts")
}

fn default_runbooks_dir() -> PathBuf {
    PathBuf::from("/etc/firstline/runbooks")
}

/// One `[[monitor]]` table: the check's own command line, and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Stable id of the monitor (default: `check args…`).
    #[serde(default)]
    pub name: Option<String>,
    pub check: String,
    /// The check's arguments, thresholds included: `["/var", "--warn", "80"]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// `30s`, `5m`, `1h`…
    pub every: String,
    #[serde(default)]
    pub fail_after: Option<u32>,
    #[serde(default)]
    pub recover_after: Option<u32>,
}

impl MonitorConfig {
    /// Stable id of the monitor: its `name`, or `check args…`.
    pub fn id(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::iter::once(self.check.as_str())
                .chain(self.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
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
        let errors = problems(&config, &name, &text);
        if !errors.is_empty() {
            return Err(combine(errors).into());
        }
        let state_dir = resolve(path, &config.state_dir);
        Ok(Loaded {
            config,
            path: path.to_path_buf(),
            state_dir,
        })
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
            .map(|m| crate::monitor::Monitor {
                id: m.id(),
                every: humantime::parse_duration(&m.every).unwrap_or(Duration::from_secs(300)),
                fail_after: m.fail_after.unwrap_or(c.fail_after),
                recover_after: m.recover_after.unwrap_or(c.recover_after),
                check: m.check,
                args: m.args,
            })
            .collect()
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
        let host = self
            .config
            .relay
            .rsplit_once(':')
            .map_or(self.config.relay.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        if host.parse::<std::net::IpAddr>().is_err() && !host.is_empty() {
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
        }
    }

    /// The context fixes run in on this agent.
    pub fn fix_context(&self, dry_run: bool) -> crate::fixes::FixContext {
        crate::fixes::FixContext {
            progress: Default::default(),
            scripts_dir: resolve(&self.path, &self.config.scripts_dir),
            dry_run,
            policy: std::sync::Arc::new(self.config.policy.clone()),
        }
    }

    /// Shipped runbooks plus the admin's; invalid files as errors.
    pub fn runbooks(&self) -> (Vec<crate::runbook::Runbook>, Vec<String>) {
        crate::runbook::load_all(&resolve(&self.path, &self.config.runbooks_dir))
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

    /// TLS client config from the identity on disk.
    pub fn tls(&self) -> Result<rustls::ClientConfig> {
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
        Ok(firstline_net::tls::client_config(chain, key, &ca)?)
    }
}

/// Every problem serde cannot see, each naming the file and line: the
/// link's timing, the name, each `[[monitor]]` (its `every`, its check, its
/// `args` parsed by that check's own parser, a plugin the policy does not
/// allow) and the `[policy]`.
fn problems(config: &AgentConfig, name: &str, text: &str) -> Vec<ConfigError> {
    use firstline_net::config::invalid_key;
    let mut errors = Vec::new();
    if config.relay.trim().is_empty() && config.name.is_empty() {
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
    if config.relay.trim().is_empty() {
        errors.push(invalid_key(
            name,
            text,
            "relay",
            "relay must be the relay's HOST:PORT".into(),
        ));
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
        let at = |key: &str, msg: String| monitor_key(name, text, i, key, msg);
        match humantime::parse_duration(&m.every) {
            Ok(d) if d >= Duration::from_secs(1) => {}
            Ok(_) => errors.push(at("every", "every must be at least 1s".into())),
            Err(e) => errors.push(at(
                "every",
                format!("every = \"{}\": {e} (use 30s, 5m, 1h…)", m.every),
            )),
        }
        if !crate::checks::NAMES.contains(&m.check.as_str()) {
            errors.push(at(
                "check",
                format!(
                    "unknown check `{}` (this agent offers: {})",
                    m.check,
                    crate::checks::NAMES.join(", ")
                ),
            ));
            continue;
        }
        let id = m.id();
        if let Err(e) = crate::checks::validate_args(&m.check, &m.args) {
            let why = match e {
                crate::checks::CheckError::Usage(msg) => crate::checks::usage_line(&msg),
                other => other.to_string(),
            };
            errors.push(at(
                "args",
                format!("monitor `{id}`: bad arguments for `{}`: {why}", m.check),
            ));
            continue;
        }
        if m.check == "plugin" {
            let plugin: Result<crate::checks::plugin::PluginArgs, _> =
                crate::checks::parse_args("plugin", &m.args);
            if let Ok(p) = plugin {
                if let Err(why) = config.policy.allows_plugin(&p.name) {
                    errors.push(at("args", why));
                }
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
fn combine(mut errors: Vec<ConfigError>) -> ConfigError {
    let rest: Vec<String> = errors.drain(1..).map(|e| e.to_string()).collect();
    let first = errors.remove(0);
    if rest.is_empty() {
        return first;
    }
    match first {
        ConfigError::Invalid {
            path,
            line,
            column,
            message,
        } => ConfigError::Invalid {
            path,
            line,
            column,
            message: format!("{message}\n{}", rest.join("\n")),
        },
        read => read,
    }
}

/// An error about `key` of the `index`-th (0-based) `[[monitor]]` table:
/// the line of `key =` inside that table, else the table's `[[monitor]]`
/// line. (A key only some monitors have, such as `args`, cannot be found by
/// counting its occurrences in the file.)
fn monitor_key(name: &str, text: &str, index: usize, key: &str, message: String) -> ConfigError {
    let lines: Vec<&str> = text.lines().collect();
    let squeezed = |l: &str| l.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let header = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| squeezed(l).starts_with("[[monitor]]"))
        .nth(index)
        .map(|(n, _)| n);
    let Some(header) = header else {
        return firstline_net::config::invalid_key_at(name, text, key, index, message);
    };
    let found = lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
    let (line, text_line) = found.map_or((header, lines[header]), |(n, l)| (n, *l));
    ConfigError::Invalid {
        path: name.to_string(),
        line: line + 1,
        column: text_line.len() - text_line.trim_start().len() + 1,
        message,
    }
}

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
