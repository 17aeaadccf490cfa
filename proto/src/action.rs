//! Actions on many machines and on machines that are offline (issue 14).
//!
//! An [`Action`] is what `run`, `fix` and `runbook` do on one machine, apart
//! from which machine: a bulk action sends it to every machine a selector
//! picks (`bulk`), a queued action keeps it for a machine that is offline
//! until it reconnects or the action expires (`--queue-for`).
//!
//! * A bulk action is answered by one `bulk_started` (how many machines were
//!   selected), then one `bulk_item` per machine as each one ends, in the
//!   order they end, then `done`. The console builds the summary from the
//!   items; the relay keeps only counts, so a bulk action of any size costs
//!   it bounded memory.
//! * A queued action is a [`QueuedAction`]: `pending` until delivered
//!   (`delivered`, at most once), `expired`, or `cancelled`.

use crate::effect::{check_role, fix_role};
use crate::message::{Message, Role};
use crate::result::{CheckResult, Status};
use crate::runbook::Verdict;
use serde::{Deserialize, Serialize};

/// What is done on each machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A check: `run … CHECK ARGS…`.
    Run {
        check: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// A fix: `fix … ACTION ARGS… [--dry-run]`.
    Fix {
        fix: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        dry_run: bool,
    },
    /// A runbook: `runbook … NAME KEY=VALUE… [--dry-run]`.
    Runbook {
        name: String,
        #[serde(default)]
        params: Vec<String>,
        #[serde(default)]
        dry_run: bool,
    },
}

impl Action {
    /// The least role it needs (the agent checks it again): a check's or
    /// fix's by its effect ([`crate::effect`]), a technician's for a
    /// runbook (whose agent refuses any step beyond the requester's role).
    /// Writing its results into a ticket needs a technician too: the
    /// caller's to add.
    pub fn role(&self) -> Role {
        match self {
            Action::Run { check, args } => check_role(check, args),
            Action::Fix { fix, .. } => fix_role(fix),
            Action::Runbook { .. } => Role::Technician,
        }
    }

    /// The request the agent gets, with the requester's `role`.
    pub fn exec(&self, role: Role) -> Message {
        match self.clone() {
            Action::Run { check, args } => Message::Exec { check, args, role },
            Action::Fix { fix, args, dry_run } => Message::ExecFix {
                action: fix,
                args,
                dry_run,
                role,
            },
            Action::Runbook {
                name,
                params,
                dry_run,
            } => Message::ExecRunbook {
                name,
                params,
                dry_run,
                role,
            },
        }
    }

    /// As a person writes it: `run disk /var`, `fix clean-temp /tmp (dry
    /// run)`, `runbook cant-print printer=…`.
    pub fn describe(&self) -> String {
        let join = |head: String, args: &[String], dry: bool| {
            let mut s = head;
            for a in args {
                s.push(' ');
                s.push_str(a);
            }
            if dry {
                s.push_str(" (dry run)");
            }
            s
        };
        match self {
            Action::Run { check, args } => join(format!("run {check}"), args, false),
            Action::Fix { fix, args, dry_run } => join(format!("fix {fix}"), args, *dry_run),
            Action::Runbook {
                name,
                params,
                dry_run,
            } => join(format!("runbook {name}"), params, *dry_run),
        }
    }
}

/// How an action ended on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// It ran; its result's (a check's or a fix's) or its verdict's status.
    Ok,
    Warn,
    Crit,
    Unknown,
    /// The relay (role) or the agent (role, policy) refused it.
    Refused,
    /// The machine is offline and the action was not queued.
    Offline,
    /// The machine is offline; the action waits for it (`--queue-for`).
    Queued,
    /// Anything else: the machine went away mid-way, timed out, an error.
    Failed,
}

impl ItemOutcome {
    /// Every outcome, in the order a summary lists them.
    pub const ALL: [ItemOutcome; 8] = [
        ItemOutcome::Ok,
        ItemOutcome::Warn,
        ItemOutcome::Crit,
        ItemOutcome::Unknown,
        ItemOutcome::Refused,
        ItemOutcome::Offline,
        ItemOutcome::Queued,
        ItemOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Ok => "ok",
            ItemOutcome::Warn => "warn",
            ItemOutcome::Crit => "crit",
            ItemOutcome::Unknown => "unknown",
            ItemOutcome::Refused => "refused",
            ItemOutcome::Offline => "offline",
            ItemOutcome::Queued => "queued",
            ItemOutcome::Failed => "failed",
        }
    }

    /// The outcome of an action that ran to a status.
    pub fn of_status(s: Status) -> ItemOutcome {
        match s {
            Status::Ok => ItemOutcome::Ok,
            Status::Warn => ItemOutcome::Warn,
            Status::Crit => ItemOutcome::Crit,
            Status::Unknown => ItemOutcome::Unknown,
        }
    }
}

impl std::fmt::Display for ItemOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an action ended on one machine of a bulk action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkItem {
    pub agent: String,
    pub outcome: ItemOutcome,
    /// One line: the result's summary, the verdict's cause and message, or
    /// why it was refused, failed or queued.
    pub summary: String,
    /// A check's or fix's last result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CheckResult>,
    /// A runbook's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The queued action's id (outcome `queued`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
}

/// Where a queued action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting for its machine to connect.
    Pending,
    /// Sent to its machine (once); `outcome` says how it ended.
    Delivered,
    /// Its machine did not connect before `expires_at`.
    Expired,
    /// Cancelled by an operator (`firstline queue cancel ID`).
    Cancelled,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Pending => "pending",
            QueueState::Delivered => "delivered",
            QueueState::Expired => "expired",
            QueueState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<QueueState> {
        Some(match s {
            "pending" => QueueState::Pending,
            "delivered" => QueueState::Delivered,
            "expired" => QueueState::Expired,
            "cancelled" => QueueState::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action kept for a machine that was offline (`firstline queue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedAction {
    pub id: u64,
    pub agent: String,
    #[serde(flatten)]
    pub action: Action,
    /// Where its results go.
    #[serde(default)]
    pub ticket: Option<u64>,
    /// Who queued it, and the role they had then (the agent checks the
    /// action against it when it is delivered).
    pub operator: String,
    pub role: Role,
    /// RFC 3339.
    pub queued_at: String,
    pub expires_at: String,
    pub state: QueueState,
    /// RFC 3339, when it was delivered, expired or cancelled.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// How it ended on the machine (`ok: …`, `refused: …`), once delivered.
    #[serde(default)]
    pub outcome: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_tagged_and_described() {
        let a = Action::Fix {
            fix: "clean-temp".into(),
            args: vec!["/tmp".into()],
            dry_run: true,
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(
            s,
            r#"{"action":"fix","fix":"clean-temp","args":["/tmp"],"dry_run":true}"#
        );
        assert_eq!(serde_json::from_str::<Action>(&s).unwrap(), a);
        assert_eq!(a.describe(), "fix clean-temp /tmp (dry run)");
    }

    #[test]
    fn outcomes_and_states_round_trip() {
        for o in ItemOutcome::ALL {
            let s = serde_json::to_string(&o).unwrap();
            assert_eq!(s, format!("\"{}\"", o.as_str()));
        }
        for st in [
            QueueState::Pending,
            QueueState::Delivered,
            QueueState::Expired,
            QueueState::Cancelled,
        ] {
            assert_eq!(QueueState::parse(st.as_str()), Some(st));
        }
        assert_eq!(QueueState::parse("gone"), None);
    }
}
