//! `firstline-bench load`: N simulated agents against a release
//! `firstline-relay serve` running as its own process.
//!
//! Phases, each measured on its own:
//! 1. **enroll** — N identities issued in bulk through the relay's CA code
//!    (`admin::bulk_agents`), recorded in its database.
//! 2. **ramp** — N real QUIC + mutual TLS handshakes, `hello` → `welcome`,
//!    at most `--concurrency` in flight: handshake rate.
//! 3. **hold** — idle connections (keep-alives only): relay RSS per
//!    connected agent, relay and generator CPU at rest.
//! 4. **fan-out** — one `run disk /` per connected agent, all issued at
//!    once through operator connections (64 request streams each, the
//!    relay's per-peer limit): time from the start until each result is back.
//! 5. **alerts** — `incident_opened` events, one per `events` message, each
//!    a new ticket: first closed-loop (`--alert-concurrency` in flight) for
//!    the sustained rate, then paced at half that rate for latency. Latency
//!    is from sending the event until the ticket is visible to another
//!    reader of the relay database (polled every 2 ms).

use crate::procfs;
use crate::sim;
use crate::stats::{ms, Latency, Table};
use anyhow::{bail, Context, Result};
use firstline_net::credential::Credential;
use firstline_proto::Role;
use firstline_relay::{admin, RelayDir};
use quinn::{Connection, Endpoint};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
}

pub fn main(args: LoadArgs) -> Result<()> {
    let fd_limit = crate::raise_fd_limit(args.agents as u64 * 2 + 4096);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args, fd_limit))
}

/// The relay process, stopped on drop.
struct RelayProc {
    child: Child,
    log: PathBuf,
}

