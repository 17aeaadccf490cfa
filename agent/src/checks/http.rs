//! `http URL [--status LIST] [--contains TEXT] [--warn MS] [--crit MS]
//! [--cert-warn DAYS] [--cert-crit DAYS] [--ca FILE] [--follow] [--timeout DURATION]`
//!
//! One request with reqwest over rustls (the ring provider, passed
//! explicitly; certificates checked against the system's roots plus `--ca`).
//! Status codes are graded as `check_http` does — 2xx/3xx ok, 4xx warn,
//! 5xx crit — unless `--status` lists the acceptable ones. For `https` the
//! days left on the server certificate are a metric and graded; a
//! certificate that does not verify is `crit` with the reason.

use super::{error_chain, ms, parse_args, parse_duration, show_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of body read at most (for `--contains` and the size metric).
const BODY_CAP: usize = 1 << 20;

#[derive(clap::Parser, Debug)]
#[command(
    name = "http",
    about = "Fetch a URL: status code, time, and days left on the TLS certificate"
)]
pub struct HttpArgs {
    /// http:// or https:// URL.
    pub url: String,
    /// Acceptable status codes, e.g. `200`, `200,301`, `2xx` (default: 2xx and 3xx ok, 4xx warn, 5xx crit).
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<String>,
    /// Text the body must contain.
    #[arg(long)]
    pub contains: Option<String>,
    /// Warn when the response takes this long (a bare number is milliseconds).
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub warn: Option<Duration>,
    /// Critical when the response takes this long.
    #[arg(short = 'c', long, value_parser = parse_duration)]
    pub crit: Option<Duration>,
    /// Warn when the certificate expires in fewer days than this.
    #[arg(long, default_value_t = 30.0)]
    pub cert_warn: f64,
    /// Critical when the certificate expires in fewer days than this.
    #[arg(long, default_value_t = 7.0)]
    pub cert_crit: f64,
    /// Also trust the CA certificates in this PEM file.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Follow redirects (up to 10) instead of reporting the redirect.
    #[arg(long)]
    pub follow: bool,
    /// Send HEAD instead of GET.
    #[arg(long)]
    pub head: bool,
    /// Give up after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A rustls client configuration with the ring provider and the platform's
/// verifier (system roots plus `extra_roots`), the verifier built only when
/// a certificate is to be verified ([`Roots`]).
pub fn tls_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    let roots = if extra_roots.is_empty() {
        system_roots()
    } else {
        Arc::new(Roots::new(extra_roots))
    };
    let mut config = rustls::ClientConfig::builder_with_provider(roots.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How long the verifier with the system's roots is reused before the
/// roots are read again (a CA the admin adds is trusted within this time).
const SYSTEM_ROOTS_FOR: Duration = Duration::from_secs(3600);

/// The verifier with the system's roots only, shared by every check.
fn system_roots() -> Arc<Roots> {
    static SHARED: OnceLock<Arc<Roots>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(Roots::new(Vec::new())))
        .clone()
}

/// The platform's certificate verifier (system roots plus extra ones),
/// built on first use and then kept for [`SYSTEM_ROOTS_FOR`].
///
/// Why: building it reads and parses every certificate of the system's
/// store (/etc/ssl/certs: hundreds of files), which made an `http` monitor
/// the costliest of the agent's monitors when it was done on every run —
/// even for an `http://` URL, which verifies nothing.
#[derive(Debug)]
pub struct Roots {
    provider: Arc<rustls::crypto::CryptoProvider>,
    extra: Vec<CertificateDer<'static>>,
    built: Mutex<Option<(Instant, Arc<rustls_platform_verifier::Verifier>)>>,
}

impl Roots {
    fn new(extra: Vec<CertificateDer<'static>>) -> Roots {
        Roots {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            extra,
            built: Mutex::new(None),
        }
    }

    /// The verifier, read from the system's store now unless a recent one
    /// is kept.
    pub fn verifier(&self) -> Result<Arc<rustls_platform_verifier::Verifier>, String> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, v)) = &*built {
            if at.elapsed() < SYSTEM_ROOTS_FOR {
                return Ok(v.clone());
            }
        }
        let v = rustls_platform_verifier::Verifier::new_with_extra_roots(
            self.extra.iter().cloned(),
            self.provider.clone(),
        )
        .map(Arc::new)
        .map_err(|e| format!("cannot load the trusted certificates: {e}"))?;
        *built = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    fn inner(&self) -> Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
        self.verifier().map_err(rustls::Error::General)
    }
}

