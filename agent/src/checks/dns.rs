//! `dns NAME [--server IP[:PORT]] [--type A|AAAA|MX|TXT|CNAME|PTR|NS|SOA|SRV]
//! [--expect VALUE]… [--warn MS] [--crit MS] [--timeout DURATION]`
//!
//! One query with hickory-resolver, asked of one server at a time so the
//! result can say *which* server answered and how the others failed. With no
//! `--server` it resolves as the system does: `/etc/hosts` first (for A and
//! AAAA), `localhost` locally (RFC 6761), then the `nameserver`s of
//! `/etc/resolv.conf` in order, with its `search`/`domain` and `ndots`.
//!
//! NXDOMAIN, "no such record", SERVFAIL, REFUSED, a timeout, nothing
//! listening, and a wrong answer versus `--expect` are told apart; each is
//! `crit`. A server that failed before another answered makes the result
//! `warn`. `--warn`/`--crit` grade the query time.
//!
//! Fields, for runbooks to branch on:
//! - `error` (absent on success), one of: `nxdomain` (no such name),
//!   `no-answer` (the name exists, no record of the type), `servfail`,
//!   `refused`, `timeout` (no answer from any server asked), `unreachable`
//!   (nothing listening: ICMP port unreachable, TCP refused, no route),
//!   `no-servers` (no resolver configured), `mismatch` (`--expect` not among
//!   the answers), `rcode` (another response code, named in field `rcode`),
//!   `other` (anything else; the summary says what).
//! - `server`: the server that answered, or the last one asked (`IP` for
//!   port 53, else `IP:PORT` / `[IPv6]:PORT`; `/etc/hosts`; `localhost`).
//! - `answer`: the answers, comma-separated, when there were any.
//! - `failed`: the servers that failed before `server`, `SERVER ERROR`
//!   comma-separated (the status is then at least `warn`).

use super::{
    ms, parse_args, parse_duration, show_duration, split_host_port, CheckContext, CheckError,
};
use firstline_proto::{CheckResult, Status};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Hosts, Resolver};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

#[derive(clap::Parser, Debug)]
#[command(
    name = "dns",
    about = "Resolve a name: answer, query time and which server answered"
)]
pub struct DnsArgs {
    /// The name to look up (an IP address with --type PTR).
    pub name: String,
    /// Ask this server (IP, IP:PORT or [IPv6]:PORT) instead of the system's.
    #[arg(short = 's', long)]
    pub server: Option<String>,
    /// Record type: A, AAAA, MX, TXT, CNAME, PTR, NS, SOA, SRV.
    #[arg(short = 't', long = "type", default_value = "A", value_parser = parse_type)]
    pub rtype: RecordType,
    /// An answer that must be present (repeat for several).
    #[arg(short = 'e', long)]
    pub expect: Vec<String>,
    /// Warn when the query takes this long (a bare number is milliseconds).
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub warn: Option<Duration>,
    /// Critical when the query takes this long.
    #[arg(short = 'c', long, value_parser = parse_duration)]
    pub crit: Option<Duration>,
    /// Give up after this long (over all servers tried).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Query over TCP instead of UDP.
    #[arg(long)]
    pub tcp: bool,
}

fn parse_type(text: &str) -> Result<RecordType, String> {
    let t = RecordType::from_str(&text.to_ascii_uppercase())
        .map_err(|_| format!("`{text}` is not a DNS record type"))?;
    match t {
        RecordType::A
        | RecordType::AAAA
        | RecordType::MX
        | RecordType::TXT
        | RecordType::CNAME
        | RecordType::PTR
        | RecordType::NS
        | RecordType::SOA
        | RecordType::SRV
        | RecordType::CAA => Ok(t),
        _ => Err(format!(
            "record type {t} is not offered (A, AAAA, MX, TXT, CNAME, PTR, NS, SOA, SRV, CAA)"
        )),
    }
}

/// How asking one server went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Records of the asked type (as text), and the CNAMEs followed.
    Answer {
        values: Vec<String>,
        cnames: Vec<String>,
    },
    NxDomain,
    /// The name exists but has no record of this type.
    NoData,
    ServFail,
    Refused,
    OtherCode(String),
    Timeout,
    /// Nothing listening (ICMP port unreachable or TCP refused).
    Unreachable(String),
    Error(String),
}

