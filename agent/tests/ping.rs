//! `ping` for real: 127.0.0.1 and ::1; loss over a veth pair between two
//! network namespaces of our own, impaired with `tc netem loss` (or
//! nftables random drops where the kernel has no netem); the
//! unprivileged paths (an ICMP datagram socket allowed by
//! `net.ipv4.ping_group_range`, and no permission at all → `unknown`
//! naming what is missing); and agreement with `check_ping`. The `error`
//! field tells why: `no-route` (no route at all, or an `unreachable` one),
//! `timeout` (no reply: a silent link, or a neighbour that never answers
//! ARP), `loss`, `unresolved` (a namespace whose resolver answers nothing),
//! `no-permission`.
//!
//! Every packet stays on loopback or inside the namespaces made here.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::{CheckResult, Status};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The `error` field, or "" when there is none.
fn error(r: &CheckResult) -> &str {
    r.fields.get("error").map(String::as_str).unwrap_or("")
}

#[test]
fn loopback_v4_and_v6() {
    for host in ["127.0.0.1", "::1"] {
        let (r, _) = check(&["ping", host, "--count", "4", "--interval", "50ms"]);
        assert_eq!(r.status, Status::Ok, "{host}: {r:?}");
        assert_eq!(r.metrics["sent"], 4.0);
        assert_eq!(r.metrics["received"], 4.0);
        assert_eq!(r.metrics["loss_pct"], 0.0);
        for k in ["rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "jitter_ms"] {
            assert!(r.metrics[k] >= 0.0, "{host}: {k} in {r:?}");
        }
        assert!(r.metrics["rtt_min_ms"] <= r.metrics["rtt_avg_ms"]);
        assert!(r.metrics["rtt_avg_ms"] <= r.metrics["rtt_max_ms"]);
    }
    // A name is looked up first and both are shown.
    let (r, _) = check(&[
        "ping",
        "localhost",
        "-4",
        "--count",
        "2",
        "--interval",
        "50ms",
    ]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.target, "localhost (127.0.0.1)");
}

