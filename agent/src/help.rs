//! Tier 0: the agent's side of `firstline-help`, the tool of the person
//! at the machine — a local Unix socket, one small line-delimited JSON
//! protocol on it, and what each request may do.
//!
//! **Who is asking.** Any local account may connect: the socket
//! (`help_socket` in agent.toml, default [`DEFAULT_SOCKET`]) is mode 0666
//! in a folder the agent creates mode 0755 (and refuses to use when it is
//! writable by anyone but the agent, or owned by another account, since
//! then someone else could put their own socket there). The agent never
//! believes what the client says of itself: it reads the kernel's peer
//! credentials of the connection (`SO_PEERCRED`) and names the user from
//! the passwd database. No password, no network, no token.
//!
//! **What a user can reach.** `list` and `run` see only runbooks marked
//! `self_service = true`, which load only when every step is a check a
//! viewer may run or a fix in `[policy] self_service_fixes`
//! ([`crate::runbook::self_service_error`]); a run goes through the one
//! runner ([`crate::runbook::run`]) with the policy cut to those fixes
//! ([`crate::policy::Policy::self_service`]), with the runbook's defaults
//! (a user gives no parameters). `ask` becomes a `help_request` event in
//! the durable outbox — the relay opens a ticket of source `user` — so it
//! survives a relay outage and an agent restart. `tickets` asks the relay
//! over the live link for that user's tickets on this agent; the relay
//! filters by the agent of the certificate and the user the agent read
//! here. `run` ends with the knowledge-base article its verdict names,
//! asked of the relay over the live link (`kb_show`; offline: the id and a
//! note). `run` and `ask` are limited per user (`help_rate_per_minute`).
//!
//! **Protocol.** One request per connection: one JSON line of at most
//! [`MAX_REQUEST`] bytes, `{"op":"list"}`, `{"op":"run","name":…}`,
//! `{"op":"ask","text":…,"after":…}` or `{"op":"tickets"}`; the agent
//! answers with JSON lines ([`Reply`]) and closes. A bad request gets one
//! `error` line.

use crate::config::Loaded;
use crate::outbox::Outbox;
use crate::runbook::run;
use anyhow::{bail, Context, Result};
use firstline_proto::event::{HelpRequest, HelpTicket, HELP_TEXT};
use firstline_proto::kb::KbArticle;
use firstline_proto::runbook::Verdict;
use firstline_proto::{AgentEvent, CheckResult, ErrorCode, EventKind, Message, Status};
use quinn::Connection;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// Where `firstline-help` finds the agent unless agent.toml says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/firstline-agent/help.sock";
/// Longest request line, in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once (the rest wait).
const CONNECTIONS: usize = 16;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `ask` waits for the relay's acknowledgement before saying
/// "queued".
const SENT_WAIT: Duration = Duration::from_secs(5);
/// Time the relay has to answer `help_tickets`.
const TICKETS_TIMEOUT: Duration = Duration::from_secs(10);

/// A request of `firstline-help`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    List {},
    Run {
        name: String,
    },
    Ask {
        text: String,
        #[serde(default)]
        after: Option<String>,
    },
    Tickets {},
}

/// A self-service runbook as the user sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub name: String,
    pub description: String,
}

/// A help request still in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedAsk {
    pub at: String,
    pub text: String,
}

/// One line of the agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `list`.
    Offered { user: String, runbooks: Vec<Offer> },
    /// A step of a run, in plain words (`run`: any number, then `verdict`).
    Step { text: String },
    /// With the knowledge-base article the verdict names, when the relay
    /// could be asked for it (`article`), else why not (`article_note`).
    Verdict {
        verdict: Box<Verdict>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        article: Option<Box<KbArticle>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        article_note: Option<String>,
    },
    /// Answer to `ask`: `delivered` when the relay acknowledged it.
    Asked { user: String, delivered: bool },
    /// Answer to `tickets`: `reachable` false when the relay could not
    /// be asked (then only `queued` is known).
    Tickets {
        user: String,
        reachable: bool,
        #[serde(default)]
        note: Option<String>,
        tickets: Vec<HelpTicket>,
        queued: Vec<QueuedAsk>,
    },
    /// `code`: `usage` (a bad request), `refused`, `rate` (too many) or
    /// `internal`.
    Error { code: String, message: String },
}

