//! Self-tests of the test peers the next steps build on, and the agent's
//! failover between relays (issue 13):
//!
//! * a real PostgreSQL 15 (`support/pg.rs`): the shared server of this test
//!   binary answers `SELECT 1` through `psql` in a database of the test's
//!   own; a private server is stopped and its folder removed on drop;
//! * a real NATS server (`support/nats.rs`): answers `INFO` on its TCP
//!   port, is gone after a kill and back on the same port after a restart;
//! * an agent whose `relay` lists a dead address first enrolls with, and
//!   connects to, the live relay after it;
//! * an agent with two live relays moves to the second when the first is
//!   killed (kill -9), stays there when the first comes back, and moves back
//!   when the second is killed; every monitoring event arrives, none twice.
//!
//! The failover is the agent's alone, so the second relay here is a copy
//! of the first relay's folder — same CA, same server certificate, a copy
//! of its SQLite database taken after the agent enrolled — serving on
//! another port, with no store or NATS shared: each relay holds the
//! tickets of the events it ingested. Relays of one deployment sharing a
//! store and NATS (`init --join`) are `cluster.rs`'s.

#![allow(clippy::unwrap_used)]

use firstline_tests::nats::Nats;
use firstline_tests::pg::Postgres;
use firstline_tests::plugin::StatePlugin;
use firstline_tests::{bin, free_udp_port, run, text, wait_until, Agent, Console, Relay};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(45);

// ---------------------------------------------------------- PostgreSQL

#[test]
fn postgres_answers_select_1_in_a_database_of_the_tests_own() {
    let pg = Postgres::shared();
    assert!(
        pg.url()
            .starts_with(&format!("postgres://fl@127.0.0.1:{}/", pg.port())),
        "{}",
        pg.url()
    );
    let url = pg.create_database("selftest_one");
    assert_eq!(
        url,
        format!("postgres://fl@127.0.0.1:{}/selftest_one", pg.port())
    );
    assert_eq!(pg.psql("selftest_one", "SELECT 1").trim(), "1");
    // psql given the URL itself, as a store would be.
    let out = run(Command::new("/usr/lib/postgresql/15/bin/psql")
        .arg(&url)
        .args(["-X", "-At", "-c", "SELECT current_database(), current_user"]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "selftest_one|fl"
    );
    // Tables are the database's own.
    pg.psql(
        "selftest_one",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42)",
    );
    assert_eq!(pg.psql("selftest_one", "SELECT x FROM t").trim(), "42");
    assert!(pg
        .psql("postgres", "SELECT version()")
        .contains("PostgreSQL 15"));
}

#[test]
fn postgres_shared_by_the_tests_of_a_binary_a_fresh_database_each() {
    let pg = Postgres::shared();
    let (a, b) = (pg.fresh_database(), pg.fresh_database());
    assert_ne!(a, b);
    for url in [&a, &b] {
        let name = url.rsplit('/').next().unwrap();
        assert_eq!(
            pg.psql(
                name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            .trim(),
            "0"
        );
    }
    // The same server as the other test's.
    assert_eq!(Postgres::shared().port(), pg.port());
}

#[test]
fn a_private_postgres_is_stopped_and_removed_on_drop() {
    let started = Instant::now();
    let pg = Postgres::start();
    eprintln!("PostgreSQL 15 started in {:?}", started.elapsed());
    assert_eq!(pg.psql("postgres", "SELECT 1").trim(), "1");
    let (port, dir) = (pg.port(), pg.dir().to_path_buf());
    assert!(dir.join("data/PG_VERSION").exists());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening on {port}"
    );
}

// ---------------------------------------------------------------- NATS

