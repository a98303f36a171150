//! Fake engines and hooks that record every call, for the orchestration
//! tests. The fake filestorage engine writes `restored from <repository>`
//! (and an index) on recover; the fake blob engine writes one file.

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

impl FileStorageEngine for FakeFs<'_> {
    type Plan = PathBuf;
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
    fn plan_recover(&self, r: &FsRecover<'_>) -> Result<PathBuf> {
        let date = r.date.map(ToString::to_string).unwrap_or_default();
        self.0.record(
            format!("fs plan {} {date}", name(r.repository))
                .trim_end()
                .to_owned(),
        )?;
        Ok(r.repository.to_path_buf())
    }
    fn recover(&self, plan: &PathBuf, output: &Path) -> Result<()> {
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
    fn plan_restore(&self, r: &BlobRestore<'_>) -> Result<PathBuf> {
        self.0.record(format!(
            "blob plan {} archive={}",
            name(r.source),
            r.settings.archive
        ))?;
        Ok(r.source.to_path_buf())
    }
    fn restore(&self, plan: &PathBuf, target: &Path) -> Result<()> {
        self.0.record(format!("blob restore {}", name(plan)))?;
        let f = target.join("restored.txt");
        std::fs::write(&f, format!("from {}", name(plan))).at(&f)
    }
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

    fn run(cfg: &BackupConfig, mode: BackupMode, rec: &Recorder) -> Result<()> {
        backup(cfg, mode, &FakeFs(rec), &FakeBlobs(rec), &FakeHooks(rec))
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
            i.archive_blob = false;
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
            i.archive_blob = true;
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
            mode,
            date,
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
}
