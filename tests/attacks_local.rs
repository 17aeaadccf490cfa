//! Issue 23, item 3 (the end user's side), as attacks by local accounts on
//! real processes — real Unix users (made by the test, removed at the end),
//! real mounts, a real relay and agent — each asserting the attack fails:
//!
//! - the help socket's folder: a symlink (to a folder, or to nowhere), a
//!   sticky world-writable folder, a folder of another account — the agent
//!   refuses each with a clear log line and creates nothing where a link
//!   points; a missing folder is made 0755 whatever the umask;
//! - one local user holding many idle `firstline-help` connections does
//!   not lock another user out: theirs are refused `busy` at once, the
//!   other's `list` answers within 2 s;
//! - `clean-temp` never crosses a bind mount of the same filesystem inside
//!   an allowed root (a folder, a single file, one deep down);
//! - an enrollment that fails locally (not root, a file where a folder
//!   must be, a broken agent.toml) spends no token and takes no name;
//! - what `init`, `enroll`, `login` and `run` create is private (or, the
//!   help socket's folder, exactly 0755) under `umask 000` and `077`.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const SLOW: Duration = Duration::from_secs(30);
/// Where the log says the help socket was refused (agent/src/link.rs).
const NO_SOCKET: &str = "no firstline-help socket (self-service is off)";

fn rand_u32() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn uid_of(user: &str) -> u32 {
    let out = run(Command::new("id").args(["-u", user]));
    assert!(out.status.success(), "id -u {user}: {}", text(&out));
    stdout(&out).trim().parse().unwrap()
}

/// A folder under /tmp (socket paths must stay short), 0755 and root's,
/// removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(what: &str) -> TmpDir {
        let dir = PathBuf::from(format!("/tmp/fl-{what}-{:08x}", rand_u32()));
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        TmpDir(dir)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A local account for the test, removed on drop (also when a test fails).
struct LocalUser {
    name: String,
}

