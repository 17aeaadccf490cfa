//! Fixes and runbooks behind two walls (issue 4), end to end with real
//! processes: the relay's role checks, the agent's own policy (tested with a
//! relay that does not filter: a test-only QUIC server holding the relay's
//! real certificate), path-safe admin scripts, the hash-chained audit log,
//! and the shipped runbooks against real peers — a CUPS queue, a temp
//! folder, a network link broken on purpose.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_net::stream::{accept_request, request};
use firstline_proto::{ErrorCode, Message, Role, Welcome};
use firstline_tests::peers::{Cups, Netns};
use firstline_tests::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

const SLOW: Duration = Duration::from_secs(30);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An agent whose scripts folder holds `hello` and whose policy is `policy`.
fn setup(policy: &str) -> Setup {
    let s = Setup::new("viewer");
    let scripts = s.root().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let hello = scripts.join("hello");
    std::fs::write(&hello, "#!/bin/sh\necho \"hello $1\"\n").unwrap();
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.agent
        .configure(&format!("scripts_dir = \"{}\"", scripts.display()));
    s.agent.append(policy);
    s
}

fn restart(s: &mut Setup) {
    s.agent.proc.as_mut().unwrap().kill();
    s.agent.start();
    assert!(
        wait_until(SLOW, || s.console.online("pc1")),
        "{}",
        s.agent.log()
    );
}

fn age(path: &Path, days: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

#[test]
fn role_action_matrix() {
    let mut s = setup("[policy]\nscripts = true\n");
    restart(&mut s);
    let tmp = s.root().join("junk");
    std::fs::create_dir_all(&tmp).unwrap();
    let t = tmp.to_str().unwrap().to_string();
    let actions: Vec<(&str, Vec<String>)> = vec![
        (
            "check",
            vec![
                "run".into(),
                "pc1".into(),
                "disk".into(),
                t.clone(),
                "--warn".into(),
                "100".into(),
                "--crit".into(),
                "100".into(),
            ],
        ),
        (
            "runbook",
            vec![
                "runbook".into(),
                "pc1".into(),
                "disk-full".into(),
                format!("path={t}"),
                "warn=100".into(),
                "crit=100".into(),
            ],
        ),
        (
            "fix",
            vec![
                "fix".into(),
                "pc1".into(),
                "clean-temp".into(),
                t.clone(),
                "--dry-run".into(),
            ],
        ),
        (
            "script",
            vec![
                "fix".into(),
                "pc1".into(),
                "script".into(),
                "hello".into(),
                "world".into(),
            ],
        ),
    ];
    let allowed = [
        ("viewer", [true, false, false, false]),
        ("technician", [true, true, true, false]),
        ("admin", [true, true, true, true]),
    ];
    for (role, expect) in allowed {
        let console = Console::new(&s.root().join(role));
        console.login(&s.relay.operator(&format!("op-{role}"), role));
        for ((what, args), ok) in actions.iter().zip(expect) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = console.run(&args);
            if ok {
                assert_eq!(out.status.code(), Some(0), "{role} {what}: {}", text(&out));
            } else {
                assert_eq!(out.status.code(), Some(1), "{role} {what}: {}", text(&out));
                assert!(
                    stderr(&out).contains("needs role"),
                    "{role} {what}: {}",
                    text(&out)
                );
            }
        }
    }
    // The admin's script really ran, with its argument as argv.
    let admin = Console::new(&s.root().join("admin"));
    let out = admin.run(&[
        "fix",
        "pc1",
        "script",
        "hello",
        "it's me; rm -rf /",
        "--json",
    ]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["changed"][0], "hello it's me; rm -rf /", "{r}");
}

