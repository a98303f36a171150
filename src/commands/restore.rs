//! `bin/restore`, `bin/snapshotrestore`, `bin/ziprestore`, `bin/altrestore`.
//!
//! Three phases, so that a failure changes nothing live (6.0
//! replaced the Data.fs before finding out that the blob restore would
//! fail, see docs/blobs.rst):
//!
//! 1. **Check**, for every storage before any is touched: its lock (a
//!    running Zope/ZEO refuses the restore), the filestorage backup chain
//!    for the date, and the blob backup for the date.
//! 2. **Write** every planned state into temporaries beside its target:
//!    `<dir of Data.fs>/.crb-restore-*/Data.fs` (+ `.index`) and
//!    `<dir of blobstorage>/.crb-restore-*/new/`.
//! 3. **Swap** them in, additional storages first, main last, only when all
//!    are complete, crash-safe (`swap.rs`): an intent record, then one
//!    `RENAME_EXCHANGE` per target where the file system has it, directory
//!    flushes, and only then the removal of the old copies. A failure
//!    before the swap drops the temporaries; a failed swap is undone.
//!
//! Before the check, under the storage locks, a swap that an earlier run
//! left interrupted (killed, power loss) is finished or undone, and the
//! temporaries of dead runs are removed ([`finish_interrupted`] does the
//! same at the start of a backup).
//!
//! `pre_command` runs before the checks (it may mount the backup disk),
//! `post_command` after a successful swap.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::lock::{lock_storage, probe_storage};
use super::swap::{self, Item};
use super::{BlobEngine, BlobRestore, BlobSettings, FileStorageEngine, FsRecover, RestoreMode};
use crate::config::{BackupConfig, RestoreDate, Storage};
use crate::error::{Error, IoContext, Result};
use crate::hooks::Hooks;
use crate::repozo::prefix::{self, KeptPrefix, Proof};

pub(super) fn sources(s: &Storage, mode: RestoreMode) -> (Option<&Path>, Option<&Path>) {
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

/// What a restore script was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreRequest<'a> {
    /// Which script: which backup locations are read.
    pub mode: RestoreMode,
    /// The state at or before this date; `None` = newest.
    pub date: Option<&'a RestoreDate>,
    /// Restore an older blob backup when the one of the filestorage
    /// backup's date is missing (`--accept-blob-mismatch`).
    pub accept_blob_mismatch: bool,
    /// Restore into this directory instead of the live site (`--target`,
    /// see [`BackupConfig::with_target`]).
    pub target: Option<&'a Path>,
    /// Check everything, log what would be written, write nothing
    /// (`--dry-run`).
    pub dry_run: bool,
    /// Keep the live Data.fs's first bytes when this proves them to be the
    /// restored state, and cut off the rest; `None`: always write the
    /// whole Data.fs (`--write-all`).
    pub keep_prefix: Option<Proof>,
}

impl RestoreRequest<'_> {
    /// A restore of the newest state onto the live site.
    #[must_use]
    pub fn new(mode: RestoreMode) -> Self {
        RestoreRequest {
            mode,
            date: None,
            accept_blob_mismatch: false,
            target: None,
            dry_run: false,
            keep_prefix: Some(Proof::Checksums),
        }
    }
}

