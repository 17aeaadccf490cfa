//! Central monitor sets and what agents report of them, written once on the
//! storage primitives.
//!
//! * A **set** ([`put`]) is a name, a selector (keys `name`, `tag`, `os`:
//!   [`central::set_selector`]), the TOML text as the admin wrote it and its
//!   monitors as parsed (JSON), its author and the author's role. A set of
//!   the same name is replaced. The bounds: at most [`central::MAX_SETS`]
//!   sets, and all their monitors together at most [`central::MAX_TOTAL`]
//!   bytes of JSON, so whatever selects an agent fits one frame to it. (Two
//!   relays adding two new sets at the same moment may pass the count by
//!   one; the size bound still holds each set to its own limits.)
//! * What an agent is sent ([`for_agent`]) is every set whose selector
//!   picks it, by name, with a [`digest`] of them: the same sets, the same
//!   digest on every relay, so `monitors show` can tell whether an agent's
//!   last **report** ([`record_report`]) is of the sets that select it now.
//! * An agent's report is kept until the next one; an agent removed keeps
//!   it in the table but is no longer listed ([`overview`]).
//! * A set holds only as long as its author's authority: it is judged by
//!   the author's role *now* on every read of what to send ([`for_agent`]),
//!   and when the author is revoked or is no longer an admin it is
//!   **suspended** — sent to no agent, shown so with the reason in
//!   `monitors show` — until an admin sets it again ([`put`] clears it).
//!   Revocation and demotion record the reason
//!   (`super::identity::revoke`, `set_role`); the check on every read
//!   covers whatever way the author lost the role.

use super::error::{StoreError, StoreResult};
use super::fleet;
use super::tx::{MonitorReportRow, MonitorSetRow, Tx};
use firstline_proto::central::{
    self, AgentMonitorReport, CentralReport, CentralSet, MonitorSetInfo, MonitorSpec,
};
use firstline_proto::select::AgentView;
use firstline_proto::{AgentInfo, Role, Selector};

/// A set as an admin gives it (parsed and checked by the caller too:
/// `firstline_net::monitors::parse`).
#[derive(Debug, Clone)]
pub struct NewSet {
    pub name: String,
    pub selector: String,
    pub toml: String,
    pub monitors: Vec<MonitorSpec>,
    pub role: Role,
    pub author: String,
}

/// The role that may set central monitor sets; a set whose author no
/// longer has it is suspended.
pub const SETTER_ROLE: Role = Role::Admin;

fn invalid(e: impl Into<String>) -> StoreError {
    StoreError::Invalid(e.into())
}

/// The digest of what an agent is sent: 16 hex digits of the SHA-256 of
/// the sets' JSON (`-` for none).
pub fn digest(sets: &[CentralSet]) -> String {
    if sets.is_empty() {
        return "-".into();
    }
    let json = serde_json::to_vec(sets).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &json);
    hex::encode(&d.as_ref()[..8])
}

/// Why `row` is not sent, if it is not: suspended when its author lost the
/// role (the reason recorded then), or its author is not — now — a live
/// operator with [`SETTER_ROLE`].
fn suspension(tx: &mut dyn Tx, row: &MonitorSetRow) -> StoreResult<Option<String>> {
    if let Some(why) = &row.suspended {
        return Ok(Some(why.clone()));
    }
    Ok(match tx.operator(&row.updated_by)? {
        None => Some(format!(
            "its author `{}` is not an operator of this relay: an admin must set it again",
            row.updated_by
        )),
        Some(op) if op.revoked_at.is_some() => Some(format!(
            "its author `{}` was revoked: an admin must set it again",
            row.updated_by
        )),
        Some(op) if op.role < SETTER_ROLE => Some(format!(
            "its author `{}` is a {} now: an admin must set it again",
            row.updated_by, op.role
        )),
        Some(_) => None,
    })
}

/// The sets in force (not suspended), each with its role no higher than
/// its author's now.
fn in_force(tx: &mut dyn Tx, rows: Vec<MonitorSetRow>) -> StoreResult<Vec<MonitorSetRow>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if suspension(tx, &row)?.is_none() {
            out.push(row);
        }
    }
    Ok(out)
}

