//! Verdicts that never claim more than was verified (issue 25), for what
//! the diagnosis matrix (`tests/matrix.rs`) does not cover: an agent that
//! may not make a check. Before, an agent without `CAP_NET_RAW` pinged the
//! gateway, saw nothing and blamed the network (or went on to guess); now
//! the run ends as `probe-not-permitted` (kind `error`, team firstline
//! admin), run twice against the same fault.
//!
//! The agent runs as `nobody` with no capability, inside a network
//! namespace of the test's own whose only link is a veth pair with both
//! ends inside it: a default route exists, and nothing can leave.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::netlab::Ns;
use firstline_tests::peers::require;
use firstline_tests::{bin, run, text};
use serde_json::Value;

#[test]
fn an_agent_that_may_not_ping_says_so_and_blames_no_network() {
    require("ip", "iproute2");
    let setpriv = require("setpriv", "util-linux");
    let ns = Ns::new("noraw");
    ns.ip(&["link", "add", "a0", "type", "veth", "peer", "name", "b0"]);
    ns.ip(&["addr", "add", "10.77.0.1/30", "dev", "a0"]);
    ns.ip(&["addr", "add", "10.77.0.2/30", "dev", "b0"]);
    ns.ip(&["link", "set", "a0", "up"]);
    ns.ip(&["link", "set", "b0", "up"]);
    ns.ip(&["route", "add", "default", "via", "10.77.0.2"]);
    // Unprivileged ICMP is off in a new namespace ("1 0"): say so, since
    // the fault is the agent's missing permission, not a lucky sysctl.
    let range = run(ns.cmd("cat").arg("/proc/sys/net/ipv4/ping_group_range"));
    let range = String::from_utf8_lossy(&range.stdout).into_owned();
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["1", "0"]);
    let home = tempfile::tempdir().unwrap();
    for round in 1..=2 {
        let out = run(ns
            .cmd(&setpriv)
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(bin("firstline-agent"))
            .args(["runbook", "no-internet"])
            .args(["external=10.77.0.2", "name=www.example.test", "--json"])
            .current_dir(home.path()));
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        let v: Value = serde_json::from_str(&last)
            .unwrap_or_else(|e| panic!("round {round}: no verdict ({e}): {}", text(&out)));
        assert_eq!(
            (v["verdict"].as_str(), v["cause"].as_str()),
            (Some("error"), Some("probe-not-permitted")),
            "round {round}: {v}"
        );
        assert_eq!(v["team"], "firstline admin");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("`gateway`") && message.contains("CAP_NET_RAW"),
            "round {round}: the message names the step and what it lacks: {message}"
        );
        let steps: Vec<&str> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["link", "gateway"], "round {round}: nothing after");
        assert_eq!(out.status.code(), Some(1), "round {round}: {}", text(&out));
    }
}
