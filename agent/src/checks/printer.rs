//! `printer [URI|QUEUE] [--server HOST[:PORT]] [--warn-jobs N] [--crit-jobs N] [--timeout DURATION]`
//!
//! IPP Get-Printer-Attributes (requests encoded and answers decoded by the
//! `ipp` crate, sent over our own HTTP client): printer-state
//! (idle/processing/stopped), printer-state-reasons, printer-state-message,
//! queued-job-count and printer-is-accepting-jobs.
//!
//! With no URI the CUPS default destination is checked, asked of the CUPS
//! scheduler with CUPS-Get-Default; a bare queue name (`printer office`) is
//! that queue on the CUPS scheduler. The scheduler is `--server`, else
//! `$CUPS_SERVER`, else `ServerName` of `/etc/cups/client.conf`, else
//! `localhost:631`.
//!
//! Grading: stopped, not accepting jobs, or a reason of severity error
//! (suffix `-error`, or no suffix, as RFC 8011 says) → crit; a `-warning`
//! reason or a known "low" supply → warn; `-report` reasons are information.
//!
//! Fields, for runbooks to branch on:
//! - `error` on every failure: `scheduler-unreachable` (the CUPS scheduler
//!   does not answer: the target was a queue name, the default printer, or
//!   a URI whose HOST:PORT is the scheduler's — loopback names count as
//!   one host), `printer-unreachable` (a URI to another host that does not
//!   answer: refused, no route, timeout, TLS refused), `unresolved` (the
//!   host name does not resolve), `queue-unknown` (IPP
//!   client-error-not-found 0x0406, HTTP 404, or no default printer),
//!   `ipp-error` (any other IPP status, in field `ipp_status` as `0x0401`;
//!   or an answer that is not IPP, with `http_status` when HTTP said no).
//! - on an answer: `state` (`idle`, `processing`, `stopped`, `unknown`),
//!   `reasons` (printer-state-reasons without `none`, comma-joined; `none`
//!   when none), `message` (printer-state-message, when there is one),
//!   `name` (printer-name).
//! - `queue`: the printer URI asked (for the default printer, the queue
//!   CUPS named); `server`: the scheduler, when it was the target.
//! - with `--stuck-after DURATION` and jobs queued, Get-Jobs: a job in
//!   `processing` for longer (by the printer's `printer-up-time`) makes the
//!   result critical with `error = job-stuck`; metric
//!   `oldest_processing_s`.
//! - a CUPS queue's device is probed too, idle or not (`device`,
//!   `device_probe`): a network printer that does not answer makes the
//!   result critical with `error = printer-unreachable` — an idle queue in
//!   front of a switched-off printer is not ready.

use super::{error_chain, parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use ipp::attribute::IppAttribute;
use ipp::model::{DelimiterTag, IppVersion, Operation, StatusCode};
use ipp::parser::IppParser;
use ipp::reader::IppReader;
use ipp::request::IppRequestResponse;
use ipp::value::{IppKeyword, IppValue};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The attributes asked for.
const WANTED: &[&str] = &[
    "printer-name",
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "queued-job-count",
    "printer-is-accepting-jobs",
    "printer-make-and-model",
    "device-uri",
    "printer-up-time",
];

#[derive(clap::Parser, Debug)]
#[command(
    name = "printer",
    about = "IPP printer state, state reasons and queued jobs (the CUPS default printer when no URI)"
)]
pub struct PrinterArgs {
    /// ipp://, ipps://, http:// or https:// printer URI, or a queue name of
    /// the scheduler (ipp://SERVER/printers/NAME); none: its default printer.
    pub uri: Option<String>,
    /// CUPS scheduler HOST[:PORT] (default: $CUPS_SERVER, ServerName of
    /// /etc/cups/client.conf, else localhost:631).
    #[arg(long)]
    pub server: Option<String>,
    /// Warn when this many jobs or more are queued.
    #[arg(long)]
    pub warn_jobs: Option<u32>,
    /// Critical when this many jobs or more are queued.
    #[arg(long)]
    pub crit_jobs: Option<u32>,
    /// Also trust the CA certificates in this PEM file (ipps://).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A job printing for longer than this is stuck (the jobs are asked
    /// for with Get-Jobs when a job is queued).
    #[arg(long, value_parser = parse_duration)]
    pub stuck_after: Option<Duration>,
}

