//! Runbooks: the script an L1 technician follows, as data — a decision
//! tree whose every leaf names the cause.
//!
//! A runbook is a TOML file: a name, a description, parameters (with
//! defaults), `[[step]]`s — each a check or a fix with arguments
//! (`{param}` placeholders) and a list of branches `next`, tried in order
//! (`{ if = "CONDITION", goto = "STEP" }` or `{ if = …, verdict = "CAUSE" }`,
//! the last without `if`) — and a `[verdict.CAUSE]` table for every cause it
//! can reach: `kind` (`resolved`, `user-action`, `escalate`), `team`,
//! `message` for the technician, `user_message` in plain words, `kb`.
//! Messages may show `{param}` and `{STEP.KEY}` (a step's status, summary,
//! metric or field), or `{A.KEY|B.KEY}`: the first of those steps that ran.
//!
//! The first step is the root. A runbook is rejected at load time, with its
//! file, line and reason, unless every path ends in a verdict: no unknown
//! step or cause, no loop, no step that cannot be reached, no verdict that
//! is never reached, no script whose name comes from a parameter. Four ship
//! inside the agent (`no-internet`, `cant-print`, `disk-full`, `slow-dns`);
//! admins add more in `runbooks_dir`. Running one: [`engine`]; the
//! conditions: [`condition`].

pub mod condition;
pub mod engine;
pub mod run;

use condition::Condition;
use firstline_proto::runbook::VerdictKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The runbooks shipped in the binary: `(file name, text)`.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "no-internet.toml",
        include_str!("../../runbooks/no-internet.toml"),
    ),
    (
        "cant-print.toml",
        include_str!("../../runbooks/cant-print.toml"),
    ),
    (
        "disk-full.toml",
        include_str!("../../runbooks/disk-full.toml"),
    ),
    (
        "slow-dns.toml",
        include_str!("../../runbooks/slow-dns.toml"),
    ),
];

/// Variables every runbook may use besides its parameters.
/// (`random`: 12 random lowercase letters and digits, new for each run — a
/// name no one can have registered, e.g. `fl-{random}.example.com`.)
pub const BUILTIN_VARS: &[&str] = &["default_gateway", "random"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    description: String,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    #[serde(rename = "step", default)]
    steps: Vec<StepSpec>,
    #[serde(rename = "verdict", default)]
    verdicts: BTreeMap<String, VerdictSpec>,
    /// Offered to the person at the machine (`firstline-help`).
    #[serde(default)]
    self_service: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Absent: the parameter is required.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub help: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    id: String,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    fix: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    next: Vec<BranchSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchSpec {
    #[serde(rename = "if", default)]
    when: Option<String>,
    #[serde(default)]
    goto: Option<String>,
    #[serde(default)]
    verdict: Option<String>,
}

/// A leaf: what a cause means and to whom it goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSpec {
    pub kind: VerdictKind,
    #[serde(default)]
    pub team: String,
    pub message: String,
    pub user_message: String,
    #[serde(default)]
    pub kb: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Check(String),
    Fix(String),
}

impl Action {
    /// `check dns`, `fix flush-dns`.
    pub fn describe(&self) -> String {
        match self {
            Action::Check(c) => format!("check {c}"),
            Action::Fix(f) => format!("fix {f}"),
        }
    }
}

/// Where a branch leads.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index of the next step.
    Step(usize),
    /// A cause of `[verdict.CAUSE]`.
    Verdict(String),
}

#[derive(Debug, Clone)]
pub struct Branch {
    /// `None`: always (the last branch).
    pub when: Option<Condition>,
    pub to: Target,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub args: Vec<String>,
    pub next: Vec<Branch>,
}

#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub params: BTreeMap<String, Param>,
    /// The root is `steps[0]`.
    pub steps: Vec<Step>,
    pub verdicts: BTreeMap<String, VerdictSpec>,
    /// `shipped` or the file it came from.
    pub source: String,
    /// Offered to the person at the machine by `firstline-help` (only
    /// checks a viewer may run and `[policy] self_service_fixes`).
    pub self_service: bool,
    /// The file as named in errors, and the line of each step's
    /// `[[step]]` and of `self_service`, for errors found after parsing.
    pub file: String,
    pub step_lines: Vec<usize>,
    pub self_service_line: usize,
}

