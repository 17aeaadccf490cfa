//! The deployment a load run measures (issue 13): one relay on its SQLite
//! file (the default, as before), or relays on a private PostgreSQL 15
//! (`--store postgres`), or several relays of one deployment (`--relays N`)
//! sharing the store and meeting on a private `nats-server`.
//!
//! Relay folders are made with the release binary's own commands, as an
//! admin would: `firstline-relay init --dir D1 --listen A1 [--store URL]
//! [--nats URL]`, then `firstline-relay init --dir Di --join D1/relay.toml
//! --listen Ai` for each other relay. PostgreSQL and NATS are the test
//! suite's real peers (`tests/support/pg.rs`, `tests/support/nats.rs`):
//! PostgreSQL 15 runs as the `postgres` user on a free loopback port with
//! `fsync=off` (as for the tests), the relays' database is a fresh `bench`;
//! both are stopped and removed when the run ends, however it ends.
//!
//! Also here: CPU accounting of every process of the deployment (relays,
//! PostgreSQL's server processes, nats-server) and the second reader of
//! the store that sees when each alert's ticket becomes visible.

use crate::procfs;
use anyhow::{anyhow, bail, Context, Result};
use firstline_relay::store::Location;
use firstline_relay::RelayDir;
use firstline_tests::nats::Nats;
use firstline_tests::pg::Postgres;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the relays keep their data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// A SQLite file beside relay.toml (one file shared by all relays with
    /// `--relays` > 1: one machine only, not a production layout).
    Sqlite,
    /// A database of a private PostgreSQL 15 server on a loopback port.
    Postgres,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        })
    }
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct Layout {
    pub store: StoreKind,
    pub relays: usize,
    /// `?pool=N` on the PostgreSQL URL (`None`: the relay's default).
    pub pool: Option<usize>,
}

impl Layout {
    /// Refuse what cannot be measured.
    pub fn check(&self) -> Result<()> {
        if self.relays == 0 {
            bail!("--relays must be at least 1");
        }
        if self.pool.is_some() && self.store != StoreKind::Postgres {
            bail!("--pool sets the PostgreSQL connection pool: it needs --store postgres");
        }
        if self.pool == Some(0) {
            bail!("--pool must be at least 1");
        }
        Ok(())
    }

    /// `sqlite, 1 relay`, `postgres (pool 8), 2 relays over NATS`.
    pub fn describe(&self) -> String {
        let store = match (self.store, self.pool) {
            (StoreKind::Postgres, Some(n)) => format!("postgres (pool {n})"),
            (StoreKind::Postgres, None) => "postgres (the relay's default pool)".into(),
            (StoreKind::Sqlite, _) if self.relays > 1 => {
                "sqlite (one file shared by the relays)".into()
            }
            (StoreKind::Sqlite, _) => "sqlite".into(),
        };
        if self.relays == 1 {
            format!("{store}, 1 relay")
        } else {
            format!("{store}, {} relays over NATS", self.relays)
        }
    }
}

/// A relay process, stopped (TERM, then KILL) on drop.
pub struct RelayProc {
    child: Child,
    pub log: PathBuf,
}

impl RelayProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn stop(&mut self) {
        crate::world::terminate(&mut self.child);
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One relay of the deployment.
pub struct Node {
    pub listen: SocketAddr,
    pub config: PathBuf,
    pub proc: Option<RelayProc>,
}

/// The relays and the peers they share. Dropping it stops the relays
/// first, then NATS and PostgreSQL.
pub struct Deployment {
    pub layout: Layout,
    pub nodes: Vec<Node>,
    /// Relay 1's folder: operators, bulk enrollment, the store's location.
    pub dir: RelayDir,
    nats: Option<Nats>,
    pg: Option<Postgres>,
    /// The database the relays use (PostgreSQL), for the ticket watcher.
    pg_database: Option<String>,
    /// `(what, value)` rows for the output table.
    pub notes: Vec<(String, String)>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.proc.take();
        }
        self.nats.take();
        self.pg.take();
    }
}

