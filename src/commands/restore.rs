//! `bin/restore`, `bin/snapshotrestore`, `bin/ziprestore`, `bin/altrestore`.
//!
//! Three phases, so that a failure changes nothing live (issue 5 §5; 6.0
//! replaced the Data.fs before finding out that the blob restore would
//! fail, crb-features §3.6):
//!
//! 1. **Check**, for every storage before any is touched: its lock (a
//!    running Zope/ZEO refuses the restore), the filestorage backup chain
//!    for the date, and the blob backup for the date.
//! 2. **Write** every planned state into temporaries beside its target:
//!    `<dir of Data.fs>/.crb-restore-*/Data.fs` (+ `.index`) and
//!    `<dir of blobstorage>/.crb-restore-*/new/`.
//! 3. **Swap** them in, additional storages first, main last, only when all
//!    are complete. Temporaries (and the replaced blob tree) are removed
//!    when they go out of scope, on success and on failure.
//!
//! `pre_command` runs before the checks (it may mount the backup disk),
//! `post_command` after a successful swap.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::lock::lock_storage;
use super::{BlobEngine, BlobRestore, BlobSettings, FileStorageEngine, FsRecover, RestoreMode};
use crate::config::{BackupConfig, RestoreDate, Storage};
use crate::error::{Error, IoContext, Result};
use crate::hooks::Hooks;

fn sources(s: &Storage, mode: RestoreMode) -> (Option<&Path>, Option<&Path>) {
    match mode {
        RestoreMode::Standard => (Some(&s.backup_location), s.blob_backup_location.as_deref()),
        RestoreMode::Snapshot => (
            Some(&s.snapshot_location),
            s.blob_snapshot_location.as_deref(),
        ),
        RestoreMode::Zip => (Some(&s.zip_location), s.blob_zip_location.as_deref()),
        RestoreMode::Alt => (s.alt_location.as_deref(), s.blob_alt_location.as_deref()),
    }
}

