//! The console's connection to the relay, as an operator.
//!
//! Every command opens one connection with the operator's credential and
//! one stream per request; answers are read until the final message.

use anyhow::{anyhow, bail, Context, Result};
use firstline_net::cli::{usage_line, UsageError};
use firstline_net::credential::Credential;
use firstline_net::endpoint;
use firstline_net::stream::request;
use firstline_net::tls::Sessions;
use firstline_net::{FramedRecv, LinkError};
use firstline_proto::{ErrorCode, Message};
use quinn::{Connection, Endpoint};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Give up connecting after this long, unless `--connect-timeout` or
/// [`TIMEOUT_ENV`] say otherwise: a relay that is down is reported within
/// a few seconds, even where no ICMP error tells QUIC so at once.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The environment variable that sets the connect timeout (`5s`, `500ms`).
pub const TIMEOUT_ENV: &str = "FIRSTLINE_CONNECT_TIMEOUT";

static CONNECT_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Set the connect timeout from `--connect-timeout` (first) or
/// [`TIMEOUT_ENV`]; a value that is not a duration is a usage error.
pub fn set_connect_timeout(flag: Option<&str>) -> Result<()> {
    let (text, source) = match flag {
        Some(t) => (t.to_string(), "--connect-timeout"),
        None => match std::env::var(TIMEOUT_ENV) {
            Ok(t) if !t.trim().is_empty() => (t, TIMEOUT_ENV),
            _ => return Ok(()),
        },
    };
    let d = parse_duration(&text).ok_or_else(|| {
        UsageError(format!(
            "{source} `{text}` is not a duration (write 3s, 500ms or 1m)"
        ))
    })?;
    let _ = CONNECT_TIMEOUT.set(d);
    Ok(())
}

fn connect_timeout() -> Duration {
    *CONNECT_TIMEOUT.get().unwrap_or(&DEFAULT_CONNECT_TIMEOUT)
}

/// `3s`, `500ms`, `1m`, or a bare number of seconds; more than zero.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0 && v * scale <= 3600.0).then(|| Duration::from_secs_f64(v * scale))
}

/// A duration as a person reads it: `3 s`, `500 ms`.
fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Where `firstline login` keeps the credential.
pub fn credential_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("firstline").join("credential.toml")
}

/// An error the relay answered with; the CLI exits 1 with its message, or
/// 2 when it is a usage error ([`classify`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RelayRefused {
    pub code: ErrorCode,
    pub message: String,
}

pub struct Client {
    endpoint: Endpoint,
    pub conn: Connection,
    pub credential: Credential,
}

impl Client {
    /// Connect with the credential at `path`, or the logged-in one.
    pub async fn connect(path: Option<&Path>) -> Result<Client> {
        let path = path.map(Path::to_path_buf).unwrap_or_else(credential_path);
        if !path.exists() {
            return Err(firstline_net::cli::UsageError(format!(
                "not logged in: no credential at {}; run `firstline login --credential FILE` with a file from `firstline-relay operator add`",
                path.display()
            ))
            .into());
        }
        let credential = Credential::load(&path)?;
        Self::connect_with(credential).await
    }

    pub async fn connect_with(credential: Credential) -> Result<Client> {
        Self::connect_resuming(credential, &mut Sessions::default()).await
    }

    /// Connect with the config kept in `sessions`: a process that connects
    /// again (the web console) resumes its TLS session.
    pub async fn connect_resuming(
        credential: Credential,
        sessions: &mut Sessions,
    ) -> Result<Client> {
        let (tls, _) = credential
            .resuming(sessions)
            .map_err(|e| anyhow!("bad credential: {e}"))?;
        let remote = endpoint::resolve(&credential.relay).map_err(|e| anyhow!(e))?;
        let endpoint = endpoint::client(tls, remote, Default::default())?;
        let timeout = connect_timeout();
        let conn = tokio::time::timeout(timeout, endpoint::connect(&endpoint, remote))
            .await
            .map_err(|_| {
                anyhow!(
                    "relay {} does not answer (is it running? is UDP port {} open from here?); gave up after {}: `--connect-timeout 10s` or {TIMEOUT_ENV}=10s waits longer",
                    credential.relay,
                    remote.port(),
                    show(timeout)
                )
            })?
            .map_err(|e| anyhow!("cannot connect to relay {}: {e}", credential.relay))?;
        Ok(Client {
            endpoint,
            conn,
            credential,
        })
    }

    /// Send a request and return its single final answer.
    pub async fn call(&self, msg: Message) -> Result<Message> {
        let mut stream = self.stream(msg).await?;
        match stream.next().await? {
            Some(answer) => Ok(answer),
            None => bail!("the relay ended the stream without an answer"),
        }
    }

    /// Every agent: `agents` parts until `done`.
    pub async fn agents(&self) -> Result<Vec<firstline_proto::AgentInfo>> {
        let mut all = Vec::new();
        for part in self.parts(Message::ListAgents {}).await? {
            match part {
                Message::Agents { agents } => all.extend(agents),
                other => bail!("unexpected answer: {}", other.kind()),
            }
        }
        Ok(all)
    }

    /// A list answered in parts: every message until `done`.
    pub async fn parts(&self, msg: Message) -> Result<Vec<Message>> {
        let mut answers = self.stream(msg).await?;
        let mut parts = Vec::new();
        while let Some(msg) = answers.next().await? {
            match msg {
                Message::Done {} => return Ok(parts),
                other => parts.push(other),
            }
        }
        bail!("the relay ended its answer early")
    }

    /// Send a request and read its answers one by one.
    pub async fn stream(&self, msg: Message) -> Result<Answers> {
        let (_send, recv) = request(&self.conn, msg)
            .await
            .map_err(|e| self.explain(e))?;
        Ok(Answers {
            recv,
            conn: self.conn.clone(),
        })
    }

