//! Backup and restore orchestration: which storage, in which order, with
//! which settings per script, and what happens on failure.
//!
//! Owns the order (see docs/scripts.rst, plus the seed's
//! `additional_filestorages` order) and restore safety (docs/scripts.rst). It does
//! not own the bytes: filestorage backups are done by a
//! [`FileStorageEngine`] (repozo) and blob backups by a
//! [`BlobEngine`]. Both are small traits: the tests here prove
//! the order with fakes (`fake.rs`), and the scripts use the real engines
//! through the adapters in `engines.rs` ([`RepozoEngine`], [`BlobsEngine`]).
//!
//! `verify.rs` checks the backups a restore would read, and reads only.
//!
//! Every failure is an `Err`: the caller maps it to an `ERROR:` line and
//! exit code 1. Nothing here prints; progress lines go through `log`.

mod backup;
mod engines;
mod lock;
mod restore;
mod swap;
mod verify;

use std::path::Path;

pub use backup::backup;
pub use engines::{BlobPlan, BlobsEngine, RepozoEngine};
pub use restore::{restore, RestoreRequest};
pub use verify::{verify, Selection};

use std::path::PathBuf;

use crate::config::RestoreDate;
use crate::error::Result;
use crate::retention::CleanupPlan;

/// The filestorage backup a dry run plans: the decision and the files it
/// writes ([`crate::repozo::plan_backup`]).
pub type FsPlanned = crate::repozo::PlannedBackup;

/// The blob backup a dry run plans ([`crate::blobs::plan_backup`]).
pub type BlobPlanned = crate::blobs::PlannedBackup;

/// The backup scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    /// `bin/backup`: incremental unless `full`.
    Standard,
    /// `bin/fullbackup` (seed): `bin/backup` with `full = true`.
    Full,
    /// `bin/snapshotbackup`: full, into the snapshot locations.
    Snapshot,
    /// `bin/zipbackup`: full, archive, no timestamps, keep 1.
    Zip,
}

/// The restore scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// `bin/restore`.
    Standard,
    /// `bin/snapshotrestore`.
    Snapshot,
    /// `bin/ziprestore`.
    Zip,
    /// `bin/altrestore`.
    Alt,
}

/// One filestorage backup (what `repozo --backup` was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsBackup<'a> {
    /// The live `Data.fs`.
    pub datafs: &'a Path,
    /// The repository directory (exists when called).
    pub repository: &'a Path,
    /// Always a full backup (`-F`).
    pub full: bool,
    /// Quick incremental (`--quick`); only meaningful when not `full`.
    pub quick: bool,
    /// Compressed files (`--gzip`: `.fsz`, `.deltafsz`).
    pub gzip: bool,
    /// Verbose engine logging (`debug`).
    pub verbose: bool,
}

/// Filestorage retention after backups: keep `keep` full backups and
/// their increments (0 = keep all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsRetention<'a> {
    /// The repository directory.
    pub repository: &'a Path,
    /// Full backups to keep.
    pub keep: u32,
    /// With dated blob backups: the stamps whose blob backup is complete.
    /// Only full backups with one count towards `keep`.
    pub complete: Option<&'a [String]>,
}

/// A filestorage restore to plan (what `repozo --recover` was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsRecover<'a> {
    /// The repository directory.
    pub repository: &'a Path,
    /// Restore the state at or before this date; `None` = newest.
    pub date: Option<&'a RestoreDate>,
    /// Verbose engine logging.
    pub verbose: bool,
}

/// Blob settings after the script's overrides (zip: archive, no timestamps,
/// no incremental; snapshot: no incremental).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSettings {
    /// Archives (`.tar[.gz]`) instead of directories.
    pub archive: bool,
    /// Gzip the archives.
    pub compress: bool,
    /// Timestamped names.
    pub timestamps: bool,
    /// Incremental archives.
    pub incremental: bool,
    /// Hard-link unchanged files to the previous directory backup (6.0's
    /// `use_rsync = true`); false means complete copies.
    pub hard_links: bool,
    /// Hard-link the first directory backup to the live blobs.
    pub hard_links_on_first_copy: bool,
    /// `rsync_options` as configured; the blob engine maps the options
    /// that mean something without rsync (`-k`, `-L`, `--no-l`).
    pub rsync_options: String,
}

