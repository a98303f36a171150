//! Restoring a blob directory from a backup location (see docs/blobs.rst).
//!
//! [`find_backup`] picks what to restore: the newest backup, or the newest
//! at or before a UTC date (timestamp names compared as strings, as repozo
//! does; numbered backups and, as a fallback, all backups by mtime). From
//! archives it returns the whole chain (level 0 and the deltas after it,
//! oldest first), refusing a chain without its level 0. Archives are
//! preferred when `archive_blob` is set, directories otherwise, and either
//! kind is used when it is the only one (6.0 failed on archives with
//! `archive_blob = false`, after replacing the Data.fs).
//!
//! [`restore`] never touches the live directory until the restored tree is
//! complete: it builds `.<name>.restore-partial` beside the target, then
//! swaps it in with two renames. The target's basename may differ from the
//! backup's (6.0 needed `<backup>/<basename of target>`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::archive;
use super::copy::{materialize, remove_tree, CopyStats};
use super::naming::{BackupName, Kind, RestoreDate};
use super::tree::{self, WalkOptions};
use super::{list_backups, BlobBackup};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{parent_dir, sync_dir};
use crate::progress::Progress;

/// What to restore from where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The blob backup location.
    pub location: PathBuf,
    /// The blob directory to restore (it may not exist yet).
    pub target: PathBuf,
    /// Restore the state at or before this date (None: the newest).
    pub date: Option<RestoreDate>,
    /// Prefer archives when both kinds exist (`archive_blob`).
    pub prefer_archives: bool,
    /// Select timestamped backups by name (`blob_timestamps`); otherwise,
    /// and when no name matches, by mtime.
    pub timestamps: bool,
}

/// The chosen backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// A directory backup: the `<base>.<stamp>` entry and the tree in it.
    Directory {
        /// `<location>/<base>.<stamp>`.
        backup: PathBuf,
        /// The blob tree inside it (normally `<backup>/<base>`).
        tree: PathBuf,
    },
    /// Archives to extract in order (one, or a level 0 and its deltas).
    Archives {
        /// Oldest first.
        chain: Vec<PathBuf>,
    },
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// What was restored.
    pub source: Selected,
    /// Files copied (directory restores).
    pub stats: CopyStats,
}

/// Choose the backup to restore. Reads the location only.
///
/// # Errors
/// [`Error::NoBlobBackups`], [`Error::NoBlobBackupAtDate`],
/// [`Error::MixedPrefixes`] (backups of several blob directories, none
/// named like the target), [`Error::BrokenChain`] (a delta without its
/// level 0), [`Error::NotADirectory`] (a directory backup without a tree).
pub fn find_backup(opts: &RestoreOptions) -> Result<Selected> {
    let c = candidates(opts)?;
    let pick = |cands: &[&BlobBackup]| -> Option<usize> {
        let Some(date) = &opts.date else {
            return if cands.is_empty() { None } else { Some(0) };
        };
        if opts.timestamps {
            let by_name = cands
                .iter()
                .position(|b| b.name.timestamp().is_some_and(|t| date.admits_stamp(t)));
            if by_name.is_some() {
                return by_name;
            }
        }
        cands.iter().position(|b| b.mtime <= date.time())
    };
    let dir_pick = pick(&c.dirs());
    let archive_pick = pick(&c.archives());
    let use_archives = match (dir_pick, archive_pick) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(_), Some(_)) => opts.prefer_archives,
    };
    if use_archives {
        return c.archive_chain(archive_pick.unwrap_or(0));
    }
    let Some(i) = dir_pick else {
        return Err(match &opts.date {
            Some(d) => Error::NoBlobBackupAtDate {
                date: d.as_str().to_owned(),
            },
            None => Error::NoBlobBackups {
                dir: opts.location.clone(),
            },
        });
    };
    c.directory(i)
}

