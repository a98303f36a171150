//! The status report: every backup of a part, and what is wrong with them.
//!
//! For every storage of a [`BackupConfig`] and each of its locations
//! (`backups`, `snapshots`, `zip`, and the `alt` restore source), the report
//! lists the filestorage chains (found and checked by
//! [`crate::repozo::chain::survey`], the rules of `recover` applied to every
//! chain), the blob backups (named by [`crate::blobs::naming`]), which blob
//! backup belongs to which filestorage backup, the space used, the newest
//! backup and its age, and the problems found. Healthy means no problems.
//! See docs/status.rst for every field and rule.
//!
//! Read-only: no lock is taken (taking one may create the lock file, and a
//! backup disk may be mounted read-only), nothing is written. A backup
//! running at the same time may be seen half-made: its `.partial` build or
//! temporary file is then reported as a problem (docs/status.rst, races).
//!
//! The report is one [`serde::Serialize`] value: its JSON is the
//! machine-readable form (`schema_version` 1, docs/status.schema.json);
//! [`StatusReport::to_text`] (`text.rs`) renders the same facts for people.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::blobs::naming::{self, BackupName, Kind as BlobKind, Stamp};
use crate::blobs::{list_backups, BlobBackup};
use crate::config::{BackupConfig, Storage};
use crate::error::{Error, Result};
use crate::repozo::chain::survey;
use crate::repozo::naming::{is_gzip_name, join, kind_of, splitext, Kind as FsKind};
use text::human_duration;

mod text;

/// The version of the JSON layout; raised when a field changes meaning or
/// goes away (added fields keep it).
pub const SCHEMA_VERSION: u32 = 1;

/// Parse a maximum age: seconds (`3600`), or a number with a unit `s`,
/// `m`, `h`, `d` or `w` (`90m`, `26h`, `2d`). Returns seconds.
///
/// # Errors
/// [`Error::Config`] naming the text, for anything else (or zero).
pub fn parse_max_age(text: &str) -> Result<u64> {
    let bad = || {
        Error::Config(format!(
            "Could not parse maximum age '{text}'. Expected a number of seconds, or a number followed by s, m, h, d or w, e.g. 26h."
        ))
    };
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let factor: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match n.checked_mul(factor) {
        Some(secs) if secs > 0 => Ok(secs),
        _ => Err(bad()),
    }
}

/// A moment: its backup stamp and ISO-8601 UTC form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moment {
    /// `YYYY-MM-DD-HH-MM-SS`.
    pub stamp: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
}

impl Moment {
    fn of(t: DateTime<Utc>) -> Self {
        Moment {
            stamp: naming::format_timestamp(t),
            time: iso(t),
        }
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The buildout part.
    pub part: String,
    /// The moment the report is for (the injected clock in tests).
    pub now: Moment,
    /// The maximum age asked for, in seconds.
    pub max_age_seconds: Option<u64>,
    /// No problems.
    pub healthy: bool,
    /// Every storage, in processing order (main last).
    pub storages: Vec<StorageStatus>,
    /// Every problem found, storage by storage.
    pub problems: Vec<Problem>,
}

/// One storage.
#[derive(Debug, Clone, Serialize)]
pub struct StorageStatus {
    /// `1` for the main storage, else the additional storage's name.
    pub name: String,
    /// The live `Data.fs`.
    pub datafs: String,
    /// The live blob directory, when its blobs are backed up.
    pub blobdir: Option<String>,
    /// The newest backup of this storage in its own locations (not `alt`).
    pub newest: Option<Newest>,
    /// Its locations: `backups`, `snapshots`, `zip`, then `alt` when
    /// configured.
    pub locations: Vec<LocationStatus>,
}

/// The newest backup of a storage or location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Newest {
    /// Its stamp (numbered blob backups: their modification time).
    pub stamp: String,
    /// The same, ISO-8601 UTC.
    pub time: String,
    /// Seconds from it to the report's `now` (negative: in the future).
    pub age_seconds: i64,
    /// The file or directory.
    pub path: String,
}

/// One kind of location of a storage: a filestorage repository and the
/// blob backup location that goes with it.
#[derive(Debug, Clone, Serialize)]
pub struct LocationStatus {
    /// `backups`, `snapshots`, `zip` or `alt`.
    pub kind: &'static str,
    /// The repository; `None` with `only_blobs`.
    pub filestorage: Option<RepositoryStatus>,
    /// The blob backup location; `None` without blob backups.
    pub blobs: Option<BlobLocationStatus>,
    /// The newest backup here.
    pub newest: Option<Newest>,
}

/// A filestorage repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryStatus {
    /// The directory.
    pub path: String,
    /// Whether it exists.
    pub exists: bool,
    /// Bytes of all regular files in it (each inode once).
    pub bytes: u64,
    /// It keeps no `.dat`: chains found by the names alone.
    pub by_names: bool,
    /// Its chains, oldest first.
    pub chains: Vec<ChainStatus>,
    /// Data files no `.dat` lists (left by interrupted backups).
    pub unlisted: Vec<String>,
    /// Temporary files of interrupted (or running) backups.
    pub temporaries: Vec<String>,
}

