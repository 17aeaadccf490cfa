//! The diagnosis matrix (issue 11): every cause the shipped runbooks can
//! name, produced for real and diagnosed twice against the same fault —
//! locally (`firstline-agent runbook`) and through the relay (`firstline
//! runbook AGENT`) — and the cause asserted each time.
//!
//! - `no-internet`: a client and a router in network namespaces of their
//!   own (no link to this host: nothing can leave the machine), a dnsmasq
//!   as the network's DNS server on the router and a caching dnsmasq as the
//!   client's resolver; the relay, the agent and the console run inside
//!   the client's namespace, over its loopback.
//! - `cant-print`: a private cupsd (with a backend of the test's own that
//!   reports an empty paper tray) and two `ippeveprinter`s.
//! - `disk-full`: small tmpfs mounts, full of old files, of new files, or
//!   out of inodes; the agent may clean there and never vacuums the
//!   journal (its policy leaves that fix out).
//! - `slow-dns`: dnsmasq on loopback ports, one behind a forwarder thread
//!   that delays every answer, a dead port, a silent one.
//!
//! The rows become the table of `docs/DIAGNOSIS.md` (compared, or written
//! with `FIRSTLINE_UPDATE_DOCS=1`); every wrong cause is reported at once.
//! `FIRSTLINE_MATRIX=no-internet,slow-dns` runs some families only (the
//! docs are then not compared). Only loopback and the test's namespaces are
//! ever targets; every host and name is a parameter.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::diagnosis::{self, Row, Scenario};
use firstline_tests::dns::{free_port, lookup, Dnsmasq, SlowUdp};
use firstline_tests::hub::Hub;
use firstline_tests::netlab::{Lab, Ns};
use firstline_tests::peers::{free_tcp_port, must, require, Cups, Ippeve, Netns};
use firstline_tests::tmpfs::Tmpfs;
use firstline_tests::{bin, run, text, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const FAMILIES: [&str; 4] = ["no-internet", "cant-print", "disk-full", "slow-dns"];
/// Top-level keys of the agents' agent.toml: no scheduled checks.
const SETTINGS: &str = "default_monitors = false";
/// The names of the test's own zone, served by its dnsmasq.
const ZONE: &str = "--local=/lab.test/";
const WWW: &str = "www.lab.test";
const WWW_RECORD: &str = "--host-record=www.lab.test,198.51.100.80";
const NEW_NAME: &str = "intranet.lab.test";
const NO_SUCH_NAME: &str = "nosuch.lab.test";
const DAY: Duration = Duration::from_secs(86_400);

/// The agents' `[policy]`: every fix the runbooks use but `vacuum-journal`
/// (never the machine's journal in a test), and `clean-temp` only below
/// `clean_root`.
fn policy(clean_root: &Path) -> String {
    format!(
        "[policy]\nfixes = [\"flush-dns\", \"resume-printer\", \"cancel-print-jobs\", \"clean-temp\"]\nclean_temp_roots = [\"{}\"]\n",
        clean_root.display()
    )
}

#[test]
fn diagnosis_matrix() {
    for (program, package) in [
        ("ip", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("cupsd", "cups-daemon"),
        ("lpadmin", "cups-client"),
        ("ippeveprinter", "cups-ipp-utils"),
        ("ipptool", "cups-ipp-utils"),
        ("dbus-daemon", "dbus-daemon"),
        ("mount", "mount"),
        ("kill", "procps"),
    ] {
        require(program, package);
    }
    let only: Option<Vec<String>> = std::env::var("FIRSTLINE_MATRIX")
        .ok()
        .map(|v| v.split(',').map(|f| f.trim().to_string()).collect());
    let wants = |family: &str| only.as_ref().is_none_or(|o| o.iter().any(|f| f == family));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let started = std::time::Instant::now();

    let mut results: Vec<(&str, Result<Vec<Row>, String>)> = Vec::new();
    std::thread::scope(|s| {
        let lab = wants("no-internet").then(|| s.spawn(|| no_internet(&root.join("lab"))));
        let host = s.spawn(|| on_this_host(root, &wants));
        if let Some(lab) = lab {
            results.push(("no-internet", lab.join().map_err(panic_text)));
        }
        match host.join() {
            Ok(families) => results.extend(families),
            Err(p) => results.push(("this host's relay and agent", Err(panic_text(p)))),
        }
    });

    let mut rows: Vec<Row> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for family in FAMILIES {
        for (name, result) in results.iter().filter(|(n, _)| *n == family) {
            match result {
                Ok(r) => rows.extend(r.iter().cloned()),
                Err(e) => problems.push(format!("{name}: set-up failed: {e}")),
            }
        }
    }
    for (name, result) in results.iter().filter(|(n, _)| !FAMILIES.contains(n)) {
        if let Err(e) = result {
            problems.push(format!("{name}: {e}"));
        }
    }
    problems.extend(diagnosis::problems(&rows));
    let table = diagnosis::table(&rows);
    println!(
        "{}\n{table}\n(matrix ran in {:.0?})",
        diagnosis::transcript(&rows),
        started.elapsed()
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if only.is_none() {
        for missing in diagnosis::uncovered(&workspace.join("agent/runbooks"), &rows) {
            problems.push(format!("no scenario produces {missing}"));
        }
        let update = std::env::var_os("FIRSTLINE_UPDATE_DOCS").is_some_and(|v| v == "1");
        if let Err(e) = diagnosis::sync_docs(&workspace.join("docs/DIAGNOSIS.md"), &table, update) {
            problems.push(e);
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Test namespaces joined to this host claim their /30 with an
/// `unreachable` route: concurrent ones never share a subnet, and with the
/// link down their subnet still has no way off the machine.
#[test]
fn host_joined_namespaces_claim_distinct_subnets() {
    let unreachable = || must(Command::new("ip").args(["route", "show", "type", "unreachable"]));
    let all: Vec<Netns> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| Netns::new("sub"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let subnets: BTreeSet<&str> = all.iter().map(|n| n.subnet.as_str()).collect();
    assert_eq!(subnets.len(), all.len(), "a subnet was shared: {subnets:?}");
    let held = unreachable();
    for subnet in &subnets {
        assert!(held.contains(subnet), "{subnet} is not pinned:\n{held}");
    }
    let first = &all[0];
    first.set_link(false);
    let out = run(Command::new("ip").args(["route", "get", &first.ns_ip]));
    assert!(
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("unreachable"),
        "with the link down, {} must be unreachable: {}",
        first.ns_ip,
        text(&out)
    );
    let claimed: Vec<String> = all.iter().map(|n| n.subnet.clone()).collect();
    drop(all);
    let left = unreachable();
    for subnet in claimed {
        assert!(
            !left.contains(&subnet),
            "{subnet} still claimed after drop:\n{left}"
        );
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// One relay and one agent on this host's loopback, shared by the
/// printer, disk and DNS families, which run side by side.
fn on_this_host(
    root: &Path,
    wants: &(dyn Fn(&str) -> bool + Sync),
) -> Vec<(&'static str, Result<Vec<Row>, String>)> {
    let families = ["cant-print", "disk-full", "slow-dns"];
    if !families.iter().any(|f| wants(f)) {
        return vec![];
    }
    let disks = root.join("disks");
    std::fs::create_dir_all(&disks).unwrap();
    let hub = Hub::start(&root.join("host"), "pc1", SETTINGS, &policy(&disks), None);
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = families
            .into_iter()
            .filter(|f| wants(f))
            .map(|f| {
                let (hub, disks) = (&hub, &disks);
                let h = s.spawn(move || match f {
                    "cant-print" => cant_print(hub),
                    "disk-full" => disk_full(hub, disks),
                    _ => slow_dns(hub),
                });
                (f, h)
            })
            .collect();
        for (f, h) in handles {
            out.push((f, h.join().map_err(panic_text)));
        }
    });
    out
}

/// A verdict's step `id`, as run.
fn step<'v>(v: &'v Value, id: &str) -> Option<&'v Value> {
    v["steps"].as_array()?.iter().find(|s| s["id"] == id)
}

/// Make `cache` (a caching dnsmasq forwarding to `upstream`) hold a
/// negative answer for [`NEW_NAME`], then teach `upstream` the name: the
/// cache is now stale, and only flushing it helps. The lookups that check
/// each stage run in `netns` when given.
fn stale_negative(
    upstream: &Mutex<Dnsmasq>,
    cache: &Dnsmasq,
    netns: Option<&Ns>,
    upstream_server: &str,
    cache_server: &str,
) {
    let mut up = upstream.lock().unwrap();
    up.remove_host(NEW_NAME);
    assert_eq!(
        lookup(netns, NEW_NAME, upstream_server),
        Err("nxdomain".into())
    );
    cache.hangup();
    assert_eq!(
        lookup(netns, NEW_NAME, cache_server),
        Err("nxdomain".into())
    );
    up.add_host(NEW_NAME, "198.51.100.81");
    let learnt = wait_until(Duration::from_secs(10), || {
        lookup(netns, NEW_NAME, upstream_server).is_ok()
    });
    assert!(learnt, "the DNS server did not read its new host file");
    assert_eq!(
        lookup(netns, NEW_NAME, cache_server),
        Err("nxdomain".into()),
        "the cache forgot its negative answer by itself"
    );
}

// ---------------------------------------------------------------- no-internet

fn no_internet(root: &Path) -> Vec<Row> {
    let lab = Lab::new("ni");
    let dns: SocketAddr = (Lab::DNS.parse::<std::net::IpAddr>().unwrap(), 53).into();
    let upstream = Mutex::new(Dnsmasq::start(
        Some(&lab.router),
        dns,
        &[ZONE.into(), WWW_RECORD.into()],
    ));
    let cache = Dnsmasq::start(
        Some(&lab.client),
        "127.0.0.1:53".parse().unwrap(),
        &[format!("--server={}", Lab::DNS), "--neg-ttl=3600".into()],
    );
    lab.client.set_resolver("127.0.0.1");
    let answers = || lookup(Some(&lab.client), WWW, "127.0.0.1").is_ok();
    assert!(
        wait_until(Duration::from_secs(10), answers),
        "the lab's DNS does not answer"
    );
    std::fs::create_dir_all(root).unwrap();
    let hub = Hub::start(root, "lab-pc", SETTINGS, &policy(root), Some(&lab.client));

    let heal = || {
        lab.heal();
        upstream.lock().unwrap().restart();
    };
    let params = |name: &str| {
        [
            format!("external={}", Lab::EXTERNAL),
            format!("name={name}"),
        ]
    };
    let (c, r) = (&lab.client, &lab.router);
    let scenarios = vec![
        Scenario::new("no-internet", "all is well", "ok", &params(WWW)).arm(heal),
        Scenario::new(
            "no-internet",
            "cable unplugged: the switch port is down",
            "no-link",
            &params(WWW),
        )
        .arm(|| {
            heal();
            r.ip(&["link", "set", Lab::ROUTER_IF, "down"]);
            lab.wait_no_carrier();
        }),
        Scenario::new(
            "no-internet",
            "DHCP did not answer: the link is up, without an address",
            "no-address",
            &params(WWW),
        )
        .arm(|| {
            heal();
            c.ip(&["addr", "flush", "dev", Lab::CLIENT_IF, "scope", "global"]);
        }),
        Scenario::new(
            "no-internet",
            "an address but no gateway configured",
            "no-default-route",
            &params(WWW),
        )
        .arm(|| {
            heal();
            c.ip(&["route", "del", "default"]);
        }),
        Scenario::new(
            "no-internet",
            "silent gateway: the router answers nothing, not even ARP",
            "gateway-unreachable",
            &params(WWW),
        )
        .arm(|| {
            heal();
            r.ip(&[
                "addr",
                "del",
                &format!("{}/30", Lab::GATEWAY),
                "dev",
                Lab::ROUTER_IF,
            ]);
        }),
        Scenario::new(
            "no-internet",
            "uplink down: the gateway answers, the outside host does not",
            "upstream-unreachable",
            &params(WWW),
        )
        .arm(|| {
            heal();
            r.ip(&["addr", "del", &format!("{}/32", Lab::EXTERNAL), "dev", "lo"]);
        }),
        Scenario::new(
            "no-internet",
            "the network's DNS server is down",
            "dns-failure",
            &params(WWW),
        )
        .dns_cache()
        .arm(|| {
            heal();
            cache.hangup();
            upstream.lock().unwrap().kill();
        }),
        Scenario::new(
            "no-internet",
            "the DNS server does not know the name (NXDOMAIN)",
            "dns-failure",
            &params(NO_SUCH_NAME),
        )
        .dns_cache()
        .arm(heal),
        Scenario::new(
            "no-internet",
            "the machine's DNS cache holds a stale negative answer",
            "dns-cache-fixed",
            &params(NEW_NAME),
        )
        .dns_cache()
        .arm(|| {
            heal();
            stale_negative(&upstream, &cache, Some(c), Lab::DNS, "127.0.0.1");
        }),
    ];
    let mut rows = diagnosis::run(&hub, &scenarios, &[]);
    rows.extend(no_internet_unseen(&lab, &hub, &heal, &params(WWW)));
    rows
}

/// Network faults a single ping cannot see or sees wrongly (issue 25),
/// each made with nftables (or a resolver) inside the lab's namespaces:
/// pings dropped by the gateway or upstream while TCP works, this
/// machine's own firewall, a third of the packets lost, full-size packets
/// dropped, a resolver that answers every name, no resolver configured.
fn no_internet_unseen(
    lab: &Lab,
    hub: &Hub,
    heal: &(dyn Fn() + Sync),
    params: &[String],
) -> Vec<Row> {
    require("nft", "nftables");
    let (c, r) = (&lab.client, &lab.router);
    let nft = |ns: &Ns, rules: &str| {
        let _ = run(ns.cmd("nft").args(["delete", "table", "inet", "fault"]));
        if rules.is_empty() {
            return;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("table inet fault {{\n{rules}\n}}\n")).unwrap();
        must(ns.cmd("nft").arg("-f").arg(file.path()));
    };
    let clear = || {
        heal();
        nft(c, "");
        nft(r, "");
        c.set_resolver("127.0.0.1");
    };
    let router_input = |rule: &str| {
        clear();
        nft(
            r,
            &format!(
                "chain input {{\ntype filter hook input priority 0; policy accept;\n{rule}\n}}"
            ),
        );
    };
    let captive = Dnsmasq::start(
        Some(c),
        "127.0.0.2:53".parse().unwrap(),
        &["--address=/#/198.51.100.99".into()],
    );
    let ext = Lab::EXTERNAL;
    let gw = Lab::GATEWAY;
    let scenarios = vec![
        Scenario::new(
            "no-internet",
            "the gateway drops pings to itself; TCP through it works",
            "ok",
            params,
        )
        .arm(move || router_input(&format!("ip daddr {gw} icmp type echo-request drop"))),
        Scenario::new(
            "no-internet",
            "the upstream filters ICMP; TCP and DNS work",
            "ok",
            params,
        )
        .arm(move || router_input(&format!("ip daddr {ext} icmp type echo-request drop"))),
        Scenario::new(
            "no-internet",
            "this machine's own firewall drops everything it sends but loopback",
            "local-firewall",
            params,
        )
        .arm(|| {
            clear();
            nft(
                c,
                "chain output {\ntype filter hook output priority 0; policy accept;\noifname \"lo\" accept\ndrop\n}",
            );
        }),
        Scenario::new(
            "no-internet",
            "a third of the packets to the outside are lost",
            "packet-loss",
            params,
        )
        .arm(move || {
            router_input(&format!(
                "ip daddr {ext} icmp type echo-request numgen inc mod 3 == 0 drop"
            ))
        }),
        Scenario::new(
            "no-internet",
            "MTU black hole: full-size packets to the outside vanish",
            "mtu-blackhole",
            params,
        )
        .arm(move || router_input(&format!("ip daddr {ext} ip length > 1400 drop"))),
        Scenario::new(
            "no-internet",
            "captive portal: the resolver answers every name, even one that cannot exist",
            "captive-portal",
            params,
        )
        .arm(|| {
            clear();
            c.set_resolver("127.0.0.2");
        }),
        Scenario::new(
            "no-internet",
            "no name server in the machine's resolver configuration",
            "dns-not-configured",
            params,
        )
        .arm(|| {
            clear();
            let conf = std::path::Path::new("/etc/netns").join(&c.name).join("resolv.conf");
            std::fs::write(conf, "search lab.test\n").unwrap();
        }),
    ];
    let rows = diagnosis::run(hub, &scenarios, &[]);
    clear();
    drop(captive);
    rows
}

// ----------------------------------------------------------------- cant-print

/// A CUPS backend for a printer whose paper tray is empty: it says so and
/// keeps the job waiting, as long as cupsd runs (it runs as `lp`: it can
/// see its parent, not signal it).
const PAPER_OUT_BACKEND: &str = "#!/bin/sh\n\
if [ $# -eq 0 ]; then echo 'direct paperout \"Unknown\" \"Printer out of paper\"'; exit 0; fi\n\
echo 'STATE: +media-empty-error' >&2\n\
echo 'INFO: Out of paper' >&2\n\
while [ -d /proc/$PPID ]; do sleep 1; done\n";

/// A CUPS backend whose printer takes the job and never finishes it: the
/// job stays `processing`, with no state reason and no message.
const HANG_BACKEND: &str = "#!/bin/sh\n\
if [ $# -eq 0 ]; then echo 'direct hang \"Unknown\" \"Printer that never finishes\"'; exit 0; fi\n\
while [ -d /proc/$PPID ]; do sleep 1; done\n";

/// The print command of an IPP Everywhere printer out of paper.
const PAPER_OUT_COMMAND: &str = "#!/bin/sh\n\
echo 'STATE: +media-empty-error' >&2\n\
while [ -d /proc/$PPID ]; do sleep 1; done\n";

fn cant_print(hub: &Hub) -> Vec<Row> {
    let cups =
        Cups::start_with_backends(&[("paperout", PAPER_OUT_BACKEND), ("hang", HANG_BACKEND)]);
    let everywhere = Ippeve::start("Lab Printer", None);
    let empty_tray = Ippeve::start("Paper Printer", Some(PAPER_OUT_COMMAND));
    let switched_off = format!("ipp://127.0.0.1:{}/ipp/print", free_tcp_port());
    let queues = [
        ("office", everywhere.uri()),
        ("stopped", "file:///dev/null".to_string()),
        ("held", "file:///dev/null".to_string()),
        ("tray", "paperout:/".to_string()),
        ("lobby", switched_off.clone()),
        ("closed", "file:///dev/null".to_string()),
        // Issue 25: an idle queue whose printer is off looked "ready";
        // a stopped one was resumed and reported resolved.
        ("dark", switched_off.clone()),
        ("paused-dark", switched_off.clone()),
        ("jammed", "hang:/".to_string()),
    ];
    for (queue, device) in &queues {
        cups.admin("lpadmin", &["-p", queue, "-E", "-v", device]);
    }
    cups.admin(
        "cupsreject",
        &["-r", "closed by the administrator", "closed"],
    );
    cups.print("tray", &[]);
    cups.print("lobby", &[]);
    empty_tray.print();
    // Wait until each printer says what the scenario needs.
    let agent = bin("firstline-agent");
    let state = |target: &str| {
        let out = run(Command::new(&agent)
            .args(["check", "printer", "--server", &cups.server()])
            .args([target, "--json"]));
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()
    };
    for (target, wanted) in [
        ("tray".to_string(), "media-empty"),
        ("lobby".to_string(), "unavailable"),
        (empty_tray.uri(), "media-empty"),
    ] {
        let ready = wait_until(Duration::from_secs(30), || {
            state(&target).to_string().contains(wanted)
        });
        assert!(
            ready,
            "{target} never said {wanted}: {}\n{}",
            state(&target),
            cups.log()
        );
    }

    let server = cups.server();
    let params = |printer: &str| [format!("server={server}"), format!("printer={printer}")];
    let stuck = |printer: &str| {
        [
            format!("server={server}"),
            format!("printer={printer}"),
            "stuck_after=2s".into(),
        ]
    };
    let closed_port = format!("127.0.0.1:{}", free_tcp_port());
    let scenarios = vec![
        Scenario::new(
            "cant-print",
            "CUPS queue of an IPP Everywhere printer, idle, no jobs",
            "ok",
            &params("office"),
        ),
        Scenario::new(
            "cant-print",
            "IPP Everywhere printer asked directly, idle",
            "ok",
            &params(&everywhere.uri()),
        ),
        Scenario::new(
            "cant-print",
            "no CUPS scheduler on its port",
            "cups-down",
            &[format!("server={closed_port}"), "printer=office".into()],
        ),
        Scenario::new(
            "cant-print",
            "a queue name the scheduler does not have",
            "queue-unknown",
            &params("upstairs"),
        ),
        Scenario::new(
            "cant-print",
            "queue stopped (cupsdisable)",
            "queue-resumed",
            &params("stopped"),
        )
        .arm(|| {
            cups.admin(
                "cupsdisable",
                &["-r", "stopped after a failed job", "stopped"],
            );
        }),
        Scenario::new(
            "cant-print",
            "jobs held on an idle queue",
            "jobs-cleared",
            &params("held"),
        )
        .arm(|| {
            cups.admin("cancel", &["-a", "held"]);
            cups.print("held", &["-H", "hold"]);
            cups.print("held", &["-H", "hold"]);
        }),
        Scenario::new(
            "cant-print",
            "printer switched off, asked directly (nothing listens)",
            "printer-unreachable",
            &params(&switched_off),
        ),
        Scenario::new(
            "cant-print",
            "printer switched off behind a CUPS queue, a job waiting",
            "printer-unreachable",
            &params("lobby"),
        ),
        Scenario::new(
            "cant-print",
            "a job stuck in processing: the printer took it and never finishes",
            "jobs-cleared",
            &stuck("jammed"),
        )
        .arm(|| {
            cups.admin("cancel", &["-a", "jammed"]);
            cups.print("jammed", &[]);
            let printing = wait_until(Duration::from_secs(10), || {
                state("jammed").to_string().contains("processing")
            });
            assert!(printing, "the job never started: {}", state("jammed"));
            // Older than stuck_after, by the scheduler's clock.
            std::thread::sleep(Duration::from_millis(2500));
        })
        .check(|v| {
            match step(v, "state").and_then(|s| s["result"]["fields"]["error"].as_str()) {
                Some("job-stuck") => Ok(()),
                other => Err(format!("the stuck job was not seen as stuck: {other:?}")),
            }
        }),
        Scenario::new(
            "cant-print",
            "idle CUPS queue, no job waiting, its printer switched off",
            "printer-unreachable",
            &params("dark"),
        )
        .check(|v| {
            match step(v, "state").and_then(|s| s["result"]["fields"]["device_probe"].as_str()) {
                Some("unreachable") => Ok(()),
                other => Err(format!(
                    "the device behind the queue was not probed: {other:?}"
                )),
            }
        }),
        Scenario::new(
            "cant-print",
            "queue stopped (cupsdisable), its printer switched off",
            "printer-unreachable",
            &params("paused-dark"),
        )
        .arm(|| {
            cups.admin(
                "cupsdisable",
                &["-r", "printer not responding", "paused-dark"],
            );
        }),
        Scenario::new(
            "cant-print",
            "paper tray empty: CUPS queue, the backend reports media-empty-error",
            "printer-needs-attention",
            &params("tray"),
        ),
        Scenario::new(
            "cant-print",
            "paper tray empty: IPP Everywhere printer asked directly",
            "printer-needs-attention",
            &params(&empty_tray.uri()),
        ),
        Scenario::new(
            "cant-print",
            "queue rejecting jobs (cupsreject): a state the runbook has no fix for",
            "printer-error",
            &params("closed"),
        ),
    ];
    let masks = [(server.clone(), "$CUPS".to_string())];
    let rows = diagnosis::run(hub, &scenarios, &masks);
    // Let cupsd stop its backends before it goes.
    for (queue, _) in &queues {
        cups.admin("cancel", &["-a", queue]);
    }
    rows
}

// ------------------------------------------------------------------ disk-full

fn disk_full(hub: &Hub, root: &Path) -> Vec<Row> {
    let mount = |name: &str, inodes: u64| Tmpfs::mount(&root.join(name), "8m", inodes);
    let roomy = mount("roomy", 1000);
    roomy.file("tmp/today.log", 100_000, Duration::ZERO);
    let old = mount("old", 1000);
    let full = mount("full", 1000);
    full.file("videos/holiday.mp4", 3_000_000, Duration::ZERO);
    full.file("videos/party.mp4", 3_000_000, Duration::ZERO);
    full.file("tmp/today.log", 800_000, Duration::ZERO);
    let inodes = mount("inodes", 64);
    std::fs::create_dir_all(inodes.path.join("tmp")).unwrap();
    assert!(inodes.exhaust_inodes("cache") > 0);

    let params = |fs: &Tmpfs| {
        let p = fs.path.display();
        [
            format!("path={p}"),
            format!("temp={p}/tmp"),
            "older_than=7d".into(),
            "warn=80".into(),
            "crit=90".into(),
        ]
    };
    let scenarios = vec![
        Scenario::new("disk-full", "plenty of room", "ok", &params(&roomy)),
        Scenario::new(
            "disk-full",
            "full of old temp files",
            "temp-cleaned",
            &params(&old),
        )
        .arm(|| {
            for f in ["tmp/build-1.tmp", "tmp/build-2.tmp", "tmp/cache/pages.db"] {
                old.file(f, 2_500_000, 30 * DAY);
            }
            old.file("tmp/today.log", 100_000, Duration::ZERO);
        })
        .check(|_| match old.path.join("tmp/today.log").exists() {
            true => Ok(()),
            false => Err("a file newer than older_than was deleted".into()),
        }),
        Scenario::new(
            "disk-full",
            "full of new files: nothing old to clean",
            "still-full",
            &params(&full),
        )
        .check(|v| {
            let top = step(v, "largest").and_then(|s| s["result"]["fields"]["top"].as_str());
            match top {
                Some(t)
                    if t.contains("videos")
                        && v["message"].as_str().unwrap_or("").contains("videos") =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "the largest folders (videos/) are not in the evidence: {top:?}"
                )),
            }
        }),
        Scenario::new(
            "disk-full",
            "out of inodes: small new files took every one",
            "inodes-exhausted",
            &params(&inodes),
        ),
    ];
    let masks = [(root.display().to_string(), "$DISKS".to_string())];
    let mut rows = diagnosis::run(hub, &scenarios, &masks);
    rows.extend(disk_full_unseen(hub, root, &masks));
    rows
}

/// Disk faults that free space cannot reveal: a filesystem mounted
/// read-only with plenty of room ("enough free space" before issue 25),
/// and old temp files that a running process still holds open — deleting
/// them frees nothing, which the cleaner used to report as "freed 7.2
/// MiB" before naming the largest folders (which hold nothing).
fn disk_full_unseen(hub: &Hub, root: &Path, masks: &[(String, String)]) -> Vec<Row> {
    let ro = Tmpfs::mount(&root.join("readonly"), "8m", 1000);
    ro.file("tmp/today.log", 100_000, Duration::ZERO);
    must(
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&ro.path),
    );
    assert!(
        std::fs::write(ro.path.join("probe"), b"x").is_err(),
        "the filesystem is not read-only"
    );
    let held = Tmpfs::mount(&root.join("held"), "8m", 1000);
    let holders: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());
    let hold = || {
        let mut h = holders.lock().unwrap();
        for mut c in h.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(held.path.join("tmp"));
        for f in ["tmp/export-1.tmp", "tmp/export-2.tmp", "tmp/export-3.tmp"] {
            held.file(f, 2_400_000, 30 * DAY);
            let file = std::fs::File::open(held.path.join(f)).unwrap();
            h.push(
                Command::new("sleep")
                    .arg("600")
                    .stdin(file)
                    .spawn()
                    .unwrap(),
            );
        }
    };
    let params = |fs: &Tmpfs| {
        let p = fs.path.display();
        [
            format!("path={p}"),
            format!("temp={p}/tmp"),
            "older_than=7d".into(),
            "warn=80".into(),
            "crit=90".into(),
        ]
    };
    let scenarios = vec![
        Scenario::new(
            "disk-full",
            "mounted read-only, with plenty of room",
            "read-only-fs",
            &params(&ro),
        ),
        Scenario::new(
            "disk-full",
            "old temp files deleted but held open by running processes",
            "deleted-open-files",
            &params(&held),
        )
        .arm(hold)
        .check(|v| {
            let clean = step(v, "clean").map(|s| &s["result"]);
            let freed = clean.and_then(|r| r["metrics"]["freed_bytes"].as_f64());
            let deleted = clean.and_then(|r| r["metrics"]["deleted_bytes"].as_f64());
            let message = v["message"].as_str().unwrap_or("");
            match (freed, deleted) {
                (Some(f), Some(d)) if f < 1_000_000.0
                        && d > 7_000_000.0
                        && (message.contains("(sleep)") || message.contains("lsof +L1")) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "the cleaner must measure what the filesystem gained (freed {freed:?}, deleted {deleted:?}) and the message name the holders (or how to find them): {message}"
                )),
            }
        }),
    ];
    let rows = diagnosis::run(hub, &scenarios, masks);
    for mut c in holders.lock().unwrap().drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
    rows
}

