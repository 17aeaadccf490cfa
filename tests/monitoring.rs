//! Proactive monitoring into tickets, with nothing lost (issue 5), with real
//! processes: a monitor runs a real Nagios-style plugin whose exit status the
//! test flips through a file; the relay, the agent and the console are the
//! real binaries; faults are real kill -9s.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::plugin::StatePlugin;
use firstline_tests::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(30);

/// Relay, agent `pc1` with one 1-second monitor on the plugin, technician console.
struct World {
    tmp: tempfile::TempDir,
    relay: Relay,
    agent: Agent,
    console: Console,
    plugin: StatePlugin,
}

impl World {
    fn new(relay_settings: &str, initial_state: u8) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let plugin = StatePlugin::new(tmp.path());
        plugin.set("m", initial_state);
        let mut relay = Relay::init(tmp.path());
        relay.configure(relay_settings);
        relay.serve();
        let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
        agent.configure(&format!(
            "plugins_dir = \"{}\"\nreconnect_max_ms = 1000",
            plugin.dir.display()
        ));
        agent.append("[[monitor]]\nname = \"state\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"m\"]\nevery = \"1s\"\n");
        agent.append(StatePlugin::POLICY);
        agent.start();
        let console = Console::new(tmp.path());
        console.login(&relay.operator("tech", "technician"));
        World {
            tmp,
            relay,
            agent,
            console,
            plugin,
        }
    }

    fn tickets(&self) -> Vec<Value> {
        let out = self.console.run(&["tickets", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn show(&self, id: u64) -> Value {
        let out = self
            .console
            .run(&["ticket", "show", &id.to_string(), "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn wait_ticket(&self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = wait_until(SLOW, || {
            found = self.tickets().into_iter().find(|t| f(t));
            found.is_some()
        });
        assert!(
            ok,
            "no ticket {what}\ntickets: {:?}\nagent:\n{}\nrelay:\n{}",
            self.tickets(),
            self.agent.log(),
            self.relay.log()
        );
        found.unwrap()
    }

    fn entries(&self, id: u64, kind: &str) -> Vec<Value> {
        self.show(id)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }
}

/// Result entries must each be a distinct result (no duplicate ingestion).
fn assert_no_duplicate_results(results: &[Value]) {
    let mut ats: Vec<String> = results
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["body"].as_str().unwrap()).unwrap()["at"].to_string()
        })
        .collect();
    let n = ats.len();
    ats.sort();
    ats.dedup();
    assert_eq!(ats.len(), n, "a result was stored twice");
}

#[test]
fn failing_monitor_opens_one_ticket_appends_and_resolves() {
    let w = World::new("", 2);
    let started = Instant::now();
    let t = w.wait_ticket("opened", |t| t["source"] == "alert");
    eprintln!(
        "first failure → ticket visible: {:?} (fail_after = 3 runs, every 1 s)",
        started.elapsed()
    );
    let id = t["id"].as_u64().unwrap();
    assert_eq!(t["priority"], "high");
    assert_eq!(t["agent"], "pc1");
    assert_eq!(t["monitor"], "state");
    assert!(t["title"].as_str().unwrap().contains("crit"), "{t}");
    let diag = w.entries(id, "diagnostics");
    assert_eq!(diag.len(), 1, "one diagnostic bundle");
    let bundle: Value = serde_json::from_str(diag[0]["body"].as_str().unwrap()).unwrap();
    assert!(
        !bundle["top_memory"].as_array().unwrap().is_empty(),
        "{bundle}"
    );
    assert!(!bundle["disks"].as_array().unwrap().is_empty(), "{bundle}");

    assert!(
        wait_until(SLOW, || w.entries(id, "result").len() >= 3),
        "results not appended"
    );
    w.plugin.set("m", 0);
    assert!(
        wait_until(SLOW, || w.show(id)["ticket"]["status"] == "resolved"),
        "not resolved"
    );
    let status = w.entries(id, "status");
    assert!(
        status
            .iter()
            .any(|e| e["body"].as_str().unwrap().contains("recovered")),
        "{status:?}"
    );
    assert_eq!(w.tickets().len(), 1, "exactly one ticket");
    assert_no_duplicate_results(&w.entries(id, "result"));

    // Failing again within the reopen window: the same ticket reopens.
    w.plugin.set("m", 2);
    assert!(
        wait_until(SLOW, || w.show(id)["ticket"]["status"] == "open"),
        "not reopened"
    );
    assert_eq!(w.tickets().len(), 1, "reopened, not a new ticket");
}

