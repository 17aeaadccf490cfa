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
        agent.append(&StatePlugin::policy());
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
            assert!(e["body"].is_object(), "a result is a JSON object: {e}");
            e["body"]["at"].to_string()
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
    let bundle = &diag[0]["body"];
    assert!(bundle.is_object(), "the bundle is a JSON object: {bundle}");
    assert!(
        !bundle["top_memory"].as_array().unwrap().is_empty(),
        "{bundle}"
    );
    assert!(!bundle["disks"].as_array().unwrap().is_empty(), "{bundle}");
    let opened = w.entries(id, "opened");
    assert_eq!(opened[0]["body"]["status"], "crit", "{opened:?}");
    assert!(opened[0]["observed_at"].is_string(), "{opened:?}");

    // The text view: the bundle read out, not "see --json".
    let out = w.console.run(&["ticket", "show", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!shown.contains("see --json"), "{shown}");
    let top = bundle["top_memory"][0]["name"].as_str().unwrap();
    let top = firstline_proto::text::printable(top);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("    top memory:") && l.contains(&*top) && l.contains('%')),
        "the top process {top} with its CPU %:\n{shown}"
    );
    assert!(
        shown.contains("CRIT plugin check_state m: STATE 2: m"),
        "{shown}"
    );
    assert!(
        shown.lines().any(|l| l.starts_with("    route:")),
        "{shown}"
    );

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
        .filter(|e| e["body"]["status"] == "crit")
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
        .map(|e| &e["body"])
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
    // An unknown ticket is a usage error (exit 2).
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ticket #999"));
}

/// A timeline delivered late keeps when things happened: the relay is down
/// while the incident opens on the agent; once the relay is back, each
/// entry's `observed_at` is before the restart and its `at` after, and the
/// text view shows both.
#[test]
fn relay_outage_keeps_when_things_were_observed() {
    let mut w = World::new("", 0);
    assert!(
        wait_until(SLOW, || w.console.online("pc1")),
        "agent never online\n{}",
        w.agent.log()
    );
    w.relay.kill();
    w.plugin.set("m", 2);
    // fail_after = 3 runs of 1 s: the incident opens on the agent meanwhile.
    assert!(
        wait_until(SLOW, || w.agent.log().contains("incident_opened")),
        "no incident on the agent\n{}",
        w.agent.log()
    );
    std::thread::sleep(Duration::from_secs(7));
    let restart = rfc3339_now();
    w.relay.serve();
    let t = w.wait_ticket("after the outage", |t| t["source"] == "alert");
    let id = t["id"].as_u64().unwrap();
    let entries = w.show(id)["entries"].as_array().unwrap().clone();
    let from_outage: Vec<&Value> = entries
        .iter()
        .filter(|e| matches!(e["kind"].as_str(), Some("opened" | "diagnostics")))
        .collect();
    assert_eq!(from_outage.len(), 2, "{entries:?}");
    for e in &from_outage {
        let observed = e["observed_at"].as_str().expect("observed_at");
        let at = e["at"].as_str().unwrap();
        assert!(
            observed < restart.as_str(),
            "observed {observed} before the restart {restart}: {e}"
        );
        assert!(
            at >= restart.as_str(),
            "stored {at} after the restart {restart}: {e}"
        );
    }
    // Results made during the outage too.
    let late_results = entries
        .iter()
        .filter(|e| e["kind"] == "result")
        .filter(|e| e["observed_at"].as_str().unwrap() < restart.as_str())
        .count();
    assert!(late_results >= 1, "{entries:?}");
    // The ticket itself: created when it reached the relay.
    assert!(t["created_at"].as_str().unwrap() >= restart.as_str(), "{t}");

    let out = w.console.run(&["ticket", "show", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let opened = shown
        .lines()
        .find(|l| l.contains("  opened "))
        .unwrap_or_else(|| panic!("{shown}"));
    let observed = from_outage[0]["observed_at"].as_str().unwrap();
    assert!(
        opened.starts_with(observed) && opened.contains("(arrived "),
        "observed time first, arrival after:\n{shown}"
    );
    assert!(shown.contains("on the agent)"), "{shown}");
}

/// Configuration errors are not incidents (issue 11): `validate` names
/// every bad monitor with its file and line, and exits 2 — so does `run`.
#[test]
fn validate_reports_every_bad_monitor_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        "relay = \"127.0.0.1:9\"\nname = \"pc1\"\n\n\
         [[monitor]]\ncheck = \"disk\"\nargs = [\"/\", \"--wrn\", \"80\"]\nevery = \"5m\"\n\n\
         [[monitor]]\ncheck = \"memory\"\nevery = \"1m\"\n\n\
         [[monitor]]\ncheck = \"teleport\"\nargs = [\"mars\"]\nevery = \"5m\"\n",
    )
    .unwrap();
    let path = config.display().to_string();
    for command in ["validate", "run"] {
        let out = run(Command::new(bin("firstline-agent"))
            .args([command, "--config"])
            .arg(&config)
            .env("RUST_LOG", "off"));
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{path}:6:"))
                    && l.contains("unexpected argument '--wrn'")),
            "{command}: the disk monitor's args line:\n{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{path}:14:"))
                    && l.contains("unknown check `teleport`")),
            "{command}: the unknown check's line:\n{err}"
        );
        assert!(!err.contains("Usage:"), "one line per error:\n{err}");
        assert_eq!(err.lines().count(), 2, "{err}");
    }
}

