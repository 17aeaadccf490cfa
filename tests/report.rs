//! Support metrics end to end, with real processes on loopback (issue 16,
//! "Support metrics"):
//!
//! * a relay serving `/metrics` (`metrics_listen`), an agent whose monitor
//!   fails at once (an alert ticket), and a technician who opens a ticket,
//!   comments and resolves it; `firstline report --json` then counts both
//!   tickets by source, the resolved one as first-contact resolution with
//!   one response, the alert ticket in the backlog; a viewer may ask for
//!   the report, a bad `--since` is a usage error;
//! * `/metrics` is scraped over plain HTTP and parsed with a Prometheus
//!   text-format parser (`prometheus-parse`): agents online, requests by
//!   kind and outcome (a viewer's forbidden `ticket new` among them),
//!   alerts and events ingested, tickets by state, both latency histograms.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (closed again; the relay binds it soon).
fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.0: the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn scrape(port: u16) -> Scrape {
    let (status, body) = get(port, "/metrics");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(scrape, name, labels).map(|s| match s.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
        _ => panic!("{name} is no plain value"),
    })
}

fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn ok_run(console: &Console, args: &[&str]) -> Value {
    ok_json(console.run(args))
}

#[test]
fn report_and_metrics_from_a_real_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    let port = free_tcp_port();
    relay.configure(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    relay.serve();
    assert!(relay.log().contains("/metrics"), "{}", relay.log());
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    // Crit as soon as / is more than 2% used: an incident at once.
    agent.append(
        "[[monitor]]\nname = \"full\"\ncheck = \"disk\"\n\
         args = [\"/\", \"--warn\", \"1\", \"--crit\", \"2\"]\nevery = \"1s\"\nfail_after = 1\n",
    );
    agent.start();
    let tech = console_as(&relay, tmp.path(), "tina", "technician");
    let viewer = console_as(&relay, tmp.path(), "vic", "viewer");

    let alert = wait_until(Duration::from_secs(30), || {
        ok_run(&tech, &["tickets", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["source"] == "alert")
    });
    assert!(
        alert,
        "no alert ticket\nagent:\n{}\nrelay:\n{}",
        agent.log(),
        relay.log()
    );

    let made = ok_run(
        &tech,
        &["ticket", "new", "printer down", "--agent", "pc1", "--json"],
    );
    let id = made["id"]
        .as_u64()
        .or(made["ticket"]["id"].as_u64())
        .unwrap_or_else(|| panic!("no id in {made}"))
        .to_string();
    ok_run(&tech, &["ticket", "comment", &id, "paper added", "--json"]);
    ok_run(&tech, &["ticket", "resolve", &id, "--json"]);
    // A viewer may not open tickets (counted as forbidden).
    let refused = viewer.run(&["ticket", "new", "nope"]);
    assert_ne!(refused.status.code(), Some(0));

    // The report, as a viewer.
    let r = ok_run(&viewer, &["report", "--since", "1d", "--json"]);
    assert_eq!(r["opened"], 2, "{r:#}");
    let sources: Vec<(String, u64)> = r["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap().to_string(),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [("alert".to_string(), 1), ("technician".to_string(), 1)]
    );
    assert_eq!(r["resolved"], 1);
    assert_eq!(r["first_contact"], 1);
    assert_eq!(r["first_contact_rate"], 1.0);
    assert_eq!(r["no_human"], 0);
    assert_eq!(r["first_response"]["count"], 1);
    assert_eq!(r["resolution"]["count"], 1);
    assert!(
        r["resolution"]["median_secs"].as_u64().unwrap() < 120,
        "{r:#}"
    );
    assert_eq!(r["backlog_total"], 1, "{r:#}");
    assert_eq!(r["backlog"][0]["age"], "<1h");
    assert_eq!(r["backlog"][0]["priority"], "high");
    assert_eq!(r["escalations"], serde_json::json!([]));
    // For people: the same figures.
    let human = tech.run(&["report"]);
    let out = stdout(&human);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));
    assert!(
        out.contains("first-contact rate      100.0% (1 of 1)"),
        "{out}"
    );
    assert!(out.contains("backlog (open, in progress now): 1"), "{out}");
    let bad = tech.run(&["report", "--since", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(stderr(&bad).contains("--since soon"), "{}", text(&bad));

    // /metrics, parsed.
    let m = scrape(port);
    assert_eq!(value(&m, "firstline_agents_online", &[]), Some(1.0));
    let requests = "firstline_console_requests_total";
    let ok = |kind| value(&m, requests, &[("kind", kind), ("outcome", "ok")]);
    assert!(ok("report").unwrap() >= 1.0);
    assert_eq!(ok("ticket_new"), Some(1.0));
    assert!(ok("list_tickets").unwrap() >= 1.0);
    assert_eq!(
        value(
            &m,
            requests,
            &[("kind", "ticket_new"), ("outcome", "forbidden")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &m,
            "firstline_alerts_ingested_total",
            &[("kind", "incident_opened")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(value(&m, "firstline_events_ingested_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(&m, "firstline_tickets", &[("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "firstline_tickets", &[("state", "resolved")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "firstline_tickets", &[("state", "closed")]),
        Some(0.0)
    );
    let histogram = |name: &str, labels: &[(&str, &str)]| {
        let s = sample(&m, name, labels).unwrap_or_else(|| panic!("no {name}"));
        let Metric::Histogram(buckets) = &s.value else {
            panic!("{name} is no histogram")
        };
        let all = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
        assert!(all.count >= 1.0, "{name}: {buckets:?}");
    };
    histogram(
        "firstline_console_request_duration_seconds",
        &[("kind", "report")],
    );
    histogram("firstline_ingest_duration_seconds", &[]);
    let count = value(&m, "firstline_ingest_duration_seconds_count", &[]).unwrap();
    assert!(count >= 1.0);

    // Only /metrics is served.
    let (status, _) = get(port, "/other");
    assert!(status.contains(" 404 "), "{status}");
}