/// A full backup and its incrementals.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    /// The `.dat` file name (`None` by names).
    pub dat: Option<String>,
    /// No problems: a restore of any of its states can work.
    pub whole: bool,
    /// Bytes of its data files that exist.
    pub bytes: u64,
    /// Why it is broken (empty when whole).
    pub problems: Vec<String>,
    /// Its backup files, oldest first.
    pub backups: Vec<FsBackupStatus>,
}

/// One filestorage backup file.
#[derive(Debug, Clone, Serialize)]
pub struct FsBackupStatus {
    /// The file name.
    pub file: String,
    /// `YYYY-MM-DD-HH-MM-SS`.
    pub stamp: String,
    /// The stamp as ISO-8601 UTC.
    pub time: String,
    /// `full` or `incremental`.
    pub kind: &'static str,
    /// `.fsz` / `.deltafsz`.
    pub gzip: bool,
    /// Whether the file exists.
    pub present: bool,
    /// Its size on disk.
    pub bytes: Option<u64>,
    /// The `.dat` line's first byte.
    pub start: Option<u64>,
    /// The `.dat` line's end byte.
    pub end: Option<u64>,
    /// The blob backup made with it.
    pub blob_backup: Option<BlobRef>,
}

/// A blob backup, as named from a filestorage backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobRef {
    /// Its entry name.
    pub name: String,
    /// Its stamp (dated backups).
    pub stamp: Option<String>,
    /// Its number (numbered backups).
    pub number: Option<u64>,
}

/// A blob backup location.
#[derive(Debug, Clone, Serialize)]
pub struct BlobLocationStatus {
    /// The directory.
    pub path: String,
    /// Whether it exists.
    pub exists: bool,
    /// Bytes of all regular files in it (each inode once: hard-linked
    /// directory backups share their unchanged files).
    pub bytes: u64,
    /// Its backups, newest first.
    pub backups: Vec<BlobBackupStatus>,
    /// `.<name>.partial` builds of interrupted (or running) backups.
    pub partials: Vec<String>,
}

/// One blob backup (or GNU tar snapshot file).
#[derive(Debug, Clone, Serialize)]
pub struct BlobBackupStatus {
    /// Its entry name.
    pub name: String,
    /// `directory`, `archive`, `delta` or `snapshot_file`.
    pub kind: &'static str,
    /// A `.tar.gz`.
    pub gzip: bool,
    /// Dated backups: the stamp.
    pub stamp: Option<String>,
    /// Numbered backups: the number (0 newest).
    pub number: Option<u64>,
    /// The stamp as ISO-8601 UTC, or for numbered backups the
    /// modification time.
    pub time: String,
    /// Bytes of its regular files (each inode once within it).
    pub bytes: u64,
    /// The filestorage backup file it belongs to.
    pub filestorage_backup: Option<String>,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A storage without any backup.
    NoBackups,
    /// The newest backup is older than the maximum age.
    TooOld,
    /// A chain a restore would refuse (or that gives less than it claims).
    BrokenChain,
    /// A filestorage backup without the blob backup made with it.
    MissingBlobBackup,
    /// A dated blob backup without its filestorage backup.
    OrphanBlobBackup,
    /// A blob backup a restore cannot use.
    BrokenBlobBackup,
    /// A data file no `.dat` lists.
    UnlistedFile,
    /// A temporary file in a repository.
    TemporaryFile,
    /// A `.partial` blob backup build.
    PartialBuild,
    /// A location that cannot be read.
    Unreadable,
}

impl ProblemKind {
    /// The JSON name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::NoBackups => "no_backups",
            ProblemKind::TooOld => "too_old",
            ProblemKind::BrokenChain => "broken_chain",
            ProblemKind::MissingBlobBackup => "missing_blob_backup",
            ProblemKind::OrphanBlobBackup => "orphan_blob_backup",
            ProblemKind::BrokenBlobBackup => "broken_blob_backup",
            ProblemKind::UnlistedFile => "unlisted_file",
            ProblemKind::TemporaryFile => "temporary_file",
            ProblemKind::PartialBuild => "partial_build",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// The storage's name.
    pub storage: String,
    /// The file, directory or location concerned.
    pub path: String,
    /// One line for people.
    pub message: String,
}

/// The status of every backup of `cfg` as of `now`; with `max_age`
/// (seconds, see [`parse_max_age`]), a newest backup older than that is a
/// problem. Reads only; takes no lock.
///
/// # Errors
/// None today: a location that cannot be read is a problem in the report.
/// The `Result` leaves room for errors that make a report meaningless.
pub fn status(
    cfg: &BackupConfig,
    now: DateTime<Utc>,
    max_age: Option<u64>,
) -> Result<StatusReport> {
    let mut problems = Vec::new();
    let storages = cfg
        .storages
        .iter()
        .map(|s| storage_status(cfg, s, now, max_age, &mut problems))
        .collect();
    Ok(StatusReport {
        schema_version: SCHEMA_VERSION,
        part: cfg.part_name.clone(),
        now: Moment::of(now),
        max_age_seconds: max_age,
        healthy: problems.is_empty(),
        storages,
        problems,
    })
}

