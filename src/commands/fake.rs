//! Fake engines and hooks that record every call, for the orchestration
//! tests. The fake filestorage engine writes `restored from <repository>`
//! (and an index) on recover; the fake blob engine writes one file.
//!
//! Dates: the fake filestorage engine's backups are the `<stamp>.fsz` files
//! of its repository (when it exists), and a plan's date is the newest one
//! at or before the restore date; the fake blob engine's exact backups are
//! the `<base>.<stamp>` directories of its location.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{AdditionalStorage, BackupConfig, ConfigInput};
use crate::error::{Error, IoContext};
use crate::hooks::Hooks;

/// A shared call log; `fail_on` makes the call whose record starts with it
/// fail.
#[derive(Default)]
pub(crate) struct Recorder {
    pub calls: RefCell<Vec<String>>,
    pub fail_on: Option<String>,
}

impl Recorder {
    pub fn failing(prefix: &str) -> Self {
        Recorder {
            calls: RefCell::default(),
            fail_on: Some(prefix.to_owned()),
        }
    }

    fn record(&self, what: String) -> Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|f| what.starts_with(f));
        self.calls.borrow_mut().push(what.clone());
        if fail {
            Err(Error::Config(format!("fake failure: {what}")))
        } else {
            Ok(())
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) struct FakeFs<'a>(pub &'a Recorder);
pub(crate) struct FakeBlobs<'a>(pub &'a Recorder);
pub(crate) struct FakeHooks<'a>(pub &'a Recorder);

/// The `<stamp>.fsz` files of a fake repository, oldest first.
fn fake_stamps(repository: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repository)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".fsz").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl FileStorageEngine for FakeFs<'_> {
    type Plan = (PathBuf, Option<String>);
    fn backup(&self, r: &FsBackup<'_>) -> Result<()> {
        self.0.record(format!(
            "fs backup {} -> {} full={} quick={} gzip={}",
            name(r.datafs),
            name(r.repository),
            r.full,
            r.quick,
            r.gzip
        ))
    }
    fn retain(&self, r: &FsRetention<'_>) -> Result<()> {
        self.0
            .record(format!("fs retain {} keep={}", name(r.repository), r.keep))
    }
    fn plan_backup(&self, r: &FsBackup<'_>) -> Result<FsPlanned> {
        self.0
            .record(format!("fs plan backup {}", name(r.repository)))?;
        Ok(FsPlanned {
            action: crate::repozo::Action::Full,
            reason: "fake",
            data_file: Some(r.repository.join("2026-11-30-10-00-00.fsz")),
            index_file: None,
            dat_file: None,
            leftovers: Vec::new(),
        })
    }
    fn plan_retention(
        &self,
        r: &FsRetention<'_>,
        _added: &[PathBuf],
        _removed: &[PathBuf],
    ) -> Result<Vec<PathBuf>> {
        self.0
            .record(format!("fs plan retain {}", name(r.repository)))?;
        Ok(Vec::new())
    }
    fn plan_files(&self, plan: &(PathBuf, Option<String>)) -> (Vec<PathBuf>, Option<PathBuf>) {
        (vec![plan.0.clone()], None)
    }
    fn plan_recover(&self, r: &FsRecover<'_>) -> Result<(PathBuf, Option<String>)> {
        let date = r.date.map(ToString::to_string).unwrap_or_default();
        self.0.record(
            format!("fs plan {} {date}", name(r.repository))
                .trim_end()
                .to_owned(),
        )?;
        let stamps = fake_stamps(r.repository);
        let stamp = stamps.into_iter().rfind(|s| date.is_empty() || *s <= date);
        Ok((r.repository.to_path_buf(), stamp))
    }
    fn plan_stamp(&self, plan: &(PathBuf, Option<String>)) -> Option<String> {
        plan.1.clone()
    }
    fn stamps(&self, repository: &Path) -> Result<Vec<String>> {
        Ok(fake_stamps(repository))
    }
    fn recover(&self, plan: &(PathBuf, Option<String>), output: &Path) -> Result<()> {
        let plan = &plan.0;
        self.0.record(format!("fs recover {}", name(plan)))?;
        std::fs::write(output, format!("restored from {}", name(plan))).at(output)?;
        let mut index = output.as_os_str().to_owned();
        index.push(".index");
        std::fs::write(&index, b"index").at(Path::new(&index))
    }
}

