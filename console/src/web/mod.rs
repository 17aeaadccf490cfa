//! `firstline web`: the web console, served by the technician's own console
//! binary on loopback.
//!
//! Why it is built this way:
//! - **No new way in.** The browser never speaks to the relay: this process
//!   does, over the same QUIC connection and with the same operator
//!   credential file as the CLI ([`crate::client`]). The relay authorizes
//!   and audits every request exactly as for the CLI; a page only decides
//!   what to *offer*, from the role the relay reports now ([`Web::nav`],
//!   the `who_am_i` request), never what is allowed.
//! - **A local web server is an attack surface**, so every request passes
//!   [`guard`] first: a per-launch secret exchanged for a session cookie,
//!   `Host` checked (DNS rebinding), `Origin` checked (cross-site requests),
//!   a strict Content-Security-Policy on every answer.
//! - **Server-rendered pages, no JavaScript build.** Templates in
//!   `console/templates/` are compiled and checked by askama; text from the
//!   wire is HTML-escaped by them and stripped of control characters here
//!   ([`text`]); the small script and stylesheet in `console/assets/` are
//!   embedded in the binary ([`assets`]); live views are server-sent events.
//!
//! | file | routes |
//! |---|---|
//! | [`guard`] | every request: secret, session, Host, Origin, headers |
//! | [`fleet`] | `/` the fleet |
//! | [`live`] | `/live`, `/live/events` (SSE) |
//! | [`audit`] | `/audit` (admins) |
//! | [`kb`] | `/kb/ID` (a knowledge-base article, escaped) |
//! | [`assets`] | `/assets/app.css`, `/assets/app.js` |
//! | machine.rs, tickets.rs, actions.rs | `/machines/NAME`, `/tickets…`, `POST /actions` + its stream |
//!
//! ## The action form (Fleet page → `POST /actions`)
//! Fields, `application/x-www-form-urlencoded`:
//! - the target, one of: `target` = one agent name; `select` = selector
//!   text (`tag=floor2,os=debian*`); `agents` = an agent name, repeated once
//!   per chosen machine (the Fleet page's checkboxes);
//! - `kind` = `run` | `fix` | `runbook`; `name` = the check, fix or runbook;
//! - `args` = its arguments, space-separated (`KEY=VALUE` for runbooks);
//! - `dry_run` = `on` when ticked (fix, runbook); `ticket` = a ticket
//!   number to record into (empty: none); `max_in_flight` = bulk pacing
//!   (empty: the relay's default).
//!
//! Repeated fields do not fit serde's `Form`: read the body with
//! [`form_pairs`].

pub mod assets;
pub mod audit;
mod error;
pub mod fleet;
pub mod guard;
pub mod live;
pub mod serve;
// W2: machine, tickets, actions (and their jobs and views).
pub mod actions;
pub mod jobs;
pub mod kb;
pub mod machine;
pub mod tickets;
pub mod view;

pub use error::WebError;
pub use serve::{run, serve, WebArgs};

use crate::client::{Answers, Client, RelayRefused};
use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use firstline_net::credential::Credential;
use firstline_net::tls::Sessions;
use firstline_proto::{Message, Role};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The state every handler shares.
pub type AppState = Arc<Web>;

/// How long the operator's role, as the relay last reported it, is used
/// before asking again: each page asks at most this often, so a role an
/// admin changed shows within seconds without an audit line per click.
const ROLE_FRESH: Duration = Duration::from_secs(5);

/// The web console's state: one operator, one relay connection.
pub struct Web {
    /// The operator's credential (the CLI's file): how we reach the relay.
    credential: Credential,
    /// The live connection, made again (resuming its TLS session) when it
    /// drops.
    relay: tokio::sync::Mutex<Link>,
    /// The role the relay last reported, and when.
    role: Mutex<(Role, Option<Instant>)>,
    /// The secret, session and allowed hosts of this launch.
    pub guard: guard::Guard,
    /// Actions started from pages, streamed to them (W2: [`jobs`]).
    pub jobs: jobs::Jobs,
}

impl Web {
    /// The state for a server on `addr`, with a fresh secret; `first` is a
    /// connection made already, if any, and the sessions it was made with.
    pub fn new(credential: Credential, first: Option<(Client, Sessions)>, addr: SocketAddr) -> Web {
        let link = match first {
            Some((client, sessions)) => Link {
                client: Some(Arc::new(client)),
                sessions,
            },
            None => Link::default(),
        };
        Web {
            role: Mutex::new((credential.role, None)),
            credential,
            relay: tokio::sync::Mutex::new(link),
            guard: guard::Guard::new(addr),
            jobs: jobs::Jobs::default(),
        }
    }

    /// The operator's name (from the credential's certificate).
    pub fn operator(&self) -> &str {
        &self.credential.name
    }

    /// The operator's current role as the relay last reported it (see
    /// [`Web::nav`], which asks again when it is older than a few seconds).
    pub fn role(&self) -> Role {
        self.role.lock().map(|r| r.0).unwrap_or(Role::Viewer)
    }

    /// What every page's header shows — the operator and the role the relay
    /// reports now — with `page` the current one (`fleet`, `machines`,
    /// `tickets`, `live`, `audit`).
    pub async fn nav(&self, page: &'static str) -> Result<Nav, WebError> {
        let fresh = self
            .role
            .lock()
            .ok()
            .and_then(|r| r.1)
            .is_some_and(|at| at.elapsed() < ROLE_FRESH);
        if !fresh {
            self.refresh_role().await?;
        }
        Ok(Nav {
            operator: text(self.operator()),
            role: self.role(),
            page,
        })
    }

