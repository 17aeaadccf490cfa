//! `clean-temp [PATH] [--older-than 7d]`: delete old files under a temp
//! folder. Never follows a symlink (links are neither followed nor deleted),
//! never leaves PATH's filesystem, never deletes anything modified more
//! recently than the bound, and removes emptied folders (never PATH itself).

use super::{done, planned, FixContext};
use crate::checks::disk::human;
use crate::checks::{parse_args, CheckError};
use firstline_proto::{CheckResult, Status};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(clap::Parser, Debug)]
#[command(
    name = "clean-temp",
    about = "Delete files older than a bound under a temp folder"
)]
struct Args {
    /// Folder to clean (default: the system temp folder).
    path: Option<PathBuf>,
    /// Only files not modified for this long (7d, 12h…).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    older_than: Duration,
}

/// What a sweep found (and, unless a dry run, removed).
#[derive(Debug, Default, PartialEq)]
pub struct Sweep {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub errors: Vec<String>,
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("clean-temp", args)?;
    let root = a.path.clone().unwrap_or_else(std::env::temp_dir);
    let target = root.display().to_string();
    let root = match root.canonicalize() {
        Ok(r) if r.is_dir() && r != Path::new("/") => r,
        Ok(_) => {
            return Err(CheckError::Usage(format!(
                "{target} is not a folder that can be cleaned"
            )))
        }
        Err(e) => {
            let why = format!("cannot clean {target}: {e}");
            return Ok(CheckResult::new("clean-temp", target, Status::Unknown, why));
        }
    };
    let cutoff = SystemTime::now()
        .checked_sub(a.older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let dry_run = ctx.dry_run;
    ctx.progress.say(format!(
        "sweeping {} for files older than {}",
        root.display(),
        humantime::format_duration(a.older_than)
    ));
    let sweep = tokio::task::spawn_blocking(move || sweep(&root, cutoff, dry_run))
        .await
        .map_err(|e| CheckError::Usage(e.to_string()))?;
    let what = format!(
        "{} files and {} empty folders, {}",
        sweep.files,
        sweep.dirs,
        human(sweep.bytes)
    );
    let mut r = if dry_run {
        planned("clean-temp", &target, format!("delete {what}"))
    } else {
        let changed = if sweep.files + sweep.dirs > 0 {
            vec![format!("deleted {what}")]
        } else {
            vec![]
        };
        done("clean-temp", &target, format!("deleted {what}"), changed)
    };
    if !sweep.errors.is_empty() {
        r.status = Status::Warn;
        r.summary.push_str(&format!(
            "; {} could not be removed (first: {})",
            sweep.errors.len(),
            sweep.errors[0]
        ));
    }
    r.metrics.insert("files".into(), sweep.files as f64);
    r.metrics.insert("freed_bytes".into(), sweep.bytes as f64);
    Ok(r)
}

/// Walk `root` (same filesystem, no symlinks) removing what is older than
/// `cutoff`; with `dry_run`, only count.
pub fn sweep(root: &Path, cutoff: SystemTime, dry_run: bool) -> Sweep {
    let mut s = Sweep::default();
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return s;
    };
    walk(root, meta.dev(), cutoff, dry_run, &mut s);
    s
}

/// Returns whether `dir` is empty afterwards.
fn walk(dir: &Path, dev: u64, cutoff: SystemTime, dry_run: bool, s: &mut Sweep) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        s.errors.push(format!("cannot read {}", dir.display()));
        return false;
    };
    let mut empty = true;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            empty = false;
            continue;
        };
        let old = meta.modified().is_ok_and(|m| m < cutoff);
        if meta.file_type().is_symlink() || meta.dev() != dev {
            empty = false;
        } else if meta.is_dir() {
            let now_empty = walk(&path, dev, cutoff, dry_run, s);
            if now_empty && old && remove(&path, true, dry_run, s) {
                s.dirs += 1;
            } else {
                empty = false;
            }
        } else if old && remove(&path, false, dry_run, s) {
            s.files += 1;
            s.bytes += meta.len();
        } else {
            empty = false;
        }
    }
    empty
}

fn remove(path: &Path, dir: bool, dry_run: bool, s: &mut Sweep) -> bool {
    if dry_run {
        return true;
    }
    let r = if dir {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => true,
        Err(e) => {
            s.errors.push(format!("{}: {e}", path.display()));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, days: u64) {
        let t = SystemTime::now() - Duration::from_secs(days * 86_400);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn deletes_only_old_files_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let keep_me = outside.path().join("precious");
        std::fs::write(&keep_me, "x").unwrap();
        age(&keep_me, 30);
        let root = tmp.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("old.log"), "0123456789").unwrap();
        std::fs::write(root.join("new.log"), "n").unwrap();
        std::fs::write(root.join("sub/old2"), "abc").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        age(&root.join("old.log"), 10);
        age(&root.join("sub/old2"), 10);
        age(&root.join("sub"), 10);
        let cutoff = SystemTime::now() - Duration::from_secs(7 * 86_400);

        let dry = sweep(root, cutoff, true);
        assert_eq!((dry.files, dry.bytes), (2, 13));
        assert!(root.join("old.log").exists(), "dry run deletes nothing");

        let real = sweep(root, cutoff, false);
        assert_eq!((real.files, real.dirs, real.bytes), (2, 1, 13), "{real:?}");
        assert!(
            !root.join("sub").exists(),
            "an old folder emptied by the sweep goes too"
        );
        assert!(!root.join("old.log").exists());
        assert!(root.join("new.log").exists(), "newer than the bound: kept");
        assert!(
            root.join("link").exists(),
            "symlink neither followed nor deleted"
        );
        assert!(keep_me.exists(), "nothing outside PATH touched");
        // Idempotent: a second run finds nothing.
        assert_eq!(sweep(root, cutoff, false).files, 0);
    }
}
