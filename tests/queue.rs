//! Actions queued for offline machines, end to end, with real processes on
//! loopback (issue 14, fourth part):
//!
//! * `run … --queue-for 1h --ticket N` for a machine that never connected
//!   answers "queued as #ID …" (exit 0); the relay is killed and started
//!   again; the machine connects and gets the action once: its result is
//!   in the ticket, `watch` tells it, `firstline queue --all` shows it
//!   delivered with its outcome, the audit log has its queueing and its
//!   delivery; the machine reconnects twice more and nothing runs again;
//! * an action queued for 2 s is expired by the relay's sweep and never
//!   delivered; one cancelled (`firstline queue cancel ID`) neither, and a
//!   second cancel is refused; a viewer may list but not cancel; unknown
//!   and revoked machines are refused, not queued; a machine online runs
//!   the action at once.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(30);

/// A relay whose queue sweep runs every 200 ms, serving.
fn relay(root: &Path) -> Relay {
    let mut relay = Relay::init(root);
    relay.configure("queue_sweep_ms = 200");
    relay.serve();
    relay
}

/// `queue --all --json`: every queued action.
fn queue_all(console: &Console) -> Vec<Value> {
    let v = ok_json(console.run(&["queue", "--all", "--json"]));
    v.as_array().unwrap().clone()
}

fn queued(console: &Console, id: u64) -> Value {
    queue_all(console)
        .into_iter()
        .find(|q| q["id"] == id)
        .unwrap_or_else(|| panic!("#{id} not listed"))
}

/// `run AGENT disk / --queue-for DUR [EXTRA…]` answered "queued": its id.
fn queue_disk(console: &Console, agent: &str, dur: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["run", agent, "disk", "/", "--queue-for", dur];
    args.extend_from_slice(extra);
    let out = console.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(" for {agent} until "))
            && said.contains("`firstline queue` shows it"),
        "{said}"
    );
    let id = said
        .trim()
        .strip_prefix("queued as #")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no id in {said}"));
    id.parse().unwrap()
}

