//! What each action may hold in its worker: its user, its capabilities, the
//! paths its arguments may name, and its limits — one entry per check and
//! per fix, matched without a wildcard over [`crate::checks::Check`] and
//! [`crate::fixes::Fix`], so a new action does not compile until it says
//! what it needs.
//!
//! Checks run as the unprivileged worker user; fixes keep the agent's user
//! (root where the admin runs it so) with only the capabilities they need
//! and a Landlock view that lets them write only where the configuration
//! says (`clean_temp_roots`, the journal). Plugins run as `[policy] run_as`,
//! else as the worker user, whatever their arguments say.

use super::sandbox::{Cap, Sandbox};
use super::{Job, Kind};
use crate::checks::{self, Check, CheckContext, CheckError, MAX_CHECK_TIME};
use crate::fixes::{Fix, FixContext};
use std::path::PathBuf;

/// Address space of a worker.
pub const WORKER_MEMORY: u64 = 512 * 1024 * 1024;
/// Wall clock of a fix (a clean-up of a large folder takes a while).
pub const MAX_FIX_TIME: u64 = 300;
/// Time a worker gets beyond its action's own limit to report.
const GRACE_SECS: u64 = 5;

/// The job of check `name` with `args`: its arguments were parsed here
/// (usage errors come back at once), its sandbox derived from its
/// declaration.
pub fn check(
    name: &str,
    args: &[String],
    ctx: &CheckContext,
    user: &str,
) -> Result<Job, CheckError> {
    let check = Check::from_name(name).ok_or_else(|| CheckError::Unknown(name.to_string()))?;
    checks::validate_args(name, args)?;
    let worker_user = Some(user.to_string());
    let base = Sandbox {
        user: worker_user.clone(),
        cpu_secs: MAX_CHECK_TIME.as_secs() + GRACE_SECS,
        memory: WORKER_MEMORY,
        ..Sandbox::default()
    };
    let sandbox = match check {
        Check::Ping => Sandbox {
            caps: vec![Cap::NetRaw],
            ..base
        },
        Check::Du => {
            let a: checks::du::DuArgs = checks::parse_args(name, args)?;
            Sandbox {
                // Read every folder below PATH. Not CAP_SYS_PTRACE: under
                // Landlock no capability lets a worker read other
                // processes' `/proc/PID/fd`, so the space held by deleted
                // open files is measured instead (used − walked) and the
                // holders named only where they can be seen.
                caps: vec![Cap::DacReadSearch],
                read_args: vec![a.path],
                ..base
            }
        }
        Check::Http => {
            let a: checks::http::HttpArgs = checks::parse_args(name, args)?;
            Sandbox {
                read_args: a.ca.into_iter().collect(),
                ..base
            }
        }
        Check::Plugin => Sandbox {
            user: ctx.policy.run_as.clone().or(worker_user),
            require_user: ctx.policy.run_as.is_some(),
            read: vec![ctx.plugins_dir.clone()],
            exec: vec![ctx.plugins_dir.clone()],
            write: ctx.policy.plugin_write_paths.clone(),
            ..base
        },
        Check::Dns
        | Check::Printer
        | Check::Disk
        | Check::Net
        | Check::Service
        | Check::Tcp
        | Check::Cpu
        | Check::Memory
        | Check::Load => base,
    };
    Ok(Job {
        kind: Kind::Check,
        name: name.to_string(),
        args: args.to_vec(),
        dry_run: false,
        plugins_dir: ctx.plugins_dir.clone(),
        scripts_dir: PathBuf::new(),
        policy: (*ctx.policy).clone(),
        sandbox,
        timeout_secs: MAX_CHECK_TIME.as_secs() + GRACE_SECS,
    })
}

/// The job of fix `name` with `args` (the policy allowed it already; the
/// worker's own code checks its arguments against it again).
pub fn fix(name: &str, args: &[String], ctx: &FixContext) -> Result<Job, CheckError> {
    let fix = Fix::from_name(name).ok_or_else(|| crate::fixes::unknown(name))?;
    let base = Sandbox {
        user: None,
        cpu_secs: MAX_FIX_TIME + GRACE_SECS,
        memory: WORKER_MEMORY,
        ..Sandbox::default()
    };
    let sandbox = match fix {
        Fix::CleanTemp => Sandbox {
            caps: vec![Cap::DacOverride, Cap::DacReadSearch, Cap::Fowner],
            write: ctx.policy.clean_temp_roots.clone(),
            ..base
        },
        Fix::VacuumJournal => Sandbox {
            caps: vec![Cap::DacOverride],
            write: vec!["/var/log/journal".into(), "/run/log/journal".into()],
            ..base
        },
        // A dnsmasq of another user is told to reload by a signal.
        Fix::FlushDns => Sandbox {
            caps: vec![Cap::Kill],
            signals: true,
            ..base
        },
        // D-Bus to systemd and the CUPS socket: no capability, no file.
        Fix::RestartService | Fix::ResumePrinter | Fix::CancelPrintJobs => base,
        // The admin's own scripts: as `run_as` (else the agent's user),
        // with no capability; what they write is the admin's business.
        Fix::Script => Sandbox {
            user: ctx.policy.run_as.clone(),
            require_user: ctx.policy.run_as.is_some(),
            exec: vec![ctx.scripts_dir.clone()],
            unrestricted_files: true,
            ..base
        },
    };
    Ok(Job {
        kind: Kind::Fix,
        name: name.to_string(),
        args: args.to_vec(),
        dry_run: ctx.dry_run,
        plugins_dir: PathBuf::new(),
        scripts_dir: ctx.scripts_dir.clone(),
        policy: (*ctx.policy).clone(),
        sandbox,
        timeout_secs: MAX_FIX_TIME + GRACE_SECS,
    })
}
