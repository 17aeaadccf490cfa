//! `clean-temp [PATH] [--older-than 7d]`: delete old files under a temp
//! folder.
//!
//! What may be cleaned is the agent's [`crate::policy`]: PATH (default the
//! system temp folder) is canonicalized and must lie under one of
//! `[policy] clean_temp_roots` (else refused), and an `--older-than` below
//! `[policy] clean_temp_min_age` is raised to that minimum (the summary says
//! so).
//!
//! The sweep is race-free: it never names a file by a full path. It opens
//! `/` and walks down to PATH one component at a time with
//! `O_DIRECTORY|O_NOFOLLOW`, then works only relative to open directory
//! handles: `fstatat(AT_SYMLINK_NOFOLLOW)` to look, `openat(O_NOFOLLOW)` to
//! descend (and `fstat` of the opened folder must be the very folder that
//! was looked at), `unlinkat` to delete. A folder swapped for a symlink
//! mid-walk is thus never followed, and whatever happens to names, what is
//! deleted is an entry of a folder opened under PATH. Symlinks are neither
//! followed nor deleted; sockets, FIFOs and devices are kept too; only
//! regular files and folders emptied by the sweep go, and never PATH itself.
//! It never leaves PATH's mount: every entry it would enter or delete must
//! be on PATH's filesystem (`st_dev`) *and* on PATH's mount (`statx`
//! `STATX_MNT_ID`), and each folder is checked again on its open handle
//! before its entries are touched. The mount id is what tells a bind mount
//! of the same filesystem apart (its `st_dev` is the same): a folder bound
//! into a temp folder — someone's home, `/etc` — is left alone, counted as
//! skipped. A kernel that does not report mount ids (before Linux 5.8)
//! gets no sweep at all rather than one that might cross a bind mount.
//! It goes at most [`MAX_DEPTH`] folders deep (deeper ones are skipped).
//!
//! Its result lists what it deleted — or, in a dry run, would delete — as
//! paths relative to PATH: the first [`LISTED`] entries and the totals in
//! the summary (text and `--json`), the same entries in `changed` for real
//! runs (a dry run changes nothing, so its `changed` stays empty), and the
//! counts in `metrics` (`files`, `dirs`, `deleted_bytes`, `freed_bytes`,
//! `skipped`). `deleted_bytes` adds up the sizes of the files deleted;
//! `freed_bytes` is what the filesystem itself gained (its available space
//! before and after, `statvfs`): a deleted file another process still holds
//! open frees nothing, and the summary says so rather than claim the space.

use super::{done, planned, FixContext};
use crate::checks::disk::human;
use crate::checks::{parse_args, CheckError};
use firstline_proto::{CheckResult, Status};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, StatxFlags, CWD};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Folders deeper than this below PATH are left alone (counted as skipped).
pub const MAX_DEPTH: usize = 64;
/// How many deleted entries a result names.
pub const LISTED: usize = 20;
/// Longest entry name shown (longer ones are cut, with `…`).
const SHOWN_CHARS: usize = 160;
/// The summary lists entries up to about this many bytes.
const SUMMARY_LIST_BYTES: usize = 2048;

#[derive(clap::Parser, Debug)]
#[command(
    name = "clean-temp",
    about = "Delete files older than a bound under a temp folder"
)]
struct Args {
    /// Folder to clean (default: the system temp folder); it must be under
    /// one of the agent's `[policy] clean_temp_roots`.
    path: Option<PathBuf>,
    /// Only files not modified for this long (7d, 12h…); never less than
    /// the agent's `[policy] clean_temp_min_age`.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    older_than: Duration,
}

/// What a sweep found (and, unless a dry run, removed).
#[derive(Debug, Default, PartialEq)]
pub struct Sweep {
    /// Regular files deleted (or that would be).
    pub files: u64,
    /// Folders emptied by the sweep and deleted (or that would be).
    pub dirs: u64,
    /// Size of those files.
    pub bytes: u64,
    /// Entries left alone: on another filesystem or mount (a bind mount
    /// included), or more than
    /// [`MAX_DEPTH`] folders deep.
    pub skipped: u64,
    /// The first [`LISTED`] entries deleted (or that would be), relative to
    /// the cleaned folder, in the order of the walk.
    pub listed: Vec<PathBuf>,
    /// How many entries could not be looked at or removed.
    pub error_count: u64,
    /// The first [`LISTED`] of those errors.
    pub errors: Vec<String>,
}

