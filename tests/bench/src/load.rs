//! `firstline-bench load`: N simulated agents against a release
//! `firstline-relay serve` running as its own process — or against several
//! relays of one deployment (`--relays N`), on SQLite or PostgreSQL
//! (`--store`; see `crate::deploy`).
//!
//! Phases, each measured on its own:
//! 1. **enroll** — N identities issued in bulk through the relay's CA code
//!    (`admin::bulk_agents`), recorded in its database.
//! 2. **ramp** — N real QUIC + mutual TLS handshakes, `hello` → `welcome`,
//!    at most `--concurrency` in flight: handshake rate.
//! 3. **hold** — idle connections (keep-alives only): relay RSS per
//!    connected agent, relay and generator CPU at rest.
//! 4. **bulk** — `run disk / --select name=sim-*` through the relay's bulk
//!    path (one request; the relay paces it, `--bulk-max-in-flight`): wall
//!    time, each agent's item time from the start, how many answered, the
//!    relay's RSS sampled during it.
//! 5. **fan-out** — one `run disk /` per connected agent, all issued at
//!    once through operator connections (64 request streams each, the
//!    relay's per-peer limit): time from the start until each result is back.
//!    The unpaced broadcast, for comparison with the bulk phase.
//! 6. **alerts** — `incident_opened` events, one per `events` message, each
//!    a new ticket: first closed-loop (`--alert-concurrency` in flight) for
//!    the sustained rate, then paced at half that rate for latency. Latency
//!    is from sending the event until the ticket is visible to another
//!    reader of the relay database (polled every 2 ms).
//! 7. **reconnect** — `--reconnect N` agents close their connections and
//!    come back, as agents do after a dropped link: each resumes its TLS
//!    session from the relay's ticket (counted: the relay asks a resumed
//!    client for no certificate). Relay CPU per reconnect, beside the
//!    ramp's per full handshake.
//!
//! With `--relays N` the agents are spread over the relays round-robin
//! (agent i on relay `i mod N`), the operator connections of the fan-out
//! all go to relay 1 (requests for agents held by the others are forwarded
//! over NATS: their latencies are also given apart), and the alerts of
//! every relay land in the one shared store, where they are counted.

use crate::deploy::{self, Cpu, StoreKind, TicketWatcher};
use crate::procfs;
use crate::sim;
use crate::stats::{ms, Latency, Table};
use anyhow::Result;
use firstline_net::credential::Credential;
use firstline_net::tls::Sessions;
use firstline_proto::Role;
use firstline_relay::admin;
use quinn::{Connection, Endpoint};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 2000)]
    pub agents: usize,
    /// Seconds of alert ingest (half sustained, half paced).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Client UDP endpoints the agents are spread over (0: one per agent,
    /// as real agents on separate machines have).
    #[arg(long, default_value_t = 8)]
    pub endpoints: usize,
    /// Handshakes in flight during the ramp.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Event messages in flight in the sustained alert phase.
    #[arg(long, default_value_t = 64)]
    pub alert_concurrency: usize,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Keep-alive interval of the simulated agents, seconds (agent.toml
    /// default: 5; the relay's `keep_alive_secs` is set with --relay-config).
    #[arg(long, default_value_t = 5)]
    pub keep_alive: u64,
    /// Idle timeout of the simulated agents, seconds (agent.toml default: 20).
    #[arg(long, default_value_t = 20)]
    pub idle_timeout: u64,
    /// Seconds of idle hold after the ramp (RSS and CPU at rest).
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// The relay binary (a release build).
    #[arg(long, default_value = "target/release/firstline-relay")]
    pub relay_bin: PathBuf,
    /// Extra `key = value` lines for relay.toml.
    #[arg(long)]
    pub relay_config: Vec<String>,
    /// Keep the temporary relay folder (its log and database).
    #[arg(long)]
    pub keep: bool,
    /// Where the relays keep their data: a SQLite file beside relay.toml,
    /// or a fresh database of a private PostgreSQL 15 started for the run.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// Connections (and threads) of each relay's PostgreSQL pool: `?pool=N`
    /// on the store URL (default: the relay's own default).
    #[arg(long, value_name = "N")]
    pub pool: Option<usize>,
    /// Relays of one deployment: the first made with `init`, the others
    /// with `init --join`, sharing the store and a private nats-server;
    /// agents spread over them round-robin, the fan-out sent through
    /// relay 1 only. With --store sqlite they share one SQLite file (one
    /// machine only: not a production layout).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub relays: usize,
    /// In-flight bound of the bulk phase (`firstline run --select …
    /// --max-in-flight N`; default: the relay's default).
    #[arg(long, value_name = "N")]
    pub bulk_max_in_flight: Option<u32>,
    /// Skip the bulk phase (relays older than bulk actions).
    #[arg(long)]
    pub no_bulk: bool,
    /// Agents that drop their connection and reconnect at the end (0: none).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub reconnect: usize,
}

