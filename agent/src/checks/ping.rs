//! `ping HOST [--count N] [--interval MS] [--timeout MS] [--warn RTT,LOSS%] [--crit RTT,LOSS%]`
//!
//! ICMP echo with surge-ping, IPv4 and IPv6. The requests leave every
//! `--interval` without waiting for the previous reply (as `ping` does), each
//! waits `--timeout` for its own reply, so the whole check takes about
//! `count × interval + timeout` even when every packet is lost.
//!
//! Field `error` says why the check is not ok: `unresolved` (the name does
//! not resolve, or has no address of the family asked), `no-route` (sending
//! failed at once: no route to the host, or an `unreachable` route),
//! `unreachable` (no reply, but ICMP errors about the requests came back:
//! destination unreachable or time exceeded, from a router on the way or
//! from this machine when the neighbour never answered ARP — the summary
//! says which and from whom; surge-ping hands these back like replies, they
//! are not counted as such), `timeout` (requests sent, no reply and no
//! error at all), `firewall` (this machine refused to send: its own
//! packet filter drops or rejects outgoing traffic — EPERM), `send-failed` (sending
//! failed otherwise), `no-permission` (no ICMP socket may be opened),
//! `loss` (some replies, loss at or above a threshold), `slow` (replies,
//! average round trip at or above a threshold).
//!
//! surge-ping tries an ICMP datagram socket first (allowed to the groups in
//! `net.ipv4.ping_group_range`) and then a raw socket (needs `CAP_NET_RAW`);
//! when neither is allowed the result is `unknown` and says which permission
//! is missing. Thresholds are checked like `check_ping`: the average round
//! trip and the loss, each at or above its limit.

use super::{grade, ms, parse_args, parse_duration, show_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::net::IpAddr;
use std::time::Duration;
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};

#[derive(clap::Parser, Debug)]
#[command(
    name = "ping",
    about = "ICMP echo to a host: loss, round-trip min/avg/max and jitter"
)]
pub struct PingArgs {
    /// Host name or IP address (IPv4 or IPv6).
    pub host: String,
    /// Echo requests to send.
    #[arg(short = 'n', long, default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,
    /// Time between requests (a bare number is milliseconds).
    #[arg(short = 'i', long, default_value = "200ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long to wait for each reply.
    #[arg(short = 't', long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Warn at this average round trip (ms) or loss (%): RTT_MS,LOSS%.
    #[arg(short = 'w', long, default_value = "100,20%", value_parser = parse_limits)]
    pub warn: Limits,
    /// Critical at this average round trip (ms) or loss (%): RTT_MS,LOSS%.
    #[arg(short = 'c', long, default_value = "500,60%", value_parser = parse_limits)]
    pub crit: Limits,
    /// Use IPv4 only (when HOST is a name).
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (when HOST is a name).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Payload bytes in each request.
    #[arg(short = 's', long, default_value_t = 56,
          value_parser = clap::value_parser!(u16).range(0..=1472))]
    pub size: u16,
}

/// A round-trip and a loss limit, as `check_ping -w 100,20%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub rtt_ms: f64,
    pub loss_pct: f64,
}

pub fn parse_limits(text: &str) -> Result<Limits, String> {
    let bad = || format!("`{text}` is not RTT_MS,LOSS% (for example 100,20%)");
    let (rtt, loss) = text.split_once(',').ok_or_else(bad)?;
    let rtt_ms: f64 = rtt
        .trim()
        .trim_end_matches("ms")
        .parse()
        .map_err(|_| bad())?;
    let loss_pct: f64 = loss
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| bad())?;
    if !(rtt_ms.is_finite() && rtt_ms >= 0.0 && (0.0..=100.0).contains(&loss_pct)) {
        return Err(bad());
    }
    Ok(Limits { rtt_ms, loss_pct })
}

/// Replies of one run, in sequence order (`None` for a lost request).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub sent: usize,
    pub rtts_ms: Vec<f64>,
}