#[test]
fn nats_answers_info_on_its_port_and_comes_back_on_the_same_port() {
    let started = Instant::now();
    let mut nats = Nats::start();
    eprintln!("nats-server started in {:?}", started.elapsed());
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let info = nats.info().expect("INFO");
    let json: serde_json::Value =
        serde_json::from_str(info.strip_prefix("INFO ").unwrap()).unwrap();
    assert_eq!(json["port"], nats.port(), "{info}");
    assert!(json["server_id"].is_string(), "{info}");
    assert!(json["version"].is_string(), "{info}");
    let port = nats.port();
    nats.kill();
    assert!(nats.info().is_none(), "still answering after kill -9");
    nats.restart();
    assert_eq!(nats.port(), port);
    assert!(nats.info().is_some());
    drop(nats);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

// ------------------------------------------------------------- failover

/// Agent settings that make the failover quick to watch: a dead relay is
/// noticed within 3 s (keep-alive 1 s, idle timeout 3 s), a dial that gets
/// no answer gives up after 1 s, and rounds wait at most 1 s.
const QUICK: &str = "keep_alive_secs = 1\nidle_timeout_secs = 3\nconnect_timeout_ms = 1000\n\
                     reconnect_max_ms = 1000";

/// The agent's log lines that say which relay it connected to.
fn connections(agent: &Agent) -> Vec<String> {
    agent.log_lines("connected to relay")
}

#[test]
fn a_dead_relay_first_in_the_list_is_skipped_for_enrolling_and_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let mut live = Relay::init(tmp.path());
    live.serve();
    let dead = format!("127.0.0.1:{}", free_udp_port());
    let agent = Agent::new(tmp.path(), "pc1");
    // The wait for the dead one, from the agent.toml being written.
    std::fs::write(&agent.config, "connect_timeout_ms = 1000\n").unwrap();
    // Several relays in one --relay, separated by commas (the form the
    // agent's command line takes today; see the report of issue 13).
    let both = format!("{dead},{}", live.addr);
    let started = Instant::now();
    let out = agent.enroll(&both, &live.token(&[]));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("relay {dead} did not answer within 1 s")),
        "{}",
        text(&out)
    );
    eprintln!("enrolled past the dead relay in {:?}", started.elapsed());
    let written = std::fs::read_to_string(&agent.config).unwrap();
    assert!(
        written.contains(&format!("relay = [\"{dead}\", \"{}\"]", live.addr)),
        "{written}"
    );

    let console = Console::new(tmp.path());
    console.login(&live.operator("tech", "technician"));
    let mut agent = agent;
    agent.configure(QUICK);
    let started = Instant::now();
    agent.start();
    assert!(
        wait_until(SLOW, || console.online("pc1")),
        "never online:\n{}",
        agent.log()
    );
    eprintln!("online through the second relay in {:?}", started.elapsed());
    let log = agent.log();
    assert!(
        log.contains(&format!("relay {dead} unavailable")) && log.contains("trying relay"),
        "{log}"
    );
    assert!(
        log.contains(&format!("connected to relay {} (2 of 2)", live.addr)),
        "{log}"
    );

    // `validate` checks every address of the list.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "name = \"pc1\"\nrelay = [\"{}\", \"relay.example:99999\", \"fe80::1\"]\n",
            live.addr
        ),
    )
    .unwrap();
    let out = run(Command::new(bin("firstline-agent"))
        .args(["validate", "--config"])
        .arg(&bad));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:") && err.contains("`99999` is not a port"),
        "{err}"
    );
    assert!(err.contains("IPv6 address in brackets"), "{err}");
}

/// Copy the files of `from` into a new folder `to` (the relay's state:
/// config, CA and server certificate, database and its WAL, audit key and
/// anchor), leaving out the serve logs and the stateless-reset key (the
/// copy makes its own).
fn copy_relay_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().unwrap().is_file()
            || name.starts_with("serve-")
            || name == "reset-key"
        {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&name)).unwrap();
    }
}

