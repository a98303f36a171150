//! Off-site copies of the backups in S3-compatible object storage.
//!
//! `push` uploads what the store lacks, `pull` brings a chain and its blob
//! backup back into the local locations (so `bin/restore` works as usual
//! on a new server), `status` compares the two sides and `verify` checks
//! the store's objects against what was uploaded, without downloading blob
//! contents. The layout of the store is described in docs/offsite.rst:
//!
//! ```text
//! PREFIX/<storage>/<set>/filestorage/<repozo file>      .fs .fsz .deltafs(z) .index .dat
//! PREFIX/<storage>/<set>/blobstorage/<archive>          blobstorage.<stamp>.tar[.gz] ...
//! PREFIX/<storage>/<set>/blobstorage/<name>.manifest    a directory blob backup
//! PREFIX/<storage>/blobfiles/<path in the blob dir>     each blob file, once
//! ```
//!
//! `<storage>` is the storage's name (`1` for the main database, as in
//! zope.conf), `<set>` is `backup`, `snapshot` or `zip`.
//!
//! Commit points: a repozo file counts once the `.dat` that lists it is
//! in the store, and the `.dat` goes up last; a directory blob backup
//! counts once its manifest is in the store, and the manifest goes up after
//! every file it names was confirmed. Retention in the store runs only after
//! everything of the run was confirmed.

#[cfg(feature = "offsite")]
pub mod credentials;
pub mod manifest;
#[cfg(feature = "offsite")]
mod pull;
#[cfg(feature = "offsite")]
mod push;
#[cfg(feature = "offsite")]
mod report;
#[cfg(feature = "offsite")]
pub mod store;

use std::path::{Path, PathBuf};

use crate::commands::BackupMode;
use crate::config::{BackupConfig, Storage};
use crate::error::{Error, Result};

#[cfg(feature = "offsite")]
pub use pull::pull;
#[cfg(feature = "offsite")]
pub use push::{push, push_after_backup};
#[cfg(feature = "offsite")]
pub use report::{status, verify};

/// Without the `offsite` feature: nothing to push, or one line saying
/// this build cannot.
///
/// # Errors
/// [`Error::Config`] when `offsite` is set.
#[cfg(not(feature = "offsite"))]
pub fn push_after_backup(cfg: &BackupConfig, _mode: BackupMode) -> Result<()> {
    match cfg.offsite {
        Some(_) => Err(not_built()),
        None => Ok(()),
    }
}

#[cfg(not(feature = "offsite"))]
fn not_built() -> Error {
    Error::Config("this build has no offsite support (cargo feature offsite).".to_owned())
}

/// Parallel transfers when `offsite_jobs` is not set.
pub const DEFAULT_JOBS: u32 = 8;

/// The `offsite*` options as given.
#[derive(Debug, Clone, Default)]
pub struct OffsiteInput {
    /// `offsite`.
    pub url: Option<String>,
    /// `offsite_endpoint`.
    pub endpoint: Option<String>,
    /// `offsite_region`.
    pub region: Option<String>,
    /// `offsite_keep` (already defaulted to `keep`).
    pub keep: u32,
    /// `offsite_jobs`.
    pub jobs: Option<u32>,
    /// `offsite_credentials`.
    pub credentials: Option<PathBuf>,
}

/// Where and how backups are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsiteConfig {
    /// The bucket.
    pub bucket: String,
    /// The prefix inside it, without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// The endpoint URL (`http://127.0.0.1:3900`, `https://s3.example.org`).
    pub endpoint: Option<String>,
    /// The region (`garage`, `eu-west-1`); default `us-east-1`.
    pub region: Option<String>,
    /// Full backups kept in the store (0 = all).
    pub keep: u32,
    /// Parallel transfers.
    pub jobs: usize,
    /// An AWS shared credentials file.
    pub credentials: Option<PathBuf>,
}

