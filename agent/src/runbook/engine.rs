//! Running a runbook: bind its parameters, then walk the tree from its
//! first step — run the step, stream its result, take the first branch
//! whose condition holds — until a branch names a verdict.
//!
//! The same engine serves the relay (`exec_runbook`), the local command
//! (`firstline-agent runbook`) and, later, the end user's self-service.
//! Fixes inside a runbook go through the same agent policy as fixes asked
//! for directly: a fix the policy forbids does not run (the step is
//! recorded as skipped, with why, and its conditions are false). A step
//! whose own arguments are wrong ends the run at once with the cause
//! `runbook-error` — a mistake in the runbook, not a diagnosis.

use super::{Action, Runbook, Step, Target, VerdictSpec};
use crate::checks::{self, CheckContext, CheckError};
use crate::fixes::{self, FixContext};
use crate::policy::Policy;
use firstline_proto::runbook::{StepRecord, Verdict, VerdictKind};
use firstline_proto::{effect, CheckResult, Message, Role};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc::UnboundedSender;

/// Where a runbook runs.
pub struct Env {
    pub checks: CheckContext,
    pub fixes: FixContext,
    pub policy: Policy,
    /// This agent's name, for the verdict.
    pub agent: String,
}

/// Cause of a run ended by a mistake in the runbook itself.
pub const RUNBOOK_ERROR: &str = "runbook-error";

