//! Every request to the web console passes here first.
//!
//! A web server on loopback is reachable by every page the technician's
//! browser opens and by every local user, so being on loopback proves
//! nothing. What this middleware asks of each request, in order:
//! 1. **`Host`** is this server (`127.0.0.1:PORT`, `localhost:PORT`,
//!    `[::1]:PORT` or the listen address): else 400. A hostile site whose
//!    name was rebound to 127.0.0.1 (DNS rebinding) sends its own name.
//! 2. **`Origin`**, when sent, is this server: else 403. A request that
//!    changes something (anything but GET/HEAD) must prove it came from our
//!    own page — an `Origin` of ours or `Sec-Fetch-Site: same-origin` —
//!    else 403: no cross-site form posts.
//! 3. **A one-time code**: `/?secret=S` with a login code of this launch
//!    sets a session cookie (random, `HttpOnly`, `SameSite=Strict`,
//!    `Path=/`) and redirects to `/`, so the code leaves the address bar
//!    and the history. A code logs in **once**: it is spent by its first
//!    use, and a second use is 401 — no URL that logs in twice ever leaves
//!    the process. The URL printed on the terminal carries one (when it is
//!    spent, a fresh one is printed, for another browser); `--open` hands
//!    the browser another, which also expires after [`OPEN_CODE_TTL`]
//!    (it passes through `xdg-open`'s and the browser's argv, which every
//!    local user can read). Every other request needs the cookie: else
//!    401. Codes and cookie are compared in constant time.
//! 4. On every answer, ours or a handler's: a strict Content-Security-Policy
//!    (no inline script or style, nothing from elsewhere, no framing),
//!    `nosniff`, referrers to this origin only, and `no-store` for pages.
//!
//! Known limit: cookies are not bound to a port, so the browser also sends
//! the session cookie to other servers on `localhost`; it is `HttpOnly`,
//! lives only as long as this launch, and is worth nothing to another
//! launch.

use super::{AppState, WebError};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the code handed to the browser by `--open` logs in (once).
pub const OPEN_CODE_TTL: Duration = Duration::from_secs(30);

/// Codes outstanding at most (the printed one, and `--open`'s): issuing
/// another drops the oldest.
const MAX_CODES: usize = 8;

/// A one-time login code.
struct Code {
    value: String,
    /// `None`: until spent (the printed code).
    expires: Option<Instant>,
    /// Printed on the terminal: spending it prints the next one.
    printed: bool,
}

/// The session cookie's name.
pub const COOKIE: &str = "firstline_session";

/// What every answer is allowed to load: only our own script, stylesheet
/// and images (plus `data:` images), and connect only to us (SSE).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// This launch's secrets and who we are.
pub struct Guard {
    /// The login codes not yet spent (each hex of 32 random bytes).
    codes: Mutex<Vec<Code>>,
    /// `127.0.0.1:PORT`, as login URLs name this server.
    shown: String,
    /// The session cookie's value (hex of 32 other random bytes).
    session: String,
    /// `Host` values that name this server, lower case.
    hosts: Vec<String>,
    /// `Origin` values of our own pages.
    origins: Vec<String>,
}

impl Guard {
    /// Fresh secrets for a server listening on `addr`.
    pub fn new(addr: SocketAddr) -> Guard {
        let hosts = hosts(addr);
        Guard {
            codes: Mutex::new(Vec::new()),
            shown: show_addr(addr),
            session: random_hex(),
            origins: hosts.iter().map(|h| format!("http://{h}")).collect(),
            hosts,
        }
    }

    /// A URL to print: it logs one browser in, once (when it is spent,
    /// the next one is printed).
    pub fn login_url(&self) -> String {
        self.url(self.issue(None, true))
    }

    /// A URL for `--open` to hand the browser: it logs in once, within
    /// [`OPEN_CODE_TTL`].
    pub fn open_url(&self) -> String {
        self.url(self.issue(Some(Instant::now() + OPEN_CODE_TTL), false))
    }

    fn url(&self, code: String) -> String {
        format!("http://{}/?secret={code}", self.shown)
    }

    fn codes(&self) -> std::sync::MutexGuard<'_, Vec<Code>> {
        self.codes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh code, kept until spent (or `expires`).
    fn issue(&self, expires: Option<Instant>, printed: bool) -> String {
        let value = random_hex();
        let mut codes = self.codes();
        if codes.len() >= MAX_CODES {
            codes.remove(0);
        }
        codes.push(Code {
            value: value.clone(),
            expires,
            printed,
        });
        value
    }

