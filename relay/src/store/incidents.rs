//! The alert → ticket engine: ingest an agent's monitoring events,
//! idempotently, and keep one ticket per (agent, monitor) incident.
//!
//! Events arrive at least once and in sequence order; each is applied in
//! the same transaction that advances the agent's `last_seq`, whose row is
//! locked first ([`Tx::lock_last_seq`]), so a replay after a crash or a
//! lost acknowledgement — or the same events delivered to two relays at
//! once — changes nothing.
//!
//! * `incident_opened` → a new ticket (title from the result, priority from
//!   the severity, source `alert`, the diagnostic bundle attached), or the
//!   same ticket reopened when it was resolved less than the reopen window
//!   ago (by the clock passed in: `now`), or appended to when it is still
//!   open;
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

use super::error::{Missing, StoreError, StoreResult};
use super::tickets;
use super::tx::Tx;
use crate::clock::parse_rfc3339;
use crate::ticket::{Change, NewTicket, Priority, Source, TicketStatus};
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

/// A ticket title: one line (control characters and line breaks become
/// spaces), at most [`limits::TITLE`] bytes.
pub fn title_of(agent: &str, r: &CheckResult) -> String {
    let summary = r.summary.lines().next().unwrap_or_default();
    one_line_title(&format!("{} {} on {agent}: {summary}", r.check, r.status))
}

/// `text` as a ticket title: control characters and line breaks become
/// spaces, trimmed, at most [`limits::TITLE`] bytes.
fn one_line_title(text: &str) -> String {
    let line: String = text
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
#[derive(Debug, Default)]
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

/// The largest step an agent's sequence may take from one event to the
/// next it delivers. Gaps are normal (a full outbox drops plain results;
/// an agent restarted after a power loss skips a reserve), but not of
/// millions: a sequence number far ahead of `last_seq` — 2^63 − 1, say —
/// would make the relay take every later event of that agent for a
/// duplicate and drop it. Such an event is refused, not trusted.
pub const MAX_SEQ_JUMP: u64 = 1_000_000;

/// Apply the events after the agent's `last_seq`, in sequence order.
///
/// An event whose sequence number jumps more than [`MAX_SEQ_JUMP`] past
/// the one before it (or past `last_seq`) is refused: the events before it
/// are applied and acknowledged, and when it comes first the batch is
/// refused with [`StoreError::Invalid`] — `last_seq` does not move.
pub fn ingest(
    tx: &mut dyn Tx,
    agent: &str,
    events: &[AgentEvent],
    reopen_window_secs: i64,
    now: i64,
) -> StoreResult<Ingested> {
    let mut last = tx
        .lock_last_seq(agent)?
        .ok_or_else(|| StoreError::NotFound(Missing::Agent(agent.into())))?;
    let mut sorted: Vec<&AgentEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut out = Ingested::default();
    for ev in sorted {
        let seq = i64::try_from(ev.seq).unwrap_or(i64::MAX);
        if seq <= last && ev.seq <= i64::MAX as u64 {
            continue;
        }
        if ev.seq.saturating_sub(last.max(0) as u64) > MAX_SEQ_JUMP {
            if out.applied > 0 {
                // The ones before it are acknowledged; it comes first in
                // the agent's next batch, and is refused then.
                break;
            }
            return Err(StoreError::Invalid(format!(
                "event sequence number {} jumps more than {MAX_SEQ_JUMP} past the last one \
                 stored for this agent ({last}): refused (remove the agent and enroll it \
                 again to start a fresh sequence)",
                ev.seq
            )));
        }
        let engine = Engine {
            agent,
            window: reopen_window_secs,
            now,
        };
        out.changes.extend(engine.apply(tx, ev)?);
        // Incident events, and an agent's report that a monitor cannot
        // run (sent once per agent start), go to `watch`.
        let config = is_config_problem(&ev.result);
        let reported = ev.result.fields.get("error").map(String::as_str) == Some(CONFIG_ERROR);
        if (ev.kind != EventKind::Result && !config) || reported {
            out.alerts.push(ev.clone());
        }
        out.applied += 1;
        last = seq;
    }
    tx.set_last_seq(agent, last)?;
    out.upto = last.max(0) as u64;
    Ok(out)
}

struct Engine<'a> {
    agent: &'a str,
    window: i64,
    now: i64,
}