#[test]
fn scripts_are_bare_names_and_off_by_default() {
    let mut s = setup("");
    restart(&mut s);
    let admin = Console::new(&s.root().join("admin"));
    admin.login(&s.relay.operator("root-op", "admin"));
    let out = admin.run(&["fix", "pc1", "script", "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("does not allow custom scripts"),
        "{}",
        text(&out)
    );

    s.agent.append("[policy]\nscripts = true\n");
    restart(&mut s);
    for bad in ["../x", "/bin/sh", "sub/hello", ".."] {
        let out = admin.run(&["fix", "pc1", "script", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("hello"),
            "{bad} ran something"
        );
    }
    let out = admin.run(&["fix", "pc1", "script", "../x"]);
    assert!(stderr(&out).contains("../x"), "{}", text(&out));
}

#[test]
fn agent_refuses_what_its_policy_forbids_even_when_the_relay_asks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.configure("reconnect_max_ms = 500");
    agent.append("[policy]\nfixes = [\"clean-temp\"]\n");
    relay.kill();
    agent.start();

    // A "relay" that forwards anything: the relay's real certificate and CA,
    // no role checks at all.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let read = |f: &str| std::fs::read_to_string(relay.dir.join(f)).unwrap();
        let chain = firstline_net::pem::certs(&(read("relay.pem") + &read("ca.pem"))).unwrap();
        let key = firstline_net::pem::key(&read("relay-key.pem")).unwrap();
        let ca = firstline_net::pem::certs(&read("ca.pem")).unwrap();
        let tls = firstline_net::tls::server_config(chain, key, &ca).unwrap();
        let ep = firstline_net::endpoint::server(
            tls,
            relay.addr.parse().unwrap(),
            Default::default(),
            &[7u8; 32],
        )
        .unwrap();
        let conn = tokio::time::timeout(SLOW, async { ep.accept().await.unwrap().await.unwrap() })
            .await
            .expect("agent connects");
        let (hello, send, _) = accept_request(&conn, SLOW, firstline_proto::limits::HELLO_FRAME)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(hello, Message::Hello(_)));
        send.finish_with(Message::Welcome(Welcome {
            version: 1,
            name: "pc1".into(),
            capabilities: vec![],
        }))
        .await
        .unwrap();

        for (action, args) in [
            ("script", vec!["hello".to_string()]),
            ("restart-service", vec!["cups".to_string()]),
        ] {
            let (_s, mut recv) = request(
                &conn,
                Message::ExecFix {
                    action: action.into(),
                    args,
                    dry_run: false,
                    role: Role::Admin,
                },
            )
            .await
            .unwrap();
            match recv.recv_within(SLOW).await.unwrap() {
                Some(Message::Error { code, message }) => {
                    assert_eq!(code, ErrorCode::Refused, "{message}");
                    assert!(message.contains("policy"), "{message}");
                }
                other => panic!("{action} was not refused: {other:?}"),
            }
        }
        // A runbook cannot smuggle a forbidden fix either.
        let dir = tmp.path().join("full");
        std::fs::create_dir_all(&dir).unwrap();
        let params = vec![
            format!("path={}", dir.display()),
            "warn=0".into(),
            "crit=0".into(),
            format!("temp={}", dir.display()),
        ];
        let (_s, mut recv) = request(
            &conn,
            Message::ExecRunbook {
                name: "disk-full".into(),
                params,
                dry_run: false,
                role: Role::Admin,
            },
        )
        .await
        .unwrap();
        let mut verdict = None;
        let mut refused = false;
        while let Some(m) = recv.recv_within(SLOW).await.unwrap() {
            match m {
                Message::Result { result } if result.check == "vacuum-journal" => {
                    refused = result.summary.contains("refused")
                }
                Message::Verdict { verdict: v, .. } => verdict = Some(v),
                _ => {}
            }
        }
        assert!(
            refused,
            "vacuum-journal must be refused by the agent's policy"
        );
        assert_eq!(verdict.as_deref(), Some("escalate"));
        conn.close(0u32.into(), b"done");
    });
}

