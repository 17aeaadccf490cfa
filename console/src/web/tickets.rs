//! `/tickets` (the list, filtered as `firstline tickets` filters it) and
//! `/tickets/N`: a ticket's timeline — results, diagnostic bundles,
//! fixes, verdicts, comments, state changes — kept up to date as it
//! changes (`/tickets/N/events`), and the forms to comment, assign, change
//! its priority and move it along (technicians and admins; the relay
//! decides anyway). Forms are posted and redirected back (PRG); a refusal
//! is shown on the ticket's page, above its forms.
//!
//! Live: the events stream follows the relay's `watch` (as `firstline
//! watch --ticket N` does) and, for each notice about this ticket, asks for
//! the ticket again and sends the entries the page does not have yet —
//! the notice says *that* it changed, the ticket says *what* it is now, so
//! a missed notice costs nothing but the delay to the next one.

use super::view::{self, Item};
use super::{field, form_pairs, render, text, AppState, Nav, WebError};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use firstline_proto::message::{PRIORITIES, STATUSES};
use firstline_proto::{Message, TicketChange, TicketEntry, TicketSummary};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tickets", get(list).post(create))
        .route("/tickets/{id}", get(show))
        .route("/tickets/{id}/events", get(events))
        .route("/tickets/{id}/{change}", post(change))
}

/// The list's filters, from its query string (empty fields: no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub search: Option<String>,
}

fn given(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Filters {
    /// The `list_tickets` request, or what is wrong with a filter.
    pub fn request(&self) -> Result<Message, String> {
        let status = given(&self.status)
            .map(|s| crate::tickets::status(&s))
            .transpose()?;
        let priority = given(&self.priority)
            .map(|p| crate::tickets::priority(&p))
            .transpose()?;
        Ok(Message::ListTickets {
            status,
            agent: given(&self.agent),
            assignee: given(&self.assignee),
            priority,
            search: given(&self.search),
            since_secs: None,
            older_than_secs: None,
        })
    }
}

/// A ticket as its row and header show it.
#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub id: u64,
    pub title: String,
    pub status: String,
    pub priority: String,
    pub source: String,
    pub agent: String,
    pub assignee: String,
    pub created: String,
    pub updated: String,
}

impl TicketView {
    pub fn of(t: &TicketSummary) -> TicketView {
        TicketView {
            id: t.id,
            title: text(&t.title),
            status: text(&t.status),
            priority: text(&t.priority),
            source: text(&t.source),
            agent: text(t.agent.as_deref().unwrap_or("")),
            assignee: text(t.assignee.as_deref().unwrap_or("")),
            created: text(&t.created_at),
            updated: text(&t.updated_at),
        }
    }
}

#[derive(Template)]
#[template(path = "tickets.html")]
struct ListPage {
    nav: Nav,
    f: FilterValues,
    problem: Option<String>,
    tickets: Vec<TicketView>,
    statuses: &'static [&'static str],
    priorities: &'static [&'static str],
}

/// The filters as the form shows them again.
#[derive(Default)]
struct FilterValues {
    status: String,
    agent: String,
    assignee: String,
    priority: String,
    search: String,
}

async fn list(State(web): State<AppState>, Query(f): Query<Filters>) -> Result<Response, WebError> {
    let nav = web.nav("tickets").await?;
    let values = FilterValues {
        status: text(&given(&f.status).unwrap_or_default()),
        agent: text(&given(&f.agent).unwrap_or_default()),
        assignee: text(&given(&f.assignee).unwrap_or_default()),
        priority: text(&given(&f.priority).unwrap_or_default()),
        search: text(&given(&f.search).unwrap_or_default()),
    };
    let (tickets, problem) = match f.request() {
        Err(e) => (Vec::new(), Some(text(&e))),
        Ok(request) => match web.ask(request).await {
            Ok(answers) => (rows(answers), None),
            // A filter the relay refused (an unknown agent): said above the list.
            Err(e @ WebError::Relay { .. }) => (Vec::new(), Some(text(&e.to_string()))),
            Err(e) => return Err(e),
        },
    };
    render(&ListPage {
        nav,
        f: values,
        problem,
        tickets,
        statuses: STATUSES,
        priorities: PRIORITIES,
    })
}

