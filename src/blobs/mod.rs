//! Blob storage backups: directory snapshots hard-linked to the previous
//! backup, independent copies, tar archives (plain, gzip, GNU incremental),
//! restore to a date, and listing (see docs/blobs.rst).
//!
//! No external process is run: where 6.0 called `rsync -a --delete
//! --link-dest` or GNU `tar`, this module walks, links, copies and archives
//! itself, in parallel, and builds every backup under a temporary name
//! (`.<name>.partial`) that is renamed into place only when complete, so an
//! interrupted backup is redone, never trusted.
//!
//! - [`naming`]: THE parser of names in a backup location;
//! - [`tree`]: the parallel walk; [`copy`]: directory copies and links;
//!   [`manifest`]: the sizes a directory backup should have;
//! - [`archive`]: tar, dumpdirs and `.snar` files; [`restore`]: selection
//!   and restore; retention lives in [`crate::retention`].

pub mod archive;
pub mod copy;
pub mod manifest;
pub mod naming;
pub mod restore;
pub mod tree;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{sync_dir, write_atomically};
use crate::progress::{Progress, Unit};
use crate::retention::{self, CleanupPlan, Listed, RetentionPolicy, Target};
use archive::Snapshot;
use copy::{materialize, remove_tree, CopyStats};
use naming::{newest_first, BackupName, Kind, Stamp};
use tree::WalkOptions;

/// How blob backups are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<base>.<stamp>/<base>/…` directories.
    Directories {
        /// Unchanged files are hard links to the previous backup (6.0's
        /// `use_rsync = true`); false makes independent copies.
        hard_links: bool,
        /// The first backup is hard-linked to the live blob files
        /// (`rsync_hard_links_on_first_copy`); needs one file system.
        hard_links_on_first_copy: bool,
    },
    /// `<base>.<stamp>.tar[.gz]` archives of the blob directory's contents.
    Archives {
        /// gzip them (`compress_blob`).
        compress: bool,
        /// GNU incremental archives with a `.snar` (`incremental_blobs`);
        /// needs timestamps.
        incremental: bool,
    },
}

impl Format {
    /// The format the recipe's blob options ask for: archives when
    /// `archive` (`archive_blob`), else directories.
    #[must_use]
    pub fn from_options(
        archive: bool,
        compress: bool,
        incremental: bool,
        hard_links: bool,
        hard_links_on_first_copy: bool,
    ) -> Self {
        if archive {
            Format::Archives {
                compress,
                incremental,
            }
        } else {
            Format::Directories {
                hard_links,
                hard_links_on_first_copy,
            }
        }
    }
}

/// The part of `rsync_options` that means something without rsync.
///
/// Mapped: `-k`/`--copy-dirlinks` (follow symlinks to directories),
/// `-L`/`--copy-links` (follow all symlinks), `--no-l`/`--no-links` (leave
/// symlinks out). Everything else is accepted and ignored with a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsyncOptions {
    /// `-k`.
    pub copy_dirlinks: bool,
    /// `-L`.
    pub copy_links: bool,
    /// `--no-l`.
    pub skip_symlinks: bool,
    /// Options that have no effect.
    pub ignored: Vec<String>,
}

impl RsyncOptions {
    /// Read a raw `rsync_options` string.
    #[must_use]
    pub fn parse(raw: &str) -> Self {
        let mut o = RsyncOptions::default();
        for tok in raw.split_whitespace() {
            match tok {
                "-k" | "--copy-dirlinks" => o.copy_dirlinks = true,
                "-L" | "--copy-links" => o.copy_links = true,
                "--no-l" | "--no-links" => o.skip_symlinks = true,
                t if t.starts_with('-') && !t.starts_with("--") && t.len() > 2 => {
                    let mut other = String::new();
                    for c in t[1..].chars() {
                        match c {
                            'k' => o.copy_dirlinks = true,
                            'L' => o.copy_links = true,
                            c => other.push(c),
                        }
                    }
                    if !other.is_empty() {
                        o.ignored.push(format!("-{other}"));
                    }
                }
                t => o.ignored.push(t.to_owned()),
            }
        }
        o
    }