/// What the printer said about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrinterState {
    pub name: Option<String>,
    /// 3 idle, 4 processing, 5 stopped.
    pub state: Option<i32>,
    pub reasons: Vec<String>,
    pub message: Option<String>,
    pub queued_jobs: Option<i32>,
    pub accepting: Option<bool>,
    pub model: Option<String>,
    /// Where a CUPS queue sends its jobs (`device-uri`).
    pub device: Option<String>,
    /// The printer's clock (`printer-up-time`, seconds), for job ages.
    pub up_time: Option<i32>,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: PrinterArgs = parse_args("printer", args)?;
    if let (Some(w), Some(c)) = (a.warn_jobs, a.crit_jobs) {
        if w > c {
            return Err(CheckError::Usage(
                "--warn-jobs must not be above --crit-jobs".into(),
            ));
        }
    }
    let roots = match &a.ca {
        Some(p) => super::http::read_ca(p).map_err(CheckError::Usage)?,
        None => Vec::new(),
    };
    let client = match super::http::client(a.timeout, roots, false) {
        Ok(c) => c,
        Err(e) => return Ok(CheckResult::new("printer", "-", Status::Unknown, e)),
    };

    // The scheduler: the target of a queue name and of the default printer,
    // and of a URI whose HOST:PORT is its own.
    let server = cups_server(a.server.as_deref());
    let fail = |target: &str, status: Status, summary: String, error: &str| {
        CheckResult::new("printer", target, status, summary).field("error", error)
    };
    let (target, queue, answer, role) = match &a.uri {
        Some(uri) if uri.contains("://") => {
            let url = http_url(uri).map_err(CheckError::Usage)?;
            let role = if same_endpoint(&url, &server) {
                Role::Scheduler
            } else {
                Role::Printer
            };
            ctx.progress.say(format!(
                "asking {uri} for its state (Get-Printer-Attributes)"
            ));
            let req = get_printer_attributes(uri).map_err(CheckError::Usage)?;
            let answer = send(&client, &url, req, a.timeout).await;
            (uri.clone(), uri.clone(), answer, role)
        }
        Some(queue) => {
            if queue.contains('/') || queue.contains('?') || queue.contains('#') {
                return Err(CheckError::Usage(format!(
                    "`{queue}` is neither a printer URI (ipp://…) nor a queue name"
                )));
            }
            let uri = format!("ipp://{server}/printers/{queue}");
            let url = http_url(&uri).map_err(CheckError::Usage)?;
            ctx.progress
                .say(format!("asking CUPS at {server} for queue {queue}"));
            let req = get_printer_attributes(&uri).map_err(CheckError::Usage)?;
            let answer = send(&client, &url, req, a.timeout).await;
            (uri.clone(), uri, answer, Role::Scheduler)
        }
        None => {
            let url = format!("http://{server}/");
            let target = format!("default printer of CUPS at {server}");
            ctx.progress
                .say(format!("asking CUPS at {server} for the default printer"));
            let mut req =
                IppRequestResponse::new(IppVersion::v1_1(), Operation::CupsGetDefault, None)
                    .map_err(|e| CheckError::Usage(e.to_string()))?;
            req.attributes_mut().add(
                DelimiterTag::OperationAttributes,
                requested_attributes().map_err(CheckError::Usage)?,
            );
            match send(&client, &url, req, a.timeout).await {
                Ok(resp) if resp.header().status_code() == StatusCode::ClientErrorNotFound => {
                    return Ok(fail(
                        &target,
                        Status::Unknown,
                        format!("CUPS at {server} has no default printer; give a printer URI or queue name (or set one with lpadmin -d)"),
                        "queue-unknown",
                    )
                    .field("server", &server))
                }
                Ok(resp) => {
                    let name = read_state(&resp).name.unwrap_or_else(|| "?".into());
                    let uri = format!("ipp://{server}/printers/{name}");
                    (format!("{uri} (CUPS default)"), uri, Ok(resp), Role::Scheduler)
                }
                Err(Failure::Unreachable(e)) => {
                    return Ok(fail(
                        &target,
                        Status::Unknown,
                        format!("no CUPS scheduler at {server} ({e}); give a printer URI, or --server"),
                        "scheduler-unreachable",
                    )
                    .field("server", &server))
                }
                Err(Failure::Unresolved(e)) => {
                    return Ok(fail(
                        &target,
                        Status::Unknown,
                        format!("no CUPS scheduler at {server}: {e}"),
                        "unresolved",
                    )
                    .field("server", &server))
                }
                Err(f) => (target, String::new(), Err(f), Role::Scheduler),
            }
        }
    };

    let with_context = |mut r: CheckResult| {
        if !queue.is_empty() {
            r = r.field("queue", &queue);
        }
        if role == Role::Scheduler {
            r = r.field("server", &server);
        }
        r
    };
    let resp = match answer {
        Ok(r) => r,
        Err(Failure::Unreachable(e)) => {
            let (what, error) = match role {
                Role::Scheduler => ("the CUPS scheduler", "scheduler-unreachable"),
                Role::Printer => ("printer", "printer-unreachable"),
            };
            return Ok(with_context(fail(
                &target,
                Status::Crit,
                format!("{what} unreachable: {e}"),
                error,
            )));
        }
        Err(Failure::Unresolved(e)) => {
            return Ok(with_context(fail(&target, Status::Crit, e, "unresolved")))
        }
        Err(Failure::NotFound(e)) => {
            return Ok(with_context(fail(
                &target,
                Status::Crit,
                format!("no such printer or queue: {e}"),
                "queue-unknown",
            )))
        }
        Err(Failure::Protocol(e, http)) => {
            let mut r = fail(&target, Status::Unknown, e, "ipp-error");
            if let Some(code) = http {
                r = r.field("http_status", code.to_string());
            }
            return Ok(with_context(r));
        }
    };
    let code = resp.header().status_code();
    if !code.is_success() {
        let (status, error) = if code == StatusCode::ClientErrorNotFound {
            (Status::Crit, "queue-unknown")
        } else {
            (Status::Unknown, "ipp-error")
        };
        let what = match code {
            StatusCode::ClientErrorNotFound => "no such printer or queue".to_string(),
            StatusCode::ClientErrorNotAuthenticated
            | StatusCode::ClientErrorNotAuthorized
            | StatusCode::ClientErrorForbidden => {
                "not allowed to ask (authentication needed)".into()
            }
            other => format!("the printer refused the request ({other})"),
        };
        let mut r = fail(
            &target,
            status,
            format!("{what}: IPP status 0x{:04x}", code as u16),
            error,
        );
        if error == "ipp-error" {
            r = r.field("ipp_status", format!("0x{:04x}", code as u16));
        }
        return Ok(with_context(r));
    }
    let state = read_state(&resp);
    let mut r = report(target, &state, &a);
    // "processing" is what a working printer says, and a stuck one too:
    // the age of the oldest job in processing tells them apart.
    if let (Some(limit), Some(now), Some(jobs)) = (a.stuck_after, state.up_time, state.queued_jobs)
    {
        if jobs > 0 && !queue.is_empty() {
            let url = http_url(&queue).map_err(CheckError::Usage)?;
            if let Some(oldest) = oldest_processing(&client, &queue, &url, now, a.timeout).await {
                r = r.metric("oldest_processing_s", f64::from(oldest));
                if u64::try_from(oldest).unwrap_or(0) >= limit.as_secs() {
                    r.status = r.status.worst(Status::Crit);
                    r.summary.push_str(&format!(
                        "; a job has been printing for {oldest} s (stuck: over {})",
                        super::show_duration(limit)
                    ));
                    r = r.field("error", "job-stuck");
                }
            }
        }
    }
    // An idle queue says nothing of the printer behind it: only a job
    // would find it off. Its device is asked too (a network one).
    if role == Role::Scheduler {
        if let Some(device) = &state.device {
            ctx.progress.say(format!(
                "probing the queue's device {}",
                shown_device(device)
            ));
            r = probe_device(r, device, &client, a.timeout).await;
        }
    }
    Ok(with_context(r))
}

