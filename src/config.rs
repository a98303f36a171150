//! `BackupConfig`: the typed, validated configuration of one buildout part.
//!
//! Owns every semantic rule about the recipe's options: defaults (those of
//! collective.recipe.backup 6.0.0, see README.rst (Options)), the buildout-time
//! errors and warnings with their texts (§4.1), number validation, the
//! seed's `additional_filestorages` (§1.3), the single-line
//! `alternative_restore_source`, the restore date argument (§2.2), and which
//! scripts a part generates (§2.1).
//!
//! It does not read buildout: `options.py` turns buildout strings into
//! primitives and resolves paths (`~`, `$VAR`, relative to the buildout
//! directory or the location prefix) and hands them over as a
//! [`ConfigInput`]. The generated scripts build the same `BackupConfig` again
//! at run time, so buildout time and run time share this one validator.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};

use crate::error::{Error, Result};

/// The storage name of the main filestorage (Zope's root database `1`).
pub const MAIN_STORAGE: &str = "1";

/// What `options.py` hands over: buildout options as primitives, paths
/// already resolved. `None` means "not set": the default applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInput {
    /// The buildout part name; names the default directories and scripts.
    pub part_name: String,
    /// The var directory (from a Zope part, else `<buildout_dir>/var`).
    pub var_dir: PathBuf,
    /// `locationprefix`; the six locations default to it, else to `var_dir`.
    pub location_prefix: Option<PathBuf>,
    /// `datafs`; default `<var_dir>/filestorage/Data.fs`.
    pub datafs: Option<PathBuf>,
    /// `blob_storage`.
    pub blob_storage: Option<PathBuf>,
    /// The `blob-storage` spelling, when set too.
    pub blob_storage_alias: Option<PathBuf>,
    /// The blob directory of the first Zope/ZEO part (resolved as its recipe
    /// does): the default when neither spelling is set.
    pub zope_blob_storage: Option<PathBuf>,
    /// `location`.
    pub location: Option<PathBuf>,
    /// `snapshotlocation`.
    pub snapshotlocation: Option<PathBuf>,
    /// `ziplocation`.
    pub ziplocation: Option<PathBuf>,
    /// `blobbackuplocation`.
    pub blobbackuplocation: Option<PathBuf>,
    /// `blobsnapshotlocation`.
    pub blobsnapshotlocation: Option<PathBuf>,
    /// `blobziplocation`.
    pub blobziplocation: Option<PathBuf>,
    /// `keep`: full backups to keep, 0 = all.
    pub keep: u32,
    /// `keep_blob_days`.
    pub keep_blob_days: u32,
    /// `full`.
    pub full: bool,
    /// `debug`.
    pub debug: bool,
    /// `only_blobs`.
    pub only_blobs: bool,
    /// `backup_blobs`.
    pub backup_blobs: bool,
    /// `use_rsync` (kept for compatibility: the blob engine needs no rsync).
    pub use_rsync: bool,
    /// `rsync_options`.
    pub rsync_options: String,
    /// `rsync_hard_links_on_first_copy`.
    pub rsync_hard_links_on_first_copy: bool,
    /// `archive_blob`; `None` when not set (default false).
    pub archive_blob: Option<bool>,
    /// The seed's `gzip_blob`, a deprecated spelling of `archive_blob`.
    pub gzip_blob: Option<bool>,
    /// `compress_blob`.
    pub compress_blob: bool,
    /// `blob_timestamps`; `None` when not set (default true).
    pub blob_timestamps: Option<bool>,
    /// `incremental_blobs`.
    pub incremental_blobs: bool,
    /// `gzip` (seed): compressed repozo files, default true.
    pub gzip: bool,
    /// `quick` (seed): quick incremental backups, default true.
    pub quick: bool,
    /// `enable_snapshotrestore`.
    pub enable_snapshotrestore: bool,
    /// `enable_zipbackup`.
    pub enable_zipbackup: bool,
    /// `enable_fullbackup` (seed).
    pub enable_fullbackup: bool,
    /// `pre_command`.
    pub pre_command: String,
    /// `post_command`.
    pub post_command: String,
    /// `additional_filestorages` (seed), one entry per line.
    pub additional_filestorages: Vec<AdditionalStorage>,
    /// `alternative_restore_source`, parsed by
    /// [`parse_alternative_restore_source`] and with its paths resolved.
    pub alternative_restore_source: Option<AltSource>,
    /// `offsite`: `s3://BUCKET[/PREFIX]`, where backups are pushed.
    pub offsite: Option<String>,
    /// `offsite_endpoint`: the store's URL, for stores that are not AWS.
    pub offsite_endpoint: Option<String>,
    /// `offsite_region`.
    pub offsite_region: Option<String>,
    /// `offsite_keep`: full backups kept in the store; default `keep`.
    pub offsite_keep: Option<u32>,
    /// `offsite_jobs`: parallel transfers; default 8.
    pub offsite_jobs: Option<u32>,
    /// `offsite_credentials`: an AWS shared credentials file.
    pub offsite_credentials: Option<PathBuf>,
}

impl Default for ConfigInput {
    /// The defaults of collective.recipe.backup 6.0.0 for a part `backup`
    /// in a buildout whose var directory is `var`.
    fn default() -> Self {
        ConfigInput {
            part_name: "backup".to_owned(),
            var_dir: PathBuf::from("var"),
            location_prefix: None,
            datafs: None,
            blob_storage: None,
            blob_storage_alias: None,
            zope_blob_storage: None,
            location: None,
            snapshotlocation: None,
            ziplocation: None,
            blobbackuplocation: None,
            blobsnapshotlocation: None,
            blobziplocation: None,
            keep: 2,
            keep_blob_days: 14,
            full: false,
            debug: false,
            only_blobs: false,
            backup_blobs: true,
            use_rsync: true,
            rsync_options: String::new(),
            rsync_hard_links_on_first_copy: false,
            archive_blob: None,
            gzip_blob: None,
            compress_blob: false,
            blob_timestamps: None,
            incremental_blobs: false,
            gzip: true,
            quick: true,
            enable_snapshotrestore: true,
            enable_zipbackup: false,
            enable_fullbackup: false,
            pre_command: String::new(),
            post_command: String::new(),
            additional_filestorages: Vec::new(),
            alternative_restore_source: None,
            offsite: None,
            offsite_endpoint: None,
            offsite_region: None,
            offsite_keep: None,
            offsite_jobs: None,
            offsite_credentials: None,
        }
    }
}

/// One line of `additional_filestorages`: `name [datafs_path [blobdir]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalStorage {
    /// The storage name (e.g. `catalog`); suffixes every location `_<name>`.
    pub name: String,
    /// Default `<dir of the main datafs>/<name>.fs`.
    pub datafs: Option<PathBuf>,
    /// The storage's blob directory; without one its blobs are not backed up.
    pub blobdir: Option<PathBuf>,
}

/// The one line of `alternative_restore_source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltSource {
    /// The key as written (`Data` or `1`), for messages.
    pub key: String,
    /// The filestorage backup directory to restore from.
    pub location: PathBuf,
    /// The blob backup directory to restore from.
    pub blob_location: Option<PathBuf>,
}

