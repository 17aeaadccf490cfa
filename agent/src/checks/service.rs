//! `service UNIT [--timeout DURATION]`
//!
//! A systemd unit's state, read with `systemctl show` (no D-Bus client
//! needed, and the same view an admin gets). `active` is ok; `activating`,
//! `reloading` and `deactivating` warn; `inactive`, `failed` and a unit that
//! does not exist are crit. Where systemd is not the init system (containers,
//! this kind of machine) the answer is `unknown`, saying so.

use super::{parse_args, parse_duration, show_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const PROPERTIES: &str =
    "Id,LoadState,ActiveState,SubState,Description,Result,NRestarts,UnitFileState,ActiveEnterTimestamp";

#[derive(clap::Parser, Debug)]
#[command(name = "service", about = "State of a systemd unit (active, failed…)")]
pub struct ServiceArgs {
    /// Unit name; `.service` is implied (`ssh` = `ssh.service`).
    pub unit: String,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: ServiceArgs = parse_args("service", args)?;
    let unit = unit_name(&a.unit).map_err(CheckError::Usage)?;
    if let Some(why) = systemd_missing() {
        return Ok(CheckResult::new("service", &unit, Status::Unknown, why));
    }
    ctx.progress.say(format!("systemctl show {unit}"));
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args(["show", "--no-pager", "--property", PROPERTIES, "--", &unit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let out = match tokio::time::timeout(a.timeout, cmd.output()).await {
        Err(_) => {
            return Ok(CheckResult::new(
                "service",
                &unit,
                Status::Unknown,
                format!(
                    "systemctl did not answer within {}",
                    show_duration(a.timeout)
                ),
            ))
        }
        Ok(Err(e)) => {
            return Ok(CheckResult::new(
                "service",
                &unit,
                Status::Unknown,
                format!("cannot run systemctl: {e}"),
            ))
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Ok(CheckResult::new(
            "service",
            &unit,
            Status::Unknown,
            format!(
                "systemctl show failed: {}",
                err.lines().next().unwrap_or("no message").trim()
            ),
        ));
    }
    let props = parse_show(&String::from_utf8_lossy(&out.stdout));
    Ok(report(&unit, &props))
}

/// The unit name to ask for, refusing anything that is not a unit name (so it
/// can never be read as an option of systemctl).
pub fn unit_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && !text.starts_with('-')
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if !ok {
        return Err(format!("`{text}` is not a systemd unit name"));
    }
    Ok(if text.contains('.') {
        text.to_string()
    } else {
        format!("{text}.service")
    })
}

/// Why systemd cannot be asked here, if it cannot (sd_booted(3): the
/// directory /run/systemd/system exists only when systemd is PID 1).
pub fn systemd_missing() -> Option<String> {
    if Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let pid1 = std::fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Some(format!(
        "systemd is not running on this machine (PID 1 is {pid1}), so unit states cannot be read"
    ))
}

/// `Key=Value` lines of `systemctl show`.
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn report(unit: &str, p: &BTreeMap<String, String>) -> CheckResult {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let (load, active, sub) = (get("LoadState"), get("ActiveState"), get("SubState"));
    let restarts: Option<f64> = get("NRestarts").parse().ok();
    let mut r = if load == "not-found" {
        CheckResult::new(
            "service",
            unit,
            Status::Crit,
            format!("{unit} does not exist on this machine"),
        )
    } else {
        let status = match active {
            "active" => Status::Ok,
            "activating" | "reloading" | "deactivating" | "refreshing" => Status::Warn,
            "inactive" | "failed" => Status::Crit,
            _ => Status::Unknown,
        };
        let mut summary = format!("{unit} is {active}");
        if !sub.is_empty() && sub != active {
            summary.push_str(&format!(" ({sub})"));
        }
        let desc = get("Description");
        if !desc.is_empty() && desc != unit {
            summary.push_str(&format!(" — {desc}"));
        }
        let result = get("Result");
        if active == "failed" && !result.is_empty() && result != "success" {
            summary.push_str(&format!("; last result: {result}"));
        }
        if get("UnitFileState") == "disabled" {
            summary.push_str("; not enabled at boot");
        }
        if let Some(n) = restarts.filter(|n| *n > 0.0) {
            summary.push_str(&format!("; restarted {n} times"));
        }
        CheckResult::new("service", unit, status, summary)
    };
    r = r.metric("active", if active == "active" { 1.0 } else { 0.0 });
    if let Some(n) = restarts {
        r = r.metric("restarts", n);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("ssh").unwrap(), "ssh.service");
        assert_eq!(unit_name("cups.socket").unwrap(), "cups.socket");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert!(unit_name("--all").is_err());
        assert!(unit_name("a b").is_err());
        assert!(unit_name("x;reboot").is_err());
        assert!(unit_name("").is_err());
    }

    #[test]
    fn states_from_systemctl_show() {
        let active = parse_show(
            "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\n\
             Description=OpenBSD Secure Shell server\nResult=success\nNRestarts=0\nUnitFileState=enabled\n",
        );
        let r = report("ssh.service", &active);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(
            r.summary,
            "ssh.service is active (running) — OpenBSD Secure Shell server"
        );

        let failed = parse_show(
            "LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nNRestarts=3\n",
        );
        let r = report("app.service", &failed);
        assert_eq!(r.status, Status::Crit);
        assert!(
            r.summary.contains("last result: exit-code"),
            "{}",
            r.summary
        );
        assert_eq!(r.metrics["restarts"], 3.0);

        let missing = parse_show("LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        let r = report("nope.service", &missing);
        assert_eq!(r.status, Status::Crit);
        assert!(r.summary.contains("does not exist"));

        let starting = parse_show("LoadState=loaded\nActiveState=activating\nSubState=start\n");
        assert_eq!(report("x.service", &starting).status, Status::Warn);
    }

    #[tokio::test]
    async fn without_systemd_the_answer_is_unknown() {
        if Path::new("/run/systemd/system").is_dir() {
            // A machine booted with systemd: the real path is taken instead.
            return;
        }
        let r = run(&["ssh".into()], &CheckContext::default())
            .await
            .unwrap();
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.summary.contains("systemd is not running"),
            "{}",
            r.summary
        );
        assert!(r.summary.contains("PID 1 is"), "{}", r.summary);
    }
}
