//! `cpu [--interval DURATION] [--warn PCT] [--crit PCT]`
//!
//! CPU busy percentage over a short sampling window: two readings of the
//! kernel's counters in /proc/stat, `--interval` apart (what zabbix's
//! `system.cpu.util` reads). When the machine is busy — at `--warn` or
//! above — the busiest processes are named too, since "what is eating the
//! CPU" is then the next question a technician asks: they are sampled over
//! a second window of the same length (two readings of every process's
//! /proc/PID/stat).
//!
//! Why not name them on every run: that means reading the counters of
//! every process twice per run — done with sysinfo, threads included, it
//! was a third of all the CPU the agent spent with 10 monitors — for a list
//! that is empty on an idle machine. The /proc/stat readings take
//! microseconds and are done on the runtime's thread, no blocking thread
//! is needed for them.

use super::{blocking, grade, parse_args, parse_duration, show_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(clap::Parser, Debug)]
#[command(
    name = "cpu",
    about = "CPU busy % over a short window, and the busiest processes"
)]
pub struct CpuArgs {
    /// Sampling window (at least 200ms).
    #[arg(short = 'i', long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Warn at this busy percentage (the busiest processes are named from here).
    #[arg(short = 'w', long, default_value_t = 80.0)]
    pub warn: f64,
    /// Critical at this busy percentage.
    #[arg(short = 'c', long, default_value_t = 95.0)]
    pub crit: f64,
    /// Give up after this long (default: the window and 5 s more).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// One reading of /proc/stat: (busy, total) clock ticks, all CPUs first,
/// then each CPU.
#[derive(Debug, Clone, PartialEq)]
struct Ticks {
    all: (u64, u64),
    each: Vec<(u64, u64)>,
}

/// The `cpu` lines of /proc/stat: user nice system idle iowait irq softirq
/// steal (guest time is already counted in user); busy is all but idle and
/// iowait.
fn parse_stat(text: &str) -> Option<Ticks> {
    let mut all = None;
    let mut each = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with("cpu")) {
        let mut words = line.split_whitespace();
        let name = words.next()?;
        let v: Vec<u64> = words.take(8).map(|w| w.parse().unwrap_or(0)).collect();
        if v.len() < 4 {
            return None;
        }
        let total: u64 = v.iter().sum();
        let idle = v[3] + v.get(4).copied().unwrap_or(0);
        let pair = (total.saturating_sub(idle), total);
        if name == "cpu" {
            all = Some(pair);
        } else {
            each.push(pair);
        }
    }
    Some(Ticks { all: all?, each })
}

fn read_stat() -> Result<Ticks, String> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|e| format!("cannot read CPU counters: {e}"))?;
    parse_stat(&text).ok_or_else(|| "cannot read CPU counters: /proc/stat has no cpu line".into())
}

/// Busy percentage between two readings of one (busy, total) pair.
fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    let busy = after.0.saturating_sub(before.0).min(total);
    (100.0 * busy as f64 / total as f64).clamp(0.0, 100.0)
}

/// Each process's name and CPU time (user + system, clock ticks), from
/// /proc/PID/stat: one small read per process, threads not listed.
fn process_ticks() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A process may end in between: it is simply not counted.
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(v) = parse_process_stat(&text) {
                out.insert(pid, v);
            }
        }
    }
    out
}

/// `PID (NAME) STATE PPID …`: the name, and utime + stime (fields 14 and
/// 15). The name may hold spaces and parentheses: it ends at the last `)`.
fn parse_process_stat(text: &str) -> Option<(String, u64)> {
    let (head, rest) = text.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name.to_string(), utime + stime))
}