impl Outcome {
    /// Whether this is the answer of the DNS (as opposed to a broken server):
    /// resolution stops at the first one.
    fn is_definitive(&self) -> bool {
        matches!(
            self,
            Outcome::Answer { .. } | Outcome::NxDomain | Outcome::NoData
        )
    }

    /// The stable `error` field of a failed outcome (`None` for an answer,
    /// which may still be a `mismatch`).
    pub fn error_id(&self) -> Option<&'static str> {
        match self {
            Outcome::Answer { .. } => None,
            Outcome::NxDomain => Some("nxdomain"),
            Outcome::NoData => Some("no-answer"),
            Outcome::ServFail => Some("servfail"),
            Outcome::Refused => Some("refused"),
            Outcome::OtherCode(_) => Some("rcode"),
            Outcome::Timeout => Some("timeout"),
            Outcome::Unreachable(_) => Some("unreachable"),
            Outcome::Error(_) => Some("other"),
        }
    }

    fn describe(&self, rtype: RecordType) -> String {
        match self {
            Outcome::Answer { values, .. } => values.join(", "),
            Outcome::NxDomain => "NXDOMAIN (no such name)".into(),
            Outcome::NoData => format!("the name exists but has no {rtype} record"),
            Outcome::ServFail => "SERVFAIL (the server failed to resolve it)".into(),
            Outcome::Refused => "REFUSED (the server will not answer this query)".into(),
            Outcome::OtherCode(c) => format!("error response {c}"),
            Outcome::Timeout => "no answer (timeout)".into(),
            Outcome::Unreachable(e) => format!("unreachable: {e}"),
            Outcome::Error(e) => e.clone(),
        }
    }
}

/// Where a lookup was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Server(SocketAddr),
    HostsFile,
    Localhost,
}

impl Source {
    /// The `server` field: `IP` (port 53), `IP:PORT`, `[IPv6]:PORT`,
    /// `/etc/hosts` or `localhost`.
    pub fn field(&self) -> String {
        match self {
            Source::Localhost => "localhost".into(),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Server(sa) if sa.port() == 53 => write!(f, "{}", sa.ip()),
            Source::Server(sa) => write!(f, "{sa}"),
            Source::HostsFile => f.write_str("/etc/hosts"),
            Source::Localhost => f.write_str("localhost (RFC 6761)"),
        }
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: DnsArgs = parse_args("dns", args)?;
    if let (Some(w), Some(c)) = (a.warn, a.crit) {
        if w > c {
            return Err(CheckError::Usage("--warn must not be above --crit".into()));
        }
    }
    let name = match query_name(&a.name, a.rtype) {
        Ok(n) => n,
        Err(e) => return Err(CheckError::Usage(e)),
    };
    let target = format!("{} {}", a.name, a.rtype);
    let deadline = Instant::now() + a.timeout;

    // Which servers, in which order; the system's config when none is given.
    let (servers, base) = match &a.server {
        Some(spec) => {
            let (host, port) = split_host_port(spec, Some(53)).map_err(CheckError::Usage)?;
            let ip: IpAddr = host.parse().map_err(|_| {
                CheckError::Usage(format!("--server wants an IP address, not `{host}`"))
            })?;
            (
                vec![SocketAddr::new(ip, port)],
                (None, Vec::new(), ResolverOpts::default()),
            )
        }
        None => {
            if let Some((source, values)) = local_answer(&name, a.rtype) {
                ctx.progress.say(format!("{} answered by {source}", a.name));
                let outcome = Outcome::Answer {
                    values,
                    cnames: Vec::new(),
                };
                return Ok(report(&a, target, &[(source, outcome, Duration::ZERO)]));
            }
            match hickory_resolver::system_conf::read_system_conf() {
                Ok((config, opts)) => {
                    let mut servers: Vec<SocketAddr> = Vec::new();
                    for ns in config.name_servers() {
                        let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
                        let sa = SocketAddr::new(ns.ip, port);
                        if !servers.contains(&sa) {
                            servers.push(sa);
                        }
                    }
                    let (domain, search, _) = config.into_parts();
                    (servers, (domain, search, opts))
                }
                Err(e) if no_servers_configured(&e) => {
                    return Ok(no_servers(target, &format!("{e}")));
                }
                Err(e) => {
                    return Ok(CheckResult::new(
                        "dns",
                        target,
                        Status::Unknown,
                        format!(
                            "cannot read the system resolver configuration (/etc/resolv.conf): {e}"
                        ),
                    ))
                }
            }
        }
    };
    if servers.is_empty() {
        return Ok(no_servers(target, "it names none"));
    }

    let mut tried: Vec<(Source, Outcome, Duration)> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(50) {
            break;
        }
        // Share what is left among the servers not yet asked, as a stub
        // resolver does, so one dead server cannot eat the whole budget.
        let share = left / (servers.len() - i) as u32;
        ctx.progress.say(format!(
            "asking {} for {} {}",
            Source::Server(*server),
            name,
            a.rtype
        ));
        let started = Instant::now();
        let outcome = ask(*server, &name, a.rtype, share, a.tcp, &base).await;
        let took = started.elapsed();
        ctx.progress.say(format!(
            "{}: {} ({})",
            Source::Server(*server),
            outcome.describe(a.rtype),
            show_duration(took)
        ));
        let done = outcome.is_definitive();
        tried.push((Source::Server(*server), outcome, took));
        if done {
            break;
        }
    }
    Ok(report(&a, target, &tried))
}

