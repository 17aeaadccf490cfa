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

/// The kinds of verdict: the three kinds of leaf; `dry-run`, the end of a
/// run whose fixes were only planned (what would be done, what would then
/// be checked — never an escalation); `error`, a run that could not
/// diagnose (the agent lacks what a step needs: `probe-not-permitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Resolved,
    UserAction,
    Escalate,
    DryRun,
    Error,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Resolved => "resolved",
            VerdictKind::UserAction => "user-action",
            VerdictKind::Escalate => "escalate",
            VerdictKind::DryRun => "dry-run",
            VerdictKind::Error => "error",
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
    /// This verdict cut to the sizes of [`crate::limits`]: what a relay
    /// stores or passes on of a verdict an agent sent, whatever the agent
    /// sent — every text field, the parameters, the steps and each step's
    /// fields and result.
    pub fn bounded(mut self) -> Self {
        use crate::limits::{
            VERDICT_ARG, VERDICT_ARGS, VERDICT_ID, VERDICT_MESSAGE, VERDICT_STEPS,
            VERDICT_STEP_BYTES,
        };
        use crate::text::truncate;
        let cut = |s: &mut String, max: usize| {
            if s.len() > max {
                *s = truncate(s, max).into_owned();
            }
        };
        let cut_all = |v: &mut Vec<String>| {
            v.truncate(VERDICT_ARGS);
            for a in v.iter_mut() {
                cut(a, VERDICT_ARG);
            }
        };
        for field in [
            &mut self.runbook,
            &mut self.agent,
            &mut self.cause,
            &mut self.team,
        ] {
            cut(field, VERDICT_ID);
        }
        if let Some(kb) = &mut self.kb {
            cut(kb, VERDICT_ID);
        }
        cut(&mut self.message, VERDICT_MESSAGE);
        cut(&mut self.user_message, VERDICT_MESSAGE);
        cut_all(&mut self.params);
        self.steps.truncate(VERDICT_STEPS);
        for step in &mut self.steps {
            cut(&mut step.id, VERDICT_ID);
            cut(&mut step.action, VERDICT_ID);
            cut_all(&mut step.args);
            if let Some(s) = &mut step.skipped {
                cut(s, VERDICT_ARG);
            }
            if let Some(r) = step.result.take() {
                step.result = Some(r.bounded());
            }
        }
        // Each step is now of a sane size, but 64 of them need not be:
        // the steps are kept up to a budget of bytes, in order.
        let mut bytes = 0;
        let kept = self
            .steps
            .iter()
            .take_while(|s| {
                bytes += serde_json::to_vec(s).map_or(usize::MAX / 2, |v| v.len());
                bytes <= VERDICT_STEP_BYTES
            })
            .count();
        if kept < self.steps.len() {
            let cut = self.steps.len() - kept;
            self.steps.truncate(kept);
            self.steps.push(StepRecord {
                id: "cut".into(),
                action: String::new(),
                args: Vec::new(),
                result: None,
                skipped: Some(format!(
                    "{cut} more step{} left out: over {} KiB",
                    if cut == 1 { "" } else { "s" },
                    VERDICT_STEP_BYTES / 1024
                )),
            });
        }
        self
    }

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
