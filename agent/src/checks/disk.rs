//! `disk [PATH] [--warn PCT] [--crit PCT] [--inodes-warn PCT]
//! [--inodes-crit PCT]` — space and inodes.
//!
//! Mounts come from sysinfo; the numbers come from `statvfs(2)` so they are
//! the very numbers `df` prints: used = blocks − free, and use% =
//! used / (used + available), since the blocks reserved for root are
//! neither; inodes as `df -i`: used = files − free, use% = used / files.
//! A filesystem that reports no inode count (btrfs, some network
//! filesystems) is graded on bytes alone. With no PATH every mount is
//! checked and the worst one decides. PATH's filesystem is the mount point
//! of /proc/self/mounts that is the longest prefix of PATH made canonical
//! (symlinks resolved); the figures are `statvfs` of PATH itself.
//!
//! Metrics: `used_pct`, `used_bytes`, `free_bytes`, `total_bytes`, and
//! where the filesystem tells, `inodes_used_pct`, `inodes_free`,
//! `inodes_total` (prefixed `MOUNT:` when several mounts are checked).
//! Fields: `mount` (the mount point judged: PATH's, or the worst one), and
//! `error` when the status is not ok: `bytes` (space is over its warn or
//! crit threshold), `inodes` (inodes are — the worse of the two decides;
//! on a tie, the fuller), `timeout` (the filesystem did not answer),
//! `read-only` (PATH's filesystem is mounted read-only: whatever its free
//! space, nothing can be written — critical). Metric `read_only` (1/0).

use super::{blocking, grade, parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "disk",
    about = "Disk space and inodes of a path's filesystem, or of every mount"
)]
pub struct DiskArgs {
    /// A path on the filesystem to check (every mount when omitted).
    pub path: Option<PathBuf>,
    /// Warn at this used percentage.
    #[arg(long, default_value_t = 80.0)]
    pub warn: f64,
    /// Critical at this used percentage.
    #[arg(long, default_value_t = 90.0)]
    pub crit: f64,
    /// Warn at this percentage of inodes used.
    #[arg(long, default_value_t = 90.0)]
    pub inodes_warn: f64,
    /// Critical at this percentage of inodes used.
    #[arg(long, default_value_t = 95.0)]
    pub inodes_crit: f64,
    /// Give up after this long (a hung network mount does not answer).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// One filesystem's figures, as `df` computes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub mount: PathBuf,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
    pub used_pct: f64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_used_pct: Option<f64>,
    /// Mounted read-only (`ST_RDONLY`).
    pub read_only: bool,
}

/// Thresholds, in percent used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub warn: f64,
    pub crit: f64,
    pub inodes_warn: f64,
    pub inodes_crit: f64,
}

