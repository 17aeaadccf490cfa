//! The web console (issue 15) in a real headless Chromium, against real
//! relay and agent processes and `firstline web` on loopback — the issue's
//! "How it is shown", one test per promise:
//!
//! * [`fleet_machine_check_runbook_and_live`] — a technician opens the
//!   printed secret URL, finds the agents on the Fleet page (one whose
//!   monitor holds, one whose monitor fails) with the health, tags and
//!   summary the CLI reports, runs a check on the Machine page and sees its result
//!   stream in, runs the shipped `disk-full` runbook (on the test's own
//!   folder, thresholds set so it must escalate; its fix confined by the
//!   agent's policy to that folder) and sees the verdict with its cause,
//!   and sees a ticket change arrive on the Live page as it happens;
//! * [`ticket_changes_show_on_a_second_page`] — a ticket opened from the
//!   Tickets page, then commented on and resolved in one browser, changes
//!   in another one, with no reload;
//! * [`viewer_is_not_offered_fixes_and_a_forged_fix_is_refused`] — a
//!   viewer's pages offer no fix, a fix request forged from the viewer's
//!   own page (a `fetch` run in it) is refused by the relay, the audit log
//!   (Audit page, as an admin) shows the refusal, and nothing ran (the
//!   file the fix would delete is still there; an admin's same fix then
//!   deletes it);
//! * [`harness_drives_chromium`] — the harness itself, against a tiny
//!   static server of the test's own, so a broken harness is told apart
//!   from a broken page.
//!
//! Every page is checked for CSP violations in the browser's console and
//! photographed to `target/web-screenshots/` (`FIRSTLINE_UPDATE_DOCS=1`
//! also refreshes the README's `docs/img/fleet.png` and `ticket.png`).
//! Security without a browser (secret, Host, Origin, CSP header) is
//! `tests/web_guard.rs`'s.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::browser::{Browser, WebConsole};
use firstline_tests::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const SLOW: Duration = Duration::from_secs(30);