/// A monitor whose arguments only its check's run rejects (`--warn` above
/// `--crit`: clap parses it, `validate` passes) is reported once as a
/// configuration problem — logged by the agent, recorded by the relay —
/// and never opens a ticket, even with `fail_after = 1`; the other
/// monitor's incident still does.
#[test]
fn arguments_rejected_at_run_time_are_a_config_problem_not_a_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = StatePlugin::new(tmp.path());
    plugin.set("m", 2);
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.configure(&format!(
        "plugins_dir = \"{}\"\nreconnect_max_ms = 1000",
        plugin.dir.display()
    ));
    agent.append(
        "[[monitor]]\nname = \"thresholds\"\ncheck = \"disk\"\n\
         args = [\"/\", \"--warn\", \"95\", \"--crit\", \"90\"]\nevery = \"1s\"\nfail_after = 1\n",
    );
    agent.append("[[monitor]]\nname = \"state\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"m\"]\nevery = \"1s\"\n");
    agent.append(&StatePlugin::policy());
    let out = run(Command::new(bin("firstline-agent"))
        .args(["validate", "--config"])
        .arg(&agent.config));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    agent.start();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));

    assert!(
        wait_until(SLOW, || relay.log().contains("monitor cannot run")),
        "the relay never heard of it\nagent:\n{}\nrelay:\n{}",
        agent.log(),
        relay.log()
    );
    // The other monitor's incident opens a ticket: the agent is working.
    let tickets = || -> Vec<Value> {
        let out = console.run(&["tickets", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(
        wait_until(SLOW, || tickets().iter().any(|t| t["monitor"] == "state")),
        "{:?}",
        tickets()
    );
    // Several more periods of the bad monitor.
    std::thread::sleep(Duration::from_secs(4));
    let all = tickets();
    assert!(
        all.iter().all(|t| t["monitor"] != "thresholds"),
        "a configuration error opened a ticket: {all:?}"
    );
    let agent_log = agent.log();
    assert_eq!(
        agent_log.matches("monitor stopped").count(),
        1,
        "logged once:\n{agent_log}"
    );
    assert!(agent_log.contains("must not be above"), "{agent_log}");
    assert_eq!(
        relay.log().matches("monitor cannot run").count(),
        1,
        "reported once:\n{}",
        relay.log()
    );
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