impl Stats {
    pub fn from_replies(replies: &[Option<f64>]) -> Stats {
        Stats {
            sent: replies.len(),
            rtts_ms: replies.iter().flatten().copied().collect(),
        }
    }
    pub fn received(&self) -> usize {
        self.rtts_ms.len()
    }
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        (self.sent - self.received()) as f64 * 100.0 / self.sent as f64
    }
    pub fn min(&self) -> Option<f64> {
        self.rtts_ms.iter().copied().reduce(f64::min)
    }
    pub fn max(&self) -> Option<f64> {
        self.rtts_ms.iter().copied().reduce(f64::max)
    }
    pub fn avg(&self) -> Option<f64> {
        (!self.rtts_ms.is_empty())
            .then(|| self.rtts_ms.iter().sum::<f64>() / self.rtts_ms.len() as f64)
    }
    /// Mean absolute difference between consecutive round trips (the
    /// "jitter" VoIP tools report); zero with fewer than two replies.
    pub fn jitter(&self) -> f64 {
        if self.rtts_ms.len() < 2 {
            return 0.0;
        }
        let diffs: Vec<f64> = self
            .rtts_ms
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .collect();
        diffs.iter().sum::<f64>() / diffs.len() as f64
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: PingArgs = parse_args("ping", args)?;
    if a.warn.rtt_ms > a.crit.rtt_ms || a.warn.loss_pct > a.crit.loss_pct {
        return Err(CheckError::Usage(
            "--warn must not be above --crit (RTT_MS,LOSS%)".into(),
        ));
    }
    if a.interval < Duration::from_millis(10) {
        return Err(CheckError::Usage("--interval must be at least 10ms".into()));
    }
    let total = a.interval * u32::from(a.count) + a.timeout;
    if total > super::MAX_CHECK_TIME - Duration::from_secs(10) {
        return Err(CheckError::Usage(format!(
            "count × interval + timeout is {}; keep it under {}",
            show_duration(total),
            show_duration(super::MAX_CHECK_TIME - Duration::from_secs(10))
        )));
    }

    let ip = match resolve(&a, ctx).await {
        Ok(ip) => ip,
        Err((msg, error)) => {
            let mut r = CheckResult::new("ping", &a.host, Status::Unknown, msg);
            if let Some(e) = error {
                r = r.field("error", e);
            }
            return Ok(r);
        }
    };
    let target = if a.host == ip.to_string() {
        a.host.clone()
    } else {
        format!("{} ({ip})", a.host)
    };

    let kind = if ip.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    let client = match Client::new(&Config::builder().kind(kind).build()) {
        Ok(c) => c,
        Err(e) => {
            return Ok(
                CheckResult::new("ping", target, Status::Unknown, socket_error(&e))
                    .field("error", "no-permission"),
            )
        }
    };

    ctx.progress.say(format!(
        "pinging {target}: {} requests, every {}, {} payload bytes",
        a.count,
        show_duration(a.interval),
        a.size
    ));
    let ident = PingIdentifier(rand::random());
    let payload = vec![0x5a_u8; usize::from(a.size)];
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..a.count {
        let client = client.clone();
        let payload = payload.clone();
        let progress = ctx.progress.clone();
        let (interval, timeout) = (a.interval, a.timeout);
        tasks.spawn(async move {
            tokio::time::sleep(interval * u32::from(seq)).await;
            let mut pinger = client.pinger(ip, ident).await;
            pinger.timeout(timeout);
            let outcome = pinger.ping(PingSequence(seq), &payload).await;
            // surge-ping also hands back the ICMP errors that quote our
            // request (destination unreachable…): those are no reply.
            let outcome = match outcome {
                Ok((packet, rtt)) => match icmp_error(&packet) {
                    None => Ok(Reply::Echo(rtt)),
                    Some(why) => Ok(Reply::Error(why)),
                },
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(Reply::Echo(rtt)) => {
                    progress.say(format!("reply from {ip}: seq={seq} time={} ms", ms(*rtt)))
                }
                Ok(Reply::Error(why)) => progress.say(format!("seq={seq}: {why}")),
                Err(SurgeError::Timeout { .. }) => progress.say(format!(
                    "no reply from {ip} for seq={seq} within {}",
                    show_duration(timeout)
                )),
                Err(e) => progress.say(format!("seq={seq}: {e}")),
            }
            (seq, outcome)
        });
    }
    let mut replies: Vec<Option<f64>> = vec![None; usize::from(a.count)];
    let mut failures = Failures::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((seq, Ok(Reply::Echo(rtt)))) => {
                replies[usize::from(seq)] = Some(rtt.as_secs_f64() * 1000.0)
            }
            Ok((_, Ok(Reply::Error(why)))) => {
                failures.unreachable = true;
                failures.texts.push(why);
            }
            Ok((_, Err(SurgeError::Timeout { .. }))) => {}
            Ok((_, Err(e))) => {
                failures.no_route |= is_no_route(&e);
                failures.firewall |= is_refused_here(&e);
                failures.texts.push(surge_error(&e));
            }
            Err(e) => failures.texts.push(format!("internal error: {e}")),
        }
    }
    Ok(report(
        target,
        &Stats::from_replies(&replies),
        &failures,
        &a,
    ))
}

