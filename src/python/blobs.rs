//! Bindings for [`crate::blobs`] and [`crate::retention`]: blob backup,
//! zip backup, restore (and its check), cleanup and listing. Typed keyword
//! arguments become the core's option structs; nothing is decided here.

use std::path::PathBuf;

use chrono::Duration;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::to_py;
use crate::blobs::naming::{parse_timestamp, Kind, RestoreDate, Stamp};
use crate::blobs::restore::{RestoreOptions, Selected};
use crate::blobs::{self, BackupOptions, Format, RsyncOptions};
use crate::clock::{Clock, SteppingClock, SystemClock};
use crate::error::Error;
use crate::progress::NoProgress;
use crate::retention::{CleanupPlan, RetentionPolicy};

/// The clock: the system's, or a fixed `YYYY-MM-DD-HH-MM-SS` for tests.
fn clock(now: Option<&str>) -> PyResult<Box<dyn Clock + Send>> {
    match now {
        None => Ok(Box::new(SystemClock)),
        Some(s) => {
            let t = parse_timestamp(s)
                .ok_or_else(|| to_py(Error::BadBlobDate { date: s.to_owned() }))?;
            Ok(Box::new(SteppingClock::new(t, Duration::zero())))
        }
    }
}

fn plan_to_py<'py>(py: Python<'py>, plan: &CleanupPlan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("keep", plan.keep.clone())?;
    let removed: Vec<(String, String)> = plan
        .remove
        .iter()
        .map(|r| (r.name.clone(), r.reason.to_string()))
        .collect();
    d.set_item("remove", removed)?;
    d.set_item("latest", plan.latest.clone())?;
    d.set_item("removed_backups", plan.removed_backups)?;
    Ok(d)
}

fn sources(sel: &Selected) -> Vec<PathBuf> {
    match sel {
        Selected::Directory { tree, .. } => vec![tree.clone()],
        Selected::Archives { chain } => chain.clone(),
    }
}

/// Back up a blob directory. Returns a dict: backup, created, delta,
/// files, linked, copied, bytes_copied, cleanup.
#[pyfunction]
#[pyo3(signature = (
    blobdir, location, *, fs_backup_location = None, archive = false,
    compress = false, incremental = false, hard_links = true,
    hard_links_on_first_copy = false, timestamps = true, full = false,
    keep = 2, keep_blob_days = 14, rsync_options = "", now = None,
))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn blob_backup<'py>(
    py: Python<'py>,
    blobdir: PathBuf,
    location: PathBuf,
    fs_backup_location: Option<PathBuf>,
    archive: bool,
    compress: bool,
    incremental: bool,
    hard_links: bool,
    hard_links_on_first_copy: bool,
    timestamps: bool,
    full: bool,
    keep: u32,
    keep_blob_days: u32,
    rsync_options: &str,
    now: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let format = Format::from_options(
        archive,
        compress,
        incremental,
        hard_links,
        hard_links_on_first_copy,
    );
    let opts = BackupOptions {
        blobdir,
        location,
        fs_backup_location,
        format,
        timestamps,
        full,
        keep,
        keep_blob_days,
        rsync: RsyncOptions::parse(rsync_options),
    };
    run_backup(py, &opts, now)
}

/// The zip backup: one `<base>.0.tar[.gz]`, keep 1.
#[pyfunction]
#[pyo3(signature = (blobdir, location, *, compress = false, now = None))]
fn blob_zip_backup<'py>(
    py: Python<'py>,
    blobdir: PathBuf,
    location: PathBuf,
    compress: bool,
    now: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    run_backup(py, &BackupOptions::zip(&blobdir, &location, compress), now)
}

fn run_backup<'py>(
    py: Python<'py>,
    opts: &BackupOptions,
    now: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let clock = clock(now)?;
    let r = py
        .detach(|| blobs::backup(opts, clock.as_ref(), &NoProgress))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("backup", r.backup)?;
    d.set_item("created", r.created)?;
    d.set_item("delta", r.delta)?;
    d.set_item("files", r.stats.files)?;
    d.set_item("linked", r.stats.linked)?;
    d.set_item("copied", r.stats.copied)?;
    d.set_item("bytes_copied", r.stats.bytes_copied)?;
    d.set_item("cleanup", plan_to_py(py, &r.cleanup)?)?;
    Ok(d)
}

