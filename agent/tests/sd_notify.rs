//! The systemd notification protocol, for real: this test plays systemd.
//!
//! It binds its own `NOTIFY_SOCKET` (a unix datagram socket in a temp
//! folder), sets `WATCHDOG_USEC`, and starts the real binaries: a relay made
//! with `firstline-relay init` / `serve` / `token create` on a free loopback
//! UDP port, and an agent enrolled with `firstline-agent enroll`, then run
//! with `firstline-agent run`. It reads what they send: `READY=1`,
//! `STATUS=` (the agent's link state), `WATCHDOG=1` repeatedly, and
//! `STOPPING=1` after SIGTERM.
//!
//! The agent binary is the one cargo builds for this test; the relay is
//! looked up beside the test executable (`target/debug/`): build it first
//! with `cargo build --workspace --bins`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A binary of the workspace, from the folders above this test executable.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in the folders above {}: build it first with `cargo build --workspace --bins`",
                exe.display()
            )
        })
}

/// A child process killed when the test ends, whatever happens.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name, log }
    }

    fn log(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {} failed", self.name);
    }

    /// Wait for the process to exit; its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not exit within {within:?}\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages read from a notify socket, kept for error reports.
struct Listener {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Listener {
    fn bind(path: &Path) -> Listener {
        let socket = UnixDatagram::bind(path).expect("bind NOTIFY_SOCKET");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Listener {
            socket,
            seen: Vec::new(),
        }
    }

    /// Read datagrams until one has a line for which `want` holds; that line.
    fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&str) -> bool,
        logs: &[&Proc],
    ) -> String {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("recv on NOTIFY_SOCKET: {e}"),
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().find(|l| want(l)).map(str::to_string);
            self.seen.push(msg);
            if let Some(line) = hit {
                return line;
            }
        }
        let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
        panic!(
            "no {what} on NOTIFY_SOCKET within {within:?}; received: {:?}\n{}",
            self.seen,
            logs.join("\n")
        );
    }
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

/// Environment of a service started by systemd with `WatchdogSec=1s`.
fn as_service<'a>(cmd: &'a mut Command, socket: &Path) -> &'a mut Command {
    cmd.env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env("JOURNAL_STREAM", "8:1234")
}

#[test]
fn agent_and_relay_speak_sd_notify() {
    let relay_bin = workspace_bin("firstline-relay");
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_firstline-agent"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let relay_dir = dir.join("relay");
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");

    run_ok(
        Command::new(&relay_bin)
            .args(["init", "--listen", &addr, "--dir"])
            .arg(&relay_dir),
        "firstline-relay init",
    );
    let relay_config = relay_dir.join("relay.toml");

    // The relay under "systemd": READY=1 once it listens, then WATCHDOG=1.
    let relay_sock = dir.join("relay-notify.sock");
    let mut relay_notify = Listener::bind(&relay_sock);
    let mut relay = Proc::spawn(
        "relay",
        as_service(
            Command::new(&relay_bin)
                .arg("serve")
                .arg("--config")
                .arg(&relay_config),
            &relay_sock,
        ),
        dir.join("relay.log"),
    );
    relay_notify.wait_for(
        "READY=1 from the relay",
        Duration::from_secs(30),
        |l| l == "READY=1",
        &[&relay],
    );
    relay_notify.wait_for(
        "WATCHDOG=1 from the relay",
        Duration::from_secs(5),
        |l| l == "WATCHDOG=1",
        &[&relay],
    );

    let token = run_ok(
        Command::new(&relay_bin)
            .args(["token", "create", "--config"])
            .arg(&relay_config),
        "firstline-relay token create",
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let agent_config = dir.join("agent").join("agent.toml");
    run_ok(
        Command::new(&agent_bin)
            .args(["enroll", "--relay", &addr, "--token", &token])
            .args(["--name", "sd-notify-test", "--config"])
            .arg(&agent_config)
            .arg("--state-dir")
            .arg(dir.join("agent").join("state")),
        "firstline-agent enroll",
    );

    // The agent under "systemd".
    let agent_sock = dir.join("agent-notify.sock");
    let mut notify = Listener::bind(&agent_sock);
    let mut agent = Proc::spawn(
        "agent",
        as_service(
            Command::new(&agent_bin)
                .arg("run")
                .arg("--config")
                .arg(&agent_config),
            &agent_sock,
        ),
        dir.join("agent.log"),
    );
    let logs = [&agent, &relay];
    notify.wait_for(
        "READY=1 from the agent",
        Duration::from_secs(30),
        |l| l == "READY=1",
        &logs,
    );
    let status = notify.wait_for(
        "STATUS=connected to … from the agent",
        Duration::from_secs(30),
        |l| l.starts_with("STATUS=connected to"),
        &logs,
    );
    assert_eq!(status, format!("STATUS=connected to {addr}"));
    // WatchdogSec=1s: a ping every half second, so 4 take about 2 s (the
    // bound leaves room for a loaded machine, and stays below the 4 s a
    // ping per WatchdogSec would take).
    let start = Instant::now();
    for _ in 0..4 {
        notify.wait_for(
            "WATCHDOG=1 from the agent",
            Duration::from_secs(3),
            |l| l == "WATCHDOG=1",
            &logs,
        );
    }
    assert!(
        start.elapsed() < Duration::from_millis(3900),
        "4 watchdog pings took {:?}; expected one every 500 ms",
        start.elapsed()
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    agent.terminate();
    notify.wait_for(
        "STOPPING=1 from the agent",
        Duration::from_secs(10),
        |l| l == "STOPPING=1",
        &[&agent],
    );
    let code = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "agent exit code\n{}", agent.log());
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert!(
        !log.lines().any(|l| l.starts_with("20")),
        "under systemd (JOURNAL_STREAM set) log lines carry no timestamp:\n{log}"
    );

    relay.terminate();
    relay_notify.wait_for(
        "STOPPING=1 from the relay",
        Duration::from_secs(10),
        |l| l == "STOPPING=1",
        &[&relay],
    );
    assert_eq!(relay.wait_exit(Duration::from_secs(15)), Some(0));
}
