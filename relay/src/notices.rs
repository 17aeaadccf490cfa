//! Live notices for `firstline watch`: what a ticket change or an agent's
//! alert says in one line.

use crate::ticket::Change;
use firstline_proto::{AgentEvent, Notice};
use tokio::sync::broadcast;

/// The notice kind of a central monitor set set or removed.
pub const MONITORS_CHANGED: &str = "monitors_changed";
/// The notice kind of an agent's tags changed.
pub const AGENT_TAGGED: &str = "agent_tagged";

/// The relay's live notices (its own and the other relays'): every one for
/// `firstline watch`, and those that can change an agent's central
/// monitors also on a channel of their own. A slow receiver of a
/// broadcast misses old messages; the central-monitor follower
/// (`crate::central::follow`) then has to push to every agent held here to
/// catch up — so it must not share its buffer with the ticket and alert
/// notices an alert storm makes by the thousand.
#[derive(Debug, Clone)]
pub struct Channel {
    all: broadcast::Sender<Notice>,
    monitors: broadcast::Sender<Notice>,
}

impl Channel {
    /// Each channel keeps `capacity` notices for a slow receiver.
    pub fn new(capacity: usize) -> Channel {
        Channel {
            all: broadcast::channel(capacity).0,
            monitors: broadcast::channel(capacity).0,
        }
    }

    /// Send to the receivers there are (none is fine).
    pub fn send(&self, notice: Notice) {
        if notice.kind == MONITORS_CHANGED || notice.kind == AGENT_TAGGED {
            let _ = self.monitors.send(notice.clone());
        }
        let _ = self.all.send(notice);
    }

    /// Every notice.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.all.subscribe()
    }

    /// Only the notices that can change an agent's central monitors.
    pub fn subscribe_monitors(&self) -> broadcast::Receiver<Notice> {
        self.monitors.subscribe()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: &str) -> Notice {
        Notice {
            at: "2026-12-06T00:00:00Z".into(),
            kind: kind.into(),
            agent: Some("pc1".into()),
            ticket: None,
            text: kind.into(),
        }
    }

    #[test]
    fn an_alert_storm_does_not_crowd_out_monitor_changes() {
        let channel = Channel::new(16);
        let mut monitors = channel.subscribe_monitors();
        let mut all = channel.subscribe();
        channel.send(notice(AGENT_TAGGED));
        for _ in 0..1000 {
            channel.send(notice("alert_incident_opened"));
            channel.send(notice("ticket_opened"));
        }
        channel.send(notice(MONITORS_CHANGED));
        // The watcher of everything fell behind, as a slow one may...
        assert!(matches!(
            all.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        // ...the central-monitor follower missed nothing, and got nothing else.
        let kinds: Vec<String> = std::iter::from_fn(|| monitors.try_recv().ok())
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds, [AGENT_TAGGED, MONITORS_CHANGED]);
    }
}