/// Seconds the oldest job in `processing` of the printer `uri` has been
/// processing, by the printer's own clock `now` (Get-Jobs, not-completed).
async fn oldest_processing(
    client: &reqwest::Client,
    uri: &str,
    url: &str,
    now: i32,
    timeout: Duration,
) -> Option<i32> {
    let parsed: ipp::prelude::Uri = uri.parse().ok()?;
    let mut req =
        IppRequestResponse::new(IppVersion::v1_1(), Operation::GetJobs, Some(parsed)).ok()?;
    let which = IppKeyword::try_from("not-completed").ok()?;
    req.attributes_mut().add(
        DelimiterTag::OperationAttributes,
        IppAttribute::with_name("which-jobs", IppValue::Keyword(which)).ok()?,
    );
    let keywords = ["job-id", "job-state", "time-at-processing"]
        .iter()
        .filter_map(|w| IppKeyword::try_from(*w).ok().map(IppValue::Keyword))
        .collect();
    req.attributes_mut().add(
        DelimiterTag::OperationAttributes,
        IppAttribute::with_name("requested-attributes", IppValue::Array(keywords)).ok()?,
    );
    let resp = send(client, url, req, timeout).await.ok()?;
    let int = |attrs: &[IppAttribute], name: &str| {
        attrs
            .iter()
            .find(|a| a.name().to_string() == name)
            .and_then(|a| match a.value() {
                IppValue::Integer(i) | IppValue::Enum(i) => Some(*i),
                _ => None,
            })
    };
    resp.attributes()
        .groups_of(DelimiterTag::JobAttributes)
        .filter_map(|g| {
            let attrs = g.attributes();
            let state = int(attrs, "job-state")?;
            let since = int(attrs, "time-at-processing")?;
            // 5: processing.
            (state == 5 && since > 0).then(|| now.saturating_sub(since).max(0))
        })
        .max()
}