/// Choose exactly the blob backup named `<base>.<stamp>` (directory or
/// archive, archives preferred as in [`find_backup`]), the one made with
/// the filestorage backup of that date. `opts.date` is not used.
///
/// # Errors
/// [`Error::NoBlobBackupAtDate`] when there is no backup with that stamp;
/// [`Error::BrokenChain`] when it is a delta whose level 0 is missing;
/// [`Error::NotADirectory`] when a directory backup holds no tree; and
/// the listing errors of [`find_backup`].
pub fn find_exact(opts: &RestoreOptions, stamp: &str) -> Result<Selected> {
    let c = candidates(opts)?;
    let has = |b: &&BlobBackup| b.name.timestamp() == Some(stamp);
    let dir = c.dirs().iter().position(has);
    let archive = c.archives().iter().position(has);
    match (dir, archive) {
        (Some(_), Some(a)) if opts.prefer_archives => c.archive_chain(a),
        (None, Some(a)) => c.archive_chain(a),
        (Some(d), _) => c.directory(d),
        (None, None) => Err(Error::NoBlobBackupAtDate {
            date: stamp.to_owned(),
        }),
    }
}

/// The backups of one blob directory in a location, newest first.
struct Candidates {
    location: PathBuf,
    of_base: Vec<BlobBackup>,
    /// The `.snar` stamps of that base.
    snars: Vec<String>,
}

impl Candidates {
    fn dirs(&self) -> Vec<&BlobBackup> {
        self.of_base.iter().filter(|b| b.is_dir).collect()
    }

    fn archives(&self) -> Vec<&BlobBackup> {
        self.of_base
            .iter()
            .filter(|b| b.name.is_archive())
            .collect()
    }

    fn directory(&self, i: usize) -> Result<Selected> {
        let dirs = self.dirs();
        let b = dirs.get(i).ok_or_else(|| Error::NoBlobBackups {
            dir: self.location.clone(),
        })?;
        Ok(Selected::Directory {
            tree: inner_tree(&b.path, &b.name)?,
            backup: b.path.clone(),
        })
    }

    /// The archive at `i` with the deltas before it back to their level 0,
    /// oldest first. A delta chain is broken when its level 0 is missing:
    /// walking back finds no full archive, or finds one of an older chain
    /// (a snapshot file newer than that full archive marks the start of
    /// the chain the deltas belong to).
    fn archive_chain(&self, i: usize) -> Result<Selected> {
        let archives = self.archives();
        let mut chain: Vec<PathBuf> = Vec::new();
        let mut full: Option<&BlobBackup> = None;
        for a in archives.iter().skip(i) {
            match a.name.kind {
                Kind::Tar { delta: true, .. } => chain.push(a.path.clone()),
                Kind::Tar { delta: false, .. } => {
                    chain.push(a.path.clone());
                    full = Some(a);
                    break;
                }
                _ => {}
            }
        }
        let broken = |reason: &str| Error::BrokenChain {
            path: chain
                .last()
                .cloned()
                .unwrap_or_else(|| self.location.clone()),
            reason: reason.to_owned(),
        };
        let Some(full) = full else {
            return Err(broken(
                "no level-0 archive (`<base>.<stamp>.tar[.gz]`) before it",
            ));
        };
        if chain.len() > 1 {
            let newest = archives
                .get(i)
                .and_then(|a| a.name.timestamp())
                .unwrap_or_default();
            let oldest = full.name.timestamp().unwrap_or_default();
            if let Some(s) = self
                .snars
                .iter()
                .find(|s| s.as_str() > oldest && s.as_str() <= newest)
            {
                return Err(broken(&format!("its level-0 archive of {s} is missing")));
            }
        }
        chain.reverse();
        Ok(Selected::Archives { chain })
    }
}

/// The backups of the location that belong to the target's blob directory.
fn candidates(opts: &RestoreOptions) -> Result<Candidates> {
    let listing = list_backups(&opts.location)?;
    let (snars, listing): (Vec<BlobBackup>, Vec<BlobBackup>) =
        listing.into_iter().partition(|b| b.name.kind == Kind::Snar);
    if listing.is_empty() {
        return Err(Error::NoBlobBackups {
            dir: opts.location.clone(),
        });
    }
    let target_base = opts
        .target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let backup_bases: BTreeSet<&str> = listing.iter().map(|b| b.name.base.as_str()).collect();
    let base = if backup_bases.contains(target_base.as_str()) {
        target_base
    } else if backup_bases.len() == 1 {
        backup_bases
            .iter()
            .next()
            .map(|s| (*s).to_owned())
            .unwrap_or_default()
    } else {
        let mut it = backup_bases.iter();
        return Err(Error::MixedPrefixes {
            dir: opts.location.clone(),
            a: it.next().map(|s| (*s).to_owned()).unwrap_or_default(),
            b: it.next().map(|s| (*s).to_owned()).unwrap_or_default(),
        });
    };
    let snars = snars
        .iter()
        .filter(|b| b.name.base == base)
        .filter_map(|b| b.name.timestamp().map(str::to_owned))
        .collect();
    Ok(Candidates {
        location: opts.location.clone(),
        of_base: listing
            .into_iter()
            .filter(|b| b.name.base == base)
            .collect(),
        snars,
    })
}