/// Collects the problems of one storage.
struct Problems<'a> {
    storage: &'a str,
    list: &'a mut Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, kind: ProblemKind, path: &Path, message: String) {
        self.list.push(Problem {
            kind,
            storage: self.storage.to_owned(),
            path: path.display().to_string(),
            message,
        });
    }
}

fn storage_status(
    cfg: &BackupConfig,
    s: &Storage,
    now: DateTime<Utc>,
    max_age: Option<u64>,
    problems: &mut Vec<Problem>,
) -> StorageStatus {
    let mut p = Problems {
        storage: &s.name,
        list: problems,
    };
    let fs = |path: &Path| (!cfg.only_blobs).then(|| path.to_path_buf());
    let mut kinds = vec![
        (
            "backups",
            fs(&s.backup_location),
            s.blob_backup_location.clone(),
        ),
        (
            "snapshots",
            fs(&s.snapshot_location),
            s.blob_snapshot_location.clone(),
        ),
        ("zip", fs(&s.zip_location), s.blob_zip_location.clone()),
    ];
    if s.alt_location.is_some() || s.blob_alt_location.is_some() {
        kinds.push((
            "alt",
            s.alt_location.clone().filter(|_| !cfg.only_blobs),
            s.blob_alt_location.clone(),
        ));
    }
    let base = s
        .blobdir
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let mut locations = Vec::new();
    for (kind, repo, blob_loc) in kinds {
        let site = Site {
            kind,
            // zipbackup makes numbered archives (no timestamps).
            dated: cfg.blob_timestamps && kind != "zip",
            prefer_archives: cfg.archive_blob || kind == "zip",
            base: base.as_deref(),
        };
        locations.push(location_status(
            &site,
            repo.as_deref(),
            blob_loc.as_deref(),
            now,
            &mut p,
        ));
    }
    let newest = locations
        .iter()
        .filter(|l| l.kind != "alt")
        .filter_map(|l| l.newest.clone())
        .max_by(|a, b| a.time.cmp(&b.time));
    match &newest {
        None => {
            let places: Vec<String> = locations
                .iter()
                .filter(|l| l.kind != "alt")
                .flat_map(|l| {
                    l.filestorage
                        .as_ref()
                        .map(|r| r.path.clone())
                        .into_iter()
                        .chain(l.blobs.as_ref().map(|b| b.path.clone()))
                })
                .collect();
            let what = if cfg.only_blobs {
                s.blobdir.as_deref().unwrap_or(&s.datafs)
            } else {
                &s.datafs
            };
            p.add(
                ProblemKind::NoBackups,
                what,
                format!(
                    "There is no backup of {} (looked in {}).",
                    what.display(),
                    places.join(", ")
                ),
            );
        }
        Some(n) => {
            if let Some(max) = max_age {
                if n.age_seconds > i64::try_from(max).unwrap_or(i64::MAX) {
                    p.add(
                        ProblemKind::TooOld,
                        Path::new(&n.path),
                        format!(
                            "The newest backup of {} ({}) is {} old, more than the maximum age of {}.",
                            s.datafs.display(),
                            n.stamp,
                            human_duration(n.age_seconds.unsigned_abs()),
                            human_duration(max)
                        ),
                    );
                }
            }
        }
    }
    StorageStatus {
        name: s.name.clone(),
        datafs: s.datafs.display().to_string(),
        blobdir: s.blobdir.as_ref().map(|b| b.display().to_string()),
        newest,
        locations,
    }
}

/// How the blob backups of one location are named.
struct Site<'a> {
    kind: &'static str,
    /// Blob backups are named after the filestorage backups.
    dated: bool,
    /// Both a directory and an archive of one stamp: the archive counts.
    prefer_archives: bool,
    /// The blob directory's basename.
    base: Option<&'a str>,
}

fn location_status(
    site: &Site<'_>,
    repo: Option<&Path>,
    blob_loc: Option<&Path>,
    now: DateTime<Utc>,
    p: &mut Problems<'_>,
) -> LocationStatus {
    let mut repository = repo.map(|r| repository_status(r, p));
    let (mut blobs, listing) = match blob_loc {
        Some(b) => {
            let (status, listing) = blob_location_status(b, site.base, p);
            (Some(status), listing)
        }
        None => (None, Vec::new()),
    };
    // Pair the filestorage backups with blob backups.
    if let (Some(repo_status), Some(blob_status), Some(repo_path), Some(blob_path)) =
        (repository.as_mut(), blobs.as_mut(), repo, blob_loc)
    {
        pair(
            site,
            repo_path,
            repo_status,
            blob_path,
            blob_status,
            &listing,
            p,
        );
    }
    let newest = newest_of(repository.as_ref(), blobs.as_ref(), repo, blob_loc, now);
    LocationStatus {
        kind: site.kind,
        filestorage: repository,
        blobs,
        newest,
    }
}

