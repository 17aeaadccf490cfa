//! `vacuum-journal [--keep 200M]`: shrink the systemd journal to a size
//! with `journalctl --vacuum-size`.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};

#[derive(clap::Parser, Debug)]
#[command(name = "vacuum-journal", about = "Shrink the systemd journal")]
struct Args {
    /// Size to keep, as journalctl understands it (200M, 1G…).
    #[arg(long, default_value = "200M")]
    keep: String,
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("vacuum-journal", args)?;
    let valid = a.keep.len() > 1
        && a.keep[..a.keep.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_digit())
        && a.keep.ends_with(['K', 'M', 'G', 'T']);
    if !valid {
        return Err(CheckError::Usage(format!(
            "--keep {}: use a size such as 200M or 1G",
            a.keep
        )));
    }
    let Some(journalctl) = process::which("journalctl") else {
        return Ok(CheckResult::new(
            "vacuum-journal",
            "journal",
            Status::Unknown,
            "journalctl is not installed: no systemd journal here",
        ));
    };
    let usage = run_journalctl(&journalctl, &["--disk-usage"]).await;
    let usage = usage.map(|u| u.trim().to_string()).unwrap_or_else(|e| e);
    if ctx.dry_run {
        return Ok(planned(
            "vacuum-journal",
            "journal",
            format!("run `journalctl --vacuum-size={}` ({usage})", a.keep),
        ));
    }
    ctx.progress
        .say(format!("vacuuming the journal down to {}", a.keep));
    match run_journalctl(&journalctl, &[&format!("--vacuum-size={}", a.keep)]).await {
        Ok(out) => {
            let freed = out
                .lines()
                .rev()
                .find(|l| l.contains("freed"))
                .unwrap_or("done")
                .trim()
                .to_string();
            Ok(done(
                "vacuum-journal",
                "journal",
                format!("{freed} (before: {usage})"),
                vec![format!("journal vacuumed to {}", a.keep)],
            ))
        }
        Err(e) => Ok(failed("vacuum-journal", "journal", e)),
    }
}

async fn run_journalctl(journalctl: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let f = process::run(journalctl, &args, None, COMMAND_TIMEOUT).await?;
    if f.success() {
        Ok(format!("{}{}", f.stdout, f.stderr))
    } else {
        Err(format!("journalctl failed: {}", f.reason()))
    }
}
