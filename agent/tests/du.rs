//! `du` against coreutils `du -x --max-depth=1 -B1` on a tree made here
//! (folders of several sizes, an empty one, a loose file, a hard link, a
//! symlink to /usr that must not be followed): the same bytes for every
//! folder and in total. A tmpfs mounted below PATH (in a private mount
//! namespace) is not crossed; a tiny `--timeout` gives a partial result,
//! still ok; a PATH that cannot be read is unknown.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firstline_proto::{CheckResult, Status};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn write(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data: Vec<u8> = (0..bytes).map(|i| (i * 31 + i / 7) as u8).collect();
    std::fs::write(path, data).unwrap();
}

/// `du -x -B1 --max-depth=1 PATH`: bytes by path (PATH itself included).
fn coreutils_du(path: &Path) -> BTreeMap<String, f64> {
    let bin = require("du", "coreutils");
    let out = must(
        Command::new(bin)
            .args(["-x", "-B1", "--max-depth=1"])
            .arg(path),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (size, p) = l.split_once('\t').unwrap();
            (p.to_string(), size.parse().unwrap())
        })
        .collect()
}

/// The numbered fields `1`, `2`, … as (path, bytes).
fn listed(r: &CheckResult) -> Vec<(String, f64)> {
    (1..)
        .map_while(|i| r.fields.get(&i.to_string()))
        .map(|v| {
            let (p, size) = v.rsplit_once(' ').unwrap();
            (p.to_string(), size.parse().unwrap())
        })
        .collect()
}

#[test]
fn agrees_with_coreutils_du() {
    let dir = tempdir();
    let p = dir.path();
    write(&p.join("big/a/b/c/deep"), 300_000);
    write(&p.join("big/other"), 100_000);
    std::fs::hard_link(p.join("big/other"), p.join("big/a/same-file")).unwrap();
    write(&p.join("small/file"), 20_000);
    write(&p.join("middle/x"), 60_000);
    std::fs::create_dir(p.join("empty")).unwrap();
    write(&p.join("loose"), 50_000);
    std::os::unix::fs::symlink("/usr", p.join("middle/usr")).unwrap();
    std::os::unix::fs::symlink(p.join("big"), p.join("link-to-big")).unwrap();

    let path = p.to_str().unwrap();
    let (r, code) = check(&["du", path, "--top", "3"]);
    assert_eq!(code, 0);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let theirs = coreutils_du(p);
    let ours = listed(&r);
    let names: Vec<String> = ["big", "middle", "small"]
        .iter()
        .map(|n| p.join(n).display().to_string())
        .collect();
    assert_eq!(
        ours.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        names,
        "largest first, top 3: {r:?}"
    );
    for (name, size) in &ours {
        assert_eq!(
            Some(size),
            theirs.get(name),
            "{name}: {r:?} vs du {theirs:?}"
        );
    }
    assert_eq!(
        Some(&r.metrics["total_bytes"]),
        theirs.get(path),
        "{r:?} vs du {theirs:?}"
    );
    assert_eq!(r.metrics["folders"], 4.0, "{r:?}");
    assert_eq!(r.metrics["partial"], 0.0);
    assert!(!r.fields.contains_key("partial"), "{r:?}");
    assert!(!r.fields.contains_key("4"), "--top 3: {r:?}");
    assert!(
        r.fields["top"].starts_with(&format!("{} ", names[0])),
        "{r:?}"
    );
    assert_eq!(r.fields["top"].matches(", ").count(), 2, "{r:?}");
    assert!(r.summary.contains(&names[0]), "{}", r.summary);
}

#[test]
fn never_crosses_into_another_filesystem() {
    let unshare = require("unshare", "util-linux");
    let dir = tempdir();
    let p = dir.path();
    write(&p.join("here/file"), 40_000);
    std::fs::create_dir(p.join("mnt")).unwrap();
    let script = "set -e; mount -t tmpfs -o size=4m fltest \"$D/mnt\"; \
                  dd if=/dev/zero of=\"$D/mnt/big\" bs=1024 count=2048 status=none; \
                  \"$AGENT\" check du \"$D\" --json";
    let out = must(
        Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .env("D", p)
            .env("AGENT", AGENT),
    );
    let r: CheckResult = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let ours = listed(&r);
    assert_eq!(ours.len(), 1, "only `here`: {r:?}");
    assert!(ours[0].0.ends_with("/here"), "{r:?}");
    assert_eq!(r.metrics["skipped"], 1.0, "the mount point: {r:?}");
    assert!(r.metrics["total_bytes"] < 1_000_000.0, "{r:?}");
    assert!(r.summary.contains("left out"), "{}", r.summary);
}

#[test]
fn a_timeout_gives_a_partial_result() {
    let dir = tempdir();
    for i in 0..400 {
        write(&dir.path().join(format!("d{}/f{i}", i % 4)), 10);
    }
    let (r, _) = check(&["du", dir.path().to_str().unwrap(), "--timeout", "0"]);
    assert_eq!(r.status, Status::Ok, "evidence, not a verdict: {r:?}");
    assert_eq!(r.fields["partial"], "timeout", "{r:?}");
    assert_eq!(r.metrics["partial"], 1.0);
    assert!(r.summary.contains("partial"), "{}", r.summary);
}

#[test]
fn unreadable_path_is_unknown() {
    let (r, code) = check(&["du", "/no/such/folder"]);
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    assert_eq!(code, 1);
    let dir = tempdir();
    let file = dir.path().join("file");
    write(&file, 10);
    let (r, _) = check(&["du", file.to_str().unwrap()]);
    assert_eq!(r.status, Status::Unknown, "a file is not a folder: {r:?}");
}
