//! Runbooks: the script an L1 technician follows, as data.
//!
//! A runbook is a TOML file: a name, a description, parameters (with
//! defaults), and ordered `[[step]]`s, each a check or a fix with arguments
//! (`{param}` placeholders), an optional `when` condition on earlier
//! results, and what an ok or failed result means (`on_ok` / `on_fail`:
//! `continue`, `resolve` or `escalate`). Four ship inside the agent
//! (`no-internet`, `cant-print`, `disk-full`, `slow-dns`); admins add more in
//! `runbooks_dir`. A runbook that does not make sense is rejected at load
//! time with its file, line and reason. Running one: [`engine`].

pub mod condition;
pub mod engine;

use condition::Condition;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
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
pub const BUILTIN_VARS: &[&str] = &["default_gateway"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    description: String,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    #[serde(rename = "step")]
    steps: Vec<StepSpec>,
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
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    fix: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    on_ok: Outcome,
    #[serde(default)]
    on_fail: Outcome,
    /// Said in the verdict when this step decides it.
    #[serde(default)]
    message: Option<String>,
}

/// What a step's result means for the runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Continue,
    Resolve,
    Escalate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Check(String),
    Fix(String),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub args: Vec<String>,
    pub when: Option<Condition>,
    pub on_ok: Outcome,
    pub on_fail: Outcome,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub params: BTreeMap<String, Param>,
    pub steps: Vec<Step>,
    /// `shipped` or the file it came from.
    pub source: String,
}

/// Parse and validate one runbook; errors read `FILE:LINE:COL: reason`.
pub fn parse(file: &str, text: &str) -> Result<Runbook, String> {
    let f: File = firstline_net::config::parse(file, text).map_err(|e| e.to_string())?;
    let at_step =
        |i: usize, msg: String| format!("{file}:{}: step {}: {msg}", step_line(text, i), i + 1);
    if !firstline_net::identity::valid_name(&f.name) {
        return Err(format!(
            "{file}: name `{}`: use letters, digits, `.`, `_` or `-`",
            f.name
        ));
    }
    if f.steps.is_empty() {
        return Err(format!("{file}: a runbook needs at least one [[step]]"));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut steps = Vec::new();
    for (i, s) in f.steps.into_iter().enumerate() {
        let id = s.id.clone().unwrap_or_else(|| format!("step{}", i + 1));
        let action = match (s.check, s.fix) {
            (Some(c), None) if crate::checks::NAMES.contains(&c.as_str()) => Action::Check(c),
            (Some(c), None) => return Err(at_step(i, format!("unknown check `{c}`"))),
            (None, Some(f)) if crate::fixes::BUILTIN.contains(&f.as_str()) || f == "script" => {
                Action::Fix(f)
            }
            (None, Some(f)) => return Err(at_step(i, format!("unknown fix `{f}`"))),
            _ => return Err(at_step(i, "needs exactly one of `check` or `fix`".into())),
        };
        if action == Action::Fix("script".into()) {
            // The script a runbook runs is the runbook author's choice, never
            // the requester's: a parameter could name any admin script.
            match s.args.first() {
                Some(name) if placeholders(name).is_empty() => {}
                Some(_) => return Err(at_step(
                    i,
                    "a script step names its script literally: no `{parameter}` in the script name"
                        .into(),
                )),
                None => {
                    return Err(at_step(
                        i,
                        "a script step needs the script's name in `args`".into(),
                    ))
                }
            }
        }
        for var in s.args.iter().flat_map(|a| placeholders(a)) {
            if !f.params.contains_key(&var) && !BUILTIN_VARS.contains(&var.as_str()) {
                return Err(at_step(
                    i,
                    format!("`{{{var}}}` is not a parameter of this runbook"),
                ));
            }
        }
        let when = match &s.when {
            Some(w) => {
                let c = Condition::parse(w).map_err(|e| at_step(i, format!("when: {e}")))?;
                if let Some(unknown) = c.steps().find(|st| !seen.contains(*st)) {
                    return Err(at_step(
                        i,
                        format!("when: `{unknown}` is not an earlier step"),
                    ));
                }
                Some(c)
            }
            None => None,
        };
        if !seen.insert(id.clone()) {
            return Err(at_step(i, format!("duplicate step id `{id}`")));
        }
        steps.push(Step {
            id,
            action,
            args: s.args,
            when,
            on_ok: s.on_ok,
            on_fail: s.on_fail,
            message: s.message,
        });
    }
    Ok(Runbook {
        name: f.name,
        description: f.description,
        params: f.params,
        steps,
        source: file.to_string(),
    })
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
    fn invalid_runbooks_name_file_line_and_reason() {
        let cases = [
            ("name = \"x\"\ndescription = \"d\"\n\n[[step]]\ncheck = \"disk\"\n\n[[step]]\nfix = \"format-c\"\n", ":7: step 2: unknown fix `format-c`"),
            ("name = \"x\"\ndescription = \"d\"\n[[step]]\ncheck = \"disk\"\nwhen = \"later.status != ok\"\n", ":3: step 1: when: `later` is not an earlier step"),
            ("name = \"x\"\ndescription = \"d\"\n[[step]]\ncheck = \"disk\"\nargs = [\"{path}\"]\n", "`{path}` is not a parameter"),
            ("name = \"x\"\ndescription = \"d\"\n[[step]]\ncheck = \"disk\"\nfix = \"clean-temp\"\n", "exactly one of"),
            ("name = \"x\"\ndescription = \"d\"\n[[step]]\ncheck = \"disk\"\nretries = 3\n", "x.toml:5:"),
            ("name = \"x\"\ndescription = \"d\"\n[params]\nscript = {}\n[[step]]\nfix = \"script\"\nargs = [\"{script}\"]\n", ":5: step 1: a script step names its script literally"),
        ];
        for (text, want) in cases {
            let err = parse("x.toml", text).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
            assert!(err.starts_with("x.toml"), "{err}");
        }
    }

    #[test]
    fn admin_file_overrides_and_bad_file_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("disk-full.toml"),
            "name = \"disk-full\"\ndescription = \"ours\"\n[[step]]\ncheck = \"disk\"\n",
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
    fn finds_placeholders() {
        assert_eq!(placeholders("{a}-x-{b}"), ["a", "b"]);
        assert!(placeholders("plain").is_empty());
    }
}
