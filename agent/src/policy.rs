//! The agent's own wall: what each action may touch on this machine, from
//! the `[policy]` table of `agent.toml`.
//!
//! The relay checks roles first; the agent refuses what its policy forbids
//! whatever a relay asks — a compromised or misconfigured relay cannot make
//! it run more. The policy names *capabilities*, not just actions: which
//! plugins may run, which folders `clean-temp` may clean and how young a
//! file it may delete, which units `restart-service` may restart, how far
//! `vacuum-journal` may shrink the journal, and as which user plugins and
//! scripts run. Nothing sent over the wire or set centrally widens it; only
//! the admin's `agent.toml` does.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Plugins of monitoring-plugins that only look (no command execution, no
/// files written). Anything else needs the admin to list it.
pub const DEFAULT_PLUGINS: &[&str] = &[
    "check_disk",
    "check_dummy",
    "check_load",
    "check_ping",
    "check_procs",
    "check_swap",
    "check_users",
    "check_uptime",
    "check_tcp",
    "check_udp",
    "check_http",
    "check_curl",
    "check_dns",
    "check_dig",
    "check_ssh",
    "check_smtp",
    "check_ntp_time",
    "check_ntp_peer",
    "check_time",
    "check_ftp",
    "check_imap",
    "check_pop",
];

/// The fixes an agent allows when `[policy] fixes` is not set: the
/// built-in fixes of version 0.1, frozen. **Never add to this list**: a
/// fix that a new version brings is off on every agent until its admin
/// names it (`tests::new_fixes_are_off_by_default`).
pub const DEFAULT_FIXES: &[&str] = &[
    "flush-dns",
    "restart-service",
    "resume-printer",
    "cancel-print-jobs",
    "clean-temp",
    "vacuum-journal",
];

/// Plugins that run another program given on their command line: with any
/// of them allowed, whoever may run plugins may run anything. Refused in
/// `plugins` at load time; an admin who needs such a flow writes a script.
pub const COMMAND_WRAPPERS: &[&str] = &["negate", "urlize", "check_by_ssh"];

/// Units `restart-service` may restart by default: the services an L1
/// technician restarts (printing, name resolution, network, time).
pub const DEFAULT_SERVICES: &[&str] = &[
    "cups",
    "cups-browsed",
    "systemd-resolved",
    "NetworkManager",
    "systemd-networkd",
    "systemd-timesyncd",
    "chrony",
    "avahi-daemon",
    "bluetooth",
    "nscd",
    "sssd",
];

/// Folders `clean-temp` may clean by default (and anything below them).
pub const DEFAULT_CLEAN_TEMP_ROOTS: &[&str] = &["/tmp", "/var/tmp"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Built-in fixes allowed here (default: [`DEFAULT_FIXES`], the fixes
    /// of version 0.1; a fix added later is off until named here).
    #[serde(default = "default_fixes")]
    pub fixes: Vec<String>,
    /// Whether `script NAME` may run admin scripts from `scripts_dir`.
    #[serde(default)]
    pub scripts: bool,
    /// Whether runbooks may run (their steps still need the rest of this).
    #[serde(default = "yes")]
    pub runbooks: bool,
    /// Plugin file names `plugin NAME` may run (bare names, no globs).
    #[serde(default = "default_plugins")]
    pub plugins: Vec<String>,
    /// Folders `clean-temp` may clean, with what is below them.
    #[serde(default = "default_roots")]
    pub clean_temp_roots: Vec<PathBuf>,
    /// `clean-temp` never deletes what was modified more recently than
    /// this, whatever `--older-than` says (`1h`, `1d`…).
    #[serde(default = "default_min_age", with = "humantime_serde_str")]
    pub clean_temp_min_age: Duration,
    /// Units `restart-service` may restart: services only (`cups` or
    /// `cups.service`), never targets, sockets, mounts…
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// The least `vacuum-journal --keep` may leave (`100M`, `1G`).
    #[serde(default = "default_journal_keep_min")]
    pub journal_keep_min: String,
    /// Run plugins and scripts as this user (and its groups) instead of
    /// the agent's own; they never inherit the agent's capabilities.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Folders plugins may write to (a plugin that keeps state, such as
    /// check_logfiles); none by default: a plugin's worker sees the file
    /// system read-only (`crate::worker::declare`).
    #[serde(default)]
    pub plugin_write_paths: Vec<PathBuf>,
    /// Whether monitor sets defined on the relay (`firstline monitors
    /// set`) may run here at all; each one is still checked against the
    /// rest of this policy (`crate::monitor::central`).
    #[serde(default = "yes")]
    pub central_monitors: bool,
    /// Fixes a self-service runbook (`self_service = true`, run by the
    /// person at the machine with `firstline-help run`) may contain; none by
    /// default. Each must also be in `fixes`; `script` never may.
    #[serde(default)]
    pub self_service_fixes: Vec<String>,
}

fn default_fixes() -> Vec<String> {
    strings(DEFAULT_FIXES)
}
fn default_plugins() -> Vec<String> {
    strings(DEFAULT_PLUGINS)
}
fn default_services() -> Vec<String> {
    strings(DEFAULT_SERVICES)
}
fn default_roots() -> Vec<PathBuf> {
    DEFAULT_CLEAN_TEMP_ROOTS.iter().map(PathBuf::from).collect()
}
fn default_min_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_journal_keep_min() -> String {
    "100M".into()
}
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn yes() -> bool {
    true
}

/// `clean_temp_min_age = "1h"`: a humantime duration in a TOML string.
mod humantime_serde_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e} (use 1h, 1d…)")))
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fixes: default_fixes(),
            scripts: false,
            runbooks: true,
            plugins: default_plugins(),
            clean_temp_roots: default_roots(),
            clean_temp_min_age: default_min_age(),
            services: default_services(),
            journal_keep_min: default_journal_keep_min(),
            run_as: None,
            plugin_write_paths: Vec::new(),
            central_monitors: true,
            self_service_fixes: Vec::new(),
        }
    }
}

