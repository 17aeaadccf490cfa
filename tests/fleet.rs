//! Tags, facts and health at a glance, end to end, with real processes on
//! loopback (issue 14, first two parts):
//!
//! * tags from enrollment tokens — `firstline-relay token create --tag`
//!   offline, `firstline token create --tag` through the relay — are on the
//!   agents enrolled with them; `firstline agent tag NAME +T -T` changes
//!   them (an admin's; refused to a technician with exit 1; audited
//!   either way);
//! * each agent's facts: its kernel (`uname -r`), addresses, uptime;
//! * `firstline agents --select` with each key — name and OS globs, tag,
//!   `online=false` for a stopped agent, `health=crit` for an agent whose
//!   monitor fails (a real plugin, [`StatePlugin`]) — lists exactly the
//!   machines it should, with the summary line counting them; a bad
//!   selector exits 2 naming the keys or the values.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::plugin::StatePlugin;
use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(30);

/// `agents --json [--select SEL]`: the agents, by name.
fn listed(console: &Console, select: Option<&str>) -> Vec<Value> {
    let mut args = vec!["agents", "--json"];
    if let Some(sel) = select {
        args.extend(["--select", sel]);
    }
    let list = ok_json(console.run(&args));
    list.as_array().unwrap().clone()
}

/// The names `agents --select SEL` lists.
fn selected(console: &Console, select: &str) -> Vec<String> {
    listed(console, Some(select))
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

fn agent_of<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list:?}"))
}

