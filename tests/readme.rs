//! The README's "Setting up for real" block, run line by line for real: a
//! README whose own setup does not work is the first thing a new admin
//! finds out.
//!
//! The block is taken from README.md as it is and changed only by this
//! mechanical mapping, so that it runs on loopback in a temporary folder:
//!
//! * `:4433` → `:PORT`, a free UDP port: the relay listens on
//!   `0.0.0.0:PORT` — every address, as the README's does;
//! * `relay.example.org` → `127.0.0.1`: the relay's `--name`, and so the
//!   `public_addr` that `init` derives from it (`127.0.0.1:PORT`), which
//!   the token hint and `alice.toml` must carry — never `0.0.0.0`;
//! * `/etc/firstline` → `ROOT/HOST/etc/firstline`, HOST being the section
//!   the line is in (`# on the relay host` and `# lifecycle, on the relay
//!   host` → `relay-host`, `# on each machine` → `machine`, else
//!   `technician`);
//! * `fl1.…` → the token the `token create` line printed;
//! * `printsrv` → `127.0.0.1` (a printer address nobody answers at).
//!
//! Each line runs with `sh -c` in `ROOT/work` (where `alice.toml` is
//! written, and read), with the workspace's binaries first on `PATH` and
//! `HOME`/`XDG_CONFIG_HOME` in `ROOT/home`. The long-running lines — `serve`,
//! `firstline-agent run`, `firstline watch` — start in the background and
//! must come up (the relay listening, the agent connected, watch still
//! running after two seconds); every other line must exit 0, except
//! `firstline run` and `runbook` lines, whose status is the check's own (0
//! ok, 1 a problem found) and which must print a result or a verdict (or,
//! with `--select`, the summary of every machine's).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(20);

/// The shell lines of the README's "Setting up for real" block, each with
/// the section comment it is under.
fn setup_block() -> Vec<(String, String)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let section = text
        .split("## Setting up for real")
        .nth(1)
        .expect("README has a `## Setting up for real` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```sh block in it");
    let mut heading = String::new();
    let mut lines = Vec::new();
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            heading = line.to_string();
        } else {
            lines.push((heading.clone(), line.to_string()));
        }
    }
    lines
}

/// The host a section's lines run on.
fn host(heading: &str) -> &'static str {
    if heading.contains("relay host") {
        "relay-host"
    } else if heading.contains("each machine") {
        "machine"
    } else {
        "technician"
    }
}

/// A free UDP port on every address.
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Run {
    root: PathBuf,
    port: u16,
    path: String,
    token: Option<String>,
    background: Vec<Proc>,
}

impl Run {
    /// The line after the mapping of the module's documentation.
    fn map(&self, heading: &str, line: &str) -> String {
        let etc = self.root.join(host(heading)).join("etc/firstline");
        let mut line = line
            .replace(":4433", &format!(":{}", self.port))
            .replace("relay.example.org", "127.0.0.1")
            .replace("/etc/firstline", etc.to_str().unwrap())
            .replace("printsrv", "127.0.0.1");
        if let Some(t) = &self.token {
            line = line.replace("fl1.…", t);
        }
        line
    }

    fn shell(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .current_dir(self.root.join("work"))
            .env("PATH", &self.path)
            .env("HOME", self.root.join("home"))
            .env("XDG_CONFIG_HOME", self.root.join("home"))
            .env("RUST_LOG", "info")
            .env_remove("FIRSTLINE_TOKEN");
        cmd
    }

