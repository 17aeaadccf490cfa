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
//!
//! A result that says the check could not run because of its own
//! configuration (field `error = "config"`: bad arguments, a check this
//! agent does not have, a plugin its policy refuses) is no incident: it is
//! recorded as the monitor's status and logged, and never opens, updates or
//! resolves a ticket, whatever the event's kind.
//!
//! Each entry an event makes keeps the time the agent observed the result
//! (`observed_at`, from the result's `at`) next to the time it arrived, so a
//! timeline delivered late after an outage still tells when things happened.

use crate::store::now;
use crate::tickets::{Change, NewTicket, TicketStore};
use anyhow::Result;
use firstline_proto::event::priority_of;
use firstline_proto::text::{printable, truncate};
use firstline_proto::{limits, AgentEvent, CheckResult, EventKind, Status};

/// The value of a result's `error` field that marks a configuration problem.
pub const CONFIG_ERROR: &str = "config";

/// Whether a result reports the monitor's own configuration, not the
/// machine: field `error = "config"`, or — from agents older than that
/// field — an `unknown` result whose summary is a command-line usage error.
pub fn is_config_problem(r: &CheckResult) -> bool {
    if r.fields.get("error").map(String::as_str) == Some(CONFIG_ERROR) {
        return true;
    }
    r.status == Status::Unknown
        && (r.summary.starts_with("error: ") || r.summary.starts_with("unknown check `"))
        && (r.summary.contains("\nUsage: ") || r.summary.contains("this agent offers"))
}

