//! `script NAME [ARGS…]`: an admin-installed executable from the agent's
//! scripts folder — a bare file name only (no `/`, no `..`), arguments as an
//! argv (never a shell), output captured and capped, a timeout, its rights
//! dropped like a plugin's ([`crate::process::run_confined`]: no inherited
//! capabilities, no_new_privs, `run_as`). The agent's policy must allow
//! scripts (`[policy] scripts = true`); the relay allows them to admins
//! only, also inside a runbook.

use super::{FixContext, COMMAND_TIMEOUT};
use crate::checks::plugin::check_name;
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};

#[derive(clap::Parser, Debug)]
#[command(
    name = "script",
    about = "Run an admin script from the agent's scripts folder"
)]
struct Args {
    /// File name in the scripts folder.
    name: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("script", args)?;
    check_name(&a.name).map_err(CheckError::Usage)?;
    let path = ctx.scripts_dir.join(&a.name);
    let target = std::iter::once(a.name.clone())
        .chain(a.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    if !path.is_file() {
        return Ok(CheckResult::new(
            "script",
            target,
            Status::Unknown,
            format!("no script {} in {}", a.name, ctx.scripts_dir.display()),
        ));
    }
    if ctx.dry_run {
        return Ok(super::planned(
            "script",
            &target,
            format!("run {} {}", path.display(), a.args.join(" ")),
        ));
    }
    ctx.progress.say(format!("running {}", path.display()));
    let run_as = ctx.policy.run_as.as_deref();
    let dir = Some(ctx.scripts_dir.as_path());
    match process::run_confined(&path, &a.args, dir, COMMAND_TIMEOUT, run_as).await {
        Ok(f) => {
            let status = if f.success() {
                Status::Ok
            } else {
                Status::Crit
            };
            let summary = format!(
                "{} exited {}: {}",
                a.name,
                f.status
                    .code()
                    .map_or("by signal".into(), |c| c.to_string()),
                f.reason()
            );
            let mut r = CheckResult::new("script", target, status, summary);
            r.changed = f
                .stdout
                .lines()
                .map(str::to_string)
                .filter(|l| !l.trim().is_empty())
                .take(50)
                .collect();
            Ok(r)
        }
        Err(e) => Ok(CheckResult::new("script", target, Status::Unknown, e)),
    }
}