    fn explain(&self, e: LinkError) -> anyhow::Error {
        explain(&self.conn, e)
    }

    /// Close the connection: the relay gets our CONNECTION_CLOSE, and we
    /// do not wait for anything more (see [`close_now`]).
    pub async fn close(self) {
        close_now(&self.conn).await;
        drop(self.endpoint);
    }
}

/// Longest a closing command waits for its CONNECTION_CLOSE to leave.
const CLOSE_SEND_LIMIT: Duration = Duration::from_millis(5);

/// Close `conn` and return once its CONNECTION_CLOSE has been handed to
/// the socket, so the relay frees the connection at once instead of after
/// its idle timeout. Nothing else is waited for: every answer has been
/// read, and the draining period (3 PTO) that `Endpoint::wait_idle` sits
/// out only serves packets that a process about to exit will not read.
///
/// After `close` the connection is in its closed state, where the next
/// datagram it produces is the one carrying CONNECTION_CLOSE; its driver
/// counts a datagram (`udp_tx`) and sends it within one poll under the
/// connection's lock, so a higher count seen here means it has been sent.
pub async fn close_now(conn: &Connection) {
    if conn.close_reason().is_some() {
        return; // closed already (by the relay, or timed out): nothing to send
    }
    let before = conn.stats().udp_tx.datagrams;
    conn.close(0u32.into(), b"bye");
    let sent = async {
        while conn.stats().udp_tx.datagrams == before {
            tokio::task::yield_now().await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_SEND_LIMIT, sent).await;
}

/// A link error, with the relay's close reason when it closed on us.
fn explain(conn: &Connection, e: LinkError) -> anyhow::Error {
    match conn.close_reason() {
        Some(reason) => anyhow!(
            "the relay closed the connection: {}",
            endpoint::describe_connection_error(&reason)
        ),
        None => anyhow!(e),
    }
}

/// Error codes that mean the request itself was wrong (exit status 2): a
/// name that does not exist, arguments the agent could not parse.
const USAGE_CODES: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::UnknownCheck,
    ErrorCode::UnknownAgent,
    ErrorCode::UnknownTicket,
    ErrorCode::UnknownOperator,
];

/// The relay's refusal as the CLI reports it: a usage error (exit 2) for
/// [`USAGE_CODES`], else as it is (exit 1); its message on one line, with
/// the agent's prefix once and clap's `error: ` dropped, clap's usage line
/// kept with the program named `command` (`firstline run pc1 disk`).
/// Other errors pass unchanged.
pub fn classify(e: anyhow::Error, command: Option<&str>) -> anyhow::Error {
    let Some(r) = e.downcast_ref::<RelayRefused>() else {
        return e;
    };
    let message = one_line(&r.message, command);
    if USAGE_CODES.contains(&r.code) {
        UsageError(message).into()
    } else {
        RelayRefused {
            code: r.code,
            message,
        }
        .into()
    }
}

/// `agent `pc1`: error: unexpected argument…\n\nUsage: disk…` as
/// `agent `pc1`: unexpected argument… ; usage: firstline run pc1 disk …`.
pub fn one_line(message: &str, command: Option<&str>) -> String {
    let (prefix, rest) = split_agent(message);
    let rest = if rest.starts_with("error: ") || rest.contains('\n') {
        usage_line(rest, command)
    } else {
        rest.to_string()
    };
    format!("{prefix}{rest}")
}

/// `agent `NAME`: ` (the relay's prefix of an agent's answer) and the rest.
pub fn split_agent(message: &str) -> (&str, &str) {
    for start in ["agent `", "from agent `"] {
        if let Some(r) = message.strip_prefix(start) {
            if let Some(at) = r.find("`: ") {
                let cut = start.len() + at + 3;
                return (&message[..cut], &message[cut..]);
            }
        }
    }
    ("", message)
}

/// The answers of one request; `error` messages become [`RelayRefused`].
pub struct Answers {
    recv: FramedRecv,
    conn: Connection,
}

impl Answers {
    /// The next answer; `None` after the final one.
    pub async fn next(&mut self) -> Result<Option<Message>> {
        match self.recv.recv().await {
            Ok(Some(Message::Error { code, message })) => {
                Err(RelayRefused { code, message }.into())
            }
            Ok(other) => Ok(other),
            Err(e) => Err(explain(&self.conn, e)).context("reading the relay's answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_once() {
        let m = "agent `pc1`: error: unexpected argument '--wrn' found\n\n  tip: a similar argument exists: '--warn'\n\nUsage: disk [OPTIONS] [PATH]\n\nFor more information, try '--help'.";
        let e = classify(
            RelayRefused {
                code: ErrorCode::BadRequest,
                message: m.into(),
            }
            .into(),
            Some("firstline run pc1 disk"),
        );
        assert_eq!(firstline_net::cli::exit_code(&e), 2);
        assert_eq!(
            e.to_string(),
            "agent `pc1`: unexpected argument '--wrn' found (tip: a similar argument exists: '--warn'); usage: firstline run pc1 disk [OPTIONS] [PATH]"
        );
        let e = classify(
            RelayRefused {
                code: ErrorCode::Refused,
                message: "agent `pc1`: [policy] fixes does not allow it".into(),
            }
            .into(),
            None,
        );
        assert_eq!(firstline_net::cli::exit_code(&e), 1);
        assert_eq!(
            e.to_string(),
            "agent `pc1`: [policy] fixes does not allow it"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(show(Duration::from_secs(3)), "3 s");
        assert_eq!(show(Duration::from_millis(500)), "500 ms");
    }
}
