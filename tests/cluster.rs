//! Many relays (issue 13), with real processes: a real `nats-server`, one
//! shared store (PostgreSQL 15, and one test on a SQLite file shared by
//! both relays), two relays made with `firstline-relay init --store --nats`
//! and `init --join`, real agents and consoles.
//!
//! * an operator on relay B runs a check, a dry-run fix and a runbook on an
//!   agent held by relay A, progress streamed; `--ticket` entries and the
//!   audit entry are written once; `agents` on B shows A's agent online;
//!   `audit verify` passes on both relays with every entry anchored, and
//!   still tells a truncation;
//! * a `watch` on B sees the ticket an alert on A opened, exactly once;
//!   relay A is killed with -9 while its agent's alerts are in flight: the
//!   agent fails over to B, every alert lands in exactly one ticket, and an
//!   agent that can only reach A shows offline on B within the presence
//!   bound;
//! * a single-use token raced by two enrollments, one through each relay,
//!   enrolls once;
//! * webhook deliveries are each delivered once with both relays running.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::nats::{Nats, NkeyUser};
use firstline_tests::pg::Postgres;
use firstline_tests::plugin::StatePlugin;
use firstline_tests::{
    bin, free_udp_port, run, stderr, text, wait_until, Agent, Console, Proc, Relay,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(45);

/// Presence settings of the test deployments: a relay not heard of for
/// 1.5 s is dead; its agents show offline elsewhere within 1.75 s.
const HEARTBEAT_MS: u64 = 250;
const PRESENCE_TTL_MS: u64 = 1_500;

// ------------------------------------------------------------ the store

/// Which store the relays of a test share.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

/// The one place that says which store the cluster tests run on (one
/// test also runs on a shared SQLite file, whatever this says).
const DEFAULT_BACKEND: Backend = Backend::Postgres;

/// A store shared by the relays of one test.
enum SharedStore {
    /// A fresh database of the test binary's PostgreSQL.
    Postgres { url: String, db: String },
    /// One SQLite file both relays open (one machine only).
    Sqlite(PathBuf),
}

impl SharedStore {
    fn new(backend: Backend, root: &Path) -> SharedStore {
        match backend {
            Backend::Postgres => {
                let url = Postgres::shared().fresh_database();
                let db = url.rsplit('/').next().unwrap().to_string();
                SharedStore::Postgres { url, db }
            }
            Backend::Sqlite => SharedStore::Sqlite(root.join("shared").join("relay.db")),
        }
    }

    fn url(&self) -> String {
        match self {
            SharedStore::Postgres { url, .. } => url.clone(),
            SharedStore::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    /// Run SQL behind the relays' backs (an attacker with the database).
    fn exec(&self, sql: &str) {
        match self {
            SharedStore::Postgres { db, .. } => {
                Postgres::shared().psql(db, sql);
            }
            SharedStore::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).unwrap();
                db.busy_timeout(Duration::from_secs(10)).unwrap();
                db.execute_batch(sql).unwrap();
            }
        }
    }
}

// ------------------------------------------------------- the deployment

/// NATS, a shared store, relay A (`init --store --nats`) and relay B
/// (`init --join`), both serving, and a technician logged in on each.
struct Deployment {
    tmp: tempfile::TempDir,
    nats: Nats,
    /// The deployment's NATS credential (the relays' nkey).
    nkey: NkeyUser,
    store: SharedStore,
    a: Relay,
    b: Relay,
    console_a: Console,
    console_b: Console,
}

/// `firstline-relay ARGS`, which must succeed.
fn relay_cmd(args: &[&str]) -> Output {
    let out = run(Command::new(bin("firstline-relay")).args(args));
    assert!(
        out.status.success(),
        "firstline-relay {args:?}: {}",
        text(&out)
    );
    out
}

/// Put top-level `key = value` lines at the head of a relay.toml (whose
/// tables, `[store]` and `[cluster]`, are at its end).
fn set_top(config: &Path, lines: &str) {
    let old = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("{lines}\n{old}")).unwrap();
}

