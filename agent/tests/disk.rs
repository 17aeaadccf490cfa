//! `disk` agrees with `df` and with `check_disk` from monitoring-plugins on
//! the filesystem of a temp directory (within rounding and what other
//! processes write meanwhile), and the `plugin` check runs the real
//! `check_disk` to the same figure.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_agent::checks::{self, CheckContext};
use firstline_proto::Status;
use std::path::PathBuf;
use std::process::Command;

/// `df -B1` figures of the filesystem holding `path`: (size, used, avail, use%).
fn df(path: &str) -> (f64, f64, f64, f64) {
    let bin = require("df", "coreutils");
    let out = must(Command::new(bin).args(["-B1", "--output=size,used,avail,pcent", path]));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("a df line");
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|f| f.trim_end_matches('%').parse().expect("a number"))
        .collect();
    (v[0], v[1], v[2], v[3])
}

/// Other processes (this build!) write meanwhile: 1% of the size, or 256 MiB.
fn close(a: f64, b: f64, size: f64) -> bool {
    (a - b).abs() <= (size * 0.01).max(256.0 * 1024.0 * 1024.0)
}

#[test]
fn agrees_with_df() {
    let dir = tempdir();
    let p = dir.path().to_str().unwrap();
    let (r, _) = check(&["disk", p, "--warn", "100.1", "--crit", "100.2"]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let (size, used, avail, pcent) = df(p);
    assert_eq!(r.metrics["total_bytes"], size, "{r:?}");
    assert!(
        close(r.metrics["used_bytes"], used, size),
        "{r:?} vs df used {used}"
    );
    assert!(
        close(r.metrics["free_bytes"], avail, size),
        "{r:?} vs df avail {avail}"
    );
    // df rounds its percentage up.
    assert!(
        (r.metrics["used_pct"] - pcent).abs() <= 1.5,
        "{r:?} vs df {pcent}%"
    );
}

#[test]
fn agrees_with_check_disk() {
    let plugin = nagios_plugin("check_disk", "monitoring-plugins-basic");
    let dir = tempdir();
    let p = dir.path().to_str().unwrap();
    let out = Command::new(&plugin)
        .args(["-w", "0%", "-c", "0%", "-p", p])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "check_disk: {text}");
    // Its perfdata: MOUNT=USEDB;warn;crit;0;TOTAL
    let parsed = checks::plugin::parse_output(&text);
    let (used_key, used) = parsed
        .metrics
        .iter()
        .find(|(k, _)| k.ends_with("_B"))
        .map(|(k, v)| (k.clone(), *v))
        .unwrap_or_else(|| panic!("no used-bytes perfdata in {text}"));
    let (r, _) = check(&["disk", p]);
    let size = r.metrics["total_bytes"];
    assert!(
        close(r.metrics["used_bytes"], used, size),
        "{r:?} vs check_disk {used_key}={used}"
    );
    // Both grade the same way at the same thresholds.
    let (ours, _) = check(&["disk", p, "--warn", "0", "--crit", "0"]);
    let theirs = Command::new(&plugin)
        .args(["-w", "100%", "-c", "100%", "-p", p])
        .output()
        .unwrap();
    assert_eq!(ours.status, Status::Crit);
    assert_eq!(
        theirs.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&theirs.stdout)
    );
}

#[tokio::test]
async fn plugin_runs_the_real_check_disk() {
    nagios_plugin("check_disk", "monitoring-plugins-basic");
    let dir = tempdir();
    let p = dir.path().to_str().unwrap().to_string();
    let ctx = CheckContext {
        plugins_dir: PathBuf::from("/usr/lib/nagios/plugins"),
        ..Default::default()
    };
    let args: Vec<String> = ["check_disk", "-w", "0%", "-c", "0%", "-p", &p]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = checks::run("plugin", &args, &ctx).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(r.summary.starts_with("DISK OK"), "{}", r.summary);
    let used = r
        .metrics
        .iter()
        .find(|(k, _)| k.ends_with("_B"))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no perfdata metric in {r:?}"));
    let disk = checks::run("disk", &[p], &ctx).await.unwrap();
    assert!(
        close(
            disk.metrics["used_bytes"],
            used,
            disk.metrics["total_bytes"]
        ),
        "{disk:?} vs {r:?}"
    );
}
