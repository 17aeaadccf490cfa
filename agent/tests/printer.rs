//! `printer` against real IPP servers on loopback:
//! - a private `cupsd` with a queue made by `lpadmin`: the default printer
//!   (none yet → unknown; then `lpadmin -d`), by URI and by queue name,
//!   stopped with `cupsdisable -r "out of paper"` → crit with the reason,
//!   a job queued while stopped, `cupsenable` → ok, `cupsreject` → crit,
//!   an unknown queue → crit;
//! - `ippeveprinter` (an IPP Everywhere printer, on a private D-Bus), idle →
//!   ok, agreeing with `ipptool`'s get-printer-attributes;
//! - a printer that accepts the connection and never answers, and an
//!   address where nothing listens: bounded, not ok;
//! - the `error` field of each failure: `queue-unknown` (no default, no
//!   such queue), `scheduler-unreachable` (nothing at --server, asked by
//!   queue name, for the default, or by a URI to it), `printer-unreachable`
//!   (a URI elsewhere), `unresolved` (in a namespace of our own whose
//!   resolver answers nothing), `ipp-error` (an HTTP server that is not
//!   IPP: python's http.server); and the fields of an answer (`state`,
//!   `reasons`, `message`, `queue`).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::{CheckResult, Status};
use firstline_tests::peers::Cups;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The `error` field, or "" when there is none.
fn error(r: &CheckResult) -> &str {
    r.fields.get("error").map(String::as_str).unwrap_or("")
}

#[test]
fn cups_queue_through_its_states() {
    let cups = Cups::start();
    let server = cups.server();

    // No queue, no default yet: nothing to judge.
    let (r, _) = check(&["printer", "--server", &server]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("no default printer"), "{}", r.summary);
    assert_eq!(error(&r), "queue-unknown", "{r:?}");
    assert_eq!(r.fields["server"], server);

    cups.admin("lpadmin", &["-p", "q1", "-E", "-v", "file:///dev/null"]);
    cups.admin("lpadmin", &["-d", "q1"]);

    // The default destination, found by --server and by $CUPS_SERVER.
    let (r, _) = check(&["printer", "--server", &server]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.target.contains("q1"), "{}", r.target);
    assert!(r.summary.contains("idle"), "{}", r.summary);
    assert_eq!(r.metrics["state"], 3.0);
    assert_eq!(error(&r), "", "{r:?}");
    assert_eq!(r.fields["state"], "idle");
    assert_eq!(r.fields["reasons"], "none");
    assert_eq!(r.fields["queue"], cups.uri("q1"));
    let (r, _) = check_with(
        Command::new(AGENT)
            .args(["check", "printer"])
            .env("CUPS_SERVER", &server),
    );
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.target.contains("q1"), "{}", r.target);

    // By URI and by queue name.
    let uri = format!("ipp://{server}/printers/q1");
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.fields["queue"], uri);
    let (r, _) = check(&["printer", "q1", "--server", &server]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.fields["queue"], uri);

    // Stopped with a reason: crit, saying so.
    cups.admin("cupsdisable", &["-r", "out of paper", "q1"]);
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("stopped"), "{}", r.summary);
    assert!(r.summary.contains("paused"), "{}", r.summary);
    assert!(r.summary.contains("out of paper"), "{}", r.summary);
    assert_eq!(r.metrics["state"], 5.0);
    assert_eq!(error(&r), "", "the printer answered: {r:?}");
    assert_eq!(r.fields["state"], "stopped");
    assert_eq!(r.fields["reasons"], "paused");
    assert_eq!(r.fields["message"], "out of paper");

    // A job waits while the queue is stopped.
    let lp = require("lp", "cups-client");
    let doc = tempdir();
    let file = doc.path().join("page.txt");
    std::fs::write(&file, "hello printer\n").unwrap();
    must(
        Command::new(lp)
            .args(["-h", &server, "-d", "q1"])
            .arg(&file),
    );
    let (r, _) = check(&["printer", &uri, "--warn-jobs", "1"]);
    assert_eq!(r.metrics["queued_jobs"], 1.0, "{r:?}");
    assert!(r.summary.contains("1 job queued"), "{}", r.summary);

    // Resumed: ok again (the job goes to /dev/null).
    cups.admin("cupsenable", &["q1"]);
    let deadline = Instant::now() + STARTUP;
    let r = loop {
        let (r, _) = check(&["printer", &uri]);
        if r.status == Status::Ok || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status, Status::Ok, "{r:?}");

    // Refusing jobs is as bad as stopped for a user who wants to print.
    cups.admin("cupsreject", &["q1"]);
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("not accepting jobs"), "{}", r.summary);
    cups.admin("cupsaccept", &["q1"]);
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Ok, "{r:?}");

    // A queue that does not exist.
    let (r, _) = check(&["printer", &format!("ipp://{server}/printers/nope")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("no such printer"), "{}", r.summary);
    assert_eq!(error(&r), "queue-unknown", "{r:?}");
    let (r, _) = check(&["printer", "nope", "--server", &server]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "queue-unknown", "{r:?}");
    assert_eq!(r.fields["queue"], cups.uri("nope"));
}

/// ippeveprinter with the private D-Bus it needs for DNS-SD.
struct Eve {
    port: u16,
    _printer: Peer,
    _bus: Peer,
    _dir: tempfile::TempDir,
}

