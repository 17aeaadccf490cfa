//! A real PostgreSQL 15 (Debian's `postgresql-15`) for the tests: a private
//! server on a free loopback port, in a folder of its own, with trust
//! authentication for the user `fl`.
//!
//! Starting one takes about 2 s, so a test binary normally shares one
//! ([`Postgres::shared`]) and gives each test a database of its own
//! ([`Postgres::create_database`], [`Postgres::fresh_database`]);
//! [`Postgres::start`] makes a private server for a test that stops or
//! breaks it.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the
//! `postgres` user (`runuser`) in a folder it owns. Each server has a
//! reaper, a small shell process waiting on a pipe from this process: when
//! the `Postgres` is dropped, or the test process ends in any way (the
//! shared server is never dropped), the pipe closes and the reaper stops the
//! server (`pg_ctl -m immediate stop`) and removes its folder.

use crate::peers::{free_tcp_port, require};
use crate::{run, text};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where Debian's `postgresql-15` puts the server programs.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser `initdb` creates (trust authentication: no password).
pub const USER: &str = "fl";

/// A running PostgreSQL server; stopped and removed on drop.
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    psql: PathBuf,
    /// The reaper: its stdin is the pipe whose end stops the server.
    reaper: Option<Child>,
}

impl Postgres {
    /// The server this test binary shares, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// A private server: `initdb -A trust -U fl` in a new folder, then
    /// `pg_ctl start` on a free loopback port (a few tries, should another
    /// process take the port first). Panics with the server's log when it
    /// does not start, or naming the Debian package when it is missing.
    pub fn start() -> Postgres {
        let initdb = require(&format!("{BIN_DIR}/initdb"), "postgresql-15");
        let pg_ctl = require(&format!("{BIN_DIR}/pg_ctl"), "postgresql-15");
        let psql = require(&format!("{BIN_DIR}/psql"), "postgresql-client-15");
        let as_root = is_root();
        let runuser = as_root.then(|| require("runuser", "util-linux"));
        let dir = tempfile::Builder::new()
            .prefix("firstline-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        // The server's user must reach its folder (mktemp folders are 0700)
        // and own it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if as_root {
            crate::peers::must(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        // The reaper first, so that even a failed start is cleaned up.
        let reaper = spawn_reaper(runuser.as_deref(), &pg_ctl, &dir);
        let mut pg = Postgres {
            port: 0,
            dir,
            psql,
            reaper: Some(reaper),
        };
        let as_server = |program: &Path| -> Command {
            match &runuser {
                Some(runuser) => {
                    let mut c = Command::new(runuser);
                    c.args(["-u", "postgres", "--"]).arg(program);
                    c
                }
                None => Command::new(program),
            }
        };
        let data = pg.dir.join("data");
        let out = run(as_server(&initdb)
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .env_remove("PGDATA"));
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let log = pg.dir.join("log");
        for attempt in 1..=3 {
            let port = free_tcp_port();
            // fsync off: the tests never outlive the machine, and commits
            // cost a disk flush each otherwise.
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.dir.display()
            );
            let out = run(as_server(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-o", &options, "-l"])
                .arg(&log)
                .arg("start"));
            if out.status.success() {
                pg.port = port;
                return pg;
            }
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            let port_taken = server_log.contains("could not bind");
            assert!(
                port_taken && attempt < 3,
                "PostgreSQL did not start: {}\nserver log:\n{server_log}",
                text(&out)
            );
        }
        unreachable!("the loop returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's folder (data in `data/`, the server's log in `log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://fl@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// `postgres://fl@127.0.0.1:PORT/NAME`.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// `CREATE DATABASE name` (lower-case letters, digits, `_`; it must not
    /// exist yet); its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name `{name}`: use lower-case letters, digits and `_`"
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.database_url(name)
    }

    /// A new database with a name of its own (`t_PID_N`): its URL. For
    /// tests sharing [`Postgres::shared`].
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("t_{}_{n}", std::process::id()))
    }

    /// Run `sql` with `psql` in `database` (stop at the first error):
    /// unaligned, tuples only (`-At`), so `SELECT 1` gives `1\n`. Panics
    /// with psql's output when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out =
            run(self
                .psql_command(database)
                .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql]));
        assert!(
            out.status.success(),
            "psql -c {sql:?} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `psql -h 127.0.0.1 -p PORT -U fl -d DATABASE -X`, to add arguments to.
    pub fn psql_command(&self, database: &str) -> Command {
        let mut c = Command::new(&self.psql);
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", database, "-X", "-q"])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        c
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut reaper) = self.reaper.take() {
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `sh` waiting for the end of its stdin, then stopping the server and
/// removing its folder. In a process group of its own, so that Ctrl-C on
/// the test run does not take it before it has done its work.
fn spawn_reaper(runuser: Option<&Path>, pg_ctl: &Path, dir: &Path) -> Child {
    let stop = match runuser {
        Some(_) => r#""$1" -u postgres -- "$2" -D "$3/data" -m immediate stop"#,
        None => r#""$2" -D "$3/data" -m immediate stop"#,
    };
    let script = format!(
        r#"read -r _; if [ -f "$3/data/postmaster.pid" ]; then {stop} >/dev/null 2>&1; fi; rm -rf "$3""#
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pg-reaper")
        .arg(runuser.unwrap_or(Path::new("-")))
        .arg(pg_ctl)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cannot start the PostgreSQL reaper (sh)")
}