impl rustls::client::danger::ServerCertVerifier for Roots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    /// What the platform verifier offers (WebPKI with this provider's
    /// algorithms), known without reading any root.
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Largest `--ca` file: a bundle of every public root is about 250 KiB.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// CA certificates from a PEM file (a regular file, at most
/// [`MAX_CA_FILE`]).
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::files::read_regular(path, MAX_CA_FILE)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// An HTTP client for checks: direct (no proxy), bounded by `timeout`,
/// reporting the TLS peer certificate.
pub fn client(
    timeout: Duration,
    extra_roots: Vec<CertificateDer<'static>>,
    follow: bool,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(extra_roots)?)
        .tls_info(true)
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .user_agent(concat!("firstline-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

/// One line saying why a request failed, in a technician's words.
pub fn explain(e: &reqwest::Error, timeout: Duration) -> String {
    let chain = error_chain(e);
    let lower = chain.to_ascii_lowercase();
    if e.is_timeout() || lower.contains("timed out") {
        format!("no answer within {}", show_duration(timeout))
    } else if lower.contains("connection refused") {
        "connection refused (nothing listening)".into()
    } else if lower.contains("certificate") || lower.contains("invalid peer") {
        // rustls says e.g. "invalid peer certificate: UnknownIssuer"
        let reason = chain
            .split(": ")
            .skip_while(|p| !p.to_ascii_lowercase().contains("certificate"))
            .collect::<Vec<_>>()
            .join(": ");
        format!("TLS certificate not accepted: {reason}")
    } else if e.is_connect() {
        format!("cannot connect: {chain}")
    } else {
        chain
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: HttpArgs = parse_args("http", args)?;
    if let (Some(w), Some(c)) = (a.warn, a.crit) {
        if w > c {
            return Err(CheckError::Usage("--warn must not be above --crit".into()));
        }
    }
    if a.cert_warn < a.cert_crit {
        return Err(CheckError::Usage(
            "--cert-warn (days) must not be below --cert-crit".into(),
        ));
    }
    let url = reqwest::Url::parse(&a.url)
        .map_err(|e| CheckError::Usage(format!("`{}` is not a URL: {e}", a.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CheckError::Usage(format!(
            "`{}`: give an http:// or https:// URL with a host",
            a.url
        )));
    }
    let accepted = a
        .status
        .iter()
        .map(|s| StatusPattern::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CheckError::Usage)?;
    let target = a.url.clone();
    let roots = match &a.ca {
        Some(p) => match read_ca(p) {
            Ok(r) => r,
            Err(e) => return Ok(CheckResult::new("http", target, Status::Unknown, e)),
        },
        None => Vec::new(),
    };
    // An https URL needs the trusted roots: a store that cannot be read is
    // `unknown` (as the check reports it), not a certificate refused.
    if url.scheme() == "https" && roots.is_empty() {
        if let Err(e) = system_roots().verifier() {
            return Ok(CheckResult::new("http", target, Status::Unknown, e));
        }
    }
    let client = match client(a.timeout, roots, a.follow) {
        Ok(c) => c,
        Err(e) => return Ok(CheckResult::new("http", target, Status::Unknown, e)),
    };

    ctx.progress
        .say(format!("{} {url}", if a.head { "HEAD" } else { "GET" }));
    let started = Instant::now();
    let request = if a.head {
        client.head(url.clone())
    } else {
        client.get(url.clone())
    };
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(CheckResult::new(
                "http",
                target,
                Status::Crit,
                format!(
                    "{}: {}",
                    url.host_str().unwrap_or_default(),
                    explain(&e, a.timeout)
                ),
            )
            .metric("time_ms", ms(started.elapsed())))
        }
    };
    let code = response.status();
    let cert_days = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .and_then(days_left);
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ctx.progress.say(format!(
        "HTTP {} after {}",
        code,
        show_duration(started.elapsed())
    ));

    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut body_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_CAP.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(explain(&e, a.timeout));
                break;
            }
        }
    }
    let took = started.elapsed();

    let mut status;
    let mut notes: Vec<String> = Vec::new();
    if accepted.is_empty() {
        status = match code.as_u16() {
            200..=399 => Status::Ok,
            400..=499 => Status::Warn,
            _ => Status::Crit,
        };
    } else if accepted.iter().any(|p| p.matches(code.as_u16())) {
        status = Status::Ok;
    } else {
        status = Status::Crit;
        notes.push(format!("expected status {}", a.status.join(",")));
    }
    if let Some(e) = &body_error {
        status = status.worst(Status::Crit);
        notes.push(format!("body cut off: {e}"));
    }
    if let Some(text) = &a.contains {
        if !String::from_utf8_lossy(&body).contains(text.as_str()) {
            status = status.worst(Status::Crit);
            notes.push(format!(
                "body does not contain \"{text}\"{}",
                if truncated {
                    " (in its first 1 MiB)"
                } else {
                    ""
                }
            ));
        }
    }
    let time_status = match (a.warn, a.crit) {
        (_, Some(c)) if took >= c => Status::Crit,
        (Some(w), _) if took >= w => Status::Warn,
        _ => Status::Ok,
    };
    status = status.worst(time_status);
    if let Some(days) = cert_days {
        let s = if days < a.cert_crit {
            Status::Crit
        } else if days < a.cert_warn {
            Status::Warn
        } else {
            Status::Ok
        };
        status = status.worst(s);
        notes.push(if days < 0.0 {
            format!("certificate expired {:.0} days ago", -days)
        } else {
            format!("certificate expires in {days:.0} days")
        });
    }
    if let (Some(loc), true) = (&location, code.is_redirection()) {
        notes.push(format!("redirects to {loc}"));
    }
    let summary = format!(
        "HTTP {}{} in {} ms, {} bytes{}",
        code.as_u16(),
        code.canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default(),
        ms(took),
        body.len(),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    );
    let mut r = CheckResult::new("http", target, status, summary)
        .metric("status_code", f64::from(code.as_u16()))
        .metric("time_ms", ms(took))
        .metric("size_bytes", body.len() as f64);
    if let Some(days) = cert_days {
        r = r.metric("cert_days_left", (days * 10.0).round() / 10.0);
    }
    Ok(r)
}

