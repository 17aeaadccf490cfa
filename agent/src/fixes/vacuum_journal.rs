//! `vacuum-journal [--keep 200M]`: shrink the systemd journal to a size
//! with `journalctl --vacuum-size`.
//!
//! `--keep` is a size in powers of 1024 (`512K`, `200M`, `1G`, `1T`); below
//! the agent's `[policy] journal_keep_min` it is refused, dry runs
//! included, before anything runs.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::{parse_args, CheckError};
use crate::policy::parse_size;
use crate::process;
use firstline_proto::{CheckResult, Status};

#[derive(clap::Parser, Debug)]
#[command(name = "vacuum-journal", about = "Shrink the systemd journal")]
struct Args {
    /// Size to keep (200M, 1G…); never below the agent's
    /// `[policy] journal_keep_min`.
    #[arg(long, default_value = "200M")]
    keep: String,
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("vacuum-journal", args)?;
    let keep = parse_size(&a.keep).map_err(|e| CheckError::Usage(format!("--keep: {e}")))?;
    let min = ctx.policy.journal_keep_min_bytes().map_err(|e| {
        CheckError::Refused(format!(
            "this agent's [policy] journal_keep_min is not a size: {e}"
        ))
    })?;
    if keep < min {
        return Err(CheckError::Refused(format!(
            "--keep {}: this agent's policy keeps at least {} of journal ([policy] journal_keep_min in agent.toml)",
            a.keep, ctx.policy.journal_keep_min
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::sync::Arc;

    fn ctx(dry_run: bool, min: &str) -> FixContext {
        FixContext {
            progress: Default::default(),
            scripts_dir: "/nonexistent".into(),
            dry_run,
            policy: Arc::new(Policy {
                journal_keep_min: min.into(),
                ..Policy::default()
            }),
            runner: Default::default(),
        }
    }

    fn keep(size: &str) -> Vec<String> {
        vec!["--keep".into(), size.into()]
    }

    #[tokio::test]
    async fn keep_is_bounded_by_the_policy() {
        for dry_run in [true, false] {
            let c = ctx(dry_run, "100M");
            for small in ["1K", "0M", "99M", "102399K"] {
                match run(&keep(small), &c).await {
                    Err(CheckError::Refused(why)) => assert!(
                        why.contains("at least 100M") && why.contains("[policy] journal_keep_min"),
                        "{small}: {why}"
                    ),
                    other => panic!("--keep {small} not refused: {other:?}"),
                }
            }
            for bad in ["", "1", "1k", "-1M", "1.5G", "200MB"] {
                let r = run(&keep(bad), &c).await;
                assert!(matches!(r, Err(CheckError::Usage(_))), "{bad}: {r:?}");
            }
        }
        // At or above the bound: accepted (dry run: nothing is vacuumed).
        let c = ctx(true, "100M");
        for ok in ["100M", "102400K", "200M", "1G"] {
            let r = run(&keep(ok), &c).await;
            assert!(r.is_ok(), "{ok}: {r:?}");
        }
        assert!(run(&[], &c).await.is_ok(), "the default 200M is allowed");
        let tight = ctx(true, "1G");
        assert!(matches!(
            run(&[], &tight).await,
            Err(CheckError::Refused(_))
        ));
    }
}