/// Parse and validate one runbook; errors read `FILE:LINE: reason`.
pub fn parse(file: &str, text: &str) -> Result<Runbook, String> {
    let f: File = firstline_net::config::parse(file, text).map_err(|e| {
        let e = e.to_string();
        if text.contains("on_fail") || text.contains("on_ok") {
            format!("{e} (this is the old linear runbook format: steps now branch with `next`, see the shipped runbooks)")
        } else {
            e
        }
    })?;
    let at = |line: usize, msg: String| format!("{file}:{line}: {msg}");
    if !firstline_net::identity::valid_name(&f.name) {
        return Err(at(
            key_line(text, "name"),
            format!("name `{}`: use letters, digits, `.`, `_` or `-`", f.name),
        ));
    }
    if f.steps.is_empty() {
        return Err(at(1, "a runbook needs at least one [[step]]".into()));
    }
    let ids: HashMap<&str, usize> = f
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut steps = Vec::new();
    for (i, s) in f.steps.iter().enumerate() {
        let step_at = |msg: String| at(step_line(text, i), format!("step `{}`: {msg}", s.id));
        steps.push(step(s, &f, &ids).map_err(step_at)?);
    }
    if let Some((i, s)) = f
        .steps
        .iter()
        .enumerate()
        .find(|(i, s)| ids.get(s.id.as_str()) != Some(i))
    {
        return Err(at(
            step_line(text, i),
            format!("duplicate step id `{}`", s.id),
        ));
    }
    for (cause, v) in &f.verdicts {
        let known = |var: &str| known_placeholder(var, &f.params, &ids);
        for text_of in [&v.message, &v.user_message] {
            if let Some(bad) = placeholders(text_of).into_iter().find(|p| !known(p)) {
                return Err(at(
                    table_line(text, &format!("verdict.{cause}")),
                    format!("verdict `{cause}`: `{{{bad}}}` is neither a parameter nor STEP.KEY of a step"),
                ));
            }
        }
    }
    let book = Runbook {
        name: f.name.clone(),
        description: f.description.clone(),
        params: f.params.clone(),
        steps,
        verdicts: f.verdicts.clone(),
        source: file.to_string(),
        self_service: f.self_service,
        file: file.to_string(),
        step_lines: (0..f.steps.len()).map(|i| step_line(text, i)).collect(),
        self_service_line: key_line(text, "self_service"),
    };
    shape(&book).map_err(|(line_of, msg)| {
        let line = match line_of {
            Place::Step(i) => step_line(text, i),
            Place::Verdict(c) => table_line(text, &format!("verdict.{c}")),
        };
        at(line, msg)
    })?;
    Ok(book)
}

