//! `du PATH [--top N] [--timeout DURATION]` — the largest folders directly
//! below PATH, each folder's size summed over its whole tree: the evidence a
//! technician gathers when a disk is full.
//!
//! Sizes are disk usage as `du` counts it (allocated blocks × 512, a file
//! with several hard links once). The walk never crosses into another
//! filesystem (mount points below PATH are left out and counted as
//! skipped), never follows a symlink (it works from open folder handles:
//! `fstatat(AT_SYMLINK_NOFOLLOW)` to look, `openat(O_NOFOLLOW|O_DIRECTORY)`
//! to descend), goes at most [`MAX_DEPTH`] folders deep and looks at most at
//! [`MAX_ENTRIES`] entries. It stops at `--timeout` and then says the result
//! is partial: the sizes are at least those shown. It only reads, so a tree
//! changing meanwhile only changes the figures.
//!
//! Status: ok (it is evidence, not a verdict), or unknown when PATH cannot
//! be read. Metrics: `total_bytes` (everything below PATH on its
//! filesystem), `folders` (folders directly below PATH), `partial` (1/0),
//! `skipped`, `errors`. Fields: `top` (`/var/log 1.2 GiB, /var/cache 300.0
//! MiB, …`), one field per listed folder, `1`, `2`, … = `PATH SIZE_BYTES`
//! (largest first), and `partial` = `timeout` or `entries` when the walk
//! stopped early.
//!
//! Space no folder shows is held by deleted files that processes still
//! keep open: the check looks through `/proc/PID/fd` for files on PATH's
//! filesystem that were deleted (`… (deleted)`), each counted once.
//! Metrics `deleted_open_bytes`, `deleted_open_pct` (of the space the
//! filesystem has in use), `deleted_open_files`,
//! `deleted_open_unseen` (processes whose files could not be looked at);
//! field `deleted_open` (`pid 812 (backup): /var/tmp/dump.tmp 2.4 MiB, …`,
//! or why none is named: a sandboxed worker may not look at other
//! processes' files). Whatever it may see, when PATH is its filesystem's
//! root the space in use that no file accounts for is measured:
//! `unseen_bytes` and `unseen_pct` (of the space in use, `statvfs`).

use super::{blocking, parse_args, parse_duration, show_duration, CheckContext, CheckError};
use crate::checks::disk::human;
use firstline_proto::{CheckResult, Status};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD};
use rustix::io::Errno;
use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Folders deeper than this below PATH are not entered (counted as skipped).
pub const MAX_DEPTH: usize = 64;
/// Entries looked at, at most, before the walk stops (partial).
pub const MAX_ENTRIES: u64 = 5_000_000;
/// Hard-linked files remembered (to count each once), at most.
const MAX_LINKS: usize = 1_000_000;
/// Longest field value written (the relay keeps 1,024 bytes of each).
const FIELD_BYTES: usize = 1000;
/// The summary lists folders up to about this many bytes.
const SUMMARY_LIST_BYTES: usize = 2048;

#[derive(clap::Parser, Debug)]
#[command(
    name = "du",
    about = "The largest folders directly below a path (never crossing filesystems or symlinks)"
)]
pub struct DuArgs {
    /// The folder whose subfolders are measured.
    pub path: PathBuf,
    /// How many of the largest folders to list.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub top: u16,
    /// Stop walking after this long and report what was counted (partial).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Why a walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Entries,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Timeout => "timeout",
            Stop::Entries => "entries",
        }
    }
}

/// What a walk counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// Everything below PATH on its filesystem, PATH itself included.
    pub total_bytes: u64,
    /// The folders directly below PATH with their sizes, largest first.
    pub folders: Vec<(PathBuf, u64)>,
    /// Entries looked at.
    pub entries: u64,
    /// Mount points and too-deep folders left out.
    pub skipped: u64,
    /// Entries that could not be looked at.
    pub errors: u64,
    pub first_error: Option<String>,
    pub stopped: Option<Stop>,
    /// Deleted files still open on PATH's filesystem.
    pub held: Held,
    /// When PATH is its filesystem's root: the bytes the filesystem says
    /// are in use (`statvfs`) that no file below PATH accounts for.
    pub unseen_bytes: Option<u64>,
    pub fs_used_bytes: u64,
}

/// Deleted files still held open by processes, on one filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    /// `(pid, command, path, bytes)`, largest first, each file once.
    pub files: Vec<(u32, String, String, u64)>,
    pub bytes: u64,
    /// Processes whose open files could not be looked at.
    pub unseen: u64,
}

