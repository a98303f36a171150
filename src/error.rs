//! The crate's error type.
//!
//! Rules: every variant names the file (and the offset, where there is one)
//! so that its `Display` is a complete one-line message for an admin; no
//! function in the core panics on bad input; the pyo3 layer maps each variant
//! to one Python exception class and nothing else.

use std::io;
use std::path::{Path, PathBuf};

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named path, in Python's words
    /// (`[Errno 2] No such file or directory: 'x'`), as the admin's other
    /// tools print it.
    #[error("{}", crate::repozo::python_oserror(.source, .path))]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not a FileStorage this version of ZODB can open
    /// (bad magic, empty, too short). Mirrors ZODB's `FileStorageFormatError`.
    #[error("{path}: {reason}")]
    FileStorageFormat {
        /// The Data.fs.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Damage inside the committed part of a Data.fs, which ZODB refuses to
    /// open. Mirrors ZODB's `CorruptedTransactionError`.
    #[error("{path}: corrupted transaction record at offset {pos}: {reason}")]
    Corrupted {
        /// The Data.fs.
        path: PathBuf,
        /// Offset of the transaction record (or data record) at fault.
        pos: u64,
        /// What is wrong.
        reason: String,
    },
    /// An fsIndex (`.index`) file that cannot be read or written.
    #[error("{path}: {reason}")]
    Index {
        /// The `.index` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    // --- repozo ---
    /// A backup data file of the same second already exists (repozo's
    /// `WouldOverwriteFiles`).
    #[error("Cannot overwrite existing file: {}", .path.display())]
    WouldOverwriteFiles {
        /// The data file that exists.
        path: PathBuf,
    },
    /// No backup in the repository (before the date, if one was given).
    /// repozo's `NoFiles`.
    #[error("No files in repository{}", .date.as_ref().map(|d| format!(" before {d}")).unwrap_or_default())]
    NoFiles {
        /// The `-D` date, if any.
        date: Option<String>,
    },
    /// A backup file does not match its `.dat` line, or a chain has a gap.
    /// repozo's `VerificationFail`; the message is the whole text.
    #[error("{0}")]
    VerificationFail(String),
    /// A `.dat` line that is not `<path> <start> <end> <md5>`.
    #[error("{}: line {line}: {reason}", .path.display())]
    BadDat {
        /// The `.dat` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `-D` date that is not `yyyy-mm-dd[-hh[-mm[-ss]]]`.
    #[error("invalid date {}: expected yyyy-mm-dd[-hh[-mm[-ss]]] (UTC)", crate::repozo::py_repr(.date))]
    BadDate {
        /// What was given.
        date: String,
    },
    /// An I/O error in a repozo operation, shown the way Python shows an
    /// `OSError` (`[Errno 2] No such file or directory: 'x'`), since that is
    /// what repozo prints.
    #[error("{}", crate::repozo::python_oserror(.source, .path))]
    RepozoIo {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    // --- blobs ---
    /// Something other than a directory where the blob code needs one (the
    /// blob directory, a backup location, a restore target, or a directory
    /// inside a tree being copied).
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// Backups of two different blob directories in one location (6.0's
    /// message, kept because admins grep for it).
    #[error("Different backup prefixes found in {dir} ({a}, {b}). Are you mixing two backups in one directory? For safety we will exit, because we cannot get a correct sort order.")]
    MixedPrefixes {
        /// The backup location.
        dir: PathBuf,
        /// One prefix.
        a: String,
        /// Another prefix.
        b: String,
    },
    /// A restore location without any blob backup.
    #[error("There are no backups in {dir}.")]
    NoBlobBackups {
        /// The backup location.
        dir: PathBuf,
    },
    /// No blob backup at or before the requested date.
    #[error("Could not find backup of '{date}' or earlier.")]
    NoBlobBackupAtDate {
        /// The date as given.
        date: String,
    },
    /// A restore date that is not `yyyy-mm-dd[-hh[-mm[-ss]]]`.
    #[error("Could not parse date argument to restore blobs: '{date}' (expected yyyy-mm-dd[-hh[-mm[-ss]]], UTC)")]
    BadBlobDate {
        /// The date as given.
        date: String,
    },
    /// A tar archive or snapshot file that cannot be read or is unsafe.
    #[error("{path}: {reason}")]
    BrokenArchive {
        /// The archive (or `.snar`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An incremental chain whose level-0 archive is missing.
    #[error("{path}: incremental blob backup without its full archive: {reason}")]
    BrokenChain {
        /// The oldest delta of the chain.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    // --- recipe ---
    /// A buildout option, a script argument or a combination of them that
    /// cannot work. The text is the complete message for the admin (the
    /// buildout-time texts of 6.0 where they exist, listed in README.rst).
    #[error("{0}")]
    Config(String),
    /// Off-site copies: the store could not be reached, refused the
    /// credentials, or holds something other than what was uploaded. The
    /// text is the whole line and names the store and the object.
    #[error("{0}")]
    Offsite(String),
    /// A `zope.conf` / `zeo.conf` (ZConfig syntax) that cannot be read, or
    /// whose storages cannot be backed up from here; `line` 0 when the
    /// problem is the whole file.
    #[error("{}", zconfig_message(.path, *.line, .reason))]
    ZConfig {
        /// The file (the included one, for a problem inside an `%include`).
        path: PathBuf,
        /// 1-based line number, 0 for none.
        line: usize,
        /// What is wrong, ZConfig's words where it has them.
        reason: String,
    },
    /// `pre_command` or `post_command` exited non-zero or could not start.
    #[error("command '{command}' failed. See message above.")]
    CommandFailed {
        /// The command as configured.
        command: String,
    },
    /// A restore would pair a filestorage backup with a blob backup of
    /// another date: the blob backup named after the filestorage backup's
    /// newest file is missing or incomplete (`blob_timestamps`).
    #[error("{}", blob_mismatch_message(.needed, .location, .reason, .newest_pair.as_deref()))]
    BlobBackupMismatch {
        /// The date of the filestorage backup to restore.
        needed: String,
        /// The blob backup location.
        location: PathBuf,
        /// What is wrong with (or missing from) the blob backup.
        reason: String,
        /// The newest date whose filestorage and blob backups are both
        /// complete, at or before the requested date.
        newest_pair: Option<String>,
    },
    /// A restore target is in use: a running ZODB (Zope or ZEO) holds the
    /// lock on `Data.fs.lock`.
    #[error(
        "{path} is locked: a Zope or ZEO process has this filestorage open. Stop it before restoring. Nothing was changed."
    )]
    StorageInUse {
        /// The `Data.fs.lock` file.
        path: PathBuf,
    },
    /// Another run holds the lock of a backup location for longer than this
    /// run waits (see [`crate::lock`]).
    #[error(
        "{} is in use by another backup or restore{}: gave up after waiting {waited} seconds. Nothing was changed.",
        .dir.display(),
        .holder.map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    LocationLocked {
        /// The location.
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, if readable.
        holder: Option<u32>,
        /// Seconds waited.
        waited: u64,
    },
}

fn zconfig_message(path: &Path, line: usize, reason: &str) -> String {
    if line == 0 {
        format!("{}: {reason}", path.display())
    } else {
        format!("{}:{line}: {reason}", path.display())
    }
}

fn blob_mismatch_message(
    needed: &str,
    location: &Path,
    reason: &str,
    newest_pair: Option<&str>,
) -> String {
    let advice = match newest_pair {
        Some(d) => format!(
            "The newest date with both a filestorage backup and its blob backup is {d}: restore that date (e.g. bin/restore {d}), or pass --accept-blob-mismatch to restore an older blob backup with this filestorage backup."
        ),
        None => "No date has both a filestorage backup and its blob backup; pass --accept-blob-mismatch to restore an older blob backup with this filestorage backup.".to_owned(),
    };
    format!(
        "No complete blob backup of {needed} (the date of the filestorage backup to restore) in {} ({reason}). {advice} Nothing was changed.",
        location.display()
    )
}

impl Error {
    /// Attach a path to an I/O error.
    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Extension to attach a path to `io::Result`s.
pub trait IoContext<T> {
    /// Turn an `io::Error` into [`Error::Io`] naming `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