/// One filestorage with everything resolved: source, targets, locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// `1` for the main storage, else the additional storage's name.
    pub name: String,
    /// The live `Data.fs` (backup source, restore target).
    pub datafs: PathBuf,
    /// The live blob directory, when its blobs are backed up.
    pub blobdir: Option<PathBuf>,
    /// repozo repository of `bin/backup` (and `bin/fullbackup`).
    pub backup_location: PathBuf,
    /// repozo repository of `bin/snapshotbackup`.
    pub snapshot_location: PathBuf,
    /// repozo repository of `bin/zipbackup`.
    pub zip_location: PathBuf,
    /// Blob backups of `bin/backup` (when `blobdir` is set).
    pub blob_backup_location: Option<PathBuf>,
    /// Blob snapshots.
    pub blob_snapshot_location: Option<PathBuf>,
    /// Blob archive of `bin/zipbackup`.
    pub blob_zip_location: Option<PathBuf>,
    /// `alternative_restore_source` filestorage backups.
    pub alt_location: Option<PathBuf>,
    /// `alternative_restore_source` blob backups.
    pub blob_alt_location: Option<PathBuf>,
}

/// The entry functions of `collective.recipe.backup.main`, one per script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `backup_main`.
    Backup,
    /// `fullbackup_main`.
    FullBackup,
    /// `zipbackup_main`.
    ZipBackup,
    /// `snapshot_main`.
    Snapshot,
    /// `restore_main`.
    Restore,
    /// `zip_restore_main`.
    ZipRestore,
    /// `snapshot_restore_main`.
    SnapshotRestore,
    /// `alt_restore_main`.
    AltRestore,
    /// `offsite_main`.
    Offsite,
}

impl Entry {
    /// The function name in `collective.recipe.backup.main`.
    #[must_use]
    pub fn function(self) -> &'static str {
        match self {
            Entry::Backup => "backup_main",
            Entry::FullBackup => "fullbackup_main",
            Entry::ZipBackup => "zipbackup_main",
            Entry::Snapshot => "snapshot_main",
            Entry::Restore => "restore_main",
            Entry::ZipRestore => "zip_restore_main",
            Entry::SnapshotRestore => "snapshot_restore_main",
            Entry::AltRestore => "alt_restore_main",
            Entry::Offsite => "offsite_main",
        }
    }
}

/// The validated configuration of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// The part name.
    pub part_name: String,
    /// Every storage in processing order: additional storages in config
    /// order first, the main storage last (the seed's order: a catalog
    /// slightly out of sync hurts less than the reverse).
    pub storages: Vec<Storage>,
    /// Full backups to keep (0 = all).
    pub keep: u32,
    /// Days of non-full blob backups to keep when there are no fs backups.
    pub keep_blob_days: u32,
    /// `bin/backup` always makes full backups.
    pub full: bool,
    /// Debug logging (and verbose engines).
    pub debug: bool,
    /// Blobs only, no filestorage.
    pub only_blobs: bool,
    /// Back up and restore blobs.
    pub backup_blobs: bool,
    /// Kept for compatibility; see [`ConfigInput::use_rsync`].
    pub use_rsync: bool,
    /// Kept for compatibility; see [`ConfigInput::rsync_options`].
    pub rsync_options: String,
    /// Hard-link the first blob backup to the live blobs.
    pub rsync_hard_links_on_first_copy: bool,
    /// Blob backups as tar archives.
    pub archive_blob: bool,
    /// Gzip the blob archives.
    pub compress_blob: bool,
    /// Timestamped blob backup names (the effective value).
    pub blob_timestamps: bool,
    /// Incremental blob archives.
    pub incremental_blobs: bool,
    /// Compressed repozo files (`.fsz`).
    pub gzip: bool,
    /// Quick incremental filestorage backups.
    pub quick: bool,
    /// Generate the snapshotrestore script.
    pub enable_snapshotrestore: bool,
    /// Where backups are pushed after each backup run (`offsite`).
    pub offsite: Option<crate::offsite::OffsiteConfig>,
    /// Generate zipbackup and ziprestore.
    pub enable_zipbackup: bool,
    /// Generate fullbackup.
    pub enable_fullbackup: bool,
    /// Shell command before backup and restore.
    pub pre_command: String,
    /// Shell command after a successful backup or restore.
    pub post_command: String,
    /// Buildout-time warnings (texts for the admin), in order.
    pub warnings: Vec<String>,
}

fn suffixed(path: &Path, name: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("_");
    s.push(name);
    PathBuf::from(s)
}

/// A parsed option line before path resolution: a name (or key) and up to
/// two paths as written.
pub type RawEntry = (String, Option<String>, Option<String>);

/// Parse a count option (`keep`, `keep_blob_days`): a whole number ≥ 0.
///
/// # Errors
/// [`Error::Config`] naming the option and the value, e.g. for `two`.
pub fn parse_count(option: &str, text: &str) -> Result<u32> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "{option} must be a whole number (0 or more), not '{text}'."
        )));
    }
    t.parse::<u32>()
        .map_err(|_| Error::Config(format!("{option} is too large: '{text}'.")))
}

/// Whether `name` can name an additional storage: it suffixes directory
/// names (`backups_<name>`), so no path separators, not `.` or `..`, and not
/// the main storage's `1`.
pub fn is_additional_storage_name(name: &str) -> bool {
    !(name.is_empty()
        || name.contains(['/', '\\'])
        || name == "."
        || name == ".."
        || name == MAIN_STORAGE)
}

/// Parse the seed's `additional_filestorages`: one `name [datafs [blobdir]]`
/// per non-empty line; `#` starts a comment line. Paths are returned as
/// written, for the caller to resolve.
///
/// # Errors
/// [`Error::Config`] for a line with more than three words, a name that is
/// not a plain name, or a duplicated name.
pub fn parse_additional_filestorages(text: &str) -> Result<Vec<RawEntry>> {
    let mut out: Vec<RawEntry> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        if words.len() > 3 {
            return Err(Error::Config(format!(
                "additional_filestorages line '{}' has a wrong format. Should be: 'storage-name', optionally followed by a filestorage path and a blobstorage path.",
                line.trim()
            )));
        }
        let name = words[0];
        if !is_additional_storage_name(name) {
            return Err(Error::Config(format!(
                "additional_filestorages: '{name}' is not a valid storage name."
            )));
        }
        if out.iter().any(|(n, _, _)| n == name) {
            return Err(Error::Config(format!(
                "additional_filestorages: storage {name} duplicated."
            )));
        }
        out.push((
            name.to_owned(),
            words.get(1).map(|s| (*s).to_owned()),
            words.get(2).map(|s| (*s).to_owned()),
        ));
    }
    Ok(out)
}

/// Parse `alternative_restore_source`: exactly one non-comment line
/// `Data|1 <fs-backup-dir> [<blob-backup-dir>]`. Returns the key and the
/// paths as written, or `None` when the option is empty.
///
/// # Errors
/// [`Error::Config`] with the texts of README.rst (Options).
pub fn parse_alternative_restore_source(
    text: &str,
) -> Result<Option<(String, String, Option<String>)>> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .collect();
    let line = match lines.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => {
            return Err(Error::Config(
                "Only one alternative_restore_source line is supported.".to_owned(),
            ))
        }
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    if !(2..=3).contains(&words.len()) {
        return Err(Error::Config(format!(
            "alternative_restore_source line '{}' has a wrong format. Should be: 'storage-name filestorage-backup-path', optionally followed by a blobstorage-backup-path.",
            line.trim()
        )));
    }
    if words[0] != "Data" && words[0] != MAIN_STORAGE {
        return Err(Error::Config(format!(
            "alternative_restore_source key '{}' unknown. Expected 1 or Data.",
            words[0]
        )));
    }
    Ok(Some((
        words[0].to_owned(),
        words[1].to_owned(),
        words.get(2).map(|s| (*s).to_owned()),
    )))
}

