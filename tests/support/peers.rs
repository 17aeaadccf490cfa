//! Real peers the end-to-end tests run against (Debian packages installed
//! by `.ci/install-peers`): a private CUPS scheduler (optionally with
//! backends of the test's own), an IPP Everywhere printer
//! (`ippeveprinter`), network namespaces joined to this host.
//! A missing peer fails the test with the package to install.

use crate::{run, text, wait_until, Proc};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The path of `program`, or a panic naming the Debian package to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/sbin",
            "/sbin",
            "/usr/bin",
            "/bin",
            "/usr/lib/nagios/plugins",
        ]
        .map(PathBuf::from),
    );
    dirs.iter().map(|d| d.join(program)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`{program}` is not installed: this test needs the Debian package `{package}` (run .ci/install-peers, or apt-get install {package})")
    })
}

/// Run a command that must succeed.
pub fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1 (closed again: nothing listens there until
/// someone binds it — a "switched off" printer or scheduler).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

/// A private CUPS scheduler on a loopback port, with its own folders.
pub struct Cups {
    pub port: u16,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Cups {
    pub fn start() -> Cups {
        Cups::start_with_backends(&[])
    }

    /// A scheduler whose `ServerBin` is a private copy of `/usr/lib/cups`
    /// (links) plus the given backends, `(scheme, shell script)`: a queue
    /// `lpadmin -v SCHEME:/` then prints through that script — a printer of
    /// the test's own, reporting `STATE: +media-empty-error` for real.
    pub fn start_with_backends(backends: &[(&str, &str)]) -> Cups {
        let cupsd = require("cupsd", "cups-daemon");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let port = free_tcp_port();
        for sub in ["spool", "cache", "state", "log"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        // cupsd refuses to run as root: its folders belong to lp.
        must(
            Command::new("chown")
                .args(["-R", "lp:lp"])
                .args(["spool", "cache", "state", "log"].map(|s| root.join(s))),
        );
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let server_bin = match backends {
            [] => PathBuf::from("/usr/lib/cups"),
            _ => server_bin(root, backends),
        };
        std::fs::write(
            root.join("cupsd.conf"),
            format!(
                "Listen 127.0.0.1:{port}\nWebInterface no\nBrowsing No\nDefaultAuthType None\nLogLevel warn\n\
                 <Location />\n  Order allow,deny\n  Allow all\n</Location>\n\
                 <Location /admin>\n  Order allow,deny\n  Allow all\n</Location>\n\
                 <Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
            ),
        )
        .expect("cupsd.conf");
        let r = root.display();
        // The printcap too stays in the folder: /run/cups is the machine's.
        std::fs::write(
            root.join("cups-files.conf"),
            format!(
                "ServerRoot {r}\nRequestRoot {r}/spool\nCacheDir {r}/cache\nStateDir {r}/state\n\
                 ErrorLog {r}/log/error_log\nAccessLog {r}/log/access_log\nPageLog {r}/log/page_log\n\
                 Printcap {r}/state/printcap\n\
                 ServerBin {}\nDataDir /usr/share/cups\nUser lp\nGroup lp\nFileDevice Yes\n",
                server_bin.display()
            ),
        )
        .expect("cups-files.conf");
        let mut proc = Proc::spawn(
            Command::new(cupsd)
                .arg("-f")
                .arg("-c")
                .arg(root.join("cupsd.conf"))
                .arg("-s")
                .arg(root.join("cups-files.conf")),
            &root.join("cupsd.out"),
        );
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up && proc.exited().is_none(),
            "cupsd did not start: {}",
            proc.log_text()
        );
        Cups { port, proc, dir }
    }

    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A CUPS admin command (lpadmin, cupsdisable…) against this scheduler.
    pub fn admin(&self, program: &str, args: &[&str]) -> String {
        let bin = require(program, "cups-client");
        must(Command::new(bin).args(["-h", &self.server()]).args(args))
    }

    pub fn uri(&self, queue: &str) -> String {
        format!("ipp://{}/printers/{queue}", self.server())
    }

    /// Queue a small text job on `queue`; `extra` are `lp` options
    /// (`-H hold` keeps it waiting).
    pub fn print(&self, queue: &str, extra: &[&str]) -> String {
        let doc = self.dir.path().join("doc.txt");
        std::fs::write(&doc, "firstline test page\n").expect("doc");
        let lp = require("lp", "cups-client");
        must(
            Command::new(lp)
                .args(["-h", &self.server(), "-d", queue])
                .args(extra)
                .arg(&doc),
        )
    }

    /// cupsd's own output and error log, for a failure message.
    pub fn log(&self) -> String {
        let error_log = std::fs::read_to_string(self.dir.path().join("log/error_log"));
        format!("{}{}", self.proc.log_text(), error_log.unwrap_or_default())
    }
}

impl Drop for Cups {
    /// SIGTERM first: cupsd then stops its jobs' backends (an `ipp` backend
    /// left behind would retry its printer for days); SIGKILL after 5 s.
    fn drop(&mut self) {
        let pid = self.proc.child.id().to_string();
        let _ = run(Command::new("kill").args(["-TERM", &pid]));
        wait_until(Duration::from_secs(5), || self.proc.exited().is_some());
    }
}

/// `ROOT/bin`: links to everything of /usr/lib/cups, and `backend/` with
/// links to the installed backends plus `backends` (root-owned, 0755, as
/// cupsd demands of the programs it runs).
fn server_bin(root: &std::path::Path, backends: &[(&str, &str)]) -> PathBuf {
    let bin = root.join("bin");
    let backend_dir = bin.join("backend");
    std::fs::create_dir_all(&backend_dir).expect("mkdir bin/backend");
    let system = std::path::Path::new("/usr/lib/cups");
    for entry in std::fs::read_dir(system).expect("/usr/lib/cups").flatten() {
        if entry.file_name() != "backend" {
            std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name())).expect("link");
        }
    }
    for entry in std::fs::read_dir(system.join("backend"))
        .expect("backends")
        .flatten()
    {
        std::os::unix::fs::symlink(entry.path(), backend_dir.join(entry.file_name()))
            .expect("link");
    }
    for (scheme, script) in backends {
        let path = backend_dir.join(scheme);
        std::fs::write(&path, script).expect("backend script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for d in [&bin, &backend_dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

/// A real IPP Everywhere printer (`ippeveprinter`, package
/// cups-ipp-utils) on a loopback port, with the private D-Bus it needs for
/// DNS-SD; `command` (its `-c`) is what "prints" a job, and may report
/// printer states on stderr (`STATE: +media-empty-error`).
pub struct Ippeve {
    pub port: u16,
    pub name: String,
    proc: Proc,
    _bus: Proc,
    dir: tempfile::TempDir,
}

impl Ippeve {
    pub fn start(name: &str, command: Option<&str>) -> Ippeve {
        let ippeve = require("ippeveprinter", "cups-ipp-utils");
        let dbus = require("dbus-daemon", "dbus-daemon");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let bus_addr = format!("unix:path={}", root.join("bus.sock").display());
        let bus = Proc::spawn(
            Command::new(dbus).args(["--session", "--nofork", "--address", &bus_addr]),
            &root.join("dbus.log"),
        );
        assert!(
            wait_until(Duration::from_secs(10), || root.join("bus.sock").exists()),
            "dbus-daemon did not start: {}",
            bus.log_text()
        );
        std::fs::create_dir_all(root.join("spool")).expect("spool");
        let port = free_tcp_port();
        let mut cmd = Command::new(ippeve);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &bus_addr)
            .args(["-p", &port.to_string(), "-n", "localhost", "-r", "off"])
            .args(["-f", "text/plain,application/octet-stream"])
            .arg("-d")
            .arg(root.join("spool"));
        if let Some(c) = command {
            let script = root.join("print-command");
            std::fs::write(&script, c).expect("print command");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            cmd.arg("-c").arg(&script);
        }
        let mut proc = Proc::spawn(cmd.arg(name), &root.join("ippeveprinter.log"));
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up && proc.exited().is_none(),
            "ippeveprinter did not start: {}",
            proc.log_text()
        );
        Ippeve {
            port,
            name: name.to_string(),
            proc,
            _bus: bus,
            dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print", self.port)
    }

    /// Send it a job with `ipptool` (Print-Job).
    pub fn print(&self) {
        let ipptool = require("ipptool", "cups-ipp-utils");
        let doc = self.dir.path().join("doc.txt");
        std::fs::write(&doc, "firstline test page\n").expect("doc");
        must(Command::new(ipptool).arg("-tf").arg(&doc).args([
            "-d",
            "document-format=text/plain",
            &self.uri(),
            "print-job.test",
        ]));
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }
}

/// A network namespace joined to this host by a veth pair, removed on drop.
/// Host side `10.213.A.B+1/30`, namespace side `10.213.A.B+2/30`: a /30 of
/// 10.213.0.0/16 claimed for this namespace's lifetime by an `unreachable`
/// route of metric 4000 on the host — the kernel refuses a second one
/// (EEXIST), so concurrent tests, in this process or another, never share a
/// subnet — and that route stays behind the connected one, so that when
/// the link is down no packet for the subnet can take the default route
/// off this machine.
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
    /// The claimed `10.213.A.B/30`.
    pub subnet: String,
}

/// /30s in 10.213.0.0/16.
const SUBNETS: u32 = 1 << 14;

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let ip = require("ip", "iproute2");
        let (index, subnet) = claim_subnet(&ip);
        let base = index * 4;
        let octets = |last: u32| format!("10.213.{}.{}", base / 256, base % 256 + last);
        let (host_ip, ns_ip) = (octets(1), octets(2));
        // Names from the claimed index: unique while the claim holds.
        let name = format!("fl{tag}{index}");
        let host_if = format!("flvh{index}");
        let ns_if = format!("flvn{index}");
        let sh = |args: &[&str]| must(Command::new(&ip).args(args));
        let _ = run(Command::new(&ip).args(["netns", "del", &name]));
        let _ = run(Command::new(&ip).args(["link", "del", &host_if]));
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
            subnet,
        };
        // From here on, Drop releases whatever was made.
        sh(&["netns", "add", &name]);
        sh(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        sh(&["link", "set", &ns_if, "netns", &name]);
        sh(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        sh(&["link", "set", &host_if, "up"]);
        sh(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ]);
        sh(&["-n", &name, "link", "set", &ns_if, "up"]);
        sh(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// Break (or mend) the link from the host's side.
    pub fn set_link(&self, up: bool) {
        let ip = require("ip", "iproute2");
        must(Command::new(ip).args(["link", "set", &self.host_if, if up { "up" } else { "down" }]));
    }
}

/// Claim a free /30 of 10.213.0.0/16: its index and `10.213.A.B/30`.
/// Starts at a place that depends on the process so that concurrent test
/// processes rarely race for the same one; a race is settled by the kernel.
fn claim_subnet(ip: &std::path::Path) -> (u32, String) {
    let start = std::process::id().wrapping_mul(2_654_435_761) % SUBNETS;
    for i in 0..SUBNETS {
        let index = (start + i) % SUBNETS;
        let base = index * 4;
        let subnet = format!("10.213.{}.{}/30", base / 256, base % 256);
        let out =
            run(Command::new(ip).args(["route", "add", "unreachable", &subnet, "metric", "4000"]));
        if out.status.success() {
            return (index, subnet);
        }
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            why.contains("File exists"),
            "cannot claim {subnet} with an unreachable route: {}",
            text(&out)
        );
    }
    panic!("no free /30 left in 10.213.0.0/16 (stale `unreachable … metric 4000` routes?)");
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ip = require("ip", "iproute2");
        let _ = run(Command::new(&ip).args(["link", "del", &self.host_if]));
        let _ = run(Command::new(&ip).args(["netns", "del", &self.name]));
        // Last: the subnet is free again only once nothing uses it.
        let _ = run(Command::new(&ip).args([
            "route",
            "del",
            "unreachable",
            &self.subnet,
            "metric",
            "4000",
        ]));
    }
}
