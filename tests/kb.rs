//! The knowledge base end to end, with a real relay, agent, console and
//! `firstline-help` on loopback (issue 16, "Knowledge base"):
//!
//! * `firstline-relay init` writes the shipped articles into `kb/`; a bad
//!   file there is skipped and logged with its file and line;
//! * `firstline kb search` (title hits first, `--json`), `kb show` (text
//!   and `--json`), an unknown id (a usage error naming the close ids), an
//!   article added while the relay runs (seen at the next request), both
//!   requests in the audit log;
//! * a runbook verdict naming an article: `ticket show` prints its id and
//!   the command that shows it; `firstline-help run` prints the article's
//!   title and text, and with the relay down, its id and that it will be
//!   shown later.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// A self-service runbook that always reaches a user-action verdict
/// naming the shipped `disk-full` article.
const KB_CHECK: &str = r#"name = "kb-check"
description = "Is my disk full?"
self_service = true

[[step]]
id = "disk"
check = "disk"
args = ["/", "--warn", "100", "--crit", "100"]
next = [{ verdict = "see-article" }]

[verdict.see-article]
kind = "user-action"
message = "disk: {disk.summary}"
user_message = "Read the article below."
kb = "disk-full"
"#;

fn help(socket: &std::path::Path, args: &[&str]) -> Output {
    run(Command::new(bin("firstline-help"))
        .arg("--socket")
        .arg(socket)
        .args(args))
}

/// Removes the socket folder (outside the temp dir: socket paths are short).
struct SocketDir(PathBuf);
impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn articles_from_the_relay_reach_technicians_and_end_users() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    let kb = relay.dir.join("kb");
    for id in ["printing-needs-attention", "network-no-link", "disk-full"] {
        assert!(kb.join(format!("{id}.md")).is_file(), "init wrote {id}");
    }
    std::fs::write(kb.join("broken.md"), "---\ntitle: x\ncolour: red\n---\n").unwrap();
    std::fs::write(
        kb.join("vpn.md"),
        "---\ntitle: Connect to the VPN\ntags: vpn, remote\n---\nOpen the VPN app and sign in.\n",
    )
    .unwrap();
    relay.serve();
    assert!(
        wait_until(Duration::from_secs(5), || relay
            .log()
            .contains("broken.md:3: unknown key `colour`")),
        "{}",
        relay.log()
    );

    let viewer = console_as(&relay, tmp.path(), "vera", "viewer");

    // ---- search: title hits first, every word, JSON ----
    let hits = ok_json(viewer.run(&["kb", "search", "paper", "--json"]));
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"printing-needs-attention"), "{hits}");
    let hits = ok_json(viewer.run(&["kb", "search", "VPN", "remote", "--json"]));
    assert_eq!(hits[0]["id"], "vpn", "{hits}");
    assert_eq!(hits[0]["title"], "Connect to the VPN");
    let out = viewer.run(&["kb", "search", "toner"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("printing-needs-attention"),
        "{}",
        text(&out)
    );
    let out = viewer.run(&["kb", "search", "nothing-like-this"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // ---- show: text and JSON ----
    let out = viewer.run(&["kb", "show", "disk-full"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    assert!(
        shown.starts_with("The disk is full\nid disk-full · tags disk"),
        "{shown}"
    );
    assert!(
        shown.contains("- Empty the trash (recycle bin)."),
        "{shown}"
    );
    let a = ok_json(viewer.run(&["kb", "show", "network-dns", "--json"]));
    assert_eq!(a["id"], "network-dns");
    assert!(
        a["body"].as_str().unwrap().contains("## What you can do"),
        "{a}"
    );

    // ---- unknown id: a usage error with the close ids ----
    let out = viewer.run(&["kb", "show", "network-dsn"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out)
            .contains("no article `network-dsn` in the knowledge base; close ids: network-dns"),
        "{}",
        text(&out)
    );
    let out = viewer.run(&["kb", "show", "broken"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad file is skipped: {}",
        text(&out)
    );

    // ---- an article added while the relay runs ----
    std::fs::write(
        kb.join("wifi.md"),
        "# Wi-Fi keeps dropping\n\nMove closer.\n",
    )
    .unwrap();
    let a = ok_json(viewer.run(&["kb", "show", "wifi", "--json"]));
    assert_eq!(a["title"], "Wi-Fi keeps dropping");

    // ---- a verdict with an article: ticket show, firstline-help ----
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let runbooks = agent.dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(runbooks.join("kb-check.toml"), KB_CHECK).unwrap();
    let sockets = SocketDir(PathBuf::from(format!(
        "/tmp/fl-kb-sock-{}-{}",
        std::process::id(),
        relay.addr.rsplit(':').next().unwrap()
    )));
    let socket = sockets.0.join("help.sock");
    agent.configure(&format!(
        "runbooks_dir = \"{}\"\nhelp_socket = \"{}\"\nhelp_rate_per_minute = 60\nreconnect_max_ms = 1000\nkeep_alive_secs = 1\nidle_timeout_secs = 3",
        runbooks.display(),
        socket.display()
    ));
    agent.start();
    let tech = console_as(&relay, tmp.path(), "tina", "technician");
    assert!(
        wait_until(Duration::from_secs(20), || tech.online("pc1")
            && socket.exists()),
        "agent not up\n{}",
        agent.log()
    );
    let created = ok_json(tech.run(&["ticket", "new", "disk?", "--agent", "pc1", "--json"]));
    let id = created["id"].as_u64().unwrap().to_string();
    let out = tech.run(&["runbook", "pc1", "kb-check", "--ticket", &id]);
    assert!(
        stdout(&out).contains("knowledge base: disk-full"),
        "{}",
        text(&out)
    );
    let out = viewer.run(&["ticket", "show", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("knowledge base: disk-full · firstline kb show disk-full"),
        "{}",
        text(&out)
    );

    let out = help(&socket, &["run", "kb-check"]);
    let shown = stdout(&out);
    assert!(shown.contains("Read the article below."), "{}", text(&out));
    assert!(
        shown.contains("Knowledge base: The disk is full (disk-full)"),
        "{}",
        text(&out)
    );
    assert!(
        shown.contains("  - Empty the trash (recycle bin)."),
        "{shown}"
    );

    // ---- both requests are audited ----
    let audit = ok_json(tech.run(&["audit", "--json"])).to_string();
    assert!(
        audit.contains("kb search") && audit.contains("kb show"),
        "{audit}"
    );

    // ---- the relay down: the id, and a promise ----
    relay.kill();
    let mut last = String::new();
    let offline = wait_until(Duration::from_secs(20), || {
        last = text(&help(&socket, &["run", "kb-check"]));
        last.contains(
            "Knowledge base article: disk-full (it will be shown when the help desk can be reached)",
        )
    });
    assert!(offline, "{last}");
    drop(agent);
}