/// The deleted files processes hold open on the filesystem `dev`.
pub fn held_open(dev: u64) -> Held {
    let mut held = Held::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return held;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            // Gone meanwhile, or not ours to see.
            if p.path().exists() {
                held.unseen += 1;
            }
            continue;
        };
        let mut hidden = false;
        for fd in fds.flatten() {
            let target = match std::fs::read_link(fd.path()) {
                Ok(t) => t,
                Err(e) => {
                    hidden |= e.kind() == std::io::ErrorKind::PermissionDenied;
                    continue;
                }
            };
            let target = target.to_string_lossy().into_owned();
            let Some(name) = target.strip_suffix(" (deleted)") else {
                continue;
            };
            // stat through the link: the open file itself.
            let Ok(st) = rustix::fs::stat(fd.path()) else {
                continue;
            };
            if dev_of(&st) != dev
                || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
                || !seen.insert((dev_of(&st), ino_of(&st)))
            {
                continue;
            }
            let bytes = blocks_of(&st);
            let comm = std::fs::read_to_string(p.path().join("comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            held.bytes += bytes;
            held.files.push((pid, comm, name.to_string(), bytes));
        }
        held.unseen += u64::from(hidden);
    }
    held.files.sort_by_key(|f| std::cmp::Reverse(f.3));
    held
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: DuArgs = parse_args("du", args)?;
    let limit = super::MAX_CHECK_TIME - Duration::from_secs(15);
    if a.timeout > limit {
        return Err(CheckError::Usage(format!(
            "--timeout must be at most {}",
            show_duration(limit)
        )));
    }
    let target = a.path.display().to_string();
    if !a.path.is_absolute() {
        return Err(CheckError::Usage(format!(
            "{target}: give the folder as an absolute path"
        )));
    }
    ctx.progress.say(format!(
        "measuring the folders below {target} (at most {})",
        show_duration(a.timeout)
    ));
    let (path, timeout) = (a.path.clone(), a.timeout);
    // The walk stops itself at the timeout; this bounds a hung filesystem.
    let walked = blocking(timeout + Duration::from_secs(5), move || {
        walk(&path, Instant::now() + timeout)
    })
    .await;
    Ok(match walked {
        Ok(Ok(tree)) => report(&target, &a.path, &tree, usize::from(a.top), a.timeout),
        Ok(Err(e)) => CheckResult::new("du", target, Status::Unknown, e),
        Err(e) => CheckResult::new(
            "du",
            target,
            Status::Unknown,
            format!("the filesystem gave {e} (a hung network mount?)"),
        ),
    })
}