    fn walk_options(&self) -> WalkOptions {
        WalkOptions {
            copy_dirlinks: self.copy_dirlinks,
            copy_links: self.copy_links,
            skip_symlinks: self.skip_symlinks,
            exclude_transient: true,
        }
    }
}

/// One blob backup run.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The live blob directory (`blob_storage`).
    pub blobdir: PathBuf,
    /// Where blob backups go (`blobbackuplocation`, ...).
    pub location: PathBuf,
    /// The matching filestorage backup location (None for only_blobs): the
    /// name of its newest repozo file names the backup, and its full
    /// backups drive the orphan rule.
    pub fs_backup_location: Option<PathBuf>,
    /// Directories or archives.
    pub format: Format,
    /// `<base>.<TS>` names (`blob_timestamps`); false rotates `<base>.0`.
    pub timestamps: bool,
    /// This is a full backup (snapshot, zip, `full = true`).
    pub full: bool,
    /// Retention: full backups (or archive units) to keep; 0 keeps all.
    pub keep: u32,
    /// Retention: days of partial directory backups to keep.
    pub keep_blob_days: u32,
    /// The meaningful part of `rsync_options`.
    pub rsync: RsyncOptions,
}

impl BackupOptions {
    /// Options with 6.0's defaults: timestamped hard-link snapshots, keep 2,
    /// keep_blob_days 14.
    #[must_use]
    pub fn new(blobdir: &Path, location: &Path) -> Self {
        BackupOptions {
            blobdir: blobdir.to_path_buf(),
            location: location.to_path_buf(),
            fs_backup_location: None,
            format: Format::Directories {
                hard_links: true,
                hard_links_on_first_copy: false,
            },
            timestamps: true,
            full: false,
            keep: 2,
            keep_blob_days: 14,
            rsync: RsyncOptions::default(),
        }
    }

    /// The zip backup's fixed settings (see docs/scripts.rst): one numbered
    /// archive `<base>.0.tar[.gz]`, full, keep 1.
    #[must_use]
    pub fn zip(blobdir: &Path, location: &Path, compress: bool) -> Self {
        BackupOptions {
            format: Format::Archives {
                compress,
                incremental: false,
            },
            timestamps: false,
            full: true,
            keep: 1,
            ..BackupOptions::new(blobdir, location)
        }
    }

    /// The retention policy these options imply (what [`backup`] applies).
    #[must_use]
    pub fn retention_policy(&self) -> RetentionPolicy {
        let (archive, incremental) = match self.format {
            Format::Directories { .. } => (false, false),
            Format::Archives { incremental, .. } => (true, incremental),
        };
        RetentionPolicy::for_backups(
            archive,
            incremental,
            self.timestamps,
            self.full,
            self.keep,
            self.keep_blob_days,
        )
    }
}

/// What a backup run did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The backup (directory or archive) of this run.
    pub backup: PathBuf,
    /// False when it existed already (no database change since the last
    /// backup), so nothing was copied.
    pub created: bool,
    /// For incremental archives: whether this one is a delta.
    pub delta: bool,
    /// Files linked and copied.
    pub stats: CopyStats,
    /// The retention plan that was carried out.
    pub cleanup: CleanupPlan,
}

/// An entry of a blob backup location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobBackup {
    /// Parsed name.
    pub name: BackupName,
    /// Full path.
    pub path: PathBuf,
    /// Modification time.
    pub mtime: DateTime<Utc>,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// List the blob backups (and snapshot files) of a location, newest first.