/// A device URI without credentials (`ipp://user:pw@h/` → `ipp://h/`).
fn shown_device(device: &str) -> String {
    match reqwest::Url::parse(device) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => device.to_string(),
    }
}

/// Ask the device behind a CUPS queue whether it is there: an IPP printer
/// (`ipp`, `ipps`, `http`, `https`) with Get-Printer-Attributes, a raw or
/// LPD one (`socket`, `lpd`) with a TCP connection. A device that does
/// not answer makes the result critical with `error =
/// printer-unreachable`; one that answers something other than IPP makes
/// it critical with `error = device-error`. Local devices and other
/// backends (`usb`, `file`, `dnssd`…) are not probed. Fields `device`,
/// `device_probe` (`ok`, `unreachable`, `not-ipp`, `not-probed`).
async fn probe_device(
    mut r: CheckResult,
    device: &str,
    client: &reqwest::Client,
    timeout: Duration,
) -> CheckResult {
    let shown = shown_device(device);
    r = r.field("device", &shown);
    let Ok(url) = reqwest::Url::parse(device) else {
        return r.field("device_probe", "not-probed");
    };
    let host = url.host_str().unwrap_or("").to_string();
    let outcome: Result<(), (&str, String)> = match url.scheme() {
        "ipp" | "ipps" | "http" | "https" => match http_url(device) {
            Err(_) => return r.field("device_probe", "not-probed"),
            Ok(http) => match get_printer_attributes(device) {
                Err(_) => return r.field("device_probe", "not-probed"),
                Ok(req) => match send(client, &http, req, timeout).await {
                    Ok(_) => Ok(()),
                    Err(Failure::Unreachable(e)) | Err(Failure::Unresolved(e)) => {
                        Err(("unreachable", e))
                    }
                    Err(Failure::NotFound(e)) | Err(Failure::Protocol(e, _)) => Err(("not-ipp", e)),
                },
            },
        },
        "socket" | "lpd" if !host.is_empty() => {
            let port = url
                .port()
                .unwrap_or(if url.scheme() == "lpd" { 515 } else { 9100 });
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(("unreachable", format!("{host}:{port}: {e}"))),
                Err(_) => Err((
                    "unreachable",
                    format!(
                        "{host}:{port}: no answer within {}",
                        super::show_duration(timeout)
                    ),
                )),
            }
        }
        _ => return r.field("device_probe", "not-probed"),
    };
    match outcome {
        Ok(()) => r.field("device_probe", "ok"),
        Err((probe, why)) => {
            r.status = r.status.worst(Status::Crit);
            r.summary.push_str(&match probe {
                "unreachable" => format!("; its printer {shown} does not answer: {why}"),
                _ => format!("; its printer {shown} answers, but not as an IPP printer: {why}"),
            });
            let error = if probe == "unreachable" {
                "printer-unreachable"
            } else {
                "device-error"
            };
            r.field("device_probe", probe).field("error", error)
        }
    }
}

/// What is asked: the CUPS scheduler itself, or a printer elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Scheduler,
    Printer,
}

