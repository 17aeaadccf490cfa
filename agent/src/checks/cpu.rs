//! `cpu [--interval DURATION] [--warn PCT] [--crit PCT]`
//!
//! CPU busy percentage over a short sampling window (sysinfo, two readings
//! of /proc/stat), with the busiest processes of the same window, since
//! "what is eating the CPU" is the next question a technician asks.

use super::{blocking, grade, parse_args, parse_duration, show_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::time::Duration;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(clap::Parser, Debug)]
#[command(
    name = "cpu",
    about = "CPU busy % over a short window, and the busiest processes"
)]
pub struct CpuArgs {
    /// Sampling window (at least 200ms).
    #[arg(short = 'i', long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Warn at this busy percentage.
    #[arg(short = 'w', long, default_value_t = 80.0)]
    pub warn: f64,
    /// Critical at this busy percentage.
    #[arg(short = 'c', long, default_value_t = 95.0)]
    pub crit: f64,
    /// Give up after this long (default: the window and 5 s more).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// One sampling window's figures.
struct Sample {
    cores: usize,
    busy: f64,
    busiest_core: f64,
    top: Vec<String>,
}

/// Two readings of the CPU and process counters, `window` apart.
fn sample(window: Duration) -> Result<Sample, String> {
    let mut sys = System::new().map_err(|e| format!("cannot read CPU counters: {e}"))?;
    let kind = ProcessRefreshKind::nothing().with_cpu();
    sys.refresh_cpu_usage();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(window);
    sys.refresh_cpu_usage();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let busiest_core = sys
        .cpus()
        .iter()
        .map(|c| f64::from(c.usage()))
        .fold(0.0, f64::max);
    let mut procs: Vec<(String, f64)> = sys
        .processes()
        .values()
        .filter(|p| p.thread_kind().is_none())
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                f64::from(p.cpu_usage()),
            )
        })
        .filter(|(_, u)| *u >= 1.0)
        .collect();
    procs.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Sample {
        cores: sys.cpus().len().max(1),
        busy: f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0),
        busiest_core,
        top: procs
            .iter()
            .take(3)
            .map(|(n, u)| format!("{n} {u:.0}%"))
            .collect(),
    })
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
    ctx.progress
        .say(format!("sampling CPU use for {}", show_duration(window)));
    let Sample {
        cores,
        busy,
        busiest_core,
        top,
    } = match blocking(timeout, move || sample(window)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) | Err(e) => return Ok(CheckResult::new("cpu", "cpu", Status::Unknown, e)),
    };
    let status = grade(busy, a.warn, a.crit);
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
