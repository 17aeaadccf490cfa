//! Issue 10, findings 3 and 4, end to end with real processes: the agent's
//! `[policy]` bounds what each fix may touch, whatever a technician asks.
//!
//! - `clean-temp` cleans only folders under `[policy] clean_temp_roots`
//!   (canonical paths: a symlink to /usr is /usr), lists what its dry run
//!   would delete (text and `--json`), never deletes anything younger than
//!   `clean_temp_min_age`, and a folder swapped for a symlink while it
//!   sweeps makes it delete nothing outside;
//! - `restart-service` restarts listed services only, never targets;
//! - `vacuum-journal` never keeps less than `journal_keep_min`.
//!
//! Every refusal is exit status 1 with the policy key on stderr. These
//! tests touch nothing outside their temp folders: system folders only get
//! dry runs, which must be refused anyway; dangerous requests are sent for
//! real only after their dry runs were refused (the policy is checked before
//! the dry run matters).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const SLOW: Duration = Duration::from_secs(30);

fn restart(s: &mut Setup) {
    s.agent.proc.as_mut().unwrap().kill();
    s.agent.start();
    assert!(
        wait_until(SLOW, || s.console.online("pc1")),
        "{}",
        s.agent.log()
    );
}

fn age(path: &Path, days: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

/// `n` files of 10 bytes named `PREFIX-NN`, 30 days old.
fn old_files(dir: &Path, prefix: &str, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let f = dir.join(format!("{prefix}-{i:03}"));
        std::fs::write(&f, "0123456789").unwrap();
        age(&f, 30);
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Refused by the agent: exit status 1, `error: …` naming `[policy] KEY`
/// on stderr, no result on stdout.
fn assert_refused(out: &Output, key: &str, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(out));
    let err = stderr(out);
    assert!(
        err.contains(&format!("[policy] {key}")),
        "{what}: the refusal names the policy: {}",
        text(out)
    );
    assert!(stdout(out).trim().is_empty(), "{what}: {}", text(out));
}

/// A `Setup` whose agent may clean `<its temp folder>/cleanable` only.
fn with_cleanable_root() -> (Setup, std::path::PathBuf) {
    let mut s = Setup::new("technician");
    let root = s.root().join("cleanable");
    std::fs::create_dir_all(&root).unwrap();
    s.agent.append(&format!(
        "[policy]\nclean_temp_roots = [\"{}\"]\n",
        root.display()
    ));
    restart(&mut s);
    (s, root)
}

#[test]
fn clean_temp_refuses_system_folders_and_links_to_them() {
    // The default policy: the system temp folders only.
    let s = Setup::new("technician");
    for folder in ["/usr", "/etc", "/root", "/var/lib", "/"] {
        for json in [false, true] {
            let mut args = vec![
                "fix",
                "pc1",
                "clean-temp",
                folder,
                "--older-than",
                "0s",
                "--dry-run",
            ];
            if json {
                args.push("--json");
            }
            let out = s.console.run(&args);
            assert_refused(&out, "clean_temp_roots", folder);
            if folder != "/" {
                assert!(
                    stderr(&out).contains(&format!("{folder} is not under")),
                    "{}",
                    text(&out)
                );
            }
        }
    }
    // A symlink in this test's temp folder (under /tmp, which the default
    // policy allows) pointing at /usr is judged by where it leads.
    let link = s.root().join("usr-link");
    std::os::unix::fs::symlink("/usr", &link).unwrap();
    let out = s.console.run(&[
        "fix",
        "pc1",
        "clean-temp",
        link.to_str().unwrap(),
        "--older-than",
        "0s",
        "--dry-run",
    ]);
    assert_refused(&out, "clean_temp_roots", "symlink to /usr");
    assert!(stderr(&out).contains("/usr is not under"), "{}", text(&out));
}

#[test]
fn restart_service_and_vacuum_journal_stay_in_bounds() {
    let s = Setup::new("technician");
    let fix = |args: &[&str]| {
        let mut all = vec!["fix", "pc1"];
        all.extend_from_slice(args);
        s.console.run(&all)
    };
    // Dry runs first; the real requests only once those were refused.
    for unit in ["poweroff.target", "reboot.target", "sshd", "cups.socket"] {
        let out = fix(&["restart-service", unit, "--dry-run"]);
        assert_refused(&out, "services", unit);
    }
    let out = fix(&["restart-service", "poweroff.target"]);
    assert_refused(&out, "services", "poweroff.target");
    assert!(
        stderr(&out).contains("not a service"),
        "targets are never services: {}",
        text(&out)
    );

    for keep in ["1K", "99M"] {
        let out = fix(&["vacuum-journal", "--keep", keep, "--dry-run"]);
        assert_refused(&out, "journal_keep_min", keep);
        assert!(stderr(&out).contains("at least 100M"), "{}", text(&out));
    }
    let out = fix(&["vacuum-journal", "--keep", "1K"]);
    assert_refused(&out, "journal_keep_min", "1K");
    let out = fix(&["vacuum-journal", "--keep", "1k", "--dry-run"]);
    // Not a size: a usage error the agent finds (exit 2).
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("is not a size"), "{}", text(&out));

    // What the policy allows gets through to the fix (which may then find
    // no systemd here: a result either way, never a refusal).
    for args in [
        &["restart-service", "cups", "--dry-run"][..],
        &["vacuum-journal", "--keep", "200M", "--dry-run"][..],
    ] {
        let out = fix(args);
        assert!(!stderr(&out).contains("policy"), "{args:?}: {}", text(&out));
        assert!(
            stdout(&out).contains(args[0]),
            "{args:?}: a result: {}",
            text(&out)
        );
    }
}

