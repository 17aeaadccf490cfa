//! `flush-dns`: empty whichever DNS cache this machine runs —
//! systemd-resolved (`resolvectl flush-caches`), nscd (`nscd -i hosts`),
//! dnsmasq (SIGHUP clears its cache) — and say which. Only this machine's
//! own resolver cache: a dnsmasq of another network namespace (a
//! container's) or one that does not serve an address of
//! /etc/resolv.conf (libvirt's DHCP) is left alone.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};
use std::path::Path;

#[derive(clap::Parser, Debug)]
#[command(
    name = "flush-dns",
    about = "Flush the local DNS cache (systemd-resolved, nscd or dnsmasq)"
)]
struct Args {
    /// Also flush the DNS server at IP[:PORT] when it is a dnsmasq of this
    /// machine (the server a runbook diagnoses).
    #[arg(long)]
    server: Option<String>,
}

/// A cache found on this machine and how to flush it.
enum Cache {
    Resolved(std::path::PathBuf),
    Nscd(std::path::PathBuf),
    Dnsmasq(Vec<i32>),
}

impl Cache {
    fn describe(&self) -> String {
        match self {
            Cache::Resolved(_) => "systemd-resolved (resolvectl flush-caches)".into(),
            Cache::Nscd(_) => "nscd (nscd -i hosts)".into(),
            Cache::Dnsmasq(pids) => format!("dnsmasq (SIGHUP to pid {pids:?})"),
        }
    }
}

fn present(extra: Option<(std::net::IpAddr, u16)>) -> Vec<Cache> {
    let mut found = Vec::new();
    if Path::new("/run/systemd/resolve/io.systemd.Resolve").exists() {
        if let Some(p) = process::which("resolvectl") {
            found.push(Cache::Resolved(p));
        }
    }
    if !pids_of("nscd").is_empty() {
        if let Some(p) = process::which("nscd") {
            found.push(Cache::Nscd(p));
        }
    }
    let mut resolvers: Vec<(std::net::IpAddr, u16)> =
        nameservers().into_iter().map(|ip| (ip, 53)).collect();
    resolvers.extend(extra);
    let dnsmasq: Vec<i32> = pids_of("dnsmasq")
        .into_iter()
        .filter(|pid| serves(*pid, &resolvers))
        .collect();
    if !dnsmasq.is_empty() {
        found.push(Cache::Dnsmasq(dnsmasq));
    }
    found
}

/// Pids of processes whose command name is `name` (from /proc), in this
/// machine's own network namespace: a dnsmasq of a container or of another
/// namespace is not this machine's cache.
fn pids_of(name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == ours)
        .collect()
}

/// `IP` (port 53), `IP:PORT` or `[IPv6]:PORT`.
fn server_addr(text: &str) -> Result<(std::net::IpAddr, u16), String> {
    if let Ok(ip) = text.parse() {
        return Ok((ip, 53));
    }
    text.parse::<std::net::SocketAddr>()
        .map(|a| (a.ip(), a.port()))
        .map_err(|_| format!("--server {text}: expected IP or IP:PORT"))
}

/// The nameservers of /etc/resolv.conf.
fn nameservers() -> Vec<std::net::IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Whether process `pid` holds a UDP socket on one of `resolvers` (an
/// address and port; a wildcard address counts for every address): the
/// cache this machine asks, not a dnsmasq that only serves DHCP or another
/// network.
fn serves(pid: i32, resolvers: &[(std::net::IpAddr, u16)]) -> bool {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(udp_socket)
            .any(|(addr, port, inode)| {
                inodes.contains(&inode)
                    && resolvers
                        .iter()
                        .any(|(ip, p)| *p == port && (addr.is_unspecified() || addr == *ip))
            })
    })
}

/// `(local address, port, inode)` of a line of /proc/net/udp or udp6.
fn udp_socket(line: &str) -> Option<(std::net::IpAddr, u16, String)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = f.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = f.get(9)?.to_string();
    let addr = match addr.len() {
        8 => std::net::IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            // Four 32-bit words, each in the kernel's byte order.
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((addr, port, inode))
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("flush-dns", args)?;
    let extra = match a.server.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(server_addr(s).map_err(CheckError::Usage)?),
        None => None,
    };
    let caches = present(extra);
    if caches.is_empty() {
        return Ok(CheckResult::new(
            "flush-dns",
            "local DNS cache",
            Status::Ok,
            "no DNS cache runs on this machine (systemd-resolved, nscd, dnsmasq): nothing to flush",
        ));
    }
    let names: Vec<String> = caches.iter().map(Cache::describe).collect();
    if ctx.dry_run {
        return Ok(planned(
            "flush-dns",
            "local DNS cache",
            format!("flush {}", names.join(", ")),
        ));
    }
    let mut changed = Vec::new();
    for cache in &caches {
        ctx.progress.say(format!("flushing {}", cache.describe()));
        let outcome = match cache {
            Cache::Resolved(p) => command(p, &["flush-caches"]).await,
            Cache::Nscd(p) => command(p, &["-i", "hosts"]).await,
            Cache::Dnsmasq(pids) => pids.iter().try_for_each(|pid| {
                let pid =
                    rustix::process::Pid::from_raw(*pid).ok_or_else(|| "bad pid".to_string())?;
                rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                    .map_err(|e| e.to_string())
            }),
        };
        match outcome {
            Ok(()) => changed.push(format!("flushed {}", cache.describe())),
            Err(e) => {
                return Ok(failed(
                    "flush-dns",
                    "local DNS cache",
                    format!("{}: {e}", cache.describe()),
                ))
            }
        }
    }
    Ok(done(
        "flush-dns",
        "local DNS cache",
        format!("flushed {}", names.join(", ")),
        changed,
    ))
}

async fn command(program: &Path, args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let f = process::run(program, &args, None, COMMAND_TIMEOUT).await?;
    if f.success() {
        Ok(())
    } else {
        Err(f.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_udp_lines() {
        let v4 = "  12: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 48123 2 0000000000000000 0";
        let (addr, port, inode) = udp_socket(v4).unwrap();
        assert_eq!(
            (addr.to_string(), port, inode.as_str()),
            ("127.0.0.1".into(), 53, "48123")
        );
        let v6 = "  5: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0";
        let (addr, port, _) = udp_socket(v6).unwrap();
        assert_eq!((addr.to_string(), port), ("::1".into(), 53));
    }

    #[test]
    fn a_dnsmasq_of_this_test_that_serves_no_resolver_is_not_ours() {
        // This process holds no port-53 socket: never counted as a cache.
        let ours: Vec<_> = nameservers().into_iter().map(|ip| (ip, 53)).collect();
        assert!(!serves(std::process::id() as i32, &ours));
        assert_eq!(server_addr("127.0.0.1").unwrap().1, 53);
        assert_eq!(server_addr("127.0.0.1:5353").unwrap().1, 5353);
        assert!(server_addr("dns.example").is_err());
    }
}