/// Whether reading /etc/resolv.conf failed because it names no server (or
/// is missing), as opposed to being unreadable.
fn no_servers_configured(e: &NetError) -> bool {
    if let NetError::Io(io) = e {
        if io.kind() == std::io::ErrorKind::NotFound {
            return true;
        }
    }
    super::error_chain(e).contains("no nameservers found")
}

/// No resolver configured: names cannot resolve on this machine.
fn no_servers(target: String, why: &str) -> CheckResult {
    CheckResult::new(
        "dns",
        target,
        Status::Crit,
        format!("no DNS server configured: /etc/resolv.conf ({why}) names no nameserver"),
    )
    .field("error", "no-servers")
}

/// The name to ask: an IP address becomes its reverse name for PTR.
fn query_name(text: &str, rtype: RecordType) -> Result<Name, String> {
    if rtype == RecordType::PTR {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Name::from(ip));
        }
    }
    Name::from_str(text).map_err(|e| format!("`{text}` is not a valid DNS name: {e}"))
}

/// `/etc/hosts`, then RFC 6761 `localhost`, for A and AAAA.
fn local_answer(name: &Name, rtype: RecordType) -> Option<(Source, Vec<String>)> {
    if !matches!(rtype, RecordType::A | RecordType::AAAA) {
        return None;
    }
    let mut fqdn = name.clone();
    fqdn.set_fqdn(true);
    if let Ok(hosts) = Hosts::from_system() {
        if let Some(lookup) = hosts.lookup_static_host(&Query::query(fqdn.clone(), rtype)) {
            let values = values_of(lookup.answers(), rtype);
            if !values.is_empty() {
                return Some((Source::HostsFile, values));
            }
        }
    }
    if name.is_localhost() {
        let ip = match rtype {
            RecordType::A => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return Some((Source::Localhost, vec![ip.to_string()]));
    }
    None
}

fn values_of(records: &[hickory_resolver::proto::rr::Record], rtype: RecordType) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| rdata_text(&r.data))
        .collect()
}

fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

