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
// --- repozo (issue 3) ---

// --- blobs (issue 4) ---
mod blobs;

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
// --- repozo exceptions (issue 3) ---

// --- blobs exceptions (issue 4) ---
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

/// The one mapping from core errors to Python exceptions.
pub(crate) fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::FileStorageFormat { .. } | Error::Corrupted { .. } | Error::Index { .. } => {
            FileStorageError::new_err(msg)
        }
        // --- repozo mapping (issue 3) ---

        // --- blobs mapping (issue 4) ---
        Error::NoBlobBackups { .. } | Error::NoBlobBackupAtDate { .. } => {
            NoBlobBackup::new_err(msg)
        }
        Error::MixedPrefixes { .. }
        | Error::BadDate { .. }
        | Error::BrokenArchive { .. }
        | Error::BrokenChain { .. } => BlobError::new_err(msg),
        _ => BackupError::new_err(msg),
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Rust `log` records go to Python's `logging` (logger names = module paths).
    let _ = pyo3_log::try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BackupError", py.get_type::<BackupError>())?;
    m.add("FileStorageError", py.get_type::<FileStorageError>())?;
    // --- repozo exceptions registration (issue 3) ---

    // --- blobs exceptions registration (issue 4) ---
    m.add("BlobError", py.get_type::<BlobError>())?;
    m.add("NoBlobBackup", py.get_type::<NoBlobBackup>())?;

    filestorage::register(m)?;
    // --- repozo registration (issue 3) ---

    // --- blobs registration (issue 4) ---
    blobs::register(m)?;
    Ok(())
}
