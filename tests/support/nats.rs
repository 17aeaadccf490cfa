//! A real NATS server (Debian's `nats-server`) for the tests: a private
//! `nats-server -a 127.0.0.1 -p PORT` on a free loopback port, ready when
//! it answers `INFO` on that port (well under a second), killed (SIGKILL)
//! on drop. Cheap enough to start one per test.

use crate::peers::{free_tcp_port, require};
use crate::{wait_until, Proc};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An nkey user (seed and public key) the tests' NATS servers admit.
pub struct NkeyUser {
    pub seed: String,
    pub public: String,
}

impl NkeyUser {
    /// A new one.
    pub fn new() -> NkeyUser {
        let kp = nkeys::KeyPair::new_user();
        NkeyUser {
            seed: kp.seed().expect("seed"),
            public: kp.public_key(),
        }
    }

    /// Write the seed to `path` (0600), as `init --nats-nkey` reads it.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.seed)).expect("write the seed");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the seed");
    }

    /// The `CONNECT` JSON of this user for the server's `nonce`.
    pub fn connect_json(&self, nonce: &str) -> String {
        let kp = nkeys::KeyPair::from_seed(&self.seed).expect("a seed");
        let sig = kp.sign(nonce.as_bytes()).expect("signed");
        let sig = data_encoding::BASE64URL_NOPAD.encode(&sig);
        format!(
            "{{\"verbose\":false,\"headers\":true,\"nkey\":\"{}\",\"sig\":\"{sig}\"}}",
            self.public
        )
    }
}

impl Default for NkeyUser {
    fn default() -> Self {
        NkeyUser::new()
    }
}

/// A running `nats-server`; killed on drop.
pub struct Nats {
    port: u16,
    extra: Vec<String>,
    proc: Option<Proc>,
    dir: tempfile::TempDir,
}

impl Nats {
    /// `nats-server -a 127.0.0.1 -p PORT` on a free port.
    pub fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// A server that admits only the holders of these nkeys (users; an
    /// `authorization` block in a config file of its own).
    pub fn start_nkeys(users: &[&str]) -> Nats {
        let conf =
            std::env::temp_dir().join(format!("firstline-nats-auth-{}.conf", crate::rand_suffix()));
        let list = users
            .iter()
            .map(|u| format!("{{ nkey: \"{u}\" }}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(&conf, format!("authorization {{ users = [ {list} ] }}\n"))
            .expect("write the NATS config");
        Nats::start_with(&["-c", conf.to_str().expect("a UTF-8 path")])
    }

    /// A server with the configuration file `conf` (e.g. the
    /// nats-authorization.conf `firstline-relay init` writes).
    pub fn start_conf(conf: &Path) -> Nats {
        Nats::start_with(&["-c", conf.to_str().expect("a UTF-8 path")])
    }

    /// [`Nats::start`] with more arguments (e.g. `["-js", "-sd", DIR]` for
    /// JetStream with its store in DIR, [`Nats::dir`] being a folder of the
    /// server's own).
    pub fn start_with(extra: &[&str]) -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("firstline-nats-")
            .tempdir()
            .expect("tempdir");
        let mut nats = Nats {
            port: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
            dir,
        };
        for attempt in 1..=3 {
            nats.port = free_tcp_port();
            match nats.spawn() {
                Ok(()) => return nats,
                Err(log) => assert!(
                    log.contains("address already in use") && attempt < 3,
                    "nats-server did not start:\n{log}"
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Start the server on its port (again); `Err(log)` when it does not
    /// answer `INFO` within 10 s.
    fn spawn(&mut self) -> Result<(), String> {
        let program = require("nats-server", "nats-server");
        let log = self
            .dir
            .path()
            .join(format!("nats-{}.log", crate::rand_suffix()));
        let mut proc = Proc::spawn(
            Command::new(program)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .args(&self.extra),
            &log,
        );
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            proc.exited().is_none() && info_line(port).is_some()
        });
        if !up {
            let text = proc.log_text();
            proc.kill();
            return Err(text);
        }
        self.proc = Some(proc);
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A folder of the server's own (removed on drop), e.g. for `-sd`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `INFO {…}` line the server greets a client with (JSON after
    /// `INFO `), or `None` when nothing answers on the port.
    pub fn info(&self) -> Option<String> {
        info_line(self.port)
    }

    /// kill -9: the server is gone, its port closed, until [`Nats::restart`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Start the server again on the same port and with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn() {
            panic!("nats-server did not restart on port {}:\n{log}", self.port);
        }
    }

    /// The server's output (this run's).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    /// The server's log file (this run's).
    pub fn log_path(&self) -> Option<PathBuf> {
        self.proc.as_ref().map(|p| p.log.clone())
    }
}

/// Connect to 127.0.0.1:`port` and read the server's first line, when it
/// is `INFO …`.
fn info_line(port: u16) -> Option<String> {
    let stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let line = line.trim_end().to_string();
    line.starts_with("INFO ").then_some(line)
}
