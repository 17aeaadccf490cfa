//! The command lines of the three binaries as a user meets them (issue
//! 12): `--help` everywhere, one exit-code rule local or remote, one-line
//! messages, the list of checks, a relay that does not answer, `watch`
//! that comes back after a relay restart and filters, uniform JSON,
//! colour only on a terminal.

#![allow(clippy::unwrap_used)]

use firstline_tests::{bin, run, text, wait_until, Agent, Console, Proc, Relay, Setup};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A binary with a throw-away config home (the console's `login` state).
fn cmd(name: &str, home: &Path) -> Command {
    let mut c = Command::new(bin(name));
    c.env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("NO_COLOR");
    c
}

/// The subcommands listed in the `Commands:` section of a help text
/// (`help` itself left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// `--help` of `words`: exit 0, text on stdout, nothing on stderr; then
/// the same for every subcommand its help lists, all the way down.
fn walk_help(name: &str, home: &Path, words: &[String], seen: &mut Vec<String>) {
    let out = run(cmd(name, home).args(words).arg("--help"));
    let what = format!("{name} {} --help", words.join(" "));
    assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
    assert!(
        stdout(&out).contains("Usage:"),
        "{what}: help on stdout: {}",
        text(&out)
    );
    assert!(stderr(&out).is_empty(), "{what}: {}", text(&out));
    seen.push(what);
    for sub in subcommands(&stdout(&out)) {
        let mut deeper = words.to_vec();
        deeper.push(sub);
        walk_help(name, home, &deeper, seen);
    }
}

#[test]
fn help_works_on_every_command_of_the_three_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for name in ["firstline", "firstline-agent", "firstline-relay"] {
        walk_help(name, tmp.path(), &[], &mut seen);
    }
    for must in [
        "firstline run --help",
        "firstline fix --help",
        "firstline runbook --help",
        "firstline checks --help",
        "firstline watch --help",
        "firstline completions --help",
        "firstline-agent check --help",
        "firstline-agent runbook --help",
    ] {
        assert!(
            seen.iter()
                .any(|s| s.split_whitespace().eq(must.split_whitespace())),
            "{must} was not reached from the top-level help: {seen:#?}"
        );
    }
    // `-h` too, and help after the free arguments of the agent's commands:
    // the check's or runbook's own help, on stdout, exit 0.
    for args in [
        &["check", "-h"][..],
        &["check", "disk", "--help"],
        &["check", "disk", "/", "--help"],
        &["runbook", "no-internet", "--help"],
    ] {
        let out = run(cmd("firstline-agent", tmp.path()).args(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(stdout(&out).contains("Usage:"), "{args:?}: {}", text(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", text(&out));
    }
    let out = run(cmd("firstline-agent", tmp.path()).args(["check", "disk", "--help"]));
    assert!(
        stdout(&out).contains("Usage: firstline-agent check disk"),
        "{}",
        text(&out)
    );
    let out = run(cmd("firstline-agent", tmp.path()).args(["runbook", "no-internet", "--help"]));
    assert!(stdout(&out).contains("external="), "{}", text(&out));
}

/// A usage error: exit 2, nothing on stdout, one line on stderr that
/// starts with `error: ` once and holds every one of `words`.
fn assert_usage(out: &Output, words: &[&str], what: &str) {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", text(out));
    let err = stderr(out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: one line: {}",
        text(out)
    );
    assert!(err.starts_with("error: "), "{what}: {}", text(out));
    assert_eq!(
        err.matches("error:").count(),
        1,
        "{what}: no doubled prefix: {}",
        text(out)
    );
    for w in words {
        assert!(err.contains(w), "{what}: `{w}` in: {}", text(out));
    }
}

/// The names `firstline-agent check --json` lists.
fn check_names(home: &Path) -> Vec<String> {
    let out = run(cmd("firstline-agent", home).args(["check", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("check --json");
    list.iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn local_exit_codes_and_the_list_of_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = |args: &[&str]| run(cmd("firstline-agent", tmp.path()).args(args));

    let out = agent(&["check", "disk", "/", "--wrn", "80"]);
    assert_usage(
        &out,
        &["'--wrn'", "--warn", "usage: firstline-agent check disk"],
        "--wrn",
    );
    let out = agent(&["check", "dsk"]);
    assert_usage(&out, &["unknown check `dsk`", "`disk`", "ping, dns"], "dsk");
    // A runbook with no network step, as a dry run: were the parameter
    // ever taken, nothing would leave this machine or change on it.
    let out = agent(&["runbook", "disk-full", "bogus=1", "--dry-run"]);
    assert_usage(&out, &["bogus", "older_than"], "runbook parameter");
    let out = agent(&["frobnicate"]);
    assert_usage(&out, &["frobnicate"], "unknown subcommand");

    // A check that is not ok: 1; one that is: 0.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = agent(&["check", "tcp", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = agent(&["check", "disk", "/", "--warn", "100", "--crit", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).starts_with("OK "), "{}", text(&out));
    assert!(
        !stdout(&out).contains('\x1b'),
        "no colour in a pipe: {}",
        text(&out)
    );

    // No name: every check, with its arguments and their defaults.
    let names = check_names(tmp.path());
    assert!(names.len() >= 13, "{names:?}");
    let out = agent(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = stdout(&out);
    for n in &names {
        assert!(
            listing.lines().any(|l| l.starts_with(&format!("{n} "))),
            "{n} listed: {listing}"
        );
    }
    assert!(
        listing.contains("disk [PATH] [--warn=80] [--crit=90]"),
        "{listing}"
    );
    assert!(!listing.lines().any(|l| l.ends_with(' ')), "{listing:?}");

    // JSON: the result names its agent, check and target; counts are integers.
    let out = agent(&[
        "check", "disk", "/", "--warn", "100", "--crit", "100", "--json",
    ]);
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(r["agent"].is_string(), "{r}");
    assert_eq!(r["check"], "disk");
    assert_eq!(r["target"], "/");
    assert!(r["metrics"]["total_bytes"].is_u64(), "{r}");
    let out = agent(&["runbook", "--json"]);
    let books: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(books.is_array(), "{books}");
    assert!(books[0]["params"].is_array(), "{books}");
}

#[test]
fn remote_exit_codes_help_and_json() {
    let s = Setup::new("technician");
    let c = &s.console;
    let home = s.root().join("console-home");

    // Usage errors the agent finds: 2, one line, the agent named once.
    let out = c.run(&["run", "pc1", "disk", "/", "--wrn", "80"]);
    assert_usage(
        &out,
        &[
            "agent `pc1`",
            "'--wrn'",
            "--warn",
            "usage: firstline run pc1 disk",
        ],
        "remote --wrn",
    );
    let out = c.run(&["run", "pc1", "dsk"]);
    assert_usage(
        &out,
        &[
            "unknown check `dsk`",
            "`disk`",
            "ping, dns",
            "firstline checks pc1",
        ],
        "remote dsk",
    );
    let out = c.run(&["run", "pc9", "disk"]);
    assert_usage(&out, &["pc9"], "unknown agent");
    assert!(
        stderr(&out).contains("pc1") || stderr(&out).contains("firstline agents"),
        "lists the agents or says where: {}",
        text(&out)
    );
    let out = c.run(&["fix", "pc1", "reboot"]);
    assert_usage(
        &out,
        &["unknown fix `reboot`", "flush-dns", "clean-temp"],
        "reboot",
    );
    assert!(!stderr(&out).contains("policy"), "{}", text(&out));
    let out = c.run(&["runbook", "pc1", "disk-full", "bogus=1", "--dry-run"]);
    assert_usage(
        &out,
        &["bogus", "firstline runbook pc1 disk-full --help"],
        "runbook parameter",
    );
    let out = c.run(&["runbook", "pc1", "disk-ful"]);
    assert_usage(
        &out,
        &["disk-full", "firstline runbooks pc1"],
        "unknown runbook",
    );
    let out = c.run(&["run", "pc1", "disk", "--ticket", "999"]);
    assert_usage(&out, &["999"], "unknown ticket");

    // Not ok: 1. Refused: 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = c.run(&["run", "pc1", "tcp", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("CRIT ")),
        "{}",
        text(&out)
    );
    let admin = Console::new(&s.root().join("admin"));
    admin.login(&s.relay.operator("boss", "admin"));
    let out = admin.run(&["fix", "pc1", "script", "hello"]);
    assert_eq!(out.status.code(), Some(1), "refused: {}", text(&out));
    assert!(stderr(&out).contains("policy"), "{}", text(&out));
    let viewer = Console::new(&s.root().join("viewer"));
    viewer.login(&s.relay.operator("vic", "viewer"));
    let out = viewer.run(&["fix", "pc1", "flush-dns", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "forbidden: {}", text(&out));

    // --help after the check, fix or runbook: its own help, from the agent.
    for (args, usage) in [
        (
            &["run", "pc1", "disk", "--help"][..],
            "Usage: firstline run pc1 disk",
        ),
        (
            &["run", "pc1", "disk", "/", "-h"],
            "Usage: firstline run pc1 disk",
        ),
        (
            &["fix", "pc1", "clean-temp", "--help"],
            "Usage: firstline fix pc1 clean-temp",
        ),
        (
            &["runbook", "pc1", "disk-full", "--help"],
            "Usage: firstline runbook pc1 disk-full",
        ),
    ] {
        let out = c.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(stdout(&out).contains(usage), "{args:?}: {}", text(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", text(&out));
    }

    // The checks of the agent, each with its synopsis.
    let out = c.run(&["checks", "pc1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for n in check_names(&home) {
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.starts_with(&format!("{n} "))),
            "{n}: {}",
            text(&out)
        );
    }
    let out = c.run(&["checks", "pc1", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("checks --json");
    assert!(list.as_array().is_some_and(|l| l.len() >= 13), "{list}");
    let out = c.run(&["checks", "pc9"]);
    assert_usage(&out, &["pc9"], "checks of an unknown agent");

    // JSON: results name their agent; lists are arrays; counts integers.
    let out = c.run(&[
        "run", "pc1", "disk", "/", "--warn", "100", "--crit", "100", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).expect("run --json");
    assert_eq!(r["agent"], "pc1", "{r}");
    assert_eq!(r["check"], "disk", "{r}");
    assert_eq!(r["target"], "/", "{r}");
    assert!(r["metrics"]["total_bytes"].is_u64(), "{r}");
    assert!(!stdout(&out).contains(".0,"), "{r}");
    let out = c.run(&["runbooks", "pc1", "--json"]);
    let books: Value = serde_json::from_slice(&out.stdout).expect("runbooks --json");
    let books = books.as_array().expect("runbooks --json is an array");
    assert!(books.iter().any(|b| b["name"] == "disk-full"), "{books:?}");
    assert!(books[0]["params"][0]["name"].is_string(), "{books:?}");

    // No colour codes in the logs written to files.
    assert!(!s.relay.log().contains('\x1b'), "{}", s.relay.log());
    assert!(!s.agent.log().contains('\x1b'), "{}", s.agent.log());
    // No colour in a pipe, one spelling of each status.
    let out = c.run(&["run", "pc1", "disk", "/", "--warn", "100", "--crit", "100"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("OK      disk /: ")),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains('\x1b'), "{}", text(&out));
}

#[test]
fn an_unreachable_relay_is_reported_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::init(tmp.path()); // never served: nothing answers on its port
    let console = Console::new(tmp.path());
    console.login(&relay.operator("tech", "technician"));
    let started = Instant::now();
    let out = console.run(&["agents"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "relay {} does not answer (is it running?",
            relay.addr
        )),
        "{}",
        text(&out)
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // Longer when asked, and a bad value is a usage error.
    let out = console.run(&["--connect-timeout", "soon", "agents"]);
    assert_usage(&out, &["--connect-timeout", "soon"], "bad timeout");
}

/// The lines of a watch log that are notices (not the `watch:` status lines).
fn notices(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn spawn_watch(s: &Setup, args: &[&str], log: &str) -> Proc {
    Proc::spawn(
        Command::new(bin("firstline"))
            .arg("watch")
            .args(args)
            .env("XDG_CONFIG_HOME", &s.console.home)
            .env("HOME", &s.console.home),
        &s.root().join(log),
    )
}

fn new_ticket(c: &Console, title: &str, agent: Option<&str>) -> u64 {
    let mut args = vec!["ticket", "new", title, "--json"];
    if let Some(a) = agent {
        args.extend(["--agent", a]);
    }
    let out = c.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_u64()
        .unwrap()
}

#[test]
fn watch_filters_and_comes_back_after_a_relay_restart() {
    let mut s = Setup::new("technician");
    // A second agent, enrolled but not running, so `--agent` has a choice.
    let _other = Agent::enrolled(s.root(), "pc2", &s.relay);
    let mut all = spawn_watch(&s, &[], "all.log");
    let mut pc1 = spawn_watch(&s, &["--agent", "pc1", "--json"], "pc1.log");
    let mut comments = spawn_watch(&s, &["--kind", "ticket_comment", "--json"], "comments.log");
    let ready = |p: &Proc| p.log_text().contains("watching alerts and tickets");
    assert!(
        wait_until(Duration::from_secs(10), || ready(&all)
            && ready(&pc1)
            && ready(&comments)),
        "{}\n{}\n{}",
        all.log_text(),
        pc1.log_text(),
        comments.log_text()
    );

    let on_pc1 = new_ticket(&s.console, "printer jammed", Some("pc1"));
    let on_pc2 = new_ticket(&s.console, "screen flickers", Some("pc2"));
    let out = s
        .console
        .run(&["ticket", "comment", &on_pc2.to_string(), "called"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        wait_until(Duration::from_secs(10), || all
            .log_text()
            .contains("comment by tech: called")),
        "{}",
        all.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let seen = notices(&pc1.log_text());
    assert!(!seen.is_empty(), "{}", pc1.log_text());
    assert!(seen.iter().all(|n| n["agent"] == "pc1"), "{seen:?}");
    assert!(seen.iter().any(|n| n["ticket"] == on_pc1), "{seen:?}");
    let seen = notices(&comments.log_text());
    assert_eq!(seen.len(), 1, "{}", comments.log_text());
    assert_eq!(seen[0]["kind"], "ticket_comment");
    // One line per notice, one time format: `2026-11-29T19:06:33Z  kind  text`.
    let log = all.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("watch:")).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for l in &lines {
        let (time, rest) = l.split_at(20.min(l.len()));
        assert!(
            time.len() == 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{l}"
        );
        assert!(rest.starts_with("  ticket_"), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("#{on_pc1} opened: printer jammed"))),
        "{lines:?}"
    );

    // The relay goes away and comes back: the same watch reconnects by
    // itself, says so, and shows what happens next.
    s.relay.kill();
    assert!(
        wait_until(Duration::from_secs(30), || all
            .log_text()
            .contains("lost the relay")),
        "{}",
        all.log_text()
    );
    s.relay.serve();
    assert!(
        wait_until(Duration::from_secs(30), || all
            .log_text()
            .contains("reconnected to relay")),
        "{}",
        all.log_text()
    );
    assert!(all.exited().is_none(), "{}", all.log_text());
    let after = new_ticket(&s.console, "after the restart", Some("pc1"));
    assert!(
        wait_until(Duration::from_secs(10), || all
            .log_text()
            .contains(&format!("#{after} opened: after the restart"))),
        "{}",
        all.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || notices(&pc1.log_text())
            .iter()
            .any(|n| n["ticket"] == after)),
        "{}",
        pc1.log_text()
    );
    all.kill();
    pc1.kill();
    comments.kill();

    // Unknown filters are usage errors that list the valid ones.
    let out = s.console.run(&["watch", "--kind", "tickets"]);
    assert_usage(&out, &["ticket_comment", "alert"], "--kind");
    let out = s.console.run(&["watch", "--agent", "pc9"]);
    assert_usage(&out, &["pc9", "pc1"], "--agent");
}

#[test]
fn completions_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    for (shell, mark) in [
        ("bash", "_firstline"),
        ("zsh", "#compdef firstline"),
        ("fish", "complete -c firstline"),
    ] {
        let out = run(cmd("firstline", tmp.path()).args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        assert!(stdout(&out).contains(mark), "{shell}: {}", text(&out));
        assert!(stdout(&out).contains("checks"), "{shell}");
    }
    let out = run(cmd("firstline", tmp.path()).args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for (name, pages) in [
        (
            "firstline",
            &["firstline.1", "firstline-run.1", "firstline-checks.1"][..],
        ),
        (
            "firstline-agent",
            &["firstline-agent.1", "firstline-agent-check.1"],
        ),
    ] {
        let dir = tmp.path().join(name);
        let out = run(cmd(name, tmp.path()).arg("manpages").arg(&dir));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let written: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for p in pages {
            assert!(written.contains(*p), "{name}: {p} in {written:?}");
        }
        // The console's `agent` subcommand does not take the agent's page.
        if name == "firstline" {
            assert!(
                !written
                    .iter()
                    .any(|p| p == "firstline-agent.1" || p.starts_with("firstline-agent-")),
                "{written:?}"
            );
        }
        let page = std::fs::read_to_string(dir.join(pages[0])).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        // Hidden: not in the help, not in the completions.
        let help = run(cmd(name, tmp.path()).arg("--help"));
        assert!(!stdout(&help).contains("manpages"), "{}", text(&help));
    }
}

/// Colour on a terminal (a pseudo-terminal made by `script`), none with
/// NO_COLOR.
#[test]
fn colour_only_on_a_terminal() {
    if run(Command::new("script").arg("--version")).status.code() != Some(0) {
        eprintln!("skipped: no `script` (util-linux) to make a terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let agent = bin("firstline-agent");
    let on_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.args([
            "-qec",
            &format!("{} check disk / --warn 100 --crit 100", agent.display()),
            "/dev/null",
        ]);
        c.env("HOME", tmp.path());
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        run(&mut c)
    };
    let out = on_tty(false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("\x1b[32mOK\x1b[0m"),
        "{:?}",
        stdout(&out)
    );
    let out = on_tty(true);
    assert!(!stdout(&out).contains('\x1b'), "{:?}", stdout(&out));
}
