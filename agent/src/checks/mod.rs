//! The L1 checks, one file each, dispatched by name.
//!
//! A check's arguments are exactly its command line (`disk /var --warn 80`),
//! parsed with clap, so the same words work locally (`firstline-agent check
//! disk /var`), remotely (`firstline run AGENT disk /var`) and in a
//! `[[monitor]]` table. Every check returns one [`CheckResult`]; this module
//! stamps `duration_ms` and `at`, and bounds every check by a timeout so a
//! hung target never hangs the agent.

pub mod disk;

use firstline_proto::{CheckResult, Status};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Hard upper bound on any check, whatever its own `--timeout` says.
pub const MAX_CHECK_TIME: Duration = Duration::from_secs(120);

/// Names of the checks this agent offers (also sent in `hello`).
pub const NAMES: &[&str] = &["disk"];

/// Why a check could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("unknown check `{0}` (this agent offers: {list})", list = NAMES.join(", "))]
    Unknown(String),
    /// Bad arguments; the text is clap's message (or the check's help).
    #[error("{0}")]
    Usage(String),
}

/// Where a running check reports progress lines (streamed to the console).
#[derive(Clone, Default)]
pub struct Progress(Option<mpsc::UnboundedSender<String>>);

impl Progress {
    pub fn new(tx: mpsc::UnboundedSender<String>) -> Self {
        Progress(Some(tx))
    }

    pub fn say(&self, text: impl Into<String>) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(text.into());
        }
    }
}

/// What a check may need besides its arguments.
#[derive(Clone)]
pub struct CheckContext {
    /// Where progress lines go.
    pub progress: Progress,
    /// Folder of Nagios-compatible plugins (`plugin NAME`).
    pub plugins_dir: PathBuf,
}

impl Default for CheckContext {
    fn default() -> Self {
        CheckContext {
            progress: Progress::default(),
            plugins_dir: PathBuf::from(crate::config::DEFAULT_PLUGINS_DIR),
        }
    }
}

impl CheckContext {
    /// The same context reporting progress to `progress`.
    pub fn with_progress(&self, progress: Progress) -> CheckContext {
        CheckContext {
            progress,
            ..self.clone()
        }
    }
}

/// Run one check by name.
pub async fn run(
    name: &str,
    args: &[String],
    ctx: &CheckContext,
) -> Result<CheckResult, CheckError> {
    let started = Instant::now();
    let work = async {
        match name {
            "disk" => disk::run(args, ctx).await,
            other => Err(CheckError::Unknown(other.to_string())),
        }
    };
    let mut result = match tokio::time::timeout(MAX_CHECK_TIME, work).await {
        Ok(r) => r?,
        Err(_) => CheckResult::new(
            name,
            args.join(" "),
            Status::Unknown,
            format!("{name} did not finish within {}s", MAX_CHECK_TIME.as_secs()),
        ),
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.at = now_rfc3339();
    Ok(result)
}

/// Parse a check's arguments with its clap definition.
pub fn parse_args<T: clap::Parser>(check: &str, args: &[String]) -> Result<T, CheckError> {
    T::try_parse_from(std::iter::once(check.to_string()).chain(args.iter().cloned()))
        .map_err(|e| CheckError::Usage(e.render().to_string().trim_end().to_string()))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `ok`/`warn`/`crit` of a value against "higher is worse" thresholds.
pub fn grade(value: f64, warn: f64, crit: f64) -> Status {
    if value >= crit {
        Status::Crit
    } else if value >= warn {
        Status::Warn
    } else {
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_check_and_bad_args() {
        let p = CheckContext::default();
        assert_eq!(
            run("teleport", &[], &p).await.unwrap_err(),
            CheckError::Unknown("teleport".into())
        );
        let err = run("disk", &["--warn".into(), "lots".into()], &p)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CheckError::Usage(ref m) if m.contains("lots")),
            "{err}"
        );
    }

    #[test]
    fn grading() {
        assert_eq!(grade(79.9, 80.0, 90.0), Status::Ok);
        assert_eq!(grade(80.0, 80.0, 90.0), Status::Warn);
        assert_eq!(grade(95.0, 80.0, 90.0), Status::Crit);
    }
}