impl BackupConfig {
    /// Validate `input` and derive every storage and location.
    ///
    /// # Errors
    /// [`Error::Config`] with the buildout-time texts of README.rst (Options).
    pub fn new(input: ConfigInput) -> Result<Self> {
        let ConfigInput {
            part_name,
            var_dir,
            location_prefix,
            datafs,
            blob_storage,
            blob_storage_alias,
            zope_blob_storage,
            location,
            snapshotlocation,
            ziplocation,
            blobbackuplocation,
            blobsnapshotlocation,
            blobziplocation,
            keep,
            keep_blob_days,
            full,
            debug,
            only_blobs,
            backup_blobs,
            use_rsync,
            rsync_options,
            rsync_hard_links_on_first_copy,
            archive_blob,
            gzip_blob,
            compress_blob,
            blob_timestamps,
            incremental_blobs,
            gzip,
            quick,
            enable_snapshotrestore,
            enable_zipbackup,
            enable_fullbackup,
            pre_command,
            post_command,
            additional_filestorages,
            alternative_restore_source,
            offsite,
            offsite_endpoint,
            offsite_region,
            offsite_keep,
            offsite_jobs,
            offsite_credentials,
        } = input;
        let mut warnings = Vec::new();

        // An explicit spelling wins over what a Zope/ZEO part says.
        let blob_storage = match (blob_storage, blob_storage_alias) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Config(
                    "Both blob_storage and blob-storage have been set. Please pick one.".to_owned(),
                ))
            }
            (a, b) => a.or(b).or(zope_blob_storage),
        };
        let archive_blob = match (archive_blob, gzip_blob) {
            (archive, None) => archive.unwrap_or(false),
            (archive, Some(gzip)) => {
                warnings.push(
                    "gzip_blob is deprecated: it is an alias of archive_blob. Please rename it to archive_blob."
                        .to_owned(),
                );
                match archive {
                    Some(a) => {
                        if a != gzip {
                            warnings.push(
                                "Both gzip_blob and archive_blob are set; using archive_blob."
                                    .to_owned(),
                            );
                        }
                        a
                    }
                    None => gzip,
                }
            }
        };
        if !backup_blobs && only_blobs {
            return Err(Error::Config(
                "Cannot have backup_blobs false and only_blobs true.".to_owned(),
            ));
        }
        if !backup_blobs && enable_zipbackup {
            return Err(Error::Config(
                "Cannot have backup_blobs false and enable_zipbackup true. zipbackup is useless without blobs."
                    .to_owned(),
            ));
        }
        if blob_timestamps == Some(false) && incremental_blobs {
            return Err(Error::Config(
                "Cannot have blob_timestamps false and incremental_blobs true.".to_owned(),
            ));
        }
        if backup_blobs && blob_storage.is_none() {
            return Err(Error::Config(format!(
                "No blob_storage found. You must specify one. To ignore this, set 'backup_blobs = false' in the [{part_name}] section."
            )));
        }
        if blob_timestamps == Some(false) {
            warnings.push(
                "You have disabled blob_timestamps. Backups without timestamps cannot be matched to filestorage backups by date; support for writing them may be dropped in a later version. See https://github.com/collective/collective.recipe.backup/issues/65"
                    .to_owned(),
            );
        }
        if backup_blobs && incremental_blobs && !archive_blob {
            warnings
                .push("incremental_blobs has no effect without archive_blob = true.".to_owned());
        }
        if backup_blobs && compress_blob && !archive_blob {
            warnings.push("compress_blob has no effect without archive_blob = true.".to_owned());
        }

        // Default directory names (see docs/scripts.rst).
        let prefix = location_prefix.unwrap_or_else(|| var_dir.clone());
        let names: [&str; 6] = if part_name == "backup" {
            [
                "backups",
                "snapshotbackups",
                "zipbackups",
                "blobstoragebackups",
                "blobstoragesnapshots",
                "blobstoragezips",
            ]
        } else {
            [
                "s",
                "-snapshots",
                "-zips",
                "-blobstorages",
                "-blobstoragesnapshots",
                "-blobstoragezips",
            ]
        };
        let default = |i: usize| -> PathBuf {
            if part_name == "backup" {
                prefix.join(names[i])
            } else {
                prefix.join(format!("{part_name}{}", names[i]))
            }
        };
        let location = location.unwrap_or_else(|| default(0));
        let snapshotlocation = snapshotlocation.unwrap_or_else(|| default(1));
        let ziplocation = ziplocation.unwrap_or_else(|| default(2));
        let blobbackuplocation = blobbackuplocation.unwrap_or_else(|| default(3));
        let blobsnapshotlocation = blobsnapshotlocation.unwrap_or_else(|| default(4));
        let blobziplocation = blobziplocation.unwrap_or_else(|| default(5));

        // Distinct locations: compared after resolution, so `var/a` and
        // `${buildout:directory}/var/a` are caught too (6.0 compared raw
        // strings).
        let all = [
            ("blobbackuplocation", &blobbackuplocation),
            ("blobsnapshotlocation", &blobsnapshotlocation),
            ("blobziplocation", &blobziplocation),
            ("location", &location),
            ("snapshotlocation", &snapshotlocation),
            ("ziplocation", &ziplocation),
        ];
        let mut seen: BTreeMap<&Path, usize> = BTreeMap::new();
        for (_, p) in &all {
            *seen.entry(p.as_path()).or_default() += 1;
        }
        if seen.values().any(|n| *n > 1) {
            let lines: Vec<String> = all
                .iter()
                .map(|(k, v)| format!("{k} = {}", v.display()))
                .collect();
            return Err(Error::Config(format!(
                "These must be distinct locations:\n{}",
                lines.join("\n")
            )));
        }

        let datafs = datafs.unwrap_or_else(|| var_dir.join("filestorage").join("Data.fs"));
        let blobdir = if backup_blobs { blob_storage } else { None };

        let alt = match alternative_restore_source {
            None => None,
            Some(alt) => {
                if !additional_filestorages.is_empty() {
                    return Err(Error::Config(
                        "alternative_restore_source cannot be combined with additional_filestorages: it names only the main storage (Data)."
                            .to_owned(),
                    ));
                }
                match (&blobdir, &alt.blob_location) {
                    (Some(_), None) => {
                        return Err(Error::Config(format!(
                            "alternative_restore_source key '{}' is missing a blobdir.",
                            alt.key
                        )))
                    }
                    (None, Some(b)) => {
                        return Err(Error::Config(format!(
                            "alternative_restore_source key '{}' specifies blobdir '{}' but the original storage has no blobstorage.",
                            alt.key,
                            b.display()
                        )))
                    }
                    _ => {}
                }
                Some(alt)
            }
        };

        let mut storages = Vec::with_capacity(additional_filestorages.len() + 1);
        let fs_dir = datafs.parent().map(Path::to_path_buf).unwrap_or_default();
        for extra in additional_filestorages {
            let name = extra.name;
            if storages.iter().any(|s: &Storage| s.name == name) {
                return Err(Error::Config(format!(
                    "additional_filestorages: storage {name} duplicated."
                )));
            }
            let blobdir = if backup_blobs { extra.blobdir } else { None };
            let has_blobs = blobdir.is_some();
            storages.push(Storage {
                datafs: extra
                    .datafs
                    .unwrap_or_else(|| fs_dir.join(format!("{name}.fs"))),
                blobdir,
                backup_location: suffixed(&location, &name),
                snapshot_location: suffixed(&snapshotlocation, &name),
                zip_location: suffixed(&ziplocation, &name),
                blob_backup_location: has_blobs.then(|| suffixed(&blobbackuplocation, &name)),
                blob_snapshot_location: has_blobs.then(|| suffixed(&blobsnapshotlocation, &name)),
                blob_zip_location: has_blobs.then(|| suffixed(&blobziplocation, &name)),
                alt_location: None,
                blob_alt_location: None,
                name,
            });
        }
        let has_blobs = blobdir.is_some();
        let (alt_location, blob_alt_location) = match alt {
            Some(a) => (Some(a.location), a.blob_location),
            None => (None, None),
        };
        storages.push(Storage {
            name: MAIN_STORAGE.to_owned(),
            datafs,
            blobdir,
            backup_location: location,
            snapshot_location: snapshotlocation,
            zip_location: ziplocation,
            blob_backup_location: has_blobs.then_some(blobbackuplocation),
            blob_snapshot_location: has_blobs.then_some(blobsnapshotlocation),
            blob_zip_location: has_blobs.then_some(blobziplocation),
            alt_location,
            blob_alt_location,
        });
        let mut datafs_seen: Vec<&Path> = Vec::new();
        let mut blobdir_seen: Vec<&Path> = Vec::new();
        for s in &storages {
            if datafs_seen.contains(&s.datafs.as_path()) {
                return Err(Error::Config(format!(
                    "Two storages use the same filestorage {}.",
                    s.datafs.display()
                )));
            }
            datafs_seen.push(&s.datafs);
            if let Some(b) = s.blobdir.as_deref() {
                if blobdir_seen.contains(&b) {
                    return Err(Error::Config(format!(
                        "Two storages use the same blobstorage {}.",
                        b.display()
                    )));
                }
                blobdir_seen.push(b);
            }
        }

        let offsite = crate::offsite::OffsiteConfig::new(
            crate::offsite::OffsiteInput {
                url: offsite,
                endpoint: offsite_endpoint,
                region: offsite_region,
                keep: offsite_keep.unwrap_or(keep),
                jobs: offsite_jobs,
                credentials: offsite_credentials,
            },
            &mut warnings,
        )?;
        if offsite.is_some()
            && backup_blobs
            && !(blob_timestamps.unwrap_or(true) || incremental_blobs)
        {
            return Err(Error::Config(
                "offsite needs dated blob backups: numbered ones (blob_timestamps = false) change names at every backup. Remove blob_timestamps = false."
                    .to_owned(),
            ));
        }

        Ok(BackupConfig {
            part_name,
            storages,
            keep,
            keep_blob_days,
            full,
            debug,
            only_blobs,
            backup_blobs,
            use_rsync,
            rsync_options,
            rsync_hard_links_on_first_copy,
            archive_blob,
            compress_blob,
            blob_timestamps: blob_timestamps.unwrap_or(true) || incremental_blobs,
            incremental_blobs,
            gzip,
            quick,
            enable_snapshotrestore,
            offsite,
            enable_zipbackup,
            enable_fullbackup,
            pre_command,
            post_command,
            warnings,
        })
    }

    /// Buildout-time probe of the file system, returning warnings and
    /// leaving nothing behind:
    ///
    /// - each blob directory to back up: one that does not exist is a
    ///   warning, not an error, because buildout often runs before Zope or
    ///   ZEO has ever created it (see [`Storage::missing_blob_parent`]);
    /// - the locations `bin/backup` and `bin/snapshotbackup` write to (6.0's
    ///   `try_create_folder`; the zip locations are not probed): a missing
    ///   one is created and removed again.
    #[must_use]
    pub fn probe_locations(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .storages
            .iter()
            .filter_map(|s| blob_storage_warning(s, !self.only_blobs))
            .collect();
        let mut dirs: Vec<&Path> = Vec::new();
        for s in &self.storages {
            if !self.only_blobs {
                dirs.push(&s.backup_location);
                dirs.push(&s.snapshot_location);
            }
            dirs.extend(s.blob_backup_location.as_deref());
            dirs.extend(s.blob_snapshot_location.as_deref());
        }
        warnings.extend(dirs.into_iter().filter_map(probe_dir));
        warnings
    }

    /// The main storage (always the last one).
    #[must_use]
    pub fn main_storage(&self) -> Option<&Storage> {
        self.storages.last()
    }

    /// The scripts this part generates, in generation order, with their
    /// names (see docs/scripts.rst; `fullbackup` from the seed).
    #[must_use]
    pub fn scripts(&self) -> Vec<(String, Entry)> {
        let p = self.part_name.as_str();
        let named = |plain: &str, suffix: &str| -> String {
            if p == "backup" {
                plain.to_owned()
            } else if suffix.is_empty() {
                p.to_owned()
            } else {
                format!("{p}-{suffix}")
            }
        };
        let mut out = vec![(named("backup", ""), Entry::Backup)];
        if self.enable_fullbackup {
            out.push((named("fullbackup", "full"), Entry::FullBackup));
        }
        if self.enable_zipbackup {
            out.push((named("zipbackup", "zip"), Entry::ZipBackup));
        }
        out.push((named("snapshotbackup", "snapshot"), Entry::Snapshot));
        out.push((named("restore", "restore"), Entry::Restore));
        if self.enable_zipbackup {
            out.push((named("ziprestore", "ziprestore"), Entry::ZipRestore));
        }
        if self.enable_snapshotrestore {
            out.push((
                named("snapshotrestore", "snapshotrestore"),
                Entry::SnapshotRestore,
            ));
        }
        if self.storages.iter().any(|s| s.alt_location.is_some()) {
            out.push((named("altrestore", "altrestore"), Entry::AltRestore));
        }
        if self.offsite.is_some() {
            out.push((named("offsite", "offsite"), Entry::Offsite));
        }
        out
    }

    /// What a restore replaces: the filestorages (none with `only_blobs`)
    /// and the blobstorages (none without `backup_blobs`), in processing
    /// order. This is what the confirmation prompt lists.
    #[must_use]
    pub fn restore_targets(&self) -> (Vec<&Path>, Vec<&Path>) {
        let fs = if self.only_blobs {
            Vec::new()
        } else {
            self.storages.iter().map(|s| s.datafs.as_path()).collect()
        };
        let blobs = self
            .storages
            .iter()
            .filter_map(|s| s.blobdir.as_deref())
            .collect();
        (fs, blobs)
    }

    /// This configuration restored into `dir` instead of the live site
    /// (`--target DIR`): every storage's Data.fs becomes `dir/<its file
    /// name>` and its blob directory `dir/<its name>`; everything else is
    /// unchanged, so the restore runs as it would on the live paths, and
    /// the locks it takes are the target's.
    ///
    /// # Errors
    /// [`Error::Config`] when `dir` is not a directory, does not exist and
    /// neither does its parent, when two of the paths a restore writes
    /// would be the same, or when one of them is a live one (a target that
    /// is the live Data.fs's own directory).
    pub fn with_target(&self, dir: &Path) -> Result<BackupConfig> {
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::Config(format!(
                    "--target {}: not a directory. Nothing was changed.",
                    dir.display()
                )))
            }
            Ok(_) => {}
            Err(_) => {
                let parent = blob_storage_parent(dir);
                if !parent.is_dir() {
                    return Err(Error::Config(format!(
                        "--target {}: its parent directory {} does not exist. Nothing was changed.",
                        dir.display(),
                        parent.display()
                    )));
                }
            }
        }
        let moved = |p: &Path| -> Result<PathBuf> {
            p.file_name().map(|n| dir.join(n)).ok_or_else(|| {
                Error::Config(format!(
                    "--target: {} does not name a file or directory.",
                    p.display()
                ))
            })
        };
        let mut out = self.clone();
        for s in &mut out.storages {
            s.datafs = moved(&s.datafs)?;
            s.blobdir = s.blobdir.as_deref().map(moved).transpose()?;
        }
        // Every path the restore writes, with the storage it belongs to.
        let mut written: Vec<(PathBuf, &str)> = Vec::new();
        for s in &out.storages {
            let mut index = s.datafs.as_os_str().to_owned();
            index.push(".index");
            written.push((s.datafs.clone(), &s.name));
            written.push((PathBuf::from(index), &s.name));
            written.extend(s.blobdir.iter().map(|b| (b.clone(), s.name.as_str())));
        }
        for (i, (path, name)) in written.iter().enumerate() {
            if let Some((_, other)) = written[..i].iter().find(|(p, _)| p == path) {
                return Err(Error::Config(format!(
                    "--target {}: storages {other} and {name} would both be restored to {}. Nothing was changed.",
                    dir.display(),
                    path.display()
                )));
            }
        }
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        for live in self
            .storages
            .iter()
            .flat_map(|s| std::iter::once(&s.datafs).chain(s.blobdir.as_ref()))
        {
            // The restore writes where a symlink points (restore.rs,
            // real_target): a target path that is a link to the live one
            // is the live one.
            if let Some((path, _)) = written.iter().find(|(p, _)| {
                same(p, live)
                    || (same(blob_storage_parent(p), blob_storage_parent(live))
                        && p.file_name() == live.file_name())
            }) {
                return Err(Error::Config(format!(
                    "--target {}: {} is the live {}; a restore into another directory must not replace the live site. Nothing was changed.",
                    dir.display(),
                    path.display(),
                    live.display()
                )));
            }
        }
        Ok(out)
    }
}

