//! Files only their owner may read: private keys, credentials, databases,
//! outboxes, configs that hold a secret.
//!
//! * [`write_private`] replaces a file's content through a fresh, randomly
//!   named temporary file beside it (created with `O_EXCL`, mode 0600, so a
//!   file or symlink planted there is never opened), then an atomic rename.
//! * [`private_database`] makes an SQLite database 0600 before SQLite opens
//!   it: SQLite gives its `-wal` and `-shm` files the main file's mode.
//! * [`create_dir`] makes a folder and any missing parent with exactly the
//!   mode asked (0700 for anything that holds private data), whatever the
//!   umask: `mkdir` applies the umask, so a loose one (`umask 000`) would
//!   otherwise leave a world-writable folder, and a strict one a folder its
//!   users cannot enter.
//! * [`restrict`] takes permission bits away from an existing file;
//!   [`exposed`] says whether a file is readable by others than its owner
//!   and its owner's group.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path`, readable by its owner only (0600).
///
/// The content goes to a new temporary file in the same folder, named
/// `.NAME.RANDOM.tmp` and created with `O_CREAT|O_EXCL` (which never follows
/// a symlink and never reuses an existing file), is synced, and is renamed
/// over `path` (atomic: readers see the old file or the new one); the folder
/// is then synced so the rename survives a crash. A symlink at `path` itself
/// is replaced, not followed.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Best effort: some filesystems refuse to sync a directory.
    if let Ok(dir) = File::open(folder_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A new 0600 temporary file in `path`'s folder, with a random name.
fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .rand_bytes(16)
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(folder_of(path))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create the folder `path` and its missing parents, each with exactly
/// `mode` (0o700: private; 0o755 only for a folder others must reach), set
/// again after `mkdir` so the umask changes nothing. Folders that already
/// exist are left as they are (an admin's choice, or a package's). Returns
/// the folders it created, outermost first.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt;
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => break,
            // A symlink to a folder is followed, as `mkdir -p` does.
            Ok(m) if m.file_type().is_symlink() && p.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a folder", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(p.to_path_buf());
                at = p.parent();
            }
            Err(e) => return Err(e),
        }
    }
    let mut created = Vec::new();
    for dir in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, Permissions::from_mode(mode))?;
                created.push(dir);
            }
            // Made meanwhile by someone else: theirs, not ours to chmod.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Make sure `path` exists and only its owner can read or write it: a new
/// file is created 0600; an existing one (or, for a symlink, its target, as
/// SQLite follows it) keeps its content and loses its group and other bits.
/// Not being allowed to change the mode of a file someone else owns is
/// logged, not an error (the program may still use it through its group).
pub fn create_private_file(path: &Path) -> io::Result<()> {
    // create without truncate: an existing file keeps its content.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(f) => {
            let mode = f.metadata()?.permissions().mode() & 0o7777;
            if mode & !0o600 == 0 {
                return Ok(());
            }
            lenient(
                path,
                mode,
                f.set_permissions(Permissions::from_mode(mode & 0o600)),
            )
        }
        // Exists, but not writable by us: tighten what we can.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.exists() => {
            restrict_lenient(path, 0o600)
        }
        Err(e) => Err(e),
    }
}

/// [`create_private_file`] for an SQLite database, and the same for its
/// `-wal`, `-shm` and `-journal` files when they exist (left by an older
/// version with a looser mode). They live beside the database's real path
/// (SQLite resolves symlinks).
pub fn private_database(path: &Path) -> io::Result<()> {
    create_private_file(path)?;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = real.clone().into_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            restrict_lenient(&side, 0o600)?;
        }
    }
    Ok(())
}

/// Take away every permission bit of `path` outside `mode` (0o600, 0o640…);
/// `Ok(true)` when the mode changed. Follows symlinks.
pub fn restrict(path: &Path, mode: u32) -> io::Result<bool> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, Permissions::from_mode(current & mode))?;
    Ok(true)
}

fn restrict_lenient(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    lenient(path, current, restrict(path, mode).map(|_| ()))
}

/// A mode change refused because the file is someone else's is a warning.
fn lenient(path: &Path, mode: u32, result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                "{} has mode {mode:04o} (readable by others) and cannot be made private here: {e}",
                path.display()
            );
            Ok(())
        }
        other => other,
    }
}

