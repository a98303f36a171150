//! The real engines behind the scripts: [`RepozoEngine`] over
//! [`crate::repozo`] and [`BlobsEngine`] over [`crate::blobs`], adapted to
//! the orchestration's traits.
//!
//! Adapters only: they translate the orchestration's requests into the
//! engines' options and keep the orchestration's contract. A plan is found
//! without writing; a recover or restore writes only into the temporary
//! target it is given (the orchestration swaps it in); retention is a pure
//! plan, then its execution. Both take the one date the script parsed
//! ([`crate::config::RestoreDate`]), so filestorage and blobs are selected
//! with the same normalised `YYYY-MM-DD-HH-MM-SS` string.
//!
//! Each engine carries the [`Progress`] its long work reports to (the
//! scripts' bar on a terminal stderr, or [`NoProgress`]); the orchestration
//! never sees it.
//!
//! `verbose` (`debug`) needs no flag here: the repozo engine logs its
//! `--verbose` lines to the `collective.recipe.backup.repozo` logger, which
//! the scripts enable only with `debug` (6.0 passed `--verbose` then).

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    BlobBackup, BlobEngine, BlobPlanned, BlobRestore, BlobRetention, BlobSettings,
    FileStorageEngine, FsBackup, FsPlanned, FsRecover, FsRetention,
};
use crate::blobs::naming::{parse_repozo_data_file, repozo_data_files, BackupName};
use crate::blobs::restore::{find_backup, find_exact, write_tree, RestoreOptions, Selected};
use crate::blobs::{self, BackupOptions, Format, RsyncOptions};
use crate::retention::CleanupPlan;
use chrono::{DateTime, Utc};

use crate::clock::{Clock, SteppingClock, SystemClock};
use crate::error::{IoContext, Result};
use crate::progress::{NoProgress, Progress};
use crate::repozo::naming::gen_filename;
use crate::repozo::recover::{plan_chain, recover_chain, Chain};
use crate::repozo::{self, gzip, retention};

/// The filestorage engine: repozo in Rust.
#[derive(Clone, Copy)]
pub struct RepozoEngine<'a> {
    /// A fixed time for backup names and "now" (tests); `None`: the system
    /// clock.
    pub now: Option<DateTime<Utc>>,
    /// Where the copy, checksum and recover loops report.
    pub progress: &'a dyn Progress,
}

impl Default for RepozoEngine<'_> {
    fn default() -> Self {
        RepozoEngine {
            now: None,
            progress: &NoProgress,
        }
    }
}

impl std::fmt::Debug for RepozoEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepozoEngine")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The clock an engine uses: fixed at `now` when given, else the system's.
fn clock_at(now: Option<DateTime<Utc>>) -> Box<dyn Clock> {
    match now {
        Some(t) => Box::new(SteppingClock::new(t, chrono::Duration::zero())),
        None => Box::new(SystemClock),
    }
}

fn repozo_options(req: &FsBackup<'_>) -> repozo::BackupOptions {
    repozo::BackupOptions {
        datafs: req.datafs.to_path_buf(),
        repository: req.repository.to_path_buf(),
        full: req.full,
        gzip: req.gzip,
        quick: req.quick && !req.full,
        kill_old: false,
        gzip_level: gzip::DEFAULT_LEVEL,
        create_repository: false,
    }
}