/// A serving relay and a running agent `pc1` (tags `floor2`, `desk`; a
/// monitor on the test's folder that holds) whose policy allows one fix,
/// `clean-temp`, and only in the test's own `junk` folder — which holds a
/// file a month old (what that fix deletes) and a recent folder (what it
/// keeps).
struct Site {
    tmp: tempfile::TempDir,
    relay: Relay,
    agent: Agent,
    junk: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut relay = Relay::init(root);
        relay.serve();
        let junk = root.join("junk");
        // Recent files (kept by clean-temp): what the runbook's `du` shows.
        std::fs::create_dir_all(junk.join("browser-cache")).unwrap();
        std::fs::write(junk.join("browser-cache/recent.bin"), vec![7u8; 256 * 1024]).unwrap();
        let old = junk.join("old.log");
        std::fs::write(&old, "a month old\n").unwrap();
        let month = SystemTime::now() - Duration::from_secs(30 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(month)
            .unwrap();
        // A monitor that holds (pc1's health is `ok`).
        let monitor = format!(
            "name = \"junk-disk\"\ncheck = \"disk\"\nargs = [{:?}, \"--warn\", \"99\", \"--crit\", \"100\"]",
            junk.display().to_string()
        );
        let agent = start_agent(&relay, "pc1", &["floor2", "desk"], &monitor, &junk);
        Site {
            tmp,
            relay,
            agent,
            junk,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A console logged in as a new operator; waits until it sees pc1 online.
    fn console(&self, name: &str, role: &str) -> Console {
        let console = console_as(&self.relay, self.root(), name, role);
        let online = wait_until(SLOW, || console.online("pc1"));
        assert!(
            online,
            "pc1 never online\nagent:\n{}\nrelay:\n{}",
            self.agent.log(),
            self.relay.log()
        );
        console
    }

    fn old_file(&self) -> PathBuf {
        self.junk.join("old.log")
    }
}

/// Enroll `name` with `tags`, give it one `[[monitor]]` (the body of the
/// table) checked every second and a policy allowing only `clean-temp` in
/// `junk`, and start it.
fn start_agent(relay: &Relay, name: &str, tags: &[&str], monitor: &str, junk: &Path) -> Agent {
    let root = relay.dir.parent().unwrap();
    let mut token_args = Vec::new();
    for t in tags {
        token_args.extend(["--tag", t]);
    }
    let mut agent = Agent::new(root, name);
    let out = agent.enroll(&relay.addr, &relay.token(&token_args));
    assert!(out.status.success(), "enroll {name}: {}", text(&out));
    agent.append(&format!(
        "[policy]\nfixes = [\"clean-temp\"]\nclean_temp_roots = [{:?}]\n\n\
         [[monitor]]\n{monitor}\nevery = \"1s\"\nfail_after = 1\n",
        junk.display().to_string()
    ));
    agent.start();
    agent
}

/// A browser logged in to `web` through its printed secret URL.
fn login(label: &str, web: &WebConsole) -> Browser {
    login_nth(label, web, 0)
}

/// [`login`] with the `n`-th URL the console printed: each logs in once.
fn login_nth(label: &str, web: &WebConsole, n: usize) -> Browser {
    let b = Browser::new(label);
    b.goto(&web.nth_url(n));
    b.wait_for("#operator");
    // The secret is exchanged for a cookie and leaves the address bar.
    assert!(!b.url().contains("secret"), "{}", b.url());
    b
}

/// `ticket new TITLE --agent pc1 --json`: the ticket's number.
fn new_ticket(console: &Console, title: &str) -> u64 {
    let t = ok_json(console.run(&["ticket", "new", title, "--agent", "pc1", "--json"]));
    t["id"]
        .as_u64()
        .or_else(|| t["ticket"]["id"].as_u64())
        .unwrap_or_else(|| panic!("no ticket number in {t}"))
}

#[test]
fn fleet_machine_check_runbook_and_live() {
    let site = Site::new();
    // A second machine whose monitor fails: the root filesystem over 2 %.
    let _pc2 = start_agent(
        &site.relay,
        "pc2",
        &["floor3", "printers"],
        "name = \"root-disk\"\ncheck = \"disk\"\nargs = [\"/\", \"--warn\", \"1\", \"--crit\", \"2\"]",
        &site.junk,
    );
    let tech = site.console("tina", "technician");
    let health_of = |name: &str| {
        let agents = tech.agents();
        let a = agents.iter().find(|a| a["name"] == name).cloned();
        a.map(|a| {
            (
                a["online"] == true,
                a["health"].as_str().unwrap_or("").to_lowercase(),
            )
        })
    };
    let settled = wait_until(SLOW, || {
        health_of("pc1") == Some((true, "ok".into()))
            && health_of("pc2") == Some((true, "crit".into()))
    });
    assert!(settled, "health never settled: {:?}", tech.agents());
    let web = WebConsole::start(&tech, &[]);
    let b = login("technician", &web);

    // ---- Fleet: the agents, online, with the health the CLI reports ----
    assert_eq!(b.wait_for("#role"), "technician");
    for (name, health) in [("pc1", "ok"), ("pc2", "crit")] {
        let row = format!("#fleet tr[data-agent={name}]");
        b.wait_text(&row, "online");
        let shown = b.wait_for(&format!("{row} .status"));
        assert_eq!(shown.to_lowercase(), health, "{name}: the page vs the CLI");
    }
    let tags = b.wait_for("#fleet tr[data-agent=pc1] td[data-label=Tags]");
    assert!(tags.contains("floor2") && tags.contains("desk"), "{tags}");
    let summary = b.wait_for("#fleet-summary");
    assert!(
        summary.starts_with("2 machines, 2 online · ok 1 · warn 0 · crit 1"),
        "{summary}"
    );
    // Worst first.
    b.select("#sort", "health");
    b.submit("form.filters");
    b.wait_js("document.querySelector('#fleet tbody tr').dataset.agent === 'pc2'");
    b.assert_no_csp_violation();
    b.screenshot_docs("fleet");

    // ---- Machine: a check, its result streamed in ----
    b.click("#fleet tr[data-agent=pc1] th a");
    b.wait_for("#machine[data-agent=pc1]");
    b.wait_text("#monitors tbody tr", "junk-disk");
    b.select("#check-name", "disk");
    let junk = site.junk.display().to_string();
    b.fill("#check-args", &format!("{junk} --warn 99 --crit 100"));
    b.click("[data-test=run-check]");
    let result = b.wait_text_within(
        "[data-test=job] [data-test=result]",
        &format!("disk {junk}"),
        SLOW,
    );
    assert!(result.to_lowercase().starts_with("ok"), "{result}");
    b.wait_text("[data-test=job] [data-test=job-state]", "done");
    b.assert_no_csp_violation();

    // ---- a runbook: disk-full on the test's folder, thresholds it must
    // exceed; its clean-temp runs for real (the policy allows it there
    // only), its journal step is refused by the policy ----
    b.click("details[data-runbook=disk-full] summary");
    let form = "details[data-runbook=disk-full] form";
    b.fill(&format!("{form} input[name='param.path']"), &junk);
    b.fill(&format!("{form} input[name='param.temp']"), &junk);
    b.fill(&format!("{form} input[name='param.warn']"), "1");
    b.fill(&format!("{form} input[name='param.crit']"), "2");
    b.click(&format!("{form} [data-test=run-runbook]"));
    let verdict = b.wait_text_within("[data-test=job] [data-test=verdict]", "still-full", SLOW);
    assert_eq!(
        b.wait_for("[data-test=job] [data-test=verdict-cause]"),
        "still-full"
    );
    let kind = b.wait_for("[data-test=job] [data-test=verdict-kind]");
    assert_eq!(kind.to_lowercase(), "escalate");
    let message = b.wait_for("[data-test=job] [data-test=verdict-message]");
    assert!(
        message.contains("largest folders") && message.contains("browser-cache"),
        "{message}"
    );
    let steps = b.texts("[data-test=job] [data-test=verdict-steps] > li");
    assert!(
        steps
            .iter()
            .any(|s| s.contains("clean") && s.contains("clean-temp")),
        "{steps:?}\n{verdict}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.to_lowercase().starts_with("skipped") && s.contains("journal")),
        "the journal step is refused by the policy: {steps:?}"
    );
    assert!(
        !site.old_file().exists(),
        "the runbook's clean-temp ran for real in its folder"
    );
    b.assert_no_csp_violation();
    b.scroll_to("#results");
    b.screenshot("machine");
    b.scroll_to("[data-test=job] [data-test=verdict]");
    b.screenshot("machine-verdict");

    // ---- Live: a ticket change shows as it happens ----
    b.goto(&web.page("/live"));
    b.wait_js("document.getElementById('live-status').dataset.state === 'watching'");
    let id = new_ticket(&tech, "Printer on floor 2 jams");
    let notice = b.wait_text_within("#live li", "Printer on floor 2 jams", SLOW);
    assert!(notice.contains("pc1"), "{notice}");
    assert!(
        b.exists(&format!("#live li a[href='/tickets/{id}']")),
        "{notice}"
    );
    b.assert_no_csp_violation();
    b.screenshot("live");
}

// Plain HTML form posts from our own pages (comment, status, assign,
// priority): they pass the origin check because the pages are served with
// `Referrer-Policy: same-origin` (under `no-referrer` Chromium sends
// `Origin: null`, which the guard refuses).
#[test]
fn ticket_changes_show_on_a_second_page() {
    let site = Site::new();
    let tech = site.console("tina", "technician");
    let web = WebConsole::start(&tech, &[]);
    let a = login("ticket-a", &web);
    let b = login_nth("ticket-b", &web, 1);

    // ---- page A opens a ticket from the Tickets page ----
    a.goto(&web.page("/tickets"));
    a.click("details.new-ticket summary");
    a.fill("#n-title", "Cannot print the payroll");
    a.fill("#n-agent", "pc1");
    a.select("#n-priority", "high");
    a.fill(
        "#n-body",
        "Ana's printer on floor 2 says paper jam; there is none.",
    );
    a.submit("#new-ticket");
    let id: u64 = a
        .wait_attr("#ticket", "data-ticket")
        .parse()
        .unwrap_or_else(|e| a.fail(&format!("ticket number: {e}")));
    assert_eq!(a.wait_for("#ticket-priority").to_lowercase(), "high");
    a.goto(&web.page("/tickets"));
    let row = format!("#tickets tr[data-ticket='{id}']");
    a.wait_text(&row, "Cannot print the payroll");
    a.assert_no_csp_violation();
    a.screenshot("tickets");

    // ---- the ticket in two pages ----
    a.click(&format!("{row} th a"));
    a.wait_for(&format!("#ticket[data-ticket='{id}']"));
    b.goto(&web.page(&format!("/tickets/{id}")));
    b.wait_text("#live-state", "changes show here");
    assert_eq!(b.wait_for("#ticket-status").to_lowercase(), "open");
    // The second page must not reload: a mark set now has to survive.
    b.js("window.w3NotReloaded = true; return true;", vec![]);

    // ---- page A comments: page B shows it ----
    a.fill("#comment-text", "Toner replaced; asked Ana to print again.");
    a.submit("#comment-form");
    a.wait_text_within("#timeline [data-test=entry]", "Toner replaced", SLOW);
    let entry = b.wait_text_within("#timeline [data-test=entry]", "Toner replaced", SLOW);
    assert!(entry.contains("tina"), "the author: {entry}");

    // ---- page A resolves: page B's status and buttons change ----
    a.fill("#resolve-comment", "Payroll printed fine.");
    a.click("#ticket-resolve");
    a.wait_text("#ticket-status", "resolved");
    b.wait_text_within("#ticket-status", "resolved", SLOW);
    b.wait_text_within("#timeline [data-test=entry]", "Payroll printed fine", SLOW);
    b.wait_js("document.getElementById('ticket-resolve').closest('form').hidden");
    assert_eq!(
        b.js("return window.w3NotReloaded === true;", vec![]),
        Value::Bool(true),
        "page B was reloaded: it must change live"
    );
    let shown = ok_json(tech.run(&["ticket", "show", &id.to_string(), "--json"]));
    let status = shown["status"]
        .as_str()
        .or_else(|| shown["ticket"]["status"].as_str())
        .unwrap_or_default()
        .to_string();
    assert_eq!(status, "resolved", "{shown}");
    a.assert_no_csp_violation();
    b.assert_no_csp_violation();
    b.fit_to_page(1600);
    b.screenshot_docs("ticket");
}

/// Run in the viewer's own page: post a real fix to `/actions` as the
/// page's script would (same origin, the session cookie), then read the
/// job's whole event stream; `{start, events}`.
const FORGE_FIX: &str = r#"
const [args, done] = arguments;
(async () => {
  const body = new URLSearchParams({ target: "pc1", kind: "fix", name: "clean-temp", args });
  const r = await fetch("/actions", {
    method: "POST",
    headers: { Accept: "application/json" },
    body,
    credentials: "same-origin",
  });
  const start = await r.json();
  if (!start.job) return done({ status: r.status, start });
  const ev = await fetch(start.events, { credentials: "same-origin" });
  done({ status: r.status, start, events: await ev.text() });
})().catch((e) => done({ thrown: String(e) }));
"#;

#[test]
fn viewer_is_not_offered_fixes_and_a_forged_fix_is_refused() {
    let site = Site::new();
    let viewer = site.console("vera", "viewer");
    let admin = site.console("root", "admin");
    let web = WebConsole::start(&viewer, &[]);
    let b = login("viewer", &web);
    assert_eq!(b.wait_for("#role"), "viewer");

    // ---- not offered: fixes, runbooks, the audit page ----
    b.wait_text("#fleet tr[data-agent=pc1]", "online");
    assert_eq!(b.texts("#act #kind option"), ["check"]);
    assert!(!b.exists("#act #dry_run"), "no dry run to tick either");
    assert!(!b.exists("nav a[href='/audit']"));
    b.goto(&web.page("/machines/pc1"));
    b.wait_for("[data-test=check-form]");
    for offered in [
        "[data-test=fix-form]",
        "#fix-form",
        "[data-test=runbook-form]",
        "form input[name=kind][value=fix]",
        "form input[name=kind][value=runbook]",
    ] {
        assert!(!b.exists(offered), "a viewer is offered {offered}");
    }
    b.assert_no_csp_violation();
    b.screenshot("machine-viewer");

    // ---- a forged fix from the viewer's page: the relay refuses it ----
    let args = format!("{} --older-than 1d", site.junk.display());
    let forged = b.js_async(FORGE_FIX, vec![json!(args)]);
    let events = forged["events"]
        .as_str()
        .unwrap_or_else(|| panic!("the job did not start: {forged}"));
    assert!(events.contains("event: error"), "{events}");
    assert!(events.contains("relay code: forbidden"), "{events}");
    assert!(events.contains("needs role technician"), "{events}");
    assert!(!events.contains("event: result"), "{events}");
    assert!(site.old_file().exists(), "the forged fix deleted a file");
    assert!(
        !site.agent.log().contains("clean-temp"),
        "the agent was asked:\n{}",
        site.agent.log()
    );

    // ---- the audit log shows the refusal (CLI and Audit page) ----
    let audit = ok_json(admin.run(&["audit", "--json"]));
    let refusal = audit.as_array().unwrap().iter().find(|e| {
        e["who"] == "vera"
            && e["agent"] == "pc1"
            && e["action"].as_str().unwrap_or_default().contains("fix")
            && e["outcome"]
                .as_str()
                .unwrap_or_default()
                .starts_with("forbidden")
    });
    assert!(refusal.is_some(), "no refusal audited: {audit:#}");
    let admin_web = WebConsole::start(&admin, &[]);
    let a = login("admin", &admin_web);
    a.goto(&admin_web.page("/audit?q=vera"));
    let row = a.wait_text("#audit tbody tr", "forbidden");
    assert!(row.contains("vera") && row.contains("pc1"), "{row}");
    a.click("#verify");
    a.wait_text("#verify-result", "holds");
    a.assert_no_csp_violation();
    a.screenshot("audit");

    // ---- and the same fix, from an admin, would have deleted the file ----
    let junk = site.junk.display().to_string();
    let out = admin.run(&["fix", "pc1", "clean-temp", &junk, "--older-than", "1d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!site.old_file().exists(), "{}", text(&out));
}

/// A tiny HTTP/1.0 server on loopback for the harness self-test: `/` is a
/// page under a strict CSP whose own script fills a result from a form;
/// `/bad` carries an inline script that CSP blocks; `/app.js` is the script.
fn static_site() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (kind, body) = match path.as_str() {
                "/app.js" => (
                    "text/javascript",
                    "document.getElementById('f').addEventListener('submit', function (e) {\n\
                       e.preventDefault();\n\
                       var n = document.getElementById('name').value;\n\
                       setTimeout(function () {\n\
                         document.getElementById('out').textContent = 'hello ' + n;\n\
                       }, 300);\n\
                     });\n"
                        .to_string(),
                ),
                "/bad" => (
                    "text/html",
                    "<!doctype html><title>bad</title><p id=x>bad</p>\
                     <script>document.getElementById('x').textContent = 'ran';</script>"
                        .to_string(),
                ),
                _ => (
                    "text/html",
                    "<!doctype html><title>harness</title>\
                     <h1 data-test=title>Harness page</h1>\
                     <form id=f><input id=name name=name><button type=submit>Go</button></form>\
                     <p id=out></p><script src=/app.js></script>"
                        .to_string(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: {kind}; charset=utf-8\r\n\
                 Content-Security-Policy: default-src 'self'\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn harness_drives_chromium() {
    let site = static_site();
    let b = Browser::new("harness");
    b.goto(&format!("{site}/"));
    assert_eq!(b.title(), "harness");
    assert_eq!(b.wait_for("[data-test=title]"), "Harness page");
    b.fill("#name", "tina");
    b.submit("#f");
    assert_eq!(b.wait_text("#out", "hello"), "hello tina");
    b.assert_no_csp_violation();
    let shot = b.screenshot("harness");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{}", shot.display());

    // A page whose inline script CSP blocks: the violation is seen.
    b.goto(&format!("{site}/bad"));
    assert_eq!(b.wait_for("#x"), "bad", "the inline script must not run");
    let v = b.csp_violations();
    assert!(
        !v.is_empty(),
        "no CSP violation seen: {:?}",
        b.console_log()
    );
}