// ------------------------------------------------------------------- slow-dns

fn slow_dns(hub: &Hub) -> Vec<Row> {
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let upstream = Mutex::new(Dnsmasq::start(
        None,
        loopback(free_port()),
        &[ZONE.into(), WWW_RECORD.into()],
    ));
    let upstream_at = upstream.lock().unwrap().addr;
    let upstream_addr = upstream_at.to_string();
    let cache = Dnsmasq::start(
        None,
        loopback(free_port()),
        &[
            format!("--server=127.0.0.1#{}", upstream_at.port()),
            "--neg-ttl=3600".into(),
        ],
    );
    let cache_addr = cache.addr.to_string();
    let slow = SlowUdp::start(upstream_at, Duration::from_millis(700));
    let no_aaaa = SlowUdp::dropping_aaaa(upstream_at);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = loopback(free_port());

    let params = |name: &str, server: &dyn ToString| {
        [
            format!("name={name}"),
            format!("server={}", server.to_string()),
            "slow_ms=300".into(),
        ]
    };
    let scenarios = vec![
        Scenario::new(
            "slow-dns",
            "DNS server answers at once",
            "ok",
            &params(WWW, &upstream_addr),
        ),
        Scenario::new(
            "slow-dns",
            "DNS server answers after 700 ms",
            "dns-slow",
            &params(WWW, &slow.addr),
        )
        .dns_cache(),
        Scenario::new(
            "slow-dns",
            "A queries answered at once, AAAA queries dropped",
            "dns-unreachable",
            &params(WWW, &no_aaaa.addr),
        )
        .check(|v| match v["message"].as_str() {
            Some(m) if m.contains("AAAA") => Ok(()),
            other => Err(format!(
                "the message does not say AAAA went unanswered: {other:?}"
            )),
        }),
        Scenario::new(
            "slow-dns",
            "DNS server down: nothing listens on its port",
            "dns-unreachable",
            &params(WWW, &closed),
        ),
        Scenario::new(
            "slow-dns",
            "DNS server silent: it drops every query",
            "dns-unreachable",
            &params(WWW, &silent.local_addr().unwrap()),
        ),
        Scenario::new(
            "slow-dns",
            "caching DNS server holds a stale negative answer",
            "dns-cache-fixed",
            &params(NEW_NAME, &cache_addr),
        )
        .dns_cache()
        .arm(|| stale_negative(&upstream, &cache, None, &upstream_addr, &cache_addr)),
        Scenario::new(
            "slow-dns",
            "the name does not exist (NXDOMAIN)",
            "dns-failure",
            &params(NO_SUCH_NAME, &upstream_addr),
        )
        .dns_cache(),
    ];
    let rows = diagnosis::run(hub, &scenarios, &[]);
    drop(silent);
    rows
}
