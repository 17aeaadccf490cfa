//! The standard L1 fixes, one file each, dispatched by name.
//!
//! Every fix is safe to press twice (idempotent), has a dry run that changes
//! nothing and says what it would do, and reports in the check result shape
//! plus `changed` (what it did). Whether a fix may run at all is decided
//! before, by the agent's [`crate::policy`].

pub mod clean_temp;
pub mod flush_dns;
pub mod printer_queue;
pub mod restart_service;
pub mod script;
pub mod vacuum_journal;

use crate::checks::{now_rfc3339, CheckError, Progress};
use firstline_proto::{CheckResult, Status};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The built-in fixes (`script` is separate: admin scripts, off by default).
pub const BUILTIN: &[&str] = &[
    "flush-dns",
    "restart-service",
    "resume-printer",
    "cancel-print-jobs",
    "clean-temp",
    "vacuum-journal",
];

/// Every fix, declared once (its role, user, capabilities and view) in
/// `firstline_proto::declare`.
pub use firstline_proto::declare::Fix;

/// Time any command a fix runs may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a fix may need besides its arguments.
#[derive(Clone)]
pub struct FixContext {
    pub progress: Progress,
    pub scripts_dir: PathBuf,
    pub dry_run: bool,
    /// This machine's wall: what each fix may touch, and as whom scripts run.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// In a sandboxed worker (the daemon) or in this process.
    pub runner: crate::worker::Runner,
}

/// Whether `action` names a fix: a built-in one or `script`.
pub fn known(action: &str) -> Result<(), CheckError> {
    if action == "script" || BUILTIN.contains(&action) {
        Ok(())
    } else {
        Err(unknown(action))
    }
}

/// The usage error of an unknown fix name: it lists the fixes.
pub(crate) fn unknown(action: &str) -> CheckError {
    CheckError::Usage(format!(
        "unknown fix `{action}` (built-in: {}, or `script NAME` for the admin's scripts)",
        BUILTIN.join(", ")
    ))
}

/// Run one fix by name (the policy was checked by the caller): in a worker
/// where the context says so (`crate::worker`), else here.
pub async fn run(
    action: &str,
    args: &[String],
    ctx: &FixContext,
) -> Result<CheckResult, CheckError> {
    match &ctx.runner {
        crate::worker::Runner::Worker(w) => {
            let job = crate::worker::declare::fix(action, args, ctx)?;
            crate::worker::run(w, job, &ctx.progress).await
        }
        crate::worker::Runner::InProcess => run_here(action, args, ctx).await,
    }
}

/// Run one fix in this process.
async fn run_here(
    action: &str,
    args: &[String],
    ctx: &FixContext,
) -> Result<CheckResult, CheckError> {
    let started = Instant::now();
    let mut result = match action {
        "flush-dns" => flush_dns::run(args, ctx).await?,
        "restart-service" => restart_service::run(args, ctx).await?,
        "resume-printer" => printer_queue::resume(args, ctx).await?,
        "cancel-print-jobs" => printer_queue::cancel(args, ctx).await?,
        "clean-temp" => clean_temp::run(args, ctx).await?,
        "vacuum-journal" => vacuum_journal::run(args, ctx).await?,
        "script" => script::run(args, ctx).await?,
        other => return Err(unknown(other)),
    };
    if ctx.dry_run {
        result.metrics.insert("dry_run".into(), 1.0);
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.at = now_rfc3339();
    Ok(result)
}

/// The result of a dry run: nothing changed, `plan` says what would be.
pub fn planned(action: &str, target: &str, plan: impl Into<String>) -> CheckResult {
    CheckResult::new(
        action,
        target,
        Status::Ok,
        format!("dry run: would {}", plan.into()),
    )
}

/// A fix that did something.
pub fn done(
    action: &str,
    target: &str,
    summary: impl Into<String>,
    changed: Vec<String>,
) -> CheckResult {
    let mut r = CheckResult::new(action, target, Status::Ok, summary);
    r.changed = changed;
    r
}

/// A fix that could not do its job.
pub fn failed(action: &str, target: &str, why: impl Into<String>) -> CheckResult {
    CheckResult::new(action, target, Status::Crit, why)
}