impl BlobEngine for FakeBlobs<'_> {
    type Plan = PathBuf;
    fn backup(&self, r: &BlobBackup<'_>) -> Result<()> {
        self.0.record(format!(
            "blob backup {} -> {} fs={} full={} archive={} timestamps={} incremental={}",
            name(r.blobdir),
            name(r.destination),
            r.fs_repository.map(name).unwrap_or_default(),
            r.full,
            r.settings.archive,
            r.settings.timestamps,
            r.settings.incremental
        ))
    }
    fn retain(&self, r: &BlobRetention<'_>) -> Result<()> {
        self.0.record(format!(
            "blob retain {} keep={}",
            name(r.destination),
            r.keep
        ))
    }
    fn plan_backup(&self, r: &BlobBackup<'_>, fs_stamp: Option<&str>) -> Result<BlobPlanned> {
        self.0.record(format!(
            "blob plan backup {} fs_stamp={}",
            name(r.destination),
            fs_stamp.unwrap_or_default()
        ))?;
        Ok(BlobPlanned {
            backup: r
                .destination
                .join(format!("{}.{}", name(r.blobdir), fs_stamp.unwrap_or("0"))),
            exists: false,
            delta: false,
            snapshot_file: None,
            renames: Vec::new(),
            leftovers: Vec::new(),
        })
    }
    fn plan_retention(
        &self,
        r: &BlobRetention<'_>,
        _planned: &BlobPlanned,
        _fs_added: &[PathBuf],
        _fs_removed: &[PathBuf],
    ) -> Result<crate::retention::CleanupPlan> {
        self.0
            .record(format!("blob plan retain {}", name(r.destination)))?;
        Ok(crate::retention::CleanupPlan::default())
    }
    fn plan_files(&self, plan: &PathBuf) -> Vec<PathBuf> {
        vec![plan.clone()]
    }
    fn plan_restore(&self, r: &BlobRestore<'_>) -> Result<PathBuf> {
        self.0.record(format!(
            "blob plan {} archive={}",
            name(r.source),
            r.settings.archive
        ))?;
        Ok(r.source.to_path_buf())
    }
    fn plan_exact(&self, r: &BlobRestore<'_>, stamp: &str) -> Result<PathBuf> {
        self.0
            .record(format!("blob exact {} {stamp}", name(r.source)))?;
        let dir = r.source.join(format!("{}.{stamp}", name(r.blobdir)));
        if dir.is_dir() {
            Ok(r.source.to_path_buf())
        } else {
            Err(Error::NoBlobBackupAtDate {
                date: stamp.to_owned(),
            })
        }
    }
    fn plan_stamp(&self, plan: &PathBuf) -> String {
        fake_newest_blob(plan)
    }
    fn restore(&self, plan: &PathBuf, target: &Path) -> Result<()> {
        self.0.record(format!("blob restore {}", name(plan)))?;
        let f = target.join("restored.txt");
        std::fs::write(&f, format!("from {}", name(plan))).at(&f)
    }
}

/// The newest `<base>.<stamp>` stamp of a fake blob location.
fn fake_newest_blob(location: &Path) -> String {
    std::fs::read_dir(location)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.split_once('.').map(|(_, s)| s.to_owned())
                })
                .max()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

impl Hooks for FakeHooks<'_> {
    fn run(&self, command: &str) -> Result<()> {
        if command.is_empty() {
            return Ok(());
        }
        self.0.record(format!("hook {command}"))
    }
}

