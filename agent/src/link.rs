//! The agent's one outbound connection to a relay, kept up forever.
//!
//! Each session: connect with mutual TLS, `hello` → `welcome`, then serve
//! the relay's requests (one stream each, run concurrently), deliver the
//! outbox and renew the certificate when it nears expiry. `relay` in
//! agent.toml may list several relays of one deployment: when a session
//! cannot be had or is lost, the next relay is dialled as
//! [`Failover`] decides (rounds in the listed order from the last relay that
//! worked, a capped, jittered backoff between failed rounds, and no move
//! off a relay that works). The outbox is the agent's, not the session's:
//! what one relay did not acknowledge is sent to the next. Only a
//! revocation, or a shutdown request, ends the loop.

use crate::backoff::{Failover, Outcome};
use crate::checks;
use crate::config::Loaded;
use crate::enroll::new_key_and_csr;
use crate::monitor;
use crate::monitor::central::Central;
use crate::outbox::Outbox;
use anyhow::{anyhow, bail, Context, Result};
use firstline_net::cli::UsageError;
use firstline_net::credential::write_private;
use firstline_net::endpoint::{self, describe_connection_error};
use firstline_net::stream::{self, request};
use firstline_net::Identity;
use firstline_proto::{ErrorCode, Facts, Hello, Message, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use quinn::{Connection, ConnectionError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the relay has to answer `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a request stream has to deliver its request message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that lasted this long resets the backoff and makes its relay
/// the one rounds start from; a shorter one counts as a failed attempt.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// Outbox events per `events` message.
const EVENT_BATCH: usize = 256;
/// Time the relay has to acknowledge a batch.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an empty outbox is looked at again without being told of a
/// new event.
const IDLE_OUTBOX_LOOK: Duration = Duration::from_secs(60);

/// What the link is doing, for logs and the service manager's status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected { relay: String },
    Reconnecting { reason: String, retry_in_ms: u64 },
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkState::Connecting => write!(f, "connecting"),
            LinkState::Connected { relay } => write!(f, "connected to {relay}"),
            LinkState::Reconnecting {
                reason,
                retry_in_ms,
            } => {
                write!(f, "reconnecting in {retry_in_ms} ms ({reason})")
            }
        }
    }
}

/// The relay refused this agent for good.
#[derive(Debug, thiserror::Error)]
#[error("the relay refused this agent: {0}")]
pub struct Revoked(pub String);

enum SessionEnd {
    Shutdown,
    /// A session that was welcomed and then ended.
    Lost {
        reason: String,
        held: Duration,
    },
}

/// Run the agent until shutdown (Ok) or revocation (Err): the monitors,
/// writing to the outbox, and the link, serving requests and draining it.
pub async fn run(
    cfg: Loaded,
    shutdown: watch::Receiver<bool>,
    state: watch::Sender<LinkState>,
) -> Result<()> {
    not_enrolled(&cfg)?;
    let outbox = Arc::new(Outbox::open(
        &cfg.outbox_path(),
        cfg.config.outbox_max_events,
    )?);
    let monitors = cfg.monitors();
    tracing::info!(
        count = monitors.len(),
        backlog = outbox.len().unwrap_or(0),
        "monitors scheduled"
    );
    let mut tasks = monitor::start(
        monitors,
        cfg.check_context(),
        outbox.clone(),
        shutdown.clone(),
    );
    let central = Central::start(&cfg, cfg.check_context(), outbox.clone(), shutdown.clone());
    // `firstline-help`: the person at the machine, on a local socket.
    let live = Arc::new(crate::help::Live::default());
    {
        let (cfg, outbox, live, shutdown) =
            (cfg.clone(), outbox.clone(), live.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::help::serve(cfg, outbox, live, shutdown).await {
                tracing::error!("no firstline-help socket (self-service is off): {e:#}");
            }
        });
    }
    let result = connect_forever(&cfg, outbox, &central, &live, shutdown, state).await;
    tasks.shutdown().await;
    central.stop();
    result
}

/// An agent that was never enrolled has nothing to connect with: a usage
/// error (exit 2, which systemd does not restart) that says how to enroll,
/// instead of retrying forever.
fn not_enrolled(cfg: &Loaded) -> Result<()> {
    let identity = cfg.identity_path();
    if identity.exists() {
        return Ok(());
    }
    // The form `enroll --relay` takes for several relays: commas.
    let relay = match cfg.config.relay.list() {
        [] => "HOST:4433".to_string(),
        list => list.join(","),
    };
    Err(UsageError(format!(
        "this agent is not enrolled (no {}): enroll it first with a token from \
         `firstline-relay token create`: FIRSTLINE_TOKEN=… firstline-agent enroll --relay {relay} --config {}",
        identity.display(),
        cfg.path.display()
    ))
    .into())
}

async fn connect_forever(
    cfg: &Loaded,
    outbox: Arc<Outbox>,
    central: &Arc<Central>,
    live: &crate::help::Live,
    mut shutdown: watch::Receiver<bool>,
    state: watch::Sender<LinkState>,
) -> Result<()> {
    let c = &cfg.config;
    let relays = c.relay.list();
    if relays.is_empty() {
        return Err(UsageError(format!("no `relay` in {}", cfg.path.display())).into());
    }
    let several = relays.len() > 1;
    let mut failover = Failover::new(
        relays.len(),
        Duration::from_millis(c.reconnect_min_ms),
        Duration::from_millis(c.reconnect_max_ms),
    );
    // The relay of the last session, and what happened since it ended
    // (`ADDR: reason`), to say why the agent moved when it connects again.
    let mut last_session: Option<usize> = None;
    let mut since: Vec<String> = Vec::new();
    // Each relay's TLS sessions: a ticket resumes only at the relay that
    // issued it.
    let mut sessions: Vec<_> = relays
        .iter()
        .map(|_| firstline_net::tls::Sessions::default())
        .collect();
    loop {
        let index = failover.current();
        let addr = relays[index].as_str();
        state.send_replace(LinkState::Connecting);
        let moved_from = last_session
            .filter(|&p| p != index)
            .map(|p| (relays[p].as_str(), since.join("; ")));
        let mut place = Place {
            addr,
            index,
            count: relays.len(),
            moved_from,
            sessions: &mut sessions[index],
        };
        // `reason` for the state and the one-relay log; `entry` names the
        // relay, for the logs that say why the agent moved.
        let (outcome, reason, entry) = match session(
            cfg,
            &mut place,
            &outbox,
            central,
            live,
            &mut shutdown,
            &state,
        )
        .await
        {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Lost { reason, held }) => {
                last_session = Some(index);
                since.clear();
                let outcome = if held >= STABLE_SESSION {
                    Outcome::Lost
                } else {
                    Outcome::Failed
                };
                let entry = format!("connection to {addr} lost: {reason}");
                (outcome, reason, entry)
            }
            Err(e) if e.is::<Revoked>() => return Err(e),
            Err(e) => {
                let reason = format!("{e:#}");
                let entry = match reason.contains(addr) {
                    true => reason.clone(),
                    false => format!("{addr}: {reason}"),
                };
                (Outcome::Failed, reason, entry)
            }
        };
        since.push(entry);
        if since.len() > relays.len() + 1 {
            // Bounded however long no relay answers: the first entry (why
            // the last session ended) and the latest round.
            since.remove(1);
        }
        let next = failover.next(outcome);
        let to = relays[next.index].as_str();
        if next.delay.is_zero() {
            let why = since.last().map_or("", String::as_str);
            tracing::warn!("relay {addr} unavailable ({why}); trying relay {to}");
            continue;
        }
        if !several {
            tracing::warn!(
                "link to {addr} down: {reason}; retrying in {} ms",
                next.delay.as_millis()
            );
        } else if next.round_failed {
            tracing::warn!(
                "no relay answered ({}); retrying in {} ms, from relay {to}",
                since[since.len().saturating_sub(relays.len())..].join("; "),
                next.delay.as_millis()
            );
        } else {
            tracing::warn!(
                "link to relay {addr} down: {reason}; retrying it in {} ms, then the others",
                next.delay.as_millis()
            );
        }
        state.send_replace(LinkState::Reconnecting {
            reason,
            retry_in_ms: next.delay.as_millis() as u64,
        });
        tokio::select! {
            _ = tokio::time::sleep(next.delay) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// The relay a session is with, for its logs.
struct Place<'a> {
    addr: &'a str,
    index: usize,
    count: usize,
    /// The relay of the previous session, and why the agent left it.
    moved_from: Option<(&'a str, String)>,
    /// The TLS sessions kept for this relay.
    sessions: &'a mut firstline_net::tls::Sessions,
}

/// A revocation close turns into [`Revoked`]; anything else into a reason.
fn lost(e: &ConnectionError) -> anyhow::Error {
    if let ConnectionError::ApplicationClosed(c) = e {
        if c.error_code.into_inner() == u64::from(ErrorCode::Revoked.quic_code()) {
            return Revoked(String::from_utf8_lossy(&c.reason).into_owned()).into();
        }
    }
    anyhow!(describe_connection_error(e))
}

/// One session with the relay at `place`: `Err` when none could be had
/// (or the agent is revoked), else how the welcomed session ended.
async fn session(
    cfg: &Loaded,
    place: &mut Place<'_>,
    outbox: &Arc<Outbox>,
    central: &Arc<Central>,
    live: &crate::help::Live,
    shutdown: &mut watch::Receiver<bool>,
    state: &watch::Sender<LinkState>,
) -> Result<SessionEnd> {
    let relay = place.addr;
    // A name goes to the system resolver, which blocks: off the runtime's
    // only thread.
    let remote = match relay.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let relay = relay.to_string();
            tokio::task::spawn_blocking(move || endpoint::resolve(&relay))
                .await
                .map_err(|e| anyhow!("resolving the relay's address failed: {e}"))?
                .map_err(|e| anyhow!(e))?
        }
    };
    let (tls, handshake) = cfg.tls(place.sessions)?;
    let ep = endpoint::client(tls, remote, cfg.limits())?;
    let conn = tokio::time::timeout(cfg.connect_timeout(), endpoint::connect(&ep, remote))
        .await
        .map_err(|_| {
            anyhow!(
                "no answer from {relay} within {} ms (connect_timeout_ms)",
                cfg.config.connect_timeout_ms
            )
        })?
        .map_err(|e| anyhow!("cannot connect to {relay}: {e}"))?;
    greet(&conn, central).await?;
    let welcomed = Instant::now();
    // A session resumed from the relay's ticket: no certificate signatures.
    let tls = match handshake.full() {
        true => "full",
        false => "resumed",
    };
    if place.count > 1 {
        tracing::info!(
            relay = %relay,
            name = %cfg.config.name,
            tls = %tls,
            "connected to relay {relay} ({} of {})",
            place.index + 1,
            place.count
        );
    } else {
        tracing::info!(relay = %relay, name = %cfg.config.name, tls = %tls, "connected");
    }
    if let Some((from, why)) = &place.moved_from {
        tracing::warn!("moved from relay {from} to relay {relay}: {why}");
    }
    state.send_replace(LinkState::Connected {
        relay: relay.to_string(),
    });
    let sender = tokio::spawn(deliver(conn.clone(), outbox.clone()));
    let reporter = tokio::spawn(report_facts(conn.clone()));
    live.set(Some(conn.clone()));
    let end = serve(cfg, &conn, central, shutdown).await;
    live.set(None);
    sender.abort();
    reporter.abort();
    if matches!(end, Ok(SessionEnd::Shutdown)) {
        conn.close(0u32.into(), b"agent shutting down");
        endpoint::finish(&ep).await;
    }
    match end {
        Ok(SessionEnd::Lost { reason, .. }) => Ok(SessionEnd::Lost {
            reason,
            held: welcomed.elapsed(),
        }),
        other => other,
    }
}

/// The OS line of `hello`: the distribution's name and version from
/// os-release (`Debian GNU/Linux 12`, what `--select os=debian*` matches),
/// else what sysinfo makes of the system, else the OS family.
pub fn os_line() -> String {
    match (sysinfo::System::name(), sysinfo::System::os_version()) {
        (Ok(name), Ok(version)) if !name.is_empty() => format!("{name} {version}"),
        (Ok(name), Err(_)) if !name.is_empty() => name,
        _ => sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
    }
}

/// What the agent reads of its machine for the relay's listings: the
/// kernel release (`uname -r`), the global addresses of its links that
/// are up (the `net` check's reading, with prefix lengths), its uptime.
pub fn facts() -> Facts {
    let addresses = match checks::net::read() {
        Ok(net) => net
            .links
            .iter()
            .filter(|l| l.state == checks::net::LinkState::Up)
            .flat_map(|l| l.addresses.iter().map(|(ip, len)| format!("{ip}/{len}")))
            .collect(),
        Err(e) => {
            tracing::debug!("no addresses for the relay: {e}");
            Vec::new()
        }
    };
    Facts {
        kernel: sysinfo::System::kernel_version().ok(),
        addresses,
        uptime_secs: sysinfo::System::uptime().ok(),
        reported_at: None,
    }
}

/// Tell the relay the machine's facts, once per session. A relay older
/// than facts refuses the message: nothing else depends on it.
async fn report_facts(conn: Connection) {
    let facts = match tokio::task::spawn_blocking(facts).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("reading the facts failed: {e}");
            return;
        }
    };
    let answer = async {
        let (_send, mut recv) = request(&conn, Message::Facts(facts)).await?;
        recv.recv_within(ACK_TIMEOUT).await
    }
    .await;
    match answer {
        Ok(Some(Message::Done {})) => tracing::debug!("facts reported"),
        Ok(other) => tracing::debug!("the relay did not take the facts: {other:?}"),
        Err(e) => tracing::debug!("reporting the facts failed: {e}"),
    }
}

async fn greet(conn: &Connection, central: &Central) -> Result<()> {
    let digest = central.report().digest;
    let hello = Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION,
        software: env!("CARGO_PKG_VERSION").to_string(),
        os: os_line(),
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        capabilities: checks::NAMES.iter().map(|s| s.to_string()).collect(),
        central_digest: (!digest.is_empty()).then_some(digest),
    };
    let answer = async {
        let (_send, mut recv) = request(conn, Message::Hello(hello)).await?;
        recv.recv_within(WELCOME_TIMEOUT).await
    }
    .await;
    match answer {
        Ok(Some(Message::Welcome(_))) => Ok(()),
        Ok(Some(Message::Error { message, .. })) => bail!("relay refused hello: {message}"),
        Ok(other) => bail!("unexpected answer to hello: {other:?}"),
        Err(firstline_net::LinkError::Connection(e)) => Err(lost(&e)),
        Err(e) => match conn.close_reason() {
            Some(reason) => Err(lost(&reason)),
            None => Err(e.into()),
        },
    }
}

async fn serve(
    cfg: &Loaded,
    conn: &Connection,
    central: &Arc<Central>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd> {
    let mut renew_timer =
        tokio::time::interval(Duration::from_secs(cfg.config.renew_check_secs.max(1)));
    loop {
        tokio::select! {
            // Only the accept is awaited here (it is cancel-safe); the request
            // is read and served in its own task.
            accepted = stream::accept(conn) => match accepted {
                Ok(incoming) => {
                    let (cfg, central) = (cfg.clone(), central.clone());
                    tokio::spawn(async move {
                        match incoming.first(FIRST_MESSAGE_TIMEOUT).await {
                            // The relay's central monitor sets: the wall
                            // is applied in `monitor::central`.
                            Some((Message::CentralMonitors { digest, sets }, send, _recv)) => {
                                let report = central.apply(digest, sets);
                                let _ = send
                                    .finish_with(Message::CentralMonitorsReport(report))
                                    .await;
                            }
                            Some((msg, send, _recv)) => crate::requests::handle(cfg, msg, send).await,
                            None => {}
                        }
                    });
                }
                Err(e) => {
                    let err = lost(&e);
                    if err.is::<Revoked>() {
                        return Err(err);
                    }
                    return Ok(SessionEnd::Lost {
                        reason: err.to_string(),
                        held: Duration::ZERO,
                    });
                }
            },
            _ = renew_timer.tick() => {
                if let Err(e) = renew_if_due(cfg, conn).await {
                    tracing::error!("certificate renewal failed: {e:#}");
                }
            }
            _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
        }
    }
}

/// Drain the outbox to the relay, in order, for as long as the connection
/// lives; events leave the outbox only once acknowledged.
async fn deliver(conn: Connection, outbox: Arc<Outbox>) {
    loop {
        // Events held while the outbox could not be written go first.
        outbox.flush_held();
        let batch = match outbox.peek(EVENT_BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot read the outbox: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // `push` wakes this (a wake-up while a batch is in flight is
            // kept for the next wait); the timer is only a safety net, long
            // so an idle agent does not read its outbox every few seconds.
            tokio::select! {
                _ = outbox.arrived.notified() => {}
                _ = tokio::time::sleep(IDLE_OUTBOX_LOOK) => {}
            }
            continue;
        }
        match send_events(&conn, batch).await {
            Ok(upto) => {
                if let Err(e) = outbox.ack(upto) {
                    // (A full disk: the batch is sent again, and ignored
                    // by the relay, once a second, not in a tight loop.)
                    tracing::error!("cannot trim the outbox: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                if conn.close_reason().is_some() {
                    return;
                }
                tracing::warn!("delivering events failed: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn send_events(conn: &Connection, events: Vec<firstline_proto::AgentEvent>) -> Result<u64> {
    let (_send, mut recv) = request(conn, Message::Events { events }).await?;
    match recv.recv_within(ACK_TIMEOUT).await? {
        Some(Message::Ack { upto }) => Ok(upto),
        Some(Message::Error { message, .. }) => bail!("relay refused events: {message}"),
        other => bail!("unexpected answer to events: {other:?}"),
    }
}

/// Renew the certificate over the live connection when it nears expiry.
/// The new certificate and key replace `identity.pem` atomically and are
/// used from the next connection on.
pub async fn renew_if_due(cfg: &Loaded, conn: &Connection) -> Result<bool> {
    let path = cfg.identity_path();
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let der = firstline_net::pem::certs(&current)?;
    let info = firstline_net::identity::cert_info(&der[0])?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    if info.not_after - now > cfg.config.renew_before_secs as i64 {
        return Ok(false);
    }
    let (key_pem, csr_pem) = new_key_and_csr(&cfg.config.name)?;
    let (_send, mut recv) = request(conn, Message::Renew { csr_pem }).await?;
    let cert_pem = match recv.recv_within(WELCOME_TIMEOUT).await? {
        Some(Message::Renewed { cert_pem }) => cert_pem,
        Some(Message::Error { message, .. }) => bail!("relay refused renewal: {message}"),
        other => bail!("unexpected answer to renew: {other:?}"),
    };
    let new_der = firstline_net::pem::certs(&cert_pem)?;
    let new_info = firstline_net::identity::cert_info(&new_der[0])?;
    let expected = Identity::Agent {
        name: cfg.config.name.clone(),
    };
    if new_info.identity.as_ref() != Some(&expected) {
        bail!("renewed certificate is not for {}", expected.describe());
    }
    write_private(&path, format!("{cert_pem}{key_pem}").as_bytes())?;
    tracing::info!(serial = %new_info.serial, "certificate renewed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_machine() {
        let f = facts();
        let uname = std::process::Command::new("uname").arg("-r").output();
        if let Ok(out) = uname {
            let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(f.kernel.as_deref(), Some(release.as_str()));
        }
        assert!(f.uptime_secs.is_some_and(|u| u > 0), "{f:?}");
        for a in &f.addresses {
            let (ip, len) = a.split_once('/').expect("ADDRESS/PREFIX");
            assert!(ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok());
            assert!(!ip.starts_with("127.") && ip != "::1" && !ip.starts_with("fe80:"));
        }
        let os = os_line();
        assert!(!os.is_empty() && !os.starts_with("Linux ("), "{os}");
    }
}