/// Cause of a run whose failing observation passed when made again, after
/// fixes none of which changed anything: the fault came and went by
/// itself, and no fix may take the credit (any runbook may end so).
pub const INTERMITTENT: &str = "intermittent";

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
    let gateway = crate::checks::net::default_gateway()
        .map(|g| g.to_string())
        .unwrap_or_default();
    vars.entry("default_gateway".into()).or_insert(gateway);
    let random: String = (0..12)
        .map(|_| {
            let n = rand::random::<u8>() % 36;
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    vars.entry("random".into()).or_insert(random);
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

/// The first step a self-service run may not take, with why: a check a
/// viewer may not run, or a fix outside the policy's self-service fixes.
pub fn self_service_refusal(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    policy: &Policy,
) -> Option<(usize, String)> {
    rb.steps.iter().enumerate().find_map(|(i, step)| {
        let args = step_args(step, vars);
        let why = match &step.action {
            Action::Check(c) if effect::check_role(c, &args) > Role::Viewer => format!(
                "step `{}`: `check {c} {}` needs a technician; a self-service runbook may only run checks a viewer may",
                step.id,
                args.join(" ")
            ),
            Action::Check(_) => return None,
            Action::Fix(f) => format!("step `{}`: {}", step.id, policy.allows_self_service_fix(f).err()?),
        };
        Some((i, why))
    })
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

/// Walk the tree and reach a verdict; results and progress go to `out` as
/// they come.
pub async fn execute(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    out: &UnboundedSender<Message>,
) -> Verdict {
    let mut results: HashMap<String, CheckResult> = HashMap::new();
    let mut records: Vec<StepRecord> = Vec::new();
    let say = |text: String| {
        let _ = out.send(Message::Progress { text });
    };
    let mut at = 0;
    // A validated runbook is a tree: at most every step once.
    for n in 1..=rb.steps.len() {
        let step = &rb.steps[at];
        let args = step_args(step, vars);
        let action = step.action.describe();
        say(format!("step {n} {}: {action} {}", step.id, args.join(" ")));
        let mut record = StepRecord {
            id: step.id.clone(),
            action,
            args: args.clone(),
            result: None,
            skipped: None,
        };
        let planned = matches!(step.action, Action::Fix(_)) && env.fixes.dry_run;
        match run_step(step, &args, env).await {
            // A dry run goes no further than its first fix: what follows
            // a fix depends on what the fix did, and it did nothing.
            Ran::Result(result) if planned => {
                let _ = out.send(Message::Result {
                    result: result.clone(),
                });
                record.result = Some(result.clone());
                records.push(record);
                return dry_run_stop(rb, vars, env, records, &results, step, &result);
            }
            // A check this agent may not make (no ICMP socket, say) saw
            // nothing: no branch may read its silence as the network's.
            Ran::Result(result)
                if matches!(step.action, Action::Check(_))
                    && result.fields.get("error").map(String::as_str) == Some("no-permission") =>
            {
                let _ = out.send(Message::Result {
                    result: result.clone(),
                });
                record.result = Some(result.clone());
                records.push(record);
                return not_permitted(rb, vars, env, records, step, &result);
            }
            Ran::Result(result) => {
                let _ = out.send(Message::Result {
                    result: result.clone(),
                });
                results.insert(step.id.clone(), result.clone());
                record.result = Some(result);
            }
            Ran::Skipped(why) => {
                say(format!("step {n} {}: skipped: {why}", step.id));
                record.skipped = Some(why);
            }
            Ran::BadArguments(why) => {
                record.skipped = Some(format!("its arguments are wrong: {why}"));
                records.push(record);
                return runbook_error(rb, vars, env, records, &step.id, &why);
            }
        }
        records.push(record);
        let taken = step
            .next
            .iter()
            .find(|b| b.when.as_ref().is_none_or(|c| c.eval(&results)));
        match taken.map(|b| &b.to) {
            Some(Target::Step(j)) => at = *j,
            Some(Target::Verdict(cause)) => {
                let spec = &rb.verdicts[cause];
                if let Some(v) = unearned(rb, vars, env, &records, &results, cause, spec) {
                    return v;
                }
                let mut v = leaf(rb, vars, env, records, &results, cause, spec);
                if env.fixes.dry_run {
                    // Reached with no fix to plan: the checks were real,
                    // but a dry run is never recorded as anything else.
                    v.message = format!(
                        "dry run, nothing was changed; it would conclude `{cause}` ({}): {}",
                        spec.kind, v.message
                    );
                    v.verdict = VerdictKind::DryRun;
                }
                return v;
            }
            // Unreachable for a validated runbook (its last branch is
            // unconditional); said plainly if it ever happens.
            None => {
                let why = "no branch was taken";
                return runbook_error(rb, vars, env, records, &step.id, why);
            }
        }
    }
    runbook_error(rb, vars, env, records, "-", "the runbook did not end")
}

enum Ran {
    Result(CheckResult),
    Skipped(String),
    BadArguments(String),
}

async fn run_step(step: &Step, args: &[String], env: &Env) -> Ran {
    let outcome = match &step.action {
        Action::Check(c) => checks::run(c, args, &env.checks).await,
        Action::Fix(f) => match env.policy.allows_fix(f) {
            Err(why) => return Ran::Skipped(format!("refused: {why}")),
            Ok(()) => fixes::run(f, args, &env.fixes).await,
        },
    };
    match outcome {
        Ok(r) => Ran::Result(r),
        Err(CheckError::Refused(why)) => Ran::Skipped(format!("refused: {why}")),
        Err(e) => Ran::BadArguments(e.to_string().lines().next().unwrap_or("").to_string()),
    }
}

/// The verdict of a leaf, its messages filled in.
fn leaf(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    steps: Vec<StepRecord>,
    results: &HashMap<String, CheckResult>,
    cause: &str,
    spec: &VerdictSpec,
) -> Verdict {
    let fill = |text: &str| fill_message(text, vars, results);
    Verdict {
        runbook: rb.name.clone(),
        agent: env.agent.clone(),
        verdict: spec.kind,
        cause: cause.to_string(),
        team: spec.team.clone(),
        message: fill(&spec.message),
        user_message: fill(&spec.user_message),
        kb: spec.kb.clone(),
        params: vars
            .iter()
            .filter(|(k, _)| rb.params.contains_key(*k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        dry_run: env.fixes.dry_run,
        steps,
    }
}

/// The end of a dry run at its first fix `step` (planned as `plan`): what
/// was seen, what would be done, and what would be checked next.
fn dry_run_stop(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    records: Vec<StepRecord>,
    results: &HashMap<String, CheckResult>,
    step: &Step,
    plan: &CheckResult,
) -> Verdict {
    let seen = records
        .iter()
        .rev()
        .find_map(|r| {
            let x = r.result.as_ref()?;
            (r.action.starts_with("check ") && x.status != firstline_proto::Status::Ok)
                .then(|| format!("`{}` saw {}: {}", r.id, x.status, x.summary))
        })
        .unwrap_or_else(|| "the checks so far".into());
    let then = step
        .next
        .iter()
        .find_map(|b| match &b.to {
            Target::Step(j) => Some(format!(
                "then check again (`{}`: {})",
                rb.steps[*j].id,
                rb.steps[*j].action.describe()
            )),
            Target::Verdict(_) => None,
        })
        .unwrap_or_else(|| "then conclude".into());
    let spec = VerdictSpec {
        kind: VerdictKind::DryRun,
        team: String::new(),
        message: format!(
            "dry run, nothing was changed: {seen}; the fix `{}` would run — {} — {then} before any verdict",
            step.id, plan.summary
        ),
        user_message: "Nothing was changed: this was a dry run of the fix.".into(),
        kb: None,
    };
    leaf(rb, vars, env, records, results, DRY_RUN, &spec)
}

/// Cause of a run stopped because the agent may not make one of its
/// checks (DESIGN: any runbook, kind `error`, team firstline admin).
pub const PROBE_NOT_PERMITTED: &str = "probe-not-permitted";

fn not_permitted(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    records: Vec<StepRecord>,
    step: &Step,
    result: &CheckResult,
) -> Verdict {
    let spec = VerdictSpec {
        kind: VerdictKind::Error,
        team: "firstline admin".into(),
        message: format!(
            "this agent may not make the check of step `{}` ({}): {} — nothing was diagnosed; give the agent what the check needs, or run it where it has it",
            step.id,
            step.action.describe(),
            result.summary
        ),
        user_message: "The automatic diagnosis could not check this computer; a technician has been told.".into(),
        kb: None,
    };
    leaf(
        rb,
        vars,
        env,
        records,
        &HashMap::new(),
        PROBE_NOT_PERMITTED,
        &spec,
    )
}

/// Cause of a dry run stopped at its first fix.
pub const DRY_RUN: &str = "dry-run";

/// The verdict to give instead of the `resolved` leaf `cause` when it was
/// not earned: fixes ran on the way and none changed anything (each fix
/// lists what it changed; a dry run, a refused fix or a fix that found
/// nothing to do changes nothing). The load-time rule (`super::verified`)
/// already made sure the leaf's condition holds only if the failing check
/// passed on a re-run after the fix.
fn unearned(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    records: &[StepRecord],
    results: &HashMap<String, CheckResult>,
    cause: &str,
    spec: &VerdictSpec,
) -> Option<Verdict> {
    if spec.kind != VerdictKind::Resolved {
        return None;
    }
    let fixes: Vec<&StepRecord> = records
        .iter()
        .filter(|r| r.action.starts_with("fix "))
        .collect();
    let changed = |r: &&StepRecord| r.result.as_ref().is_some_and(|x| !x.changed.is_empty());
    if fixes.is_empty() || fixes.iter().any(changed) {
        return None;
    }
    // The first check that did not pass, and the last one (the re-check).
    let checks = || {
        records
            .iter()
            .filter(|r| r.action.starts_with("check "))
            .filter_map(|r| r.result.as_ref().map(|x| (r, x)))
    };
    let failed = checks()
        .find(|(_, x)| x.status != firstline_proto::Status::Ok)
        .map(|(r, x)| format!("`{}` saw {}: {}", r.id, x.status, x.summary))
        .unwrap_or_else(|| "a check failed".into());
    let again = checks()
        .next_back()
        .map(|(r, x)| format!("`{}` now passes: {}", r.id, x.summary))
        .unwrap_or_default();
    let what: Vec<String> = fixes
        .iter()
        .map(|r| match (&r.result, &r.skipped) {
            (Some(x), _) => format!("`{}` changed nothing ({})", r.id, x.summary),
            (None, Some(why)) => format!("`{}` did not run ({why})", r.id),
            (None, None) => format!("`{}` did not run", r.id),
        })
        .collect();
    let spec = VerdictSpec {
        kind: VerdictKind::Escalate,
        team: if spec.team.is_empty() {
            "desktop".into()
        } else {
            spec.team.clone()
        },
        message: format!(
            "the fault came and went by itself: {failed}; {again}; but {} — not `{cause}`: nothing this runbook did can have fixed it, so it may come back",
            what.join(", ")
        ),
        user_message: "The problem did not show up again, but nothing was changed to fix it, so it may come back. A technician has been told.".into(),
        kb: spec.kb.clone(),
    };
    Some(leaf(
        rb,
        vars,
        env,
        records.to_vec(),
        results,
        INTERMITTENT,
        &spec,
    ))
}

fn runbook_error(
    rb: &Runbook,
    vars: &BTreeMap<String, String>,
    env: &Env,
    steps: Vec<StepRecord>,
    step: &str,
    why: &str,
) -> Verdict {
    let spec = VerdictSpec {
        kind: VerdictKind::Escalate,
        team: "firstline admin".into(),
        message: format!(
            "the runbook {} could not run its step `{step}`: {why} (a mistake in the runbook or its parameters, not a diagnosis)",
            rb.name
        ),
        user_message: "The automatic diagnosis could not finish; a technician has been told.".into(),
        kb: None,
    };
    leaf(rb, vars, env, steps, &HashMap::new(), RUNBOOK_ERROR, &spec)
}

/// `{param}` and `{STEP.KEY}` in a verdict's message: a parameter, or a
/// step's status, summary, target, metric or field (`?` when that step did
/// not run or has no such key).
fn fill_message(
    text: &str,
    vars: &BTreeMap<String, String>,
    results: &HashMap<String, CheckResult>,
) -> String {
    let mut out = substitute(text, vars);
    for var in super::placeholders(&out) {
        // `{a.summary|b.summary}`: the first of the steps that ran (a leaf
        // reached by several paths names the measurement that decided).
        let value = var.split('|').find_map(|one| {
            let (step, key) = one.split_once('.')?;
            results.get(step).and_then(|r| match key {
                "status" => Some(r.status.to_string()),
                "summary" => Some(r.summary.clone()),
                "target" => Some(r.target.clone()),
                k => r
                    .fields
                    .get(k)
                    .cloned()
                    .or_else(|| r.metrics.get(k).map(|m| m.to_string())),
            })
        });
        if value.is_none() && !var.contains('.') {
            continue;
        }
        out = out.replace(&format!("{{{var}}}"), value.as_deref().unwrap_or("?"));
    }
    out
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
                runner: Default::default(),
            },
            policy,
            agent: "pc1".into(),
        }
    }

    const TREE: &str = r#"name = "t"
description = "d"
[params]
path = { default = "/" }
warn = { default = "100" }

[[step]]
id = "full"
check = "disk"
args = ["{path}", "--warn", "{warn}", "--crit", "{warn}"]
next = [
  { if = "full.status == ok", verdict = "fine" },
  { goto = "flush" },
]

[[step]]
id = "flush"
fix = "flush-dns"
next = [{ goto = "again" }]

[[step]]
id = "again"
check = "disk"
args = ["{path}", "--warn", "{warn}", "--crit", "{warn}"]
next = [
  { if = "again.status == ok", verdict = "fixed" },
  { verdict = "stuck" },
]

[verdict.fine]
kind = "resolved"
message = "{path} is at {full.used_pct} %"
user_message = "All is well."

[verdict.fixed]
kind = "resolved"
message = "fixed"
user_message = "Fixed."

[verdict.stuck]
kind = "escalate"
team = "desktop"
message = "still full: {full.summary}"
user_message = "A technician will look."
"#;

    async fn run(rb: &Runbook, params: &[&str], policy: Policy) -> (Verdict, Vec<Message>) {
        let params: Vec<String> = params.iter().map(|s| s.to_string()).collect();
        let vars = bind(rb, &params).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let v = execute(rb, &vars, &env(policy), &tx).await;
        drop(tx);
        let mut msgs = Vec::new();
        while let Ok(m) = rx.try_recv() {
            msgs.push(m);
        }
        (v, msgs)
    }

    #[tokio::test]
    async fn follows_the_branch_that_holds_and_fills_the_message() {
        let rb = parse("t.toml", TREE).unwrap();
        let (v, msgs) = run(&rb, &[], Policy::default()).await;
        assert_eq!(
            (v.verdict, v.cause.as_str()),
            (VerdictKind::Resolved, "fine")
        );
        assert!(v.message.starts_with("/ is at "), "{}", v.message);
        let filled = fill_message(
            "{again.summary|full.status} {flush.status|nope.status}",
            &BTreeMap::new(),
            &[("full".to_string(), v.steps[0].result.clone().unwrap())].into(),
        );
        assert_eq!(filled, "ok ?", "the first step that ran, else ?");
        assert!(!v.message.contains('?'), "{}", v.message);
        assert_eq!(v.agent, "pc1");
        assert_eq!(v.params, ["path=/", "warn=100"]);
        assert_eq!(v.steps.len(), 1, "only the path taken");
        assert_eq!(
            msgs.iter()
                .filter(|m| matches!(m, Message::Result { .. }))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_refused_fix_is_skipped_with_why_and_the_default_branch_taken() {
        let rb = parse("t.toml", TREE).unwrap();
        let no_fixes = Policy {
            fixes: vec![],
            ..Policy::default()
        };
        let (v, _) = run(&rb, &["warn=0"], no_fixes).await;
        assert_eq!(
            (v.verdict, v.cause.as_str()),
            (VerdictKind::Escalate, "stuck")
        );
        assert_eq!(v.team, "desktop");
        assert!(v.message.starts_with("still full: "), "{}", v.message);
        let flush = &v.steps[1];
        assert!(flush.result.is_none());
        assert!(
            flush.skipped.as_deref().unwrap_or("").contains("refused"),
            "{flush:?}"
        );
    }

    #[tokio::test]
    async fn bad_step_arguments_end_the_run_as_a_runbook_error() {
        let rb = parse("t.toml", TREE).unwrap();
        let (v, _) = run(&rb, &["warn=lots"], Policy::default()).await;
        assert_eq!(v.cause, RUNBOOK_ERROR);
        assert_eq!(v.verdict, VerdictKind::Escalate);
        assert!(v.message.contains("`full`"), "{}", v.message);
        assert!(!v.message.contains('\n'), "one line: {}", v.message);
    }

    /// A port that refuses first, then (once the first result is out)
    /// accepts: the failing observation passes when made again, after a
    /// fix that found nothing to clean.
    #[tokio::test]
    async fn a_recheck_that_passes_after_a_fix_that_changed_nothing_is_intermittent() {
        let temp = tempfile::tempdir().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let text = format!(
            r#"name = "t"
description = "d"
[[step]]
id = "port"
check = "tcp"
args = ["127.0.0.1:{port}", "--timeout", "1s"]
next = [{{ if = "port.status == ok", verdict = "fine" }}, {{ goto = "clean" }}]
[[step]]
id = "clean"
fix = "clean-temp"
args = ["{dir}"]
next = [{{ goto = "again" }}]
[[step]]
id = "again"
check = "tcp"
args = ["127.0.0.1:{port}", "--timeout", "1s"]
next = [{{ if = "again.status == ok", verdict = "fixed" }}, {{ verdict = "down" }}]
[verdict.fine]
kind = "resolved"
message = "m"
user_message = "u"
[verdict.fixed]
kind = "resolved"
team = "network"
message = "m"
user_message = "u"
[verdict.down]
kind = "escalate"
message = "m"
user_message = "u"
"#,
            dir = temp.path().display()
        );
        let rb = parse("t.toml", &text).unwrap();
        let vars = bind(&rb, &[]).unwrap();
        let mut e = env(Policy {
            clean_temp_roots: vec![temp.path().to_path_buf()],
            ..Policy::default()
        });
        e.fixes.policy = std::sync::Arc::new(e.policy.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(async move {
            let v = execute(&rb, &vars, &e, &tx).await;
            v
        });
        let mut listener = None;
        while let Some(m) = rx.recv().await {
            if matches!(m, Message::Result { .. }) && listener.is_none() {
                listener = Some(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
            }
        }
        let v = run.await.unwrap();
        let ids: Vec<&str> = v.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["port", "clean", "again"], "{v:?}");
        assert_eq!(
            v.steps[2].result.as_ref().unwrap().status,
            firstline_proto::Status::Ok
        );
        assert_eq!(
            (v.verdict, v.cause.as_str()),
            (VerdictKind::Escalate, INTERMITTENT)
        );
        assert_eq!(v.team, "network");
        assert!(
            v.message.contains("`clean` changed nothing"),
            "{}",
            v.message
        );
        assert!(v.message.contains("`port` saw crit"), "{}", v.message);
    }

    #[tokio::test]
    async fn a_dry_run_stops_at_its_first_fix_and_is_never_an_escalation() {
        let rb = parse("t.toml", TREE).unwrap();
        let vars = bind(&rb, &["warn=0".to_string()]).unwrap();
        let mut e = env(Policy::default());
        e.fixes.dry_run = true;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let v = execute(&rb, &vars, &e, &tx).await;
        assert_eq!(
            (v.verdict, v.cause.as_str()),
            (VerdictKind::DryRun, DRY_RUN),
            "{v:?}"
        );
        let ids: Vec<&str> = v.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["full", "flush"], "no step after the planned fix");
        assert!(v.message.contains("`full` saw crit"), "{}", v.message);
        assert!(
            v.message.contains("then check again (`again`"),
            "{}",
            v.message
        );
        // Reaching a leaf with no fix to plan: still a dry run, the cause said.
        let vars = bind(&rb, &[]).unwrap();
        let v = execute(&rb, &vars, &e, &tx).await;
        assert_eq!((v.verdict, v.cause.as_str()), (VerdictKind::DryRun, "fine"));
        assert!(
            v.message.contains("would conclude `fine` (resolved)"),
            "{}",
            v.message
        );
    }

    #[test]
    fn binds_params() {
        let rb = parse("t.toml", "name = \"t\"\ndescription = \"d\"\n[params]\nuri = { help = \"printer\" }\nage = { default = \"7d\" }\n[[step]]\nid = \"a\"\ncheck = \"disk\"\nnext = [{ verdict = \"v\" }]\n[verdict.v]\nkind = \"escalate\"\nmessage = \"m\"\nuser_message = \"u\"\n").unwrap();
        assert!(bind(&rb, &[]).unwrap_err().contains("needs uri="));
        assert!(bind(&rb, &["color=red".into()])
            .unwrap_err()
            .contains("not a parameter"));
        let vars = bind(&rb, &["uri=ipp://x/printers/q".into()]).unwrap();
        assert_eq!(vars["age"], "7d");
        assert_eq!(vars["uri"], "ipp://x/printers/q");
    }
}
