//! `tcp HOST:PORT [--send TEXT] [--expect TEXT] [--warn MS] [--crit MS] [--timeout DURATION]`
//!
//! A TCP connection (every address of HOST in turn, as a client would), the
//! time to connect, and optionally a line sent and a banner expected (`tcp
//! mail:25 --expect 220`), as `check_tcp` does. Refused, timed out and
//! unreachable are told apart; each is `crit`, with field `error`:
//! `refused` (the host answered: it is reachable, nothing listens there),
//! `firewall` (this machine refused to send: its own packet filter),
//! `no-route`, `timeout` or `failed`.

use super::{
    ms, parse_args, parse_duration, show_duration, split_host_port, CheckContext, CheckError,
};
use firstline_proto::{CheckResult, Status};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Parser, Debug)]
#[command(
    name = "tcp",
    about = "Connect to HOST:PORT: time to connect, optional banner check"
)]
pub struct TcpArgs {
    /// HOST:PORT or [IPv6]:PORT.
    pub target: String,
    /// Text to send once connected (\r and \n escapes allowed).
    #[arg(long)]
    pub send: Option<String>,
    /// Text the server must answer with (somewhere in its first 4 KiB).
    #[arg(long)]
    pub expect: Option<String>,
    /// Warn when connecting takes this long (a bare number is milliseconds).
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub warn: Option<Duration>,
    /// Critical when connecting takes this long.
    #[arg(short = 'c', long, value_parser = parse_duration)]
    pub crit: Option<Duration>,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// What kind of failure a connection error is (field `error`): `refused`
/// (the host answered with a reset: it is reachable, nothing listens),
/// `firewall` (this machine refused to send: EPERM from its own packet
/// filter), `no-route` (no route, or an ICMP unreachable came back),
/// `failed` (anything else).
fn failure_kind(e: &std::io::Error) -> &'static str {
    match (e.kind(), e.raw_os_error()) {
        (std::io::ErrorKind::ConnectionRefused, _) | (_, Some(111)) => "refused",
        (_, Some(1)) => "firewall",
        (std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable, _)
        | (_, Some(101) | Some(113)) => "no-route",
        _ => "failed",
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: TcpArgs = parse_args("tcp", args)?;
    if let (Some(w), Some(c)) = (a.warn, a.crit) {
        if w > c {
            return Err(CheckError::Usage("--warn must not be above --crit".into()));
        }
    }
    let (host, port) = split_host_port(&a.target, None).map_err(CheckError::Usage)?;
    let target = a.target.clone();
    let deadline = Instant::now() + a.timeout;

    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(a.timeout, tokio::net::lookup_host((host.as_str(), port))).await
        {
            Ok(Ok(list)) => list.collect(),
            Ok(Err(e)) => {
                return Ok(CheckResult::new(
                    "tcp",
                    target,
                    Status::Unknown,
                    format!("cannot resolve {host}: {e}"),
                ))
            }
            Err(_) => {
                return Ok(CheckResult::new(
                    "tcp",
                    target,
                    Status::Unknown,
                    format!("cannot resolve {host}: the lookup timed out"),
                ))
            }
        };

    let mut failures: Vec<String> = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    let mut connected = None;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        ctx.progress.say(format!("connecting to {addr}"));
        let started = Instant::now();
        match tokio::time::timeout(left, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                connected = Some((stream, *addr, started.elapsed()));
                break;
            }
            Ok(Err(e)) => {
                kinds.push(failure_kind(&e));
                failures.push(format!("{addr}: {}", io_reason(&e)))
            }
            Err(_) => {
                kinds.push("timeout");
                failures.push(format!("{addr}: no answer within {}", show_duration(left)))
            }
        }
    }
    let Some((mut stream, addr, took)) = connected else {
        let summary = if failures.is_empty() {
            format!("{host} has no address")
        } else {
            failures.join("; ")
        };
        // The most telling failure: this machine's own refusal, then an
        // answer (refused: the host is there), then the rest.
        let error = ["firewall", "refused", "no-route", "timeout", "failed"]
            .into_iter()
            .find(|k| kinds.contains(k))
            .unwrap_or("no-address");
        return Ok(CheckResult::new("tcp", target, Status::Crit, summary).field("error", error));
    };

    let mut status = match (a.warn, a.crit) {
        (_, Some(c)) if took >= c => Status::Crit,
        (Some(w), _) if took >= w => Status::Warn,
        _ => Status::Ok,
    };
    let mut summary = format!("connected to {addr} in {} ms", ms(took));
    if let Some(text) = &a.send {
        let data = unescape(text);
        if let Err(e) = stream.write_all(data.as_bytes()).await {
            status = Status::Crit;
            summary.push_str(&format!(", but sending failed: {}", io_reason(&e)));
        }
    }
    if let (Some(expect), Status::Ok | Status::Warn) = (&a.expect, status) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (found, got) = read_until(&mut stream, &unescape(expect), left).await;
        if found {
            summary.push_str(&format!(", answered \"{}\"", first_line(&got)));
        } else {
            status = Status::Crit;
            summary.push_str(&format!(
                ", but the answer {} does not contain \"{expect}\"",
                if got.is_empty() {
                    "was empty".to_string()
                } else {
                    format!("\"{}\"", first_line(&got))
                }
            ));
        }
    }
    if !failures.is_empty() {
        summary.push_str(&format!(" (after {})", failures.join("; ")));
    }
    Ok(CheckResult::new("tcp", target, status, summary).metric("connect_ms", ms(took)))
}

/// Read until `expect` shows up, 4 KiB are read, the peer closes, or time is up.
async fn read_until(stream: &mut TcpStream, expect: &str, left: Duration) -> (bool, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + left;
    while buf.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&buf).contains(expect) {
                    return (true, String::from_utf8_lossy(&buf).into_owned());
                }
            }
            _ => break,
        }
    }
    (false, String::from_utf8_lossy(&buf).into_owned())
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(120).collect()
}

fn unescape(text: &str) -> String {
    text.replace("\\r", "\r").replace("\\n", "\n")
}

/// A connect error in a technician's words.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused (nothing listening)".into(),
        TimedOut => "timed out".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn open_port_with_banner() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"220 hello there\r\n").await;
            }
        });
        let ctx = CheckContext::default();
        let target = format!("127.0.0.1:{port}");
        let r = run(&args(&[&target, "--expect", "220"]), &ctx)
            .await
            .unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.summary.contains("220 hello there"), "{}", r.summary);
        assert!(r.metrics.contains_key("connect_ms"));

        let r = run(&args(&[&target, "--expect", "SSH-"]), &ctx)
            .await
            .unwrap();
        assert_eq!(r.status, Status::Crit, "{r:?}");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = run(
            &args(&[&format!("127.0.0.1:{port}")]),
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, Status::Crit);
        assert!(r.summary.contains("refused"), "{}", r.summary);
    }

    #[tokio::test]
    async fn missing_port_is_usage() {
        assert!(matches!(
            run(&args(&["localhost"]), &CheckContext::default()).await,
            Err(CheckError::Usage(_))
        ));
    }
}