fn tags(a: &Value) -> Vec<&str> {
    a["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect()
}

/// Enroll `name` with `token` and start it.
fn agent_with(root: &Path, relay: &Relay, name: &str, token: &str) -> Agent {
    let mut agent = Agent::new(root, name);
    let out = agent.enroll(&relay.addr, token);
    assert!(out.status.success(), "enroll {name}: {}", text(&out));
    // No built-in monitors: a machine without `[[monitor]]` stays of
    // unknown health whatever the timing (their first results would make
    // it `ok` some seconds after it starts).
    agent.configure("reconnect_max_ms = 1000\ndefault_monitors = false");
    agent.start();
    agent
}

fn wait_online(console: &Console, names: &[&str], agents: &[&Agent], relay: &Relay) {
    let ok = wait_until(SLOW, || {
        let list = listed(console, None);
        names
            .iter()
            .all(|n| list.iter().any(|a| a["name"] == *n && a["online"] == true))
    });
    let logs: Vec<String> = agents.iter().map(|a| a.log()).collect();
    assert!(
        ok,
        "not all online: {:?}\nagents:\n{}\nrelay:\n{}",
        listed(console, None),
        logs.join("\n---\n"),
        relay.log()
    );
}

#[test]
fn tags_from_tokens_and_admins_and_facts_of_each_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut relay = Relay::init(root);
    relay.serve();
    let admin = console_as(&relay, root, "root", "admin");
    let tech = console_as(&relay, root, "tina", "technician");

    // ---- tags from tokens: offline, and through the relay ----
    let offline = relay.token(&["--uses", "2", "--tag", "floor2", "--tag", "printers"]);
    let out = admin.run(&["token", "create", "--tag", "lab", "--json"]);
    let created = ok_json(out);
    let remote = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["info"]["tags"], serde_json::json!(["lab"]));
    let bad = admin.run(&["token", "create", "--tag", "no good"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(stderr(&bad).contains("a tag is"), "{}", text(&bad));
    let bad = relay.cmd(&["token", "create", "--tag", "-x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let tokens = ok_json(admin.run(&["token", "list", "--json"]));
    let mut token_tags: Vec<Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tags"].clone())
        .collect();
    token_tags.sort_by_key(|t| t.to_string());
    assert_eq!(
        token_tags,
        [
            serde_json::json!(["floor2", "printers"]),
            serde_json::json!(["lab"])
        ]
    );

    let a = agent_with(root, &relay, "pc-a", &offline);
    let b = agent_with(root, &relay, "pc-b", &offline);
    let c = agent_with(root, &relay, "pc-c", &remote);
    wait_online(&tech, &["pc-a", "pc-b", "pc-c"], &[&a, &b, &c], &relay);
    let list = listed(&tech, None);
    assert_eq!(tags(agent_of(&list, "pc-a")), ["floor2", "printers"]);
    assert_eq!(tags(agent_of(&list, "pc-b")), ["floor2", "printers"]);
    assert_eq!(tags(agent_of(&list, "pc-c")), ["lab"]);

    // ---- facts: kernel, addresses, uptime ----
    let uname = Command::new("uname").arg("-r").output().unwrap();
    let kernel = stdout(&uname).trim().to_string();
    let ok = wait_until(SLOW, || {
        listed(&tech, None)
            .iter()
            .all(|a| a["facts"]["kernel"] == kernel.as_str())
    });
    assert!(ok, "no kernel facts: {:?}", listed(&tech, None));
    for a in listed(&tech, None) {
        let facts = &a["facts"];
        let addresses = facts["addresses"].as_array().unwrap();
        assert!(!addresses.is_empty(), "an address: {a}");
        for addr in addresses {
            let (ip, len) = addr.as_str().unwrap().split_once('/').unwrap();
            assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{a}");
            assert!(len.parse::<u8>().is_ok(), "{a}");
        }
        assert!(facts["uptime_secs"].as_u64().unwrap() > 0, "{a}");
        assert!(facts["reported_at"].is_string(), "{a}");
    }

    // ---- an admin tags; a technician may not ----
    let out = admin.run(&["agent", "tag", "pc-c", "+floor2", "-lab", "+desk"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "agent pc-c is tagged desk,floor2");
    let out = admin.run(&["agent", "tag", "pc-a", "-printers", "--json"]);
    let tagged = ok_json(out);
    assert_eq!(
        tagged,
        serde_json::json!({"agent": "pc-a", "tags": ["floor2"]})
    );
    let list = listed(&tech, None);
    assert_eq!(tags(agent_of(&list, "pc-a")), ["floor2"]);
    assert_eq!(tags(agent_of(&list, "pc-c")), ["desk", "floor2"]);
    assert_eq!(selected(&tech, "tag=floor2"), ["pc-a", "pc-b", "pc-c"]);
    assert_eq!(selected(&tech, "tag=printers"), ["pc-b"]);
    assert!(selected(&tech, "tag=lab").is_empty());

    let refused = tech.run(&["agent", "tag", "pc-b", "+mine"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        stderr(&refused).contains("needs role admin"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        tags(agent_of(&listed(&tech, None), "pc-b")),
        ["floor2", "printers"]
    );
    // Mistakes: usage errors, exit 2.
    for (args, says) in [
        (vec!["agent", "tag", "pc-b", "floor3"], "write +floor3"),
        (vec!["agent", "tag", "pc-b", "+no*good"], "a tag is"),
        (
            vec!["agent", "tag", "pc-b", "+x", "-x"],
            "both added and removed",
        ),
        (vec!["agent", "tag", "pc-zz", "+x"], "pc-a, pc-b, pc-c"),
    ] {
        let out = admin.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", text(&out));
    }

    // ---- all of it audited ----
    let audit = ok_json(tech.run(&["audit", "--json"]));
    let entries = audit.as_array().unwrap();
    let has = |who: &str, agent: &str, args: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["action"] == "agent tag"
                && e["who"] == who
                && e["agent"] == agent
                && e["args"] == args
                && e["outcome"].as_str().unwrap().starts_with(outcome)
        })
    };
    assert!(
        has(
            "root",
            "pc-c",
            "pc-c +floor2 +desk -lab",
            "ok: tags desk,floor2"
        ),
        "{audit:#}"
    );
    assert!(
        has("root", "pc-a", "pc-a -printers", "ok: tags floor2"),
        "{audit:#}"
    );
    assert!(has("tina", "pc-b", "pc-b +mine", "forbidden"), "{audit:#}");
    assert!(entries.iter().any(
        |e| e["action"] == "token create" && e["args"].as_str().unwrap().contains("--tag lab")
    ));
    let out = relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn selectors_pick_exactly_the_machines_and_the_summary_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plugin = StatePlugin::new(root);
    plugin.set("a", 2); // crit
    plugin.set("b", 0); // ok
    let mut relay = Relay::init(root);
    relay.serve();
    let tech = console_as(&relay, root, "tina", "technician");
    let floor2 = relay.token(&["--uses", "2", "--tag", "floor2"]);
    let monitored = |name: &str, state: &str| {
        let mut agent = Agent::new(root, name);
        let out = agent.enroll(&relay.addr, &floor2);
        assert!(out.status.success(), "enroll {name}: {}", text(&out));
        agent.configure(&format!(
            "plugins_dir = \"{}\"\nreconnect_max_ms = 1000",
            plugin.dir.display()
        ));
        agent.append(&format!(
            "[[monitor]]\nname = \"state\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"{state}\"]\nevery = \"1s\"\n"
        ));
        agent.append(&StatePlugin::policy());
        agent.start();
        agent
    };
    let a = monitored("pc-a", "a");
    let b = monitored("pc-b", "b");
    let c = agent_with(root, &relay, "pc-c", &relay.token(&["--tag", "lab"]));
    let mut d = agent_with(root, &relay, "ws-d", &relay.token(&[]));
    wait_online(
        &tech,
        &["pc-a", "pc-b", "pc-c", "ws-d"],
        &[&a, &b, &c, &d],
        &relay,
    );

    // ws-d stops (SIGTERM: it says goodbye) and shows offline.
    let pid = d.proc.as_ref().unwrap().child.id().to_string();
    let out = run(Command::new("kill").args(["-TERM", &pid]));
    assert!(out.status.success(), "{}", text(&out));
    let ok = wait_until(SLOW, || selected(&tech, "online=false") == ["ws-d"]);
    assert!(
        ok,
        "ws-d not offline: {:?}\n{}",
        listed(&tech, None),
        d.log()
    );
    d.proc.take();

    // pc-a's monitor fails: crit, and an incident once it failed enough.
    let ok = wait_until(SLOW, || {
        let list = listed(&tech, None);
        agent_of(&list, "pc-a")["health"] == "crit"
            && agent_of(&list, "pc-a")["open_incidents"] == 1
            && agent_of(&list, "pc-b")["health"] == "ok"
    });
    assert!(
        ok,
        "no health yet: {:?}\npc-a:\n{}\nrelay:\n{}",
        listed(&tech, None),
        a.log(),
        relay.log()
    );

    // ---- each key ----
    let all = ["pc-a", "pc-b", "pc-c", "ws-d"];
    assert_eq!(selected(&tech, "name=pc-*"), ["pc-a", "pc-b", "pc-c"]);
    assert_eq!(selected(&tech, "name=??-d"), ["ws-d"]);
    assert_eq!(
        selected(&tech, "name=PC-*"),
        Vec::<String>::new(),
        "names keep their case"
    );
    assert_eq!(selected(&tech, "tag=floor2"), ["pc-a", "pc-b"]);
    assert_eq!(selected(&tech, "tag=lab"), ["pc-c"]);
    // The OS line of this machine (`Debian GNU/Linux 12`): its first word,
    // in capitals, then `*`.
    let os = listed(&tech, None)[0]["os"].as_str().unwrap().to_string();
    let first = os.split_whitespace().next().unwrap().to_uppercase();
    assert_eq!(
        selected(&tech, &format!("os={first}*")),
        all,
        "OS globs ignore case ({os})"
    );
    assert!(selected(&tech, "os=windows*").is_empty());
    assert_eq!(selected(&tech, "online=false"), ["ws-d"]);
    assert_eq!(selected(&tech, "online=true"), ["pc-a", "pc-b", "pc-c"]);
    assert_eq!(selected(&tech, "health=crit"), ["pc-a"]);
    assert_eq!(selected(&tech, "health=ok"), ["pc-b"]);
    assert!(selected(&tech, "health=warn").is_empty());
    assert_eq!(
        selected(&tech, "health=unknown"),
        ["pc-c", "ws-d"],
        "no monitor: unknown"
    );
    assert_eq!(
        selected(&tech, " tag=floor2 , health=ok "),
        ["pc-b"],
        "ANDed"
    );
    assert_eq!(selected(&tech, "tag=floor2,online=true,name=*a"), ["pc-a"]);

    // ---- the table, sorted, and the summary line ----
    let out = tech.run(&["agents", "--sort", "health"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && [
                "ONLINE",
                "HEALTH",
                "INCIDENTS",
                "TICKETS",
                "LAST SEEN",
                "TAGS",
                "OS"
            ]
            .iter()
            .all(|h| lines[0].contains(h)),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("pc-a ") && lines[1].contains("crit"),
        "worst first: {shown}"
    );
    assert!(!shown.contains('\x1b'), "no colour in a pipe: {shown}");
    assert_eq!(
        *lines.last().unwrap(),
        "4 machines, 3 online · ok 1 · warn 0 · crit 1 · unknown 2 · 1 open incident · 0 open tickets",
        "{shown}"
    );
    let out = tech.run(&["agents", "--select", "tag=floor2"]);
    assert_eq!(
        stdout(&out).lines().last().unwrap(),
        "2 machines, 2 online · ok 1 · warn 0 · crit 1 · unknown 0 · 1 open incident · 0 open tickets",
        "{}",
        text(&out)
    );
    // --json: the array alone on stdout, the summary on stderr.
    let out = tech.run(&["agents", "--json", "--select", "online=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{}", text(&out));
    assert!(
        stderr(&out).contains("1 machine, 0 online"),
        "{}",
        text(&out)
    );

    // ---- bad selectors: exit 2, saying what to write ----
    for (sel, says) in [
        ("room=2", "use name, tag, os, online or health"),
        ("health=bad", "use ok, warn, crit or unknown"),
        ("online=yes", "use true or false"),
        ("tag=floor2,,os=x", "empty term 2"),
        ("floor2", "not KEY=VALUE"),
        ("", "empty selector"),
    ] {
        let out = tech.run(&["agents", "--select", sel]);
        assert_eq!(out.status.code(), Some(2), "{sel}: {}", text(&out));
        assert!(stderr(&out).contains(says), "{sel}: {}", text(&out));
        assert!(stdout(&out).is_empty(), "{sel}: {}", text(&out));
    }
}
