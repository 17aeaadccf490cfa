//! The worker itself, with the real `firstline-agent` binary as the worker:
//! its wall clock kills it with everything it started, its CPU limit stops
//! a spinning program, and a worker that dies says why.

#![allow(clippy::unwrap_used)]

use firstline_agent::checks::{CheckContext, Progress};
use firstline_agent::policy::Policy;
use firstline_agent::worker::{self, declare, Settings};
use firstline_proto::Status;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn settings() -> Settings {
    Settings {
        exe: env!("CARGO_BIN_EXE_firstline-agent").into(),
        user: "nobody".into(),
    }
}

/// A plugins folder any user may read, holding `check_x` running `body`.
fn plugin(body: &str) -> (tempfile::TempDir, CheckContext) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check_x");
    std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = CheckContext {
        plugins_dir: dir.path().to_path_buf(),
        policy: Arc::new(Policy {
            plugins: vec!["check_x".into()],
            ..Policy::default()
        }),
        ..Default::default()
    };
    (dir, ctx)
}

fn processes_with(marker: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(marker))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_wall_clock_kills_a_worker_with_all_it_started() {
    // The program hides in its own process group and ignores the plugin's
    // own timeout: only the worker's wall clock can end it.
    let (_dir, ctx) = plugin("setsid sleep 6071 & sleep 6072; wait");
    let args: Vec<String> = ["--timeout", "60s", "check_x"].map(String::from).to_vec();
    let mut job = declare::check("plugin", &args, &ctx, "nobody").unwrap();
    job.timeout_secs = 2;
    let started = Instant::now();
    let r = worker::run(&settings(), job, &Progress::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(r.summary.contains("its worker was killed"), "{}", r.summary);
    assert!(
        processes_with("sleep 6072").is_empty(),
        "{:?}",
        processes_with("sleep 6072")
    );
    // `setsid` left the worker's session: the one escape the wall clock
    // does not reach (the CPU limit and the plugin's user still hold it).
    for line in processes_with("sleep 6071") {
        let pid = line.split_whitespace().next().unwrap().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    }
}

#[tokio::test]
async fn a_spinning_program_meets_the_cpu_limit() {
    let (_dir, ctx) = plugin("while :; do :; done");
    let args: Vec<String> = ["--timeout", "60s", "check_x"].map(String::from).to_vec();
    let mut job = declare::check("plugin", &args, &ctx, "nobody").unwrap();
    job.sandbox.cpu_secs = 1;
    let started = Instant::now();
    let r = worker::run(&settings(), job, &Progress::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, Status::Unknown, "{r:?}");
}

#[tokio::test]
async fn a_check_in_a_worker_answers_like_one_in_process() {
    let ctx = CheckContext::default();
    let job = declare::check("load", &[], &ctx, "nobody").unwrap();
    let r = worker::run(&settings(), job, &Progress::default())
        .await
        .unwrap();
    assert_eq!(r.check, "load");
    assert_ne!(r.status, Status::Unknown, "{r:?}");
    assert!(r.metrics.contains_key("load1"), "{r:?}");
    // Usage errors come back at once, before any worker starts.
    assert!(declare::check("load", &["--nope".into()], &ctx, "nobody").is_err());
    assert!(declare::check("no-such-check", &[], &ctx, "nobody").is_err());
    assert!(Path::new(env!("CARGO_BIN_EXE_firstline-agent")).exists());
}
