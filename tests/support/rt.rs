//! A real Request Tracker 5 (Debian's `request-tracker5` with
//! `rt5-db-sqlite` and `rt5-standalone`) for the tests: its own SQLite
//! database in a folder of its own (`rt-setup-database --action init`,
//! about 2 s), an auth token for `root` made with RT's own libraries, and
//! `rt-server` on a free loopback port (ready in a few seconds). Starting
//! it costs seconds, so a test binary shares one ([`RequestTracker::shared`]);
//! tests keep apart by the deployment name in the tags of their tickets.
//!
//! The server runs under a reaper, a small shell process waiting on a pipe
//! from this process: when the test process ends in any way, the pipe
//! closes and the reaper kills the server's process group (`rt-server`
//! forks workers) and removes the folder.
//!
//! [`http`] is a minimal HTTP/1.0 client (the tests crate has none), and
//! [`Proxy`] a loopback proxy in front of RT that can hold a request's
//! answer after RT has done it, to kill a relay mid-delivery.

use crate::peers::{free_tcp_port, require};
use crate::{run, text, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

const RT_SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
const RT_LIB: &str = "/usr/share/request-tracker5/lib";
const PACKAGES: &str = "request-tracker5 rt5-db-sqlite rt5-standalone";

/// A running Request Tracker.
pub struct RequestTracker {
    pub port: u16,
    /// An auth token of RT's `root` (`Authorization: token …`).
    pub token: String,
    pub dir: PathBuf,
    /// The reaper; its stdin is the pipe whose end stops the server.
    _reaper: Mutex<Child>,
}

impl RequestTracker {
    /// The server this test binary shares, started on first use.
    pub fn shared() -> &'static RequestTracker {
        static SHARED: OnceLock<RequestTracker> = OnceLock::new();
        SHARED.get_or_init(RequestTracker::start)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start() -> RequestTracker {
        let missing = |what: &str| {
            format!("{what} is missing: install Debian's {PACKAGES} (preseed request-tracker5/database-type select sqlite3; see .ci/apt-packages)")
        };
        assert!(Path::new(RT_SERVER).is_file(), "{}", missing(RT_SERVER));
        let setup = require("rt-setup-database-5", "request-tracker5");
        let perl = require("perl", "perl");
        assert!(
            run(Command::new(&perl).args(["-MDBD::SQLite", "-e", "1"]))
                .status
                .success(),
            "{}",
            missing("DBD::SQLite (rt5-db-sqlite)")
        );
        let dir = tempfile::Builder::new()
            .prefix("firstline-rt-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let port = free_tcp_port();
        let site = dir.join("RT_SiteConfig.pm");
        let site_dir = dir.join("RT_SiteConfig.d");
        std::fs::create_dir_all(&site_dir).expect("mkdir");
        // Mail goes nowhere: RT sends autoreplies on create.
        std::fs::write(
            &site,
            format!(
                "Set($DatabaseType, 'SQLite');\n\
                 Set($DatabaseName, '{db}');\n\
                 Set($rtname, 'firstline-test');\n\
                 Set($Organization, 'firstline-test');\n\
                 Set($WebPath, '');\n\
                 Set($WebDomain, '127.0.0.1');\n\
                 Set($WebPort, {port});\n\
                 Set($WebBaseURL, 'http://127.0.0.1:{port}');\n\
                 Set($LogToSTDERR, 'error');\n\
                 Set($LogToSyslog, undef);\n\
                 Set($MailCommand, 'sendmailpipe');\n\
                 Set($SendmailPath, '/bin/true');\n\
                 1;\n",
                db = dir.join("rtdb").display()
            ),
        )
        .expect("site config");
        let env = |c: &mut Command| {
            c.env("RT_SITE_CONFIG", &site)
                .env("RT_SITE_CONFIG_DIR", &site_dir);
        };
        let password = dir.join("root-password");
        std::fs::write(&password, "firstline-rt-root").expect("password file");
        let mut init = Command::new(&setup);
        init.args(["--action", "init", "--root-password-file"])
            .arg(&password);
        env(&mut init);
        let out = run(&mut init);
        assert!(
            out.status.success(),
            "rt-setup-database failed: {}",
            text(&out)
        );
        let script = format!(
            "use lib '{RT_LIB}'; use RT; RT::LoadConfig(); RT::Init();\n\
             my $u = RT::User->new(RT->SystemUser); $u->Load('root');\n\
             my $t = RT::AuthToken->new(RT->SystemUser);\n\
             my ($ok, $msg, $auth) = $t->Create(Owner => $u->id, Description => 'firstline tests');\n\
             die \"token: $msg\\n\" unless $ok; print $auth;\n"
        );
        let mut token = Command::new(&perl);
        token.args(["-e", &script]);
        env(&mut token);
        let out = run(&mut token);
        assert!(out.status.success(), "RT auth token: {}", text(&out));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

        // The reaper: starts the server in a session of its own, waits for
        // the end of its stdin, kills the server's group, removes the folder.
        let mut reaper = Command::new("sh");
        reaper
            .args([
                "-c",
                r#"setsid "$1" --port "$2" >"$3/server.log" 2>&1 &
pid=$!
read -r _
kill -9 "-$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null
rm -rf "$3""#,
                "reaper",
                RT_SERVER,
                &port.to_string(),
            ])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        env(&mut reaper);
        let reaper = reaper.spawn().expect("start rt-server");
        let rt = RequestTracker {
            port,
            token,
            dir,
            _reaper: Mutex::new(reaper),
        };
        let up = wait_until(Duration::from_secs(60), || {
            http(&rt.url(), "GET", "/REST/2.0/queues/all", &rt.token, None)
                .is_ok_and(|(status, _)| status == 200)
        });
        let log = std::fs::read_to_string(rt.dir.join("server.log")).unwrap_or_default();
        assert!(up, "rt-server did not answer on port {port}:\n{log}");
        rt
    }

    /// A REST 2 call as `root`: the status and the JSON answer (`Null` when
    /// it is not JSON). Panics when RT cannot be reached.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(
            &self.url(),
            method,
            &format!("/REST/2.0/{path}"),
            &self.token,
            body,
        )
        .unwrap_or_else(|e| panic!("RT {method} {path}: {e}"))
    }

    /// The RT tickets whose subject starts with `tag` (`[firstline D #N]`):
    /// `(id, subject, status)`.
    pub fn tickets_tagged(&self, tag: &str) -> Vec<(u64, String, String)> {
        let query = format!("Subject LIKE '{tag}'");
        let path = format!(
            "tickets?query={}&fields=Subject,Status&per_page=100",
            url_encode(&query)
        );
        let (status, found) = self.call("GET", &path, None);
        assert_eq!(status, 200, "RT search: {found}");
        found["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|t| t["Subject"].as_str().is_some_and(|s| s.starts_with(tag)))
            .map(|t| {
                (
                    t["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                    t["Subject"].as_str().unwrap_or_default().to_string(),
                    t["Status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The subjects and texts of every message of RT ticket `id`, oldest
    /// first (the create's and each comment's).
    pub fn messages(&self, id: u64) -> Vec<(String, String)> {
        let (status, found) = self.call(
            "GET",
            &format!("ticket/{id}/attachments?fields=Subject,Content,ContentType&per_page=100"),
            None,
        );
        assert_eq!(status, 200, "RT attachments: {found}");
        found["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["ContentType"] == "text/plain")
            .map(|a| {
                let content = a["Content"].as_str().unwrap_or_default();
                let decoded = base64_decode(content).unwrap_or_else(|| content.as_bytes().to_vec());
                (
                    a["Subject"].as_str().unwrap_or_default().to_string(),
                    String::from_utf8_lossy(&decoded).into_owned(),
                )
            })
            .collect()
    }
}

/// One HTTP/1.0 request (the answer read to the end): status and JSON.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {head}"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A loopback HTTP proxy in front of RT. Every request is passed on (as
/// HTTP/1.0) and its answer returned, the connection then closed; a request
/// whose first line starts with the armed prefix is passed on — RT does it
/// — but its answer is held back until [`Proxy::release`]: the client never
/// learns that it was done.
pub struct Proxy {
    pub url: String,
    state: Arc<(Mutex<Hold>, Condvar)>,
}

#[derive(Default)]
struct Hold {
    armed: Option<String>,
    /// Requests held so far.
    held: usize,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state: Arc<(Mutex<Hold>, Condvar)> = Arc::default();
        let upstream = upstream.trim_start_matches("http://").to_string();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = pass(stream, &upstream, &state);
                });
            }
        });
        Proxy { url, state }
    }

    /// Hold the answers of requests whose first line starts with `prefix`
    /// (e.g. `POST /REST/2.0/ticket `).
    pub fn hold(&self, prefix: &str) {
        self.state.0.lock().expect("lock").armed = Some(prefix.to_string());
    }

    /// Requests held so far.
    pub fn held(&self) -> usize {
        self.state.0.lock().expect("lock").held
    }

    /// Hold nothing more; answers held are let go.
    pub fn release(&self) {
        self.state.0.lock().expect("lock").armed = None;
        self.state.1.notify_all();
    }
}

fn pass(client: TcpStream, upstream: &str, state: &(Mutex<Hold>, Condvar)) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().unwrap_or(0);
            }
            if k == "connection" || k == "keep-alive" {
                continue;
            }
        }
        headers.push(h);
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let line = first.trim_end().replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut up = TcpStream::connect(upstream)?;
    let mut req = format!("{line}\r\n");
    for h in &headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    {
        let (lock, cv) = state;
        let mut hold = lock.lock().expect("lock");
        if hold.armed.as_deref().is_some_and(|p| first.starts_with(p)) {
            hold.held += 1;
            while hold.armed.is_some() {
                hold = cv.wait(hold).expect("wait");
            }
        }
    }
    // The answer as RT gave it, the connection closed after it.
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let mut w = client;
    write!(w, "{}\r\nConnection: close\r\n\r\n", head.join("\r\n"))?;
    w.write_all(rest.as_bytes())?;
    w.flush()
}