impl Limits {
    /// The status of one filesystem, and which figure decides it
    /// (`bytes` or `inodes`) when it is not ok.
    pub fn judge(&self, u: &Usage) -> (Status, Option<&'static str>) {
        let bytes = grade(u.used_pct, self.warn, self.crit);
        let inodes = u
            .inodes_used_pct
            .map(|p| grade(p, self.inodes_warn, self.inodes_crit))
            .unwrap_or(Status::Ok);
        let status = bytes.worst(inodes);
        let which = if status == Status::Ok {
            None
        } else if inodes > bytes
            || (inodes == bytes && u.inodes_used_pct.is_some_and(|p| p > u.used_pct))
        {
            Some("inodes")
        } else {
            Some("bytes")
        };
        (status, which)
    }
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: DiskArgs = parse_args("disk", args)?;
    if a.warn > a.crit {
        return Err(CheckError::Usage(format!(
            "--warn ({}) must not be above --crit ({})",
            a.warn, a.crit
        )));
    }
    if a.inodes_warn > a.inodes_crit {
        return Err(CheckError::Usage(format!(
            "--inodes-warn ({}) must not be above --inodes-crit ({})",
            a.inodes_warn, a.inodes_crit
        )));
    }
    let limits = Limits {
        warn: a.warn,
        crit: a.crit,
        inodes_warn: a.inodes_warn,
        inodes_crit: a.inodes_crit,
    };
    let path = a.path.clone();
    ctx.progress.say(match &path {
        Some(p) => format!("measuring the filesystem of {}", p.display()),
        None => "measuring every mounted filesystem".into(),
    });
    let measured = blocking(a.timeout, move || match path {
        Some(p) => usage_of(&p).map(|u| vec![u]),
        None => Ok(all_mounts()),
    })
    .await;
    let target = a
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "all mounts".into());
    let measured = match measured {
        Ok(m) => m,
        Err(e) => {
            return Ok(CheckResult::new(
                "disk",
                target,
                Status::Crit,
                format!("the filesystem gave {e} (a hung network mount?)"),
            )
            .field("error", "timeout"))
        }
    };
    Ok(match measured {
        Ok(list) if !list.is_empty() => report(&target, &list, &limits),
        Ok(_) => CheckResult::new(
            "disk",
            target,
            Status::Unknown,
            "no mounted filesystem found",
        ),
        Err(e) => CheckResult::new("disk", target, Status::Unknown, e),
    })
}

fn report(target: &str, list: &[Usage], limits: &Limits) -> CheckResult {
    let worst = list
        .iter()
        .max_by(|a, b| {
            limits
                .judge(a)
                .0
                .cmp(&limits.judge(b).0)
                .then(a.used_pct.total_cmp(&b.used_pct))
        })
        .expect("non-empty list");
    let (status, error) = limits.judge(worst);
    let inodes = worst
        .inodes_used_pct
        .map(|p| {
            format!(
                "inodes {p:.1}% used ({} of {} free)",
                worst.inodes_free, worst.inodes_total
            )
        })
        .unwrap_or_default();
    let space = format!(
        "{:.1}% used ({} of {}, {} free)",
        worst.used_pct,
        human(worst.used_bytes),
        human(worst.total_bytes),
        human(worst.avail_bytes),
    );
    let figures = match (error, inodes.is_empty()) {
        (_, true) => space,
        (Some("inodes"), false) => format!("{inodes}; space {space}"),
        (_, false) => format!("{space}, {inodes}"),
    };
    let summary = format!(
        "{}: {figures}{}",
        worst.mount.display(),
        if list.len() > 1 {
            format!(" — worst of {} mounts", list.len())
        } else {
            String::new()
        }
    );
    let single = list.len() == 1;
    // A read-only filesystem has "free space" nobody can use; judged for a
    // PATH only (a system has read-only mounts by design: snaps, media).
    let read_only = single && worst.read_only;
    let (status, error, summary) = if read_only {
        (
            Status::Crit,
            Some("read-only"),
            format!(
                "{}: mounted read-only, nothing can be written ({summary})",
                worst.mount.display()
            ),
        )
    } else {
        (status, error, summary)
    };
    let mut result = CheckResult::new("disk", target, status, summary);
    for u in list {
        let prefix = if single {
            String::new()
        } else {
            format!("{}:", u.mount.display())
        };
        let mut put = |k: &str, v: f64| {
            result.metrics.insert(format!("{prefix}{k}"), v);
        };
        put("used_pct", round1(u.used_pct));
        put("used_bytes", u.used_bytes as f64);
        put("free_bytes", u.avail_bytes as f64);
        put("total_bytes", u.total_bytes as f64);
        put("read_only", if u.read_only { 1.0 } else { 0.0 });
        if let Some(p) = u.inodes_used_pct {
            put("inodes_used_pct", round1(p));
            put("inodes_free", u.inodes_free as f64);
            put("inodes_total", u.inodes_total as f64);
        }
    }
    result
        .fields
        .insert("mount".into(), worst.mount.display().to_string());
    if let Some(e) = error {
        result.fields.insert("error".into(), e.into());
    }
    result
}