fn blob_storage_parent(blobdir: &Path) -> &Path {
    match blobdir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Storage {
    /// The rule for a blob directory that does not exist: `bin/restore`
    /// creates it inside a directory that exists (the `var/` of a fresh
    /// server) or beside its Data.fs (whose directory a restore of the
    /// filestorage creates), and refuses anything else as a misspelt path.
    /// Returns the missing directory that makes it refuse; None when the
    /// blob directory exists, can be created, or is not restored.
    #[must_use]
    pub fn missing_blob_parent(&self, with_datafs: bool) -> Option<&Path> {
        let blobdir = self.blobdir.as_deref()?;
        let parent = blob_storage_parent(blobdir);
        if blobdir.exists()
            || parent.is_dir()
            || (with_datafs && self.datafs.parent() == Some(parent))
        {
            None
        } else {
            Some(parent)
        }
    }
}

/// The buildout-time warning about a storage's blob directory that is not
/// a directory, or None when it is one (or blobs are not backed up). It
/// says what `bin/backup` and `bin/restore` will do about it
/// (`commands::backup`, `commands::restore`).
fn blob_storage_warning(s: &Storage, with_datafs: bool) -> Option<String> {
    let blobdir = s.blobdir.as_deref()?;
    match std::fs::metadata(blobdir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some(format!("{} is a file, not a directory.", blobdir.display())),
        Err(_) => Some(match s.missing_blob_parent(with_datafs) {
            None => format!(
                "Blob storage {} does not exist yet. bin/backup fails until Zope or ZEO has created it; bin/restore creates it.",
                blobdir.display()
            ),
            Some(parent) => format!(
                "Blob storage {} does not exist, nor does {}. Check the path: bin/backup fails until the blob storage exists, and bin/restore until {} does.",
                blobdir.display(),
                parent.display(),
                parent.display()
            ),
        }),
    }
}

fn probe_dir(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return None,
        Ok(_) => return Some(format!("{} is a file, not a directory.", dir.display())),
        Err(_) => {}
    }
    // The outermost directory that does not exist yet: removal stops there.
    let mut first_missing = dir;
    while let Some(parent) = first_missing.parent() {
        if parent.as_os_str().is_empty() || std::fs::symlink_metadata(parent).is_ok() {
            break;
        }
        first_missing = parent;
    }
    if std::fs::create_dir_all(dir).is_err() {
        return Some(format!("Not able to create {}", dir.display()));
    }
    let mut current = Some(dir);
    while let Some(d) = current {
        if std::fs::remove_dir(d).is_err() || d == first_missing {
            break;
        }
        current = d.parent();
    }
    None
}

