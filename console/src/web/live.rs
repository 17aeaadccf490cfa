//! `/live`: what `firstline watch` shows — alerts, ticket changes, queued
//! actions delivered — as it happens. The page holds an `EventSource` on
//! `/live/events`; each relay notice becomes one server-sent event whose
//! data is a JSON object the script writes into the page as text (never
//! as HTML). When the relay connection drops, a `status` event says so and
//! the watch starts again with a capped backoff, as `firstline watch`
//! does; when the browser's connection drops, `EventSource` reconnects.

use super::{render, text, AppState, Nav, Web, WebError};
use askama::Template;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use firstline_proto::{ErrorCode, Message, Notice};
use futures_util::stream::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Waits between attempts to watch again: doubling, at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Events held for a slow browser before the watch waits for it.
const BUFFER: usize = 64;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/live", get(page))
        .route("/live/events", get(events))
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    nav: Nav,
}

async fn page(State(web): State<AppState>) -> Result<Response, WebError> {
    let nav = web.nav("live").await?;
    render(&LivePage { nav })
}

/// One notice as the page gets it; every text made safe.
#[derive(Debug, Serialize)]
struct LiveNotice {
    at: String,
    kind: String,
    agent: Option<String>,
    ticket: Option<u64>,
    text: String,
    /// `alert`, `ticket`, `queued` or `other`: how the page colours it.
    group: &'static str,
}

impl From<Notice> for LiveNotice {
    fn from(n: Notice) -> LiveNotice {
        let group = ["alert", "ticket", "queued"]
            .into_iter()
            .find(|g| n.kind.starts_with(g))
            .unwrap_or("other");
        LiveNotice {
            at: text(&n.at),
            kind: text(&n.kind),
            agent: n.agent.as_deref().map(text),
            ticket: n.ticket,
            text: text(&n.text),
            group,
        }
    }
}

async fn events(State(web): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow(web, tx));
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Watch the relay and send each notice to the page until the page goes
/// away; watch again when the relay connection is lost.
async fn follow(web: Arc<Web>, tx: mpsc::Sender<Event>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let why = tokio::select! {
            why = watch_once(&web, &tx) => why,
            _ = tx.closed() => return,
        };
        match why {
            Ended::PageGone => return,
            Ended::Refused(message) => {
                let _ = tx.send(status("refused", &message)).await;
                return;
            }
            Ended::Lost(why) => {
                let text = format!(
                    "lost the relay ({why}); trying again in {} s",
                    backoff.as_secs_f32()
                );
                if tx.send(status("lost", &text)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Ended {
    PageGone,
    /// The relay refused the watch (a role that may not): no retry.
    Refused(String),
    Lost(String),
}

async fn watch_once(web: &Web, tx: &mpsc::Sender<Event>) -> Ended {
    let mut answers = match web.open(Message::Watch {}).await {
        Ok(a) => a,
        Err(e) => return lost_or_refused(e),
    };
    if tx
        .send(status("watching", "watching the relay"))
        .await
        .is_err()
    {
        return Ended::PageGone;
    }
    loop {
        match answers.next().await {
            Ok(Some(Message::Notice(n))) => {
                let data = serde_json::to_string(&LiveNotice::from(n)).unwrap_or_default();
                if tx
                    .send(Event::default().event("notice").data(data))
                    .await
                    .is_err()
                {
                    return Ended::PageGone;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ended::Lost("the relay ended the watch".into()),
            Err(e) => return lost_or_refused(e),
        }
    }
}

fn lost_or_refused(e: WebError) -> Ended {
    match e {
        WebError::Relay {
            code: ErrorCode::Forbidden | ErrorCode::Revoked,
            message,
        } => Ended::Refused(text(&message)),
        other => Ended::Lost(text(&other.to_string())),
    }
}

/// A `status` event: the state of the watch itself (`watching`, `lost`,
/// `refused`) and a sentence.
fn status(state: &str, message: &str) -> Event {
    let data = serde_json::json!({ "state": state, "text": message }).to_string();
    Event::default().event("status").data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_grouped_and_made_safe() {
        let n = LiveNotice::from(Notice {
            at: "2026-11-29T19:06:33Z".into(),
            kind: "alert_incident_opened".into(),
            agent: Some("pc1".into()),
            ticket: Some(3),
            text: "<b>disk</b>\u{1b}[31m".into(),
        });
        assert_eq!(n.group, "alert");
        assert_eq!(
            n.text, "<b>disk</b>\\u{1b}[31m",
            "HTML is the script's to write as text"
        );
    }
}