impl OffsiteConfig {
    /// Validate the options. `None` when `offsite` is not set (the other
    /// `offsite_*` options are then a warning: they do nothing).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not `s3://BUCKET[/PREFIX]`, a
    /// zero `offsite_jobs` or an endpoint that is not an http(s) URL.
    pub fn new(input: OffsiteInput, warnings: &mut Vec<String>) -> Result<Option<Self>> {
        let Some(url) = input.url.filter(|u| !u.trim().is_empty()) else {
            let set: Vec<&str> = [
                ("offsite_endpoint", input.endpoint.is_some()),
                ("offsite_region", input.region.is_some()),
                ("offsite_jobs", input.jobs.is_some()),
                ("offsite_credentials", input.credentials.is_some()),
            ]
            .iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| *n)
            .collect();
            if !set.is_empty() {
                warnings.push(format!(
                    "{} set without offsite: nothing is pushed.",
                    set.join(", ")
                ));
            }
            return Ok(None);
        };
        let (bucket, prefix) = parse_url(url.trim())?;
        if let Some(e) = &input.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "offsite_endpoint '{e}' is not an http:// or https:// URL."
                )));
            }
        }
        let jobs = input.jobs.unwrap_or(DEFAULT_JOBS);
        if jobs == 0 {
            return Err(Error::Config("offsite_jobs must be at least 1.".to_owned()));
        }
        Ok(Some(OffsiteConfig {
            bucket,
            prefix,
            endpoint: input.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: input.region.filter(|r| !r.trim().is_empty()),
            keep: input.keep,
            jobs: usize::try_from(jobs).unwrap_or(usize::MAX),
            credentials: input.credentials,
        }))
    }

    /// `s3://bucket/prefix`.
    #[must_use]
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// `s3://BUCKET[/PREFIX]` → (bucket, prefix without surrounding `/`).
///
/// # Errors
/// [`Error::Config`] naming the value.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::Config(format!(
            "offsite '{url}' {why}: expected s3://BUCKET or s3://BUCKET/PREFIX."
        ))
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("does not start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(bad("has no valid bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(bad("has a prefix with empty, . or .. parts"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// A set of backups: `bin/backup`'s, `bin/snapshotbackup`'s or
/// `bin/zipbackup`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// `bin/backup` and `bin/fullbackup`.
    Backup,
    /// `bin/snapshotbackup`.
    Snapshot,
    /// `bin/zipbackup`.
    Zip,
}

impl Set {
    /// Every set, in the order commands visit them.
    pub const ALL: [Set; 3] = [Set::Backup, Set::Snapshot, Set::Zip];

    /// Its name in the store and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Set::Backup => "backup",
            Set::Snapshot => "snapshot",
            Set::Zip => "zip",
        }
    }

    /// Parse `backup`, `snapshot` or `zip`.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn parse(text: &str) -> Result<Set> {
        Set::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown backup set '{text}': expected backup, snapshot or zip."
                ))
            })
    }

    /// The set a backup script writes.
    #[must_use]
    pub fn of_mode(mode: BackupMode) -> Set {
        match mode {
            BackupMode::Standard | BackupMode::Full => Set::Backup,
            BackupMode::Snapshot => Set::Snapshot,
            BackupMode::Zip => Set::Zip,
        }
    }

    /// Full backups kept in the store for this set: `offsite_keep`, but
    /// one for the zip set, as locally.
    #[cfg(feature = "offsite")]
    fn keep(self, cfg: &OffsiteConfig) -> u32 {
        match self {
            Set::Zip => 1,
            _ => cfg.keep,
        }
    }
}

/// One storage's backups of one set: the local locations and the keys.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    /// The storage.
    pub storage: &'a Storage,
    /// The set.
    pub set: Set,
    /// The local repozo repository (`None` with `only_blobs`).
    pub fs_location: Option<&'a Path>,
    /// The local blob backup location (`None` without blobs).
    pub blob_location: Option<&'a Path>,
}

impl Place<'_> {
    /// `<storage>/<set>/filestorage/`.
    #[must_use]
    pub fn fs_dir(&self) -> String {
        format!("{}/{}/filestorage", self.storage.name, self.set.name())
    }

    /// `<storage>/<set>/blobstorage/`.
    #[must_use]
    pub fn blob_dir(&self) -> String {
        blob_dir(self.storage, self.set)
    }

    /// `<storage>/blobfiles`: blob files, shared by every set.
    #[must_use]
    pub fn blobfiles_dir(&self) -> String {
        blobfiles_dir(self.storage)
    }

    /// `storage 1 (backup)`, for messages.
    #[must_use]
    pub fn label(&self) -> String {
        format!("storage {} ({})", self.storage.name, self.set.name())
    }
}