impl RelayProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    fn stop(&mut self) {
        crate::world::terminate(&mut self.child);
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_relay(bin: &Path, config: &Path, log: PathBuf) -> Result<RelayProc> {
    let file = std::fs::File::create(&log)?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it: cargo build --release -p firstline-relay)",
                bin.display()
            )
        })?;
    let mut relay = RelayProc { child, log };
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&relay.log).unwrap_or_default();
        if text.contains("relay listening") {
            return Ok(relay);
        }
        if !relay.alive() || Instant::now() > end {
            bail!("the relay did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A connected simulated agent.
struct Sim {
    name: String,
    conn: Connection,
    /// Next event sequence number; the lock keeps one message in flight
    /// per agent, as the real outbox does, so sequences arrive in order.
    seq: tokio::sync::Mutex<u64>,
}

/// CPU seconds of the relay, of this process and of the whole machine.
#[derive(Clone, Copy)]
struct Cpu {
    relay: f64,
    me: f64,
    machine: f64,
    at: Instant,
}

impl Cpu {
    fn now(relay: u32) -> Cpu {
        Cpu {
            relay: procfs::cpu_secs(relay).unwrap_or(0.0),
            me: procfs::cpu_secs(std::process::id()).unwrap_or(0.0),
            machine: procfs::machine_busy_secs().unwrap_or(0.0),
            at: Instant::now(),
        }
    }
    /// `relay % · generator % · others %` of one core between `self` and
    /// now ("others": the rest of the machine, which should be ~0).
    fn since(&self, relay: u32) -> String {
        let now = Cpu::now(relay);
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let (r, g) = (now.relay - self.relay, now.me - self.me);
        let others = (now.machine - self.machine - r - g).max(0.0);
        format!(
            "relay {:.0}% · generator {:.0}% · other processes {:.0}% of one core ({:.1} s wall)",
            100.0 * r / wall,
            100.0 * g / wall,
            100.0 * others / wall,
            wall
        )
    }
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
        // The relay's log and database, for the post-mortem.
        eprintln!("relay folder and log kept in {}", tmp.keep().display());
    }
    outcome
}

async fn measure(args: LoadArgs, fd_limit: u64, tmp: &Path) -> Result<()> {
    let mut table = Table::default();
    let n = args.agents;
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

    // ---- relay folder, operator, bulk enrollment ----
    let port = free_udp_port()?;
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = admin::init(&tmp.join("relay"), listen, "firstline-relay")?;
    for line in &args.relay_config {
        let key = line.split('=').next().unwrap_or_default().trim();
        let text = std::fs::read_to_string(&config)?;
        let mut kept: String = text
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .map(|l| format!("{l}\n"))
            .collect();
        kept.push_str(line);
        kept.push('\n');
        std::fs::write(&config, kept)?;
    }
    let dir = RelayDir::load(&config)?;
    let cred_path = tmp.join("bench.credential.toml");
    admin::operator_add(&dir, "bench", Role::Technician, &cred_path)?;
    let cred = Credential::load(&cred_path)?;
    let t = Instant::now();
    let identities = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || admin::bulk_agents(&dir, "sim-", n, Duration::from_secs(86_400))
    })
    .await??;
    table.row(
        "bulk enrollment",
        format!(
            "{n} keys + certificates signed and recorded in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    let ca = firstline_net::pem::certs(&cred.ca)?;

    // ---- relay process ----
    let mut relay = start_relay(&args.relay_bin, &config, tmp.join("relay.log"))?;
    let pid = relay.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = procfs::rss_kib(pid).unwrap_or(0);
    table.row("relay RSS at start", format!("{rss_base} KiB"));
    eprintln!("relay pid {pid} on {listen}, RSS {rss_base} KiB; ramping {n} agents…");

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
    let cpu = Cpu::now(pid);
    let ramp_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, pem)) in identities.into_iter().enumerate() {
        let ep = endpoints[i % endpoints.len()].clone();
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
                let outcome = match sim::client_config(&pem, &ca, transport.clone()) {
                    Ok(cfg) => sim::connect(&ep, listen, cfg, &name).await,
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
                            seq: tokio::sync::Mutex::new(1),
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
    let ramp_cpu = cpu.since(pid);
    let connected = connected_count();
    let handshakes_per_s = connected as f64 / ramp.as_secs_f64();
    table.row(
        "ramp",
        format!(
            "{connected}/{n} connected in {:.2} s over {} client endpoint(s), {} in flight",
            ramp.as_secs_f64(),
            endpoints.len(),
            args.concurrency
        ),
    );
    table.row(
        "handshake rate",
        format!("{handshakes_per_s:.0} /s (QUIC + mutual TLS 1.3 + hello/welcome)"),
    );
    let hs = Latency::of(handshake_ms.lock().map(|v| v.clone()).unwrap_or_default());
    table.row("handshake latency", hs.to_string());
    table.row("ramp CPU", ramp_cpu);
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

    // ---- hold ----
    let cpu = Cpu::now(pid);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let hold_cpu = cpu.since(pid);
    let alive = sims
        .lock()
        .map(|v| v.iter().filter(|s| s.conn.close_reason().is_none()).count())
        .unwrap_or(0);
    let rss = procfs::rss_kib(pid).unwrap_or(0);
    let per_agent = rss.saturating_sub(rss_base) as f64 / alive.max(1) as f64;
    table.row(
        "connections held",
        format!("{alive} alive after {} s idle", args.hold),
    );
    table.row(
        "relay RSS",
        format!(
            "{rss} KiB = {per_agent:.1} KiB per connected agent above the {rss_base} KiB at start; {} threads",
            procfs::threads(pid).unwrap_or(0)
        ),
    );
    table.row("idle CPU (keep-alives)", hold_cpu);
    table.row(
        "generator RSS",
        format!("{} KiB", procfs::rss_kib(std::process::id()).unwrap_or(0)),
    );

    // ---- fan-out ----
    let all: Vec<Arc<Sim>> = sims.lock().map(|v| v.clone()).unwrap_or_default();
    let ops_needed = all.len().div_ceil(64).max(1);
    let op_tls = cred.client_config().map_err(anyhow::Error::msg)?;
    let op_ep = firstline_net::endpoint::client(op_tls, listen, Default::default())?;
    let mut ops = Vec::with_capacity(ops_needed);
    for _ in 0..ops_needed {
        ops.push(
            firstline_net::endpoint::connect(&op_ep, listen)
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    eprintln!(
        "fan-out: `run disk /` on {} agents over {ops_needed} operator connections…",
        all.len()
    );
    let cpu = Cpu::now(pid);
    let t0 = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for (i, s) in all.iter().enumerate() {
        let op = ops[i % ops.len()].clone();
        let name = s.name.clone();
        runs.spawn(async move {
            let outcome = sim::run_check(&op, &name, "disk", &["/"]).await;
            (outcome.map(|_| ()), t0.elapsed())
        });
    }
    let mut fan_ms = Vec::with_capacity(all.len());
    let mut fan_fail = 0;
    let mut fan_err = None;
    while let Some(r) = runs.join_next().await {
        match r {
            Ok((Ok(()), d)) => fan_ms.push(ms(d)),
            Ok((Err(e), _)) => {
                fan_fail += 1;
                fan_err = Some(format!("{e:#}"));
            }
            Err(_) => fan_fail += 1,
        }
    }
    let fan_total = t0.elapsed();
    let fan = Latency::of(fan_ms);
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
    table.row("fan-out CPU", cpu.since(pid));
    let rss_after = procfs::rss_kib(pid).unwrap_or(0);
    table.row("relay RSS after fan-out", format!("{rss_after} KiB"));

    // ---- alerts ----
    let db = dir.database();
    let watcher = TicketWatcher::start(&db)?;
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
    let cpu = Cpu::now(pid);
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
    let sustained_cpu = cpu.since(pid);
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

    // Paced: open loop at half the sustained rate.
    sent.lock().map(|mut m| m.clear()).ok();
    let rate = (alerts_per_s / 2.0).max(1.0);
    let cpu = Cpu::now(pid);
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
    let paced_cpu = cpu.since(pid);
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
    let relay_up = relay.alive();
    table.row(
        "at the end",
        format!(
            "{still} connections alive; relay {}; relay peak RSS {} KiB; generator peak RSS {} KiB",
            if relay_up { "up" } else { "DOWN" },
            procfs::peak_rss_kib(pid).unwrap_or(0),
            procfs::peak_rss_kib(std::process::id()).unwrap_or(0)
        ),
    );
    for s in &all {
        s.conn.close(0u32.into(), b"bench over");
    }
    for op in &ops {
        op.close(0u32.into(), b"bench over");
    }
    relay.stop();
    let log = std::fs::read_to_string(&relay.log).unwrap_or_default();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    if errors > 0 {
        table.row(
            "relay log errors",
            format!(
                "{errors}; first: {}",
                log.lines()
                    .find(|l| l.contains("ERROR"))
                    .unwrap_or_default()
            ),
        );
    }

    println!();
    table.print();
    println!(
        "agents={n} connected={alive} relay_rss_kib_per_agent={per_agent:.1} handshakes_per_s={handshakes_per_s:.0} fanout_p50_ms={:.1} fanout_p99_ms={:.1} alerts_per_s={alerts_per_s:.0} alert_p99_ms={:.1}",
        fan.p50, fan.p99, paced_visible.p99
    );
    tasks.abort_all();
    Ok(())
}

/// One alert from `s`: returns whether the relay acknowledged it.
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

/// Another reader of the relay database, polling for new tickets every
/// 2 ms and noting when each (agent, monitor) first became visible.
struct TicketWatcher {
    seen: Arc<Mutex<HashMap<(String, String), Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    db: PathBuf,
}

impl TicketWatcher {
    fn start(db: &Path) -> Result<TicketWatcher> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut last: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM tickets", [], |r| r.get(0))?;
        let seen: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let rows: Vec<(i64, String, String)> = conn
                        .prepare_cached(
                            "SELECT id, COALESCE(agent, ''), COALESCE(monitor, '') FROM tickets WHERE id > ?1 ORDER BY id",
                        )
                        .and_then(|mut st| {
                            st.query_map([last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                                .collect()
                        })
                        .unwrap_or_default();
                    let now = Instant::now();
                    if let Ok(mut m) = seen.lock() {
                        for (id, agent, monitor) in rows {
                            last = last.max(id);
                            m.entry((agent, monitor)).or_insert(now);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Ok(TicketWatcher {
            seen,
            stop,
            thread: Some(thread),
            db: db.to_path_buf(),
        })
    }

    /// Send → visible latencies of the alerts in `sent` (waits up to 10 s
    /// for stragglers).
    fn latencies(&self, sent: &Mutex<HashMap<(String, String), Instant>>) -> Latency {
        let sent = sent.lock().map(|m| m.clone()).unwrap_or_default();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().map(|m| m.clone()).unwrap_or_default();
            let missing = sent.keys().filter(|k| !seen.contains_key(*k)).count();
            if missing == 0 || Instant::now() > end {
                return Latency::of(
                    sent.iter()
                        .filter_map(|(k, t)| Some(ms(seen.get(k)?.saturating_duration_since(*t))))
                        .collect(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Alert tickets stored, and (agent, monitor) pairs with more than one.
    fn totals(&self) -> Result<(i64, i64)> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let tickets = conn.query_row(
            "SELECT COUNT(*) FROM tickets WHERE source = 'alert'",
            [],
            |r| r.get(0),
        )?;
        let dups = conn.query_row(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tickets WHERE source = 'alert' GROUP BY agent, monitor HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )?;
        Ok((tickets, dups))
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