fn restore_options(
    location: PathBuf,
    target: PathBuf,
    date: Option<&str>,
    prefer_archives: bool,
    timestamps: bool,
) -> PyResult<RestoreOptions> {
    let date = date.map(RestoreDate::parse).transpose().map_err(to_py)?;
    Ok(RestoreOptions {
        location,
        target,
        date,
        prefer_archives,
        timestamps,
    })
}

/// Restore `target` from `location`; returns the sources used (the tree
/// of a directory backup, or the archives in order).
#[pyfunction]
#[pyo3(signature = (location, target, *, date = None, prefer_archives = false, timestamps = true))]
fn blob_restore(
    py: Python<'_>,
    location: PathBuf,
    target: PathBuf,
    date: Option<&str>,
    prefer_archives: bool,
    timestamps: bool,
) -> PyResult<Vec<PathBuf>> {
    let opts = restore_options(location, target, date, prefer_archives, timestamps)?;
    let r = py
        .detach(|| blobs::restore::restore(&opts, &NoProgress))
        .map_err(to_py)?;
    Ok(sources(&r.source))
}

/// What `blob_restore` would restore, touching nothing.
#[pyfunction]
#[pyo3(signature = (location, target, *, date = None, prefer_archives = false, timestamps = true))]
fn blob_check_restore(
    py: Python<'_>,
    location: PathBuf,
    target: PathBuf,
    date: Option<&str>,
    prefer_archives: bool,
    timestamps: bool,
) -> PyResult<Vec<PathBuf>> {
    let opts = restore_options(location, target, date, prefer_archives, timestamps)?;
    let s = py.detach(|| blobs::restore::check(&opts)).map_err(to_py)?;
    Ok(sources(&s))
}

/// Apply (or with `dry_run` only plan) retention to a location.
#[pyfunction]
#[pyo3(signature = (
    location, *, fs_backup_location = None, archive = false, incremental = false,
    timestamps = true, full = false, keep = 2, keep_blob_days = 14,
    dry_run = false, now = None,
))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn blob_cleanup<'py>(
    py: Python<'py>,
    location: PathBuf,
    fs_backup_location: Option<PathBuf>,
    archive: bool,
    incremental: bool,
    timestamps: bool,
    full: bool,
    keep: u32,
    keep_blob_days: u32,
    dry_run: bool,
    now: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let clock = clock(now)?;
    let policy =
        RetentionPolicy::for_backups(archive, incremental, timestamps, full, keep, keep_blob_days);
    let plan = py
        .detach(|| {
            blobs::cleanup(
                &location,
                fs_backup_location.as_deref(),
                &policy,
                clock.as_ref(),
                dry_run,
            )
        })
        .map_err(to_py)?;
    plan_to_py(py, &plan)
}

/// The blob backups of a location, newest first: dicts with name, path,
/// base, stamp, kind (`dir`, `tar`, `snar`), compressed, delta, mtime.
#[pyfunction]
fn blob_list_backups<'py>(py: Python<'py>, location: PathBuf) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let list = py
        .detach(|| blobs::list_backups(&location))
        .map_err(to_py)?;
    list.iter()
        .map(|b| {
            let d = PyDict::new(py);
            d.set_item("name", b.name.file_name())?;
            d.set_item("path", b.path.clone())?;
            d.set_item("base", b.name.base.clone())?;
            match &b.name.stamp {
                Stamp::Number(n) => d.set_item("stamp", *n)?,
                Stamp::Time(t) => d.set_item("stamp", t)?,
            }
            let (kind, gz, delta) = match b.name.kind {
                Kind::Dir => ("dir", false, false),
                Kind::Tar { gz, delta } => ("tar", gz, delta),
                Kind::Snar => ("snar", false, false),
            };
            d.set_item("kind", kind)?;
            d.set_item("compressed", gz)?;
            d.set_item("delta", delta)?;
            d.set_item(
                "mtime",
                b.mtime.timestamp() as f64 + f64::from(b.mtime.timestamp_subsec_nanos()) / 1e9,
            )?;
            Ok(d)
        })
        .collect()
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(blob_backup, m)?)?;
    m.add_function(wrap_pyfunction!(blob_zip_backup, m)?)?;
    m.add_function(wrap_pyfunction!(blob_restore, m)?)?;
    m.add_function(wrap_pyfunction!(blob_check_restore, m)?)?;
    m.add_function(wrap_pyfunction!(blob_cleanup, m)?)?;
    m.add_function(wrap_pyfunction!(blob_list_backups, m)?)?;
    Ok(())
}