/// The busiest processes over `window` (at most 3, each at 1 % or more of
/// one core): two readings of every process's counters.
///
/// Read directly rather than with sysinfo, which opens and seeks several
/// files per process (and lists every thread unless told not to): measured
/// at ~6 ms of CPU per run with ~110 processes, against ~1 ms here.
fn busiest_processes(window: Duration) -> Result<Vec<String>, String> {
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let before = process_ticks();
    if before.is_empty() {
        return Err("cannot read the processes' counters in /proc".into());
    }
    let started = Instant::now();
    std::thread::sleep(window);
    let after = process_ticks();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let mut procs: Vec<(String, f64)> = after
        .iter()
        .filter_map(|(pid, (name, ticks))| {
            let (_, was) = before.get(pid)?;
            let pct = 100.0 * ticks.saturating_sub(*was) as f64 / hz / secs;
            (pct >= 1.0).then(|| (name.clone(), pct))
        })
        .collect();
    procs.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(procs
        .iter()
        .take(3)
        .map(|(n, u)| format!("{n} {u:.0}%"))
        .collect())
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: CpuArgs = parse_args("cpu", args)?;
    if a.warn > a.crit {
        return Err(CheckError::Usage("--warn must not be above --crit".into()));
    }
    if a.interval > Duration::from_secs(60) {
        return Err(CheckError::Usage("--interval must be at most 60s".into()));
    }
    let window = a.interval.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    let timeout = a.timeout.unwrap_or(window + Duration::from_secs(5));
    if timeout <= window {
        return Err(CheckError::Usage(
            "--timeout must be longer than --interval".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    ctx.progress
        .say(format!("sampling CPU use for {}", show_duration(window)));
    let unknown = |e: String| Ok(CheckResult::new("cpu", "cpu", Status::Unknown, e));
    let before = match read_stat() {
        Ok(t) => t,
        Err(e) => return unknown(e),
    };
    tokio::time::sleep(window).await;
    let after = match read_stat() {
        Ok(t) => t,
        Err(e) => return unknown(e),
    };
    let busy = busy_pct(before.all, after.all);
    let busiest_core = before
        .each
        .iter()
        .zip(&after.each)
        .map(|(b, a)| busy_pct(*b, *a))
        .fold(0.0, f64::max);
    let cores = after.each.len().max(1);
    let status = grade(busy, a.warn, a.crit);
    // Within what is left of --timeout (without the names the result
    // still stands).
    let left = deadline.saturating_duration_since(Instant::now());
    let top = if status == Status::Ok || left <= window {
        Vec::new()
    } else {
        ctx.progress.say(format!(
            "naming the busiest processes over {}",
            show_duration(window)
        ));
        match blocking(left, move || busiest_processes(window)).await {
            Ok(Ok(top)) => top,
            Ok(Err(e)) | Err(e) => {
                tracing::debug!("cpu: no busiest processes: {e}");
                Vec::new()
            }
        }
    };
    let summary = format!(
        "{busy:.1}% busy over {} on {cores} core{}{}",
        show_duration(window),
        if cores == 1 { "" } else { "s" },
        if top.is_empty() {
            String::new()
        } else {
            format!("; busiest: {}", top.join(", "))
        }
    );
    Ok(CheckResult::new("cpu", "cpu", status, summary)
        .metric("busy_pct", round1(busy))
        .metric("busiest_core_pct", round1(busiest_core))
        .metric("cores", cores as f64))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_sane_numbers() {
        let r = run(
            &["--interval".into(), "200ms".into()],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        let busy = r.metrics["busy_pct"];
        assert!((0.0..=100.0).contains(&busy), "{r:?}");
        assert!(r.metrics["cores"] >= 1.0);
        assert_ne!(r.status, Status::Unknown);
    }

    #[test]
    fn proc_stat_is_read_as_busy_and_total_ticks() {
        let text = "cpu  100 5 50 800 20 3 2 1 0 0\n\
                    cpu0 60 5 30 400 10 2 1 1 0 0\n\
                    cpu1 40 0 20 400 10 1 1 0 0 0\n\
                    intr 12345 0 0\n";
        let t = parse_stat(text).unwrap();
        assert_eq!(t.all, (161, 981));
        assert_eq!(t.each, vec![(99, 509), (62, 472)]);
        assert!(parse_stat("intr 1 2 3\n").is_none());
        assert_eq!(busy_pct((100, 1000), (150, 1100)), 50.0);
        assert_eq!(busy_pct((100, 1000), (100, 1000)), 0.0);
        // Counters that went backwards (a CPU taken offline) never give
        // more than 100 % or less than 0 %.
        assert_eq!(busy_pct((100, 1000), (300, 1100)), 100.0);
        assert_eq!(busy_pct((100, 1000), (50, 1100)), 0.0);
        let here = read_stat().unwrap();
        assert!(!here.each.is_empty() && here.all.1 > 0, "{here:?}");
    }

    #[test]
    fn process_stat_names_and_ticks() {
        let text =
            "1234 (tmux: server (1)) S 1 1234 1234 0 -1 4194560 100 0 0 0 70 30 0 0 20 0 1 0 5 0 0";
        assert_eq!(
            parse_process_stat(text),
            Some(("tmux: server (1)".to_string(), 100))
        );
        assert_eq!(parse_process_stat("1234 (x) S 1"), None);
        let here = process_ticks();
        assert!(here.contains_key(&std::process::id()), "{here:?}");
    }

    /// Busy (at --warn): the busiest processes are named.
    #[tokio::test]
    async fn a_busy_machine_names_its_busiest_processes() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        };
        let args: Vec<String> = ["--interval", "300ms", "--warn", "0", "--crit", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run(&args, &CheckContext::default()).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert_ne!(r.status, Status::Ok, "{r:?}");
        assert!(r.summary.contains("busiest: "), "{}", r.summary);
    }

    #[tokio::test]
    async fn thresholds_drive_status() {
        let args: Vec<String> = ["--interval", "200ms", "--warn", "0", "--crit", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run(&args, &CheckContext::default()).await.unwrap();
        assert_eq!(r.status, Status::Crit);
    }
}
