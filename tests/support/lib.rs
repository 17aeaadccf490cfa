//! Helpers for the end-to-end tests: real `firstline-relay`,
//! `firstline-agent` and `firstline` processes, each test in its own temp
//! folder on loopback ports, killed for real when the test ends.

pub mod browser;
pub mod diagnosis;
pub mod dns;
pub mod hub;
pub mod nats;
pub mod netlab;
pub mod peers;
pub mod pg;
pub mod plugin;
pub mod raw;
pub mod rt;
pub mod tmpfs;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A built binary of the workspace (`target/debug/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe
        .ancestors()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("binary `{name}` not found next to {}: run `cargo build --workspace --bins` first (.ci/run does)", exe.display())
        });
    path
}

/// The workspace binary `name` where any local account can run it, for
/// tests that run it as another user (`runuser`, `setpriv --reuid`): the
/// checkout may sit under a private folder (a clone in `/root`, in a
/// `mktemp -d` folder: 0700), which another user cannot traverse, so
/// `target/debug/NAME` would be "Permission denied" for them. As the
/// packages install it: a copy (or hard link) owned by this user, mode
/// 0755, in `/tmp/firstline-bin-UID-PATH-STAMP/` (0755), named after the
/// build it copies (source path, size and mtime), so test processes of one
/// build share it and a rebuild makes a fresh one (older copies of the
/// same source are removed). A folder or file found there that is not
/// exactly this user's and 0755 is not trusted: the test fails.
pub fn bin_for_others(name: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let src = bin(name);
    let meta = std::fs::metadata(&src).expect("binary metadata");
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let hash = |h: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        h(&mut hasher);
        hasher.finish()
    };
    let path_key = hash(&|h| src.hash(h));
    let stamp = hash(&|h| (meta.len(), meta.mtime(), meta.mtime_nsec()).hash(h));
    let prefix = format!("firstline-bin-{uid}-{path_key:016x}-");
    let dir = Path::new("/tmp").join(format!("{prefix}{stamp:016x}"));
    let trusted = |p: &Path, what: &str| {
        let m = std::fs::symlink_metadata(p).expect("metadata");
        assert!(
            m.uid() == uid && m.mode() & 0o7777 == 0o755 && !m.file_type().is_symlink(),
            "{} ({what}) is not this user's with mode 0755: not running it (remove it?)",
            p.display()
        );
    };
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755");
            // Copies of older builds of the same source go.
            if let Ok(entries) = std::fs::read_dir("/tmp") {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(&prefix) && e.path() != dir {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", dir.display()),
    }
    trusted(&dir, "folder");
    let dest = dir.join(name);
    if std::fs::symlink_metadata(&dest).is_err() {
        // A unique temporary name, then an atomic rename: test processes
        // of the same build may do this at once.
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp).expect("copy the binary");
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&tmp, &dest).expect("rename the binary into place");
    }
    trusted(&dest, "binary");
    assert_eq!(
        std::fs::metadata(&dest).expect("copy").len(),
        meta.len(),
        "{} is not a copy of {}",
        dest.display(),
        src.display()
    );
    dest
}

/// A free UDP port on 127.0.0.1 (closed again; the caller binds it soon).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("addr").port()
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A spawned process, logging to a file, killed (SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// kill -9, for real.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run a command to completion, panicking only if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 0 and JSON on stdout, parsed; a failure shows the whole output.
pub fn ok_json(out: Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
}

/// A console with its own config home, logged in as a new operator
/// `name` with `role`.
pub fn console_as(relay: &Relay, root: &Path, name: &str, role: &str) -> Console {
    let console = Console::new(&root.join(format!("console-{name}")));
    console.login(&relay.operator(name, role));
    console
}

/// A relay directory and, when serving, its process.
pub struct Relay {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addr: String,
    pub proc: Option<Proc>,
}

impl Relay {
    /// `firstline-relay init` in `root/relay` on a free loopback port.
    pub fn init(root: &Path) -> Relay {
        let dir = root.join("relay");
        let addr = format!("127.0.0.1:{}", free_udp_port());
        let out = run(Command::new(bin("firstline-relay"))
            .args(["init", "--dir"])
            .arg(&dir)
            .args(["--listen", &addr]));
        assert!(out.status.success(), "relay init failed: {}", text(&out));
        Relay {
            config: dir.join("relay.toml"),
            dir,
            addr,
            proc: None,
        }
    }

    /// Set top-level keys of relay.toml (before `serve`).
    pub fn configure(&self, extra: &str) {
        set_keys(&self.config, extra);
    }

    /// Start `serve` and wait until it listens.
    pub fn serve(&mut self) {
        let log = self.dir.join(format!("serve-{}.log", rand_suffix()));
        let proc = Proc::spawn(
            Command::new(bin("firstline-relay"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "info"),
            &log,
        );
        self.proc = Some(proc);
        let ok = wait_until(Duration::from_secs(20), || {
            self.proc
                .as_ref()
                .is_some_and(|p| p.log_text().contains("relay listening"))
        });
        assert!(ok, "relay did not start:\n{}", self.log());
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        run(Command::new(bin("firstline-relay"))
            .args(args)
            .arg("--config")
            .arg(&self.config))
    }

    pub fn token(&self, extra: &[&str]) -> String {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(extra);
        let out = self.cmd(&args);
        assert!(out.status.success(), "token create: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `operator add NAME --role ROLE`; the credential file's path.
    pub fn operator(&self, name: &str, role: &str) -> PathBuf {
        let out_path = self.dir.join(format!("{name}.credential.toml"));
        let out = run(Command::new(bin("firstline-relay"))
            .args(["operator", "add", name, "--role", role, "--config"])
            .arg(&self.config)
            .arg("--out")
            .arg(&out_path));
        assert!(out.status.success(), "operator add: {}", text(&out));
        out_path
    }
}

/// An agent's folder and, when running, its process.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub proc: Option<Proc>,
}

impl Agent {
    pub fn new(root: &Path, name: &str) -> Agent {
        let dir = root.join(format!("agent-{name}"));
        std::fs::create_dir_all(&dir).expect("agent dir");
        Agent {
            name: name.into(),
            config: dir.join("agent.toml"),
            dir,
            proc: None,
        }
    }

    pub fn enroll(&self, relay: &str, token: &str) -> Output {
        run(Command::new(bin("firstline-agent"))
            .args([
                "enroll", "--relay", relay, "--token", token, "--name", &self.name, "--config",
            ])
            .arg(&self.config))
    }

    pub fn enrolled(root: &Path, name: &str, relay: &Relay) -> Agent {
        let agent = Agent::new(root, name);
        let out = agent.enroll(&relay.addr, &relay.token(&[]));
        assert!(out.status.success(), "enroll: {}", text(&out));
        agent
    }

    /// Set top-level keys of agent.toml.
    pub fn configure(&self, extra: &str) {
        set_keys(&self.config, extra);
    }

    /// Append raw TOML (tables such as `[[monitor]]`) to agent.toml.
    pub fn append(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).expect("agent.toml");
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&self.config, text).expect("write agent.toml");
    }

    pub fn start(&mut self) {
        let log = self.dir.join(format!("run-{}.log", rand_suffix()));
        self.proc = Some(Proc::spawn(
            Command::new(bin("firstline-agent"))
                .args(["run", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "info"),
            &log,
        ));
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    /// The lines of its log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// The console, with its own config home so `login` stays in the test.
pub struct Console {
    pub home: PathBuf,
}

impl Console {
    pub fn new(root: &Path) -> Console {
        let home = root.join("console-home");
        std::fs::create_dir_all(&home).expect("console home");
        Console { home }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(Command::new(bin("firstline"))
            .args(args)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("HOME", &self.home))
    }

    pub fn login(&self, credential: &Path) {
        let out = self.run(&[
            "login",
            "--credential",
            credential.to_str().expect("utf8 path"),
        ]);
        assert!(out.status.success(), "login: {}", text(&out));
    }

    /// `agents --json`, parsed.
    pub fn agents(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["agents", "--json"]);
        assert!(out.status.success(), "agents: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("agents json")
    }

    /// Whether `name` shows as online.
    pub fn online(&self, name: &str) -> bool {
        self.agents()
            .iter()
            .any(|a| a["name"] == name && a["online"] == true)
    }
}

/// Replace or add `key = value` lines of a TOML file (top-level keys only;
/// other lines are appended as they are).
pub fn set_keys(path: &Path, lines: &str) {
    let mut text = std::fs::read_to_string(path).expect("config file");
    for line in lines.lines() {
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            text = text
                .lines()
                .filter(|l| l.split_once('=').map(|(k, _)| k.trim()) != Some(key))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write config file");
}

fn rand_suffix() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// Relay, one running agent and a logged-in console: the usual start.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub relay: Relay,
    pub agent: Agent,
    pub console: Console,
}

impl Setup {
    /// A serving relay, an enrolled and running agent `pc1` shown online,
    /// and a console logged in with `role`.
    pub fn new(role: &str) -> Setup {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut relay = Relay::init(tmp.path());
        relay.serve();
        let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
        agent.start();
        let console = Console::new(tmp.path());
        console.login(&relay.operator("tech", role));
        let online = wait_until(Duration::from_secs(20), || console.online("pc1"));
        assert!(
            online,
            "agent never online\nagent log:\n{}\nrelay log:\n{}",
            agent.log(),
            relay.log()
        );
        Setup {
            tmp,
            relay,
            agent,
            console,
        }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }
}