impl Reply {
    fn error(code: &str, message: impl Into<String>) -> Reply {
        Reply::Error {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The agent's live connection to a relay, when there is one (set by
/// [`crate::link`]).
#[derive(Default)]
pub struct Live(Mutex<Option<Connection>>);

impl Live {
    pub fn set(&self, conn: Option<Connection>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    fn get(&self) -> Option<Connection> {
        let conn = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        conn.filter(|c| c.close_reason().is_none())
    }
}

/// What the help service keeps between requests.
struct Service {
    cfg: Loaded,
    outbox: Arc<Outbox>,
    live: Arc<Live>,
    /// The last verdict each user got (`ask --after`), in memory.
    last_run: Mutex<HashMap<u32, Verdict>>,
    /// Times of each user's recent `run` and `ask`.
    recent: Mutex<HashMap<u32, VecDeque<Instant>>>,
}

/// Create the socket and serve it until shutdown. An error here (the
/// folder is unsafe, the path is taken) is logged by the caller; the
/// agent runs on without self-service.
pub async fn serve(
    cfg: Loaded,
    outbox: Arc<Outbox>,
    live: Arc<Live>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let path = cfg.help_socket();
    let listener = bind(&path)?;
    tracing::info!(socket = %path.display(), "firstline-help socket ready");
    let service = Arc::new(Service {
        cfg,
        outbox,
        live,
        last_run: Mutex::default(),
        recent: Mutex::default(),
    });
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("firstline-help socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(e) = service.connection(stream).await {
                        tracing::debug!("firstline-help connection: {e:#}");
                    }
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// The folder (made 0755 if missing, refused when others could write to
/// it) and the socket in it, mode 0666.
fn bind(path: &Path) -> Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .context("help_socket needs a folder")?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        bail!(
            "{} belongs to uid {}: the help socket's folder must be the agent's or root's",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        bail!(
            "{} is writable by others: the help socket's folder must not be (chmod 755)",
            dir.display()
        );
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path)?
        }
        Ok(_) => bail!(
            "{} exists and is not a socket: not replacing it",
            path.display()
        ),
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// The local user name of `uid` from the passwd database.
fn user_name(uid: u32) -> Result<String, String> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) if !u.name.is_empty() && u.name.len() <= 64 => Ok(u.name),
        Ok(_) => Err(format!(
            "your account (uid {uid}) has no usable name in the passwd database"
        )),
        Err(e) => Err(format!("cannot look up uid {uid}: {e}")),
    }
}

impl Service {
    async fn connection(&self, stream: UnixStream) -> Result<()> {
        let uid = stream.peer_cred()?.uid();
        let (read, mut write) = stream.into_split();
        let mut line = Vec::new();
        let mut reader = BufReader::new(read.take(MAX_REQUEST as u64 + 1));
        let read = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
        let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
        let writer = async move {
            while let Some(reply) = rx.recv().await {
                let mut text = serde_json::to_vec(&reply)?;
                text.push(b'\n');
                write.write_all(&text).await?;
            }
            write.shutdown().await?;
            anyhow::Ok(())
        };
        let request = match read {
            Err(_) => Err(Reply::error("usage", "no request within 10 s")),
            Ok(Err(e)) => Err(Reply::error(
                "usage",
                format!("cannot read the request: {e}"),
            )),
            Ok(Ok(_)) if line.len() > MAX_REQUEST => Err(Reply::error(
                "usage",
                format!("request longer than {MAX_REQUEST} bytes"),
            )),
            Ok(Ok(_)) => serde_json::from_slice::<Request>(&line)
                .map_err(|e| Reply::error("usage", format!("bad request: {e}"))),
        };
        let handle = async move {
            match (request, user_name(uid)) {
                (Err(reply), _) => {
                    let _ = tx.send(reply);
                }
                (_, Err(why)) => {
                    let _ = tx.send(Reply::error("refused", why));
                }
                (Ok(req), Ok(user)) => self.handle(uid, user, req, &tx).await,
            }
        };
        let ((), written) = tokio::join!(handle, writer);
        written
    }