/// A restore date: `yyyy-mm-dd[-hh[-mm[-ss]]]` in UTC, as repozo's `-D`.
/// Restores pick the newest backup at or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RestoreDate(pub NaiveDateTime);

impl RestoreDate {
    /// Parse and validate a date argument.
    ///
    /// # Errors
    /// [`Error::Config`] with a one-line message naming the argument.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_fields(text, false).ok_or_else(|| {
            Error::Config(format!(
                "Could not parse date argument '{text}'. Expected a UTC date yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2026-11-26-14-30."
            ))
        })
    }

    /// The same grammar with two-digit fields only, for repozo's `-D`,
    /// which compares the date *as written* with backup names: there
    /// `2026-1-5` would sort wrongly.
    #[must_use]
    pub fn parse_strict(text: &str) -> Option<Self> {
        Self::parse_fields(text, true)
    }

    /// THE date grammar: `yyyy-mm-dd[-hh[-mm[-ss]]]`, a real calendar date
    /// and time; missing parts are zero.
    fn parse_fields(text: &str, two_digits: bool) -> Option<Self> {
        let parts: Vec<&str> = text.split('-').collect();
        if !(3..=6).contains(&parts.len())
            || parts[0].len() != 4
            || parts.iter().skip(1).any(|p| {
                if two_digits {
                    p.len() != 2
                } else {
                    p.is_empty() || p.len() > 2
                }
            })
            || parts.iter().any(|p| !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let mut n = [0u32; 6];
        for (slot, p) in n.iter_mut().zip(&parts) {
            *slot = p.parse().ok()?;
        }
        let year = i32::try_from(n[0]).ok()?;
        NaiveDate::from_ymd_opt(year, n[1], n[2])
            .and_then(|d| d.and_hms_opt(n[3], n[4], n[5]))
            .map(RestoreDate)
    }
}

