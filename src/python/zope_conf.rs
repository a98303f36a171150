//! Bindings for [`crate::zope_conf`]: `read_zope_conf`. Conversion only.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::to_py;
use crate::zope_conf;

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The storages of a Zope `zope.conf` or ZEO `zeo.conf`: a dict with
/// `datafs`, `blob_storage` (or None), `additional_filestorages`
/// (`[(name, datafs, blob_dir or None)]`) and `kind` (`zope` or `zeo`).
/// Raises `ConfigError`.
#[pyfunction]
fn read_zope_conf<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let conf = py
        .detach(|| zope_conf::read_zope_conf(&path))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("datafs", path_str(&conf.main.datafs))?;
    d.set_item("blob_storage", conf.main.blob_dir.as_deref().map(path_str))?;
    let additional: Vec<(String, String, Option<String>)> = conf
        .additional
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                path_str(&s.datafs),
                s.blob_dir.as_deref().map(path_str),
            )
        })
        .collect();
    d.set_item("additional_filestorages", additional)?;
    d.set_item("kind", conf.kind.as_str())?;
    Ok(d)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_zope_conf, m)?)?;
    Ok(())
}
