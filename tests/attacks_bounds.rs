//! Issue 24 item 4, the attacks on the relay's bounds, with real processes
//! (a real relay, console and agent; raw QUIC peers of `support/raw.rs`
//! where the real binaries would never send the input). Each test performs
//! the attack and asserts that it fails:
//!
//! 1. one source floods unauthenticated connections: consoles and
//!    reconnecting agents are still served within 2 s; one network of many
//!    addresses is bounded as one;
//! 2. an enrolling peer gets one stream and a few KiB in flight;
//! 3. a `help_request` with a huge verdict is cut, and events are paced by
//!    bytes;
//! 4. a rogue agent answers a request with endless results: stopped,
//!    reported, audited;
//! 5. refused enrollments from many addresses: one audit row per source
//!    and window, with a count;
//! 6. an event with an absurd sequence number is refused, not trusted;
//! 7. renewals are rate-limited per agent.
//!
//! Source addresses are modelled with 127.x.y.z (all of 127.0.0.0/8 is on
//! `lo`): the relay sees each as another peer.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_net::{FramedRecv, FramedSend};
use firstline_proto::runbook::{StepRecord, Verdict, VerdictKind};
use firstline_proto::{
    AgentEvent, CheckResult, ErrorCode, EventKind, HelpRequest, Message, Status,
};
use firstline_tests::raw::{self, Peer};
use firstline_tests::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(30);
/// What "served" means under a flood.
const SERVED_WITHIN: Duration = Duration::from_secs(2);

fn relay_with(root: &Path, keys: &str) -> Relay {
    let relay = Relay::init(root);
    if !keys.is_empty() {
        relay.configure(keys);
    }
    relay
}

fn local(ip: &str) -> SocketAddr {
    format!("{ip}:0").parse().unwrap()
}

