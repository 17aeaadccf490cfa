//! The help desk of record: tickets mirrored into a real Request Tracker 5
//! (`tests/support/rt.rs`, one server for this binary) through its REST 2
//! API — created, each timeline entry a comment, the status kept in step;
//! no duplicate when the relay is killed (kill -9) after RT did a request
//! but before the relay heard the answer, then restarted; a ticket
//! resolved in RT resolved in firstline by `rt:USER`.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::rt::{Proxy, RequestTracker};
use firstline_tests::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A relay of deployment `deployment` mirroring into RT at `url`.
fn relay(root: &Path, deployment: &str, url: &str) -> Relay {
    let rt = RequestTracker::shared();
    let relay = Relay::init(root);
    let token = relay.dir.join("rt-token");
    std::fs::write(&token, &rt.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&relay.config).unwrap();
    std::fs::write(
        &relay.config,
        format!(
            "deployment = \"{deployment}\"\n{text}\n[helpdesk]\nkind = \"rt\"\nurl = \"{url}\"\n\
             token_file = \"rt-token\"\nqueue = \"General\"\npoll_secs = 1\ntimeout_secs = 2\n\
             max_backoff_secs = 1\n"
        ),
    )
    .unwrap();
    relay
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn new_ticket(console: &Console, title: &str) -> u64 {
    json_of(&console.run(&["ticket", "new", title, "--json"]))["id"]
        .as_u64()
        .unwrap()
}

fn comment(console: &Console, id: u64, text_: &str) {
    let out = console.run(&["ticket", "comment", &id.to_string(), text_]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The RT tickets of firstline ticket `id` of `deployment`.
fn in_rt(deployment: &str, id: u64) -> Vec<(u64, String, String)> {
    RequestTracker::shared().tickets_tagged(&format!("[firstline {deployment} #{id}]"))
}

/// Wait until firstline ticket `id` is in RT once with `comments` comments
/// (messages after the create); its RT id.
fn wait_mirrored(deployment: &str, id: u64, comments: usize, relay: &Relay) -> u64 {
    let rt = RequestTracker::shared();
    let mut last = (Vec::new(), Vec::new());
    let ok = wait_until(Duration::from_secs(60), || {
        let found = in_rt(deployment, id);
        let messages = found.first().map(|t| rt.messages(t.0)).unwrap_or_default();
        let done = found.len() == 1 && messages.len() == comments + 1;
        last = (found, messages);
        done
    });
    assert!(
        ok,
        "ticket #{id} not mirrored as expected: RT tickets {:?}, messages {:?}\nrelay log:\n{}",
        last.0,
        last.1,
        relay.log()
    );
    last.0[0].0
}

#[test]
fn a_ticket_appears_in_rt_with_its_comments_and_status_and_rt_resolution_flows_back() {
    let rt = RequestTracker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = "mirror";
    let mut relay = relay(tmp.path(), d, &rt.url());
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));

    let id = new_ticket(&console, "Printer on floor 2 jams");
    comment(&console, id, "cleared the paper path");
    comment(&console, id, "jams again after 20 pages");
    let remote = wait_mirrored(d, id, 2, &relay);
    let messages = rt.messages(remote);
    assert!(
        messages[0].1.contains("Printer on floor 2 jams"),
        "{messages:?}"
    );
    assert!(messages[1].1.contains("cleared the paper path"));
    assert!(messages[1].1.starts_with("comment by tech"));
    assert!(messages[2].1.contains("jams again after 20 pages"));
    let (_, subject, status) = &in_rt(d, id)[0];
    assert_eq!(
        subject,
        &format!("[firstline {d} #{id}] Printer on floor 2 jams")
    );
    assert_eq!(status, "open");

    // Resolved here: resolved there, the change a comment too.
    let out = console.run(&["ticket", "resolve", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        wait_until(Duration::from_secs(30), || in_rt(d, id)[0].2 == "resolved"),
        "RT status: {:?}\n{}",
        in_rt(d, id),
        relay.log()
    );
    wait_mirrored(d, id, 3, &relay);

    // Resolved in RT: resolved here, by rt:root.
    let other = new_ticket(&console, "VPN drops every hour");
    let remote = wait_mirrored(d, other, 0, &relay);
    let (status, answer) = rt.call(
        "PUT",
        &format!("ticket/{remote}"),
        Some(&json!({"Status": "resolved"})),
    );
    assert_eq!(status, 200, "{answer}");
    let shown = || json_of(&console.run(&["ticket", "show", &other.to_string(), "--json"]));
    let resolved = wait_until(Duration::from_secs(30), || {
        let s = shown();
        s["ticket"]["status"] == "resolved" || s["status"] == "resolved"
    });
    assert!(resolved, "{}\n{}", shown(), relay.log());
    let s = shown();
    let entries = s["entries"].as_array().unwrap();
    let status_entry = entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "status")
        .unwrap();
    assert_eq!(status_entry["author"], "rt:root", "{s}");
    // The resolution is not sent back as a comment, nor anything twice.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(in_rt(d, other).len(), 1);
    assert_eq!(rt.messages(remote).len(), 1, "{:?}", rt.messages(remote));
    assert_eq!(in_rt(d, other)[0].2, "resolved");
}

#[test]
fn no_duplicate_after_the_relay_is_killed_mid_delivery() {
    let rt = RequestTracker::shared();
    let proxy = Proxy::start(&rt.url());
    let tmp = tempfile::tempdir().unwrap();
    let d = "killed";
    let mut relay = relay(tmp.path(), d, &proxy.url);
    relay.serve();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));

    // RT creates the ticket, the relay never hears of it: killed.
    proxy.hold("POST /REST/2.0/ticket ");
    let id = new_ticket(&console, "Disk full on the file server");
    assert!(
        wait_until(Duration::from_secs(30), || proxy.held() == 1),
        "{}",
        relay.log()
    );
    assert_eq!(in_rt(d, id).len(), 1, "RT made it");
    relay.kill();
    proxy.release();
    relay.serve();
    let remote = wait_mirrored(d, id, 0, &relay);

    // A comment RT took, its answer lost: killed again.
    proxy.hold(&format!("POST /REST/2.0/ticket/{remote}/comment "));
    comment(&console, id, "moved old backups away");
    assert!(
        wait_until(Duration::from_secs(30), || proxy.held() == 2),
        "{}",
        relay.log()
    );
    relay.kill();
    proxy.release();
    relay.serve();
    comment(&console, id, "80% free now");
    wait_mirrored(d, id, 2, &relay);
    let messages = rt.messages(remote);
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.1.contains("moved old backups away"))
            .count(),
        1,
        "{messages:?}"
    );
    assert!(
        messages[2].1.contains("80% free now"),
        "in order: {messages:?}"
    );
    // And nothing more comes.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(in_rt(d, id).len(), 1);
    assert_eq!(rt.messages(remote).len(), 3);
}
