//! Attacks on authority that should die with its grantor, and on secrets
//! left where other local users read them (issue 24, items 3 and 5), with
//! real processes on loopback. Each test performs the attack and asserts
//! it fails; SECURITY.md points here.
//!
//! * An action queued for `pc-03` must never run on a *different* machine
//!   that later enrolls as `pc-03` (after `agent remove`, or for a revoked
//!   name): removal and revocation cancel it, audited as `relay` naming who
//!   removed it.
//! * A revoked (or demoted) admin's central monitor set must stop running
//!   on the agents, and show as suspended, until an admin sets it again.
//! * `firstline web --open` hands the browser (through argv, which every
//!   local user reads) a code that logs in once and only for seconds; the
//!   printed URL logs in once too.
//! * Store and NATS URLs (with their passwords) can be given by file or
//!   environment, never only on the command line.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::browser::WebConsole;
use firstline_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(30);

fn relay(root: &Path) -> Relay {
    let mut relay = Relay::init(root);
    relay.configure("queue_sweep_ms = 200");
    relay.serve();
    relay
}

fn queue_all(console: &Console) -> Vec<Value> {
    ok_json(console.run(&["queue", "--all", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn queued(console: &Console, id: u64) -> Value {
    queue_all(console)
        .into_iter()
        .find(|q| q["id"] == id)
        .unwrap_or_else(|| panic!("#{id} not listed"))
}

/// `run AGENT disk / --queue-for 1h`: its id.
fn queue_disk(console: &Console, agent: &str) -> u64 {
    let out = console.run(&["run", agent, "disk", "/", "--queue-for", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = stdout(&out);
    said.trim()
        .strip_prefix("queued as #")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no id in {said}"))
        .parse()
        .unwrap()
}

fn audit(console: &Console) -> Vec<Value> {
    ok_json(console.run(&["audit", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

/// A machine that enrolls under `name` from a folder of its own (another
/// machine), fast to reconnect, and starts.
fn other_machine(root: &Path, name: &str, relay: &Relay) -> Agent {
    let mut agent = Agent::new(&root.join("elsewhere"), name);
    let out = agent.enroll(&relay.addr, &relay.token(&[]));
    assert!(out.status.success(), "enroll: {}", text(&out));
    agent.configure("reconnect_max_ms = 500\ndefault_monitors = false");
    agent.start();
    agent
}

#[test]
fn a_queued_action_never_runs_on_another_machine_enrolled_under_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let tech = console_as(&relay, root, "tina", "technician");
    let boss = console_as(&relay, root, "boss", "admin");

    // pc-03 is enrolled and offline; an action waits for it.
    let _old = Agent::enrolled(root, "pc-03", &relay);
    let id = queue_disk(&tech, "pc-03");
    assert_eq!(queued(&tech, id)["state"], "pending");

    // The attack: pc-03 is removed and another machine enrolls as pc-03.
    let out = boss.run(&["agent", "remove", "pc-03"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let q = queued(&tech, id);
    assert_eq!(q["state"], "cancelled", "removal cancels: {q}");
    let outcome = q["outcome"].as_str().unwrap_or_default();
    assert!(outcome.contains("removed by boss"), "{outcome}");
    let intruder = other_machine(root, "pc-03", &relay);
    assert!(
        wait_until(SLOW, || tech.online("pc-03")),
        "{}",
        intruder.log()
    );
    // Several sweeps (200 ms) and the connection's own delivery pass.
    std::thread::sleep(Duration::from_secs(3));
    let q = queued(&tech, id);
    assert_eq!(q["state"], "cancelled", "never delivered: {q}");
    let entries = audit(&tech);
    assert!(
        !entries.iter().any(|e| e["action"]
            .as_str()
            .unwrap_or("")
            .starts_with("deliver queued")),
        "nothing delivered: {entries:?}"
    );
    let cancel = entries
        .iter()
        .find(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("cancel queued run disk"))
        })
        .unwrap_or_else(|| panic!("the cancel is audited: {entries:?}"));
    assert_eq!(cancel["who"], "relay", "{cancel}");
    let args = cancel["args"].as_str().unwrap_or_default();
    assert!(
        args.contains(&format!("#{id}")) && args.contains("queued by tina"),
        "{cancel}"
    );
    let said = cancel["outcome"].as_str().unwrap_or_default();
    assert!(said.contains("removed by boss"), "{cancel}");

    // The new machine is pc-03 now: what is asked of it now reaches it.
    // (Thresholds no machine reaches: the answer, not this disk's state.)
    let out = tech.run(&["run", "pc-03", "disk", "/", "--warn", "99", "--crit", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn revoking_an_agent_offline_cancels_what_was_queued_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let tech = console_as(&relay, root, "tina", "technician");
    let _pc = Agent::enrolled(root, "pc-04", &relay);
    let ids = [queue_disk(&tech, "pc-04"), queue_disk(&tech, "pc-04")];

    let out = relay.cmd(&["agent", "revoke", "pc-04"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("2 actions queued for it cancelled"),
        "{}",
        text(&out)
    );
    let entries = audit(&tech);
    for id in ids {
        let q = queued(&tech, id);
        assert_eq!(q["state"], "cancelled", "{q}");
        let by = q["outcome"].as_str().unwrap_or_default();
        assert!(by.contains("revoked by admin (local user"), "{by}");
        assert!(
            entries.iter().any(|e| e["who"] == "relay"
                && e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("cancel queued run disk"))
                && e["args"].as_str().unwrap_or("").contains(&format!("#{id}"))),
            "#{id} audited: {entries:?}"
        );
    }
    // Removing the revoked record cancels nothing more, and refuses a name
    // that stays revoked.
    let other = Agent::new(&root.join("elsewhere"), "pc-04");
    let out = other.enroll(&relay.addr, &relay.token(&[]));
    assert!(!out.status.success(), "a revoked name: {}", text(&out));
}

/// `monitors show --json`.
fn show(console: &Console) -> Value {
    ok_json(console.run(&["monitors", "show", "--json"]))
}

fn set_of(show: &Value, name: &str) -> Value {
    show["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no set {name}: {show}"))
}

/// The sets whose monitors pc-m reported active, in a report of the sets
/// that select it now (none listed: no set selects it and it reported
/// none running).
fn active(console: &Console) -> Option<Vec<String>> {
    let s = show(console);
    let Some(row) = s["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "pc-m")
        .cloned()
    else {
        return Some(Vec::new());
    };
    if row["current"] != true {
        return None;
    }
    Some(
        row["monitors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "active")
            .map(|m| m["set"].as_str().unwrap_or_default().to_string())
            .collect(),
    )
}

#[test]
fn a_revoked_or_demoted_admins_monitor_sets_stop_on_every_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let ada = console_as(&relay, root, "ada", "admin");
    let bob = console_as(&relay, root, "bob", "admin");
    let mut pc = Agent::enrolled(root, "pc-m", &relay);
    pc.configure("reconnect_max_ms = 500\ndefault_monitors = false");
    pc.start();
    assert!(wait_until(SLOW, || ada.online("pc-m")), "{}", pc.log());

    for (who, set) in [(&ada, "ada-set"), (&bob, "bob-set")] {
        let file = root.join(format!("{set}.toml"));
        let monitor = format!(
            "[[monitor]]\nname = \"m-{set}\"\ncheck = \"disk\"\nargs = [\"/\"]\nevery = \"1s\"\n"
        );
        std::fs::write(&file, monitor).unwrap();
        let out = who.run(&[
            "monitors",
            "set",
            "--select",
            "name=pc-m",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let both = |a: &Option<Vec<String>>| {
        a.as_ref()
            .is_some_and(|v| v.contains(&"ada-set".into()) && v.contains(&"bob-set".into()))
    };
    assert!(wait_until(SLOW, || both(&active(&ada))), "{}", show(&ada));

    // The attack's premise: ada is revoked (offline, by the relay's admin)
    // — her set must not keep running with the role it was set with.
    let out = relay.cmd(&["operator", "revoke", "ada"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("ada-set"), "{}", text(&out));
    let stopped = wait_until(SLOW, || {
        active(&bob).is_some_and(|v| v == vec!["bob-set".to_string()])
    });
    assert!(stopped, "{}\n{}", show(&bob), relay.log());
    let s = show(&bob);
    let why = set_of(&s, "ada-set")["suspended"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("`ada` was revoked"), "{s}");
    assert!(set_of(&s, "bob-set")["suspended"].is_null(), "{s}");
    let table = stdout(&bob.run(&["monitors", "show"]));
    assert!(
        table.contains("set ada-set is suspended (sent to no agent)"),
        "{table}"
    );

    // Demoted through the relay by another admin: the same.
    let carl = console_as(&relay, root, "carl", "admin");
    let out = carl.run(&["operator", "role", "bob", "technician"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stopped = wait_until(SLOW, || active(&carl).is_some_and(|v| v.is_empty()));
    assert!(stopped, "{}", show(&carl));
    let why = set_of(&show(&carl), "bob-set")["suspended"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("technician") && why.contains("carl"), "{why}");

    // Promoted again, bob's set stays suspended: an admin sets it again.
    let out = carl.run(&["operator", "role", "bob", "admin"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!set_of(&show(&carl), "bob-set")["suspended"].is_null());
    assert_eq!(active(&carl), Some(vec![]), "{}", show(&carl));
    let file = root.join("bob-set.toml");
    let out = carl.run(&[
        "monitors",
        "set",
        "--select",
        "name=pc-m",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let back = wait_until(SLOW, || {
        active(&carl).is_some_and(|v| v == vec!["bob-set".to_string()])
    });
    assert!(back, "{}", show(&carl));
}

// ---- the web console's login codes ----

/// `GET path` on `base` (`http://127.0.0.1:PORT`): the status and the
/// `Set-Cookie` header.
fn get(base: &str, path: &str) -> (u16, Option<String>) {
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(str::to_string);
    (status, cookie)
}

/// The path and query of a login URL.
fn path_of(url: &str) -> String {
    format!(
        "/{}",
        url.split_once("/?").map(|(_, q)| format!("?{q}")).unwrap()
    )
}

/// A stand-in `xdg-open` that writes the URL it was handed to `out`: what
/// any local user would read from its command line.
fn fake_xdg_open(dir: &Path, out: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$1\" > {}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn web_open(console: &Console, root: &Path, tag: &str) -> (Proc, String, String) {
    let bin_dir = root.join(format!("bin-{tag}"));
    let seen = root.join(format!("argv-{tag}"));
    fake_xdg_open(&bin_dir, &seen);
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let proc = Proc::spawn(
        Command::new(bin("firstline"))
            .args(["web", "--listen", "127.0.0.1:0", "--open"])
            .env("XDG_CONFIG_HOME", &console.home)
            .env("HOME", &console.home)
            .env("PATH", path),
        &root.join(format!("web-{tag}.log")),
    );
    let handed = wait_until(SLOW, || {
        std::fs::read_to_string(&seen).is_ok_and(|t| t.contains("secret="))
    });
    assert!(handed, "xdg-open never ran: {}", proc.log_text());
    let url = std::fs::read_to_string(&seen).unwrap().trim().to_string();
    let printed = browser::secret_urls(&proc.log_text())
        .into_iter()
        .next()
        .unwrap();
    (proc, url, printed)
}

#[test]
fn web_open_hands_the_browser_a_code_that_logs_in_once_and_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let console = console_as(&relay, root, "alice", "admin");

    // The URL in xdg-open's argv: once, and not the printed one.
    let (_web, url, printed) = web_open(&console, root, "a");
    assert_ne!(url, printed, "--open hands over a code of its own");
    let base = url.split_once("/?").unwrap().0.to_string();
    let (status, cookie) = get(&base, &path_of(&url));
    assert_eq!(status, 303, "the browser logs in");
    assert!(cookie.is_some_and(|c| c.contains("firstline_session=")));
    // The attack: a local user replays the URL read from the process list.
    assert_eq!(get(&base, &path_of(&url)).0, 401, "a second use");
    assert_eq!(get(&base, &path_of(&url)).0, 401, "and a third");

    // Read before the browser used it, it dies after 30 s anyway.
    let (_web2, late, _) = web_open(&console, root, "b");
    let handed_at = Instant::now();
    let base2 = late.split_once("/?").unwrap().0.to_string();
    std::thread::sleep(Duration::from_secs(31).saturating_sub(handed_at.elapsed()));
    assert_eq!(get(&base2, &path_of(&late)).0, 401, "expired");
}

#[test]
fn the_printed_url_logs_in_once_and_the_next_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let console = console_as(&relay, root, "alice", "admin");
    let web = WebConsole::start(&console, &[]);
    let first = web.nth_url(0);
    assert_eq!(get(&web.base, &path_of(&first)).0, 303);
    assert_eq!(get(&web.base, &path_of(&first)).0, 401, "spent");
    let next = web.nth_url(1);
    assert_ne!(next, first);
    assert_eq!(get(&web.base, &path_of(&next)).0, 303, "another browser");
    assert_eq!(get(&web.base, &path_of(&next)).0, 401);
    // A wrong code spends nothing and logs in nobody.
    assert_eq!(
        get(&web.base, &format!("/?secret={}", "0".repeat(64))).0,
        401
    );
    let third = web.nth_url(2);
    assert_eq!(get(&web.base, &path_of(&third)).0, 303);
}

// ---- store and NATS secrets ----

#[test]
fn store_and_nats_urls_come_from_a_file_or_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let secret = "s3cret-token-9f2";
    let nats = format!("nats://{secret}@127.0.0.1:4222");

    // From files: nothing secret on the command line.
    let store_file = root.join("store.url");
    let nats_file = root.join("nats.url");
    std::fs::write(&store_file, "sqlite:from-file.db\n").unwrap();
    std::fs::write(&nats_file, format!("{nats}\n")).unwrap();
    let dir = root.join("r1");
    let mut cmd = Command::new(bin("firstline-relay"));
    cmd.args(["init", "--listen", "127.0.0.1:14433", "--dir"])
        .arg(&dir)
        .arg("--store-file")
        .arg(&store_file)
        .arg("--nats-file")
        .arg(&nats_file)
        .env_remove("FIRSTLINE_STORE_URL")
        .env_remove("FIRSTLINE_NATS_URL");
    let argv: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(!argv.iter().any(|a| a.contains(secret)), "{argv:?}");
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains(secret),
        "never printed: {}",
        text(&out)
    );
    let toml = dir.join("relay.toml");
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(
        written.contains("sqlite:from-file.db") && written.contains(&nats),
        "{written}"
    );
    let mode = std::fs::metadata(&toml).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "relay.toml holds the secret: {mode:o}");

    // From the environment.
    let dir2 = root.join("r2");
    let out = run(Command::new(bin("firstline-relay"))
        .args(["init", "--listen", "127.0.0.1:14433", "--dir"])
        .arg(&dir2)
        .env("FIRSTLINE_STORE_URL", "sqlite:from-env.db")
        .env("FIRSTLINE_NATS_URL", &nats));
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(dir2.join("relay.toml")).unwrap();
    assert!(
        written.contains("sqlite:from-env.db") && written.contains(&nats),
        "{written}"
    );

    // On the command line it still works, with a warning saying how not to.
    let out = run(Command::new(bin("firstline-relay"))
        .args(["init", "--listen", "127.0.0.1:14433", "--dir"])
        .arg(root.join("r3"))
        .args(["--nats", &nats]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("--nats-file FILE or $FIRSTLINE_NATS_URL"),
        "{}",
        text(&out)
    );
    // An empty file is refused, saying so.
    let empty = root.join("empty.url");
    std::fs::write(&empty, "\n").unwrap();
    let out = run(Command::new(bin("firstline-relay"))
        .args(["init", "--listen", "127.0.0.1:14433", "--dir"])
        .arg(root.join("r4"))
        .arg("--store-file")
        .arg(&empty));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is empty"), "{}", text(&out));

    // relay.toml holding the NATS credentials, readable by others: warned.
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(Command::new(bin("firstline-relay"))
        .args(["validate", "--config"])
        .arg(&toml));
    assert!(
        stderr(&out)
            .contains("holds the NATS credentials ([cluster] nats) but other users can read it"),
        "{}",
        text(&out)
    );
}
