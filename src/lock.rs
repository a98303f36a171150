//! The location lock: one writer at a time per backup location.
//!
//! Every run that writes to a filestorage repository or a blob backup
//! location (backup, retention, restore reading its source) holds an
//! exclusive `flock(2)` on `<location>/.crb.lock` for as long as it works
//! there. A second run waits up to [`lock_timeout`] (default
//! [`DEFAULT_TIMEOUT_SECS`], `CRB_LOCK_TIMEOUT` seconds in the environment),
//! then gives up with [`Error::LocationLocked`]: two overlapping cron runs
//! can no longer both append an increment that starts at the same offset.
//! See `docs/repository.rst` (locking).
//!
//! The lock is re-entrant within a process: the script orchestration takes
//! it for a whole run and the engines take it again around each step; the
//! kernel lock is released when the last holder in the process drops its
//! guard. (flock locks belong to an open file description, so a second
//! `open` of the same file in the same process would block on the first.)
//!
//! The lock file holds the holder's pid, for the refusal message only. It
//! is never removed: removing it would let two processes lock two
//! different files of the same name.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// The lock file's name inside a location. It matches no backup name of
/// repozo or of the blob backups, so neither ever lists it.
pub const LOCK_NAME: &str = ".crb.lock";

/// Seconds a run waits for a location that another run holds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// The environment variable overriding [`DEFAULT_TIMEOUT_SECS`].
pub const TIMEOUT_ENV: &str = "CRB_LOCK_TIMEOUT";

/// Locks this process holds: canonical location → (lock file, holders).
fn held() -> MutexGuard<'static, HashMap<PathBuf, (File, usize)>> {
    static HELD: LazyLock<Mutex<HashMap<PathBuf, (File, usize)>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long to wait for a held lock: `CRB_LOCK_TIMEOUT` seconds when set
/// to a number, else [`DEFAULT_TIMEOUT_SECS`].
#[must_use]
pub fn lock_timeout() -> Duration {
    let secs = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// Holds the lock of one location until dropped.
#[derive(Debug)]
#[must_use = "the location is unlocked when the guard is dropped"]
pub struct LocationLock {
    key: Option<PathBuf>,
}

impl LocationLock {
    /// A guard that locks nothing (a location that does not exist yet: the
    /// caller's own error for it comes next).
    fn none() -> Self {
        LocationLock { key: None }
    }
}

impl Drop for LocationLock {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut map = held();
        if let Some(entry) = map.get_mut(&key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                // Closing the file releases the flock.
                map.remove(&key);
            }
        }
    }
}

/// Lock `dir` for writing, waiting up to [`lock_timeout`].
///
/// A `dir` that does not exist is not locked (nothing can be written there
/// by anyone until it is created, and the caller reports it).
///
/// # Errors
/// [`Error::LocationLocked`] when another process holds the lock for the
/// whole wait; [`Error::Io`] when the lock file cannot be opened.
pub fn lock_location(dir: &Path) -> Result<LocationLock> {
    lock_location_within(dir, lock_timeout())
}

/// [`lock_location`] with an explicit wait.
///
/// # Errors
/// As [`lock_location`].
pub fn lock_location_within(dir: &Path, wait: Duration) -> Result<LocationLock> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(key) = std::fs::canonicalize(dir) else {
        return Ok(LocationLock::none());
    };
    if !key.is_dir() {
        return Ok(LocationLock::none());
    }
    if let Some(entry) = held().get_mut(&key) {
        entry.1 += 1;
        return Ok(LocationLock { key: Some(key) });
    }
    let path = key.join(LOCK_NAME);
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        // A location this process cannot write to (a backup disk mounted
        // read-only for a restore): no run of ours can write there either,
        // so there is nothing to exclude. A writer fails on its own writes.
        Err(e) if read_only(&e) => {
            log::debug!("{} is read-only: not locked ({e})", dir.display());
            return Ok(LocationLock::none());
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let started = Instant::now();
    loop {
        if try_lock(&file).at(&path)? {
            break;
        }
        if started.elapsed() >= wait {
            return Err(Error::LocationLocked {
                dir: dir.to_path_buf(),
                holder: read_holder(&mut file),
                waited: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100).min(wait));
    }
    // For the message a waiting run prints; failing to write it changes
    // nothing about the lock.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    let mut map = held();
    map.insert(key.clone(), (file, 1));
    Ok(LocationLock { key: Some(key) })
}

/// Lock every location of `dirs` (duplicates are fine), in a fixed order
/// so that two runs locking the same set cannot deadlock.
///
/// # Errors
/// As [`lock_location`]; locks taken before the failure are released.
pub fn lock_locations<'a, I>(dirs: I) -> Result<Vec<LocationLock>>
where
    I: IntoIterator<Item = &'a Path>,
{
    let mut dirs: Vec<PathBuf> = dirs
        .into_iter()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.iter().map(|d| lock_location(d)).collect()
}

/// Errors that mean the location cannot be written by this process.
fn read_only(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error()
        .is_some_and(|n| n == Errno::ROFS.raw_os_error() || n == Errno::ACCESS.raw_os_error())
}

fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use rustix::fs::{flock, FlockOperation};

    #[test]
    fn reentrant_in_one_process() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = lock_location(d.path()).expect("first");
        let b = lock_location_within(d.path(), Duration::ZERO).expect("again");
        drop(a);
        // Still held by `b`: another open file description cannot lock.
        let other = File::open(d.path().join(LOCK_NAME)).expect("open");
        assert!(flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
        drop(b);
        assert!(flock(&other, FlockOperation::NonBlockingLockExclusive).is_ok());
    }

    #[test]
    fn refuses_after_the_wait_naming_the_holder() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join(LOCK_NAME);
        std::fs::write(&path, "4242\n").expect("write");
        // Another open file description, as another process would have.
        let holder = File::open(&path).expect("open");
        assert!(flock(&holder, FlockOperation::NonBlockingLockExclusive).is_ok());
        let started = Instant::now();
        let e = lock_location_within(d.path(), Duration::from_millis(300))
            .err()
            .map(|e| e.to_string());
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            e,
            Some(format!(
                "{} is in use by another backup or restore (process 4242): gave up after waiting 0 seconds. Nothing was changed.",
                d.path().display()
            ))
        );
        drop(holder);
        assert!(lock_location_within(d.path(), Duration::ZERO).is_ok());
    }

    #[test]
    fn missing_directory_is_not_locked() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(lock_location(&d.path().join("nope")).is_ok());
        assert!(!d.path().join("nope").exists());
    }
}