impl FileStorageEngine for RepozoEngine<'_> {
    type Plan = Chain;

    fn backup(&self, req: &FsBackup<'_>) -> Result<()> {
        let opts = repozo_options(req);
        let report = repozo::backup(&opts, clock_at(self.now).as_ref(), self.progress)?;
        if let Some(f) = &report.data_file {
            log::debug!("Wrote {} ({} bytes)", f.display(), report.written);
        }
        Ok(())
    }

    fn retain(&self, req: &FsRetention<'_>) -> Result<()> {
        retention::apply(req.repository, req.keep, req.complete).map(|_| ())
    }

    fn plan_backup(&self, req: &FsBackup<'_>) -> Result<FsPlanned> {
        // The orchestration creates a missing repository before a real
        // backup; a dry run plans as if it had.
        let opts = repozo::BackupOptions {
            create_repository: true,
            ..repozo_options(req)
        };
        repozo::plan_backup(&opts, clock_at(self.now).as_ref(), &NoProgress)
    }

    fn plan_retention(
        &self,
        req: &FsRetention<'_>,
        added: &[PathBuf],
        removed: &[PathBuf],
    ) -> Result<Vec<PathBuf>> {
        let names = |paths: &[PathBuf]| -> Vec<String> {
            paths
                .iter()
                .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
                .collect()
        };
        let plan = retention::plan_after(
            req.repository,
            req.keep,
            req.complete,
            &names(added),
            &names(removed),
        )?;
        Ok(plan.remove.iter().map(|n| req.repository.join(n)).collect())
    }

    fn plan_recover(&self, req: &FsRecover<'_>) -> Result<Chain> {
        match req.date {
            Some(d) => {
                let when = d.to_string();
                plan_chain(req.repository, &when, Some(&when))
            }
            None => plan_chain(
                req.repository,
                &gen_filename(clock_at(self.now).now(), ""),
                None,
            ),
        }
    }

    fn plan_stamp(&self, plan: &Chain) -> Option<String> {
        let name = plan.files.last()?.file_name()?.to_str()?;
        parse_repozo_data_file(name).map(|(stamp, _)| stamp.to_owned())
    }

    fn plan_files(&self, plan: &Chain) -> (Vec<PathBuf>, Option<PathBuf>) {
        // The `.index` of the newest file, when there is one (as
        // `recover_chain` copies it).
        let index = plan
            .files
            .last()
            .map(|p| p.with_extension("index"))
            .filter(|p| p.is_file());
        (plan.files.clone(), index)
    }

    fn stamps(&self, repository: &Path) -> Result<Vec<String>> {
        Ok(repozo_data_files(repository)?
            .into_iter()
            .map(|(stamp, _)| stamp)
            .collect())
    }

    fn recover(&self, plan: &Chain, output: &Path) -> Result<()> {
        // md5 of every file against its `.dat` line: a restore is rare and
        // a silently corrupt Data.fs is the worst outcome.
        recover_chain(plan, output, true, self.progress).map(|_| ())
    }

    fn plan_prefix(
        &self,
        plan: &Chain,
        live: &Path,
        proof: repozo::prefix::Proof,
    ) -> Result<Option<repozo::prefix::KeptPrefix>> {
        repozo::prefix::check(plan, live, proof, self.progress)
    }
}

/// The blob engine: directory snapshots and archives in Rust.
#[derive(Clone, Copy)]
pub struct BlobsEngine<'a> {
    /// A fixed time for backup names and retention ages (tests); `None`:
    /// the system clock.
    pub now: Option<DateTime<Utc>>,
    /// Where the copy, hard-link, archive and extract loops report.
    pub progress: &'a dyn Progress,
}

impl Default for BlobsEngine<'_> {
    fn default() -> Self {
        BlobsEngine {
            now: None,
            progress: &NoProgress,
        }
    }
}

impl std::fmt::Debug for BlobsEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobsEngine")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A planned blob restore: what to restore, and the live directory (for
/// the log lines).
#[derive(Debug, Clone)]
pub struct BlobPlan {
    selected: Selected,
    blobdir: PathBuf,
}

fn format(settings: &BlobSettings) -> Format {
    Format::from_options(
        settings.archive,
        settings.compress,
        settings.incremental,
        settings.hard_links,
        settings.hard_links_on_first_copy,
    )
}