/// The release relay's `--help` of `init`, to tell which options it has.
fn init_help(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["init", "--help"])
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (build it: cargo build --release -p firstline-relay)",
                bin.display()
            )
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `firstline-relay ARGS`, which must succeed; its output.
fn relay_cmd(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("firstline-relay {} failed:\n{said}", args.join(" "));
    }
    Ok(said)
}

/// Start a test peer whose constructor panics on failure (the support
/// crate's way): the panic's message is printed, and becomes an error here.
fn peer<T>(what: &str, start: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(start))
        .map_err(|_| anyhow!("{what} did not start (see the message above)"))
}

/// Put top-level `key = value` lines at the head of relay.toml (its
/// tables, `[store]` and `[cluster]`, are at its end), replacing the
/// lines of the same keys.
pub fn set_top(config: &Path, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let key = |l: &str| l.split('=').next().unwrap_or_default().trim().to_string();
    let keys: BTreeSet<String> = lines.iter().map(|l| key(l)).collect();
    let text = std::fs::read_to_string(config)?;
    let mut out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    for l in text.lines() {
        if !(l.contains('=') && keys.contains(&key(l))) {
            out.push_str(l);
            out.push('\n');
        }
    }
    std::fs::write(config, out)?;
    Ok(())
}

/// Make the deployment: peers, relay folders (not started yet).
pub fn make(
    tmp: &Path,
    layout: &Layout,
    relay_bin: &Path,
    relay_config: &[String],
) -> Result<Deployment> {
    layout.check()?;
    let help = init_help(relay_bin)?;
    if layout.relays > 1 && !help.contains("--join") {
        bail!(
            "{} has no `init --join`: --relays {} needs a relay that can join a deployment (issue 13); \
             --relays 1 works",
            relay_bin.display(),
            layout.relays
        );
    }
    if layout.store == StoreKind::Postgres && !help.contains("--store") {
        bail!(
            "{} has no `init --store`: --store postgres needs a relay with the PostgreSQL store (issue 13)",
            relay_bin.display()
        );
    }
    let mut notes = Vec::new();
    let (pg, pg_database, store_url) = match layout.store {
        StoreKind::Sqlite => (None, None, None),
        StoreKind::Postgres => {
            let t = Instant::now();
            let pg = peer("PostgreSQL 15", Postgres::start)?;
            let url = pg.create_database("bench");
            let url = match layout.pool {
                Some(n) => format!("{url}?pool={n}"),
                None => url,
            };
            let version = pg
                .psql("postgres", "SHOW server_version")
                .trim()
                .to_string();
            let settings = pg
                .psql(
                    "postgres",
                    "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings \
                     WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'wal_level')",
                )
                .trim()
                .to_string();
            notes.push((
                "PostgreSQL".to_string(),
                format!(
                    "{version} on 127.0.0.1:{} (started in {:.1} s); {settings}; relays' store: {url}",
                    pg.port(),
                    t.elapsed().as_secs_f64()
                ),
            ));
            (Some(pg), Some("bench".to_string()), Some(url))
        }
    };
    let nats = if layout.relays > 1 {
        let nats = peer("nats-server", Nats::start)?;
        let version = Command::new("nats-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        notes.push(("NATS".to_string(), format!("{version} at {}", nats.url())));
        Some(nats)
    } else {
        None
    };

    let mut nodes = Vec::with_capacity(layout.relays);
    let dir1 = tmp.join("relay1");
    let listen1: SocketAddr = format!("127.0.0.1:{}", crate::world::free_udp_port()?).parse()?;
    let mut args: Vec<String> = vec![
        "init".into(),
        "--dir".into(),
        dir1.display().to_string(),
        "--listen".into(),
        listen1.to_string(),
    ];
    if let Some(url) = &store_url {
        args.extend(["--store".into(), url.clone()]);
    }
    if let Some(n) = &nats {
        args.extend(["--nats".into(), n.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    relay_cmd(relay_bin, &args)?;
    let config1 = dir1.join("relay.toml");
    set_top(&config1, relay_config)?;
    nodes.push(Node {
        listen: listen1,
        config: config1.clone(),
        proc: None,
    });
    for i in 2..=layout.relays {
        let dir = tmp.join(format!("relay{i}"));
        let listen: SocketAddr = format!("127.0.0.1:{}", crate::world::free_udp_port()?).parse()?;
        let said = relay_cmd(
            relay_bin,
            &[
                "init",
                "--dir",
                &dir.display().to_string(),
                "--join",
                &config1.display().to_string(),
                "--listen",
                &listen.to_string(),
            ],
        )?;
        if i == 2 {
            if let Some(first) = said.lines().next() {
                notes.push(("init --join".to_string(), first.to_string()));
            }
        }
        nodes.push(Node {
            listen,
            config: dir.join("relay.toml"),
            proc: None,
        });
    }
    let dir = RelayDir::load(&config1)?;
    Ok(Deployment {
        layout: layout.clone(),
        nodes,
        dir,
        nats,
        pg,
        pg_database,
        notes,
    })
}

impl Deployment {
    /// Start every relay (`serve`), one after the other, each listening
    /// before the next starts.
    pub fn start(&mut self, bin: &Path, tmp: &Path) -> Result<()> {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let log = tmp.join(format!("relay{}.log", i + 1));
            node.proc = Some(start_relay(bin, &node.config, log)?);
        }
        Ok(())
    }

    pub fn relay_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.as_ref().map(RelayProc::pid))
            .collect()
    }

    /// The processes whose CPU is counted apart from "other processes".
    pub fn pids(&self) -> Pids {
        Pids {
            relays: self.relay_pids(),
            postgres: self.pg.as_ref().and_then(|pg| {
                std::fs::read_to_string(pg.dir().join("data").join("postmaster.pid"))
                    .ok()?
                    .lines()
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            }),
            nats: self.nats.as_ref().and_then(|n| nats_pid(n.port())),
        }
    }

    /// Every relay still running.
    pub fn all_up(&mut self) -> bool {
        self.nodes
            .iter_mut()
            .all(|n| n.proc.as_mut().is_some_and(RelayProc::alive))
    }

    /// Stop the relays (the peers stay until the deployment is dropped).
    pub fn stop_relays(&mut self) {
        for n in &mut self.nodes {
            if let Some(p) = n.proc.as_mut() {
                p.stop();
            }
        }
    }

    /// `(relay number, log text)` of every relay.
    pub fn logs(&self) -> Vec<(usize, String)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let p = n.proc.as_ref()?;
                Some((i + 1, std::fs::read_to_string(&p.log).unwrap_or_default()))
            })
            .collect()
    }

    /// The PostgreSQL server's log so far (empty without one).
    pub fn postgres_log(&self) -> String {
        self.pg.as_ref().map(Postgres::log).unwrap_or_default()
    }

    /// What PostgreSQL counted in the relays' database over the run:
    /// transactions and rows (`pg_stat_database`), and the tables written
    /// most (`pg_stat_user_tables`). Read after the relays stopped, when
    /// their server processes have flushed their counters.
    pub fn postgres_stats(&self) -> Option<(String, String)> {
        let (pg, db) = (self.pg.as_ref()?, self.pg_database.as_deref()?);
        // A backend flushes its counters when it ends; the relays' have.
        std::thread::sleep(Duration::from_millis(1_500));
        let totals = pg
            .psql(
                db,
                "SELECT xact_commit || ' commits, ' || xact_rollback || ' rollbacks; rows: ' \
                 || tup_inserted || ' inserted, ' || tup_updated || ' updated, ' || tup_deleted \
                 || ' deleted, ' || tup_fetched || ' fetched' FROM pg_stat_database WHERE datname = current_database()",
            )
            .trim()
            .to_string();
        let tables = pg
            .psql(
                db,
                "SELECT string_agg(relname || ' +' || n_tup_ins || '/~' || n_tup_upd, ', ' \
                 ORDER BY n_tup_ins + n_tup_upd DESC) FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0",
            )
            .trim()
            .to_string();
        Some((totals, tables))
    }

    /// Where the second reader of the store reads tickets.
    pub fn ticket_source(&self) -> Result<TicketSource> {
        match (&self.pg, &self.pg_database) {
            (Some(pg), Some(db)) => Ok(TicketSource::Postgres(pg.database_url(db))),
            _ => match self.dir.store_location()? {
                Location::Sqlite(path) => Ok(TicketSource::Sqlite(path)),
                Location::Postgres(_) => bail!("a PostgreSQL store the bench did not start"),
            },
        }
    }
}