/// The mode of `path` when others than its owner and a trusted group can
/// read it (world-readable, or group-readable by a group that is neither
/// this process's nor in `trusted_groups`), else `None`. A file 0640 owned
/// by the group a service runs as is not exposed.
pub fn exposed(path: &Path, trusted_groups: &[u32]) -> io::Result<Option<u32>> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let others = mode & 0o004 != 0;
    let gid = meta.gid();
    let group = mode & 0o040 != 0
        && gid != rustix::process::getegid().as_raw()
        && !trusted_groups.contains(&gid);
    Ok((others || group).then_some(mode))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// The names an older version used for its temporary file, and the
    /// obvious guesses: an attacker plants files and symlinks at each.
    fn predictable(path: &Path) -> Vec<PathBuf> {
        let mut plain = path.as_os_str().to_owned();
        plain.push(".tmp");
        vec![PathBuf::from(plain), path.with_extension("tmp")]
    }

    #[test]
    fn planted_tmp_file_and_symlink_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "do not touch").unwrap();
        let victim_mode = mode(&victim);
        let target = dir.path().join("ca-key.pem");
        let [dot_tmp, ext_tmp]: [PathBuf; 2] = predictable(&target).try_into().unwrap();

        // A pre-existing world-writable `.tmp` and a symlink to a file outside.
        std::fs::write(&dot_tmp, "planted").unwrap();
        std::fs::set_permissions(&dot_tmp, Permissions::from_mode(0o666)).unwrap();
        symlink(&victim, &ext_tmp).unwrap();

        write_private(&target, b"SECRET KEY").unwrap();

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
        assert_eq!(mode(&victim), victim_mode);
        assert_eq!(std::fs::read(&target).unwrap(), b"SECRET KEY");
        assert_eq!(mode(&target), 0o600, "written file is owner-only");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
        // The planted files are left as they were, and no temp file stays.
        assert_eq!(std::fs::read_to_string(&dot_tmp).unwrap(), "planted");
        assert_eq!(std::fs::read_link(&ext_tmp).unwrap(), victim);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");

        // Again, over an existing file: still 0600, still untouched outside.
        std::fs::set_permissions(&target, Permissions::from_mode(0o644)).unwrap();
        write_private(&target, b"NEW KEY").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"NEW KEY");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
        assert_eq!(mode(&victim), victim_mode);
    }

    #[test]
    fn symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "do not touch").unwrap();
        let target = dir.path().join("identity.pem");
        symlink(&victim, &target).unwrap();
        write_private(&target, b"KEY").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
        assert_eq!(mode(&target), 0o600);
    }

    #[test]
    fn temp_names_are_random() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("relay-key.pem");
        let a = temp_beside(&target).unwrap();
        let b = temp_beside(&target).unwrap();
        let (na, nb) = (a.path().to_path_buf(), b.path().to_path_buf());
        assert_ne!(na, nb);
        assert_eq!(na.parent(), Some(dir.path()));
        for n in [&na, &nb] {
            assert!(!predictable(&target).contains(n), "{}", n.display());
            let name = n.file_name().unwrap().to_string_lossy().into_owned();
            let random = name
                .strip_prefix(".relay-key.pem.")
                .and_then(|r| r.strip_suffix(".tmp"))
                .unwrap_or_else(|| panic!("{name}"));
            assert_eq!(random.len(), 16, "{name}");
            assert_eq!(mode(n), 0o600);
        }
    }

    #[test]
    fn database_files_are_created_private_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

        // An older, world-readable database and WAL keep their content.
        let old = dir.path().join("old.db");
        std::fs::write(&old, "rows").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        let wal = dir.path().join("old.db-wal");
        std::fs::write(&wal, "wal").unwrap();
        std::fs::set_permissions(&wal, Permissions::from_mode(0o664)).unwrap();
        private_database(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "rows");

        // Through a symlink (the packaged relay links relay.db from /etc).
        let real = dir.path().join("real.db");
        std::fs::write(&real, "x").unwrap();
        std::fs::set_permissions(&real, Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.db");
        symlink(&real, &link).unwrap();
        private_database(&link).unwrap();
        assert_eq!(mode(&real), 0o600);
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "x");
    }

    /// (The umask is per process, so it is not changed here, where tests
    /// share one; `tests/attacks_local.rs` runs the binaries under
    /// `umask 000`.)
    #[test]
    fn folders_get_exactly_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        assert_eq!(create_dir(&deep, 0o700).unwrap().len(), 3);
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        assert_eq!(create_dir(&dir.path().join("pub"), 0o755).unwrap().len(), 1);
        assert_eq!(mode(&dir.path().join("pub")), 0o755);
        // An existing folder keeps its mode; a file in the way is an error.
        std::fs::set_permissions(dir.path().join("a"), Permissions::from_mode(0o750)).unwrap();
        assert!(create_dir(&dir.path().join("a/b"), 0o700)
            .unwrap()
            .is_empty());
        assert_eq!(mode(&dir.path().join("a")), 0o750);
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(create_dir(&dir.path().join("file/sub"), 0o700).is_err());
    }

    #[test]
    fn restrict_and_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("relay.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        let gid = std::fs::metadata(&f).unwrap().gid();
        assert_eq!(exposed(&f, &[]).unwrap(), Some(0o644));
        assert_eq!(exposed(&f, &[gid]).unwrap(), Some(0o644), "world-readable");
        assert!(restrict(&f, 0o640).unwrap());
        assert_eq!(mode(&f), 0o640);
        // Group-readable by this process's own group, or a trusted one: not exposed.
        assert_eq!(exposed(&f, &[]).unwrap(), None);
        assert_eq!(exposed(&f, &[gid]).unwrap(), None);
        assert!(!restrict(&f, 0o640).unwrap());
        assert!(restrict(&f, 0o600).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert_eq!(exposed(&f, &[]).unwrap(), None);
    }
}
