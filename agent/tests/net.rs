//! `net` inside network namespaces made here, from the link outwards: only
//! loopback (`no-link`); a veth whose far end is down (`no-link`, the link
//! `no-carrier`) or that is itself down (`down`); both ends up without an
//! address — the automatic IPv6 link-local one does not count —
//! (`no-address`), and with only a 169.254/16 address; an address but no
//! default route, or only an `unreachable` one (`no-default-route`); a
//! default route via the far end (ok, `gateway` set); an IPv6-only default
//! route. The same namespace read through `nsenter`, which does not
//! remount /sys, gives the same answer (the flags stand in for /sys).
//!
//! `net` sends nothing; the addresses used are documentation ranges inside
//! the namespaces made here.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::{CheckResult, Status};
use std::process::Command;

fn net(ns: &Netns) -> CheckResult {
    check_in(ns, &["net"]).0
}

fn error(r: &CheckResult) -> &str {
    r.fields.get("error").map(String::as_str).unwrap_or("")
}

/// `net` in `ns` until `done` holds (or STARTUP passes): the last result.
fn until(ns: &Netns, done: impl Fn(&CheckResult) -> bool) -> CheckResult {
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        let r = net(ns);
        if done(&r) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Two namespaces joined by a veth pair, both ends down: `va` in a, `vb` in b.
fn pair() -> (Netns, Netns) {
    let a = Netns::new("na");
    let b = Netns::new("nb");
    a.exec(&[
        "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
    ]);
    (a, b)
}

#[test]
fn only_loopback_is_no_link() {
    let ns = Netns::new("nl");
    let r = net(&ns);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "no-link", "{r:?}");
    assert_eq!(r.metrics["links"], 0.0);
    assert_eq!(r.metrics["links_up"], 0.0);
    assert_eq!(r.metrics["addresses"], 0.0);
    assert_eq!(r.metrics["default_route"], 0.0);
    assert_eq!(r.fields["interfaces"], "", "loopback is not listed: {r:?}");
    assert!(!r.fields.contains_key("gateway"), "{r:?}");
}

#[test]
fn from_the_link_outwards() {
    let (a, b) = pair();

    // Administratively down.
    let r = net(&a);
    assert_eq!(error(&r), "no-link", "{r:?}");
    assert_eq!(r.fields["interfaces"], "va:down", "{r:?}");
    assert_eq!(r.metrics["links"], 1.0);

    // Up, but the far end is down: no carrier.
    a.exec(&["ip", "link", "set", "va", "up"]);
    let r = until(&a, |r| r.fields["interfaces"] != "va:down");
    assert_eq!(error(&r), "no-link", "{r:?}");
    assert_eq!(r.fields["interfaces"], "va:no-carrier", "{r:?}");
    assert_eq!(r.metrics["links_up"], 0.0);

    // Carrier, no address (the kernel's fe80:: one is link-local).
    b.exec(&["ip", "link", "set", "vb", "up"]);
    let r = until(&a, |r| error(r) != "no-link");
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(error(&r), "no-address", "{r:?}");
    assert_eq!(r.fields["interfaces"], "va:up", "{r:?}");
    assert_eq!(r.metrics["links_up"], 1.0);
    assert_eq!(r.metrics["addresses"], 0.0);

    // A self-assigned 169.254/16 address is no address either.
    a.exec(&["ip", "addr", "add", "169.254.7.7/16", "dev", "va"]);
    let r = net(&a);
    assert_eq!(error(&r), "no-address", "{r:?}");
    a.exec(&["ip", "addr", "del", "169.254.7.7/16", "dev", "va"]);

    // An address, no default route.
    a.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "va"]);
    b.exec(&["ip", "addr", "add", "198.51.100.2/24", "dev", "vb"]);
    let r = net(&a);
    assert_eq!(error(&r), "no-default-route", "{r:?}");
    assert_eq!(r.metrics["addresses"], 1.0);
    assert_eq!(r.metrics["default_route"], 0.0);
    assert!(r.summary.contains("198.51.100.1/24"), "{}", r.summary);

    // An `unreachable` default route is no way out.
    a.exec(&["ip", "route", "add", "unreachable", "default"]);
    let r = net(&a);
    assert_eq!(error(&r), "no-default-route", "{r:?}");
    a.exec(&["ip", "route", "del", "unreachable", "default"]);

    // A default route via the far end: all is well.
    a.exec(&["ip", "route", "add", "default", "via", "198.51.100.2"]);
    let (r, code) = check_in(&a, &["net"]);
    assert_eq!(code, 0);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(!r.fields.contains_key("error"), "{r:?}");
    assert_eq!(r.fields["gateway"], "198.51.100.2");
    assert_eq!(r.metrics["default_route"], 1.0);
    assert_eq!(
        r.summary,
        "1 link, 1 up (va), 1 address (198.51.100.1/24), default route via 198.51.100.2 (va)"
    );

    // Read without the remounted /sys: the interface flags say the same.
    let nsenter = require("nsenter", "util-linux");
    let (r2, _) = check_with(
        Command::new(nsenter)
            .arg(format!("--net=/run/netns/{}", a.name))
            .args([AGENT, "check", "net"]),
    );
    assert_eq!(r2.status, r.status, "{r2:?}");
    assert_eq!(r2.fields, r.fields, "{r2:?}");
    assert_eq!(r2.metrics, r.metrics, "{r2:?}");

    // The far end goes down: the route stays, the link does not (the
    // kernel tells of a lost carrier within about a second).
    b.exec(&["ip", "link", "set", "vb", "down"]);
    let r = until(&a, |r| error(r) == "no-link");
    assert_eq!(error(&r), "no-link", "{r:?}");
    assert_eq!(r.fields["interfaces"], "va:no-carrier", "{r:?}");
}

#[test]
fn ipv6_only() {
    let (a, b) = pair();
    a.exec(&["ip", "link", "set", "va", "up"]);
    b.exec(&["ip", "link", "set", "vb", "up"]);
    a.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8::1/64",
        "dev",
        "va",
        "nodad",
    ]);
    b.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8::2/64",
        "dev",
        "vb",
        "nodad",
    ]);
    let r = net(&a);
    assert_eq!(error(&r), "no-default-route", "{r:?}");
    assert_eq!(r.metrics["addresses"], 1.0, "{r:?}");
    a.exec(&["ip", "-6", "route", "add", "default", "via", "2001:db8::2"]);
    let r = net(&a);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.fields["gateway"], "2001:db8::2");
    assert_eq!(r.metrics["default_route"], 1.0);
}

#[test]
fn help_names_the_timeout() {
    let out = must(Command::new(AGENT).args(["check", "net", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--timeout"), "{text}");
}