fn newest_of(
    repository: Option<&RepositoryStatus>,
    blobs: Option<&BlobLocationStatus>,
    repo: Option<&Path>,
    blob_loc: Option<&Path>,
    now: DateTime<Utc>,
) -> Option<Newest> {
    let make = |stamp: &str, t: DateTime<Utc>, path: String| Newest {
        stamp: stamp.to_owned(),
        time: iso(t),
        age_seconds: (now - t).num_seconds(),
        path,
    };
    if let (Some(r), Some(repo)) = (repository, repo) {
        // The newest filestorage backup that exists, in any chain.
        return r
            .chains
            .iter()
            .flat_map(|c| &c.backups)
            .filter(|b| b.present)
            .max_by(|a, b| a.stamp.cmp(&b.stamp))
            .and_then(|b| {
                naming::parse_timestamp(&b.stamp)
                    .map(|t| make(&b.stamp, t, join(repo, &b.file).display().to_string()))
            });
    }
    // Blobs only: the newest blob backup, by stamp or modification time.
    let (b, loc) = (blobs?, blob_loc?);
    b.backups
        .iter()
        .filter(|x| x.kind != "snapshot_file")
        .filter_map(|x| {
            let t = DateTime::parse_from_rfc3339(&x.time)
                .ok()?
                .with_timezone(&Utc);
            Some((t, x))
        })
        .max_by_key(|(t, _)| *t)
        .map(|(t, x)| {
            make(
                &naming::format_timestamp(t),
                t,
                loc.join(&x.name).display().to_string(),
            )
        })
}

fn repository_status(repo: &Path, p: &mut Problems<'_>) -> RepositoryStatus {
    let mut status = RepositoryStatus {
        path: repo.display().to_string(),
        exists: fs::symlink_metadata(repo).is_ok(),
        bytes: 0,
        by_names: false,
        chains: Vec::new(),
        unlisted: Vec::new(),
        temporaries: Vec::new(),
    };
    if !status.exists {
        return status;
    }
    status.bytes = bytes_of(repo, &mut HashSet::new());
    let survey = match survey(repo) {
        Ok(s) => s,
        Err(e) => {
            p.add(
                ProblemKind::Unreadable,
                repo,
                format!("A backup location cannot be read: {e}"),
            );
            return status;
        }
    };
    status.by_names = survey.by_names;
    for chain in &survey.chains {
        let dat_path = chain.dat.as_deref().map(|d| join(repo, d));
        let at = dat_path.as_deref().unwrap_or(repo);
        for why in &chain.broken {
            p.add(
                ProblemKind::BrokenChain,
                at,
                format!("Broken backup chain {}: {why}.", at.display()),
            );
        }
        status.chains.push(ChainStatus {
            dat: chain.dat.clone(),
            whole: chain.broken.is_empty(),
            bytes: chain.files.iter().filter_map(|f| f.size).sum(),
            problems: chain.broken.clone(),
            backups: chain
                .files
                .iter()
                .map(|f| {
                    let stamp = splitext(&f.name).0.to_owned();
                    FsBackupStatus {
                        time: naming::parse_timestamp(&stamp).map(iso).unwrap_or_default(),
                        stamp,
                        kind: if kind_of(&f.name) == Some(FsKind::Full) {
                            "full"
                        } else {
                            "incremental"
                        },
                        gzip: is_gzip_name(&f.name),
                        present: f.size.is_some(),
                        bytes: f.size,
                        start: f.line.as_ref().map(|l| l.start),
                        end: f.line.as_ref().map(|l| l.end),
                        blob_backup: None,
                        file: f.name.clone(),
                    }
                })
                .collect(),
        });
    }
    for name in &survey.unlisted {
        p.add(
            ProblemKind::UnlistedFile,
            &join(repo, name),
            format!(
                "{} is listed in no .dat: an interrupted backup left it, restores ignore it.",
                join(repo, name).display()
            ),
        );
    }
    for name in &survey.temporaries {
        p.add(
            ProblemKind::TemporaryFile,
            &join(repo, name),
            format!(
                "{} is a temporary file of an interrupted (or running) backup.",
                join(repo, name).display()
            ),
        );
    }
    status.unlisted = survey.unlisted;
    status.temporaries = survey.temporaries;
    status
}