/// What came back for one request.
enum Reply {
    /// The echo reply, after this long.
    Echo(Duration),
    /// An ICMP error about the request, said in words.
    Error(String),
}

/// Why requests got no reply (besides silence).
#[derive(Debug, Default)]
struct Failures {
    /// What went wrong, in words, in the order it came.
    texts: Vec<String>,
    /// Sending failed: no route to the host here.
    no_route: bool,
    /// An ICMP error (destination unreachable, time exceeded) came back.
    unreachable: bool,
    /// Sending was refused by this machine (EPERM: its own firewall).
    firewall: bool,
}

/// `None` for an echo reply; else what the ICMP message says, and who said it.
fn icmp_error(packet: &IcmpPacket) -> Option<String> {
    let (kind, from) = match packet {
        IcmpPacket::V4(p) => {
            let (t, c) = (p.get_icmp_type().0, p.get_icmp_code().0);
            if t == 0 {
                return None;
            }
            let kind = match (t, c) {
                (3, 0) => "destination net unreachable".to_string(),
                (3, 1) => "destination host unreachable".to_string(),
                (3, 3) => "destination port unreachable".to_string(),
                (3, 9) | (3, 10) | (3, 13) => "communication administratively prohibited".into(),
                (3, _) => "destination unreachable".into(),
                (11, _) => "time to live exceeded".into(),
                _ => format!("ICMP type {t}"),
            };
            (kind, p.get_source().to_string())
        }
        IcmpPacket::V6(p) => {
            let (t, c) = (p.get_icmpv6_type().0, p.get_icmpv6_code().0);
            if t == 129 {
                return None;
            }
            let kind = match (t, c) {
                (1, 0) => "no route to destination".to_string(),
                (1, 1) => "communication administratively prohibited".into(),
                (1, 3) => "destination address unreachable".into(),
                (1, _) => "destination unreachable".into(),
                (3, _) => "hop limit exceeded".into(),
                _ => format!("ICMPv6 type {t}"),
            };
            (kind, p.get_source().to_string())
        }
    };
    Some(format!("{kind} (from {from})"))
}

/// Whether sending failed because there is no route to the host (the
/// kernel says so at once: no route at all, or an `unreachable` route).
fn is_no_route(e: &SurgeError) -> bool {
    match e {
        SurgeError::IOError(io) => {
            matches!(
                io.kind(),
                std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
            ) || matches!(io.raw_os_error(), Some(101) | Some(113))
        }
        _ => false,
    }
}

/// Whether sending failed because this machine refused it: a packet
/// filter's output chain that drops or rejects (the kernel answers EPERM
/// to the sender; the ICMP socket itself was opened, so this is not a
/// missing permission).
fn is_refused_here(e: &SurgeError) -> bool {
    matches!(e, SurgeError::IOError(io) if io.raw_os_error() == Some(1))
}

