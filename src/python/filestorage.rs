//! Bindings for [`crate::filestorage`]: `scan`, `write_index`, `ScanResult`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::to_py;
use crate::filestorage;

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
    /// Commit time of the last transaction, ISO 8601 UTC, from its tid.
    #[getter]
    fn last_commit(&self) -> Option<String> {
        let t = filestorage::Tid(self.last_tid?).timestamp()?;
        Some(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    }

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

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ScanResult>()?;
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(write_index, m)?)?;
    Ok(())
}
