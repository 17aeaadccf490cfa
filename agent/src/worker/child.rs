//! The worker's side: read the job, put up the walls, run the one action,
//! write its progress and result as JSON lines, exit.
//!
//! Every binary that embeds the agent (`firstline-agent`, and `firstline`
//! for `firstline demo`) calls [`serve_if_asked`] first thing in `main`, so a
//! worker is always the very binary that is running.

use super::{Job, Kind, Line, WORKER_ARG};
use crate::checks::{self, CheckContext, CheckError, Progress};
use crate::fixes::{self, FixContext};
use std::io::{Read, Write};
use std::sync::Arc;

/// Largest job a worker reads (its arguments and policy).
const MAX_JOB: u64 = 4 * 1024 * 1024;

/// If this process was started as a worker, serve the job and exit.
pub fn serve_if_asked() {
    if std::env::args_os().nth(1).is_some_and(|a| a == WORKER_ARG) {
        std::process::exit(serve());
    }
}

fn serve() -> i32 {
    // A session of its own: the agent kills it whole, programs included.
    let _ = rustix::process::setsid();
    let mut text = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_JOB).read_to_end(&mut text) {
        eprintln!("cannot read the job: {e}");
        return 2;
    }
    let mut job: Job = match serde_json::from_slice(&text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("not a job: {e}");
            return 2;
        }
    };
    // The walls go up before the arguments are looked at.
    let enforced = match job.sandbox.enter() {
        Ok(e) => e,
        Err(why) => {
            emit(&Line::Error(CheckError::Refused(format!(
                "the worker could not drop its rights, so `{}` did not run: {why}",
                job.name
            ))));
            return 0;
        }
    };
    if !enforced.landlock && !job.sandbox.unrestricted_files {
        eprintln!(
            "note: this kernel has no Landlock; the worker runs as {} without a file-system view",
            enforced.user
        );
    }
    // The worker already is the user `run_as` names.
    job.policy.run_as = None;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the worker's runtime: {e}");
            return 2;
        }
    };
    let outcome = runtime.block_on(act(job));
    emit(&match outcome {
        Ok(r) => Line::Result(Box::new(r)),
        Err(e) => Line::Error(e),
    });
    0
}

/// Run the job in this (sandboxed) process, its progress lines written as
/// they come.
async fn act(job: Job) -> Result<firstline_proto::CheckResult, CheckError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let progress = Progress::new(tx);
    let policy = Arc::new(job.policy);
    let work = async {
        match job.kind {
            Kind::Check => {
                let ctx = CheckContext {
                    progress,
                    plugins_dir: job.plugins_dir,
                    policy,
                    runner: Default::default(),
                };
                checks::run(&job.name, &job.args, &ctx).await
            }
            Kind::Fix => {
                let ctx = FixContext {
                    progress,
                    scripts_dir: job.scripts_dir,
                    dry_run: job.dry_run,
                    policy,
                    runner: Default::default(),
                };
                fixes::run(&job.name, &job.args, &ctx).await
            }
        }
    };
    tokio::pin!(work);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            Some(text) = rx.recv() => emit(&Line::Progress(text)),
        }
    };
    while let Ok(text) = rx.try_recv() {
        emit(&Line::Progress(text));
    }
    outcome
}

fn emit(line: &Line) {
    if let Ok(mut text) = serde_json::to_vec(line) {
        text.push(b'\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&text);
        let _ = out.flush();
    }
}
