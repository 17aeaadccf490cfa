//! The web console's guard, end to end and without a browser (issue 15):
//! a real relay, `firstline web --listen 127.0.0.1:0` as a process, and
//! raw HTTP/1.1 over a TCP stream, so every header is the one sent — a
//! browser would add or hide some. What a browser does with them is
//! `tests/web.rs`'s.

use firstline_tests::browser::WebConsole;
use firstline_tests::{bin, console_as, wait_until, Console, Proc, Relay};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// One HTTP answer.
struct Answer {
    status: u16,
    /// Header names lower case, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The address of a web console started by [`WebConsole`].
fn addr(web: &WebConsole) -> SocketAddr {
    web.base
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", web.base))
}

/// Send `method path` with `headers` (a `Host` of ours unless given) and
/// `body`; read the whole answer.
fn http(to: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {to}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Log in with the printed URL: the session cookie (`NAME=VALUE`).
fn login(web: &WebConsole) -> String {
    let to = addr(web);
    let path = web.url.trim_start_matches(&web.base);
    let a = http(to, "GET", path, &[], "");
    assert_eq!(a.status, 303, "login: {}", a.body);
    assert_eq!(a.header("location"), Some("/"));
    let cookie = a.header("set-cookie").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let secret = web.url.split("secret=").nth(1).unwrap_or("");
    assert!(!cookie.contains(secret), "the cookie is not the secret");
    cookie.split(';').next().unwrap_or("").to_string()
}

fn serving_relay(root: &std::path::Path) -> Relay {
    let mut relay = Relay::init(root);
    relay.serve();
    relay
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_protected(a: &Answer, what: &str) {
    assert_eq!(a.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(a.header("referrer-policy"), Some("same-origin"), "{what}");
}

#[test]
fn secret_cookie_host_origin_and_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = serving_relay(tmp.path());
    let console = console_as(&relay, tmp.path(), "alice", "admin");
    let web = WebConsole::start(&console, &[]);
    let to = addr(&web);
    assert!(to.ip().is_loopback(), "loopback by default: {to}");

    // No secret, a wrong one, a secret off the front door: 401, protected.
    for path in ["/", "/?secret=0123", "/live", "/assets/app.css"] {
        let a = http(to, "GET", path, &[], "");
        assert_eq!(a.status, 401, "{path}");
        assert!(
            a.body.contains("URL"),
            "{path}: says what to do: {}",
            a.body
        );
        assert_protected(&a, path);
    }
    let secret = web.url.split("secret=").nth(1).unwrap_or("").to_string();
    assert_eq!(secret.len(), 64, "32 random bytes: {}", web.url);
    let a = http(to, "GET", &format!("/audit?secret={secret}"), &[], "");
    assert_eq!(a.status, 401, "the secret opens the front door only");

    let cookie = login(&web);
    let c = ("Cookie", cookie.as_str());
    let a = http(to, "GET", "/", &[c], "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_protected(&a, "fleet page");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert!(
        a.body.contains("alice") && a.body.contains("admin"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("href=\"/audit\""),
        "admins see the Audit link"
    );
    let wrong = ("Cookie", "firstline_session=00");
    assert_eq!(http(to, "GET", "/", &[wrong], "").status, 401);

    // DNS rebinding: a page of another name that resolves to us.
    let port = to.port();
    for host in [
        format!("evil.example:{port}"),
        "localhost".into(),
        format!("127.0.0.1:{}", port ^ 1),
    ] {
        let a = http(to, "GET", "/", &[c, ("Host", &host)], "");
        assert_eq!(a.status, 400, "Host {host}");
        assert_protected(&a, "wrong Host");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(
            http(to, "GET", "/", &[c, ("Host", &host)], "").status,
            200,
            "{host}"
        );
    }

    // Cross-site requests: another Origin, or a change without any.
    let form = "kind=run&name=disk&target=pc1";
    let evil = ("Origin", "http://evil.example");
    let a = http(to, "POST", "/actions", &[c, evil], form);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_protected(&a, "cross-site POST");
    assert_eq!(
        http(to, "POST", "/actions", &[c], form).status,
        403,
        "no Origin"
    );
    let cross = ("Sec-Fetch-Site", "cross-site");
    assert_eq!(http(to, "POST", "/actions", &[c, cross], form).status, 403);
    assert_eq!(
        http(to, "GET", "/", &[c, evil], "").status,
        403,
        "cross-site read"
    );
    let ours = format!("http://127.0.0.1:{port}");
    let a = http(to, "POST", "/actions", &[c, ("Origin", &ours)], form);
    assert!(
        ![400, 401, 403].contains(&a.status),
        "our own page passes the guard: {}",
        a.status
    );

    // Assets: embedded, protected, cached only with revalidation.
    let a = http(to, "GET", "/assets/app.js", &[c], "");
    assert_eq!(a.status, 200);
    assert_protected(&a, "app.js");
    assert!(a
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    assert!(a.body.contains("EventSource"));

    // Audit, with the relay's verification of its chain.
    let a = http(to, "GET", "/audit?verify=1", &[c], "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("id=\"verify-result\""), "{}", a.body);
    assert!(a.body.contains("holds"), "{}", a.body);
    assert!(
        a.body.contains("who am i"),
        "the web console's requests are audited"
    );
}

#[test]
fn a_viewer_is_offered_less_and_sees_a_new_role_soon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = serving_relay(tmp.path());
    let admin = console_as(&relay, tmp.path(), "root", "admin");
    let viewer = console_as(&relay, tmp.path(), "val", "viewer");
    let web = WebConsole::start(&viewer, &[]);
    let to = addr(&web);
    let cookie = login(&web);
    let c = ("Cookie", cookie.as_str());

    let page = http(to, "GET", "/", &[c], "").body;
    assert!(page.contains("viewer"), "{page}");
    assert!(
        !page.contains("href=\"/audit\""),
        "no Audit link for viewers"
    );
    let a = http(to, "GET", "/audit", &[c], "");
    assert_eq!(a.status, 403, "{}", a.body);

    // The relay's database decides the role: an admin raises it.
    let out = admin.run(&["operator", "role", "val", "admin"]);
    assert!(out.status.success(), "{}", firstline_tests::text(&out));
    let raised = wait_until(Duration::from_secs(15), || {
        http(to, "GET", "/audit", &[c], "").status == 200
    });
    assert!(raised, "the new role reached the web console");
    let page = http(to, "GET", "/", &[c], "").body;
    assert!(page.contains("href=\"/audit\""), "{page}");
}

#[test]
fn loopback_only_unless_told() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = serving_relay(tmp.path());
    let console: Console = console_as(&relay, tmp.path(), "alice", "technician");
    for every in ["0.0.0.0:0", "[::]:0"] {
        let out = console.run(&["web", "--listen", every]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            firstline_tests::text(&out)
        );
        assert!(firstline_tests::stderr(&out).contains("name one address"));
    }
    let web = WebConsole::start(&console, &[]);
    let to = addr(&web);
    assert!(to.ip().is_loopback());
    // The same port on this machine's other address answers nothing.
    if let Some(ip) = outward_ip() {
        let other = SocketAddr::new(ip, to.port());
        assert!(
            TcpStream::connect_timeout(&other, Duration::from_secs(2)).is_err(),
            "{other} must not answer"
        );
    }
    assert!(!web.log().contains("warning"), "{}", web.log());

    // Told explicitly: served there, with a warning on stderr.
    if let Some(ip) = outward_ip() {
        let listen = SocketAddr::new(ip, 0).to_string();
        let log = console.home.join("web-outward.log");
        let mut proc = Proc::spawn(
            Command::new(bin("firstline"))
                .args(["web", "--listen", &listen])
                .env("XDG_CONFIG_HOME", &console.home)
                .env("HOME", &console.home),
            &log,
        );
        let url = format!("http://{ip}:");
        let up = wait_until(Duration::from_secs(20), || proc.log_text().contains(&url));
        let text = proc.log_text();
        assert!(up, "{text}");
        assert!(
            text.contains("warning: the web console listens on"),
            "{text}"
        );
        assert!(text.contains("not loopback"), "{text}");
        proc.kill();
    }
}

/// An address of this machine that is not loopback, if it has one.
/// `connect` on a UDP socket only asks the routing table which source
/// address it would use: no packet is sent (192.0.2.1 is TEST-NET-1), and
/// the test then talks to that address of this machine, which the kernel
/// delivers locally.
fn outward_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// An open `GET path` whose answer is read as it comes (server-sent events).
struct Events {
    stream: TcpStream,
    seen: String,
}

impl Events {
    fn open(to: SocketAddr, path: &str, cookie: &str) -> Events {
        let mut stream = TcpStream::connect(to).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(req.as_bytes()).expect("send");
        Events {
            stream,
            seen: String::new(),
        }
    }

    /// Read until `needle` appears `times` times in all that was read.
    fn wait(&mut self, needle: &str, times: usize, within: Duration) -> bool {
        let end = std::time::Instant::now() + within;
        let mut buf = [0u8; 4096];
        while self.seen.matches(needle).count() < times {
            if std::time::Instant::now() > end {
                return false;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
        true
    }
}

#[test]
fn live_notices_and_a_relay_that_comes_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut relay = serving_relay(tmp.path());
    let console = console_as(&relay, tmp.path(), "alice", "technician");
    let web = WebConsole::start(&console, &[]);
    let to = addr(&web);
    let cookie = login(&web);
    let c = ("Cookie", cookie.as_str());

    let mut live = Events::open(to, "/live/events", &cookie);
    assert!(
        live.wait("\"state\":\"watching\"", 1, Duration::from_secs(15)),
        "{}",
        live.seen
    );
    assert!(live.seen.contains("text/event-stream"), "{}", live.seen);
    assert!(live
        .seen
        .contains(&format!("content-security-policy: {CSP}")));
    let out = console.run(&["ticket", "new", "printer <b>jammed</b>"]);
    assert!(out.status.success(), "{}", firstline_tests::text(&out));
    assert!(
        live.wait("ticket_opened", 1, Duration::from_secs(15)),
        "{}",
        live.seen
    );
    assert!(
        live.seen.contains("printer <b>jammed</b>"),
        "JSON data, for the script to write as text: {}",
        live.seen
    );

    // The relay restarts: the watch says so and starts again, pages come back.
    relay.kill();
    relay.serve();
    assert!(
        live.wait("\"state\":\"lost\"", 1, Duration::from_secs(40)),
        "{}",
        live.seen
    );
    assert!(
        live.wait("\"state\":\"watching\"", 2, Duration::from_secs(40)),
        "{}",
        live.seen
    );
    let back = wait_until(Duration::from_secs(30), || {
        http(to, "GET", "/", &[c], "").status == 200
    });
    assert!(back, "{}", web.log());

    // SIGTERM stops it, live streams open or not.
    let mut web = web;
    let pid = web.proc.child.id().to_string();
    let out = firstline_tests::run(Command::new("kill").args(["-TERM", &pid]));
    assert!(out.status.success());
    let ended = wait_until(Duration::from_secs(10), || web.proc.exited().is_some());
    assert!(ended, "still serving after SIGTERM:\n{}", web.log());
    assert_eq!(web.proc.exited().and_then(|s| s.code()), Some(0));
}