/// Start `firstline-relay serve` and wait until it listens.
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
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&relay.log).unwrap_or_default();
        if text.contains("relay listening") {
            return Ok(relay);
        }
        if !relay.alive() || Instant::now() > end {
            bail!("the relay ({}) did not start:\n{text}", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the `nats-server` listening on `port` (from /proc: the
/// support crate keeps its process to itself).
fn nats_pid(port: u16) -> Option<u32> {
    let wanted = port.to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_nats = args.first().is_some_and(|a| a.ends_with(b"nats-server"));
        let on_port = args
            .windows(2)
            .any(|w| w[0] == b"-p" && w[1] == wanted.as_bytes());
        if is_nats && on_port {
            return Some(pid);
        }
    }
    None
}

/// The processes of the deployment.
#[derive(Debug, Clone, Default)]
pub struct Pids {
    pub relays: Vec<u32>,
    /// PostgreSQL's postmaster (its server processes are its children).
    pub postgres: Option<u32>,
    pub nats: Option<u32>,
}

/// CPU seconds of each process of the deployment, of this process and of
/// the whole machine, at one instant.
#[derive(Clone)]
pub struct Cpu {
    relays: Vec<f64>,
    postgres: f64,
    nats: f64,
    me: f64,
    machine: f64,
    at: Instant,
}

impl Cpu {
    pub fn now(pids: &Pids) -> Cpu {
        Cpu {
            relays: pids
                .relays
                .iter()
                .map(|&p| procfs::cpu_secs(p).unwrap_or(0.0))
                .collect(),
            // The postmaster and its live server processes; those that
            // ended count in the postmaster's reaped-children time.
            postgres: pids
                .postgres
                .map_or(0.0, |p| procfs::sample_tree(p).cpu_secs),
            nats: pids.nats.and_then(procfs::cpu_secs).unwrap_or(0.0),
            me: procfs::cpu_secs(std::process::id()).unwrap_or(0.0),
            machine: procfs::machine_busy_secs().unwrap_or(0.0),
            at: Instant::now(),
        }
    }

    /// `relay % · [PostgreSQL % · NATS % ·] generator % · others %` of one
    /// core between `self` and now ("others": the rest of the machine,
    /// which should be ~0).
    /// CPU seconds all relays used between `self` and now: divided by the
    /// work done, the relay's CPU per handshake or per alert — a figure
    /// that, unlike rates, barely moves when other processes share the
    /// machine.
    pub fn relay_secs_since(&self, pids: &Pids) -> f64 {
        let now = Cpu::now(pids);
        now.relays
            .iter()
            .zip(&self.relays)
            .map(|(a, b)| a - b)
            .sum()
    }

    pub fn since(&self, pids: &Pids) -> String {
        let now = Cpu::now(pids);
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let pct = |s: f64| 100.0 * s / wall;
        let relays: Vec<f64> = now
            .relays
            .iter()
            .zip(&self.relays)
            .map(|(a, b)| a - b)
            .collect();
        let r: f64 = relays.iter().sum();
        let (pg, nats, g) = (
            now.postgres - self.postgres,
            now.nats - self.nats,
            now.me - self.me,
        );
        let others = (now.machine - self.machine - r - pg - nats - g).max(0.0);
        let mut out = if relays.len() > 1 {
            format!(
                "relays {:.0}% ({}) · ",
                pct(r),
                relays
                    .iter()
                    .map(|&x| format!("{:.0}", pct(x)))
                    .collect::<Vec<_>>()
                    .join(" + ")
            )
        } else {
            format!("relay {:.0}% · ", pct(r))
        };
        if pids.postgres.is_some() {
            out.push_str(&format!("PostgreSQL {:.0}% · ", pct(pg)));
        }
        if pids.nats.is_some() {
            out.push_str(&format!("NATS {:.0}% · ", pct(nats)));
        }
        out.push_str(&format!(
            "generator {:.0}% · other processes {:.0}% of one core ({:.1} s wall)",
            pct(g),
            pct(others),
            wall
        ));
        out
    }
}

/// Where tickets are read from, behind the relays' backs.
#[derive(Debug, Clone)]
pub enum TicketSource {
    Sqlite(PathBuf),
    /// A URL the `postgres` client takes (no `pool=`).
    Postgres(String),
}

/// A connection of the second reader.
enum Reader {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Reader {
    /// Must run on a thread outside the async runtime (the `postgres`
    /// client runs a runtime of its own).
    fn open(source: &TicketSource) -> Result<Reader> {
        Ok(match source {
            TicketSource::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(5))?;
                Reader::Sqlite(conn)
            }
            TicketSource::Postgres(url) => {
                Reader::Postgres(postgres::Client::connect(url, postgres::NoTls)?)
            }
        })
    }

    /// `(id, agent, monitor)` of the tickets with an id above `after`.
    fn tickets_after(&mut self, after: i64) -> Result<Vec<(i64, String, String)>> {
        const SQL_LITE: &str = "SELECT id, COALESCE(agent, ''), COALESCE(monitor, '') FROM tickets WHERE id > ?1 ORDER BY id";
        const SQL_PG: &str = "SELECT id, COALESCE(agent, ''), COALESCE(monitor, '') FROM tickets WHERE id > $1 ORDER BY id";
        Ok(match self {
            Reader::Sqlite(c) => c
                .prepare_cached(SQL_LITE)?
                .query_map([after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?,
            Reader::Postgres(c) => c
                .query(SQL_PG, &[&after])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        })
    }

    fn count(&mut self, sql: &str) -> Result<i64> {
        Ok(match self {
            Reader::Sqlite(c) => c.query_row(sql, [], |r| r.get(0))?,
            Reader::Postgres(c) => c.query_one(sql, &[])?.get(0),
        })
    }
}

/// Which ticket ids the watcher has seen: every id up to `low`, and those
/// in `above`. With several writers (PostgreSQL's pool, several relays)
/// ids are taken before the commit, so a ticket can become visible after
/// one with a higher id: the watcher reads from `low`, not from the highest
/// id seen. An id that stays missing for [`GAP_GIVE_UP`] was never
/// committed (a rolled-back transaction) and is stepped over.
struct SeenIds {
    low: i64,
    above: BTreeSet<i64>,
    /// Since when `low + 1` has been missing.
    gap_since: Option<Instant>,
}

const GAP_GIVE_UP: Duration = Duration::from_secs(2);

impl SeenIds {
    fn new(low: i64) -> SeenIds {
        SeenIds {
            low,
            above: BTreeSet::new(),
            gap_since: None,
        }
    }

    /// Note `id`; whether it is new.
    fn note(&mut self, id: i64) -> bool {
        id > self.low && self.above.insert(id)
    }

    /// Move `low` over the ids seen in a row, and over a gap older than
    /// [`GAP_GIVE_UP`].
    fn advance(&mut self, now: Instant) {
        loop {
            while self.above.remove(&(self.low + 1)) {
                self.low += 1;
                self.gap_since = None;
            }
            if self.above.is_empty() {
                self.gap_since = None;
                return;
            }
            let since = *self.gap_since.get_or_insert(now);
            if now.duration_since(since) < GAP_GIVE_UP {
                return;
            }
            // Step over the gap, to the next id seen.
            let next = *self.above.iter().next().unwrap_or(&(self.low + 1));
            self.low = next - 1;
            self.gap_since = None;
        }
    }
}

/// Another reader of the relays' store, polling for new tickets every
/// 2 ms and noting when each (agent, monitor) first became visible.
pub struct TicketWatcher {
    seen: Arc<Mutex<HashMap<(String, String), Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    source: TicketSource,
}

impl TicketWatcher {
    pub fn start(source: TicketSource) -> Result<TicketWatcher> {
        let seen: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::spawn({
            let (seen, stop, source) = (seen.clone(), stop.clone(), source.clone());
            move || {
                let opened = Reader::open(&source).and_then(|mut r| {
                    let last = r.count("SELECT COALESCE(MAX(id), 0) FROM tickets")?;
                    Ok((r, last))
                });
                let (mut reader, last) = match opened {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut ids = SeenIds::new(last);
                while !stop.load(Ordering::Relaxed) {
                    let rows = reader.tickets_after(ids.low).unwrap_or_default();
                    let now = Instant::now();
                    if let Ok(mut m) = seen.lock() {
                        for (id, agent, monitor) in rows {
                            if ids.note(id) {
                                m.entry((agent, monitor)).or_insert(now);
                            }
                        }
                    }
                    ids.advance(now);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the ticket watcher ended before it started"))??;
        Ok(TicketWatcher {
            seen,
            stop,
            thread: Some(thread),
            source,
        })
    }

    /// Send → visible latencies of the alerts in `sent` (waits up to 10 s
    /// for stragglers).
    pub fn latencies(
        &self,
        sent: &Mutex<HashMap<(String, String), Instant>>,
    ) -> crate::stats::Latency {
        use crate::stats::{ms, Latency};
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
    pub fn totals(&self) -> Result<(i64, i64)> {
        let source = self.source.clone();
        // Its own thread: the `postgres` client must not run inside the
        // caller's runtime.
        std::thread::spawn(move || -> Result<(i64, i64)> {
            let mut r = Reader::open(&source)?;
            let tickets = r.count("SELECT COUNT(*) FROM tickets WHERE source = 'alert'")?;
            let dups = r.count(
                "SELECT COUNT(*) FROM (SELECT 1 FROM tickets WHERE source = 'alert' \
                 GROUP BY agent, monitor HAVING COUNT(*) > 1) AS d",
            )?;
            Ok((tickets, dups))
        })
        .join()
        .map_err(|_| anyhow!("the totals thread panicked"))?
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    #[test]
    fn seen_ids_wait_for_a_late_commit_then_step_over_a_gap() {
        let t0 = Instant::now();
        let mut ids = SeenIds::new(10);
        assert!(ids.note(11));
        assert!(ids.note(13)); // 12 not committed yet
        ids.advance(t0);
        assert_eq!(ids.low, 11);
        assert!(!ids.note(13), "seen once");
        assert!(ids.note(12)); // the late commit
        ids.advance(t0);
        assert_eq!(ids.low, 13);
        assert!(ids.above.is_empty());
        // 14 never commits (rolled back): stepped over after the timeout.
        assert!(ids.note(15));
        ids.advance(t0);
        assert_eq!(ids.low, 13);
        ids.advance(t0 + GAP_GIVE_UP);
        assert_eq!(ids.low, 15);
        assert!(!ids.note(9));
    }

    #[test]
    fn set_top_puts_settings_before_the_tables() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("relay.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:1\"\nkeep_alive_secs = 5\n\n[store]\nurl = \"postgres://x@h/db\"\n",
        )
        .unwrap();
        set_top(&f, &["keep_alive_secs = 25".to_string()]).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["keep_alive_secs"].as_integer(), Some(25));
        assert!(parsed["store"].get("keep_alive_secs").is_none());
        assert_eq!(text.matches("keep_alive_secs").count(), 1);
    }
}
