//! `memory [--warn PCT] [--crit PCT] [--swap-warn PCT] [--swap-crit PCT]`
//!
//! Memory in use as `free` counts it: used = total − available (page cache
//! that can be dropped is not "used"). Swap is reported and graded too, as
//! a machine that swaps hard is slow whatever its RAM figure says.

use super::disk::human;
use super::{blocking, grade, parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::time::Duration;
use sysinfo::System;

#[derive(clap::Parser, Debug)]
#[command(name = "memory", about = "Memory and swap in use")]
pub struct MemoryArgs {
    /// Warn at this used percentage of RAM.
    #[arg(short = 'w', long, default_value_t = 90.0)]
    pub warn: f64,
    /// Critical at this used percentage of RAM.
    #[arg(short = 'c', long, default_value_t = 95.0)]
    pub crit: f64,
    /// Warn at this used percentage of swap.
    #[arg(long, default_value_t = 50.0)]
    pub swap_warn: f64,
    /// Critical at this used percentage of swap.
    #[arg(long, default_value_t = 80.0)]
    pub swap_crit: f64,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: MemoryArgs = parse_args("memory", args)?;
    if a.warn > a.crit || a.swap_warn > a.swap_crit {
        return Err(CheckError::Usage("--warn must not be above --crit".into()));
    }
    ctx.progress.say("reading memory counters");
    let read = blocking(a.timeout, || {
        System::new().map(|mut sys| {
            sys.refresh_memory();
            sys
        })
    })
    .await;
    let sys = match read {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Ok(CheckResult::new(
                "memory",
                "memory",
                Status::Unknown,
                format!("cannot read memory counters: {e}"),
            ))
        }
        Err(e) => {
            return Ok(CheckResult::new(
                "memory",
                "memory",
                Status::Unknown,
                format!("memory counters: {e}"),
            ))
        }
    };
    let total = sys.total_memory();
    if total == 0 {
        return Ok(CheckResult::new(
            "memory",
            "memory",
            Status::Unknown,
            "the system reports no memory",
        ));
    }
    let available = sys.available_memory().min(total);
    let used = total - available;
    let used_pct = used as f64 * 100.0 / total as f64;
    let swap_total = sys.total_swap();
    let swap_used = sys.used_swap().min(swap_total);
    let swap_pct = if swap_total > 0 {
        swap_used as f64 * 100.0 / swap_total as f64
    } else {
        0.0
    };
    let status = grade(used_pct, a.warn, a.crit).worst(if swap_total > 0 {
        grade(swap_pct, a.swap_warn, a.swap_crit)
    } else {
        Status::Ok
    });
    let swap = if swap_total > 0 {
        format!(
            "swap {swap_pct:.1}% used ({} of {})",
            human(swap_used),
            human(swap_total)
        )
    } else {
        "no swap".to_string()
    };
    let summary = format!(
        "{used_pct:.1}% used ({} of {}, {} available); {swap}",
        human(used),
        human(total),
        human(available)
    );
    Ok(CheckResult::new("memory", "memory", status, summary)
        .metric("used_pct", round1(used_pct))
        .metric("used_bytes", used as f64)
        .metric("available_bytes", available as f64)
        .metric("total_bytes", total as f64)
        .metric("swap_used_pct", round1(swap_pct))
        .metric("swap_used_bytes", swap_used as f64)
        .metric("swap_total_bytes", swap_total as f64))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// MemAvailable from /proc/meminfo, as `free` reads it.
    fn meminfo(key: &str) -> f64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024.0
    }

    #[tokio::test]
    async fn agrees_with_proc_meminfo() {
        let r = run(&[], &CheckContext::default()).await.unwrap();
        assert_ne!(r.status, Status::Unknown, "{r:?}");
        assert_eq!(r.metrics["total_bytes"], meminfo("MemTotal:"));
        // Available memory moves while we read; allow 5% of RAM.
        let diff = (r.metrics["available_bytes"] - meminfo("MemAvailable:")).abs();
        assert!(diff < r.metrics["total_bytes"] * 0.05, "{r:?}");
        let pct = r.metrics["used_pct"];
        assert!((0.0..=100.0).contains(&pct));
    }

    #[tokio::test]
    async fn thresholds_drive_status() {
        let args: Vec<String> = ["--warn", "0", "--crit", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run(&args, &CheckContext::default()).await.unwrap();
        assert_eq!(r.status, Status::Crit);
    }
}