impl BlobSettings {
    /// The blob settings of the part, before any script's overrides.
    /// `incremental_blobs` only means something with `archive_blob`.
    #[must_use]
    pub fn from_config(cfg: &crate::config::BackupConfig) -> Self {
        BlobSettings {
            archive: cfg.archive_blob,
            compress: cfg.compress_blob,
            timestamps: cfg.blob_timestamps,
            incremental: cfg.incremental_blobs && cfg.archive_blob,
            hard_links: cfg.use_rsync,
            hard_links_on_first_copy: cfg.rsync_hard_links_on_first_copy,
            rsync_options: cfg.rsync_options.clone(),
        }
    }
}

/// One blob backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobBackup<'a> {
    /// The live blob directory.
    pub blobdir: &'a Path,
    /// The blob backup location (exists when called).
    pub destination: &'a Path,
    /// The matching filestorage repository, whose newest file names the
    /// blob backup; `None` with `only_blobs`.
    pub fs_repository: Option<&'a Path>,
    /// A full backup (snapshot, zip, fullbackup or `full = true`).
    pub full: bool,
    /// Settings.
    pub settings: &'a BlobSettings,
}

/// Blob retention after backups (see docs/blobs.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRetention<'a> {
    /// The blob backup location.
    pub destination: &'a Path,
    /// The matching filestorage repository (orphan rule); `None` with
    /// `only_blobs`.
    pub fs_repository: Option<&'a Path>,
    /// Whether the backups were full ones.
    pub full: bool,
    /// Backups to keep.
    pub keep: u32,
    /// Days to keep for non-full directory backups without fs backups.
    pub keep_blob_days: u32,
    /// Settings.
    pub settings: &'a BlobSettings,
}

/// A blob restore to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRestore<'a> {
    /// The blob backup location to restore from.
    pub source: &'a Path,
    /// The live blob directory that will be replaced (its basename may
    /// differ from the one in the backup).
    pub blobdir: &'a Path,
    /// At or before this date; `None` = newest.
    pub date: Option<&'a RestoreDate>,
    /// Settings (`archive` = prefer archives when both kinds exist).
    pub settings: &'a BlobSettings,
}

/// Backs up and restores one FileStorage.
pub trait FileStorageEngine {
    /// Everything `recover` needs, found by `plan_recover` without writing.
    type Plan;

