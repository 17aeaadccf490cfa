//! Issue 10, the attacks themselves, with real processes: each test performs
//! an attack on a real relay, agent and console (and, where the real
//! binaries would never send it, a raw QUIC peer of `support/raw.rs`) and
//! asserts that it now fails.
//!
//! 1. wrapper plugins (`negate`, `urlize`, `check_by_ssh` of the Debian
//!    monitoring-plugins packages): refused by the relay to a viewer, by the
//!    agent to a technician, a config error when listed; allowed plugins run
//!    confined (`setpriv`, `run_as`, no environment);
//! 2. role by effect: a runbook cannot lift a technician to an admin script,
//!    a viewer cannot use `--contains` / `--send` as a content oracle;
//! 3. revocation during renewal: a revoked agent cannot renew, reconnect or
//!    be enrolled again under its name;
//! 4. unauthenticated peers: oversized and hostile enrollment requests, the
//!    per-source enrollment rate, connection bounds, receive buffers;
//! 5. lists of any size, oversized and hostile agent events and hellos;
//! 6. terminal injection from a TCP banner;
//! 7. an event flood from an agent is paced.
//!
//! Everything stays on loopback. No timing assertions: waits are generous,
//! bounds are on counts and sizes (a slow machine only loosens them).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_proto::{limits, ErrorCode, Message};
use firstline_tests::plugin::StatePlugin;
use firstline_tests::raw::{self, Peer};
use firstline_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(30);
const ESC: u8 = 0x1b;
/// Where Debian's monitoring-plugins install (the agent's default
/// `plugins_dir`).
const NAGIOS_PLUGINS: &str = "/usr/lib/nagios/plugins";

// ---------------------------------------------------------------- helpers

/// A real plugin of the Debian monitoring-plugins packages, in the agent's
/// default plugins folder, or a failure naming the package to install.
fn require_plugin(name: &str, package: &str) -> PathBuf {
    let path = Path::new(NAGIOS_PLUGINS).join(name);
    assert!(
        path.is_file(),
        "{} is not installed: this test needs the Debian package `{package}` \
         (run .ci/install-peers, or apt-get install {package})",
        path.display()
    );
    path
}

/// A relay with nothing else, its `relay.toml` set with `keys`.
fn relay_with(root: &Path, keys: &str) -> Relay {
    let relay = Relay::init(root);
    if !keys.is_empty() {
        relay.configure(keys);
    }
    relay
}