/// A storage's restore after the check phase.
struct Checked<'a, FP, BP> {
    storage: &'a Storage,
    fs: Option<(&'a Path, FP)>,
    /// The live Data.fs starts with the planned state: keep it, cut it.
    prefix: Option<KeptPrefix>,
    blobs: Option<(&'a Path, BP)>,
}

/// A storage's restore after the write phase.
struct Written {
    /// (Data.fs to replace, its `.index` as ZODB looks for it, temporary
    /// holding the new `new/<name>` and `new/<name>.index`).
    datafs: Option<(PathBuf, PathBuf, TempDir)>,
    /// The Data.fs is cut instead of replaced: the temporary holds its
    /// saved tail as `new/<name of tail>` (when there is one), to go to
    /// [`Cutting::tail`].
    cut: Option<Cutting>,
    /// (blob directory to replace, temporary holding the new tree in `new`).
    blobdir: Option<(PathBuf, TempDir)>,
}

/// Run one restore script.
///
/// With `blob_timestamps` (and filestorage backups) the blob backup
/// restored is the one named with the date of the filestorage backup the
/// restore selects (the blob backup made right after it). When that one
/// is missing or incomplete the restore is refused before anything is
/// touched, naming the newest date that has both; `accept_blob_mismatch`
/// restores the newest blob backup at or before the date instead, with a
/// warning naming both dates. Numbered blob backups and `only_blobs` are
/// selected by date alone.
///
/// With `target` the configuration is first moved there
/// ([`BackupConfig::with_target`]; the directory is created when missing)
/// and the restore runs unchanged on it. With `dry_run` the check phase
/// runs (locks are probed, not taken), each write is logged as a
/// `Would ...` line, and nothing is written, created or run.
///
/// # Errors
/// The first failing step. Before the swap phase nothing live has changed.
pub fn restore<F, B>(
    cfg: &BackupConfig,
    req: &RestoreRequest<'_>,
    fs_engine: &F,
    blob_engine: &B,
    hooks: &dyn Hooks,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let RestoreRequest {
        mode,
        date,
        accept_blob_mismatch,
        target,
        dry_run,
        keep_prefix,
    } = *req;
    let targeted;
    let cfg = match target {
        Some(dir) => {
            targeted = cfg.with_target(dir)?;
            &targeted
        }
        None => cfg,
    };
    let mut settings = BlobSettings::from_config(cfg);
    if mode == RestoreMode::Zip {
        // Zip backups are one numbered archive.
        settings.archive = true;
        settings.timestamps = false;
    }
    if let Some(d) = date {
        log::info!("Date restriction: restoring state at {d}.");
    }
    run_hook(hooks, "pre_command", &cfg.pre_command, dry_run)?;

    // 1. Check.
    // A missing blob directory is created, but only in a directory that
    // exists or beside its Data.fs (Storage::missing_blob_parent): a
    // misspelt blob_storage is refused here, before anything is created or
    // locked.
    for s in &cfg.storages {
        if let (Some(blobdir), Some(parent)) =
            (s.blobdir.as_deref(), s.missing_blob_parent(!cfg.only_blobs))
        {
            if target == Some(parent) {
                // The target directory, created below.
                continue;
            }
            return Err(Error::Config(format!(
                "Cannot restore blobs to {}: its directory {} does not exist. Check blob_storage, or create {} first. Nothing was changed.",
                blobdir.display(),
                parent.display(),
                parent.display()
            )));
        }
    }
    let with_fs = !cfg.only_blobs;
    match target {
        Some(dir) if dry_run && !dir.is_dir() => {
            log::info!("Would create directory {}", dir.display());
        }
        Some(dir) if !dir.is_dir() => {
            // Before the locks, so that the target's own lock is taken.
            fs::create_dir(dir).at(dir)?;
            log::info!("Created directory {}", dir.display());
        }
        _ => {}
    }
    // Locks are checked with only_blobs too: swapping the blobs of a
    // running Zope is as bad as swapping its Data.fs.
    let mut locks = Vec::new();
    for s in &cfg.storages {
        if dry_run {
            probe_storage(&s.datafs)?;
        } else if let Some(lock) = lock_storage(&s.datafs)? {
            locks.push(lock);
        }
    }
    let dirs = swap_dirs(cfg);
    if !dry_run {
        swap::recover(&dirs, &dirs)?;
    } else {
        log_interrupted(cfg)?;
    }
    // The backup locations read, locked so that no backup or retention
    // changes them between the checks and the writes (a dry run changes
    // nothing, and creates no lock files).
    let locked = cfg.storages.iter().flat_map(|s| {
        let (fs_source, blob_source) = sources(s, mode);
        [
            fs_source.filter(|_| with_fs),
            blob_source.filter(|_| cfg.backup_blobs),
        ]
        .into_iter()
        .flatten()
    });
    let _location_locks = if dry_run {
        Vec::new()
    } else {
        crate::lock::lock_locations(locked)?
    };
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
        let needed = match &fs {
            Some((_, plan)) if settings.timestamps => fs_engine.plan_stamp(plan),
            _ => None,
        };
        let blobs = match (cfg.backup_blobs, s.blobdir.as_deref()) {
            (true, Some(blobdir)) => {
                let source = blob_source
                    .ok_or_else(|| Error::Config("No blob storage source specified".to_owned()))?;
                let req = BlobRestore {
                    source,
                    blobdir,
                    date,
                    settings: &settings,
                };
                let plan = match &needed {
                    None => blob_engine.plan_restore(&req)?,
                    Some(stamp) => match blob_engine.plan_exact(&req, stamp) {
                        Ok(plan) => plan,
                        // No blob backups at all: 6.0's message, and no
                        // older one to accept either.
                        Err(e @ Error::NoBlobBackups { .. }) => return Err(e),
                        Err(e) if accept_blob_mismatch => {
                            let plan = blob_engine.plan_restore(&req)?;
                            log::warn!(
                                "Restoring the blob backup of {} with the filestorage backup of {stamp} (--accept-blob-mismatch): no complete blob backup of {stamp} in {} ({}).",
                                blob_engine.plan_stamp(&plan),
                                source.display(),
                                mismatch_reason(&e)
                            );
                            plan
                        }
                        Err(e) => {
                            return Err(Error::BlobBackupMismatch {
                                needed: stamp.clone(),
                                location: source.to_path_buf(),
                                reason: mismatch_reason(&e),
                                newest_pair: newest_pair(
                                    cfg,
                                    mode,
                                    date,
                                    &settings,
                                    fs_engine,
                                    blob_engine,
                                ),
                            })
                        }
                    },
                };
                Some((source, plan))
            }
            _ => None,
        };
        let prefix = match (&fs, keep_prefix) {
            (Some((_, plan)), Some(proof)) => {
                let live = real_target(&s.datafs);
                if live.is_file() {
                    fs_engine.plan_prefix(plan, &live, proof)?
                } else {
                    None
                }
            }
            _ => None,
        };
        checked.push(Checked {
            storage: s,
            fs,
            prefix,
            blobs,
        });
    }

    if dry_run {
        log_plan(&checked, target, fs_engine, blob_engine)?;
        return run_hook(hooks, "post_command", &cfg.post_command, true);
    }

    // 2. Write into temporaries.
    let mut written = Vec::with_capacity(checked.len());
    for c in &checked {
        let mut cut = None;
        let datafs = match &c.fs {
            Some((repository, plan)) => {
                let dir = parent_of(&c.storage.datafs);
                if !dir.is_dir() {
                    fs::create_dir_all(dir).at(dir)?;
                    log::info!("Created directory {}", dir.display());
                }
                let target = real_target(&c.storage.datafs);
                let tmp = temp_beside(&target)?;
                let new = tmp.path().join("new");
                fs::create_dir(&new).at(&new)?;
                log::info!(
                    "Please wait while restoring database file: {} to {}",
                    repository.display(),
                    c.storage.datafs.display()
                );
                let name = file_name(&target)?;
                match &c.prefix {
                    // The live Data.fs is the restored state and more:
                    // stage what the cut removes, and the index.
                    Some(kept) => {
                        let tail = tail_path(&target, fs_engine.plan_stamp(plan).as_deref())?;
                        log::info!(
                            "Keeping the first {} bytes of {}: they are the backup's (checked: {}).",
                            kept.end,
                            c.storage.datafs.display(),
                            kept.proof.describe()
                        );
                        let staged_tail = new.join(file_name(&tail)?);
                        prefix::stage(kept, &target, &staged_tail, &new.join(index_name(name)))?;
                        cut = Some(Cutting {
                            end: kept.end,
                            size: kept.size,
                            staged: staged_tail,
                            tail,
                        });
                    }
                    None => fs_engine.recover(plan, &new.join(name))?,
                }
                // ZODB reads `<configured path>.index`, also when the
                // configured Data.fs is a symlink.
                let index = c
                    .storage
                    .datafs
                    .with_file_name(index_name(file_name(&c.storage.datafs)?));
                Some((target, index, tmp))
            }
            None => None,
        };
        let blobdir = match (&c.blobs, c.storage.blobdir.as_deref()) {
            (Some((source, plan)), Some(blobdir)) => {
                // Its parent exists: checked above, or just created for
                // the Data.fs beside it.
                let target = real_target(blobdir);
                let tmp = temp_beside(&target)?;
                let new = tmp.path().join("new");
                create_private_dir(&new)?;
                log::info!(
                    "Restoring blobs from {} to {}",
                    source.display(),
                    blobdir.display()
                );
                blob_engine.restore(plan, &new)?;
                // On disk before it replaces the live tree.
                crate::fsutil::sync_filesystem(&new)?;
                Some((target, tmp))
            }
            _ => None,
        };
        written.push(Written {
            datafs,
            cut,
            blobdir,
        });
    }

    // 3. Swap, all or nothing.
    let cuts: Vec<(PathBuf, Cutting)> = written
        .iter()
        .filter_map(|w| Some((w.datafs.as_ref()?.0.clone(), w.cut.clone()?)))
        .collect();
    swap_all(written, &intent_path(cfg))?;
    for (target, c) in cuts {
        if c.size > c.end {
            log::info!(
                "Cut {} to {} bytes. The {} bytes after them, written since the backup, are in {}: to undo this restore, stop Zope or ZEO, append that file to {}, and remove {}.index.",
                target.display(),
                c.end,
                c.size - c.end,
                c.tail.display(),
                target.display(),
                target.display()
            );
        } else {
            log::info!(
                "{} already held exactly the backup's state.",
                target.display()
            );
        }
    }
    drop(locks);
    run_hook(hooks, "post_command", &cfg.post_command, false)
}

