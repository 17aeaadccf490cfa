//! Support metrics (`firstline report`), written once on the storage
//! primitives: what a help desk is judged by — first-contact resolution,
//! response and resolution times, backlog, escalations — read from the
//! tickets' own timelines, so every relay and both backends tell the same
//! figures, and a scripted history gives known ones (the store suite).
//!
//! The window is the tickets **opened** in `[since, now]`, by the relay's
//! clock (`now` is passed in). Words used below:
//! * an **operator** is an author on record in `operators` (a technician,
//!   a viewer, an admin — revoked ones too): a human of the help desk.
//!   Entries by the ticket's agent are the machine's; any other author
//!   (the person at the machine through self-service) is neither;
//! * an **action** is a runbook's `verdict` entry (a runbook run, by a
//!   technician or through self-service) or a fix's `result` (a result
//!   that lists what it `changed`); plain check results, comments,
//!   assignments and priority changes are not actions;
//! * the **resolution** of a ticket that is resolved or closed now is its
//!   last move to `resolved` that no reopening (a move back to `open`)
//!   followed, or, when there is none, its move to `closed` (a ticket
//!   closed without being resolved).
//!
//! The figures:
//! * **opened by source**: every source that has tickets, by its name;
//! * **resolved**: tickets resolved or closed now;
//! * **first-contact resolution**: a resolved ticket that was never
//!   reopened, has no `escalate` verdict, and took at most one action
//!   before its resolution — it was fixed by the first runbook, fix or
//!   self-service session, or by the first person who looked at it. The
//!   rate is over the resolved tickets;
//! * **resolved with no human**: a resolved ticket with no entry by an
//!   operator up to its resolution — by the agent (a monitor that
//!   recovered: the resolution's author is the ticket's agent) or by
//!   someone else who is no operator (self-service); the share is over the
//!   resolved tickets;
//! * **time to first response**: opening → the first entry after the
//!   opening one that is an operator's (any kind) or an action (by anyone);
//!   a monitor's own results and recovery are no response, and a ticket
//!   without a response is left out;
//! * **time to resolution**: opening → resolution, over resolved tickets;
//! * both as median and 90th percentile by nearest rank (the value at rank
//!   ⌈p·n⌉ of the sorted times: a time that really occurred);
//! * **backlog**: every ticket open or in progress now, whenever opened, by
//!   age ([`firstline_proto::report::AGE_BUCKETS`]) and priority;
//! * **escalations**: the `escalate` verdicts on the tickets of the window,
//!   by cause and team.
//!
//! A check a technician runs into an alert ticket (`run --ticket`) is
//! written by the agent, as the monitor's results are: it counts as
//! neither response nor action (a fix, a runbook or a comment does).

use super::error::StoreResult;
use super::tx::{TimelineRow, Tx};
use crate::clock::rfc3339;
use crate::ticket::{Priority, Ticket, TicketFilter, TicketStatus};
use firstline_proto::report::{
    age_bucket, BacklogCount, Durations, EscalationCount, SourceCount, SupportReport, AGE_BUCKETS,
};
use std::collections::{BTreeMap, HashSet};

/// The report over the tickets opened in `[since, now]`.
pub fn report(tx: &mut dyn Tx, since: i64, now: i64) -> StoreResult<SupportReport> {
    let operators: HashSet<String> = tx.operators()?.into_iter().map(|o| o.name).collect();
    let tickets = tx.tickets(&TicketFilter {
        created_after: Some(since),
        created_before: Some(now),
        ..Default::default()
    })?;
    let mut timelines: BTreeMap<u64, Vec<TimelineRow>> = BTreeMap::new();
    for row in tx.timelines_since(since)? {
        timelines.entry(row.ticket).or_default().push(row);
    }
    let mut out = SupportReport {
        since: rfc3339(since),
        until: rfc3339(now),
        opened: tickets.len() as u64,
        ..Default::default()
    };
    let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut escalations: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut responses, mut resolutions) = (Vec::new(), Vec::new());
    for t in &tickets {
        *by_source.entry(t.source.to_string()).or_default() += 1;
        let timeline = timelines.get(&t.id).map(Vec::as_slice).unwrap_or_default();
        let facts = Facts::of(t, timeline, &operators);
        for e in facts.escalations {
            *escalations.entry(e).or_default() += 1;
        }
        if let Some(at) = facts.response_at {
            responses.push(at - t.created_at);
        }
        let Some(resolved) = facts.resolution else {
            continue;
        };
        out.resolved += 1;
        resolutions.push(resolved.at - t.created_at);
        if resolved.first_contact {
            out.first_contact += 1;
        }
        match resolved.no_human {
            Some(NoHuman::Monitor) => out.no_human_monitor += 1,
            Some(NoHuman::SelfService) => out.no_human_self_service += 1,
            None => {}
        }
    }
    out.no_human = out.no_human_monitor + out.no_human_self_service;
    out.by_source = by_source
        .into_iter()
        .map(|(source, count)| SourceCount { source, count })
        .collect();
    out.first_contact_rate = ratio(out.first_contact, out.resolved);
    out.no_human_share = ratio(out.no_human, out.resolved);
    out.first_response = durations(responses);
    out.resolution = durations(resolutions);
    let mut escalations: Vec<EscalationCount> = escalations
        .into_iter()
        .map(|((cause, team), count)| EscalationCount { cause, team, count })
        .collect();
    escalations.sort_by_key(|e| std::cmp::Reverse(e.count));
    out.escalations = escalations;
    let mut backlog: BTreeMap<(&str, Priority), u64> = BTreeMap::new();
    for status in [TicketStatus::Open, TicketStatus::InProgress] {
        let filter = TicketFilter {
            status: Some(status),
            ..Default::default()
        };
        for t in tx.tickets(&filter)? {
            *backlog
                .entry((age_bucket(now - t.created_at), t.priority))
                .or_default() += 1;
        }
    }
    out.backlog_total = backlog.values().sum();
    for age in AGE_BUCKETS {
        for p in Priority::ALL {
            if let Some(&count) = backlog.get(&(*age, p)) {
                out.backlog.push(BacklogCount {
                    age: age.to_string(),
                    priority: p.to_string(),
                    count,
                });
            }
        }
    }
    Ok(out)
}

