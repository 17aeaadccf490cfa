//! A worker's sandbox, read from the action's one declaration
//! (`firstline_proto::declare`: its role, who it runs as, its capabilities
//! and its view of the file system) and this agent's configuration (the
//! worker user, `[policy] run_as`, the plugins folder, `clean_temp_roots`,
//! `plugin_write_paths`). The resident derives it; the wire never sends it.
//!
//! Checks run as the unprivileged worker user; fixes keep the agent's user
//! (root where the admin runs it so) with only the capabilities they
//! declare and a Landlock view that lets them write only where the
//! configuration says. Plugins run as `[policy] run_as`, else as the worker
//! user, whatever their arguments say.

use super::sandbox::Sandbox;
use super::{Job, Kind};
use crate::checks::{self, Check, CheckContext, CheckError, MAX_CHECK_TIME};
use crate::fixes::{Fix, FixContext};
use crate::policy::Policy;
use firstline_proto::declare::{Declaration, RunsAs, View};
use std::path::PathBuf;

/// Address space of a worker.
pub const WORKER_MEMORY: u64 = 512 * 1024 * 1024;
/// Wall clock of a fix (a clean-up of a large folder takes a while).
pub const MAX_FIX_TIME: u64 = 300;
/// Time a worker gets beyond its action's own limit to report.
const GRACE_SECS: u64 = 5;
/// Workers run behind the resident (link, outbox, help socket) ...
pub const WORKER_NICE: i32 = 10;
/// ... and third-party programs (plugins) behind the agent's own checks.
pub const PLUGIN_NICE: i32 = 19;
/// Where `vacuum-journal` may write.
const JOURNAL: &[&str] = &["/var/log/journal", "/run/log/journal"];

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
    let declared = check.declare(args);
    let read_args = match declared.view {
        View::ArgPaths => arg_paths(check, args)?,
        _ => Vec::new(),
    };
    let timeout = MAX_CHECK_TIME.as_secs() + GRACE_SECS;
    let sandbox = Sandbox {
        read_args,
        ..sandbox(declared, &ctx.policy, user, &ctx.plugins_dir, timeout)
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
        timeout_secs: timeout,
    })
}

/// The job of fix `name` with `args` (the policy allowed it already; the
/// worker's own code checks its arguments against it again).
pub fn fix(name: &str, args: &[String], ctx: &FixContext) -> Result<Job, CheckError> {
    let fix = Fix::from_name(name).ok_or_else(|| crate::fixes::unknown(name))?;
    let timeout = MAX_FIX_TIME + GRACE_SECS;
    let sandbox = sandbox(fix.declare(), &ctx.policy, "", &ctx.scripts_dir, timeout);
    Ok(Job {
        kind: Kind::Fix,
        name: name.to_string(),
        args: args.to_vec(),
        dry_run: ctx.dry_run,
        plugins_dir: PathBuf::new(),
        scripts_dir: ctx.scripts_dir.clone(),
        policy: (*ctx.policy).clone(),
        sandbox,
        timeout_secs: timeout,
    })
}

/// The sandbox of a declaration on this agent. `programs`: the folder the
/// action's own programs come from (plugins, scripts).
fn sandbox(
    d: Declaration,
    policy: &Policy,
    worker_user: &str,
    programs: &std::path::Path,
    timeout: u64,
) -> Sandbox {
    let run_as = policy.run_as.clone();
    let (user, require_user) = match d.runs_as {
        RunsAs::WorkerUser => (Some(worker_user.to_string()), false),
        RunsAs::PluginUser => (
            run_as.clone().or(Some(worker_user.to_string())),
            run_as.is_some(),
        ),
        RunsAs::Agent => (None, false),
        RunsAs::ScriptUser => (run_as.clone(), run_as.is_some()),
    };
    let base = Sandbox {
        user,
        require_user,
        caps: d.caps.to_vec(),
        signals: d.signals,
        cpu_secs: timeout,
        memory: WORKER_MEMORY,
        nice: WORKER_NICE,
        ..Sandbox::default()
    };
    match d.view {
        View::System | View::ArgPaths => base,
        View::Plugins => Sandbox {
            read: vec![programs.to_path_buf()],
            exec: vec![programs.to_path_buf()],
            write: policy.plugin_write_paths.clone(),
            nice: PLUGIN_NICE,
            ..base
        },
        View::CleanTempRoots => Sandbox {
            write: policy.clean_temp_roots.clone(),
            ..base
        },
        View::Journal => Sandbox {
            write: JOURNAL.iter().map(PathBuf::from).collect(),
            ..base
        },
        View::Unrestricted => Sandbox {
            exec: vec![programs.to_path_buf()],
            unrestricted_files: true,
            ..base
        },
    }
}

/// The paths the arguments of a check declared [`View::ArgPaths`] name,
/// from its own clap definition.
fn arg_paths(check: Check, args: &[String]) -> Result<Vec<PathBuf>, CheckError> {
    let name = check.name();
    Ok(match check {
        Check::Du => vec![checks::parse_args::<checks::du::DuArgs>(name, args)?.path],
        Check::Http => checks::parse_args::<checks::http::HttpArgs>(name, args)?
            .ca
            .into_iter()
            .collect(),
        Check::Ping
        | Check::Dns
        | Check::Printer
        | Check::Disk
        | Check::Net
        | Check::Service
        | Check::Tcp
        | Check::Cpu
        | Check::Memory
        | Check::Load
        | Check::Plugin => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_that_reads_its_arguments_paths_names_them() {
        // A check declared `ArgPaths` whose extractor says nothing would
        // see none of what it was asked to read.
        let cases: &[(Check, &[&str])] = &[
            (Check::Du, &["/var"]),
            (Check::Http, &["https://h/", "--ca", "/x"]),
        ];
        for c in Check::ALL {
            if c.declare(&[]).view == View::ArgPaths {
                let args = cases
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, a)| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap_or_else(|| panic!("{c:?} reads argument paths: add a case here"));
                assert!(
                    !arg_paths(*c, &args).unwrap_or_default().is_empty(),
                    "{c:?}"
                );
            }
        }
    }

    #[test]
    fn checks_run_as_the_worker_user() {
        let ctx = CheckContext::default();
        for c in Check::ALL {
            let args: Vec<String> = match c {
                Check::Plugin => vec!["check_dummy".into(), "0".into()],
                Check::Ping => vec!["127.0.0.1".into()],
                Check::Dns => vec!["localhost".into()],
                Check::Tcp => vec!["127.0.0.1:1".into()],
                Check::Http => vec!["http://127.0.0.1:1/".into()],
                Check::Service => vec!["cups".into()],
                Check::Du => vec!["/var".into()],
                _ => vec![],
            };
            let job = check(c.name(), &args, &ctx, "nobody").unwrap();
            assert_eq!(job.sandbox.user.as_deref(), Some("nobody"), "{c:?}");
        }
    }
}