/// The names of the sets in force, by name.
pub fn in_force_names(tx: &mut dyn Tx) -> StoreResult<Vec<String>> {
    let rows = tx.monitor_sets()?;
    Ok(in_force(tx, rows)?.into_iter().map(|r| r.name).collect())
}

fn info(row: &MonitorSetRow) -> MonitorSetInfo {
    MonitorSetInfo {
        name: row.name.clone(),
        select: row.selector.clone(),
        monitors: serde_json::from_str(&row.monitors).unwrap_or_default(),
        toml: row.toml.clone(),
        updated_by: row.updated_by.clone(),
        updated_at: crate::clock::rfc3339(row.updated_at),
        suspended: row.suspended.clone(),
    }
}

/// [`info`], with why it is suspended when it is.
fn info_now(tx: &mut dyn Tx, row: &MonitorSetRow) -> StoreResult<MonitorSetInfo> {
    let mut i = info(row);
    i.suspended = suspension(tx, row)?;
    Ok(i)
}

fn central_set(row: &MonitorSetRow) -> CentralSet {
    CentralSet {
        name: row.name.clone(),
        // An unreadable role gives the least rights, never more.
        role: row.role.parse().unwrap_or(Role::Viewer),
        monitors: serde_json::from_str(&row.monitors).unwrap_or_default(),
    }
}

/// Store `set`, replacing the one of its name: the set as stored, and
/// whether one was replaced.
pub fn put(tx: &mut dyn Tx, set: &NewSet, now: i64) -> StoreResult<(MonitorSetInfo, bool)> {
    central::check_set_name(&set.name).map_err(invalid)?;
    let selector = central::set_selector(&set.selector).map_err(invalid)?;
    if set.monitors.is_empty() || set.monitors.len() > central::MAX_MONITORS_PER_SET {
        return Err(invalid(format!(
            "a monitor set has 1 to {} monitors",
            central::MAX_MONITORS_PER_SET
        )));
    }
    if set.toml.len() > central::MAX_TOML {
        return Err(invalid(format!(
            "a monitor set's file is at most {} bytes",
            central::MAX_TOML
        )));
    }
    let monitors = serde_json::to_string(&set.monitors)?;
    let old = tx.monitor_set(&set.name)?;
    let others = tx.monitor_sets()?;
    let others: Vec<&MonitorSetRow> = others.iter().filter(|r| r.name != set.name).collect();
    if old.is_none() && others.len() >= central::MAX_SETS {
        return Err(invalid(format!(
            "there are {} monitor sets already, the most a relay keeps: remove one, or add these monitors to one",
            others.len()
        )));
    }
    let total: usize = others.iter().map(|r| r.monitors.len()).sum::<usize>() + monitors.len();
    if total > central::MAX_TOTAL {
        return Err(invalid(format!(
            "all monitor sets together would be {total} bytes, more than {}: make them smaller",
            central::MAX_TOTAL
        )));
    }
    let row = MonitorSetRow {
        name: set.name.clone(),
        selector: selector.to_string(),
        toml: set.toml.clone(),
        monitors,
        role: set.role.as_str().to_string(),
        updated_by: set.author.clone(),
        updated_at: now,
        suspended: None,
    };
    tx.put_monitor_set(&row)?;
    Ok((info(&row), old.is_some()))
}

/// Remove the set `name`: the set removed (`None`: there was none).
pub fn remove(tx: &mut dyn Tx, name: &str) -> StoreResult<Option<MonitorSetInfo>> {
    let Some(row) = tx.monitor_set(name)? else {
        return Ok(None);
    };
    Ok(tx.delete_monitor_set(name)?.then(|| info(&row)))
}

/// Every set, by name.
pub fn sets(tx: &mut dyn Tx) -> StoreResult<Vec<MonitorSetInfo>> {
    let rows = tx.monitor_sets()?;
    rows.iter().map(|r| info_now(tx, r)).collect()
}

/// Whether the set's selector picks `agent`.
fn selects(row: &MonitorSetRow, agent: &AgentInfo) -> bool {
    Selector::parse(&row.selector).is_ok_and(|s| s.matches(&AgentView::from(agent)))
}

