//! Small filesystems of the test's own: a `tmpfs` of a given size and
//! inode count mounted on a folder of the test (as root), unmounted on drop
//! — even when the test fails — so a full disk or exhausted inodes are real
//! and touch nothing else.

use crate::peers::{must, require};
use crate::run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE,nr_inodes=INODES tmpfs PATH` (PATH is
    /// made if missing).
    pub fn mount(path: &Path, size: &str, inodes: u64) -> Tmpfs {
        let mount = require("mount", "mount");
        std::fs::create_dir_all(path).expect("mount point");
        must(
            Command::new(mount)
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},nr_inodes={inodes},mode=0755"))
                .arg("tmpfs")
                .arg(path),
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// A file of `bytes` bytes at `rel`, last modified `age` ago (folders
    /// made as needed).
    pub fn file(&self, rel: &str, bytes: usize, age: Duration) {
        let path = self.path.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&path, vec![b'x'; bytes]).expect("write file");
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_modified(SystemTime::now() - age)
            .expect("set_modified");
    }

    /// Empty files in `rel` until the filesystem has no inode left; how
    /// many were made.
    pub fn exhaust_inodes(&self, rel: &str) -> usize {
        let dir = self.path.join(rel);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut n = 0;
        while std::fs::File::create(dir.join(format!("f{n}"))).is_ok() {
            n += 1;
        }
        n
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = run(Command::new("umount").arg(&self.path));
        if !out.status.success() {
            // Busy (a process still in it): detach it now, gone when free.
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}