    /// Spend `given` if it is a live code: `Some(printed)` when it was one
    /// (it is gone now), `None` when not (unknown, spent or expired).
    fn spend(&self, given: &str) -> Option<bool> {
        let now = Instant::now();
        let mut codes = self.codes();
        codes.retain(|c| c.expires.is_none_or(|t| now < t));
        // Every code compared, in constant time each.
        let mut found = None;
        for (i, c) in codes.iter().enumerate() {
            if same(given.as_bytes(), c.value.as_bytes()) {
                found = Some(i);
            }
        }
        found.map(|i| codes.remove(i).printed)
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)))
    }

    /// `Ok` when the request may come from where it says it does.
    fn origin_ok(&self, method: &Method, headers: &HeaderMap) -> Result<(), WebError> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""));
        if let Some(o) = origin {
            if !self.origins.iter().any(|ok| ok.eq_ignore_ascii_case(o)) {
                return Err(WebError::CrossSite(format!(
                    "refused: a request from another site ({})",
                    super::text(o)
                )));
            }
        }
        let changes = !matches!(*method, Method::GET | Method::HEAD);
        let same_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin");
        if changes && origin.is_none() && !same_site {
            return Err(WebError::CrossSite(
                "refused: a request that changes something must come from this console's own page (no Origin header)".into(),
            ));
        }
        Ok(())
    }

    fn session_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && same(v.as_bytes(), self.session.as_bytes()))
    }

    fn set_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        )
    }
}

/// The middleware: the checks above, then the handler, then the headers.
pub async fn check(State(web): State<AppState>, req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut response = match admit(&web.guard, &req) {
        Ok(None) => next.run(req).await,
        Ok(Some(login)) => login,
        Err(e) => e.into_response(),
    };
    protect(response.headers_mut(), is_asset);
    response
}

/// `Ok(None)`: pass the request on; `Ok(Some(r))`: answer it with `r`
/// (the login redirect); `Err`: refuse it.
fn admit(guard: &Guard, req: &Request) -> Result<Option<Response>, WebError> {
    let headers = req.headers();
    if !guard.host_ok(headers) {
        return Err(WebError::BadHost(
            "refused: this server is not the one named in the Host header".into(),
        ));
    }
    guard.origin_ok(req.method(), headers)?;
    if let Some(secret) = secret_in(req) {
        if req.uri().path() != "/" {
            return Err(WebError::Unauthorized);
        }
        match guard.spend(&secret) {
            None => return Err(WebError::Unauthorized),
            Some(true) => {
                // The printed URL is spent: the next, for another browser.
                println!(
                    "firstline web: that login URL is used up; to log in another browser: {}",
                    guard.login_url()
                );
            }
            Some(false) => {}
        }
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&guard.set_cookie()) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Ok(Some(r));
    }
    if !guard.session_ok(headers) {
        return Err(WebError::Unauthorized);
    }
    Ok(None)
}

/// The `secret` query parameter, if any.
fn secret_in(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
}

/// The headers every answer gets.
fn protect(h: &mut HeaderMap, is_asset: bool) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends
    // a form's POST with `Origin: null`, which the origin check must
    // refuse; no URL of ours ever goes to another site either way.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    let cache = if is_asset { "no-cache" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
}

/// Equal bytes, in a time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 bytes from the system's CSPRNG, in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The system generator fails only on a broken system (no getrandom):
    // then no secret can be made and serving would be unsafe.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        eprintln!("error: the system's random number generator failed");
        std::process::exit(1);
    }
    hex::encode(bytes)
}