/// The tree inside a directory backup: `<backup>/<base>`, or its only
/// subdirectory.
fn inner_tree(backup: &Path, name: &BackupName) -> Result<PathBuf> {
    let named = backup.join(&name.base);
    if named.is_dir() {
        return Ok(named);
    }
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(backup).at(backup)? {
        let entry = entry.at(backup)?;
        if entry.file_type().at(&entry.path())?.is_dir() {
            subdirs.push(entry.path());
        }
    }
    match subdirs.len() {
        1 => Ok(subdirs.remove(0)),
        _ => Err(Error::NotADirectory { path: named }),
    }
}

/// Restore the blob directory from the chosen backup.
///
/// # Errors
/// Those of [`find_backup`], [`Error::NotADirectory`] when the target is a
/// file, [`Error::BrokenArchive`] / [`Error::Io`] while building the new
/// tree; in every error case the live directory is as it was.
pub fn restore(opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let source = find_backup(opts)?;
    let mut target = opts.target.clone();
    if let Ok(m) = fs::symlink_metadata(&target) {
        if m.file_type().is_symlink() {
            // Restore where the link points, keeping the link.
            target = fs::canonicalize(&target).at(&target)?;
        } else if !m.is_dir() {
            return Err(Error::NotADirectory { path: target });
        }
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::NotADirectory {
            path: target.clone(),
        })?;
    let parent = parent_dir(&target).to_path_buf();
    fs::create_dir_all(&parent).at(&parent)?;
    let partial = parent.join(format!(".{name}.restore-partial"));
    remove_tree(&partial)?;
    let built = build(&source, &partial, &target, progress);
    let stats = match built {
        Ok(s) => s,
        Err(e) => {
            let _ = remove_tree(&partial);
            return Err(e);
        }
    };
    // The restored files must be on disk before they replace the live tree.
    if let Err(e) = crate::fsutil::sync_filesystem(&partial) {
        let _ = remove_tree(&partial);
        return Err(e);
    }
    // Swap: the old tree moves aside, the new one takes its name.
    let old = parent.join(format!(".{name}.restore-old"));
    let had_target = fs::symlink_metadata(&target).is_ok();
    if had_target {
        remove_tree(&old)?;
        log::info!("Removing {}", target.display());
        if let Err(e) = fs::rename(&target, &old) {
            // E.g. the live directory is a mount point: leave it as it was.
            let _ = remove_tree(&partial);
            return Err(Error::io(&target, e));
        }
    }
    if let Err(e) = fs::rename(&partial, &target) {
        if had_target {
            let _ = fs::rename(&old, &target);
        }
        let _ = remove_tree(&partial);
        return Err(Error::io(&target, e));
    }
    // The restore is done: the new tree is in place. Failing to flush the
    // directory or to remove the old tree is worth a warning, not an error
    // (which would tell the admin the restore failed).
    if let Err(e) = sync_dir(&parent) {
        log::warn!("{e}");
    }
    if had_target {
        if let Err(e) = remove_tree(&old) {
            log::warn!("The restore is complete, but the old tree could not be removed: {e}");
        }
    }
    Ok(RestoreReport { source, stats })
}

fn build(
    source: &Selected,
    partial: &Path,
    target: &Path,
    progress: &dyn Progress,
) -> Result<CopyStats> {
    if let Selected::Directory { tree, .. } = source {
        log::info!(
            "Restoring blobs from {} to {}",
            tree.display(),
            target.display()
        );
    }
    write_tree(source, partial, target, progress)
}

