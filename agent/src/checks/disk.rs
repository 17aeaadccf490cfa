//! `disk [PATH] [--warn PCT] [--crit PCT]` — space and inodes.
//!
//! Mounts come from sysinfo; the numbers come from `statvfs(2)` so they are
//! the very numbers `df` prints: used = blocks − free, and use% =
//! used / (used + available), since the blocks reserved for root are
//! neither. With no PATH every mount is checked and the worst one decides.

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
    pub inodes_used_pct: Option<f64>,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: DiskArgs = parse_args("disk", args)?;
    if a.warn > a.crit {
        return Err(CheckError::Usage(format!(
            "--warn ({}) must not be above --crit ({})",
            a.warn, a.crit
        )));
    }
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
            ))
        }
    };
    Ok(match measured {
        Ok(list) if !list.is_empty() => report(&target, &list, a.warn, a.crit),
        Ok(_) => CheckResult::new(
            "disk",
            target,
            Status::Unknown,
            "no mounted filesystem found",
        ),
        Err(e) => CheckResult::new("disk", target, Status::Unknown, e),
    })
}

fn report(target: &str, list: &[Usage], warn: f64, crit: f64) -> CheckResult {
    let status_of = |u: &Usage| {
        let inode = u
            .inodes_used_pct
            .map(|p| grade(p, warn, crit))
            .unwrap_or(Status::Ok);
        grade(u.used_pct, warn, crit).worst(inode)
    };
    let worst = list
        .iter()
        .max_by(|a, b| {
            status_of(a)
                .cmp(&status_of(b))
                .then(a.used_pct.total_cmp(&b.used_pct))
        })
        .expect("non-empty list");
    let status = status_of(worst);
    let summary = format!(
        "{}: {:.1}% used ({} of {}, {} free){}{}",
        worst.mount.display(),
        worst.used_pct,
        human(worst.used_bytes),
        human(worst.total_bytes),
        human(worst.avail_bytes),
        worst
            .inodes_used_pct
            .map(|p| format!(", inodes {p:.1}% used"))
            .unwrap_or_default(),
        if list.len() > 1 {
            format!(" — worst of {} mounts", list.len())
        } else {
            String::new()
        }
    );
    let mut result = CheckResult::new("disk", target, status, summary);
    let single = list.len() == 1;
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
        if let Some(p) = u.inodes_used_pct {
            put("inodes_used_pct", round1(p));
        }
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
        inodes_used_pct,
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
