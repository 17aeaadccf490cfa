//! Central monitors, end to end, with real processes on loopback (issue
//! 14, fifth part): `firstline monitors set --select SEL FILE.toml`
//! defines `[[monitor]]` tables on the relay for the agents a selector
//! picks; they receive them on connect and when they change, run them
//! beside their own, and report which are active — each agent's `[policy]`
//! still decides.
//!
//! One relay, agents tagged by their tokens:
//! * `pc-a` (floor2, allows the plugin `check_state`) runs the set: its
//!   failing monitor opens an alert ticket for pc-a;
//! * `pc-b` (floor2, default policy) refuses the plugin monitor: reported
//!   with the reason in `monitors show`, never run (no ticket);
//! * `pc-c` (no tag) gets nothing — until `agent tag pc-c +floor2`;
//! * the set changed (a `tcp` monitor of a closed loopback port added)
//!   reaches the connected agents without a reconnect (pc-b then runs the
//!   tcp one and gets its ticket);
//! * `pc-d` (floor2), started after, gets the current sets on connect;
//! * pc-a restarted with the relay down still runs them (kept on disk).
//!
//! Also: a bad file exits 2 naming the file and line, before any
//! connection; a technician may show but not set (exit 1); every change is
//! audited.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::plugin::StatePlugin;
use firstline_tests::*;
use serde_json::Value;
use std::path::Path;

use std::time::Duration;

const SLOW: Duration = Duration::from_secs(40);

/// Enroll `name` with `token`, its plugins in `plugins`, optionally the
/// policy that allows `check_state`, and start it.
fn agent(
    root: &Path,
    relay: &Relay,
    name: &str,
    token: &str,
    plugins: &Path,
    allow: bool,
) -> Agent {
    let mut agent = Agent::new(root, name);
    let out = agent.enroll(&relay.addr, token);
    assert!(out.status.success(), "enroll {name}: {}", text(&out));
    agent.configure(&format!(
        "plugins_dir = \"{}\"\nreconnect_max_ms = 500\ndefault_monitors = false\nfail_after = 1",
        plugins.display()
    ));
    if allow {
        agent.append(&StatePlugin::policy());
    }
    agent.start();
    agent
}

