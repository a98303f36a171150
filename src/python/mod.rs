//! The pyo3 bindings: module `collective.recipe.backup._core`.
//!
//! Only type conversion and error mapping live here; every decision is made
//! in the core. Long operations run with the GIL released (`py.detach`).

use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::Error;
use crate::filestorage;

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

/// The one mapping from core errors to Python exceptions.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::FileStorageFormat { .. } | Error::Corrupted { .. } | Error::Index { .. } => {
            FileStorageError::new_err(msg)
        }
        _ => BackupError::new_err(msg),
    }
}

/// What `scan` found in a Data.fs.
#[pyclass(frozen, module = "collective.recipe.backup._core")]
struct ScanResult {
    #[pyo3(get)]
    end: u64,
    #[pyo3(get)]
    size: u64,
    last_tid: Option<[u8; 8]>,
    #[pyo3(get)]
    transactions: u64,
    #[pyo3(get)]
    objects: usize,
    #[pyo3(get)]
    used_index: bool,
}

#[pymethods]
impl ScanResult {
    #[getter]
    fn last_tid<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.last_tid.map(|t| PyBytes::new(py, &t))
    }

    fn __repr__(&self) -> String {
        format!(
            "ScanResult(end={}, size={}, transactions={}, objects={}, used_index={})",
            self.end,
            self.size,
            self.transactions,
            self.objects,
            if self.used_index { "True" } else { "False" }
        )
    }
}

/// Scan a Data.fs and find the end of its last committed transaction.
#[pyfunction]
#[pyo3(signature = (path, use_index = true))]
fn scan(py: Python<'_>, path: PathBuf, use_index: bool) -> PyResult<ScanResult> {
    let opts = filestorage::ScanOptions { use_index };
    let r = py
        .detach(|| filestorage::scan(&path, &opts))
        .map_err(to_py)?;
    Ok(ScanResult {
        end: r.end,
        size: r.size,
        last_tid: r.last_tid.map(|t| t.0),
        transactions: r.transactions,
        objects: r.index.len(),
        used_index: r.used_index,
    })
}

/// Scan `datafs_path` and write its fsIndex to `index_path`; returns the pos.
#[pyfunction]
fn write_index(py: Python<'_>, datafs_path: PathBuf, index_path: PathBuf) -> PyResult<u64> {
    py.detach(|| filestorage::write_index(&datafs_path, &index_path))
        .map_err(to_py)
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let _ = pyo3_log::try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BackupError", py.get_type::<BackupError>())?;
    m.add("FileStorageError", py.get_type::<FileStorageError>())?;
    m.add_class::<ScanResult>()?;
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(write_index, m)?)?;
    Ok(())
}