/// `Relay::serve`, logging without colours: the log file then holds no
/// ESC byte of its own, and any ESC in it came from a peer.
fn serve_plain(relay: &mut Relay) {
    let log = relay.dir.join("serve-plain.log");
    relay.proc = Some(Proc::spawn(
        Command::new(bin("firstline-relay"))
            .args(["serve", "--config"])
            .arg(&relay.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1"),
        &log,
    ));
    let ok = wait_until(SLOW, || relay.log().contains("relay listening"));
    assert!(ok, "relay did not start:\n{}", relay.log());
}

fn relay_alive(relay: &mut Relay) -> bool {
    relay.proc.as_mut().is_some_and(|p| p.exited().is_none())
}

fn relay_pid(relay: &Relay) -> u32 {
    relay.proc.as_ref().unwrap().child.id()
}

/// Start the agent with extra environment variables (`Agent::start` with
/// an environment of the test's choosing).
fn start_agent_with_env(agent: &mut Agent, env: &[(&str, &str)]) {
    let log = agent.dir.join(format!("run-env-{}.log", env.len()));
    let mut cmd = Command::new(bin("firstline-agent"));
    cmd.args(["run", "--config"])
        .arg(&agent.config)
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    agent.proc = Some(Proc::spawn(&mut cmd, &log));
}

fn stop_agent(agent: &mut Agent) {
    if let Some(mut p) = agent.proc.take() {
        p.kill();
    }
}

fn wait_online(console: &Console, agent: &Agent) {
    assert!(
        wait_until(SLOW, || console.online(&agent.name)),
        "{} never online:\n{}",
        agent.name,
        agent.log()
    );
}

fn restart(s: &mut Setup) {
    stop_agent(&mut s.agent);
    s.agent.start();
    // The relay may still show the killed process's connection online: wait
    // for the new one.
    assert!(
        wait_until(SLOW, || s.agent.log().contains(" connected relay=")),
        "the agent never connected again:\n{}",
        s.agent.log()
    );
    wait_online(&s.console, &s.agent);
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    chmod(path, 0o755);
}

fn open_ro(path: &Path) -> rusqlite::Connection {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

fn relay_db(relay: &Relay) -> rusqlite::Connection {
    open_ro(&relay.dir.join("relay.db"))
}

fn count(relay: &Relay, sql: &str, params: impl rusqlite::Params) -> i64 {
    relay_db(relay)
        .query_row(sql, params, |r| r.get(0))
        .unwrap()
}

/// Bytes of the relay's database on disk (the file and its WAL).
fn db_bytes(relay: &Relay) -> u64 {
    ["relay.db", "relay.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(relay.dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Resident memory of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// Refused with exit status 1, nothing on stdout, and stderr holding
/// every one of `words`.
fn assert_refused(out: &Output, words: &[&str], what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(out));
    assert!(stdout(out).trim().is_empty(), "{what}: {}", text(out));
    let err = stderr(out);
    for w in words {
        assert!(
            err.contains(w),
            "{what}: stderr should mention `{w}`: {}",
            text(out)
        );
    }
}

/// No ESC byte anywhere, and no line that starts with `forged`.
fn assert_no_injection(bytes: &[u8], forged: &str, what: &str) {
    let shown = String::from_utf8_lossy(bytes);
    assert!(
        !bytes.contains(&ESC),
        "{what}: a raw ESC byte got through:\n{shown}"
    );
    assert!(
        !bytes.contains(&0x07),
        "{what}: a raw BEL byte got through:\n{shown}"
    );
    assert!(
        !shown.lines().any(|l| l.starts_with(forged)),
        "{what}: a forged line starting `{forged}`:\n{shown}"
    );
}

/// A TCP server on loopback, one thread, that answers every connection
/// with `reply(request_head)` and closes it.
fn tcp_server(reply: impl Fn(&[u8]) -> Vec<u8> + Send + 'static, read_request: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            if read_request {
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            }
            let _ = conn.write_all(&reply(&head));
            let _ = conn.flush();
            // Let the client read before the socket goes.
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    port
}

/// A one-page HTTP server whose page holds `body`.
fn http_server(body: &'static str) -> u16 {
    tcp_server(
        move |_| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
        true,
    )
}

// ------------------------------------------------------- 1. plugins

#[test]
fn wrapper_plugins_are_refused_by_the_relay_and_by_the_agent() {
    for (name, package) in [
        ("negate", "monitoring-plugins-common"),
        ("urlize", "monitoring-plugins-common"),
        ("check_by_ssh", "monitoring-plugins-basic"),
        ("check_dummy", "monitoring-plugins-basic"),
        ("check_log", "monitoring-plugins-basic"),
    ] {
        require_plugin(name, package);
    }
    // The agent's plugins folder is the default one, holding the real
    // wrappers: only the relay's roles and the agent's policy stand between
    // a console and them.
    let s = Setup::new("technician");
    let viewer = console_as(&s.relay, s.root(), "watcher", "viewer");
    let marker = |n: &str| s.root().join(n);
    let sh = |m: &Path| format!("id > {}; exit 2", m.display());
    let pwned = marker("PWNED");

    // (a) A viewer: refused by the relay, for the role.
    let negate = ["run", "pc1", "plugin", "negate", "/bin/sh", "-c"];
    let mut args = negate.to_vec();
    let cmd = sh(&pwned);
    args.push(&cmd);
    let out = viewer.run(&args);
    assert_refused(&out, &["technician", "viewer"], "viewer: plugin negate");

    // (b) A technician passes the relay; the agent refuses the wrapper.
    let out = s.console.run(&args);
    assert_refused(
        &out,
        &["negate", "never allowed"],
        "technician: plugin negate",
    );
    // …wherever the check's own options put it on the line.
    let mut timed = vec![
        "run",
        "pc1",
        "plugin",
        "--timeout",
        "5s",
        "negate",
        "/bin/sh",
        "-c",
    ];
    timed.push(&cmd);
    let out = s.console.run(&timed);
    assert_refused(
        &out,
        &["never allowed"],
        "technician: plugin --timeout 5s negate",
    );

    // (c) The other wrappers: check_by_ssh's ProxyCommand, urlize.
    let pwned2 = marker("PWNED2");
    let proxy = format!("ProxyCommand=sh -c \"id > {}\"", pwned2.display());
    let out = s.console.run(&[
        "run",
        "pc1",
        "plugin",
        "check_by_ssh",
        "-H",
        "127.0.0.1",
        "-C",
        "true",
        "-o",
        &proxy,
    ]);
    assert_refused(
        &out,
        &["check_by_ssh", "never allowed"],
        "check_by_ssh ProxyCommand",
    );
    let pwned3 = marker("PWNED3");
    let cmd3 = sh(&pwned3);
    let out = s
        .console
        .run(&["run", "pc1", "plugin", "urlize", "/bin/sh", "-c", &cmd3]);
    assert_refused(&out, &["urlize", "never allowed"], "urlize /bin/sh");

    // A plugin off the allow-list; plugin options read from a file.
    let out = s.console.run(&[
        "run",
        "pc1",
        "plugin",
        "check_log",
        "-F",
        "/etc/shadow",
        "-O",
        "/dev/null",
        "-q",
        "x",
    ]);
    assert_refused(&out, &["[policy] plugins"], "check_log (not listed)");
    let out = s.console.run(&[
        "run",
        "pc1",
        "plugin",
        "check_disk",
        "--extra-opts=disk@/etc/shadow",
    ]);
    assert_refused(&out, &["--extra-opts"], "check_disk --extra-opts");

    // Nothing ran: no marker anywhere, none in the plugins folder either
    // (a plugin's working directory).
    for m in [&pwned, &pwned2, &pwned3] {
        assert!(!m.exists(), "{} was created: the wrapper ran", m.display());
    }
    for n in ["PWNED", "PWNED2", "PWNED3"] {
        assert!(!Path::new(NAGIOS_PLUGINS).join(n).exists());
    }
    // The refusals are specific: an allowed plugin does run.
    let out = s
        .console
        .run(&["run", "pc1", "plugin", "check_dummy", "0", "all-fine"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("all-fine"), "{}", text(&out));
}

#[test]
fn listing_a_wrapper_plugin_is_a_configuration_error() {
    let tmp = tempfile::tempdir().unwrap();
    for wrapper in ["negate", "urlize", "check_by_ssh"] {
        let path = tmp.path().join(format!("agent-{wrapper}.toml"));
        // `plugins` is on line 5.
        std::fs::write(
            &path,
            format!(
                "relay = \"127.0.0.1:9\"\nname = \"pc1\"\n\n[policy]\nplugins = [\"check_disk\", \"{wrapper}\"]\n"
            ),
        )
        .unwrap();
        let out = run(Command::new(bin("firstline-agent"))
            .args(["validate", "--config"])
            .arg(&path));
        assert_eq!(
            out.status.code(),
            Some(2),
            "validate {wrapper}: {}",
            text(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:5", path.display())) && err.contains(wrapper),
            "the error names the file, the line and the plugin: {}",
            text(&out)
        );
        // `run` refuses to start with it too.
        let mut agent = Proc::spawn(
            Command::new(bin("firstline-agent"))
                .args(["run", "--config"])
                .arg(&path),
            &tmp.path().join(format!("run-{wrapper}.log")),
        );
        assert!(
            wait_until(SLOW, || agent.exited().is_some()),
            "the agent started with {wrapper} allowed:\n{}",
            agent.log_text()
        );
        assert_eq!(
            agent.exited().unwrap().code(),
            Some(2),
            "{}",
            agent.log_text()
        );
    }
    // The same file without the wrapper is valid.
    let path = tmp.path().join("agent-ok.toml");
    std::fs::write(
        &path,
        "relay = \"127.0.0.1:9\"\nname = \"pc1\"\n\n[policy]\nplugins = [\"check_disk\"]\n",
    )
    .unwrap();
    let out = run(Command::new(bin("firstline-agent"))
        .args(["validate", "--config"])
        .arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A plugin (or script) that prints, on one line, its uid, the privilege
/// lines of its own /proc status, and the names of its environment.
const WHOAMI: &str = r#"#!/bin/sh
printf 'uid=%s ' "$(id -u)"
while IFS=: read -r key value; do
  case "$key" in NoNewPrivs|CapInh|CapPrm|CapEff|CapAmb) printf '%s=%s ' "$key" $value;; esac
done < /proc/$$/status
env | while IFS= read -r line; do printf 'env:%s ' "${line%%=*}"; done
echo
exit 0
"#;

const SECRET: &str = "hunter2-agent-secret";

/// What a confined program must have reported: the uid of `nobody`, no
/// privileges, none of the agent's environment.
fn assert_confined(report: &str, what: &str) {
    let nobody = String::from_utf8(run(Command::new("id").args(["-u", "nobody"])).stdout).unwrap();
    let nobody = nobody.trim();
    assert!(!nobody.is_empty(), "no user nobody on this machine");
    for want in [
        format!("uid={nobody} "),
        "NoNewPrivs=1 ".into(),
        "CapEff=0000000000000000 ".into(),
        "CapPrm=0000000000000000 ".into(),
        "CapInh=0000000000000000 ".into(),
        "CapAmb=0000000000000000 ".into(),
        "env:PATH ".into(),
    ] {
        assert!(
            report.contains(&want),
            "{what}: expected `{want}` in: {report}"
        );
    }
    for leak in ["FIRSTLINE_TEST_SECRET", "RUST_LOG", "env:HOME ", SECRET] {
        assert!(
            !report.contains(leak),
            "{what}: `{leak}` leaked into: {report}"
        );
    }
}

/// The agent itself runs as root with the secret in its environment: what
/// the confinement must not pass on.
fn assert_agent_privileged(agent: &Agent) {
    let pid = agent.proc.as_ref().unwrap().child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        String::from_utf8_lossy(&environ).contains(SECRET),
        "the agent was not started with the secret"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap();
    assert_eq!(uid, "0", "these tests run the agent as root");
}

/// A folder every user can enter, under the test's own temp folder (which
/// is made traversable too).
fn public_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    chmod(root, 0o755);
    chmod(&dir, 0o755);
    dir
}

#[test]
fn allowed_plugins_run_confined_as_run_as_without_the_agents_environment() {
    let mut s = Setup::new("technician");
    let dir = public_dir(s.root(), "own-plugins");
    write_exec(&dir.join("check_whoami"), WHOAMI);
    stop_agent(&mut s.agent);
    s.agent
        .configure(&format!("plugins_dir = \"{}\"", dir.display()));
    s.agent
        .append("[policy]\nplugins = [\"check_whoami\"]\nrun_as = \"nobody\"\n");
    start_agent_with_env(&mut s.agent, &[("FIRSTLINE_TEST_SECRET", SECRET)]);
    wait_online(&s.console, &s.agent);
    assert_agent_privileged(&s.agent);

    let out = s
        .console
        .run(&["run", "pc1", "plugin", "check_whoami", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let result = json(&out);
    assert_eq!(result["check"], "plugin", "{result}");
    assert_confined(result["summary"].as_str().unwrap(), "plugin");
}

#[test]
fn admin_scripts_run_confined_as_run_as_without_the_agents_environment() {
    // SECURITY.md, wall 3: "Plugins and scripts run through setpriv … and
    // as run_as when set"; policy.rs: run_as is for "plugins and scripts".
    let mut s = Setup::new("admin");
    let dir = public_dir(s.root(), "own-scripts");
    write_exec(&dir.join("whoami.sh"), WHOAMI);
    stop_agent(&mut s.agent);
    s.agent
        .configure(&format!("scripts_dir = \"{}\"", dir.display()));
    s.agent
        .append("[policy]\nscripts = true\nrun_as = \"nobody\"\n");
    start_agent_with_env(&mut s.agent, &[("FIRSTLINE_TEST_SECRET", SECRET)]);
    wait_online(&s.console, &s.agent);
    assert_agent_privileged(&s.agent);

    let out = s
        .console
        .run(&["fix", "pc1", "script", "whoami.sh", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let result = json(&out);
    let report = format!(
        "{} {}",
        result["summary"].as_str().unwrap_or_default(),
        result["changed"]
            .as_array()
            .map(|l| l
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    );
    assert_confined(&report, "admin script");
}

// --------------------------------------------------- 2. role by effect

/// A runbook whose script step takes the script's name from a parameter.
const COLLECT_RUNBOOK: &str = r#"name = "collect"
description = "collect logs"

[params]
script = { default = "collect.sh", help = "which script" }

[[step]]
id = "run"
fix = "script"
args = ["{script}"]
next = [{ if = "run.status == ok", verdict = "collected" }, { verdict = "failed" }]

[verdict.collected]
kind = "user-action"
message = "collected"
user_message = "done"

[verdict.failed]
kind = "escalate"
message = "failed"
user_message = "failed"
"#;

/// A harmless check, then an admin script named literally.
const LIFT_RUNBOOK: &str = r#"name = "lift"
description = "check, then wipe"

[[step]]
id = "look"
check = "disk"
args = ["/", "--warn", "100", "--crit", "100"]
next = [{ goto = "wipe" }]

[[step]]
id = "wipe"
fix = "script"
args = ["wipe.sh"]
next = [{ goto = "again" }]

[[step]]
id = "again"
check = "disk"
args = ["/", "--warn", "100", "--crit", "100"]
next = [{ if = "again.status == ok and wipe.status == ok", verdict = "wiped" }, { verdict = "failed" }]

[verdict.wiped]
kind = "resolved"
message = "wiped"
user_message = "done"

[verdict.failed]
kind = "escalate"
message = "failed"
user_message = "failed"
"#;

#[test]
fn a_runbook_cannot_lift_a_technician_to_an_admin_script() {
    let mut s = Setup::new("technician");
    let root = s.root().to_path_buf();
    let admin = console_as(&s.relay, &root, "boss", "admin");
    let marker = root.join("WIPED");
    let scripts = root.join("scripts");
    let runbooks = root.join("runbooks");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::create_dir_all(&runbooks).unwrap();
    write_exec(
        &scripts.join("wipe.sh"),
        &format!("#!/bin/sh\ntouch {}\necho wiped\n", marker.display()),
    );
    // (a) The script's name from a parameter: a technician could name any
    // admin script with it.
    std::fs::write(runbooks.join("collect.toml"), COLLECT_RUNBOOK).unwrap();
    // (b) A literal script step, after a harmless check.
    std::fs::write(runbooks.join("lift.toml"), LIFT_RUNBOOK).unwrap();
    s.agent.configure(&format!(
        "scripts_dir = \"{}\"\nrunbooks_dir = \"{}\"",
        scripts.display(),
        runbooks.display()
    ));
    s.agent.append("[policy]\nscripts = true\n");
    restart(&mut s);

    // (a) Listed as invalid, not runnable by anyone.
    let out = s.console.run(&["runbooks", "pc1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = json(&out);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"lift") && !names.contains(&"collect"),
        "{list}"
    );
    // The files the agent rejected: on stderr, beside the JSON array.
    assert!(
        stderr(&out)
            .lines()
            .any(|e| e.contains("collect.toml") && e.contains("names its script literally")),
        "{}",
        text(&out)
    );
    let out = s.console.run(&["runbooks", "pc1"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("invalid runbook:") && l.contains("collect.toml")),
        "{}",
        text(&out)
    );
    for console in [&s.console, &admin] {
        // Not a runbook of this agent: a usage error (exit 2) naming it.
        let out = console.run(&["runbook", "pc1", "collect", "script=wipe.sh"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(stderr(&out).contains("collect"), "{}", text(&out));
    }
    assert!(!marker.exists(), "the parameterised script step ran");

    // (b) By effect: a technician may not run a runbook with an admin step
    // (refused before any step runs, dry run or not) nor the script itself…
    for args in [
        vec!["runbook", "pc1", "lift"],
        vec!["runbook", "pc1", "lift", "--dry-run"],
        vec!["runbook", "pc1", "lift", "--json"],
    ] {
        let out = s.console.run(&args);
        assert_refused(&out, &["admin", "wipe"], &args.join(" "));
    }
    let out = s.console.run(&["fix", "pc1", "script", "wipe.sh"]);
    assert_refused(&out, &["admin"], "technician: fix script wipe.sh");
    assert!(!marker.exists(), "a technician ran the admin script");
    // …an admin may.
    let out = admin.run(&["runbook", "pc1", "lift"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "admin: runbook lift: {}",
        text(&out)
    );
    assert!(
        marker.exists(),
        "the admin's runbook did not run the script"
    );
}

#[test]
fn viewers_get_no_content_oracle() {
    let s = Setup::new("viewer");
    let tech = console_as(&s.relay, s.root(), "fixer", "technician");
    let page = "secret-token-4711";
    let port = http_server(page);
    let url = format!("http://127.0.0.1:{port}/");
    let tcp = format!("127.0.0.1:{port}");

    // Status and timing: a viewer's. The page's content never shows.
    let out = s.console.run(&["run", "pc1", "http", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["check"], "http");
    assert!(!stdout(&out).contains(page), "{}", text(&out));

    // Testing the content, or writing to the service: a technician's.
    for args in [
        vec!["run", "pc1", "http", &url, "--contains", "s"],
        vec!["run", "pc1", "http", &url, "--contains=s"],
        vec!["run", "pc1", "http", "--contains", "secret", &url],
        vec!["run", "pc1", "tcp", &tcp, "--send", "PING"],
        vec!["run", "pc1", "tcp", &tcp, "--send=PING", "--expect", "HTTP"],
    ] {
        let out = s.console.run(&args);
        assert_refused(&out, &["technician"], &args.join(" "));
    }
    // The relay audited each refusal.
    let audit = tech.run(&["audit", "--json"]);
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
    let forbidden = json(&audit)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "tech" && e["outcome"].as_str().unwrap().starts_with("forbidden"))
        .count();
    assert!(forbidden >= 5, "{}", stdout(&audit));

    // The rule is the role's: a technician may (and gets the oracle).
    let out = tech.run(&["run", "pc1", "http", &url, "--contains", "secret-token"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = tech.run(&["run", "pc1", "http", &url, "--contains", "no-such-text"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!stdout(&out).trim().is_empty(), "a result: {}", text(&out));
}

// ------------------------------------------------- 6. banner injection

#[test]
fn a_tcp_banner_cannot_drive_the_technicians_terminal() {
    let s = Setup::new("viewer");
    let banner = b"\x1b]0;pwned\x07\x1b[2J SSH-2.0-evil\r\nFORGED line\r\n";
    let port = tcp_server(move |_| banner.to_vec(), false);
    let target = format!("127.0.0.1:{port}");
    for args in [
        vec!["run", "pc1", "tcp", &target],
        vec!["run", "pc1", "tcp", &target, "--expect", "SSH"],
        vec!["run", "pc1", "tcp", &target, "--expect", "NOT-THERE"],
    ] {
        let out = s.console.run(&args);
        let what = args.join(" ");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{what}: {}",
            text(&out)
        );
        assert_no_injection(&out.stdout, "FORGED", &what);
        assert_no_injection(&out.stderr, "FORGED", &what);
        if args.len() > 4 {
            // The banner is shown (escaped), not dropped.
            assert!(
                stdout(&out).contains("SSH-2.0-evil"),
                "{what}: {}",
                text(&out)
            );
        }

        let mut with_json = args.clone();
        with_json.push("--json");
        let out = s.console.run(&with_json);
        assert_no_injection(&out.stdout, "FORGED", &format!("{what} --json"));
        let result = json(&out);
        assert_eq!(result["check"], "tcp");
        if args.len() > 4 {
            let summary = result["summary"].as_str().unwrap();
            assert!(summary.contains("SSH-2.0-evil"), "{summary}");
            assert!(
                summary.contains('\u{1b}') || summary.contains("\\u{1b}"),
                "the ESC is carried as an escape, not dropped: {summary}"
            );
        }
    }
}

// ------------------------------------------------------ 3. revocation

/// `[[monitor]]` of `check_state ARG` every second, opening and resolving
/// its incident on each result.
fn flapping_monitor(arg: &str) -> String {
    format!(
        "[[monitor]]\nname = \"flap\"\ncheck = \"plugin\"\nargs = [\"check_state\", \"{arg}\"]\n\
         every = \"1s\"\nfail_after = 1\nrecover_after = 1\n"
    )
}

#[test]
fn revoked_agents_cannot_renew_reconnect_or_enroll_again() {
    const AGENTS: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plugins = StatePlugin::new(root);
    let mut relay = relay_with(
        root,
        // Certificates of two minutes, revocations seen within 0.1 s, and a
        // new ticket for every failure (no reopening).
        "agent_cert_ttl_secs = 120\nrevocation_poll_ms = 100\nreopen_window_secs = 0",
    );
    relay.serve();
    let console = console_as(&relay, root, "tech", "technician");
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            let name = format!("rev{i}");
            let a = Agent::enrolled(root, &name, &relay);
            // Renewing every second: more validity wanted than ever given.
            a.configure(&format!(
                "renew_check_secs = 1\nrenew_before_secs = 100000\nplugins_dir = \"{}\"\n\
                 default_monitors = false\nreconnect_max_ms = 1000",
                plugins.dir.display()
            ));
            a.append(&flapping_monitor(&name));
            a.append(&StatePlugin::policy());
            plugins.set(&name, 2);
            plugins.flap(&name);
            a
        })
        .collect();
    for a in &mut agents {
        a.start();
    }
    for a in &agents {
        wait_online(&console, a);
    }
    let certs = |name: &str| {
        count(
            &relay,
            "SELECT COUNT(*) FROM certs WHERE kind = 'agent' AND name = ?1",
            [name],
        )
    };
    let tickets = |name: &str| {
        count(
            &relay,
            "SELECT COUNT(*) FROM tickets WHERE agent = ?1",
            [name],
        )
    };
    // Each is renewing and opening tickets.
    for a in &agents {
        assert!(
            wait_until(SLOW, || certs(&a.name) >= 3 && tickets(&a.name) >= 1),
            "{}: {} certificates, {} tickets\n{}",
            a.name,
            certs(&a.name),
            tickets(&a.name),
            a.log()
        );
    }

    // Revoke each at another moment of its renewal cycle.
    for (i, a) in agents.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(150 + 170 * i as u64));
        let out = relay.cmd(&["agent", "revoke", &a.name]);
        assert!(out.status.success(), "revoke {}: {}", a.name, text(&out));
    }
    for a in &agents {
        assert!(
            wait_until(SLOW, || !console.online(&a.name)),
            "{} still online after its revocation:\n{}",
            a.name,
            a.log()
        );
    }
    // Try to come back: the real agents again, with whatever certificate
    // they hold now (renewed while the revocation was under way or not)…
    for a in &mut agents {
        stop_agent(a);
        a.start();
    }
    // …and each identity from a raw client.
    let rt = raw::runtime();
    for a in &agents {
        let (welcomed, refused) = rt.block_on(async {
            match Peer::agent(&relay.addr, &a.dir).await {
                // Closed before the handshake was even done.
                Err(e) => (false, e.contains("revoked")),
                Ok(peer) => {
                    let answer = peer.hello("back", "again", "0").await;
                    let welcomed = answer
                        .messages
                        .iter()
                        .any(|m| matches!(m, Message::Welcome(_)));
                    let closed = tokio::time::timeout(SLOW, peer.conn.closed()).await;
                    let revoked = matches!(
                        &closed,
                        Ok(quinn::ConnectionError::ApplicationClosed(c))
                            if c.error_code == quinn::VarInt::from_u32(ErrorCode::Revoked.quic_code())
                    );
                    (welcomed, revoked)
                }
            }
        });
        assert!(
            !welcomed && refused,
            "{}: a revoked identity was not closed out as revoked (welcomed: {welcomed})",
            a.name
        );
    }
    // Offline, and staying so, for five seconds.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let online: Vec<String> = console
            .agents()
            .iter()
            .filter(|x| x["online"] == true)
            .map(|x| x["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(online.is_empty(), "revoked agents back online: {online:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    for a in &agents {
        let name = a.name.as_str();
        let out = console.run(&["run", name, "disk", "/"]);
        assert_refused(&out, &["revoked"], &format!("run {name} disk /"));
        let live = count(
            &relay,
            "SELECT COUNT(*) FROM certs WHERE kind = 'agent' AND name = ?1 AND revoked_at IS NULL",
            [name],
        );
        assert_eq!(live, 0, "{name}: a certificate outlived the revocation");
        let revoked_at: i64 = relay_db(&relay)
            .query_row(
                "SELECT revoked_at FROM agents WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        // A request already under way may finish within
        // `revocation_poll_ms` (SECURITY.md): a second of slack, as the
        // store counts in seconds.
        let late = count(
            &relay,
            "SELECT COUNT(*) FROM tickets WHERE agent = ?1 AND created_at > ?2 + 1",
            rusqlite::params![name, revoked_at],
        );
        assert_eq!(late, 0, "{name}: tickets opened after its revocation");
        // Enrolling again under the name, with a fresh token.
        let again = Agent::new(&root.join("again"), name);
        let out = again.enroll(&relay.addr, &relay.token(&[]));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(stderr(&out).contains("revoked"), "{}", text(&out));
        assert!(!again.dir.join("identity.pem").exists());
    }
}

// ------------------------------------------ 4. unauthenticated peers

/// An `enroll` request with these fields.
fn enroll(token: &str, name: &str, csr: &str) -> Message {
    Message::Enroll {
        token: token.into(),
        name: name.into(),
        csr_pem: csr.into(),
    }
}

/// One enrollment attempt on its own connection; the answer.
async fn attempt(relay: &str, token: &str, msg: Message) -> raw::Answer {
    let peer = Peer::enroll(relay, token).await.unwrap();
    let answer = peer.ask(msg).await;
    peer.close().await;
    answer
}

#[test]
fn oversized_and_hostile_enrollment_requests_are_neither_stored_nor_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    serve_plain(&mut relay);
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let token = relay.token(&[]);
    let rt = raw::runtime();
    let before = db_bytes(&relay);

    // (a) 30 names of 1 MB: over the 16 KiB cap of an enrollment request.
    let big = "n".repeat(1_000_000);
    for _ in 0..30 {
        let answer = rt.block_on(attempt(&relay.addr, &token, enroll(&token, &big, "x")));
        assert!(
            !answer
                .messages
                .iter()
                .any(|m| matches!(m, Message::Enrolled { .. })),
            "{answer:?}"
        );
        if let Some((code, _)) = answer.error() {
            assert_eq!(code, ErrorCode::FrameTooLarge, "{answer:?}");
        } else {
            assert!(answer.broken.is_some(), "{answer:?}");
        }
    }
    // 20 names of 15,000 characters: under the cap, refused by the name check.
    let long = "a".repeat(15_000);
    for _ in 0..20 {
        let answer = rt.block_on(attempt(&relay.addr, &token, enroll(&token, &long, "x")));
        let (code, message) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
        assert_eq!(code, ErrorCode::BadRequest, "{message}");
        assert!(message.contains("invalid agent name"), "{message}");
    }
    assert!(relay_alive(&mut relay), "the relay died:\n{}", relay.log());
    let grown = db_bytes(&relay).saturating_sub(before);
    assert!(grown < 1_000_000, "relay.db grew by {grown} bytes");
    let out = console.run(&["audit", "--limit", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = console.run(&["audit", "--json"]);
    assert!(
        !stdout(&out).contains(&"a".repeat(100)),
        "a long name was audited"
    );
    assert!(
        !relay.log().contains(&"a".repeat(100)),
        "a long name was logged"
    );

    // (b) Terminal sequences and a line break in the name, the token, the CSR.
    let hostile = "x\u{1b}]0;pwned\u{7}\nFORGED line";
    let answer = rt.block_on(attempt(&relay.addr, &token, enroll(&token, hostile, "x")));
    let (code, message) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(code, ErrorCode::BadRequest, "{message}");
    let bad_token = format!("fl1.{hostile}");
    let answer = rt.block_on(attempt(
        &relay.addr,
        &token,
        enroll(&bad_token, "tokenprobe", "x"),
    ));
    assert!(answer.error().is_some(), "{answer:?}");
    let csr = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{hostile}\n-----END CERTIFICATE REQUEST-----\n"
    );
    let answer = rt.block_on(attempt(
        &relay.addr,
        &token,
        enroll(&token, "csrprobe", &csr),
    ));
    assert!(answer.error().is_some(), "{answer:?}");
    assert_eq!(
        count(&relay, "SELECT COUNT(*) FROM agents", ()),
        0,
        "nobody enrolled"
    );

    let log = std::fs::read(&relay.proc.as_ref().unwrap().log).unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("enrollment refused"),
        "the attempts are logged:\n{}",
        relay.log()
    );
    assert_no_injection(&log, "FORGED", "relay log");
    let out = console.run(&["audit", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_injection(&out.stdout, "FORGED", "audit --json");
    let enrolls = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "enroll")
        .count();
    // Audited once per source and window (issue 24): all of these came
    // from 127.0.0.1 within a minute.
    assert!(
        (1..=2).contains(&enrolls),
        "the refused attempts are audited once per source and window ({enrolls} rows)"
    );
    let out = console.run(&["audit"]);
    assert_no_injection(&out.stdout, "FORGED", "audit");
    assert!(relay_alive(&mut relay), "the relay died:\n{}", relay.log());
}

#[test]
fn enrollment_attempts_are_rate_limited_per_source_address() {
    const PER_MINUTE: u64 = 5;
    const ATTEMPTS: usize = 8;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), &format!("enroll_per_minute = {PER_MINUTE}"));
    relay.serve();
    let token = relay.token(&[]);
    let mut parts: Vec<&str> = token.split('.').collect();
    let zeros = "0".repeat(32);
    parts[2] = &zeros;
    let wrong = parts.join(".");
    let rt = raw::runtime();

    let started = Instant::now();
    let mut limited = 0;
    let mut other = 0;
    for i in 0..ATTEMPTS {
        let answer = rt.block_on(attempt(
            &relay.addr,
            &wrong,
            enroll(&wrong, &format!("probe{i}"), "x"),
        ));
        let (code, message) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
        if message.contains("too many enrollment attempts") {
            assert_eq!(code, ErrorCode::Refused, "{message}");
            limited += 1;
        } else {
            assert_eq!(code, ErrorCode::TokenUnknown, "{message}");
            other += 1;
        }
    }
    // The real agent, right after, with a valid token.
    let late = Agent::new(tmp.path(), "late");
    let out = late.enroll(&relay.addr, &token);
    let elapsed = started.elapsed().as_secs();
    // A token refills every 60 / PER_MINUTE seconds: a slow run may earn more.
    let earned = PER_MINUTE + elapsed * PER_MINUTE / 60;
    assert!(limited >= 1, "no attempt was rate-limited ({other} others)");
    assert!(
        other as u64 <= earned,
        "{other} attempts got through, {earned} allowed"
    );
    if elapsed < 60 / PER_MINUTE - 1 {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains("too many enrollment attempts"),
            "{}",
            text(&out)
        );
        assert_eq!(count(&relay, "SELECT COUNT(*) FROM agents", ()), 0);
    }
    // Refusals for the rate are not audited (a flood cannot fill the log).
    let audited = count(
        &relay,
        "SELECT COUNT(*) FROM audit WHERE action = 'enroll'",
        (),
    );
    assert!(
        audited as u64 <= earned,
        "{audited} enrollment attempts audited"
    );

    // Another source address has its own allowance.
    let answer = rt.block_on(async {
        let peer = Peer::enroll_from(&relay.addr, &wrong, "127.0.0.2:0".parse().unwrap())
            .await
            .unwrap();
        peer.ask(enroll(&wrong, "elsewhere", "x")).await
    });
    let (code, message) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(code, ErrorCode::TokenUnknown, "{message}");
    assert!(relay_alive(&mut relay));
}

#[test]
fn unauthenticated_connections_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    // A first message may take long here: the idle connections below are
    // held by the bound, not by a timeout running out.
    let mut relay = relay_with(
        tmp.path(),
        "max_unauthenticated = 4\nfirst_message_timeout_secs = 600",
    );
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let cred = relay.dir.join("tech.credential.toml");
    let token = relay.token(&[]);
    let rt = raw::runtime();

    // Four enrollment connections that send nothing.
    let idle: Vec<Peer> = (0..4)
        .map(|_| rt.block_on(Peer::enroll(&relay.addr, &token)).unwrap())
        .collect();
    // A fifth connection of any kind is refused at its handshake.
    let fifth = rt.block_on(Peer::enroll(&relay.addr, &token));
    assert!(fifth.is_err(), "a fifth unauthenticated connection got in");
    let operator = rt.block_on(Peer::operator(&cred));
    assert!(operator.is_err(), "a fifth connection got in");
    let out = console.run(&["agents"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        relay.log().contains("limit reached"),
        "the refusal is logged:\n{}",
        relay.log()
    );
    // Once they are gone, connections get in again.
    for p in &idle {
        rt.block_on(p.close());
    }
    assert!(
        wait_until(SLOW, || rt
            .block_on(Peer::enroll(&relay.addr, &token))
            .is_ok()),
        "{}",
        relay.log()
    );
    let out = console.run(&["agents"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(relay_alive(&mut relay));
}

#[test]
fn silent_enrollment_connections_do_not_hold_their_slot() {
    // A peer that completes the handshake on the enrollment ALPN and then
    // opens no stream (its keep-alives hold the connection) must lose its
    // slot once `first_message_timeout_secs` passes: otherwise
    // `max_unauthenticated` such peers lock everyone out for good.
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(
        tmp.path(),
        "max_unauthenticated = 2\nfirst_message_timeout_secs = 2",
    );
    relay.serve();
    let token = relay.token(&[]);
    let rt = raw::runtime();
    let opened = Instant::now();
    let idle: Vec<Peer> = (0..2)
        .map(|_| rt.block_on(Peer::enroll(&relay.addr, &token)).unwrap())
        .collect();
    let third = rt.block_on(Peer::enroll(&relay.addr, &token));
    if opened.elapsed() < Duration::from_secs(1) {
        assert!(third.is_err(), "the bound of 2 did not hold");
    }
    // Keep-alives flowing all along.
    let grace = SLOW;
    let dropped = wait_until(grace, || {
        idle.iter().all(|p| p.conn.close_reason().is_some())
    });
    let new = rt.block_on(Peer::enroll(&relay.addr, &token));
    assert!(
        dropped && new.is_ok(),
        "silent enrollment connections still hold every unauthenticated slot {}s after \
         first_message_timeout_secs (2s) passed: the relay is locked for everyone",
        grace.as_secs()
    );
}

#[test]
fn stream_floods_before_authentication_do_not_bloat_the_relay() {
    const CONNECTIONS: usize = 4;
    const PER_STREAM: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let token = relay.token(&[]);
    let rt = raw::runtime();
    // Warm up (a first connection of each kind), then measure.
    assert_eq!(console.run(&["agents"]).status.code(), Some(0));
    rt.block_on(attempt(&relay.addr, &token, enroll(&token, "warmup", "x")));
    std::thread::sleep(Duration::from_millis(500));
    let pid = relay_pid(&relay);
    let before = vm_rss_kib(pid);

    let (peers, during, written) = rt.block_on(async {
        let mut peers = Vec::new();
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let peer = Peer::enroll(&relay.addr, &token).await.unwrap();
            // As many streams as the relay lets us open…
            for _ in 0..64 {
                let Ok(Ok((mut send, recv))) =
                    tokio::time::timeout(Duration::from_secs(1), peer.conn.open_bi()).await
                else {
                    break;
                };
                // …each sent 1 MiB that is never finished.
                writers.spawn(async move {
                    let chunk = vec![b'A'; 64 * 1024];
                    let mut sent = 0usize;
                    let until = tokio::time::Instant::now() + Duration::from_secs(5);
                    while sent < PER_STREAM {
                        match tokio::time::timeout_at(until, send.write(&chunk)).await {
                            Ok(Ok(n)) => sent += n,
                            _ => break,
                        }
                    }
                    // Keep the stream open (unfinished) for the measurement.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    drop(recv);
                    sent
                });
            }
            peers.push(peer);
        }
        // Measure while every stream is open and unfinished.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let during = vm_rss_kib(pid);
        let mut written = 0;
        while let Some(n) = writers.join_next().await {
            written += n.unwrap_or(0);
        }
        (peers, during, written)
    });
    let grown_mib = during.saturating_sub(before) / 1024;
    eprintln!(
        "{} KiB written on unauthenticated streams; relay VmRSS {} → {} KiB",
        written >> 10,
        before,
        during
    );
    assert!(written > 0, "the flood did not get going");
    // One stream each and 32 KiB in flight before authentication (issue
    // 24): what the relay may have to buffer for these peers.
    assert!(
        written <= CONNECTIONS * 64 * 1024,
        "{written} bytes in flight on {CONNECTIONS} unauthenticated connections"
    );
    assert!(
        grown_mib < 40,
        "the relay grew by {grown_mib} MiB for {CONNECTIONS} unauthenticated connections"
    );
    for p in &peers {
        rt.block_on(p.close());
    }
    assert!(relay_alive(&mut relay), "{}", relay.log());
    assert_eq!(console.run(&["agents"]).status.code(), Some(0));
}

// ------------------------------------------- 5. lists of any size

#[test]
fn tickets_timelines_and_audit_of_any_size_are_listed_in_full() {
    const ENTRIES: usize = 4_000;
    const TICKETS: usize = 3_000;
    const AUDITED: usize = 8;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");

    // Straight into the serving relay's database (WAL, busy timeout).
    let big_id: i64 = {
        let mut db = rusqlite::Connection::open(relay.dir.join("relay.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        let tx = db.transaction().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ticket = |title: &str| {
            tx.execute(
                "INSERT INTO tickets (title, status, priority, source, created_at, updated_at)
                 VALUES (?1, 'open', 'normal', 'technician', ?2, ?2)",
                rusqlite::params![title, now],
            )
            .unwrap();
            tx.last_insert_rowid()
        };
        let id = ticket("a long story");
        let filler = "x".repeat(390);
        for i in 0..ENTRIES {
            tx.execute(
                "INSERT INTO ticket_entries (ticket_id, at, kind, author, body)
                 VALUES (?1, ?2, 'comment', 'tech', ?3)",
                rusqlite::params![id, now, format!("entry {i} {filler}")],
            )
            .unwrap();
        }
        let title = "t".repeat(180);
        for i in 0..TICKETS {
            ticket(&format!("ticket {i} {title}"));
        }
        tx.commit().unwrap();
        id
    };

    let out = console.run(&["ticket", "show", &big_id.to_string(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.len() > firstline_proto::MAX_FRAME_LEN,
        "more than a frame"
    );
    let shown = json(&out);
    let entries = shown["entries"].as_array().unwrap();
    assert_eq!(entries.len(), ENTRIES);
    assert!(entries[ENTRIES - 1]["body"]
        .as_str()
        .unwrap()
        .starts_with(&format!("entry {} ", ENTRIES - 1)));

    let out = console.run(&["tickets", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.len() > firstline_proto::MAX_FRAME_LEN,
        "more than a frame"
    );
    assert_eq!(json(&out).as_array().unwrap().len(), TICKETS + 1);

    // An audit log larger than a frame: requests whose arguments are
    // nearly as large as a console request may be.
    let rt = raw::runtime();
    let arg = "y".repeat(200_000);
    rt.block_on(async {
        let peer = Peer::operator(&relay.dir.join("tech.credential.toml"))
            .await
            .unwrap();
        for _ in 0..AUDITED {
            let answer = peer
                .ask(Message::Run {
                    agent: "ghost".into(),
                    check: "disk".into(),
                    args: vec![arg.clone()],
                    ticket: None,
                    queue_for_secs: None,
                })
                .await;
            let (code, _) = answer.error().unwrap_or_else(|| panic!("{answer:?}"));
            assert_eq!(code, ErrorCode::UnknownAgent);
        }
        peer.close().await;
    });
    let out = console.run(&["audit", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.len() > firstline_proto::MAX_FRAME_LEN,
        "more than a frame"
    );
    let big = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["args"].as_str().is_some_and(|a| a.len() >= arg.len()))
        .count();
    assert_eq!(big, AUDITED);
    let out = console.run(&["audit", "--limit", "5", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 5, "{}", text(&out));
    assert!(relay_alive(&mut relay));
}

#[test]
fn a_hostile_agent_cannot_bloat_tickets_or_inject_terminal_sequences() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let console = console_as(&relay, tmp.path(), "look", "viewer");
    let agent = Agent::enrolled(tmp.path(), "evil", &relay);
    let rt = raw::runtime();
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J\nFORGED line";
    let pad = |c: &str| c.repeat(400_000);
    let events = [
        raw::incident(1, "m-big", &format!("first line {hostile}\n{}", pad("s"))),
        raw::incident(2, "m-big2", &format!("\u{1b}[2J{}", pad("z"))),
        raw::incident(3, &"m".repeat(300_000), &format!("small {hostile}")),
    ];
    rt.block_on(async {
        let peer = Peer::agent(&relay.addr, &agent.dir).await.unwrap();
        let welcome = peer
            .hello(
                &format!("host{hostile}"),
                &format!("os{hostile}"),
                &format!("1.0{hostile}"),
            )
            .await;
        assert!(
            matches!(welcome.messages.first(), Some(Message::Welcome(_))),
            "{welcome:?}"
        );
        for ev in events {
            let seq = ev.seq;
            assert_eq!(peer.events(vec![ev]).await, Ok(seq));
        }
        peer.close().await;
    });

    // Stored cut to size: titles of one line, summaries and monitor ids cut.
    let db = relay_db(&relay);
    let rows: Vec<(i64, String, String)> = db
        .prepare("SELECT id, title, monitor FROM tickets WHERE agent = 'evil' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let cut = |max: usize| max; // the `…` of a cut counts in the bound
    for (_, title, monitor) in &rows {
        assert!(
            title.len() <= cut(limits::TITLE),
            "title of {} bytes",
            title.len()
        );
        assert!(
            !title.contains(['\n', '\r']),
            "title of more than a line: {title:?}"
        );
        assert!(
            monitor.len() <= cut(limits::MONITOR_ID),
            "monitor id of {} bytes",
            monitor.len()
        );
    }
    let bodies: Vec<String> = db
        .prepare(
            "SELECT e.body FROM ticket_entries e JOIN tickets t ON t.id = e.ticket_id
             WHERE t.agent = 'evil' AND e.kind = 'opened'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        let result: Value = serde_json::from_str(body).unwrap();
        let summary = result["summary"].as_str().unwrap();
        assert!(
            summary.len() <= cut(limits::SUMMARY),
            "summary of {} bytes",
            summary.len()
        );
    }
    let longest: i64 = db
        .query_row(
            "SELECT COALESCE(MAX(LENGTH(CAST(summary AS BLOB))), 0) FROM monitor_status WHERE agent = 'evil'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        longest as usize <= cut(limits::SUMMARY),
        "monitor status of {longest} bytes"
    );

    // Shown escaped everywhere.
    let out = console.run(&["agents"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_injection(&out.stdout, "FORGED", "agents");
    let out = console.run(&["agents", "--json"]);
    assert_no_injection(&out.stdout, "FORGED", "agents --json");
    let listed = json(&out);
    let evil = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "evil")
        .unwrap();
    for field in ["hostname", "os", "version"] {
        let v = evil[field].as_str().unwrap();
        assert!(
            v.contains("pwned") && v.contains("FORGED"),
            "kept, escaped: {field} = {v:?}"
        );
        assert!(!v.contains('\n'), "{field} of more than a line: {v:?}");
    }
    for args in [vec!["tickets"], vec!["tickets", "--json"]] {
        let out = console.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_no_injection(&out.stdout, "FORGED", &args.join(" "));
    }
    for (id, _, _) in &rows {
        let id = id.to_string();
        for args in [
            vec!["ticket", "show", &id],
            vec!["ticket", "show", &id, "--json"],
        ] {
            let out = console.run(&args);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert_no_injection(&out.stdout, "FORGED", &args.join(" "));
        }
    }
    assert!(relay_alive(&mut relay));
}

// --------------------------------------------------- 7. event flood

#[test]
fn an_event_flood_from_an_agent_is_paced() {
    const EVENTS: u64 = 2_000;
    const BATCH: u64 = 200;
    const RATE: u64 = 50; // agent_events_per_sec, the default
    const BURST: u64 = 10 * RATE;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay_with(tmp.path(), "");
    relay.serve();
    let console = console_as(&relay, tmp.path(), "tech", "technician");
    let agent = Agent::enrolled(tmp.path(), "flood", &relay);
    let rt = raw::runtime();
    let peer = rt.block_on(Peer::agent(&relay.addr, &agent.dir)).unwrap();
    let welcome = rt.block_on(peer.hello("flood", "os", "1"));
    assert!(
        matches!(welcome.messages.first(), Some(Message::Welcome(_))),
        "{welcome:?}"
    );
    let peer = std::sync::Arc::new(peer);

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Result<u64, String>>::new()));
    let started = Instant::now();
    let sender = {
        let (peer, acked) = (peer.clone(), acked.clone());
        rt.spawn(async move {
            for b in 0..EVENTS / BATCH {
                let events = (b * BATCH + 1..=(b + 1) * BATCH)
                    .map(|seq| raw::incident(seq, &format!("monitor-{seq}"), "down"))
                    .collect();
                let r = peer.events(events).await;
                let failed = r.is_err();
                acked.lock().unwrap().push(r);
                if failed {
                    break;
                }
            }
        })
    };
    let tickets = || {
        count(
            &relay,
            "SELECT COUNT(*) FROM tickets WHERE agent = 'flood' AND source = 'alert'",
            [],
        )
    };
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs_f64();
    let stored = tickets() as u64;
    // The burst, the rate since, and one batch applied at once.
    let bound = BURST + (RATE as f64 * elapsed) as u64 + BATCH;
    eprintln!("{stored} of {EVENTS} alert tickets after {elapsed:.1} s (at most {bound} allowed)");
    assert!(
        stored <= bound,
        "{stored} tickets after {elapsed:.1} s: not paced (bound {bound})"
    );
    assert!(stored < EVENTS);

    // Consoles are still answered meanwhile.
    for args in [vec!["agents"], vec!["tickets", "--json"]] {
        let out = console.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    // Paced, not refused: the first batches were acknowledged.
    assert!(
        wait_until(SLOW, || !acked.lock().unwrap().is_empty()),
        "no batch acknowledged"
    );
    let first = acked.lock().unwrap().clone();
    assert!(first.iter().all(Result::is_ok), "{first:?}");
    assert!(tickets() >= BATCH as i64);
    sender.abort();
    rt.block_on(peer.close());
    assert!(relay_alive(&mut relay));
}