/// Ask one server, once, within `timeout`.
async fn ask(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
    tcp: bool,
    base: &(Option<Name>, Vec<Name>, ResolverOpts),
) -> Outcome {
    let mut conn = if tcp {
        ConnectionConfig::tcp()
    } else {
        ConnectionConfig::udp()
    };
    conn.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![conn]);
    let config = ResolverConfig::from_parts(base.0.clone(), base.1.clone(), vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    *opts = base.2.clone();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.try_tcp_on_error = false;
    opts.preserve_intermediates = true;
    let resolver = match builder.build() {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("cannot set up the resolver: {e}")),
    };
    // hickory bounds each attempt by its own timeout; this is the backstop.
    let lookup = tokio::time::timeout(
        timeout + Duration::from_millis(200),
        resolver.lookup(name.clone(), rtype),
    );
    // hickory asks over an unconnected UDP socket, which never hears that
    // nothing listens (ICMP port unreachable): that would look like a
    // timeout. A connected socket beside it hears it at once.
    let probe = async {
        if tcp {
            std::future::pending().await
        } else {
            udp_unreachable(server).await
        }
    };
    let lookup = tokio::select! {
        biased;
        why = probe => return Outcome::Unreachable(why),
        lookup = lookup => lookup,
    };
    match lookup {
        Err(_) => Outcome::Timeout,
        Ok(Ok(lookup)) => {
            let values = values_of(lookup.answers(), rtype);
            let cnames = lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == RecordType::CNAME && rtype != RecordType::CNAME)
                .map(|r| rdata_text(&r.data))
                .collect();
            if values.is_empty() {
                Outcome::NoData
            } else {
                Outcome::Answer { values, cnames }
            }
        }
        // hickory keeps "no connections" rather than why: ask the system.
        Ok(Err(NetError::NoConnections)) => why_no_connection(server, tcp, timeout).await,
        Ok(Err(e)) => classify(&e),
    }
}

/// Whether an I/O error says there is no way to the address.
fn no_route(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
    ) || matches!(e.raw_os_error(), Some(101) | Some(113))
}

/// Resolves, with the reason, only when `server` is found unreachable over
/// UDP: no route to it, or nothing listening (an empty datagram on a
/// connected socket — which no DNS server answers — draws ICMP port
/// unreachable from a closed port). Otherwise it never resolves.
async fn udp_unreachable(server: SocketAddr) -> String {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = tokio::net::UdpSocket::bind(local).await else {
        return std::future::pending().await;
    };
    let why = |e: std::io::Error| {
        if no_route(&e) {
            Some(format!("no route to {}: {e}", Source::Server(server)))
        } else if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Some("nothing listening (port unreachable)".to_string())
        } else {
            None
        }
    };
    if let Err(e) = sock.connect(server).await {
        return match why(e) {
            Some(w) => w,
            None => std::future::pending().await,
        };
    }
    if let Err(e) = sock.send(&[]).await {
        return match why(e) {
            Some(w) => w,
            None => std::future::pending().await,
        };
    }
    let mut buf = [0u8; 512];
    loop {
        match sock.recv(&mut buf).await {
            Ok(_) => continue,
            Err(e) => {
                return match why(e) {
                    Some(w) => w,
                    None => std::future::pending().await,
                }
            }
        }
    }
}

/// Why hickory found no connection to `server`: asked of the system.
async fn why_no_connection(server: SocketAddr, tcp: bool, timeout: Duration) -> Outcome {
    let wait = timeout.min(Duration::from_secs(1));
    if tcp {
        match tokio::time::timeout(wait, tokio::net::TcpStream::connect(server)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Outcome::Unreachable("connection refused (nothing listening)".into())
            }
            Ok(Err(e)) if no_route(&e) => Outcome::Unreachable(format!("no route: {e}")),
            Ok(Err(e)) => Outcome::Error(format!("cannot connect: {e}")),
            Ok(Ok(_)) => Outcome::Error("no connection to the server (it accepts one now)".into()),
            Err(_) => Outcome::Timeout,
        }
    } else {
        match tokio::time::timeout(wait, udp_unreachable(server)).await {
            Ok(why) => Outcome::Unreachable(why),
            Err(_) => Outcome::Error("no connection to the server".into()),
        }
    }
}

