//! `resume-printer [URI]` and `cancel-print-jobs [URI]`: the two printer
//! fixes every L1 technician knows, through the CUPS tools (`cupsenable`,
//! `cancel -a`) that speak IPP to the scheduler with its own local
//! authentication. The URI is `ipp://HOST:PORT/printers/QUEUE`; without one,
//! the CUPS default destination.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};

#[derive(clap::Parser, Debug)]
#[command(about = "A CUPS print queue")]
struct Args {
    /// The CUPS scheduler HOST:PORT for a queue given by name (and for the
    /// default destination).
    #[arg(long)]
    server: Option<String>,
    /// ipp://HOST:PORT/printers/QUEUE, or a queue name of the scheduler
    /// (default: its default destination).
    uri: Option<String>,
}

impl Args {
    /// The queue this fix acts on, if named (a URI or a queue name).
    fn queue(&self) -> Result<Option<Queue>, CheckError> {
        match &self.uri {
            None => Ok(None),
            Some(u) if u.contains("://") => parse_uri(u).map(Some).map_err(CheckError::Usage),
            Some(name) if !name.is_empty() && !name.contains(['/', ' ']) => Ok(Some(Queue {
                server: self.server.clone(),
                name: name.clone(),
            })),
            Some(other) => Err(CheckError::Usage(format!(
                "`{other}` is neither an ipp:// URI nor a queue name"
            ))),
        }
    }
}

/// Where a queue lives: the scheduler (`-h HOST:PORT`) and its name.
#[derive(Debug, PartialEq)]
pub struct Queue {
    pub server: Option<String>,
    pub name: String,
}

/// Split an IPP URI into scheduler and queue name.
pub fn parse_uri(uri: &str) -> Result<Queue, String> {
    let rest = uri
        .strip_prefix("ipp://")
        .or_else(|| uri.strip_prefix("ipps://"))
        .ok_or_else(|| format!("`{uri}` is not an ipp:// URI"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{uri}` has no queue path"))?;
    let name = path
        .strip_prefix("printers/")
        .or_else(|| path.strip_prefix("classes/"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| format!("`{uri}`: expected …/printers/QUEUE"))?;
    Ok(Queue {
        server: Some(host.to_string()),
        name: name.to_string(),
    })
}

pub async fn resume(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("resume-printer", args)?;
    queue_command(ctx, "resume-printer", &a, "cupsenable", &[], "resume").await
}

pub async fn cancel(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("cancel-print-jobs", args)?;
    queue_command(
        ctx,
        "cancel-print-jobs",
        &a,
        "cancel",
        &["-a"],
        "cancel every job of",
    )
    .await
}

async fn queue_command(
    ctx: &FixContext,
    action: &str,
    a: &Args,
    tool: &str,
    flags: &[&str],
    verb: &str,
) -> Result<CheckResult, CheckError> {
    let uri = a.uri.as_deref().filter(|u| !u.is_empty());
    let Some(program) = process::which(tool) else {
        return Ok(CheckResult::new(
            action,
            uri.unwrap_or("default printer"),
            Status::Unknown,
            format!("`{tool}` is not installed (Debian package cups-client)"),
        ));
    };
    let queue = match a.queue()? {
        Some(q) => q,
        None => match default_queue(a.server.as_deref()).await {
            Ok(q) => q,
            Err(e) => {
                return Ok(CheckResult::new(
                    action,
                    "default printer",
                    Status::Unknown,
                    e,
                ))
            }
        },
    };
    let target = uri
        .map(str::to_string)
        .unwrap_or_else(|| queue.name.clone());
    let mut argv: Vec<String> = Vec::new();
    if let Some(server) = &queue.server {
        argv.extend(["-h".to_string(), server.clone()]);
    }
    argv.extend(flags.iter().map(|f| f.to_string()));
    argv.push(queue.name.clone());
    if ctx.dry_run {
        return Ok(planned(
            action,
            &target,
            format!("{verb} queue {} (`{tool} {}`)", queue.name, argv.join(" ")),
        ));
    }
    ctx.progress.say(format!("{tool} {}", argv.join(" ")));
    match process::run(&program, &argv, None, COMMAND_TIMEOUT).await {
        Ok(f) if f.success() => Ok(done(
            action,
            &target,
            format!("{verb} queue {}: done", queue.name),
            vec![format!("{tool} {}", argv.join(" "))],
        )),
        Ok(f) => Ok(failed(
            action,
            &target,
            format!("{tool} failed: {}", f.reason()),
        )),
        Err(e) => Ok(failed(action, &target, e)),
    }
}

/// The CUPS default destination (`lpstat -d`).
async fn default_queue(server: Option<&str>) -> Result<Queue, String> {
    let lpstat =
        process::which("lpstat").ok_or("`lpstat` is not installed (Debian package cups-client)")?;
    let mut argv: Vec<String> = Vec::new();
    if let Some(s) = server {
        argv.extend(["-h".into(), s.into()]);
    }
    argv.push("-d".into());
    let f = process::run(&lpstat, &argv, None, COMMAND_TIMEOUT).await?;
    f.stdout
        .rsplit_once(':')
        .map(|(_, n)| n.trim())
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .map(|n| Queue {
            server: server.map(str::to_string),
            name: n.to_string(),
        })
        .ok_or_else(|| format!("no default printer: {}", f.reason()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("ipp://127.0.0.1:631/printers/q1").unwrap(),
            Queue {
                server: Some("127.0.0.1:631".into()),
                name: "q1".into()
            }
        );
        assert!(parse_uri("http://x/printers/q").is_err());
        assert!(parse_uri("ipp://h/printers/").is_err());
        assert!(parse_uri("ipp://h/jobs/3").is_err());
    }
}
