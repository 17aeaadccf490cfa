//! The diagnostic bundle attached to a ticket when an incident opens: what
//! a technician would look at first, gathered at the moment of failure.

use firstline_proto::event::{DiskInfo, ProcessInfo};
use firstline_proto::Diagnostics;
use std::time::Duration;

/// Processes listed per ranking.
const TOP: usize = 5;

/// Gather the bundle (takes ~250 ms: CPU usage needs two samples).
pub async fn gather() -> Diagnostics {
    tokio::task::spawn_blocking(gather_blocking)
        .await
        .unwrap_or_default()
}

fn gather_blocking() -> Diagnostics {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let Ok(mut sys) = System::new() else {
        return Diagnostics::default();
    };
    let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(Duration::from_millis(250));
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let mut procs: Vec<ProcessInfo> = sys
        .processes()
        .values()
        .map(|p| ProcessInfo {
            pid: p.pid().as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cpu_pct: p.cpu_usage(),
            memory_bytes: p.memory(),
        })
        .collect();
    procs.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
    let top_cpu = procs.iter().take(TOP).cloned().collect();
    procs.sort_by_key(|p| std::cmp::Reverse(p.memory_bytes));
    let top_memory = procs.into_iter().take(TOP).collect();
    let disks = crate::checks::disk::all_mounts()
        .into_iter()
        .map(|u| DiskInfo {
            mount: u.mount.display().to_string(),
            used_pct: (u.used_pct * 10.0).round() / 10.0,
            free_bytes: u.avail_bytes,
        })
        .collect();
    Diagnostics {
        top_cpu,
        top_memory,
        disks,
        default_route: std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| default_route(&t)),
        dns_servers: std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| dns_servers(&t))
            .unwrap_or_default(),
    }
}

/// `via GATEWAY dev IFACE` from `/proc/net/route`.
fn default_route(table: &str) -> Option<String> {
    let (ip, iface) = parse_default_route(table)?;
    Some(format!("via {ip} dev {iface}"))
}

/// The IPv4 default gateway of this machine, if it has one.
pub fn default_gateway() -> Option<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_route(&table).map(|(ip, _)| ip)
}

fn parse_default_route(table: &str) -> Option<(std::net::Ipv4Addr, String)> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        Some((std::net::Ipv4Addr::from(gw.to_le_bytes()), f[0].to_string()))
    })
}

fn dns_servers(resolv: &str) -> Vec<String> {
    resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_and_resolv() {
        let route = "Iface\tDestination\tGateway\tFlags\n\
                     eth0\t0000FEA9\t00000000\t0001\n\
                     eth0\t00000000\t0101A8C0\t0003\n";
        assert_eq!(
            default_route(route).as_deref(),
            Some("via 192.168.1.1 dev eth0")
        );
        assert_eq!(
            dns_servers("# x\nnameserver 10.0.0.2\nnameserver ::1\n"),
            ["10.0.0.2", "::1"]
        );
    }

    #[tokio::test]
    async fn bundle_has_processes_and_disks() {
        let d = gather().await;
        assert!(!d.top_memory.is_empty());
        assert!(
            d.top_memory.iter().any(|p| p.pid == std::process::id()) || d.top_memory.len() == TOP
        );
        assert!(!d.disks.is_empty());
    }
}
