//! Bindings for [`crate::config`] and [`crate::commands`]: `BackupConfig`,
//! the option-line parsers, the date parser, the `backup` / `restore` /
//! `verify` commands and the `status` report. Conversion only: every rule
//! lives in the core.

use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::{to_py, ConfigError};
use crate::clock::{Clock as _, SystemClock};
use crate::commands::{
    self, BackupMode, RestoreMode, RestoreRequest, ScriptBlobEngine, ScriptFsEngine,
};
use crate::config::{self, AdditionalStorage, AltSource, ConfigInput, RestoreDate};
use crate::hooks::ShellHooks;
use crate::progress::StderrBar;
use crate::repozo::prefix::Proof;

fn config_err(msg: String) -> PyErr {
    ConfigError::new_err(msg)
}

/// A count option from int or str, through the core's one parser.
fn count(name: &str, v: &Bound<'_, PyAny>) -> PyResult<u32> {
    let text = v.str()?.to_string();
    config::parse_count(name, &text).map_err(to_py)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn opt_path_str(p: Option<&Path>) -> Option<String> {
    p.map(path_str)
}

/// The validated configuration of one buildout part. Keyword arguments
/// only, named after `ConfigInput`'s fields; raises `ConfigError`.
#[pyclass(
    frozen,
    name = "BackupConfig",
    module = "collective.recipe.backup._core"
)]
pub(super) struct PyBackupConfig {
    inner: config::BackupConfig,
}

