//! Opening a file a request names (`http --ca FILE`): in the worker, as its
//! user, and only a regular file of bounded size — never a device that never
//! ends (`/dev/urandom`, `/dev/zero`), a FIFO that never opens, a socket or
//! `/proc/kcore`.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The whole of the regular file at `path`, at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            rustix::fs::OFlags::NONBLOCK.bits() as i32 | rustix::fs::OFlags::NOCTTY.bits() as i32,
        )
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > cap {
        return Err(format!("{shown} is larger than {cap} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!("{shown} is larger than {cap} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files() {
        assert!(read_regular(Path::new("/dev/urandom"), 1024)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(read_regular(Path::new("/dev/zero"), 1024).is_err());
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Returns at once: no writer is waited for.
        assert!(read_regular(&fifo, 1024)
            .unwrap_err()
            .contains("not a regular file"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(read_regular(&big, 1024).unwrap_err().contains("larger"));
        assert_eq!(read_regular(&big, 4096).unwrap().len(), 2048);
    }
}
