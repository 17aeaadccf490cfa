//! `restart-service UNIT`: `systemctl restart UNIT`, then report the state
//! the unit reached. Unknown where systemd is not running.
//!
//! Only services the agent's `[policy] services` lists may be restarted
//! (`cups` means `cups.service`); targets, sockets, mounts and any other
//! kind of unit never are. The policy is checked before anything else, dry
//! runs included.

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
    allowed(ctx, &unit)?;
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

/// Ok, or the policy's refusal, which always names the `[policy]` key.
fn allowed(ctx: &FixContext, unit: &str) -> Result<(), CheckError> {
    ctx.policy.allows_service(unit).map_err(|why| {
        CheckError::Refused(if why.contains("[policy]") {
            why
        } else {
            format!("{why} ([policy] services in agent.toml)")
        })
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::sync::Arc;

    fn ctx(dry_run: bool, services: &[&str]) -> FixContext {
        FixContext {
            progress: Default::default(),
            scripts_dir: "/nonexistent".into(),
            dry_run,
            policy: Arc::new(Policy {
                services: services.iter().map(|s| s.to_string()).collect(),
                ..Policy::default()
            }),
            runner: Default::default(),
        }
    }

    #[tokio::test]
    async fn only_listed_services_never_targets() {
        // Dry runs first: the policy is checked before the dry run
        // matters, so a real run is only tried with harmless names once the
        // dry runs were refused.
        let dangerous = [
            "poweroff.target",
            "reboot.target",
            "cups.socket",
            "home.mount",
            "systemd-journald",
            "cups@x",
        ];
        let harmless = ["firstline-no-such.target", "cups@firstline-no-such"];
        for (dry_run, units) in [(true, &dangerous[..]), (false, &harmless[..])] {
            let c = ctx(dry_run, &["cups", "sshd.service"]);
            for &unit in units {
                match run(&[unit.to_string()], &c).await {
                    Err(CheckError::Refused(why)) => {
                        assert!(why.contains("[policy] services"), "{unit}: {why}")
                    }
                    other => panic!("{unit} not refused: {other:?}"),
                }
            }
        }
        // Listed ones pass the policy (whatever systemd then says).
        let c = ctx(true, &["cups", "sshd.service"]);
        for unit in ["cups", "cups.service", "sshd"] {
            let r = run(&[unit.to_string()], &c).await;
            assert!(r.is_ok(), "{unit}: {r:?}");
        }
        let r = run(&["-x".to_string()], &c).await;
        assert!(matches!(r, Err(CheckError::Usage(_))), "{r:?}");
    }
}
