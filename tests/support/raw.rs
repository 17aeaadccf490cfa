//! Raw QUIC peers for the attack tests: speak the wire protocol directly,
//! so a test can send what the real binaries never would.
//!
//! * [`Peer::enroll`] — first contact without a certificate, on the
//!   enrollment ALPN, the relay pinned by the CA fingerprint in a token;
//! * [`Peer::agent`] — an enrolled agent's identity (`identity.pem`,
//!   `ca.pem` in its folder) over mutual TLS;
//! * [`Peer::operator`] — an operator credential file.
//!
//! Every peer dials a relay on loopback only.

use firstline_net::endpoint;
use firstline_net::{FramedRecv, FramedSend};
use firstline_proto::{
    encode, AgentEvent, CheckResult, Envelope, EventKind, Hello, Message, Status,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a raw peer waits for an answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A tokio runtime for a test's raw peers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The CA fingerprint a token carries (`fl1.ID.SECRET.CA_SHA256`).
pub fn token_fingerprint(token: &str) -> String {
    token
        .trim()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A loopback relay address, parsed; panics on anything else (the attack
/// tests never dial off the machine).
pub fn loopback(addr: &str) -> SocketAddr {
    let a: SocketAddr = addr.parse().expect("relay address");
    assert!(a.ip().is_loopback(), "raw peers dial loopback only: {a}");
    a
}

/// One QUIC connection to the relay and the endpoint it lives on.
pub struct Peer {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

/// What a request stream brought back.
#[derive(Debug)]
pub struct Answer {
    /// Every message, the final one (`done`, `error`, an answer) included.
    pub messages: Vec<Message>,
    /// Why reading stopped early (a reset, a timeout, a lost connection).
    pub broken: Option<String>,
}

impl Answer {
    /// The `error` message's code and text, if the stream ended with one.
    pub fn error(&self) -> Option<(firstline_proto::ErrorCode, &str)> {
        self.messages.iter().find_map(|m| match m {
            Message::Error { code, message } => Some((*code, message.as_str())),
            _ => None,
        })
    }
}

impl Peer {
    /// Connect with `tls` from an endpoint bound to `local`.
    pub async fn dial(
        tls: rustls::ClientConfig,
        relay: &str,
        local: SocketAddr,
    ) -> Result<Peer, String> {
        let remote = loopback(relay);
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| format!("TLS config: {e}"))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        transport.max_idle_timeout(Duration::from_secs(30).try_into().ok());
        config.transport_config(Arc::new(transport));
        let mut ep = quinn::Endpoint::client(local).map_err(|e| format!("bind {local}: {e}"))?;
        ep.set_default_client_config(config);
        let connecting = ep
            .connect(remote, firstline_proto::RELAY_SERVER_NAME)
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| endpoint::describe_connection_error(&e))?;
        Ok(Peer { endpoint: ep, conn })
    }

    /// First contact on the enrollment ALPN, no client certificate, the
    /// relay's CA pinned by the fingerprint in `token`.
    pub async fn enroll(relay: &str, token: &str) -> Result<Peer, String> {
        Self::enroll_from(relay, token, "127.0.0.1:0".parse().expect("literal")).await
    }

    /// [`Peer::enroll`] from another source address (e.g. `127.0.0.2:0`).
    pub async fn enroll_from(relay: &str, token: &str, local: SocketAddr) -> Result<Peer, String> {
        let tls = firstline_net::tls::enroll_client_config(&token_fingerprint(token))
            .map_err(|e| e.to_string())?;
        Self::dial(tls, relay, local).await
    }

    /// An enrolled agent, from its folder's `identity.pem` and `ca.pem`.
    pub async fn agent(relay: &str, agent_dir: &Path) -> Result<Peer, String> {
        Self::agent_from(relay, agent_dir, "127.0.0.1:0".parse().expect("literal")).await
    }

    /// [`Peer::agent`] from another source address (e.g. `127.0.1.3:0`).
    pub async fn agent_from(
        relay: &str,
        agent_dir: &Path,
        local: SocketAddr,
    ) -> Result<Peer, String> {
        let read = |f: &str| {
            std::fs::read_to_string(agent_dir.join(f))
                .map_err(|e| format!("{}: {e}", agent_dir.join(f).display()))
        };
        let identity = read("identity.pem")?;
        let ca = read("ca.pem")?;
        let chain = firstline_net::pem::certs(&identity).map_err(|e| e.to_string())?;
        let key = firstline_net::pem::key(&identity).map_err(|e| e.to_string())?;
        let ca = firstline_net::pem::certs(&ca).map_err(|e| e.to_string())?;
        let tls = firstline_net::tls::client_config(chain, key, &ca).map_err(|e| e.to_string())?;
        Self::dial(tls, relay, local).await
    }

    /// An operator, from a credential file of `firstline-relay operator add`.
    pub async fn operator(credential: &Path) -> Result<Peer, String> {
        Self::operator_from(credential, "127.0.0.1:0".parse().expect("literal")).await
    }

    /// [`Peer::operator`] from another source address.
    pub async fn operator_from(credential: &Path, local: SocketAddr) -> Result<Peer, String> {
        let cred =
            firstline_net::credential::Credential::load(credential).map_err(|e| e.to_string())?;
        let tls = cred.client_config()?;
        Self::dial(tls, &cred.relay, local).await
    }

    /// Send `msg` on a new stream and read every answer until the stream
    /// ends.
    pub async fn ask(&self, msg: Message) -> Answer {
        match encode(&Envelope::new(msg)) {
            Ok(bytes) => self.ask_raw(bytes).await,
            Err(e) => Answer {
                messages: vec![],
                broken: Some(format!("cannot encode: {e}")),
            },
        }
    }

    /// Write `bytes` on a new stream (finished after them) while reading
    /// the answers: a relay that stops the stream early is seen answering.
    pub async fn ask_raw(&self, bytes: Vec<u8>) -> Answer {
        let (send, recv) = match self.conn.open_bi().await {
            Ok(s) => s,
            Err(e) => {
                return Answer {
                    messages: vec![],
                    broken: Some(format!("cannot open a stream: {e}")),
                }
            }
        };
        let writer = tokio::spawn(async move {
            let mut send = FramedSend::new(send);
            if send.send_raw(&bytes).await.is_ok() {
                let _ = send.finish();
            }
        });
        let answer = read_all(FramedRecv::new(recv)).await;
        writer.abort();
        answer
    }

    /// Send `hello` as an agent does first on every connection; the answer.
    pub async fn hello(&self, hostname: &str, os: &str, software: &str) -> Answer {
        self.ask(Message::Hello(Hello {
            version_min: firstline_proto::PROTOCOL_VERSION_MIN,
            version_max: firstline_proto::PROTOCOL_VERSION,
            software: software.into(),
            os: os.into(),
            hostname: hostname.into(),
            capabilities: vec![],
            central_digest: None,
        }))
        .await
    }

    /// Send monitoring events; the `ack`'s `upto`, or what came instead.
    pub async fn events(&self, events: Vec<AgentEvent>) -> Result<u64, String> {
        let answer = self.ask(Message::Events { events }).await;
        match answer.messages.first() {
            Some(Message::Ack { upto }) => Ok(*upto),
            _ => Err(format!("{answer:?}")),
        }
    }

    /// Close the connection and let the relay hear of it.
    pub async fn close(&self) {
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}

async fn read_all(mut recv: FramedRecv) -> Answer {
    let mut messages = Vec::new();
    loop {
        match recv.recv_within(ANSWER_TIMEOUT).await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => {
                return Answer {
                    messages,
                    broken: None,
                }
            }
            Err(e) => {
                return Answer {
                    messages,
                    broken: Some(e.to_string()),
                }
            }
        }
    }
}

/// An `incident_opened` event of `monitor` with a crit result.
pub fn incident(seq: u64, monitor: &str, summary: &str) -> AgentEvent {
    let mut result = CheckResult::new("plugin", monitor, Status::Crit, summary);
    result.at = "2026-01-01T00:00:00Z".into();
    AgentEvent {
        seq,
        monitor: monitor.into(),
        kind: EventKind::IncidentOpened,
        in_incident: true,
        result,
        diagnostics: None,
        help: None,
    }
}