    /// Ask the relay for this operator's role (`who_am_i`); a relay
    /// without that request leaves the credential's role.
    async fn refresh_role(&self) -> Result<(), WebError> {
        let role = match self.ask(Message::WhoAmI {}).await {
            Ok(answers) => answers.into_iter().find_map(|m| match m {
                Message::Operator { operator } => Some(operator.role),
                _ => None,
            }),
            // An older relay: no such request.
            Err(WebError::Relay {
                code: firstline_proto::ErrorCode::BadRequest,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        if let Ok(mut r) = self.role.lock() {
            *r = (role.unwrap_or(self.credential.role), Some(Instant::now()));
        }
        Ok(())
    }

    /// One request to the relay as this operator: every answer until the
    /// final one (`done` is left out; an `error` is `Err` with the relay's
    /// code and message).
    pub async fn ask(&self, msg: Message) -> Result<Vec<Message>, WebError> {
        let mut answers = self.open(msg).await?;
        let mut all = Vec::new();
        while let Some(m) = answers.next().await? {
            all.push(m);
        }
        Ok(all)
    }

    /// One request whose answers are read as they come (for server-sent
    /// events). A connection found dropped is made again first.
    pub async fn open(&self, msg: Message) -> Result<Stream, WebError> {
        let client = self.client().await?;
        match client.stream(msg.clone()).await {
            Ok(answers) => Ok(Stream {
                answers,
                ended: false,
            }),
            // The relay went away since the last request: once more, anew.
            Err(_) if client.conn.close_reason().is_some() => {
                let client = self.client().await?;
                let answers = client.stream(msg).await.map_err(WebError::lost)?;
                Ok(Stream {
                    answers,
                    ended: false,
                })
            }
            Err(e) => Err(WebError::lost(e)),
        }
    }

    /// The live connection, or a new one when there is none or it closed.
    async fn client(&self) -> Result<Arc<Client>, WebError> {
        let mut link = self.relay.lock().await;
        if let Some(c) = link.client.as_ref() {
            if c.conn.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        link.client = None;
        let client = Client::connect_resuming(self.credential.clone(), &mut link.sessions)
            .await
            .map_err(WebError::lost)?;
        let client = Arc::new(client);
        link.client = Some(client.clone());
        Ok(client)
    }
}

/// The web console's connection to the relay and its TLS sessions.
#[derive(Default)]
struct Link {
    client: Option<Arc<Client>>,
    sessions: Sessions,
}

/// The answers of one request, read one by one.
pub struct Stream {
    answers: Answers,
    ended: bool,
}

impl Stream {
    /// The next answer; `None` after the final one (`done`, or the end of
    /// a stream whose answer was one message); an `error` is `Err`.
    pub async fn next(&mut self) -> Result<Option<Message>, WebError> {
        if self.ended {
            return Ok(None);
        }
        match self.answers.next().await {
            Ok(Some(Message::Done {})) | Ok(None) => {
                self.ended = true;
                Ok(None)
            }
            Ok(Some(m)) => Ok(Some(m)),
            Err(e) => {
                self.ended = true;
                Err(match e.downcast::<RelayRefused>() {
                    Ok(r) => WebError::Relay {
                        code: r.code,
                        message: r.message,
                    },
                    Err(e) => WebError::lost(e),
                })
            }
        }
    }
}

/// The page header's facts: who, with what role, on which page.
#[derive(Debug, Clone)]
pub struct Nav {
    pub operator: String,
    pub role: Role,
    pub page: &'static str,
}

impl Nav {
    /// Admins see the Audit page.
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }
    /// Technicians and admins are offered fixes and runbooks.
    pub fn can_fix(&self) -> bool {
        self.role >= Role::Technician
    }
    pub fn role_name(&self) -> &'static str {
        self.role.as_str()
    }
}

/// Wire text made safe to show on one line: control characters (and line
/// breaks) escaped visibly; askama then escapes it for HTML.
pub fn text(s: &str) -> String {
    firstline_proto::text::printable(s).into_owned()
}

/// A rendered page (the guard adds the security headers).
pub fn render(page: &impl Template) -> Result<Response, WebError> {
    let html = page
        .render()
        .map_err(|e| WebError::Internal(format!("cannot render the page: {e}")))?;
    Ok(Html(html).into_response())
}

/// The fields of a form body or a query string, in order, repeated ones
/// repeated (`agents=a&agents=b`).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `name` in `pairs`, trimmed; `None` when absent or
/// empty.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Every non-empty value of `name` in `pairs`.
pub fn fields<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Every route, behind the guard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(fleet::routes())
        .merge(live::routes())
        .merge(audit::routes())
        .merge(assets::routes())
        .merge(machine::routes())
        .merge(tickets::routes())
        .merge(kb::routes())
        .merge(actions::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

async fn not_found() -> WebError {
    WebError::NotFound("no such page".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_repeated_fields() {
        let pairs = form_pairs(b"agents=pc1&agents=pc%202&kind=run&name=disk&args=&dry_run=on");
        assert_eq!(fields(&pairs, "agents"), ["pc1", "pc 2"]);
        assert_eq!(field(&pairs, "kind"), Some("run"));
        assert_eq!(field(&pairs, "args"), None);
        assert_eq!(field(&pairs, "ticket"), None);
    }

    #[test]
    fn wire_text_loses_its_controls() {
        assert_eq!(text("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
    }
}