fn db(relay: &Relay) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        relay.dir.join("relay.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

fn count(relay: &Relay, sql: &str) -> i64 {
    db(relay).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn relay_alive(relay: &mut Relay) -> bool {
    relay.proc.as_mut().is_some_and(|p| p.exited().is_none())
}

// ------------------------------------------------------------ 1. floods

/// What a flood did: connections the relay let through its bounds,
/// attempts refused, and the silent enrollment connections it holds (now
/// and at most). With `first_message_timeout_secs` long, the relay never
/// frees those, so the most held is exact: no close can be seen late.
#[derive(Default)]
struct FloodStats {
    admitted: AtomicUsize,
    refused: AtomicUsize,
    held: AtomicUsize,
    most_held: AtomicUsize,
}

/// Flood `relay` from each of `sources` with unauthenticated connections
/// as fast as this process can make them: `tasks` loops per source, each
/// connecting again at once when refused, and holding what got in (half
/// on the enrollment ALPN, silent; half on the agents' ALPN without a
/// certificate) until the relay closes it. Runs until `stop`.
fn flood(
    rt: &tokio::runtime::Runtime,
    relay: &str,
    token: &str,
    sources: &[&str],
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<FloodStats>, Vec<tokio::task::JoinHandle<()>>) {
    let stats = Arc::new(FloodStats::default());
    let remote = raw::loopback(relay);
    let mut handles = Vec::new();
    for source in sources {
        let _guard = rt.enter();
        // One endpoint per source and kind: many connections each.
        let enroll_tls =
            firstline_net::tls::enroll_client_config(&raw::token_fingerprint(token)).unwrap();
        let enroll_ep = endpoint(local(source), enroll_tls);
        // The agents' ALPN with no client certificate at all.
        let mut bare = enroll_tls_without_cert(token);
        bare.alpn_protocols = vec![firstline_proto::ALPN.to_vec()];
        let bare_ep = endpoint(local(source), bare);
        for i in 0..tasks {
            let silent = i % 2 == 0;
            let ep = if silent {
                enroll_ep.clone()
            } else {
                bare_ep.clone()
            };
            let (stats, stop) = (stats.clone(), stop.clone());
            handles.push(rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(connecting) = ep.connect(remote, firstline_proto::RELAY_SERVER_NAME)
                    else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    match connecting.await {
                        Ok(conn) if !silent => {
                            // Refused by the relay after its handshake.
                            stats.admitted.fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::time::timeout(SLOW, conn.closed()).await;
                        }
                        Ok(conn) => {
                            stats.admitted.fetch_add(1, Ordering::Relaxed);
                            let now = stats.held.fetch_add(1, Ordering::Relaxed) + 1;
                            stats.most_held.fetch_max(now, Ordering::Relaxed);
                            // Held, silent, until the relay ends it.
                            tokio::select! {
                                _ = conn.closed() => {}
                                _ = async {
                                    while !stop.load(Ordering::Relaxed) {
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                    }
                                } => {}
                            }
                            stats.held.fetch_sub(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    (stats, handles)
}

fn enroll_tls_without_cert(token: &str) -> rustls::ClientConfig {
    firstline_net::tls::enroll_client_config(&raw::token_fingerprint(token)).unwrap()
}

fn endpoint(local: SocketAddr, tls: rustls::ClientConfig) -> quinn::Endpoint {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    transport.max_idle_timeout(Duration::from_secs(30).try_into().ok());
    config.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client(local).unwrap();
    ep.set_default_client_config(config);
    ep
}

/// Run `f` and say how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

/// An operator from `source` opens a connection and lists the agents.
async fn operator_lists_agents(cred: &Path, source: &str) -> Result<(), String> {
    let peer = Peer::operator_from(cred, local(source)).await?;
    let answer = peer.ask(Message::ListAgents {}).await;
    peer.close().await;
    match answer.messages.last() {
        Some(Message::Done {}) | Some(Message::Agents { .. }) => Ok(()),
        _ => Err(format!("{answer:?}")),
    }
}

/// An enrolled agent from `source` reconnects and is welcomed.
async fn agent_is_welcomed(relay: &str, dir: &Path, source: &str) -> Result<(), String> {
    let peer = Peer::agent_from(relay, dir, local(source)).await?;
    let answer = peer.hello("host", "os", "1.0").await;
    peer.close().await;
    match answer.messages.first() {
        Some(Message::Welcome(_)) => Ok(()),
        _ => Err(format!("{answer:?}")),
    }
}

#[test]
fn one_source_flooding_unauthenticated_connections_locks_nobody_out() {
    let tmp = tempfile::tempdir().unwrap();
    // The defaults: 1,000 unauthenticated in all, 32 per address, 128 per
    // network; silent enrollment connections held for 10 minutes, not 10 s
    // (a stronger flood: what gets in stays in).
    let mut relay = relay_with(tmp.path(), "first_message_timeout_secs = 600");
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let cred = relay.dir.join("tech.credential.toml");
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.start();
    assert!(
        wait_until(SLOW, || console.online("pc1")),
        "{}",
        agent.log()
    );
    let spare = Agent::enrolled(tmp.path(), "pc2", &relay);
    let token = relay.token(&[]);
    let rt = raw::runtime();

    let stop = Arc::new(AtomicBool::new(false));
    let (stats, handles) = flood(&rt, &relay.addr, &token, &["127.0.0.2"], 96, stop.clone());
    // The flood is on: its slots are taken, and it keeps trying.
    assert!(
        wait_until(SLOW, || stats.held.load(Ordering::Relaxed) >= 32),
        "the flood never held its slots ({} admitted, {} refused)",
        stats.admitted.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed)
    );
    let refused_before = stats.refused.load(Ordering::Relaxed);

    let mut worst = Duration::ZERO;
    for round in 0..5 {
        // A console (the real CLI, from 127.0.0.1 — the flooder's /24).
        let (out, took) = timed(|| console.run(&["agents", "--json"]));
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        worst = worst.max(took);
        // An operator and a reconnecting agent from another network.
        let (r, took) = timed(|| rt.block_on(operator_lists_agents(&cred, "127.0.1.3")));
        r.unwrap_or_else(|e| panic!("round {round}: operator: {e}"));
        worst = worst.max(took);
        let (r, took) =
            timed(|| rt.block_on(agent_is_welcomed(&relay.addr, &spare.dir, "127.0.1.4")));
        r.unwrap_or_else(|e| panic!("round {round}: agent: {e}"));
        worst = worst.max(took);
        // And a neighbour of the flooder, in its /24.
        let (r, took) = timed(|| rt.block_on(operator_lists_agents(&cred, "127.0.0.5")));
        r.unwrap_or_else(|e| panic!("round {round}: neighbour: {e}"));
        worst = worst.max(took);
    }
    // The real agent, killed and started again: back online.
    if let Some(mut p) = agent.proc.take() {
        p.kill();
    }
    assert!(wait_until(SLOW, || !console.online("pc1")));
    let restarted = Instant::now();
    agent.start();
    assert!(
        wait_until(SLOW, || console.online("pc1")),
        "{}",
        agent.log()
    );
    let agent_back = restarted.elapsed();
    let refused = stats.refused.load(Ordering::Relaxed) - refused_before;
    let most = stats.most_held.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = rt.block_on(h);
    }
    eprintln!(
        "flood: {} admitted, {} refused while measuring, at most {most} held; slowest legit \
         request {worst:?}; agent back online after {agent_back:?}",
        stats.admitted.load(Ordering::Relaxed),
        refused
    );
    assert!(refused > 100, "the flood did not keep trying ({refused})");
    assert!(
        most <= 32,
        "one address held {most} unauthenticated connections (max 32)"
    );
    assert!(
        worst < SERVED_WITHIN,
        "a console or agent waited {worst:?} during the flood"
    );
    assert!(
        agent_back < SERVED_WITHIN + Duration::from_secs(1),
        "the restarted agent was online after {agent_back:?} (process start included)"
    );
    let log = relay.log();
    assert!(
        log.contains("max_unauthenticated_per_address"),
        "the refusals are logged:\n{log}"
    );
    let lines = log
        .lines()
        .filter(|l| l.contains("connection refused: limit reached"))
        .count();
    assert!(
        lines < 120,
        "{lines} log lines for the refusals: the flood writes the log"
    );
    assert!(relay_alive(&mut relay));
}

#[test]
fn one_network_of_many_addresses_is_bounded_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    // Small bounds, so that the flood fills them fast.
    let keys = "max_unauthenticated = 60\nmax_unauthenticated_per_address = 8\n\
                max_unauthenticated_per_network = 24\nfirst_message_timeout_secs = 600";
    let mut relay = relay_with(tmp.path(), keys);
    relay.serve();
    let cred = relay.operator("tech", "technician");
    let token = relay.token(&[]);
    let rt = raw::runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let sources: Vec<String> = (1..=10).map(|i| format!("127.0.5.{i}")).collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let (stats, handles) = flood(&rt, &relay.addr, &token, &refs, 12, stop.clone());
    assert!(
        wait_until(SLOW, || stats.held.load(Ordering::Relaxed) >= 24),
        "the flood never held its slots"
    );
    std::thread::sleep(Duration::from_millis(500));
    let most = stats.most_held.load(Ordering::Relaxed);
    assert!(
        most <= 24,
        "ten addresses of one /24 held {most} connections (max 24 per network)"
    );
    // Another address of that /24 is refused meanwhile…
    let neighbour = rt.block_on(Peer::enroll_from(&relay.addr, &token, local("127.0.5.99")));
    assert!(neighbour.is_err(), "the /24's bound did not hold");
    // …while another network is served at once.
    let (r, took) = timed(|| rt.block_on(operator_lists_agents(&cred, "127.0.6.3")));
    r.unwrap();
    assert!(took < SERVED_WITHIN, "{took:?}");
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = rt.block_on(h);
    }
    assert!(relay.log().contains("max_unauthenticated_per_network"));
    assert!(relay_alive(&mut relay));
}

#[test]
fn without_the_bounds_per_source_the_same_flood_locks_everyone_out() {
    // The control: the same flood with the bounds per source lifted to the
    // bound in all. It takes every slot and the console is refused — so the
    // flood of the tests above is one that would lock everyone out.
    let tmp = tempfile::tempdir().unwrap();
    let keys = "max_unauthenticated = 32\nmax_unauthenticated_per_address = 32\n\
                max_unauthenticated_per_network = 32\nfirst_message_timeout_secs = 600";
    let mut relay = relay_with(tmp.path(), keys);
    relay.serve();
    let cred = relay.operator("tech", "technician");
    let token = relay.token(&[]);
    let rt = raw::runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let (stats, handles) = flood(&rt, &relay.addr, &token, &["127.0.0.2"], 64, stop.clone());
    assert!(wait_until(SLOW, || stats.held.load(Ordering::Relaxed) >= 32));
    let r = rt.block_on(operator_lists_agents(&cred, "127.0.1.3"));
    assert!(
        r.is_err(),
        "the console got in: the flood did not fill the slots"
    );
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = rt.block_on(h);
    }
    assert!(relay_alive(&mut relay));
}

// ------------------------------------------- 2. one stream, small window

#[test]
fn an_enrolling_peer_gets_one_stream_and_a_few_kib_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "first_message_timeout_secs = 30");
    relay.serve();
    let token = relay.token(&[]);
    let rt = raw::runtime();
    let (second_opened, written) = rt.block_on(async {
        let peer = Peer::enroll(&relay.addr, &token).await.unwrap();
        let (mut send, _recv) = peer.conn.open_bi().await.unwrap();
        // Write a 1 MiB frame that is never finished: flow control stops it.
        let chunk = vec![b'A'; 16 * 1024];
        let mut written = 0usize;
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while written < (1 << 20) {
            match tokio::time::timeout_at(until, send.write(&chunk)).await {
                Ok(Ok(n)) => written += n,
                _ => break,
            }
        }
        // A second stream is not granted.
        let second = tokio::time::timeout(Duration::from_secs(2), peer.conn.open_bi()).await;
        let opened = matches!(second, Ok(Ok(_)));
        peer.close().await;
        (opened, written)
    });
    eprintln!("{written} bytes in flight on an enrollment connection");
    assert!(!second_opened, "an enrolling peer opened a second stream");
    assert!(
        written <= 64 * 1024,
        "an enrolling peer had {written} bytes in flight (the relay buffers them)"
    );
    // A real enrollment still fits.
    let agent = Agent::new(tmp.path(), "pc1");
    let out = agent.enroll(&relay.addr, &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(relay_alive(&mut relay));
}

// ------------------------------------ 3. help_request cut, paced by bytes

fn huge_help_request(seq: u64, pad: usize) -> AgentEvent {
    let big = |c: char| c.to_string().repeat(pad);
    let step = StepRecord {
        id: big('i'),
        action: big('a'),
        args: vec![big('g'); 4],
        result: Some(CheckResult::new("dns", "t", Status::Crit, big('s'))),
        skipped: Some(big('k')),
    };
    let verdict = Verdict {
        runbook: big('r'),
        agent: big('n'),
        verdict: VerdictKind::Escalate,
        cause: big('c'),
        team: big('t'),
        message: big('m'),
        user_message: big('u'),
        kb: Some(big('b')),
        params: vec![big('p'); 4],
        dry_run: false,
        steps: vec![step; 4],
    };
    let mut result = CheckResult::new("help", "user", Status::Warn, "asks for help");
    result.at = "2026-01-01T00:00:00Z".into();
    AgentEvent {
        seq,
        monitor: "help".into(),
        kind: EventKind::HelpRequest,
        in_incident: false,
        result,
        diagnostics: None,
        help: Some(HelpRequest {
            user: "alice".into(),
            text: "printer".into(),
            after: Some(verdict),
        }),
    }
}

#[test]
fn a_help_request_with_a_huge_verdict_is_cut_and_paced_by_bytes() {
    const BYTES_PER_SEC: u64 = 200_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(
        tmp.path(),
        &format!("agent_event_bytes_per_sec = {BYTES_PER_SEC}"),
    );
    relay.serve();
    let agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let rt = raw::runtime();
    let db_before = std::fs::metadata(relay.dir.join("relay.db")).unwrap().len();
    // Four events of ~900 KB each (frames under the 1 MiB cap).
    let events: Vec<AgentEvent> = (1..=4).map(|s| huge_help_request(s, 20_000)).collect();
    let size = serde_json::to_vec(&events[0]).unwrap().len() as u64;
    assert!(size > 800_000, "{size}");
    let started = Instant::now();
    rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &agent.dir).await.unwrap();
        let welcome = peer.hello("h", "o", "1").await;
        assert!(matches!(
            welcome.messages.first(),
            Some(Message::Welcome(_))
        ));
        for ev in events {
            let seq = ev.seq;
            assert_eq!(peer.events(vec![ev]).await.unwrap(), seq);
        }
        peer.close().await;
    });
    let took = started.elapsed();
    // A burst of 10 s worth, then BYTES_PER_SEC: the rest waits.
    let sent = 4 * size;
    let burst = 10 * BYTES_PER_SEC;
    let least = Duration::from_secs_f64((sent - burst) as f64 / BYTES_PER_SEC as f64 * 0.8);
    eprintln!("{sent} bytes of events acknowledged in {took:?} (at least {least:?})");
    assert!(
        took >= least,
        "events of {sent} bytes were not paced by bytes: {took:?}"
    );
    // Stored cut: every ticket entry is small, relay.db did not grow by MBs.
    let largest = count(&relay, "SELECT MAX(length(body)) FROM ticket_entries");
    assert!(largest < 150_000, "a ticket entry of {largest} bytes");
    let tickets = count(&relay, "SELECT COUNT(*) FROM tickets WHERE agent = 'pc1'");
    assert_eq!(tickets, 4, "each help request still opens its ticket");
    let verdicts = count(
        &relay,
        "SELECT COUNT(*) FROM ticket_entries WHERE body LIKE '%left out%' OR body LIKE '%mmmm%'",
    );
    assert!(verdicts >= 1, "the evidence is kept, cut");
    let grown = std::fs::metadata(relay.dir.join("relay.db")).unwrap().len() - db_before;
    let wal = std::fs::metadata(relay.dir.join("relay.db-wal")).map_or(0, |m| m.len());
    assert!(
        grown + wal < 4 * 1024 * 1024,
        "relay.db grew by {grown} bytes (+{wal} WAL) for 4 help requests"
    );
    assert!(relay_alive(&mut relay));
}