/// A missing location has none.
///
/// # Errors
/// [`Error::Io`] when it cannot be read; [`Error::NotADirectory`] when it
/// is a file.
pub fn list_backups(location: &Path) -> Result<Vec<BlobBackup>> {
    let rd = match fs::read_dir(location) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::NotADirectory {
                path: location.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(location, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.at(location)?;
        let fname = entry.file_name();
        let Some(name) = fname.to_str().and_then(BackupName::parse) else {
            continue;
        };
        let path = entry.path();
        let m = fs::symlink_metadata(&path).at(&path)?;
        let is_dir = m.is_dir();
        // A name says what it is; an entry of the other type is not ours.
        if is_dir != (name.kind == Kind::Dir) {
            continue;
        }
        let mtime: DateTime<Utc> = m.modified().at(&path)?.into();
        out.push(BlobBackup {
            name,
            path,
            mtime,
            is_dir,
        });
    }
    out.sort_by(|a, b| newest_first(&a.name, &b.name));
    Ok(out)
}

/// The one base of a location's backups, checked against `base`.
fn check_prefixes(location: &Path, listing: &[BlobBackup], base: &str) -> Result<()> {
    let bases: BTreeSet<&str> = listing.iter().map(|b| b.name.base.as_str()).collect();
    if let Some(other) = bases.iter().find(|b| **b != base) {
        return Err(Error::MixedPrefixes {
            dir: location.to_path_buf(),
            a: base.to_owned(),
            b: (*other).to_owned(),
        });
    }
    Ok(())
}

/// The basename of a blob directory (trailing slashes do not matter).
fn base_name(blobdir: &Path) -> Result<String> {
    blobdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::NotADirectory {
            path: blobdir.to_path_buf(),
        })
}

/// Remove the `.<name>.partial` builds that runs which died left in
/// `location`. Only under the location's lock: a live run's build is never
/// taken.
fn remove_dead_partials(location: &Path) -> Result<()> {
    for p in dead_partials(location)? {
        log::warn!(
            "Removing {}, left by a blob backup that was interrupted",
            p.display()
        );
        remove_tree(&p)?;
    }
    Ok(())
}

/// The `.<name>.partial` builds in `location` (none when it is missing).
fn dead_partials(location: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(location) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(location, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.at(location)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".partial") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn partial_path(location: &Path, final_name: &str) -> PathBuf {
    location.join(format!(".{final_name}.partial"))
}

/// Make one blob backup, then apply retention.
///
/// # Errors
/// [`Error::NotADirectory`] when the blob directory or the location is not
/// a directory; [`Error::MixedPrefixes`] when the location holds backups of
/// another blob directory; [`Error::Io`] naming the file that failed. On
/// error no new backup has a final name.
pub fn backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let mut report = make_backup(opts, clock, progress)?;
    report.cleanup = cleanup(
        &opts.location,
        opts.fs_backup_location.as_deref(),
        &opts.retention_policy(),
        clock,
        false,
    )?;
    Ok(report)
}