/// The relay's `max_connections` (default 100,000) counts every
/// connection, the generator's operators (one per 64 agents in the
/// fan-out) too: raised for a run that would not fit, unless set.
fn fit_connections(args: &mut LoadArgs) {
    const RELAY_DEFAULT: usize = 100_000;
    let needed = args.agents + args.agents / 64 + 1024;
    let set = args
        .relay_config
        .iter()
        .any(|l| l.trim_start().starts_with("max_connections"));
    if needed > RELAY_DEFAULT && !set {
        args.relay_config
            .push(format!("max_connections = {needed}"));
    }
}

pub fn main(args: LoadArgs) -> Result<()> {
    layout(&args).check()?;
    let fd_limit = crate::raise_fd_limit(args.agents as u64 * 2 + 4096);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args, fd_limit))
}

fn layout(args: &LoadArgs) -> deploy::Layout {
    deploy::Layout {
        store: args.store,
        relays: args.relays,
        pool: args.pool,
    }
}

/// A connected simulated agent.
struct Sim {
    name: String,
    conn: Connection,
    /// Its identity (certificate then key, PEM) and TLS sessions, for the
    /// reconnect phase.
    identity: String,
    sessions: Mutex<Sessions>,
    /// Next event sequence number; the lock keeps one message in flight
    /// per agent, as the real outbox does, so sequences arrive in order.
    seq: tokio::sync::Mutex<u64>,
    /// The relay it is connected to (0: relay 1).
    relay: usize,
}

async fn run(args: LoadArgs, fd_limit: u64) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("firstline-bench-")
        .tempdir()?;
    let keep = args.keep;
    let outcome = measure(args, fd_limit, tmp.path()).await;
    if let Err(e) = &outcome {
        eprintln!("firstline-bench: {e:#}");
    }
    if outcome.is_err() || keep {
        // The relays' folders, logs and SQLite database (PostgreSQL's log
        // is copied there: its server is removed with the run), for the
        // post-mortem.
        eprintln!("relay folders and logs kept in {}", tmp.keep().display());
    }
    outcome
}

async fn measure(mut args: LoadArgs, fd_limit: u64, tmp: &Path) -> Result<()> {
    fit_connections(&mut args);
    let mut table = Table::default();
    table.row(
        "machine",
        format!(
            "{} cores, {} MiB RAM; fd limit {fd_limit}",
            std::thread::available_parallelism().map_or(1, |p| p.get()),
            crate::mem_total_mib()
        ),
    );

    table.row(
        "settings",
        format!(
            "agents keep-alive {} s, idle timeout {} s; relay.toml extra: {}",
            args.keep_alive,
            args.idle_timeout,
            if args.relay_config.is_empty() {
                "none (defaults)".to_string()
            } else {
                args.relay_config.join(", ")
            }
        ),
    );

    // ---- deployment: peers, relay folders, operator, bulk enrollment ----
    let layout = layout(&args);
    table.row("deployment", layout.describe());
    let mut deployment = deploy::make(tmp, &layout, &args.relay_bin, &args.relay_config)?;
    let outcome = measure_deployment(&args, &mut deployment, &mut table, tmp).await;
    if outcome.is_err() || args.keep {
        let log = deployment.postgres_log();
        if !log.is_empty() {
            let _ = std::fs::write(tmp.join("postgres.log"), log);
        }
    }
    outcome
}

