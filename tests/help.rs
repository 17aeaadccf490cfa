//! Tier 0 end to end: real Unix accounts (made by the test, removed at the
//! end) run `firstline-help` against a real agent and relay on loopback —
//! self-service list and run, `ask` with the evidence, the ask kept in the
//! outbox while the relay is down, technicians' replies seen by their
//! user only, what a user cannot reach, and the rate limit.

use firstline_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A local account for the test, removed on drop (also when a test fails).
struct LocalUser {
    name: String,
}

impl LocalUser {
    fn new() -> LocalUser {
        let name = format!("fl-help-{:08x}", rand_u32());
        let out = run(Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name));
        assert!(out.status.success(), "useradd {name}: {}", text(&out));
        LocalUser { name }
    }

    /// `firstline-help ARGS…` as this user.
    fn help(&self, socket: &Path, args: &[&str]) -> Output {
        run(Command::new("runuser")
            .args(["-u", &self.name, "--"])
            // Not target/debug: another user may not reach the checkout.
            .arg(bin_for_others("firstline-help"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// The socket's folder, removed on drop.
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// A self-service runbook that needs no outside host: a disk check on /.
const CHECK_DISK: &str = r#"name = "check-disk"
description = "My computer says the disk is full"
self_service = true

[[step]]
id = "disk"
check = "disk"
args = ["/", "--warn", "100", "--crit", "100"]
next = [{ if = "disk.status == ok", verdict = "space-ok" }, { verdict = "space-low" }]

[verdict.space-ok]
kind = "user-action"
message = "TECH-ONLY {disk.summary}"
user_message = "The disk has room; if an app still complains, restart it."
kb = "disk-space"

[verdict.space-low]
kind = "escalate"
team = "desktop"
message = "TECH-ONLY {disk.summary}"
user_message = "The disk is full; the help desk has been told."
"#;

/// Marked self-service, with a fix the policy does not allow for it.
const BAD_FIX: &str = r#"name = "bad-fix"
description = "Cleans temp files"
self_service = true

[[step]]
id = "clean"
fix = "clean-temp"
args = ["/tmp"]
next = [{ verdict = "done" }]

[verdict.done]
kind = "user-action"
message = "cleaned"
user_message = "Cleaned."
"#;

fn tickets(console: &Console) -> Vec<Value> {
    let v = ok_json(console.run(&["tickets", "--json"]));
    v.as_array().cloned().unwrap_or_default()
}

fn user_ticket(console: &Console, title: &str) -> Option<Value> {
    tickets(console)
        .into_iter()
        .find(|t| t["source"] == "user" && t["title"] == title)
}

#[test]
fn end_users_help_themselves_and_reach_the_help_desk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let runbooks = agent.dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(runbooks.join("check-disk.toml"), CHECK_DISK).unwrap();
    std::fs::write(runbooks.join("bad-fix.toml"), BAD_FIX).unwrap();
    let sockets = SocketDir(PathBuf::from(format!(
        "/tmp/fl-help-sock-{:08x}",
        rand_u32()
    )));
    let socket = sockets.0.join("help.sock");
    agent.configure(&format!(
        "runbooks_dir = \"{}\"\nhelp_socket = \"{}\"\nhelp_rate_per_minute = 4\nreconnect_max_ms = 1000\nkeep_alive_secs = 1\nidle_timeout_secs = 3",
        runbooks.display(),
        socket.display()
    ));
    agent.append("[policy]\nself_service_fixes = [\"flush-dns\"]\n");
    agent.start();
    let tech = console_as(&relay, tmp.path(), "tech", "technician");
    assert!(
        wait_until(Duration::from_secs(20), || tech.online("pc1")
            && socket.exists()),
        "agent not up\n{}",
        agent.log()
    );
    let alice = LocalUser::new();
    let bob = LocalUser::new();

    // ---- a non-self-service fix cannot be reached ----
    // Marked self-service with a fix outside self_service_fixes: refused at load, file:line.
    let out = run(Command::new(bin("firstline-agent"))
        .args(["runbook", "--config"])
        .arg(&agent.config));
    let listing = stdout(&out);
    assert!(
        listing.contains("bad-fix.toml:5: self-service runbook `bad-fix`: step `clean`: the fix `clean-temp` is not allowed for self-service"),
        "{}",
        text(&out)
    );

    // ---- list: only what is offered, in plain words ----
    let out = alice.help(&socket, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = stdout(&out);
    assert!(
        list.contains("check-disk") && list.contains("My computer says the disk is full"),
        "{list}"
    );
    assert!(
        !list.contains("bad-fix") && !list.contains("disk-full"),
        "{list}"
    );
    assert_eq!(stdout(&alice.help(&socket, &["list"])), list);

    // ---- run of a runbook not offered for self-service: refused (1) ----
    let out = alice.help(&socket, &["run", "disk-full"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("not offered for self-service"),
        "{}",
        text(&out)
    );

    // ---- run: each step in plain words, the user message and the article ----
    let out = alice.help(&socket, &["run", "check-disk"]);
    let shown = stdout(&out);
    assert!(shown.contains("Checked disk /: OK"), "{}", text(&out));
    assert!(shown.contains("The disk has room"), "{}", text(&out));
    assert!(
        shown.contains("Knowledge base article: disk-space"),
        "{}",
        text(&out)
    );
    assert!(
        !shown.contains("TECH-ONLY"),
        "no technician message: {shown}"
    );

    // ---- ask --after: the ticket carries the user, the text and the evidence ----
    let out = alice.help(
        &socket,
        &["ask", "Word says the disk is full", "--after", "check-disk"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("sent"), "{}", text(&out));
    let t = user_ticket(&tech, "Word says the disk is full").expect("the user's ticket");
    assert_eq!(t["agent"], "pc1");
    assert_eq!(t["requester"], alice.name.as_str(), "{t:#}");
    assert!(
        t["monitor"].is_null(),
        "no monitor for a person's ticket: {t:#}"
    );
    let id = t["id"].to_string();
    let shown = ok_json(tech.run(&["ticket", "show", &id, "--json"]));
    let entries = shown["entries"].as_array().expect("entries").clone();
    assert_eq!(entries[0]["kind"], "opened", "{shown:#}");
    assert_eq!(
        entries[0]["author"],
        format!("{}@pc1", alice.name),
        "{shown:#}"
    );
    assert_eq!(
        entries[0]["body"], "Word says the disk is full",
        "{shown:#}"
    );
    assert_eq!(entries[1]["kind"], "verdict", "{shown:#}");
    assert_eq!(entries[1]["body"]["runbook"], "check-disk", "{shown:#}");
    assert_eq!(entries[1]["body"]["cause"], "space-ok", "{shown:#}");
    assert_eq!(
        entries[1]["body"]["steps"][0]["result"]["check"], "disk",
        "{shown:#}"
    );
    // --after names only what this user just ran.
    let out = bob.help(&socket, &["ask", "me too", "--after", "check-disk"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // ---- a technician's reply reaches that user, and only that user ----
    let out = tech.run(&["ticket", "comment", &id, "Deleting old files for you now"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = alice.help(&socket, &["tickets"]);
    let mine = stdout(&out);
    assert!(
        mine.contains("Word says the disk is full")
            && mine.contains("Deleting old files for you now"),
        "{}",
        text(&out)
    );
    assert!(mine.contains("[open]"), "{mine}");
    let out = bob.help(&socket, &["tickets"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stdout(&out).contains("Word says"), "{}", text(&out));
    assert!(stdout(&out).contains("no requests"), "{}", text(&out));

    // ---- the relay down: the ask waits in the outbox, lands when it is back ----
    relay.kill();
    assert!(
        wait_until(Duration::from_secs(20), || !agent.log().is_empty()
            && agent.log().contains("link to")),
        "{}",
        agent.log()
    );
    let out = alice.help(&socket, &["ask", "The printer on floor 2 is gone"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("queued: will reach the help desk when the relay is reachable"),
        "{}",
        text(&out)
    );
    let out = alice.help(&socket, &["tickets"]);
    assert!(stdout(&out).contains("cannot be reached"), "{}", text(&out));
    assert!(
        stdout(&out).contains("waiting to be sent") && stdout(&out).contains("printer on floor 2"),
        "{}",
        text(&out)
    );
    relay.serve();
    assert!(
        wait_until(Duration::from_secs(30), || user_ticket(
            &tech,
            "The printer on floor 2 is gone"
        )
        .is_some()),
        "the queued ask never landed\n{}",
        agent.log()
    );

    // ---- the rate limit bites (4 runs and asks a minute here; bob's
    // refused ask above counted too) ----
    for _ in 0..3 {
        let out = bob.help(&socket, &["run", "check-disk"]);
        assert!(!stderr(&out).contains("too many"), "{}", text(&out));
    }
    let out = bob.help(&socket, &["run", "check-disk"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("too many requests"), "{}", text(&out));

    // ---- usage errors: 2 ----
    let out = alice.help(&socket, &["ask", "  "]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = alice.help(&socket, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for sub in ["list", "run", "ask", "tickets"] {
        let out = alice.help(&socket, &[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}: {}", text(&out));
    }
    drop(agent);
}