    async fn handle(
        &self,
        uid: u32,
        user: String,
        req: Request,
        out: &mpsc::UnboundedSender<Reply>,
    ) {
        let reply = match req {
            Request::List {} => Some(self.list(user)),
            Request::Run { name } => match self.limit(uid) {
                Err(r) => Some(r),
                Ok(()) => self.run(uid, &user, &name, out).await,
            },
            // A usage error costs nothing; a request does.
            Request::Ask { text, after } => {
                match check_text(&text).and_then(|()| self.limit(uid)) {
                    Err(r) => Some(r),
                    Ok(()) => Some(self.ask(uid, user, text, after).await),
                }
            }
            Request::Tickets {} => Some(self.tickets(user).await),
        };
        if let Some(r) = reply {
            let _ = out.send(r);
        }
    }

    /// Count one `run` or `ask` of `uid`, or refuse it.
    fn limit(&self, uid: u32) -> Result<(), Reply> {
        let per_minute = self.cfg.config.help_rate_per_minute.max(1) as usize;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let times = recent.entry(uid).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= per_minute {
            let wait = 60
                - times
                    .front()
                    .map_or(0, |t| now.duration_since(*t).as_secs())
                    .min(59);
            return Err(Reply::error(
                "rate",
                format!("too many requests: at most {per_minute} runs and asks a minute; try again in {wait} s"),
            ));
        }
        times.push_back(now);
        Ok(())
    }

    fn list(&self, user: String) -> Reply {
        let runbooks = self
            .cfg
            .runbooks()
            .0
            .into_iter()
            .filter(|b| b.self_service)
            .map(|b| Offer {
                name: b.name,
                description: b.description,
            })
            .collect();
        Reply::Offered { user, runbooks }
    }

    async fn run(
        &self,
        uid: u32,
        user: &str,
        name: &str,
        out: &mpsc::UnboundedSender<Reply>,
    ) -> Option<Reply> {
        let prepared = match run::prepare_self_service(&self.cfg, name) {
            Ok(p) => p,
            Err((ErrorCode::BadRequest, why)) => return Some(Reply::error("usage", why)),
            Err((_, why)) => return Some(Reply::error("refused", why)),
        };
        tracing::info!(user = %user, runbook = %name, "self-service run");
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let steps = async {
            while let Some(msg) = rx.recv().await {
                let text = match msg {
                    Message::Result { result } => plain_step(&result),
                    Message::Progress { text } => match text.split_once(": skipped: ") {
                        Some((_, why)) => format!("Skipped a step: {why}"),
                        None => continue,
                    },
                    _ => continue,
                };
                let _ = out.send(Reply::Step { text });
            }
        };
        let (verdict, ()) = tokio::join!(run::drive(&self.cfg, &prepared, false, tx), steps);
        self.last_run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid, verdict.clone());
        let (article, article_note) = match &verdict.kb {
            None => (None, None),
            Some(id) => match self.live.get() {
                None => (
                    None,
                    Some("it will be shown when the help desk can be reached".into()),
                ),
                Some(conn) => match ask_article(&conn, id).await {
                    Ok(a) => (Some(Box::new(a)), None),
                    Err(e) => (
                        None,
                        Some(format!("the help desk could not send it: {e:#}")),
                    ),
                },
            },
        };
        Some(Reply::Verdict {
            verdict: Box::new(verdict),
            article,
            article_note,
        })
    }