impl Engine<'_> {
    fn apply(&self, tx: &mut dyn Tx, ev: &AgentEvent) -> StoreResult<Vec<Change>> {
        let (agent, now) = (self.agent, self.now);
        let r = &ev.result;
        if ev.kind == EventKind::HelpRequest {
            return help_request(tx, agent, ev, now);
        }
        if is_config_problem(r) {
            let summary = r.summary.lines().next().unwrap_or_default();
            let summary = format!("configuration problem: {summary}");
            tx.record_monitor_status(agent, &ev.monitor, r.status.as_str(), &summary, now)?;
            tracing::warn!(
                agent = %printable(agent),
                monitor = %printable(&ev.monitor),
                "monitor cannot run (no ticket: fix agent.toml): {}",
                printable(&summary)
            );
            return Ok(Vec::new());
        }
        tx.record_monitor_status(agent, &ev.monitor, r.status.as_str(), &r.summary, now)?;
        let observed = parse_rfc3339(&r.at);
        let latest = tx.latest_alert_ticket(agent, &ev.monitor)?;
        let open = latest
            .as_ref()
            .filter(|t| t.status.is_active())
            .map(|t| t.id);
        let result_json = serde_json::to_string(r)?;
        let mut changes = Vec::new();
        let append = |tx: &mut dyn Tx, id, kind, body: &str| {
            tickets::append(tx, id, kind, agent, body, observed, now)
        };
        match ev.kind {
            EventKind::Result => {
                if let (true, Some(id)) = (ev.in_incident, open) {
                    changes.extend(append(tx, id, "result", &result_json)?);
                }
            }
            EventKind::IncidentOpened | EventKind::IncidentUpdated => {
                let reopen = latest
                    .as_ref()
                    .filter(|t| {
                        t.status == TicketStatus::Resolved
                            && t.resolved_at.is_some_and(|at| now - at <= self.window)
                    })
                    .map(|t| t.id);
                let id = match (open, reopen) {
                    (Some(id), _) => id,
                    (None, Some(id)) => {
                        let note = "reopened: the problem is back";
                        changes.extend(tickets::set_status(
                            tx,
                            id,
                            TicketStatus::Open,
                            agent,
                            note,
                            observed,
                            now,
                        )?);
                        id
                    }
                    (None, None) => {
                        let new = NewTicket {
                            title: title_of(agent, r),
                            agent: Some(agent.into()),
                            check: Some(r.check.clone()),
                            monitor: Some(ev.monitor.clone()),
                            priority: Priority::of_status(r.status),
                            source: Source::Alert,
                            author: agent.into(),
                            body: Some(result_json.clone()),
                            requester: None,
                        };
                        let change = tickets::create(tx, &new, observed, now)?;
                        let id = change.ticket.id;
                        changes.push(change);
                        id
                    }
                };
                if open.is_some() || reopen.is_some() {
                    tx.update_priority(id, Priority::of_status(r.status))?;
                    changes.extend(append(tx, id, "result", &result_json)?);
                }
                if let Some(d) = &ev.diagnostics {
                    let bundle = serde_json::to_string(d)?;
                    changes.extend(append(tx, id, "diagnostics", &bundle)?);
                }
            }
            // Handled above, before any monitor status.
            EventKind::HelpRequest => {}
            EventKind::IncidentResolved => {
                if let Some(id) = open {
                    changes.extend(append(tx, id, "result", &result_json)?);
                    let note = format!("recovered: {}", r.summary);
                    changes.extend(tickets::set_status(
                        tx,
                        id,
                        TicketStatus::Resolved,
                        agent,
                        &note,
                        observed,
                        now,
                    )?);
                }
            }
        }
        Ok(changes)
    }
}

/// Whether `t` was opened by the local user `user` of `agent` with
/// `firstline-help ask`.
pub fn requested_by(t: &crate::ticket::Ticket, agent: &str, user: &str) -> bool {
    t.source == Source::User
        && t.agent.as_deref() == Some(agent)
        && t.requester.as_deref() == Some(user)
}

/// `help_request` → a new ticket of source `user`: titled from the text,
/// opened by `USER@AGENT` with the text, and — when the user had just run
/// a self-service runbook — its verdict with every step as the next entry
/// (the evidence). Each request is its own ticket.
fn help_request(
    tx: &mut dyn Tx,
    agent: &str,
    ev: &AgentEvent,
    now: i64,
) -> StoreResult<Vec<Change>> {
    let Some(help) = &ev.help else {
        tracing::warn!(agent = %printable(agent), "help_request without its request: ignored");
        return Ok(Vec::new());
    };
    let observed = parse_rfc3339(&ev.result.at);
    let first = help
        .text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("help");
    let author = format!("{}@{agent}", help.user);
    let new = NewTicket {
        title: one_line_title(first),
        agent: Some(agent.into()),
        check: None,
        monitor: None,
        priority: Priority::Normal,
        source: Source::User,
        author: author.clone(),
        body: Some(help.text.clone()),
        requester: Some(help.user.clone()),
    };
    let change = tickets::create(tx, &new, observed, now)?;
    let id = change.ticket.id;
    let mut changes = vec![change];
    if let Some(verdict) = &help.after {
        let body = serde_json::to_string(verdict)?;
        changes.extend(tickets::append(
            tx, id, "verdict", &author, &body, observed, now,
        )?);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_line() {
        let mut r = CheckResult::new("disk", "/", Status::Crit, "line one\r\nline two");
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
    fn configuration_problems_are_told_from_the_machines() {
        let bad = CheckResult::new("disk", "/", Status::Unknown, "--warn above --crit")
            .field("error", CONFIG_ERROR);
        assert!(is_config_problem(&bad));
        let old = CheckResult::new(
            "disk",
            "/",
            Status::Unknown,
            "error: unexpected argument '--wrn' found\n\nUsage: disk [OPTIONS] [PATH]",
        );
        assert!(is_config_problem(&old));
        let real = CheckResult::new("disk", "/", Status::Crit, "95% used");
        assert!(!is_config_problem(&real));
    }
}
