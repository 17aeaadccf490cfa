//! `plugin` with real Nagios plugins and real processes: `check_dummy` for
//! each exit status, perfdata from `check_load`, and plugins of our own in a
//! temp plugins folder — one that hangs (killed at the timeout, with the
//! child it started), one that floods stderr (read concurrently, no stall),
//! one that is not executable; and no way out of the plugins folder. Also
//! several checks at once in one agent.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_agent::checks::{self, CheckContext, CheckError};
use firstline_proto::Status;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn nagios() -> CheckContext {
    nagios_plugin("check_dummy", "monitoring-plugins-basic");
    CheckContext {
        plugins_dir: PathBuf::from("/usr/lib/nagios/plugins"),
        ..Default::default()
    }
}

fn argv(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn check_dummy_exit_codes() {
    let ctx = nagios();
    for (code, status, word) in [
        ("0", Status::Ok, "OK"),
        ("1", Status::Warn, "WARNING"),
        ("2", Status::Crit, "CRITICAL"),
        ("3", Status::Unknown, "UNKNOWN"),
    ] {
        let r = checks::run(
            "plugin",
            &argv(&["check_dummy", code, "from firstline"]),
            &ctx,
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.summary, format!("{word}: from firstline"));
        assert_eq!(r.target, format!("check_dummy {code} from firstline"));
    }
}

#[tokio::test]
async fn perfdata_becomes_metrics() {
    let ctx = nagios();
    nagios_plugin("check_load", "monitoring-plugins-basic");
    let r = checks::run(
        "plugin",
        &argv(&["check_load", "-w", "99,99,99", "-c", "100,100,100"]),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    for k in ["load1", "load5", "load15"] {
        assert!(r.metrics.contains_key(k), "{k} in {r:?}");
    }
    // And our own load check reads the same 15-minute figure.
    let ours = checks::run("load", &[], &ctx).await.unwrap();
    assert!(
        (ours.metrics["load15"] - r.metrics["load15"]).abs() < 0.5,
        "{ours:?} vs {r:?}"
    );
}

fn script(dir: &Path, name: &str, body: &str, mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn own_plugins() -> (tempfile::TempDir, CheckContext) {
    let dir = tempdir();
    let pidfile = dir.path().join("child.pid");
    script(
        dir.path(),
        "check_hang",
        &format!("sleep 600 &\necho $! > {}\nwait", pidfile.display()),
        0o755,
    );
    script(
        dir.path(),
        "check_noisy",
        "head -c 2000000 /dev/zero | tr '\\\\0' x >&2\necho 'NOISY OK - survived | bytes=2000000B;;;0'\nexit 0",
        0o755,
    );
    script(dir.path(), "check_lazy", "echo never", 0o644);
    script(
        dir.path(),
        "check_args",
        "echo \"ARGS OK - $# args: $*\"",
        0o755,
    );
    let policy = firstline_agent::policy::Policy {
        plugins: ["check_hang", "check_noisy", "check_lazy", "check_args"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let ctx = CheckContext {
        plugins_dir: dir.path().to_path_buf(),
        policy: policy.into(),
        ..Default::default()
    };
    (dir, ctx)
}

#[tokio::test]
async fn hanging_plugin_is_killed_with_its_children() {
    let (dir, ctx) = own_plugins();
    let started = Instant::now();
    let r = checks::run("plugin", &argv(&["--timeout", "1s", "check_hang"]), &ctx)
        .await
        .unwrap();
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert!(
        r.summary.contains("did not finish within 1 s"),
        "{}",
        r.summary
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The `sleep` it started is gone too (its whole process group was killed).
    let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = Instant::now() + STARTUP;
    while proc.exists() && Instant::now() < deadline {
        // A killed child may linger as a zombie until reaped by init.
        let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "child still running: {stat}"
    );
}

#[tokio::test]
async fn noisy_lazy_and_forbidden_plugins() {
    let (_dir, ctx) = own_plugins();
    let r = checks::run("plugin", &argv(&["--timeout", "20s", "check_noisy"]), &ctx)
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    assert_eq!(r.summary, "NOISY OK - survived");
    assert_eq!(r.metrics["bytes_B"], 2_000_000.0);

    let r = checks::run("plugin", &argv(&["check_lazy"]), &ctx)
        .await
        .unwrap();
    assert_eq!(r.status, Status::Unknown);
    assert!(r.summary.contains("not executable"), "{}", r.summary);

    // Arguments are an argv: no shell sees them.
    let r = checks::run("plugin", &argv(&["check_args", "-w", "$(id)", "a b"]), &ctx)
        .await
        .unwrap();
    assert_eq!(r.summary, "ARGS OK - 3 args: -w $(id) a b");

    for bad in ["../check_args", "/bin/true", "..", "sub/check"] {
        assert!(
            matches!(
                checks::run("plugin", &argv(&[bad]), &ctx).await,
                Err(CheckError::Usage(_))
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn several_checks_at_once() {
    let (_dir, own) = own_plugins();
    let ctx = nagios();
    let started = Instant::now();
    let hang = argv(&["--timeout", "2s", "check_hang"]);
    let dummy = argv(&["check_dummy", "0", "fine"]);
    let ping = argv(&["127.0.0.1", "--count", "3", "--interval", "50ms"]);
    let cpu = argv(&["--interval", "300ms"]);
    let (a, b, c, d, e) = tokio::join!(
        checks::run("plugin", &hang, &own),
        checks::run("plugin", &dummy, &ctx),
        checks::run("ping", &ping, &ctx),
        checks::run("cpu", &cpu, &ctx),
        checks::run("memory", &[], &ctx),
    );
    assert_eq!(a.unwrap().status, Status::Unknown);
    assert_eq!(b.unwrap().status, Status::Ok);
    assert_eq!(c.unwrap().status, Status::Ok);
    assert_ne!(d.unwrap().status, Status::Unknown);
    assert_ne!(e.unwrap().status, Status::Unknown);
    // They ran side by side: the hung plugin did not hold the others up
    // (generous bound; not a timing assertion on the checks themselves).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
