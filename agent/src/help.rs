//! Tier 0: the agent's side of `firstline-help`, the tool of the person
//! at the machine — a local Unix socket, one small line-delimited JSON
//! protocol on it, and what each request may do.
//!
//! **Who is asking.** Any local account may connect: the socket
//! (`help_socket` in agent.toml, default [`DEFAULT_SOCKET`]) is mode 0666
//! in a folder the agent creates mode 0755. Users trust whatever answers
//! at that path, so nobody else may be able to put their own socket there:
//! the folder is opened without following a symlink and checked on its
//! open handle — refused when another account owns it or others may write
//! to it, sticky or not (a `/tmp`-like folder lets anyone take the name
//! first), and so is every folder above it that others could rename it
//! out of ([`open_folder`]). The socket is bound through that handle, so a
//! swap after the check cannot place it elsewhere. The agent never
//! believes what the client says of itself: it reads the kernel's peer
//! credentials of the connection (`SO_PEERCRED`) and names the user from
//! the passwd database. No password, no network, no token.
//!
//! **Fair to every user.** The accept loop never waits: each connection is
//! counted against its peer uid, at most [`PER_USER`] open at once per
//! user (more are answered `busy` at once), 16 served at once in all — so
//! one user holding idle connections cannot lock the others out.
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
use anyhow::{anyhow, bail, Context, Result};
use firstline_proto::event::{HelpRequest, HelpTicket, HELP_TEXT};
use firstline_proto::kb::KbArticle;
use firstline_proto::runbook::Verdict;
use firstline_proto::{AgentEvent, CheckResult, ErrorCode, EventKind, Message, Status};
use quinn::Connection;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// Where `firstline-help` finds the agent unless agent.toml says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/firstline-agent/help.sock";
/// Longest request line, in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once, of all users (the rest wait, up to
/// [`READ_TIMEOUT`]).
const CONNECTIONS: usize = 16;
/// Connections one local user (peer uid) may have open at once, served or
/// waiting; more are refused at once with a `busy` error, so no one user
/// can hold every slot and lock the others out.
pub const PER_USER: usize = 4;
/// Refusals being answered at once (past that, a refused connection is
/// closed without an answer).
const REFUSALS: usize = 64;
/// Time spent answering a refused connection.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
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
    let socket = bind(&path)?;
    tracing::info!(socket = %path.display(), "firstline-help socket ready");
    let service = Arc::new(Service {
        cfg,
        outbox,
        live,
        last_run: Mutex::default(),
        recent: Mutex::default(),
    });
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let open = Arc::new(PerUser::default());
    loop {
        tokio::select! {
            accepted = socket.listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("firstline-help socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Never wait here: the accept loop serves every user.
                let uid = match stream.peer_cred() {
                    Ok(c) => c.uid(),
                    Err(e) => {
                        tracing::debug!("firstline-help connection without credentials: {e}");
                        continue;
                    }
                };
                let Some(entered) = open.enter(uid) else {
                    tracing::debug!(uid, "firstline-help: over {PER_USER} connections of one user, refused");
                    // Bounded: past REFUSALS at once, closed without a word.
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream, Reply::error(
                                "busy",
                                format!("you already have {PER_USER} requests open with the help service on this computer; wait for them to end (or close them) and try again"),
                            ))
                            .await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                let (service, slots) = (service.clone(), slots.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(READ_TIMEOUT, slots.acquire_owned()).await {
                        Ok(Ok(slot)) => {
                            if let Err(e) = service.connection(stream, uid).await {
                                tracing::debug!("firstline-help connection: {e:#}");
                            }
                            drop(slot);
                        }
                        _ => {
                            refuse(stream, Reply::error(
                                "busy",
                                "the help service is busy; try again in a moment",
                            ))
                            .await
                        }
                    }
                    drop(entered);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    socket.remove();
    Ok(())
}

/// How many connections each user (peer uid) has open, waiting or served.
#[derive(Default)]
struct PerUser(Mutex<HashMap<u32, usize>>);

/// One open connection of `uid`, counted until dropped.
struct Entered {
    open: Arc<PerUser>,
    uid: u32,
}

impl PerUser {
    /// Count one more connection of `uid`, or `None` when it has
    /// [`PER_USER`] already.
    fn enter(self: &Arc<Self>, uid: u32) -> Option<Entered> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(uid).or_default();
        if *n >= PER_USER {
            return None;
        }
        *n += 1;
        Some(Entered {
            open: self.clone(),
            uid,
        })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut open = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// Answer a connection that will not be served with one `error` line. Its
/// request, when already sent, is read first (closing a Unix socket with
/// unread data would make the client's read fail instead of showing
/// why); at most [`REFUSAL_WAIT`] is spent on it, and as much on the
/// answer.
async fn refuse(stream: UnixStream, reply: Reply) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64 + 1));
    let _ = tokio::time::timeout(REFUSAL_WAIT, reader.read_until(b'\n', &mut line)).await;
    let Ok(mut text) = serde_json::to_vec(&reply) else {
        return;
    };
    text.push(b'\n');
    let _ = tokio::time::timeout(REFUSAL_WAIT, async move {
        write.write_all(&text).await?;
        write.shutdown().await
    })
    .await;
}

/// The socket, bound in its checked folder ([`Folder`]), mode 0666.
struct Socket {
    listener: UnixListener,
    folder: Folder,
    name: std::ffi::OsString,
}

impl Socket {
    /// Remove the socket from its folder (by the folder's handle).
    fn remove(&self) {
        let _ = rustix::fs::unlinkat(&self.folder.fd, self.name.as_os_str(), AtFlags::empty());
    }
}

/// The help socket's folder, open: every folder on the way from `/` was
/// opened one at a time and checked on its handle, the folder itself
/// without following a symlink. What is created in it (the socket) is
/// created through this handle, never by a path that could be swapped.
struct Folder {
    fd: OwnedFd,
    path: PathBuf,
}

/// Open (and, when missing, create 0755) the folder `dir` for the help
/// socket, or say why it is unsafe. The rules, each checked on an open
/// handle (`fstat`), not on a path:
/// - the folder itself: not a symlink (opened with `O_NOFOLLOW`), owned by
///   the agent's user or root, and writable by nobody else — not even when
///   sticky (`/tmp` is refused: anyone could create the socket's name
///   first);
/// - each folder above it: owned by the agent's user or root, and not
///   writable by others unless sticky (then nobody else can rename what
///   root owns in it); a symlink on the way is followed only when the
///   agent's user or root owns it (`/var/run` → `/run`).
fn open_folder(dir: &Path) -> Result<Folder> {
    let me = rustix::process::geteuid().as_raw();
    let mut names = Vec::new();
    for c in dir.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => names.push(n),
            _ => bail!(
                "help_socket {}: give a plain absolute path (no `.` or `..`)",
                dir.display()
            ),
        }
    }
    let Some((last, above)) = names.split_last() else {
        bail!("help_socket needs a folder below /, not {}", dir.display())
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut at = PathBuf::from("/");
    let mut fd =
        rustix::fs::open("/", flags | OFlags::NOFOLLOW, Mode::empty()).context("cannot open /")?;
    check_above(&fd, &at, me)?;
    for name in above {
        at.push(name);
        let st = rustix::fs::statat(&fd, *name, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("cannot reach the help socket's folder: {}", at.display()))?;
        let follow = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            if st.st_uid != me && st.st_uid != 0 {
                bail!(
                    "{} is a symlink of uid {}: the help socket's folder must be reached through folders and links of the agent's user or root only",
                    at.display(),
                    st.st_uid
                );
            }
            OFlags::empty()
        } else {
            OFlags::NOFOLLOW
        };
        fd = rustix::fs::openat(&fd, *name, flags | follow, Mode::empty())
            .with_context(|| format!("cannot open {}", at.display()))?;
        check_above(&fd, &at, me)?;
    }
    at.push(last);
    let link = |at: &Path| {
        anyhow!(
            "{} is a symlink: the help socket's folder must be a real folder (a link could send the socket anywhere); not following it",
            at.display()
        )
    };
    let created = match rustix::fs::statat(&fd, *last, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            return Err(link(&at))
        }
        Ok(_) => false,
        // mkdirat never follows a symlink at its name: EEXIST.
        Err(Errno::NOENT) => match rustix::fs::mkdirat(&fd, *last, Mode::from_raw_mode(0o755)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => bail!("cannot create {}: {e}", at.display()),
        },
        Err(e) => bail!("cannot look at {}: {e}", at.display()),
    };
    let folder = match rustix::fs::openat(&fd, *last, flags | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(f) => f,
        Err(Errno::LOOP) => return Err(link(&at)),
        Err(Errno::NOTDIR) => bail!("{} is not a folder", at.display()),
        Err(e) => bail!("cannot open {}: {e}", at.display()),
    };
    let st = rustix::fs::fstat(&folder).with_context(|| format!("{}", at.display()))?;
    if st.st_uid != me && st.st_uid != 0 {
        bail!(
            "{} belongs to uid {}: the help socket's folder must be the agent's or root's (someone else could put their own socket there)",
            at.display(),
            st.st_uid
        );
    }
    if created {
        // The umask may have taken bits away: users must reach the socket.
        rustix::fs::fchmod(&folder, Mode::from_raw_mode(0o755))
            .with_context(|| format!("cannot chmod {}", at.display()))?;
    } else if st.st_mode & 0o022 != 0 {
        bail!(
            "{} is writable by others (mode {:04o}): the help socket's folder must not be, even sticky (someone could create the socket's name first); use a folder of its own, mode 0755",
            at.display(),
            st.st_mode & 0o7777
        );
    }
    Ok(Folder {
        fd: folder,
        path: at,
    })
}