/// Make one blob backup, without retention (the scripts run retention
/// after every storage's backups; [`backup`] does both).
///
/// # Errors
/// As [`backup`].
pub fn make_backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    for ignored in &opts.rsync.ignored {
        log::warn!("rsync_options: {ignored} has no effect (rsync is no longer used)");
    }
    let base = base_name(&opts.blobdir)?;
    let dump_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let dump_time = (
        i64::try_from(dump_time.as_secs()).unwrap_or(0),
        dump_time.subsec_nanos(),
    );
    progress.start("blobs: scan", None, Unit::Files);
    let tree = tree::walk(&opts.blobdir, &opts.rsync.walk_options())?;
    progress.finish();
    match fs::symlink_metadata(&opts.location) {
        Ok(m)
            if !m.is_dir()
                && !fs::metadata(&opts.location)
                    .map(|m| m.is_dir())
                    .unwrap_or(false) =>
        {
            return Err(Error::NotADirectory {
                path: opts.location.clone(),
            })
        }
        _ => {}
    }
    fs::create_dir_all(&opts.location).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
            Error::NotADirectory {
                path: opts.location.clone(),
            }
        }
        _ => Error::io(&opts.location, e),
    })?;
    let _lock = crate::lock::lock_location(&opts.location)?;
    remove_dead_partials(&opts.location)?;
    let listing = list_backups(&opts.location)?;
    check_prefixes(&opts.location, &listing, &base)?;
    let stamp = match &opts.fs_backup_location {
        Some(d) => naming::newest_repozo_stamp(d)?,
        None => None,
    }
    .unwrap_or_else(|| naming::format_timestamp(clock.now()));
    let planned = decide(opts, &base, &stamp, &listing)?;

    let mut report = BackupReport {
        backup: planned.backup.clone(),
        created: !planned.exists,
        delta: planned.delta,
        stats: CopyStats::default(),
        cleanup: CleanupPlan::default(),
    };
    if planned.exists {
        log::info!(
            "Blob backup at {} already exists, so there were no database changes since last backup.",
            planned.backup.display()
        );
        return Ok(report);
    }
    let final_path = &planned.backup;
    let final_name = file_name_of(final_path);
    match opts.format {
        Format::Directories {
            hard_links,
            hard_links_on_first_copy,
        } => {
            let previous = listing
                .iter()
                .find(|b| b.is_dir)
                .map(|b| b.path.join(&base));
            let link_source = match (hard_links, previous) {
                (false, _) => None,
                (true, Some(p)) => Some(p),
                (true, None) if hard_links_on_first_copy => Some(tree.root.clone()),
                (true, None) => None,
            };
            // The scripts log "Please wait while backing up blobs from
            // <blobdir> to <location>" (6.0's line) before calling in.
            log::debug!(
                "Backing up blobs from {} to {}",
                opts.blobdir.display(),
                final_path.display()
            );
            let tmp = partial_path(&opts.location, &final_name);
            remove_tree(&tmp)?;
            fs::create_dir(&tmp).at(&tmp)?;
            let made = materialize(&tree, &tmp.join(&base), link_source.as_deref(), progress);
            let made = made.and_then(|stats| {
                manifest::write(&tree, &tmp.join(manifest::MANIFEST))?;
                Ok(stats)
            });
            match made {
                Ok(stats) => report.stats = stats,
                Err(e) => {
                    let _ = remove_tree(&tmp);
                    return Err(e);
                }
            }
            // The copied files must be on disk before the backup gets a
            // name that later runs trust ("already exists").
            if let Err(e) = crate::fsutil::sync_filesystem(&tmp) {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
            rotate(&planned.renames)?;
            fs::rename(&tmp, final_path).at(final_path)?;
            sync_dir(&opts.location)?;
        }
        Format::Archives { compress, .. } => {
            archive_backup(
                opts,
                &tree,
                &planned,
                compress,
                dump_time,
                progress,
                &mut report,
            )?;
        }
    }
    Ok(report)
}

/// Plan the retention of a location and, unless `dry_run`, carry it out.
///
/// # Errors
/// [`Error::Io`] when the location (or the filestorage backup location)
/// cannot be read or an entry cannot be removed.
pub fn cleanup(
    location: &Path,
    fs_backup_location: Option<&Path>,
    policy: &RetentionPolicy,
    clock: &dyn Clock,
    dry_run: bool,
) -> Result<CleanupPlan> {
    let _lock = if dry_run {
        None
    } else {
        Some(crate::lock::lock_location(location)?)
    };
    let fulls = match fs_backup_location {
        Some(d) => naming::repozo_full_stamps(d)?,
        None => Vec::new(),
    };
    let fulls = (!fulls.is_empty()).then_some(fulls);
    let plan = plan_listing(
        location,
        list_backups(location)?,
        fulls.as_deref(),
        policy,
        clock,
    )?;
    if !dry_run {
        retention::execute(location, &plan)?;
        if plan.removed_backups > 0 {
            // 6.0's messages, one per rule (see docs/blobs.rst).
            let n = plan.removed_backups;
            if fulls.is_some() {
                log::info!(
                    "Removed {n} blob backup(s), all backups belonging to remaining filestorage backups have been kept."
                );
            } else if policy.target == Target::Archives {
                log::info!(
                    "Removed {n} full blob backup(s), with {} file(s). The latest {} backup(s) have been kept.",
                    plan.remove.len(),
                    policy.keep
                );
            } else if !policy.full && policy.keep_blob_days > 0 {
                log::info!(
                    "Removed {n} blob backups. The backups of the latest {} days have been kept.",
                    policy.keep_blob_days
                );
            } else {
                log::info!(
                    "Removed {n} blob backup(s), the latest {} backup(s) have been kept.",
                    policy.keep
                );
            }
        }
        if let Some(l) = &plan.latest {
            log::info!("Creating symlink from latest to {l}");
        }
    }
    Ok(plan)
}