/// A config in `dir`: main storage with blobs plus `catalog` (no blobs),
/// pre and post commands.
pub(crate) fn config(dir: &Path, tweak: impl FnOnce(&mut ConfigInput)) -> BackupConfig {
    let mut input = ConfigInput {
        var_dir: dir.join("var"),
        blob_storage: Some(dir.join("var").join("blobstorage")),
        pre_command: "pre".into(),
        post_command: "post".into(),
        additional_filestorages: vec![AdditionalStorage {
            name: "catalog".into(),
            datafs: None,
            blobdir: None,
        }],
        ..ConfigInput::default()
    };
    tweak(&mut input);
    match BackupConfig::new(input) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

mod backup_tests {
    use super::*;

    /// A backup of a site whose blob directories exist.
    fn run(cfg: &BackupConfig, mode: BackupMode, rec: &Recorder) -> Result<()> {
        for blobdir in cfg.storages.iter().filter_map(|s| s.blobdir.as_deref()) {
            assert!(std::fs::create_dir_all(blobdir).is_ok());
        }
        backup(
            cfg,
            mode,
            false,
            &FakeFs(rec),
            &FakeBlobs(rec),
            &FakeHooks(rec),
        )
    }

    #[test]
    fn backup_missing_blob_storage_is_an_error_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::default();
        let e = backup(
            &cfg,
            BackupMode::Standard,
            false,
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                format!(
                    "Blob storage {} does not exist. Check blob_storage, or set backup_blobs = false if this site keeps no blobs. Nothing was backed up.",
                    dir.path().join("var/blobstorage").display()
                )
                .as_str()
            )
        );
        assert_eq!(rec.calls(), ["hook pre"]);
        // Neither the blob storage nor any backup location was created.
        assert!(!dir.path().join("var").exists());
        // A file in its place is not a blob storage either.
        assert!(std::fs::create_dir(dir.path().join("var")).is_ok());
        assert!(std::fs::write(dir.path().join("var/blobstorage"), "x").is_ok());
        let rec = Recorder::default();
        let e = backup(
            &cfg,
            BackupMode::Snapshot,
            false,
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(matches!(e, Err(Error::NotADirectory { .. })));
        assert_eq!(rec.calls(), ["hook pre"]);
    }

    #[test]
    fn backup_order_additional_first_blobs_after_fs_retention_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::default();
        assert!(run(&cfg, BackupMode::Standard, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "hook pre",
                "fs backup catalog.fs -> backups_catalog full=false quick=true gzip=true",
                "fs backup Data.fs -> backups full=false quick=true gzip=true",
                "blob backup blobstorage -> blobstoragebackups fs=backups full=false archive=false timestamps=true incremental=false",
                "fs retain backups_catalog keep=2",
                "fs retain backups keep=2",
                "blob retain blobstoragebackups keep=2",
                "hook post",
            ]
        );
        // The backup locations were created.
        assert!(dir.path().join("var/backups_catalog").is_dir());
        assert!(dir.path().join("var/blobstoragebackups").is_dir());
    }

    #[test]
    fn backup_fs_failure_stops_before_blobs_and_post_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::failing("fs backup Data.fs");
        let e = run(&cfg, BackupMode::Standard, &rec)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("fake failure")));
        assert_eq!(
            rec.calls().last().map(String::as_str),
            Some("fs backup Data.fs -> backups full=false quick=true gzip=true")
        );
        assert!(!rec
            .calls()
            .iter()
            .any(|c| c.starts_with("blob") || c == "hook post"));
    }

    #[test]
    fn backup_blob_failure_is_an_error_and_skips_post_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::failing("blob backup");
        assert!(run(&cfg, BackupMode::Standard, &rec).is_err());
        assert!(!rec
            .calls()
            .iter()
            .any(|c| c.contains("retain") || c == "hook post"));
    }

    #[test]
    fn backup_pre_command_failure_does_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::failing("hook pre");
        assert!(run(&cfg, BackupMode::Standard, &rec).is_err());
        assert_eq!(rec.calls(), ["hook pre"]);
        assert!(!dir.path().join("var/backups").exists());
    }

    #[test]
    fn backup_zip_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.enable_zipbackup = true;
            i.gzip = false;
            i.keep = 5;
            i.incremental_blobs = true;
            i.archive_blob = Some(false);
        });
        let rec = Recorder::default();
        assert!(run(&cfg, BackupMode::Zip, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "hook pre",
                "fs backup Data.fs -> zipbackups full=true quick=false gzip=true",
                "blob backup blobstorage -> blobstoragezips fs=zipbackups full=true archive=true timestamps=false incremental=false",
                "fs retain zipbackups keep=1",
                "blob retain blobstoragezips keep=1",
                "hook post",
            ]
        );
    }

    #[test]
    fn backup_snapshot_and_full_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
            i.archive_blob = Some(true);
            i.incremental_blobs = true;
        });
        let rec = Recorder::default();
        assert!(run(&cfg, BackupMode::Snapshot, &rec).is_ok());
        assert!(run(&cfg, BackupMode::Full, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "fs backup Data.fs -> snapshotbackups full=true quick=false gzip=true",
                "blob backup blobstorage -> blobstoragesnapshots fs=snapshotbackups full=true archive=true timestamps=true incremental=false",
                "fs retain snapshotbackups keep=2",
                "blob retain blobstoragesnapshots keep=2",
                "fs backup Data.fs -> backups full=true quick=false gzip=true",
                "blob backup blobstorage -> blobstoragebackups fs=backups full=true archive=true timestamps=true incremental=true",
                "fs retain backups keep=2",
                "blob retain blobstoragebackups keep=2",
            ]
        );
    }

    #[test]
    fn backup_only_blobs_skips_filestorage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.only_blobs = true;
            i.pre_command.clear();
            i.post_command.clear();
        });
        let rec = Recorder::default();
        assert!(run(&cfg, BackupMode::Standard, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "blob backup blobstorage -> blobstoragebackups fs= full=false archive=false timestamps=true incremental=false",
                "blob retain blobstoragebackups keep=2",
            ]
        );
    }
    /// A backup first removes the temporaries of a dead restore (under the
    /// storage lock), and refuses to back up while an interrupted swap is
    /// recorded and a process holds the lock.
    #[test]
    fn backup_cleans_up_after_a_dead_restore() {
        use rustix::fs::{flock, FlockOperation};
        let dir = tempfile::tempdir().expect("tempdir");
        let fsdir = dir.path().join("var/filestorage");
        assert!(std::fs::create_dir_all(fsdir.join(".crb-restore-dead/new")).is_ok());
        let cfg = config(dir.path(), |i| {
            i.pre_command.clear();
            i.post_command.clear();
        });
        let rec = Recorder::default();
        assert!(run(&cfg, BackupMode::Standard, &rec).is_ok());
        assert!(!fsdir.join(".crb-restore-dead").exists());
        assert!(fsdir.join("Data.fs.lock").is_file());

        // An intent record under a held lock: refused, nothing touched.
        let intent = fsdir.join(".crb-restore.intent");
        assert!(std::fs::write(&intent, "{}").is_ok());
        let Ok(holder) = std::fs::File::open(fsdir.join("Data.fs.lock")) else {
            return;
        };
        assert!(flock(&holder, FlockOperation::NonBlockingLockExclusive).is_ok());
        let rec = Recorder::default();
        let e = run(&cfg, BackupMode::Standard, &rec)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("An interrupted restore is recorded in"),
            "{e}"
        );
        assert!(rec.calls().is_empty());
        assert!(intent.exists());
    }
}

