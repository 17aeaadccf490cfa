//! `/machines/NAME`: one machine — its facts, its monitors with their
//! current status, the results this session got from it, its open
//! tickets — and the forms to run a check, a fix (a dry run first) or a
//! runbook on it, whose answers stream into the page ([`super::actions`]).
//!
//! Everything comes from the relay, asked at once: the machine's row and
//! its monitors from the relay's store (an offline machine shows its last
//! known state), its checks and runbooks from the agent itself (so an
//! offline machine offers a free-text check name). Fixes and runbooks are
//! offered to technicians and admins only; the relay decides anyway.

use super::fleet::fleet;
use super::view::Item;
use super::{render, text, AppState, Nav, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use firstline_proto::message::{CheckInfo, MonitorStatusInfo};
use firstline_proto::{AgentInfo, ErrorCode, Message, Role, RunbookInfo, TicketSummary};

pub fn routes() -> Router<AppState> {
    Router::new().route("/machines/{name}", get(page))
}

/// Results of this session's jobs shown per machine.
const RECENT: usize = 20;

/// The machine's facts, as shown.
pub struct Facts {
    pub health: &'static str,
    /// `online`, `offline` or `revoked`.
    pub state: &'static str,
    /// `label: value` rows (OS, kernel, addresses, uptime…).
    pub rows: Vec<(&'static str, String)>,
    pub tags: Vec<String>,
}

pub struct MonitorRow {
    pub monitor: String,
    pub status: &'static str,
    pub summary: String,
    pub at: String,
}

pub struct TicketRow {
    pub id: u64,
    pub status: String,
    pub priority: String,
    pub title: String,
    pub updated: String,
}

/// One check of the agent, for the check form.
pub struct CheckOption {
    pub name: String,
    pub about: String,
    pub synopsis: String,
}

/// One runbook of the agent, with a field per parameter.
pub struct RunbookForm {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamField>,
}

pub struct ParamField {
    pub name: String,
    /// Its default (placeholder); empty when required.
    pub default: String,
    pub required: bool,
    pub help: String,
}

#[derive(Template)]
#[template(path = "machine.html")]
struct MachinePage {
    nav: Nav,
    name: String,
    facts: Facts,
    monitors: Result<Vec<MonitorRow>, String>,
    tickets: Result<Vec<TicketRow>, String>,
    checks: Result<Vec<CheckOption>, String>,
    fixes: Vec<&'static str>,
    runbooks: Result<Vec<RunbookForm>, String>,
    recent: Vec<Item>,
}

async fn page(
    State(web): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let nav = web.nav("fleet").await?;
    if super::actions::check_name(&name).is_err() {
        return Err(WebError::NotFound(format!(
            "`{}` is not a machine name",
            text(&name)
        )));
    }
    let (agents, _) = fleet(&web, Some(&format!("name={name}"))).await?;
    let Some(agent) = agents.into_iter().find(|a| a.name == name) else {
        return Err(WebError::NotFound(format!(
            "no machine named `{name}` is enrolled at this relay (the fleet page lists them)"
        )));
    };
    let can_fix = nav.can_fix();
    let (monitors, tickets, checks, runbooks) = tokio::join!(
        monitors(&web, &name),
        open_tickets(&web, &name),
        checks(&web, &agent),
        async {
            if can_fix {
                runbooks(&web, &agent).await
            } else {
                Ok(Vec::new())
            }
        }
    );
    let mut fixes = if can_fix {
        firstline_agent::fixes::BUILTIN.to_vec()
    } else {
        Vec::new()
    };
    if nav.role >= Role::Admin {
        fixes.push("script");
    }
    let recent = web
        .jobs
        .recent(&super::jobs::owner(&headers), &name, RECENT);
    render(&MachinePage {
        nav,
        name: text(&name),
        facts: facts(&agent),
        monitors,
        tickets,
        checks,
        fixes,
        runbooks,
        recent,
    })
}

/// A part of the page the relay or the agent could not give: said in
/// words in its place, the rest of the page still shown.
fn missing(e: WebError) -> String {
    match &e {
        WebError::Relay {
            code: ErrorCode::BadRequest,
            message,
        } if message.contains("not a console request") => {
            "this relay is older and does not say this".into()
        }
        _ => text(&e.to_string()),
    }
}

fn facts(a: &AgentInfo) -> Facts {
    let state = if a.revoked {
        "revoked"
    } else if a.online {
        "online"
    } else {
        "offline"
    };
    let opt = |s: &Option<String>| text(s.as_deref().unwrap_or("—"));
    let mut rows = vec![
        ("OS", opt(&a.os)),
        ("Kernel", opt(&a.facts.kernel)),
        ("Host name", opt(&a.hostname)),
        (
            "Addresses",
            if a.facts.addresses.is_empty() {
                "—".into()
            } else {
                text(&a.facts.addresses.join(", "))
            },
        ),
        (
            "Uptime",
            a.facts
                .uptime_secs
                .map(uptime)
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "Last seen",
            if a.online {
                "now".into()
            } else {
                text(a.last_seen.as_deref().unwrap_or("never"))
            },
        ),
        ("Agent version", opt(&a.version)),
        (
            "Open incidents / tickets",
            format!("{} / {}", a.open_incidents, a.open_tickets),
        ),
    ];
    if let Some(at) = &a.facts.reported_at {
        rows.push(("Facts reported", text(at)));
    }
    Facts {
        health: a.health.as_str(),
        state,
        rows,
        tags: a.tags.iter().map(|t| text(t)).collect(),
    }
}

/// `3 d 4 h`, `2 h 5 min`, `42 s`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

async fn monitors(web: &super::Web, name: &str) -> Result<Vec<MonitorRow>, String> {
    let answers = web
        .ask(Message::ListMonitorStatus { agent: name.into() })
        .await
        .map_err(missing)?;
    let mut rows: Vec<MonitorStatusInfo> = Vec::new();
    for m in answers {
        if let Message::MonitorStatuses { monitors, .. } = m {
            rows.extend(monitors);
        }
    }
    Ok(rows
        .into_iter()
        .map(|m| MonitorRow {
            monitor: text(&m.monitor),
            status: m.status.as_str(),
            summary: text(&m.summary),
            at: text(&m.at),
        })
        .collect())
}

/// Its tickets still open or in progress, newest first.
async fn open_tickets(web: &super::Web, name: &str) -> Result<Vec<TicketRow>, String> {
    let ask = |status: &str| {
        web.ask(Message::ListTickets {
            status: Some(status.into()),
            agent: Some(name.into()),
            assignee: None,
            priority: None,
            search: None,
            since_secs: None,
            older_than_secs: None,
        })
    };
    let (open, started) = tokio::join!(ask("open"), ask("in_progress"));
    let mut tickets: Vec<TicketSummary> = Vec::new();
    for m in open
        .map_err(missing)?
        .into_iter()
        .chain(started.map_err(missing)?)
    {
        if let Message::Tickets { tickets: t } = m {
            tickets.extend(t);
        }
    }
    tickets.sort_by_key(|t| std::cmp::Reverse(t.id));
    Ok(tickets
        .into_iter()
        .map(|t| TicketRow {
            id: t.id,
            status: text(&t.status),
            priority: text(&t.priority),
            title: text(&t.title),
            updated: text(&t.updated_at),
        })
        .collect())
}

/// The checks the agent offers (it must be online to say).
async fn checks(web: &super::Web, a: &AgentInfo) -> Result<Vec<CheckOption>, String> {
    if !a.online {
        return Err("the machine is offline: it cannot list its checks".into());
    }
    let answers = web
        .ask(Message::ListChecks {
            agent: a.name.clone(),
        })
        .await
        .map_err(missing)?;
    let mut checks: Vec<CheckInfo> = Vec::new();
    for m in answers {
        if let Message::Checks { checks: c } = m {
            checks.extend(c);
        }
    }
    Ok(checks
        .into_iter()
        .map(|c| CheckOption {
            name: text(&c.name),
            about: text(&c.about),
            synopsis: text(&c.synopsis),
        })
        .collect())
}

/// The runbooks the agent offers, with their parameters.
async fn runbooks(web: &super::Web, a: &AgentInfo) -> Result<Vec<RunbookForm>, String> {
    if !a.online {
        return Err("the machine is offline: it cannot list its runbooks".into());
    }
    let answers = web
        .ask(Message::ListRunbooks {
            agent: a.name.clone(),
        })
        .await
        .map_err(missing)?;
    let mut runbooks: Vec<RunbookInfo> = Vec::new();
    for m in answers {
        if let Message::Runbooks { runbooks: r, .. } = m {
            runbooks.extend(r);
        }
    }
    Ok(runbooks.iter().map(runbook_form).collect())
}

/// A runbook's parameters (`NAME=DEFAULT`, or `NAME` when required) as
/// form fields.
pub fn runbook_form(r: &RunbookInfo) -> RunbookForm {
    let params = r
        .params
        .iter()
        .map(|(p, help)| {
            let (name, default) = match p.split_once('=') {
                Some((n, d)) => (n, Some(d)),
                None => (p.as_str(), None),
            };
            ParamField {
                name: text(name),
                default: text(default.unwrap_or("")),
                required: default.is_none(),
                help: text(help),
            }
        })
        .collect();
    RunbookForm {
        name: text(&r.name),
        description: text(&r.description),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbook_parameters_become_fields() {
        let r = RunbookInfo {
            name: "cant-print".into(),
            description: "printing fails".into(),
            params: vec![
                ("printer".into(), "an IPP URI or a queue".into()),
                ("server=localhost:631".into(), "the CUPS scheduler".into()),
            ],
            source: "shipped".into(),
        };
        let f = runbook_form(&r);
        assert_eq!(f.params.len(), 2);
        assert!(f.params[0].required && f.params[0].default.is_empty());
        assert_eq!(f.params[1].name, "server");
        assert_eq!(f.params[1].default, "localhost:631");
        assert!(!f.params[1].required);
    }

    #[test]
    fn uptimes_read_short() {
        assert_eq!(uptime(42), "42 s");
        assert_eq!(uptime(120), "2 min");
        assert_eq!(uptime(2 * 3600 + 300), "2 h 5 min");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 59), "3 d 4 h");
    }
}