impl Sweep {
    fn deleted(&mut self, rel: PathBuf) {
        if self.listed.len() < LISTED {
            self.listed.push(rel);
        }
    }

    fn error(&mut self, rel: &Path, why: impl std::fmt::Display) {
        self.error_count += 1;
        if self.errors.len() < LISTED {
            let at = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            self.errors.push(format!("{}: {why}", shown(at)));
        }
    }

    /// "3 files and 1 empty folder (1.2 KiB)".
    fn totals(&self) -> String {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{} and {} ({})",
            plural(self.files, "file", "files"),
            plural(self.dirs, "empty folder", "empty folders"),
            human(self.bytes)
        )
    }

    /// ": a, b, c" or ": a, b, … (first 2 of 7)"; empty when nothing goes.
    fn listing(&self) -> String {
        let total = self.files + self.dirs;
        if self.listed.is_empty() {
            return String::new();
        }
        let mut text = String::new();
        let mut shown_n = 0;
        for rel in &self.listed {
            let name = shown(rel);
            if shown_n > 0 && text.len() + name.len() > SUMMARY_LIST_BYTES {
                break;
            }
            text.push_str(if shown_n == 0 { ": " } else { ", " });
            text.push_str(&name);
            shown_n += 1;
        }
        if (shown_n as u64) < total {
            text.push_str(&format!(", … (first {shown_n} of {total})"));
        }
        text
    }
}

/// An entry's name for people: lossy UTF-8, cut at [`SHOWN_CHARS`].
fn shown(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.into_owned(),
    }
}

pub async fn run(args: &[String], ctx: &FixContext) -> Result<CheckResult, CheckError> {
    let a: Args = parse_args("clean-temp", args)?;
    let asked = a.path.clone().unwrap_or_else(std::env::temp_dir);
    let target = asked.display().to_string();
    if !asked.is_absolute() {
        return Err(CheckError::Usage(format!(
            "{target}: give the folder to clean as an absolute path"
        )));
    }
    let path = match asked.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            let why = format!("cannot clean {target}: {e}");
            return Ok(CheckResult::new("clean-temp", target, Status::Unknown, why));
        }
    };
    // The policy first, on the canonical path: a symlink to /usr is /usr.
    ctx.policy
        .clean_temp_root(&path)
        .map_err(CheckError::Refused)?;
    if path.parent().is_none() {
        return Err(CheckError::Refused(
            "/ is never cleaned ([policy] clean_temp_roots must name folders below /)".into(),
        ));
    }
    if !path.is_dir() {
        return Err(CheckError::Usage(format!(
            "{target} is not a folder that can be cleaned"
        )));
    }
    let min_age = ctx.policy.clean_temp_min_age;
    let older_than = a.older_than.max(min_age);
    let raised = (older_than > a.older_than).then(|| {
        format!(
            "--older-than {} raised to this agent's minimum age, {} ([policy] clean_temp_min_age)",
            humantime::format_duration(a.older_than),
            humantime::format_duration(min_age)
        )
    });
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let dry_run = ctx.dry_run;
    if let Some(note) = &raised {
        ctx.progress.say(note.clone());
    }
    ctx.progress.say(format!(
        "sweeping {} for files older than {}",
        path.display(),
        humantime::format_duration(older_than)
    ));
    let free_before = available(&path);
    let swept = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || sweep(&path, cutoff, dry_run))
            .await
            .map_err(|e| CheckError::Usage(e.to_string()))?
    };
    let sweep = match swept {
        Ok(s) => s,
        Err(why) => return Ok(CheckResult::new("clean-temp", target, Status::Unknown, why)),
    };
    let what = format!(
        "{} older than {}{}",
        sweep.totals(),
        humantime::format_duration(older_than),
        sweep.listing()
    );
    let mut r = if dry_run {
        planned("clean-temp", &target, format!("delete {what}"))
    } else {
        let mut changed: Vec<String> = sweep
            .listed
            .iter()
            .map(|rel| format!("deleted {}", shown(rel)))
            .collect();
        let total = sweep.files + sweep.dirs;
        if total > changed.len() as u64 {
            changed.push(format!(
                "… and {} more: {} in all",
                total - changed.len() as u64,
                sweep.totals()
            ));
        }
        let mut r = done("clean-temp", &target, format!("deleted {what}"), changed);
        // What the filesystem gained, not what the files weighed.
        if let (Some(before), Some(after)) = (free_before, available(&path)) {
            let freed = after.saturating_sub(before);
            r.metrics.insert("freed_bytes".into(), freed as f64);
            r.summary
                .push_str(&format!("; the filesystem gained {}", human(freed)));
            if sweep.bytes > 0 && freed < sweep.bytes / 2 {
                r.summary.push_str(" (deleted files still held open by a process free nothing until it closes them)");
            }
        }
        r
    };
    if sweep.skipped > 0 {
        r.summary.push_str(&format!(
            "; {} left alone (on another filesystem or mount, or more than {MAX_DEPTH} folders deep)",
            sweep.skipped
        ));
    }
    if let Some(note) = raised {
        r.summary.push_str(&format!("; {note}"));
    }
    if sweep.error_count > 0 {
        r.status = Status::Warn;
        r.summary.push_str(&format!(
            "; {} could not be removed (first: {})",
            sweep.error_count,
            sweep.errors.first().map(String::as_str).unwrap_or("?")
        ));
    }
    r.metrics.insert("files".into(), sweep.files as f64);
    r.metrics.insert("dirs".into(), sweep.dirs as f64);
    r.metrics.insert("deleted_bytes".into(), sweep.bytes as f64);
    r.metrics.insert("skipped".into(), sweep.skipped as f64);
    if sweep.error_count > 0 {
        r.metrics.insert("errors".into(), sweep.error_count as f64);
    }
    Ok(r)
}