/// Whether the HTTP URL `url` (from [`http_url`]) points at the scheduler
/// `server` (`HOST:PORT`): same port, and the same host, loopback names
/// being one host.
fn same_endpoint(url: &str, server: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Ok((host, port)) = super::split_host_port(server, Some(631)) else {
        return false;
    };
    let norm = |h: &str| {
        let h = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let h = h.trim_end_matches('.').to_string();
        match h.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => "localhost".to_string(),
            _ if h == "localhost" || h.ends_with(".localhost") => "localhost".to_string(),
            _ => h,
        }
    };
    u.port_or_known_default() == Some(port) && u.host_str().map(norm) == Some(norm(&host))
}

fn requested_attributes() -> Result<IppAttribute, String> {
    let keywords = WANTED
        .iter()
        .filter_map(|w| IppKeyword::try_from(*w).ok().map(IppValue::Keyword))
        .collect();
    IppAttribute::with_name("requested-attributes", IppValue::Array(keywords))
        .map_err(|e| format!("cannot encode the request: {e}"))
}

fn get_printer_attributes(uri: &str) -> Result<IppRequestResponse, String> {
    let parsed: ipp::prelude::Uri = uri
        .parse()
        .map_err(|e| format!("`{uri}` is not a printer URI: {e}"))?;
    let mut req = IppRequestResponse::new(
        IppVersion::v1_1(),
        Operation::GetPrinterAttributes,
        Some(parsed),
    )
    .map_err(|e| format!("`{uri}`: {e}"))?;
    req.attributes_mut()
        .add(DelimiterTag::OperationAttributes, requested_attributes()?);
    Ok(req)
}