/// Run a pre or post command, or (dry run) say that it would run.
pub(super) fn run_hook(
    hooks: &dyn Hooks,
    option: &str,
    command: &str,
    dry_run: bool,
) -> Result<()> {
    if !dry_run {
        return hooks.run(command);
    }
    if !command.is_empty() {
        log::info!("Would run {option}: {command}");
    }
    Ok(())
}

/// The dry run's account of the write and swap phases: one `Would ...`
/// line per path the restore would write.
fn log_plan<F, B>(
    checked: &[Checked<'_, F::Plan, B::Plan>],
    target: Option<&Path>,
    fs_engine: &F,
    blob_engine: &B,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let joined = |files: &[PathBuf]| -> String {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for c in checked {
        if let Some((_, plan)) = &c.fs {
            let datafs = &c.storage.datafs;
            let dir = parent_of(datafs);
            // The target directory has its line already.
            if !dir.is_dir() && target != Some(dir) {
                log::info!("Would create directory {}", dir.display());
            }
            let (files, index) = fs_engine.plan_files(plan);
            log::info!("Would restore {} from {}", datafs.display(), joined(&files));
            if let Some(kept) = c.prefix.as_ref().filter(|k| k.tail() == 0) {
                log::info!(
                    "Would keep {} as it is: it holds exactly the backup's state (checked: {})",
                    datafs.display(),
                    kept.proof.describe()
                );
            } else if let Some(kept) = &c.prefix {
                let tail = tail_path(&real_target(datafs), fs_engine.plan_stamp(plan).as_deref())?;
                log::info!(
                    "Would keep the first {} bytes of {} (they are the backup's, checked: {}) and move the {} bytes after them to {}",
                    kept.end,
                    datafs.display(),
                    kept.proof.describe(),
                    kept.tail(),
                    tail.display()
                );
            }
            let live_index = datafs.with_file_name(index_name(file_name(datafs)?));
            match index {
                Some(src) => log::info!(
                    "Would restore {} from {}",
                    live_index.display(),
                    src.display()
                ),
                None if fs::symlink_metadata(&live_index).is_ok() => log::info!(
                    "Would remove {}: the backup has no index for it",
                    live_index.display()
                ),
                None => {}
            }
        }
        if let (Some((_, plan)), Some(blobdir)) = (&c.blobs, c.storage.blobdir.as_deref()) {
            log::info!(
                "Would restore {} from {}",
                blobdir.display(),
                joined(&blob_engine.plan_files(plan))
            );
        }
    }
    Ok(())
}

/// Why the exact blob backup cannot be restored, for the one-line message.
fn mismatch_reason(e: &Error) -> String {
    match e {
        Error::NoBlobBackupAtDate { .. } => "there is no blob backup with that date".to_owned(),
        e => e.to_string(),
    }
}

/// The newest date, at or before `date`, at which every storage has a
/// filestorage backup chain and the blob backup of exactly its date: what
/// the admin can restore instead. Looks at most at the newest 1000 dates.
fn newest_pair<F, B>(
    cfg: &BackupConfig,
    mode: RestoreMode,
    date: Option<&RestoreDate>,
    settings: &BlobSettings,
    fs_engine: &F,
    blob_engine: &B,
) -> Option<String>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let limit = date.map(ToString::to_string);
    let mut dates = std::collections::BTreeSet::new();
    for s in &cfg.storages {
        if let (Some(repository), _) = sources(s, mode) {
            dates.extend(fs_engine.stamps(repository).ok()?);
        }
    }
    let restorable = |d: &RestoreDate| -> bool {
        cfg.storages.iter().all(|s| {
            let (Some(repository), blob_source) = sources(s, mode) else {
                return false;
            };
            let Ok(plan) = fs_engine.plan_recover(&FsRecover {
                repository,
                date: Some(d),
                verbose: false,
            }) else {
                return false;
            };
            let (true, Some(blobdir)) = (cfg.backup_blobs, s.blobdir.as_deref()) else {
                return true;
            };
            let Some(source) = blob_source else {
                return false;
            };
            let req = BlobRestore {
                source,
                blobdir,
                date: Some(d),
                settings,
            };
            match fs_engine.plan_stamp(&plan) {
                Some(stamp) => blob_engine.plan_exact(&req, &stamp).is_ok(),
                None => blob_engine.plan_restore(&req).is_ok(),
            }
        })
    };
    dates
        .iter()
        .rev()
        .filter(|d| limit.as_ref().is_none_or(|l| *d <= l))
        .take(1000)
        .find(|d| RestoreDate::parse(d).is_ok_and(|d| restorable(&d)))
        .cloned()
}

/// ZODB wants its blob directory readable by the owner only (0700).
fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).at(path)
}

