//! Fault drills (issue 7), with the real binaries:
//!
//! * a lossy, slow link — 30 % loss and 200 ms delay each way between an
//!   agent in a network namespace of ours and the relay outside it: a remote
//!   check still completes and every monitoring event still arrives;
//! * the relay killed with `kill -9` (twice) while agents have alerts in
//!   flight: after the restarts every alert is in a ticket, none twice;
//! * 10,000 malformed or truncated frames from a hostile client holding an
//!   operator credential: the relay stays up and a real agent keeps
//!   answering, during the flood and after.
//!
//! * the agent's folder full (a small tmpfs filled to the brim) while a
//!   watched service fails and recovers four times: every incident event is
//!   held and reaches the relay once space returns;
//! * the relay's folder full: console requests get an error, not data, and
//!   after space returns they work and `audit verify` holds.
//!
//! Generous waits, no timing assertions. Network traffic stays on loopback
//! and inside the namespace and veth pair made here (deleted on drop).

#![allow(clippy::unwrap_used)]

use firstline_net::credential::Credential;
use firstline_net::stream::request;
use firstline_proto::{ErrorCode, Message};
use firstline_tests::plugin::StatePlugin;
use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------- helpers

/// `[[monitor]]` tables: each runs `check_state ARG` every second and
/// opens (or resolves) its incident on the first failing (or ok) result.
fn monitors(names_and_args: &[(String, String)]) -> String {
    names_and_args
        .iter()
        .map(|(name, arg)| {
            format!(
                "[[monitor]]\nname = \"{name}\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"{arg}\"]\n\
                 every = \"1s\"\nfail_after = 1\nrecover_after = 1\n\n"
            )
        })
        .collect()
}

fn agent_settings(plugins: &Path) -> String {
    format!(
        "plugins_dir = \"{}\"\ndefault_monitors = false\nreconnect_max_ms = 1000",
        plugins.display()
    )
}

/// Whether `firstline run … disk … --json` printed a disk result (exit 0
/// for ok, 1 for a warn/crit result; exit 1 with an error message is not one).
fn disk_result(out: &std::process::Output) -> bool {
    out.status.code().is_some_and(|c| c <= 1)
        && serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|r| r["check"] == "disk")
}

fn open_ro(path: &Path) -> rusqlite::Connection {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db
}

