//! `/`: the fleet at a glance, as `firstline agents` shows it — the summary
//! line, then one row per machine (health, open incidents and tickets,
//! online, last seen, tags, OS), filtered by a selector (the relay picks)
//! and a search text (this page picks) — and a form to run a check, fix
//! or runbook on the machines ticked, posted to `/actions` (fields in
//! [`super`]). Fixes and runbooks are offered to technicians and admins
//! only; the relay decides anyway.

use super::{render, text, AppState, Nav, WebError};
use crate::fleet::{sort, summary_line, Sort};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use firstline_proto::{AgentInfo, FleetSummary, Message, Selector};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(page))
}

/// The page's filters, from its query string.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    /// A selector (`tag=floor2,os=debian*`), as `--select` takes.
    #[serde(default)]
    pub select: Option<String>,
    /// Text searched in name, host name, OS and tags (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// `name` (default) or `health` (worst first).
    #[serde(default)]
    pub sort: Option<String>,
}

/// One machine's row, its text made safe.
pub struct Row {
    pub name: String,
    /// `/machines/NAME`, the name percent-encoded.
    pub href: String,
    /// `ok`, `warn`, `crit`, `unknown`: shown as a word and a colour.
    pub health: &'static str,
    pub incidents: u64,
    pub tickets: u64,
    /// `online`, `offline` or `revoked`.
    pub state: &'static str,
    pub last_seen: String,
    pub tags: Vec<String>,
    pub os: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    nav: Nav,
    summary: String,
    select: String,
    q: String,
    by_health: bool,
    /// A selector the page could not use, said in words.
    problem: Option<String>,
    rows: Vec<Row>,
    /// How many machines the selector picked before the search.
    picked: usize,
}

async fn page(State(web): State<AppState>, Query(f): Query<Filters>) -> Result<Response, WebError> {
    let nav = web.nav("fleet").await?;
    let select = f.select.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let q = f.q.as_deref().map(str::trim).unwrap_or("");
    let mut problem = None;
    let (mut agents, summary) = match select.map(Selector::parse) {
        Some(Err(e)) => {
            problem = Some(text(&format!("selector: {e}")));
            (Vec::new(), FleetSummary::default())
        }
        _ => fleet(&web, select).await?,
    };
    let picked = agents.len();
    let by_health = f.sort.as_deref() == Some("health");
    sort(
        &mut agents,
        if by_health { Sort::Health } else { Sort::Name },
    );
    let rows = agents.iter().filter(|a| matches(a, q)).map(row).collect();
    render(&FleetPage {
        nav,
        summary: text(&summary_line(&summary)),
        select: text(select.unwrap_or("")),
        q: text(q),
        by_health,
        problem,
        rows,
        picked,
    })
}

/// The machines `select` picks and their summary, from the relay's store.
pub async fn fleet(
    web: &super::Web,
    select: Option<&str>,
) -> Result<(Vec<AgentInfo>, FleetSummary), WebError> {
    let mut agents = Vec::new();
    let mut summary = None;
    for m in web
        .ask(Message::SelectAgents {
            select: select.map(str::to_string),
        })
        .await?
    {
        match m {
            Message::Agents { agents: a } => agents.extend(a),
            Message::FleetSummary(s) => summary = Some(s),
            _ => {}
        }
    }
    let summary = summary.unwrap_or_else(|| FleetSummary::of(&agents));
    Ok((agents, summary))
}

/// Whether the search text is in the machine's name, host name, OS or tags.
fn matches(a: &AgentInfo, q: &str) -> bool {
    if q.is_empty() {
        return true;
    }
    let q = q.to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&q);
    has(&a.name)
        || a.hostname.as_deref().is_some_and(has)
        || a.os.as_deref().is_some_and(has)
        || a.tags.iter().any(|t| has(t))
}

fn row(a: &AgentInfo) -> Row {
    let state = if a.revoked {
        "revoked"
    } else if a.online {
        "online"
    } else {
        "offline"
    };
    let last_seen = if a.online {
        "now".to_string()
    } else {
        a.last_seen
            .as_deref()
            .map(text)
            .unwrap_or_else(|| "never".into())
    };
    Row {
        name: text(&a.name),
        href: machine_href(&a.name),
        health: a.health.as_str(),
        incidents: a.open_incidents,
        tickets: a.open_tickets,
        state,
        last_seen,
        tags: a.tags.iter().map(|t| text(t)).collect(),
        os: text(a.os.as_deref().unwrap_or("")),
    }
}

/// `/machines/NAME`, with NAME percent-encoded (agent names are plain, but
/// the page does not rely on it).
pub fn machine_href(name: &str) -> String {
    let mut out = String::from("/machines/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::Status;

    fn agent(name: &str, tags: &[&str]) -> AgentInfo {
        AgentInfo {
            name: name.into(),
            online: false,
            last_seen: None,
            version: None,
            os: Some("Debian GNU/Linux 12".into()),
            hostname: None,
            revoked: false,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            facts: Default::default(),
            health: Status::Warn,
            open_incidents: 1,
            open_tickets: 0,
        }
    }

    #[test]
    fn search_and_rows() {
        let a = agent("pc42", &["floor2"]);
        assert!(matches(&a, "PC4") && matches(&a, "floor") && matches(&a, "debian"));
        assert!(!matches(&a, "floor3"));
        let r = row(&a);
        assert_eq!(
            (r.health, r.state, r.last_seen.as_str()),
            ("warn", "offline", "never")
        );
        assert_eq!(machine_href("pc 1/x"), "/machines/pc%201%2Fx");
    }
}