mod restore_tests {
    use super::*;
    use crate::config::RestoreDate;
    use std::fs;

    fn run(
        cfg: &BackupConfig,
        mode: RestoreMode,
        date: Option<&RestoreDate>,
        rec: &Recorder,
    ) -> Result<()> {
        restore(
            cfg,
            &RestoreRequest {
                date,
                ..RestoreRequest::new(mode)
            },
            &FakeFs(rec),
            &FakeBlobs(rec),
            &FakeHooks(rec),
        )
    }

    /// Live data: Data.fs, catalog.fs, their indexes, a blob file.
    fn live(dir: &Path) {
        let fsdir = dir.join("var/filestorage");
        let blobs = dir.join("var/blobstorage");
        assert!(fs::create_dir_all(&fsdir).is_ok());
        assert!(fs::create_dir_all(&blobs).is_ok());
        assert!(fs::write(fsdir.join("Data.fs"), "live").is_ok());
        assert!(fs::write(fsdir.join("Data.fs.index"), "live index").is_ok());
        assert!(fs::write(fsdir.join("catalog.fs"), "live catalog").is_ok());
        assert!(fs::write(blobs.join("old.txt"), "old blob").is_ok());
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["var", "var/filestorage"] {
            if let Ok(rd) = fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(".crb-restore-") {
                        out.push(n);
                    }
                }
            }
        }
        out
    }

    fn unchanged(dir: &Path) {
        assert_eq!(read(&dir.join("var/filestorage/Data.fs")), "live");
        assert_eq!(
            read(&dir.join("var/filestorage/Data.fs.index")),
            "live index"
        );
        assert_eq!(
            read(&dir.join("var/filestorage/catalog.fs")),
            "live catalog"
        );
        assert_eq!(read(&dir.join("var/blobstorage/old.txt")), "old blob");
        assert_eq!(leftovers(dir), Vec::<String>::new());
    }

    #[test]
    fn restore_checks_every_storage_then_writes_then_swaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::default();
        let date = RestoreDate::parse("2026-11-26-10").ok();
        assert!(run(&cfg, RestoreMode::Standard, date.as_ref(), &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "hook pre",
                "fs plan backups_catalog 2026-11-26-10-00-00",
                "fs plan backups 2026-11-26-10-00-00",
                "blob plan blobstoragebackups archive=false",
                "fs recover backups_catalog",
                "fs recover backups",
                "blob restore blobstoragebackups",
                "hook post",
            ]
        );
        let d = dir.path();
        assert_eq!(
            read(&d.join("var/filestorage/Data.fs")),
            "restored from backups"
        );
        assert_eq!(read(&d.join("var/filestorage/Data.fs.index")), "index");
        assert_eq!(
            read(&d.join("var/filestorage/catalog.fs")),
            "restored from backups_catalog"
        );
        assert_eq!(
            read(&d.join("var/blobstorage/restored.txt")),
            "from blobstoragebackups"
        );
        assert!(!d.join("var/blobstorage/old.txt").exists());
        assert_eq!(leftovers(d), Vec::<String>::new());
    }

    #[test]
    fn restore_missing_blob_backup_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::failing("blob plan");
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_err());
        assert!(!rec
            .calls()
            .iter()
            .any(|c| c.contains("recover") || c.contains("restore")));
        unchanged(dir.path());
    }

    #[test]
    fn restore_failure_while_writing_changes_nothing_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::failing("blob restore");
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_err());
        // Both filestorages were recovered into temporaries, then dropped.
        assert!(rec.calls().contains(&"fs recover backups".to_owned()));
        assert!(!rec.calls().contains(&"hook post".to_owned()));
        unchanged(dir.path());
    }

    #[test]
    fn restore_refused_while_a_zope_holds_the_lock() {
        use rustix::fs::{flock, FlockOperation};
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let lock = dir.path().join("var/filestorage/Data.fs.lock");
        assert!(fs::write(&lock, " 4242\n").is_ok());
        let Ok(holder) = fs::File::open(&lock) else {
            return;
        };
        assert!(flock(&holder, FlockOperation::NonBlockingLockExclusive).is_ok());
        let cfg = config(dir.path(), |_| {});
        let rec = Recorder::default();
        let e = run(&cfg, RestoreMode::Standard, None, &rec).err();
        assert!(matches!(e, Some(Error::StorageInUse { .. })), "{e:?}");
        assert_eq!(rec.calls(), ["hook pre"]);
        unchanged(dir.path());
    }

    #[test]
    fn restore_zip_prefers_archives_and_alt_uses_alt_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
            i.enable_zipbackup = true;
            i.alternative_restore_source = Some(crate::config::AltSource {
                key: "Data".into(),
                location: dir.path().join("alt-fs"),
                blob_location: Some(dir.path().join("alt-blobs")),
            });
        });
        let rec = Recorder::default();
        assert!(run(&cfg, RestoreMode::Zip, None, &rec).is_ok());
        assert!(run(&cfg, RestoreMode::Alt, None, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "fs plan zipbackups",
                "blob plan blobstoragezips archive=true",
                "fs recover zipbackups",
                "blob restore blobstoragezips",
                "fs plan alt-fs",
                "blob plan alt-blobs archive=false",
                "fs recover alt-fs",
                "blob restore alt-blobs",
            ]
        );
    }

    #[test]
    fn restore_creates_missing_filestorage_dir_and_blobstorage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
        });
        // The empty var/ of a fresh server.
        assert!(fs::create_dir(dir.path().join("var")).is_ok());
        let rec = Recorder::default();
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_ok());
        let d = dir.path();
        assert_eq!(
            read(&d.join("var/filestorage/Data.fs")),
            "restored from backups"
        );
        assert_eq!(
            read(&d.join("var/blobstorage/restored.txt")),
            "from blobstoragebackups"
        );
    }

    #[test]
    fn restore_refuses_a_blob_storage_whose_directory_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let d = dir.path();
        let typo = d.join("vra/blobstorage");
        let cfg = config(d, |i| i.blob_storage = Some(typo.clone()));
        let rec = Recorder::default();
        let e = run(&cfg, RestoreMode::Standard, None, &rec)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "Cannot restore blobs to {}: its directory {} does not exist. Check blob_storage, or create {} first. Nothing was changed.",
                typo.display(),
                d.join("vra").display(),
                d.join("vra").display()
            ))
        );
        assert_eq!(rec.calls(), ["hook pre"]);
        assert!(!d.join("vra").exists());
        unchanged(d);
        // No lock file either: nothing was touched.
        assert!(!d.join("var/filestorage/Data.fs.lock").exists());
    }

    #[test]
    fn restore_creates_a_blob_storage_beside_its_missing_datafs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let fsdir = d.join("var/filestorage");
        let cfg = config(d, |i| {
            i.additional_filestorages.clear();
            i.blob_storage = Some(fsdir.join("blobstorage"));
        });
        let rec = Recorder::default();
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_ok());
        assert_eq!(read(&fsdir.join("Data.fs")), "restored from backups");
        assert!(fsdir.join("blobstorage/restored.txt").is_file());
        // Without the filestorage restore nothing creates that directory.
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.blob_storage = Some(dir.path().join("var/filestorage/blobstorage"));
            i.only_blobs = true;
        });
        let rec = Recorder::default();
        let e = run(&cfg, RestoreMode::Standard, None, &rec);
        assert!(e.is_err_and(|e| e.to_string().starts_with("Cannot restore blobs to ")));
        assert!(!dir.path().join("var").exists());
    }

    #[test]
    fn restore_only_blobs_leaves_filestorage_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        let cfg = config(dir.path(), |i| {
            i.only_blobs = true;
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
        });
        let rec = Recorder::default();
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_ok());
        assert_eq!(
            rec.calls(),
            [
                "blob plan blobstoragebackups archive=false",
                "blob restore blobstoragebackups"
            ]
        );
        assert_eq!(read(&dir.path().join("var/filestorage/Data.fs")), "live");
    }

    /// Backups of the main storage at three dates; the blob backup of
    /// `missing` is absent.
    fn dated_backups(dir: &Path, dates: &[&str], missing: &str) {
        let var = dir.join("var");
        for d in dates {
            assert!(fs::create_dir_all(var.join("backups")).is_ok());
            assert!(fs::write(var.join(format!("backups/{d}.fsz")), "").is_ok());
            if *d != missing {
                let b = var.join(format!("blobstoragebackups/blobstorage.{d}"));
                assert!(fs::create_dir_all(b).is_ok());
            }
        }
    }

    fn plain(dir: &Path) -> BackupConfig {
        config(dir, |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
        })
    }

    const D1: &str = "2026-01-01-00-00-01";
    const D2: &str = "2026-01-01-00-00-02";
    const D3: &str = "2026-01-01-00-00-03";

    /// The newest filestorage backup has no blob backup: refused before
    /// anything is written, naming the date it needs and the newest date
    /// that has both (the old code restored the older blob backup with the
    /// newer Data.fs).
    #[test]
    fn restore_refuses_the_blob_backup_of_another_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        dated_backups(dir.path(), &[D1, D2, D3], D3);
        let cfg = plain(dir.path());
        let rec = Recorder::default();
        let e = run(&cfg, RestoreMode::Standard, None, &rec).err();
        let Some(Error::BlobBackupMismatch {
            needed,
            newest_pair,
            ..
        }) = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((needed.as_str(), newest_pair.as_deref()), (D3, Some(D2)));
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.starts_with(&format!("No complete blob backup of {D3} ")),
            "{msg}"
        );
        assert!(msg.contains(&format!("bin/restore {D2}")), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(!rec.calls().iter().any(|c| c.contains("recover")));
        assert_eq!(read(&dir.path().join("var/filestorage/Data.fs")), "live");
        assert_eq!(
            read(&dir.path().join("var/blobstorage/old.txt")),
            "old blob"
        );

        // The suggested date restores, with the blob backup of that date.
        let rec = Recorder::default();
        let d2 = RestoreDate::parse(D2).ok();
        assert!(run(&cfg, RestoreMode::Standard, d2.as_ref(), &rec).is_ok());
        assert!(rec
            .calls()
            .contains(&format!("blob exact blobstoragebackups {D2}")));
        assert!(!rec.calls().iter().any(|c| c.starts_with("blob plan")));
    }

    /// A restore date whose chain ends at a date without blob backup: the
    /// suggestion is at or before the requested date.
    #[test]
    fn restore_suggestion_is_not_after_the_requested_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        dated_backups(dir.path(), &[D1, D2, D3], D2);
        let cfg = plain(dir.path());
        let d = RestoreDate::parse("2026-01-01-00-00-02").ok();
        let e = run(
            &cfg,
            RestoreMode::Standard,
            d.as_ref(),
            &Recorder::default(),
        )
        .err();
        assert!(
            matches!(&e, Some(Error::BlobBackupMismatch { needed, newest_pair: Some(p), .. })
                if needed == D2 && p == D1),
            "{e:?}"
        );
        // Nothing at all to pair with.
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        dated_backups(dir.path(), &[D1], D1);
        assert!(fs::create_dir_all(dir.path().join("var/blobstoragebackups/x")).is_ok());
        let e = run(
            &plain(dir.path()),
            RestoreMode::Standard,
            None,
            &Recorder::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("No date has both"), "{e}");
    }

    /// `--accept-blob-mismatch`: the older blob backup is restored.
    #[test]
    fn restore_accepts_a_mismatch_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        dated_backups(dir.path(), &[D1, D2], D2);
        let cfg = plain(dir.path());
        let rec = Recorder::default();
        let r = restore(
            &cfg,
            &RestoreRequest {
                accept_blob_mismatch: true,
                ..RestoreRequest::new(RestoreMode::Standard)
            },
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            rec.calls(),
            [
                "fs plan backups",
                &format!("blob exact blobstoragebackups {D2}"),
                "blob plan blobstoragebackups archive=false",
                "fs recover backups",
                "blob restore blobstoragebackups",
            ]
        );
    }

    /// Numbered blob backups and only_blobs keep the selection by date.
    #[test]
    fn restore_without_timestamps_selects_by_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        live(dir.path());
        dated_backups(dir.path(), &[D1, D2], D2);
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
            i.blob_timestamps = Some(false);
        });
        let rec = Recorder::default();
        assert!(run(&cfg, RestoreMode::Standard, None, &rec).is_ok());
        assert!(!rec.calls().iter().any(|c| c.starts_with("blob exact")));
    }
}