#[pymethods]
impl PyBackupConfig {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn new(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut i = ConfigInput::default();
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let key: String = k.extract()?;
                match key.as_str() {
                    "part_name" => i.part_name = v.extract()?,
                    "var_dir" => i.var_dir = v.extract()?,
                    "location_prefix" => i.location_prefix = v.extract()?,
                    "datafs" => i.datafs = v.extract()?,
                    "blob_storage" => i.blob_storage = v.extract()?,
                    "blob_storage_alias" => i.blob_storage_alias = v.extract()?,
                    "zope_blob_storage" => i.zope_blob_storage = v.extract()?,
                    "location" => i.location = v.extract()?,
                    "snapshotlocation" => i.snapshotlocation = v.extract()?,
                    "ziplocation" => i.ziplocation = v.extract()?,
                    "blobbackuplocation" => i.blobbackuplocation = v.extract()?,
                    "blobsnapshotlocation" => i.blobsnapshotlocation = v.extract()?,
                    "blobziplocation" => i.blobziplocation = v.extract()?,
                    "keep" => i.keep = count("keep", &v)?,
                    "keep_blob_days" => i.keep_blob_days = count("keep_blob_days", &v)?,
                    "full" => i.full = v.extract()?,
                    "debug" => i.debug = v.extract()?,
                    "only_blobs" => i.only_blobs = v.extract()?,
                    "backup_blobs" => i.backup_blobs = v.extract()?,
                    "use_rsync" => i.use_rsync = v.extract()?,
                    "rsync_options" => i.rsync_options = v.extract()?,
                    "rsync_hard_links_on_first_copy" => {
                        i.rsync_hard_links_on_first_copy = v.extract()?;
                    }
                    "archive_blob" => i.archive_blob = Some(v.extract()?),
                    "gzip_blob" => i.gzip_blob = Some(v.extract()?),
                    "compress_blob" => i.compress_blob = v.extract()?,
                    "blob_timestamps" => i.blob_timestamps = v.extract()?,
                    "incremental_blobs" => i.incremental_blobs = v.extract()?,
                    "gzip" => i.gzip = v.extract()?,
                    "quick" => i.quick = v.extract()?,
                    "enable_snapshotrestore" => i.enable_snapshotrestore = v.extract()?,
                    "enable_zipbackup" => i.enable_zipbackup = v.extract()?,
                    "enable_fullbackup" => i.enable_fullbackup = v.extract()?,
                    "pre_command" => i.pre_command = v.extract()?,
                    "post_command" => i.post_command = v.extract()?,
                    "additional_filestorages" => {
                        let entries: Vec<(String, Option<PathBuf>, Option<PathBuf>)> =
                            v.extract()?;
                        i.additional_filestorages = entries
                            .into_iter()
                            .map(|(name, datafs, blobdir)| AdditionalStorage {
                                name,
                                datafs,
                                blobdir,
                            })
                            .collect();
                    }
                    "alternative_restore_source" => {
                        let alt: Option<(String, PathBuf, Option<PathBuf>)> = v.extract()?;
                        i.alternative_restore_source =
                            alt.map(|(key, location, blob_location)| AltSource {
                                key,
                                location,
                                blob_location,
                            });
                    }
                    "offsite" => i.offsite = v.extract()?,
                    "offsite_endpoint" => i.offsite_endpoint = v.extract()?,
                    "offsite_region" => i.offsite_region = v.extract()?,
                    "offsite_keep" => i.offsite_keep = Some(count("offsite_keep", &v)?),
                    "offsite_jobs" => i.offsite_jobs = Some(count("offsite_jobs", &v)?),
                    "offsite_credentials" => i.offsite_credentials = v.extract()?,
                    other => {
                        return Err(config_err(format!(
                            "BackupConfig got an unknown argument '{other}'."
                        )))
                    }
                }
            }
        }
        config::BackupConfig::new(i)
            .map(|inner| PyBackupConfig { inner })
            .map_err(to_py)
    }

    /// Buildout-time warnings, in order.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings.clone()
    }

    #[getter]
    fn part_name(&self) -> String {
        self.inner.part_name.clone()
    }

    #[getter]
    fn debug(&self) -> bool {
        self.inner.debug
    }

    /// The effective scalar settings, keyed by option name.
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.inner;
        let d = PyDict::new(py);
        d.set_item("keep", c.keep)?;
        d.set_item("keep_blob_days", c.keep_blob_days)?;
        for (k, v) in [
            ("full", c.full),
            ("debug", c.debug),
            ("only_blobs", c.only_blobs),
            ("backup_blobs", c.backup_blobs),
            ("use_rsync", c.use_rsync),
            (
                "rsync_hard_links_on_first_copy",
                c.rsync_hard_links_on_first_copy,
            ),
            ("archive_blob", c.archive_blob),
            ("compress_blob", c.compress_blob),
            ("blob_timestamps", c.blob_timestamps),
            ("incremental_blobs", c.incremental_blobs),
            ("gzip", c.gzip),
            ("quick", c.quick),
            ("enable_snapshotrestore", c.enable_snapshotrestore),
            ("enable_zipbackup", c.enable_zipbackup),
            ("enable_fullbackup", c.enable_fullbackup),
        ] {
            d.set_item(k, v)?;
        }
        let o = c.offsite.as_ref();
        d.set_item("offsite", o.map(crate::offsite::OffsiteConfig::url))?;
        d.set_item("offsite_endpoint", o.and_then(|o| o.endpoint.clone()))?;
        d.set_item("offsite_region", o.and_then(|o| o.region.clone()))?;
        d.set_item("offsite_keep", o.map(|o| o.keep))?;
        d.set_item("offsite_jobs", o.map(|o| o.jobs))?;
        d.set_item(
            "offsite_credentials",
            o.and_then(|o| opt_path_str(o.credentials.as_deref())),
        )?;
        d.set_item("rsync_options", &c.rsync_options)?;
        d.set_item("pre_command", &c.pre_command)?;
        d.set_item("post_command", &c.post_command)?;
        Ok(d)
    }

    /// Every storage in processing order (main last), as dicts with the
    /// 6.0 `storage` keys; missing locations are None.
    #[getter]
    fn storages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for s in &self.inner.storages {
            let d = PyDict::new(py);
            d.set_item("storage", &s.name)?;
            d.set_item("datafs", path_str(&s.datafs))?;
            d.set_item("blobdir", opt_path_str(s.blobdir.as_deref()))?;
            d.set_item("backup_location", path_str(&s.backup_location))?;
            d.set_item("snapshot_location", path_str(&s.snapshot_location))?;
            d.set_item("zip_location", path_str(&s.zip_location))?;
            d.set_item(
                "blob_backup_location",
                opt_path_str(s.blob_backup_location.as_deref()),
            )?;
            d.set_item(
                "blob_snapshot_location",
                opt_path_str(s.blob_snapshot_location.as_deref()),
            )?;
            d.set_item(
                "blob_zip_location",
                opt_path_str(s.blob_zip_location.as_deref()),
            )?;
            d.set_item("alt_location", opt_path_str(s.alt_location.as_deref()))?;
            d.set_item(
                "blob_alt_location",
                opt_path_str(s.blob_alt_location.as_deref()),
            )?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// `[(script_name, entry_function), ...]` in generation order.
    fn scripts(&self) -> Vec<(String, &'static str)> {
        self.inner
            .scripts()
            .into_iter()
            .map(|(name, entry)| (name, entry.function()))
            .collect()
    }

    /// Buildout-time warnings about locations that cannot be created.
    fn probe_locations(&self) -> Vec<String> {
        self.inner.probe_locations()
    }

    /// `(filestorages, blobstorages)` a restore replaces; with `target`,
    /// those of a restore into that directory (`--target`).
    #[pyo3(signature = (target = None))]
    fn restore_targets(&self, target: Option<PathBuf>) -> PyResult<(Vec<String>, Vec<String>)> {
        let moved = target
            .map(|dir| self.inner.with_target(&dir))
            .transpose()
            .map_err(to_py)?;
        let (fs, blobs) = moved.as_ref().unwrap_or(&self.inner).restore_targets();
        Ok((
            fs.into_iter().map(path_str).collect(),
            blobs.into_iter().map(path_str).collect(),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "BackupConfig(part_name={}, storages={})",
            super::repr_opt(Some(&self.inner.part_name)),
            self.inner.storages.len()
        )
    }
}

/// Parse `additional_filestorages` into `[(name, datafs|None, blobdir|None)]`.
#[pyfunction]
fn parse_additional_filestorages(text: &str) -> PyResult<Vec<config::RawEntry>> {
    config::parse_additional_filestorages(text).map_err(to_py)
}

/// Parse `alternative_restore_source` into `(key, fs_path, blob_path|None)`
/// or None.
#[pyfunction]
fn parse_alternative_restore_source(
    text: &str,
) -> PyResult<Option<(String, String, Option<String>)>> {
    config::parse_alternative_restore_source(text).map_err(to_py)
}

/// Validate a restore date; returns it as `YYYY-MM-DD-HH-MM-SS`.
#[pyfunction]
fn parse_restore_date(text: &str) -> PyResult<String> {
    RestoreDate::parse(text)
        .map(|d| d.to_string())
        .map_err(to_py)
}

/// The locations a restore script of that name reads: standard, snapshot,
/// zip or alt.
fn restore_mode(mode: &str, command: &str) -> PyResult<RestoreMode> {
    match mode {
        "standard" => Ok(RestoreMode::Standard),
        "snapshot" => Ok(RestoreMode::Snapshot),
        "zip" => Ok(RestoreMode::Zip),
        "alt" => Ok(RestoreMode::Alt),
        other => Err(config_err(format!("unknown {command} mode '{other}'"))),
    }
}

/// Run a backup script: mode is standard, full, snapshot or zip. `now`
/// (seconds since the epoch) fixes the clock, for tests. `dry_run` logs
/// what would be done and touches nothing. `progress`: a progress bar on
/// stderr when it is a terminal.
#[pyfunction]
#[pyo3(signature = (config, mode, now = None, dry_run = false, *, progress = false))]
fn backup(
    py: Python<'_>,
    config: &Bound<'_, PyBackupConfig>,
    mode: &str,
    now: Option<f64>,
    dry_run: bool,
    progress: bool,
) -> PyResult<()> {
    let mode = match mode {
        "standard" => BackupMode::Standard,
        "full" => BackupMode::Full,
        "snapshot" => BackupMode::Snapshot,
        "zip" => BackupMode::Zip,
        other => return Err(config_err(format!("unknown backup mode '{other}'"))),
    };
    let cfg = config.get().inner.clone();
    let now = super::fixed_time(now);
    let progress = StderrBar::new(progress);
    py.detach(|| {
        commands::backup(
            &cfg,
            mode,
            dry_run,
            &ScriptFsEngine {
                now,
                progress: &progress,
            },
            &ScriptBlobEngine {
                now,
                progress: &progress,
            },
            &ShellHooks,
        )
    })
    .map_err(to_py)
}

/// Run a restore script: mode is standard, snapshot, zip or alt; date as
/// accepted by `parse_restore_date`, or None for the newest state. `now`
/// (seconds since the epoch) fixes the clock, for tests.
/// `accept_blob_mismatch` restores an older blob backup when the one of the
/// filestorage backup's date is missing (`--accept-blob-mismatch`).
/// `target` restores into that directory instead of the live site;
/// `dry_run` checks and logs what would be written, and writes nothing.
/// `progress`: a progress bar on stderr when it is a terminal.
/// `keep_prefix`: how a live Data.fs that starts with the restored state is
/// proven to (`checksums`, `structure`) so that it is cut instead of
/// rewritten; `never` always writes the whole file; `None` is the core's
/// default.
#[pyfunction]
#[pyo3(signature = (
    config, mode, date = None, now = None, accept_blob_mismatch = false, target = None,
    dry_run = false, *, progress = false, keep_prefix = None
))]
#[allow(clippy::too_many_arguments)]
fn restore(
    py: Python<'_>,
    config: &Bound<'_, PyBackupConfig>,
    mode: &str,
    date: Option<&str>,
    now: Option<f64>,
    accept_blob_mismatch: bool,
    target: Option<PathBuf>,
    dry_run: bool,
    progress: bool,
    keep_prefix: Option<&str>,
) -> PyResult<()> {
    let mode = restore_mode(mode, "restore")?;
    let keep_prefix = match keep_prefix {
        None => RestoreRequest::new(mode).keep_prefix,
        Some("checksums") => Some(Proof::Checksums),
        Some("structure") => Some(Proof::Structure),
        Some("never") => None,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "keep_prefix must be checksums, structure or never, not {other:?}"
            )))
        }
    };
    let date = date.map(RestoreDate::parse).transpose().map_err(to_py)?;
    let cfg = config.get().inner.clone();
    let now = super::fixed_time(now);
    let progress = StderrBar::new(progress);
    py.detach(|| {
        commands::restore(
            &cfg,
            &RestoreRequest {
                mode,
                date: date.as_ref(),
                accept_blob_mismatch,
                target: target.as_deref(),
                dry_run,
                keep_prefix,
            },
            &ScriptFsEngine {
                now,
                progress: &progress,
            },
            &ScriptBlobEngine {
                now,
                progress: &progress,
            },
            &ShellHooks,
        )
    })
    .map_err(to_py)
}