impl Eve {
    fn start() -> Eve {
        let eve = require("ippeveprinter", "cups-ipp-utils");
        let dbus = require("dbus-daemon", "dbus-daemon");
        let dir = tempdir();
        let sock = dir.path().join("bus.sock");
        let mut bus = Peer::start(
            "dbus-daemon",
            Command::new(dbus)
                .args(["--session", "--nofork", "--nopidfile"])
                .arg(format!("--address=unix:path={}", sock.display())),
        );
        wait_for_path(&mut bus, &sock);
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let port = free_tcp_port();
        let mut printer = Peer::start(
            "ippeveprinter",
            Command::new(eve)
                .env(
                    "DBUS_SYSTEM_BUS_ADDRESS",
                    format!("unix:path={}", sock.display()),
                )
                .args([
                    "-p",
                    &port.to_string(),
                    "-n",
                    "localhost",
                    "-r",
                    "off",
                    "-d",
                ])
                .arg(&spool)
                .arg("Firstline Test Printer"),
        );
        wait_for_tcp(&mut printer, SocketAddr::from(([127, 0, 0, 1], port)));
        Eve {
            port,
            _printer: printer,
            _bus: bus,
            _dir: dir,
        }
    }
}

#[test]
fn ippeveprinter_idle_agrees_with_ipptool() {
    let eve = Eve::start();
    let uri = format!("ipp://localhost:{}/ipp/print", eve.port);
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(
        r.summary.contains("Firstline Test Printer is idle"),
        "{}",
        r.summary
    );
    assert_eq!(r.metrics["state"], 3.0);
    assert_eq!(r.metrics["queued_jobs"], 0.0);
    assert_eq!(r.fields["state"], "idle");
    assert_eq!(r.fields["reasons"], "none");
    assert_eq!(r.fields["name"], "Firstline Test Printer");
    assert_eq!(r.fields["queue"], uri);
    assert!(!r.fields.contains_key("server"), "not the scheduler: {r:?}");

    // A path where it has no printer.
    let (r, _) = check(&["printer", &format!("ipp://localhost:{}/ipp/nope", eve.port)]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "queue-unknown", "{r:?}");

    let ipptool = require("ipptool", "cups-ipp-utils");
    let test = Path::new("/usr/share/cups/ipptool/get-printer-attributes.test");
    assert!(
        test.is_file(),
        "{} is missing (cups-ipp-utils)",
        test.display()
    );
    let out = must(Command::new(ipptool).args(["-tv", &uri]).arg(test));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("printer-state (enum) = idle"), "{text}");
    assert!(text.contains("queued-job-count (integer) = 0"), "{text}");
}

#[test]
fn silent_or_absent_printer_is_bounded() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hung.local_addr().unwrap();
    let started = Instant::now();
    let (r, _) = check(&[
        "printer",
        &format!("ipp://{addr}/printers/q"),
        "--timeout",
        "1s",
    ]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("no answer within 1 s"), "{}", r.summary);
    assert_eq!(error(&r), "printer-unreachable", "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let closed = free_tcp_port();
    let (r, _) = check(&["printer", &format!("ipp://127.0.0.1:{closed}/printers/q")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("refused"), "{}", r.summary);
    assert_eq!(error(&r), "printer-unreachable", "{r:?}");

    // No scheduler for the default printer: unknown, not a printer fault.
    let sched = format!("127.0.0.1:{closed}");
    let (r, _) = check(&["printer", "--server", &sched]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("no CUPS scheduler"), "{}", r.summary);
    assert_eq!(error(&r), "scheduler-unreachable", "{r:?}");
    assert_eq!(r.fields["server"], sched);

    // A queue of that scheduler, by name or by a URI to it.
    let (r, _) = check(&["printer", "q1", "--server", &sched]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "scheduler-unreachable", "{r:?}");
    let (r, _) = check(&[
        "printer",
        &format!("ipp://localhost:{closed}/printers/q1"),
        "--server",
        &sched,
    ]);
    assert_eq!(error(&r), "scheduler-unreachable", "{r:?}");
    drop(hung);
}

#[test]
fn unresolved_name() {
    // Our own namespace, whose resolver (127.0.0.1:53 there) answers
    // nothing: the lookup fails without a packet leaving it.
    let ns = Netns::new("pu");
    let etc = Path::new("/etc/netns").join(&ns.name);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let (r, _) = check_in(&ns, &["printer", "ipp://printer.fl.test/ipp/print"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "unresolved", "{r:?}");
    assert!(r.summary.contains("printer.fl.test"), "{}", r.summary);
    let (r, _) = check_in(&ns, &["printer", "q1", "--server", "cups.fl.test"]);
    assert_eq!(error(&r), "unresolved", "{r:?}");
}

#[test]
fn not_ipp_is_an_ipp_error() {
    // A real HTTP server that does not speak IPP (it refuses POST: 501).
    let python = require("python3", "python3");
    let dir = tempdir();
    let port = free_tcp_port();
    let mut web = Peer::start(
        "http.server",
        Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_tcp(&mut web, SocketAddr::from(([127, 0, 0, 1], port)));
    let (r, _) = check(&["printer", &format!("http://127.0.0.1:{port}/ipp/print")]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert_eq!(error(&r), "ipp-error", "{r:?}");
    assert_eq!(r.fields["http_status"], "501", "{r:?}");
}