#[test]
fn audit_log_records_everything_and_its_chain_detects_edits() {
    let s = Setup::new("viewer");
    let tech = Console::new(&s.root().join("tech"));
    tech.login(&s.relay.operator("tina", "technician"));
    assert!(s
        .console
        .run(&["run", "pc1", "disk", "/"])
        .status
        .code()
        .is_some());
    assert_eq!(
        s.console
            .run(&["fix", "pc1", "flush-dns", "--dry-run"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        tech.run(&["fix", "pc1", "flush-dns", "--dry-run"])
            .status
            .code(),
        Some(0)
    );
    let out = tech.run(&["audit", "--agent", "pc1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |who: &str, action: &str| {
        entries
            .iter()
            .find(|e| e["who"] == who && e["action"].as_str().unwrap().starts_with(action))
            .cloned()
    };
    let forbidden = find("tech", "fix flush-dns").expect("viewer's refused fix is audited");
    assert!(
        forbidden["outcome"]
            .as_str()
            .unwrap()
            .starts_with("forbidden"),
        "{forbidden}"
    );
    let done = find("tina", "fix flush-dns").expect("technician's fix is audited");
    assert!(
        done["action"].as_str().unwrap().contains("dry run"),
        "{done}"
    );
    assert!(find("tech", "run check disk").is_some());
    assert_eq!(
        s.console.run(&["audit"]).status.code(),
        Some(1),
        "viewers do not read the audit log"
    );

    let verify = s.relay.cmd(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("holds"));

    let db = rusqlite::Connection::open(s.relay.dir.join("relay.db")).unwrap();
    let id: i64 = db
        .query_row(
            "SELECT id FROM audit WHERE who = 'tech' AND outcome LIKE 'forbidden%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute("UPDATE audit SET outcome = 'ok' WHERE id = ?1", [id])
        .unwrap();
    let verify = s.relay.cmd(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        stderr(&verify).contains(&format!("entry {id}")),
        "{}",
        text(&verify)
    );
}

#[test]
fn cant_print_brings_a_stopped_cups_queue_back() {
    let cups = Cups::start();
    cups.admin("lpadmin", &["-p", "q1", "-E", "-v", "file:///dev/null"]);
    cups.admin("cupsdisable", &["-r", "out of paper", "q1"]);
    let s = Setup::new("technician");
    let uri = cups.uri("q1");
    let before = s.console.run(&["run", "pc1", "printer", &uri, "--json"]);
    let r: Value = serde_json::from_slice(&before.stdout).unwrap();
    assert_eq!(r["status"], "crit", "stopped queue: {r}");

    let out = s
        .console
        .run(&["runbook", "pc1", "cant-print", &format!("uri={uri}")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout.contains("step 2/4 resume"), "{stdout}");
    assert!(stdout.contains("VERDICT RESOLVED"), "{stdout}");
    let after = s.console.run(&["run", "pc1", "printer", &uri, "--json"]);
    let r: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(r["status"], "ok", "idle again: {r}");
}

#[test]
fn disk_full_frees_a_temp_dir_and_rechecks() {
    let s = Setup::new("technician");
    let junk = s.root().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    for (name, days) in [("old1.log", 30), ("old2.log", 10), ("fresh.log", 0)] {
        std::fs::write(junk.join(name), vec![b'x'; 4096]).unwrap();
        age(&junk.join(name), days);
    }
    let j = junk.to_str().unwrap();
    let out = s.console.run(&[
        "runbook",
        "pc1",
        "disk-full",
        &format!("path={j}"),
        &format!("temp={j}"),
        "warn=0",
        "crit=0",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "thresholds of 0 stay crit: escalate\n{}",
        text(&out)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verdict = lines.last().unwrap();
    assert_eq!(verdict["verdict"], "escalate");
    let evidence = verdict["evidence"].as_array().unwrap();
    let checks: Vec<&str> = evidence
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["disk", "clean-temp", "vacuum-journal", "disk"],
        "re-checked after cleaning"
    );
    assert_eq!(evidence[1]["metrics"]["files"], 2.0, "{}", evidence[1]);
    assert!(!junk.join("old1.log").exists() && !junk.join("old2.log").exists());
    assert!(
        junk.join("fresh.log").exists(),
        "newer than the bound: kept"
    );
}

#[test]
fn no_internet_verdict_follows_a_link_broken_on_purpose() {
    let ns = Netns::new("ni");
    let s = Setup::new("technician");
    let params = [
        format!("gateway={}", ns.ns_ip),
        format!("external={}", ns.ns_ip),
        "name=localhost".to_string(),
    ];
    let run = || {
        let mut args = vec!["runbook", "pc1", "no-internet", "--json"];
        args.extend(params.iter().map(String::as_str));
        let out = s.console.run(&args);
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (out, lines)
    };
    let (out, lines) = run();
    let verdict = lines.last().cloned().unwrap_or_default();
    let evidence = verdict["evidence"].as_array().cloned().unwrap_or_default();
    assert!(
        evidence.len() >= 3,
        "got past the gateway and the outside host: {}",
        text(&out)
    );
    assert_eq!(evidence[0]["status"], "ok", "{}", evidence[0]);
    assert_eq!(evidence[1]["status"], "ok", "{}", evidence[1]);

    ns.set_link(false);
    let (out, lines) = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let verdict = lines.last().unwrap();
    assert_eq!(verdict["verdict"], "escalate");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("gateway does not answer"),
        "{verdict}"
    );
    assert_eq!(
        verdict["evidence"].as_array().unwrap().len(),
        1,
        "stopped at the gateway"
    );
}

#[test]
fn runbooks_are_listed_and_bad_ones_named() {
    let mut s = Setup::new("viewer");
    let dir = s.root().join("runbooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("reboot-router.toml"), "name = \"reboot-router\"\ndescription = \"ours\"\n[[step]]\ncheck = \"ping\"\nargs = [\"127.0.0.1\"]\n").unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "name = \"broken\"\ndescription = \"x\"\n\n[[step]]\nfix = \"format-disk\"\n",
    )
    .unwrap();
    s.agent
        .configure(&format!("runbooks_dir = \"{}\"", dir.display()));
    restart(&mut s);
    let out = s.console.run(&["runbooks", "pc1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cant-print",
            "disk-full",
            "no-internet",
            "reboot-router",
            "slow-dns"
        ]
    );
    let invalid = v["invalid"][0].as_str().unwrap();
    assert!(
        invalid.contains("broken.toml:4:") && invalid.contains("unknown fix `format-disk`"),
        "{invalid}"
    );
    let out = s.console.run(&["runbook", "pc1", "no-such-book"]);
    assert_eq!(out.status.code(), Some(1));
}