impl Deployment {
    /// `settings`: top-level relay.toml lines for A, which B inherits.
    fn new(backend: Backend, settings: &str) -> Deployment {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // NATS admits the relays' nkey only (README: init --nats-nkey).
        let nkey = NkeyUser::new();
        let nats = Nats::start_nkeys(&[&nkey.public]);
        let seed_file = root.join("nats.nk");
        nkey.write(&seed_file);
        let store = SharedStore::new(backend, root);
        if let SharedStore::Sqlite(path) = &store {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }

        let dir_a = root.join("a").join("relay");
        let addr_a = format!("127.0.0.1:{}", free_udp_port());
        let url = store.url();
        let out = relay_cmd(&[
            "init",
            "--dir",
            dir_a.to_str().unwrap(),
            "--listen",
            &addr_a,
            "--store",
            &url,
            "--nats",
            &nats.url(),
            "--nats-nkey",
            seed_file.to_str().unwrap(),
        ]);
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        let config_a = dir_a.join("relay.toml");
        // Quicker presence than the defaults `init` writes in [cluster].
        let text = std::fs::read_to_string(&config_a).unwrap();
        assert!(text.contains("[cluster]"), "{text}");
        let text = text
            .replace(
                "heartbeat_ms = 1000",
                &format!("heartbeat_ms = {HEARTBEAT_MS}"),
            )
            .replace(
                "presence_ttl_ms = 5000",
                &format!("presence_ttl_ms = {PRESENCE_TTL_MS}"),
            );
        std::fs::write(&config_a, text).unwrap();
        if !settings.is_empty() {
            set_top(&config_a, settings);
        }
        let mut a = Relay {
            dir: dir_a,
            config: config_a.clone(),
            addr: addr_a,
            proc: None,
        };
        a.serve();

        // B joins: the command of the README.
        let dir_b = root.join("b").join("relay");
        let addr_b = format!("127.0.0.1:{}", free_udp_port());
        let out = relay_cmd(&[
            "init",
            "--dir",
            dir_b.to_str().unwrap(),
            "--join",
            config_a.to_str().unwrap(),
            "--listen",
            &addr_b,
        ]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{said}{}", String::from_utf8_lossy(&out.stderr));
        assert!(said.contains("joined the deployment of"), "{said}");
        // B inherits A's settings; a /metrics address of its own.
        let config_b = dir_b.join("relay.toml");
        let toml = std::fs::read_to_string(&config_b).unwrap();
        if let Some(line) = toml.lines().find(|l| l.starts_with("metrics_listen")) {
            let own = format!(
                "metrics_listen = \"127.0.0.1:{}\"",
                firstline_tests::peers::free_tcp_port()
            );
            std::fs::write(&config_b, toml.replace(line, &own)).unwrap();
        }
        let mut b = Relay {
            config: config_b,
            dir: dir_b,
            addr: addr_b,
            proc: None,
        };
        b.serve();

        // One technician, logged in on A and (the same credential pointed
        // at B) on B.
        let credential_a = a.operator("tina", "technician");
        let credential_b = b.dir.join("tina.credential.toml");
        std::fs::write(
            &credential_b,
            std::fs::read_to_string(&credential_a)
                .unwrap()
                .replace(&a.addr, &b.addr),
        )
        .unwrap();
        let (console_a, console_b) = (Console::new(&root.join("a")), Console::new(&root.join("b")));
        console_a.login(&credential_a);
        console_b.login(&credential_b);
        Deployment {
            tmp,
            nats,
            nkey,
            store,
            a,
            b,
            console_a,
            console_b,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// An agent enrolled with a token of `token_from`, whose agent.toml
    /// lists `relays` (quick to notice a dead relay).
    fn agent(&self, name: &str, token_from: &Relay, relays: &[&Relay]) -> Agent {
        let agent = Agent::new(self.root(), name);
        let list = relays
            .iter()
            .map(|r| r.addr.clone())
            .collect::<Vec<_>>()
            .join(",");
        let out = run(Command::new(bin("firstline-agent"))
            .args(["enroll", "--relay", &list, "--name", name, "--config"])
            .arg(&agent.config)
            .env("FIRSTLINE_TOKEN", token_from.token(&[])));
        assert!(out.status.success(), "enroll {name}: {}", text(&out));
        agent.configure(QUICK);
        agent
    }

    /// The deployment's subject prefix, as relay A logged it.
    fn prefix(&self) -> String {
        let log = self.a.log();
        let at = log.find("subjects=").unwrap_or_else(|| panic!("{log}"));
        log[at + 9..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(".>")
            .to_string()
    }

    /// Publish on the deployment's NATS as any client holding the NATS
    /// credential could (the NATS text protocol, by hand).
    fn publish(&self, subject: &str, payload: &str) {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.nats.port())).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{line}");
        let info: Value = serde_json::from_str(&line[5..]).unwrap();
        let connect = self.nkey.connect_json(info["nonce"].as_str().unwrap());
        write!(
            s,
            "CONNECT {connect}\r\nPUB {subject} {}\r\n{payload}\r\nPING\r\n",
            payload.len()
        )
        .unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(!line.starts_with("-ERR"), "{line}");
            if line.starts_with("PONG") {
                break;
            }
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- relay A:\n{}\n--- relay B:\n{}",
            self.a.log(),
            self.b.log()
        )
    }
}

/// Agent settings that notice a dead relay quickly (as in
/// peers_selftest.rs).
const QUICK: &str = "keep_alive_secs = 1\nidle_timeout_secs = 3\nconnect_timeout_ms = 1000\n\
                     reconnect_max_ms = 1000";

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn tickets(console: &Console) -> Vec<Value> {
    let out = console.run(&["tickets", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn show(console: &Console, id: u64) -> Value {
    let out = console.run(&["ticket", "show", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn entries(console: &Console, id: u64, kind: &str) -> Vec<Value> {
    show(console, id)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

fn audit_records(console: &Console) -> Vec<Value> {
    let out = console.run(&["audit", "--agent", "pc1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

/// `audit verify` of a relay: `(exit code, stdout + stderr)`.
fn verify(relay: &Relay, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = relay.cmd(&args);
    (out.status.code(), text(&out))
}

/// `N entries … M anchored` of a passing `audit verify`.
fn anchored(said: &str) -> (u64, u64) {
    let line = said
        .lines()
        .find(|l| l.starts_with("audit chain holds"))
        .unwrap_or_else(|| panic!("{said}"));
    let number_before = |word: &str| -> u64 {
        let at = line.find(word).unwrap_or_else(|| panic!("{line}"));
        line[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap()
    };
    (number_before(" entries"), number_before(" anchored"))
}

// ---------------------------------------------------------------- tests

/// Requests from a console on B reach an agent held by A: run, fix, runbook
/// (progress streamed back), lists; the ticket and the audit record each
/// once; the audit chain written by both relays verifies on each.
fn requests_through_the_other_relay(backend: Backend) {
    let d = Deployment::new(backend, "");
    // pc1 knows relay A only: it is A's.
    let mut pc1 = d.agent("pc1", &d.a, &[&d.a]);
    pc1.start();
    assert!(
        wait_until(SLOW, || d.console_b.online("pc1")),
        "pc1 never online as seen from B\n{}\n{}",
        pc1.log(),
        d.logs()
    );
    assert!(d.console_a.online("pc1"));
    assert!(pc1.log().contains(&d.a.addr), "{}", pc1.log());

    // A check, its progress streamed.
    let path = d.root().to_str().unwrap().to_string();
    let out = d.console_b.run(&[
        "run", "pc1", "disk", &path, "--warn", "99.8", "--crit", "99.9",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), d.logs());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("… measuring the filesystem"), "{stdout}");
    assert!(stdout.contains("disk "), "{stdout}");
    let out = d.console_b.run(&[
        "run", "pc1", "disk", &path, "--warn", "99.8", "--crit", "99.9", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (result["check"].as_str(), result["status"].as_str()),
        (Some("disk"), Some("ok"))
    );

    // Into a ticket, through B: one entry each, the audit entry once.
    let out = d
        .console_b
        .run(&["ticket", "new", "disk on pc1", "--agent", "pc1"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = tickets(&d.console_b)[0]["id"].as_u64().unwrap();
    let t = id.to_string();
    let out = d
        .console_b
        .run(&["run", "pc1", "disk", &path, "--ticket", &t]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    let out = d.console_b.run(&[
        "runbook",
        "pc1",
        "disk-full",
        &format!("path={path}"),
        "warn=99.8",
        "crit=99.9",
        "--ticket",
        &t,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), d.logs());
    let lines = json_lines(&out.stdout);
    let verdict = lines.last().unwrap();
    assert_eq!(verdict["runbook"], "disk-full", "{verdict}");
    assert_eq!(verdict["verdict"], "resolved", "{verdict}");
    assert_eq!(verdict["agent"], "pc1");
    assert!(
        lines.len() >= 2,
        "step results stream before the verdict: {lines:?}"
    );
    // The human form streams the step's progress too.
    let out = d.console_b.run(&[
        "runbook",
        "pc1",
        "disk-full",
        &format!("path={path}"),
        "warn=99.8",
        "crit=99.9",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("… measuring the filesystem"),
        "{}",
        text(&out)
    );
    // A fix, dry run.
    let out = d.console_b.run(&["fix", "pc1", "flush-dns", "--dry-run"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("flush-dns"),
        "{}",
        text(&out)
    );
    // Lists and refusals, worded as for a local agent.
    let out = d.console_b.run(&["runbooks", "pc1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cant-print"));
    let out = d.console_b.run(&["checks", "pc1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = d.console_b.run(&["run", "pc1", "teleport"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown check `teleport`"),
        "{}",
        text(&out)
    );

    let results = entries(&d.console_a, id, "result");
    assert_eq!(results.len(), 1, "one result entry: {results:?}");
    let verdicts = entries(&d.console_a, id, "verdict");
    assert_eq!(verdicts.len(), 1, "one verdict entry: {verdicts:?}");
    assert_eq!(verdicts[0]["author"], "tina");
    // The holding relay served (and recorded that it did), the asking
    // relay recorded.
    assert!(d.a.log().contains("forwarded request"), "{}", d.logs());
    let audit = audit_records(&d.console_a);
    let with_ticket = |action: &str| {
        audit
            .iter()
            .filter(|r| r["action"] == action && r["args"].as_str().unwrap().contains("--ticket"))
            .count()
    };
    assert_eq!(with_ticket("run check disk"), 1, "{audit:#?}");
    assert_eq!(with_ticket("runbook disk-full"), 1, "{audit:#?}");

    // Messages forged by another NATS client (with the NATS credential,
    // not the relays' bus key): a revocation of the valid pc1 and a
    // checkpoint not signed with the deployment's key are dropped before
    // anything reads them (each relay would also check the database, and
    // the checkpoint's own signature).
    let prefix = d.prefix();
    d.publish(
        &format!("{prefix}.revoked"),
        r#"{"relay":"r-forged","kind":"agent","name":"pc1"}"#,
    );
    let forged = format!(
        "v1 1 {} {} {}",
        "0".repeat(64),
        "1".repeat(16),
        "2".repeat(128)
    );
    d.publish(&format!("{prefix}.audit"), &forged);
    assert!(
        wait_until(SLOW, || d.a.log().contains("a message on NATS was dropped")
            && d.b.log().contains("a message on NATS was dropped")),
        "{}",
        d.logs()
    );
    assert!(
        !d.a.log().contains("revoked through another relay"),
        "{}",
        d.logs()
    );
    assert!(d.console_b.online("pc1"));
    let out = d.console_b.run(&["run", "pc1", "disk", &path, "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    for r in [&d.a, &d.b] {
        let anchor = std::fs::read_to_string(r.dir.join("audit-anchor.log")).unwrap();
        assert!(!anchor.contains(&forged));
    }

    // One chain, written by both relays (and the offline commands run on
    // A's folder), anchored in full on each relay.
    let mut last = (0, 0);
    let settled = wait_until(Duration::from_secs(10), || {
        let (code_a, said_a) = verify(&d.a, &[]);
        let (code_b, said_b) = verify(&d.b, &[]);
        if code_a != Some(0) || code_b != Some(0) {
            return false;
        }
        let (na, ka) = anchored(&said_a);
        let (nb, kb) = anchored(&said_b);
        last = (na, ka.min(kb));
        na == nb && ka == na && kb == nb
    });
    assert!(
        settled,
        "audit verify: {last:?}\nA: {:?}\nB: {:?}\n{}",
        verify(&d.a, &[]),
        verify(&d.b, &[]),
        d.logs()
    );
    eprintln!("audit chain: {} entries, anchored on both relays", last.0);

    // Still tells a truncation (the newest entries deleted).
    d.store
        .exec("DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)");
    let (code, said) = verify(&d.b, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("truncated"), "{said}");
}

#[test]
fn an_operator_on_b_runs_a_check_a_fix_and_a_runbook_on_an_agent_held_by_a() {
    requests_through_the_other_relay(DEFAULT_BACKEND);
}

#[test]
fn relays_sharing_one_sqlite_file_forward_requests_too() {
    requests_through_the_other_relay(Backend::Sqlite);
}

/// Alerts on A reach a watcher on B once; A killed with -9 while its
/// agent's alerts are in flight: the agent fails over to B, every alert
/// lands in exactly one ticket, and an agent only A could reach shows
/// offline on B within the presence bound.
#[test]
fn alerts_on_a_reach_a_watch_on_b_and_survive_a_being_killed() {
    let d = Deployment::new(DEFAULT_BACKEND, "");
    let mut watch = Proc::spawn(
        Command::new(bin("firstline"))
            .args(["watch", "--json"])
            .env("XDG_CONFIG_HOME", &d.console_b.home)
            .env("HOME", &d.console_b.home),
        &d.root().join("watch-b.log"),
    );

    let plugins = StatePlugin::new(d.root());
    let monitors = ["first", "m1", "m2", "m3", "m4", "m5"];
    for m in monitors {
        plugins.set(m, 0);
    }
    // pc1 lists both relays, A first; pc2 only A.
    let mut pc1 = d.agent("pc1", &d.a, &[&d.a, &d.b]);
    pc1.configure(&format!(
        "default_monitors = false\nplugins_dir = \"{}\"",
        plugins.dir.display()
    ));
    for m in monitors {
        pc1.append(&format!(
            "[[monitor]]\nname = \"{m}\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"{m}\"]\n\
             every = \"1s\"\nfail_after = 1\nrecover_after = 1000\n"
        ));
    }
    pc1.append(&StatePlugin::policy());
    pc1.start();
    let mut pc2 = d.agent("pc2", &d.a, &[&d.a]);
    pc2.start();
    for name in ["pc1", "pc2"] {
        assert!(
            wait_until(SLOW, || d.console_b.online(name)),
            "{name} never online as seen from B\n{}",
            d.logs()
        );
    }
    assert!(pc1
        .log()
        .contains(&format!("connected to relay {} (1 of 2)", d.a.addr)));

    // An alert on A: the watcher on B sees its ticket open, once.
    plugins.set("first", 2);
    let opened = |log: &str| -> Vec<Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|n| n["kind"] == "ticket_opened" && n["agent"] == "pc1")
            .collect()
    };
    assert!(
        wait_until(SLOW, || !opened(&watch.log_text()).is_empty()),
        "watch on B saw: {}\n{}",
        watch.log_text(),
        d.logs()
    );
    let first = tickets(&d.console_a)
        .into_iter()
        .find(|t| t["monitor"] == "first")
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let seen = opened(&watch.log_text());
    assert_eq!(seen.len(), 1, "exactly once: {seen:?}");
    assert_eq!(seen[0]["ticket"], first["id"]);
    let alerts = watch
        .log_text()
        .lines()
        .filter(|l| l.contains("\"alert_incident_opened\""))
        .count();
    assert_eq!(alerts, 1, "the alert notice once too: {}", watch.log_text());

    // A request through B in flight on A: a DNS check of pc2 asking a
    // server that never answers (a bound socket nobody reads), 20 s.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let mut slow = Proc::spawn(
        Command::new(bin("firstline"))
            .args([
                "run",
                "pc2",
                "dns",
                "example.org",
                "--server",
                &server,
                "--timeout",
                "20s",
            ])
            .env("XDG_CONFIG_HOME", &d.console_b.home)
            .env("HOME", &d.console_b.home),
        &d.root().join("slow-b.log"),
    );
    assert!(
        wait_until(SLOW, || d.a.log().contains("forwarded request agent=pc2")),
        "{}",
        d.logs()
    );

    // Alerts in flight, then kill -9 A.
    for m in &monitors[1..] {
        plugins.set(m, 2);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut a = d.a;
    a.kill();
    let killed = Instant::now();
    let before = tickets(&d.console_b)
        .iter()
        .filter(|t| t["source"] == "alert")
        .count();
    eprintln!(
        "A killed with {before} of {} alert tickets opened",
        monitors.len()
    );

    // The request in flight ends with a clear error, within the bound.
    let bound = Duration::from_millis(PRESENCE_TTL_MS + HEARTBEAT_MS);
    assert!(
        wait_until(SLOW, || slow.exited().is_some()),
        "{}",
        slow.log_text()
    );
    let ended_in = killed.elapsed();
    let said = slow.log_text();
    eprintln!("A killed: the request through B ended {ended_in:?} later: {said}");
    assert!(
        said.contains("agent `pc2` is held by relay") && said.contains("stopped answering"),
        "{said}"
    );
    // (+3 s: the console's own start and polling, on a busy machine.)
    assert!(ended_in <= bound + Duration::from_secs(3), "{ended_in:?}");
    drop(silent);

    // pc2 (A only) shows offline on B within the bound.
    assert!(
        wait_until(SLOW, || !d.console_b.online("pc2")),
        "pc2 still online on B after A died\n{}",
        d.b.log()
    );
    let offline_in = killed.elapsed();
    eprintln!("A killed: pc2 offline on B {offline_in:?} later (bound {bound:?})");
    assert!(
        offline_in <= bound + Duration::from_secs(3),
        "{offline_in:?} > {bound:?} (+3 s for the polling console)"
    );
    // pc1 fails over to B and delivers what A did not acknowledge.
    assert!(
        wait_until(SLOW, || pc1.log().contains(&format!(
            "moved from relay {} to relay {}",
            a.addr, d.b.addr
        ))),
        "{}",
        pc1.log()
    );
    assert!(
        wait_until(SLOW, || d.console_b.online("pc1")),
        "{}",
        d.b.log()
    );
    let by_monitor = |ts: &[Value]| -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for t in ts
            .iter()
            .filter(|t| t["source"] == "alert" && t["agent"] == "pc1")
        {
            *n.entry(t["monitor"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        n
    };
    assert!(
        wait_until(SLOW, || by_monitor(&tickets(&d.console_b)).len()
            == monitors.len()),
        "tickets: {:?}\n{}\n{}",
        by_monitor(&tickets(&d.console_b)),
        pc1.log(),
        d.b.log()
    );
    // A little longer: nothing more arrives twice.
    std::thread::sleep(Duration::from_secs(3));
    let all = tickets(&d.console_b);
    let counts = by_monitor(&all);
    for m in monitors {
        assert_eq!(counts.get(m), Some(&1), "one ticket for {m}: {counts:?}");
    }
    // No result stored twice in any of them.
    for t in all.iter().filter(|t| t["source"] == "alert") {
        let id = t["id"].as_u64().unwrap();
        let mut ats: Vec<String> = entries(&d.console_b, id, "result")
            .iter()
            .map(|e| e["body"]["at"].to_string())
            .collect();
        let n = ats.len();
        ats.sort();
        ats.dedup();
        assert_eq!(ats.len(), n, "ticket {id}: a result stored twice");
    }
    // The chain verifies on B, A's entries included (A's own anchor counts
    // the checkpoints that did not reach B before A died).
    let anchor_a = a.dir.join("audit-anchor.log");
    let (code, said) = verify(&d.b, &["--anchor", anchor_a.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    watch.kill();
}

/// A single-use token raced by two enrollments, one through each relay:
/// one enrolls, the other is told the token is used.
#[test]
fn a_single_use_token_raced_on_both_relays_enrolls_once() {
    let d = Deployment::new(DEFAULT_BACKEND, "");
    for round in 0..4 {
        let token = d.a.token(&[]);
        let racers: Vec<_> = [&d.a, &d.b]
            .iter()
            .enumerate()
            .map(|(i, relay)| {
                let agent = Agent::new(d.root(), &format!("race{round}-{i}"));
                let (addr, token) = (relay.addr.clone(), token.clone());
                std::thread::spawn(move || (agent.name.clone(), agent.enroll(&addr, &token)))
            })
            .collect();
        let outcomes: Vec<(String, Output)> =
            racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<&String> = outcomes
            .iter()
            .filter(|(_, o)| o.status.success())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {}",
            outcomes
                .iter()
                .map(|(n, o)| format!("{n}: {}", text(o)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let lost = outcomes.iter().find(|(_, o)| !o.status.success()).unwrap();
        assert!(
            String::from_utf8_lossy(&lost.1.stderr).contains("already used"),
            "{}",
            text(&lost.1)
        );
        let names: Vec<String> = d
            .console_b
            .agents()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with(&format!("race{round}-")))
            .collect();
        assert_eq!(names, vec![won[0].clone()]);
    }
}

// -------------------------------------------------------------- webhook

const SECRET: &str = "a-very-secret-webhook-key";

/// Statuses answered, by event id.
type Deliveries = std::sync::Arc<std::sync::Mutex<HashMap<String, Vec<u16>>>>;

/// A help desk on loopback that answers 500 to the first delivery of every
/// event, then 200 (so retries happen, by whichever relay claims them).
fn receiver() -> (String, Deliveries) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Deliveries = Default::default();
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = shared.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut stream = stream;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut reader = BufReader::new(stream.try_clone()?);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h)?;
                        let h = h.trim_end().to_string();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body)?;
                    let id = headers
                        .get("x-firstline-event-id")
                        .cloned()
                        .unwrap_or_default();
                    let status = {
                        let mut seen = seen.lock().unwrap();
                        let tries: &mut Vec<u16> = seen.entry(id).or_default();
                        let status = if tries.is_empty() { 500 } else { 200 };
                        tries.push(status);
                        status
                    };
                    write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n")?;
                }
            });
        }
    });
    (url, seen)
}

/// With both relays sending, each ticket event is accepted by the help
/// desk once (after the one refusal it answers every event with).
#[test]
fn webhooks_are_delivered_once_each_with_both_relays_running() {
    let (url, seen) = receiver();
    let d = Deployment::new(
        DEFAULT_BACKEND,
        &format!("webhook_url = \"{url}\"\nwebhook_secret = \"{SECRET}\""),
    );
    // Changes made through both relays, interleaved.
    let mut expected = 0;
    for i in 0..6 {
        let console = if i % 2 == 0 {
            &d.console_a
        } else {
            &d.console_b
        };
        let out = console.run(&["ticket", "new", &format!("printer {i}")]);
        assert!(out.status.success(), "{}", text(&out));
        expected += 1;
        let id = tickets(console)
            .into_iter()
            .find(|t| t["title"] == format!("printer {i}"))
            .unwrap()["id"]
            .as_u64()
            .unwrap();
        let other = if i % 2 == 0 {
            &d.console_b
        } else {
            &d.console_a
        };
        let out = other.run(&["ticket", "comment", &id.to_string(), "seen"]);
        assert!(out.status.success(), "{}", text(&out));
        expected += 1;
    }
    let accepted =
        |seen: &HashMap<String, Vec<u16>>| seen.values().filter(|t| t.contains(&200)).count();
    assert!(
        wait_until(SLOW, || accepted(&seen.lock().unwrap()) >= expected),
        "{:?}: {expected} events expected\n{}",
        seen.lock().unwrap(),
        d.logs()
    );
    // Leases run out and both senders poll: give a second sender time to
    // send one again.
    std::thread::sleep(Duration::from_secs(3));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), expected, "{seen:?}");
    for (id, tries) in &seen {
        assert_eq!(tries, &[500, 200], "event {id}");
    }
}

// ------------------------------------------------------ audit, honestly

/// Console requests (each one audited) on `console` until `stop`, as fast
/// as they go: how many were answered.
fn audited_traffic(console: &Console, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let out = console.run(&["tickets", "--json"]);
        if out.status.success() {
            n += 1;
        }
    }
    n
}

/// Two relays appending to one chain at once, relay A killed with -9 in
/// the middle of it: `audit verify` on B holds (exit 0), with and without
/// A's anchor, and again after A is restarted and both append once more.
fn honest_two_relay_history_verifies(backend: Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = Deployment::new(backend, "");
    let stop = AtomicBool::new(false);
    let mut a = d.a;
    let a_config = a.config.clone();
    let (on_a, on_b, offline) = std::thread::scope(|s| {
        // Three consoles on each relay, and offline admin commands on A's
        // folder (another process writing A's anchor), all at once.
        let ta: Vec<_> = (0..3)
            .map(|_| s.spawn(|| audited_traffic(&d.console_a, &stop)))
            .collect();
        let tb: Vec<_> = (0..3)
            .map(|_| s.spawn(|| audited_traffic(&d.console_b, &stop)))
            .collect();
        let offline = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = run(Command::new(bin("firstline-relay"))
                    .args(["token", "create", "--config"])
                    .arg(&a_config));
                assert!(out.status.success(), "{}", text(&out));
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_secs(3));
        a.kill();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let sum = |ts: Vec<std::thread::ScopedJoinHandle<'_, usize>>| -> usize {
            ts.into_iter().map(|t| t.join().unwrap()).sum()
        };
        (sum(ta), sum(tb), offline.join().unwrap())
    });
    eprintln!("audited requests: {on_a} on A (killed), {on_b} on B, {offline} offline commands");
    assert!(on_a > 0 && on_b > 0 && offline > 0);
    let anchor_a = a.dir.join("audit-anchor.log");
    for round in 0..2 {
        let (code, said) = verify(&d.b, &[]);
        assert_eq!(code, Some(0), "round {round}, B alone: {said}");
        let (code, said) = verify(&d.b, &["--anchor", anchor_a.to_str().unwrap()]);
        assert_eq!(code, Some(0), "round {round}, B with A's anchor: {said}");
    }
    // A restarted: both append again; both verify.
    a.serve();
    for c in [&d.console_a, &d.console_b] {
        assert!(c.run(&["tickets"]).status.success());
    }
    for r in [&a, &d.b] {
        let (code, said) = verify(r, &[]);
        assert_eq!(
            code,
            Some(0),
            "after the restart, {}: {said}",
            r.dir.display()
        );
    }
}

#[test]
fn an_honest_history_with_a_relay_killed_verifies_on_postgres() {
    honest_two_relay_history_verifies(Backend::Postgres);
}

#[test]
fn an_honest_history_with_a_relay_killed_verifies_on_sqlite() {
    honest_two_relay_history_verifies(Backend::Sqlite);
}

/// Someone with only the PostgreSQL password appends a row with the plain
/// SHA-256 chain hash recomputed: both relays refuse audited actions,
/// `audit verify` fails on each; once an admin acknowledges it on A, both
/// serve again. A checkpoint line replayed on NATS (a copy of one a relay
/// sent) is not kept by any relay.
#[test]
fn a_row_forged_in_postgres_stops_both_relays_and_a_replayed_checkpoint_is_not_kept() {
    let d = Deployment::new(Backend::Postgres, "");
    for c in [&d.console_a, &d.console_b] {
        let out = c.run(&["tickets"]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // A checkpoint sent by an offline command on A reaches B's anchor
    // (the control); the same line sent again is not kept.
    let anchor_b = d.b.dir.join("audit-anchor.log");
    let SharedStore::Postgres { db, .. } = &d.store else {
        unreachable!()
    };
    let pg = Postgres::shared();
    // Every entry so far covered in B's anchor first (the checkpoints of
    // A's requests may still be on their way).
    let newest_b = || {
        std::fs::read_to_string(&anchor_b)
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(2)?.parse::<i64>().ok())
            .max()
            .unwrap_or(0)
    };
    let max_id = || {
        pg.psql(db, "SELECT MAX(id) FROM audit")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    assert!(wait_until(SLOW, || newest_b() == max_id()), "{}", d.logs());
    // Lines are told apart by the entry they sign (a relay's own anchor
    // numbers its lines, and other rows — a tally, a sweep — may be
    // checkpointed meanwhile: counting lines would count those).
    let entry_of = |l: &str| l.split(' ').nth(2).and_then(|x| x.parse::<i64>().ok());
    let count_b = |id: i64| {
        std::fs::read_to_string(&anchor_b)
            .unwrap()
            .lines()
            .filter(|l| entry_of(l) == Some(id))
            .count()
    };
    let newest_a = || {
        let text = std::fs::read_to_string(d.a.dir.join("audit-anchor.log")).unwrap();
        let last = text.lines().last().unwrap().to_string();
        (
            entry_of(&last).unwrap(),
            last,
            text.lines().next().unwrap().to_string(),
        )
    };
    d.a.token(&[]);
    let (sent_id, sent, older) = newest_a();
    assert!(
        wait_until(SLOW, || count_b(sent_id) == 1),
        "A's checkpoint of entry {sent_id} never reached B's anchor\n{}",
        d.logs()
    );
    let prefix = d.prefix();
    for _ in 0..3 {
        d.publish(&format!("{prefix}.audit"), &sent);
    }
    // An older line of A's, replayed, neither.
    let older_id = entry_of(&older).unwrap();
    let older_count = count_b(older_id);
    d.publish(&format!("{prefix}.audit"), &older);
    // (Given time to arrive: a line that B does keep, sent after them,
    // arrives after them.)
    d.a.token(&[]);
    let (later_id, _, _) = newest_a();
    assert!(
        wait_until(SLOW, || count_b(later_id) == 1),
        "A's later checkpoint never reached B\n{}",
        d.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_b(sent_id), 1, "a replayed line was kept again");
    assert_eq!(
        count_b(older_id),
        older_count,
        "an older replayed line was kept"
    );
    for r in [&d.a, &d.b] {
        let (code, said) = verify(r, &[]);
        assert_eq!(code, Some(0), "{said}");
    }

    // The forged row, behind both relays' backs.
    let head = pg.psql(
        db,
        "SELECT id || ' ' || hash FROM audit ORDER BY id DESC LIMIT 1",
    );
    let (id, prev) = head.trim().split_once(' ').unwrap();
    let id = id.parse::<i64>().unwrap() + 1;
    let fields = serde_json::json!([id, 0, "mallory", "admin", null, "token create", "", "ok"]);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(fields.to_string().as_bytes());
    let hash = hex::encode(ctx.finish());
    d.store.exec(&format!(
        "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash) \
         VALUES ({id}, 0, 'mallory', 'admin', NULL, 'token create', '', 'ok', '{prev}', '{hash}')"
    ));
    for c in [&d.console_a, &d.console_b] {
        let out = c.run(&["tickets"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains(&format!("entry {id} carries no valid keyed hash")),
            "{}",
            text(&out)
        );
    }
    for r in [&d.a, &d.b] {
        let (code, said) = verify(r, &[]);
        assert_eq!(code, Some(1), "{said}");
        assert!(
            said.contains(&format!("entry {id} carries no keyed hash")),
            "{said}"
        );
    }
    let out = d.a.cmd(&["audit", "acknowledge"]);
    assert!(out.status.success(), "{}", text(&out));
    for c in [&d.console_a, &d.console_b] {
        let out = c.run(&["tickets"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for r in [&d.a, &d.b] {
        let settled = wait_until(Duration::from_secs(10), || verify(r, &[]).0 == Some(0));
        assert!(settled, "{:?}", verify(r, &[]));
    }
}

// ------------------------------------------- the bus: item 2 of issue 24

/// A NATS client by hand (the text protocol, with headers): what anyone
/// holding the deployment's NATS credential — and none of a relay's keys —
/// can do.
struct RawNats {
    s: std::net::TcpStream,
    r: std::io::BufReader<std::net::TcpStream>,
}

/// A message read off a [`RawNats`]: subject, reply, header block, payload.
struct RawMsg {
    subject: String,
    reply: Option<String>,
    headers: String,
    payload: Vec<u8>,
}

impl RawNats {
    /// Connect with `nkey` (or no credential): `Err(the server's -ERR)`.
    fn connect(port: u16, nkey: Option<&NkeyUser>) -> Result<RawNats, String> {
        use std::io::{BufRead, Write};
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("INFO"), "{line}");
        let info: Value = serde_json::from_str(&line[5..]).unwrap();
        let connect = match nkey {
            Some(k) => k.connect_json(info["nonce"].as_str().unwrap_or_default()),
            None => r#"{"verbose":false,"headers":true}"#.to_string(),
        };
        let mut raw = RawNats { s, r };
        write!(raw.s, "CONNECT {connect}\r\nPING\r\n").unwrap();
        raw.pong()?;
        Ok(raw)
    }

    /// Read up to the server's PONG; `Err` on an -ERR (or the connection
    /// closed).
    fn pong(&mut self) -> Result<(), String> {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            if line.starts_with("-ERR") {
                return Err(line.trim().to_string());
            }
            if line.starts_with("PONG") {
                return Ok(());
            }
        }
    }

    fn sub(&mut self, subject: &str, sid: u32) {
        use std::io::Write;
        write!(self.s, "SUB {subject} {sid}\r\nPING\r\n").unwrap();
        self.pong().unwrap();
    }

    /// Publish with a header block (`NATS/1.0\r\n…\r\n\r\n`) and a reply.
    fn hpub(&mut self, subject: &str, reply: &str, headers: &str, payload: &[u8]) {
        use std::io::Write;
        let total = headers.len() + payload.len();
        write!(
            self.s,
            "HPUB {subject} {reply} {} {total}\r\n{headers}",
            headers.len()
        )
        .unwrap();
        self.s.write_all(payload).unwrap();
        write!(self.s, "\r\nPING\r\n").unwrap();
        self.pong().unwrap();
    }

    /// The next message within `wait`, answering the server's pings.
    fn next(&mut self, wait: Duration) -> Option<RawMsg> {
        use std::io::{BufRead, Read, Write};
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.first().copied() {
                Some("PING") => write!(self.s, "PONG\r\n").unwrap(),
                Some("MSG") | Some("HMSG") => {
                    let hmsg = parts[0] == "HMSG";
                    let n = parts.len();
                    let total: usize = parts[n - 1].parse().unwrap();
                    let hdr: usize = if hmsg {
                        parts[n - 2].parse().unwrap()
                    } else {
                        0
                    };
                    let fixed = if hmsg { 5 } else { 4 };
                    let reply = (n > fixed).then(|| parts[3].to_string());
                    let mut body = vec![0; total + 2];
                    self.r.read_exact(&mut body).unwrap();
                    body.truncate(total);
                    let payload = body.split_off(hdr);
                    return Some(RawMsg {
                        subject: parts[1].to_string(),
                        reply,
                        headers: String::from_utf8(body).unwrap(),
                        payload,
                    });
                }
                _ => {}
            }
        }
    }
}

/// The relay id a relay logged on joining the cluster.
fn relay_id(relay: &Relay) -> String {
    let log = relay.log();
    let line = log
        .lines()
        .find(|l| l.contains("this relay is one of"))
        .unwrap_or_else(|| panic!("{log}"));
    let at = line.find("relay=").unwrap();
    line[at + 6..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The NATS header block of signed headers `h` (as a relay would send).
fn header_block(h: &[(&str, String)]) -> String {
    let mut s = String::from("NATS/1.0\r\n");
    for (k, v) in h {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// With NATS credentials but no relay's keys, a forged `exec_fix` forward
/// with `role: admin` runs nothing (unsigned, or signed with another key);
/// a genuine forward captured off the bus and published again is refused
/// as replayed; each is counted on /metrics and logged. The same request
/// signed with the deployment's bus key (a control: the path works) runs,
/// and a forwarded request leaves an audit row written by the relay that
/// ran it, naming the asking relay and the operator.
#[test]
fn a_forged_or_replayed_forward_runs_nothing_and_the_holder_audits_what_it_runs() {
    use firstline_proto::{Envelope, Message, Role};
    use firstline_relay::cluster::bus::{BusKey, Guard};
    let metrics_a = firstline_tests::peers::free_tcp_port();
    let d = Deployment::new(
        DEFAULT_BACKEND,
        &format!("metrics_listen = \"127.0.0.1:{metrics_a}\""),
    );
    let mut pc1 = d.agent("pc1", &d.a, &[&d.a]);
    pc1.start();
    assert!(
        wait_until(SLOW, || d.console_b.online("pc1")),
        "{}\n{}",
        pc1.log(),
        d.logs()
    );
    let (id_a, id_b) = (relay_id(&d.a), relay_id(&d.b));
    let prefix = d.prefix();
    let forward = format!("{prefix}.relay.{id_a}.forward");

    // No credential, or an nkey the server does not know: not admitted.
    let err = RawNats::connect(d.nats.port(), None)
        .err()
        .expect("admitted without a credential");
    assert!(err.contains("Authorization Violation"), "{err}");
    let err = RawNats::connect(d.nats.port(), Some(&NkeyUser::new()))
        .err()
        .expect("admitted with an unknown nkey");
    assert!(err.contains("Authorization Violation"), "{err}");

    // The attacker holds the NATS credential.
    let mut spy = RawNats::connect(d.nats.port(), Some(&d.nkey)).unwrap();
    spy.sub(&forward, 1);
    spy.sub("_INBOX.mallory.>", 2);

    // A genuine forward, through B: captured on the way; audited by A too.
    let path = d.root().to_str().unwrap().to_string();
    let out = d.console_b.run(&["run", "pc1", "disk", &path, "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    let genuine = spy
        .next(Duration::from_secs(5))
        .expect("the forward, seen on the bus");
    assert_eq!(genuine.subject, forward);
    assert!(genuine.headers.contains("Fl-Sig"), "{}", genuine.headers);
    let audited = wait_until(Duration::from_secs(10), || {
        audit_records(&d.console_a).iter().any(|r| {
            r["action"] == "forwarded exec"
                && r["who"] == "tina"
                && r["args"].as_str().is_some_and(|a| {
                    a.contains(&format!("from relay {id_b}")) && a.contains("disk")
                })
                && r["outcome"].as_str().is_some_and(|o| o.starts_with("ok"))
        })
    });
    assert!(audited, "{:#?}\n{}", audit_records(&d.console_a), d.logs());
    let served = || d.a.log().matches("forwarded request").count();
    let served_before = served();
    assert_eq!(served_before, 1, "{}", d.logs());

    // Forged: exec_fix, role admin, from "relay B" — unsigned, then with a
    // signature made with a key that is not the deployment's.
    let fix = Envelope::new(Message::ExecFix {
        action: "flush-dns".into(),
        args: vec![],
        dry_run: false,
        role: Role::Admin,
    });
    let body = serde_json::to_vec(&serde_json::json!({
        "from": id_b, "agent": "pc1", "request": fix, "operator": "mallory"
    }))
    .unwrap();
    spy.hpub(
        &forward,
        "_INBOX.mallory.1",
        &header_block(&[("X", "1".into())]),
        &body,
    );
    let sign = |key: BusKey, reply: &str| {
        let h = Guard::new(key, &id_b, None).sign(&forward, Some(reply), &body);
        let names = ["Fl-From", "Fl-Ts", "Fl-Nonce", "Fl-Sig"];
        let fields: Vec<(&str, String)> = names
            .iter()
            .map(|n| (*n, h.get(*n).unwrap().as_str().to_string()))
            .collect();
        header_block(&fields)
    };
    let wrong = sign(
        BusKey::from_audit_key(b"not the deployment's key"),
        "_INBOX.mallory.2",
    );
    spy.hpub(&forward, "_INBOX.mallory.2", &wrong, &body);
    if let Some(m) = spy.next(Duration::from_secs(3)) {
        panic!(
            "a forged forward was answered on {}: {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload)
        );
    }
    assert_eq!(served(), served_before, "{}", d.logs());
    assert!(d.a.log().contains("reason=\"unsigned\""), "{}", d.logs());
    assert!(
        d.a.log().contains("reason=\"bad_signature\""),
        "{}",
        d.logs()
    );

    // Replayed: the genuine forward again, word for word (its reply inbox
    // listened to).
    let inbox = genuine.reply.clone().unwrap();
    spy.sub(&inbox, 3);
    spy.hpub(&forward, &inbox, &genuine.headers, &genuine.payload);
    if let Some(m) = spy.next(Duration::from_secs(3)) {
        panic!("a replayed forward was answered on {}", m.subject);
    }
    assert_eq!(served(), served_before, "{}", d.logs());
    assert!(d.a.log().contains("reason=\"replayed\""), "{}", d.logs());
    for reason in ["unsigned", "bad_signature", "replayed"] {
        let n = metric(
            metrics_a,
            &format!("firstline_cluster_messages_rejected_total{{reason=\"{reason}\"}}"),
        );
        assert!(n >= 1.0, "{reason}: {n}");
    }
    assert_eq!(metric(metrics_a, "firstline_cluster_nats_insecure"), 0.0);

    // The control: the same forward, dry run, signed with the bus key
    // derived from the deployment's audit key, is taken (the path works;
    // what stopped the forgeries is the signature).
    let dry = Envelope::new(Message::ExecFix {
        action: "flush-dns".into(),
        args: vec![],
        dry_run: true,
        role: Role::Admin,
    });
    let body = serde_json::to_vec(&serde_json::json!({
        "from": id_b, "agent": "pc1", "request": dry, "operator": "control"
    }))
    .unwrap();
    let key = BusKey::load(&d.a.dir.join("audit-key.pk8")).unwrap();
    let h = Guard::new(key, &id_b, None).sign(&forward, Some("_INBOX.mallory.3"), &body);
    let names = ["Fl-From", "Fl-Ts", "Fl-Nonce", "Fl-Sig"];
    let fields: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, h.get(*n).unwrap().as_str().to_string()))
        .collect();
    spy.hpub(&forward, "_INBOX.mallory.3", &header_block(&fields), &body);
    let answer = spy
        .next(Duration::from_secs(10))
        .expect("the signed forward answered");
    assert!(answer.headers.contains("accepted"), "{}", answer.headers);
    assert!(
        wait_until(Duration::from_secs(10), || served() == served_before + 1),
        "{}",
        d.logs()
    );
    let audited = wait_until(Duration::from_secs(10), || {
        audit_records(&d.console_a)
            .iter()
            .any(|r| r["action"] == "forwarded exec_fix" && r["who"] == "control")
    });
    assert!(audited, "{:#?}", audit_records(&d.console_a));
    assert!(!audit_records(&d.console_a)
        .iter()
        .any(|r| r["who"] == "mallory"));
}

/// `init --nats` makes the deployment's NATS credential (an nkey, 0600) and
/// the nats-server block that admits it; `init --join` copies it; a relay
/// whose NATS URL carries no credential refuses to start unless
/// `nats_insecure = true`, which it reports (log, /metrics).
#[test]
fn init_makes_a_nats_credential_and_a_relay_refuses_nats_without_one() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir_a = tmp.path().join("a");
    let addr_a = format!("127.0.0.1:{}", free_udp_port());
    let out = relay_cmd(&[
        "init",
        "--dir",
        dir_a.to_str().unwrap(),
        "--listen",
        &addr_a,
        "--nats",
        "nats://127.0.0.1:1",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("nats-authorization.conf"), "{said}");
    let seed = dir_a.join("nats.nk");
    let mode = std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // NATS run with the block init wrote admits the relay, and only it.
    let nats = Nats::start_conf(&dir_a.join("nats-authorization.conf"));
    let config_a = dir_a.join("relay.toml");
    let toml = std::fs::read_to_string(&config_a).unwrap();
    std::fs::write(&config_a, toml.replace("nats://127.0.0.1:1", &nats.url())).unwrap();
    assert!(RawNats::connect(nats.port(), None).is_err());
    let mut a = Relay {
        dir: dir_a.clone(),
        config: config_a.clone(),
        addr: addr_a,
        proc: None,
    };
    a.serve();
    assert!(
        wait_until(SLOW, || a.log().contains("connected to NATS")),
        "{}",
        a.log()
    );
    a.kill();

    // B joins: the same credential, 0600.
    let dir_b = tmp.path().join("b");
    let addr_b = format!("127.0.0.1:{}", free_udp_port());
    relay_cmd(&[
        "init",
        "--dir",
        dir_b.to_str().unwrap(),
        "--join",
        config_a.to_str().unwrap(),
        "--listen",
        &addr_b,
    ]);
    assert_eq!(
        std::fs::read(dir_b.join("nats.nk")).unwrap(),
        std::fs::read(&seed).unwrap()
    );
    let mode = std::fs::metadata(dir_b.join("nats.nk"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Without the credential: refused, by `validate` and by `serve`.
    let toml = std::fs::read_to_string(&config_a).unwrap();
    let bare: String = toml
        .lines()
        .filter(|l| !l.starts_with("nats_nkey"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(bare, toml);
    std::fs::write(&config_a, &bare).unwrap();
    for cmd in ["validate", "serve"] {
        let out = run(Command::new(bin("firstline-relay"))
            .args([cmd, "--config"])
            .arg(&config_a));
        assert!(!out.status.success(), "{cmd}: {}", text(&out));
        assert!(
            stderr(&out).contains("NATS without authentication"),
            "{cmd}: {}",
            text(&out)
        );
    }
    // Unless insecure is asked for: then said loudly.
    let port = firstline_tests::peers::free_tcp_port();
    std::fs::write(
        &config_a,
        format!(
            "metrics_listen = \"127.0.0.1:{port}\"\n{}",
            bare.replace("[cluster]\n", "[cluster]\nnats_insecure = true\n")
        ),
    )
    .unwrap();
    a.serve();
    assert!(
        wait_until(SLOW, || a.log().contains("NATS WITHOUT AUTHENTICATION")),
        "{}",
        a.log()
    );
    assert_eq!(metric(port, "firstline_cluster_nats_insecure"), 1.0);
}