    /// Make a backup of `req.datafs` into `req.repository`.
    ///
    /// # Errors
    /// Any I/O or format error; the orchestration then stops.
    fn backup(&self, req: &FsBackup<'_>) -> Result<()>;

    /// Remove old backups from a repository.
    ///
    /// # Errors
    /// Any I/O error.
    fn retain(&self, req: &FsRetention<'_>) -> Result<()>;

    /// What `backup` would write, touching nothing (a dry run). The
    /// repository may not exist yet (the run would create it).
    ///
    /// # Errors
    /// As `backup` before it writes.
    fn plan_backup(&self, req: &FsBackup<'_>) -> Result<FsPlanned>;

    /// What `retain` would remove once the `added` files exist too and the
    /// `removed` ones (leftovers of interrupted runs) are gone, touching
    /// nothing.
    ///
    /// # Errors
    /// The repository cannot be read.
    fn plan_retention(
        &self,
        req: &FsRetention<'_>,
        added: &[PathBuf],
        removed: &[PathBuf],
    ) -> Result<Vec<PathBuf>>;

    /// Find the backup chain for the date and check it (files present,
    /// checksums where cheap), touching nothing.
    ///
    /// # Errors
    /// No backup at or before the date, or a broken chain.
    fn plan_recover(&self, req: &FsRecover<'_>) -> Result<Self::Plan>;

    /// The date (`YYYY-MM-DD-HH-MM-SS`) of the newest file of a planned
    /// chain: the name a timestamped blob backup made with it carries.
    /// `None` when the plan has no such date.
    fn plan_stamp(&self, plan: &Self::Plan) -> Option<String>;

    /// The backup files a planned restore reads, oldest first, and the
    /// `.index` it copies (`None`: the restored Data.fs gets none).
    fn plan_files(&self, plan: &Self::Plan) -> (Vec<PathBuf>, Option<PathBuf>);

    /// The dates of the backup files in a repository, oldest first: the
    /// states a restore can be asked for.
    ///
    /// # Errors
    /// The repository cannot be read.
    fn stamps(&self, repository: &Path) -> Result<Vec<String>>;

    /// Write the planned state to `output`, a new file beside the live
    /// `Data.fs`, and its fsIndex to `<output>.index` when the backup has
    /// one. The orchestration renames them into place.
    ///
    /// # Errors
    /// Any I/O error; `output` is then discarded.
    fn recover(&self, plan: &Self::Plan, output: &Path) -> Result<()>;

    /// Does the live Data.fs at `live` start with exactly the planned
    /// state (proven by `proof`)? Then the restore keeps those bytes and
    /// cuts off the rest (see `repozo::prefix`). `None`: the whole file
    /// must be written. Reads, never writes.
    ///
    /// # Errors
    /// A check that cannot decide (the restore stops, as a full restore
    /// would for the same reason).
    fn plan_prefix(
        &self,
        _plan: &Self::Plan,
        _live: &Path,
        _proof: crate::repozo::prefix::Proof,
    ) -> Result<Option<crate::repozo::prefix::KeptPrefix>> {
        Ok(None)
    }
}

/// Backs up and restores one blob directory.
pub trait BlobEngine {
    /// Everything `restore` needs, found by `plan_restore` without writing.
    type Plan;

    /// Make a blob backup (including the "already exists" skip).
    ///
    /// # Errors
    /// Any I/O error; the orchestration then stops with exit 1.
    fn backup(&self, req: &BlobBackup<'_>) -> Result<()>;

    /// Remove old blob backups (orphans, keep, keep_blob_days) and refresh
    /// the `latest` link.
    ///
    /// # Errors
    /// Any I/O error, or mixed prefixes in one location.
    fn retain(&self, req: &BlobRetention<'_>) -> Result<()>;

    /// What `backup` would write, touching nothing (a dry run); `fs_stamp`
    /// is the date of the filestorage backup planned before it in the same
    /// run, if any.
    ///
    /// # Errors
    /// As `backup` before it writes.
    fn plan_backup(&self, req: &BlobBackup<'_>, fs_stamp: Option<&str>) -> Result<BlobPlanned>;

    /// What `retain` would remove, and where `latest` would point, once
    /// `planned` exists and the filestorage repository has gained
    /// `fs_added` and lost `fs_removed` (its planned backup and retention),
    /// touching nothing.
    ///
    /// # Errors
    /// As `retain`.
    fn plan_retention(
        &self,
        req: &BlobRetention<'_>,
        planned: &BlobPlanned,
        fs_added: &[PathBuf],
        fs_removed: &[PathBuf],
    ) -> Result<CleanupPlan>;

    /// Find the blob backup for the date and check it, touching nothing.
    ///
    /// # Errors
    /// No backup at or before the date, or an incomplete chain.
    fn plan_restore(&self, req: &BlobRestore<'_>) -> Result<Self::Plan>;

    /// Find exactly the blob backup named with `stamp` (`req.date` is not
    /// used) and check that it is complete, touching nothing.
    ///
    /// # Errors
    /// There is no such backup, or it is incomplete (a delta without its
    /// level 0, a directory without its tree).
    fn plan_exact(&self, req: &BlobRestore<'_>, stamp: &str) -> Result<Self::Plan>;

    /// The date or number of the (newest) backup a plan restores, for
    /// messages.
    fn plan_stamp(&self, plan: &Self::Plan) -> String;

    /// The blob backups (directory, or archives oldest first) a planned
    /// restore reads.
    fn plan_files(&self, plan: &Self::Plan) -> Vec<PathBuf>;

    /// Write the planned blob tree into `target`, a new empty directory
    /// beside the live blob directory. The orchestration swaps it in.
    ///
    /// # Errors
    /// Any I/O error; `target` is then discarded.
    fn restore(&self, plan: &Self::Plan, target: &Path) -> Result<()>;
}

/// The filestorage engine the scripts use.
pub type ScriptFsEngine<'a> = RepozoEngine<'a>;

/// The blob engine the scripts use.
pub type ScriptBlobEngine<'a> = BlobsEngine<'a>;

#[cfg(test)]
pub(crate) mod fake;
