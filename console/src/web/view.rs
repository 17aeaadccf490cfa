//! What the machine, job and ticket pages show of the wire's data: one
//! [`Item`] per result, verdict, bulk item or ticket entry.
//!
//! Why one shape: the same item is rendered twice — by the templates when
//! a page is served, and by `app.js` when it arrives later as a server-sent
//! event (serialized as JSON) — so both render the same fields, and the
//! reading of the wire (what a status means, which facts a line shows) is
//! written once, here, in Rust, with tests. Every string is one line with
//! its control characters made visible ([`super::text`]); the templates
//! escape it for HTML, the script sets it as `textContent`.

use super::text;
use firstline_proto::action::{BulkItem, ItemOutcome};
use firstline_proto::runbook::Verdict;
use firstline_proto::{CheckResult, Message};
use serde::Serialize;

/// One thing to show: a line with a status word (text and colour), detail
/// lines, and for verdicts and bulk summaries their own parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Item {
    /// `progress`, `result`, `verdict`, `bulk_started`, `bulk_item`,
    /// `queued`, `summary`, `done`, `error` (jobs); a ticket entry's kind.
    pub kind: String,
    /// The machine it is about, when several may be (bulk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `ok`, `warn`, `crit`, `unknown`, an outcome (`refused`, `offline`,
    /// `queued`, `failed`) or a verdict (`resolved`, `user-action`,
    /// `escalate`): shown as a word and a colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub head: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictView>,
    /// A bulk action's summary: one row per outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<SummaryRow>,
    /// `bulk_started`: how many machines were selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<u64>,
}

impl Item {
    fn new(kind: &str, head: String) -> Item {
        Item {
            kind: kind.into(),
            head,
            ..Item::default()
        }
    }

    /// The status word, or an empty string.
    #[cfg(test)]
    pub fn status_word(&self) -> &str {
        self.status.as_deref().unwrap_or("")
    }
}

/// A runbook's verdict: the leaf it reached and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictView {
    pub runbook: String,
    /// `resolved`, `user-action` or `escalate`.
    pub kind: String,
    pub cause: String,
    pub team: String,
    pub message: String,
    pub user_message: String,
    pub kb: String,
    /// Whether `kb` is an article id, linked to `/kb/ID` (`super::kb`).
    pub kb_link: bool,
    pub dry_run: bool,
    pub steps: Vec<StepView>,
}

/// One step a runbook took (or skipped).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub id: String,
    /// `check dns 192.0.2.1`.
    pub action: String,
    /// Its result's status, or `skipped`.
    pub status: String,
    pub text: String,
}

/// One outcome of a bulk action: how many machines, which.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub outcome: String,
    pub count: usize,
    pub machines: String,
}

/// A check's or fix's result: `disk /var: 45% used`, its facts below.
pub fn result(r: &CheckResult) -> Item {
    let mut item = Item::new(
        "result",
        text(&format!("{} {}: {}", r.check, r.target, r.summary)),
    );
    item.status = Some(r.status.as_str().into());
    let facts: Vec<String> = r
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={}", number(*v)))
        .chain(r.fields.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    if !facts.is_empty() {
        item.lines.push(text(&facts.join(", ")));
    }
    item.lines
        .extend(r.changed.iter().map(|c| text(&format!("changed: {c}"))));
    if !r.at.is_empty() {
        item.lines
            .push(text(&format!("at {} · {} ms", r.at, r.duration_ms)));
    }
    item
}

/// A runbook's verdict, with every step as evidence.
pub fn verdict(v: &Verdict) -> Item {
    let mut item = Item::new(
        "verdict",
        text(&format!(
            "{}: {} ({})",
            v.runbook,
            v.verdict.as_str(),
            v.cause
        )),
    );
    item.status = Some(v.verdict.as_str().into());
    let steps = v
        .steps
        .iter()
        .map(|s| {
            let action = text(format!("{} {}", s.action, s.args.join(" ")).trim_end());
            match (&s.result, &s.skipped) {
                (Some(r), _) => StepView {
                    id: text(&s.id),
                    action,
                    status: r.status.as_str().into(),
                    text: text(&r.summary),
                },
                (None, why) => StepView {
                    id: text(&s.id),
                    action,
                    status: "skipped".into(),
                    text: text(why.as_deref().unwrap_or("did not run")),
                },
            }
        })
        .collect();
    item.verdict = Some(VerdictView {
        runbook: text(&v.runbook),
        kind: v.verdict.as_str().into(),
        cause: text(&v.cause),
        team: text(&v.team),
        message: text(&v.message),
        user_message: text(&v.user_message),
        kb: text(v.kb.as_deref().unwrap_or("")),
        kb_link: v.kb.as_deref().is_some_and(firstline_proto::kb::valid_id),
        dry_run: v.dry_run,
        steps,
    });
    item
}

/// One machine of a bulk action as it ended.
pub fn bulk_item(b: &BulkItem) -> Item {
    let mut item = match (&b.verdict, &b.result) {
        (Some(v), _) => verdict(v),
        (None, Some(r)) => result(r),
        (None, None) => Item::default(),
    };
    item.kind = "bulk_item".into();
    item.agent = Some(text(&b.agent));
    item.status = Some(b.outcome.as_str().into());
    item.head = text(&format!("{}: {}", b.agent, b.summary));
    item
}

/// The summary of a bulk action's items (machine and outcome): one row
/// per outcome that occurred, in the order of [`ItemOutcome::ALL`].
pub fn summary(items: &[(String, ItemOutcome)], selected: u64) -> Item {
    let mut rows = Vec::new();
    for o in ItemOutcome::ALL {
        let machines: Vec<&str> = items
            .iter()
            .filter(|i| i.1 == o)
            .map(|i| i.0.as_str())
            .collect();
        if !machines.is_empty() {
            rows.push(SummaryRow {
                outcome: o.as_str().into(),
                count: machines.len(),
                machines: text(&machines.join(", ")),
            });
        }
    }
    let line: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.count, r.outcome))
        .collect();
    let mut item = Item::new(
        "summary",
        format!(
            "{selected} selected: {}",
            if line.is_empty() {
                "no machine answered".to_string()
            } else {
                line.join(", ")
            }
        ),
    );
    let all_ok = !items.is_empty()
        && items.len() as u64 == selected
        && items
            .iter()
            .all(|i| matches!(i.1, ItemOutcome::Ok | ItemOutcome::Queued));
    item.status = Some(if all_ok { "ok" } else { "warn" }.into());
    item.summary = rows;
    item
}

