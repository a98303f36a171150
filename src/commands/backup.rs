//! `bin/backup`, `bin/fullbackup`, `bin/snapshotbackup`, `bin/zipbackup`.
//!
//! Order (see docs/scripts.rst, seed order for additional storages):
//! `pre_command` → every filestorage backup (additional storages first,
//! main last) → every blob backup (same order) → retention (filestorages,
//! then blobs) → `post_command`. The first failure stops everything and
//! `post_command` does not run (as in 6.0). A blob directory to back up
//! that does not exist stops the run before anything is written.

use std::path::Path;

use super::{
    BackupMode, BlobBackup, BlobEngine, BlobRestore, BlobRetention, BlobSettings,
    FileStorageEngine, FsBackup, FsRetention,
};
use crate::config::{BackupConfig, Storage};
use crate::error::{Error, IoContext, Result};
use crate::hooks::Hooks;

/// What a backup script does differently (see docs/scripts.rst).
struct Plan {
    full: bool,
    keep: u32,
    gzip: bool,
    blobs: BlobSettings,
    fs_verb: &'static str,
    blob_verb: &'static str,
}

impl Plan {
    fn new(cfg: &BackupConfig, mode: BackupMode) -> Self {
        let mut blobs = BlobSettings::from_config(cfg);
        let (full, keep, gzip, fs_verb, blob_verb) = match mode {
            BackupMode::Standard => (
                cfg.full,
                cfg.keep,
                cfg.gzip,
                "backing up database file:",
                "backing up blobs from",
            ),
            BackupMode::Full => (
                true,
                cfg.keep,
                cfg.gzip,
                "making full backup of database file:",
                "backing up blobs from",
            ),
            BackupMode::Snapshot => {
                blobs.incremental = false;
                (
                    true,
                    cfg.keep,
                    cfg.gzip,
                    "making snapshot backup:",
                    "making snapshot of blobs from",
                )
            }
            BackupMode::Zip => {
                blobs.archive = true;
                blobs.incremental = false;
                blobs.timestamps = false;
                (
                    true,
                    1,
                    true,
                    "making zip backup:",
                    "making zip backup of blobs from",
                )
            }
        };
        Plan {
            full,
            keep,
            gzip,
            blobs,
            fs_verb,
            blob_verb,
        }
    }
}

fn fs_location(s: &Storage, mode: BackupMode) -> &Path {
    match mode {
        BackupMode::Standard | BackupMode::Full => &s.backup_location,
        BackupMode::Snapshot => &s.snapshot_location,
        BackupMode::Zip => &s.zip_location,
    }
}

fn blob_location(s: &Storage, mode: BackupMode) -> Option<&Path> {
    match mode {
        BackupMode::Standard | BackupMode::Full => s.blob_backup_location.as_deref(),
        BackupMode::Snapshot => s.blob_snapshot_location.as_deref(),
        BackupMode::Zip => s.blob_zip_location.as_deref(),
    }
}

/// A blob directory to back up must be one. A missing one is never
/// created here (the buildout only warned about it, as Zope or ZEO may not
/// have run yet): backing up nothing with exit 0 would hide a misspelt
/// `blob_storage`.
fn check_blobdir(blobdir: &Path) -> Result<()> {
    match std::fs::metadata(blobdir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory {
            path: blobdir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Config(format!(
            "Blob storage {} does not exist. Check blob_storage, or set backup_blobs = false if this site keeps no blobs. Nothing was backed up.",
            blobdir.display()
        ))),
        Err(e) => Err(e).at(blobdir),
    }
}

/// Create a backup location when missing (6.0 `check_folders`).
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).at(dir)?;
        log::info!("Created {}", dir.display());
    }
    Ok(())
}

/// Run one backup script.
///
/// # Errors
/// The first failing step: a hook, a directory that cannot be created, or
/// an engine error. Later steps do not run.
pub fn backup<F, B>(
    cfg: &BackupConfig,
    mode: BackupMode,
    fs: &F,
    blobs: &B,
    hooks: &dyn Hooks,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let plan = Plan::new(cfg, mode);
    hooks.run(&cfg.pre_command)?;
    // A restore killed during its swap left an intent record: finish or
    // undo it before backing up what would be a half-restored state.
    super::restore::finish_interrupted(cfg)?;

    let with_fs = !cfg.only_blobs;
    let blob_jobs: Vec<(&Storage, &Path, &Path)> = if cfg.backup_blobs {
        cfg.storages
            .iter()
            .filter_map(|s| Some((s, s.blobdir.as_deref()?, blob_location(s, mode)?)))
            .collect()
    } else {
        Vec::new()
    };
    for (_, blobdir, _) in &blob_jobs {
        check_blobdir(blobdir)?;
    }
    // Every location this run writes, created and locked for the whole run
    // (backups and retention), so that an overlapping run waits or refuses.
    let mut locations: Vec<&Path> = Vec::new();
    if with_fs {
        locations.extend(cfg.storages.iter().map(|s| fs_location(s, mode)));
    }
    locations.extend(blob_jobs.iter().map(|(_, _, d)| *d));
    for dir in &locations {
        ensure_dir(dir)?;
    }
    let _locks = crate::lock::lock_locations(locations.iter().copied())?;
    if with_fs {
        for s in &cfg.storages {
            let repository = fs_location(s, mode);
            log::info!(
                "Please wait while {} {} to {}",
                plan.fs_verb,
                s.datafs.display(),
                repository.display()
            );
            fs.backup(&FsBackup {
                datafs: &s.datafs,
                repository,
                full: plan.full,
                quick: cfg.quick && !plan.full,
                gzip: plan.gzip,
                verbose: cfg.debug,
            })?;
        }
    }

    for (s, blobdir, destination) in &blob_jobs {
        log::info!(
            "Please wait while {} {} to {}",
            plan.blob_verb,
            blobdir.display(),
            destination.display()
        );
        blobs.backup(&BlobBackup {
            blobdir,
            destination,
            fs_repository: with_fs.then(|| fs_location(s, mode)),
            full: plan.full,
            settings: &plan.blobs,
        })?;
    }

    if with_fs {
        for s in &cfg.storages {
            let repository = fs_location(s, mode);
            // With dated blob backups, `keep` counts the full backups that
            // can be restored with their blobs: a full backup whose blob
            // step failed does not push out an older complete pair.
            let complete = match blob_jobs.iter().find(|(js, _, _)| std::ptr::eq(*js, s)) {
                Some((_, blobdir, destination)) if plan.blobs.timestamps => {
                    let request = BlobRestore {
                        source: destination,
                        blobdir,
                        date: None,
                        settings: &plan.blobs,
                    };
                    Some(
                        fs.stamps(repository)?
                            .into_iter()
                            .filter(|stamp| blobs.plan_exact(&request, stamp).is_ok())
                            .collect::<Vec<String>>(),
                    )
                }
                _ => None,
            };
            fs.retain(&FsRetention {
                repository,
                keep: plan.keep,
                complete: complete.as_deref(),
            })?;
        }
    }
    for (s, _, destination) in &blob_jobs {
        blobs.retain(&BlobRetention {
            destination,
            fs_repository: with_fs.then(|| fs_location(s, mode)),
            full: plan.full,
            keep: plan.keep,
            keep_blob_days: cfg.keep_blob_days,
            settings: &plan.blobs,
        })?;
    }

    hooks.run(&cfg.post_command)
}
