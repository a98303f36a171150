//! The pyo3 bindings: module `collective.recipe.backup._core`.
//!
//! Only type conversion and error mapping live here; every decision is made
//! in the core. Long operations run with the GIL released (`py.detach`).
//! One submodule per core area registers its classes and functions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::Error;

mod filestorage;
// --- repozo ---
mod repozo;

// --- blobs ---
mod blobs;

// --- recipe ---
mod config;
mod zope_conf;

create_exception!(
    collective.recipe.backup._core,
    BackupError,
    PyException,
    "Base class of every error raised by collective.recipe.backup."
);
create_exception!(
    collective.recipe.backup._core,
    FileStorageError,
    BackupError,
    "A Data.fs or .index file that cannot be read as ZODB would read it."
);
// --- repozo exceptions ---
create_exception!(
    collective.recipe.backup._core,
    RepozoError,
    BackupError,
    "An error of a repozo backup, recover or verify (as ZODB's RepozoError)."
);
create_exception!(
    collective.recipe.backup._core,
    WouldOverwriteFiles,
    RepozoError,
    "A backup file of the same second already exists."
);
create_exception!(
    collective.recipe.backup._core,
    NoFiles,
    RepozoError,
    "No backup in the repository (before the date given)."
);
create_exception!(
    collective.recipe.backup._core,
    VerificationFail,
    RepozoError,
    "A backup file differs from its .dat line, or the chain has a gap."
);

// --- blobs exceptions ---
create_exception!(
    collective.recipe.backup._core,
    BlobError,
    BackupError,
    "A blob backup problem: mixed prefixes, a broken archive or chain, a bad date."
);
create_exception!(
    collective.recipe.backup._core,
    NoBlobBackup,
    BlobError,
    "No blob backup to restore (none at all, or none at or before the date)."
);

// --- recipe exceptions ---
create_exception!(
    collective.recipe.backup._core,
    ConfigError,
    BackupError,
    "A buildout option, script argument or combination of them that cannot work."
);

/// A fixed time given as seconds since the epoch (tests), whole seconds.
pub(crate) fn fixed_time(now: Option<f64>) -> Option<chrono::DateTime<chrono::Utc>> {
    #[allow(clippy::cast_possible_truncation)]
    now.and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t.floor() as i64, 0))
}

/// The one mapping from core errors to Python exceptions.
pub(crate) fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::FileStorageFormat { .. } | Error::Corrupted { .. } | Error::Index { .. } => {
            FileStorageError::new_err(msg)
        }
        // --- repozo mapping ---
        Error::WouldOverwriteFiles { .. } => WouldOverwriteFiles::new_err(msg),
        Error::NoFiles { .. } => NoFiles::new_err(msg),
        Error::VerificationFail(_) => VerificationFail::new_err(msg),
        Error::BadDat { .. } | Error::BadDate { .. } | Error::RepozoIo { .. } => {
            RepozoError::new_err(msg)
        }

        // --- blobs mapping ---
        Error::NoBlobBackups { .. } | Error::NoBlobBackupAtDate { .. } => {
            NoBlobBackup::new_err(msg)
        }
        Error::MixedPrefixes { .. }
        | Error::BadBlobDate { .. }
        | Error::BrokenArchive { .. }
        | Error::BrokenChain { .. }
        | Error::BlobBackupMismatch { .. } => BlobError::new_err(msg),

        // --- recipe mapping ---
        Error::Config(_) | Error::ZConfig { .. } => ConfigError::new_err(msg),
        _ => BackupError::new_err(msg),
    }
}

/// pyo3-log's logger, writing each record with the progress bar (if one
/// is drawn) cleared, so that log lines and the bar never share a line.
struct BarAwareLogger(pyo3_log::Logger);

impl log::Log for BarAwareLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        crate::progress::suspend(|| self.0.log(record));
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Rust `log` records go to Python's `logging` (logger names = module paths).
    // No caching: scripts and tests configure logging after the import, and
    // a cached level would hide their INFO lines (e.g. `-v`).
    // A progress bar on stderr is cleared while a record is written.
    if let Ok(logger) = pyo3_log::Logger::new(py, pyo3_log::Caching::Nothing) {
        let logger = logger.filter(log::LevelFilter::Debug);
        if log::set_boxed_logger(Box::new(BarAwareLogger(logger))).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BackupError", py.get_type::<BackupError>())?;
    m.add("FileStorageError", py.get_type::<FileStorageError>())?;
    // --- repozo exceptions registration ---
    m.add("RepozoError", py.get_type::<RepozoError>())?;
    m.add("WouldOverwriteFiles", py.get_type::<WouldOverwriteFiles>())?;
    m.add("NoFiles", py.get_type::<NoFiles>())?;
    m.add("VerificationFail", py.get_type::<VerificationFail>())?;

    // --- blobs exceptions registration ---
    m.add("BlobError", py.get_type::<BlobError>())?;
    m.add("NoBlobBackup", py.get_type::<NoBlobBackup>())?;

    // --- recipe exceptions registration ---
    m.add("ConfigError", py.get_type::<ConfigError>())?;

    filestorage::register(m)?;
    // --- repozo registration ---
    repozo::register(m)?;

    // --- blobs registration ---
    blobs::register(m)?;

    // --- recipe registration ---
    config::register(m)?;
    zope_conf::register(m)?;
    Ok(())
}

/// Python's `repr` of an optional string (`None` or `'text'`), for the
/// result classes' `__repr__`.
pub(crate) fn repr_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "None".to_owned(), crate::repozo::py_repr)
}

/// Python's `repr` of a list of strings.
pub(crate) fn repr_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| crate::repozo::py_repr(s)).collect();
    format!("[{}]", items.join(", "))
}
