//! The alert → ticket engine: ingest an agent's monitoring events,
//! idempotently, and keep one ticket per (agent, monitor) incident.
//!
//! Events arrive at least once and in sequence order; each is applied in
//! the same transaction that advances the agent's `last_seq`, so a replay
//! after a crash or a lost acknowledgement changes nothing.
//!
//! * `incident_opened` → a new ticket (title from the result, priority from
//!   the severity, source `alert`, the diagnostic bundle attached), or the
//!   same ticket reopened when it was resolved less than `reopen_window`
//!   ago, or appended to when it is still open;
//! * results and `incident_updated` inside an incident → appended (an update
//!   also changes the priority);
//! * `incident_resolved` → appended and resolved with a comment.

use crate::store::now;
use crate::tickets::{Change, NewTicket, TicketStore};
use anyhow::Result;
use firstline_proto::event::priority_of;
use firstline_proto::text::truncate;
use firstline_proto::{limits, AgentEvent, EventKind};

/// What ingesting a batch did.
pub struct Ingested {
    /// Highest sequence number now stored for the agent (the ack).
    pub upto: u64,
    /// Events applied now (not duplicates).
    pub applied: usize,
    pub changes: Vec<Change>,
    /// Incident events among them, for live notices.
    pub alerts: Vec<AgentEvent>,
}

pub fn ingest(
    db: &dyn TicketStore,
    agent: &str,
    events: &[AgentEvent],
    reopen_window_secs: i64,
) -> Result<Ingested> {
    let mut last = db.last_seq(agent)?;
    let mut sorted: Vec<&AgentEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut out = Ingested {
        upto: 0,
        applied: 0,
        changes: Vec::new(),
        alerts: Vec::new(),
    };
    for ev in sorted {
        if ev.seq as i64 <= last {
            continue;
        }
        out.changes
            .extend(apply(db, agent, ev, reopen_window_secs)?);
        if ev.kind != EventKind::Result {
            out.alerts.push(ev.clone());
        }
        out.applied += 1;
        last = ev.seq as i64;
    }
    db.set_last_seq(agent, last)?;
    out.upto = last as u64;
    Ok(out)
}

fn apply(db: &dyn TicketStore, agent: &str, ev: &AgentEvent, window: i64) -> Result<Vec<Change>> {
    let r = &ev.result;
    db.record_monitor_status(agent, &ev.monitor, r.status.as_str(), &r.summary)?;
    let latest = db.latest_for_monitor(agent, &ev.monitor)?;
    let open = latest
        .as_ref()
        .filter(|(t, _)| matches!(t.status.as_str(), "open" | "in_progress"))
        .map(|(t, _)| t.id);
    let result_json = serde_json::to_string(r)?;
    let mut changes = Vec::new();
    let mut push = |c: Option<Change>| changes.extend(c);
    match ev.kind {
        EventKind::Result => {
            if let (true, Some(id)) = (ev.in_incident, open) {
                push(db.append(id, "result", agent, &result_json)?);
            }
        }
        EventKind::IncidentOpened | EventKind::IncidentUpdated => {
            let reopen = latest
                .as_ref()
                .filter(|(t, resolved)| {
                    t.status == "resolved" && resolved.is_some_and(|at| now() - at <= window)
                })
                .map(|(t, _)| t.id);
            let id = match (open, reopen) {
                (Some(id), _) => id,
                (None, Some(id)) => {
                    push(db.set_status(id, "open", agent, "reopened: the problem is back")?);
                    id
                }
                (None, None) => {
                    let summary = r.summary.lines().next().unwrap_or_default();
                    let title = format!("{} {} on {agent}: {summary}", r.check, r.status);
                    let title = truncate(&title, limits::TITLE);
                    let new = NewTicket {
                        title: &title,
                        agent: Some(agent),
                        check: Some(&r.check),
                        monitor: Some(&ev.monitor),
                        priority: priority_of(r.status),
                        source: "alert",
                        author: agent,
                        body: Some(&result_json),
                    };
                    let change = db.create(&new)?;
                    let id = change.ticket.id;
                    push(Some(change));
                    id
                }
            };
            if open.is_some() || reopen.is_some() {
                db.set_priority(id, priority_of(r.status))?;
                push(db.append(id, "result", agent, &result_json)?);
            }
            if let Some(d) = &ev.diagnostics {
                push(db.append(id, "diagnostics", agent, &serde_json::to_string(d)?)?);
            }
        }
        EventKind::IncidentResolved => {
            if let Some(id) = open {
                push(db.append(id, "result", agent, &result_json)?);
                let note = format!("recovered: {}", r.summary);
                push(db.set_status(id, "resolved", agent, &note)?);
            }
        }
    }
    Ok(changes)
}