/// The sets in force that select `agent` (none when it is unknown), by
/// name, and their digest: a suspended set, or one whose author is not an
/// admin now, is not sent (and the agent drops it when it had it).
///
/// Asked on every agent connection, so it costs what a connection can
/// afford: no set, no other query; else the agent's row by its key and its
/// tags (a set selects by name, tag and OS only) — never a scan of the
/// agents, which made a ramp of 50,000 agents quadratic.
pub fn for_agent(tx: &mut dyn Tx, agent: &str) -> StoreResult<(Vec<CentralSet>, String)> {
    let rows = tx.monitor_sets()?;
    if rows.is_empty() {
        return Ok((Vec::new(), digest(&[])));
    }
    let rows = in_force(tx, rows)?;
    let Some(mut a) = tx.agent(agent)? else {
        return Ok((Vec::new(), digest(&[])));
    };
    a.tags = tx.agent_tags(agent)?;
    let sets: Vec<CentralSet> = rows
        .iter()
        .filter(|r| selects(r, &a))
        .map(central_set)
        .collect();
    let d = digest(&sets);
    Ok((sets, d))
}

/// Keep an agent's report (bounded: its monitors' texts cut to one line of
/// a sane length).
pub fn record_report(
    tx: &mut dyn Tx,
    agent: &str,
    report: &CentralReport,
    now: i64,
) -> StoreResult<()> {
    use firstline_proto::text::{printable, truncate};
    let line = |s: &str, max| printable(&truncate(s, max)).into_owned();
    let limit = central::MAX_SETS * central::MAX_MONITORS_PER_SET;
    let bounded = CentralReport {
        digest: line(&report.digest, 64),
        monitors: report
            .monitors
            .iter()
            .take(limit)
            .map(|m| central::CentralMonitor {
                set: line(&m.set, 64),
                monitor: line(&m.monitor, firstline_proto::limits::MONITOR_ID),
                check: line(&m.check, 64),
                state: m.state,
                reason: m.reason.as_deref().map(|r| line(r, 512)),
            })
            .collect(),
    };
    tx.put_monitor_report(&MonitorReportRow {
        agent: agent.to_string(),
        digest: bounded.digest.clone(),
        report: serde_json::to_string(&bounded)?,
        at: now,
    })
}

/// The sets, and each agent (not removed) that a set selects or that
/// reported central monitors: the sets selecting it, whether its report is
/// of them, and the report's monitors. `online` is the caller's to fill.
pub fn overview(tx: &mut dyn Tx) -> StoreResult<(Vec<MonitorSetInfo>, Vec<AgentMonitorReport>)> {
    let all = tx.monitor_sets()?;
    let shown: Vec<MonitorSetInfo> = all
        .iter()
        .map(|r| info_now(tx, r))
        .collect::<StoreResult<_>>()?;
    let rows = in_force(tx, all)?;
    let reports = tx.monitor_reports()?;
    let agents = fleet::select(tx, &Selector::all())?;
    // Each selector parsed once and each report found by name: per agent a
    // scan of the reports and a parse per set made this quadratic in the
    // fleet (10^10 steps at 100,000 agents).
    let selectors: Vec<(&MonitorSetRow, Option<Selector>)> = rows
        .iter()
        .map(|r| (r, Selector::parse(&r.selector).ok()))
        .collect();
    let reports: std::collections::HashMap<&str, &MonitorReportRow> =
        reports.iter().map(|r| (r.agent.as_str(), r)).collect();
    let mut out = Vec::new();
    for a in &agents {
        let view = AgentView::from(a);
        let picked: Vec<&MonitorSetRow> = selectors
            .iter()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.matches(&view)))
            .map(|(r, _)| *r)
            .collect();
        let report = reports.get(a.name.as_str()).copied();
        let parsed: Option<CentralReport> =
            report.and_then(|r| serde_json::from_str(&r.report).ok());
        let has_monitors = parsed.as_ref().is_some_and(|p| !p.monitors.is_empty());
        if picked.is_empty() && !has_monitors {
            continue;
        }
        let sets: Vec<CentralSet> = picked.iter().map(|r| central_set(r)).collect();
        let expected = digest(&sets);
        out.push(AgentMonitorReport {
            agent: a.name.clone(),
            online: false,
            sets: sets.into_iter().map(|s| s.name).collect(),
            current: report.is_some_and(|r| r.digest == expected),
            reported_at: report.map(|r| crate::clock::rfc3339(r.at)),
            monitors: parsed.map(|p| p.monitors).unwrap_or_default(),
        });
    }
    Ok((shown, out))
}