async fn measure_deployment(
    args: &LoadArgs,
    deployment: &mut deploy::Deployment,
    table: &mut Table,
    tmp: &Path,
) -> Result<()> {
    let n = args.agents;
    let relays = deployment.nodes.len();
    for (what, value) in deployment.notes.clone() {
        table.row(what, value);
    }
    let dir = deployment.dir.clone();
    let listen = deployment.nodes[0].listen;
    let relay_addrs: Vec<_> = deployment.nodes.iter().map(|node| node.listen).collect();
    let cred_path = tmp.join("bench.credential.toml");
    // The offline admin commands run outside the async runtime: with
    // [cluster] nats they publish their audit checkpoint with a runtime of
    // their own.
    off_runtime({
        let (dir, cred_path) = (dir.clone(), cred_path.clone());
        move || admin::operator_add(&dir, "bench", Role::Technician, &cred_path)
    })
    .await?;
    let cred = Credential::load(&cred_path)?;
    let t = Instant::now();
    let identities = off_runtime({
        let dir = dir.clone();
        move || admin::bulk_agents(&dir, "sim-", n, Duration::from_secs(86_400))
    })
    .await?;
    table.row(
        "bulk enrollment",
        format!(
            "{n} keys + certificates signed and recorded in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    let ca = firstline_net::pem::certs(&cred.ca)?;

    // ---- relay processes ----
    deployment.start(&args.relay_bin, tmp)?;
    let pids = deployment.pids();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_bases: Vec<u64> = pids
        .relays
        .iter()
        .map(|&p| procfs::rss_kib(p).unwrap_or(0))
        .collect();
    let rss_base: u64 = rss_bases.iter().sum();
    table.row("relay RSS at start", kib_list(&rss_bases));
    eprintln!(
        "relay pid(s) {:?} on {relay_addrs:?}, RSS {}; ramping {n} agents…",
        pids.relays,
        kib_list(&rss_bases)
    );

    // ---- ramp ----
    let endpoints: Vec<Endpoint> = (0..if args.endpoints == 0 {
        n
    } else {
        args.endpoints.min(n)
    }
    .max(1))
        .map(|_| sim::endpoint())
        .collect::<Result<_>>()?;
    let sims: Arc<Mutex<Vec<Arc<Sim>>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let failures = Arc::new(AtomicUsize::new(0));
    let gave_up = Arc::new(AtomicUsize::new(0));
    let last_error: Arc<Mutex<Option<String>>> = Arc::default();
    let handshake_ms: Arc<Mutex<Vec<f64>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let transport = sim::transport(
        Duration::from_secs(args.keep_alive),
        Duration::from_secs(args.idle_timeout),
    );
    let cpu = Cpu::now(&pids);
    let ramp_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, pem)) in identities.into_iter().enumerate() {
        let ep = endpoints[i % endpoints.len()].clone();
        // Round-robin over the relays.
        let relay = i % relays;
        let addr = relay_addrs[relay];
        let gave_up = gave_up.clone();
        let transport = transport.clone();
        let (ca, sims, failures, last_error, handshake_ms, permits) = (
            ca.clone(),
            sims.clone(),
            failures.clone(),
            last_error.clone(),
            handshake_ms.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            for attempt in 0..3 {
                let t = Instant::now();
                let mut sessions = Sessions::default();
                let outcome = match sim::client_config(&pem, &ca, transport.clone(), &mut sessions)
                {
                    Ok((cfg, _)) => sim::connect(&ep, addr, cfg, &name).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(conn) => {
                        handshake_ms
                            .lock()
                            .map(|mut v| v.push(ms(t.elapsed())))
                            .ok();
                        let sim = Arc::new(Sim {
                            name,
                            conn: conn.clone(),
                            identity: pem,
                            sessions: Mutex::new(sessions),
                            seq: tokio::sync::Mutex::new(1),
                            relay,
                        });
                        if let Ok(mut v) = sims.lock() {
                            v.push(sim);
                        }
                        drop(_permit);
                        sim::serve(conn).await;
                        return;
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut l) = last_error.lock() {
                            *l = Some(format!("{name} attempt {attempt}: {e:#}"));
                        }
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
            gave_up.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Wait until every agent is connected or has given up.
    let connected_count = || sims.lock().map(|v| v.len()).unwrap_or(0);
    let mut last_progress = Instant::now();
    let mut last_seen = 0;
    let mut next_report = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = connected_count();
        if c != last_seen {
            last_seen = c;
            last_progress = Instant::now();
        }
        if c + gave_up.load(Ordering::Relaxed) >= n
            || last_progress.elapsed() > Duration::from_secs(30)
        {
            break;
        }
        if Instant::now() > next_report {
            next_report += Duration::from_secs(5);
            eprintln!(
                "  {c}/{n} connected after {:.0} s",
                ramp_start.elapsed().as_secs_f64()
            );
        }
    }
    let ramp = ramp_start.elapsed();
    let ramp_cpu = cpu.since(&pids);
    let connected = connected_count();
    let handshake_cpu_ms = 1000.0 * cpu.relay_secs_since(&pids) / connected.max(1) as f64;
    let handshakes_per_s = connected as f64 / ramp.as_secs_f64();
    table.row(
        "ramp",
        format!(
            "{connected}/{n} connected in {:.2} s over {} client endpoint(s), {} in flight{}",
            ramp.as_secs_f64(),
            endpoints.len(),
            args.concurrency,
            if relays > 1 {
                format!(", round-robin over {relays} relays")
            } else {
                String::new()
            }
        ),
    );
    table.row(
        "handshake rate",
        format!("{handshakes_per_s:.0} /s (QUIC + mutual TLS 1.3 + hello/welcome)"),
    );
    let hs = Latency::of(handshake_ms.lock().map(|v| v.clone()).unwrap_or_default());
    table.row("handshake latency", hs.to_string());
    table.row("ramp CPU", ramp_cpu);
    table.row(
        "relay CPU per handshake",
        format!("{handshake_cpu_ms:.2} ms (relay CPU time during the ramp ÷ agents connected)"),
    );
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        table.row(
            "handshake failures",
            format!(
                "{failed} (retried); last: {}",
                last_error
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .unwrap_or_default()
            ),
        );
    }

    // ---- operator connections (to relay 1), presence ----
    let op_tls = cred.client_config().map_err(anyhow::Error::msg)?;
    let op_ep = firstline_net::endpoint::client(op_tls, listen, Default::default())?;
    let mut ops: Vec<Connection> = Vec::new();
    if relays > 1 {
        ops.push(
            firstline_net::endpoint::connect(&op_ep, listen)
                .await
                .map_err(anyhow::Error::msg)?,
        );
        // Relay 1 must know where every agent is before the fan-out: the
        // other relays announce their agents over NATS.
        let names: HashSet<String> = sims
            .lock()
            .map(|v| v.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        let t = Instant::now();
        let mut online = 0;
        while t.elapsed() < Duration::from_secs(60) {
            online = sim::list_agents(&ops[0])
                .await?
                .iter()
                .filter(|a| a.online && names.contains(&a.name))
                .count();
            if online >= names.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        table.row(
            "presence on relay 1",
            format!(
                "{online}/{} connected agents shown online by relay 1 ({:.1} s after the ramp)",
                names.len(),
                t.elapsed().as_secs_f64()
            ),
        );
    }

    // ---- hold ----
    let cpu = Cpu::now(&pids);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let hold_cpu = cpu.since(&pids);
    let alive = sims
        .lock()
        .map(|v| v.iter().filter(|s| s.conn.close_reason().is_none()).count())
        .unwrap_or(0);
    let rss_each: Vec<u64> = pids
        .relays
        .iter()
        .map(|&p| procfs::rss_kib(p).unwrap_or(0))
        .collect();
    let rss: u64 = rss_each.iter().sum();
    let per_agent = rss.saturating_sub(rss_base) as f64 / alive.max(1) as f64;
    table.row(
        "connections held",
        format!("{alive} alive after {} s idle", args.hold),
    );
    table.row(
        "relay RSS",
        format!(
            "{} = {per_agent:.1} KiB per connected agent above the {rss_base} KiB at start; {} threads",
            kib_list(&rss_each),
            pids.relays
                .iter()
                .map(|&p| procfs::threads(p).unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        ),
    );
    table.row("idle CPU (keep-alives)", hold_cpu);
    table.row(
        "generator RSS",
        format!("{} KiB", procfs::rss_kib(std::process::id()).unwrap_or(0)),
    );

    // ---- bulk ----
    let all: Vec<Arc<Sim>> = sims.lock().map(|v| v.clone()).unwrap_or_default();
    let bulk_keys = if args.no_bulk {
        String::new()
    } else {
        if ops.is_empty() {
            ops.push(
                firstline_net::endpoint::connect(&op_ep, listen)
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
        }
        bulk_phase(&ops[0], &all, &pids, args.bulk_max_in_flight, table).await?
    };

    // ---- fan-out ----
    let ops_needed = all.len().div_ceil(64).max(1);
    while ops.len() < ops_needed {
        ops.push(
            firstline_net::endpoint::connect(&op_ep, listen)
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    eprintln!(
        "fan-out: `run disk /` on {} agents over {ops_needed} operator connections to relay 1…",
        all.len()
    );
    let cpu = Cpu::now(&pids);
    let t0 = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for (i, s) in all.iter().enumerate() {
        let op = ops[i % ops.len()].clone();
        let (name, forwarded) = (s.name.clone(), s.relay != 0);
        runs.spawn(async move {
            let outcome = sim::run_check(&op, &name, "disk", &["/"]).await;
            (outcome.map(|_| ()), t0.elapsed(), forwarded)
        });
    }
    let mut fan_ms = Vec::with_capacity(all.len());
    let (mut local_ms, mut forwarded_ms) = (Vec::new(), Vec::new());
    let mut fan_fail = 0;
    let mut fan_err = None;
    while let Some(r) = runs.join_next().await {
        match r {
            Ok((Ok(()), d, forwarded)) => {
                fan_ms.push(ms(d));
                if forwarded {
                    forwarded_ms.push(ms(d));
                } else {
                    local_ms.push(ms(d));
                }
            }
            Ok((Err(e), _, _)) => {
                fan_fail += 1;
                fan_err = Some(format!("{e:#}"));
            }
            Err(_) => fan_fail += 1,
        }
    }
    let fan_total = t0.elapsed();
    let fan = Latency::of(fan_ms);
    let forwarded = Latency::of(forwarded_ms);
    table.row(
        "fan-out (run disk / on every agent)",
        format!(
            "{} results in {:.2} s; {fan}{}",
            fan.n,
            fan_total.as_secs_f64(),
            if fan_fail > 0 {
                format!("; {fan_fail} failed, last: {}", fan_err.unwrap_or_default())
            } else {
                String::new()
            }
        ),
    );
    if relays > 1 {
        table.row(
            "  agents on relay 1 (local)",
            Latency::of(local_ms).to_string(),
        );
        table.row(
            "  agents on other relays (forwarded over NATS)",
            forwarded.to_string(),
        );
    }
    table.row("fan-out CPU", cpu.since(&pids));
    let rss_after: Vec<u64> = pids
        .relays
        .iter()
        .map(|&p| procfs::rss_kib(p).unwrap_or(0))
        .collect();
    table.row("relay RSS after fan-out", kib_list(&rss_after));

    // ---- alerts ----
    let watcher = TicketWatcher::start(deployment.ticket_source()?)?;
    let sent: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let ack_ms: Arc<Mutex<Vec<f64>>> = Arc::default();
    let alert_fail = Arc::new(AtomicUsize::new(0));
    let half = Duration::from_millis(args.duration * 500);

    // Sustained: closed loop.
    eprintln!(
        "alerts: {} s sustained, {} s paced…",
        half.as_secs_f64(),
        half.as_secs_f64()
    );
    let cpu = Cpu::now(&pids);
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    let c = args.alert_concurrency.max(1).min(all.len().max(1));
    for w in 0..c {
        let mine: Vec<Arc<Sim>> = all.iter().skip(w).step_by(c).cloned().collect();
        let (sent, ack_ms, acked, stop, fail) = (
            sent.clone(),
            ack_ms.clone(),
            acked.clone(),
            stop.clone(),
            alert_fail.clone(),
        );
        workers.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && !mine.is_empty() {
                let s = &mine[i % mine.len()];
                i += 1;
                if send_alert(s, &sent, &ack_ms).await {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    fail.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(half).await;
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let sustained_n = acked.load(Ordering::Relaxed);
    let sustained_wall = start.elapsed();
    let alerts_per_s = sustained_n as f64 / sustained_wall.as_secs_f64();
    let sustained_cpu = cpu.since(&pids);
    let alert_cpu_us = 1e6 * cpu.relay_secs_since(&pids) / sustained_n.max(1) as f64;
    let sustained_ack = Latency::of(std::mem::take(
        &mut *ack_ms.lock().map_err(|_| anyhow::anyhow!("lock"))?,
    ));
    let sustained_visible = watcher.latencies(&sent);
    table.row(
        "alerts sustained (closed loop)",
        format!("{alerts_per_s:.0} alerts/s, {c} in flight, 1 incident_opened per message, each a new ticket"),
    );
    table.row("  event → ack (stored)", sustained_ack.to_string());
    table.row("  event → ticket visible", sustained_visible.to_string());
    table.row("  CPU", sustained_cpu);
    table.row(
        "  relay CPU per alert",
        format!("{alert_cpu_us:.0} µs (relay CPU time ÷ alerts acknowledged)"),
    );

    // Paced: open loop at half the sustained rate.
    sent.lock().map(|mut m| m.clear()).ok();
    let rate = (alerts_per_s / 2.0).max(1.0);
    let cpu = Cpu::now(&pids);
    let start = Instant::now();
    let mut pacer = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    pacer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut paced = tokio::task::JoinSet::new();
    let mut k = 0usize;
    while start.elapsed() < half && !all.is_empty() {
        pacer.tick().await;
        let s = all[k % all.len()].clone();
        k += 1;
        let (sent, ack_ms, fail) = (sent.clone(), ack_ms.clone(), alert_fail.clone());
        paced.spawn(async move {
            if !send_alert(&s, &sent, &ack_ms).await {
                fail.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while paced.join_next().await.is_some() {}
    let paced_cpu = cpu.since(&pids);
    let paced_ack = Latency::of(std::mem::take(
        &mut *ack_ms.lock().map_err(|_| anyhow::anyhow!("lock"))?,
    ));
    let paced_visible = watcher.latencies(&sent);
    table.row(
        "alerts paced (open loop)",
        format!("{k} alerts at {rate:.0}/s (half the sustained rate)"),
    );
    table.row("  event → ack (stored)", paced_ack.to_string());
    table.row("  event → ticket visible", paced_visible.to_string());
    table.row("  CPU", paced_cpu);
    let (tickets, dups) = watcher.totals()?;
    let failed_alerts = alert_fail.load(Ordering::Relaxed);
    table.row(
        "alert tickets in the database",
        format!(
            "{tickets} for {} acknowledged alerts; {dups} duplicated; {failed_alerts} sends failed",
            sustained_n as usize + paced_ack.n
        ),
    );
    watcher.stop();

    // ---- end ----
    let still = sims
        .lock()
        .map(|v| v.iter().filter(|s| s.conn.close_reason().is_none()).count())
        .unwrap_or(0);
    let relay_up = deployment.all_up();
    let peaks: Vec<u64> = pids
        .relays
        .iter()
        .map(|&p| procfs::peak_rss_kib(p).unwrap_or(0))
        .collect();
    table.row(
        "at the end",
        format!(
            "{still} connections alive; {} {}; relay peak RSS {}; generator peak RSS {} KiB",
            if relays > 1 { "relays" } else { "relay" },
            if relay_up { "up" } else { "DOWN" },
            kib_list(&peaks),
            procfs::peak_rss_kib(std::process::id()).unwrap_or(0)
        ),
    );
    let (back, reconnect_keys) = if args.reconnect > 0 {
        let count = args.reconnect.min(all.len());
        let shared = Shared {
            endpoints: &endpoints,
            relays: &relay_addrs,
            ca: &ca,
            transport: &transport,
            pids: &pids,
        };
        reconnect_phase(&all[..count], &shared, args.concurrency, table).await
    } else {
        (Vec::new(), String::new())
    };
    for s in &all {
        s.conn.close(0u32.into(), b"bench over");
    }
    for conn in &back {
        conn.close(0u32.into(), b"bench over");
    }
    for op in &ops {
        op.close(0u32.into(), b"bench over");
    }
    deployment.stop_relays();
    if let Some((totals, tables)) = deployment.postgres_stats() {
        table.row("PostgreSQL over the run", totals);
        table.row("  rows inserted/updated by table", tables);
    }
    for (i, log) in deployment.logs() {
        let errors = log.lines().filter(|l| l.contains("ERROR")).count();
        if errors > 0 {
            table.row(
                format!("relay {i} log errors"),
                format!(
                    "{errors}; first: {}",
                    log.lines()
                        .find(|l| l.contains("ERROR"))
                        .unwrap_or_default()
                ),
            );
        }
    }

    println!();
    table.print();
    let forwarded_keys = if relays > 1 {
        format!(
            " fanout_forwarded_p50_ms={:.1} fanout_forwarded_p99_ms={:.1}",
            forwarded.p50, forwarded.p99
        )
    } else {
        String::new()
    };
    println!(
        "agents={n} store={} relays={relays} connected={alive} relay_rss_kib_per_agent={per_agent:.1} handshakes_per_s={handshakes_per_s:.0} handshake_cpu_ms={handshake_cpu_ms:.2} fanout_p50_ms={:.1} fanout_p99_ms={:.1} alerts_per_s={alerts_per_s:.0} alert_cpu_us={alert_cpu_us:.0} alert_p50_ms={:.1} alert_p99_ms={:.1}{forwarded_keys}{bulk_keys}{reconnect_keys}",
        deployment.layout.store, fan.p50, fan.p99, paced_visible.p50, paced_visible.p99
    );
    tasks.abort_all();
    Ok(())
}

/// What the reconnect phase needs of the run.
struct Shared<'a> {
    endpoints: &'a [Endpoint],
    relays: &'a [std::net::SocketAddr],
    ca: &'a [rustls::pki_types::CertificateDer<'static>],
    transport: &'a Arc<quinn::TransportConfig>,
    pids: &'a deploy::Pids,
}

/// The reconnect phase: `sims` close their connections (the relay sees
/// them go), then all come back at once, at most `concurrency` handshakes
/// in flight, each with the TLS config it connected with — so with its
/// session ticket, as a real agent after a dropped link. Returns the new
/// connections and the `key=value` pairs for the last line.
async fn reconnect_phase(
    sims: &[Arc<Sim>],
    run: &Shared<'_>,
    concurrency: usize,
    table: &mut Table,
) -> (Vec<Connection>, String) {
    eprintln!(
        "reconnect: {} agents drop their link and come back…",
        sims.len()
    );
    for s in sims {
        s.conn.close(0u32.into(), b"link dropped");
    }
    // Let the relay take them off its books before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = Cpu::now(run.pids);
    let t = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in sims.iter().enumerate() {
        let config = s
            .sessions
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))
            .and_then(|mut sessions| {
                sim::client_config(&s.identity, run.ca, run.transport.clone(), &mut sessions)
            });
        let (ep, addr) = (
            run.endpoints[i % run.endpoints.len()].clone(),
            run.relays[s.relay],
        );
        let (name, permits) = (s.name.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let (config, handshake) = config.ok()?;
            let conn = sim::connect(&ep, addr, config, &name).await.ok()?;
            tokio::spawn(sim::serve(conn.clone()));
            Some((conn, !handshake.full()))
        });
    }
    let mut back = Vec::with_capacity(sims.len());
    let mut resumed = 0;
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some((conn, was_resumed))) = done {
            back.push(conn);
            resumed += usize::from(was_resumed);
        }
    }
    let wall = t.elapsed();
    let cpu_ms = 1000.0 * cpu.relay_secs_since(run.pids) / back.len().max(1) as f64;
    table.row(
        "reconnect",
        format!(
            "{}/{} back in {:.2} s ({:.0} /s); {resumed} resumed their TLS session",
            back.len(),
            sims.len(),
            wall.as_secs_f64(),
            back.len() as f64 / wall.as_secs_f64()
        ),
    );
    table.row(
        "relay CPU per reconnect",
        format!("{cpu_ms:.2} ms (relay CPU time while they came back ÷ agents back)"),
    );
    let keys = format!(
        " reconnected={} resumed={resumed} reconnect_cpu_ms={cpu_ms:.2}",
        back.len()
    );
    (back, keys)
}

/// One alert from `s`: returns whether the relay acknowledged it.
/// The bulk phase: one `bulk` request for every simulated agent, paced by
/// the relay; the relays' RSS sampled every 50 ms while it runs. Returns
/// its `key=value` pairs for the last line.
async fn bulk_phase(
    op: &Connection,
    all: &[Arc<Sim>],
    pids: &deploy::Pids,
    max_in_flight: Option<u32>,
    table: &mut Table,
) -> Result<String> {
    eprintln!(
        "bulk: `run disk / --select name=sim-*` on {} agents, paced by relay 1…",
        all.len()
    );
    let cpu = Cpu::now(pids);
    let sampling = Arc::new(AtomicBool::new(true));
    let relay_pids = pids.relays.clone();
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = vec![0u64; relay_pids.len()];
            while sampling.load(Ordering::Relaxed) {
                for (p, pid) in peak.iter_mut().zip(&relay_pids) {
                    *p = (*p).max(procfs::rss_kib(*pid).unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let t0 = Instant::now();
    let answer = sim::bulk_check(op, "name=sim-*", "disk", &["/"], max_in_flight).await;
    let wall = t0.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or_default();
    let answer = answer?;
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut answered = HashSet::new();
    let mut item_ms = Vec::with_capacity(answer.items.len());
    for (item, at) in &answer.items {
        *outcomes.entry(item.outcome.to_string()).or_default() += 1;
        if item.outcome == firstline_proto::action::ItemOutcome::Ok {
            answered.insert(item.agent.clone());
            item_ms.push(ms(*at));
        }
    }
    let lost = all.iter().filter(|s| !answered.contains(&s.name)).count();
    let lat = Latency::of(item_ms);
    let counts = outcomes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    table.row(
        "bulk (run disk / --select, paced)",
        format!(
            "{} selected, {} in flight at most; {} items ({counts}) in {:.2} s; {lost} of {} connected agents without an ok result",
            answer.selected,
            answer.max_in_flight,
            answer.items.len(),
            wall.as_secs_f64(),
            all.len()
        ),
    );
    table.row("  item time from the start", lat.to_string());
    table.row("  CPU", cpu.since(pids));
    table.row("  relay RSS, peak sampled during it", kib_list(&peak));
    Ok(format!(
        " bulk_selected={} bulk_ok={} bulk_lost={lost} bulk_wall_s={:.2} bulk_p50_ms={:.1} bulk_p99_ms={:.1} bulk_relay_peak_rss_kib={}",
        answer.selected,
        outcomes.get("ok").copied().unwrap_or(0),
        wall.as_secs_f64(),
        lat.p50,
        lat.p99,
        peak.iter().sum::<u64>()
    ))
}

async fn send_alert(
    s: &Sim,
    sent: &Mutex<HashMap<(String, String), Instant>>,
    ack_ms: &Mutex<Vec<f64>>,
) -> bool {
    let mut seq = s.seq.lock().await;
    let ev = sim::alert(*seq);
    let key = (s.name.clone(), ev.monitor.clone());
    let t = Instant::now();
    if let Ok(mut m) = sent.lock() {
        m.insert(key, t);
    }
    match sim::send_events(&s.conn, vec![ev]).await {
        Ok(upto) if upto >= *seq => {
            *seq += 1;
            if let Ok(mut v) = ack_ms.lock() {
                v.push(ms(t.elapsed()));
            }
            true
        }
        _ => false,
    }
}

/// `1234 KiB`, or `1234 + 5678 = 6912 KiB` for several relays.
fn kib_list(values: &[u64]) -> String {
    match values {
        [one] => format!("{one} KiB"),
        many => format!(
            "{} = {} KiB",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
            many.iter().sum::<u64>()
        ),
    }
}

/// Run blocking `f` on a thread of its own, outside the async runtime.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .map_err(|_| anyhow::anyhow!("an admin command panicked"))?
}