fn options(
    blobdir: &Path,
    location: &Path,
    fs_repository: Option<&Path>,
    full: bool,
    settings: &BlobSettings,
) -> BackupOptions {
    BackupOptions {
        fs_backup_location: fs_repository.map(Path::to_path_buf),
        format: format(settings),
        timestamps: settings.timestamps,
        full,
        rsync: RsyncOptions::parse(&settings.rsync_options),
        ..BackupOptions::new(blobdir, location)
    }
}

fn restore_options(req: &BlobRestore<'_>) -> RestoreOptions {
    RestoreOptions {
        location: req.source.to_path_buf(),
        target: req.blobdir.to_path_buf(),
        date: req.date.map(Into::into),
        prefer_archives: req.settings.archive,
        timestamps: req.settings.timestamps,
    }
}

impl BlobEngine for BlobsEngine<'_> {
    type Plan = BlobPlan;

    fn backup(&self, req: &BlobBackup<'_>) -> Result<()> {
        let opts = options(
            req.blobdir,
            req.destination,
            req.fs_repository,
            req.full,
            req.settings,
        );
        blobs::make_backup(&opts, clock_at(self.now).as_ref(), self.progress).map(|_| ())
    }

    fn retain(&self, req: &BlobRetention<'_>) -> Result<()> {
        // The blob directory only names backups; retention never reads it.
        let mut opts = options(
            Path::new("blobstorage"),
            req.destination,
            req.fs_repository,
            req.full,
            req.settings,
        );
        opts.keep = req.keep;
        opts.keep_blob_days = req.keep_blob_days;
        blobs::cleanup(
            req.destination,
            req.fs_repository,
            &opts.retention_policy(),
            clock_at(self.now).as_ref(),
            false,
        )
        .map(|_| ())
    }

    fn plan_backup(&self, req: &BlobBackup<'_>, fs_stamp: Option<&str>) -> Result<BlobPlanned> {
        let opts = options(
            req.blobdir,
            req.destination,
            req.fs_repository,
            req.full,
            req.settings,
        );
        blobs::plan_backup(&opts, clock_at(self.now).as_ref(), fs_stamp)
    }

    fn plan_retention(
        &self,
        req: &BlobRetention<'_>,
        planned: &BlobPlanned,
        fs_added: &[PathBuf],
        fs_removed: &[PathBuf],
    ) -> Result<CleanupPlan> {
        let mut opts = options(
            Path::new("blobstorage"),
            req.destination,
            req.fs_repository,
            req.full,
            req.settings,
        );
        opts.keep = req.keep;
        opts.keep_blob_days = req.keep_blob_days;
        blobs::plan_cleanup_after(
            req.destination,
            req.fs_repository,
            &opts.retention_policy(),
            clock_at(self.now).as_ref(),
            planned,
            fs_added,
            fs_removed,
        )
    }

    fn plan_restore(&self, req: &BlobRestore<'_>) -> Result<BlobPlan> {
        let selected = find_backup(&restore_options(req))?;
        Ok(BlobPlan {
            selected,
            blobdir: req.blobdir.to_path_buf(),
        })
    }

    fn plan_exact(&self, req: &BlobRestore<'_>, stamp: &str) -> Result<BlobPlan> {
        let selected = find_exact(&restore_options(req), stamp)?;
        Ok(BlobPlan {
            selected,
            blobdir: req.blobdir.to_path_buf(),
        })
    }

    fn plan_stamp(&self, plan: &BlobPlan) -> String {
        let newest = match &plan.selected {
            Selected::Directory { backup, .. } => Some(backup),
            Selected::Archives { chain } => chain.last(),
        };
        newest
            .and_then(|p| p.file_name()?.to_str().and_then(BackupName::parse))
            .map(|n| n.stamp.to_string())
            .unwrap_or_default()
    }

    fn plan_files(&self, plan: &BlobPlan) -> Vec<PathBuf> {
        match &plan.selected {
            Selected::Directory { backup, .. } => vec![backup.clone()],
            Selected::Archives { chain } => chain.clone(),
        }
    }

    fn restore(&self, plan: &BlobPlan, target: &Path) -> Result<()> {
        // The tree is written whole, with the backup's mode on its root; the
        // orchestration gave an empty directory to hold its place.
        fs::remove_dir(target).at(target)?;
        write_tree(&plan.selected, target, &plan.blobdir, self.progress).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RestoreDate;
    use crate::error::Error;

    fn settings(archive: bool) -> BlobSettings {
        BlobSettings {
            archive,
            compress: false,
            timestamps: true,
            incremental: false,
            hard_links: true,
            hard_links_on_first_copy: false,
            rsync_options: String::new(),
        }
    }

    fn write(path: &Path, data: &str) {
        if let Some(p) = path.parent() {
            assert!(fs::create_dir_all(p).is_ok());
        }
        assert!(fs::write(path, data).is_ok());
    }

    #[test]
    fn repozo_plan_recover_empty_repository() {
        let d = tempfile::tempdir().expect("tempdir");
        let date = RestoreDate::parse("2026-11-26").ok();
        let e = RepozoEngine::default()
            .plan_recover(&FsRecover {
                repository: d.path(),
                date: date.as_ref(),
                verbose: false,
            })
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("No files in repository before 2026-11-26-00-00-00")
        );
    }

    #[test]
    fn blobs_backup_retain_plan_restore_round_trip() {
        for archive in [false, true] {
            let d = tempfile::tempdir().expect("tempdir");
            let live = d.path().join("blobstorage");
            write(&live.join("0x01/0x02.blob"), "one");
            write(&live.join(".layout"), "bushy");
            let fsrepo = d.path().join("backups");
            write(&fsrepo.join("2026-11-26-10-00-00.fsz"), "x");
            let dest = d.path().join("blobbackups");
            assert!(fs::create_dir(&dest).is_ok());
            let s = settings(archive);
            let req = BlobBackup {
                blobdir: &live,
                destination: &dest,
                fs_repository: Some(&fsrepo),
                full: false,
                settings: &s,
            };
            assert!(BlobsEngine::default().backup(&req).is_ok());
            let retain = BlobRetention {
                destination: &dest,
                fs_repository: Some(&fsrepo),
                full: false,
                keep: 2,
                keep_blob_days: 14,
                settings: &s,
            };
            assert!(BlobsEngine::default().retain(&retain).is_ok());
            let name = if archive {
                "blobstorage.2026-11-26-10-00-00.tar"
            } else {
                "blobstorage.2026-11-26-10-00-00"
            };
            assert!(fs::symlink_metadata(dest.join(name)).is_ok(), "{name}");
            assert_eq!(
                fs::read_link(dest.join("latest")).ok(),
                Some(PathBuf::from(name))
            );

            // Too early (by name and by mtime): refused at the plan.
            let early = RestoreDate::parse("2000-01-01").ok();
            let e = BlobsEngine::default().plan_restore(&BlobRestore {
                source: &dest,
                blobdir: &live,
                date: early.as_ref(),
                settings: &s,
            });
            assert!(matches!(e, Err(Error::NoBlobBackupAtDate { .. })), "{e:?}");
            // The stamp itself is "at or before".
            let date = RestoreDate::parse("2026-11-26-10-00-00").ok();
            let plan = BlobsEngine::default().plan_restore(&BlobRestore {
                source: &dest,
                blobdir: &live,
                date: date.as_ref(),
                settings: &s,
            });
            let Ok(plan) = plan else { panic!("{plan:?}") };
            let target = d.path().join("new");
            assert!(fs::create_dir(&target).is_ok());
            assert!(BlobsEngine::default().restore(&plan, &target).is_ok());
            assert_eq!(
                fs::read_to_string(target.join("0x01/0x02.blob")).ok(),
                Some("one".to_owned())
            );
            assert_eq!(
                fs::read_to_string(target.join(".layout")).ok(),
                Some("bushy".to_owned())
            );
        }
    }
}