    async fn ask(&self, uid: u32, user: String, text: String, after: Option<String>) -> Reply {
        let text = text.trim().to_string();
        let after = match after {
            None => None,
            Some(name) => {
                let last = self
                    .last_run
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&uid)
                    .cloned();
                match last {
                    Some(v) if v.runbook == name => Some(v),
                    _ => {
                        return Reply::error(
                            "refused",
                            format!("`{name}` is not the last thing you ran here: run `firstline-help run {name}` first, or ask without --after"),
                        )
                    }
                }
            }
        };
        let first = text.lines().next().unwrap_or_default().to_string();
        let event = AgentEvent {
            seq: 0,
            monitor: format!("help {user}"),
            kind: EventKind::HelpRequest,
            in_incident: false,
            result: CheckResult::new("help", user.clone(), Status::Unknown, first),
            diagnostics: None,
            help: Some(HelpRequest {
                user: user.clone(),
                text,
                after,
            }),
        };
        let seq = match self.outbox.push(&event, None) {
            Ok(Some(seq)) => seq,
            Ok(None) | Err(_) => {
                return Reply::error(
                    "internal",
                    "the agent could not keep your request (its outbox); try again",
                )
            }
        };
        tracing::info!(user = %user, seq, "help request queued");
        let mut delivered = false;
        if self.live.get().is_some() {
            let end = Instant::now() + SENT_WAIT;
            while Instant::now() < end {
                if !self.outbox.holds(seq).unwrap_or(true) {
                    delivered = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Reply::Asked { user, delivered }
    }

    async fn tickets(&self, user: String) -> Reply {
        let queued = self
            .outbox
            .help_requests(&user)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                Some(QueuedAsk {
                    at: e.result.at,
                    text: e.help?.text,
                })
            })
            .collect();
        let (reachable, note, tickets) = match self.live.get() {
            None => (
                false,
                Some("the help desk cannot be reached right now".to_string()),
                vec![],
            ),
            Some(conn) => match ask_relay(&conn, &user).await {
                Ok(t) => (true, None, t),
                Err(e) => (
                    false,
                    Some(format!("the help desk cannot be reached right now ({e:#})")),
                    vec![],
                ),
            },
        };
        Reply::Tickets {
            user,
            reachable,
            note,
            tickets,
            queued,
        }
    }
}

/// The text of an `ask`: something, and not too much.
fn check_text(text: &str) -> Result<(), Reply> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Reply::error(
            "usage",
            "say what the problem is: firstline-help ask \"TEXT\"",
        ));
    }
    if text.len() > HELP_TEXT {
        return Err(Reply::error(
            "usage",
            format!("the text is {} bytes; at most {HELP_TEXT}", text.len()),
        ));
    }
    Ok(())
}

async fn ask_relay(conn: &Connection, user: &str) -> Result<Vec<HelpTicket>> {
    let msg = Message::HelpTickets { user: user.into() };
    let (_send, mut recv) = firstline_net::stream::request(conn, msg).await?;
    match recv.recv_within(TICKETS_TIMEOUT).await? {
        Some(Message::HelpTicketsList { tickets }) => Ok(tickets),
        Some(Message::Error { message, .. }) => bail!("{message}"),
        other => bail!("unexpected answer: {:?}", other.map(|m| m.kind())),
    }
}

/// The knowledge-base article `id`, from the relay's `kb/` folder.
async fn ask_article(conn: &Connection, id: &str) -> Result<KbArticle> {
    let msg = Message::KbShow { id: id.into() };
    let (_send, mut recv) = firstline_net::stream::request(conn, msg).await?;
    match recv.recv_within(TICKETS_TIMEOUT).await? {
        Some(Message::KbArticle(a)) => Ok(a),
        Some(Message::Error { message, .. }) => bail!("{message}"),
        other => bail!("unexpected answer: {:?}", other.map(|m| m.kind())),
    }
}

/// A step's result in plain words: `Checked disk /: OK — 42% used`.
pub fn plain_step(r: &CheckResult) -> String {
    let what = match r.status {
        Status::Ok => "OK",
        Status::Warn => "needs attention",
        Status::Crit => "a problem",
        Status::Unknown => "could not tell",
    };
    let summary = r.summary.lines().next().unwrap_or_default();
    format!("Checked {} {}: {what} — {summary}", r.check, r.target)
}