/// Bytes available to unprivileged users on the filesystem of `path`.
fn available(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Sweep the folder `path` (absolute, canonical: it is reached from `/` one
/// component at a time, no symlink followed), removing the regular files
/// older than `cutoff` and the old folders that leaves empty; with
/// `dry_run`, only count and list. The policy was checked by the caller.
pub fn sweep(path: &Path, cutoff: SystemTime, dry_run: bool) -> Result<Sweep, String> {
    let dir = open_path(path).map_err(|e| {
        format!(
            "cannot open {} without following a symlink: {e}",
            path.display()
        )
    })?;
    let st = rustix::fs::fstat(&dir).map_err(|e| format!("{}: {e}", path.display()))?;
    let mnt = mount_id(dir.as_fd(), c"").map_err(|e| match e {
        Errno::NOSYS => "this kernel does not report mount ids (statx STATX_MNT_ID, Linux 5.8): \
                         clean-temp refuses rather than risk crossing a bind mount"
            .to_string(),
        e => format!("{}: {e}", path.display()),
    })?;
    let cutoff = match cutoff.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(_) => (i64::MIN, 0),
    };
    let mut w = Walker {
        dev: dev_of(&st),
        mnt,
        cutoff,
        dry_run,
        s: Sweep::default(),
    };
    w.walk(dir.as_fd(), Path::new(""), 0);
    Ok(w.s)
}

/// Open the folder `path` from `/`, each component with `O_NOFOLLOW`.
fn open_path(path: &Path) -> rustix::io::Result<OwnedFd> {
    if !path.is_absolute() {
        return Err(Errno::INVAL);
    }
    // The way down is walked with `O_PATH` handles (they read nothing, so
    // a worker whose view holds only the folder to clean may take it);
    // only the folder itself is opened for reading.
    let path_only = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::openat(CWD, c"/", path_only, Mode::empty())?;
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => {
                fd = rustix::fs::openat(&fd, name, path_only, Mode::empty())?
            }
            // Not canonical: refuse rather than resolve `..`.
            _ => return Err(Errno::INVAL),
        }
    }
    open_dir_at(&fd, c".")
}

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW|O_NOATIME)`: a folder, never
/// through a symlink (`O_NOATIME` only where permitted).
fn open_dir_at<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    name: P,
) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(&dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(&dir, name, flags, Mode::empty()),
        other => other,
    }
}

/// The id of the mount `name` in `dir` is on (`c""`: `dir` itself), from
/// `statx(STATX_MNT_ID)`; the name's last component is not followed if a
/// symlink, but a mount on it is entered, as any path lookup does. A
/// kernel that does not report it is an error (`ENOSYS`).
fn mount_id(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<u64> {
    let mut flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    if name.is_empty() {
        flags |= AtFlags::EMPTY_PATH;
    }
    let stx = rustix::fs::statx(dir, name, flags, StatxFlags::MNT_ID)?;
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::MNT_ID) {
        return Err(Errno::NOSYS);
    }
    Ok(stx.stx_mnt_id)
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
fn mtime_of(st: &Stat) -> (i64, u32) {
    (st.st_mtime as i64, st.st_mtime_nsec as u32)
}
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn size_in_bytes(st: &Stat) -> u64 {
    u64::try_from(st.st_size as i64).unwrap_or(0)
}

struct Walker {
    /// PATH's filesystem.
    dev: u64,
    /// PATH's mount ([`mount_id`]).
    mnt: u64,
    /// Seconds and nanoseconds since the epoch.
    cutoff: (i64, u32),
    dry_run: bool,
    s: Sweep,
}

impl Walker {
    /// Sweep the open folder `dir` (at `rel` below PATH, `depth` folders
    /// down); returns whether it is empty afterwards.
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &Path, depth: usize) -> bool {
        let names = match names(dir) {
            Ok(n) => n,
            Err(e) => {
                self.s.error(rel, format!("cannot read: {e}"));
                return false;
            }
        };
        let mut empty = true;
        for name in names {
            let path = rel.join(OsStr::from_bytes(name.to_bytes()));
            let st = match rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue, // gone meanwhile
                Err(e) => {
                    self.s.error(&path, e);
                    empty = false;
                    continue;
                }
            };
            let old = mtime_of(&st) < self.cutoff;
            if dev_of(&st) != self.dev {
                // A mount point: another filesystem, never entered.
                self.s.skipped += 1;
                empty = false;
                continue;
            }
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Directory || (kind == FileType::RegularFile && old) {
                // A bind mount of this filesystem has the same st_dev: its
                // mount id tells it apart (the name leads into the mount).
                match mount_id(dir, name.as_c_str()) {
                    Ok(id) if id == self.mnt => {}
                    Ok(_) => {
                        self.s.skipped += 1;
                        empty = false;
                        continue;
                    }
                    Err(Errno::NOENT) => continue,
                    Err(e) => {
                        self.s.error(&path, e);
                        empty = false;
                        continue;
                    }
                }
            }
            match kind {
                FileType::Directory => {
                    if depth >= MAX_DEPTH {
                        self.s.skipped += 1;
                        empty = false;
                        continue;
                    }
                    let Some(sub) = self.open_sub(dir, &name, &st, &path) else {
                        empty = false;
                        continue;
                    };
                    let now_empty = self.walk(sub.as_fd(), &path, depth + 1);
                    drop(sub);
                    if now_empty && old && self.remove(dir, &name, &path, true) {
                        self.s.dirs += 1;
                        self.s.deleted(path);
                    } else {
                        empty = false;
                    }
                }
                FileType::RegularFile if old => {
                    if self.remove(dir, &name, &path, false) {
                        self.s.files += 1;
                        self.s.bytes += size_in_bytes(&st);
                        self.s.deleted(path);
                    } else {
                        empty = false;
                    }
                }
                // Young files; symlinks (neither followed nor deleted);
                // sockets, FIFOs and devices (live endpoints): kept.
                _ => empty = false,
            }
        }
        empty
    }

    /// Open the subfolder `name` of `dir`, which must still be the folder
    /// `st` describes (not a symlink or another folder swapped in since).
    fn open_sub(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        path: &Path,
    ) -> Option<OwnedFd> {
        let replaced = "replaced while sweeping: left alone";
        let fd = match open_dir_at(dir, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return None,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                self.s.error(path, replaced);
                return None;
            }
            Err(e) => {
                self.s.error(path, e);
                return None;
            }
        };
        match rustix::fs::fstat(&fd) {
            Ok(now) if dev_of(&now) == dev_of(st) && ino_of(&now) == ino_of(st) => {}
            Ok(_) => {
                self.s.error(path, replaced);
                return None;
            }
            Err(e) => {
                self.s.error(path, e);
                return None;
            }
        }
        // Checked again on the open handle: whatever the name led to by
        // now, what is walked is on PATH's mount.
        match mount_id(fd.as_fd(), c"") {
            Ok(id) if id == self.mnt => Some(fd),
            Ok(_) => {
                self.s.skipped += 1;
                None
            }
            Err(e) => {
                self.s.error(path, e);
                None
            }
        }
    }

    /// `unlinkat(dir, name)`: whatever `name` is by now, it is an entry of
    /// a folder under PATH. In a dry run, nothing happens.
    fn remove(&mut self, dir: BorrowedFd<'_>, name: &CStr, path: &Path, folder: bool) -> bool {
        if self.dry_run {
            return true;
        }
        let flags = if folder {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(dir, name, flags) {
            Ok(()) => true,
            Err(Errno::NOENT) => false, // gone meanwhile: not ours to count
            Err(e) => {
                self.s.error(path, e);
                false
            }
        }
    }
}

/// The entry names of the open folder `dir` (without `.` and `..`).
fn names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<CString>> {
    let mut d = Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use rustix::fs::RenameFlags;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn age(path: &Path, days: u64) {
        let t = SystemTime::now() - Duration::from_secs(days * 86_400);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .unwrap();
        f.set_modified(t).unwrap();
    }

    fn week_ago() -> SystemTime {
        SystemTime::now() - Duration::from_secs(7 * 86_400)
    }

    fn ctx(roots: Vec<PathBuf>, dry_run: bool) -> FixContext {
        FixContext {
            progress: Default::default(),
            scripts_dir: "/nonexistent".into(),
            dry_run,
            policy: Arc::new(Policy {
                clean_temp_roots: roots,
                ..Policy::default()
            }),
            runner: Default::default(),
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// `n` files of 10 bytes, 30 days old, in `dir`.
    fn old_files(dir: &Path, n: usize) {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..n {
            let f = dir.join(format!("f{i:03}"));
            std::fs::write(&f, "0123456789").unwrap();
            age(&f, 30);
        }
    }

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn deletes_only_old_files_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let keep_me = outside.path().join("precious");
        std::fs::write(&keep_me, "x").unwrap();
        age(&keep_me, 30);
        let root = &tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("old.log"), "0123456789").unwrap();
        std::fs::write(root.join("new.log"), "n").unwrap();
        std::fs::write(root.join("sub/old2"), "abc").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        std::os::unix::fs::symlink(&keep_me, root.join("filelink")).unwrap();
        age(&root.join("old.log"), 10);
        age(&root.join("sub/old2"), 10);
        age(&root.join("sub"), 10);
        let cutoff = week_ago();

        let dry = sweep(root, cutoff, true).unwrap();
        assert_eq!((dry.files, dry.dirs, dry.bytes), (2, 1, 13), "{dry:?}");
        let mut listed = dry.listed.clone();
        listed.sort();
        assert_eq!(
            listed,
            [
                PathBuf::from("old.log"),
                PathBuf::from("sub"),
                PathBuf::from("sub/old2")
            ]
        );
        assert!(root.join("old.log").exists(), "dry run deletes nothing");
        assert!(root.join("sub/old2").exists(), "dry run deletes nothing");

        let real = sweep(root, cutoff, false).unwrap();
        assert_eq!((real.files, real.dirs, real.bytes), (2, 1, 13), "{real:?}");
        assert_eq!(real.listed.len(), 3);
        assert!(
            !root.join("sub").exists(),
            "an old folder emptied by the sweep goes too"
        );
        assert!(!root.join("old.log").exists());
        assert!(root.join("new.log").exists(), "newer than the bound: kept");
        assert!(
            root.join("link").symlink_metadata().is_ok() && root.join("filelink").exists(),
            "symlinks neither followed nor deleted"
        );
        assert!(keep_me.exists(), "nothing outside PATH touched");
        // Idempotent: a second run finds nothing.
        assert_eq!(sweep(root, cutoff, false).unwrap().files, 0);
    }

    #[test]
    fn a_symlink_on_the_way_to_path_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        old_files(&base.join("outside"), 3);
        std::os::unix::fs::symlink(base.join("outside"), base.join("via")).unwrap();
        assert!(sweep(&base.join("via"), week_ago(), false).is_err());
        assert!(open_path(Path::new("relative")).is_err());
        assert!(open_path(&base.join("x/../outside")).is_err());
        assert_eq!(count(&base.join("outside")), 3);
    }

    #[tokio::test]
    async fn only_folders_under_the_policy_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cleanable");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("usr-link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
        let parent = tmp.path().to_str().unwrap().to_string();
        for dry_run in [true, false] {
            let ctx = ctx(vec![root.clone()], dry_run);
            for bad in [
                "/usr".to_string(),
                "/etc".into(),
                "/root".into(),
                "/var/lib".into(),
                "/".into(),
                parent.clone(),
                format!("{parent}/cleanable/.."),
                format!("{parent}/cleanable/usr-link"),
                format!("{parent}/cleanable/up"),
            ] {
                match run(&args(&[&bad, "--older-than", "0s"]), &ctx).await {
                    Err(CheckError::Refused(why)) => {
                        assert!(why.contains("[policy] clean_temp_roots"), "{bad}: {why}")
                    }
                    other => panic!("{bad} not refused: {other:?}"),
                }
            }
            let ok = run(&args(&[&format!("{parent}/cleanable/sub")]), &ctx).await;
            assert_eq!(ok.unwrap().status, Status::Ok);
        }
        // The default policy: the system temp folders only.
        let default = FixContext {
            policy: Arc::new(Policy::default()),
            ..ctx(vec![], true)
        };
        for bad in ["/usr", "/etc", "/root", "/var/lib", "/var"] {
            let r = run(&args(&[bad, "--older-than", "0s"]), &default).await;
            assert!(matches!(r, Err(CheckError::Refused(_))), "{bad}: {r:?}");
        }
        let r = run(&args(&["relative/dir"]), &default).await;
        assert!(matches!(r, Err(CheckError::Usage(_))), "{r:?}");
    }

    #[tokio::test]
    async fn dry_run_lists_and_deletes_nothing_and_min_age_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cleanable");
        old_files(&root.join("junk"), 25);
        std::fs::write(root.join("junk/young"), "y").unwrap();
        let path = root.join("junk").to_str().unwrap().to_string();

        let dry = run(
            &args(&[&path, "--older-than", "0s"]),
            &ctx(vec![root.clone()], true),
        )
        .await
        .unwrap();
        assert_eq!(dry.status, Status::Ok, "{dry:?}");
        assert!(
            dry.summary.starts_with(
                "dry run: would delete 25 files and 0 empty folders (250 B) older than 1h: f0"
            ),
            "{}",
            dry.summary
        );
        assert!(
            dry.summary.contains(", … (first 20 of 25)"),
            "{}",
            dry.summary
        );
        assert!(
            dry.summary
                .contains("--older-than 0s raised to this agent's minimum age, 1h"),
            "{}",
            dry.summary
        );
        assert!(!dry.summary.contains("young"), "{}", dry.summary);
        assert!(dry.changed.is_empty(), "a dry run changes nothing");
        assert_eq!(dry.metrics["files"], 25.0);
        assert_eq!(count(&root.join("junk")), 26, "dry run deletes nothing");

        let real = run(
            &args(&[&path, "--older-than", "1d"]),
            &ctx(vec![root.clone()], false),
        )
        .await
        .unwrap();
        assert!(
            real.summary
                .starts_with("deleted 25 files and 0 empty folders"),
            "{}",
            real.summary
        );
        assert!(!real.summary.contains("raised"), "{}", real.summary);
        assert_eq!(real.changed.len(), LISTED + 1, "{:?}", real.changed);
        assert!(
            real.changed[0].starts_with("deleted f0"),
            "{:?}",
            real.changed
        );
        assert_eq!(
            real.changed[LISTED],
            "… and 5 more: 25 files and 0 empty folders (250 B) in all"
        );
        assert_eq!(count(&root.join("junk")), 1, "the young file stays");
    }

    #[test]
    fn deep_folders_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let mut deep = root.clone();
        for _ in 0..MAX_DEPTH + 2 {
            deep.push("d");
        }
        old_files(&deep, 1);
        old_files(&root, 1);
        let s = sweep(&root, week_ago(), false).unwrap();
        assert_eq!((s.files, s.skipped), (1, 1), "{s:?}");
        assert!(deep.join("f000").exists());
    }

    /// A folder under PATH swapped with a symlink to an outside folder, over
    /// and over (`renameat2(RENAME_EXCHANGE)`), while the sweep runs: what
    /// is outside survives every round.
    #[test]
    fn swap_race_deletes_nothing_outside() {
        const FILES: usize = 200;
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        old_files(&outside, FILES);
        age(&outside, 30);
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let mut deleted_inside = 0;
        for round in 0..20 {
            let victim = root.join("victim");
            if victim.symlink_metadata().is_err() {
                std::fs::create_dir(&victim).unwrap();
            }
            old_files(&victim, FILES);
            let stop = Arc::new(AtomicBool::new(false));
            let swaps = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let swapper = {
                let (stop, swaps, root) = (stop.clone(), swaps.clone(), root.clone());
                std::thread::spawn(move || {
                    let dir = rustix::fs::open(&root, OFlags::DIRECTORY, Mode::empty()).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        if rustix::fs::renameat_with(
                            &dir,
                            "victim",
                            &dir,
                            "link",
                            RenameFlags::EXCHANGE,
                        )
                        .is_ok()
                        {
                            swaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            // Sweep only once the swapper is swapping (on a loaded machine
            // the thread may take a while to be scheduled), then while it
            // swaps.
            let started = std::time::Instant::now();
            while swaps.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::yield_now();
            }
            let s = sweep(&root, week_ago(), false).unwrap();
            stop.store(true, Ordering::Relaxed);
            swapper.join().unwrap();
            assert!(
                swaps.load(Ordering::Relaxed) > 0,
                "round {round}: the swapper never swapped"
            );
            deleted_inside += s.files;
            // Put the folder back under its name (the swapper may have left
            // the symlink there).
            if victim.symlink_metadata().unwrap().file_type().is_symlink() {
                rustix::fs::renameat_with(
                    CWD,
                    &victim,
                    CWD,
                    root.join("link"),
                    RenameFlags::EXCHANGE,
                )
                .unwrap();
            }
            assert!(root
                .join("link")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(
                count(&outside),
                FILES,
                "round {round}: a file outside the cleaned folder was deleted: {s:?}"
            );
        }
        assert!(
            deleted_inside > 0,
            "the sweep never reached the victim folder"
        );
    }

    /// A filesystem mounted below PATH is not entered (needs root and
    /// `mount`; skipped where they are missing).
    #[test]
    fn other_filesystems_are_left_alone() {
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let mnt = root.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        age(&mnt, 30);
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "firstline-test"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs here: cross-filesystem test skipped");
            return;
        }
        let _guard = Unmount(mnt.clone());
        old_files(&mnt, 3);
        old_files(&root.join("here"), 2);
        let s = sweep(&root, week_ago(), false).unwrap();
        assert_eq!((s.files, s.skipped), (2, 1), "{s:?}");
        assert_eq!(count(&mnt), 3, "the other filesystem is untouched");
    }

    /// A folder of the same filesystem bind-mounted below PATH has PATH's
    /// `st_dev`: only its mount id tells it apart, and it is not entered
    /// (needs root and `mount`; skipped where they are missing).
    #[test]
    fn bind_mounts_of_the_same_filesystem_are_left_alone() {
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let outside = base.join("outside");
        old_files(&outside, 3);
        let root = base.join("root");
        let bound = root.join("sub/bound");
        std::fs::create_dir_all(&bound).unwrap();
        let mounted = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&outside)
            .arg(&bound)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("cannot bind-mount here: bind mount test skipped");
            return;
        }
        let _guard = Unmount(bound.clone());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&bound).unwrap().dev(),
            std::fs::metadata(&root).unwrap().dev()
        );
        old_files(&root.join("here"), 2);
        let s = sweep(&root, week_ago(), false).unwrap();
        assert_eq!((s.files, s.skipped), (2, 1), "{s:?}");
        assert_eq!(count(&outside), 3, "the bind-mounted folder is untouched");
    }
}
