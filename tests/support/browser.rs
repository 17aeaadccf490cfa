//! A real browser for the web console's tests (issue 15): Debian's headless
//! Chromium driven through WebDriver by `chromedriver`, from Rust with
//! [`fantoccini`].
//!
//! Why this shape:
//!
//! * **Real Chromium, not a fake DOM.** The web console's promises — the
//!   session cookie set from the secret URL, the Content-Security-Policy,
//!   live updates over server-sent events, forms that post back — are
//!   kept or broken by a browser, so a browser checks them.
//! * **One `chromedriver` per test binary** ([`driver`]), started on first
//!   use on a free loopback port, and **one Chromium session per test**
//!   ([`Browser::new`]) with its own user-data folder, so tests share no
//!   cookies or storage. chromedriver runs under a small watchdog shell in
//!   its own process group: when the test process ends — however it ends —
//!   the watchdog kills that group (chromedriver and any browser it left),
//!   since a `static` is never dropped.
//! * **Synchronous API.** The end-to-end tests are plain threads and
//!   processes; each [`Browser`] owns a current-thread tokio runtime and
//!   blocks on it, so a test reads `browser.click("#run")` and waits are
//!   explicit polls with a deadline ([`Browser::wait_for`],
//!   [`Browser::wait_text`]) — never a sleep.
//! * **No TLS stack.** chromedriver speaks plain HTTP on loopback, so
//!   fantoccini is built without its default native-tls (openssl) and given
//!   hyper's plain `HttpConnector`.
//! * **A missing browser fails the test** with the `apt-get install` line
//!   (`.ci/apt-packages` lists both packages); it never passes silently.
//! * **Artifacts.** [`Browser::screenshot`] writes
//!   `target/web-screenshots/NAME.png`; [`Browser::screenshot_docs`] also
//!   writes `docs/img/NAME.png` when `FIRSTLINE_UPDATE_DOCS=1` (the README's
//!   pictures). A browser dropped by a failing test saves
//!   `FAILED-LABEL.png` and prints its URL and console log.
//!
//! [`WebConsole`] starts `firstline web --listen 127.0.0.1:0` for a logged-in
//! [`Console`](crate::Console) and reads the URL it prints.

use crate::{bin, wait_until, Console, Proc};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// How long a wait polls before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

const INSTALL: &str = "apt-get install chromium chromium-driver (or .ci/install-peers)";

/// The test binary's chromedriver: its port (it stays up until the process
/// exits; see the module docs).
pub struct Driver {
    pub port: u16,
    pub chromium: PathBuf,
    /// The watchdog shell (never waited on: it outlives every test).
    _watchdog: std::sync::Mutex<std::process::Child>,
}

static DRIVER: LazyLock<Driver> = LazyLock::new(start_driver);

/// The shared chromedriver, started on first use.
pub fn driver() -> &'static Driver {
    &DRIVER
}

/// `name` in `PATH`, or the test fails naming the packages to install.
fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: {INSTALL}"))
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    l.local_addr().expect("addr").port()
}

fn start_driver() -> Driver {
    let chromedriver = which("chromedriver");
    let chromium = which("chromium");
    let port = free_tcp_port();
    let log =
        std::env::temp_dir().join(format!("firstline-chromedriver-{}.log", std::process::id()));
    // The watchdog: chromedriver in the background; when this test process
    // (or chromedriver) is gone, remove the log and kill the whole group.
    let script = r#"
"$1" --port="$2" >"$3" 2>&1 &
d=$!
while kill -0 "$4" 2>/dev/null && kill -0 "$d" 2>/dev/null; do sleep 0.3; done
rm -f "$3"
kill -TERM -$$ 2>/dev/null
"#;
    use std::os::unix::process::CommandExt;
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("firstline-chromedriver-watchdog")
        .arg(&chromedriver)
        .arg(port.to_string())
        .arg(&log)
        .arg(std::process::id().to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver: {e}"));
    let up = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "chromedriver did not listen on 127.0.0.1:{port}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Driver {
        port,
        chromium,
        _watchdog: std::sync::Mutex::new(watchdog),
    }
}

/// `target/` of this build (the test binary is `target/debug/deps/web-…`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where screenshots go: `target/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/web-screenshots");
    dir
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