// -------------------------------------- 4. answers counted in bytes

/// A rogue agent: answers `hello`, then every request the relay opens with
/// `frames` results of `size` bytes each (no final message), counting
/// what it got through.
async fn rogue_agent(peer: &Peer, frames: usize, size: usize, sent: Arc<AtomicUsize>) {
    loop {
        let Ok((send, recv)) = peer.conn.accept_bi().await else {
            return;
        };
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut recv = FramedRecv::new(recv);
            let mut send = FramedSend::new(send);
            match recv.recv().await {
                Ok(Some(Message::Exec { .. })) => {
                    let mut r = CheckResult::new("disk", "/", Status::Crit, "x".repeat(size));
                    r.at = "2026-01-01T00:00:00Z".into();
                    for _ in 0..frames {
                        let msg = Message::Result { result: r.clone() };
                        if send.send(msg).await.is_err() {
                            return;
                        }
                        sent.fetch_add(size, Ordering::Relaxed);
                    }
                }
                Ok(Some(_)) => {
                    let _ = send.finish_with(Message::Done {}).await;
                }
                _ => {}
            }
        });
    }
}

#[test]
fn a_rogue_agent_cannot_pour_endless_answers_into_a_ticket() {
    const MAX: usize = 2 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), &format!("max_answer_bytes = {MAX}"));
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let agent = Agent::enrolled(tmp.path(), "evil", &relay);
    let rt = raw::runtime();
    let created = ok_json(console.run(&["ticket", "new", "disk on evil", "--json"]));
    let id = created["id"].as_u64().unwrap().to_string();
    let sent = Arc::new(AtomicUsize::new(0));
    let peer = rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &agent.dir).await.unwrap();
        let welcome = peer.hello("h", "o", "1").await;
        assert!(matches!(
            welcome.messages.first(),
            Some(Message::Welcome(_))
        ));
        peer
    });
    let peer = Arc::new(peer);
    let rogue = {
        let (peer, sent) = (peer.clone(), sent.clone());
        // 40 MB of results, in frames of 900 KB.
        rt.spawn(async move { rogue_agent(&peer, 45, 900_000, sent).await })
    };
    assert!(wait_until(SLOW, || console.online("evil")));
    let (out, took) = timed(|| console.run(&["run", "evil", "disk", "/", "--ticket", &id]));
    eprintln!(
        "the rogue agent got {} bytes through; the console: {}",
        sent.load(Ordering::Relaxed),
        text(&out)
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("max_answer_bytes"),
        "the console is told why: {}",
        text(&out)
    );
    assert!(took < SLOW, "{took:?}");
    // The ticket holds at most the bound (each result cut to size).
    let stored = count(
        &relay,
        &format!(
            "SELECT COALESCE(SUM(length(body)), 0) FROM ticket_entries WHERE ticket_id = {id}"
        ),
    );
    assert!(
        stored < MAX as i64,
        "{stored} bytes of answers stored into ticket {id}"
    );
    // The agent was told to stop: it got far less than 40 MB through.
    std::thread::sleep(Duration::from_secs(1));
    let through = sent.load(Ordering::Relaxed);
    assert!(through < 10 * MAX, "{through} bytes sent after the stop");
    // Audited as failed, saying why.
    let audited = console.run(&["audit", "--json"]);
    let rows = ok_json(audited);
    let run = rows
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["agent"] == "evil" && r["action"].as_str().unwrap_or("").contains("disk"))
        .cloned()
        .or_else(|| {
            rows.as_array()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r["agent"] == "evil")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no audit row: {rows}"));
    let outcome = run["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("max_answer_bytes") && !outcome.starts_with("ok"),
        "{run}"
    );
    rogue.abort();
    rt.block_on(peer.close());
    assert!(relay_alive(&mut relay));
}

