//! `restart-service UNIT`: `systemctl restart UNIT`, then report the state
//! the unit reached. Unknown where systemd is not running.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::service::{parse_show, systemd_missing, unit_name};
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};
use std::path::Path;

#[derive(clap::Parser, Debug)]
#[command(name = "restart-service", about = "Restart a systemd unit")]
struct Args {
    /// Unit name (`cups` means `cups.service`).
    unit: String,
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("restart-service", args)?;
    let unit = unit_name(&a.unit).map_err(CheckError::Usage)?;
    if let Some(why) = systemd_missing() {
        return Ok(CheckResult::new(
            "restart-service",
            &unit,
            Status::Unknown,
            why,
        ));
    }
    let Some(systemctl) = process::which("systemctl") else {
        return Ok(CheckResult::new(
            "restart-service",
            &unit,
            Status::Unknown,
            "systemctl is not installed",
        ));
    };
    let before = state(&systemctl, &unit).await;
    if ctx.dry_run {
        return Ok(planned(
            "restart-service",
            &unit,
            format!("run `systemctl restart {unit}` (now {before})"),
        ));
    }
    ctx.progress
        .say(format!("restarting {unit} (was {before})"));
    let args = vec!["restart".to_string(), unit.clone()];
    match process::run(&systemctl, &args, None, COMMAND_TIMEOUT).await {
        Ok(f) if f.success() => {
            let after = state(&systemctl, &unit).await;
            let r = done(
                "restart-service",
                &unit,
                format!("restarted {unit}: {before} → {after}"),
                vec![format!("restarted {unit}")],
            );
            Ok(if after.starts_with("active") {
                r
            } else {
                CheckResult {
                    status: Status::Crit,
                    ..r
                }
            })
        }
        Ok(f) => Ok(failed(
            "restart-service",
            &unit,
            format!("systemctl restart {unit} failed: {}", f.reason()),
        )),
        Err(e) => Ok(failed("restart-service", &unit, e)),
    }
}

async fn state(systemctl: &Path, unit: &str) -> String {
    let args = vec![
        "show".into(),
        unit.into(),
        "--property=ActiveState,SubState".into(),
    ];
    match process::run(systemctl, &args, None, COMMAND_TIMEOUT).await {
        Ok(f) => {
            let p = parse_show(&f.stdout);
            format!(
                "{}/{}",
                p.get("ActiveState").map(String::as_str).unwrap_or("?"),
                p.get("SubState").map(String::as_str).unwrap_or("?")
            )
        }
        Err(_) => "unknown".into(),
    }
}