mod dry_run_tests {
    use super::*;
    use std::fs;

    /// Every file and directory under `dir`, hidden ones included.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
                if p.is_dir() {
                    todo.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// A dry-run backup plans through the engines' `plan_*` methods only:
    /// no hook, no backup, no retention, and no directory or lock file.
    #[test]
    fn dry_run_backup_only_plans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        for blobdir in cfg.storages.iter().filter_map(|s| s.blobdir.as_deref()) {
            assert!(fs::create_dir_all(blobdir).is_ok());
        }
        let before = tree(dir.path());
        let rec = Recorder::default();
        let r = backup(
            &cfg,
            BackupMode::Standard,
            true,
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(tree(dir.path()), before);
        assert_eq!(
            rec.calls(),
            [
                "fs plan backup backups_catalog",
                "fs plan backup backups",
                "blob plan backup blobstoragebackups fs_stamp=2026-11-30-10-00-00",
                "fs plan retain backups_catalog",
                "fs plan retain backups",
                "blob plan retain blobstoragebackups",
            ]
        );
    }

    /// A dry-run restore runs the check phase and stops before writing:
    /// no hook, no recover, no lock file, no temporaries.
    #[test]
    fn dry_run_restore_checks_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |_| {});
        let var = dir.path().join("var");
        assert!(fs::create_dir_all(var.join("filestorage")).is_ok());
        assert!(fs::create_dir_all(var.join("blobstorage")).is_ok());
        assert!(fs::write(var.join("filestorage/Data.fs"), "live").is_ok());
        let before = tree(dir.path());
        let rec = Recorder::default();
        let r = restore(
            &cfg,
            &RestoreRequest {
                dry_run: true,
                ..RestoreRequest::new(RestoreMode::Standard)
            },
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(tree(dir.path()), before);
        assert_eq!(
            rec.calls(),
            [
                "fs plan backups_catalog",
                "fs plan backups",
                "blob plan blobstoragebackups archive=false",
            ]
        );
    }

