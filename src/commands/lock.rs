//! Is a filestorage in use? ZODB (through zc.lockfile) holds an exclusive
//! `flock(2)` on `<Data.fs>.lock` for as long as a Zope or ZEO process has
//! the storage open. A restore takes the same lock, non-blocking: if it is
//! taken, the restore is refused before anything is touched; if not, the
//! restore keeps it until the end, so that ZODB cannot open the storage
//! half-way through. The lock file is created when missing (ZODB creates it
//! and leaves it too), so that restores, and the recovery of an interrupted
//! restore, also exclude each other where no ZODB has run yet.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file ZODB uses for `datafs`.
pub(crate) fn lock_path(datafs: &Path) -> PathBuf {
    let mut s = datafs.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Take the storage lock of `datafs`, creating the lock file (as ZODB
/// does) when its directory exists, so that two restores, or a restore and
/// the recovery of an interrupted one, exclude each other even where no
/// ZODB has run yet. `None` when the directory does not exist.
///
/// # Errors
/// [`Error::StorageInUse`] when another process holds the lock; I/O errors.
pub(crate) fn lock_storage(datafs: &Path) -> Result<Option<File>> {
    let path = lock_path(datafs);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    try_lock(&file, &path)?;
    Ok(Some(file))
}

/// For a dry run: refuse as [`lock_storage`] would, creating nothing. A
/// lock file that does not exist is held by no one; an existing one is
/// locked and released at once.
///
/// # Errors
/// [`Error::StorageInUse`] when another process holds the lock; I/O errors.
pub(crate) fn probe_storage(datafs: &Path) -> Result<()> {
    let path = lock_path(datafs);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    try_lock(&file, &path)
}

#[cfg(unix)]
fn try_lock(file: &File, path: &Path) -> Result<()> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::StorageInUse {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File, _path: &Path) -> Result<()> {
    // zc.lockfile uses msvcrt.locking on Windows; not checked yet.
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use rustix::fs::{flock, FlockOperation};

    #[test]
    fn lock_storage_without_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No directory: nothing to lock.
        let r = lock_storage(&dir.path().join("missing/Data.fs"));
        assert!(matches!(r, Ok(None)));
        // The lock file is made, and held.
        let datafs = dir.path().join("Data.fs");
        let held = lock_storage(&datafs);
        assert!(matches!(held, Ok(Some(_))));
        assert!(lock_path(&datafs).is_file());
        assert!(matches!(
            lock_storage(&datafs),
            Err(Error::StorageInUse { .. })
        ));
    }

    #[test]
    fn lock_storage_refuses_when_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let datafs = dir.path().join("Data.fs");
        let lock = lock_path(&datafs);
        assert!(std::fs::write(&lock, b" 123\n").is_ok());
        // Another open file description, as another process would have.
        let Ok(holder) = File::open(&lock) else {
            return;
        };
        assert!(flock(&holder, FlockOperation::NonBlockingLockExclusive).is_ok());
        let e = lock_storage(&datafs).err().map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{} is locked: a Zope or ZEO process has this filestorage open. Stop it before restoring. Nothing was changed.",
                lock.display()
            ))
        );
        drop(holder);
        assert!(matches!(lock_storage(&datafs), Ok(Some(_))));
    }
}
