//! Every check, plugin, fix and runbook step the agent serves runs in a
//! **worker**: a fresh process of the agent's own binary that puts up its
//! walls ([`sandbox`]) before it reads a single argument, does the one
//! action, writes its result on a pipe and exits.
//!
//! Why: the agent is the process that holds the link, the outbox, the
//! identity and (often) root. Every argument a request carries — a path, a
//! URL, a plugin option — is interpreted by some code, and every review found
//! one more argument nobody had enumerated (`--ca /dev/urandom`,
//! `check_dig -A "-f /etc/shadow"`). In a worker, whatever an argument makes
//! the code do, it does it as an unprivileged user with only the declared
//! capabilities, under `no_new_privs`, inside a Landlock view of the paths
//! the action declares ([`declare`]), with CPU, memory, file-size and process
//! limits, and a wall clock the agent enforces by killing the worker's whole
//! process group. A worker that hangs, spins or balloons costs its own
//! request; the resident answers the next one at once.
//!
//! One way for every caller: [`crate::checks::run`] and [`crate::fixes::run`]
//! go through [`Runner`], so relay requests, runbook steps, monitors,
//! central monitors and `firstline-help` runs all take this path. Local
//! commands run by a person on the machine (`firstline-agent check`,
//! `firstline-agent runbook`) run in-process, with that person's rights.

pub mod child;
pub mod declare;
pub mod sandbox;

use crate::checks::{CheckError, Progress};
use crate::policy::Policy;
use firstline_proto::{CheckResult, Status};
use sandbox::Sandbox;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The hidden first argument that makes a binary a worker.
pub const WORKER_ARG: &str = "__firstline-worker";

/// Longest line a worker may write (a result is at most a frame).
const MAX_LINE: usize = 1024 * 1024 + 4096;

/// How actions run.
#[derive(Debug, Clone, Default)]
pub enum Runner {
    /// In this process, with its rights: local commands and unit tests.
    #[default]
    InProcess,
    /// In a sandboxed worker process (the daemon).
    Worker(Arc<Settings>),
}

/// What the resident needs to start workers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The binary to start (`/proc/self/exe`: the very version running).
    pub exe: PathBuf,
    /// The unprivileged user checks run as when the agent is root.
    pub user: String,
}

impl Runner {
    /// Workers of this very binary, running as `user`.
    pub fn worker(user: String) -> Runner {
        Runner::Worker(Arc::new(Settings {
            exe: PathBuf::from("/proc/self/exe"),
            user,
        }))
    }
}

/// The worker user when `agent.toml` names none: the packages' system user
/// when it exists, else `nobody`.
pub fn default_user() -> String {
    match nix::unistd::User::from_name("firstline-agent") {
        Ok(Some(_)) => "firstline-agent".into(),
        _ => "nobody".into(),
    }
}

/// A check or a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Check,
    Fix,
}

/// Everything a worker is told: the action, and the walls it must put up
/// first. Written by the resident on the worker's standard input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub kind: Kind,
    pub name: String,
    pub args: Vec<String>,
    pub dry_run: bool,
    pub plugins_dir: PathBuf,
    pub scripts_dir: PathBuf,
    pub policy: Policy,
    pub sandbox: Sandbox,
    /// Wall-clock limit, enforced by the resident.
    pub timeout_secs: u64,
}

/// One line of a worker's standard output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Progress(String),
    Result(Box<CheckResult>),
    Error(CheckError),
}

/// Run `job` in a worker, streaming its progress lines to `progress`.
pub async fn run(
    settings: &Settings,
    job: Job,
    progress: &Progress,
) -> Result<CheckResult, CheckError> {
    let target = job.args.join(" ");
    let (name, timeout) = (job.name.clone(), Duration::from_secs(job.timeout_secs));
    let mut cmd = tokio::process::Command::new(&settings.exe);
    cmd.arg(WORKER_ARG)
        .env_clear()
        .env("PATH", crate::process::SAFE_PATH)
        .env("LC_ALL", "C")
        // Few malloc arenas: the address-space limit counts reservations.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        CheckError::Refused(format!(
            "cannot start a worker ({}): {e}",
            settings.exe.display()
        ))
    })?;
    // Killed with all it started if this request is dropped or times out.
    let _group = Group(child.id());
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(CheckError::Refused("cannot talk to the worker".into()));
    };
    let text = serde_json::to_vec(&job).map_err(|e| CheckError::Refused(e.to_string()))?;
    let read = async {
        // A worker that exits before reading (it could not start) is
        // reported from its exit status below.
        let _ = stdin.write_all(&text).await;
        drop(stdin);
        let errors = tokio::spawn(crate::process::capped(stderr));
        let outcome = read_lines(stdout, progress).await;
        let status = child.wait().await.ok();
        let errors = errors.await.unwrap_or_default();
        (outcome, status, errors)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Ok(ended(
            &name,
            &target,
            format!(
                "{name} did not finish within {} s: its worker was killed",
                timeout.as_secs()
            ),
        )),
        Ok((Some(outcome), _, _)) => outcome,
        Ok((None, status, errors)) => {
            let why = died(status, &errors);
            tracing::warn!(check = %name, "worker ended without a result: {why}");
            Ok(ended(
                &name,
                &target,
                format!("{name} stopped without a result: {why}"),
            ))
        }
    }
}

/// Progress lines are passed on; the first result or error ends the read.
/// `None`: the worker wrote neither (it died, or wrote garbage).
async fn read_lines(
    stdout: tokio::process::ChildStdout,
    progress: &Progress,
) -> Option<Result<CheckResult, CheckError>> {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .ok()?;
        if n == 0 || !buf.ends_with(b"\n") {
            return None;
        }
        match serde_json::from_slice::<Line>(&buf).ok()? {
            Line::Progress(text) => progress.say(text),
            Line::Result(r) => return Some(Ok(*r)),
            Line::Error(e) => return Some(Err(e)),
        }
    }
}

/// Why a worker ended without a result, in words.
fn died(status: Option<std::process::ExitStatus>, stderr: &[u8]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(stderr);
    let said = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(firstline_proto::text::printable);
    let how = match status.and_then(|s| s.signal()) {
        Some(24) => "it used up its CPU time (SIGXCPU)".to_string(),
        Some(9) => "it was killed (SIGKILL)".to_string(),
        Some(6) => "it aborted (out of memory?)".to_string(),
        Some(s) => format!("it was killed by signal {s}"),
        None => match status.and_then(|s| s.code()) {
            Some(c) => format!("it exited with status {c}"),
            None => "it could not be waited for".to_string(),
        },
    };
    match said {
        Some(line) => format!("{how}: {line}"),
        None => how,
    }
}

/// The result of an action whose worker had to be stopped.
fn ended(name: &str, target: &str, summary: String) -> CheckResult {
    let mut r = CheckResult::new(name, target, Status::Unknown, summary);
    r.at = crate::checks::now_rfc3339();
    r
}

/// A worker's session (it makes one at start; every program it runs, in
/// its own process group, stays in it), killed when this is dropped (the
/// request was answered, abandoned or timed out): nothing a worker started
/// outlives it.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(sid) = self.0 {
            kill_session(sid);
        }
    }
}

/// SIGKILL to every process of session `sid`.
fn kill_session(sid: u32) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp session …; comm may hold spaces.
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<u32>().ok());
        if session == Some(sid) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
