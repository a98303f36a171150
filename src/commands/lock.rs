//! Is a filestorage in use? ZODB (through zc.lockfile) holds an exclusive
//! `flock(2)` on `<Data.fs>.lock` for as long as a Zope or ZEO process has
//! the storage open. A restore takes the same lock, non-blocking: if it is
//! taken, the restore is refused before anything is touched; if not, the
//! restore keeps it until the end, so that ZODB cannot open the storage
//! half-way through.

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

/// Take the storage lock of `datafs` if its lock file exists. Returns the
/// open file (the lock lasts as long as it) or `None` when there is no lock
/// file (no ZODB has opened the storage since it was last closed cleanly).
///
/// # Errors
/// [`Error::StorageInUse`] when another process holds the lock; I/O errors.
pub(crate) fn lock_storage(datafs: &Path) -> Result<Option<File>> {
    let path = lock_path(datafs);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    try_lock(&file, &path)?;
    Ok(Some(file))
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
        let r = lock_storage(&dir.path().join("Data.fs"));
        assert!(matches!(r, Ok(None)));
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
