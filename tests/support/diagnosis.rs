//! The diagnosis matrix's machinery (`tests/matrix.rs` holds the faults):
//! a [`Scenario`] is a fault set up for real, a runbook, its parameters
//! and the cause the runbook must name; [`run`] runs each scenario twice
//! against the same fault — locally on the agent's machine and through the
//! relay — and keeps what came back; [`table`] renders the Markdown table
//! of `docs/DIAGNOSIS.md`, and [`sync_docs`] compares it with (or writes it
//! into) that file.

use crate::hub::Hub;
use crate::text;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

/// Scenarios that run `flush-dns` — which signals every dnsmasq of the
/// machine — or that rely on a DNS cache holding what it holds, take this
/// lock: one such scenario at a time.
static DNS_CACHES: Mutex<()> = Mutex::new(());

type Arm<'a> = Box<dyn Fn() + Sync + 'a>;
type Check<'a> = Box<dyn Fn(&Value) -> Result<(), String> + Sync + 'a>;

pub struct Scenario<'a> {
    pub name: String,
    pub runbook: &'static str,
    /// The cause the runbook must name.
    pub cause: &'static str,
    pub params: Vec<String>,
    /// Sets the fault up; called before each of the two runs (a fix of the
    /// first run may have repaired it).
    arm: Arm<'a>,
    /// More to hold of a verdict (evidence, what was changed).
    check: Option<Check<'a>>,
    dns_lock: bool,
}

impl<'a> Scenario<'a> {
    pub fn new(runbook: &'static str, name: &str, cause: &'static str, params: &[String]) -> Self {
        Scenario {
            name: name.to_string(),
            runbook,
            cause,
            params: params.to_vec(),
            arm: Box::new(|| {}),
            check: None,
            dns_lock: false,
        }
    }

    pub fn arm(mut self, f: impl Fn() + Sync + 'a) -> Self {
        self.arm = Box::new(f);
        self
    }

    pub fn check(mut self, f: impl Fn(&Value) -> Result<(), String> + Sync + 'a) -> Self {
        self.check = Some(Box::new(f));
        self
    }

    /// The scenario flushes DNS caches, or needs one left alone.
    pub fn dns_cache(mut self) -> Self {
        self.dns_lock = true;
        self
    }
}

/// One run of a scenario.
#[derive(Debug, Clone)]
pub struct Run {
    pub cause: String,
    /// resolved, user-action or escalate.
    pub verdict: String,
    /// The message for the technician.
    pub message: String,
    /// The `changed` lines of the fixes that ran, made comparable.
    pub fixed: Vec<String>,
    /// Why this run is not what the scenario expects.
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub runbook: String,
    pub expected: String,
    pub local: Run,
    pub relay: Run,
}

/// Run every scenario, locally then through the relay, on `hub`.
/// `masks` turn what differs from run to run in the `changed` lines (a
/// port, a folder) into a stable placeholder: `(text, placeholder)`.
pub fn run(hub: &Hub, scenarios: &[Scenario], masks: &[(String, String)]) -> Vec<Row> {
    scenarios
        .iter()
        .map(|s| {
            let _guard = s
                .dns_lock
                .then(|| DNS_CACHES.lock().unwrap_or_else(|e| e.into_inner()));
            (s.arm)();
            let local = judge(s, &hub.local(s.runbook, &s.params), masks);
            (s.arm)();
            let relay = judge(s, &hub.remote(s.runbook, &s.params), masks);
            Row {
                scenario: s.name.clone(),
                runbook: s.runbook.to_string(),
                expected: s.cause.to_string(),
                local,
                relay,
            }
        })
        .collect()
}

/// The verdict (the last JSON line) of a run, held against the scenario.
fn judge(s: &Scenario, out: &Output, masks: &[(String, String)]) -> Run {
    let verdict: Option<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("cause").is_some());
    let Some(v) = verdict else {
        return Run {
            cause: "(no verdict)".into(),
            verdict: "-".into(),
            message: String::new(),
            fixed: vec![],
            problem: Some(format!("no verdict line: {}", text(out))),
        };
    };
    let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    let mut fixed: Vec<String> = steps
        .iter()
        .filter(|st| st["action"].as_str().is_some_and(|a| a.starts_with("fix ")))
        .flat_map(|st| {
            st["result"]["changed"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.as_str().map(|c| mask(c, masks)))
        .collect();
    fixed.sort();
    let mut problems = Vec::new();
    if field("cause") != s.cause {
        problems.push(format!(
            "cause `{}`, expected `{}`: {}",
            field("cause"),
            s.cause,
            field("message")
        ));
    }
    let resolved = field("verdict") == "resolved";
    if out.status.code() != Some(if resolved { 0 } else { 1 }) {
        problems.push(format!(
            "exit status {:?} for a {} verdict",
            out.status.code(),
            field("verdict")
        ));
    }
    // The machine's journal is never vacuumed by a test: the policy leaves
    // that fix out, so the step must be there as refused.
    for st in &steps {
        if st["action"] == "fix vacuum-journal"
            && !st["skipped"]
                .as_str()
                .is_some_and(|w| w.contains("refused"))
        {
            problems.push(format!("vacuum-journal was not refused: {st}"));
        }
    }
    // A placeholder the runbook could not fill shows as `?`.
    if field("message").contains('?') || field("user_message").contains('?') {
        problems.push(format!(
            "a message has an unfilled placeholder: {}",
            field("message")
        ));
    }
    if let Some(check) = &s.check {
        if let Err(e) = check(&v) {
            problems.push(e);
        }
    }
    let steps_seen: Vec<String> = steps
        .iter()
        .map(|st| {
            let id = st["id"].as_str().unwrap_or("?");
            match st["result"]["summary"].as_str() {
                Some(sum) => format!("{id}: {sum}"),
                None => format!("{id}: skipped: {}", st["skipped"].as_str().unwrap_or("")),
            }
        })
        .collect();
    Run {
        cause: field("cause"),
        verdict: field("verdict"),
        message: field("message"),
        fixed,
        problem: (!problems.is_empty()).then(|| {
            format!(
                "{} (steps: {})",
                problems.join("; "),
                steps_seen.join(" | ")
            )
        }),
    }
}

/// `text` with the masks applied, and the pids a flush signalled left out
/// (they are whatever dnsmasq processes the machine runs at that moment).
pub fn mask(text: &str, masks: &[(String, String)]) -> String {
    let mut out = masks.iter().fold(text.to_string(), |acc, (from, to)| {
        acc.replace(from.as_str(), to)
    });
    if let Some(start) = out.find("pid [") {
        if let Some(len) = out[start..].find(']') {
            out.replace_range(start..start + len + 1, "pid […]");
        }
    }
    out
}

/// What each run said, one line each (for the test's output).
pub fn transcript(rows: &[Row]) -> String {
    rows.iter()
        .flat_map(|r| {
            [("local", &r.local), ("relay", &r.relay)].map(|(how, run)| {
                format!(
                    "{} / {} ({how}): {} {}: {}\n",
                    r.runbook, r.scenario, run.verdict, run.cause, run.message
                )
            })
        })
        .collect()
}

/// Every problem of the rows, one line each.
pub fn problems(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| {
            [("local", &r.local), ("through the relay", &r.relay)]
                .into_iter()
                .filter_map(move |(how, run)| {
                    run.problem
                        .as_ref()
                        .map(|p| format!("{} / {} ({how}): {p}", r.runbook, r.scenario))
                })
        })
        .collect()
}

