//! Real peers the end-to-end tests run against (Debian packages installed
//! by `.ci/install-peers`): a private CUPS scheduler, network namespaces.
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

/// A private CUPS scheduler on a loopback port, with its own folders.
pub struct Cups {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Cups {
    pub fn start() -> Cups {
        let cupsd = require("cupsd", "cups-daemon");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
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
        std::fs::write(
            root.join("cups-files.conf"),
            format!(
                "ServerRoot {r}\nRequestRoot {r}/spool\nCacheDir {r}/cache\nStateDir {r}/state\n\
                 ErrorLog {r}/log/error_log\nAccessLog {r}/log/access_log\nPageLog {r}/log/page_log\n\
                 ServerBin /usr/lib/cups\nDataDir /usr/share/cups\nUser lp\nGroup lp\nFileDevice Yes\n"
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
        Cups {
            port,
            _proc: proc,
            _dir: dir,
        }
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
}

/// A network namespace joined to this host by a veth pair, removed on drop.
/// Host side `10.213.N.1/30`, namespace side `10.213.N.2/30`.
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let ip = require("ip", "iproute2");
        let n = std::process::id() % 60 * 4;
        let name = format!("fl{tag}{}", std::process::id());
        let host_if = format!("h{}", &name[..name.len().min(13)]);
        let ns_if = format!("n{}", &name[..name.len().min(13)]);
        let (host_ip, ns_ip) = (
            format!("10.213.{}.{}", 1 + n / 256, n % 256 + 1),
            format!("10.213.{}.{}", 1 + n / 256, n % 256 + 2),
        );
        let sh = |args: &[&str]| must(Command::new(&ip).args(args));
        let _ = run(Command::new(&ip).args(["netns", "del", &name]));
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
        // No packet for the test subnet may take the default route when the
        // link is down (something out there answers 10.213.x.x): behind the
        // connected route, an unreachable one for the same subnet.
        sh(&[
            "route",
            "add",
            "unreachable",
            &subnet(&host_ip),
            "metric",
            "4000",
        ]);
        Netns {
            name,
            host_if,
            host_ip,
            ns_ip,
        }
    }

    /// Break (or mend) the link from the host's side.
    pub fn set_link(&self, up: bool) {
        let ip = require("ip", "iproute2");
        must(Command::new(ip).args(["link", "set", &self.host_if, if up { "up" } else { "down" }]));
    }
}

/// The /30 of a host address `10.213.A.B`.
fn subnet(host_ip: &str) -> String {
    let (prefix, last) = host_ip.rsplit_once('.').expect("dotted quad");
    let last: u8 = last.parse().expect("octet");
    format!("{prefix}.{}/30", last & !3)
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ip = require("ip", "iproute2");
        let unreachable = subnet(&self.host_ip);
        let _ = run(Command::new(&ip).args([
            "route",
            "del",
            "unreachable",
            &unreachable,
            "metric",
            "4000",
        ]));
        let _ = run(Command::new(&ip).args(["link", "del", &self.host_if]));
        let _ = run(Command::new(&ip).args(["netns", "del", &self.name]));
    }
}