/// A folder above the socket's: the agent's or root's, and writable by
/// others only when sticky.
fn check_above(fd: &OwnedFd, at: &Path, me: u32) -> Result<()> {
    let st = rustix::fs::fstat(fd).with_context(|| format!("{}", at.display()))?;
    if st.st_uid != me && st.st_uid != 0 {
        bail!(
            "{} belongs to uid {}: every folder above the help socket must be the agent's or root's",
            at.display(),
            st.st_uid
        );
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        bail!(
            "{} is writable by others and not sticky (mode {:04o}): the help socket's folder could be replaced",
            at.display(),
            st.st_mode & 0o7777
        );
    }
    Ok(())
}

/// The checked folder ([`open_folder`]) and the socket in it, mode 0666.
/// The socket is bound through the folder's handle
/// (`/proc/self/fd/N/NAME`), so a folder swapped after the check cannot
/// receive it; then the configured path must lead to that very socket
/// (else it is removed and the agent says so).
fn bind(path: &Path) -> Result<Socket> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .context("help_socket needs a folder")?;
    let name = path
        .file_name()
        .context("help_socket needs a file name")?
        .to_os_string();
    let folder = open_folder(dir)?;
    match rustix::fs::statat(&folder.fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Socket => {
            rustix::fs::unlinkat(&folder.fd, name.as_os_str(), AtFlags::empty())
                .with_context(|| format!("cannot remove the old socket {}", path.display()))?
        }
        Ok(_) => bail!(
            "{} exists and is not a socket: not replacing it",
            path.display()
        ),
        Err(Errno::NOENT) => {}
        Err(e) => bail!("cannot look at {}: {e}", path.display()),
    }
    let mut through = PathBuf::from(format!("/proc/self/fd/{}", folder.fd.as_raw_fd()));
    through.push(&name);
    let listener = UnixListener::bind(&through).with_context(|| {
        format!(
            "cannot listen on {} (bound as {})",
            path.display(),
            through.display()
        )
    })?;
    let socket = Socket {
        listener,
        folder,
        name,
    };
    let placed = rustix::fs::statat(
        &socket.folder.fd,
        socket.name.as_os_str(),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    let reached = rustix::fs::stat(path);
    match (placed, reached) {
        (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino => {}
        _ => {
            socket.remove();
            bail!(
                "{} does not lead to the socket made in {} (a folder on the way changed meanwhile): not serving",
                path.display(),
                socket.folder.path.display()
            );
        }
    }
    rustix::fs::chmodat(
        &socket.folder.fd,
        socket.name.as_os_str(),
        Mode::from_raw_mode(0o666),
        AtFlags::empty(),
    )
    .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(socket)
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
    async fn connection(&self, stream: UnixStream, uid: u32) -> Result<()> {
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