/// The result of a run.
fn report(target: String, s: &Stats, failures: &Failures, a: &PingArgs) -> CheckResult {
    let loss = s.loss_pct();
    let errors = &failures.texts;
    let mut error: Option<&str> = if failures.firewall {
        Some("firewall")
    } else if failures.no_route {
        Some("no-route")
    } else if failures.unreachable {
        Some("unreachable")
    } else if errors.is_empty() {
        Some("timeout")
    } else {
        Some("send-failed")
    };
    let (status, summary) = match (s.avg(), s.min(), s.max()) {
        (Some(avg), Some(min), Some(max)) => {
            let by_loss = grade(loss, a.warn.loss_pct, a.crit.loss_pct);
            let by_rtt = grade(avg, a.warn.rtt_ms, a.crit.rtt_ms);
            let status = by_rtt.worst(by_loss);
            error = if by_loss != Status::Ok {
                Some("loss")
            } else if by_rtt != Status::Ok {
                Some("slow")
            } else {
                None
            };
            (
                status,
                format!(
                    "{}/{} replies, {}% loss, rtt min/avg/max {}/{}/{} ms, jitter {} ms",
                    s.received(),
                    s.sent,
                    round1(loss),
                    round3(min),
                    round3(avg),
                    round3(max),
                    round3(s.jitter())
                ),
            )
        }
        _ => {
            let why = match errors.first() {
                Some(e) => format!(": {e}"),
                None => format!(" within {}", show_duration(a.timeout)),
            };
            (
                Status::Crit,
                format!("no reply to {} requests (100% loss){why}", s.sent),
            )
        }
    };
    let mut r = CheckResult::new("ping", target, status, summary)
        .metric("sent", s.sent as f64)
        .metric("received", s.received() as f64)
        .metric("loss_pct", round1(loss));
    if let (Some(avg), Some(min), Some(max)) = (s.avg(), s.min(), s.max()) {
        r = r
            .metric("rtt_min_ms", round3(min))
            .metric("rtt_avg_ms", round3(avg))
            .metric("rtt_max_ms", round3(max))
            .metric("jitter_ms", round3(s.jitter()));
    }
    if let Some(e) = error {
        r = r.field("error", e);
    }
    r
}

/// HOST as an address: taken as is, or looked up (bounded by `--timeout`).
/// A failure says why, and `unresolved` when the name does not resolve.
async fn resolve(
    a: &PingArgs,
    ctx: &CheckContext,
) -> Result<IpAddr, (String, Option<&'static str>)> {
    let literal = a.host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if (a.ipv4 && ip.is_ipv6()) || (a.ipv6 && ip.is_ipv4()) {
            return Err((
                format!("{ip} is not an IPv{} address", if a.ipv4 { 4 } else { 6 }),
                None,
            ));
        }
        return Ok(ip);
    }
    let unresolved = |msg: String| (msg, Some("unresolved"));
    ctx.progress.say(format!("looking up {}", a.host));
    let lookup = tokio::net::lookup_host((a.host.as_str(), 0));
    let addrs = match tokio::time::timeout(a.timeout.max(Duration::from_secs(2)), lookup).await {
        Ok(Ok(addrs)) => addrs.map(|sa| sa.ip()).collect::<Vec<_>>(),
        Ok(Err(e)) => return Err(unresolved(format!("cannot resolve {}: {e}", a.host))),
        Err(_) => {
            return Err(unresolved(format!(
                "cannot resolve {}: the lookup timed out",
                a.host
            )))
        }
    };
    addrs
        .iter()
        .copied()
        .find(|ip| (!a.ipv4 || ip.is_ipv4()) && (!a.ipv6 || ip.is_ipv6()))
        .ok_or_else(|| {
            unresolved(format!(
                "{} has no {}address",
                a.host,
                if a.ipv4 {
                    "IPv4 "
                } else if a.ipv6 {
                    "IPv6 "
                } else {
                    ""
                }
            ))
        })
}

/// Why no ICMP socket could be opened, saying which permission is missing.
pub fn socket_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(1) | Some(13))
    {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unreadable".into());
        let gid = rustix::process::getegid().as_raw();
        format!(
            "not allowed to send ICMP echo: needs CAP_NET_RAW (raw socket) or a \
             net.ipv4.ping_group_range that includes group {gid} (now \"{range}\")"
        )
    } else {
        let first = e.to_string();
        format!(
            "cannot open an ICMP socket: {}",
            first.lines().last().unwrap_or(&first)
        )
    }
}