/// Two namespaces joined by a veth pair: 198.51.100.1 (a) — 198.51.100.2 (b).
fn link_pair() -> (Netns, Netns) {
    require("tc", "iproute2");
    let a = Netns::new("pa");
    let b = Netns::new("pb");
    a.exec(&[
        "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "va"]);
    b.exec(&["ip", "addr", "add", "198.51.100.2/24", "dev", "vb"]);
    a.exec(&["ip", "link", "set", "va", "up"]);
    b.exec(&["ip", "link", "set", "vb", "up"]);
    (a, b)
}

/// Drop `pct`% of what b sends on its end of the link: `tc netem loss`, or,
/// on a kernel built without netem (as this project's machines are), the
/// same random loss from nftables (`numgen random`).
fn impair(b: &Netns, pct: u32) {
    let netem = b
        .cmd(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            "vb",
            "root",
            "netem",
            "loss",
            &format!("{pct}%"),
        ])
        .output()
        .expect("run tc");
    if netem.status.success() {
        return;
    }
    let err = String::from_utf8_lossy(&netem.stderr);
    assert!(err.contains("unknown"), "tc netem failed: {err}");
    eprintln!(
        "no netem in this kernel ({}); dropping with nftables instead",
        err.trim()
    );
    require("nft", "nftables");
    let _ = b
        .cmd(&["nft", "delete", "table", "inet", "flloss"])
        .output();
    b.exec(&["nft", "add", "table", "inet", "flloss"]);
    b.exec(&[
        "nft",
        "add chain inet flloss out { type filter hook postrouting priority 0; }",
    ]);
    let rule = if pct >= 100 {
        "add rule inet flloss out oifname \"vb\" drop".to_string()
    } else {
        format!("add rule inet flloss out oifname \"vb\" numgen random mod 100 < {pct} drop")
    };
    b.exec(&["nft", &rule]);
}

#[test]
fn loss_over_an_impaired_link() {
    let (a, b) = link_pair();
    let (r, _) = check_in(
        &a,
        &["ping", "198.51.100.2", "--count", "3", "--interval", "50ms"],
    );
    assert_eq!(r.status, Status::Ok, "a clean link first: {r:?}");

    // Half the replies are dropped on b's side.
    impair(&b, 50);
    let (r, _) = check_in(
        &a,
        &[
            "ping",
            "198.51.100.2",
            "--count",
            "40",
            "--interval",
            "20ms",
            "--timeout",
            "500ms",
        ],
    );
    let loss = r.metrics["loss_pct"];
    // 40 packets at 50%: outside 10–90% is a one-in-a-billion draw.
    assert!((10.0..=90.0).contains(&loss), "{r:?}");
    assert_ne!(r.status, Status::Ok, "loss ≥ 20% is not ok: {r:?}");
    assert!(r.summary.contains("% loss"), "{}", r.summary);
    assert_eq!(error(&r), "loss", "{r:?}");

    // Everything dropped: crit, and still bounded by count × interval + timeout.
    impair(&b, 100);
    let (r, _) = check_in(
        &a,
        &[
            "ping",
            "198.51.100.2",
            "--count",
            "5",
            "--interval",
            "50ms",
            "--timeout",
            "500ms",
        ],
    );
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(r.metrics["loss_pct"], 100.0);
    assert!(r.summary.contains("100% loss"), "{}", r.summary);
    assert_eq!(error(&r), "timeout", "{r:?}");
}

#[test]
fn no_route_is_not_no_answer() {
    let (a, b) = link_pair();
    // No route at all: the kernel refuses to send, at once.
    let started = Instant::now();
    let (r, _) = check_in(
        &a,
        &["ping", "203.0.113.7", "--count", "2", "--interval", "50ms"],
    );
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "no-route", "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // An `unreachable` route says the same.
    a.exec(&["ip", "route", "add", "unreachable", "203.0.113.0/24"]);
    let (r, _) = check_in(
        &a,
        &["ping", "203.0.113.7", "--count", "2", "--interval", "50ms"],
    );
    assert_eq!(error(&r), "no-route", "{r:?}");
    let (r, _) = check_in(&a, &["ping", "2001:db8:1::7", "--count", "1"]);
    assert_eq!(error(&r), "no-route", "{r:?}");

    // On the link, but nobody has that address: after its three ARP tries
    // the kernel says "host unreachable" about the request. No reply (it
    // is not counted as one), and not "no route" either.
    let (r, _) = check_in(
        &a,
        &["ping", "198.51.100.99", "--count", "1", "--timeout", "6s"],
    );
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(r.metrics["received"], 0.0, "{r:?}");
    assert_eq!(error(&r), "unreachable", "{r:?}");
    assert!(r.summary.contains("host unreachable"), "{}", r.summary);

    // A router on the way (b, forwarding, with no route further) says so.
    b.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    a.exec(&["ip", "route", "add", "192.0.2.0/24", "via", "198.51.100.2"]);
    let (r, _) = check_in(
        &a,
        &["ping", "192.0.2.7", "--count", "2", "--interval", "50ms"],
    );
    assert_eq!(r.metrics["received"], 0.0, "{r:?}");
    assert_eq!(error(&r), "unreachable", "{r:?}");
    assert!(r.summary.contains("from 198.51.100.2"), "{}", r.summary);

    // A name that does not resolve (the namespace's resolver is silent).
    let etc = Path::new("/etc/netns").join(&a.name);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let (r, _) = check_in(&a, &["ping", "gateway.fl.test", "--count", "1"]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert_eq!(error(&r), "unresolved", "{r:?}");
}

#[test]
fn unprivileged_user() {
    require("setpriv", "util-linux");
    let dir = tempdir();
    let agent = world_runnable_agent(dir.path());
    let agent = agent.to_str().unwrap();
    let ns = Netns::new("pu");
    let as_nobody = |ns: &Netns| {
        let mut c = ns.cmd(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            agent,
            "check",
            "ping",
            "127.0.0.1",
            "--count",
            "2",
            "--interval",
            "50ms",
        ]);
        check_with(&mut c).0
    };

    // A new namespace starts with ping_group_range "1 0": no one may.
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0"]);
    let r = as_nobody(&ns);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("CAP_NET_RAW"), "{}", r.summary);
    assert!(r.summary.contains("ping_group_range"), "{}", r.summary);
    assert_eq!(error(&r), "no-permission", "{r:?}");

    // Allowed by ping_group_range: the datagram socket works without privilege.
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ping_group_range=0 2147483647",
    ]);
    let r = as_nobody(&ns);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.metrics["received"], 2.0);
}

#[test]
fn agrees_with_check_ping() {
    let plugin = nagios_plugin("check_ping", "monitoring-plugins-basic");
    require("ping", "iputils-ping");
    for host in ["127.0.0.1", "::1"] {
        let out = Command::new(&plugin)
            .args(["-H", host, "-w", "100,20%", "-c", "500,60%", "-p", "3"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "check_ping {host}: {text}");
        assert!(text.contains("Packet loss = 0%"), "{text}");
        let (r, _) = check(&[
            "ping", host, "--warn", "100,20%", "--crit", "500,60%", "--count", "3",
        ]);
        assert_eq!(r.status, Status::Ok, "{r:?} vs check_ping: {text}");
        assert_eq!(r.metrics["loss_pct"], 0.0);
    }

    // Over a dead link both say critical with 100% loss.
    let (a, b) = link_pair();
    impair(&b, 100);
    let out = a
        .cmd(&[
            plugin.to_str().unwrap(),
            "-H",
            "198.51.100.2",
            "-w",
            "100,20%",
            "-c",
            "500,60%",
            "-p",
            "3",
            "-t",
            "5",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "check_ping: {text}");
    let (r, _) = check_in(
        &a,
        &["ping", "198.51.100.2", "--count", "3", "--timeout", "500ms"],
    );
    assert_eq!(r.status, Status::Crit, "{r:?} vs check_ping: {text}");
}