fn blob_location_status(
    loc: &Path,
    base: Option<&str>,
    p: &mut Problems<'_>,
) -> (BlobLocationStatus, Vec<BlobBackup>) {
    let mut status = BlobLocationStatus {
        path: loc.display().to_string(),
        exists: fs::symlink_metadata(loc).is_ok(),
        bytes: 0,
        backups: Vec::new(),
        partials: Vec::new(),
    };
    if !status.exists {
        return (status, Vec::new());
    }
    status.bytes = bytes_of(loc, &mut HashSet::new());
    let listing = match list_backups(loc) {
        Ok(l) => l,
        Err(e) => {
            p.add(
                ProblemKind::Unreadable,
                loc,
                format!("A backup location cannot be read: {e}"),
            );
            return (status, Vec::new());
        }
    };
    if let Ok(rd) = fs::read_dir(loc) {
        let mut partials: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with('.') && n.ends_with(".partial"))
            .collect();
        partials.sort();
        for n in &partials {
            let path = loc.join(n);
            p.add(
                ProblemKind::PartialBuild,
                &path,
                format!(
                    "{} is the unfinished build of an interrupted (or running) blob backup.",
                    path.display()
                ),
            );
        }
        status.partials = partials;
    }
    for b in &listing {
        let (kind, gzip) = match b.name.kind {
            BlobKind::Dir => ("directory", false),
            BlobKind::Tar { gz, delta: false } => ("archive", gz),
            BlobKind::Tar { gz, delta: true } => ("delta", gz),
            BlobKind::Snar => ("snapshot_file", false),
        };
        let time = match &b.name.stamp {
            Stamp::Time(t) => naming::parse_timestamp(t).unwrap_or(b.mtime),
            Stamp::Number(_) => b.mtime,
        };
        let bytes = bytes_of(&b.path, &mut HashSet::new());
        status.backups.push(BlobBackupStatus {
            name: b.name.file_name(),
            kind,
            gzip,
            stamp: b.name.timestamp().map(str::to_owned),
            number: match b.name.stamp {
                Stamp::Number(n) => Some(n),
                Stamp::Time(_) => None,
            },
            time: iso(time),
            bytes,
            filestorage_backup: None,
        });
        // A directory backup holds `<base>/<tree>`; restore needs it.
        if b.is_dir && !b.path.join(&b.name.base).is_dir() {
            p.add(
                ProblemKind::BrokenBlobBackup,
                &b.path,
                format!(
                    "{} holds no {} directory: a restore cannot use it.",
                    b.path.display(),
                    b.name.base
                ),
            );
        }
        // A delta needs a level-0 archive before it.
        if matches!(b.name.kind, BlobKind::Tar { delta: true, .. })
            && !listing.iter().any(|o| {
                matches!(o.name.kind, BlobKind::Tar { delta: false, .. })
                    && o.name.timestamp() < b.name.timestamp()
            })
        {
            p.add(
                ProblemKind::BrokenBlobBackup,
                &b.path,
                format!(
                    "{} is an incremental archive without a level-0 archive before it: a restore cannot use it.",
                    b.path.display()
                ),
            );
        }
    }
    if let Some(base) = base {
        let other: Vec<&str> = listing
            .iter()
            .map(|b| b.name.base.as_str())
            .filter(|b| *b != base)
            .collect();
        if let Some(o) = other.first() {
            p.add(
                ProblemKind::BrokenBlobBackup,
                loc,
                format!(
                    "{} holds backups of another blob directory ({o}, not {base}): backups and restores refuse it.",
                    loc.display()
                ),
            );
        }
    }
    (status, listing)
}

