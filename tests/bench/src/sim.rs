//! A simulated agent: a real QUIC + mutual TLS connection with a real
//! certificate from the relay's CA, speaking the agent protocol (`hello` →
//! `welcome`; answers `exec` with a `disk`-shaped result; sends monitoring
//! `events` and reads the `ack`) — but no checks, scheduler or outbox, so
//! thousands share a few threads.

use anyhow::{anyhow, bail, Context, Result};
use firstline_net::stream::{accept_request, request};
use firstline_net::tls::{Handshake, Sessions};
use firstline_proto::{
    AgentEvent, CheckResult, ErrorCode, EventKind, Hello, Message, Status, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, TransportConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The transport of a real agent: `agent.toml`'s defaults are keep-alive
/// 5 s, idle timeout 20 s, 64 request streams.
pub fn transport(keep_alive: Duration, idle_timeout: Duration) -> Arc<TransportConfig> {
    let limits = firstline_net::endpoint::Limits {
        keep_alive,
        idle_timeout,
        ..Default::default()
    };
    firstline_net::endpoint::transport(limits)
}

/// Client config for one identity (`identity.pem`: certificate then key),
/// kept in `sessions` as a real agent keeps it, so that a reconnect
/// resumes the TLS session; the handshake's kind is told by the second
/// value once connected.
pub fn client_config(
    identity_pem: &str,
    ca: &[rustls::pki_types::CertificateDer<'static>],
    transport: Arc<TransportConfig>,
    sessions: &mut Sessions,
) -> Result<(quinn::ClientConfig, Handshake)> {
    let chain = firstline_net::pem::certs(identity_pem)?;
    let key = firstline_net::pem::key(identity_pem)?;
    let (tls, handshake) = sessions.client_config(chain, key, ca)?;
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| anyhow!("{e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport);
    Ok((config, handshake))
}

/// A client endpoint on an ephemeral loopback port, with socket buffers as
/// large as the relay's (many agents share it: the generator must not be
/// the one dropping packets).
pub fn endpoint() -> Result<Endpoint> {
    let local: SocketAddr = "127.0.0.1:0".parse().context("literal address")?;
    let socket = std::net::UdpSocket::bind(local).context("cannot bind a client endpoint")?;
    let sock = socket2::SockRef::from(&socket);
    let size = firstline_net::endpoint::SERVER_SOCKET_BUFFER;
    let _ = sock.set_recv_buffer_size(size);
    let _ = sock.set_send_buffer_size(size);
    Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .context("cannot start a client endpoint")
}

/// Handshake and `hello` → `welcome`.
pub async fn connect(
    ep: &Endpoint,
    relay: SocketAddr,
    config: quinn::ClientConfig,
    name: &str,
) -> Result<Connection> {
    let conn = ep
        .connect_with(config, relay, firstline_proto::RELAY_SERVER_NAME)?
        .await
        .map_err(|e| anyhow!(firstline_net::endpoint::describe_connection_error(&e)))?;
    let hello = Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION,
        software: "bench".into(),
        os: "simulated".into(),
        hostname: name.into(),
        capabilities: vec!["disk".into()],
        central_digest: None,
    };
    let (_send, mut recv) = request(&conn, Message::Hello(hello)).await?;
    match recv.recv_within(ANSWER_TIMEOUT).await? {
        Some(Message::Welcome(_)) => Ok(conn),
        other => bail!("unexpected answer to hello: {other:?}"),
    }
}

/// A canned `disk /` result.
pub fn disk_result() -> CheckResult {
    let mut r = CheckResult::new("disk", "/", Status::Ok, "/: 41.7% used, 58.1 GiB free")
        .metric("used_pct", 41.7)
        .metric("free_bytes", 62_383_636_480.0)
        .metric("total_bytes", 107_374_182_400.0)
        .metric("inodes_used_pct", 3.2);
    r.duration_ms = 1;
    r.at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    r
}

/// Serve the relay's requests until the connection ends.
pub async fn serve(conn: Connection) {
    loop {
        match accept_request(
            &conn,
            Duration::from_secs(10),
            firstline_proto::MAX_FRAME_LEN,
        )
        .await
        {
            Ok(Some((Message::Exec { .. }, mut send, _recv))) => {
                tokio::spawn(async move {
                    if send
                        .send(Message::Result {
                            result: disk_result(),
                        })
                        .await
                        .is_ok()
                    {
                        let _ = send.finish_with(Message::Done {}).await;
                    }
                });
            }
            Ok(Some((other, send, _recv))) => {
                send.fail(
                    ErrorCode::BadRequest,
                    format!("simulated agents do not serve `{}`", other.kind()),
                )
                .await
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

/// An `incident_opened` event for monitor `bench-SEQ`, crit.
pub fn alert(seq: u64) -> AgentEvent {
    let mut result = CheckResult::new(
        "disk",
        "/var",
        Status::Crit,
        "/var: 97.0% used, 1.2 GiB free",
    )
    .metric("used_pct", 97.0);
    result.duration_ms = 1;
    result.at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    AgentEvent {
        seq,
        monitor: format!("bench-{seq}"),
        kind: EventKind::IncidentOpened,
        in_incident: true,
        result,
        diagnostics: None,
        help: None,
    }
}

/// Send events and wait for the relay's acknowledgement; returns `upto`.
pub async fn send_events(conn: &Connection, events: Vec<AgentEvent>) -> Result<u64> {
    let (_send, mut recv) = request(conn, Message::Events { events }).await?;
    match recv.recv_within(ANSWER_TIMEOUT).await? {
        Some(Message::Ack { upto }) => Ok(upto),
        other => bail!("unexpected answer to events: {other:?}"),
    }
}

/// Run `check` on `agent` through the relay, as a console does; returns
/// once the result is in.
pub async fn run_check(
    conn: &Connection,
    agent: &str,
    check: &str,
    args: &[&str],
) -> Result<CheckResult> {
    let (_send, mut recv) = request(
        conn,
        Message::Run {
            agent: agent.into(),
            check: check.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ticket: None,
            queue_for_secs: None,
        },
    )
    .await?;
    let mut result = None;
    loop {
        match recv.recv_within(ANSWER_TIMEOUT).await? {
            Some(Message::Result { result: r }) => result = Some(r),
            Some(Message::Progress { .. }) => {}
            Some(Message::Done {}) | None => break,
            Some(Message::Error { message, .. }) => bail!("{message}"),
            Some(other) => bail!("unexpected `{}`", other.kind()),
        }
    }
    result.ok_or_else(|| anyhow!("no result"))
}

/// What a bulk action told: how many agents were selected, the in-flight
/// bound the relay used, and each agent's item with the time it came.
pub struct BulkAnswer {
    pub selected: u64,
    pub max_in_flight: u32,
    pub items: Vec<(firstline_proto::action::BulkItem, std::time::Duration)>,
}

/// `run CHECK ARGS… --select SEL` through the relay's bulk path, as the
/// console sends it: `bulk_started`, one `bulk_item` per agent, `done`.
/// Each item's time is from the start of the request.
pub async fn bulk_check(
    conn: &Connection,
    select: &str,
    check: &str,
    args: &[&str],
    max_in_flight: Option<u32>,
) -> Result<BulkAnswer> {
    let t0 = std::time::Instant::now();
    let action = firstline_proto::action::Action::Run {
        check: check.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
    };
    let (_send, mut recv) = request(
        conn,
        Message::Bulk {
            select: select.into(),
            action,
            ticket: None,
            max_in_flight,
            queue_for_secs: None,
        },
    )
    .await?;
    let mut answer = BulkAnswer {
        selected: 0,
        max_in_flight: 0,
        items: Vec::new(),
    };
    loop {
        match recv.recv_within(ANSWER_TIMEOUT).await? {
            Some(Message::BulkStarted {
                selected,
                max_in_flight,
            }) => {
                answer.selected = selected;
                answer.max_in_flight = max_in_flight;
                answer.items.reserve(selected as usize);
            }
            Some(Message::BulkItem(item)) => answer.items.push((*item, t0.elapsed())),
            Some(Message::Done {}) | None => break,
            Some(Message::Error { message, .. }) => bail!("{message}"),
            Some(other) => bail!("unexpected `{}`", other.kind()),
        }
    }
    Ok(answer)
}

/// `list_agents`, as a console asks it: every agent, in parts.
pub async fn list_agents(conn: &Connection) -> Result<Vec<firstline_proto::AgentInfo>> {
    let (_send, mut recv) = request(conn, Message::ListAgents {}).await?;
    let mut all = Vec::new();
    loop {
        match recv.recv_within(ANSWER_TIMEOUT).await? {
            Some(Message::Agents { agents }) => all.extend(agents),
            Some(Message::Done {}) | None => break,
            Some(Message::Error { message, .. }) => bail!("{message}"),
            Some(other) => bail!("unexpected `{}`", other.kind()),
        }
    }
    Ok(all)
}