    /// `--target`: the restore writes into the target directory (created),
    /// takes the target's lock, and leaves the live files alone even while
    /// their lock is held.
    #[cfg(unix)]
    #[test]
    fn target_restore_leaves_the_live_site_alone() {
        use rustix::fs::{flock, FlockOperation};
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), |i| {
            i.additional_filestorages.clear();
            i.pre_command.clear();
            i.post_command.clear();
        });
        let var = dir.path().join("var");
        assert!(fs::create_dir_all(var.join("filestorage")).is_ok());
        assert!(fs::create_dir_all(var.join("blobstorage")).is_ok());
        assert!(fs::write(var.join("filestorage/Data.fs"), "live").is_ok());
        let lock = var.join("filestorage/Data.fs.lock");
        assert!(fs::write(&lock, "").is_ok());
        let Ok(holder) = fs::File::open(&lock) else {
            return;
        };
        assert!(flock(&holder, FlockOperation::NonBlockingLockExclusive).is_ok());
        let live_before = tree(&var);
        let target = dir.path().join("copy");
        let rec = Recorder::default();
        let r = restore(
            &cfg,
            &RestoreRequest {
                target: Some(&target),
                ..RestoreRequest::new(RestoreMode::Standard)
            },
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(tree(&var), live_before);
        assert_eq!(
            fs::read_to_string(var.join("filestorage/Data.fs")).ok(),
            Some("live".to_owned())
        );
        assert_eq!(
            fs::read_to_string(target.join("Data.fs")).ok(),
            Some("restored from backups".to_owned())
        );
        assert!(target.join("blobstorage/restored.txt").is_file());
        // The same restore onto the live site is refused by the lock.
        let e = restore(
            &cfg,
            &RestoreRequest::new(RestoreMode::Standard),
            &FakeFs(&rec),
            &FakeBlobs(&rec),
            &FakeHooks(&rec),
        );
        assert!(matches!(e, Err(Error::StorageInUse { .. })), "{e:?}");
        drop(holder);
    }
}