#[test]
fn clean_temp_cleans_a_configured_root_and_lists_what_goes() {
    let (s, root) = with_cleanable_root();
    let junk = root.join("junk");
    old_files(&junk, "old", 25);
    old_files(&junk.join("sub"), "older", 1);
    age(&junk.join("sub"), 30);
    std::fs::write(junk.join("young.log"), "y").unwrap();
    let j = junk.to_str().unwrap();
    let clean = |extra: &[&str]| {
        let mut args = vec!["fix", "pc1", "clean-temp", j];
        args.extend_from_slice(extra);
        s.console.run(&args)
    };

    // Outside the configured root, even this test's own folders are refused,
    // and so is the system temp folder the default would allow.
    for other in [s.root().to_str().unwrap(), "/tmp"] {
        let out = s
            .console
            .run(&["fix", "pc1", "clean-temp", other, "--dry-run"]);
        assert_refused(&out, "clean_temp_roots", other);
    }

    // Dry run, text: the totals and the first entries; nothing deleted;
    // `--older-than 0s` raised to the policy's minimum age.
    let out = clean(&["--older-than", "0s", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains("dry run: would delete 26 files and 1 empty folder (260 B) older than 1h: "),
        "{o}"
    );
    assert!(o.contains("old-0"), "entries listed: {o}");
    assert!(o.contains(", … (first 20 of 27)"), "{o}");
    assert!(
        o.contains(
            "--older-than 0s raised to this agent's minimum age, 1h ([policy] clean_temp_min_age)"
        ),
        "{o}"
    );
    assert!(!o.contains("young.log"), "young files are not listed: {o}");
    assert_eq!(count(&junk), 27, "a dry run deletes nothing");

    // Dry run, JSON: the same summary; metrics; `changed` stays empty.
    let out = clean(&["--older-than", "7d", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = r["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("dry run: would delete 26 files and 1 empty folder"),
        "{r}"
    );
    let listed: Vec<&str> = summary
        .split_once(": ")
        .unwrap()
        .1
        .split_once("older than 7days: ")
        .unwrap()
        .1
        .split(", ")
        .take(20)
        .collect();
    assert_eq!(listed.len(), 20, "{r}");
    for entry in &listed {
        assert!(
            junk.join(entry).exists(),
            "a listed entry is a path relative to PATH: {entry}"
        );
        assert!(entry.starts_with("old-") || entry.starts_with("sub"), "{r}");
    }
    assert_eq!(r["metrics"]["files"], 26.0, "{r}");
    assert_eq!(r["metrics"]["dirs"], 1.0, "{r}");
    assert_eq!(r["metrics"]["dry_run"], 1.0, "{r}");
    assert!(r.get("changed").is_none(), "a dry run changes nothing: {r}");
    assert_eq!(count(&junk), 27, "a dry run deletes nothing");

    // For real: the old files and the emptied old folder go, each named in
    // `changed`; the young file stays.
    let out = clean(&["--older-than", "7d", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .starts_with("deleted 26 files and 1 empty folder (260 B) older than 7days: "),
        "{r}"
    );
    let changed: Vec<&str> = r["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(changed.len(), 21, "{r}");
    assert!(
        changed[..20].iter().all(|c| c.starts_with("deleted ")),
        "{r}"
    );
    assert_eq!(
        changed[20],
        "… and 7 more: 26 files and 1 empty folder (260 B) in all"
    );
    let names: Vec<String> = std::fs::read_dir(&junk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["young.log"]);

    // Idempotent.
    let out = clean(&["--older-than", "7d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("deleted 0 files and 0 empty folders"),
        "{}",
        text(&out)
    );
}

/// A folder under the cleaned root swapped, over and over, with a symlink to
/// an outside folder while the agent sweeps: nothing outside is deleted.
#[test]
fn swap_attack_deletes_nothing_outside() {
    const FILES: usize = 200;
    let (s, root) = with_cleanable_root();
    let outside = s.root().join("outside");
    old_files(&outside, "precious", FILES);
    age(&outside, 30);
    let victim = root.join("victim");
    let link = root.join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let mut deleted = 0.0;
    for round in 0..5 {
        std::fs::create_dir_all(&victim).unwrap();
        old_files(&victim, "junk", FILES);
        let stop = Arc::new(AtomicBool::new(false));
        // Three renames rotate the folder and the symlink through the two
        // names (std has no RENAME_EXCHANGE; the unit test of clean_temp.rs
        // swaps atomically).
        let swapper = {
            let (stop, victim, link, spare) = (
                stop.clone(),
                victim.clone(),
                link.clone(),
                root.join("spare"),
            );
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ok = std::fs::rename(&victim, &spare).is_ok()
                        && std::fs::rename(&link, &victim).is_ok()
                        && std::fs::rename(&spare, &link).is_ok();
                    swaps += u64::from(ok);
                }
                swaps
            })
        };
        let out = s.console.run(&[
            "fix",
            "pc1",
            "clean-temp",
            root.to_str().unwrap(),
            "--older-than",
            "1d",
            "--json",
        ]);
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 0, "round {round}: no swap happened");
        assert_eq!(
            count(&outside),
            FILES,
            "round {round}: files outside the cleaned folder were deleted: {}",
            text(&out)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        deleted += r["metrics"]["files"].as_f64().unwrap();
        // Put the names back: the folder at `victim`, the symlink at `link`.
        for (a, b) in [(&root.join("spare"), &victim), (&root.join("spare"), &link)] {
            if a.symlink_metadata().is_ok() && b.symlink_metadata().is_err() {
                std::fs::rename(a, b).unwrap();
            }
        }
        if victim.symlink_metadata().unwrap().file_type().is_symlink() {
            std::fs::rename(&victim, root.join("spare")).unwrap();
            std::fs::rename(&link, &victim).unwrap();
            std::fs::rename(root.join("spare"), &link).unwrap();
        }
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(outside.join("precious-000").exists());
    }
    assert!(deleted > 0.0, "the sweeps never reached the folder");
}
