//! What a runbook run reports: one record per step it took, and the verdict
//! it reached — the last JSON line of `runbook … --json`, the entry a
//! ticket keeps, and what `firstline-help` shows the person at the machine.
//!
//! Every runbook ends on a leaf of its decision tree: `resolved` (fixed, or
//! nothing was wrong), `user-action` (something the person at the machine
//! can do: add paper, switch the printer on) or `escalate` (to `team`, with
//! the evidence). The `cause` is a stable id (DESIGN.md lists those of the
//! shipped runbooks) that tickets, reports and the knowledge base key on.

use crate::result::CheckResult;
use serde::{Deserialize, Serialize};

/// The three kinds of leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Resolved,
    UserAction,
    Escalate,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Resolved => "resolved",
            VerdictKind::UserAction => "user-action",
            VerdictKind::Escalate => "escalate",
        }
    }
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a run: what it did, or why it did not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    /// `check dns`, `fix flush-dns`.
    pub action: String,
    /// The arguments it ran with (placeholders filled).
    #[serde(default)]
    pub args: Vec<String>,
    /// Its result, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CheckResult>,
    /// Why it did not run (a refused fix, a dry run), when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The end of a runbook run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub runbook: String,
    pub agent: String,
    pub verdict: VerdictKind,
    /// Stable id of the cause (`no-default-route`, `printer-needs-attention`…).
    pub cause: String,
    /// Who it goes to when escalated (`desktop`, `network`, `facilities`…).
    pub team: String,
    /// For the technician.
    pub message: String,
    /// For the person at the machine, in plain words.
    pub user_message: String,
    /// Knowledge-base article id.
    #[serde(default)]
    pub kb: Option<String>,
    /// The parameters it ran with, `KEY=VALUE`.
    #[serde(default)]
    pub params: Vec<String>,
    /// Whether fixes were only planned.
    #[serde(default)]
    pub dry_run: bool,
    pub steps: Vec<StepRecord>,
}

impl Verdict {
    /// The results of the steps that ran, in order: the evidence.
    pub fn evidence(&self) -> impl Iterator<Item = &CheckResult> {
        self.steps.iter().filter_map(|s| s.result.as_ref())
    }

    /// The verdict for a person, a few lines (escaped for a terminal).
    pub fn render(&self) -> Vec<String> {
        use crate::text::printable;
        let mut lines = vec![format!(
            "VERDICT {} ({}{}): {}",
            self.verdict.as_str().to_uppercase(),
            printable(&self.cause),
            if self.team.is_empty() {
                String::new()
            } else {
                format!(", team {}", printable(&self.team))
            },
            printable(&self.message)
        )];
        if !self.user_message.is_empty() {
            lines.push(format!("  for the user: {}", printable(&self.user_message)));
        }
        if let Some(kb) = &self.kb {
            lines.push(format!("  knowledge base: {}", printable(kb)));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_design() {
        let v = Verdict {
            runbook: "cant-print".into(),
            agent: "pc1".into(),
            verdict: VerdictKind::UserAction,
            cause: "printer-needs-attention".into(),
            team: "desktop".into(),
            message: "out of paper".into(),
            user_message: "Add paper to the printer.".into(),
            kb: None,
            params: vec![],
            dry_run: false,
            steps: vec![StepRecord {
                id: "state".into(),
                action: "check printer".into(),
                args: vec![],
                result: None,
                skipped: Some("dry run".into()),
            }],
        };
        let j = serde_json::to_value(&v).unwrap();
        for key in [
            "runbook",
            "agent",
            "verdict",
            "cause",
            "team",
            "message",
            "user_message",
            "kb",
            "steps",
        ] {
            assert!(j.get(key).is_some(), "{key} in {j}");
        }
        assert_eq!(j["verdict"], "user-action");
        assert_eq!(serde_json::from_value::<Verdict>(j).unwrap(), v);
    }
}