/// `127.0.0.1:8080`, `[::1]:8080`.
pub fn show_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The `Host` values that name a server on `addr`: the address itself, and
/// the loopback names when it is loopback; without the port too for port 80.
fn hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut names = vec![show_addr(addr).to_ascii_lowercase()];
    if addr.ip().is_loopback() {
        for n in ["localhost", "127.0.0.1", "[::1]"] {
            names.push(format!("{n}:{port}"));
        }
    }
    if port == 80 {
        let bare: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_suffix(":80").map(str::to_string))
            .collect();
        names.extend(bare);
    }
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn guard() -> Guard {
        Guard::new("127.0.0.1:8123".parse().unwrap_or_else(|_| unreachable!()))
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap_or_default()
    }

    fn status(g: &Guard, r: &Request) -> u16 {
        match admit(g, r) {
            Ok(None) => 200,
            Ok(Some(r)) => r.status().as_u16(),
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn the_secret_buys_a_cookie_and_the_cookie_a_page() {
        let g = guard();
        let host = ("host", "127.0.0.1:8123");
        assert_eq!(status(&g, &req("GET", "/", &[host])), 401);
        assert_eq!(status(&g, &req("GET", "/?secret=nope", &[host])), 401);
        let code = code_of(&g.login_url());
        let url = format!("/?secret={code}");
        // The code is for the front door only (and a wrong door spends
        // nothing).
        let elsewhere = format!("/audit?secret={code}");
        assert_eq!(status(&g, &req("GET", &elsewhere, &[host])), 401);
        let Ok(Some(login)) = admit(&g, &req("GET", &url, &[host])) else {
            panic!("no login")
        };
        assert_eq!(status(&g, &req("GET", &url, &[host])), 401, "once only");
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        assert_eq!(login.headers()[header::LOCATION], "/");
        let cookie = login.headers()[header::SET_COOKIE].to_str().unwrap_or("");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains(&code), "the cookie is not the code");
        let pair = cookie.split(';').next().unwrap_or("");
        assert_eq!(status(&g, &req("GET", "/", &[host, ("cookie", pair)])), 200);
        let other = format!("{COOKIE}={}", "0".repeat(64));
        assert_eq!(
            status(&g, &req("GET", "/", &[host, ("cookie", &other)])),
            401
        );
    }

    fn code_of(url: &str) -> String {
        url.split("secret=").nth(1).unwrap_or_default().to_string()
    }

    #[test]
    fn codes_log_in_once_and_open_codes_expire() {
        let g = guard();
        let host = ("host", "127.0.0.1:8123");
        let (a, b) = (code_of(&g.login_url()), code_of(&g.open_url()));
        assert_ne!(a, b);
        for code in [&a, &b] {
            let url = format!("/?secret={code}");
            assert_eq!(status(&g, &req("GET", &url, &[host])), 303);
            assert_eq!(status(&g, &req("GET", &url, &[host])), 401);
        }
        let late = code_of(&g.open_url());
        for c in g.codes().iter_mut() {
            c.expires = c.expires.map(|_| Instant::now());
        }
        let url = format!("/?secret={late}");
        assert_eq!(status(&g, &req("GET", &url, &[host])), 401, "expired");
        // Bounded: the oldest outstanding codes go first.
        let first = code_of(&g.login_url());
        for _ in 0..MAX_CODES {
            g.open_url();
        }
        let url = format!("/?secret={first}");
        assert_eq!(status(&g, &req("GET", &url, &[host])), 401);
    }

    #[test]
    fn host_and_origin() {
        let g = guard();
        let cookie = format!("{COOKIE}={}", g.session);
        let c = ("cookie", cookie.as_str());
        for host in [
            "127.0.0.1:8123",
            "localhost:8123",
            "[::1]:8123",
            "LOCALHOST:8123",
        ] {
            assert_eq!(
                status(&g, &req("GET", "/", &[("host", host), c])),
                200,
                "{host}"
            );
        }
        for host in ["evil.example:8123", "127.0.0.1:9", "localhost", ""] {
            assert_eq!(
                status(&g, &req("GET", "/", &[("host", host), c])),
                400,
                "{host}"
            );
        }
        assert_eq!(status(&g, &req("GET", "/", &[c])), 400, "no Host");
        let h = ("host", "localhost:8123");
        let evil = ("origin", "http://evil.example");
        assert_eq!(status(&g, &req("POST", "/actions", &[h, c, evil])), 403);
        assert_eq!(status(&g, &req("GET", "/", &[h, c, evil])), 403);
        assert_eq!(
            status(&g, &req("POST", "/actions", &[h, c])),
            403,
            "no Origin"
        );
        let ours = ("origin", "http://localhost:8123");
        assert_eq!(status(&g, &req("POST", "/actions", &[h, c, ours])), 200);
        let fetch = ("sec-fetch-site", "same-origin");
        assert_eq!(status(&g, &req("POST", "/actions", &[h, c, fetch])), 200);
        let cross = ("sec-fetch-site", "cross-site");
        assert_eq!(status(&g, &req("POST", "/actions", &[h, c, cross])), 403);
        assert_eq!(
            status(&g, &req("POST", "/actions", &[h, c, ("origin", "null")])),
            403
        );
    }

    #[test]
    fn secrets_are_fresh_and_long() {
        let (a, b) = (guard(), guard());
        let (ca, cb) = (code_of(&a.login_url()), code_of(&b.login_url()));
        assert_eq!(ca.len(), 64);
        assert_ne!(ca, cb);
        assert_ne!(ca, a.session);
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }

    #[test]
    fn hosts_of_an_address() {
        let h = hosts("127.0.0.1:80".parse().unwrap_or_else(|_| unreachable!()));
        assert!(h.contains(&"localhost".to_string()) && h.contains(&"localhost:80".to_string()));
        let h = hosts("192.0.2.7:8080".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(h, ["192.0.2.7:8080"]);
        let h = hosts("[::1]:8080".parse().unwrap_or_else(|_| unreachable!()));
        assert!(h.contains(&"[::1]:8080".to_string()));
    }
}
