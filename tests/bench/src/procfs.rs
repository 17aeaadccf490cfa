//! What /proc says about a process: resident memory and CPU time, measured
//! the same way for the relay, the generator itself, our agent and its
//! peers (zabbix_agentd, zabbix_agent2).

use std::collections::HashMap;

/// `VmRSS` of /proc/PID/status, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// `VmHWM` (peak resident set) of /proc/PID/status, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// `Threads` of /proc/PID/status.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Proportional set size (shared pages split among their users), in KiB:
/// the fair figure for a family of processes that share libraries.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// CPU seconds (user + system) the process used, including the children it
/// has waited for (a plugin the agent ran and reaped counts as the agent's).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    // utime stime cutime cstime: fields 14..=17, i.e. indexes 11..=14 here.
    let sum: u64 = f[11..15].iter().filter_map(|v| v.parse::<u64>().ok()).sum();
    Some(sum as f64 / ticks_per_second())
}

/// CPU seconds the whole machine spent busy (all cores; /proc/stat).
pub fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?;
    Some(busy as f64 / ticks_per_second())
}

/// The process and all its live descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse().ok()) {
                parent_of.insert(pid, ppid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, &pp)| pp == p).map(|(&c, _)| c));
        i += 1;
    }
    out
}

/// Memory and CPU of a process family at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeSample {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub cpu_secs: f64,
}

pub fn sample_tree(root: u32) -> TreeSample {
    let pids = tree(root);
    let mut s = TreeSample {
        processes: pids.len(),
        ..Default::default()
    };
    for pid in pids {
        s.rss_kib += rss_kib(pid).unwrap_or(0);
        s.pss_kib += pss_kib(pid).unwrap_or(0);
        s.cpu_secs += cpu_secs(pid).unwrap_or(0.0);
    }
    s
}
