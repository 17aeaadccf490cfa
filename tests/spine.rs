//! The spine, end to end, with real processes on loopback: relay, agent
//! and console; enrollment; a remote `disk` check; and every fault of
//! issue 2 (tokens, revocation, credentials, unknown/offline agents, relay
//! restart, bad config, hostile frames, certificate renewal).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_net::credential::Credential;
use firstline_net::stream::request;
use firstline_proto::{ErrorCode, Message};
use firstline_tests::*;
use std::process::Command;
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(20);

#[test]
fn remote_disk_check_end_to_end() {
    let s = Setup::new("viewer");
    let agents = s.console.agents();
    let a = agents
        .iter()
        .find(|a| a["name"] == "pc1")
        .expect("pc1 listed");
    assert_eq!(a["version"], env!("CARGO_PKG_VERSION"));
    assert!(a["os"].as_str().is_some_and(|os| !os.is_empty()), "{a}");
    assert!(a["last_seen"].is_string(), "{a}");

    let path = s.root().to_str().unwrap();
    let out = s.console.run(&[
        "run", "pc1", "disk", path, "--warn", "99.8", "--crit", "99.9", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON result");
    assert_eq!(result["check"], "disk");
    assert_eq!(result["target"], path);
    assert_eq!(result["status"], "ok");
    for key in ["used_pct", "free_bytes", "total_bytes"] {
        assert!(result["metrics"][key].is_number(), "{key} in {result}");
    }
    assert!(result["at"].as_str().unwrap().contains('T'));

    // Human output streams the progress line, then the result.
    let out = s.console.run(&["run", "pc1", "disk", path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("… measuring the filesystem"), "{stdout}");
    assert!(stdout.contains("disk "), "{stdout}");

    // A check the agent does not have: a usage error (exit 2) naming it.
    let out = s.console.run(&["run", "pc1", "teleport"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("unknown check `teleport`"),
        "{}",
        text(&out)
    );
}

#[test]
fn enrollment_token_faults_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();

    let once = relay.token(&[]);
    assert!(Agent::new(tmp.path(), "a1")
        .enroll(&relay.addr, &once)
        .status
        .success());
    let reused = Agent::new(tmp.path(), "a2").enroll(&relay.addr, &once);
    assert_eq!(reused.status.code(), Some(1), "{}", text(&reused));
    assert!(
        stderr(&reused).contains("already used"),
        "{}",
        text(&reused)
    );

    // Same format and CA fingerprint, but an id/secret the relay never issued.
    let parts: Vec<&str> = once.split('.').collect();
    let forged = format!("fl1.00000000.{}.{}", "0".repeat(32), parts[3]);
    let unknown = Agent::new(tmp.path(), "a3").enroll(&relay.addr, &forged);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("unknown enrollment token"),
        "{}",
        text(&unknown)
    );

    let short = relay.token(&["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let expired = Agent::new(tmp.path(), "a4").enroll(&relay.addr, &short);
    assert_eq!(expired.status.code(), Some(1));
    assert!(stderr(&expired).contains("expired"), "{}", text(&expired));

    let malformed = Agent::new(tmp.path(), "a5").enroll(&relay.addr, "hello");
    assert_ne!(malformed.status.code(), Some(0));
    assert!(
        stderr(&malformed).contains("malformed enrollment token"),
        "{}",
        text(&malformed)
    );

    // A token whose fingerprint is another CA's: the agent refuses the relay.
    let other = format!("fl1.{}.{}.{}", parts[1], parts[2], "ab".repeat(32));
    let pinned = Agent::new(tmp.path(), "a6").enroll(&relay.addr, &other);
    assert_eq!(pinned.status.code(), Some(1));
    assert!(stderr(&pinned).contains("fingerprint"), "{}", text(&pinned));

    // A multi-use token works that many times, and the name must be free.
    let three = relay.token(&["--uses", "3"]);
    assert!(Agent::new(tmp.path(), "b1")
        .enroll(&relay.addr, &three)
        .status
        .success());
    let taken = Agent::new(tmp.path(), "a1").enroll(&relay.addr, &three);
    assert!(
        stderr(&taken).contains("already enrolled"),
        "{}",
        text(&taken)
    );
    assert!(Agent::new(tmp.path(), "b2")
        .enroll(&relay.addr, &three)
        .status
        .success());
}

#[test]
fn revoked_agent_is_cut_off_and_stays_out() {
    let mut s = Setup::new("admin");
    let out = s.relay.cmd(&["agent", "revoke", "pc1"]);
    assert!(out.status.success(), "{}", text(&out));
    let gone = wait_until(SLOW, || !s.console.online("pc1"));
    assert!(gone, "revoked agent still online\n{}", s.relay.log());
    let exited = wait_until(SLOW, || s.agent.proc.as_mut().unwrap().exited().is_some());
    assert!(
        exited,
        "agent kept running after revocation:\n{}",
        s.agent.log()
    );
    assert!(s.agent.log().contains("revoked"), "{}", s.agent.log());
    let listed = s.console.agents();
    assert!(
        listed
            .iter()
            .any(|a| a["name"] == "pc1" && a["revoked"] == true),
        "{listed:?}"
    );

    // Restarted with the revoked certificate: refused again, for good.
    s.agent.start();
    let exited = wait_until(SLOW, || s.agent.proc.as_mut().unwrap().exited().is_some());
    assert!(exited && !s.console.online("pc1"), "{}", s.agent.log());
    assert!(s.agent.log().contains("revoked"), "{}", s.agent.log());
    let out = s.console.run(&["run", "pc1", "disk"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("revoked"), "{}", text(&out));
}

#[test]
fn revoked_operator_live_connection_is_closed() {
    let s = Setup::new("viewer");
    let cred = Credential::load(&s.relay.operator("bob", "technician")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_ep, conn) = connect(&cred).await;
        let (_send, mut recv) = request(&conn, Message::ListAgents {}).await.unwrap();
        assert!(matches!(
            recv.recv().await.unwrap(),
            Some(Message::Agents { .. })
        ));

        let out = s.relay.cmd(&["operator", "revoke", "bob"]);
        assert!(out.status.success(), "{}", text(&out));
        let reason = tokio::time::timeout(SLOW, conn.closed())
            .await
            .expect("connection closed in time");
        assert!(reason.to_string().contains("revoked"), "{reason}");
    });
    let path = s.root().join("bob.toml");
    cred.save(&path).unwrap();
    let out = s
        .console
        .run(&["--credential", path.to_str().unwrap(), "agents"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("revoked"), "{}", text(&out));
}

#[test]
fn console_without_credential_or_with_foreign_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let console = Console::new(tmp.path());
    let out = console.run(&["agents"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("not logged in"), "{}", text(&out));

    // An operator of another relay (other CA), pointed at this relay.
    let other_root = tmp.path().join("other");
    let other = Relay::init(&other_root);
    let foreign = other.operator("mallory", "admin");
    let mut cred = Credential::load(&foreign).unwrap();
    cred.relay = relay.addr.clone();
    cred.save(&foreign).unwrap();
    let out = console.run(&["--credential", foreign.to_str().unwrap(), "agents"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect") || err.contains("closed"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_and_offline_agents_are_named() {
    let s = Setup::new("viewer");
    let out = s.console.run(&["run", "ghost", "disk"]);
    // An unknown name is a usage error (exit 2); an offline agent is not.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("no agent named `ghost`"),
        "{}",
        text(&out)
    );

    let _sleeper = Agent::enrolled(s.root(), "sleeper", &s.relay);
    let out = s.console.run(&["run", "sleeper", "disk"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("agent `sleeper` is offline"),
        "{}",
        text(&out)
    );
}

#[test]
fn agent_comes_back_by_itself_after_relay_kill() {
    let mut s = Setup::new("viewer");
    s.relay.kill();
    std::thread::sleep(Duration::from_millis(500));
    s.relay.serve();
    let back = wait_until(SLOW, || s.console.online("pc1"));
    assert!(
        back,
        "agent not back\nagent:\n{}\nrelay:\n{}",
        s.agent.log(),
        s.relay.log()
    );
    let out = s.console.run(&["run", "pc1", "disk", "/", "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["check"], "disk");
}

#[test]
fn bad_config_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::init(tmp.path());
    relay.configure("keep_alive_secs = \"often\"\n");
    let out = run(Command::new(bin("firstline-relay"))
        .args(["serve", "--config"])
        .arg(&relay.config));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let lines = std::fs::read_to_string(&relay.config)
        .unwrap()
        .lines()
        .count();
    assert!(
        stderr(&out).contains(&format!("relay.toml:{lines}:")),
        "{}",
        text(&out)
    );

    let agent = Agent::new(tmp.path(), "x");
    std::fs::write(
        &agent.config,
        "relay = \"127.0.0.1:1\"\nname = \"x\"\nbogus_key = 1\n",
    )
    .unwrap();
    let out = run(Command::new(bin("firstline-agent"))
        .args(["validate", "--config"])
        .arg(&agent.config));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("agent.toml:3:"), "{}", text(&out));
    assert!(stderr(&out).contains("bogus_key"), "{}", text(&out));
}

#[test]
fn hostile_frames_close_only_their_stream() {
    let s = Setup::new("viewer");
    let cred = Credential::load(&s.relay.operator("probe", "viewer")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_ep, conn) = connect(&cred).await;
        let oversized = ((firstline_proto::MAX_FRAME_LEN as u32) + 1)
            .to_be_bytes()
            .to_vec();
        let mut garbage = 9u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\x00\xffnot-json");
        let future = br#"{"v":42,"type":"list_agents"}"#;
        let mut unknown_version = (future.len() as u32).to_be_bytes().to_vec();
        unknown_version.extend_from_slice(future);
        for (bytes, code) in [
            (oversized, ErrorCode::FrameTooLarge),
            (garbage, ErrorCode::Malformed),
            (unknown_version, ErrorCode::UnknownVersion),
        ] {
            let (send, recv) = conn.open_bi().await.unwrap();
            let mut send = firstline_net::FramedSend::new(send);
            send.send_raw(&bytes).await.unwrap();
            let _ = send.finish();
            let mut recv = firstline_net::FramedRecv::new(recv);
            match recv.recv_within(SLOW).await {
                Ok(Some(Message::Error { code: got, message })) => {
                    assert_eq!(got, code, "{message}");
                    assert!(!message.is_empty());
                }
                other => panic!("expected an error frame for {code:?}, got {other:?}"),
            }
        }
        // Same connection, next stream: business as usual.
        let (_send, mut recv) = request(&conn, Message::ListAgents {}).await.unwrap();
        assert!(matches!(
            recv.recv().await.unwrap(),
            Some(Message::Agents { .. })
        ));
    });
    // The relay and the agent carry on for everyone else.
    let out = s.console.run(&["run", "pc1", "disk", "/", "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
}

#[test]
fn role_is_checked_for_every_request() {
    let s = Setup::new("viewer");
    let out = s
        .console
        .run(&["ticket", "new", "printer down", "--agent", "pc1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("needs role technician"),
        "{}",
        text(&out)
    );
    let out = s.console.run(&["run", "pc1", "disk", "--ticket", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("needs role technician"),
        "{}",
        text(&out)
    );

    let tech = Console::new(&s.root().join("tech"));
    tech.login(&s.relay.operator("tina", "technician"));
    let out = tech.run(&["ticket", "new", "printer down", "--agent", "pc1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let ticket: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = ticket["id"].as_u64().unwrap().to_string();
    let out = tech.run(&["run", "pc1", "disk", "/", "--ticket", &id, "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", text(&out));
}

#[test]
fn agent_renews_its_certificate_over_the_live_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.configure("agent_cert_ttl_secs = 3600\n");
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.configure("renew_before_secs = 3590\nrenew_check_secs = 1\n");
    let identity = agent.dir.join("identity.pem");
    let serial = |p: &std::path::Path| {
        let pem = std::fs::read_to_string(p).unwrap();
        let der = firstline_net::pem::certs(&pem).unwrap();
        firstline_net::identity::cert_info(&der[0]).unwrap().serial
    };
    let first = serial(&identity);
    agent.start();
    let renewed = wait_until(SLOW, || serial(&identity) != first);
    assert!(renewed, "no renewal\n{}", agent.log());
    // The next connection uses the new certificate, and the relay accepts it.
    agent.proc.as_mut().unwrap().kill();
    agent.configure("renew_before_secs = 60");
    let renewed_serial = serial(&identity);
    agent.start();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("v", "viewer"));
    assert!(
        wait_until(SLOW, || console.online("pc1")),
        "{}",
        agent.log()
    );
    assert_eq!(
        serial(&identity),
        renewed_serial,
        "no second renewal expected"
    );
}

/// A raw operator connection, for tests below the console.
async fn connect(cred: &Credential) -> (quinn::Endpoint, quinn::Connection) {
    let tls = cred.client_config().unwrap();
    let remote = firstline_net::endpoint::resolve(&cred.relay).unwrap();
    let ep = firstline_net::endpoint::client(tls, remote, Default::default()).unwrap();
    let conn = firstline_net::endpoint::connect(&ep, remote).await.unwrap();
    (ep, conn)
}

#[test]
fn agents_list_larger_than_one_frame() {
    // 9,000 agents × ~140 bytes of JSON do not fit one 1 MiB frame.
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    let dir = firstline_relay::RelayDir::load(&relay.config).unwrap();
    firstline_relay::admin::bulk_agents(
        &dir,
        "bulk-agent-with-a-long-name-",
        9000,
        Duration::from_secs(3600),
    )
    .unwrap();
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("v", "viewer"));
    let agents = console.agents();
    assert_eq!(agents.len(), 9000);
    let size = serde_json::to_vec(&agents).unwrap().len();
    assert!(
        size > firstline_proto::MAX_FRAME_LEN,
        "the list ({size} bytes) must exceed one frame"
    );
    assert!(agents.iter().all(|a| a["online"] == false));
}