/// Find the blob backup of every filestorage backup, and the dated blob
/// backups that have none (docs/status.rst, pairing).
fn pair(
    site: &Site<'_>,
    repo: &Path,
    r: &mut RepositoryStatus,
    blob_loc: &Path,
    b: &mut BlobLocationStatus,
    listing: &[BlobBackup],
    p: &mut Problems<'_>,
) {
    // Dated backups by stamp (directories and archives, not `.snar`).
    let mut dated: BTreeMap<&str, Vec<&BackupName>> = BTreeMap::new();
    let mut numbered: Vec<&BlobBackup> = Vec::new();
    for x in listing {
        if x.name.kind == BlobKind::Snar {
            continue;
        }
        match &x.name.stamp {
            Stamp::Time(t) => dated.entry(t.as_str()).or_default().push(&x.name),
            Stamp::Number(_) => numbered.push(x),
        }
    }
    // Numbered backups, oldest first by modification time.
    numbered.sort_by_key(|x| x.mtime);
    let mut stamps: Vec<String> = r
        .chains
        .iter()
        .flat_map(|c| &c.backups)
        .filter(|x| x.present)
        .map(|x| x.stamp.clone())
        .collect();
    stamps.sort();
    let newest = stamps.last().cloned();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for backup in r.chains.iter_mut().flat_map(|c| c.backups.iter_mut()) {
        if !backup.present {
            continue;
        }
        let found = dated.get(backup.stamp.as_str()).and_then(|names| {
            names
                .iter()
                .find(|n| n.is_archive() == site.prefer_archives)
                .or_else(|| names.first())
        });
        let blob = if let Some(n) = found {
            Some(BlobRef {
                name: n.file_name(),
                stamp: n.timestamp().map(str::to_owned),
                number: None,
            })
        } else {
            // Numbered: the first one made at or after this backup and
            // before the next one.
            let from = naming::parse_timestamp(&backup.stamp);
            let until = stamps
                .iter()
                .find(|s| **s > backup.stamp)
                .and_then(|s| naming::parse_timestamp(s));
            numbered
                .iter()
                .find(|x| from.is_some_and(|f| x.mtime >= f) && until.is_none_or(|u| x.mtime < u))
                .map(|x| BlobRef {
                    name: x.name.file_name(),
                    stamp: None,
                    number: match x.name.stamp {
                        Stamp::Number(n) => Some(n),
                        Stamp::Time(_) => None,
                    },
                })
        };
        match &blob {
            Some(found) => {
                owner.insert(found.name.clone(), backup.file.clone());
            }
            None if site.dated || newest.as_deref() == Some(backup.stamp.as_str()) => {
                let path = join(repo, &backup.file);
                let expected = site.base.map_or_else(
                    || "a blob backup".to_owned(),
                    |base| {
                        if site.dated {
                            format!("no {base}.{}", backup.stamp)
                        } else {
                            "no numbered blob backup made after it".to_owned()
                        }
                    },
                );
                p.add(
                    ProblemKind::MissingBlobBackup,
                    &path,
                    format!(
                        "{} has no blob backup in {} ({expected}).",
                        path.display(),
                        blob_loc.display()
                    ),
                );
            }
            None => {}
        }
        backup.blob_backup = blob;
    }
    // A blob backup of a listed file that is missing is no orphan: the
    // chain's problem says what is wrong.
    let fs_stamps: HashSet<&str> = r
        .chains
        .iter()
        .flat_map(|c| &c.backups)
        .map(|x| x.stamp.as_str())
        .collect();
    for x in &mut b.backups {
        x.filestorage_backup = owner.get(&x.name).cloned();
        let Some(stamp) = x.stamp.as_deref() else {
            continue;
        };
        // A snapshot file belongs to its level-0 archive.
        let orphan = if x.kind == "snapshot_file" {
            !dated
                .get(stamp)
                .is_some_and(|ns| ns.iter().any(|n| n.is_archive()))
        } else {
            !fs_stamps.contains(stamp)
        };
        if orphan {
            let path = blob_loc.join(&x.name);
            p.add(
                ProblemKind::OrphanBlobBackup,
                &path,
                format!(
                    "{} belongs to no filestorage backup in {}.",
                    path.display(),
                    repo.display()
                ),
            );
        }
    }
}

/// Bytes of the regular files under `path` (or of `path` itself), each
/// inode counted once per `seen`. Symbolic links are not followed;
/// what cannot be read counts nothing.
fn bytes_of(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if m.is_file() {
        return if seen.insert((m.dev(), m.ino())) {
            m.len()
        } else {
            0
        };
    }
    if !m.is_dir() {
        return 0;
    }
    let Ok(rd) = fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(std::result::Result::ok)
        .map(|e| bytes_of(&e.path(), seen))
        .sum()
}

impl StatusReport {
    /// The JSON form (docs/status.schema.json), pretty-printed.
    ///
    /// # Errors
    /// [`Error::Config`] if serialising fails (it does not for this type).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Config(format!("cannot render the status report: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ConfigInput;
    use std::path::PathBuf;

    const S1: &str = "2026-01-01-00-00-00";
    const S2: &str = "2026-01-01-01-00-00";

    struct Fixture {
        _dir: tempfile::TempDir,
        cfg: BackupConfig,
        repo: PathBuf,
        blobs: PathBuf,
    }