/// A Data.fs cut to the restored state.
#[derive(Debug, Clone)]
struct Cutting {
    end: u64,
    size: u64,
    /// Where the bytes after `end` wait (in the temporary).
    staged: PathBuf,
    /// Where they are kept: beside the Data.fs, named after the backup.
    tail: PathBuf,
}

/// A free name beside `datafs` for the bytes a restore cuts off it:
/// `<name>.after-<backup date>` (`.after-<backup date>.1`, … when taken).
fn tail_path(datafs: &Path, stamp: Option<&str>) -> Result<PathBuf> {
    let name = file_name(datafs)?.to_string_lossy().into_owned();
    let base = format!("{name}.after-{}", stamp.unwrap_or("restore"));
    let mut candidate = datafs.with_file_name(&base);
    let mut n = 0;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        candidate = datafs.with_file_name(format!("{base}.{n}"));
    }
    Ok(candidate)
}

fn index_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut s = name.to_owned();
    s.push(".index");
    s
}

/// The directories a restore writes temporaries and its intent record
/// to: those of every Data.fs and blob directory, as configured and where
/// their symlinks point.
fn swap_dirs(cfg: &BackupConfig) -> Vec<PathBuf> {
    let mut dirs = std::collections::BTreeSet::new();
    for s in &cfg.storages {
        for p in std::iter::once(&s.datafs).chain(s.blobdir.as_ref()) {
            dirs.insert(parent_of(p).to_path_buf());
            dirs.insert(parent_of(&real_target(p)).to_path_buf());
        }
    }
    dirs.into_iter().collect()
}