/// The status of every backup of a part: `(healthy, json, text)`. `now`
/// (seconds since the epoch) fixes the clock, for tests; `max_age` is
/// seconds or text such as `26h` or `2d` (parsed by the core).
#[pyfunction]
#[pyo3(signature = (config, *, now = None, max_age = None))]
fn status(
    py: Python<'_>,
    config: &Bound<'_, PyBackupConfig>,
    now: Option<f64>,
    max_age: Option<&Bound<'_, PyAny>>,
) -> PyResult<(bool, String, String)> {
    let max_age = match max_age {
        Some(v) => Some(crate::status::parse_max_age(&v.str()?.to_string()).map_err(to_py)?),
        None => None,
    };
    let cfg = config.get().inner.clone();
    let now = super::fixed_time(now).unwrap_or_else(|| SystemClock.now());
    py.detach(|| {
        let report = crate::status::status(&cfg, now, max_age)?;
        Ok((report.healthy, report.to_json()?, report.to_text()))
    })
    .map_err(to_py)
}

/// Verify backups: the filestorage chain's checksums, the blob backup
/// that belongs to each state, and that every blob record of the state has
/// its file there. mode is standard, snapshot, zip or alt (the locations
/// the restore script of that name reads); date as accepted by
/// `parse_restore_date` selects the state a restore to that date would
/// choose, None the newest, `all` every state. Problems are logged; the
/// error (VerificationFail) gives their count.
#[pyfunction]
#[pyo3(signature = (config, mode = "standard", date = None, all = false, now = None))]
fn verify(
    py: Python<'_>,
    config: &Bound<'_, PyBackupConfig>,
    mode: &str,
    date: Option<&str>,
    all: bool,
    now: Option<f64>,
) -> PyResult<()> {
    let mode = restore_mode(mode, "verify")?;
    let date = date.map(RestoreDate::parse).transpose().map_err(to_py)?;
    let selection = commands::Selection::new(date.as_ref(), all).map_err(to_py)?;
    let cfg = config.get().inner.clone();
    let now = super::fixed_time(now);
    py.detach(|| commands::verify(&cfg, mode, selection, now))
        .map_err(to_py)
}

/// Off-site copies: `action` is push, pull, status or verify; `set`
/// backup, snapshot or zip (default: every set, or backup for pull);
/// `date` (pull only) as `parse_restore_date` accepts. Returns
/// `(ok, report)`.
#[pyfunction]
#[pyo3(signature = (config, action, *, set = None, date = None))]
fn offsite(
    py: Python<'_>,
    config: &Bound<'_, PyBackupConfig>,
    action: &str,
    set: Option<&str>,
    date: Option<&str>,
) -> PyResult<(bool, String)> {
    let cfg = config.get().inner.clone();
    py.detach(|| crate::offsite::run(&cfg, action, set, date))
        .map_err(to_py)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBackupConfig>()?;
    m.add_function(wrap_pyfunction!(parse_additional_filestorages, m)?)?;
    m.add_function(wrap_pyfunction!(parse_alternative_restore_source, m)?)?;
    m.add_function(wrap_pyfunction!(parse_restore_date, m)?)?;
    m.add_function(wrap_pyfunction!(backup, m)?)?;
    m.add_function(wrap_pyfunction!(restore, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(offsite, m)?)?;
    Ok(())
}