/// Days from now until the certificate's notAfter (negative once expired).
pub fn days_left(der: &[u8]) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((not_after - now) as f64 / 86_400.0)
}

/// `200`, or a class as `2xx`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StatusPattern {
    Exact(u16),
    Class(u16),
}

impl StatusPattern {
    fn parse(text: &str) -> Result<StatusPattern, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || format!("`{text}` is not a status code (200) or class (2xx)");
        if let Some(class) = t.strip_suffix("xx") {
            let c: u16 = class.parse().map_err(|_| bad())?;
            return (1..=5)
                .contains(&c)
                .then_some(StatusPattern::Class(c))
                .ok_or_else(bad);
        }
        let code: u16 = t.parse().map_err(|_| bad())?;
        (100..=599)
            .contains(&code)
            .then_some(StatusPattern::Exact(code))
            .ok_or_else(bad)
    }

    fn matches(self, code: u16) -> bool {
        match self {
            StatusPattern::Exact(c) => c == code,
            StatusPattern::Class(c) => code / 100 == c,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        assert!(StatusPattern::parse("200").unwrap().matches(200));
        assert!(StatusPattern::parse("2xx").unwrap().matches(204));
        assert!(!StatusPattern::parse("2xx").unwrap().matches(301));
        assert!(StatusPattern::parse("600").is_err());
        assert!(StatusPattern::parse("9xx").is_err());
        assert!(StatusPattern::parse("ok").is_err());
    }

    #[test]
    fn certificate_days_left() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + Duration::from_secs(20 * 86_400)).into();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let days = days_left(cert.der()).unwrap();
        assert!((19.9..=20.1).contains(&days), "{days}");
        assert_eq!(days_left(b"not a certificate"), None);
    }

    #[tokio::test]
    async fn bad_urls_are_usage_errors() {
        let ctx = CheckContext::default();
        for bad in ["ftp://example.org/", "not a url", "http://"] {
            assert!(
                matches!(
                    run(&[bad.to_string()], &ctx).await,
                    Err(CheckError::Usage(_))
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_crit() {
        // Bind then drop: a loopback port with nothing behind it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = run(
            &[
                format!("http://127.0.0.1:{port}/"),
                "--timeout".into(),
                "2s".into(),
            ],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, Status::Crit, "{r:?}");
        assert!(r.summary.contains("refused"), "{}", r.summary);
    }
}