/// The HTTP URL an IPP URI is posted to (`ipp` → `http`, port 631 by default).
pub fn http_url(uri: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(uri).map_err(|e| format!("`{uri}` is not a URI: {e}"))?;
    let (scheme, default_port) = match url.scheme() {
        "ipp" => ("http", 631),
        "ipps" => ("https", 631),
        "http" => ("http", 80),
        "https" => ("https", 443),
        other => {
            return Err(format!(
                "`{uri}`: scheme {other} is not IPP (use ipp://, ipps://, http:// or https://)"
            ))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{uri}` has no host"))?;
    let port = url.port().unwrap_or(default_port);
    Ok(format!("{scheme}://{host}:{port}{}", url.path()))
}

/// The CUPS scheduler to ask: `--server`, `$CUPS_SERVER`, client.conf, localhost.
pub fn cups_server(flag: Option<&str>) -> String {
    let from_conf = || {
        std::fs::read_to_string("/etc/cups/client.conf")
            .ok()?
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ServerName"))
            .map(|v| v.trim().to_string())
            .next_back()
    };
    let chosen = flag
        .map(str::to_string)
        .or_else(|| std::env::var("CUPS_SERVER").ok())
        .or_else(from_conf)
        // A local socket path cannot be reached over HTTP: use the port.
        .filter(|s| !s.is_empty() && !s.starts_with('/'))
        .unwrap_or_else(|| "localhost".into());
    // CUPS_SERVER may carry "/version=1.1"; and a bare host means port 631.
    let host = chosen.split('/').next().unwrap_or(&chosen).to_string();
    match super::split_host_port(&host, Some(631)) {
        Ok((h, p)) if h.contains(':') => format!("[{h}]:{p}"),
        Ok((h, p)) => format!("{h}:{p}"),
        Err(_) => host,
    }
}

enum Failure {
    /// No connection or no answer: the printer (or CUPS) is not there.
    Unreachable(String),
    /// The host name does not resolve.
    Unresolved(String),
    /// HTTP 404: nothing at that path (no such printer).
    NotFound(String),
    /// An answer that is not IPP (with the HTTP status when that was not 2xx).
    Protocol(String, Option<u16>),
}

/// A failed request as a [`Failure`]: a name that does not resolve is told
/// apart from a host that does not answer.
fn request_failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    let chain = error_chain(e);
    let lower = chain.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        let host = e
            .url()
            .and_then(|u| u.host_str())
            .unwrap_or("the host")
            .to_string();
        let why = chain.rsplit(": ").next().unwrap_or(&chain).trim();
        Failure::Unresolved(format!("cannot resolve {host}: {why}"))
    } else {
        Failure::Unreachable(super::http::explain(e, timeout))
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    req: IppRequestResponse,
    timeout: Duration,
) -> Result<IppRequestResponse, Failure> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/ipp")
        .body(req.to_bytes())
        .send()
        .await
        .map_err(|e| request_failure(&e, timeout))?;
    let status = response.status();
    if status.as_u16() == 404 {
        return Err(Failure::NotFound(format!("{url} answered HTTP {status}")));
    }
    if !status.is_success() {
        let code = Some(status.as_u16());
        return Err(Failure::Protocol(
            match status.as_u16() {
                401 | 403 => format!("{url} wants authentication (HTTP {status})"),
                _ => format!("{url} answered HTTP {status}, not IPP"),
            },
            code,
        ));
    }
    let body = response.bytes().await.map_err(|e| {
        Failure::Unreachable(format!(
            "the answer was cut off: {}",
            super::http::explain(&e, timeout)
        ))
    })?;
    IppParser::new(IppReader::new(std::io::Cursor::new(body)))
        .parse()
        .map_err(|e| {
            Failure::Protocol(
                format!("{url} sent an answer that is not IPP: {}", error_chain(&e)),
                None,
            )
        })
}

/// The printer attributes of an answer.
pub fn read_state(resp: &IppRequestResponse) -> PrinterState {
    let mut attrs: BTreeMap<String, &IppValue> = BTreeMap::new();
    for group in resp.attributes().groups_of(DelimiterTag::PrinterAttributes) {
        for attr in group.attributes() {
            attrs.insert(attr.name().to_string(), attr.value());
        }
    }
    let text = |v: &IppValue| -> Option<String> {
        match v {
            IppValue::TextWithoutLanguage(t) => Some(t.to_string()),
            IppValue::TextWithLanguage { text, .. } => Some(text.to_string()),
            IppValue::NameWithoutLanguage(n) => Some(n.to_string()),
            IppValue::NameWithLanguage { name, .. } => Some(name.to_string()),
            IppValue::Keyword(k) => Some(k.to_string()),
            IppValue::Uri(u) => Some(u.to_string()),
            _ => None,
        }
    };
    let int = |v: &IppValue| match v {
        IppValue::Integer(i) | IppValue::Enum(i) => Some(*i),
        _ => None,
    };
    let list = |v: &IppValue| -> Vec<String> {
        match v {
            IppValue::Array(items) => items.iter().filter_map(text).collect(),
            one => text(one).into_iter().collect(),
        }
    };
    PrinterState {
        name: attrs.get("printer-name").and_then(|v| text(v)),
        state: attrs.get("printer-state").and_then(|v| int(v)),
        reasons: attrs
            .get("printer-state-reasons")
            .map(|v| list(v))
            .unwrap_or_default(),
        message: attrs
            .get("printer-state-message")
            .and_then(|v| text(v))
            .filter(|m| !m.trim().is_empty()),
        queued_jobs: attrs.get("queued-job-count").and_then(|v| int(v)),
        accepting: attrs
            .get("printer-is-accepting-jobs")
            .and_then(|v| match v {
                IppValue::Boolean(b) => Some(*b),
                _ => None,
            }),
        model: attrs.get("printer-make-and-model").and_then(|v| text(v)),
        device: attrs.get("device-uri").and_then(|v| text(v)),
        up_time: attrs.get("printer-up-time").and_then(|v| int(v)),
    }
}

/// Severity of one printer-state-reason keyword.
pub fn reason_severity(reason: &str) -> Status {
    const INFORMATIONAL: &[&str] = &[
        "none",
        "moving-to-paused",
        "connecting-to-device",
        "spool-area-full-report",
        "identify-printer-requested",
        "printer-restarted",
        "printer-nms-reset",
        "cups-waiting-for-job-completed",
        "hold-new-jobs",
    ];
    const LOW: &[&str] = &[
        "toner-low",
        "marker-supply-low",
        "media-low",
        "developer-low",
        "marker-waste-almost-full",
        "opc-near-eol",
        "fuser-under-temp",
    ];
    let r = reason.trim();
    if r.ends_with("-report") || INFORMATIONAL.contains(&r) || r.starts_with("cups-ipp-") {
        Status::Ok
    } else if r.ends_with("-warning") || LOW.contains(&r) {
        Status::Warn
    } else {
        // "-error" or no suffix: RFC 8011 says assume an error.
        Status::Crit
    }
}

fn state_name(state: Option<i32>) -> &'static str {
    match state {
        Some(3) => "idle",
        Some(4) => "processing",
        Some(5) => "stopped",
        Some(_) => "in an unknown state",
        None => "state not reported",
    }
}

fn report(target: String, s: &PrinterState, a: &PrinterArgs) -> CheckResult {
    let mut status = match s.state {
        Some(3) | Some(4) => Status::Ok,
        Some(5) => Status::Crit,
        _ => Status::Unknown,
    };
    let reasons: Vec<&String> = s.reasons.iter().filter(|r| r.as_str() != "none").collect();
    for r in &reasons {
        status = status.worst(reason_severity(r));
    }
    if s.accepting == Some(false) {
        status = status.worst(Status::Crit);
    }
    if let Some(jobs) = s.queued_jobs {
        let jobs = jobs.max(0) as u32;
        if a.crit_jobs.is_some_and(|c| jobs >= c) {
            status = status.worst(Status::Crit);
        } else if a.warn_jobs.is_some_and(|w| jobs >= w) {
            status = status.worst(Status::Warn);
        }
    }
    let mut summary = format!(
        "{} is {}",
        s.name.as_deref().unwrap_or("the printer"),
        state_name(s.state)
    );
    if !reasons.is_empty() {
        summary.push_str(&format!(
            " ({})",
            reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(m) = &s.message {
        summary.push_str(&format!(": \"{m}\""));
    }
    if s.accepting == Some(false) {
        summary.push_str(", not accepting jobs");
    }
    match s.queued_jobs {
        Some(1) => summary.push_str(", 1 job queued"),
        Some(n) => summary.push_str(&format!(", {n} jobs queued")),
        None => {}
    }
    let mut r = CheckResult::new("printer", target, status, summary);
    if let Some(st) = s.state {
        r = r.metric("state", f64::from(st));
    }
    if let Some(n) = s.queued_jobs {
        r = r.metric("queued_jobs", f64::from(n));
    }
    if let Some(acc) = s.accepting {
        r = r.metric("accepting_jobs", if acc { 1.0 } else { 0.0 });
    }
    let state = match s.state {
        Some(3) => "idle",
        Some(4) => "processing",
        Some(5) => "stopped",
        _ => "unknown",
    };
    r = r.field("state", state).field(
        "reasons",
        if reasons.is_empty() {
            "none".to_string()
        } else {
            reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    if let Some(m) = &s.message {
        r = r.field("message", m);
    }
    if let Some(n) = &s.name {
        r = r.field("name", n);
    }
    r.metric("reasons", reasons.len() as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args() -> PrinterArgs {
        PrinterArgs {
            uri: None,
            server: None,
            warn_jobs: Some(5),
            crit_jobs: Some(10),
            ca: None,
            timeout: Duration::from_secs(1),
            stuck_after: None,
        }
    }

    #[test]
    fn reasons_have_severities() {
        assert_eq!(reason_severity("none"), Status::Ok);
        assert_eq!(reason_severity("media-empty-error"), Status::Crit);
        assert_eq!(reason_severity("media-empty"), Status::Crit);
        assert_eq!(reason_severity("paused"), Status::Crit);
        assert_eq!(reason_severity("offline-report"), Status::Ok);
        assert_eq!(reason_severity("toner-low"), Status::Warn);
        assert_eq!(reason_severity("toner-low-warning"), Status::Warn);
        assert_eq!(reason_severity("door-open-warning"), Status::Warn);
    }

    #[test]
    fn grading() {
        let idle = PrinterState {
            name: Some("q1".into()),
            state: Some(3),
            reasons: vec!["none".into()],
            queued_jobs: Some(0),
            accepting: Some(true),
            ..Default::default()
        };
        let r = report("t".into(), &idle, &args());
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.summary, "q1 is idle, 0 jobs queued");

        let stopped = PrinterState {
            state: Some(5),
            reasons: vec!["paused".into()],
            message: Some("out of paper".into()),
            ..idle.clone()
        };
        let r = report("t".into(), &stopped, &args());
        assert_eq!(r.status, Status::Crit);
        assert_eq!(
            r.summary,
            "q1 is stopped (paused): \"out of paper\", 0 jobs queued"
        );

        let busy = PrinterState {
            state: Some(4),
            queued_jobs: Some(6),
            reasons: vec!["toner-low-report".into()],
            ..idle.clone()
        };
        assert_eq!(report("t".into(), &busy, &args()).status, Status::Warn);

        let rejecting = PrinterState {
            accepting: Some(false),
            ..idle
        };
        assert_eq!(report("t".into(), &rejecting, &args()).status, Status::Crit);
    }

    #[test]
    fn uris_and_servers() {
        assert_eq!(
            http_url("ipp://127.0.0.1/printers/q1").unwrap(),
            "http://127.0.0.1:631/printers/q1"
        );
        assert_eq!(
            http_url("ipps://printer.example:8631/ipp/print").unwrap(),
            "https://printer.example:8631/ipp/print"
        );
        assert!(http_url("lpd://host/queue").is_err());
        assert_eq!(cups_server(Some("127.0.0.1:8631")), "127.0.0.1:8631");
        assert_eq!(cups_server(Some("printhost")), "printhost:631");
        assert_eq!(cups_server(Some("::1")), "[::1]:631");
    }

    #[test]
    fn scheduler_or_printer() {
        let url = |u| http_url(u).unwrap();
        assert!(same_endpoint(
            &url("ipp://127.0.0.1:8631/printers/q"),
            "127.0.0.1:8631"
        ));
        assert!(same_endpoint(
            &url("ipp://localhost/printers/q"),
            "localhost:631"
        ));
        assert!(same_endpoint(
            &url("ipp://127.0.0.1/printers/q"),
            "localhost:631"
        ));
        assert!(same_endpoint(
            &url("ipp://[::1]:631/printers/q"),
            "localhost:631"
        ));
        assert!(same_endpoint(
            &url("ipp://PrintHost./printers/q"),
            "printhost:631"
        ));
        assert!(!same_endpoint(
            &url("ipp://127.0.0.1:8631/printers/q"),
            "127.0.0.1:631"
        ));
        assert!(!same_endpoint(
            &url("ipp://printer.example/ipp/print"),
            "localhost:631"
        ));
    }

    #[test]
    fn answer_fields() {
        let stopped = PrinterState {
            name: Some("q1".into()),
            state: Some(5),
            reasons: vec!["paused".into(), "media-empty-error".into()],
            message: Some("out of paper".into()),
            queued_jobs: Some(0),
            accepting: Some(true),
            ..Default::default()
        };
        let r = report("t".into(), &stopped, &args());
        assert_eq!(r.fields["state"], "stopped");
        assert_eq!(r.fields["reasons"], "paused,media-empty-error");
        assert_eq!(r.fields["message"], "out of paper");
        assert_eq!(r.fields["name"], "q1");
        assert!(!r.fields.contains_key("error"));
        let idle = PrinterState {
            state: Some(3),
            reasons: vec!["none".into()],
            message: None,
            ..stopped
        };
        let r = report("t".into(), &idle, &args());
        assert_eq!(r.fields["state"], "idle");
        assert_eq!(r.fields["reasons"], "none");
        assert!(!r.fields.contains_key("message"));
    }

    /// A one-shot HTTP server on loopback answering one IPP request with
    /// `status` (no printer sends such answers on demand).
    async fn answering(status: StatusCode) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            let body = IppRequestResponse::new_response(IppVersion::v1_1(), status, 1)
                .unwrap()
                .to_bytes();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&body).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn other_ipp_statuses_are_ipp_errors() {
        let addr = answering(StatusCode::ClientErrorBadRequest).await;
        let uri = format!("ipp://{addr}/ipp/print");
        let r = run(
            &[uri.clone(), "--server".into(), "127.0.0.1:9".into()],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, Status::Unknown, "{r:?}");
        assert_eq!(r.fields["error"], "ipp-error", "{r:?}");
        assert_eq!(r.fields["ipp_status"], "0x0400", "{r:?}");
        assert_eq!(r.fields["queue"], uri);

        let addr = answering(StatusCode::ClientErrorNotFound).await;
        let r = run(
            &[format!("ipp://{addr}/ipp/print")],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(r.fields["error"], "queue-unknown", "{r:?}");
        assert!(!r.fields.contains_key("ipp_status"), "{r:?}");
    }

    #[tokio::test]
    async fn a_queue_name_is_a_name() {
        let bad = ["a/b".to_string()];
        assert!(matches!(
            run(&bad, &CheckContext::default()).await,
            Err(CheckError::Usage(_))
        ));
    }

    #[test]
    fn request_is_ipp() {
        let req = get_printer_attributes("ipp://127.0.0.1:631/printers/q1").unwrap();
        let bytes = req.to_bytes();
        // version 1.1, operation 0x000B
        assert_eq!(&bytes[..4], &[1, 1, 0, 0x0b]);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("printer-state-reasons"));
        assert!(text.contains("ipp://127.0.0.1:631/printers/q1"));
    }
}
