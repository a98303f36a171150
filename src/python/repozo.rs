//! Bindings for [`crate::repozo`]: `repozo_backup`, `repozo_recover`,
//! `repozo_verify` and their result classes. Conversion only.

use std::path::PathBuf;

use chrono::Duration;
use pyo3::prelude::*;

use super::to_py;
use crate::clock::{Clock, SteppingClock, SystemClock};
use crate::progress::StderrBar;
use crate::repozo;

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What `repozo_backup` did.
#[pyclass(frozen, get_all, module = "collective.recipe.backup._core")]
struct BackupResult {
    action: &'static str,
    reason: &'static str,
    data_file: Option<String>,
    index_file: Option<String>,
    dat_file: Option<String>,
    start: u64,
    end: u64,
    md5: Option<String>,
    written: u64,
    removed: Vec<String>,
}

#[pymethods]
impl BackupResult {
    fn __repr__(&self) -> String {
        format!(
            "BackupResult(action={}, reason={}, data_file={}, start={}, end={}, written={})",
            super::repr_opt(Some(self.action)),
            super::repr_opt(Some(self.reason)),
            super::repr_opt(self.data_file.as_deref()),
            self.start,
            self.end,
            self.written
        )
    }
}

/// What `repozo_recover` did.
#[pyclass(frozen, get_all, module = "collective.recipe.backup._core")]
struct RecoverResult {
    files: Vec<String>,
    bytes: u64,
    md5: Option<String>,
    index_file: Option<String>,
}

#[pymethods]
impl RecoverResult {
    fn __repr__(&self) -> String {
        format!(
            "RecoverResult(files={}, bytes={}, index_file={})",
            super::repr_list(&self.files),
            self.bytes,
            super::repr_opt(self.index_file.as_deref())
        )
    }
}

/// What `repozo_verify` checked.
#[pyclass(frozen, get_all, module = "collective.recipe.backup._core")]
struct VerifyResult {
    files: Vec<String>,
    bytes: u64,
}

#[pymethods]
impl VerifyResult {
    fn __repr__(&self) -> String {
        format!(
            "VerifyResult(files={}, bytes={})",
            super::repr_list(&self.files),
            self.bytes
        )
    }
}

/// A fixed clock (tests) or the system clock.
fn clock(now: Option<f64>) -> Box<dyn Clock + Send> {
    match super::fixed_time(now) {
        Some(start) => Box::new(SteppingClock::new(start, Duration::zero())),
        None => Box::new(SystemClock),
    }
}

/// repozo `-B`.
#[pyfunction]
#[pyo3(signature = (datafs, repository, *, full=false, gzip=false, quick=false, kill_old=false, gzip_level=None, progress=false, now=None, create_repository=false))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn repozo_backup(
    py: Python<'_>,
    datafs: PathBuf,
    repository: PathBuf,
    full: bool,
    gzip: bool,
    quick: bool,
    kill_old: bool,
    gzip_level: Option<u32>,
    progress: bool,
    now: Option<f64>,
    create_repository: bool,
) -> PyResult<BackupResult> {
    let mut opts = repozo::BackupOptions::new(datafs, repository);
    opts.create_repository = create_repository;
    opts.full = full;
    opts.gzip = gzip;
    opts.quick = quick;
    opts.kill_old = kill_old;
    if let Some(l) = gzip_level {
        opts.gzip_level = l;
    }
    let clock = clock(now);
    let progress = StderrBar::new(progress);
    let r = py
        .detach(|| repozo::backup(&opts, clock.as_ref(), &progress))
        .map_err(to_py)?;
    Ok(BackupResult {
        action: match r.action {
            repozo::Action::Full => "full",
            repozo::Action::Incremental => "incremental",
            repozo::Action::Nothing => "nothing",
        },
        reason: r.reason,
        data_file: r.data_file.as_deref().map(s),
        index_file: r.index_file.as_deref().map(s),
        dat_file: r.dat_file.as_deref().map(s),
        start: r.start,
        end: r.end,
        md5: r.md5,
        written: r.written,
        removed: r.removed.iter().map(|p| s(p)).collect(),
    })
}

/// repozo `-R`.
#[pyfunction]
#[pyo3(signature = (repository, output=None, *, date=None, verify=false, progress=false, now=None))]
fn repozo_recover(
    py: Python<'_>,
    repository: PathBuf,
    output: Option<PathBuf>,
    date: Option<String>,
    verify: bool,
    progress: bool,
    now: Option<f64>,
) -> PyResult<RecoverResult> {
    let opts = repozo::RecoverOptions {
        repository,
        output,
        date,
        verify,
    };
    let clock = clock(now);
    let progress = StderrBar::new(progress);
    let r = py
        .detach(|| repozo::recover(&opts, clock.as_ref(), &progress))
        .map_err(to_py)?;
    Ok(RecoverResult {
        files: r.files.iter().map(|p| s(p)).collect(),
        bytes: r.bytes,
        md5: r.md5,
        index_file: r.index_file.as_deref().map(s),
    })
}

/// repozo `-V`.
#[pyfunction]
#[pyo3(signature = (repository, *, quick=false, progress=false, now=None))]
fn repozo_verify(
    py: Python<'_>,
    repository: PathBuf,
    quick: bool,
    progress: bool,
    now: Option<f64>,
) -> PyResult<VerifyResult> {
    let opts = repozo::VerifyOptions { repository, quick };
    let clock = clock(now);
    let progress = StderrBar::new(progress);
    let r = py
        .detach(|| repozo::verify(&opts, clock.as_ref(), &progress))
        .map_err(to_py)?;
    Ok(VerifyResult {
        files: r.files.iter().map(|p| s(p)).collect(),
        bytes: r.bytes,
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BackupResult>()?;
    m.add_class::<RecoverResult>()?;
    m.add_class::<VerifyResult>()?;
    m.add_function(wrap_pyfunction!(repozo_backup, m)?)?;
    m.add_function(wrap_pyfunction!(repozo_recover, m)?)?;
    m.add_function(wrap_pyfunction!(repozo_verify, m)?)?;
    m.add("REPOZO_DEFAULT_GZIP_LEVEL", repozo::gzip::DEFAULT_LEVEL)?;
    Ok(())
}
