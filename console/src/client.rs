//! The console's connection to the relay, as an operator.
//!
//! Every command opens one connection with the operator's credential and
//! one stream per request; answers are read until the final message.

use anyhow::{anyhow, bail, Context, Result};
use firstline_net::credential::Credential;
use firstline_net::endpoint;
use firstline_net::stream::request;
use firstline_net::{FramedRecv, LinkError};
use firstline_proto::{ErrorCode, Message};
use quinn::{Connection, Endpoint};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Give up connecting after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `firstline login` keeps the credential.
pub fn credential_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("firstline").join("credential.toml")
}

/// An error the relay answered with; the CLI exits 1 with its message.
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
        let tls = credential
            .client_config()
            .map_err(|e| anyhow!("bad credential: {e}"))?;
        let remote = endpoint::resolve(&credential.relay).map_err(|e| anyhow!(e))?;
        let endpoint = endpoint::client(tls, remote, Default::default())?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, endpoint::connect(&endpoint, remote))
            .await
            .map_err(|_| {
                anyhow!(
                    "relay {} did not answer within {}s",
                    credential.relay,
                    CONNECT_TIMEOUT.as_secs()
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

    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        endpoint::finish(&self.endpoint).await;
    }
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
