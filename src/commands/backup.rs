//! `bin/backup`, `bin/fullbackup`, `bin/snapshotbackup`, `bin/zipbackup`.
//!
//! Order (see docs/scripts.rst, seed order for additional storages):
//! `pre_command` → every filestorage backup (additional storages first,
//! main last) → every blob backup (same order) → retention (filestorages,
//! then blobs) → `post_command`. The first failure stops everything and
//! `post_command` does not run (as in 6.0). A blob directory to back up
//! that does not exist stops the run before anything is written.

use std::path::{Path, PathBuf};

use super::{
    BackupMode, BlobBackup, BlobEngine, BlobRestore, BlobRetention, BlobSettings,
    FileStorageEngine, FsBackup, FsRetention,
};
use crate::blobs::naming::parse_repozo_data_file;
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

/// Create a backup location when missing (6.0 `check_folders`); with
/// `dry_run`, say so instead.
fn ensure_dir(dir: &Path, dry_run: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() && dry_run {
        log::info!("Would create directory {}", dir.display());
    } else if !dir.is_dir() {
        std::fs::create_dir_all(dir).at(dir)?;
        log::info!("Created {}", dir.display());
    }
    Ok(())
}

/// Run one backup script; with `dry_run`, only say what it would do
/// ([`plan`]).
///
/// # Errors
/// The first failing step: a hook, a directory that cannot be created, or
/// an engine error. Later steps do not run.
pub fn backup<F, B>(
    cfg: &BackupConfig,
    mode: BackupMode,
    dry_run: bool,
    fs: &F,
    blobs: &B,
    hooks: &dyn Hooks,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let plan = Plan::new(cfg, mode);
    if dry_run {
        return dry_run_backup(cfg, mode, &plan, fs, blobs);
    }
    hooks.run(&cfg.pre_command)?;
    // A restore killed during its swap left an intent record: finish or
    // undo it before backing up what would be a half-restored state.
    super::restore::finish_interrupted(cfg)?;

    let with_fs = !cfg.only_blobs;
    let blob_jobs = blob_jobs(cfg, mode)?;
    // Every location this run writes, created and locked for the whole run
    // (backups and retention), so that an overlapping run waits or refuses.
    let locations = locations(cfg, mode, &blob_jobs);
    for dir in &locations {
        ensure_dir(dir, false)?;
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
            let complete = complete_stamps(mode, &plan, s, &blob_jobs, fs, blobs, None)?;
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
    // Off-site last: a failed push fails the run, the local backup being
    // complete already.
    crate::offsite::push_after_backup(cfg, mode)?;

    hooks.run(&cfg.post_command)
}

/// The blob backups a run makes: (storage, blob directory, location), each
/// blob directory checked ([`check_blobdir`]).
fn blob_jobs(cfg: &BackupConfig, mode: BackupMode) -> Result<Vec<(&Storage, &Path, &Path)>> {
    let jobs: Vec<(&Storage, &Path, &Path)> = if cfg.backup_blobs {
        cfg.storages
            .iter()
            .filter_map(|s| Some((s, s.blobdir.as_deref()?, blob_location(s, mode)?)))
            .collect()
    } else {
        Vec::new()
    };
    for (_, blobdir, _) in &jobs {
        check_blobdir(blobdir)?;
    }
    Ok(jobs)
}

/// Every location a run writes.
fn locations<'a>(
    cfg: &'a BackupConfig,
    mode: BackupMode,
    blob_jobs: &[(&'a Storage, &'a Path, &'a Path)],
) -> Vec<&'a Path> {
    let mut locations: Vec<&Path> = Vec::new();
    if !cfg.only_blobs {
        locations.extend(cfg.storages.iter().map(|s| fs_location(s, mode)));
    }
    locations.extend(blob_jobs.iter().map(|(_, _, d)| *d));
    locations
}

/// `--dry-run`: what [`backup`] would do, one `Would ...` line per file or
/// directory it would write or remove, touching nothing: no hook runs, no
/// directory or lock file is created, no interrupted restore is finished.
/// Each decision is the engines' own (their `plan_*` methods); retention
/// is planned as if the planned backups existed.
fn dry_run_backup<F, B>(
    cfg: &BackupConfig,
    mode: BackupMode,
    plan: &Plan,
    fs: &F,
    blobs: &B,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    if !cfg.pre_command.is_empty() {
        log::info!("Would run pre_command: {}", cfg.pre_command);
    }
    super::restore::log_interrupted(cfg)?;
    let with_fs = !cfg.only_blobs;
    let blob_jobs = blob_jobs(cfg, mode)?;
    for dir in locations(cfg, mode, &blob_jobs) {
        ensure_dir(dir, true)?;
    }

    // Filestorages: (storage, planned files, stamp, leftovers removed first).
    type FsPlanned<'s> = (&'s Storage, Vec<PathBuf>, Option<String>, Vec<PathBuf>);
    let mut fs_planned: Vec<FsPlanned<'_>> = Vec::new();
    if with_fs {
        for s in &cfg.storages {
            let repository = fs_location(s, mode);
            let p = fs.plan_backup(&FsBackup {
                datafs: &s.datafs,
                repository,
                full: plan.full,
                quick: cfg.quick && !plan.full,
                gzip: plan.gzip,
                verbose: cfg.debug,
            })?;
            log_leftovers(&p.leftovers);
            let Some(data) = p.data_file.clone() else {
                log::info!(
                    "Would make no backup of {}: nothing to do, no changes since the last backup in {}",
                    s.datafs.display(),
                    repository.display()
                );
                fs_planned.push((s, Vec::new(), None, p.leftovers));
                continue;
            };
            let full = p.action == crate::repozo::Action::Full;
            log::info!(
                "Would make {} {} of {} ({})",
                if full {
                    "a full backup"
                } else {
                    "an incremental backup"
                },
                data.display(),
                s.datafs.display(),
                p.reason
            );
            let mut files = vec![data.clone()];
            if let Some(index) = &p.index_file {
                log::info!("Would write {}", index.display());
                files.push(index.clone());
            }
            if let Some(dat) = &p.dat_file {
                if full {
                    log::info!("Would write {}", dat.display());
                } else {
                    log::info!("Would append a line to {}", dat.display());
                }
                files.push(dat.clone());
            }
            let stamp = data
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_repozo_data_file)
                .map(|(stamp, _)| stamp.to_owned());
            fs_planned.push((s, files, stamp, p.leftovers));
        }
    }
    let fs_plan_of = |s: &Storage| fs_planned.iter().find(|p| std::ptr::eq(p.0, s));

    // Blobs.
    let mut blob_planned = Vec::new();
    for (s, blobdir, destination) in &blob_jobs {
        let fs_stamp = fs_plan_of(s).and_then(|p| p.2.as_deref());
        let p = blobs.plan_backup(
            &BlobBackup {
                blobdir,
                destination,
                fs_repository: with_fs.then(|| fs_location(s, mode)),
                full: plan.full,
                settings: &plan.blobs,
            },
            fs_stamp,
        )?;
        log_leftovers(&p.leftovers);
        if p.exists {
            log::info!(
                "Would make no blob backup of {}: {} exists, so there were no database changes since the last backup",
                blobdir.display(),
                p.backup.display()
            );
        } else {
            for (from, to) in &p.renames {
                log::info!("Would rename {} to {}", from.display(), to.display());
            }
            log::info!(
                "Would make a blob backup {} of {}",
                p.backup.display(),
                blobdir.display()
            );
            if let Some(snar) = &p.snapshot_file {
                log::info!("Would write {}", snar.display());
            }
        }
        blob_planned.push((*s, p));
    }

    // Retention, as if the planned backups existed.
    let mut fs_removed: Vec<(&Storage, Vec<PathBuf>)> = Vec::new();
    if with_fs {
        for (s, files, stamp, leftovers) in &fs_planned {
            let repository = fs_location(s, mode);
            // The planned blob backup completes the planned (or newest)
            // filestorage backup's stamp.
            let planned_blob = blob_planned
                .iter()
                .find(|(bs, _)| std::ptr::eq(*bs, *s))
                .and_then(|(_, p)| blob_stamp(&p.backup));
            let complete = complete_stamps(
                mode,
                plan,
                s,
                &blob_jobs,
                fs,
                blobs,
                Some((stamp.as_deref(), planned_blob.as_deref())),
            )?;
            let remove = fs.plan_retention(
                &FsRetention {
                    repository,
                    keep: plan.keep,
                    complete: complete.as_deref(),
                },
                files,
                leftovers,
            )?;
            for path in &remove {
                log::info!("Would remove {}", path.display());
            }
            fs_removed.push((*s, leftovers.iter().cloned().chain(remove).collect()));
        }
    }
    for (s, planned) in &blob_planned {
        let Some((_, _, destination)) = blob_jobs.iter().find(|(js, _, _)| std::ptr::eq(*js, *s))
        else {
            continue;
        };
        // The repository as blob retention will find it: with the planned
        // backup, without what its retention removes.
        let fs_added = fs_plan_of(s).map_or(&[][..], |p| p.1.as_slice());
        let fs_gone = fs_removed
            .iter()
            .find(|(rs, _)| std::ptr::eq(*rs, *s))
            .map_or(&[][..], |(_, r)| r.as_slice());
        let cleanup = blobs.plan_retention(
            &BlobRetention {
                destination,
                fs_repository: with_fs.then(|| fs_location(s, mode)),
                full: plan.full,
                keep: plan.keep,
                keep_blob_days: cfg.keep_blob_days,
                settings: &plan.blobs,
            },
            planned,
            fs_added,
            fs_gone,
        )?;
        for r in &cleanup.remove {
            log::info!("Would remove {}", destination.join(&r.name).display());
        }
        let latest = destination.join(crate::blobs::naming::LATEST);
        let now = std::fs::read_link(&latest).ok();
        match &cleanup.latest {
            Some(to) if now.as_deref() != Some(Path::new(to)) => {
                log::info!("Would point {} to {to}", latest.display());
            }
            None if now.is_some() => log::info!("Would remove {}", latest.display()),
            _ => {}
        }
    }

    if let Some(o) = &cfg.offsite {
        log::info!("Would push the new backups to {}", o.url());
    }
    if !cfg.post_command.is_empty() {
        log::info!("Would run post_command: {}", cfg.post_command);
    }
    Ok(())
}