/// The retention plan of a location holding `backups`.
fn plan_listing(
    location: &Path,
    backups: Vec<BlobBackup>,
    fulls: Option<&[String]>,
    policy: &RetentionPolicy,
    clock: &dyn Clock,
) -> Result<CleanupPlan> {
    // Retention across two blob directories' backups would delete one's by
    // the other's rules: refuse, as the backup itself does.
    if let Some(first) = backups.first() {
        check_prefixes(location, &backups, &first.name.base)?;
    }
    let listing: Vec<Listed> = backups
        .into_iter()
        .map(|b| Listed {
            name: b.name,
            mtime: b.mtime,
        })
        .collect();
    Ok(retention::plan_cleanup(
        &listing,
        fulls,
        policy,
        clock.now(),
    ))
}

/// The backup [`make_backup`] would make now, touching nothing (a dry
/// run): no lock, no removal of dead runs' leftovers (they are listed),
/// nothing written.
/// `fs_stamp`: the stamp of a filestorage backup planned in the same run
/// (the newest one once made); otherwise the newest in
/// `opts.fs_backup_location` names the backup, as in [`make_backup`]. A
/// location that does not exist yet holds no backups.
///
/// # Errors
/// [`Error::NotADirectory`] for a location that is a file;
/// [`Error::MixedPrefixes`]; [`Error::Io`] when a directory cannot be read.
pub fn plan_backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    fs_stamp: Option<&str>,
) -> Result<PlannedBackup> {
    let base = base_name(&opts.blobdir)?;
    let listing = list_backups(&opts.location)?;
    check_prefixes(&opts.location, &listing, &base)?;
    let stamp = match (fs_stamp, &opts.fs_backup_location) {
        (Some(s), _) => Some(s.to_owned()),
        (None, Some(d)) => naming::newest_repozo_stamp(d)?,
        (None, None) => None,
    }
    .unwrap_or_else(|| naming::format_timestamp(clock.now()));
    let mut planned = decide(opts, &base, &stamp, &listing)?;
    planned.leftovers = dead_partials(&opts.location)?;
    Ok(planned)
}

/// What [`cleanup`] would remove once `planned` is made and the
/// filestorage backup location has changed by `fs_added` and `fs_removed`
/// (a planned backup and its retention), touching nothing (a dry run). The
/// planned backup counts as made now.
///
/// # Errors
/// As [`cleanup`].
pub fn plan_cleanup_after(
    location: &Path,
    fs_backup_location: Option<&Path>,
    policy: &RetentionPolicy,
    clock: &dyn Clock,
    planned: &PlannedBackup,
    fs_added: &[PathBuf],
    fs_removed: &[PathBuf],
) -> Result<CleanupPlan> {
    let mut backups = list_backups(location)?;
    for (from, to) in &planned.renames {
        for b in backups.iter_mut().filter(|b| &b.path == from) {
            if let Some(name) = to
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(BackupName::parse)
            {
                b.name = name;
                b.path.clone_from(to);
            }
        }
    }
    let new = std::iter::once(&planned.backup)
        .filter(|_| !planned.exists)
        .chain(planned.snapshot_file.iter());
    for path in new {
        let known = backups.iter().any(|b| &b.path == path);
        if let (false, Some(name)) = (
            known,
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(BackupName::parse),
        ) {
            backups.push(BlobBackup {
                is_dir: name.kind == Kind::Dir,
                name,
                path: path.clone(),
                mtime: clock.now(),
            });
        }
    }
    backups.sort_by(|a, b| newest_first(&a.name, &b.name));
    let full_stamps = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .filter_map(|f| naming::parse_repozo_data_file(f.file_name()?.to_str()?))
            .filter(|(_, full)| *full)
            .map(|(stamp, _)| stamp.to_owned())
            .collect()
    };
    let gone = full_stamps(fs_removed);
    let mut fulls = match fs_backup_location {
        Some(d) => naming::repozo_full_stamps(d)?,
        None => Vec::new(),
    };
    fulls.retain(|s| !gone.contains(s));
    fulls.extend(full_stamps(fs_added));
    fulls.sort();
    fulls.dedup();
    let fulls = (!fulls.is_empty()).then_some(fulls);
    plan_listing(location, backups, fulls.as_deref(), policy, clock)
}

