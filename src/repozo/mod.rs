//! A repozo-compatible backup repository: backup, recover and verify.
//!
//! Writes and reads exactly the repository format of ZODB's `repozo` 6.4
//! (see docs/repository.rst), so that any chain can be written and restored by
//! either tool. Modules, one concept each:
//!
//! - [`naming`]: file names (`gen_filename`, the data-file pattern, `-D`).
//! - [`dat`]: the `.dat` chain file.
//! - [`find`]: `find_files` (which files recover a date) and `-k`.
//! - [`chain`]: the commit rule: which data files are backups, cleaning
//!   up after interrupted runs, and whether a chain can be extended.
//! - [`stream`], [`gzip`]: copying with md5, parallel gzip members.
//! - [`backup`]: the `do_backup` decision table and the writes.
//! - [`recover`]: `-R`; [`verify`]: `-V`.
//! - [`retention`]: the recipe's `keep` rule for a repository (not repozo's).
//!
//! Deliberate differences from repozo are listed in `CHANGES.rst` and at
//! the code that makes them (`// Deviation:`). Log lines (`-v`) go through
//! the `log` crate with target [`LOG`]; the core never prints.

pub mod backup;
pub mod chain;
pub mod dat;
pub mod find;
pub mod gzip;
pub mod naming;
pub mod prefix;
pub mod recover;
pub mod retention;
pub mod stream;
pub mod verify;

use std::io;
use std::path::Path;

pub use backup::{backup, plan_backup, Action, BackupOptions, BackupReport, PlannedBackup};
pub use recover::{recover, RecoverOptions, RecoverReport};
pub use verify::{verify, VerifyOptions, VerifyReport};

use crate::error::Error;

/// The `log` target of every repozo log line (a Python logger name once
/// pyo3-log forwards it).
pub const LOG: &str = "collective.recipe.backup.repozo";

/// An I/O error on `path`, shown as repozo shows it.
pub(crate) fn io_err(path: &Path, source: io::Error) -> Error {
    Error::RepozoIo {
        path: path.to_path_buf(),
        source,
    }
}

/// A new temporary file `.<name>.XXXXXX.tmp` in `dir` (never matching the
/// data-file pattern), removed when dropped unless persisted. Its mode is
/// `0666 & ~umask`, like the files repozo creates, not tempfile's 0600.
pub(crate) fn temp_in(dir: &Path, name: &str) -> crate::Result<tempfile::NamedTempFile> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{name}.");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir).map_err(|e| io_err(dir, e))
}

/// Format an I/O error the way Python's `str(OSError)` does:
/// `[Errno 2] No such file or directory: 'nonexist'`.
#[must_use]
pub fn python_oserror(err: &io::Error, path: &Path) -> String {
    let code = os_code(err).or(match err.kind() {
        io::ErrorKind::NotFound => Some(2),
        io::ErrorKind::PermissionDenied => Some(13),
        _ => None,
    });
    let name = py_repr(&path.to_string_lossy());
    match code {
        Some(n) => {
            let text = io::Error::from_raw_os_error(n).to_string();
            let suffix = format!(" (os error {n})");
            let text = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("[Errno {n}] {text}: {name}")
        }
        None => format!("{err}: {name}"),
    }
}

/// The OS error number of `err`, also when a library wrapped it (tempfile
/// adds the path to its errors, and keeps the number only in its text).
fn os_code(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        let text = err.to_string();
        let start = text.find("(os error ")? + "(os error ".len();
        let digits = &text[start..];
        digits[..digits.find(')')?].parse().ok()
    })
}

/// Python's `repr` of a plain string (enough for file names).
pub(crate) fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_oserror_enoent() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(
            python_oserror(&e, Path::new("nonexist")),
            "[Errno 2] No such file or directory: 'nonexist'"
        );
    }

    #[test]
    fn python_oserror_unwraps_a_library_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let file = d.path().join("file");
        std::fs::write(&file, "x").expect("write");
        // ENOTDIR: not one of the kinds mapped without the OS number.
        let e = tempfile::NamedTempFile::new_in(&file).expect_err("not a directory");
        assert_eq!(
            python_oserror(&e, &file),
            format!("[Errno 20] Not a directory: '{}'", file.display())
        );
    }

    #[test]
    fn python_oserror_from_kind() {
        let e = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            python_oserror(&e, Path::new("it's")),
            "[Errno 2] No such file or directory: \"it's\""
        );
    }
}
