//! The relay's lifecycle and the help desk's tickets, end to end, with real
//! processes on loopback (issue 12):
//!
//! * every lifecycle command — `token list|create|revoke`, `operator
//!   list|role`, `agent list|remove` — offline on the relay host and
//!   through the console as an admin, refused to a technician (exit 1), and
//!   each in `firstline audit --json` (the refusals as `forbidden`);
//! * a revoked token enrolls nothing; a role change holds on the very next
//!   request of a live connection; a removed agent is gone from `agents`,
//!   its tickets kept, its name free (or, revoked, still revoked);
//! * tickets: priorities, assignees checked against the operators, `#N`,
//!   validated filters (status, agent, assignee, priority, text, age) that
//!   return exactly the matching tickets, `--json` on every ticket command;
//! * an unreachable relay is reported within seconds, and an agent that was
//!   never enrolled exits 2 saying how to enroll.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_proto::{ErrorCode, Message};
use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(20);

/// The names in a JSON array of objects.
fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[key].as_str().unwrap().to_string())
        .collect()
}

/// The id of `fl1.ID.SECRET.FP`.
fn token_id(token: &str) -> String {
    token.split('.').nth(1).unwrap().to_string()
}

#[test]
fn lifecycle_offline_and_remote_refused_to_technicians_and_audited() {
    let s = Setup::new("technician");
    let admin = console_as(&s.relay, s.root(), "root", "admin");
    let tech = &s.console;

    // ---- tokens ----
    let offline = s.relay.token(&["--uses", "5"]);
    let list = ok_json(s.relay.cmd(&["token", "list", "--json"]));
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id(&offline))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(mine["state"], "active");
    assert_eq!(
        (mine["uses"].as_u64(), mine["uses_left"].as_u64()),
        (Some(5), Some(5))
    );
    assert!(
        !list
            .to_string()
            .contains(offline.split('.').nth(2).unwrap()),
        "never a secret"
    );
    // The Setup's single-use token is used up.
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "used"),
        "{list}"
    );

    let out = s.relay.cmd(&["token", "revoke", &token_id(&offline)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let refused = Agent::new(s.root(), "late").enroll(&s.relay.addr, &offline);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(stderr(&refused).contains("revoked"), "{}", text(&refused));
    let out = s.relay.cmd(&["token", "revoke", "0badc0de"]);
    assert_eq!(out.status.code(), Some(2), "unknown id: {}", text(&out));

    let created = ok_json(admin.run(&["token", "create", "--uses", "2", "--ttl", "1h", "--json"]));
    let remote = created["token"].as_str().unwrap().to_string();
    assert_eq!(
        created["relay"],
        s.relay.addr.as_str(),
        "the hint dials public_addr"
    );
    assert_eq!(created["info"]["uses_left"], 2);
    let revoked = ok_json(admin.run(&["token", "revoke", &token_id(&remote), "--json"]));
    assert_eq!(revoked["state"], "revoked");
    let refused = Agent::new(s.root(), "later").enroll(&s.relay.addr, &remote);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(stderr(&refused).contains("revoked"), "{}", text(&refused));
    let list = ok_json(admin.run(&["token", "list", "--json"]));
    for t in [&offline, &remote] {
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == token_id(t))
            .unwrap();
        assert_eq!(row["state"], "revoked", "{row}");
    }
    let out = admin.run(&["token", "revoke", "0badc0de"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("no enrollment token `0badc0de`"),
        "{}",
        text(&out)
    );

    // ---- operators ----
    let list = ok_json(s.relay.cmd(&["operator", "list", "--json"]));
    assert_eq!(names(&list, "name"), ["root", "tech"]);
    assert_eq!(list[1]["role"], "technician");
    let list = ok_json(admin.run(&["operator", "list", "--json"]));
    assert_eq!(names(&list, "name"), ["root", "tech"]);
    assert_eq!(
        list[0]["online"], true,
        "the admin asking is connected: {list}"
    );
    s.relay.operator("tina", "viewer");
    let out = s.relay.cmd(&["operator", "role", "tina", "technician"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let tina = ok_json(admin.run(&["operator", "role", "tina", "admin", "--json"]));
    assert_eq!(tina["role"], "admin");
    for cmd in [
        s.relay.cmd(&["operator", "role", "bobby", "admin"]),
        admin.run(&["operator", "role", "bobby", "admin"]),
    ] {
        assert_eq!(cmd.status.code(), Some(2), "{}", text(&cmd));
        assert!(
            stderr(&cmd).contains("no operator named `bobby`"),
            "{}",
            text(&cmd)
        );
        assert!(
            stderr(&cmd).contains("root, tech, tina"),
            "lists them: {}",
            text(&cmd)
        );
    }
    let out = admin.run(&["operator", "role", "tina", "boss"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("viewer, technician or admin"),
        "{}",
        text(&out)
    );

    // ---- agents ----
    let list = ok_json(s.relay.cmd(&["agent", "list", "--json"]));
    assert_eq!(names(&list, "name"), ["pc1"]);
    assert!(list[0]["cert_expires"].is_string(), "{list}");
    let list = ok_json(admin.run(&["agent", "list", "--json"]));
    assert_eq!(names(&list, "name"), ["pc1"]);
    assert_eq!(list[0]["online"], true);
    // Removing is its own test; here: a name that does not exist, both ways.
    for cmd in [
        s.relay.cmd(&["agent", "remove", "ghost"]),
        admin.run(&["agent", "remove", "ghost"]),
    ] {
        assert_eq!(cmd.status.code(), Some(2), "{}", text(&cmd));
        assert!(
            stderr(&cmd).contains("no agent named `ghost`"),
            "{}",
            text(&cmd)
        );
        assert!(
            stderr(&cmd).contains("agents: pc1"),
            "lists them: {}",
            text(&cmd)
        );
    }

    // ---- a technician may do none of it ----
    let asks: [&[&str]; 7] = [
        &["token", "list"],
        &["token", "create"],
        &["token", "revoke", "0badc0de"],
        &["operator", "list"],
        &["operator", "role", "tech", "admin"],
        &["agent", "list"],
        &["agent", "remove", "pc1"],
    ];
    for args in asks {
        let out = tech.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            stderr(&out).contains("needs role admin"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(s.console.online("pc1"), "nothing was removed");

    // ---- all of it audited ----
    let entries = ok_json(tech.run(&["audit", "--json"]));
    let entries = entries.as_array().unwrap();
    let by = |action: &str, who: &dyn Fn(&Value) -> bool, outcome: &str| {
        entries.iter().any(|e| {
            e["action"] == action && who(e) && e["outcome"].as_str().unwrap().starts_with(outcome)
        })
    };
    let local = |e: &Value| e["who"].as_str().unwrap().starts_with("admin (local user ");
    let root = |e: &Value| e["who"] == "root" && e["role"] == "admin";
    let technician = |e: &Value| e["who"] == "tech" && e["role"] == "technician";
    for action in [
        "token list",
        "token create",
        "token revoke",
        "operator list",
        "operator role",
        "agent list",
    ] {
        assert!(by(action, &local, "ok"), "{action} offline: {entries:#?}");
        assert!(by(action, &root, "ok"), "{action} by root: {entries:#?}");
        assert!(
            by(action, &technician, "forbidden"),
            "{action} refused to tech: {entries:#?}"
        );
    }
    assert!(by("agent remove", &local, "error: no agent named `ghost`"));
    assert!(by("agent remove", &root, "error UnknownAgent"));
    assert!(by("agent remove", &technician, "forbidden"));
    let revoked = entries
        .iter()
        .find(|e| e["action"] == "token revoke" && root(e))
        .unwrap();
    assert_eq!(revoked["args"], token_id(&remote).as_str());
    let role = entries
        .iter()
        .find(|e| e["action"] == "operator role" && local(e))
        .unwrap();
    assert_eq!(role["args"], "tina technician");
    assert_eq!(role["outcome"], "ok: viewer → technician");
    let out = s.relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_role_change_holds_on_the_next_request_of_a_live_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let bob = relay.operator("bob", "technician");
    let admin = console_as(&relay, tmp.path(), "root", "admin");
    let rt = raw::runtime();
    rt.block_on(async {
        let peer = raw::Peer::operator(&bob).await.unwrap();
        let code = |a: &raw::Answer| a.error().map(|(c, _)| c);
        let a = peer.ask(Message::ListTokens {}).await;
        assert_eq!(code(&a), Some(ErrorCode::Forbidden), "{a:?}");

        // Promoted offline: the same connection may list tokens at once.
        let out = relay.cmd(&["operator", "role", "bob", "admin"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let a = peer.ask(Message::ListTokens {}).await;
        assert!(
            matches!(a.messages.last(), Some(Message::Done {})),
            "admin now: {a:?}"
        );

        // Demoted through the relay: the next request is a viewer's.
        let out = admin.run(&["operator", "role", "bob", "viewer"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let a = peer
            .ask(Message::TicketNew {
                title: "t".into(),
                agent: None,
                body: None,
                priority: None,
            })
            .await;
        let (c, why) = a.error().unwrap();
        assert_eq!(c, ErrorCode::Forbidden);
        assert!(why.contains("bob has viewer"), "{why}");
        let a = peer.ask(Message::ListAgents {}).await;
        assert!(a.error().is_none(), "a viewer may list agents: {a:?}");
        peer.close().await;
    });
    // The console reads the same: the credential file still names
    // `technician`, the relay's database says viewer.
    let console = Console {
        home: tmp.path().join("home-bob"),
    };
    std::fs::create_dir_all(&console.home).unwrap();
    console.login(&bob);
    let out = console.run(&["ticket", "new", "t"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("bob has viewer"), "{}", text(&out));
    let audit = ok_json(admin.run(&["audit", "--json"]));
    let roles: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "bob")
        .map(|e| e["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        roles[..4],
        ["technician", "admin", "viewer", "viewer"],
        "each request audited with the role it was judged by: {roles:?}"
    );
    assert!(roles[4..].iter().all(|r| r == "viewer"), "{roles:?}");
    assert!(roles.len() >= 5, "the console's request too: {roles:?}");
}

#[test]
fn a_removed_agent_is_gone_its_tickets_kept_its_name_free_unless_revoked() {
    let mut s = Setup::new("technician");
    let admin = console_as(&s.relay, s.root(), "root", "admin");
    let t = ok_json(
        s.console
            .run(&["ticket", "new", "pc1 is slow", "--agent", "pc1", "--json"]),
    );
    let id = t["id"].as_u64().unwrap();

    let removed = ok_json(admin.run(&["agent", "remove", "pc1", "--json"]));
    assert_eq!(removed["agent"]["name"], "pc1");
    assert_eq!(removed["name_freed"], true);
    assert_eq!(removed["tickets"], 1);
    assert!(s.console.agents().is_empty(), "gone from `agents`");
    let list = ok_json(admin.run(&["agent", "list", "--json"]));
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    // Its connection is cut, and its certificate refused: the agent stops.
    let agent = s.agent.proc.as_mut().unwrap();
    assert!(
        wait_until(SLOW, || agent.exited().is_some()),
        "the removed agent still runs:\n{}",
        s.agent.log()
    );
    assert!(
        s.agent.log().contains("removed by the relay admin"),
        "{}",
        s.agent.log()
    );
    // Its tickets are kept, and still found by its name.
    let kept = ok_json(s.console.run(&["tickets", "--agent", "pc1", "--json"]));
    assert_eq!(kept[0]["id"].as_u64(), Some(id));
    let out = s.console.run(&["ticket", "show", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The machine, reinstalled, enrolls under the same name again.
    let mut again = Agent::new(&s.root().join("reinstalled"), "pc1");
    let out = again.enroll(&s.relay.addr, &s.relay.token(&[]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    again.start();
    assert!(
        wait_until(SLOW, || s.console.online("pc1")),
        "{}",
        again.log()
    );

    // A revoked agent, removed offline: hidden, and its name stays revoked.
    let out = s.relay.cmd(&["agent", "revoke", "pc1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = s.relay.cmd(&["agent", "remove", "pc1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stays revoked"),
        "{}",
        text(&out)
    );
    assert!(s.console.agents().is_empty());
    let out = Agent::new(&s.root().join("third"), "pc1").enroll(&s.relay.addr, &s.relay.token(&[]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("was revoked"), "{}", text(&out));
    let kept = ok_json(s.console.run(&["tickets", "--agent", "pc1", "--json"]));
    assert_eq!(kept.as_array().unwrap().len(), 1);

    let audit = ok_json(admin.run(&["audit", "--agent", "pc1", "--json"]));
    let removals: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent remove")
        .collect();
    assert_eq!(removals.len(), 2, "{audit:#}");
    assert_eq!(removals[0]["who"], "root");
    assert_eq!(
        removals[0]["outcome"],
        "ok: removed; the name may enroll again; 1 tickets kept"
    );
    assert!(removals[1]["who"]
        .as_str()
        .unwrap()
        .starts_with("admin (local user "));
    assert_eq!(
        removals[1]["outcome"],
        "ok: removed; the name stays revoked; 1 tickets kept"
    );
}

#[test]
fn tickets_a_help_desk_can_run_on() {
    let s = Setup::new("technician");
    let c = &s.console;
    let new = |args: &[&str]| -> u64 {
        let mut all = vec!["ticket", "new"];
        all.extend_from_slice(args);
        all.push("--json");
        ok_json(c.run(&all))["id"].as_u64().unwrap()
    };
    let printer = new(&[
        "Printer jammed on floor 2",
        "--agent",
        "pc1",
        "--priority",
        "high",
    ]);
    let login = new(&["slow login"]);
    let vpn = new(&["VPN drops", "--priority", "urgent"]);
    let shown = ok_json(c.run(&["ticket", "show", &format!("#{printer}"), "--json"]));
    assert_eq!(shown["ticket"]["priority"], "high");
    assert_eq!(
        ok_json(c.run(&["ticket", "show", &login.to_string(), "--json"]))["ticket"]["priority"],
        "normal"
    );

    // `#N` wherever N is, and --json on every ticket command.
    let n = |id: u64| format!("#{id}");
    let t = ok_json(c.run(&[
        "ticket",
        "comment",
        &n(vpn),
        "the user's Printer works",
        "--json",
    ]));
    assert_eq!(t["id"].as_u64(), Some(vpn));
    let t = ok_json(c.run(&["ticket", "assign", &n(printer), "tech", "--json"]));
    assert_eq!(t["assignee"], "tech");
    let t = ok_json(c.run(&["ticket", "priority", &n(login), "urgent", "--json"]));
    assert_eq!(t["priority"], "urgent");
    let t = ok_json(c.run(&["ticket", "start", &n(login), "--json"]));
    assert_eq!(t["status"], "in_progress");
    let t = ok_json(c.run(&["ticket", "resolve", &n(vpn), "--comment", "fixed", "--json"]));
    assert_eq!(t["status"], "resolved");
    let t = ok_json(c.run(&["ticket", "close", &n(vpn), "--json"]));
    assert_eq!(t["status"], "closed");
    let out = c.run(&["ticket", "show", &n(printer)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.starts_with(&format!("#{printer} Printer jammed on floor 2")),
        "{shown}"
    );
    assert!(shown.contains("priority high"), "{shown}");

    // The timeline: readable text, typed JSON.
    let out = c.run(&["ticket", "show", &login.to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("priority    tech         normal → urgent"),
        "{shown}"
    );
    let detail = ok_json(c.run(&["ticket", "show", &login.to_string(), "--json"]));
    let kinds: Vec<&str> = detail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "priority", "status"]);
    assert_eq!(detail["entries"][1]["body"], "normal → urgent");
    assert_eq!(detail["entries"][1]["author"], "tech");

    // Unknown names and values: usage errors (exit 2) listing the valid ones.
    let refused = |args: &[&str], listed: &str| {
        let out = c.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains(listed), "{args:?}: {}", text(&out));
    };
    refused(
        &["ticket", "assign", "1", "bobby"],
        "no operator named `bobby` at this relay (operators: tech)",
    );
    refused(
        &["tickets", "--status", "opn"],
        "open, in_progress, resolved, closed",
    );
    refused(
        &["tickets", "--priority", "hi"],
        "low, normal, high, urgent",
    );
    refused(
        &["ticket", "priority", "1", "soon"],
        "low, normal, high, urgent",
    );
    refused(
        &["ticket", "new", "x", "--priority", "p1"],
        "low, normal, high, urgent",
    );
    refused(&["tickets", "--assignee", "bobby"], "operators: tech");
    refused(&["tickets", "--agent", "ghost"], "agents: pc1");
    refused(&["tickets", "--since", "soon"], "30m, 12h, 7d");
    refused(&["ticket", "show", "#x"], "write 12 or #12");
    let still = ok_json(c.run(&["ticket", "show", "1", "--json"]));
    assert_eq!(still["ticket"]["assignee"], "tech", "nothing changed");
    // A change the ticket's state does not allow is a refused action (1).
    let out = c.run(&["ticket", "resolve", &n(vpn)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("is closed"), "{}", text(&out));

    // Ticket `printer` was opened ten days ago.
    let db = rusqlite::Connection::open(s.relay.dir.join("relay.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE tickets SET created_at = created_at - 864000 WHERE id = ?1",
        [printer as i64],
    )
    .unwrap();
    drop(db);

    // Each filter returns exactly the matching tickets.
    let ids = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["tickets"];
        all.extend_from_slice(args);
        all.push("--json");
        let list = ok_json(c.run(&all));
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), [printer, login, vpn]);
    assert_eq!(ids(&["--status", "open"]), [printer]);
    assert_eq!(ids(&["--status", "in_progress"]), [login]);
    assert_eq!(ids(&["--agent", "pc1"]), [printer]);
    assert_eq!(ids(&["--assignee", "tech"]), [printer]);
    assert_eq!(ids(&["--priority", "urgent"]), [login, vpn]);
    assert_eq!(ids(&["--priority", "low"]), Vec::<u64>::new());
    assert_eq!(
        ids(&["--search", "PRINTER"]),
        [printer, vpn],
        "title, and a comment"
    );
    assert_eq!(
        ids(&["--search", "jammed", "--priority", "urgent"]),
        Vec::<u64>::new()
    );
    assert_eq!(ids(&["--since", "7d"]), [login, vpn]);
    assert_eq!(ids(&["--older-than", "1w"]), [printer]);
    assert_eq!(ids(&["--older-than", "11d"]), Vec::<u64>::new());
    assert_eq!(
        ids(&[
            "--status",
            "open",
            "--assignee",
            "tech",
            "--search",
            "floor",
            "--older-than",
            "1d"
        ]),
        [printer]
    );
    // The text listing shows `#N`, as `ticket show` takes it.
    let out = c.run(&["tickets", "--priority", "high"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(&format!("#{printer} ")), "{listed}");
}

#[test]
fn an_unreachable_relay_is_told_in_seconds_and_an_unenrolled_agent_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    // A token of a relay that is not running (the address has no listener).
    let relay = Relay::init(tmp.path());
    let token = relay.token(&[]);
    let agent = Agent::new(tmp.path(), "pc1");
    let started = Instant::now();
    let out = agent.enroll(&relay.addr, &token);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("did not answer within 3 s"),
        "{}",
        text(&out)
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");

    // `connect_timeout_ms` in the agent.toml being written sets the wait.
    std::fs::write(&agent.config, "connect_timeout_ms = 500\n").unwrap();
    let started = Instant::now();
    let out = agent.enroll(&relay.addr, &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("within 0.5 s"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Never enrolled: no relay or name in agent.toml (a packaged one).
    let run = |config: &Path| {
        firstline_tests::run(
            Command::new(bin("firstline-agent"))
                .args(["run", "--config"])
                .arg(config)
                .env("RUST_LOG", "warn"),
        )
    };
    std::fs::write(&agent.config, "state_dir = \".\"\n").unwrap();
    let out = run(&agent.config);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("not enrolled"), "{}", text(&out));
    assert!(
        stderr(&out).contains("firstline-agent enroll"),
        "{}",
        text(&out)
    );
    // A relay and a name but no identity: exit 2 at once, no retrying.
    agent.configure(&format!("relay = \"{}\"\nname = \"pc1\"", relay.addr));
    let started = Instant::now();
    let out = run(&agent.config);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("firstline-agent enroll --relay {}", relay.addr)),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