/// The filesystem holding `path`, measured.
pub fn usage_of(path: &Path) -> Result<Usage, String> {
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("cannot check {}: {e}", path.display()))?;
    let mount = mount_of(&canonical).unwrap_or_else(|| canonical.clone());
    measure(&canonical, mount)
}

/// Every real mounted filesystem sysinfo reports.
pub fn all_mounts() -> Vec<Usage> {
    let disks = sysinfo::Disks::new_with_refreshed_list().map(|d| {
        d.iter()
            .map(|d| d.mount_point().to_path_buf())
            .collect::<Vec<_>>()
    });
    let mut mounts = disks.unwrap_or_default();
    mounts.sort();
    mounts.dedup();
    mounts
        .into_iter()
        .filter_map(|m: PathBuf| measure(&m, m.clone()).ok())
        .filter(|u| u.total_bytes > 0)
        .collect()
}

/// Longest mount point that is a prefix of `path`, from /proc/self/mounts
/// (which, unlike listing disks with their sizes, never touches another
/// filesystem — a hung NFS mount elsewhere cannot block this one), else
/// from sysinfo.
fn mount_of(path: &Path) -> Option<PathBuf> {
    let mounts: Vec<PathBuf> = match std::fs::read_to_string("/proc/self/mounts") {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|m| PathBuf::from(unescape_mount(m)))
            .collect(),
        Err(_) => sysinfo::Disks::new_with_refreshed_list()
            .ok()?
            .iter()
            .map(|d| d.mount_point().to_path_buf())
            .collect(),
    };
    mounts
        .into_iter()
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
}