fn surge_error(e: &SurgeError) -> String {
    match e {
        SurgeError::IOError(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn limits_parse_like_check_ping() {
        assert_eq!(
            parse_limits("100,20%").unwrap(),
            Limits {
                rtt_ms: 100.0,
                loss_pct: 20.0
            }
        );
        assert_eq!(parse_limits("2.5ms, 5").unwrap().rtt_ms, 2.5);
        assert!(parse_limits("100").is_err());
        assert!(parse_limits("100,120%").is_err());
        assert!(parse_limits("x,1%").is_err());
    }

    #[test]
    fn statistics() {
        let s = Stats::from_replies(&[Some(1.0), None, Some(3.0), Some(2.0)]);
        assert_eq!(s.sent, 4);
        assert_eq!(s.received(), 3);
        assert_eq!(s.loss_pct(), 25.0);
        assert_eq!(s.min(), Some(1.0));
        assert_eq!(s.max(), Some(3.0));
        assert_eq!(s.avg(), Some(2.0));
        // |3-1| and |2-3|
        assert_eq!(s.jitter(), 1.5);
        let none = Stats::from_replies(&[None, None]);
        assert_eq!(none.loss_pct(), 100.0);
        assert_eq!(none.avg(), None);
        assert_eq!(none.jitter(), 0.0);
    }

    #[test]
    fn error_field_says_why() {
        let a: PingArgs = parse_args("ping", &args(&["192.0.2.1"])).unwrap();
        let none = Failures::default();
        let lost = Stats::from_replies(&[None, None]);
        let r = report("t".into(), &lost, &none, &a);
        assert_eq!(r.status, Status::Crit);
        assert_eq!(r.fields["error"], "timeout");
        let no_route = Failures {
            texts: vec!["Network is unreachable (os error 101)".into()],
            no_route: true,
            unreachable: false,
            firewall: false,
        };
        let r = report("t".into(), &lost, &no_route, &a);
        assert_eq!(r.fields["error"], "no-route");
        assert!(r.summary.contains("unreachable"), "{}", r.summary);
        let told = Failures {
            texts: vec!["destination host unreachable (from 192.0.2.254)".into()],
            no_route: false,
            unreachable: true,
            firewall: false,
        };
        let r = report("t".into(), &lost, &told, &a);
        assert_eq!(r.fields["error"], "unreachable");
        assert!(r.summary.contains("from 192.0.2.254"), "{}", r.summary);
        let odd = Failures {
            texts: vec!["odd".into()],
            ..Default::default()
        };
        assert_eq!(
            report("t".into(), &lost, &odd, &a).fields["error"],
            "send-failed"
        );
        let fine = Stats::from_replies(&[Some(1.0), Some(2.0)]);
        assert!(!report("t".into(), &fine, &none, &a)
            .fields
            .contains_key("error"));
        let lossy = Stats::from_replies(&[Some(1.0), None]);
        assert_eq!(
            report("t".into(), &lossy, &none, &a).fields["error"],
            "loss"
        );
        let slow = Stats::from_replies(&[Some(150.0)]);
        assert_eq!(report("t".into(), &slow, &none, &a).fields["error"], "slow");
        let e = SurgeError::IOError(std::io::Error::from_raw_os_error(101));
        assert!(is_no_route(&e));
        assert!(!is_no_route(&SurgeError::IOError(
            std::io::Error::from_raw_os_error(1)
        )));
        // EPERM on send: this machine's own packet filter.
        let eperm = SurgeError::IOError(std::io::Error::from_raw_os_error(1));
        assert!(is_refused_here(&eperm));
        let refused = Failures {
            texts: vec!["Operation not permitted (os error 1)".into()],
            firewall: true,
            ..Default::default()
        };
        assert_eq!(
            report("t".into(), &lost, &refused, &a).fields["error"],
            "firewall"
        );
    }

    #[test]
    fn permission_message_names_both_ways() {
        let e = std::io::Error::from_raw_os_error(13);
        let m = socket_error(&e);
        assert!(m.contains("CAP_NET_RAW"), "{m}");
        assert!(m.contains("ping_group_range"), "{m}");
    }

    #[tokio::test]
    async fn bad_arguments_are_usage_errors() {
        let ctx = CheckContext::default();
        for bad in [
            args(&["127.0.0.1", "--warn", "600,20%", "--crit", "500,60%"]),
            args(&["127.0.0.1", "--interval", "1ms"]),
            args(&["127.0.0.1", "--count", "0"]),
            args(&["127.0.0.1", "--count", "1000", "--interval", "1s"]),
            args(&[]),
        ] {
            assert!(
                matches!(run(&bad, &ctx).await, Err(CheckError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn wrong_family_is_unknown() {
        let r = run(&args(&["::1", "-4"]), &CheckContext::default())
            .await
            .unwrap();
        assert_eq!(r.status, Status::Unknown);
    }
}
