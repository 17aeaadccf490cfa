//! Real processes for the footprint and round-trip benchmarks: a relay
//! folder and `serve` process, an enrolled `firstline-agent run`, and a
//! logged-in console — all release builds, on loopback, in a temp folder.

use anyhow::{bail, Context, Result};
use firstline_proto::Role;
use firstline_relay::{admin, RelayDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A spawned process logging to a file, stopped (TERM, then KILL) on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc { child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle` (or the process ends).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let end = Instant::now() + limit;
        loop {
            if self.log_text().contains(needle) {
                return Ok(());
            }
            if !self.alive() || Instant::now() > end {
                bail!(
                    "no `{needle}` from {}:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
pub fn terminate(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start `firstline-relay serve` and wait until it listens.
pub fn serve_relay(bin: &Path, config: &Path, log: PathBuf) -> Result<Proc> {
    let mut p = Proc::spawn(
        Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info"),
        log,
    )
    .context("build it: cargo build --release -p firstline-relay")?;
    p.wait_for("relay listening", Duration::from_secs(20))?;
    Ok(p)
}

fn must(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A serving relay, one enrolled agent (not started) and a logged-in console.
pub struct World {
    pub root: PathBuf,
    pub bins: PathBuf,
    pub relay_dir: RelayDir,
    /// Kept for its lifetime: dropping it stops the relay.
    _relay: Proc,
    pub agent_config: PathBuf,
    pub console_home: PathBuf,
}

impl World {
    pub fn new(root: &Path, bins: &Path, agent_name: &str) -> Result<World> {
        let addr = format!("127.0.0.1:{}", free_udp_port()?);
        let config = admin::init(&root.join("relay"), addr.parse()?, "firstline-relay")?;
        let relay_dir = RelayDir::load(&config)?;
        let relay = serve_relay(
            &bins.join("firstline-relay"),
            &config,
            root.join("relay.log"),
        )?;
        let (token, _) = admin::token_create(&relay_dir, 1, None)?;
        let agent_dir = root.join("agent");
        std::fs::create_dir_all(&agent_dir)?;
        let agent_config = agent_dir.join("agent.toml");
        must(
            Command::new(bins.join("firstline-agent"))
                .args([
                    "enroll", "--relay", &addr, "--token", &token, "--name", agent_name,
                ])
                .arg("--config")
                .arg(&agent_config)
                .output()?,
            "firstline-agent enroll",
        )?;
        let cred = root.join("tech.credential.toml");
        admin::operator_add(&relay_dir, "tech", Role::Technician, &cred)?;
        let console_home = root.join("console-home");
        std::fs::create_dir_all(&console_home)?;
        let w = World {
            root: root.to_path_buf(),
            bins: bins.to_path_buf(),
            relay_dir,
            _relay: relay,
            agent_config,
            console_home,
        };
        must(
            w.console(&["login", "--credential", &cred.to_string_lossy()])?,
            "firstline login",
        )?;
        Ok(w)
    }

    /// Append TOML to agent.toml.
    pub fn agent_toml(&self, extra: &str) -> Result<()> {
        let mut text = std::fs::read_to_string(&self.agent_config)?;
        text.push('\n');
        text.push_str(extra);
        std::fs::write(&self.agent_config, text)?;
        Ok(())
    }

    /// `firstline-agent run`, waiting until it is connected.
    pub fn start_agent(&self) -> Result<Proc> {
        let mut p = Proc::spawn(
            Command::new(self.bins.join("firstline-agent"))
                .args(["run", "--config"])
                .arg(&self.agent_config)
                .env("RUST_LOG", "info"),
            self.root.join("agent.log"),
        )?;
        p.wait_for("connected", Duration::from_secs(30))?;
        Ok(p)
    }

    pub fn console(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(self.bins.join("firstline"))
            .args(args)
            .env("XDG_CONFIG_HOME", &self.console_home)
            .env("HOME", &self.console_home)
            .stdin(Stdio::null())
            .output()?)
    }
}