/// `monitors show --json`: the agent's row, if listed.
fn row(console: &Console, name: &str) -> Option<Value> {
    let show = ok_json(console.run(&["monitors", "show", "--json"]));
    show["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == name)
        .cloned()
}

/// The state of `monitor` in the agent's current report.
fn state(console: &Console, agent: &str, monitor: &str) -> Option<(String, String)> {
    let row = row(console, agent)?;
    if row["current"] != true {
        return None;
    }
    row["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["monitor"] == monitor)
        .map(|m| {
            (
                m["state"].as_str().unwrap().to_string(),
                m["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn wait_state(
    console: &Console,
    agent: &str,
    monitor: &str,
    want: &str,
    logs: &dyn Fn() -> String,
) -> String {
    let mut last = None;
    let ok = wait_until(SLOW, || {
        last = state(console, agent, monitor);
        last.as_ref().is_some_and(|(s, _)| s == want)
    });
    assert!(
        ok,
        "{agent}: {monitor} not {want}: {last:?}\n{:?}\n{}",
        row(console, agent),
        logs()
    );
    last.unwrap().1
}

/// The alert tickets of `agent`'s monitor `monitor`.
fn alert_tickets(console: &Console, agent: &str, monitor: &str) -> usize {
    let list = ok_json(console.run(&["tickets", "--agent", agent, "--json"]));
    list.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["monitor"] == monitor)
        .count()
}

fn closed_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_central_set_reaches_its_agents_changes_and_is_refused_by_one_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plugin = StatePlugin::new(root);
    plugin.set("central", 2); // crit: the plugin monitor fails
    let mut relay = Relay::init(root);
    relay.serve();
    let admin = console_as(&relay, root, "root", "admin");
    let tech = console_as(&relay, root, "tina", "technician");

    let floor = relay.token(&["--uses", "3", "--tag", "floor2"]);
    let plain = relay.token(&[]);
    let mut a = agent(root, &relay, "pc-a", &floor, &plugin.dir, true);
    let b = agent(root, &relay, "pc-b", &floor, &plugin.dir, false);
    let c = agent(root, &relay, "pc-c", &plain, &plugin.dir, true);
    let logs = || {
        format!(
            "pc-a:\n{}\npc-b:\n{}\nrelay:\n{}",
            a_log(root, "pc-a"),
            b.log(),
            relay.log()
        )
    };
    assert!(
        wait_until(SLOW, || ["pc-a", "pc-b", "pc-c"]
            .iter()
            .all(|n| admin.online(n))),
        "{}",
        logs()
    );

    // ---- a bad file: exit 2, file and line, nothing sent ----
    let bad = root.join("broken.toml");
    std::fs::write(&bad, "[[monitor]]\ncheck = \"plugin\"\nargs = [\"check_state\", \"x\"]\nevery = \"often\"\n\n[[monitor]]\ncheck = \"teleport\"\nevery = \"5s\"\n").unwrap();
    let out = admin.run(&[
        "monitors",
        "set",
        "--select",
        "tag=floor2",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(
        err.contains("broken.toml:4:") && err.contains("often"),
        "{err}"
    );
    assert!(
        err.contains("broken.toml:7:") && err.contains("unknown check `teleport`"),
        "{err}"
    );
    let out = admin.run(&[
        "monitors",
        "set",
        "--select",
        "health=crit",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // ---- the set: a plugin monitor that fails, for floor2 ----
    let file = root.join("floor.toml");
    let plugin_monitor = "[[monitor]]\nname = \"central-state\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"central\"]\nevery = \"1s\"\nfail_after = 1\n";
    std::fs::write(&file, plugin_monitor).unwrap();
    let out = tech.run(&[
        "monitors",
        "set",
        "--select",
        "tag=floor2",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a technician may not: {}",
        text(&out)
    );
    let set = ok_json(admin.run(&[
        "monitors",
        "set",
        "--select",
        "tag=floor2",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (set["name"].as_str(), set["select"].as_str()),
        (Some("floor"), Some("tag=floor2"))
    );

    // pc-a runs it: active, and its failure opens an alert ticket.
    wait_state(&tech, "pc-a", "central-state", "active", &logs);
    assert!(
        wait_until(SLOW, || alert_tickets(&tech, "pc-a", "central-state") == 1),
        "no ticket for pc-a's central monitor\n{}",
        logs()
    );
    // pc-b's policy refuses it: reported with the reason, never run.
    let why = wait_state(&tech, "pc-b", "central-state", "refused", &logs);
    assert!(
        why.contains("check_state") && why.contains("[policy] plugins"),
        "{why}"
    );
    // pc-c is not selected.
    assert!(row(&tech, "pc-c").is_none(), "{:?}", row(&tech, "pc-c"));
    let table = text(&tech.run(&["monitors", "show"]));
    assert!(
        table.contains("refused") && table.contains("floor") && table.contains("pc-b"),
        "{table}"
    );

    // ---- changed: a tcp monitor of a closed loopback port, added ----
    let port = closed_tcp_port();
    let tcp_id = format!("tcp 127.0.0.1:{port}");
    std::fs::write(
        &file,
        format!("{plugin_monitor}\n[[monitor]]\ncheck = \"tcp\"\nargs = [\"127.0.0.1:{port}\"]\nevery = \"1s\"\nfail_after = 1\n"),
    )
    .unwrap();
    let out = admin.run(&[
        "monitors",
        "set",
        "--select",
        "tag=floor2",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_state(&tech, "pc-b", &tcp_id, "active", &logs);
    wait_state(&tech, "pc-a", &tcp_id, "active", &logs);
    assert!(
        wait_until(SLOW, || alert_tickets(&tech, "pc-b", &tcp_id) == 1),
        "no ticket for pc-b's tcp monitor\n{}",
        logs()
    );
    assert_eq!(
        alert_tickets(&tech, "pc-b", "central-state"),
        0,
        "refused: never run"
    );
    // Without a reconnect: each agent connected once.
    for (name, log) in [("pc-a", a_log(root, "pc-a")), ("pc-b", b.log())] {
        assert_eq!(
            log.matches("connected").count(),
            1,
            "{name} reconnected:\n{log}"
        );
    }

    // ---- an agent tagged later gets the sets at once ----
    let out = admin.run(&["agent", "tag", "pc-c", "+floor2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_state(&tech, "pc-c", "central-state", "active", &logs);

    // ---- an agent that connects later gets the current sets ----
    let d = agent(root, &relay, "pc-d", &floor, &plugin.dir, false);
    wait_state(&tech, "pc-d", &tcp_id, "active", &|| d.log());
    wait_state(&tech, "pc-d", "central-state", "refused", &|| d.log());

    // ---- kept on disk: pc-a restarted while the relay is down ----
    let kept = root.join("agent-pc-a").join("central-monitors.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "private: {mode:o}");
    relay.kill();
    if let Some(mut p) = a.proc.take() {
        p.kill();
    }
    a.start();
    assert!(
        wait_until(SLOW, || a
            .log()
            .contains("central monitors from the last relay message")),
        "{}",
        a.log()
    );
    relay.serve();

    // ---- removed; every change audited ----
    assert!(wait_until(SLOW, || admin.online("pc-a")), "{}", relay.log());
    let out = admin.run(&["monitors", "remove", "floor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = admin.run(&["monitors", "remove", "floor"]);
    assert_eq!(out.status.code(), Some(2), "no such set: {}", text(&out));
    assert!(
        text(&out).contains("no monitor set `floor`"),
        "{}",
        text(&out)
    );
    let show = ok_json(tech.run(&["monitors", "show", "--json"]));
    assert_eq!(show["sets"], serde_json::json!([]));
    let audit = ok_json(admin.run(&["audit", "--json"]));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in ["monitors set", "monitors remove", "monitors show"] {
        assert!(actions.contains(&want), "{want} not audited: {actions:?}");
    }
    drop(c);
}

/// pc-a's log, whichever run of it.
fn a_log(root: &Path, name: &str) -> String {
    let dir = root.join(format!("agent-{name}"));
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("run-") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}