/// The causes that `[verdict.CAUSE]` tables of the runbooks in `dir` can
/// reach and no row expects: `runbook cause` each.
pub fn uncovered(dir: &Path, rows: &[Row]) -> Vec<String> {
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.runbook.clone(), r.expected.clone()))
        .collect();
    let mut missing = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("runbooks folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for path in files {
        let book = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("runbook");
        for line in text.lines() {
            if let Some(cause) = line
                .trim()
                .strip_prefix("[verdict.")
                .and_then(|l| l.strip_suffix(']'))
            {
                if !covered.contains(&(book.clone(), cause.to_string())) {
                    missing.push(format!("{book} {cause}"));
                }
            }
        }
    }
    missing
}

/// The Markdown table: scenario → runbook → expected cause → verdict →
/// what was fixed → local ✓ → through the relay ✓, and the accuracy.
pub fn table(rows: &[Row]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mark = |expected: &str, run: &Run| match &run.problem {
        None => "✓".to_string(),
        Some(_) if run.cause == expected => "✗ (see the test)".to_string(),
        Some(_) => format!("✗ `{}`", cell(&run.cause)),
    };
    let mut out = String::from(
        "| scenario (the fault, made for real) | runbook | expected cause | verdict | what was fixed | local | through the relay |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let verdict = if r.local.verdict == r.relay.verdict {
            r.local.verdict.clone()
        } else {
            format!("{} / {}", r.local.verdict, r.relay.verdict)
        };
        let fixed = if r.local.fixed.is_empty() {
            "—".to_string()
        } else {
            r.local
                .fixed
                .iter()
                .map(|f| format!("`{}`", cell(f)))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        out.push_str(&format!(
            "| {} | `{}` | `{}` | {} | {} | {} | {} |\n",
            cell(&r.scenario),
            r.runbook,
            r.expected,
            verdict,
            fixed,
            mark(&r.expected, &r.local),
            mark(&r.expected, &r.relay),
        ));
    }
    let runs = rows.len() * 2;
    let right = rows
        .iter()
        .flat_map(|r| [&r.local, &r.relay])
        .filter(|run| run.problem.is_none())
        .count();
    out.push_str(&format!(
        "\n{} scenarios, {runs} runs: diagnosis accuracy {} % ({right}/{runs}).\n",
        rows.len(),
        (right * 100).checked_div(runs).unwrap_or(0)
    ));
    out
}

pub const BEGIN: &str = "<!-- diagnosis-matrix:begin — generated by tests/matrix.rs; FIRSTLINE_UPDATE_DOCS=1 rewrites it -->";
pub const END: &str = "<!-- diagnosis-matrix:end -->";

/// Compare `table` with the part of `doc` between [`BEGIN`] and [`END`];
/// with `update`, write it there instead.
pub fn sync_docs(doc: &Path, table: &str, update: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "{} lacks the markers {BEGIN} … {END}",
            doc.display()
        ));
    };
    let start = b + BEGIN.len();
    let current = text[start..e].trim();
    if current == table.trim() {
        return Ok(());
    }
    if update {
        let new = format!("{}\n{}\n{}", &text[..start], table.trim(), &text[e..]);
        return std::fs::write(doc, new).map_err(|e| format!("{}: {e}", doc.display()));
    }
    let differ: Vec<String> = table
        .trim()
        .lines()
        .filter(|l| !current.lines().any(|c| c == *l))
        .map(|l| format!("  + {l}"))
        .chain(
            current
                .lines()
                .filter(|c| !table.lines().any(|l| l == *c))
                .map(|c| format!("  - {c}")),
        )
        .collect();
    Err(format!(
        "the table in {} is not the one the matrix produced (run with FIRSTLINE_UPDATE_DOCS=1 to write it):\n{}",
        doc.display(),
        differ.join("\n")
    ))
}