// ------------------------------ 5. refused enrollments, aggregated

#[test]
fn refused_enrollments_from_many_addresses_are_audited_once_per_source_and_window() {
    const SOURCES: usize = 20;
    const ATTEMPTS: usize = 12;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "enroll_per_minute = 1000");
    relay.serve();
    let token = relay.token(&[]);
    let mut parts: Vec<&str> = token.split('.').collect();
    let zeros = "0".repeat(32);
    parts[2] = &zeros;
    let wrong = parts.join(".");
    let rt = raw::runtime();
    let before = count(&relay, "SELECT COUNT(*) FROM audit WHERE action = 'enroll'");
    let mut refused = 0;
    rt.block_on(async {
        for s in 0..SOURCES {
            for i in 0..ATTEMPTS {
                let from = local(&format!("127.0.7.{}", s + 1));
                let peer = Peer::enroll_from(&relay.addr, &wrong, from).await.unwrap();
                let msg = Message::Enroll {
                    token: wrong.clone(),
                    name: format!("probe{s}x{i}"),
                    csr_pem: "x".into(),
                };
                let answer = peer.ask(msg).await;
                peer.close().await;
                let (code, _) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
                assert_eq!(code, ErrorCode::TokenUnknown);
                refused += 1;
            }
        }
    });
    assert_eq!(refused, SOURCES * ATTEMPTS);
    let rows = count(&relay, "SELECT COUNT(*) FROM audit WHERE action = 'enroll'") - before;
    assert!(
        rows <= SOURCES as i64,
        "{rows} audit rows for {refused} refused enrollments from {SOURCES} addresses"
    );
    assert!(
        rows >= SOURCES as i64,
        "each source is audited: {rows} rows"
    );
    // A real enrollment is still audited, in full.
    let agent = Agent::new(tmp.path(), "good");
    assert_eq!(agent.enroll(&relay.addr, &token).status.code(), Some(0));
    let enrolled = count(
        &relay,
        "SELECT COUNT(*) FROM audit WHERE action = 'enroll' AND outcome = 'enrolled'",
    );
    assert_eq!(enrolled, 1);
    // Stopped (SIGTERM), the relay writes the counts of the windows still
    // open: one row per source, saying how many were left out.
    let pid = relay.proc.as_ref().unwrap().child.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(
        wait_until(SLOW, || !relay_alive(&mut relay)),
        "the relay did not stop"
    );
    let counted = count(
        &relay,
        &format!(
            "SELECT COUNT(*) FROM audit WHERE action = 'enroll' AND outcome LIKE \
             'refused: {} more attempts from 127.0.7.%'",
            ATTEMPTS - 1
        ),
    );
    assert_eq!(counted, SOURCES as i64, "the left-out refusals are counted");
    let all = count(&relay, "SELECT COUNT(*) FROM audit WHERE action = 'enroll'") - before;
    assert!(all <= 2 * SOURCES as i64 + 1, "{all} rows");
    // The chain still holds.
    let out = relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