#[test]
fn flapping_check_opens_no_ticket_storm() {
    let w = World::new("", 2);
    w.plugin.flap("m");
    // ~10 runs alternating crit/ok: never three failures in a row.
    std::thread::sleep(Duration::from_secs(10));
    let out = w.console.run(&["run", "pc1", "plugin", "check_state", "m"]);
    assert!(out.status.code().is_some(), "{}", text(&out));
    assert!(
        w.tickets().is_empty(),
        "flapping opened tickets: {:?}",
        w.tickets()
    );
}

#[test]
fn relay_killed_while_failing_then_recovering_loses_nothing() {
    let mut w = World::new("", 2);
    let t = w.wait_ticket("opened", |t| t["source"] == "alert");
    let id = t["id"].as_u64().unwrap();
    w.relay.kill();
    // While the relay is down the check keeps failing, then recovers.
    std::thread::sleep(Duration::from_secs(3));
    w.plugin.set("m", 0);
    std::thread::sleep(Duration::from_secs(4));
    w.relay.serve();
    assert!(
        wait_until(SLOW, || w.show(id)["ticket"]["status"] == "resolved"),
        "recovery during the outage never arrived\nagent:\n{}",
        w.agent.log()
    );
    let results = w.entries(id, "result");
    let crit = results
        .iter()
        .filter(|e| e["body"].as_str().unwrap().contains("\"crit\""))
        .count();
    assert!(
        crit >= 3,
        "failures made during the outage are on the ticket ({crit})"
    );
    assert_no_duplicate_results(&results);
    assert_eq!(w.tickets().len(), 1);
}

#[test]
fn agent_kill9_with_events_in_the_outbox_delivers_after_restart() {
    let mut w = World::new("", 2);
    w.relay.kill();
    // Three failures and the incident are now only in the agent's outbox.
    std::thread::sleep(Duration::from_secs(5));
    w.agent.proc.as_mut().unwrap().kill();
    w.plugin.set("m", 0);
    let killed_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    w.relay.serve();
    w.agent.start();
    let t = w.wait_ticket("from the outbox", |t| t["source"] == "alert");
    let results = w.entries(t["id"].as_u64().unwrap(), "result");
    let before_kill = results
        .iter()
        .map(|e| serde_json::from_str::<Value>(e["body"].as_str().unwrap()).unwrap())
        .filter(|r| r["at"].as_str().unwrap() < killed_at.as_str())
        .count();
    assert!(
        before_kill >= 1,
        "results made before kill -9 were delivered: {results:?}"
    );
    // The agent remembered the open incident across the kill and resolves it.
    assert!(wait_until(SLOW, || w.show(t["id"].as_u64().unwrap())
        ["ticket"]["status"]
        == "resolved"));
    assert_eq!(w.tickets().len(), 1);
}

#[test]
fn technician_works_a_ticket_and_watch_sees_it() {
    let w = World::new("", 0);
    let mut watch = Proc::spawn(
        Command::new(bin("firstline"))
            .args(["watch", "--json"])
            .env("XDG_CONFIG_HOME", &w.console.home)
            .env("HOME", &w.console.home),
        &w.tmp.path().join("watch.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = w.console.run(&[
        "ticket",
        "new",
        "user cannot print",
        "--agent",
        "pc1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_u64()
        .unwrap()
        .to_string();
    for args in [
        vec!["ticket", "comment", &id, "called the user"],
        vec!["ticket", "assign", &id, "tech"],
        vec!["ticket", "start", &id],
        vec!["ticket", "resolve", &id, "--comment", "paper loaded"],
        vec!["ticket", "close", &id],
    ] {
        let out = w.console.run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let out = w.console.run(&["ticket", "resolve", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "closed ticket cannot be resolved: {}",
        text(&out)
    );
    let detail = w.show(id.parse().unwrap());
    assert_eq!(detail["ticket"]["status"], "closed");
    assert_eq!(detail["ticket"]["assignee"], "tech");
    let kinds: Vec<&str> = detail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "comment", "assigned", "status", "status", "status"]
    );
    let out = w
        .console
        .run(&["tickets", "--status", "closed", "--agent", "pc1", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&out.stdout)
            .unwrap()
            .len(),
        1
    );

    assert!(
        wait_until(SLOW, || watch.log_text().matches("ticket_").count() >= 6),
        "watch saw: {}",
        watch.log_text()
    );
    assert!(watch.log_text().contains("user cannot print"));
    watch.kill();

    let out = w.console.run(&["ticket", "show", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ticket #999"));
}
