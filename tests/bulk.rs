//! Bulk actions, paced, end to end with real processes on loopback (issue
//! 14, third part): `firstline run|fix --select SEL …` over several real
//! agents.
//!
//! * a run over four machines with one stopped: three ok, one `offline`,
//!   exit 1, the summary table naming each; `--json` streams one line per
//!   machine; `--ticket N` records every machine's result; the audit log
//!   has the request's line with its counts and one entry per machine;
//! * `--queue-for 1h`: the stopped machine's action is `queued` (exit 0,
//!   as for one machine), and reaches the ticket when it is back;
//! * pacing, measured on the machines themselves: a plugin that naps logs
//!   when it starts and ends, so `--max-in-flight 2` is seen to keep two,
//!   and never three, running, and `--max-in-flight 1` one at a time, all
//!   machines reached;
//! * roles and policies per machine: one agent whose `[policy]` refuses
//!   the fix is `refused`, the others ok; a viewer asking a technician's
//!   fix with `--select` is refused once and nothing is sent to any
//!   machine (no per-machine audit entry, no result).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::plugin::StatePlugin;
use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(30);

/// A plugin `check_nap SECONDS` that logs `start NANOS` and `end NANOS`
/// into `naps` beside it: what was running when, seen from the machines.
fn nap_plugin(plugins: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    // Plugins write only where `plugin_write_paths` lets them: the state
    // folder beside the plugins (`StatePlugin`).
    let log = plugins
        .parent()
        .expect("plugins folder has a parent")
        .join("plugin-state")
        .join("naps");
    let script = plugins.join("check_nap");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"start $(date +%s%N)\" >> {0}\nsleep $1\necho \"end $(date +%s%N)\" >> {0}\necho \"NAP OK: slept $1 s\"\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

/// The most naps running at once, from the log (and how many ran).
fn overlap(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .filter_map(|l| {
            let (what, at) = l.split_once(' ')?;
            let at: u128 = at.trim().parse().ok()?;
            Some((at, if what == "start" { 1 } else { -1 }))
        })
        .collect();
    // At the same instant an end comes before a start.
    events.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in &events {
        now += d;
        peak = peak.max(now);
    }
    let runs = events.iter().filter(|(_, d)| *d == 1).count();
    (peak as usize, runs)
}

/// Four agents tagged floor2 whose policy lets them run the test plugins;
/// started, and shown online.
struct Fleet {
    tmp: tempfile::TempDir,
    relay: Relay,
    agents: Vec<Agent>,
    plugins: std::path::PathBuf,
}

impl Fleet {
    fn new(names: &[&str], policy: impl Fn(&str) -> String) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let plugin = StatePlugin::new(root);
        plugin.set("good", 0);
        let mut relay = Relay::init(root);
        relay.serve();
        let token = relay.token(&["--uses", &names.len().to_string(), "--tag", "floor2"]);
        let mut agents = Vec::new();
        for name in names {
            let mut agent = Agent::new(root, name);
            let out = agent.enroll(&relay.addr, &token);
            assert!(out.status.success(), "enroll {name}: {}", text(&out));
            agent.configure(&format!(
                "plugins_dir = \"{}\"\nreconnect_max_ms = 1000",
                plugin.dir.display()
            ));
            agent.append(&policy(name));
            agent.start();
            agents.push(agent);
        }
        let fleet = Fleet {
            plugins: plugin.dir.clone(),
            tmp,
            relay,
            agents,
        };
        let watcher = console_as(&fleet.relay, fleet.root(), "watcher", "viewer");
        let ok = wait_until(SLOW, || names.iter().all(|n| watcher.online(n)));
        assert!(ok, "not all online:\n{}", fleet.logs());
        fleet
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn logs(&self) -> String {
        let mut s = format!("relay:\n{}", self.relay.log());
        for a in &self.agents {
            s.push_str(&format!("\n--- {}:\n{}", a.name, a.log()));
        }
        s
    }

    /// Stop an agent (SIGTERM: it says goodbye) and wait until it shows
    /// offline.
    fn stop(&mut self, name: &str, console: &Console) {
        let agent = self.agents.iter_mut().find(|a| a.name == name).unwrap();
        let pid = agent.proc.as_ref().unwrap().child.id().to_string();
        let out = run(Command::new("kill").args(["-TERM", &pid]));
        assert!(out.status.success(), "{}", text(&out));
        let ok = wait_until(SLOW, || !console.online(name));
        assert!(ok, "{name} still online");
        agent.proc.take();
    }
}

/// The JSON lines of `--json`, parsed.
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `name → outcome` of the items.
fn outcomes(items: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["agent"].as_str().unwrap().to_string(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The audit log, as JSON entries.
fn audit(console: &Console) -> Vec<Value> {
    let v = ok_json(console.run(&["audit", "--json"]));
    v.as_array().unwrap().clone()
}

#[test]
fn bulk_run_reports_every_machine_offline_ones_too_into_the_ticket_and_audit() {
    let mut fleet = Fleet::new(&["pc-a", "pc-b", "pc-c", "pc-d"], |_| {
        StatePlugin::policy_with(&["check_nap"])
    });
    let tech = console_as(&fleet.relay, fleet.root(), "tina", "technician");
    fleet.stop("pc-d", &tech);

    // A ticket to record into.
    let created = ok_json(tech.run(&["ticket", "new", "floor 2 check", "--json"]));
    let id = created["id"].as_u64().unwrap().to_string();

    // ---- the table: three ok, one offline; exit 1 ----
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "plugin",
        "check_state",
        "good",
        "--ticket",
        &id,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = stdout(&out);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("OUTCOME") && lines[0].contains("MACHINES"),
        "{shown}"
    );
    let row = |outcome: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{outcome} ")))
            .unwrap_or_else(|| panic!("no {outcome} row: {shown}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("ok"), ["ok", "3", "pc-a", "pc-b", "pc-c"], "{shown}");
    assert_eq!(row("offline")[..3], ["offline", "1", "pc-d"], "{shown}");
    assert!(
        shown.contains("offline  pc-d: offline (last seen"),
        "what pc-d said: {shown}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "4 selected: 3 ok, 1 offline",
        "{shown}"
    );
    assert!(
        !stderr(&out).contains('\r'),
        "no progress line when stderr is no terminal: {}",
        text(&out)
    );

    // ---- every machine's result in the ticket, by its machine ----
    let ticket = ok_json(tech.run(&["ticket", "show", &id, "--json"]));
    let mut authors: Vec<&str> = ticket["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "result")
        .map(|e| e["author"].as_str().unwrap())
        .collect();
    authors.sort_unstable();
    assert_eq!(authors, ["pc-a", "pc-b", "pc-c"], "{ticket:#}");

    // ---- --json: one line per machine, the summary on stderr ----
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "plugin",
        "check_state",
        "good",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let items = json_lines(&out);
    assert_eq!(
        outcomes(&items),
        pairs(&[
            ("pc-a", "ok"),
            ("pc-b", "ok"),
            ("pc-c", "ok"),
            ("pc-d", "offline")
        ]),
        "{}",
        text(&out)
    );
    let a = items.iter().find(|i| i["agent"] == "pc-a").unwrap();
    assert_eq!(a["result"]["status"], "ok", "{a}");
    assert!(a["summary"].as_str().unwrap().contains("STATE 0"), "{a}");
    assert!(
        stderr(&out).contains("4 selected: 3 ok, 1 offline"),
        "{}",
        text(&out)
    );

    // ---- only those online: every one ok, exit 0 ----
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2,online=true",
        "plugin",
        "check_state",
        "good",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).ends_with("3 selected: 3 ok\n"),
        "{}",
        text(&out)
    );
    // Nothing selected: exit 1, said on stderr.
    let out = tech.run(&[
        "run",
        "--select",
        "tag=nowhere",
        "plugin",
        "check_state",
        "good",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("no machine matches `tag=nowhere`"),
        "{}",
        text(&out)
    );
    // A ticket that does not exist: refused before anything runs (exit 2).
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "plugin",
        "check_state",
        "good",
        "--ticket",
        "999",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("no ticket #999"), "{}", text(&out));

    // ---- the audit log: the request with its counts, each machine ----
    let entries = audit(&tech);
    let with_ticket = format!("--select tag=floor2 --ticket {id}");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "bulk run plugin check_state good"
                && e["agent"].is_null()
                && e["args"] == with_ticket.as_str()
                && e["outcome"] == "ok: 4 selected: 3 ok, 1 offline"),
        "{entries:#?}"
    );
    for (agent, outcome) in [("pc-a", "ok: "), ("pc-c", "ok: "), ("pc-d", "offline: ")] {
        assert!(
            entries.iter().any(|e| e["agent"] == agent
                && e["action"] == "bulk run plugin check_state good"
                && e["args"] == with_ticket.as_str()
                && e["outcome"].as_str().unwrap().starts_with(outcome)),
            "{agent}: {entries:#?}"
        );
    }

    // ---- --queue-for: pc-d's waits for it, and runs when it is back ----
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "plugin",
        "check_state",
        "good",
        "--ticket",
        &id,
        "--queue-for",
        "1h",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "queued as asked: {}",
        text(&out)
    );
    let items = json_lines(&out);
    let d = items.iter().find(|i| i["agent"] == "pc-d").unwrap();
    assert_eq!(d["outcome"], "queued", "{d}");
    assert!(d["queued"].as_u64().is_some(), "{d}");
    assert!(
        stderr(&out).contains("4 selected: 3 ok, 1 queued"),
        "{}",
        text(&out)
    );
    fleet
        .agents
        .iter_mut()
        .find(|a| a.name == "pc-d")
        .unwrap()
        .start();
    let ok = wait_until(SLOW, || {
        let ticket = ok_json(tech.run(&["ticket", "show", &id, "--json"]));
        ticket["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "result" && e["author"] == "pc-d")
    });
    assert!(
        ok,
        "pc-d's queued result never reached the ticket:\n{}",
        fleet.logs()
    );

    // ---- paced: seen from the machines ----
    let naps = nap_plugin(&fleet.plugins);
    let started = Instant::now();
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "--max-in-flight",
        "2",
        "plugin",
        "check_nap",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        fleet.logs()
    );
    let (peak, runs) = overlap(&naps);
    assert_eq!((peak, runs), (2, 4), "two at a time, four machines");
    assert!(started.elapsed() >= Duration::from_secs(2), "two rounds");
    std::fs::remove_file(&naps).unwrap();
    let out = tech.run(&[
        "run",
        "--select",
        "tag=floor2",
        "plugin",
        "check_nap",
        "0.3",
        "--max-in-flight",
        "1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_lines(&out).len(), 4, "{}", text(&out));
    assert_eq!(overlap(&naps), (1, 4), "one at a time, every machine");
    let out = fleet.relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn roles_and_each_agents_policy_apply_per_machine() {
    // pc-c allows only flush-dns: clean-temp is refused there.
    let fleet = Fleet::new(&["pc-a", "pc-b", "pc-c"], |name| {
        if name == "pc-c" {
            "[policy]\nfixes = [\"flush-dns\"]\n".into()
        } else {
            String::new()
        }
    });
    let junk = fleet.root().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    let junk = junk.to_str().unwrap().to_string();
    let tech = console_as(&fleet.relay, fleet.root(), "tina", "technician");
    let viewer = console_as(&fleet.relay, fleet.root(), "vic", "viewer");

    // ---- a viewer may not fix: refused once, nothing sent ----
    let out = viewer.run(&[
        "fix",
        "--select",
        "tag=floor2",
        "clean-temp",
        &junk,
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("needs role technician"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    let entries = audit(&tech);
    let fixes: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap()
                .starts_with("bulk fix clean-temp")
        })
        .collect();
    assert_eq!(fixes.len(), 1, "one entry, no machine's: {fixes:#?}");
    assert_eq!(fixes[0]["who"], "vic");
    assert!(
        fixes[0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("forbidden"),
        "{fixes:#?}"
    );
    for a in &fleet.agents {
        assert!(!a.log().contains("clean-temp"), "{}: {}", a.name, a.log());
    }

    // ---- a technician: ok where allowed, refused by pc-c's policy ----
    let out = tech.run(&[
        "fix",
        "--select",
        "tag=floor2",
        "clean-temp",
        &junk,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let items = json_lines(&out);
    assert_eq!(
        outcomes(&items),
        pairs(&[("pc-a", "ok"), ("pc-b", "ok"), ("pc-c", "refused")]),
        "{}\n{}",
        text(&out),
        fleet.logs()
    );
    let c = items.iter().find(|i| i["agent"] == "pc-c").unwrap();
    assert!(
        c["summary"].as_str().unwrap().contains("[policy] fixes"),
        "says why: {c}"
    );
    // The table names the refused machine and says why.
    let out = tech.run(&[
        "fix",
        "--select",
        "tag=floor2",
        "clean-temp",
        &junk,
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = stdout(&out);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("refused ") && l.contains("pc-c")),
        "{shown}"
    );
    assert!(
        shown.contains("refused  pc-c: agent `pc-c`:") && shown.contains("[policy] fixes"),
        "{shown}"
    );
    assert!(shown.ends_with("3 selected: 2 ok, 1 refused\n"), "{shown}");
    let entries = audit(&tech);
    assert!(
        entries.iter().any(|e| e["agent"] == "pc-c"
            && e["who"] == "tina"
            && e["outcome"].as_str().unwrap().starts_with("refused: ")),
        "{entries:#?}"
    );
}
