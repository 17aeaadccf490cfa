//! Issue 10, findings 11 and 12 (files and tokens), as attacks on real
//! processes: each test reads what another local user could read, or looks
//! for the token where `ps` shows it, and asserts it finds nothing.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Not readable (nor writable) by group or others.
fn assert_private(path: &Path) {
    let m = mode(path);
    assert_eq!(
        m & 0o077,
        0,
        "{} is mode {m:04o}: group/others can get at it",
        path.display()
    );
}

#[test]
fn databases_keys_and_configs_are_owner_only() {
    let s = Setup::new("viewer");
    let relay = &s.relay.dir;
    let agent = &s.agent.dir;
    // The agent opens its outbox when it starts; it is online, so it has.
    assert!(agent.join("outbox.db").exists());

    let mut files: Vec<PathBuf> = [
        "relay.db",
        "ca-key.pem",
        "relay-key.pem",
        "reset-key",
        "relay.toml",
        "tech.credential.toml",
    ]
    .iter()
    .map(|f| relay.join(f))
    .collect();
    files.extend(["identity.pem", "outbox.db"].iter().map(|f| agent.join(f)));
    // SQLite's side files, when there (they take the database's mode).
    for db in [relay.join("relay.db"), agent.join("outbox.db")] {
        for side in ["-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{side}", db.display()));
            if p.exists() {
                files.push(p);
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("relay.db-wal")),
        "the serving relay has a WAL: {files:?}"
    );
    for f in &files {
        assert_private(f);
    }
    // No temporary file is left behind by the private writes.
    for dir in [relay, agent] {
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "left over in {}: {name}",
                dir.display()
            );
        }
    }
}

#[test]
fn world_readable_database_of_an_older_version_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::init(tmp.path());
    let db = relay.dir.join("relay.db");
    assert_private(&db);
    // What an older version (or a umask of 022) left behind.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    relay.token(&[]);
    assert_eq!(mode(&db), 0o600, "opening the database makes it private");
}

#[test]
fn enroll_reads_the_token_from_a_file_stdin_or_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let enroll = |agent: &Agent| {
        let mut cmd = Command::new(bin("firstline-agent"));
        cmd.args(["enroll", "--relay", &relay.addr, "--name", &agent.name])
            .arg("--config")
            .arg(&agent.config)
            .env_remove("FIRSTLINE_TOKEN");
        cmd
    };

    let by_file = Agent::new(tmp.path(), "by-file");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{}\n", relay.token(&[]))).unwrap();
    let out = run(enroll(&by_file).arg("--token-file").arg(&token_file));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_private(&by_file.dir.join("identity.pem"));

    let by_env = Agent::new(tmp.path(), "by-env");
    let out = run(enroll(&by_env).env("FIRSTLINE_TOKEN", relay.token(&[])));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_private(&by_env.dir.join("identity.pem"));

    let by_stdin = Agent::new(tmp.path(), "by-stdin");
    let mut child = enroll(&by_stdin)
        .args(["--token-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", relay.token(&[])).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(by_stdin.dir.join("identity.pem").exists());
}

#[test]
fn token_is_not_in_the_process_list_while_enrolling() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::init(tmp.path());
    let token = relay.token(&[]);
    // A "relay" that never answers: enroll waits on it (up to its timeout).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &token).unwrap();

    // What `ps` shows of a running enroll: /proc/PID/cmdline, which every
    // local user can read.
    let cmdline_while_running = |how: &dyn Fn(&mut Command)| -> String {
        let agent = Agent::new(tmp.path(), "in-flight");
        let mut cmd = Command::new(bin("firstline-agent"));
        cmd.args([
            "enroll",
            "--relay",
            &addr,
            "--name",
            "in-flight",
            "--config",
        ])
        .arg(&agent.config)
        .env_remove("FIRSTLINE_TOKEN");
        how(&mut cmd);
        let mut p = Proc::spawn(&mut cmd, &tmp.path().join("in-flight.log"));
        // Right after exec the kernel may show an empty command line a moment.
        let proc_cmdline = format!("/proc/{}/cmdline", p.child.id());
        let mut cmdline = Vec::new();
        let shown = wait_until(Duration::from_secs(5), || {
            cmdline = std::fs::read(&proc_cmdline).unwrap_or_default();
            !cmdline.is_empty()
        });
        assert!(shown, "no command line in {proc_cmdline}");
        assert!(
            p.exited().is_none(),
            "enroll must still be waiting on the silent relay: {}",
            p.log_text()
        );
        p.kill();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(cmdline.contains("firstline-agent enroll"), "{cmdline}");
        cmdline
    };

    let by_file = cmdline_while_running(&|c| {
        c.arg("--token-file").arg(&token_file);
    });
    assert!(by_file.contains("--token-file"), "{by_file}");
    let by_env = cmdline_while_running(&|c| {
        c.env("FIRSTLINE_TOKEN", &token);
    });
    assert!(by_env.contains("enroll"), "{by_env}");
    // Neither the token nor its secret part is on the command line.
    let secret = token.split('.').nth(2).unwrap();
    for shown in [&by_file, &by_env] {
        assert!(
            !shown.contains(&token),
            "token in the process list: {shown}"
        );
        assert!(
            !shown.contains(secret),
            "secret in the process list: {shown}"
        );
    }
    // The probe works: with --token, the token is there for all to see.
    let by_arg = cmdline_while_running(&|c| {
        c.args(["--token", &token]);
    });
    assert!(by_arg.contains(&token), "{by_arg}");
    drop(silent);
}

#[test]
fn enroll_without_a_token_names_every_way_to_give_one() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::new(tmp.path(), "pc1");
    let base = || {
        let mut cmd = Command::new(bin("firstline-agent"));
        cmd.args([
            "enroll",
            "--relay",
            "127.0.0.1:9",
            "--name",
            "pc1",
            "--config",
        ])
        .arg(&agent.config)
        .env_remove("FIRSTLINE_TOKEN");
        cmd
    };
    let out = run(&mut base());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    for name in ["--token-file", "FIRSTLINE_TOKEN", "--token "] {
        assert!(err.contains(name), "`{name}` not named: {err}");
    }
    // An empty variable is no token either.
    let out = run(base().env("FIRSTLINE_TOKEN", ""));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("--token-file"), "{}", text(&out));
    // Two sources at once: refused, not guessed.
    let file = tmp.path().join("token");
    std::fs::write(&file, "fl1.x").unwrap();
    let out = run(base().args(["--token", "fl1.y", "--token-file"]).arg(&file));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An unreadable token file: a usage error naming it.
    let out = run(base().arg("--token-file").arg(tmp.path().join("missing")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("missing"), "{}", text(&out));
    assert!(!agent.dir.join("identity.pem").exists());
}

#[test]
fn readable_relay_toml_with_a_webhook_secret_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::init(tmp.path());
    assert_private(&relay.config);
    relay.configure(
        "webhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret = \"0123456789abcdef-secret\"",
    );
    // Still 0600 after an edit in place: no warning.
    let out = relay.cmd(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stderr(&out).contains("webhook_secret"), "{}", text(&out));

    std::fs::set_permissions(&relay.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = relay.cmd(&["validate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "warned, not refused: {}",
        text(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("webhook_secret") && err.contains("0644"),
        "{err}"
    );
    // Without a secret, a readable relay.toml is nobody's business.
    let text_now = std::fs::read_to_string(&relay.config).unwrap();
    let without: String = text_now
        .lines()
        .filter(|l| !l.starts_with("webhook_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&relay.config, without).unwrap();
    let out = relay.cmd(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stderr(&out).contains("warning"), "{}", text(&out));
}