/// Replace the value of top-level `key = …` lines in place (relay.toml may
/// have tables further down, where an appended key would land).
fn replace_keys(path: &Path, keys: &[(&str, &str)]) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match keys.iter().find(|(k, _)| Some(*k) == key) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Alert tickets of `monitor` in a relay's database.
fn tickets(relay: &Relay, monitor: &str) -> i64 {
    open_ro(&relay.dir.join("relay.db"))
        .query_row(
            "SELECT COUNT(*) FROM tickets WHERE source = 'alert' AND agent = 'pc1' AND monitor = ?1",
            [monitor],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

fn open_ro(path: &Path) -> rusqlite::Connection {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db
}

/// The highest sequence number the agent's outbox has handed out.
fn produced(agent: &Agent) -> i64 {
    open_ro(&agent.dir.join("outbox.db"))
        .query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The highest sequence number a relay has stored for the agent.
fn stored(relay: &Relay) -> i64 {
    open_ro(&relay.dir.join("relay.db"))
        .query_row("SELECT last_seq FROM agents WHERE name = 'pc1'", [], |r| {
            r.get(0)
        })
        .unwrap_or(-1)
}

#[test]
fn an_agent_moves_to_the_other_relay_when_one_is_killed_and_stays_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Relay::init(&root_a);
    a.serve();
    let credential_a = a.operator("tech", "technician");
    let agent = Agent::enrolled(tmp.path(), "pc1", &a);
    // Relay B: A's folder copied while A is down, on a port of its own.
    a.kill();
    let dir_b = root_b.join("relay");
    copy_relay_dir(&a.dir, &dir_b);
    let addr_b = format!("127.0.0.1:{}", free_udp_port());
    let quoted = format!("\"{addr_b}\"");
    replace_keys(
        &dir_b.join("relay.toml"),
        &[("listen", &quoted), ("public_addr", &quoted)],
    );
    let mut b = Relay {
        config: dir_b.join("relay.toml"),
        dir: dir_b,
        addr: addr_b,
        proc: None,
    };
    let credential_b = b.dir.join("tech.credential.toml");
    std::fs::write(
        &credential_b,
        std::fs::read_to_string(&credential_a)
            .unwrap()
            .replace(&a.addr, &b.addr),
    )
    .unwrap();
    a.serve();
    b.serve();
    let (console_a, console_b) = (Console::new(&root_a), Console::new(&root_b));
    console_a.login(&credential_a);
    console_b.login(&credential_b);

    // One monitor per phase, each failing from its phase on: its alert
    // ticket lands on the relay the agent is connected to then.
    let plugins = StatePlugin::new(tmp.path());
    let phases = ["on_a", "a_killed", "a_back", "b_killed"];
    for p in phases {
        plugins.set(p, 0);
    }
    let mut agent = agent;
    agent.configure(&format!(
        "relay = [\"{}\", \"{}\"]\n{QUICK}\ndefault_monitors = false\nplugins_dir = \"{}\"",
        a.addr,
        b.addr,
        plugins.dir.display()
    ));
    for p in phases {
        agent.append(&format!(
            "[[monitor]]\nname = \"{p}\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"{p}\"]\n\
             every = \"1s\"\nfail_after = 1\nrecover_after = 1\n"
        ));
    }
    agent.append(&StatePlugin::policy());
    agent.start();
    let online = |console: &Console| wait_until(SLOW, || console.online("pc1"));
    assert!(online(&console_a), "never online on A:\n{}", agent.log());
    let connected_at = Instant::now();
    assert!(
        connections(&agent)[0].contains(&format!("connected to relay {} (1 of 2)", a.addr)),
        "{:?}",
        connections(&agent)
    );
    plugins.set("on_a", 2);
    assert!(
        wait_until(SLOW, || tickets(&a, "on_a") == 1),
        "{}",
        agent.log()
    );

    // kill -9 A, once the session is an established one (10 s): the agent
    // notices (idle timeout), tries A once more, then B.
    std::thread::sleep(Duration::from_secs(11).saturating_sub(connected_at.elapsed()));
    a.kill();
    let killed = Instant::now();
    plugins.set("a_killed", 2);
    assert!(
        online(&console_b),
        "never online on B:\n{}\nB:\n{}",
        agent.log(),
        b.log()
    );
    let moved_in = killed.elapsed();
    eprintln!("A killed: online on B {moved_in:?} later");
    assert!(moved_in < Duration::from_secs(20), "{moved_in:?}");
    let log = agent.log();
    assert!(
        log.contains(&format!("moved from relay {} to relay {}", a.addr, b.addr)),
        "{log}"
    );
    assert!(
        wait_until(SLOW, || tickets(&b, "a_killed") == 1),
        "{}",
        agent.log()
    );

    // A comes back: the agent stays on B, which works.
    a.serve();
    let before = connections(&agent).len();
    std::thread::sleep(Duration::from_secs(6));
    plugins.set("a_back", 2);
    assert!(
        wait_until(SLOW, || tickets(&b, "a_back") == 1),
        "{}",
        agent.log()
    );
    assert_eq!(
        connections(&agent).len(),
        before,
        "the agent left B:\n{}",
        agent.log()
    );
    assert!(console_b.online("pc1"));
    assert!(!console_a.online("pc1"), "online on A too");

    // kill -9 B: back to A.
    std::thread::sleep(Duration::from_secs(4));
    b.kill();
    let killed = Instant::now();
    plugins.set("b_killed", 2);
    assert!(
        online(&console_a),
        "never back on A:\n{}\nA:\n{}",
        agent.log(),
        a.log()
    );
    eprintln!("B killed: online on A {:?} later", killed.elapsed());
    assert!(
        agent
            .log()
            .contains(&format!("moved from relay {} to relay {}", b.addr, a.addr)),
        "{}",
        agent.log()
    );
    assert!(
        wait_until(SLOW, || tickets(&a, "b_killed") == 1),
        "{}",
        agent.log()
    );

    // Nothing lost, nothing twice: one alert ticket per failing monitor, on
    // the relay the agent was on when it failed, none on the other; and
    // delivery goes on where it stopped: every event produced so far
    // reaches A (B acknowledged those of its time, the outbox kept the rest).
    let on = |relay: &Relay| -> Vec<i64> { phases.iter().map(|p| tickets(relay, p)).collect() };
    assert_eq!(on(&a), [1, 0, 0, 1], "tickets on A");
    assert_eq!(on(&b), [0, 1, 1, 0], "tickets on B");
    let upto = produced(&agent);
    assert!(
        wait_until(SLOW, || stored(&a) >= upto),
        "A stored up to {} of {upto}:\n{}",
        stored(&a),
        agent.log()
    );
    assert!(stored(&b) > 0, "B stored nothing");
    let moves = agent.log_lines("moved from relay");
    assert_eq!(moves.len(), 2, "{moves:#?}");
    eprintln!("{}", moves.join("\n"));
}