// ------------------------------------ 6. absurd sequence numbers

#[test]
fn an_absurd_sequence_number_is_refused_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let rt = raw::runtime();
    rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &agent.dir).await.unwrap();
        let welcome = peer.hello("h", "o", "1").await;
        assert!(matches!(
            welcome.messages.first(),
            Some(Message::Welcome(_))
        ));
        assert_eq!(
            peer.events(vec![raw::incident(1, "m1", "down")]).await,
            Ok(1)
        );
        for absurd in [i64::MAX as u64, u64::MAX, 2_000_000] {
            let answer = peer
                .ask(Message::Events {
                    events: vec![raw::incident(absurd, "m2", "down")],
                })
                .await;
            let (code, message) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
            assert_eq!(code, ErrorCode::BadRequest, "{message}");
            assert!(message.contains("jumps"), "{message}");
        }
        // Later events of the agent are still taken.
        assert_eq!(
            peer.events(vec![raw::incident(2, "m3", "down")]).await,
            Ok(2)
        );
        peer.close().await;
    });
    let last: i64 = count(&relay, "SELECT last_seq FROM agents WHERE name = 'pc1'");
    assert_eq!(last, 2);
    let tickets = count(&relay, "SELECT COUNT(*) FROM tickets WHERE agent = 'pc1'");
    assert_eq!(tickets, 2, "m1 and m3 opened tickets; m2 did not");
    assert!(
        relay.log().contains("events refused"),
        "the refusal is logged:\n{}",
        relay.log()
    );
    assert!(relay_alive(&mut relay));
}