/// Highest event sequence number the agent's outbox in `state_dir` has
/// handed out.
fn agent_seq_in(state_dir: &Path) -> i64 {
    let path = state_dir.join("outbox.db");
    if !path.exists() {
        return 0;
    }
    open_ro(&path)
        .query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

/// Highest sequence number the relay has stored for `name`.
fn relay_seq(relay: &Relay, name: &str) -> i64 {
    open_ro(&relay.dir.join("relay.db"))
        .query_row("SELECT last_seq FROM agents WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap_or(-1)
}

/// Wait until the relay has stored every event the agent had produced when
/// this was called (the outbox hands out sequences in order and the relay
/// ingests them in order, so reaching the number means all of them).
fn wait_all_events_arrived(relay: &Relay, agent: &Agent) {
    wait_all_events_arrived_from(relay, agent, &agent.dir)
}

/// [`wait_all_events_arrived`], for an agent whose outbox is in `state_dir`.
fn wait_all_events_arrived_from(relay: &Relay, agent: &Agent, state_dir: &Path) {
    let produced = agent_seq_in(state_dir);
    assert!(
        produced > 0,
        "the agent produced no events:\n{}",
        agent.log()
    );
    let ok = wait_until(SLOW, || relay_seq(relay, &agent.name) >= produced);
    assert!(
        ok,
        "{}: relay stored up to seq {} of the {produced} events produced\nagent:\n{}\nrelay:\n{}",
        agent.name,
        relay_seq(relay, &agent.name),
        agent.log(),
        relay.log()
    );
}

// ---------------------------------------------------- (a) lossy, slow link

/// A network namespace with one end of a veth pair; the other end stays in
/// this (root) namespace. Deleting the namespace deletes the pair.
struct Netns {
    name: String,
    inner: String,
    outer: String,
    outer_ip: String,
    inner_ip: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::Relaxed);
        // 198.18.0.0/15 is set aside for benchmarking (RFC 2544): a /30 per
        // test process, from its pid, so parallel runs do not collide.
        let (a, b) = ((pid / 64) % 256, (pid % 64) * 4);
        let ns = Netns {
            name: format!("fl-faults-{pid}-{n}"),
            inner: format!("fln{pid}{n}"),
            outer: format!("flh{pid}{n}"),
            outer_ip: format!("198.18.{a}.{}", b + 1),
            inner_ip: format!("198.18.{a}.{}", b + 2),
        };
        must(Command::new("ip").args(["netns", "add", &ns.name]));
        must(Command::new("ip").args([
            "link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner, "netns", &ns.name,
        ]));
        must(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/30", ns.outer_ip),
            "dev",
            &ns.outer,
        ]));
        must(Command::new("ip").args(["link", "set", &ns.outer, "up"]));
        must(&mut ns.cmd(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.inner_ip),
            "dev",
            &ns.inner,
        ]));
        must(&mut ns.cmd(&["ip", "link", "set", &ns.inner, "up"]));
        must(&mut ns.cmd(&["ip", "link", "set", "lo", "up"]));
        ns
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// 30 % loss and `delay_ms` each way on the veth pair with `tc netem`;
    /// false when this kernel has no netem.
    fn netem(&self, delay_ms: u64, loss_pct: u32) -> bool {
        let args = |dev: &str| -> Vec<String> {
            [
                "tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                format!("{delay_ms}ms"),
                "loss".into(),
                format!("{loss_pct}%"),
            ])
            .collect()
        };
        let inner = args(&self.inner);
        let out = self
            .cmd(&inner.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("unknown"), "tc netem failed: {err}");
            return false;
        }
        let outer = args(&self.outer);
        must(Command::new(&outer[0]).args(&outer[1..]));
        true
    }

    /// `loss_pct` % random loss each way with nftables inside the
    /// namespace (for kernels without netem, as this project's machines).
    fn nft_loss(&self, loss_pct: u32) {
        let table = "flfaults";
        must(&mut self.cmd(&["nft", "add", "table", "inet", table]));
        for (chain, hook, dir) in [
            ("out", "postrouting", "oifname"),
            ("in", "prerouting", "iifname"),
        ] {
            must(&mut self.cmd(&[
                "nft",
                &format!(
                    "add chain inet {table} {chain} {{ type filter hook {hook} priority 0; }}"
                ),
            ]));
            must(&mut self.cmd(&[
                "nft",
                &format!(
                    "add rule inet {table} {chain} {dir} \"{}\" numgen random mod 100 < {loss_pct} counter drop",
                    self.inner
                ),
            ]));
        }
    }
}

impl Netns {
    /// Packets the nftables rules dropped so far.
    fn nft_dropped(&self) -> u64 {
        let out = must(&mut self.cmd(&["nft", "list", "table", "inet", "flfaults"]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split("counter packets ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .output();
    }
}

fn must(cmd: &mut Command) -> std::process::Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    out
}

/// A UDP forwarder on the namespace's link: the agent's packets to
/// `listen` go to the relay and back, each held `delay_ms` (0 = straight
/// through). It is the delay line where the kernel has no netem; the loss
/// is then nftables' on the veth pair.
struct DelayLine {
    addr: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl DelayLine {
    fn start(listen_ip: &str, relay: std::net::SocketAddr) -> DelayLine {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let front = rt
            .block_on(tokio::net::UdpSocket::bind((listen_ip, 0)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let back = rt
            .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let (front, back) = (Arc::new(front), Arc::new(back));
        let peer: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
        // agent → relay
        rt.spawn({
            let (front, back, peer, delay) =
                (front.clone(), back.clone(), peer.clone(), delay_ms.clone());
            async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *peer.lock().unwrap() = Some(from);
                    let (back, bytes, d) = (
                        back.clone(),
                        buf[..n].to_vec(),
                        delay.load(Ordering::Relaxed),
                    );
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(d)).await;
                        let _ = back.send_to(&bytes, relay).await;
                    });
                }
            }
        });
        // relay → agent
        rt.spawn({
            let (front, back, peer, delay) =
                (front.clone(), back.clone(), peer.clone(), delay_ms.clone());
            async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = back.recv_from(&mut buf).await {
                    let Some(to) = *peer.lock().unwrap() else {
                        continue;
                    };
                    let (front, bytes, d) = (
                        front.clone(),
                        buf[..n].to_vec(),
                        delay.load(Ordering::Relaxed),
                    );
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(d)).await;
                        let _ = front.send_to(&bytes, to).await;
                    });
                }
            }
        });
        DelayLine {
            addr,
            delay_ms,
            _rt: rt,
        }
    }
}

