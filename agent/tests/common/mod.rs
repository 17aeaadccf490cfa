//! What the check tests share: finding the real peer programs (failing with
//! the Debian package to install when one is missing — never skipping),
//! free loopback ports, peers killed on drop, network namespaces removed on
//! drop, and running `firstline-agent check … --json`.

#![allow(dead_code)]

use firstline_proto::{CheckResult, Status};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The agent binary cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_firstline-agent");

/// Generous waits: the CI machine has 2 cores and is busy building.
pub const STARTUP: Duration = Duration::from_secs(30);

/// Path of a program the test needs; panics naming the Debian package.
pub use firstline_tests::peers::require;

pub fn nagios_plugin(name: &str, package: &str) -> PathBuf {
    let p = Path::new("/usr/lib/nagios/plugins").join(name);
    assert!(
        p.is_file(),
        "{} is missing: this test needs the Debian package `{package}` (run .ci/install-peers)",
        p.display()
    );
    p
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// A port free for both UDP and TCP (a DNS server wants both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A running peer program, killed (and reaped) on drop.
pub struct Peer {
    pub name: String,
    child: Child,
}

impl Peer {
    pub fn start(name: &str, cmd: &mut Command) -> Peer {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            name: name.to_string(),
            child,
        }
    }

    /// Panics if the peer has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early: {status}", self.name);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(peer: &mut Peer, addr: SocketAddr) {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        peer.assert_running();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not listen on {addr} within {STARTUP:?}", peer.name);
}

/// Wait until `path` exists.
pub fn wait_for_path(peer: &mut Peer, path: &Path) {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        peer.assert_running();
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} did not create {} within {STARTUP:?}",
        peer.name,
        path.display()
    );
}

/// Run a command, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `firstline-agent check ARGS… --json`, its result and exit code.
pub fn check(args: &[&str]) -> (CheckResult, i32) {
    check_with(Command::new(AGENT).args(["check"]).args(args))
}

/// Like [`check`] with a prepared command (env, netns wrapper…); `--json` is added.
pub fn check_with(cmd: &mut Command) -> (CheckResult, i32) {
    let out = cmd
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: CheckResult = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} did not print a JSON result ({e}); status {}:\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let code = out.status.code().unwrap_or(-1);
    // The exit status follows the result (DESIGN: 0 ok, 1 a failed check).
    assert_eq!(
        code,
        if result.status == Status::Ok { 0 } else { 1 },
        "{result:?}"
    );
    (result, code)
}

/// `firstline-agent check ARGS… --json` run inside a network namespace.
pub fn check_in(ns: &Netns, args: &[&str]) -> (CheckResult, i32) {
    let mut all = vec![AGENT, "check"];
    all.extend_from_slice(args);
    check_with(&mut ns.cmd(&all))
}

/// A network namespace of this test run, deleted (with its links) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        require("ip", "iproute2");
        let name = format!(
            "fl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        must(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME ARGS…`, which must succeed.
    pub fn exec(&self, args: &[&str]) -> Output {
        must(&mut self.cmd(args))
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}

/// A copy of the agent binary that any user can run (for tests that drop
/// privileges: the build folder may not be reachable by `nobody`).
pub fn world_runnable_agent(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    for d in [dir, bin_dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let bin = bin_dir.join("firstline-agent");
    std::fs::copy(AGENT, &bin).expect("copy the agent");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// A temporary directory whose path is readable by everyone.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("firstline-test-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}
