//! Central monitors: `[[monitor]]` tables an admin defines once on the
//! relay for the agents a selector picks (`firstline monitors set --select
//! SEL FILE.toml`), which those agents run beside the ones of their own
//! `agent.toml`.
//!
//! The flow, and who checks what:
//! * the console reads the file and sends its text (`monitors_set`); the
//!   console and the relay both parse it (`firstline_net::monitors`: the
//!   same `[[monitor]]` tables as agent.toml, errors as `FILE:LINE`), and
//!   the relay stores it with the author and the author's role;
//! * the relay sends each agent the sets that select it (`central_monitors`,
//!   with a digest of their content) on a stream it opens after `hello`, and
//!   again when they change; the agent checks every monitor against its own
//!   checks and `[policy]` — never widened by a relay — and answers which
//!   are active and which refused, with a reason each
//!   (`central_monitors_report`), which the relay keeps for `monitors show`.
//!
//! Sans-IO like the rest of the crate: the types, their bounds, and the
//! rules on names and selectors.

use crate::message::Role;
use crate::select::{Key, Selector};
use serde::{Deserialize, Serialize};

/// Most sets a relay keeps.
pub const MAX_SETS: usize = 64;
/// Most monitors in one set.
pub const MAX_MONITORS_PER_SET: usize = 64;
/// Most bytes of a set's TOML text.
pub const MAX_TOML: usize = 64 * 1024;
/// Most bytes of every set's monitors together, as JSON: what one agent
/// may be sent at most stays far below the 1 MiB frame.
pub const MAX_TOTAL: usize = 512 * 1024;
/// Most arguments of one monitor, and bytes of each.
pub const MAX_ARGS: usize = 32;
pub const MAX_ARG_LEN: usize = 1024;

/// One `[[monitor]]` table, as in `agent.toml`: the check's own command
/// line and how often (`every`: `30s`, `5m`, `1h`…). The agent's config
/// reads the same type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
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

impl MonitorSpec {
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

/// One set as the relay sends it to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentralSet {
    pub name: String,
    /// The role of the operator who set it, as the relay's database held
    /// it then: the agent checks each monitor's check against it as it
    /// checks a remote `exec` ([`crate::effect::check_role`]).
    pub role: Role,
    pub monitors: Vec<MonitorSpec>,
}

/// What became of one central monitor on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorState {
    /// It runs.
    Active,
    /// It does not run: the agent's policy or checks refused it, or a
    /// local `[[monitor]]` of the same id runs instead (the reason says).
    Refused,
    /// A state from a newer peer.
    #[serde(other)]
    Other,
}

impl MonitorState {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorState::Active => "active",
            MonitorState::Refused => "refused",
            MonitorState::Other => "other",
        }
    }
}

/// One central monitor as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentralMonitor {
    /// The set it came from.
    pub set: String,
    /// Its id ([`MonitorSpec::id`]): the monitor of its events and tickets.
    pub monitor: String,
    pub check: String,
    pub state: MonitorState,
    /// Why it is refused (one line).
    #[serde(default)]
    pub reason: Option<String>,
}

/// An agent's answer to `central_monitors`: the digest of the sets it
/// applied, and each of their monitors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentralReport {
    pub digest: String,
    #[serde(default)]
    pub monitors: Vec<CentralMonitor>,
}

/// One set as `monitors show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorSetInfo {
    pub name: String,
    /// Its selector, in canonical form.
    pub select: String,
    pub monitors: Vec<MonitorSpec>,
    /// The TOML text as it was set.
    pub toml: String,
    pub updated_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Why the set is suspended — not sent to any agent — until an admin
    /// sets it again: its author was revoked, or is no longer an admin.
    /// Absent: in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
}

/// One agent's central monitors as `monitors show` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMonitorReport {
    pub agent: String,
    pub online: bool,
    /// The sets that select it now, by name.
    pub sets: Vec<String>,
    /// Whether its last report is of the sets that select it now (false:
    /// it has not answered since they changed — offline, or an older
    /// agent).
    pub current: bool,
    /// RFC 3339 time of its last report.
    #[serde(default)]
    pub reported_at: Option<String>,
    /// Its last report's monitors.
    #[serde(default)]
    pub monitors: Vec<CentralMonitor>,
}

/// Whether `name` may name a set: the alphabet of tags and agent names.
pub fn check_set_name(name: &str) -> Result<(), String> {
    crate::select::check_tag(name).map_err(|_| {
        format!(
            "monitor set `{}`: a set's name is 1–{} letters, digits, `.`, `_` or `-`, not starting with `.` or `-` (give --name)",
            crate::text::printable(name),
            crate::select::MAX_TAG_LEN
        )
    })
}

/// Parse a set's selector: keys `name`, `tag` and `os` only — an agent's
/// `online` and `health` change all the time, and a monitor set that came
/// and went with them would feed its own selection.
pub fn set_selector(text: &str) -> Result<Selector, String> {
    let sel = Selector::parse(text)?;
    if let Some(t) = sel
        .terms()
        .iter()
        .find(|t| matches!(t.key(), Key::Online | Key::Health))
    {
        return Err(format!(
            "a monitor set selects by name, tag and os, not by `{}` (it changes all the time)",
            t.key().as_str()
        ));
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_wire_shape() {
        let m = MonitorSpec {
            name: None,
            check: "tcp".into(),
            args: vec!["127.0.0.1:9".into()],
            every: "5s".into(),
            fail_after: Some(1),
            recover_after: None,
        };
        assert_eq!(m.id(), "tcp 127.0.0.1:9");
        let named = MonitorSpec {
            name: Some("port".into()),
            ..m.clone()
        };
        assert_eq!(named.id(), "port");
        let r = CentralMonitor {
            set: "s".into(),
            monitor: "port".into(),
            check: "tcp".into(),
            state: MonitorState::Refused,
            reason: Some("no".into()),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains(r#""state":"refused""#), "{s}");
        let newer: CentralMonitor = serde_json::from_str(&s.replace("refused", "paused")).unwrap();
        assert_eq!(newer.state, MonitorState::Other);
    }

    #[test]
    fn names_and_selectors() {
        assert!(check_set_name("floor2-disks").is_ok());
        assert!(check_set_name("").is_err());
        assert!(check_set_name("a b").unwrap_err().contains("--name"));
        assert!(set_selector("tag=floor2,os=debian*").is_ok());
        assert!(set_selector("tag=a,online=true")
            .unwrap_err()
            .contains("`online`"));
        assert!(set_selector("health=crit")
            .unwrap_err()
            .contains("`health`"));
        assert!(set_selector("").is_err());
    }
}