/// The real target: a symlinked Data.fs or blobstorage is restored where
/// the link points, so the link survives the swap.
fn real_target(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_beside(target: &Path) -> Result<TempDir> {
    let parent = parent_of(target);
    tempfile::Builder::new()
        .prefix(".crb-restore-")
        .tempdir_in(parent)
        .at(parent)
}

fn file_name(path: &Path) -> Result<&std::ffi::OsStr> {
    path.file_name().ok_or_else(|| {
        Error::Config(format!(
            "{} does not name a file or directory.",
            path.display()
        ))
    })
}

/// A storage's restore after the check phase.
struct Checked<'a, FP, BP> {
    storage: &'a Storage,
    fs: Option<(&'a Path, FP)>,
    blobs: Option<(&'a Path, BP)>,
}

/// A storage's restore after the write phase.
struct Written {
    datafs: Option<(PathBuf, TempDir)>,
    blobdir: Option<(PathBuf, TempDir)>,
}

/// Run one restore script.
///
/// # Errors
/// The first failing step. Before the swap phase nothing live has changed.
pub fn restore<F, B>(
    cfg: &BackupConfig,
    mode: RestoreMode,
    date: Option<&RestoreDate>,
    fs_engine: &F,
    blob_engine: &B,
    hooks: &dyn Hooks,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let settings = BlobSettings {
        archive: cfg.archive_blob || mode == RestoreMode::Zip,
        compress: cfg.compress_blob,
        timestamps: cfg.blob_timestamps && mode != RestoreMode::Zip,
        incremental: cfg.incremental_blobs,
        hard_links: cfg.use_rsync,
        hard_links_on_first_copy: false,
        rsync_options: cfg.rsync_options.clone(),
    };
    if let Some(d) = date {
        log::info!("Date restriction: restoring state at {d}.");
    }
    hooks.run(&cfg.pre_command)?;

    // 1. Check.
    let with_fs = !cfg.only_blobs;
    // Locks are checked with only_blobs too: swapping the blobs of a
    // running Zope is as bad as swapping its Data.fs.
    let mut locks = Vec::new();
    for s in &cfg.storages {
        if let Some(lock) = lock_storage(&s.datafs)? {
            locks.push(lock);
        }
    }
    let mut checked = Vec::with_capacity(cfg.storages.len());
    for s in &cfg.storages {
        let (fs_source, blob_source) = sources(s, mode);
        let fs = if with_fs {
            let repository = fs_source.ok_or_else(|| {
                Error::Config(format!(
                    "No filestorage backup source specified for storage {}.",
                    s.name
                ))
            })?;
            let plan = fs_engine.plan_recover(&FsRecover {
                repository,
                date,
                verbose: cfg.debug,
            })?;
            Some((repository, plan))
        } else {
            None
        };
        let blobs = match (cfg.backup_blobs, s.blobdir.as_deref()) {
            (true, Some(blobdir)) => {
                let source = blob_source
                    .ok_or_else(|| Error::Config("No blob storage source specified".to_owned()))?;
                let plan = blob_engine.plan_restore(&BlobRestore {
                    source,
                    blobdir,
                    date,
                    settings: &settings,
                })?;
                Some((source, plan))
            }
            _ => None,
        };
        checked.push(Checked {
            storage: s,
            fs,
            blobs,
        });
    }

    // 2. Write into temporaries.
    let mut written = Vec::with_capacity(checked.len());
    for c in &checked {
        let datafs = match &c.fs {
            Some((repository, plan)) => {
                let dir = parent_of(&c.storage.datafs);
                if !dir.is_dir() {
                    fs::create_dir_all(dir).at(dir)?;
                    log::info!("Created directory {}", dir.display());
                }
                let target = real_target(&c.storage.datafs);
                let tmp = temp_beside(&target)?;
                log::info!(
                    "Please wait while restoring database file: {} to {}",
                    repository.display(),
                    c.storage.datafs.display()
                );
                fs_engine.recover(plan, &tmp.path().join(file_name(&target)?))?;
                Some((target, tmp))
            }
            None => None,
        };
        let blobdir = match (&c.blobs, c.storage.blobdir.as_deref()) {
            (Some((source, plan)), Some(blobdir)) => {
                let target = real_target(blobdir);
                let parent = parent_of(&target);
                if !parent.is_dir() {
                    fs::create_dir_all(parent).at(parent)?;
                }
                let tmp = temp_beside(&target)?;
                let new = tmp.path().join("new");
                create_private_dir(&new)?;
                log::info!(
                    "Restoring blobs from {} to {}",
                    source.display(),
                    blobdir.display()
                );
                blob_engine.restore(plan, &new)?;
                Some((target, tmp))
            }
            _ => None,
        };
        written.push(Written { datafs, blobdir });
    }

    // 3. Swap.
    for w in &written {
        if let Some((target, tmp)) = &w.datafs {
            swap_datafs(tmp.path(), target)?;
        }
        if let Some((target, tmp)) = &w.blobdir {
            swap_dir(tmp.path(), target)?;
        }
    }
    drop(written);
    drop(locks);
    hooks.run(&cfg.post_command)
}

/// ZODB wants its blob directory readable by the owner only (0700).
fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).at(path)
}

fn index_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut s = name.to_owned();
    s.push(".index");
    s
}

/// Move `<tmp>/<name>` over the Data.fs and `<tmp>/<name>.index` over its
/// index; a stale index is removed when the restore brought none.
fn swap_datafs(tmp: &Path, datafs: &Path) -> Result<()> {
    let name = file_name(datafs)?;
    let new = tmp.join(name);
    let new_index = tmp.join(index_name(name));
    let index = datafs.with_file_name(index_name(name));
    if new_index.exists() {
        fs::rename(&new_index, &index).at(&index)?;
    } else {
        match fs::remove_file(&index) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&index, e)),
        }
    }
    fs::rename(&new, datafs).at(datafs)
}

/// Move `<tmp>/new` into place of `target`, keeping the old tree in
/// `<tmp>/old` (removed with the temporary) and putting it back if the
/// second rename fails.
fn swap_dir(tmp: &Path, target: &Path) -> Result<()> {
    let new = tmp.join("new");
    let old = tmp.join("old");
    let had_old = fs::symlink_metadata(target).is_ok();
    if had_old {
        fs::rename(target, &old).at(target)?;
    }
    if let Err(e) = fs::rename(&new, target) {
        if had_old {
            let _ = fs::rename(&old, target);
        }
        return Err(Error::io(target, e));
    }
    Ok(())
}