fn audit(console: &Console) -> Vec<Value> {
    ok_json(console.run(&["audit", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn stop(agent: &mut Agent) {
    let pid = agent.proc.as_ref().unwrap().child.id().to_string();
    let out = run(Command::new("kill").args(["-TERM", &pid]));
    assert!(out.status.success(), "{}", text(&out));
    let ended = wait_until(SLOW, || agent.proc.as_mut().unwrap().exited().is_some());
    assert!(ended, "agent did not stop: {}", agent.log());
    agent.proc.take();
}

fn wait_online(console: &Console, agent: &Agent, relay: &Relay, online: bool) {
    let ok = wait_until(SLOW, || console.online(&agent.name) == online);
    assert!(
        ok,
        "{} never {}\nagent log:\n{}\nrelay log:\n{}",
        agent.name,
        if online { "online" } else { "offline" },
        agent.log(),
        relay.log()
    );
}

#[test]
fn a_queued_action_reaches_its_machine_once_even_after_a_relay_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut relay = relay(root);
    let mut pc = Agent::enrolled(root, "pc-late", &relay);
    let tech = console_as(&relay, root, "tina", "technician");

    let out = tech.run(&[
        "ticket",
        "new",
        "disk on pc-late",
        "--agent",
        "pc-late",
        "--json",
    ]);
    let ticket = ok_json(out)["id"].as_u64().unwrap();
    let t = ticket.to_string();
    let id = queue_disk(&tech, "pc-late", "1h", &["--ticket", &t]);
    let q = queued(&tech, id);
    assert_eq!(q["state"], "pending", "{q}");
    assert_eq!(
        (&q["operator"], &q["role"]),
        (&"tina".into(), &"technician".into())
    );
    assert_eq!((&q["action"], &q["check"]), (&"run".into(), &"disk".into()));
    assert_eq!(q["ticket"], ticket);
    let table = stdout(&tech.run(&["queue"]));
    for col in [
        "ID",
        "AGENT",
        "ACTION",
        "STATE",
        "QUEUED BY",
        "EXPIRES",
        "OUTCOME",
    ] {
        assert!(table.contains(col), "{table}");
    }
    assert!(
        table.contains(&format!("#{id}")) && table.contains("pending"),
        "{table}"
    );

    // The relay goes down and comes back: the action is in its database.
    relay.kill();
    relay.serve();
    let watch_log = root.join("watch.log");
    let _watch = Proc::spawn(
        Command::new(bin("firstline"))
            .args(["watch", "--json", "--kind", "queued"])
            .env("XDG_CONFIG_HOME", &tech.home)
            .env("HOME", &tech.home),
        &watch_log,
    );
    std::thread::sleep(Duration::from_millis(500));

    // The machine connects: it gets the action.
    pc.start();
    let delivered = wait_until(SLOW, || {
        let q = queued(&tech, id);
        q["state"] == "delivered" && q["outcome"].is_string()
    });
    assert!(
        delivered,
        "{:?}\nrelay log:\n{}\nagent log:\n{}",
        queue_all(&tech),
        relay.log(),
        pc.log()
    );
    let q = queued(&tech, id);
    let outcome = q["outcome"].as_str().unwrap();
    assert!(
        ["ok: ", "warn: ", "crit: "]
            .iter()
            .any(|p| outcome.starts_with(p)),
        "ran to a status: {outcome}"
    );
    assert!(q["ended_at"].is_string(), "{q}");
    let all = stdout(&tech.run(&["queue", "--all"]));
    assert!(all.contains("delivered") && all.contains(outcome), "{all}");
    let pending = ok_json(tech.run(&["queue", "--json"]));
    assert_eq!(pending, Value::Array(vec![]), "nothing pending any more");

    // Its result is in the ticket; `watch` told of the delivery.
    let results = |tech: &Console| -> usize {
        let shown = ok_json(tech.run(&["ticket", "show", &t, "--json"]));
        shown["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "result" && e["author"] == "pc-late")
            .count()
    };
    assert_eq!(results(&tech), 1);
    let told = wait_until(SLOW, || {
        std::fs::read_to_string(&watch_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("queued_delivered") && l.contains(&format!("#{id}")))
    });
    assert!(
        told,
        "watch:\n{}",
        std::fs::read_to_string(&watch_log).unwrap_or_default()
    );

    // Reconnecting (twice) runs nothing again.
    for _ in 0..2 {
        stop(&mut pc);
        wait_online(&tech, &pc, &relay, false);
        pc.start();
        wait_online(&tech, &pc, &relay, true);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(results(&tech), 1, "delivered once");
    let entries = audit(&tech);
    let by = |action: &str| -> Vec<&Value> {
        entries.iter().filter(|e| e["action"] == action).collect()
    };
    let queueing = by("queue run disk /");
    assert_eq!(queueing.len(), 1, "{entries:#?}");
    assert_eq!(queueing[0]["who"], "tina");
    assert_eq!(queueing[0]["agent"], "pc-late");
    assert!(
        queueing[0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with(&format!("queued: #{id} until ")),
        "{}",
        queueing[0]
    );
    let delivery = by("deliver queued run disk /");
    assert_eq!(delivery.len(), 1, "once: {entries:#?}");
    assert_eq!(delivery[0]["who"], "tina");
    assert_eq!(delivery[0]["args"], format!("#{id} --ticket {ticket}"));
    assert_eq!(delivery[0]["outcome"], format!("delivered: {outcome}"));
    // The request itself is audited as queued.
    assert!(
        entries.iter().any(|e| e["action"] == "run check disk"
            && e["outcome"]
                .as_str()
                .unwrap()
                .starts_with(&format!("queued: #{id}"))),
        "{entries:#?}"
    );
}

#[test]
fn queued_actions_expire_or_are_cancelled_and_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let relay = relay(root);
    let mut pc = Agent::enrolled(root, "pc-away", &relay);
    let gone = Agent::enrolled(root, "pc-gone", &relay);
    let tech = console_as(&relay, root, "tom", "technician");
    let viewer = console_as(&relay, root, "vic", "viewer");

    // Two seconds to live: the sweep expires it.
    let short = queue_disk(&tech, "pc-away", "2s", &[]);
    // One cancelled; cancelled again, refused; a viewer may not.
    let cancelled = queue_disk(&tech, "pc-away", "1h", &[]);
    let out = viewer.run(&["queue", "cancel", &cancelled.to_string()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let listed = ok_json(viewer.run(&["queue", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let out = tech.run(&["queue", "cancel", &format!("#{cancelled}")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("cancelled #{cancelled}: run disk / for pc-away")),
        "{}",
        text(&out)
    );
    let out = tech.run(&["queue", "cancel", &cancelled.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("only a pending action can be cancelled"),
        "{}",
        text(&out)
    );
    let out = tech.run(&["queue", "cancel", "999999"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("no queued action #999999"),
        "{}",
        text(&out)
    );

    let expired = wait_until(SLOW, || queued(&tech, short)["state"] == "expired");
    assert!(expired, "{:?}\n{}", queue_all(&tech), relay.log());
    assert_eq!(queued(&tech, cancelled)["state"], "cancelled");

    // Unknown and revoked machines: refused, nothing queued.
    let out = tech.run(&["run", "pc-nobody", "disk", "/", "--queue-for", "1h"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains("pc-nobody"), "{}", text(&out));
    let out = relay.cmd(&["agent", "revoke", &gone.name]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tech.run(&["run", "pc-gone", "disk", "/", "--queue-for", "1h"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains("revoked"), "{}", text(&out));
    assert_eq!(queue_all(&tech).len(), 2, "{:?}", queue_all(&tech));

    // The machine connects: neither runs; an action for it now runs at once.
    pc.start();
    wait_online(&tech, &pc, &relay, true);
    std::thread::sleep(Duration::from_secs(1));
    let out = tech.run(&["run", "pc-away", "disk", "/", "--queue-for", "1h", "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    assert!(
        stdout(&out).contains("\"check\""),
        "ran now: {}",
        text(&out)
    );
    assert_eq!(queue_all(&tech).len(), 2, "not queued");
    for q in queue_all(&tech) {
        assert!(q["outcome"].is_null(), "never delivered: {q}");
    }
    let entries = audit(&tech);
    assert!(
        !entries
            .iter()
            .any(|e| e["action"].as_str().unwrap().starts_with("deliver queued")),
        "{entries:#?}"
    );
    let expiry: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "expire queued run disk /")
        .collect();
    assert_eq!(expiry.len(), 1, "{entries:#?}");
    assert_eq!(expiry[0]["who"], "relay");
    assert_eq!(expiry[0]["args"], format!("#{short} (queued by tom)"));
    assert!(
        entries.iter().any(|e| e["action"] == "cancel queued action"
            && e["args"] == format!("#{cancelled}")
            && e["who"] == "tom"
            && e["outcome"].as_str().unwrap().starts_with("cancelled")),
        "{entries:#?}"
    );
}
