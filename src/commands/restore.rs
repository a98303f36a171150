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
    /// (Data.fs to replace, its `.index` as ZODB looks for it, temporary
    /// holding the new `<name>` and `<name>.index`).
    datafs: Option<(PathBuf, PathBuf, TempDir)>,
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
/// # Errors
/// The first failing step. Before the swap phase nothing live has changed.
pub fn restore<F, B>(
    cfg: &BackupConfig,
    mode: RestoreMode,
    date: Option<&RestoreDate>,
    accept_blob_mismatch: bool,
    fs_engine: &F,
    blob_engine: &B,
    hooks: &dyn Hooks,
) -> Result<()>
where
    F: FileStorageEngine,
    B: BlobEngine,
{
    let mut settings = BlobSettings::from_config(cfg);
    if mode == RestoreMode::Zip {
        // Zip backups are one numbered archive.
        settings.archive = true;
        settings.timestamps = false;
    }
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
                // On disk before it replaces the live tree.
                crate::fsutil::sync_filesystem(&new)?;
                Some((target, tmp))
            }
            _ => None,
        };
        written.push(Written { datafs, blobdir });
    }

    // 3. Swap, all or nothing.
    swap_all(written)?;
    drop(locks);
    hooks.run(&cfg.post_command)
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

fn index_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut s = name.to_owned();
    s.push(".index");
    s
}

/// One rename done during the swap, so that it can be undone.
struct Moved {
    from: PathBuf,
    to: PathBuf,
}

/// Rename `from` to `to` (when `from` exists, or always with `required`),
/// recording it in `done`.
fn move_recorded(from: &Path, to: &Path, required: bool, done: &mut Vec<Moved>) -> Result<()> {
    if !required && fs::symlink_metadata(from).is_err() {
        return Ok(());
    }
    fs::rename(from, to).at(from)?;
    done.push(Moved {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
    });
    Ok(())
}

/// Put every restored Data.fs, `.index` and blob tree in place, all or
/// nothing: first every live file and tree is moved aside into its
/// temporary (same directory, so plain renames), then every new one is
/// moved in. On a failure every rename done so far is undone in reverse
/// order, so the live storages are as they were. If an undo itself fails,
/// the temporaries are kept and the error names them, so nothing is lost.
/// On success the temporaries, holding the old files, are removed.
fn swap_all(written: Vec<Written>) -> Result<()> {
    let mut done = Vec::new();
    let result = swap_steps(&written, &mut done);
    let Err(err) = result else {
        return Ok(());
    };
    let stuck: Vec<&Moved> = done
        .iter()
        .rev()
        .filter(|m| fs::rename(&m.to, &m.from).is_err())
        .collect();
    if stuck.is_empty() {
        return Err(err);
    }
    let mut kept = Vec::new();
    for w in written {
        if let Some((_, _, tmp)) = w.datafs {
            kept.push(tmp.keep());
        }
        if let Some((_, tmp)) = w.blobdir {
            kept.push(tmp.keep());
        }
    }
    let names = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let not_back: Vec<PathBuf> = stuck.iter().map(|m| m.from.clone()).collect();
    Err(Error::Config(format!(
        "{err}; undoing the restore failed too, so {} could not be put back: the old and new files are kept in {}",
        names(&not_back),
        names(&kept)
    )))
}

fn swap_steps(written: &[Written], done: &mut Vec<Moved>) -> Result<()> {
    for w in written {
        if let Some((target, index, tmp)) = &w.datafs {
            move_recorded(target, &tmp.path().join("old"), false, done)?;
            move_recorded(index, &tmp.path().join("old.index"), false, done)?;
        }
        if let Some((target, tmp)) = &w.blobdir {
            move_recorded(target, &tmp.path().join("old"), false, done)?;
        }
    }
    for w in written {
        if let Some((target, index, tmp)) = &w.datafs {
            let name = file_name(target)?;
            move_recorded(&tmp.path().join(name), target, true, done)?;
            // A restore that brings no index leaves none: the old one
            // stays aside and goes with the temporary.
            move_recorded(&tmp.path().join(index_name(name)), index, false, done)?;
        }
        if let Some((target, tmp)) = &w.blobdir {
            move_recorded(&tmp.path().join("new"), target, true, done)?;
        }
    }
    Ok(())
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

    /// Two storages restored; the second one's new blob tree is missing
    /// when it is moved in, after the first storage was already swapped:
    /// everything must be put back as it was.
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

        let ta = temp_beside(&a).expect("temp");
        write(&ta.path().join("a.fs"), "new a");
        write(&ta.path().join("a.fs.index"), "new a index");
        let tb = temp_beside(&b).expect("temp");
        write(&tb.path().join("b.fs"), "new b");
        let tblobs = temp_beside(&blobs).expect("temp"); // no "new" inside
        let written = vec![
            Written {
                datafs: Some((a.clone(), d.path().join("a.fs.index"), ta)),
                blobdir: None,
            },
            Written {
                datafs: Some((b.clone(), d.path().join("b.fs.index"), tb)),
                blobdir: Some((blobs.clone(), tblobs)),
            },
        ];
        assert!(swap_all(written).is_err());
        assert_eq!(read(&a), "old a");
        assert_eq!(read(&d.path().join("a.fs.index")), "old a index");
        assert_eq!(read(&b), "old b");
        assert!(!d.path().join("b.fs.index").exists());
        assert_eq!(read(&blobs.join("x.blob")), "old blob");
        // The temporaries are gone: nothing but the originals remains.
        let mut names: Vec<String> = fs::read_dir(d.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.fs", "a.fs.index", "b.fs", "blobstorage"]);
    }

    #[test]
    fn swap_success_replaces_and_drops_a_stale_index() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = d.path().join("Data.fs");
        write(&a, "old");
        write(&d.path().join("Data.fs.index"), "stale");
        let t = temp_beside(&a).expect("temp");
        write(&t.path().join("Data.fs"), "new");
        let written = vec![Written {
            datafs: Some((a.clone(), d.path().join("Data.fs.index"), t)),
            blobdir: None,
        }];
        assert!(swap_all(written).is_ok());
        assert_eq!(read(&a), "new");
        assert!(!d.path().join("Data.fs.index").exists());
        assert_eq!(fs::read_dir(d.path()).expect("list").count(), 1);
    }
}
