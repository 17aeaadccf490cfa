//! Live notices for `firstline watch`: what a ticket change or an agent's
//! alert says in one line.

use crate::ticket::Change;
use firstline_proto::{AgentEvent, Notice};

/// The notice of a ticket change.
pub fn of_change(c: &Change) -> Notice {
    Notice {
        at: c.entry.at.clone(),
        kind: format!("ticket_{}", c.entry.kind),
        agent: c.ticket.agent.clone(),
        ticket: Some(c.ticket.id),
        text: change_text(c),
    }
}

/// The notice of an agent's incident event (or configuration problem).
pub fn of_alert(agent: &str, ev: &AgentEvent) -> Notice {
    Notice {
        at: ev.result.at.clone(),
        kind: format!("alert_{}", ev.kind.as_str()),
        agent: Some(agent.to_string()),
        ticket: None,
        text: format!(
            "{agent}: {} {} {}: {} (monitor {})",
            ev.result.status.label(),
            ev.result.check,
            ev.result.target,
            ev.result.summary,
            ev.monitor
        ),
    }
}

/// What a ticket notice says, from the entry the change added (not the
/// ticket's title, which an ok result would contradict): `#12 opened: …`,
/// `#12 OK disk /: 40% used`, `#12 status open → resolved: …`, `#12
/// comment by tina: …`, `#12 assigned to bob`, `#12 runbook …: verdict`.
fn change_text(c: &Change) -> String {
    use firstline_proto::runbook::Verdict;
    use firstline_proto::CheckResult;
    let id = c.ticket.id;
    let e = &c.entry;
    let text = e.body.as_str().map(str::to_string);
    let result = || serde_json::from_value::<CheckResult>(e.body.clone()).ok();
    match e.kind.as_str() {
        "opened" => format!("#{id} opened: {}", c.ticket.title),
        "result" => match result() {
            Some(r) => format!(
                "#{id} {} {} {}: {}",
                r.status.label(),
                r.check,
                r.target,
                r.summary
            ),
            None => format!("#{id} result: {}", text.unwrap_or_default()),
        },
        "comment" => format!(
            "#{id} comment by {}: {}",
            e.author,
            text.unwrap_or_default()
        ),
        "status" => format!("#{id} status {}", text.unwrap_or_default()),
        "diagnostics" => format!("#{id} diagnostic bundle attached"),
        "verdict" => match serde_json::from_value::<Verdict>(e.body.clone()) {
            Ok(v) => format!("#{id} runbook {}: {} ({})", v.runbook, v.verdict, v.cause),
            Err(_) => format!("#{id} runbook verdict"),
        },
        kind => match text {
            Some(t) => format!("#{id} {t}"),
            None => format!("#{id} {kind}"),
        },
    }
}