/// /proc/self/mounts writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn measure(path: &Path, mount: PathBuf) -> Result<Usage, String> {
    let s = rustix::fs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    let total = s.f_blocks * frsize;
    let used = (s.f_blocks - s.f_bfree.min(s.f_blocks)) * frsize;
    let avail = s.f_bavail * frsize;
    let used_pct = if used + avail > 0 {
        used as f64 * 100.0 / (used + avail) as f64
    } else {
        0.0
    };
    let inodes_used_pct = (s.f_files > 0)
        .then(|| (s.f_files - s.f_ffree.min(s.f_files)) as f64 * 100.0 / s.f_files as f64);
    Ok(Usage {
        mount,
        total_bytes: total,
        used_bytes: used,
        avail_bytes: avail,
        used_pct,
        inodes_total: s.f_files,
        inodes_free: s.f_ffree.min(s.f_files),
        inodes_used_pct,
        read_only: s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Bytes in the largest binary unit that keeps the number above 1.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn temp_dir_has_sane_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(
            &[dir.path().display().to_string()],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        let pct = r.metrics["used_pct"];
        assert!((0.0..=100.0).contains(&pct), "{r:?}");
        assert!(r.metrics["total_bytes"] >= r.metrics["used_bytes"]);
        assert_ne!(r.status, Status::Unknown, "{r:?}");
    }

    #[tokio::test]
    async fn thresholds_drive_status() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().display().to_string();
        let crit = run(
            &[
                p.clone(),
                "--warn".into(),
                "0".into(),
                "--crit".into(),
                "0".into(),
            ],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(crit.status, Status::Crit);
        let ok = run(
            &[
                p,
                "--warn".into(),
                "100.1".into(),
                "--crit".into(),
                "100.2".into(),
            ],
            &CheckContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(ok.status, Status::Ok);
    }

    #[tokio::test]
    async fn missing_path_is_unknown_not_a_crash() {
        let r = run(&["/no/such/path/anywhere".into()], &CheckContext::default())
            .await
            .unwrap();
        assert_eq!(r.status, Status::Unknown);
        assert!(r.summary.contains("/no/such/path"), "{}", r.summary);
    }

    #[tokio::test]
    async fn warn_above_crit_is_usage_error() {
        let err = run(
            &["--warn".into(), "95".into(), "--crit".into(), "90".into()],
            &CheckContext::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CheckError::Usage(_)));
    }

    fn usage(used_pct: f64, inodes: Option<f64>) -> Usage {
        Usage {
            mount: PathBuf::from("/m"),
            total_bytes: 1000,
            used_bytes: (used_pct * 10.0) as u64,
            avail_bytes: 1000 - (used_pct * 10.0) as u64,
            used_pct,
            inodes_total: 100,
            inodes_free: inodes.map(|p| 100 - p as u64).unwrap_or(0),
            inodes_used_pct: inodes,
            read_only: false,
        }
    }

    #[test]
    fn bytes_or_inodes_decide() {
        let l = Limits {
            warn: 80.0,
            crit: 90.0,
            inodes_warn: 90.0,
            inodes_crit: 95.0,
        };
        assert_eq!(l.judge(&usage(10.0, Some(10.0))), (Status::Ok, None));
        assert_eq!(l.judge(&usage(10.0, None)), (Status::Ok, None));
        assert_eq!(
            l.judge(&usage(85.0, Some(10.0))),
            (Status::Warn, Some("bytes"))
        );
        assert_eq!(
            l.judge(&usage(10.0, Some(96.0))),
            (Status::Crit, Some("inodes"))
        );
        assert_eq!(
            l.judge(&usage(10.0, Some(92.0))),
            (Status::Warn, Some("inodes"))
        );
        // The worse status decides, then the fuller figure.
        assert_eq!(
            l.judge(&usage(95.0, Some(92.0))),
            (Status::Crit, Some("bytes"))
        );
        assert_eq!(
            l.judge(&usage(91.0, Some(99.0))),
            (Status::Crit, Some("inodes"))
        );
        assert_eq!(
            l.judge(&usage(99.0, Some(96.0))),
            (Status::Crit, Some("bytes"))
        );

        let r = report("/m", &[usage(10.0, Some(96.0))], &l);
        assert_eq!(r.status, Status::Crit);
        assert_eq!(r.fields["error"], "inodes");
        assert_eq!(r.fields["mount"], "/m");
        assert_eq!(r.metrics["inodes_used_pct"], 96.0);
        assert_eq!(r.metrics["inodes_free"], 4.0);
        assert_eq!(r.metrics["inodes_total"], 100.0);
        assert!(
            r.summary
                .starts_with("/m: inodes 96.0% used (4 of 100 free); space 10.0% used"),
            "{}",
            r.summary
        );
        let r = report("/m", &[usage(10.0, None)], &l);
        assert_eq!(r.status, Status::Ok);
        assert!(!r.fields.contains_key("error"));
        assert!(!r.metrics.contains_key("inodes_used_pct"));
    }

    #[tokio::test]
    async fn inode_thresholds_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().display().to_string();
        let args = |extra: &[&str]| {
            let mut v = vec![
                p.clone(),
                "--warn".into(),
                "100.1".into(),
                "--crit".into(),
                "100.2".into(),
            ];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let ctx = CheckContext::default();
        let r = run(&args(&[]), &ctx).await.unwrap();
        if !r.metrics.contains_key("inodes_used_pct") {
            return; // this filesystem does not count inodes
        }
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let r = run(&args(&["--inodes-warn", "0", "--inodes-crit", "0"]), &ctx)
            .await
            .unwrap();
        assert_eq!(r.status, Status::Crit, "{r:?}");
        assert_eq!(r.fields["error"], "inodes");
        assert!(matches!(
            run(&args(&["--inodes-warn", "96", "--inodes-crit", "95"]), &ctx).await,
            Err(CheckError::Usage(_))
        ));
    }

    #[test]
    fn mount_fields_unescape() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/odd\\x"), "/odd\\x");
        assert_eq!(
            mount_of(Path::new("/proc/self")),
            Some(PathBuf::from("/proc"))
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