/// When the agent observed a result: its RFC 3339 `at`, as Unix seconds.
pub fn observed_secs(at: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(at.trim()).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A ticket title: one line (control characters and line breaks become
/// spaces), at most [`limits::TITLE`] bytes.
pub fn title_of(agent: &str, r: &CheckResult) -> String {
    let summary = r.summary.lines().next().unwrap_or_default();
    let title = format!("{} {} on {agent}: {summary}", r.check, r.status);
    let line: String = title
        .chars()
        .map(|c| {
            if firstline_proto::text::is_unsafe(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    truncate(line.trim(), limits::TITLE).into_owned()
}

/// What ingesting a batch did.
pub struct Ingested {
    /// Highest sequence number now stored for the agent (the ack).
    pub upto: u64,
    /// Events applied now (not duplicates).
    pub applied: usize,
    pub changes: Vec<Change>,
    /// Incident events among them (and configuration problems), for live
    /// notices.
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
        // Incident events, and an agent's report that a monitor cannot
        // run (sent once per agent start), go to `watch`.
        let config = is_config_problem(&ev.result);
        let reported = ev.result.fields.get("error").map(String::as_str) == Some(CONFIG_ERROR);
        if (ev.kind != EventKind::Result && !config) || reported {
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
    if is_config_problem(r) {
        let summary = r.summary.lines().next().unwrap_or_default();
        let summary = format!("configuration problem: {summary}");
        db.record_monitor_status(agent, &ev.monitor, r.status.as_str(), &summary)?;
        tracing::warn!(
            agent = %printable(agent),
            monitor = %printable(&ev.monitor),
            "monitor cannot run (no ticket: fix agent.toml): {}",
            printable(&summary)
        );
        return Ok(Vec::new());
    }
    db.record_monitor_status(agent, &ev.monitor, r.status.as_str(), &r.summary)?;
    let observed = observed_secs(&r.at);
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
                push(db.append_observed(id, "result", agent, &result_json, observed)?);
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
                    let note = "reopened: the problem is back";
                    push(db.set_status_observed(id, "open", agent, note, observed)?);
                    id
                }
                (None, None) => {
                    let title = title_of(agent, r);
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
                    let change = db.create_observed(&new, observed)?;
                    let id = change.ticket.id;
                    push(Some(change));
                    id
                }
            };
            if open.is_some() || reopen.is_some() {
                db.set_priority(id, priority_of(r.status))?;
                push(db.append_observed(id, "result", agent, &result_json, observed)?);
            }
            if let Some(d) = &ev.diagnostics {
                let bundle = serde_json::to_string(d)?;
                push(db.append_observed(id, "diagnostics", agent, &bundle, observed)?);
            }
        }
        EventKind::IncidentResolved => {
            if let Some(id) = open {
                push(db.append_observed(id, "result", agent, &result_json, observed)?);
                let note = format!("recovered: {}", r.summary);
                push(db.set_status_observed(id, "resolved", agent, &note, observed)?);
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("relay.db")).unwrap();
        s.with_tx(|tx| {
            tx.execute(
                "INSERT INTO agents (name, enrolled_at) VALUES ('pc1', 0)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        (dir, s)
    }

    fn event(seq: u64, kind: EventKind, r: CheckResult) -> AgentEvent {
        AgentEvent {
            seq,
            monitor: "disk /".into(),
            kind,
            in_incident: kind != EventKind::IncidentResolved && kind != EventKind::Result,
            result: r,
            diagnostics: None,
        }
    }

    fn result(status: Status, summary: &str, at: &str) -> CheckResult {
        let mut r = CheckResult::new("disk", "/", status, summary);
        r.at = at.into();
        r
    }

    fn ingest_all(s: &Store, events: &[AgentEvent]) -> Ingested {
        s.with_tx(|tx| ingest(&**tx, "pc1", events, 3600)).unwrap()
    }

    #[test]
    fn a_configuration_problem_opens_no_ticket_whatever_the_kind() {
        let (_d, s) = store();
        let bad = result(
            Status::Unknown,
            "configuration problem: --warn (95) must not be above --crit (90)",
            "2026-01-01T00:00:00.000Z",
        )
        .field("error", CONFIG_ERROR);
        // From an agent before the field: clap's multi-line usage error.
        let old = result(
            Status::Unknown,
            "error: unexpected argument '--wrn' found\n\n  tip: a similar argument exists: '--warn'\n\nUsage: disk [OPTIONS] [PATH]\n\nFor more information, try '--help'.",
            "2026-01-01T00:00:01.000Z",
        );
        let out = ingest_all(
            &s,
            &[
                event(1, EventKind::Result, bad.clone()),
                event(2, EventKind::IncidentOpened, bad),
                event(3, EventKind::IncidentOpened, old.clone()),
                event(4, EventKind::Result, old),
            ],
        );
        assert_eq!(out.upto, 4, "acknowledged all the same");
        assert!(out.changes.is_empty());
        assert!(s
            .read(|db| db.list(&Default::default()))
            .unwrap()
            .is_empty());
        // Reported to `watch` once per report, not per old-style result.
        assert_eq!(out.alerts.len(), 2);
        let (status, summary): (String, String) = s
            .read(|db| {
                Ok(db.query_row(
                    "SELECT status, summary FROM monitor_status WHERE agent = 'pc1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!(status, "unknown");
        assert!(summary.starts_with("configuration problem: "), "{summary}");
        assert!(!summary.contains('\n'), "{summary}");
    }

    #[test]
    fn titles_are_one_line() {
        let mut r = result(Status::Crit, "line one\r\nline two", "");
        r.check = "di\nsk\u{1b}[2J".into();
        let title = title_of("pc1", &r);
        assert!(
            !title.chars().any(firstline_proto::text::is_unsafe),
            "{title:?}"
        );
        assert!(title.ends_with(": line one"), "{title:?}");
        r.summary = "x".repeat(1000);
        assert!(title_of("pc1", &r).len() <= limits::TITLE + '…'.len_utf8());
    }

    #[test]
    fn entries_keep_when_the_agent_observed_them() {
        let (_d, s) = store();
        let mut opened = event(
            1,
            EventKind::IncidentOpened,
            result(Status::Crit, "95% used", "2026-01-01T10:00:00.250Z"),
        );
        opened.diagnostics = Some(Default::default());
        let out = ingest_all(
            &s,
            &[
                opened,
                event(
                    2,
                    EventKind::IncidentResolved,
                    result(Status::Ok, "40% used", "2026-01-01T10:05:00Z"),
                ),
            ],
        );
        let id = out.changes[0].ticket.id;
        let entries = s.read(|db| db.entries(id)).unwrap();
        let seen: Vec<(&str, Option<&str>)> = entries
            .iter()
            .map(|e| (e.kind.as_str(), e.observed_at.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("opened", Some("2026-01-01T10:00:00Z")),
                ("diagnostics", Some("2026-01-01T10:00:00Z")),
                ("result", Some("2026-01-01T10:05:00Z")),
                ("status", Some("2026-01-01T10:05:00Z")),
            ]
        );
        assert!(entries[0].body.is_object() && entries[1].body.is_object());
        assert!(entries[3].body.is_string());
        // Arrival is now, not then.
        assert!(entries[0].at.as_str() > "2026-01-02");
        assert_eq!(observed_secs("not a time"), None);
    }
}