    /// Start a long-running line; its process.
    fn start(&mut self, line: &str, n: usize) -> &mut Proc {
        let log = self.root.join(format!("line-{n}.log"));
        let proc = Proc::spawn(&mut self.shell(&format!("exec {line}")), &log);
        self.background.push(proc);
        self.background.last_mut().unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_readme_setup_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    for dir in ["work", "home"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let bin_dir = bin("firstline-relay").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut run = Run {
        port: free_port(),
        root,
        path,
        token: None,
        background: Vec::new(),
    };
    let relay = format!("127.0.0.1:{}", run.port);
    let lines = setup_block();
    assert!(lines.len() >= 15, "{lines:#?}");
    let mut seen = Vec::new();
    for (n, (heading, original)) in lines.iter().enumerate() {
        let line = run.map(heading, original);
        let words: Vec<&str> = original.split_whitespace().collect();
        let command = words
            .iter()
            .skip_while(|w| w.contains('='))
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        seen.push(command.clone());
        match command.as_str() {
            "firstline-relay serve" => {
                let p = run.start(&line, n);
                let up = wait_until(SLOW, || p.log_text().contains("relay listening"));
                assert!(up, "{original}: the relay did not start:\n{}", p.log_text());
                continue;
            }
            "firstline-agent run" => {
                let p = run.start(&line, n);
                let up = wait_until(SLOW, || p.log_text().contains("connected"));
                assert!(
                    up,
                    "{original}: the agent did not connect:\n{}",
                    p.log_text()
                );
                continue;
            }
            "firstline watch" => {
                let p = run.start(&line, n);
                std::thread::sleep(Duration::from_secs(2));
                assert!(
                    p.exited().is_none(),
                    "{original}: watch ended:\n{}",
                    p.log_text()
                );
                continue;
            }
            _ => {}
        }
        let o = firstline_tests::run(&mut run.shell(&line));
        let shown = format!("line {n}: {original}\nran: {line}\n{}", text(&o));
        let verdict_or_result = command == "firstline run"
            || command.ends_with(" runbook")
            || command == "firstline runbook";
        if verdict_or_result {
            assert!(matches!(o.status.code(), Some(0 | 1)), "{shown}");
            let printed = out(&o);
            assert!(
                printed.contains("\"verdict\"")
                    || printed.contains("VERDICT")
                    || printed.contains(" disk ")
                    || printed.contains(" selected: "),
                "a result or verdict: {shown}"
            );
        } else {
            assert_eq!(o.status.code(), Some(0), "{shown}");
        }
        // What each step must have made.
        match command.as_str() {
            "firstline-relay init" => {
                assert!(out(&o).contains(&format!("dial {relay}")), "{shown}");
                let config = run.root.join("relay-host/etc/firstline/relay.toml");
                let toml = std::fs::read_to_string(config).unwrap();
                assert!(
                    toml.contains(&format!("public_addr = \"{relay}\"")),
                    "{toml}"
                );
            }
            "firstline-relay token" if original.contains("token create") => {
                let token = out(&o).trim().to_string();
                assert!(token.starts_with("fl1."), "{shown}");
                let hint = String::from_utf8_lossy(&o.stderr);
                assert!(
                    hint.contains(&format!("--relay {relay}")),
                    "the hint: {shown}"
                );
                assert!(!hint.contains("0.0.0.0"), "{shown}");
                run.token = Some(token);
            }
            "firstline-relay operator" if original.contains("operator add") => {
                let cred = std::fs::read_to_string(run.root.join("work/alice.toml")).unwrap();
                assert!(cred.contains(&format!("relay = \"{relay}\"")), "{cred}");
            }
            "firstline agents" => assert!(out(&o).contains("pc-042"), "{shown}"),
            "firstline ticket" if original.contains("ticket new") => {
                assert!(out(&o).starts_with("#1 [open] high"), "{shown}")
            }
            "firstline tickets" => assert!(out(&o).contains("#1 "), "{shown}"),
            "firstline ticket" if original.contains("ticket show") => {
                let shown_ticket = out(&o);
                assert!(
                    shown_ticket.contains("verdict"),
                    "the runbook's verdict: {shown}"
                );
                assert!(shown_ticket.contains("assignee alice"), "{shown}");
            }
            "firstline-relay agent" => assert!(out(&o).contains("pc-042"), "{shown}"),
            _ => {}
        }
    }
    // The block still does what this test checks.
    for must in [
        "firstline-relay init",
        "firstline-relay serve",
        "firstline-relay token",
        "firstline-relay operator",
        "firstline-agent enroll",
        "firstline-agent run",
        "firstline login",
        "firstline runbook",
        "firstline ticket",
        "firstline tickets",
        "firstline watch",
    ] {
        assert!(
            seen.iter().any(|s| s == must),
            "`{must}` in the block: {seen:?}"
        );
    }
    assert!(run.token.is_some());
    drop(run);
}