/// The renames that rotate numbered entries of the kinds `which` accepts:
/// `.N` becomes `.N+1`, highest first, each keeping its own suffix.
fn rotation(
    location: &Path,
    listing: &[BlobBackup],
    which: impl Fn(Kind) -> bool,
) -> Vec<(PathBuf, PathBuf)> {
    let mut numbered: Vec<(&BlobBackup, u64)> = listing
        .iter()
        .filter(|b| which(b.name.kind))
        .filter_map(|b| match b.name.stamp {
            Stamp::Number(n) => Some((b, n)),
            Stamp::Time(_) => None,
        })
        .collect();
    numbered.sort_by_key(|b| std::cmp::Reverse(b.1));
    numbered
        .into_iter()
        .map(|(b, n)| {
            let next = BackupName {
                stamp: Stamp::Number(n + 1),
                ..b.name.clone()
            };
            (b.path.clone(), location.join(next.file_name()))
        })
        .collect()
}

/// Carry out a [`rotation`].
fn rotate(renames: &[(PathBuf, PathBuf)]) -> Result<()> {
    for (from, to) in renames {
        log::info!("Renaming {} to {}.", file_name_of(from), file_name_of(to));
        fs::rename(from, to).at(to)?;
    }
    Ok(())
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The blob backup a run makes, decided before anything is written (by
/// [`make_backup`], and by [`plan_backup`] for a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBackup {
    /// The backup (directory or archive) of this run.
    pub backup: PathBuf,
    /// It exists already (no database change since the last backup):
    /// nothing is written.
    pub exists: bool,
    /// For incremental archives: a delta against the snapshot file.
    pub delta: bool,
    /// For incremental archives: the `.snar` written after the archive.
    pub snapshot_file: Option<PathBuf>,
    /// Numbered backups renamed first (`.N` to `.N+1`), in order.
    pub renames: Vec<(PathBuf, PathBuf)>,
    /// For a dry run: the builds of interrupted runs, removed first.
    pub leftovers: Vec<PathBuf>,
}

/// Decide the name of this run's backup in a location holding `listing`:
/// the one decision of [`make_backup`] and [`plan_backup`].
fn decide(
    opts: &BackupOptions,
    base: &str,
    stamp: &str,
    listing: &[BlobBackup],
) -> Result<PlannedBackup> {
    let loc = &opts.location;
    let planned = |name: BackupName, renames| PlannedBackup {
        backup: loc.join(name.file_name()),
        exists: false,
        delta: false,
        snapshot_file: None,
        renames,
        leftovers: Vec::new(),
    };
    let (compress, incremental) = match opts.format {
        Format::Directories { .. } => {
            if !opts.timestamps {
                let name = BackupName::new(base, Stamp::Number(0), Kind::Dir);
                return Ok(planned(name, rotation(loc, listing, |k| k == Kind::Dir)));
            }
            let name = BackupName::new(base, Stamp::Time(stamp.to_owned()), Kind::Dir);
            let mut p = planned(name, Vec::new());
            p.exists = fs::symlink_metadata(&p.backup).is_ok();
            return Ok(p);
        }
        Format::Archives {
            compress,
            incremental,
        } => (compress, incremental),
    };
    if !opts.timestamps {
        let name = BackupName::new(
            base,
            Stamp::Number(0),
            Kind::Tar {
                gz: compress,
                delta: false,
            },
        );
        return Ok(planned(
            name,
            rotation(loc, listing, |k| matches!(k, Kind::Tar { .. })),
        ));
    }
    // Timestamped: an archive of this stamp in any form means "done".
    for gz in [false, true] {
        for delta in [false, true] {
            let n = BackupName::new(base, Stamp::Time(stamp.to_owned()), Kind::Tar { gz, delta });
            let p = loc.join(n.file_name());
            if fs::symlink_metadata(&p).is_ok() {
                return Ok(PlannedBackup {
                    backup: p,
                    exists: true,
                    delta,
                    snapshot_file: None,
                    renames: Vec::new(),
                    leftovers: Vec::new(),
                });
            }
        }
    }
    // Which snapshot file, if any (see docs/blobs.rst).
    let snar: Option<(String, bool)> = if incremental {
        let full_stamp = match &opts.fs_backup_location {
            Some(d) => naming::repozo_full_stamps(d)?
                .into_iter()
                .rfind(|s| s.as_str() <= stamp),
            None if opts.full => Some(stamp.to_owned()),
            None => listing
                .iter()
                .filter(|b| b.name.kind == Kind::Snar)
                .filter_map(|b| b.name.timestamp().map(str::to_owned))
                .find(|s| s.as_str() <= stamp)
                .or_else(|| Some(stamp.to_owned())),
        };
        match full_stamp {
            None => None,
            Some(fs_stamp) => {
                let snar_name =
                    BackupName::new(base, Stamp::Time(fs_stamp.clone()), Kind::Snar).file_name();
                let exists = loc.join(&snar_name).is_file();
                if fs_stamp != stamp && !exists {
                    log::warn!(
                        "Not making incremental blob backup, because this is a partial backup, and there is no snapshot file yet. Incremental backups will be created with the next full backup."
                    );
                    None
                } else {
                    Some((snar_name, exists))
                }
            }
        }
    } else {
        None
    };
    let delta = matches!(snar, Some((_, true)));
    let name = BackupName::new(
        base,
        Stamp::Time(stamp.to_owned()),
        Kind::Tar {
            gz: compress,
            delta,
        },
    );
    let mut p = planned(name, Vec::new());
    p.delta = delta;
    p.snapshot_file = snar.map(|(n, _)| loc.join(n));
    Ok(p)
}

/// Write the planned archive (not an existing one): plain, or a delta or
/// level 0 with its snapshot file.
fn archive_backup(
    opts: &BackupOptions,
    tree: &tree::Tree,
    planned: &PlannedBackup,
    compress: bool,
    dump_time: (i64, u32),
    progress: &dyn Progress,
    report: &mut BackupReport,
) -> Result<()> {
    let loc = &opts.location;
    let final_path = &planned.backup;
    log::debug!(
        "Backing up blobs from {} to {}",
        opts.blobdir.display(),
        final_path.display()
    );
    let tmp = partial_path(loc, &file_name_of(final_path));
    match &planned.snapshot_file {
        None => {
            write_archive_file(&tmp, compress, |w| {
                archive::write_plain(tree, w, final_path, progress).map(|_| ())
            })?;
            rotate(&planned.renames)?;
            fs::rename(&tmp, final_path).at(final_path)?;
            report.stats.files = tree.file_count();
            report.stats.copied = tree.file_count();
        }
        Some(snar_path) => {
            let previous = if planned.delta {
                Some(Snapshot::read(snar_path)?)
            } else {
                None
            };
            let mut new_snap = None;
            write_archive_file(&tmp, compress, |w| {
                let (_, s) = archive::write_incremental(
                    tree,
                    previous.as_ref(),
                    dump_time,
                    w,
                    final_path,
                    progress,
                )?;
                new_snap = Some(s);
                Ok(())
            })?;
            // The archive first: a snapshot file ahead of its archive would
            // make the next delta miss changes.
            fs::rename(&tmp, final_path).at(final_path)?;
            if let Some(s) = new_snap {
                let bytes = s.to_bytes();
                write_atomically(snar_path, |f| f.write_all(&bytes))?;
            }
            report.stats.files = tree.file_count();
        }
    }
    sync_dir(loc)
}

/// Write an archive to `tmp` (plain or gzip), fsync it; remove it on error.
fn write_archive_file<F>(tmp: &Path, compress: bool, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let result = (|| -> Result<()> {
        remove_tree(tmp)?;
        let f = File::create(tmp).at(tmp)?;
        let mut buf = BufWriter::with_capacity(1 << 20, f);
        let f = if compress {
            let mut gz = flate2::write::GzEncoder::new(&mut buf, flate2::Compression::default());
            fill(&mut gz)?;
            gz.finish().at(tmp)?;
            buf.into_inner()
                .map_err(|e| Error::io(tmp, e.into_error()))?
        } else {
            fill(&mut buf)?;
            buf.into_inner()
                .map_err(|e| Error::io(tmp, e.into_error()))?
        };
        f.sync_all().at(tmp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::SteppingClock;
    use crate::progress::NoProgress;

    fn clock(secs: i64) -> SteppingClock {
        let t = DateTime::<Utc>::from_timestamp(1_790_000_000 + secs, 0).expect("time");
        SteppingClock::new(t, chrono::Duration::zero())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Plan, check that planning wrote nothing, back up with the same clock,
    /// and compare: the backup made, the renames, the snapshot file, and
    /// what retention then removes.
    fn plan_then_backup(opts: &BackupOptions, secs: i64) -> PlannedBackup {
        let before = names(&opts.location);
        let planned = plan_backup(opts, &clock(secs), None).expect("plan");
        let cleanup = plan_cleanup_after(
            &opts.location,
            opts.fs_backup_location.as_deref(),
            &opts.retention_policy(),
            &clock(secs),
            &planned,
            &[],
            &[],
        )
        .expect("plan cleanup");
        assert_eq!(names(&opts.location), before);
        let report = backup(opts, &clock(secs), &NoProgress).expect("backup");
        assert_eq!(report.backup, planned.backup);
        assert_eq!(report.created, !planned.exists);
        assert_eq!(report.delta, planned.delta);
        assert_eq!(report.cleanup, cleanup);
        if let Some(snar) = &planned.snapshot_file {
            assert!(snar.is_file());
        }
        for (_, to) in &planned.renames {
            let gone = cleanup
                .remove
                .iter()
                .any(|r| Some(r.name.as_str()) == to.file_name().and_then(|n| n.to_str()));
            assert_eq!(fs::symlink_metadata(to).is_ok(), !gone, "{}", to.display());
        }
        planned
    }

    #[test]
    fn plan_backup_names_what_make_backup_makes() {
        let d = tempfile::tempdir().expect("tempdir");
        let live = d.path().join("blobstorage");
        fs::create_dir_all(live.join("0x01")).expect("mkdir");
        fs::write(live.join("0x01/a.blob"), "a").expect("write");

        // Timestamped directories: a new one, then the same stamp exists.
        let opts = BackupOptions {
            keep: 1,
            full: true,
            ..BackupOptions::new(&live, &d.path().join("dirs"))
        };
        assert!(!plan_then_backup(&opts, 0).exists);
        assert!(plan_then_backup(&opts, 0).exists);
        let p = plan_then_backup(&opts, 10);
        assert!(!p.exists);

        // Numbered directories: rotation.
        let opts = BackupOptions {
            timestamps: false,
            keep: 2,
            full: true,
            ..BackupOptions::new(&live, &d.path().join("numbered"))
        };
        for secs in 0..3 {
            let p = plan_then_backup(&opts, secs);
            assert_eq!(p.renames.len(), usize::try_from(secs.min(2)).unwrap_or(0));
        }

        // Incremental archives: a level 0 with its snapshot file, then a
        // delta against it.
        let fsrepo = d.path().join("fs");
        fs::create_dir(&fsrepo).expect("mkdir");
        fs::write(fsrepo.join("2026-11-30-10-00-00.fsz"), "x").expect("write");
        let opts = BackupOptions {
            format: Format::Archives {
                compress: false,
                incremental: true,
            },
            fs_backup_location: Some(fsrepo.clone()),
            ..BackupOptions::new(&live, &d.path().join("tars"))
        };
        let p = plan_then_backup(&opts, 0);
        assert!(!p.delta && p.snapshot_file.is_some());
        fs::write(fsrepo.join("2026-11-30-11-00-00.deltafsz"), "x").expect("write");
        fs::write(live.join("0x01/b.blob"), "b").expect("write");
        let p = plan_then_backup(&opts, 0);
        assert!(p.delta);
    }

    #[test]
    fn rsync_options_mapping() {
        let o = RsyncOptions::parse("--no-l -k -v --delete -aH");
        assert!(o.copy_dirlinks && o.skip_symlinks && !o.copy_links);
        assert_eq!(o.ignored, ["-v", "--delete", "-aH"]);
        let o = RsyncOptions::parse("-kL");
        assert!(o.copy_dirlinks && o.copy_links);
        assert!(o.ignored.is_empty());
    }
}
