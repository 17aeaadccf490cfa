//! quinn endpoints with firstline's transport limits.

use crate::identity::{cert_info, CertInfo};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Connection, Endpoint, ServerConfig, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Transport knobs; the relay reads them from `relay.toml`, the agent from
/// `agent.toml`, so every timeout is configuration, not a literal.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    /// Concurrent request streams the peer may open.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            max_streams: 64,
        }
    }
}

/// Bytes a peer may have in flight to us on one stream: one largest frame
/// and a little more, so a frame never waits on flow control.
pub const STREAM_RECEIVE_WINDOW: u32 = (firstline_proto::MAX_FRAME_LEN + 64 * 1024) as u32;
/// Bytes a peer may have in flight to us on all its streams together.
/// quinn's default is unbounded: any peer — before authentication too —
/// could make us buffer one stream window per open stream.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 2 * STREAM_RECEIVE_WINDOW;

/// Concurrent streams an agent may open: its requests of the relay
/// (events, facts, renewal, a local user's help) are few at a time, and
/// more only wait for a free one.
pub const AGENT_STREAMS: u32 = 8;

/// Streams a peer may open before the relay knows who it is — and an
/// enrolling peer ever: its one request (`enroll`, or an agent's `hello`,
/// or a console's first request) needs one.
pub const UNAUTHENTICATED_STREAMS: u32 = 1;

/// Bytes a peer may have in flight to the relay, on all its streams,
/// before it is authenticated (and an enrolling peer ever): room for one
/// enrollment request ([`firstline_proto::limits::ENROLL_FRAME`]) or
/// `hello` and its framing, twice. A larger first request of an operator
/// waits on flow control until the relay has checked its certificate.
pub const UNAUTHENTICATED_RECEIVE_WINDOW: u32 = (2 * firstline_proto::limits::ENROLL_FRAME) as u32;

/// The peer proved who it is: let it open up to `streams` request streams
/// at once and have [`CONNECTION_RECEIVE_WINDOW`] bytes in flight.
pub fn authenticated(conn: &Connection, streams: u32) {
    conn.set_receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(streams));
}

/// The transport every firstline endpoint uses (the load generator's
/// simulated agents too).
pub fn transport(limits: Limits) -> Arc<TransportConfig> {
    Arc::new(transport_config(limits))
}

fn transport_config(limits: Limits) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(limits.keep_alive));
    t.max_idle_timeout(limits.idle_timeout.try_into().ok());
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    // No path MTU discovery: firstline's messages are small, so larger
    // datagrams gain next to nothing, while every probe is a datagram of
    // ~1,450 bytes of PADDING that the receiver parses frame by frame —
    // quinn's frame parsing was ~8 % of the relay's CPU during a ramp of
    // agents (BENCHMARKS.md "Profiles"). QUIC's 1,200-byte minimum works on
    // every path QUIC works on.
    t.mtu_discovery_config(None);
    t
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A relay endpoint bound to `addr`.
///
/// `reset_secret` keys QUIC stateless resets. The relay keeps it on disk so
/// that after a restart (even kill -9) it answers packets of connections it
/// no longer knows with a reset the peer recognises: agents learn at their
/// next keep-alive that the old connection is gone and reconnect at once,
/// instead of waiting for their idle timeout.
pub fn server(
    tls: rustls::ServerConfig,
    addr: SocketAddr,
    limits: Limits,
    reset_secret: &[u8],
) -> Result<Endpoint, EndpointError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    // Until the relay knows who the peer is, and for an enrolling peer
    // throughout: one stream and a few KiB in flight, so a connection
    // without a credential makes the relay buffer no more than one
    // enrollment request. Agents and operators get more once
    // authenticated ([`authenticated`]).
    let first = Limits {
        max_streams: UNAUTHENTICATED_STREAMS,
        ..limits
    };
    let mut t = transport_config(first);
    t.receive_window(VarInt::from_u32(UNAUTHENTICATED_RECEIVE_WINDOW));
    config.transport_config(Arc::new(t));
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_secret);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
    // Connection IDs must also validate across restarts, or packets of old
    // connections are dropped as invalid before a reset can be sent.
    let digest = ring::digest::digest(&ring::digest::SHA256, reset_secret);
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&digest.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| EndpointError::Bind { addr, source })?;
    enlarge_buffers(&socket);
    let runtime = Arc::new(quinn::TokioRuntime);
    let bind_error = |source| EndpointError::Bind { addr, source };
    let socket =
        OneDatagram(quinn::Runtime::wrap_udp_socket(&*runtime, socket).map_err(bind_error)?);
    Endpoint::new_with_abstract_socket(endpoint_config, Some(config), Arc::new(socket), runtime)
        .map_err(bind_error)
}