impl Policy {
    /// Ok, or why this agent refuses the fix.
    pub fn allows_fix(&self, action: &str) -> Result<(), String> {
        if action == "script" {
            return match self.scripts {
                true => Ok(()),
                false => Err("this agent's policy does not allow custom scripts ([policy] scripts = false in agent.toml)".into()),
            };
        }
        match self.fixes.iter().any(|f| f == action) {
            true => Ok(()),
            false => Err(format!("this agent's policy does not allow the fix `{action}` ([policy] fixes in agent.toml)")),
        }
    }

    pub fn allows_runbooks(&self) -> Result<(), String> {
        match self.runbooks {
            true => Ok(()),
            false => Err("this agent's policy does not allow runbooks ([policy] runbooks = false in agent.toml)".into()),
        }
    }

    /// The policy a self-service run (`firstline-help run`) runs under:
    /// this one with its fixes cut to those also in `self_service_fixes`,
    /// and no scripts.
    pub fn self_service(&self) -> Policy {
        Policy {
            fixes: self
                .fixes
                .iter()
                .filter(|f| self.self_service_fixes.contains(f))
                .cloned()
                .collect(),
            scripts: false,
            ..self.clone()
        }
    }

    /// Ok, or why a self-service runbook may not contain the fix `action`.
    pub fn allows_self_service_fix(&self, action: &str) -> Result<(), String> {
        match self.self_service().allows_fix(action) {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "the fix `{action}` is not allowed for self-service ([policy] self_service_fixes in agent.toml, and it must be in [policy] fixes)"
            )),
        }
    }

    /// Ok, or why the plugin `name` may not run here.
    pub fn allows_plugin(&self, name: &str) -> Result<(), String> {
        if COMMAND_WRAPPERS.contains(&name) {
            return Err(format!(
                "`{name}` runs other programs and is never allowed as a plugin"
            ));
        }
        match self.plugins.iter().any(|p| p == name) {
            true => Ok(()),
            false => Err(format!(
                "this agent's policy does not allow the plugin `{name}` ([policy] plugins in agent.toml)"
            )),
        }
    }

    /// Ok, or why `restart-service` may not restart `unit` (a full unit
    /// name such as `cups.service`).
    pub fn allows_service(&self, unit: &str) -> Result<(), String> {
        let Some(base) = unit.strip_suffix(".service") else {
            return Err(format!(
                "`{unit}` is not a service: restart-service restarts services only, never targets, sockets or mounts"
            ));
        };
        match self
            .services
            .iter()
            .any(|s| s == unit || s.as_str() == base)
        {
            true => Ok(()),
            false => Err(format!(
                "this agent's policy does not allow restarting `{unit}` ([policy] services in agent.toml)"
            )),
        }
    }

    /// The configured root that holds `path` (both canonical), or why
    /// `clean-temp` may not clean it.
    pub fn clean_temp_root(&self, path: &Path) -> Result<PathBuf, String> {
        self.clean_temp_roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .find(|root| path.starts_with(root))
            .ok_or_else(|| {
                format!(
                    "{} is not under a folder this agent lets clean-temp clean ([policy] clean_temp_roots: {})",
                    path.display(),
                    self.clean_temp_roots
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The least `vacuum-journal --keep` in bytes.
    pub fn journal_keep_min_bytes(&self) -> Result<u64, String> {
        parse_size(&self.journal_keep_min)
    }

    /// Errors a valid `[policy]` cannot have; `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(bad) = self
            .fixes
            .iter()
            .find(|f| !crate::fixes::BUILTIN.contains(&f.as_str()))
        {
            out.push((
                "fixes",
                format!(
                    "[policy] fixes: unknown fix `{bad}` (built-in: {})",
                    crate::fixes::BUILTIN.join(", ")
                ),
            ));
        }
        for p in &self.plugins {
            if COMMAND_WRAPPERS.contains(&p.as_str()) {
                out.push((
                    "plugins",
                    format!("[policy] plugins: `{p}` runs other programs given on its command line; it cannot be allowed (write a script instead)"),
                ));
            } else if crate::checks::plugin::check_name(p).is_err() {
                out.push((
                    "plugins",
                    format!("[policy] plugins: `{p}` is not a bare plugin file name"),
                ));
            }
        }
        if let Some(r) = self
            .clean_temp_roots
            .iter()
            .find(|r| !r.is_absolute() || r.parent().is_none())
        {
            out.push((
                "clean_temp_roots",
                format!(
                    "[policy] clean_temp_roots: `{}` must be an absolute folder other than /",
                    r.display()
                ),
            ));
        }
        if let Some(s) = self
            .services
            .iter()
            .find(|s| s.contains('.') && !s.ends_with(".service"))
        {
            out.push((
                "services",
                format!("[policy] services: `{s}` is not a service unit"),
            ));
        }
        if let Some(bad) = self
            .self_service_fixes
            .iter()
            .find(|f| !crate::fixes::BUILTIN.contains(&f.as_str()))
        {
            out.push((
                "self_service_fixes",
                format!("[policy] self_service_fixes: `{bad}` is not a built-in fix (scripts are never self-service; built-in: {})", crate::fixes::BUILTIN.join(", ")),
            ));
        }
        if let Err(e) = self.journal_keep_min_bytes() {
            out.push((
                "journal_keep_min",
                format!("[policy] journal_keep_min: {e}"),
            ));
        }
        out
    }
}

/// `200M`, `1G`, `512K`, `1T` (powers of 1024) in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a size (use 200M, 1G…)");
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_builtins_not_scripts() {
        let p = Policy::default();
        assert!(p.allows_fix("flush-dns").is_ok());
        assert!(p
            .allows_fix("script")
            .unwrap_err()
            .contains("scripts = false"));
        assert!(p.allows_fix("format-disk").is_err());
        let narrow = Policy {
            fixes: vec!["clean-temp".into()],
            ..Policy::default()
        };
        assert!(narrow.allows_fix("restart-service").is_err());
    }

    #[test]
    fn plugins_by_allow_list_wrappers_never() {
        let p = Policy::default();
        assert!(p.allows_plugin("check_disk").is_ok());
        for wrapper in COMMAND_WRAPPERS {
            assert!(p.allows_plugin(wrapper).is_err(), "{wrapper}");
        }
        assert!(p.allows_plugin("check_log").is_err(), "not listed");
        let listed = Policy {
            plugins: vec!["negate".into(), "../x".into()],
            ..Policy::default()
        };
        assert!(listed.allows_plugin("negate").is_err());
        assert_eq!(listed.problems().len(), 2, "{:?}", listed.problems());
        assert!(Policy::default().problems().is_empty());
    }

    #[test]
    fn services_only_and_listed() {
        let p = Policy::default();
        assert!(p.allows_service("cups.service").is_ok());
        assert!(p.allows_service("poweroff.target").is_err());
        assert!(p.allows_service("sshd.service").is_err());
        assert!(p.allows_service("cups.socket").is_err());
    }

    #[test]
    fn clean_temp_roots_hold_their_subfolders_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let p = Policy {
            clean_temp_roots: vec![root.clone()],
            ..Policy::default()
        };
        let root = root.canonicalize().unwrap();
        assert_eq!(p.clean_temp_root(&root.join("a")).unwrap(), root);
        assert!(p.clean_temp_root(Path::new("/usr")).is_err());
        assert!(p.clean_temp_root(dir.path()).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        for bad in ["", "M", "1", "1k", "-1M", "1.5G", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_fixes_are_off_by_default() {
        // Every default fix is a built-in one, and the default list is the
        // frozen one, not "whatever this version has".
        for f in DEFAULT_FIXES {
            assert!(crate::fixes::BUILTIN.contains(f), "{f}");
        }
        assert_eq!(Policy::default().fixes, strings(DEFAULT_FIXES));
        let parsed: Policy = toml::from_str("").unwrap();
        assert_eq!(parsed.fixes, strings(DEFAULT_FIXES));
    }
}