    fn fixture(input: ConfigInput) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = BackupConfig::new(ConfigInput {
            var_dir: dir.path().to_path_buf(),
            datafs: Some(dir.path().join("Data.fs")),
            blob_storage: Some(dir.path().join("blobstorage")),
            ..input
        })
        .expect("config");
        let s = &cfg.storages[0];
        let repo = s.backup_location.clone();
        let blobs = s.blob_backup_location.clone().expect("blobs");
        Fixture {
            _dir: dir,
            cfg,
            repo,
            blobs,
        }
    }

    /// A committed chain: a full backup at S1 and an incremental at S2.
    fn chain(repo: &Path) {
        fs::create_dir_all(repo).expect("mkdir");
        fs::write(repo.join(format!("{S1}.fs")), "0123").expect("write");
        fs::write(repo.join(format!("{S2}.deltafs")), "45").expect("write");
        let line = |n: &str, a: u64, b: u64| format!("{} {a} {b} x\n", repo.join(n).display());
        fs::write(
            repo.join(format!("{S1}.dat")),
            line(&format!("{S1}.fs"), 0, 4) + &line(&format!("{S2}.deltafs"), 4, 6),
        )
        .expect("write");
    }

    fn blob_dir(loc: &Path, stamp: &str) -> PathBuf {
        let p = loc.join(format!("blobstorage.{stamp}"));
        fs::create_dir_all(p.join("blobstorage")).expect("mkdir");
        fs::write(p.join("blobstorage").join(".layout"), "bushy").expect("write");
        p
    }

    fn at(stamp: &str) -> DateTime<Utc> {
        naming::parse_timestamp(stamp).expect("stamp")
    }

    fn kinds(r: &StatusReport) -> Vec<ProblemKind> {
        r.problems.iter().map(|p| p.kind).collect()
    }

    fn run(f: &Fixture, now: DateTime<Utc>, max_age: Option<u64>) -> StatusReport {
        status(&f.cfg, now, max_age).expect("status")
    }

    #[test]
    fn status_healthy_site() {
        let f = fixture(ConfigInput::default());
        chain(&f.repo);
        blob_dir(&f.blobs, S1);
        blob_dir(&f.blobs, S2);
        let r = run(&f, at(S2) + chrono::Duration::seconds(90), Some(3600));
        assert!(r.healthy, "{:?}", r.problems);
        assert!(r.to_text().ends_with("\nOK\n"), "{}", r.to_text());
        let s = &r.storages[0];
        let newest = s.newest.as_ref().expect("newest");
        assert_eq!((newest.stamp.as_str(), newest.age_seconds), (S2, 90));
        let repo = s.locations[0].filestorage.as_ref().expect("repo");
        assert_eq!(repo.chains.len(), 1);
        let names: Vec<Option<String>> = repo.chains[0]
            .backups
            .iter()
            .map(|b| b.blob_backup.as_ref().map(|x| x.name.clone()))
            .collect();
        assert_eq!(
            names,
            [
                Some(format!("blobstorage.{S1}")),
                Some(format!("blobstorage.{S2}"))
            ]
        );
        // 4 + 2 data bytes, the .dat, and the two .layout files.
        let dat = fs::metadata(f.repo.join(format!("{S1}.dat")))
            .expect("dat")
            .len();
        assert_eq!(repo.bytes, 6 + dat);
        assert_eq!(s.locations[0].blobs.as_ref().expect("blobs").bytes, 10);
        // Snapshots and zip do not exist, and are no problem.
        assert!(!s.locations[1].filestorage.as_ref().expect("snap").exists);
    }

    #[test]
    fn status_missing_and_orphan_blob_backups() {
        let f = fixture(ConfigInput::default());
        chain(&f.repo);
        blob_dir(&f.blobs, S1);
        blob_dir(&f.blobs, "2025-12-31-00-00-00");
        let r = run(&f, at(S2), None);
        assert_eq!(
            kinds(&r),
            [
                ProblemKind::MissingBlobBackup,
                ProblemKind::OrphanBlobBackup
            ]
        );
        assert!(r.problems[0].path.ends_with(&format!("{S2}.deltafs")));
        assert!(r.problems[0]
            .message
            .ends_with(&format!("(no blobstorage.{S2}).")));
        assert!(r.to_text().ends_with("\n2 problems found\n"));
    }

    #[test]
    fn status_leftovers_are_problems() {
        let f = fixture(ConfigInput::default());
        chain(&f.repo);
        blob_dir(&f.blobs, S1);
        blob_dir(&f.blobs, S2);
        fs::write(f.repo.join("2026-01-01-02-00-00.deltafs"), "67").expect("write");
        fs::write(f.repo.join(".2026-01-01-02-00-00.deltafs.abc123.tmp"), "6").expect("write");
        fs::create_dir(f.blobs.join(".blobstorage.2026-01-01-02-00-00.partial")).expect("mkdir");
        let r = run(&f, at(S2), None);
        assert_eq!(
            kinds(&r),
            [
                ProblemKind::UnlistedFile,
                ProblemKind::TemporaryFile,
                ProblemKind::PartialBuild
            ]
        );
        // Read-only: all of it is still there.
        assert!(f.repo.join("2026-01-01-02-00-00.deltafs").exists());
        assert!(f
            .blobs
            .join(".blobstorage.2026-01-01-02-00-00.partial")
            .exists());
    }

    #[test]
    fn status_broken_chain() {
        let f = fixture(ConfigInput::default());
        chain(&f.repo);
        blob_dir(&f.blobs, S1);
        // The blob backup of the lost increment is no orphan.
        blob_dir(&f.blobs, S2);
        fs::remove_file(f.repo.join(format!("{S2}.deltafs"))).expect("rm");
        let r = run(&f, at(S2), None);
        assert_eq!(kinds(&r), [ProblemKind::BrokenChain]);
        assert!(r.problems[0].message.contains("is missing"));
        let repo = r.storages[0].locations[0]
            .filestorage
            .as_ref()
            .expect("repo");
        assert!(!repo.chains[0].whole);
        // The newest backup that exists is the full one.
        assert_eq!(r.storages[0].newest.as_ref().expect("newest").stamp, S1);
    }

    #[test]
    fn status_too_old_and_no_backups() {
        let f = fixture(ConfigInput::default());
        let r = run(&f, at(S2), Some(60));
        assert_eq!(kinds(&r), [ProblemKind::NoBackups]);
        chain(&f.repo);
        blob_dir(&f.blobs, S1);
        blob_dir(&f.blobs, S2);
        let r = run(&f, at(S2) + chrono::Duration::seconds(61), Some(60));
        assert_eq!(kinds(&r), [ProblemKind::TooOld]);
        assert!(
            r.problems[0].message.contains("is 1m 1s old"),
            "{}",
            r.problems[0].message
        );
        let r = run(&f, at(S2) + chrono::Duration::seconds(60), Some(60));
        assert!(r.healthy);
    }

    #[test]
    fn status_numbered_blob_backups_by_modification_time() {
        let f = fixture(ConfigInput {
            blob_timestamps: Some(false),
            ..ConfigInput::default()
        });
        chain(&f.repo);
        let set = |p: &Path, t: DateTime<Utc>| {
            filetime::set_file_mtime(p, filetime::FileTime::from_unix_time(t.timestamp(), 0))
                .expect("mtime");
        };
        let one = blob_dir(&f.blobs, "1");
        set(&one, at(S1) + chrono::Duration::seconds(1));
        let zero = blob_dir(&f.blobs, "0");
        set(&zero, at(S2) + chrono::Duration::seconds(1));
        let r = run(&f, at(S2), None);
        assert!(r.healthy, "{:?}", r.problems);
        let repo = r.storages[0].locations[0]
            .filestorage
            .as_ref()
            .expect("repo");
        let numbers: Vec<Option<u64>> = repo.chains[0]
            .backups
            .iter()
            .map(|b| b.blob_backup.as_ref().and_then(|x| x.number))
            .collect();
        assert_eq!(numbers, [Some(1), Some(0)]);
        // Without one made after the newest filestorage backup: missing.
        fs::remove_dir_all(&zero).expect("rm");
        assert_eq!(
            kinds(&run(&f, at(S2), None)),
            [ProblemKind::MissingBlobBackup]
        );
    }

    #[test]
    fn status_only_blobs_counts_blob_backups() {
        let f = fixture(ConfigInput {
            only_blobs: true,
            ..ConfigInput::default()
        });
        let r = run(&f, at(S2), None);
        assert_eq!(kinds(&r), [ProblemKind::NoBackups]);
        assert!(r.problems[0].path.ends_with("blobstorage"));
        blob_dir(&f.blobs, S1);
        let r = run(&f, at(S2), Some(3600));
        assert!(r.healthy, "{:?}", r.problems);
        assert!(r.storages[0].locations[0].filestorage.is_none());
        let newest = r.storages[0].newest.as_ref().expect("newest");
        assert_eq!((newest.stamp.as_str(), newest.age_seconds), (S1, 3600));
    }

    #[test]
    fn status_location_that_cannot_be_listed_is_unreadable() {
        let f = fixture(ConfigInput::default());
        fs::write(&f.repo, "not a directory").expect("write");
        fs::write(&f.blobs, "not a directory").expect("write");
        let r = run(&f, at(S2), None);
        assert_eq!(
            kinds(&r),
            [
                ProblemKind::Unreadable,
                ProblemKind::Unreadable,
                ProblemKind::NoBackups
            ]
        );
        for p in &r.problems[..2] {
            assert!(
                p.message.starts_with("A backup location cannot be read: "),
                "{}",
                p.message
            );
            assert!(p.message.contains(&p.path), "{}", p.message);
            assert!(!p.message.contains("os error"), "{}", p.message);
        }
    }

    #[test]
    fn status_delta_without_level0_is_broken() {
        let f = fixture(ConfigInput {
            archive_blob: Some(true),
            incremental_blobs: true,
            ..ConfigInput::default()
        });
        chain(&f.repo);
        fs::create_dir_all(&f.blobs).expect("mkdir");
        fs::write(f.blobs.join(format!("blobstorage.{S2}.delta.tar")), "x").expect("write");
        let r = run(&f, at(S2), None);
        assert_eq!(
            kinds(&r),
            [
                ProblemKind::BrokenBlobBackup,
                ProblemKind::MissingBlobBackup
            ]
        );
        fs::write(f.blobs.join(format!("blobstorage.{S1}.tar")), "x").expect("write");
        fs::write(f.blobs.join(format!("blobstorage.{S1}.snar")), "x").expect("write");
        let r = run(&f, at(S2), None);
        assert!(r.healthy, "{:?}", r.problems);
    }

    #[test]
    fn max_age_units() {
        assert_eq!(parse_max_age("3600").ok(), Some(3600));
        assert_eq!(parse_max_age("90m").ok(), Some(5400));
        assert_eq!(parse_max_age("26h").ok(), Some(93_600));
        assert_eq!(parse_max_age("2d").ok(), Some(172_800));
        assert_eq!(parse_max_age("1w").ok(), Some(604_800));
        assert_eq!(parse_max_age(" 30s ").ok(), Some(30));
    }

    #[test]
    fn max_age_bad_is_one_config_line() {
        for bad in [
            "",
            "h",
            "2x",
            "-1h",
            "1.5h",
            "0",
            "0d",
            "2 d x",
            "99999999999999999999w",
        ] {
            match parse_max_age(bad) {
                Err(Error::Config(m)) => {
                    assert!(
                        m.starts_with(&format!("Could not parse maximum age '{bad}'.")),
                        "{m}"
                    );
                    assert!(!m.contains('\n'));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