#[test]
fn lossy_slow_link_check_completes_and_events_all_arrive() {
    const DELAY_MS: u64 = 200;
    const LOSS_PCT: u32 = 30;
    let tmp = tempfile::tempdir().unwrap();
    let plugins = StatePlugin::new(tmp.path());
    plugins.set("lossy", 0);
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let ns = Netns::new();
    let line = DelayLine::start(&ns.outer_ip, relay.addr.parse().unwrap());
    let relay_via_link = line.addr.to_string();

    // Enrolled over the clean link; impaired from then on.
    let mut agent = Agent::new(tmp.path(), "lossy1");
    let out = run(ns
        .cmd(&[
            bin("firstline-agent").to_str().unwrap(),
            "enroll",
            "--relay",
        ])
        .arg(&relay_via_link)
        .args(["--token", &relay.token(&[]), "--name", "lossy1", "--config"])
        .arg(&agent.config));
    assert!(out.status.success(), "enroll: {}", text(&out));
    agent.configure(&agent_settings(&plugins.dir));
    agent.append(&monitors(&[("state".into(), "lossy".into())]));
    agent.append(&StatePlugin::policy());
    let netem = ns.netem(DELAY_MS, LOSS_PCT);
    let how = if netem {
        "tc netem on both ends of the veth pair"
    } else {
        ns.nft_loss(LOSS_PCT);
        line.delay_ms.store(DELAY_MS, Ordering::Relaxed);
        "no netem in this kernel: nftables random drops in the namespace, a delay line on the host"
    };
    eprintln!("link impaired: {LOSS_PCT}% loss and {DELAY_MS} ms each way ({how})");

    let log = agent.dir.join("run.log");
    agent.proc = Some(Proc::spawn(
        ns.cmd(&[bin("firstline-agent").to_str().unwrap(), "run", "--config"])
            .arg(&agent.config)
            .env("RUST_LOG", "info"),
        &log,
    ));
    let started = std::time::Instant::now();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    assert!(
        wait_until(SLOW, || console.online("lossy1")),
        "agent never online over the lossy link\nagent:\n{}\nrelay:\n{}",
        agent.log(),
        relay.log()
    );

    // A remote check through the relay, over the lossy link. A connection
    // may drop under such loss; the agent reconnects and the check is
    // asked again, within the generous wait.
    let mut last = None;
    let done = wait_until(SLOW, || {
        let out = console.run(&["run", "lossy1", "disk", "/", "--json"]);
        let ok = disk_result(&out);
        if !ok {
            eprintln!(
                "remote check not through yet: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        last = Some(out);
        ok
    });
    let out = last.unwrap();
    assert!(done, "remote check over the lossy link: {}", text(&out));
    eprintln!(
        "online and a remote check done after {:?}",
        started.elapsed()
    );

    // Monitoring over the same link: crit → ok → crit → ok, a few runs each.
    for state in [2, 0, 2, 0] {
        plugins.set("lossy", state);
        std::thread::sleep(Duration::from_secs(3));
    }
    wait_all_events_arrived(&relay, &agent);
    eprintln!("every event arrived after {:?}", started.elapsed());
    let tickets: Vec<Value> =
        serde_json::from_slice(&console.run(&["tickets", "--json"]).stdout).unwrap();
    let alert: Vec<&Value> = tickets.iter().filter(|t| t["source"] == "alert").collect();
    assert_eq!(
        alert.len(),
        1,
        "one ticket for the one monitor: {tickets:?}"
    );
    let id = alert[0]["id"].as_u64().unwrap();
    assert_eq!(alert[0]["status"], "resolved", "{tickets:?}");
    let show: Value = serde_json::from_slice(
        &console
            .run(&["ticket", "show", &id.to_string(), "--json"])
            .stdout,
    )
    .unwrap();
    let status_changes: Vec<String> = show["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "status")
        .map(|e| e["body"].as_str().unwrap().to_string())
        .collect();
    let resolved = status_changes
        .iter()
        .filter(|b| b.contains("→ resolved"))
        .count();
    let reopened = status_changes
        .iter()
        .filter(|b| b.starts_with("resolved → open"))
        .count();
    assert_eq!(
        (resolved, reopened),
        (2, 1),
        "both incidents and their recoveries reached the ticket: {status_changes:?}"
    );
    if !netem {
        let dropped = ns.nft_dropped();
        eprintln!("{dropped} packets dropped on the link");
        assert!(dropped > 0, "the link was not lossy");
    }
}

// ------------------------------------------------ (b) kill -9 under load

#[test]
fn relay_killed_with_alerts_in_flight_every_alert_in_one_ticket() {
    const AGENTS: usize = 3;
    const MONITORS: usize = 12;
    const WAVES: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let plugins = StatePlugin::new(tmp.path());
    for w in 0..WAVES {
        plugins.set(&format!("wave{w}"), 0);
    }
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            let a = Agent::enrolled(tmp.path(), &format!("load{i}"), &relay);
            a.configure(&agent_settings(&plugins.dir));
            let table: Vec<(String, String)> = (0..MONITORS)
                .map(|m| (format!("m{m:02}"), format!("wave{}", m % WAVES)))
                .collect();
            a.append(&monitors(&table));
            a.append(&StatePlugin::policy());
            a
        })
        .collect();
    for a in &mut agents {
        a.start();
    }
    for a in &agents {
        assert!(
            wait_until(SLOW, || console.online(&a.name)),
            "{} never online:\n{}",
            a.name,
            a.log()
        );
    }
    let db = relay.dir.join("relay.db");
    let alert_tickets = || -> i64 {
        open_ro(&db)
            .query_row(
                "SELECT COUNT(*) FROM tickets WHERE source = 'alert'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    };

    // Wave 0 fails; as soon as its first tickets land, kill -9.
    plugins.set("wave0", 2);
    assert!(wait_until(SLOW, || alert_tickets() > 0), "{}", relay.log());
    relay.kill();
    let at_kill = alert_tickets();
    // Wave 1 fails while the relay is down: alerts wait in the outboxes.
    plugins.set("wave1", 2);
    std::thread::sleep(Duration::from_secs(3));
    // Back up — and down again while the agents drain their backlog.
    relay.serve();
    std::thread::sleep(Duration::from_millis(300));
    relay.kill();
    plugins.set("wave2", 2);
    std::thread::sleep(Duration::from_secs(1));
    relay.serve();
    eprintln!(
        "{at_kill} of {} alert tickets stored at the first kill -9",
        AGENTS * MONITORS
    );

    for a in &agents {
        wait_all_events_arrived(&relay, a);
    }
    let conn = open_ro(&db);
    let per_monitor: Vec<(String, String, i64)> = conn
        .prepare(
            "SELECT agent, monitor, COUNT(*) FROM tickets WHERE source = 'alert' GROUP BY agent, monitor",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        per_monitor.len(),
        AGENTS * MONITORS,
        "every failing monitor has its ticket: {per_monitor:?}"
    );
    let twice: Vec<_> = per_monitor.iter().filter(|(_, _, n)| *n != 1).collect();
    assert!(
        twice.is_empty(),
        "a monitor with more than one ticket: {twice:?}"
    );
    // No event ingested twice: one `opened` entry per ticket and no result
    // stored twice on a ticket.
    let opened_twice: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM (SELECT ticket_id FROM ticket_entries WHERE kind = 'opened'
             GROUP BY ticket_id HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let results_twice: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM (SELECT ticket_id, body FROM ticket_entries WHERE kind = 'result'
             GROUP BY ticket_id, body HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (opened_twice, results_twice),
        (0, 0),
        "an event was ingested twice"
    );
    // And the console sees the same.
    let listed: Vec<Value> =
        serde_json::from_slice(&console.run(&["tickets", "--json"]).stdout).unwrap();
    let alerts = listed.iter().filter(|t| t["source"] == "alert").count();
    assert_eq!(alerts, AGENTS * MONITORS);
}

// ------------------------------------------------ (c) hostile frames

/// Hostile stream `i`: the bytes to send, whether to reset the stream
/// after them instead of finishing it, and the error code the relay must
/// answer with (`None`: any error, or none for a reset stream).
fn hostile(i: usize) -> (Vec<u8>, bool, Option<ErrorCode>) {
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // A cheap, deterministic byte stream per stream.
    let noise: Vec<u8> = (0..(i % 61))
        .map(|k| ((i * 31 + k * 17) % 251) as u8)
        .collect();
    match i % 9 {
        0 => (
            ((firstline_proto::MAX_FRAME_LEN as u32) + 1 + i as u32)
                .to_be_bytes()
                .to_vec(),
            false,
            Some(ErrorCode::FrameTooLarge),
        ),
        1 => (frame(b"\x00\xffnot-json"), false, Some(ErrorCode::Malformed)),
        2 => {
            // Truncated: declares 100 bytes, sends a few, ends the stream.
            let mut f = 100u32.to_be_bytes().to_vec();
            f.extend_from_slice(br#"{"v":1,"type":"li"#);
            (f, false, Some(ErrorCode::Malformed))
        }
        3 => (
            frame(br#"{"v":42,"type":"list_agents"}"#),
            false,
            Some(ErrorCode::UnknownVersion),
        ),
        4 => (
            frame(br#"{"v":1,"type":"hello","version_min":1,"version_max":1,"software":"x","os":"x","hostname":"x"}"#),
            false,
            Some(ErrorCode::BadRequest),
        ),
        5 => (noise, false, None),
        6 => (frame(&noise), false, None),
        7 => {
            // Half a length prefix, then the stream is reset.
            (vec![0, 0], true, None)
        }
        _ => (Vec::new(), false, Some(ErrorCode::BadRequest)),
    }
}

async fn hostile_stream(conn: &quinn::Connection, i: usize) -> Result<(), String> {
    let (bytes, reset, expect) = hostile(i);
    let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(&bytes).await.map_err(|e| e.to_string())?;
    if reset {
        let _ = send.reset(quinn::VarInt::from_u32(7));
    } else {
        let _ = send.finish();
    }
    let mut recv = firstline_net::FramedRecv::new(recv);
    match (recv.recv_within(SLOW).await, expect) {
        (Ok(Some(Message::Error { code, .. })), Some(want)) if code == want => Ok(()),
        (Ok(Some(Message::Error { .. })), None) => Ok(()),
        (Err(firstline_net::LinkError::Read(_)), None) => Ok(()),
        (Ok(None), None) if reset => Ok(()),
        (other, _) => Err(format!("stream {i}: expected {expect:?}, got {other:?}")),
    }
}

#[test]
fn ten_thousand_hostile_frames_relay_up_agent_answering() {
    const STREAMS: usize = 10_000;
    const CONNECTIONS: usize = 4;
    let mut s = Setup::new("viewer");
    let cred = Credential::load(&s.relay.operator("probe", "viewer")).unwrap();

    // A technician keeps running a real check on the real agent meanwhile.
    let flooding = Arc::new(AtomicBool::new(true));
    let checker = {
        let flooding = flooding.clone();
        let home = s.console.home.clone();
        std::thread::spawn(move || {
            let console = Console { home };
            let mut answered = 0;
            while flooding.load(Ordering::Relaxed) {
                let out = console.run(&["run", "pc1", "disk", "/", "--json"]);
                assert!(
                    disk_result(&out),
                    "the agent stopped answering during the flood: {}",
                    text(&out)
                );
                answered += 1;
            }
            answered
        })
    };

    let rt = tokio::runtime::Runtime::new().unwrap();
    let failures = rt.block_on(async {
        let tls = cred.client_config().unwrap();
        let remote = firstline_net::endpoint::resolve(&cred.relay).unwrap();
        let ep = firstline_net::endpoint::client(tls, remote, Default::default()).unwrap();
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(firstline_net::endpoint::connect(&ep, remote).await.unwrap());
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (c, conn) in conns.iter().enumerate() {
            let conn = conn.clone();
            tasks.spawn(async move {
                let mut failures = Vec::new();
                // Up to 32 streams in flight per connection (the relay allows 64).
                let mut inflight = tokio::task::JoinSet::new();
                for i in (c..STREAMS).step_by(CONNECTIONS) {
                    if inflight.len() >= 32 {
                        if let Some(Ok(Err(e))) = inflight.join_next().await {
                            failures.push(e);
                        }
                    }
                    let conn = conn.clone();
                    inflight.spawn(async move { hostile_stream(&conn, i).await });
                }
                while let Some(r) = inflight.join_next().await {
                    if let Ok(Err(e)) = r {
                        failures.push(e);
                    }
                }
                failures
            });
        }
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            failures.extend(r.unwrap());
        }
        // The hostile connections themselves still work.
        for conn in &conns {
            let (_send, mut recv) = request(conn, Message::ListAgents {}).await.unwrap();
            assert!(matches!(
                recv.recv_within(SLOW).await.unwrap(),
                Some(Message::Agents { .. })
            ));
        }
        failures
    });
    flooding.store(false, Ordering::Relaxed);
    let answered = checker.join().expect("checker");
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} hostile streams not answered as expected, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(answered >= 1, "no check ran during the flood");
    assert!(
        s.relay.proc.as_mut().unwrap().exited().is_none(),
        "the relay died:\n{}",
        s.relay.log()
    );
    assert!(s.console.online("pc1"));
    let out = s.console.run(&["run", "pc1", "disk", "/", "--json"]);
    assert!(disk_result(&out), "{}", text(&out));
    eprintln!("{STREAMS} hostile streams answered; {answered} real checks ran during the flood");
}

// ------------------------------------------------ (d) full disks

/// Fill the filesystem at `dir` to the brim with a file `fill` (chunks,
/// then single pages, until the kernel says no); its path.
fn fill_to_the_brim(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("fill");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![b'x'; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

/// The count of an agent's monitor's ticket entries of kind `status`
/// whose body matches `like`, and its alert tickets.
fn status_entries(relay: &Relay, agent: &str, monitor: &str, like: &str) -> i64 {
    open_ro(&relay.dir.join("relay.db"))
        .query_row(
            "SELECT COUNT(*) FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE t.agent = ?1 AND t.monitor = ?2 AND e.kind = 'status' AND e.body LIKE ?3",
            [agent, monitor, like],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn agent_disk_full_every_incident_reaches_the_relay_after_space_returns() {
    const OUTAGES: i64 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let plugins = StatePlugin::new(tmp.path());
    plugins.set("svc", 0);
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "full", &relay);
    // Its state folder (identity, CA, outbox) on a small filesystem.
    let disk = tmpfs::Tmpfs::mount(&tmp.path().join("agent-disk"), "2m", 1000);
    for f in ["identity.pem", "ca.pem"] {
        std::fs::copy(agent.dir.join(f), disk.path.join(f)).unwrap();
    }
    agent.configure(&format!(
        "{}\nstate_dir = \"{}\"",
        agent_settings(&plugins.dir),
        disk.path.display()
    ));
    agent.append(&monitors(&[("svc".into(), "svc".into())]));
    agent.append(&StatePlugin::policy());
    agent.start();
    // Its first results are in, then the disk fills.
    assert!(
        wait_until(SLOW, || relay_seq(&relay, "full") >= 2),
        "{}",
        agent.log()
    );
    let fill = fill_to_the_brim(&disk.path);
    for _ in 0..OUTAGES {
        plugins.set("svc", 2);
        std::thread::sleep(Duration::from_secs(3));
        plugins.set("svc", 0);
        std::thread::sleep(Duration::from_secs(3));
    }
    let failed = agent.log_lines("cannot write to the outbox");
    assert_eq!(
        failed.len(),
        1,
        "the full disk is logged once per episode:\n{}",
        agent.log()
    );
    assert_eq!(
        status_entries(&relay, "full", "svc", "%→ resolved%"),
        0,
        "nothing of the outages reached the relay while the disk was full"
    );
    std::fs::remove_file(&fill).unwrap();
    let back = Instant::now();
    assert!(
        wait_until(SLOW, || !agent
            .log_lines("the outbox can be written again")
            .is_empty()),
        "{}",
        agent.log()
    );
    wait_all_events_arrived_from(&relay, &agent, &disk.path);
    let recovered = back.elapsed();
    // Every outage: opened (a new ticket, or the last one reopened) and resolved.
    let tickets: i64 = open_ro(&relay.dir.join("relay.db"))
        .query_row(
            "SELECT COUNT(*) FROM tickets WHERE agent = 'full' AND monitor = 'svc' AND source = 'alert'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let reopened = status_entries(&relay, "full", "svc", "%reopened%");
    let resolved = status_entries(&relay, "full", "svc", "%→ resolved%");
    assert_eq!(
        (tickets + reopened, resolved),
        (OUTAGES, OUTAGES),
        "{tickets} tickets, {reopened} reopened, {resolved} resolved\n{}",
        agent.log()
    );
    // The relay was told of the episode.
    let told: String = open_ro(&relay.dir.join("relay.db"))
        .query_row(
            "SELECT summary FROM monitor_status WHERE agent = 'full' AND monitor = 'outbox'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        told.contains(&format!("{} incident events were held", 2 * OUTAGES)),
        "{told}"
    );
    eprintln!("agent disk full: {} incident events held, all at the relay {recovered:?} after space returned", 2 * OUTAGES);
}

#[test]
fn relay_disk_full_requests_fail_closed_and_the_audit_holds_after() {
    let tmp = tempfile::tempdir().unwrap();
    // The relay's whole folder (database, anchor, key) on a small filesystem.
    let disk = tmpfs::Tmpfs::mount(&tmp.path().join("relay"), "32m", 1000);
    let mut relay = Relay::init(tmp.path());
    assert_eq!(relay.dir, disk.path);
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    let works = |what: &str| {
        let out = console.run(&[what, "--json"]);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v.is_array())
    };
    assert!(works("tickets") && works("agents"), "{}", relay.log());
    let fill = fill_to_the_brim(&disk.path);
    // The last pages the database and the anchor hold may take a few more
    // entries; then every request is refused with an error, no data.
    let mut answered = 0;
    let mut refused = Vec::new();
    for i in 0..40 {
        let what = if i % 2 == 0 { "tickets" } else { "agents" };
        let out = console.run(&[what, "--json"]);
        if out.status.success() {
            assert!(
                refused.is_empty(),
                "{what} answered after a refusal: {}",
                text(&out)
            );
            answered += 1;
            continue;
        }
        assert!(out.stdout.is_empty(), "an error and data: {}", text(&out));
        refused.push(stderr(&out));
        if refused.len() == 6 {
            break;
        }
    }
    assert_eq!(
        refused.len(),
        6,
        "{answered} answered, none refused:\n{}",
        relay.log()
    );
    assert!(
        refused
            .iter()
            .all(|e| e.contains("cannot write this request's audit entry")),
        "{refused:#?}"
    );
    eprintln!(
        "relay disk full: {answered} requests answered on the last free pages, then refused: {}",
        refused[0].trim()
    );
    std::fs::remove_file(&fill).unwrap();
    assert!(works("tickets") && works("agents"), "{}", relay.log());
    let verify = relay.cmd(&["audit", "verify"]);
    assert!(verify.status.success(), "audit verify: {}", text(&verify));

    // Now only the anchor's filesystem is full (the database has room): a
    // checkpoint line that does not fit is not left torn, and the request
    // is refused all the same.
    let anchor_disk = tmpfs::Tmpfs::mount(&tmp.path().join("anchor-disk"), "64k", 100);
    let anchor = relay.dir.join("audit-anchor.log");
    let moved = anchor_disk.path.join("audit-anchor.log");
    std::fs::copy(&anchor, &moved).unwrap();
    std::fs::remove_file(&anchor).unwrap();
    std::os::unix::fs::symlink(&moved, &anchor).unwrap();
    let fill = fill_to_the_brim(&anchor_disk.path);
    let mut refused = 0;
    for i in 0..200 {
        let out = console.run(&[if i % 2 == 0 { "tickets" } else { "agents" }, "--json"]);
        let lines = std::fs::read(&moved).unwrap();
        assert_eq!(lines.last(), Some(&b'\n'), "a torn checkpoint line");
        if !out.status.success() {
            assert!(out.stdout.is_empty(), "an error and data: {}", text(&out));
            assert!(
                stderr(&out).contains("checkpoint could not be written"),
                "{}",
                text(&out)
            );
            refused += 1;
            if refused == 4 {
                break;
            }
        }
    }
    assert_eq!(refused, 4, "never refused:\n{}", relay.log());
    std::fs::remove_file(&fill).unwrap();
    assert!(works("tickets") && works("agents"), "{}", relay.log());
    let verify = relay.cmd(&["audit", "verify"]);
    assert!(verify.status.success(), "audit verify: {}", text(&verify));
    assert!(
        !text(&verify).contains("torn"),
        "no torn checkpoint line: {}",
        text(&verify)
    );
}
