//! Fixes and runbooks behind two walls (issue 4), end to end with real
//! processes: the relay's role checks, the agent's own policy (tested with a
//! relay that does not filter: a test-only QUIC server holding the relay's
//! real certificate), path-safe admin scripts, the hash-chained audit log,
//! and runbooks listed and bad ones named. What the shipped runbooks
//! diagnose, fault by fault, is the matrix's (`tests/matrix.rs`).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_net::stream::{accept_request, request};
use firstline_proto::{ErrorCode, Message, Role, Welcome};
use firstline_tests::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

use std::time::Duration;

const SLOW: Duration = Duration::from_secs(30);

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
        // Not a script name: a usage error the agent finds (exit 2).
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
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
        let tls = firstline_net::tls::server_config(chain, key, &ca, || ()).unwrap();
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
        let mut journal_ran = false;
        while let Some(m) = recv.recv_within(SLOW).await.unwrap() {
            match m {
                Message::Result { result } if result.check == "vacuum-journal" => {
                    journal_ran = true
                }
                Message::Verdict(v) => verdict = Some(v),
                _ => {}
            }
        }
        let verdict = verdict.expect("a verdict");
        let journal = verdict
            .steps
            .iter()
            .find(|s| s.action == "fix vacuum-journal")
            .expect("the runbook reached its journal step");
        assert!(
            !journal_ran
                && journal.result.is_none()
                && journal.skipped.as_deref().unwrap_or("").contains("refused"),
            "vacuum-journal must be refused by the agent's policy: {journal:?}"
        );
        assert_eq!(verdict.verdict.to_string(), "escalate");
        assert_eq!(verdict.cause, "still-full");
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
fn runbooks_are_listed_and_bad_ones_named() {
    let mut s = Setup::new("viewer");
    let dir = s.root().join("runbooks");
    std::fs::create_dir_all(&dir).unwrap();
    let verdict =
        "\n[verdict.done]\nkind = \"user-action\"\nmessage = \"m\"\nuser_message = \"u\"\n";
    std::fs::write(
        dir.join("reboot-router.toml"),
        format!("name = \"reboot-router\"\ndescription = \"ours\"\n[[step]]\nid = \"router\"\ncheck = \"ping\"\nargs = [\"127.0.0.1\"]\nnext = [{{ verdict = \"done\" }}]\n{verdict}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        format!("name = \"broken\"\ndescription = \"x\"\n\n[[step]]\nid = \"wipe\"\nfix = \"format-disk\"\nnext = [{{ verdict = \"done\" }}]\n{verdict}"),
    )
    .unwrap();
    s.agent
        .configure(&format!("runbooks_dir = \"{}\"", dir.display()));
    restart(&mut s);
    let out = s.console.run(&["runbooks", "pc1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
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
    // Files the agent rejected: on stderr, beside the JSON array.
    let invalid = String::from_utf8_lossy(&out.stderr);
    assert!(
        invalid.contains("broken.toml:4:") && invalid.contains("unknown fix `format-disk`"),
        "{invalid}"
    );
    let out = s.console.run(&["runbook", "pc1", "no-such-book"]);
    assert_eq!(out.status.code(), Some(1));
}
