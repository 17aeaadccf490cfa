//! DNS peers: a real `dnsmasq` (package dnsmasq-base) on an address and
//! port of the test's choosing — on this host's loopback or inside one of
//! the test's namespaces — serving names of the test's own zone, or
//! forwarding to another and caching; and [`SlowUdp`], a forwarder thread
//! that delays every answer, to make a slow DNS server of a fast one.

use crate::netlab::Ns;
use crate::peers::require;
use crate::{bin, run, wait_until, Proc};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A dnsmasq, killed on drop; [`Dnsmasq::restart`] brings it back with
/// the same arguments.
pub struct Dnsmasq {
    pub addr: SocketAddr,
    /// `--hostsdir`: a file `NAME` here holding `IP NAME` adds a record,
    /// read by dnsmasq as soon as it is written.
    pub hosts_dir: PathBuf,
    args: Vec<String>,
    netns: Option<String>,
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    starts: u32,
}

impl Dnsmasq {
    /// Listen on `addr` (inside `netns` when given); `extra` says what it
    /// serves (`--local=/lab.test/`, `--host-record=…`, `--server=…`).
    pub fn start(netns: Option<&Ns>, addr: SocketAddr, extra: &[String]) -> Dnsmasq {
        let program = require("dnsmasq", "dnsmasq-base");
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts_dir = dir.path().join("hosts.d");
        std::fs::create_dir_all(&hosts_dir).expect("hosts.d");
        let mut args: Vec<String> = vec![
            program.display().to_string(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", addr.ip()),
            format!("--port={}", addr.port()),
            "--user=root".into(),
            "--group=root".into(),
            "--pid-file=".into(),
            "--log-facility=-".into(),
            format!("--hostsdir={}", hosts_dir.display()),
        ];
        args.extend(extra.iter().cloned());
        let mut d = Dnsmasq {
            addr,
            hosts_dir,
            args,
            netns: netns.map(|n| n.name.clone()),
            proc: None,
            dir,
            starts: 0,
        };
        d.restart();
        d
    }

    /// Start it again (after [`Dnsmasq::kill`]); a no-op while it runs.
    pub fn restart(&mut self) {
        if self.proc.as_mut().is_some_and(|p| p.exited().is_none()) {
            return;
        }
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&self.args);
                c
            }
            None => {
                let mut c = Command::new(&self.args[0]);
                c.args(&self.args[1..]);
                c
            }
        };
        self.starts += 1;
        let log = self.dir.path().join(format!("dnsmasq-{}.log", self.starts));
        let mut proc = Proc::spawn(&mut cmd, &log);
        // It says "started" once its sockets are bound.
        let up = wait_until(Duration::from_secs(20), || {
            proc.log_text().contains("started, version") || proc.exited().is_some()
        });
        assert!(
            up && proc.exited().is_none(),
            "dnsmasq did not start on {}: {}",
            self.addr,
            proc.log_text()
        );
        self.proc = Some(proc);
    }

    /// kill -9: a DNS server that is down.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// SIGHUP: empty its cache (and read the hosts folder again).
    pub fn hangup(&self) {
        if let Some(pid) = self.pid() {
            let out = run(Command::new("kill").args(["-HUP", &pid.to_string()]));
            assert!(out.status.success(), "kill -HUP {pid}");
        }
    }

    /// Serve `name` as `ip` from now on (the hosts folder).
    pub fn add_host(&self, name: &str, ip: &str) {
        let tmp = self.hosts_dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, format!("{ip} {name}\n")).expect("hosts file");
        std::fs::rename(&tmp, self.hosts_dir.join(name)).expect("hosts file");
    }

    /// Forget `name` again: its file goes and dnsmasq starts afresh (it
    /// reads the folder when it starts).
    pub fn remove_host(&mut self, name: &str) {
        self.kill();
        let _ = std::fs::remove_file(self.hosts_dir.join(name));
        self.restart();
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }
}

/// A loopback port free for both UDP and TCP (a DNS server wants both).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// What `firstline-agent check dns NAME --server SERVER` says, run inside
/// `netns` when given: the answer, or `Err(error field)`.
pub fn lookup(netns: Option<&Ns>, name: &str, server: &str) -> Result<String, String> {
    let agent = bin("firstline-agent");
    let mut cmd = match netns {
        Some(ns) => ns.cmd(&agent),
        None => Command::new(&agent),
    };
    let out = run(cmd.args(["check", "dns", name, "--server", server, "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check dns printed no JSON ({e}): {}", crate::text(&out)));
    match v["fields"]["answer"].as_str() {
        Some(a) if v["status"] == "ok" => Ok(a.to_string()),
        _ => Err(v["fields"]["error"].as_str().unwrap_or("?").to_string()),
    }
}

/// A UDP forwarder on 127.0.0.1 that holds every answer of `upstream` for
/// `delay` before passing it on: a slow DNS server. Stops on drop.
pub struct SlowUdp {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowUdp {
    pub fn start(upstream: SocketAddr, delay: Duration) -> SlowUdp {
        SlowUdp::forwarder(upstream, delay, false)
    }

    /// A forwarder that passes every query on at once but drops AAAA
    /// queries without a word: a resolver (or a middlebox) that loses
    /// IPv6 lookups while IPv4 ones work.
    pub fn dropping_aaaa(upstream: SocketAddr) -> SlowUdp {
        SlowUdp::forwarder(upstream, Duration::ZERO, true)
    }

    fn forwarder(upstream: SocketAddr, delay: Duration, drop_aaaa: bool) -> SlowUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, client)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // An empty datagram is a probe for "is anything there".
                if n == 0 {
                    continue;
                }
                let query = buf[..n].to_vec();
                if drop_aaaa && qtype(&query) == Some(28) {
                    continue;
                }
                let Ok(reply_to) = sock.try_clone() else {
                    continue;
                };
                std::thread::spawn(move || {
                    if let Some(answer) = ask(upstream, &query) {
                        std::thread::sleep(delay);
                        let _ = reply_to.send_to(&answer, client);
                    }
                });
            }
        });
        SlowUdp {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// The type of a DNS query's first question (28: AAAA).
fn qtype(query: &[u8]) -> Option<u16> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        at += len;
    }
    Some(u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]))
}

/// One query to `upstream`, its answer if one comes within 2 s.
fn ask(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.send_to(query, upstream).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

impl Drop for SlowUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
