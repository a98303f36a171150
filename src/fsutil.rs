//! Writing files so that nothing half-written ever has a final name.
//!
//! Every file the core creates for keeps goes through [`write_atomically`]:
//! written under a unique temporary name in the target's directory, fsynced,
//! renamed over the final name, and the directory fsynced.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Create `path` with the content `fill` writes, atomically.
///
/// # Errors
/// [`Error::Io`] naming `path` (or its directory); the temporary file is
/// removed on every error.
pub fn write_atomically<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let mut tmp = temp_beside(path)?;
    fill(tmp.as_file_mut()).at(path)?;
    persist_synced(tmp, path)
}

/// A temporary file `.<name>.XXXXXX.tmp` beside `path`: the name every
/// writer of the crate uses, which the cleanup of interrupted runs knows.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .at(dir)
}

/// Sync `tmp`, rename it to `path` and sync the directory: the commit
/// point of a file written by [`temp_beside`].
///
/// # Errors
/// [`Error::Io`] naming `path` (the temporary file is removed).
pub fn persist_synced(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(parent_dir(path))
}

/// The directory holding `path` (`.` for a bare file name).
#[must_use]
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory, so that a rename in it is durable.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Flush everything written on the file system holding `dir` (one
/// `syncfs(2)`): the way to make a whole tree of new files durable before it
/// gets its final name, without an fsync per file.
///
/// # Errors
/// [`Error::Io`] naming `dir`.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let d = File::open(dir).at(dir)?;
        rustix::fs::syncfs(&d).map_err(|e| Error::io(dir, e.into()))?;
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Open `path` for reading, refusing anything but a regular file (a FIFO
/// named like a backup would block a reader forever; a directory or a
/// device is never a backup). The check is made on the open descriptor,
/// which is opened non-blocking so that a FIFO cannot hang the open itself.
///
/// # Errors
/// The open's error, or `InvalidInput` "not a regular file".
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = opts.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    #[cfg(unix)]
    {
        // O_NONBLOCK means nothing for regular files on Linux, but clear it
        // so that reads behave as with a plain open everywhere.
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(file)
}
