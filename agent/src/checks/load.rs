//! `load [--warn L1,L5,L15] [--crit L1,L5,L15] [--absolute]`
//!
//! Load averages over 1, 5 and 15 minutes. Thresholds are per CPU core by
//! default (as `check_load -r`), so the same monitor suits a laptop and a
//! 64-core server; `--absolute` compares the raw figures.

use super::{blocking, parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::time::Duration;
use sysinfo::System;

#[derive(clap::Parser, Debug)]
#[command(
    name = "load",
    about = "Load averages (1, 5, 15 min), per core by default"
)]
pub struct LoadArgs {
    /// Warn at these loads: one value for all three, or L1,L5,L15.
    #[arg(short = 'w', long, default_value = "2,1.5,1.2", value_parser = parse_triple)]
    pub warn: [f64; 3],
    /// Critical at these loads: one value for all three, or L1,L5,L15.
    #[arg(short = 'c', long, default_value = "4,3,2.5", value_parser = parse_triple)]
    pub crit: [f64; 3],
    /// Compare the raw load, not the load per core.
    #[arg(long)]
    pub absolute: bool,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn parse_triple(text: &str) -> Result<[f64; 3], String> {
    let bad = || format!("`{text}` is not LOAD or L1,L5,L15");
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if parts.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(bad());
    }
    match parts.as_slice() {
        [one] => Ok([*one; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(bad()),
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: LoadArgs = parse_args("load", args)?;
    if (0..3).any(|i| a.warn[i] > a.crit[i]) {
        return Err(CheckError::Usage("--warn must not be above --crit".into()));
    }
    ctx.progress.say("reading load averages");
    let avg = match blocking(a.timeout, System::load_average)
        .await
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(l) => [l.one, l.five, l.fifteen],
        Err(e) => {
            return Ok(CheckResult::new(
                "load",
                "load",
                Status::Unknown,
                format!("cannot read load averages: {e}"),
            ))
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let divisor = if a.absolute { 1.0 } else { cores as f64 };
    let mut status = Status::Ok;
    for (i, load) in avg.iter().enumerate() {
        let v = load / divisor;
        status = status.worst(if v >= a.crit[i] {
            Status::Crit
        } else if v >= a.warn[i] {
            Status::Warn
        } else {
            Status::Ok
        });
    }
    let summary = format!(
        "load {:.2} {:.2} {:.2} (1/5/15 min) on {cores} core{}, {:.2} per core",
        avg[0],
        avg[1],
        avg[2],
        if cores == 1 { "" } else { "s" },
        avg[0] / cores as f64
    );
    Ok(CheckResult::new("load", "load", status, summary)
        .metric("load1", round2(avg[0]))
        .metric("load5", round2(avg[1]))
        .metric("load15", round2(avg[2]))
        .metric("load1_per_core", round2(avg[0] / cores as f64))
        .metric("cores", cores as f64))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn triples() {
        assert_eq!(parse_triple("2").unwrap(), [2.0, 2.0, 2.0]);
        assert_eq!(parse_triple("3,2,1").unwrap(), [3.0, 2.0, 1.0]);
        assert!(parse_triple("3,2").is_err());
        assert!(parse_triple("-1").is_err());
    }

    #[tokio::test]
    async fn agrees_with_proc_loadavg() {
        let r = run(&[], &CheckContext::default()).await.unwrap();
        assert_ne!(r.status, Status::Unknown, "{r:?}");
        let text = std::fs::read_to_string("/proc/loadavg").unwrap();
        let fifteen: f64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
        // The 15-minute figure barely moves between two reads.
        assert!(
            (r.metrics["load15"] - fifteen).abs() < 0.5,
            "{r:?} vs {text}"
        );
    }

    #[tokio::test]
    async fn thresholds_drive_status() {
        let args: Vec<String> = ["--absolute", "--warn", "0", "--crit", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run(&args, &CheckContext::default()).await.unwrap();
        assert_eq!(r.status, Status::Crit);
    }
}
