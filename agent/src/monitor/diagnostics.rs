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
    let mut procs = processes();
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

/// Every process (not thread) with its CPU use over ~250 ms and its memory.
fn processes() -> Vec<ProcessInfo> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, ThreadKind};
    let Ok(mut sys) = System::new() else {
        return Vec::new();
    };
    // Processes, not threads: on Linux sysinfo lists every thread of a
    // process (its "tasks") as a process of its own, with the memory of the
    // whole process, unless told not to; a thread found anyway is skipped.
    let kind = ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .without_tasks();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(Duration::from_millis(250));
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    sys.processes()
        .values()
        .filter(|p| p.thread_kind() != Some(ThreadKind::Userland))
        .map(|p| ProcessInfo {
            pid: p.pid().as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cpu_pct: f64::from(p.cpu_usage()),
            memory_bytes: p.memory(),
        })
        .collect()
}

/// `via GATEWAY dev IFACE` from `/proc/net/route` (read as the `net`
/// check reads it).
fn default_route(table: &str) -> Option<String> {
    let route = crate::checks::net::default_routes_v4(table)
        .into_iter()
        .next()?;
    Some(match route.gateway {
        Some(gw) => format!("via {gw} dev {}", route.dev),
        None => format!("dev {}", route.dev),
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
        let route =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                     eth0\t0000FEA9\t00000000\t0001\t0\t0\t1000\t0000FFFF\t0\t0\t0\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
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

    /// Threads are not listed as processes: this process's own threads
    /// (the test harness's and a few more) never show, the process does.
    #[test]
    fn lists_processes_not_threads() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let rx = stop_rx.clone();
                std::thread::spawn(move || {
                    let _ = rx.lock().map(|r| r.recv());
                })
            })
            .collect();
        let me = std::process::id();
        let tids: Vec<u32> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&t| t != me)
            .collect();
        assert!(tids.len() >= 3, "{tids:?}");
        let procs = processes();
        drop(stop_tx);
        for t in threads {
            t.join().unwrap();
        }
        assert!(procs.iter().any(|p| p.pid == me), "the process is listed");
        let listed: Vec<u32> = procs
            .iter()
            .map(|p| p.pid)
            .filter(|p| tids.contains(p))
            .collect();
        assert!(listed.is_empty(), "threads listed as processes: {listed:?}");
    }
}