// ---------------------------------------- 7. renewals rate-limited

fn csr(dir: &Path) -> String {
    let key = dir.join("renew.key");
    let csr = dir.join("renew.csr");
    let out = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=renewal", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read_to_string(csr).unwrap()
}

#[test]
fn renewals_are_rate_limited_per_agent() {
    const TRIES: usize = 50;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let a = Agent::enrolled(tmp.path(), "pc1", &relay);
    let b = Agent::enrolled(tmp.path(), "pc2", &relay);
    let csr = csr(tmp.path());
    let rt = raw::runtime();
    let certs_before = count(&relay, "SELECT COUNT(*) FROM certs");
    let (renewed, limited, other) = rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &a.dir).await.unwrap();
        assert!(matches!(
            peer.hello("h", "o", "1").await.messages.first(),
            Some(Message::Welcome(_))
        ));
        let (mut renewed, mut limited, mut other) = (0, 0, Vec::new());
        for _ in 0..TRIES {
            let answer = peer
                .ask(Message::Renew {
                    csr_pem: csr.clone(),
                })
                .await;
            match (answer.messages.first(), answer.error()) {
                (Some(Message::Renewed { .. }), _) => renewed += 1,
                (_, Some((ErrorCode::Refused, m)))
                    if m.contains("too many certificate renewals") =>
                {
                    limited += 1
                }
                _ => other.push(format!("{answer:?}")),
            }
        }
        peer.close().await;
        (renewed, limited, other)
    });
    assert!(other.is_empty(), "{other:?}");
    assert!(
        (3..=4).contains(&renewed),
        "{renewed} certificates in a burst of {TRIES} renewals"
    );
    assert_eq!(renewed + limited, TRIES);
    let issued = count(&relay, "SELECT COUNT(*) FROM certs") - certs_before;
    assert_eq!(issued, renewed as i64);
    // Another agent has its own allowance.
    let answer = rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &b.dir).await.unwrap();
        peer.hello("h", "o", "1").await;
        let a = peer
            .ask(Message::Renew {
                csr_pem: csr.clone(),
            })
            .await;
        peer.close().await;
        a
    });
    assert!(
        matches!(answer.messages.first(), Some(Message::Renewed { .. })),
        "{answer:?}"
    );
    // Refusals are audited once per agent and window, not one row each.
    let refusals = count(
        &relay,
        "SELECT COUNT(*) FROM audit WHERE action = 'renew-certificate' AND outcome LIKE 'refused%'",
    );
    assert_eq!(
        refusals, 1,
        "{limited} refused renewals audited as {refusals} rows"
    );
    assert!(relay_alive(&mut relay));
}