/// Write the tree of the selected backup into `partial` (which must not
/// exist yet), logging the archives as extracted to `shown` (the blob
/// directory the tree will become). Used by [`restore`] and by the scripts'
/// restore, which swaps the result in itself.
///
/// # Errors
/// Any I/O or archive error; `partial` is then left for the caller to
/// remove.
pub(crate) fn write_tree(
    source: &Selected,
    partial: &Path,
    shown: &Path,
    progress: &dyn Progress,
) -> Result<CopyStats> {
    match source {
        Selected::Directory { tree, .. } => {
            let t = tree::walk(tree, &WalkOptions::default())?;
            materialize(&t, partial, None, progress)
        }
        Selected::Archives { chain } => {
            if chain.len() > 1 {
                log::info!("Found {} incremental backups to restore.", chain.len());
            }
            // ZODB wants its blob directory private (0700); the archive's
            // own entry for it, if any, sets the mode it was backed up with.
            let mut dir = fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
            dir.create(partial).at(partial)?;
            for a in chain {
                log::info!("Extracting {} to {}", a.display(), shown.display());
            }
            archive::extract(chain, partial, true, progress)?;
            Ok(CopyStats::default())
        }
    }
}

/// Is any blob backup of `opts` restorable? The check phase of a restore:
/// what [`restore`] would pick, without touching anything.
///
/// # Errors
/// As [`find_backup`].
pub fn check(opts: &RestoreOptions) -> Result<Selected> {
    find_backup(opts)
}

/// The stamp a selected backup stands for (for messages).
#[must_use]
pub fn describe(sel: &Selected) -> String {
    match sel {
        Selected::Directory { backup, .. } => backup.display().to_string(),
        Selected::Archives { chain } => chain
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "2026-01-01-00-00-01";
    const D2: &str = "2026-01-01-00-00-02";
    const D3: &str = "2026-01-01-00-00-03";
    const D4: &str = "2026-01-01-00-00-04";
    const D5: &str = "2026-01-01-00-00-05";

    fn opts(location: &Path) -> RestoreOptions {
        RestoreOptions {
            location: location.to_path_buf(),
            target: location.join("blobstorage"),
            date: None,
            prefer_archives: true,
            timestamps: true,
        }
    }

    fn touch(dir: &Path, name: &str) {
        assert!(fs::write(dir.join(name), b"").is_ok());
    }

    /// A level 0 and its delta; then a new chain whose level 0 is missing
    /// (its snapshot file is there) and a delta of it.
    #[test]
    fn find_exact_archives_and_a_chain_without_its_level_0() {
        let d = tempfile::tempdir().expect("tempdir");
        let loc = d.path();
        for n in [
            format!("blobstorage.{D1}.tar"),
            format!("blobstorage.{D1}.snar"),
            format!("blobstorage.{D2}.delta.tar"),
            format!("blobstorage.{D3}.snar"),
            format!("blobstorage.{D4}.delta.tar"),
        ] {
            touch(loc, &n);
        }
        let o = opts(loc);
        assert_eq!(
            find_exact(&o, D2).ok(),
            Some(Selected::Archives {
                chain: vec![
                    loc.join(format!("blobstorage.{D1}.tar")),
                    loc.join(format!("blobstorage.{D2}.delta.tar")),
                ]
            })
        );
        let e = find_exact(&o, D4);
        assert!(matches!(e, Err(Error::BrokenChain { .. })), "{e:?}");
        // The newest is broken for the date selection too (it used to be
        // restored on top of the older chain).
        let e = find_backup(&o);
        assert!(matches!(e, Err(Error::BrokenChain { .. })), "{e:?}");
        let e = find_exact(&o, D3);
        assert!(matches!(e, Err(Error::NoBlobBackupAtDate { .. })), "{e:?}");
    }

    #[test]
    fn find_exact_directories() {
        let d = tempfile::tempdir().expect("tempdir");
        let loc = d.path();
        assert!(fs::create_dir_all(loc.join(format!("blobstorage.{D1}/blobstorage"))).is_ok());
        // Without its tree (two candidates inside, none named after it).
        assert!(fs::create_dir_all(loc.join(format!("blobstorage.{D5}/a"))).is_ok());
        assert!(fs::create_dir_all(loc.join(format!("blobstorage.{D5}/b"))).is_ok());
        let o = opts(loc);
        assert!(matches!(find_exact(&o, D1), Ok(Selected::Directory { .. })));
        let e = find_exact(&o, D5);
        assert!(matches!(e, Err(Error::NotADirectory { .. })), "{e:?}");
        let e = find_exact(&o, D2);
        assert!(matches!(e, Err(Error::NoBlobBackupAtDate { .. })), "{e:?}");
    }
}