/// chromedriver's own command for the browser's console log
/// (`POST /session/ID/se/log {"type": "browser"}`); it returns the entries
/// since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A headless Chromium session (one per test), blocking API.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    label: String,
    /// Every console entry read so far (the driver hands each out once).
    log: std::sync::Mutex<Vec<LogEntry>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new browser session; `label` names its failure screenshot.
    pub fn new(label: &str) -> Browser {
        let driver = driver();
        let profile = tempfile::tempdir().expect("profile dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": driver.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-sync",
                    "--disable-breakpad",
                    "--disable-crash-reporter",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        let url = format!("http://127.0.0.1:{}", driver.port);
        let client = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                        .capabilities(caps)
                        .connect(&url),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("no Chromium session within 30 s ({INSTALL})"))
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e} ({INSTALL})"));
        Browser {
            rt,
            client: Some(client),
            label: label.into(),
            log: Default::default(),
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("browser session open")
    }

    /// Open `url` and wait for it to load.
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.c().goto(url))
            .unwrap_or_else(|e| panic!("[{}] cannot open {url}: {e}", self.label));
    }

    /// The page's URL now.
    pub fn url(&self) -> String {
        self.rt
            .block_on(self.c().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("[{}] current url: {e}", self.label))
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.rt.block_on(self.c().title()).unwrap_or_default()
    }

    /// The page's HTML now (after scripts ran).
    pub fn source(&self) -> String {
        self.rt.block_on(self.c().source()).unwrap_or_default()
    }

    /// Reload the page.
    pub fn refresh(&self) {
        self.rt
            .block_on(self.c().refresh())
            .unwrap_or_else(|e| panic!("[{}] refresh: {e}", self.label));
    }

    /// The visible texts of every element matching `css` (none: empty).
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.rt.block_on(async {
            let Ok(found) = self.c().find_all(Locator::Css(css)).await else {
                return Vec::new();
            };
            let mut texts = Vec::new();
            for el in found {
                // An element replaced meanwhile (a live update) is skipped.
                if let Ok(t) = el.text().await {
                    texts.push(t);
                }
            }
            texts
        })
    }

    /// Whether an element matches `css` now.
    pub fn exists(&self, css: &str) -> bool {
        self.count(css) > 0
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.rt
            .block_on(self.c().find_all(Locator::Css(css)))
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// The text of the whole page as shown (`document.body.innerText`).
    pub fn body_text(&self) -> String {
        self.js(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Wait until `css` matches, then return the first match's text.
    pub fn wait_for(&self, css: &str) -> String {
        self.wait_for_within(css, WAIT)
    }

    /// [`Browser::wait_for`] with another deadline.
    pub fn wait_for_within(&self, css: &str, timeout: Duration) -> String {
        let mut found = None;
        let ok = wait_until(timeout, || {
            found = self.texts(css).into_iter().next();
            found.is_some()
        });
        if !ok {
            self.fail(&format!("no element `{css}` within {timeout:?}"));
        }
        found.unwrap_or_default()
    }

    /// Wait until an element matching `css` shows `needle` in its text,
    /// ignoring case (a stylesheet may capitalise what it shows); that
    /// element's whole text, as shown.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_text_within(css, needle, WAIT)
    }

    /// [`Browser::wait_text`] with another deadline.
    pub fn wait_text_within(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let mut hit = None;
        let mut seen = Vec::new();
        let needle_lc = needle.to_lowercase();
        let ok = wait_until(timeout, || {
            seen = self.texts(css);
            hit = seen
                .iter()
                .find(|t| t.to_lowercase().contains(&needle_lc))
                .cloned();
            hit.is_some()
        });
        if !ok {
            self.fail(&format!(
                "no `{css}` showing {needle:?} within {timeout:?}; it shows {seen:?}"
            ));
        }
        hit.unwrap_or_default()
    }

    /// Wait until nothing matches `css`.
    pub fn wait_gone(&self, css: &str) {
        if !wait_until(WAIT, || !self.exists(css)) {
            self.fail(&format!("`{css}` still there after {WAIT:?}"));
        }
    }

    /// Wait until the JavaScript expression `expr` is truthy in the page.
    pub fn wait_js(&self, expr: &str) {
        let script = format!("return !!({expr});");
        if !wait_until(WAIT, || self.js(&script, vec![]) == Value::Bool(true)) {
            self.fail(&format!("`{expr}` not true within {WAIT:?}"));
        }
    }

    fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_for(css);
        self.rt
            .block_on(self.c().find(Locator::Css(css)))
            .unwrap_or_else(|e| self.fail(&format!("find `{css}`: {e}")))
    }

    /// Click the first element matching `css` (waiting for it).
    pub fn click(&self, css: &str) {
        let el = self.element(css);
        self.rt
            .block_on(el.click())
            .unwrap_or_else(|e| self.fail(&format!("click `{css}`: {e}")));
    }

    /// Clear the field matching `css` and type `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let el = self.element(css);
        self.rt
            .block_on(async {
                el.clear().await?;
                el.send_keys(text).await
            })
            .unwrap_or_else(|e| self.fail(&format!("fill `{css}`: {e}")));
    }

    /// Choose the option with `value` in the `<select>` matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let el = self.element(css);
        self.rt
            .block_on(el.select_by_value(value))
            .unwrap_or_else(|e| self.fail(&format!("select {value:?} in `{css}`: {e}")));
    }

    /// Submit the form matching `css` by clicking its submit button, as a
    /// person would (the page's own handlers run).
    pub fn submit(&self, form: &str) {
        self.click(&format!(
            "{form} button[type=submit], {form} input[type=submit], {form} button:not([type])"
        ));
    }

    /// Scroll the first element matching `css` to the top of the window
    /// (before a screenshot: WebDriver photographs the window only).
    pub fn scroll_to(&self, css: &str) {
        self.wait_for(css);
        self.js(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'start'}); return true;",
            vec![Value::String(css.into())],
        );
    }

    /// Wait until `css` matches an element with attribute `name`; its value.
    pub fn wait_attr(&self, css: &str, name: &str) -> String {
        let mut value = None;
        let ok = wait_until(WAIT, || {
            value = self.rt.block_on(async {
                let el = self.c().find(Locator::Css(css)).await.ok()?;
                el.attr(name).await.ok().flatten()
            });
            value.is_some()
        });
        if !ok {
            self.fail(&format!("no `{css}` with a `{name}` within {WAIT:?}"));
        }
        value.unwrap_or_default()
    }

    /// An attribute of the first element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.element(css);
        self.rt.block_on(el.attr(name)).ok().flatten()
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.c().execute(script, args))
            .unwrap_or_else(|e| self.fail(&format!("script failed: {e}\n{script}")))
    }

    /// Run an asynchronous `script` in the page: it ends by calling
    /// `arguments[arguments.length - 1](value)`; that value.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.c().execute_async(script, args))
            .unwrap_or_else(|e| self.fail(&format!("async script failed: {e}\n{script}")))
    }

    /// The browser's console log, every entry since the session started.
    pub fn console_log(&self) -> Vec<LogEntry> {
        let fresh = self.rt.block_on(self.c().issue_cmd(BrowserLog));
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(Value::Array(entries)) = fresh {
            log.extend(entries.iter().map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().into(),
                message: e["message"].as_str().unwrap_or_default().into(),
            }));
        }
        log.clone()
    }

    /// The console entries reporting a Content-Security-Policy violation.
    pub fn csp_violations(&self) -> Vec<String> {
        self.console_log()
            .into_iter()
            .filter(|e| e.message.contains("Content Security Policy"))
            .map(|e| e.message)
            .collect()
    }

    /// Fail unless the page loaded without a CSP violation in its console.
    pub fn assert_no_csp_violation(&self) {
        let v = self.csp_violations();
        if !v.is_empty() {
            self.fail(&format!("CSP violations reported: {v:#?}"));
        }
    }

    fn png(&self) -> Option<Vec<u8>> {
        self.rt.block_on(self.c().screenshot()).ok()
    }

    /// Make the window as tall as the page (at most `max` pixels), so the
    /// next screenshot shows all of it; the width stays.
    pub fn fit_to_page(&self, max: u32) {
        let height = self
            .js("return document.documentElement.scrollHeight;", vec![])
            .as_u64()
            .unwrap_or(900);
        let (width, _) = self
            .rt
            .block_on(self.c().get_window_size())
            .unwrap_or((1280, 900));
        // The window's frame takes some of its height from the page.
        let frame = self
            .js("return window.outerHeight - window.innerHeight;", vec![])
            .as_u64()
            .unwrap_or(0);
        let h = u32::try_from(height + frame).unwrap_or(max).min(max);
        self.rt
            .block_on(self.c().set_window_size(width as u32, h))
            .unwrap_or_else(|e| self.fail(&format!("resize the window: {e}")));
    }

    /// Save a screenshot to `target/web-screenshots/NAME.png`; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .png()
            .unwrap_or_else(|| self.fail(&format!("screenshot {name}")));
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("write screenshot");
        path
    }

    /// [`Browser::screenshot`], and with `FIRSTLINE_UPDATE_DOCS=1` also
    /// `docs/img/NAME.png` (the README's pictures).
    pub fn screenshot_docs(&self, name: &str) -> PathBuf {
        let path = self.screenshot(name);
        if std::env::var("FIRSTLINE_UPDATE_DOCS").is_ok_and(|v| v == "1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
            std::fs::create_dir_all(&docs).expect("docs/img");
            std::fs::copy(&path, docs.join(format!("{name}.png"))).expect("copy to docs/img");
        }
        path
    }

    /// Fail the test with `what`, the URL and the page's text.
    pub fn fail(&self, what: &str) -> ! {
        let url = self
            .rt
            .block_on(self.c().current_url())
            .map(|u| u.to_string());
        let text = self
            .rt
            .block_on(self.c().execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            ))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let shown: String = text.chars().take(3000).collect();
        panic!(
            "[{}] {what}\nat {}\npage text:\n{shown}",
            self.label,
            url.unwrap_or_default()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(png) = self.png() {
                let path = screenshot_dir().join(format!("FAILED-{}.png", self.label));
                let _ = std::fs::write(&path, png);
                eprintln!("[{}] failure screenshot: {}", self.label, path.display());
            }
            let url = self.rt.block_on(self.c().current_url());
            eprintln!(
                "[{}] at {:?}; console log:",
                self.label,
                url.map(|u| u.to_string())
            );
            for e in self.console_log() {
                eprintln!("  {} {}", e.level, e.message);
            }
        }
        if let Some(client) = self.client.take() {
            // Ends the session: chromedriver quits this Chromium.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
    }
}