// ------------------------------------ 8. names without regard to case

#[test]
fn a_name_differing_only_in_case_cannot_enroll_beside_another() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let first = Agent::new(tmp.path(), "pc-a");
    assert_eq!(
        first.enroll(&relay.addr, &relay.token(&[])).status.code(),
        Some(0)
    );
    for twin in ["PC-A", "Pc-a", "pC-A"] {
        let agent = Agent::new(&tmp.path().join(twin), twin);
        let out = agent.enroll(&relay.addr, &relay.token(&[]));
        assert_eq!(out.status.code(), Some(1), "{twin}: {}", text(&out));
        assert!(
            stderr(&out).contains("already enrolled") && stderr(&out).contains("`pc-a`"),
            "{twin}: {}",
            text(&out)
        );
        assert!(!agent.dir.join("identity.pem").exists());
    }
    let names = count(
        &relay,
        "SELECT COUNT(*) FROM agents WHERE lower(name) = 'pc-a'",
    );
    assert_eq!(names, 1);
    // Revoked, the name stays revoked in every case.
    let out = relay.cmd(&["agent", "revoke", "pc-a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let agent = Agent::new(&tmp.path().join("again"), "PC-A");
    let out = agent.enroll(&relay.addr, &relay.token(&[]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("revoked"), "{}", text(&out));
    assert!(relay_alive(&mut relay));
}