fn classify(e: &NetError) -> Outcome {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::NoError => Outcome::NoData,
            ResponseCode::ServFail => Outcome::ServFail,
            ResponseCode::Refused => Outcome::Refused,
            other => Outcome::OtherCode(other.to_string()),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => match *code {
            ResponseCode::ServFail => Outcome::ServFail,
            ResponseCode::Refused => Outcome::Refused,
            ResponseCode::NXDomain => Outcome::NxDomain,
            other => Outcome::OtherCode(other.to_string()),
        },
        NetError::Timeout => Outcome::Timeout,
        NetError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                Outcome::Unreachable("connection refused (nothing listening)".into())
            }
            std::io::ErrorKind::TimedOut => Outcome::Timeout,
            _ => Outcome::Unreachable(io.to_string()),
        },
        other => {
            let text = super::error_chain(other);
            let lower = text.to_ascii_lowercase();
            if lower.contains("timed out") || lower.contains("timeout") {
                Outcome::Timeout
            } else if lower.contains("refused") {
                Outcome::Unreachable("connection refused (nothing listening)".into())
            } else {
                Outcome::Error(text)
            }
        }
    }
}

/// Whether `value` matches an answer: case and a final dot do not matter,
/// and an MX/SRV answer matches its host name alone.
fn matches_expected(answer: &str, expected: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('.').to_ascii_lowercase();
    let (a, e) = (norm(answer), norm(expected));
    if a == e {
        return true;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<IpAddr>(), e.parse::<IpAddr>()) {
        return x == y;
    }
    // "10 mail.example.org." matches "mail.example.org"
    a.rsplit(' ').next().map(|last| last == e).unwrap_or(false)
}