fn rows(answers: Vec<Message>) -> Vec<TicketView> {
    answers
        .iter()
        .filter_map(|m| match m {
            Message::Tickets { tickets } => Some(tickets.iter().map(TicketView::of)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// `POST /tickets`: a new ticket (`title`, `agent`, `priority`).
async fn create(State(web): State<AppState>, body: Bytes) -> Result<Response, WebError> {
    let pairs = form_pairs(&body);
    let title = field(&pairs, "title")
        .ok_or_else(|| WebError::BadRequest("a new ticket needs a title".into()))?;
    let priority = field(&pairs, "priority")
        .map(crate::tickets::priority)
        .transpose()
        .map_err(WebError::BadRequest)?;
    let answers = web
        .ask(Message::TicketNew {
            title: title.into(),
            agent: field(&pairs, "agent").map(str::to_string),
            body: field(&pairs, "body").map(str::to_string),
            priority,
        })
        .await?;
    match answers.into_iter().find_map(|m| match m {
        Message::Ticket { ticket } => Some(ticket.id),
        _ => None,
    }) {
        Some(id) => Ok(back(id)),
        None => Err(WebError::Internal(
            "the relay did not say which ticket it opened".into(),
        )),
    }
}

/// One entry of a timeline as shown.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// Its place in the timeline (the events' `id`).
    pub n: usize,
    /// When it happened: what the agent observed, or its arrival.
    pub when: String,
    /// Its arrival at the relay, when the agent's observation is shown.
    pub arrived: String,
    pub kind: String,
    pub author: String,
    pub item: Item,
}

/// Kinds of entries whose body is data (older relays send it as a string).
const DATA_KINDS: &[&str] = &["result", "diagnostics", "verdict", "opened"];

pub fn entry(n: usize, e: &TicketEntry) -> EntryView {
    use serde_json::Value;
    let body = match &e.body {
        Value::String(s) if DATA_KINDS.contains(&e.kind.as_str()) => {
            serde_json::from_str::<Value>(s).unwrap_or_else(|_| e.body.clone())
        }
        b => b.clone(),
    };
    let data = |b: &Value| -> Option<Item> {
        match e.kind.as_str() {
            "result" | "opened" => serde_json::from_value(b.clone())
                .ok()
                .map(|r| view::result(&r)),
            "verdict" => serde_json::from_value(b.clone())
                .ok()
                .map(|v| view::verdict(&v)),
            "diagnostics" => {
                let lines = crate::tickets::render_entry(e);
                Some(Item {
                    head: "diagnostic bundle".into(),
                    lines: lines.iter().skip(1).map(|l| l.trim().to_string()).collect(),
                    ..Item::default()
                })
            }
            _ => None,
        }
    };
    let mut item = match &body {
        Value::String(s) => Item {
            head: text(s),
            ..Item::default()
        },
        b => data(b).unwrap_or_else(|| Item {
            head: text(&b.to_string()),
            ..Item::default()
        }),
    };
    item.kind = text(&e.kind);
    EntryView {
        n,
        when: text(e.observed_at.as_deref().unwrap_or(&e.at)),
        arrived: if e.observed_at.is_some() {
            text(&e.at)
        } else {
            String::new()
        },
        kind: text(&e.kind),
        author: text(&e.author),
        item,
    }
}

/// Ticket `id` and its whole timeline.
async fn detail(web: &super::Web, id: u64) -> Result<(TicketSummary, Vec<TicketEntry>), WebError> {
    let mut ticket = None;
    let mut entries = Vec::new();
    for m in web.ask(Message::TicketShow { id }).await? {
        match m {
            Message::TicketDetail {
                ticket: t,
                entries: e,
            } => {
                ticket = Some(t);
                entries.extend(e);
            }
            Message::TicketEntries { entries: e } => entries.extend(e),
            _ => {}
        }
    }
    let ticket = ticket.ok_or_else(|| WebError::Internal("the relay sent no ticket".into()))?;
    Ok((ticket, entries))
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    nav: Nav,
    t: TicketView,
    entries: Vec<EntryView>,
    /// A change the relay refused, shown above the forms.
    error: Option<String>,
    priorities: &'static [&'static str],
}

fn ticket_id(text: &str) -> Result<u64, WebError> {
    crate::tickets::ticket_number(text).map_err(WebError::NotFound)
}

async fn show(State(web): State<AppState>, Path(id): Path<String>) -> Result<Response, WebError> {
    page(&web, ticket_id(&id)?, None).await
}

async fn page(web: &super::Web, id: u64, error: Option<String>) -> Result<Response, WebError> {
    let nav = web.nav("tickets").await?;
    let (t, entries) = detail(web, id).await?;
    render(&TicketPage {
        nav,
        t: TicketView::of(&t),
        entries: entries
            .iter()
            .enumerate()
            .map(|(n, e)| entry(n, e))
            .collect(),
        error,
        priorities: PRIORITIES,
    })
}

/// The change a ticket form asks for: `comment` (`text`), `assign`
/// (`operator`), `priority` (`priority`), `status` (`action` = start,
/// resolve or close; `comment` with resolve).
pub fn ticket_change(change: &str, pairs: &[(String, String)]) -> Result<TicketChange, String> {
    let need = |name: &str, what: &str| {
        field(pairs, name)
            .map(str::to_string)
            .ok_or_else(|| format!("{what} is empty"))
    };
    Ok(match change {
        "comment" => TicketChange::Comment {
            text: need("text", "the comment")?,
        },
        "assign" => TicketChange::Assign {
            operator: need("operator", "the operator to assign to")?,
        },
        "priority" => TicketChange::Priority {
            priority: crate::tickets::priority(&need("priority", "the priority")?)?,
        },
        "status" => match field(pairs, "action") {
            Some("start") => TicketChange::Start {},
            Some("resolve") => TicketChange::Resolve {
                comment: field(pairs, "comment").map(str::to_string),
            },
            Some("close") => TicketChange::Close {},
            _ => return Err("say start, resolve or close".into()),
        },
        other => return Err(format!("`{}` is not a change of a ticket", text(other))),
    })
}

async fn change(
    State(web): State<AppState>,
    Path((id, change)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, WebError> {
    let id = ticket_id(&id)?;
    let pairs = form_pairs(&body);
    let change = match ticket_change(&change, &pairs) {
        Ok(c) => c,
        Err(e) => return refused(&web, id, StatusCode::BAD_REQUEST, e).await,
    };
    match web.ask(Message::TicketUpdate { id, change }).await {
        Ok(_) => Ok(back(id)),
        Err(e @ WebError::Relay { .. }) => refused(&web, id, e.status(), e.to_string()).await,
        Err(e) => Err(e),
    }
}

/// The ticket's page again, with why the change was not made.
async fn refused(
    web: &super::Web,
    id: u64,
    status: StatusCode,
    why: String,
) -> Result<Response, WebError> {
    let mut r = page(web, id, Some(text(&why))).await?;
    *r.status_mut() = status;
    Ok(r)
}

/// After a change: back to the ticket (post/redirect/get).
fn back(id: u64) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/tickets/{id}"))],
    )
        .into_response()
}

#[derive(Deserialize)]
struct From {
    from: Option<usize>,
}

/// What the live stream sends.
enum Live {
    Entry(Box<EntryView>),
    Ticket(TicketView),
    /// The relay went away or refused: the page says so (its
    /// `EventSource` tries again by itself).
    Lost(String),
}

/// `/tickets/N/events`: the ticket's new entries (`entry`, from `?from=N`
/// or after `Last-Event-ID`) and its state (`ticket`) as they change.
async fn events(
    State(web): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<From>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let id = ticket_id(&id)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map(|last| last + 1);
    let from = resume.or(q.from).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Live>(64);
    tokio::spawn(follow(web, id, from, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let live = rx.recv().await?;
        let event = match live {
            Live::Entry(e) => Event::default()
                .event("entry")
                .id(e.n.to_string())
                .data(serde_json::to_string(&e).unwrap_or_default()),
            Live::Ticket(t) => Event::default()
                .event("ticket")
                .data(serde_json::to_string(&t).unwrap_or_default()),
            Live::Lost(why) => Event::default()
                .event("lost")
                .data(serde_json::json!({ "message": why }).to_string()),
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Follow the relay's notices for ticket `id` until the page goes away,
/// sending what is new from entry `seen` on.
async fn follow(web: AppState, id: u64, mut seen: usize, tx: tokio::sync::mpsc::Sender<Live>) {
    let lost = |e: WebError| Live::Lost(text(&e.to_string()));
    // Watch first, then read the ticket: nothing falls between the two.
    let mut watch = match web.open(Message::Watch {}).await {
        Ok(w) => w,
        Err(e) => {
            let _ = tx.send(lost(e)).await;
            return;
        }
    };
    let mut changed = true;
    loop {
        if changed {
            match detail(&web, id).await {
                Ok((t, entries)) => {
                    for (n, e) in entries.iter().enumerate().skip(seen) {
                        if tx.send(Live::Entry(Box::new(entry(n, e)))).await.is_err() {
                            return;
                        }
                    }
                    seen = seen.max(entries.len());
                    if tx.send(Live::Ticket(TicketView::of(&t))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(lost(e)).await;
                    return;
                }
            }
        }
        let notice = tokio::select! {
            _ = tx.closed() => return,
            n = watch.next() => n,
        };
        changed = match notice {
            Ok(Some(Message::Notice(n))) => n.ticket == Some(id) || n.kind == "lagged",
            Ok(Some(_)) => false,
            Ok(None) => {
                let _ = tx
                    .send(Live::Lost("the relay ended the watch".into()))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(lost(e)).await;
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_are_the_cli_s() {
        let f = Filters {
            status: Some("open".into()),
            agent: Some(" pc1 ".into()),
            assignee: Some("".into()),
            priority: None,
            search: Some("printer".into()),
        };
        let Message::ListTickets {
            status,
            agent,
            assignee,
            search,
            ..
        } = f.request().unwrap()
        else {
            panic!()
        };
        assert_eq!(status.as_deref(), Some("open"));
        assert_eq!(agent.as_deref(), Some("pc1"));
        assert_eq!(assignee, None);
        assert_eq!(search.as_deref(), Some("printer"));
        let bad = Filters {
            status: Some("gone".into()),
            ..Filters::default()
        };
        assert!(bad.request().unwrap_err().contains("unknown status"));
    }

    #[test]
    fn forms_become_changes() {
        let p = |s: &str| form_pairs(s.as_bytes());
        assert_eq!(
            ticket_change("comment", &p("text=called+the+user")).unwrap(),
            TicketChange::Comment {
                text: "called the user".into()
            }
        );
        assert_eq!(
            ticket_change("status", &p("action=resolve&comment=fixed")).unwrap(),
            TicketChange::Resolve {
                comment: Some("fixed".into())
            }
        );
        assert_eq!(
            ticket_change("status", &p("action=start")).unwrap(),
            TicketChange::Start {}
        );
        assert!(ticket_change("comment", &p("text=+"))
            .unwrap_err()
            .contains("empty"));
        assert!(ticket_change("priority", &p("priority=asap"))
            .unwrap_err()
            .contains("unknown priority"));
        assert!(ticket_change("status", &p("action=reopen")).is_err());
        assert!(ticket_change("delete", &p("")).is_err());
    }

    #[test]
    fn entries_read_as_items() {
        let e = |kind: &str, body| TicketEntry {
            at: "2026-01-01T10:00:01Z".into(),
            observed_at: None,
            kind: kind.into(),
            author: "tina".into(),
            body,
        };
        let c = entry(0, &e("comment", json!("<b>hi</b>\u{1b}")));
        assert_eq!(c.item.head, "<b>hi</b>\\u{1b}", "escaped by the template");
        assert_eq!(c.kind, "comment");
        let r = json!({"check": "disk", "target": "/", "status": "crit", "summary": "95%",
                       "metrics": {}, "duration_ms": 1, "at": "2026-01-01T10:00:00Z"});
        let res = entry(1, &e("result", r.clone()));
        assert_eq!(res.item.status.as_deref(), Some("crit"));
        assert_eq!(res.item.kind, "result");
        // An older relay's body: JSON in a string.
        let old = entry(2, &e("result", json!(r.to_string())));
        assert_eq!(old.item.head, "disk /: 95%");
        assert!(old.arrived.is_empty());
    }
}