/// `a / b`, or `None` when `b` is 0.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Median and 90th percentile by nearest rank.
pub fn durations(mut secs: Vec<i64>) -> Durations {
    secs.sort_unstable();
    let at = |pct: usize| -> Option<u64> {
        let n = secs.len();
        let rank = (pct * n).div_ceil(100).max(1);
        secs.get(rank - 1).map(|&s| s.max(0) as u64)
    };
    Durations {
        count: secs.len() as u64,
        median_secs: at(50),
        p90_secs: at(90),
    }
}

/// Who resolved a ticket no operator touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoHuman {
    Monitor,
    SelfService,
}

#[derive(Debug)]
struct Resolution {
    at: i64,
    first_contact: bool,
    no_human: Option<NoHuman>,
}

/// What one ticket's timeline tells.
#[derive(Debug, Default)]
struct Facts {
    response_at: Option<i64>,
    resolution: Option<Resolution>,
    /// `(cause, team)` of each `escalate` verdict.
    escalations: Vec<(String, String)>,
}

impl Facts {
    fn of(t: &Ticket, timeline: &[TimelineRow], operators: &HashSet<String>) -> Facts {
        let mut facts = Facts::default();
        let mut reopened = false;
        // Index of the resolving entry, as the timeline goes.
        let mut resolving: Option<usize> = None;
        // The opening entry is the first; a ticket without one (an older
        // relay's) is read from its first entry on all the same.
        let skip = usize::from(timeline.first().is_some_and(|e| e.kind == "opened"));
        for (i, e) in timeline.iter().enumerate().skip(skip) {
            let action = is_action(e);
            if facts.response_at.is_none() && (action || operators.contains(&e.author)) {
                facts.response_at = Some(e.at);
            }
            if let Some((cause, team)) = escalation(e) {
                facts.escalations.push((cause, team));
            }
            match status_to(e) {
                Some("resolved") => resolving = Some(i),
                Some("open") => {
                    reopened = true;
                    resolving = None;
                }
                Some("closed") if resolving.is_none() => resolving = Some(i),
                _ => {}
            }
        }
        let done = matches!(t.status, TicketStatus::Resolved | TicketStatus::Closed);
        if let (true, Some(r)) = (done, resolving) {
            let before = &timeline[skip.min(r)..=r];
            let actions = before.iter().filter(|e| is_action(e)).count();
            let human = before.iter().any(|e| operators.contains(&e.author));
            let resolver = &timeline[r].author;
            let no_human = match (human, t.agent.as_deref() == Some(resolver.as_str())) {
                (true, _) => None,
                (false, true) => Some(NoHuman::Monitor),
                (false, false) => Some(NoHuman::SelfService),
            };
            facts.resolution = Some(Resolution {
                at: timeline[r].at,
                first_contact: !reopened && facts.escalations.is_empty() && actions <= 1,
                no_human,
            });
        }
        facts
    }
}

/// A runbook's verdict, or a fix's result (one that changed something).
fn is_action(e: &TimelineRow) -> bool {
    match e.kind.as_str() {
        "verdict" => true,
        "result" => body_json(e).is_some_and(|v| {
            v.get("changed")
                .and_then(|c| c.as_array())
                .is_some_and(|c| !c.is_empty())
        }),
        _ => false,
    }
}

/// `(cause, team)` of an `escalate` verdict.
fn escalation(e: &TimelineRow) -> Option<(String, String)> {
    if e.kind != "verdict" {
        return None;
    }
    let v = body_json(e)?;
    if v.get("verdict")?.as_str()? != "escalate" {
        return None;
    }
    let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("").to_string();
    Some((field("cause"), field("team")))
}

fn body_json(e: &TimelineRow) -> Option<serde_json::Value> {
    serde_json::from_str(e.body.as_deref()?).ok()
}

/// The status a `status` entry moved to: its body is `from → to` or
/// `from → to: note` (`super::tickets::set_status`).
fn status_to(e: &TimelineRow) -> Option<&str> {
    if e.kind != "status" {
        return None;
    }
    let (_, to) = e.body.as_deref()?.split_once(" → ")?;
    Some(to.split(':').next().unwrap_or(to).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d = durations(vec![40, 10, 30, 20]);
        assert_eq!(
            (d.count, d.median_secs, d.p90_secs),
            (4, Some(20), Some(40))
        );
        let d = durations((1..=10).collect());
        assert_eq!((d.median_secs, d.p90_secs), (Some(5), Some(9)));
        let d = durations(vec![7]);
        assert_eq!((d.median_secs, d.p90_secs), (Some(7), Some(7)));
        assert_eq!(durations(vec![]), Durations::default());
    }

    #[test]
    fn status_entries_are_read() {
        let row = |body: &str| TimelineRow {
            ticket: 1,
            at: 0,
            kind: "status".into(),
            author: "a".into(),
            body: Some(body.into()),
        };
        assert_eq!(status_to(&row("open → resolved")), Some("resolved"));
        assert_eq!(
            status_to(&row("in_progress → resolved: recovered: 3: ok")),
            Some("resolved")
        );
        assert_eq!(status_to(&row("resolved → open: reopened")), Some("open"));
    }
}
