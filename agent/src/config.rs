//! `agent.toml`: which relay, which name, where the identity lives, and
//! the link's timing. Written by `enroll`, read by `run`.
//!
//! Relative paths are relative to the config file's folder.

use anyhow::{Context, Result};
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
    /// `HOST:PORT` of the relay.
    pub relay: String,
    /// This agent's name (as enrolled; the relay reads it from the certificate).
    pub name: String,
    /// Folder of `identity.pem` (certificate + key) and `ca.pem`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
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
        let config: AgentConfig = firstline_net::config::load(path)?;
        let text = std::fs::read_to_string(path)?;
        let name = path.display().to_string();
        let bad = |key: &str, msg: &str| -> anyhow::Error {
            firstline_net::config::invalid_key(&name, &text, key, msg.to_string()).into()
        };
        if config.keep_alive_secs == 0 || config.keep_alive_secs >= config.idle_timeout_secs {
            return Err(bad(
                "keep_alive_secs",
                "keep_alive_secs must be at least 1 and below idle_timeout_secs",
            ));
        }
        if config.reconnect_min_ms == 0 || config.reconnect_min_ms > config.reconnect_max_ms {
            return Err(bad(
                "reconnect_min_ms",
                "reconnect_min_ms must be at least 1 and at most reconnect_max_ms",
            ));
        }
        if !firstline_net::identity::valid_name(&config.name) {
            return Err(bad(
                "name",
                "name must be 1-64 letters, digits, `.`, `_` or `-`",
            ));
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

    /// The context checks run in on this agent.
    pub fn check_context(&self) -> crate::checks::CheckContext {
        crate::checks::CheckContext {
            progress: Default::default(),
            plugins_dir: resolve(&self.path, &self.config.plugins_dir),
        }
    }

    pub fn limits(&self) -> firstline_net::endpoint::Limits {
        firstline_net::endpoint::Limits {
            keep_alive: Duration::from_secs(self.config.keep_alive_secs),
            idle_timeout: Duration::from_secs(self.config.idle_timeout_secs),
            max_streams: 64,
        }
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
