//! `printer` against real IPP servers on loopback:
//! - a private `cupsd` with a queue made by `lpadmin`: the default printer
//!   (none yet → unknown; then `lpadmin -d`), by URI and by queue name,
//!   stopped with `cupsdisable -r "out of paper"` → crit with the reason,
//!   a job queued while stopped, `cupsenable` → ok, `cupsreject` → crit,
//!   an unknown queue → crit;
//! - `ippeveprinter` (an IPP Everywhere printer, on a private D-Bus), idle →
//!   ok, agreeing with `ipptool`'s get-printer-attributes;
//! - a printer that accepts the connection and never answers, and an
//!   address where nothing listens: bounded, not ok.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::Status;
use firstline_tests::peers::Cups;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn cups_queue_through_its_states() {
    let cups = Cups::start();
    let server = cups.server();

    // No queue, no default yet: nothing to judge.
    let (r, _) = check(&["printer", "--server", &server]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("no default printer"), "{}", r.summary);

    cups.admin("lpadmin", &["-p", "q1", "-E", "-v", "file:///dev/null"]);
    cups.admin("lpadmin", &["-d", "q1"]);

    // The default destination, found by --server and by $CUPS_SERVER.
    let (r, _) = check(&["printer", "--server", &server]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.target.contains("q1"), "{}", r.target);
    assert!(r.summary.contains("idle"), "{}", r.summary);
    assert_eq!(r.metrics["state"], 3.0);
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
    let (r, _) = check(&["printer", "q1", "--server", &server]);
    assert_eq!(r.status, Status::Ok, "{r:?}");

    // Stopped with a reason: crit, saying so.
    cups.admin("cupsdisable", &["-r", "out of paper", "q1"]);
    let (r, _) = check(&["printer", &uri]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("stopped"), "{}", r.summary);
    assert!(r.summary.contains("paused"), "{}", r.summary);
    assert!(r.summary.contains("out of paper"), "{}", r.summary);
    assert_eq!(r.metrics["state"], 5.0);

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
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let closed = free_tcp_port();
    let (r, _) = check(&["printer", &format!("ipp://127.0.0.1:{closed}/printers/q")]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("refused"), "{}", r.summary);

    // No scheduler for the default printer: unknown, not a printer fault.
    let (r, _) = check(&["printer", "--server", &format!("127.0.0.1:{closed}")]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("no CUPS scheduler"), "{}", r.summary);
    drop(hung);
}