/// One step, checked on its own.
fn step(s: &StepSpec, f: &File, ids: &HashMap<&str, usize>) -> Result<Step, String> {
    if !firstline_net::identity::valid_name(&s.id) {
        return Err("an id is letters, digits, `.`, `_` or `-`".into());
    }
    let action = match (&s.check, &s.fix) {
        (Some(c), None) if crate::checks::NAMES.contains(&c.as_str()) => Action::Check(c.clone()),
        (Some(c), None) => return Err(format!("unknown check `{c}`")),
        (None, Some(x)) if crate::fixes::BUILTIN.contains(&x.as_str()) || x == "script" => {
            Action::Fix(x.clone())
        }
        (None, Some(x)) => return Err(format!("unknown fix `{x}`")),
        _ => return Err("needs exactly one of `check` or `fix`".into()),
    };
    if action == Action::Fix("script".into()) {
        // The script a runbook runs is the runbook author's choice, never
        // the requester's: a parameter could name any admin script.
        match s.args.first() {
            Some(name) if placeholders(name).is_empty() => {}
            Some(_) => {
                return Err(
                    "a script step names its script literally: no `{parameter}` in the script name"
                        .into(),
                )
            }
            None => return Err("a script step needs the script's name in `args`".into()),
        }
    }
    for var in s.args.iter().flat_map(|a| placeholders(a)) {
        if !f.params.contains_key(&var) && !BUILTIN_VARS.contains(&var.as_str()) {
            return Err(format!("`{{{var}}}` is not a parameter of this runbook"));
        }
    }
    if s.next.is_empty() {
        return Err("needs `next`: where to go after it (the last branch without `if`)".into());
    }
    let last = s.next.len() - 1;
    let mut next = Vec::new();
    for (n, b) in s.next.iter().enumerate() {
        let when = match (&b.when, n == last) {
            (Some(_), true) => {
                return Err("the last branch of `next` has no `if`: it is taken when no other is (otherwise the runbook could end without a verdict)".into())
            }
            (None, false) => return Err(format!("branch {} of `next` needs an `if` (only the last goes without)", n + 1)),
            (None, true) => None,
            (Some(c), false) => {
                let c = Condition::parse(c).map_err(|e| format!("branch {}: {e}", n + 1))?;
                if let Some(unknown) = c.steps().find(|st| !ids.contains_key(st)) {
                    return Err(format!("branch {}: `{unknown}` is not a step of this runbook", n + 1));
                }
                Some(c)
            }
        };
        let to = match (&b.goto, &b.verdict) {
            (Some(g), None) => match ids.get(g.as_str()) {
                Some(&i) => Target::Step(i),
                None => return Err(format!("branch {}: goto `{g}`: no such step", n + 1)),
            },
            (None, Some(v)) if f.verdicts.contains_key(v) => Target::Verdict(v.clone()),
            (None, Some(v)) => {
                return Err(format!(
                    "branch {}: verdict `{v}` has no [verdict.{v}] table",
                    n + 1
                ))
            }
            _ => {
                return Err(format!(
                    "branch {}: needs exactly one of `goto` or `verdict`",
                    n + 1
                ))
            }
        };
        next.push(Branch { when, to });
    }
    Ok(Step {
        id: s.id.clone(),
        action,
        args: s.args.clone(),
        next,
    })
}

/// Where a whole-tree error is.
enum Place {
    Step(usize),
    Verdict(String),
}

/// The tree as a whole: no loop, every step reached from the root, every
/// verdict reached.
fn shape(rb: &Runbook) -> Result<(), (Place, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; rb.steps.len()];
    let mut reached: HashSet<&str> = HashSet::new();
    // Depth-first from the root; an edge to an open step is a loop.
    let mut stack = vec![(0usize, 0usize)];
    marks[0] = Mark::Open;
    while let Some((i, b)) = stack.pop() {
        let Some(branch) = rb.steps[i].next.get(b) else {
            marks[i] = Mark::Done;
            continue;
        };
        stack.push((i, b + 1));
        match &branch.to {
            Target::Verdict(v) => {
                reached.insert(v.as_str());
            }
            Target::Step(j) => match marks[*j] {
                Mark::Open => {
                    return Err((
                        Place::Step(i),
                        format!(
                            "step `{}`: goto `{}` makes a loop (a runbook is a tree)",
                            rb.steps[i].id, rb.steps[*j].id
                        ),
                    ))
                }
                Mark::New => {
                    marks[*j] = Mark::Open;
                    stack.push((*j, 0));
                }
                Mark::Done => {}
            },
        }
    }
    if let Some(i) = marks.iter().position(|m| *m == Mark::New) {
        let msg = format!(
            "step `{}` is never reached from the first step",
            rb.steps[i].id
        );
        return Err((Place::Step(i), msg));
    }
    if let Some(cause) = rb.verdicts.keys().find(|c| !reached.contains(c.as_str())) {
        let msg = format!("verdict `{cause}` is never reached");
        return Err((Place::Verdict(cause.clone()), msg));
    }
    verified(rb)
}

