//! `dns` against a real dnsmasq on a loopback port with known records:
//! answers of each type, NXDOMAIN, REFUSED, SERVFAIL (a validating dnsmasq
//! that cannot build a DNSSEC chain of trust), an `--expect` mismatch, a
//! socket that never answers (timeout, bounded), a port where nothing
//! listens and an address with no route (unreachable, at once), the system
//! resolver path (a network namespace whose /etc/resolv.conf points at our
//! dnsmasq, with a dead first server; and one naming no server), and
//! agreement with `check_dig`. Each failure carries its stable `error`
//! field and the `server` asked.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::Status;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A dnsmasq answering for the zone fl.test, killed on drop.
struct Dnsmasq {
    port: u16,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

const RECORDS: &[&str] = &[
    "--local=/fl.test/",
    "--host-record=www.fl.test,192.0.2.10",
    "--host-record=v6.fl.test,2001:db8::10",
    "--mx-host=fl.test,mail.fl.test,10",
    "--txt-record=fl.test,v=spf1 -all",
    "--cname=alias.fl.test,www.fl.test",
    "--ptr-record=10.2.0.192.in-addr.arpa,www.fl.test",
];

fn dnsmasq(extra: &[&str]) -> Dnsmasq {
    dnsmasq_on("127.0.0.1", free_udp_tcp_port(), extra, None)
}

/// A dnsmasq on `listen`:`port`; with no `extra` arguments it serves fl.test,
/// else `extra` says what it does.
fn dnsmasq_on(listen: &str, port: u16, extra: &[&str], netns: Option<&Netns>) -> Dnsmasq {
    let bin = require("dnsmasq", "dnsmasq-base");
    let dir = tempdir();
    let log = dir.path().join("dnsmasq.log");
    let mut args: Vec<String> = vec![
        bin.display().to_string(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={listen}"),
        format!("--port={port}"),
        "--user=root".into(),
        "--group=root".into(),
        "--pid-file=".into(),
        "--log-queries".into(),
        format!("--log-facility={}", log.display()),
    ];
    let what = if extra.is_empty() { RECORDS } else { extra };
    args.extend(what.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = match netns {
        Some(ns) => ns.cmd(&refs),
        None => {
            let mut c = Command::new(refs[0]);
            c.args(&refs[1..]);
            c
        }
    };
    let mut peer = Peer::start("dnsmasq", &mut cmd);
    if netns.is_none() {
        wait_for_tcp(&mut peer, SocketAddr::from(([127, 0, 0, 1], port)));
    } else {
        wait_for_path(&mut peer, &log);
        std::thread::sleep(Duration::from_millis(300));
    }
    Dnsmasq {
        port,
        _peer: peer,
        _dir: dir,
    }
}

fn server(d: &Dnsmasq) -> String {
    format!("127.0.0.1:{}", d.port)
}

/// The `error` field, or "" when there is none.
fn error(r: &firstline_proto::CheckResult) -> &str {
    r.fields.get("error").map(String::as_str).unwrap_or("")
}

#[test]
fn answers_of_each_type() {
    let d = dnsmasq(&[]);
    let s = server(&d);

    let (r, _) = check(&["dns", "www.fl.test", "--server", &s]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.contains("192.0.2.10"), "{}", r.summary);
    assert!(r.summary.contains(&s), "names the server: {}", r.summary);
    assert!(r.metrics.contains_key("time_ms"), "{r:?}");
    assert_eq!(r.metrics["answers"], 1.0);
    assert_eq!(error(&r), "", "{r:?}");
    assert_eq!(r.fields["server"], s);
    assert_eq!(r.fields["answer"], "192.0.2.10");

    for (name, rtype, want) in [
        ("v6.fl.test", "AAAA", "2001:db8::10"),
        ("fl.test", "MX", "mail.fl.test"),
        ("fl.test", "TXT", "v=spf1 -all"),
        ("alias.fl.test", "CNAME", "www.fl.test"),
        ("192.0.2.10", "PTR", "www.fl.test"),
    ] {
        let (r, _) = check(&[
            "dns", name, "--type", rtype, "--server", &s, "--expect", want,
        ]);
        assert_eq!(r.status, Status::Ok, "{name} {rtype}: {r:?}");
        assert!(r.summary.contains(want), "{name} {rtype}: {}", r.summary);
    }
    // An A query on the alias follows the CNAME and says so.
    let (r, _) = check(&[
        "dns",
        "alias.fl.test",
        "--server",
        &s,
        "--expect",
        "192.0.2.10",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.contains("CNAME"), "{}", r.summary);
}

#[test]
fn failures_are_told_apart() {
    let d = dnsmasq(&[]);
    let s = server(&d);

    let (r, _) = check(&["dns", "nothere.fl.test", "--server", &s]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("NXDOMAIN"), "{}", r.summary);
    assert_eq!(error(&r), "nxdomain", "{r:?}");
    assert_eq!(r.fields["server"], s);

    // www exists but has no MX.
    let (r, _) = check(&["dns", "www.fl.test", "--type", "MX", "--server", &s]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("no MX record"), "{}", r.summary);
    assert_eq!(error(&r), "no-answer", "{r:?}");

    // Outside its zone, with no upstream, dnsmasq refuses.
    let (r, _) = check(&["dns", "www.not-our-zone.org", "--server", &s]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("REFUSED"), "{}", r.summary);
    assert_eq!(error(&r), "refused", "{r:?}");
    assert_eq!(r.fields["server"], s);

    let (r, _) = check(&[
        "dns",
        "www.fl.test",
        "--server",
        &s,
        "--expect",
        "192.0.2.99",
    ]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("wrong answer"), "{}", r.summary);
    assert!(r.summary.contains("192.0.2.10"), "{}", r.summary);
    assert!(r.summary.contains("192.0.2.99"), "{}", r.summary);
    assert_eq!(error(&r), "mismatch", "{r:?}");
    assert_eq!(r.fields["answer"], "192.0.2.10");

    // Query-time thresholds: any query takes at least 0 ms.
    let (r, _) = check(&["dns", "www.fl.test", "--server", &s, "--warn", "0"]);
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert_eq!(error(&r), "", "slow is not a failure of the DNS: {r:?}");

    // Over TCP too.
    let (r, _) = check(&["dns", "www.fl.test", "--server", &s, "--tcp"]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
}

#[test]
fn servfail_from_a_validating_resolver() {
    // dnsmasq forwarding to our zone server and validating DNSSEC: the zone is
    // unsigned and the chain of trust cannot be built, so it answers SERVFAIL.
    let zone = dnsmasq(&[]);
    let upstream = format!("--server=127.0.0.1#{}", zone.port);
    let validating = dnsmasq_on(
        "127.0.0.1",
        free_udp_tcp_port(),
        &[
            "--dnssec",
            "--dnssec-check-unsigned",
            "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            &upstream,
        ],
        None,
    );
    let (r, _) = check(&["dns", "www.fl.test", "--server", &server(&validating)]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("SERVFAIL"), "{}", r.summary);
    assert_eq!(error(&r), "servfail", "{r:?}");
}

#[test]
fn silent_server_times_out_quickly() {
    // A UDP socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let s = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (r, _) = check(&["dns", "www.fl.test", "--server", &s, "--timeout", "1s"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("timeout"), "{}", r.summary);
    assert_eq!(error(&r), "timeout", "{r:?}");
    assert_eq!(r.fields["server"], s);
    // Bounded by the timeout (with a wide margin for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // And a port where nothing listens at all: told at once, over UDP (the
    // ICMP port unreachable) and TCP (refused), not after the timeout.
    let closed = free_udp_tcp_port();
    let closed = format!("127.0.0.1:{closed}");
    for tcp in [false, true] {
        let mut args = vec!["dns", "www.fl.test", "--server", &closed, "--timeout", "5s"];
        if tcp {
            args.push("--tcp");
        }
        let started = Instant::now();
        let (r, _) = check(&args);
        assert_eq!(r.status, Status::Crit, "{r:?}");
        assert_eq!(error(&r), "unreachable", "tcp={tcp}: {r:?}");
        assert_eq!(r.fields["server"], closed);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "not a timeout: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn no_route_and_no_server() {
    // In a namespace of our own with only loopback, nothing can leave.
    let ns = Netns::new("dnr");
    let (r, _) = check_in(
        &ns,
        &[
            "dns",
            "www.fl.test",
            "--server",
            "198.51.100.53",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "unreachable", "{r:?}");
    assert!(r.summary.contains("no route"), "{}", r.summary);
    assert_eq!(r.fields["server"], "198.51.100.53");

    // A resolv.conf that names no nameserver.
    let etc = Path::new("/etc/netns").join(&ns.name);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "search fl.test\n").unwrap();
    let (r, _) = check_in(&ns, &["dns", "www.fl.test"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "no-servers", "{r:?}");
}

#[test]
fn system_resolver_reports_which_server_answered() {
    // In our own namespace `ip netns exec` puts /etc/netns/NAME/resolv.conf
    // over /etc/resolv.conf: nothing listens on the first nameserver, our
    // dnsmasq on port 53 of the second.
    let ns = Netns::new("dns");
    ns.exec(&["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"]);
    let _d = dnsmasq_on("127.0.0.2", 53, &[], Some(&ns));
    let etc = Path::new("/etc/netns").join(&ns.name);
    std::fs::create_dir_all(&etc).unwrap();

    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.2\n").unwrap();
    let (r, _) = check_in(&ns, &["dns", "www.fl.test"]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.contains("answered by 127.0.0.2"), "{}", r.summary);

    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.3\nnameserver 127.0.0.2\n",
    )
    .unwrap();
    let (r, _) = check_in(&ns, &["dns", "www.fl.test", "--timeout", "4s"]);
    assert_eq!(r.status, Status::Warn, "a dead first server warns: {r:?}");
    assert!(r.summary.contains("answered by 127.0.0.2"), "{}", r.summary);
    assert!(r.summary.contains("127.0.0.3"), "{}", r.summary);
    assert_eq!(r.metrics["servers_tried"], 2.0);
    assert_eq!(error(&r), "", "{r:?}");
    assert_eq!(r.fields["server"], "127.0.0.2");
    assert_eq!(r.fields["failed"], "127.0.0.3 unreachable");

    // NXDOMAIN through the system path too.
    let (r, _) = check_in(&ns, &["dns", "nothere.fl.test", "--timeout", "4s"]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert!(r.summary.contains("NXDOMAIN"), "{}", r.summary);
    assert_eq!(error(&r), "nxdomain", "{r:?}");
    assert_eq!(r.fields["server"], "127.0.0.2");

    // Only the dead server: unreachable, and it was the one asked.
    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.3\n").unwrap();
    let (r, _) = check_in(&ns, &["dns", "www.fl.test", "--timeout", "2s"]);
    assert_eq!(error(&r), "unreachable", "{r:?}");
    assert_eq!(r.fields["server"], "127.0.0.3");
}

#[test]
fn agrees_with_check_dig() {
    let dig = nagios_plugin("check_dig", "monitoring-plugins-standard");
    require("dig", "bind9-dnsutils");
    let d = dnsmasq(&[]);
    let port = d.port.to_string();
    let out = Command::new(&dig)
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-l",
            "www.fl.test",
            "-a",
            "192.0.2.10",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "check_dig: {text}");
    assert!(text.contains("192.0.2.10"), "{text}");
    let (r, _) = check(&[
        "dns",
        "www.fl.test",
        "--server",
        &server(&d),
        "--expect",
        "192.0.2.10",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?} vs check_dig: {text}");

    // Both see the wrong answer (check_dig says WARNING, we say crit).
    let out = Command::new(&dig)
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-l",
            "www.fl.test",
            "-a",
            "192.0.2.99",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let (r, _) = check(&[
        "dns",
        "www.fl.test",
        "--server",
        &server(&d),
        "--expect",
        "192.0.2.99",
    ]);
    assert_ne!(r.status, Status::Ok);
}