impl fmt::Display for RestoreDate {
    /// The normalised form, `YYYY-MM-DD-HH-MM-SS` (what repozo compares).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d-%H-%M-%S"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ConfigInput {
        ConfigInput {
            var_dir: PathBuf::from("/b/var"),
            blob_storage: Some(PathBuf::from("/b/var/blobstorage")),
            ..ConfigInput::default()
        }
    }

    fn err(input: ConfigInput) -> String {
        match BackupConfig::new(input) {
            Err(e) => e.to_string(),
            Ok(c) => format!("unexpectedly valid: {c:?}"),
        }
    }

    fn ok(input: ConfigInput) -> BackupConfig {
        match BackupConfig::new(input) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_part_backup() {
        let c = ok(input());
        assert_eq!(c.storages.len(), 1);
        let s = &c.storages[0];
        assert_eq!(s.name, "1");
        assert_eq!(s.datafs, Path::new("/b/var/filestorage/Data.fs"));
        assert_eq!(s.backup_location, Path::new("/b/var/backups"));
        assert_eq!(s.snapshot_location, Path::new("/b/var/snapshotbackups"));
        assert_eq!(s.zip_location, Path::new("/b/var/zipbackups"));
        assert_eq!(
            s.blob_backup_location.as_deref(),
            Some(Path::new("/b/var/blobstoragebackups"))
        );
        assert_eq!(
            s.blob_snapshot_location.as_deref(),
            Some(Path::new("/b/var/blobstoragesnapshots"))
        );
        assert_eq!(
            s.blob_zip_location.as_deref(),
            Some(Path::new("/b/var/blobstoragezips"))
        );
        assert_eq!(c.keep, 2);
        assert_eq!(c.keep_blob_days, 14);
        assert!(c.blob_timestamps && c.gzip && c.quick && c.enable_snapshotrestore);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn defaults_other_part_name_and_prefix() {
        let c = ok(ConfigInput {
            part_name: "plone".into(),
            location_prefix: Some("/bk".into()),
            ..input()
        });
        let s = &c.storages[0];
        assert_eq!(s.backup_location, Path::new("/bk/plones"));
        assert_eq!(s.snapshot_location, Path::new("/bk/plone-snapshots"));
        assert_eq!(s.zip_location, Path::new("/bk/plone-zips"));
        assert_eq!(
            s.blob_backup_location.as_deref(),
            Some(Path::new("/bk/plone-blobstorages"))
        );
        assert_eq!(
            s.blob_snapshot_location.as_deref(),
            Some(Path::new("/bk/plone-blobstoragesnapshots"))
        );
        assert_eq!(
            s.blob_zip_location.as_deref(),
            Some(Path::new("/bk/plone-blobstoragezips"))
        );
        // datafs does not follow the prefix.
        assert_eq!(s.datafs, Path::new("/b/var/filestorage/Data.fs"));
    }

    #[test]
    fn scripts_default_order_and_names() {
        let c = ok(input());
        let names: Vec<String> = c.scripts().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["backup", "snapshotbackup", "restore", "snapshotrestore"]
        );
    }

    #[test]
    fn scripts_everything_enabled_other_part() {
        let c = ok(ConfigInput {
            part_name: "plone".into(),
            enable_zipbackup: true,
            enable_fullbackup: true,
            alternative_restore_source: Some(AltSource {
                key: "Data".into(),
                location: "/alt/fs".into(),
                blob_location: Some("/alt/blobs".into()),
            }),
            ..input()
        });
        let got: Vec<(String, &str)> = c
            .scripts()
            .into_iter()
            .map(|(n, e)| (n, e.function()))
            .collect();
        let want = [
            ("plone", "backup_main"),
            ("plone-full", "fullbackup_main"),
            ("plone-zip", "zipbackup_main"),
            ("plone-snapshot", "snapshot_main"),
            ("plone-restore", "restore_main"),
            ("plone-ziprestore", "zip_restore_main"),
            ("plone-snapshotrestore", "snapshot_restore_main"),
            ("plone-altrestore", "alt_restore_main"),
        ];
        assert_eq!(got.len(), want.len());
        for ((n, f), (wn, wf)) in got.iter().zip(want) {
            assert_eq!((n.as_str(), *f), (wn, wf));
        }
    }

    #[test]
    fn scripts_no_snapshotrestore() {
        let c = ok(ConfigInput {
            enable_snapshotrestore: false,
            ..input()
        });
        let names: Vec<String> = c.scripts().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["backup", "snapshotbackup", "restore"]);
    }

    #[test]
    fn error_blob_storage_alias_conflict() {
        assert_eq!(
            err(ConfigInput {
                blob_storage_alias: Some("/other".into()),
                ..input()
            }),
            "Both blob_storage and blob-storage have been set. Please pick one."
        );
    }

    #[test]
    fn blob_storage_alias_alone_is_used() {
        let c = ok(ConfigInput {
            blob_storage: None,
            blob_storage_alias: Some("/x/blobs".into()),
            ..input()
        });
        assert_eq!(
            c.storages[0].blobdir.as_deref(),
            Some(Path::new("/x/blobs"))
        );
    }

    #[test]
    fn zope_blob_storage_is_the_default_only() {
        let zope = Some(PathBuf::from("/zope/var/blobstorage"));
        let c = ok(ConfigInput {
            blob_storage: None,
            zope_blob_storage: zope.clone(),
            ..input()
        });
        assert_eq!(c.storages[0].blobdir, zope);
        for (explicit, alias) in [(Some("/mine"), None), (None, Some("/mine"))] {
            let c = ok(ConfigInput {
                blob_storage: explicit.map(PathBuf::from),
                blob_storage_alias: alias.map(PathBuf::from),
                zope_blob_storage: zope.clone(),
                ..input()
            });
            assert_eq!(c.storages[0].blobdir.as_deref(), Some(Path::new("/mine")));
        }
    }

    #[test]
    fn gzip_blob_is_archive_blob_and_loses_to_it() {
        let deprecated =
            "gzip_blob is deprecated: it is an alias of archive_blob. Please rename it to archive_blob.";
        let both = "Both gzip_blob and archive_blob are set; using archive_blob.";
        for (archive, gzip, want, warnings) in [
            (None, None, false, vec![]),
            (None, Some(true), true, vec![deprecated]),
            (Some(false), Some(true), false, vec![deprecated, both]),
            (Some(true), Some(true), true, vec![deprecated]),
        ] {
            let c = ok(ConfigInput {
                archive_blob: archive,
                gzip_blob: gzip,
                ..input()
            });
            assert_eq!(c.archive_blob, want, "{archive:?} {gzip:?}");
            for w in &warnings {
                assert!(c.warnings.iter().any(|x| x == w), "{:?}", c.warnings);
            }
            assert_eq!(
                c.warnings
                    .iter()
                    .filter(|x| x.contains("gzip_blob"))
                    .count(),
                warnings.len()
            );
        }
    }

    #[test]
    fn error_only_blobs_without_backup_blobs() {
        assert_eq!(
            err(ConfigInput {
                backup_blobs: false,
                only_blobs: true,
                ..input()
            }),
            "Cannot have backup_blobs false and only_blobs true."
        );
    }

    #[test]
    fn error_zipbackup_without_backup_blobs() {
        assert_eq!(
            err(ConfigInput {
                backup_blobs: false,
                enable_zipbackup: true,
                ..input()
            }),
            "Cannot have backup_blobs false and enable_zipbackup true. zipbackup is useless without blobs."
        );
    }

    #[test]
    fn error_incremental_without_timestamps() {
        assert_eq!(
            err(ConfigInput {
                blob_timestamps: Some(false),
                incremental_blobs: true,
                archive_blob: Some(true),
                ..input()
            }),
            "Cannot have blob_timestamps false and incremental_blobs true."
        );
    }

    #[test]
    fn error_no_blob_storage() {
        assert_eq!(
            err(ConfigInput {
                part_name: "plone".into(),
                blob_storage: None,
                ..input()
            }),
            "No blob_storage found. You must specify one. To ignore this, set 'backup_blobs = false' in the [plone] section."
        );
    }

    #[test]
    fn no_blob_storage_needed_without_backup_blobs() {
        let c = ok(ConfigInput {
            blob_storage: Some("/ignored".into()),
            backup_blobs: false,
            ..input()
        });
        assert_eq!(c.storages[0].blobdir, None);
        assert_eq!(c.storages[0].blob_backup_location, None);
        assert_eq!(c.restore_targets().1.len(), 0);
    }

    #[test]
    fn error_locations_not_distinct() {
        assert_eq!(
            err(ConfigInput {
                location: Some("/b/var/same".into()),
                snapshotlocation: Some("/b/var/same".into()),
                ..input()
            }),
            "These must be distinct locations:\n\
             blobbackuplocation = /b/var/blobstoragebackups\n\
             blobsnapshotlocation = /b/var/blobstoragesnapshots\n\
             blobziplocation = /b/var/blobstoragezips\n\
             location = /b/var/same\n\
             snapshotlocation = /b/var/same\n\
             ziplocation = /b/var/zipbackups"
        );
    }

    #[test]
    fn error_location_equal_to_a_default() {
        let e = err(ConfigInput {
            blobbackuplocation: Some("/b/var/backups".into()),
            ..input()
        });
        assert!(e.starts_with("These must be distinct locations:\n"), "{e}");
    }

    #[test]
    fn warning_blob_timestamps_false() {
        let c = ok(ConfigInput {
            blob_timestamps: Some(false),
            ..input()
        });
        assert!(!c.blob_timestamps);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("You have disabled blob_timestamps."));
    }

    #[test]
    fn incremental_forces_timestamps_and_warns_without_archive() {
        let c = ok(ConfigInput {
            incremental_blobs: true,
            ..input()
        });
        assert!(c.blob_timestamps);
        assert_eq!(
            c.warnings,
            ["incremental_blobs has no effect without archive_blob = true."]
        );
    }

    #[test]
    fn probe_locations_warns_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert!(std::fs::write(d.join("afile"), "x").is_ok());
        let c = ok(ConfigInput {
            var_dir: d.join("var"),
            blob_storage: Some(d.join("var/blobstorage")),
            location: Some(d.join("afile/sub")),
            snapshotlocation: Some(d.join("afile")),
            blobbackuplocation: Some(d.join("new/deeper/blobs")),
            ..ConfigInput::default()
        });
        assert_eq!(
            c.probe_locations(),
            [
                format!(
                    "Blob storage {} does not exist, nor does {}. Check the path: bin/backup fails until the blob storage exists, and bin/restore until {} does.",
                    d.join("var/blobstorage").display(),
                    d.join("var").display(),
                    d.join("var").display()
                ),
                format!("Not able to create {}", d.join("afile/sub").display()),
                format!("{} is a file, not a directory.", d.join("afile").display()),
            ]
        );
        assert!(!d.join("new").exists());
        assert!(!d.join("var").exists());
    }

    #[test]
    fn probe_warns_about_a_missing_blob_storage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let blobs = d.join("var/blobstorage");
        let c = ok(ConfigInput {
            var_dir: d.join("var"),
            blob_storage: Some(blobs.clone()),
            location_prefix: Some(d.to_path_buf()),
            ..ConfigInput::default()
        });
        let blob_warnings = |c: &BackupConfig| -> Vec<String> {
            c.probe_locations()
                .into_iter()
                .filter(|w| w.contains("blobstorage "))
                .collect()
        };
        // The var/ of a fresh server: restore creates the blob storage.
        assert!(std::fs::create_dir(d.join("var")).is_ok());
        assert_eq!(
            blob_warnings(&c),
            [format!(
                "Blob storage {} does not exist yet. bin/backup fails until Zope or ZEO has created it; bin/restore creates it.",
                blobs.display()
            )]
        );
        assert!(std::fs::create_dir(&blobs).is_ok());
        assert!(c.probe_locations().is_empty());
        // Not asked for without backup_blobs.
        let off = ok(ConfigInput {
            var_dir: d.join("nowhere"),
            backup_blobs: false,
            location_prefix: Some(d.to_path_buf()),
            ..ConfigInput::default()
        });
        assert!(off.probe_locations().is_empty());
    }

    #[test]
    fn parse_count_accepts_numbers() {
        assert_eq!(parse_count("keep", " 3 ").ok(), Some(3));
        assert_eq!(parse_count("keep", "0").ok(), Some(0));
    }

    #[test]
    fn parse_count_rejects_words_and_expressions() {
        for bad in ["two", "1 + 1", "-1", "", "2.5"] {
            let e = parse_count("keep", bad)
                .map(|_| ())
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                e,
                Some(format!(
                    "keep must be a whole number (0 or more), not '{bad}'."
                ))
            );
        }
    }

    #[test]
    fn additional_filestorages_seed_syntax() {
        let parsed = parse_additional_filestorages(
            "\n  catalog\n  # comment\n  foo /x/foo.fs /x/blob-foo\n  bar /x/bar.fs\n",
        );
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            parsed,
            vec![
                ("catalog".to_owned(), None, None),
                (
                    "foo".to_owned(),
                    Some("/x/foo.fs".to_owned()),
                    Some("/x/blob-foo".to_owned())
                ),
                ("bar".to_owned(), Some("/x/bar.fs".to_owned()), None),
            ]
        );
    }

    #[test]
    fn additional_filestorages_errors() {
        let e = |t: &str| {
            parse_additional_filestorages(t)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            e("a b c d"),
            Some("additional_filestorages line 'a b c d' has a wrong format. Should be: 'storage-name', optionally followed by a filestorage path and a blobstorage path.".to_owned())
        );
        assert_eq!(
            e("a\na"),
            Some("additional_filestorages: storage a duplicated.".to_owned())
        );
        assert_eq!(
            e("x/y"),
            Some("additional_filestorages: 'x/y' is not a valid storage name.".to_owned())
        );
    }

    #[test]
    fn additional_storages_first_with_suffixed_locations() {
        let c = ok(ConfigInput {
            additional_filestorages: vec![
                AdditionalStorage {
                    name: "catalog".into(),
                    datafs: None,
                    blobdir: None,
                },
                AdditionalStorage {
                    name: "foo".into(),
                    datafs: Some("/x/foo.fs".into()),
                    blobdir: Some("/x/blob-foo".into()),
                },
            ],
            ..input()
        });
        let names: Vec<&str> = c.storages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["catalog", "foo", "1"]);
        let cat = &c.storages[0];
        assert_eq!(cat.datafs, Path::new("/b/var/filestorage/catalog.fs"));
        assert_eq!(cat.backup_location, Path::new("/b/var/backups_catalog"));
        assert_eq!(
            cat.snapshot_location,
            Path::new("/b/var/snapshotbackups_catalog")
        );
        assert_eq!(cat.zip_location, Path::new("/b/var/zipbackups_catalog"));
        assert_eq!(cat.blobdir, None);
        assert_eq!(cat.blob_backup_location, None);
        let foo = &c.storages[1];
        assert_eq!(foo.datafs, Path::new("/x/foo.fs"));
        assert_eq!(
            foo.blob_backup_location.as_deref(),
            Some(Path::new("/b/var/blobstoragebackups_foo"))
        );
        assert_eq!(
            foo.blob_snapshot_location.as_deref(),
            Some(Path::new("/b/var/blobstoragesnapshots_foo"))
        );
        assert_eq!(
            foo.blob_zip_location.as_deref(),
            Some(Path::new("/b/var/blobstoragezips_foo"))
        );
        let (fs, blobs) = c.restore_targets();
        assert_eq!(fs.len(), 3);
        assert_eq!(
            blobs,
            [Path::new("/x/blob-foo"), Path::new("/b/var/blobstorage")]
        );
    }

    #[test]
    fn error_additional_storage_same_datafs_as_main() {
        let e = err(ConfigInput {
            additional_filestorages: vec![AdditionalStorage {
                name: "x".into(),
                datafs: Some("/b/var/filestorage/Data.fs".into()),
                blobdir: None,
            }],
            ..input()
        });
        assert_eq!(
            e,
            "Two storages use the same filestorage /b/var/filestorage/Data.fs."
        );
    }

    #[test]
    fn error_additional_storage_same_blobdir_as_main() {
        let e = err(ConfigInput {
            additional_filestorages: vec![AdditionalStorage {
                name: "x".into(),
                datafs: None,
                blobdir: Some("/b/var/blobstorage".into()),
            }],
            ..input()
        });
        assert_eq!(
            e,
            "Two storages use the same blobstorage /b/var/blobstorage."
        );
    }

    #[test]
    fn alternative_restore_source_parse() {
        let p = |t: &str| parse_alternative_restore_source(t).map_err(|e| e.to_string());
        assert_eq!(p("\n# c\n"), Ok(None));
        assert_eq!(
            p("Data /a /b"),
            Ok(Some(("Data".into(), "/a".into(), Some("/b".into()))))
        );
        assert_eq!(p("1 /a"), Ok(Some(("1".into(), "/a".into(), None))));
        assert_eq!(
            p("Data /a\nData /b"),
            Err("Only one alternative_restore_source line is supported.".into())
        );
        assert_eq!(
            p("Data"),
            Err("alternative_restore_source line 'Data' has a wrong format. Should be: 'storage-name filestorage-backup-path', optionally followed by a blobstorage-backup-path.".into())
        );
        assert_eq!(
            p("foo /a"),
            Err("alternative_restore_source key 'foo' unknown. Expected 1 or Data.".into())
        );
    }

    #[test]
    fn alternative_restore_source_blob_rules() {
        let alt = |blob: Option<&str>| AltSource {
            key: "Data".into(),
            location: "/alt/fs".into(),
            blob_location: blob.map(PathBuf::from),
        };
        assert_eq!(
            err(ConfigInput {
                alternative_restore_source: Some(alt(None)),
                ..input()
            }),
            "alternative_restore_source key 'Data' is missing a blobdir."
        );
        assert_eq!(
            err(ConfigInput {
                backup_blobs: false,
                alternative_restore_source: Some(alt(Some("/alt/b"))),
                ..input()
            }),
            "alternative_restore_source key 'Data' specifies blobdir '/alt/b' but the original storage has no blobstorage."
        );
        let c = ok(ConfigInput {
            backup_blobs: false,
            alternative_restore_source: Some(alt(None)),
            ..input()
        });
        assert_eq!(
            c.storages[0].alt_location.as_deref(),
            Some(Path::new("/alt/fs"))
        );
    }

    #[test]
    fn restore_date_valid_forms() {
        let d = |t: &str| RestoreDate::parse(t).map(|d| d.to_string()).ok();
        assert_eq!(d("2026-11-26"), Some("2026-11-26-00-00-00".into()));
        assert_eq!(d("2026-11-26-14"), Some("2026-11-26-14-00-00".into()));
        assert_eq!(d("2026-11-26-14-30-05"), Some("2026-11-26-14-30-05".into()));
        assert_eq!(d("2026-1-5"), Some("2026-01-05-00-00-00".into()));
    }

    #[test]
    fn restore_date_invalid_forms() {
        for bad in [
            "2026-13-45",
            "2026-11",
            "-qn",
            "yesterday",
            "2026-11-26-25",
            "2026-11-26-1-2-3-4",
            "26-11-26",
            "2026-02-30",
        ] {
            let e = RestoreDate::parse(bad).err().map(|e| e.to_string());
            assert_eq!(
                e,
                Some(format!("Could not parse date argument '{bad}'. Expected a UTC date yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2026-11-26-14-30."))
            );
        }
    }

    fn target_config(dir: &Path, extra: &str) -> BackupConfig {
        let mut i = ConfigInput {
            var_dir: dir.join("var"),
            blob_storage: Some(dir.join("var/blobstorage")),
            ..ConfigInput::default()
        };
        if !extra.is_empty() {
            i.additional_filestorages = parse_additional_filestorages(extra)
                .expect("additional")
                .into_iter()
                .map(|(name, datafs, blobdir)| AdditionalStorage {
                    name,
                    datafs: datafs.map(PathBuf::from),
                    blobdir: blobdir.map(PathBuf::from),
                })
                .collect();
        }
        BackupConfig::new(i).expect("config")
    }

    #[test]
    fn with_target_moves_every_restored_path() {
        let d = tempfile::tempdir().expect("tempdir");
        let c = target_config(d.path(), "catalog");
        let t = d.path().join("copy");
        let moved = c.with_target(&t).expect("target");
        let (fs, blobs) = moved.restore_targets();
        assert_eq!(
            fs,
            [t.join("catalog.fs").as_path(), t.join("Data.fs").as_path()]
        );
        assert_eq!(blobs, [t.join("blobstorage").as_path()]);
        // Only the restored paths move.
        assert_eq!(
            moved.storages[1].backup_location,
            c.storages[1].backup_location
        );
    }

    #[test]
    fn with_target_refusals() {
        let d = tempfile::tempdir().expect("tempdir");
        // Two Data.fs of the same name.
        let c = target_config(
            d.path(),
            &format!("other {}", d.path().join("x/Data.fs").display()),
        );
        let t = d.path().join("copy");
        let e = c.with_target(&t).err().map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "--target {}: storages other and 1 would both be restored to {}. Nothing was changed.",
                t.display(),
                t.join("Data.fs").display()
            ))
        );
        // A parent that does not exist.
        let c = target_config(d.path(), "");
        let deep = d.path().join("no/copy");
        let e = c.with_target(&deep).err().map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "--target {}: its parent directory {} does not exist. Nothing was changed.",
                deep.display(),
                d.path().join("no").display()
            ))
        );
        // The live directory itself.
        let fsdir = d.path().join("var/filestorage");
        std::fs::create_dir_all(&fsdir).expect("mkdir");
        let e = c.with_target(&fsdir).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("must not replace the live site")),
            "{e:?}"
        );
        // A target whose Data.fs is a symlink to the live one (a copied
        // var/ that kept its links): the restore would write through it.
        std::fs::write(fsdir.join("Data.fs"), b"live").expect("write");
        let linked = d.path().join("linked");
        std::fs::create_dir(&linked).expect("mkdir");
        std::os::unix::fs::symlink(fsdir.join("Data.fs"), linked.join("Data.fs")).expect("symlink");
        let e = c.with_target(&linked).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("must not replace the live site")),
            "{e:?}"
        );
    }
}