fn report(a: &DnsArgs, target: String, tried: &[(Source, Outcome, Duration)]) -> CheckResult {
    let Some((source, outcome, took)) = tried.last() else {
        return CheckResult::new(
            "dns",
            target,
            Status::Crit,
            format!(
                "no server could be asked within {}",
                show_duration(a.timeout)
            ),
        )
        .field("error", "timeout");
    };
    let earlier: Vec<String> = tried[..tried.len() - 1]
        .iter()
        .map(|(s, o, _)| format!("{s}: {}", o.describe(a.rtype)))
        .collect();
    let earlier_note = if earlier.is_empty() {
        String::new()
    } else {
        format!(" (before that {})", earlier.join("; "))
    };
    let time = ms(*took);
    let mut error = outcome.error_id();
    let (status, summary) = match outcome {
        Outcome::Answer { values, cnames } => {
            let missing: Vec<&String> = a
                .expect
                .iter()
                .filter(|e| !values.iter().any(|v| matches_expected(v, e)))
                .collect();
            let via = if cnames.is_empty() {
                String::new()
            } else {
                format!(" via CNAME {}", cnames.join(" → "))
            };
            if !missing.is_empty() {
                error = Some("mismatch");
                (
                    Status::Crit,
                    format!(
                        "wrong answer from {source}: {} {} is {}{via}, expected {}",
                        a.name,
                        a.rtype,
                        values.join(", "),
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            } else {
                let graded = match (a.warn, a.crit) {
                    (_, Some(c)) if *took >= c => Status::Crit,
                    (Some(w), _) if *took >= w => Status::Warn,
                    _ => Status::Ok,
                };
                let status = if earlier.is_empty() {
                    graded
                } else {
                    graded.worst(Status::Warn)
                };
                (
                    status,
                    format!(
                        "{} {} {}{via} — answered by {source} in {time} ms{earlier_note}",
                        a.name,
                        a.rtype,
                        values.join(", ")
                    ),
                )
            }
        }
        failure => (
            Status::Crit,
            format!(
                "{} {}: {} — from {source}{}{earlier_note}",
                a.name,
                a.rtype,
                failure.describe(a.rtype),
                if matches!(failure, Outcome::Timeout) {
                    format!(" after {}", show_duration(*took))
                } else {
                    format!(" in {time} ms")
                }
            ),
        ),
    };
    let mut r = CheckResult::new("dns", target, status, summary)
        .metric("time_ms", time)
        .metric("servers_tried", tried.len() as f64)
        .field("server", source.field());
    if let Outcome::Answer { values, .. } = outcome {
        r = r
            .metric("answers", values.len() as f64)
            .field("answer", values.join(", "));
    }
    if let Some(e) = error {
        r = r.field("error", e);
    }
    if let Outcome::OtherCode(code) = outcome {
        r = r.field("rcode", code.clone());
    }
    let failed: Vec<String> = tried[..tried.len() - 1]
        .iter()
        .filter_map(|(s, o, _)| o.error_id().map(|e| format!("{} {e}", s.field())))
        .collect();
    if !failed.is_empty() {
        r = r.field("failed", failed.join(", "));
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expected_values_match_loosely() {
        assert!(matches_expected("192.0.2.1", "192.0.2.1"));
        assert!(matches_expected("www.Example.org.", "www.example.org"));
        assert!(matches_expected("10 mail.example.org.", "mail.example.org"));
        assert!(matches_expected("2001:db8::1", "2001:DB8:0::1"));
        assert!(!matches_expected("192.0.2.1", "192.0.2.10"));
    }

    #[test]
    fn types_and_reverse_names() {
        assert_eq!(parse_type("mx").unwrap(), RecordType::MX);
        assert!(parse_type("AXFR").is_err());
        assert!(parse_type("nonsense").is_err());
        let ptr = query_name("192.0.2.7", RecordType::PTR).unwrap();
        assert_eq!(ptr.to_string(), "7.2.0.192.in-addr.arpa.");
    }

    #[tokio::test]
    async fn localhost_is_answered_without_the_network() {
        let r = run(&args(&["localhost"]), &CheckContext::default())
            .await
            .unwrap();
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.summary.contains("127.0.0.1"), "{}", r.summary);
        assert!(!r.fields.contains_key("error"), "{r:?}");
        assert!(["localhost", "/etc/hosts"].contains(&r.fields["server"].as_str()));
    }

    #[test]
    fn every_failure_has_an_error_field() {
        let a: DnsArgs =
            parse_args("dns", &args(&["www.fl.test", "--expect", "192.0.2.1"])).unwrap();
        let server = Source::Server("127.0.0.1:5353".parse().unwrap());
        let dead = Source::Server("10.0.0.53:53".parse().unwrap());
        let t = Duration::from_millis(3);
        let one = |o: Outcome| report(&a, "t".into(), &[(server.clone(), o, t)]);
        for (outcome, id) in [
            (Outcome::NxDomain, "nxdomain"),
            (Outcome::NoData, "no-answer"),
            (Outcome::ServFail, "servfail"),
            (Outcome::Refused, "refused"),
            (Outcome::Timeout, "timeout"),
            (Outcome::Unreachable("refused".into()), "unreachable"),
            (Outcome::OtherCode("FORMERR".into()), "rcode"),
            (Outcome::Error("odd".into()), "other"),
        ] {
            let r = one(outcome);
            assert_eq!(r.status, Status::Crit, "{r:?}");
            assert_eq!(r.fields["error"], id, "{r:?}");
            assert_eq!(r.fields["server"], "127.0.0.1:5353");
        }
        assert_eq!(
            one(Outcome::OtherCode("FORMERR".into())).fields["rcode"],
            "FORMERR"
        );
        let wrong = one(Outcome::Answer {
            values: vec!["192.0.2.10".into()],
            cnames: vec![],
        });
        assert_eq!(wrong.fields["error"], "mismatch");
        assert_eq!(wrong.fields["answer"], "192.0.2.10");
        let right = report(
            &a,
            "t".into(),
            &[
                (dead, Outcome::Timeout, t),
                (
                    server,
                    Outcome::Answer {
                        values: vec!["192.0.2.1".into()],
                        cnames: vec![],
                    },
                    t,
                ),
            ],
        );
        assert_eq!(right.status, Status::Warn, "{right:?}");
        assert!(!right.fields.contains_key("error"), "{right:?}");
        assert_eq!(right.fields["failed"], "10.0.0.53 timeout");
        let none = report(&a, "t".into(), &[]);
        assert_eq!(none.fields["error"], "timeout");
        assert_eq!(no_servers("t".into(), "x").fields["error"], "no-servers");
    }

    #[tokio::test]
    async fn bad_server_is_a_usage_error() {
        let ctx = CheckContext::default();
        for bad in [
            args(&["example.org", "--server", "dns.example:53"]),
            args(&["example.org", "--server", "127.0.0.1:x"]),
            args(&["example.org", "--type", "AXFR"]),
            args(&["example.org", "--warn", "500", "--crit", "100"]),
        ] {
            assert!(
                matches!(run(&bad, &ctx).await, Err(CheckError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
