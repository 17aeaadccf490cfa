//! `disk` agrees with `df` and with `check_disk` from monitoring-plugins on
//! the filesystem of a temp directory (within rounding and what other
//! processes write meanwhile), and the `plugin` check runs the real
//! `check_disk` to the same figure. On small tmpfs mounts (made in a
//! private mount namespace, so they vanish with it) whose inodes or bytes
//! run out, the `error` field says which, and the inode figures agree with
//! `df -i`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_agent::checks::{self, CheckContext};
use firstline_proto::{CheckResult, Status};
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

/// Mount a tmpfs (`options`) on a fresh folder in a private mount namespace,
/// run `fill` there (shell, `$D` is the folder), then `df -i` and
/// `disk $D EXTRA… --json`: the df line (total, used, free, use%) and the result.
fn on_tmpfs(options: &str, fill: &str, extra: &[&str]) -> ((f64, f64, f64, f64), CheckResult) {
    let unshare = require("unshare", "util-linux");
    require("df", "coreutils");
    let dir = tempdir();
    let script = format!(
        "set -e; mount -t tmpfs -o {options} fltest \"$D\"; {fill}; \
         df --output=itotal,iused,iavail,ipcent \"$D\" | tail -n 1; \
         \"$AGENT\" check disk \"$D\" \"$@\" --json || true"
    );
    let out = must(
        Command::new(unshare)
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .args(extra)
            .env("D", dir.path())
            .env("AGENT", AGENT),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let df: Vec<f64> = lines
        .next()
        .unwrap_or_else(|| panic!("no df line in {text}"))
        .split_whitespace()
        .map(|f| f.trim_end_matches('%').parse().expect("a number"))
        .collect();
    let json = lines
        .next()
        .unwrap_or_else(|| panic!("no result in {text}"));
    let r: CheckResult = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    ((df[0], df[1], df[2], df[3]), r)
}

/// `: > $D/fN` for N in 0..n (each file one inode).
fn files(n: u32) -> String {
    format!("i=0; while [ $i -lt {n} ]; do : > \"$D/f$i\"; i=$((i+1)); done")
}

#[test]
fn inodes_exhausted_agrees_with_df() {
    // 64 inodes, the root folder and 62 files: 63 used, 98.4%.
    let ((itotal, iused, ifree, ipct), r) = on_tmpfs("size=8m,nr_inodes=64", &files(62), &[]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(r.fields["error"], "inodes", "{r:?}");
    assert_eq!(r.metrics["inodes_total"], itotal, "{r:?} vs df -i");
    assert_eq!(r.metrics["inodes_free"], ifree, "{r:?} vs df -i");
    assert_eq!(itotal - ifree, iused);
    // df rounds its percentage up.
    assert!(
        (r.metrics["inodes_used_pct"] - ipct).abs() <= 1.0,
        "{r:?} vs df {ipct}%"
    );
    assert!(
        r.metrics["used_pct"] < 80.0,
        "space is not the problem: {r:?}"
    );
    assert!(r.summary.contains("inodes 98.4% used"), "{}", r.summary);

    // Over the warning only.
    let (_, r) = on_tmpfs(
        "size=8m,nr_inodes=64",
        &files(62),
        &["--inodes-warn", "50", "--inodes-crit", "99"],
    );
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert_eq!(r.fields["error"], "inodes", "{r:?}");

    // Plenty left: ok, no error.
    let (_, r) = on_tmpfs("size=8m,nr_inodes=64", &files(3), &[]);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert!(!r.fields.contains_key("error"), "{r:?}");
    assert_eq!(r.metrics["inodes_free"], 60.0, "{r:?}");
}

#[test]
fn bytes_full() {
    let fill = "dd if=/dev/zero of=\"$D/big\" bs=1024 count=950 status=none";
    let (_, r) = on_tmpfs("size=1m,nr_inodes=1000", fill, &[]);
    assert_eq!(r.status, Status::Crit, "{r:?}");
    assert_eq!(r.fields["error"], "bytes", "{r:?}");
    assert!(r.metrics["used_pct"] >= 90.0, "{r:?}");
    assert!(r.metrics["inodes_used_pct"] < 1.0, "{r:?}");
}