fn report(target: &str, path: &Path, t: &Tree, top: usize, timeout: Duration) -> CheckResult {
    let shown: Vec<&(PathBuf, u64)> = t.folders.iter().take(top).collect();
    let full = |name: &Path| path.join(name).to_string_lossy().into_owned();
    let mut summary = format!(
        "{target}: {} in {}",
        human(t.total_bytes),
        match t.folders.len() {
            1 => "1 folder".to_string(),
            n => format!("{n} folders"),
        }
    );
    if !shown.is_empty() {
        summary.push_str("; largest: ");
        for (i, (name, size)) in shown.iter().enumerate() {
            let item = format!("{} {}", cut(&full(name), FIELD_BYTES), human(*size));
            if i > 0 && summary.len() + item.len() > SUMMARY_LIST_BYTES {
                summary.push_str(", …");
                break;
            }
            if i > 0 {
                summary.push_str(", ");
            }
            summary.push_str(&item);
        }
    }
    if let Some(stop) = t.stopped {
        summary.push_str(&match stop {
            Stop::Timeout => format!(
                "; partial: stopped after {} (sizes are at least these)",
                show_duration(timeout)
            ),
            Stop::Entries => {
                format!("; partial: stopped after {MAX_ENTRIES} entries (sizes are at least these)")
            }
        });
    }
    if t.skipped > 0 {
        summary.push_str(&format!(
            "; {} left out (other filesystems, or more than {MAX_DEPTH} folders deep)",
            t.skipped
        ));
    }
    if t.errors > 0 {
        summary.push_str(&format!(
            "; {} could not be read (first: {})",
            t.errors,
            t.first_error.as_deref().unwrap_or("?")
        ));
    }
    let mut r = CheckResult::new("du", target, Status::Ok, summary)
        .metric("total_bytes", t.total_bytes as f64)
        .metric("folders", t.folders.len() as f64)
        .metric("partial", if t.stopped.is_some() { 1.0 } else { 0.0 })
        .metric("skipped", t.skipped as f64)
        .metric("errors", t.errors as f64)
        .metric("deleted_open_bytes", t.held.bytes as f64)
        .metric("deleted_open_files", t.held.files.len() as f64)
        .metric("deleted_open_unseen", t.held.unseen as f64)
        .metric(
            "unseen_pct",
            t.unseen_bytes.map_or(0.0, |u| {
                (u as f64 * 1000.0 / t.fs_used_bytes.max(1) as f64).round() / 10.0
            }),
        )
        .metric(
            "deleted_open_pct",
            (t.held.bytes as f64 * 1000.0 / t.fs_used_bytes.max(t.held.bytes).max(1) as f64)
                .round()
                / 10.0,
        );
    if let Some(u) = t.unseen_bytes {
        r = r.metric("unseen_bytes", u as f64);
        if u > 0 && u * 5 >= t.fs_used_bytes {
            r.summary.push_str(&format!(
                "; the filesystem uses {} of which {} is in no file: deleted files still held open",
                human(t.fs_used_bytes),
                human(u)
            ));
        }
    }
    let held_by = if !t.held.files.is_empty() {
        String::new()
    } else if t.held.unseen > 0 {
        format!("no holder visible to this check ({} processes it may not look at; `lsof +L1` on the machine names them)", t.held.unseen)
    } else {
        "no process seen holding one".to_string()
    };
    if !held_by.is_empty() {
        r = r.field("deleted_open", held_by);
    }
    if !t.held.files.is_empty() {
        let mut list = String::new();
        for (i, (pid, comm, name, bytes)) in t.held.files.iter().enumerate() {
            let item = format!("pid {pid} ({comm}): {} {}", cut(name, 200), human(*bytes));
            if i > 0 && list.len() + item.len() + 5 > FIELD_BYTES {
                list.push_str(", …");
                break;
            }
            if i > 0 {
                list.push_str(", ");
            }
            list.push_str(&item);
        }
        r.summary.push_str(&format!(
            "; {} more held by {} deleted file(s) still open: {list}",
            human(t.held.bytes),
            t.held.files.len()
        ));
        r = r.field("deleted_open", list);
    }
    let mut top_field = String::new();
    let mut top_full = false;
    for (i, (name, size)) in shown.iter().enumerate() {
        let path = full(name);
        if !top_full {
            let item = format!("{} {}", cut(&path, FIELD_BYTES - 20), human(*size));
            let sep = if i == 0 { "" } else { ", " };
            if top_field.len() + sep.len() + item.len() + 5 > FIELD_BYTES {
                top_field.push_str(", …");
                top_full = true;
            } else {
                top_field.push_str(sep);
                top_field.push_str(&item);
            }
        }
        let bytes = size.to_string();
        let p = cut(&path, FIELD_BYTES - bytes.len() - 1);
        r = r.field((i + 1).to_string(), format!("{p} {bytes}"));
    }
    if !shown.is_empty() {
        r = r.field("top", top_field);
    }
    if let Some(stop) = t.stopped {
        r = r.field("partial", stop.as_str());
    }
    r
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…`.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Walk `path` until `deadline`: the size of each folder directly below it.
pub fn walk(path: &Path, deadline: Instant) -> Result<Tree, String> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(CWD, path, flags, Mode::empty())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = Walker {
        dev: dev_of(&st),
        deadline,
        links: HashSet::new(),
        t: Tree::default(),
    };
    let mut dir = Dir::new(fd).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut total = blocks_of(&st);
    let mut folders: Vec<(PathBuf, u64)> = Vec::new();
    while let Some(entry) = dir.read() {
        if w.t.stopped.is_some() {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                w.error(Path::new(""), e);
                break;
            }
        };
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let Ok(parent) = dir.fd() else { break };
        let rel = PathBuf::from(OsStr::from_bytes(name.to_bytes()));
        match w.entry(parent, name, &rel, 0) {
            Some((size, true)) => {
                total += size;
                folders.push((rel, size));
            }
            Some((size, false)) => total += size,
            None => {}
        }
    }
    folders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    w.t.total_bytes = total;
    w.t.folders = folders;
    w.t.held = held_open(w.dev);
    // The whole filesystem was walked when PATH is its root (its parent
    // is on another device, or it is `/`): what it uses beyond what was
    // walked is held by files no folder shows — deleted, still open.
    let root = path
        .parent()
        .is_none_or(|parent| rustix::fs::stat(parent).is_ok_and(|p| dev_of(&p) != w.dev));
    if let Ok(vfs) = rustix::fs::statvfs(path) {
        let frsize = if vfs.f_frsize > 0 {
            vfs.f_frsize
        } else {
            vfs.f_bsize
        };
        w.t.fs_used_bytes = vfs.f_blocks.saturating_sub(vfs.f_bfree) * frsize;
        if root && w.t.stopped.is_none() {
            w.t.unseen_bytes = Some(w.t.fs_used_bytes.saturating_sub(total));
        }
    }
    Ok(w.t)
}

// The field types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn dev_of(st: &Stat) -> u64 {
    st.st_dev as u64
}
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn ino_of(st: &Stat) -> u64 {
    st.st_ino as u64
}
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn nlink_of(st: &Stat) -> u64 {
    st.st_nlink as u64
}
/// Disk usage: allocated 512-byte blocks, as `du` counts.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn blocks_of(st: &Stat) -> u64 {
    u64::try_from(st.st_blocks as i64).unwrap_or(0) * 512
}

struct Walker {
    /// PATH's filesystem.
    dev: u64,
    deadline: Instant,
    /// Hard-linked files already counted.
    links: HashSet<(u64, u64)>,
    t: Tree,
}

impl Walker {
    fn error(&mut self, rel: &Path, why: impl std::fmt::Display) {
        self.t.errors += 1;
        if self.t.first_error.is_none() {
            let at = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            self.t.first_error = Some(format!("{}: {why}", at.to_string_lossy()));
        }
    }

    /// Count one entry `name` of the open folder `dir` (at `rel` below
    /// PATH): its size, and whether it is a folder of PATH's filesystem;
    /// `None` when it was left out.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        depth: usize,
    ) -> Option<(u64, bool)> {
        self.t.entries += 1;
        if self.t.entries >= MAX_ENTRIES {
            self.t.stopped = Some(Stop::Entries);
            return None;
        }
        if self.t.entries.is_multiple_of(64) && Instant::now() >= self.deadline {
            self.t.stopped = Some(Stop::Timeout);
            return None;
        }
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return None, // gone meanwhile
            Err(e) => {
                self.error(rel, e);
                return None;
            }
        };
        if dev_of(&st) != self.dev {
            self.t.skipped += 1; // a mount point: never entered
            return None;
        }
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    self.t.skipped += 1;
                    return None;
                }
                let own = blocks_of(&st);
                Some((own + self.folder(dir, name, &st, rel, depth + 1), true))
            }
            _ if nlink_of(&st) > 1 => {
                let key = (dev_of(&st), ino_of(&st));
                if self.links.contains(&key) {
                    Some((0, false))
                } else {
                    if self.links.len() < MAX_LINKS {
                        self.links.insert(key);
                    }
                    Some((blocks_of(&st), false))
                }
            }
            // Files, symlinks (their own size, never followed), the rest.
            _ => Some((blocks_of(&st), false)),
        }
    }

    /// The size of what is inside the folder `name` of `dir`, which must
    /// still be the folder `st` describes.
    fn folder(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
        depth: usize,
    ) -> u64 {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd: OwnedFd =
            match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()).or_else(
                |e| match e {
                    Errno::PERM => rustix::fs::openat(dir, name, flags, Mode::empty()),
                    other => Err(other),
                },
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return 0,
                Err(e) => {
                    self.error(rel, e);
                    return 0;
                }
            };
        match rustix::fs::fstat(&fd) {
            Ok(now) if dev_of(&now) == dev_of(st) && ino_of(&now) == ino_of(st) => {}
            Ok(_) => {
                self.error(rel, "replaced while measuring");
                return 0;
            }
            Err(e) => {
                self.error(rel, e);
                return 0;
            }
        }
        let mut d = match Dir::new(fd) {
            Ok(d) => d,
            Err(e) => {
                self.error(rel, e);
                return 0;
            }
        };
        let mut size = 0;
        while let Some(entry) = d.read() {
            if self.t.stopped.is_some() {
                break;
            }
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.error(rel, format!("cannot read: {e}"));
                    break;
                }
            };
            let child = entry.file_name();
            if child == c"." || child == c".." {
                continue;
            }
            let Ok(parent) = d.fd() else { break };
            let child_rel = rel.join(OsStr::from_bytes(child.to_bytes()));
            if let Some((s, _)) = self.entry(parent.as_fd(), child, &child_rel, depth) {
                size += s;
            }
        }
        size
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Random-ish content so no filesystem can compress it away.
        let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + i / 3) as u8).collect();
        std::fs::write(path, data).unwrap();
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn sizes_of_folders_largest_first() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        write(&p.join("big/a/b/file"), 400_000);
        write(&p.join("big/other"), 100_000);
        write(&p.join("small/file"), 20_000);
        std::fs::create_dir(p.join("empty")).unwrap();
        write(&p.join("loose"), 50_000);
        // A symlink to something large is not followed.
        symlink(p.join("big"), p.join("link-to-big")).unwrap();
        symlink("/usr", p.join("small/usr")).unwrap();
        // A hard link is counted once.
        std::fs::hard_link(p.join("big/other"), p.join("big/a/other-again")).unwrap();

        let t = walk(p, later()).unwrap();
        let names: Vec<&str> = t.folders.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        assert_eq!(names, ["big", "small", "empty"], "{t:?}");
        let big = t.folders[0].1;
        assert!((500_000..600_000).contains(&big), "{t:?}");
        let small = t.folders[1].1;
        assert!((20_000..40_000).contains(&small), "{t:?}");
        assert!(t.total_bytes >= big + small + 50_000, "{t:?}");
        assert_eq!(t.stopped, None);
        assert_eq!(t.errors, 0, "{t:?}");
    }

    #[test]
    fn stops_at_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..200 {
            write(&d.path().join(format!("f/{i}")), 10);
        }
        let t = walk(d.path(), Instant::now()).unwrap();
        assert_eq!(t.stopped, Some(Stop::Timeout), "{t:?}");
    }

    #[test]
    fn unreadable_path_is_an_error() {
        assert!(walk(Path::new("/no/such/folder"), later()).is_err());
    }

    #[test]
    fn report_fields() {
        let t = Tree {
            total_bytes: 3 << 30,
            folders: vec![
                (PathBuf::from("log"), 1_288_490_189),
                (PathBuf::from("cache"), 300 << 20),
                (PathBuf::from("lib"), 5),
            ],
            ..Default::default()
        };
        let r = report("/var", Path::new("/var"), &t, 2, Duration::from_secs(10));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.fields["top"], "/var/log 1.2 GiB, /var/cache 300.0 MiB");
        assert_eq!(r.fields["1"], "/var/log 1288490189");
        assert_eq!(r.fields["2"], format!("/var/cache {}", 300u64 << 20));
        assert!(!r.fields.contains_key("3"));
        assert!(!r.fields.contains_key("partial"));
        assert_eq!(r.metrics["folders"], 3.0);
        assert_eq!(r.metrics["total_bytes"], (3u64 << 30) as f64);
        assert_eq!(
            r.summary,
            "/var: 3.0 GiB in 3 folders; largest: /var/log 1.2 GiB, /var/cache 300.0 MiB"
        );
        let partial = Tree {
            stopped: Some(Stop::Timeout),
            ..t
        };
        let r = report(
            "/var",
            Path::new("/var"),
            &partial,
            2,
            Duration::from_secs(10),
        );
        assert_eq!(r.fields["partial"], "timeout");
        assert_eq!(r.metrics["partial"], 1.0);
        assert!(
            r.summary.contains("partial: stopped after 10 s"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn long_names_keep_fields_bounded() {
        let long = "x".repeat(3000);
        let t = Tree {
            folders: vec![(PathBuf::from(&long), 7), (PathBuf::from("b"), 6)],
            ..Default::default()
        };
        let r = report("/d", Path::new("/d"), &t, 10, Duration::from_secs(1));
        assert!(
            r.fields["1"].len() <= FIELD_BYTES,
            "{}",
            r.fields["1"].len()
        );
        assert!(r.fields["1"].ends_with(" 7"));
        assert!(r.fields["top"].len() <= FIELD_BYTES);
        assert_eq!(r.fields["2"], "/d/b 6");
    }

    #[tokio::test]
    async fn arguments() {
        let ctx = CheckContext::default();
        for bad in [
            vec!["relative/path".to_string()],
            vec!["/tmp".into(), "--top".into(), "0".into()],
            vec!["/tmp".into(), "--timeout".into(), "10m".into()],
            vec![],
        ] {
            assert!(
                matches!(run(&bad, &ctx).await, Err(CheckError::Usage(_))),
                "{bad:?}"
            );
        }
        let r = run(&["/no/such/folder".into()], &ctx).await.unwrap();
        assert_eq!(r.status, Status::Unknown);
    }
}