impl LocalUser {
    fn new() -> LocalUser {
        let name = format!("fl-loc-{:08x}", rand_u32());
        let out = run(Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name));
        assert!(out.status.success(), "useradd {name}: {}", text(&out));
        LocalUser { name }
    }

    /// PROGRAM as this user (`setpriv`, which execs: killing the process
    /// kills the program), with a bare environment.
    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .args(["--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A command run by `sh` under `umask MASK` (the binaries are started the
/// way a login shell or a careless unit would).
fn with_umask(mask: u32, program: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
        .arg(program);
    c
}

/// (Re)start the agent under `umask MASK`.
fn start_agent_umask(agent: &mut Agent, mask: u32) {
    if let Some(mut p) = agent.proc.take() {
        p.kill();
    }
    let log = agent.dir.join(format!("run-{:08x}.log", rand_u32()));
    agent.proc = Some(Proc::spawn(
        with_umask(mask, &bin("firstline-agent"))
            .args(["run", "--config"])
            .arg(&agent.config)
            .env("RUST_LOG", "info"),
        &log,
    ));
}

// ---------------------------------------------------------------- help socket

/// The agent, configured with `help_socket = SOCKET` and started, either
/// serves it (`Ok(())`) or logs why not (`Err(line)`).
fn help_socket_outcome(agent: &mut Agent, socket: &Path) -> Result<(), String> {
    agent.configure(&format!("help_socket = \"{}\"", socket.display()));
    start_agent_umask(agent, 0o022);
    let decided = wait_until(SLOW, || {
        agent.log().contains("firstline-help socket ready") || agent.log().contains(NO_SOCKET)
    });
    assert!(decided, "the agent never said:\n{}", agent.log());
    match agent.log_lines(NO_SOCKET).first() {
        Some(line) => Err(line.clone()),
        None => Ok(()),
    }
}

#[test]
fn the_help_socket_folder_is_never_a_link_a_shared_folder_or_someone_elses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let base = TmpDir::new("sockdir");
    let base = &base.0;

    // A symlink to a folder of root's: refused, nothing made in it.
    let target = base.join("target");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o755);
    std::os::unix::fs::symlink(&target, base.join("link")).unwrap();
    let why = help_socket_outcome(&mut agent, &base.join("link/help.sock")).unwrap_err();
    assert!(why.contains("is a symlink"), "{why}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{why}");

    // A symlink to nowhere: the folder it names is not created.
    std::os::unix::fs::symlink(base.join("nowhere"), base.join("dangling")).unwrap();
    let why = help_socket_outcome(&mut agent, &base.join("dangling/help.sock")).unwrap_err();
    assert!(why.contains("is a symlink"), "{why}");
    assert!(
        !base.join("nowhere").exists(),
        "created where the link points"
    );

    // Sticky and world-writable, like /tmp: anyone could take the name.
    let sticky = base.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let why = help_socket_outcome(&mut agent, &sticky.join("help.sock")).unwrap_err();
    assert!(why.contains("writable by others"), "{why}");
    assert!(why.contains("even sticky"), "{why}");
    assert_eq!(std::fs::read_dir(&sticky).unwrap().count(), 0);
    // /tmp itself, the same.
    let why = help_socket_outcome(&mut agent, Path::new("/tmp/fl-help-in-tmp.sock")).unwrap_err();
    assert!(why.contains("/tmp is writable by others"), "{why}");
    assert!(!Path::new("/tmp/fl-help-in-tmp.sock").exists());

    // Group-writable is writable by others too.
    let group = base.join("group");
    std::fs::create_dir(&group).unwrap();
    chmod(&group, 0o775);
    let why = help_socket_outcome(&mut agent, &group.join("help.sock")).unwrap_err();
    assert!(why.contains("writable by others"), "{why}");

    // Another account's folder, 0755: theirs to fill with their own socket.
    let user = LocalUser::new();
    let theirs = base.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    chmod(&theirs, 0o755);
    let uid = uid_of(&user.name);
    std::os::unix::fs::chown(&theirs, Some(uid), None).unwrap();
    let why = help_socket_outcome(&mut agent, &theirs.join("help.sock")).unwrap_err();
    assert!(why.contains(&format!("belongs to uid {uid}")), "{why}");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    // …nor a folder under one of theirs (they could rename it away).
    let under = theirs.join("sub");
    std::fs::create_dir(&under).unwrap();
    chmod(&under, 0o755);
    let why = help_socket_outcome(&mut agent, &under.join("help.sock")).unwrap_err();
    assert!(
        why.contains(&format!("{} belongs to uid {uid}", theirs.display())),
        "{why}"
    );
    assert_eq!(std::fs::read_dir(&under).unwrap().count(), 0);

    // A missing folder under a safe one: made 0755 (even under umask 077,
    // so users can reach it), the socket 0666, and it answers them.
    let fresh = base.join("fresh");
    agent.configure(&format!(
        "help_socket = \"{}\"",
        fresh.join("help.sock").display()
    ));
    start_agent_umask(&mut agent, 0o077);
    assert!(
        wait_until(SLOW, || agent.log().contains("firstline-help socket ready")),
        "{}",
        agent.log()
    );
    assert_eq!(mode(&fresh), 0o755);
    assert_eq!(mode(&fresh.join("help.sock")), 0o666);
    let out = run(user
        .cmd(&bin_for_others("firstline-help"))
        .arg("--socket")
        .arg(fresh.join("help.sock"))
        .arg("list"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("help desk"), "{}", text(&out));
}

/// Opens `N` connections to the socket and sends nothing; after 3 s prints
/// how many were answered (`busy=K`), then holds them all for 60 s.
const HOLD: &str = r#"
use IO::Socket::UNIX; use IO::Select;
my ($path, $n) = @ARGV; my @s; my $sel = IO::Select->new;
for (1..$n) { my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or die "connect: $!"; push @s, $c; $sel->add($c); }
$| = 1; print "held $n\n";
sleep 3;
my $busy = 0;
for my $c ($sel->can_read(0)) { my $l = <$c>; $busy++ if defined $l && $l =~ /"code":"busy"/; }
print "busy=$busy\n";
sleep 60;
"#;

#[test]
fn one_user_cannot_hold_every_help_connection() {
    const HELD: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    let base = TmpDir::new("fair");
    let socket = base.0.join("sock/help.sock");
    agent.configure(&format!("help_socket = \"{}\"", socket.display()));
    agent.start();
    assert!(
        wait_until(SLOW, || socket.exists()),
        "no socket\n{}",
        agent.log()
    );
    let mallory = LocalUser::new();
    let alice = LocalUser::new();
    let help = bin_for_others("firstline-help");

    // Mallory opens many connections and sends nothing.
    let script = base.0.join("hold.pl");
    std::fs::write(&script, HOLD).unwrap();
    chmod(&script, 0o644);
    let log = base.0.join("hold.log");
    let mut hold = Proc::spawn(
        mallory
            .cmd(Path::new("/usr/bin/perl"))
            .arg(&script)
            .arg(&socket)
            .arg(HELD.to_string()),
        &log,
    );
    assert!(
        wait_until(SLOW, || hold.log_text().contains(&format!("held {HELD}"))),
        "{}",
        hold.log_text()
    );

    // Alice is served at once, again and again, while Mallory holds them.
    for _ in 0..3 {
        let started = Instant::now();
        let out = run(alice.cmd(&help).arg("--socket").arg(&socket).arg("list"));
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            took < Duration::from_secs(2),
            "alice waited {took:?} behind mallory's idle connections"
        );
    }

    // Mallory's extra connections were refused at once, with a reason;
    // her fifth request in a row, too, with a message she can read.
    assert!(
        wait_until(SLOW, || hold.log_text().contains("busy=")),
        "{}",
        hold.log_text()
    );
    let busy: usize = hold
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("busy="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(busy, HELD - 4, "{}", hold.log_text());
    let out = run(mallory.cmd(&help).arg("--socket").arg(&socket).arg("list"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("you already have 4 requests open"),
        "{}",
        text(&out)
    );
    // Once she lets go, she is served again.
    hold.kill();
    let served = wait_until(Duration::from_secs(5), || {
        run(mallory.cmd(&help).arg("--socket").arg(&socket).arg("list"))
            .status
            .success()
    });
    assert!(served, "{}", agent.log());
}

// ---------------------------------------------------------------- clean-temp

/// Unmounts (lazily) on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn bind_mount(from: &Path, to: &Path) -> Mounted {
    let out = run(Command::new("mount").arg("--bind").arg(from).arg(to));
    assert!(out.status.success(), "mount --bind: {}", text(&out));
    Mounted(to.to_path_buf())
}

fn age(path: &Path, days: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

/// `n` files of 10 bytes, 30 days old.
fn old_files(dir: &Path, prefix: &str, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let f = dir.join(format!("{prefix}-{i:03}"));
        std::fs::write(&f, "0123456789").unwrap();
        age(&f, 30);
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn clean_temp_never_crosses_a_bind_mount_of_the_same_filesystem() {
    let mut s = Setup::new("technician");
    let root = s.root().join("cleanable");
    std::fs::create_dir_all(&root).unwrap();
    s.agent.append(&format!(
        "[policy]\nclean_temp_roots = [\"{}\"]\n",
        root.display()
    ));
    s.agent.proc.as_mut().unwrap().kill();
    s.agent.start();
    assert!(
        wait_until(SLOW, || s.console.online("pc1")),
        "{}",
        s.agent.log()
    );

    // What a local user would like cleaned for them: a folder (their
    // victim's home, /etc…) and a single file, outside the allowed root,
    // on the same filesystem.
    let outside = s.root().join("outside");
    old_files(&outside, "precious", 5);
    let one = s.root().join("one-file");
    std::fs::write(&one, "precious").unwrap();
    age(&one, 30);
    // Bound into the root: at its top, a file, and deep down.
    let bound = root.join("bound");
    std::fs::create_dir(&bound).unwrap();
    let deep = root.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    let file_mount = root.join("bound-file");
    std::fs::write(&file_mount, "").unwrap();
    let _m1 = bind_mount(&outside, &bound);
    let _m2 = bind_mount(&outside, &deep);
    let _m3 = bind_mount(&one, &file_mount);
    for d in [&bound, &deep] {
        age(d, 30);
    }
    for p in [&bound, &deep, &file_mount] {
        assert_eq!(
            std::fs::metadata(p).unwrap().dev(),
            std::fs::metadata(&root).unwrap().dev(),
            "{}: the same filesystem (st_dev): only the mount tells it apart",
            p.display()
        );
    }
    // A normal subfolder, which is to be cleaned.
    old_files(&root.join("junk"), "old", 3);

    let out = s.console.run(&[
        "fix",
        "pc1",
        "clean-temp",
        root.to_str().unwrap(),
        "--older-than",
        "1d",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(count(&outside), 5, "a bind-mounted folder was cleaned: {r}");
    assert_eq!(std::fs::read_to_string(&one).unwrap(), "precious", "{r}");
    assert_eq!(count(&root.join("junk")), 0, "the normal subfolder: {r}");
    assert_eq!(r["metrics"]["files"], 3.0, "{r}");
    assert_eq!(r["metrics"]["skipped"], 3.0, "{r}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("3 left alone (on another filesystem or mount"),
        "{r}"
    );
}

// ---------------------------------------------------------------- enrollment

fn token_uses_left(relay: &Relay, token: &str) -> u64 {
    let id = token.split('.').nth(1).unwrap();
    let list = ok_json(relay.cmd(&["token", "list", "--json"]));
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    t["uses_left"].as_u64().unwrap()
}

fn agent_names(relay: &Relay) -> String {
    let out = relay.cmd(&["agent", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

fn enroll_cmd(relay: &Relay, name: &str, config: &Path) -> Vec<String> {
    vec![
        "enroll".into(),
        "--relay".into(),
        relay.addr.clone(),
        "--name".into(),
        name.into(),
        "--config".into(),
        config.display().to_string(),
    ]
}

/// No temporary file left in `dir`; with `failed`, no identity either.
fn no_leftovers(dir: &Path, failed: bool) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.ends_with(".tmp"), "left in {}: {n}", dir.display());
            assert!(!(failed && n == "identity.pem"), "in {}", dir.display());
        }
    }
}

#[test]
fn an_enrollment_that_fails_locally_spends_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.serve();
    let token = relay.token(&["--uses", "1"]);
    let base = TmpDir::new("enroll");
    let agent_bin = bin_for_others("firstline-agent");

    // Not root: the folders are root's. (The token from the environment,
    // as the packages pass it.)
    let config = base.0.join("etc/agent.toml");
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&agent_bin)
        .args(enroll_cmd(&relay, "pc-nobody", &config))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot create the config's folder {}",
            base.0.join("etc").display()
        )) && err.contains("sudo"),
        "{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");

    // A state folder nobody can write to (root's, as nobody), the
    // config's folder theirs.
    std::fs::create_dir(base.0.join("etc")).unwrap();
    std::os::unix::fs::chown(base.0.join("etc"), Some(uid_of("nobody")), None).unwrap();
    let state = base.0.join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o755);
    let out = run(Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&agent_bin)
        .args(enroll_cmd(&relay, "pc-nobody", &config))
        .arg("--state-dir")
        .arg(&state)
        .env_clear()
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cannot write in the state folder {}",
            state.display()
        )),
        "{}",
        text(&out)
    );

    // As root: a file where the config's folder must be.
    std::fs::write(base.0.join("file"), "").unwrap();
    let out = run(Command::new(bin("firstline-agent"))
        .args(enroll_cmd(&relay, "pc1", &base.0.join("file/agent.toml")))
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("cannot create"), "{}", text(&out));

    // As root: an agent.toml the agent would not load afterwards.
    let dir = base.0.join("broken");
    std::fs::create_dir(&dir).unwrap();
    let broken = dir.join("agent.toml");
    std::fs::write(&broken, "# mine\nkeep_alive_secs = \"often\"\n").unwrap();
    let out = run(Command::new(bin("firstline-agent"))
        .args(enroll_cmd(&relay, "pc1", &broken))
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("{}:2", broken.display())),
        "names the file and line: {}",
        text(&out)
    );
    assert!(!stderr(&out).contains(".tmp"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "# mine\nkeep_alive_secs = \"often\"\n"
    );
    // An invalid name, too, before anything is sent.
    let out = run(Command::new(bin("firstline-agent"))
        .args(enroll_cmd(&relay, "pc 1/..", &dir.join("x.toml")))
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("invalid agent name"),
        "{}",
        text(&out)
    );

    // None of it spent the token or took a name.
    assert_eq!(token_uses_left(&relay, &token), 1);
    let names = agent_names(&relay);
    assert!(
        !names.contains("pc-nobody") && !names.contains("\"pc1\""),
        "{names}"
    );
    for d in [&base.0, &state, &dir] {
        no_leftovers(d, true);
    }

    // Fixed (root, a good path): the same token enrolls the machine.
    let good = base.0.join("good/agent.toml");
    let out = run(Command::new(bin("firstline-agent"))
        .args(enroll_cmd(&relay, "pc1", &good))
        .env("FIRSTLINE_TOKEN", &token));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(token_uses_left(&relay, &token), 0);
    assert!(agent_names(&relay).contains("\"pc1\""));
    assert!(base.0.join("good/identity.pem").exists());
    no_leftovers(&base.0.join("good"), false);
}