/// The rule of DESIGN.md, held for every path of the tree: a `resolved`
/// verdict only when the failing observation was made again after the fix
/// and passed. A branch to a `resolved` leaf needs a condition that cannot
/// hold unless a check passed (`STEP.status == ok` in each alternative);
/// when fixes ran on the way, that check runs after the last of them and
/// repeats a check made before it (same check, same arguments). Whether
/// the fix changed anything at all is the engine's to judge at run time
/// ([`engine`]: a re-check that passes after a fix that changed nothing is
/// `intermittent`, never `resolved`).
fn verified(rb: &Runbook) -> Result<(), (Place, String)> {
    // Depth-first over every path (a tree: each step once per path).
    let mut stack: Vec<Vec<usize>> = vec![vec![0]];
    while let Some(path) = stack.pop() {
        let Some(&here) = path.last() else { continue };
        for branch in &rb.steps[here].next {
            match &branch.to {
                Target::Step(j) => {
                    let mut longer = path.clone();
                    longer.push(*j);
                    stack.push(longer);
                }
                Target::Verdict(cause) if rb.verdicts[cause].kind == VerdictKind::Resolved => {
                    resolved_path(rb, &path, branch, cause)
                        .map_err(|why| (Place::Step(here), why))?;
                }
                Target::Verdict(_) => {}
            }
        }
    }
    Ok(())
}

/// One path (step indices, root first) ending in the `resolved` leaf
/// `cause` through `branch` of its last step.
fn resolved_path(rb: &Runbook, path: &[usize], branch: &Branch, cause: &str) -> Result<(), String> {
    let here = &rb.steps[*path.last().unwrap_or(&0)];
    let is_check = |i: usize| matches!(rb.steps[i].action, Action::Check(_));
    let last_fix = path.iter().rposition(|&i| !is_check(i));
    let same = |a: &Step, b: &Step| a.action == b.action && a.args == b.args;
    // Steps whose passing may resolve: checks on the path, and after a
    // fix only re-runs, after it, of a check made before it.
    let passes = |id: &str| {
        let Some(at) = path.iter().position(|&i| rb.steps[i].id == id) else {
            return false;
        };
        if !is_check(path[at]) {
            return false;
        }
        match last_fix {
            None => true,
            Some(f) => {
                at > f
                    && path[..f]
                        .iter()
                        .any(|&b| is_check(b) && same(&rb.steps[b], &rb.steps[path[at]]))
            }
        }
    };
    let Some(when) = &branch.when else {
        return Err(format!(
            "step `{}`: the verdict `{cause}` is `resolved` but is reached by the branch without `if`: `resolved` needs a condition that a check passed (`STEP.status == ok`)",
            here.id
        ));
    };
    if when.requires_ok(passes) {
        return Ok(());
    }
    Err(match last_fix {
        None => format!(
            "step `{}`: the verdict `{cause}` is `resolved`, but its condition can hold without a check having passed (each alternative needs `STEP.status == ok`)",
            here.id
        ),
        Some(f) => format!(
            "step `{}`: the verdict `{cause}` is `resolved` after the fix `{}`, but its condition does not require that the check which failed was made again after the fix and passed (each alternative needs `STEP.status == ok` of a step after the fix that repeats a check made before it, with the same arguments)",
            here.id, rb.steps[path[f]].id
        ),
    })
}

/// Whether `{var}` in a message can be filled: a parameter, a built-in, or
/// `STEP.KEY` of a step of the runbook.
fn known_placeholder(
    var: &str,
    params: &BTreeMap<String, Param>,
    ids: &HashMap<&str, usize>,
) -> bool {
    // `{a.summary|b.summary}`: each alternative a STEP.KEY.
    if var.contains('|') {
        return var.split('|').all(|one| {
            one.split_once('.')
                .is_some_and(|(step, key)| ids.contains_key(step) && !key.is_empty())
        });
    }
    match var.split_once('.') {
        Some((step, key)) => ids.contains_key(step) && !key.is_empty(),
        None => params.contains_key(var) || BUILTIN_VARS.contains(&var),
    }
}

/// Line of the `i`th `[[step]]` header.
fn step_line(text: &str, i: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[step]]")
        .nth(i)
        .map(|(n, _)| n + 1)
        .unwrap_or(1)
}

/// Line of the `[TABLE]` header.
fn table_line(text: &str, table: &str) -> usize {
    let header = format!("[{table}]");
    text.lines()
        .position(|l| l.trim() == header)
        .map_or(1, |n| n + 1)
}

/// Line of a top-level `key = …`.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
        .map_or(1, |n| n + 1)
}

