//! `flush-dns`: empty whichever DNS cache this machine runs —
//! systemd-resolved (`resolvectl flush-caches`), nscd (`nscd -i hosts`),
//! dnsmasq (SIGHUP clears its cache) — and say which.

use super::{done, failed, planned, FixContext, COMMAND_TIMEOUT};
use crate::checks::{parse_args, CheckError};
use crate::process;
use firstline_proto::{CheckResult, Status};
use std::path::Path;

#[derive(clap::Parser, Debug)]
#[command(
    name = "flush-dns",
    about = "Flush the local DNS cache (systemd-resolved, nscd or dnsmasq)"
)]
struct Args {}

/// A cache found on this machine and how to flush it.
enum Cache {
    Resolved(std::path::PathBuf),
    Nscd(std::path::PathBuf),
    Dnsmasq(Vec<i32>),
}

impl Cache {
    fn describe(&self) -> String {
        match self {
            Cache::Resolved(_) => "systemd-resolved (resolvectl flush-caches)".into(),
            Cache::Nscd(_) => "nscd (nscd -i hosts)".into(),
            Cache::Dnsmasq(pids) => format!("dnsmasq (SIGHUP to pid {pids:?})"),
        }
    }
}

fn present() -> Vec<Cache> {
    let mut found = Vec::new();
    if Path::new("/run/systemd/resolve/io.systemd.Resolve").exists() {
        if let Some(p) = process::which("resolvectl") {
            found.push(Cache::Resolved(p));
        }
    }
    if !pids_of("nscd").is_empty() {
        if let Some(p) = process::which("nscd") {
            found.push(Cache::Nscd(p));
        }
    }
    let dnsmasq = pids_of("dnsmasq");
    if !dnsmasq.is_empty() {
        found.push(Cache::Dnsmasq(dnsmasq));
    }
    found
}

/// Pids of processes whose command name is `name` (from /proc).
fn pids_of(name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let _: Args = parse_args("flush-dns", args)?;
    let caches = present();
    if caches.is_empty() {
        return Ok(CheckResult::new(
            "flush-dns",
            "local DNS cache",
            Status::Ok,
            "no DNS cache runs on this machine (systemd-resolved, nscd, dnsmasq): nothing to flush",
        ));
    }
    let names: Vec<String> = caches.iter().map(Cache::describe).collect();
    if ctx.dry_run {
        return Ok(planned(
            "flush-dns",
            "local DNS cache",
            format!("flush {}", names.join(", ")),
        ));
    }
    let mut changed = Vec::new();
    for cache in &caches {
        ctx.progress.say(format!("flushing {}", cache.describe()));
        let outcome = match cache {
            Cache::Resolved(p) => command(p, &["flush-caches"]).await,
            Cache::Nscd(p) => command(p, &["-i", "hosts"]).await,
            Cache::Dnsmasq(pids) => pids.iter().try_for_each(|pid| {
                let pid =
                    rustix::process::Pid::from_raw(*pid).ok_or_else(|| "bad pid".to_string())?;
                rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                    .map_err(|e| e.to_string())
            }),
        };
        match outcome {
            Ok(()) => changed.push(format!("flushed {}", cache.describe())),
            Err(e) => {
                return Ok(failed(
                    "flush-dns",
                    "local DNS cache",
                    format!("{}: {e}", cache.describe()),
                ))
            }
        }
    }
    Ok(done(
        "flush-dns",
        "local DNS cache",
        format!("flushed {}", names.join(", ")),
        changed,
    ))
}

async fn command(program: &Path, args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let f = process::run(program, &args, None, COMMAND_TIMEOUT).await?;
    if f.success() {
        Ok(())
    } else {
        Err(f.reason())
    }
}