// ---------------------------------------------------------------- folders

#[test]
fn what_the_binaries_create_is_private_whatever_the_umask() {
    for mask in [0o000, 0o077] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();

        // The relay: its folder (and the parents it makes), the kb.
        let relay_dir = root.join("srv/relay");
        let addr = format!("127.0.0.1:{}", free_udp_port());
        let out = run(with_umask(mask, &bin("firstline-relay"))
            .args(["init", "--dir"])
            .arg(&relay_dir)
            .args(["--listen", &addr]));
        assert!(out.status.success(), "{}", text(&out));
        for d in [root.join("srv"), relay_dir.clone(), relay_dir.join("kb")] {
            assert_eq!(mode(&d), 0o700, "umask {mask:03o}: {}", d.display());
        }
        for e in std::fs::read_dir(relay_dir.join("kb")).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o644, "umask {mask:03o}: {}", p.display());
        }
        for f in ["ca-key.pem", "relay-key.pem", "relay.db", "relay.toml"] {
            let m = mode(&relay_dir.join(f));
            assert_eq!(m & 0o077, 0, "umask {mask:03o}: {f} is {m:04o}");
        }
        let mut relay = Relay {
            config: relay_dir.join("relay.toml"),
            dir: relay_dir,
            addr,
            proc: None,
        };
        relay.serve();

        // The agent: its config folder public, its state folder private.
        let etc = root.join("agent/etc");
        let state = root.join("agent/var/state");
        let config = etc.join("agent.toml");
        let out = run(with_umask(mask, &bin("firstline-agent"))
            .args([
                "enroll",
                "--relay",
                &relay.addr,
                "--name",
                "pc1",
                "--config",
            ])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .env("FIRSTLINE_TOKEN", relay.token(&[])));
        assert!(out.status.success(), "{}", text(&out));
        for (p, want) in [
            (root.join("agent"), 0o755),
            (etc.clone(), 0o755),
            (config.clone(), 0o644),
            (root.join("agent/var"), 0o700),
            (state.clone(), 0o700),
            (state.join("identity.pem"), 0o600),
        ] {
            assert_eq!(mode(&p), want, "umask {mask:03o}: {}", p.display());
        }

        // The help socket's folder, made by `run`: exactly 0755.
        let sock = TmpDir::new("umask");
        let socket = sock.0.join("run/help.sock");
        set_keys(&config, &format!("help_socket = \"{}\"", socket.display()));
        let mut agent = Agent {
            name: "pc1".into(),
            dir: root.join("agent"),
            config: config.clone(),
            proc: None,
        };
        start_agent_umask(&mut agent, mask);
        assert!(
            wait_until(SLOW, || socket.exists()),
            "umask {mask:03o}:\n{}",
            agent.log()
        );
        assert_eq!(mode(&sock.0.join("run")), 0o755, "umask {mask:03o}");
        assert_eq!(mode(&socket), 0o666, "umask {mask:03o}");

        // The console's folder, which holds the operator's credential.
        let home = root.join("home");
        let cred = relay.operator("tech", "technician");
        let out = run(with_umask(mask, &bin("firstline"))
            .args(["login", "--credential"])
            .arg(&cred)
            .env("XDG_CONFIG_HOME", home.join("cfg"))
            .env("HOME", &home));
        assert!(out.status.success(), "{}", text(&out));
        for d in [home.clone(), home.join("cfg"), home.join("cfg/firstline")] {
            assert_eq!(mode(&d), 0o700, "umask {mask:03o}: {}", d.display());
        }
        assert_eq!(mode(&home.join("cfg/firstline/credential.toml")), 0o600);
    }
}