/// Where a restore records its swap: beside the main Data.fs (or, with
/// only_blobs and no filestorage directory, beside the main blob
/// directory).
fn intent_path(cfg: &BackupConfig) -> PathBuf {
    let dir = match cfg.storages.last() {
        Some(s) => {
            let fsdir = parent_of(&s.datafs);
            match &s.blobdir {
                Some(b) if !fsdir.is_dir() => parent_of(&real_target(b)).to_path_buf(),
                _ => fsdir.to_path_buf(),
            }
        }
        None => PathBuf::from("."),
    };
    dir.join(swap::INTENT)
}

/// For a dry run: say what [`finish_interrupted`] (or a restore) would do
/// first, touching nothing.
///
/// # Errors
/// A directory that cannot be read.
pub(crate) fn log_interrupted(cfg: &BackupConfig) -> Result<()> {
    let dirs = swap_dirs(cfg);
    if swap::needs_recovery(&dirs, &dirs)? {
        log::info!(
            "Would first finish or undo an interrupted restore, or remove the temporaries of a dead one ({})",
            intent_path(cfg).display()
        );
    }
    Ok(())
}

/// Before a backup: finish or undo a restore swap an earlier run left
/// interrupted, and remove dead restores' temporaries, under the storage
/// locks. When a lock is held (Zope or ZEO running, or a restore in
/// progress) leftovers are left alone, but an interrupted swap is an
/// error: the running process may see a half-restored state.
///
/// # Errors
/// As [`swap::recover`]; [`Error::Config`] for an interrupted swap under a
/// held lock.
pub(crate) fn finish_interrupted(cfg: &BackupConfig) -> Result<()> {
    let dirs = swap_dirs(cfg);
    if !swap::needs_recovery(&dirs, &dirs)? {
        return Ok(());
    }
    let mut locks = Vec::new();
    for s in &cfg.storages {
        match lock_storage(&s.datafs) {
            Ok(Some(lock)) => locks.push(lock),
            Ok(None) => {}
            Err(Error::StorageInUse { path }) if swap::has_intent(&dirs) => {
                return Err(Error::Config(format!(
                    "An interrupted restore is recorded in {}, but {} is locked: a Zope or ZEO process has this filestorage open, or a restore is running. Stop Zope or ZEO, then run the restore or backup again to finish the interrupted restore.",
                    intent_path(cfg).display(),
                    path.display()
                )));
            }
            Err(Error::StorageInUse { path }) => {
                log::debug!(
                    "Not removing restore temporaries: {} is locked.",
                    path.display()
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    swap::recover(&dirs, &dirs)
}

/// Put every restored Data.fs, `.index` and blob tree in place, all or
/// nothing and crash-safe ([`swap::swap_in`]): the new copies wait in
/// `<temporary>/new[/<name>]`, the old ones go to `<temporary>/old[/<name>]`
/// when they have to be moved aside. A restore that brings no index
/// removes the stale live one.
fn swap_all(written: Vec<Written>, intent: &Path) -> Result<()> {
    let mut items = Vec::new();
    for w in &written {
        if let Some((target, index, tmp)) = &w.datafs {
            let name = file_name(target)?;
            let (new, old) = (tmp.path().join("new"), tmp.path().join("old"));
            fs::create_dir(&old).at(&old)?;
            let cut = w.cut.as_ref().filter(|c| c.size > c.end);
            if let Some(c) = cut {
                // The tail to its name first: the cut is undone from it.
                items.push(Item::replacing(
                    c.tail.clone(),
                    c.staged.clone(),
                    old.join(file_name(&c.tail)?),
                )?);
            } else if w.cut.is_none() {
                items.push(Item::replacing(
                    target.clone(),
                    new.join(name),
                    old.join(name),
                )?);
            }
            items.push(Item::new(
                index.clone(),
                new.join(index_name(name)),
                old.join(index_name(name)),
            )?);
            if let Some(c) = cut {
                items.push(Item::cutting(
                    target.clone(),
                    c.end,
                    c.size,
                    vec![c.tail.clone(), c.staged.clone()],
                )?);
            }
        }
        if let Some((target, tmp)) = &w.blobdir {
            items.push(Item::replacing(
                target.clone(),
                tmp.path().join("new"),
                tmp.path().join("old"),
            )?);
        }
    }
    let mut temporaries = Vec::new();
    for w in written {
        if let Some((_, _, tmp)) = w.datafs {
            temporaries.push(tmp.keep());
        }
        if let Some((_, tmp)) = w.blobdir {
            temporaries.push(tmp.keep());
        }
    }
    swap::swap_in(intent, items, temporaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, data: &str) {
        fs::write(path, data).expect("write");
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).expect("read")
    }

    /// A temporary for `target` holding `new/<name>` = `data`.
    fn staged(target: &Path, data: &str) -> TempDir {
        let t = temp_beside(target).expect("temp");
        fs::create_dir(t.path().join("new")).expect("mkdir");
        let name = target.file_name().expect("name");
        write(&t.path().join("new").join(name), data);
        t
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Two storages restored; the second one's new blob tree is missing:
    /// refused before anything is renamed, and the temporaries are gone.
    /// (A swap failing half-way is undone: see the tests in `swap.rs`.)
    #[test]
    fn swap_failure_puts_every_storage_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a.fs"), d.path().join("b.fs"));
        let blobs = d.path().join("blobstorage");
        write(&a, "old a");
        write(&d.path().join("a.fs.index"), "old a index");
        write(&b, "old b");
        fs::create_dir(&blobs).expect("mkdir");
        write(&blobs.join("x.blob"), "old blob");

        let ta = staged(&a, "new a");
        write(&ta.path().join("new/a.fs.index"), "new a index");
        let tb = staged(&b, "new b");
        let tblobs = temp_beside(&blobs).expect("temp"); // no "new" inside
        let written = vec![
            Written {
                datafs: Some((a.clone(), d.path().join("a.fs.index"), ta)),
                cut: None,
                blobdir: None,
            },
            Written {
                datafs: Some((b.clone(), d.path().join("b.fs.index"), tb)),
                cut: None,
                blobdir: Some((blobs.clone(), tblobs)),
            },
        ];
        let intent = d.path().join(swap::INTENT);
        assert!(swap_all(written, &intent).is_err());
        assert_eq!(read(&a), "old a");
        assert_eq!(read(&d.path().join("a.fs.index")), "old a index");
        assert_eq!(read(&b), "old b");
        assert!(!d.path().join("b.fs.index").exists());
        assert_eq!(read(&blobs.join("x.blob")), "old blob");
        // The temporaries and the intent are gone: nothing but the
        // originals remains.
        assert_eq!(
            names(d.path()),
            ["a.fs", "a.fs.index", "b.fs", "blobstorage"]
        );
    }

    #[test]
    fn swap_success_replaces_and_drops_a_stale_index() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = d.path().join("Data.fs");
        write(&a, "old");
        write(&d.path().join("Data.fs.index"), "stale");
        let t = staged(&a, "new");
        let written = vec![Written {
            datafs: Some((a.clone(), d.path().join("Data.fs.index"), t)),
            cut: None,
            blobdir: None,
        }];
        assert!(swap_all(written, &d.path().join(swap::INTENT)).is_ok());
        assert_eq!(read(&a), "new");
        assert!(!d.path().join("Data.fs.index").exists());
        assert_eq!(names(d.path()), ["Data.fs"]);
    }
}
