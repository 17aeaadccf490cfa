//! Running a runbook: bind its parameters, then walk the steps in order,
//! streaming each step's result, and end with a verdict — `resolved`, or
//! `escalate` with every result gathered as evidence.
//!
//! Fixes inside a runbook go through the same agent policy as fixes asked
//! for directly: a runbook can never run a fix the policy forbids (the step
//! is refused, counts as failed, and its `on_fail` decides).

use super::{Action, Outcome, Runbook, Step};
use crate::checks::{self, CheckContext};
use crate::fixes::{self, FixContext};
use crate::policy::Policy;
use firstline_proto::{effect, CheckResult, Message, Role, Status};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc::UnboundedSender;

pub struct Env {
    pub checks: CheckContext,
    pub fixes: FixContext,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub resolved: bool,
    pub reason: String,
    pub evidence: Vec<CheckResult>,
}

impl Verdict {
    pub fn into_message(self) -> Message {
        Message::Verdict {
            verdict: if self.resolved {
                "resolved"
            } else {
                "escalate"
            }
            .into(),
            reason: self.reason,
            evidence: self.evidence,
        }
    }
}

/// Parameters given as `key=value`, checked against the runbook and
/// completed with defaults and built-in variables.
pub fn bind(rb: &Runbook, given: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for kv in given {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("`{kv}`: parameters are NAME=VALUE"))?;
        if !rb.params.contains_key(k) {
            let known: Vec<&str> = rb.params.keys().map(String::as_str).collect();
            return Err(format!(
                "`{k}` is not a parameter of {} (it takes: {})",
                rb.name,
                known.join(", ")
            ));
        }
        vars.insert(k.to_string(), v.to_string());
    }
    for (name, p) in &rb.params {
        if !vars.contains_key(name) {
            let v = p
                .default
                .clone()
                .ok_or_else(|| format!("{} needs {name}=… ({})", rb.name, p.help))?;
            vars.insert(name.clone(), v);
        }
    }
    let gateway = crate::monitor::diagnostics::default_gateway()
        .map(|g| g.to_string())
        .unwrap_or_default();
    vars.entry("default_gateway".into()).or_insert(gateway);
    // Defaults may refer to built-ins, e.g. `default = "{default_gateway}"`.
    let snapshot = vars.clone();
    for v in vars.values_mut() {
        *v = substitute(v, &snapshot);
    }
    Ok(vars)
}

/// The least role that may run `rb` with `vars`: the highest any of its
/// steps needs (a runbook is at least a technician's tool: it can run
/// fixes), and the id of the step that needs it.
pub fn required_role(rb: &Runbook, vars: &BTreeMap<String, String>) -> (Role, String) {
    let mut most = (Role::Technician, String::from("(runbooks)"));
    for step in &rb.steps {
        let args = step_args(step, vars);
        let role = match &step.action {
            Action::Check(c) => effect::check_role(c, &args),
            Action::Fix(f) => effect::fix_role(f),
        };
        if role > most.0 {
            most = (role, step.id.clone());
        }
    }
    most
}

/// A step's arguments with placeholders filled. An argument left empty is
/// dropped, with the `--option` right before it (`--server {server}` with
/// no server means: no `--server`).
fn step_args(step: &Step, vars: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in &step.args {
        let v = substitute(a, vars);
        if v.is_empty() {
            if out.last().is_some_and(|prev| prev.starts_with("--")) {
                out.pop();
            }
            continue;
        }
        out.push(v);
    }
    out
}

/// Replace `{name}` placeholders.
fn substitute(arg: &str, vars: &BTreeMap<String, String>) -> String {
    vars.iter().fold(arg.to_string(), |acc, (k, v)| {
        acc.replace(&format!("{{{k}}}"), v)
    })
}