/// `{name}` placeholders of an argument.
pub fn placeholders(arg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// Why the self-service runbook `rb` may not be offered under `policy`
/// (`FILE:LINE: reason`), if it may not: a step that needs more than a
/// viewer or a fix outside `[policy] self_service_fixes`, or a parameter
/// without a default (the person at the machine gives none). Checked at
/// load ([`crate::config::Loaded::runbooks`]) and again before each run.
pub fn self_service_error(rb: &Runbook, policy: &crate::policy::Policy) -> Option<String> {
    if !rb.self_service {
        return None;
    }
    if let Some((name, _)) = rb.params.iter().find(|(_, p)| p.default.is_none()) {
        return Some(format!(
            "{}:{}: self-service runbook `{}`: its parameter `{name}` needs a default (the person at the machine gives none)",
            rb.file, rb.self_service_line, rb.name
        ));
    }
    let vars: BTreeMap<String, String> = rb
        .params
        .iter()
        .map(|(k, p)| (k.clone(), p.default.clone().unwrap_or_default()))
        .collect();
    engine::self_service_refusal(rb, &vars, policy).map(|(i, why)| {
        let line = rb.step_lines.get(i).copied().unwrap_or(1);
        format!(
            "{}:{line}: self-service runbook `{}`: {why}",
            rb.file, rb.name
        )
    })
}

/// Every runbook this agent has: shipped ones, overridden by same-named
/// files in `dir`. Invalid files come back as errors, with the file's name.
pub fn load_all(dir: &Path) -> (Vec<Runbook>, Vec<String>) {
    let mut books: BTreeMap<String, Runbook> = BTreeMap::new();
    let mut errors = Vec::new();
    for (file, text) in SHIPPED {
        match parse(&format!("(shipped) {file}"), text) {
            Ok(mut rb) => {
                rb.source = "shipped".into();
                books.insert(rb.name.clone(), rb);
            }
            Err(e) => errors.push(e),
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in files {
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path)
            .map_err(|e| format!("{shown}: {e}"))
            .and_then(|t| parse(&shown, &t))
        {
            Ok(rb) => {
                books.insert(rb.name.clone(), rb);
            }
            Err(e) => errors.push(e),
        }
    }
    (books.into_values().collect(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

    fn verdicts(causes: &[&str]) -> String {
        causes
            .iter()
            .map(|c| {
                format!(
                    "\n[verdict.{c}]\nkind = \"escalate\"\nmessage = \"m\"\nuser_message = \"u\"\n"
                )
            })
            .collect()
    }

    #[test]
    fn shipped_runbooks_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (books, errors) = load_all(dir.path());
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = books.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            ["cant-print", "disk-full", "no-internet", "slow-dns"]
        );
    }

    #[test]
    fn a_small_tree_parses() {
        let text = format!(
            "{HEAD}[[step]]\nid = \"a\"\ncheck = \"disk\"\nnext = [{{ if = \"a.status == ok\", verdict = \"fine\" }}, {{ goto = \"b\" }}]\n\n\
             [[step]]\nid = \"b\"\nfix = \"flush-dns\"\nnext = [{{ verdict = \"bad\" }}]\n{}",
            verdicts(&["fine", "bad"])
        );
        let rb = parse("x.toml", &text).unwrap();
        assert_eq!(rb.steps.len(), 2);
        assert_eq!(rb.steps[0].next[1].to, Target::Step(1));
    }

    #[test]
    fn invalid_runbooks_name_file_line_and_reason() {
        let step = |id: &str, next: &str| {
            format!("\n[[step]]\nid = \"{id}\"\ncheck = \"disk\"\nnext = [{next}]\n")
        };
        let fix = |id: &str, next: &str| {
            format!("\n[[step]]\nid = \"{id}\"\nfix = \"flush-dns\"\nnext = [{next}]\n")
        };
        let other = |id: &str, next: &str| {
            format!(
                "\n[[step]]\nid = \"{id}\"\ncheck = \"disk\"\nargs = [\"/tmp\"]\nnext = [{next}]\n"
            )
        };
        let resolved = |c: &str| {
            format!("\n[verdict.{c}]\nkind = \"resolved\"\nmessage = \"m\"\nuser_message = \"u\"\n")
        };
        let cases = [
            // no verdict possible: last branch has a condition
            (format!("{HEAD}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"v\" }"), verdicts(&["v"])), ":4: step `a`: the last branch"),
            // unknown step in goto
            (format!("{HEAD}{}{}", step("a", "{ goto = \"nowhere\" }"), verdicts(&[])), "goto `nowhere`: no such step"),
            // unknown cause
            (format!("{HEAD}{}", step("a", "{ verdict = \"gone\" }")), "verdict `gone` has no [verdict.gone] table"),
            // a loop
            (format!("{HEAD}{}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"v\" }, { goto = \"b\" }"), step("b", "{ goto = \"a\" }"), verdicts(&["v"])), ":9: step `b`: goto `a` makes a loop"),
            // unreachable step
            (format!("{HEAD}{}{}{}", step("a", "{ verdict = \"v\" }"), step("b", "{ verdict = \"v\" }"), verdicts(&["v"])), "step `b` is never reached"),
            // unreached verdict
            (format!("{HEAD}{}{}", step("a", "{ verdict = \"v\" }"), verdicts(&["v", "w"])), "verdict `w` is never reached"),
            // condition on an unknown step
            (format!("{HEAD}{}{}", step("a", "{ if = \"z.status == ok\", verdict = \"v\" }, { verdict = \"v\" }"), verdicts(&["v"])), "`z` is not a step"),
            // unknown fix
            (format!("{HEAD}\n[[step]]\nid = \"a\"\nfix = \"format-c\"\nnext = [{{ verdict = \"v\" }}]\n{}", verdicts(&["v"])), ":4: step `a`: unknown fix `format-c`"),
            // script named by a parameter
            (format!("{HEAD}[params]\nscript = {{}}\n\n[[step]]\nid = \"a\"\nfix = \"script\"\nargs = [\"{{script}}\"]\nnext = [{{ verdict = \"v\" }}]\n{}", verdicts(&["v"])), "a script step names its script literally"),
            // unknown placeholder in a message
            (format!("{HEAD}{}\n[verdict.v]\nkind = \"escalate\"\nmessage = \"{{nope}}\"\nuser_message = \"u\"\n", step("a", "{ verdict = \"v\" }")), "verdict `v`: `{nope}`"),
            // resolved on the branch without `if`
            (format!("{HEAD}{}{}", step("a", "{ verdict = \"v\" }"), resolved("v")), "`resolved` but is reached by the branch without `if`"),
            // resolved when the check did not pass
            (format!("{HEAD}{}{}{}", step("a", "{ if = \"a.status != ok\", verdict = \"v\" }, { verdict = \"w\" }"), resolved("v"), verdicts(&["w"])), "can hold without a check having passed"),
            // resolved after a fix, on the fix's own word
            (format!("{HEAD}{}{}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"w\" }, { goto = \"f\" }"), fix("f", "{ if = \"f.status == ok\", verdict = \"v\" }, { verdict = \"w\" }"), resolved("v"), verdicts(&["w"])), "after the fix `f`, but its condition does not require"),
            // resolved after a fix on a check made before the fix
            (format!("{HEAD}{}{}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"w\" }, { goto = \"f\" }"), fix("f", "{ if = \"a.status == ok\", verdict = \"v\" }, { verdict = \"w\" }"), resolved("v"), verdicts(&["w"])), "after the fix `f`"),
            // the re-check is another check than the one that failed
            (format!("{HEAD}{}{}{}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"w\" }, { goto = \"f\" }"), fix("f", "{ goto = \"b\" }"), other("b", "{ if = \"b.status == ok\", verdict = \"v\" }, { verdict = \"w\" }"), resolved("v"), verdicts(&["w"])), "after the fix `f`"),
            // one alternative needs no re-check
            (format!("{HEAD}{}{}{}{}{}", step("a", "{ if = \"a.status == ok\", verdict = \"w\" }, { goto = \"f\" }"), fix("f", "{ goto = \"b\" }"), step("b", "{ if = \"b.status == ok or f.status == ok\", verdict = \"v\" }, { verdict = \"w\" }"), resolved("v"), verdicts(&["w"])), "after the fix `f`"),
            // the old format
            (format!("{HEAD}[[step]]\nid = \"a\"\ncheck = \"disk\"\non_fail = \"escalate\"\n"), "old linear runbook format"),
        ];
        for (text, want) in cases {
            let err = parse("x.toml", &text).unwrap_err();
            assert!(err.contains(want), "{err}\n(wanted {want})\n{text}");
            assert!(err.starts_with("x.toml:"), "{err}");
        }
    }

    #[test]
    fn resolved_after_a_fix_needs_the_failing_check_made_again_and_passing() {
        let text = format!(
            "{HEAD}[[step]]\nid = \"a\"\ncheck = \"disk\"\nnext = [{{ if = \"a.status == ok\", verdict = \"fine\" }}, {{ goto = \"f\" }}]\n\n\
             [[step]]\nid = \"f\"\nfix = \"flush-dns\"\nnext = [{{ goto = \"again\" }}]\n\n\
             [[step]]\nid = \"again\"\ncheck = \"disk\"\nnext = [{{ if = \"again.status == ok and f.status == ok\", verdict = \"fixed\" }}, {{ verdict = \"bad\" }}]\n\
             \n[verdict.fine]\nkind = \"resolved\"\nmessage = \"m\"\nuser_message = \"u\"\n\
             \n[verdict.fixed]\nkind = \"resolved\"\nmessage = \"m\"\nuser_message = \"u\"\n{}",
            verdicts(&["bad"])
        );
        parse("x.toml", &text).unwrap();
    }

    #[test]
    fn admin_file_overrides_and_bad_file_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("disk-full.toml"),
            format!("name = \"disk-full\"\ndescription = \"ours\"\n[[step]]\nid = \"d\"\ncheck = \"disk\"\nnext = [{{ verdict = \"v\" }}]\n{}", verdicts(&["v"])),
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.toml"), "name = \"broken\"\n").unwrap();
        let (books, errors) = load_all(dir.path());
        let disk = books.iter().find(|b| b.name == "disk-full").unwrap();
        assert_eq!(disk.description, "ours");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("broken.toml"), "{errors:?}");
    }

    #[test]
    fn self_service_runbooks_hold_only_viewer_checks_and_allowed_fixes() {
        use crate::policy::Policy;
        let book = |steps: &str| {
            let text = format!("{HEAD}self_service = true\n{steps}{}", verdicts(&["v"]));
            parse("s.toml", &text).unwrap()
        };
        let check = |c: &str, args: &str| {
            format!("\n[[step]]\nid = \"a\"\ncheck = \"{c}\"\nargs = [{args}]\nnext = [{{ verdict = \"v\" }}]\n")
        };
        let fix = "\n[[step]]\nid = \"f\"\nfix = \"flush-dns\"\nnext = [{ verdict = \"v\" }]\n";
        let none = Policy::default();
        let allowed = Policy {
            self_service_fixes: vec!["flush-dns".into()],
            ..Policy::default()
        };
        assert_eq!(
            self_service_error(&book(&check("disk", "\"/\"")), &none),
            None
        );
        let err = self_service_error(&book(fix), &none).unwrap();
        assert!(
            err.starts_with(
                "s.toml:5: self-service runbook `x`: step `f`: the fix `flush-dns` is not allowed"
            ),
            "{err}"
        );
        assert_eq!(self_service_error(&book(fix), &allowed), None);
        // Allowed for self-service but not by [policy] fixes: still refused.
        let cut = Policy {
            fixes: vec![],
            ..allowed.clone()
        };
        assert!(self_service_error(&book(fix), &cut).is_some());
        let err = self_service_error(&book(&check("du", "\"/\"")), &allowed).unwrap();
        assert!(err.contains("needs a technician"), "{err}");
        let err = self_service_error(
            &book(&check("http", "\"http://h/\", \"--contains\", \"x\"")),
            &allowed,
        )
        .unwrap();
        assert!(err.contains("needs a technician"), "{err}");
        assert_eq!(allowed.self_service().fixes, ["flush-dns"]);
        assert!(!allowed.self_service().scripts);
    }

    #[test]
    fn finds_placeholders() {
        assert_eq!(placeholders("{a}-x-{b}"), ["a", "b"]);
        assert!(placeholders("plain").is_empty());
    }
}