/// `<storage>/<set>/blobstorage`: a set's blob backups in the store.
#[must_use]
pub fn blob_dir(storage: &Storage, set: Set) -> String {
    format!("{}/{}/blobstorage", storage.name, set.name())
}

/// `<storage>/blobfiles`: the blob files of a storage, shared by every set.
#[must_use]
pub fn blobfiles_dir(storage: &Storage) -> String {
    format!("{}/blobfiles", storage.name)
}

/// The places of `sets` in `cfg`, storages in processing order.
#[must_use]
pub fn places<'a>(cfg: &'a BackupConfig, sets: &[Set]) -> Vec<Place<'a>> {
    let mut out = Vec::new();
    for s in &cfg.storages {
        for set in sets {
            let (fs, blobs) = match set {
                Set::Backup => (&s.backup_location, s.blob_backup_location.as_deref()),
                Set::Snapshot => (&s.snapshot_location, s.blob_snapshot_location.as_deref()),
                Set::Zip => (&s.zip_location, s.blob_zip_location.as_deref()),
            };
            out.push(Place {
                storage: s,
                set: *set,
                fs_location: (!cfg.only_blobs).then_some(fs.as_path()),
                blob_location: if cfg.backup_blobs { blobs } else { None },
            });
        }
    }
    out
}

/// `bin/offsite ACTION`: `push` (every set, or `set`), `pull [date]`
/// (`set` default `backup`), `status`, `verify`. Returns `(ok, report)`:
/// the report text of `status` and `verify` (empty for the others, which
/// log as they go).
///
/// # Errors
/// [`Error::Config`] for an unknown action, set or date;
/// [`Error::Offsite`] and [`Error::Io`] from the action.
pub fn run(
    cfg: &BackupConfig,
    action: &str,
    set: Option<&str>,
    date: Option<&str>,
) -> Result<(bool, String)> {
    let sets: Vec<Set> = match set {
        Some(s) => vec![Set::parse(s)?],
        None => Set::ALL.to_vec(),
    };
    if date.is_some() && action != "pull" {
        return Err(Error::Config(format!(
            "offsite {action} takes no date; only pull does."
        )));
    }
    #[cfg(not(feature = "offsite"))]
    {
        let _ = (cfg, sets);
        Err(not_built())
    }
    #[cfg(feature = "offsite")]
    {
        match action {
            "push" => push(cfg, &sets).map(|()| (true, String::new())),
            "pull" => {
                let date = date.map(crate::config::RestoreDate::parse).transpose()?;
                let set = match set {
                    Some(s) => Set::parse(s)?,
                    None => Set::Backup,
                };
                pull(cfg, set, date.as_ref()).map(|()| (true, String::new()))
            }
            "status" => status(cfg, &sets),
            "verify" => verify(cfg, &sets),
            other => Err(Error::Config(format!(
                "unknown offsite action '{other}': expected push, pull, status or verify."
            ))),
        }
    }
}

/// The offsite configuration, or the line saying it is missing.
///
/// # Errors
/// [`Error::Config`].
pub fn configured(cfg: &BackupConfig) -> Result<&OffsiteConfig> {
    cfg.offsite.as_ref().ok_or_else(|| {
        Error::Config(
            "offsite is not set: add offsite = s3://BUCKET/PREFIX to the configuration.".to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://plone-backups/site1/").expect("ok"),
            ("plone-backups".to_owned(), "site1".to_owned())
        );
        assert_eq!(
            parse_url("s3://plone-backups").expect("ok"),
            ("plone-backups".to_owned(), String::new())
        );
        for bad in [
            "plone",
            "s3://",
            "s3://A_B/x",
            "s3://bk/../x",
            "s3://bk/a//b",
        ] {
            assert!(matches!(parse_url(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn options_without_offsite_warn() {
        let mut w = Vec::new();
        let got = OffsiteConfig::new(
            OffsiteInput {
                endpoint: Some("http://x".into()),
                keep: 2,
                ..OffsiteInput::default()
            },
            &mut w,
        )
        .expect("ok");
        assert!(got.is_none());
        assert_eq!(
            w,
            ["offsite_endpoint set without offsite: nothing is pushed."]
        );
        let err = OffsiteConfig::new(
            OffsiteInput {
                url: Some("s3://bucket".into()),
                jobs: Some(0),
                ..OffsiteInput::default()
            },
            &mut w,
        );
        assert!(matches!(err, Err(Error::Config(_))));
    }
}