/// `firstline web --listen 127.0.0.1:0` for a logged-in console, and the
/// secret URL it printed.
pub struct WebConsole {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT/?secret=…`, as printed.
    pub url: String,
    /// `http://127.0.0.1:PORT` (no secret, no slash).
    pub base: String,
}

impl WebConsole {
    /// Start the web console of `console` with `extra` arguments; wait for
    /// its URL.
    pub fn start(console: &Console, extra: &[&str]) -> WebConsole {
        let log = console.home.join(format!("web-{}.log", std::process::id()));
        let proc = Proc::spawn(
            Command::new(bin("firstline"))
                .args(["web", "--listen", "127.0.0.1:0"])
                .args(extra)
                .env("XDG_CONFIG_HOME", &console.home)
                .env("HOME", &console.home)
                .env("RUST_LOG", "info"),
            &log,
        );
        let mut web = WebConsole {
            proc,
            url: String::new(),
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(url) = secret_url(&web.proc.log_text()) {
                web.base = url
                    .split_once("/?")
                    .map(|(b, _)| b.to_string())
                    .unwrap_or_else(|| url.trim_end_matches('/').to_string());
                web.url = url;
                return web;
            }
            if let Some(status) = web.proc.exited() {
                panic!("firstline web exited ({status}):\n{}", web.proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("firstline web printed no URL:\n{}", web.proc.log_text());
    }

    /// The `n`-th login URL it printed (0: [`WebConsole::url`]), waited
    /// for: each logs in once, and when one is used the next is printed.
    pub fn nth_url(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(url) = secret_urls(&self.proc.log_text()).into_iter().nth(n) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "firstline web printed no login URL #{n}:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `base` + `path` (`/machines/pc1`); the session cookie must already
    /// be set by opening [`WebConsole::url`].
    pub fn page(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }
}

/// The first `http://127.0.0.1:…?secret=…` in `text`.
fn secret_url(text: &str) -> Option<String> {
    secret_urls(text).into_iter().next()
}

/// Every `http://127.0.0.1:…?secret=…` in `text`, in order.
pub fn secret_urls(text: &str) -> Vec<String> {
    text.match_indices("http://127.0.0.1:")
        .map(|(start, _)| {
            text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\'' && *c != '>')
                .collect::<String>()
        })
        .filter(|url| url.contains("secret="))
        .collect()
}