pub async fn execute(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    out: &UnboundedSender<Message>,
) -> Verdict {
    let total = rb.steps.len();
    let mut results: HashMap<String, CheckResult> = HashMap::new();
    let mut evidence: Vec<CheckResult> = Vec::new();
    let say = |text: String| {
        let _ = out.send(Message::Progress { text });
    };
    for (i, step) in rb.steps.iter().enumerate() {
        if let Some(cond) = &step.when {
            if !cond.eval(&results) {
                say(format!(
                    "step {}/{total} {}: skipped (condition not met)",
                    i + 1,
                    step.id
                ));
                continue;
            }
        }
        let args = step_args(step, vars);
        let what = match &step.action {
            Action::Check(c) => format!("check {c}"),
            Action::Fix(f) => format!("fix {f}"),
        };
        say(format!(
            "step {}/{total} {}: {what} {}",
            i + 1,
            step.id,
            args.join(" ")
        ));
        let result = run_step(step, &args, env).await;
        let _ = out.send(Message::Result {
            result: result.clone(),
        });
        let ok = result.status == Status::Ok;
        let outcome = if ok { step.on_ok } else { step.on_fail };
        let decided = |resolved: bool, r: &CheckResult| {
            let reason = step.message.clone().unwrap_or_else(|| {
                format!("step {} ({}): {} {}", step.id, r.check, r.status, r.summary)
            });
            (resolved, reason)
        };
        let verdict = match outcome {
            Outcome::Continue => None,
            Outcome::Resolve => Some(decided(true, &result)),
            Outcome::Escalate => Some(decided(false, &result)),
        };
        results.insert(step.id.clone(), result.clone());
        evidence.push(result);
        if let Some((resolved, reason)) = verdict {
            return Verdict {
                resolved,
                reason,
                evidence,
            };
        }
    }
    let resolved = evidence.last().is_some_and(|r| r.status == Status::Ok);
    let reason = match evidence.last() {
        Some(r) if resolved => format!("all steps done; last: {} {}", r.check, r.summary),
        Some(r) => format!(
            "ended on a failed step: {} {} {}",
            r.check, r.status, r.summary
        ),
        None => "no step ran".into(),
    };
    Verdict {
        resolved,
        reason,
        evidence,
    }
}

async fn run_step(step: &Step, args: &[String], env: &Env) -> CheckResult {
    let target = args.join(" ");
    match &step.action {
        Action::Check(c) => checks::run(c, args, &env.checks)
            .await
            .unwrap_or_else(|e| CheckResult::new(c, target, Status::Unknown, e.to_string())),
        Action::Fix(f) => match env.policy.allows_fix(f) {
            Err(why) => CheckResult::new(f, target, Status::Unknown, format!("refused: {why}")),
            Ok(()) => fixes::run(f, args, &env.fixes)
                .await
                .unwrap_or_else(|e| CheckResult::new(f, target, Status::Unknown, e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::parse;

    fn env(policy: Policy) -> Env {
        Env {
            checks: CheckContext::default(),
            fixes: FixContext {
                progress: Default::default(),
                scripts_dir: "/nonexistent".into(),
                dry_run: false,
                policy: Default::default(),
            },
            policy,
        }
    }

    #[tokio::test]
    async fn escalates_with_evidence_and_respects_policy() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "name = \"t\"\ndescription = \"d\"\n[params]\npath = {{ default = \"{}\" }}\n\
             [[step]]\nid = \"full\"\ncheck = \"disk\"\nargs = [\"{{path}}\", \"--warn\", \"0\", \"--crit\", \"0\"]\n\
             [[step]]\nid = \"clean\"\nfix = \"clean-temp\"\nargs = [\"{{path}}\"]\nwhen = \"full.status != ok\"\non_fail = \"escalate\"\nmessage = \"cleaning refused\"\n\
             [[step]]\nid = \"never\"\ncheck = \"disk\"\n",
            dir.path().display()
        );
        let rb = parse("t.toml", &text).unwrap();
        let vars = bind(&rb, &[]).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let no_fixes = Policy {
            fixes: vec![],
            ..Policy::default()
        };
        let v = execute(&rb, &vars, &env(no_fixes), &tx).await;
        assert!(!v.resolved);
        assert_eq!(v.reason, "cleaning refused");
        assert_eq!(v.evidence.len(), 2);
        assert!(
            v.evidence[1].summary.contains("refused"),
            "{:?}",
            v.evidence[1]
        );
        let mut results = 0;
        while let Ok(m) = rx.try_recv() {
            results += matches!(m, Message::Result { .. }) as usize;
        }
        assert_eq!(results, 2);
    }

    #[test]
    fn binds_params() {
        let rb = parse("t.toml", "name = \"t\"\ndescription = \"d\"\n[params]\nuri = { help = \"printer\" }\nage = { default = \"7d\" }\n[[step]]\ncheck = \"disk\"\n").unwrap();
        assert!(bind(&rb, &[]).unwrap_err().contains("needs uri="));
        assert!(bind(&rb, &["color=red".into()])
            .unwrap_err()
            .contains("not a parameter"));
        let vars = bind(&rb, &["uri=ipp://x/printers/q".into()]).unwrap();
        assert_eq!(vars["age"], "7d");
        assert_eq!(vars["uri"], "ipp://x/printers/q");
    }
}
