//! Issue 23, end to end with real processes: whatever an argument makes a
//! check or a plugin do, it does it in a worker — as an unprivileged user,
//! with only its declared capabilities, inside a Landlock view, with CPU,
//! memory and wall-clock limits — and the agent itself stays online.
//!
//! Each attack is the one the review performed, plus variants: other
//! special files, other plugins whose options name files, other ways to
//! hang, spin or balloon.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// `firstline run pc1 ARGS… --json`: the result object, and how long it took.
fn result_of(s: &Setup, args: &[&str]) -> (Value, Duration) {
    let started = Instant::now();
    let mut all = vec!["run", "pc1"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = s.console.run(&all);
    let took = started.elapsed();
    let result = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["status"].is_string())
        .unwrap_or_else(|| panic!("no result for {args:?}: {}", text(&out)));
    (result, took)
}

/// A folder every user may traverse, inside the test's own temp folder.
fn open_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for d in [root, dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Restart `s`'s agent with the plugin `name` (a shell script `body`) in a
/// plugins folder every user may read, and allowed by its policy.
fn with_plugin(s: &mut Setup, name: &str, body: &str) {
    let dir = open_dir(s.root(), "plugins");
    let plugin = dir.join(name);
    std::fs::write(&plugin, body).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.agent
        .configure(&format!("plugins_dir = \"{}\"", dir.display()));
    s.agent
        .append(&format!("[policy]\nplugins = [\"{name}\"]\n"));
    s.agent.proc.as_mut().unwrap().kill();
    s.agent.start();
    assert!(
        wait_until(Duration::from_secs(30), || s.console.online("pc1")),
        "{}",
        s.agent.log()
    );
}

fn worker_count() -> usize {
    let out = run(std::process::Command::new("pgrep").args(["-f", "__firstline-worker"]));
    stdout(&out).lines().count()
}

#[test]
fn a_viewer_cannot_make_the_agent_read_devices_fifos_or_probe_for_files() {
    let s = Setup::new("viewer");
    let fifo = s.root().join("fifo");
    let made = run(std::process::Command::new("mkfifo").arg(&fifo));
    assert!(made.status.success(), "{}", text(&made));
    let socket_dir = open_dir(s.root(), "sock");
    let socket = socket_dir.join("s");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut cases: Vec<String> = ["/dev/urandom", "/dev/zero", "/proc/kcore", "/proc/self/mem"]
        .map(String::from)
        .to_vec();
    cases.push(fifo.display().to_string());
    cases.push(socket.display().to_string());
    for ca in &cases {
        let (r, took) = result_of(&s, &["http", "https://127.0.0.1:9/", "--ca", ca]);
        assert!(
            took < Duration::from_secs(10),
            "--ca {ca} took {took:?}: {r}"
        );
        assert_eq!(r["status"], "unknown", "--ca {ca}: {r}");
        let summary = r["summary"].as_str().unwrap();
        assert!(
            summary.contains("not a regular file") || summary.contains("cannot read"),
            "--ca {ca}: {summary}"
        );
    }
    // Whether a root-only file exists is not told: both are out of reach.
    let (shadow, _) = result_of(&s, &["http", "https://127.0.0.1:9/", "--ca", "/etc/shadow"]);
    let (missing, _) = result_of(
        &s,
        &["http", "https://127.0.0.1:9/", "--ca", "/root/no-such-file"],
    );
    let shape = |r: &Value, path: &str| r["summary"].as_str().unwrap().replace(path, "FILE");
    assert_eq!(
        shape(&shadow, "/etc/shadow"),
        shape(&missing, "/root/no-such-file"),
        "the answers tell the files apart"
    );
    // The agent answered all along, and is still there.
    assert!(s.console.online("pc1"));
    let (load, took) = result_of(&s, &["load"]);
    assert_ne!(load["status"], "unknown", "{load}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A root-only file with a marker in a folder every user may traverse.
fn secret(root: &Path) -> std::path::PathBuf {
    let dir = open_dir(root, "secrets");
    let file = dir.join("secret");
    std::fs::write(&file, "marker-of-a-root-only-file\nsecond-line-of-it\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

#[test]
fn a_technician_cannot_read_root_only_files_through_check_dig() {
    let s = Setup::new("technician");
    let file = secret(s.root());
    // The DNS server the technician picks: it records every query.
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    for extra in [
        format!("-f {}", file.display()),
        format!("-f{}", file.display()),
        "-f /etc/shadow".to_string(),
    ] {
        let (r, _) = result_of(
            &s,
            &[
                "plugin",
                "check_dig",
                "-H",
                "127.0.0.1",
                "-p",
                &port,
                "-l",
                "x.test",
                "-A",
                &extra,
            ],
        );
        assert!(r["status"].is_string(), "{r}");
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Ok(n) = server.recv(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        !seen.contains("marker-of-a-root-only-file"),
        "the file's lines left as queries"
    );
    assert!(!seen.contains("second-line-of-it"));
    assert!(
        !seen.contains("root"),
        "/etc/shadow's lines left as queries"
    );
}

/// An HTTP server on loopback that sets a cookie on every answer.
fn cookie_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten().take(20) {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: owned=yes; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
        }
    });
    port
}

#[test]
fn a_technician_cannot_write_files_through_plugin_options() {
    let s = Setup::new("technician");
    let port = cookie_server().to_string();
    let dir = open_dir(s.root(), "victim");
    let victim = dir.join("root-owned.conf");
    std::fs::write(&victim, "ORIGINAL\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A folder anyone may write to: the sandbox still lets nothing be made.
    let open = s.root().join("anyone");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let created = open.join("new-file");
    for target in [&victim, &created] {
        let jar = format!("--cookie-jar={}", target.display());
        let (r, _) = result_of(
            &s,
            &[
                "plugin",
                "check_curl",
                "-H",
                "127.0.0.1",
                "-p",
                &port,
                "-u",
                "/",
                &jar,
            ],
        );
        assert!(r["status"].is_string(), "{r}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL\n");
    assert!(
        !created.exists(),
        "check_curl created {}",
        created.display()
    );
}

#[test]
fn thirty_two_hostile_workers_do_not_take_the_agent_down() {
    let mut s = Setup::new("technician");
    with_plugin(
        &mut s,
        "check_hostile",
        "#!/bin/sh\ncase \"$1\" in\n\
         hang) sleep 600 ;;\n\
         spin) while :; do :; done ;;\n\
         balloon) head -c 4000000000 /dev/zero | tail -c 4000000000 >/dev/null ;;\n\
         esac\necho 'HOSTILE OK'\n",
    );

    let modes = ["hang", "spin", "balloon"];
    let mut attackers = Vec::new();
    for i in 0..32 {
        let mode = modes[i % modes.len()];
        let log = s.root().join(format!("attacker-{i}.log"));
        let mut cmd = std::process::Command::new(bin("firstline"));
        cmd.args([
            "run",
            "pc1",
            "plugin",
            "--timeout",
            "8s",
            "check_hostile",
            mode,
        ])
        .env("XDG_CONFIG_HOME", &s.console.home)
        .env("HOME", &s.console.home);
        attackers.push(Proc::spawn(&mut cmd, &log));
    }
    // The attackers' workers are running.
    assert!(
        wait_until(Duration::from_secs(30), || worker_count() >= 16),
        "workers: {}\n{}",
        worker_count(),
        s.agent.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..3 {
        let (r, took) = result_of(&s, &["memory"]);
        assert_ne!(r["status"], "unknown", "{r}");
        assert!(
            took < Duration::from_secs(2),
            "a check took {took:?} under attack"
        );
    }
    assert!(s.console.online("pc1"));
    // Every hostile worker ends, with everything it started, and each
    // attacker got an answer.
    assert!(
        wait_until(Duration::from_secs(40), || worker_count() == 0),
        "workers left: {}",
        worker_count()
    );
    for a in &mut attackers {
        assert!(
            wait_until(Duration::from_secs(10), || a.exited().is_some()),
            "{}",
            a.log_text()
        );
        assert!(a.log_text().contains("check_hostile"), "{}", a.log_text());
    }
    let left = || {
        let out = run(std::process::Command::new("ps").args(["-eo", "pid,ppid,etime,args"]));
        stdout(&out)
            .lines()
            .filter(|l| l.contains("check_hostile") || l.contains("sleep 600"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || left().is_empty()),
        "plugin processes left: {:#?}",
        left()
    );
    assert!(
        s.agent.proc.as_mut().unwrap().exited().is_none(),
        "the agent died"
    );
}

#[test]
fn a_worker_holds_only_what_its_check_declares() {
    let mut s = Setup::new("technician");
    // Reports who it runs as and what it holds, as a plugin's output.
    with_plugin(
        &mut s,
        "check_self",
        "#!/bin/sh\nseen=''\n\
         cat /proc/1/environ >/dev/null 2>&1 && seen=\"$seen read-pid-1\"\n\
         ls / >/dev/null 2>&1 && seen=\"$seen listed-root\"\n\
         touch /tmp/firstline-worker-wrote-here 2>/dev/null && seen=\"$seen wrote-tmp\"\n\
         echo \"SELF OK - uid=$(id -u) $(grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr '\\t\\n' '= ')$seen\"\n",
    );
    let out = s
        .console
        .run(&["run", "pc1", "plugin", "check_self", "--json"]);
    let all = stdout(&out);
    assert!(all.contains("SELF OK"), "{}", text(&out));
    assert!(!all.contains("uid=0 "), "a plugin ran as root: {all}");
    assert!(all.contains("CapEff:=0000000000000000"), "{all}");
    assert!(all.contains("CapBnd:=0000000000000000"), "{all}");
    assert!(all.contains("NoNewPrivs:=1"), "{all}");
    assert!(!all.contains("read-pid-1"), "{all}");
    assert!(
        !all.contains("listed-root"),
        "the whole file system is in view: {all}"
    );
    assert!(!all.contains("wrote-tmp"), "{all}");
    assert!(!Path::new("/tmp/firstline-worker-wrote-here").exists());
}

#[test]
fn a_console_that_goes_away_stops_its_worker() {
    // A relay that notices a vanished console within 3 s.
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.configure("idle_timeout_secs = 3\nkeep_alive_secs = 1");
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.start();
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    let mut s = Setup {
        tmp,
        relay,
        agent,
        console,
    };
    with_plugin(&mut s, "check_sleepy", "#!/bin/sh\nsleep 6093\n");
    let sleeping = || {
        let out = run(std::process::Command::new("ps").args(["-eo", "args"]));
        stdout(&out).lines().any(|l| l.trim() == "sleep 6093")
    };
    let mut cmd = std::process::Command::new(bin("firstline"));
    cmd.args(["run", "pc1", "plugin", "--timeout", "100s", "check_sleepy"])
        .env("XDG_CONFIG_HOME", &s.console.home)
        .env("HOME", &s.console.home);
    let console = Proc::spawn(&mut cmd, &s.root().join("console.log"));
    assert!(
        wait_until(Duration::from_secs(20), sleeping),
        "the plugin never ran"
    );
    // Killed: it says nothing to anyone; the relay finds out by its idle
    // timeout, stops the agent's stream, and the agent kills the worker.
    drop(console);
    assert!(
        wait_until(Duration::from_secs(15), || !sleeping()),
        "the plugin of a console that went away still runs\n{}",
        s.agent.log()
    );
}