/// With dated blob backups, `keep` counts the full backups that can be
/// restored with their blobs: the stamps of `s`'s repository whose blob
/// backup is complete (None: every full backup counts). A dry run adds its
/// `planned` (filestorage stamp, blob backup stamp).
fn complete_stamps<F, B>(
    mode: BackupMode,
    plan: &Plan,
    s: &Storage,
    blob_jobs: &[(&Storage, &Path, &Path)],
    fs: &F,
    blobs: &B,
    planned: Option<(Option<&str>, Option<&str>)>,
) -> Result<Option<Vec<String>>>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let Some((_, blobdir, destination)) = blob_jobs.iter().find(|(js, _, _)| std::ptr::eq(*js, s))
    else {
        return Ok(None);
    };
    if !plan.blobs.timestamps {
        return Ok(None);
    }
    let request = BlobRestore {
        source: destination,
        blobdir,
        date: None,
        settings: &plan.blobs,
    };
    let (planned_fs, planned_blob) = planned.unwrap_or((None, None));
    let mut stamps = fs.stamps(fs_location(s, mode))?;
    stamps.extend(planned_fs.map(str::to_owned));
    Ok(Some(
        stamps
            .into_iter()
            .filter(|stamp| {
                planned_blob == Some(stamp.as_str()) || blobs.plan_exact(&request, stamp).is_ok()
            })
            .collect(),
    ))
}

/// What a dead run left, which the real run removes first.
fn log_leftovers(leftovers: &[PathBuf]) {
    for p in leftovers {
        log::info!("Would remove {}: left by an interrupted run", p.display());
    }
}

/// The stamp in a blob backup's name, if it has one.
fn blob_stamp(backup: &Path) -> Option<String> {
    let name = crate::blobs::naming::BackupName::parse(backup.file_name()?.to_str()?)?;
    name.timestamp().map(str::to_owned)
}