/// What a job shows of one answer of the relay; `None` for answers it
/// does not show.
pub fn answer(m: &Message) -> Option<Item> {
    Some(match m {
        Message::Progress { text: t } => Item::new("progress", text(t)),
        Message::Result { result: r } => result(r),
        Message::Verdict(v) => verdict(v),
        Message::BulkStarted {
            selected,
            max_in_flight,
        } => {
            let mut item = Item::new(
                "bulk_started",
                format!("{selected} machines selected, at most {max_in_flight} at a time"),
            );
            item.selected = Some(*selected);
            item
        }
        Message::BulkItem(b) => bulk_item(b),
        Message::Queued(q) => {
            let mut item = Item::new("queued", crate::queue::queued_line(q));
            item.agent = Some(text(&q.agent));
            item.status = Some("queued".into());
            item
        }
        _ => return None,
    })
}

/// The end of a job: `done`, or the error that ended it (one line).
pub fn end(error: Option<(&str, &str)>) -> Item {
    match error {
        None => {
            let mut item = Item::new("done", "finished".into());
            item.status = Some("done".into());
            item
        }
        Some((code, message)) => {
            let mut item = Item::new("error", text(&crate::client::one_line(message, None)));
            item.status = Some(
                match code {
                    "forbidden" | "refused" => "refused",
                    _ => "failed",
                }
                .into(),
            );
            item.lines.push(text(&format!("relay code: {code}")));
            item
        }
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::runbook::{StepRecord, VerdictKind};
    use firstline_proto::Status;

    fn disk(status: Status) -> CheckResult {
        let mut r =
            CheckResult::new("disk", "/var", status, "91% used\u{1b}[2J").metric("used_pct", 91.0);
        r.at = "2026-01-01T00:00:00Z".into();
        r
    }

    #[test]
    fn results_read_as_one_line_and_facts() {
        let item = result(&disk(Status::Crit));
        assert_eq!(item.status_word(), "crit");
        assert_eq!(item.head, "disk /var: 91% used\\u{1b}[2J");
        assert_eq!(item.lines[0], "used_pct=91");
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(json["kind"], "result");
        assert!(json.get("verdict").is_none());
    }

    #[test]
    fn verdicts_carry_cause_team_and_evidence() {
        let v = Verdict {
            runbook: "disk-full".into(),
            agent: "pc1".into(),
            verdict: VerdictKind::Escalate,
            cause: "still-full".into(),
            team: "desktop".into(),
            message: "still full".into(),
            user_message: String::new(),
            kb: None,
            params: vec![],
            dry_run: false,
            steps: vec![
                StepRecord {
                    id: "usage".into(),
                    action: "check disk".into(),
                    args: vec!["/".into()],
                    result: Some(disk(Status::Crit)),
                    skipped: None,
                },
                StepRecord {
                    id: "clean".into(),
                    action: "fix clean-temp".into(),
                    args: vec![],
                    result: None,
                    skipped: Some("dry run".into()),
                },
            ],
        };
        let item = verdict(&v);
        assert_eq!(item.status_word(), "escalate");
        let vv = item.verdict.unwrap();
        assert_eq!(
            (vv.cause.as_str(), vv.team.as_str()),
            ("still-full", "desktop")
        );
        assert_eq!(vv.steps[0].action, "check disk /");
        assert_eq!(vv.steps[0].status, "crit");
        assert_eq!(vv.steps[1].status, "skipped");
        assert_eq!(vv.steps[1].text, "dry run");
    }

    #[test]
    fn a_bulk_summary_counts_outcomes() {
        let item = |agent: &str, outcome| BulkItem {
            agent: agent.into(),
            outcome,
            summary: "x".into(),
            result: None,
            verdict: None,
            queued: None,
        };
        let (a, b, c) = (
            item("pc1", ItemOutcome::Ok),
            item("pc2", ItemOutcome::Offline),
            item("pc3", ItemOutcome::Ok),
        );
        let pairs: Vec<(String, ItemOutcome)> = [&a, &b, &c]
            .iter()
            .map(|i| (i.agent.clone(), i.outcome))
            .collect();
        let s = summary(&pairs, 3);
        assert_eq!(s.head, "3 selected: 2 ok, 1 offline");
        assert_eq!(s.status_word(), "warn");
        assert_eq!(s.summary[0].machines, "pc1, pc3");
        assert_eq!(summary(&pairs[..1], 1).status_word(), "ok");
        assert_eq!(summary(&[], 0).head, "0 selected: no machine answered");
        assert_eq!(bulk_item(&b).head, "pc2: x");
        assert_eq!(bulk_item(&b).status_word(), "offline");
    }

    #[test]
    fn errors_say_refused_or_failed() {
        let e = end(Some(("forbidden", "fix needs technician")));
        assert_eq!((e.kind.as_str(), e.status_word()), ("error", "refused"));
        assert_eq!(end(Some(("agent_offline", "x"))).status_word(), "failed");
        assert_eq!(end(None).kind, "done");
    }
}
