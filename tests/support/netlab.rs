//! A small network of the test's own, made of network namespaces: nothing
//! in it is joined to this host, so no packet of a test can leave the
//! machine, whatever a fault does to links, addresses or routes.
//!
//! [`Ns`] is one namespace (its own loopback up, its own
//! `/etc/netns/NAME/resolv.conf` when asked); [`Lab`] is the office of a
//! "no internet" ticket: a client machine joined by a veth pair to a
//! router that is its default gateway and also stands for the outside host
//! and the network's DNS server (`/32` addresses on the router's loopback).
//! The addresses are documentation ranges, inside these namespaces only.

use crate::peers::{must, require};
use crate::{run, wait_until};
use std::ffi::OsStr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// One network namespace of this test run, deleted (with its links and its
/// `/etc/netns/NAME`) on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(tag: &str) -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let ip = require("ip", "iproute2");
        let name = format!(
            "fl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        must(Command::new(ip).args(["netns", "add", &name]));
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        must(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip -n NAME ARGS…`, whatever it says.
    pub fn try_ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `program` run inside the namespace (`ip netns exec`, which execs it:
    /// the child is the program itself, killable by its pid).
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// The namespace's own `/etc/resolv.conf` (`ip netns exec` mounts
    /// `/etc/netns/NAME/resolv.conf` over the machine's).
    pub fn set_resolver(&self, nameserver: &str) {
        let dir = std::path::Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("/etc/netns/NAME");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .expect("resolv.conf");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&self.name));
    }
}

/// A client behind a router, all in namespaces. Healthy (see [`Lab::heal`]):
/// client `c0` `192.0.2.2/30`, default route via the router's `r0`
/// `192.0.2.1`; on the router's loopback the outside host `198.51.100.7`
/// and the DNS server's address `203.0.113.53`.
pub struct Lab {
    pub client: Ns,
    pub router: Ns,
}

impl Lab {
    pub const CLIENT_IF: &'static str = "c0";
    pub const ROUTER_IF: &'static str = "r0";
    pub const CLIENT_IP: &'static str = "192.0.2.2";
    pub const GATEWAY: &'static str = "192.0.2.1";
    pub const EXTERNAL: &'static str = "198.51.100.7";
    pub const DNS: &'static str = "203.0.113.53";

    pub fn new(tag: &str) -> Lab {
        let lab = Lab {
            client: Ns::new(&format!("{tag}c")),
            router: Ns::new(&format!("{tag}r")),
        };
        lab.client.ip(&[
            "link",
            "add",
            Lab::CLIENT_IF,
            "type",
            "veth",
            "peer",
            "name",
            Lab::ROUTER_IF,
            "netns",
            &lab.router.name,
        ]);
        lab.heal();
        lab
    }

    /// Back to healthy, whatever was broken (every command is idempotent),
    /// and wait until the client's link has its carrier again.
    pub fn heal(&self) {
        let (c, r) = (&self.client, &self.router);
        r.ip(&["link", "set", Lab::ROUTER_IF, "up"]);
        r.ip(&[
            "addr",
            "replace",
            &format!("{}/30", Lab::GATEWAY),
            "dev",
            Lab::ROUTER_IF,
        ]);
        for host in [Lab::EXTERNAL, Lab::DNS] {
            r.ip(&["addr", "replace", &format!("{host}/32"), "dev", "lo"]);
        }
        c.ip(&["link", "set", Lab::CLIENT_IF, "up"]);
        c.ip(&[
            "addr",
            "replace",
            &format!("{}/30", Lab::CLIENT_IP),
            "dev",
            Lab::CLIENT_IF,
        ]);
        c.ip(&["route", "replace", "default", "via", Lab::GATEWAY]);
        // A failed neighbour entry of the gateway (a fault before) is
        // forgotten, so the next packet asks again at once.
        let _ = c.try_ip(&["neigh", "flush", "dev", Lab::CLIENT_IF]);
        let carrier = wait_until(Duration::from_secs(10), || {
            let show = c.ip(&["link", "show", Lab::CLIENT_IF]);
            show.contains("LOWER_UP") && show.contains("state UP")
        });
        assert!(carrier, "the lab's link did not come back up");
    }

    /// Wait until the client's link has lost its carrier (after the
    /// router's end went down).
    pub fn wait_no_carrier(&self) {
        let gone = wait_until(Duration::from_secs(10), || {
            !self
                .client
                .ip(&["link", "show", Lab::CLIENT_IF])
                .contains("LOWER_UP")
        });
        assert!(gone, "the client's link kept its carrier");
    }
}