/// The relay's UDP socket, sending one datagram per send call.
///
/// quinn gives every connection a send buffer that keeps the capacity of
/// the largest batch it ever built: with segmentation offload (GSO) a
/// handshake flight or a burst fills up to ~10 datagrams, and each held
/// connection then kept ~13 KiB of the relay's ~41 KiB per idle agent
/// (heaptrack, BENCHMARKS.md "Profiles"). One datagram per batch keeps it
/// at one MTU (~1.4 KiB). What it costs is a `sendmsg` per datagram where
/// GSO would batch several — firstline's requests and answers are a packet
/// or two, and the ramp and fan-out figures did not get worse.
#[derive(Debug)]
struct OneDatagram(Arc<dyn quinn::AsyncUdpSocket>);

impl quinn::AsyncUdpSocket for OneDatagram {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        self.0.clone().create_io_poller()
    }
    fn try_send(&self, transmit: &quinn::udp::Transmit) -> std::io::Result<()> {
        self.0.try_send(transmit)
    }
    fn poll_recv(
        &self,
        cx: &mut std::task::Context,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
    fn max_transmit_segments(&self) -> usize {
        1
    }
    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }
    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

/// UDP socket buffers the relay asks for. One socket carries every peer's
/// packets: with the kernel default (208 KiB) a burst of handshakes — a
/// fleet reconnecting after a relay restart — overflows it, and each dropped
/// Initial is only resent after QUIC's probe timeout (1 s, then 2 s, 4 s…).
/// Measured with 2,000 agents: 100 handshakes/s and a 7 s p99 with the
/// default, see BENCHMARKS.md. The kernel caps the request at
/// `net.core.rmem_max` / `net.core.wmem_max`.
pub const SERVER_SOCKET_BUFFER: usize = 8 << 20;

fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(SERVER_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SERVER_SOCKET_BUFFER);
    // Linux reports twice the size it grants (the rest is its bookkeeping).
    let granted = sock.recv_buffer_size().map(|n| n / 2).unwrap_or(0);
    if granted < SERVER_SOCKET_BUFFER {
        tracing::info!(
            "UDP receive buffer is {} KiB (capped by net.core.rmem_max); for thousands of \
             agents raise it, e.g. sysctl -w net.core.rmem_max={SERVER_SOCKET_BUFFER}",
            granted / 1024
        );
    }
}

/// A client endpoint on an ephemeral port, of the family of `remote`.
pub fn client(
    tls: rustls::ClientConfig,
    remote: SocketAddr,
    limits: Limits,
) -> Result<Endpoint, EndpointError> {
    let local: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().expect("literal address")
    } else {
        "0.0.0.0:0".parse().expect("literal address")
    };
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(limits));
    let mut endpoint = Endpoint::client(local).map_err(|source| EndpointError::Bind {
        addr: local,
        source,
    })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Connect to the relay (checking its certificate for [`RELAY_SERVER_NAME`]).
///
/// [`RELAY_SERVER_NAME`]: firstline_proto::RELAY_SERVER_NAME
pub async fn connect(endpoint: &Endpoint, remote: SocketAddr) -> Result<Connection, String> {
    let connecting = endpoint
        .connect(remote, firstline_proto::RELAY_SERVER_NAME)
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| describe_connection_error(&e))
}

/// Let a client endpoint send its CONNECTION_CLOSE, without waiting out
/// the whole draining period (3 PTO, ~90 ms on loopback) that
/// `wait_idle` would: the peer learns at once that we left, and a CLI
/// command does not pay 90 ms for it.
pub async fn finish(endpoint: &Endpoint) {
    let _ = tokio::time::timeout(Duration::from_millis(5), endpoint.wait_idle()).await;
}

/// A one-line explanation of a failed connection.
pub fn describe_connection_error(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::TimedOut => "no answer from the relay (timed out)".into(),
        quinn::ConnectionError::ApplicationClosed(close) => {
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        quinn::ConnectionError::TransportError(t) => format!("TLS/QUIC error: {t}"),
        quinn::ConnectionError::ConnectionClosed(c) => format!("closed by the relay: {c}"),
        other => other.to_string(),
    }
}

/// The ALPN protocol the handshake settled on.
pub fn alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// The peer's verified leaf certificate, if it presented one.
pub fn peer_cert(conn: &Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

/// Identity, serial and validity of the peer's verified certificate.
pub fn peer_info(conn: &Connection) -> Option<CertInfo> {
    cert_info(&peer_cert(conn)?).ok()
}

/// Resolve `HOST:PORT` (or `IP:PORT`, or `HOST` with the default port).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let with_port = if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{}", firstline_proto::DEFAULT_PORT)
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve relay address `{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("relay address `{addr}` resolves to nothing"))
}
