//! THE parser of names in a blob backup location (see docs/blobs.rst).
//!
//! Every place that needs to know what an entry in a blob backup location
//! is (backup, restore, retention, listing) goes through [`BackupName`].
//! The grammar is `<base>.<stamp>[<suffix>]` where `<stamp>` is a number
//! (legacy rotation, `.0` newest) or a UTC timestamp `YYYY-MM-DD-HH-MM-SS`,
//! and `<suffix>` is nothing (a directory), `.tar`, `.tar.gz`,
//! `.delta.tar`, `.delta.tar.gz` or `.snar`. The base may itself contain
//! dots (6.0 rejected those, so a blobstorage called `blob.store` produced
//! backups it could not see; CHANGES.rst).
//!
//! Names starting with a dot are never backups: the temporary names under
//! which backups are built (`.<name>.partial`) start with one.
//!
//! This module also holds the few facts about repozo names the blob code
//! needs (newest data file, full backups). They mirror repozo's regex
//! `\d{4}(?:-\d\d){5}\.(?:delta)?fsz?$` (see docs/repository.rst); the repozo
//! engine has its own copy, to be merged.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::error::{Error, IoContext, Result};

/// The name of the relative symlink to the newest backup.
pub const LATEST: &str = "latest";

/// The stamp part of a backup name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stamp {
    /// Legacy rotation number (`blob_timestamps = false`); 0 is the newest.
    Number(u64),
    /// A UTC timestamp `YYYY-MM-DD-HH-MM-SS`, as repozo names its files.
    Time(String),
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stamp::Number(n) => write!(f, "{n}"),
            Stamp::Time(t) => f.write_str(t),
        }
    }
}

/// What kind of entry a backup name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A directory `<base>.<stamp>/` holding `<base>/<tree>`.
    Dir,
    /// A tar archive of the contents of the blob directory.
    Tar {
        /// `.gz` suffix: gzip-compressed.
        gz: bool,
        /// `.delta.` infix: a GNU incremental archive after a level 0.
        delta: bool,
    },
    /// A GNU tar snapshot file (`--listed-incremental`), format 2.
    Snar,
}

/// A parsed entry name of a blob backup location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupName {
    /// The basename of the backed-up blob directory, e.g. `blobstorage`.
    pub base: String,
    /// Number or timestamp.
    pub stamp: Stamp,
    /// Directory, archive or snapshot file.
    pub kind: Kind,
}

impl BackupName {
    /// A name with the given parts.
    #[must_use]
    pub fn new(base: &str, stamp: Stamp, kind: Kind) -> Self {
        BackupName {
            base: base.to_owned(),
            stamp,
            kind,
        }
    }

    /// Parse an entry name; `None` for anything that is not a blob backup
    /// (including `latest`, hidden and temporary names).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        if name.starts_with('.') || name == LATEST {
            return None;
        }
        let suffixes: [(&str, Kind); 5] = [
            (
                ".delta.tar.gz",
                Kind::Tar {
                    gz: true,
                    delta: true,
                },
            ),
            (
                ".delta.tar",
                Kind::Tar {
                    gz: false,
                    delta: true,
                },
            ),
            (
                ".tar.gz",
                Kind::Tar {
                    gz: true,
                    delta: false,
                },
            ),
            (
                ".tar",
                Kind::Tar {
                    gz: false,
                    delta: false,
                },
            ),
            (".snar", Kind::Snar),
        ];
        let (stem, kind) = suffixes
            .iter()
            .find_map(|(suffix, kind)| name.strip_suffix(suffix).map(|s| (s, *kind)))
            .unwrap_or((name, Kind::Dir));
        let (base, stamp) = stem.rsplit_once('.')?;
        if base.is_empty() {
            return None;
        }
        let stamp = if is_timestamp(stamp) {
            Stamp::Time(stamp.to_owned())
        } else if !stamp.is_empty()
            && stamp.len() <= 18
            && stamp.bytes().all(|b| b.is_ascii_digit())
        {
            Stamp::Number(stamp.parse().ok()?)
        } else {
            return None;
        };
        if matches!(kind, Kind::Tar { delta: true, .. } | Kind::Snar)
            && matches!(stamp, Stamp::Number(_))
        {
            // Deltas and snapshot files only ever exist with timestamps.
            return None;
        }
        Some(BackupName {
            base: base.to_owned(),
            stamp,
            kind,
        })
    }

    /// The entry name this parses from.
    #[must_use]
    pub fn file_name(&self) -> String {
        let suffix = match self.kind {
            Kind::Dir => "",
            Kind::Tar {
                gz: false,
                delta: false,
            } => ".tar",
            Kind::Tar {
                gz: true,
                delta: false,
            } => ".tar.gz",
            Kind::Tar {
                gz: false,
                delta: true,
            } => ".delta.tar",
            Kind::Tar {
                gz: true,
                delta: true,
            } => ".delta.tar.gz",
            Kind::Snar => ".snar",
        };
        format!("{}.{}{}", self.base, self.stamp, suffix)
    }

    /// The timestamp, if the stamp is one.
    #[must_use]
    pub fn timestamp(&self) -> Option<&str> {
        match &self.stamp {
            Stamp::Time(t) => Some(t),
            Stamp::Number(_) => None,
        }
    }

    /// Is this an archive (full or delta)?
    #[must_use]
    pub fn is_archive(&self) -> bool {
        matches!(self.kind, Kind::Tar { .. })
    }
}

/// Order of backups, newest first: timestamps are newer than any number,
/// later timestamps are newer, and among numbers `.0` is newest (6.0's
/// `number_key`). Equal stamps order deltas after fulls, so that a full and
/// a delta of one second are never mixed up.
#[must_use]
pub fn newest_first(a: &BackupName, b: &BackupName) -> Ordering {
    let by_stamp = match (&a.stamp, &b.stamp) {
        (Stamp::Time(x), Stamp::Time(y)) => y.cmp(x),
        (Stamp::Time(_), Stamp::Number(_)) => Ordering::Less,
        (Stamp::Number(_), Stamp::Time(_)) => Ordering::Greater,
        (Stamp::Number(x), Stamp::Number(y)) => x.cmp(y),
    };
    by_stamp.then_with(|| a.file_name().cmp(&b.file_name()))
}

/// Is `s` exactly a `YYYY-MM-DD-HH-MM-SS` stamp (digits and dashes)? The
/// same test as for repozo's file names: one definition for both.
#[must_use]
pub fn is_timestamp(s: &str) -> bool {
    crate::repozo::naming::is_timestamp(s.as_bytes())
}

/// Format a UTC time as a backup stamp (`gen_timestamp`).
#[must_use]
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d-%H-%M-%S").to_string()
}

/// Parse a stamp back into a UTC time.
#[must_use]
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if !is_timestamp(s) {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d-%H-%M-%S")
        .ok()
        .map(|n| n.and_utc())
}

/// A restore date `yyyy-mm-dd[-hh[-mm[-ss]]]` (UTC), validated.
///
/// The scripts' rule, also for the library: the date is normalised to
/// `YYYY-MM-DD-HH-MM-SS` (missing parts zero, so `2026-11-26` means the start
/// of that day, a backup made at that very second included), and timestamped
/// backups are selected by string comparison of their stamp with it, as
/// repozo compares its names (see docs/blobs.rst). Numbered backups, which have
/// no stamp, are selected by modification time against [`RestoreDate::time`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreDate {
    text: String,
    time: DateTime<Utc>,
}

impl RestoreDate {
    /// Parse and validate a date argument.
    ///
    /// # Errors
    /// [`Error::BadBlobDate`] when it is not `yyyy-mm-dd[-hh[-mm[-ss]]]` or not
    /// a real calendar date and time.
    pub fn parse(text: &str) -> Result<Self> {
        let d = crate::config::RestoreDate::parse(text).map_err(|_| Error::BadBlobDate {
            date: text.to_owned(),
        })?;
        Ok(RestoreDate::from(&d))
    }

    /// The date, normalised to `YYYY-MM-DD-HH-MM-SS`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The moment it denotes (missing parts are zero).
    #[must_use]
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// Is a backup with timestamp `stamp` at or before this date?
    #[must_use]
    pub fn admits_stamp(&self, stamp: &str) -> bool {
        stamp <= self.text.as_str()
    }
}

/// The scripts' date (parsed once, by [`crate::config::RestoreDate`]) as a
/// blob restore date: its normalised text `YYYY-MM-DD-HH-MM-SS`, so that
/// the filestorage and the blobs are selected with the same string.
impl From<&crate::config::RestoreDate> for RestoreDate {
    fn from(d: &crate::config::RestoreDate) -> Self {
        RestoreDate {
            text: d.to_string(),
            time: d.0.and_utc(),
        }
    }
}

/// Is `name` a repozo data file (`TS.fs`, `.fsz`, `.deltafs`, `.deltafsz`)?
/// Returns its stamp and whether it is a full backup. Delegates to the
/// repozo engine's recognition of data files, so both agree by definition.
#[must_use]
pub fn parse_repozo_data_file(name: &str) -> Option<(&str, bool)> {
    use crate::repozo::naming::{is_data_file, kind_of, Kind};
    if !is_data_file(name) {
        return None;
    }
    let full = kind_of(name)? == Kind::Full;
    Some((name.get(..19)?, full))
}

/// The repozo data files of a filestorage backup directory, as
/// `(stamp, is_full)` sorted by stamp. A missing directory has none.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read.
pub fn repozo_data_files(dir: &Path) -> Result<Vec<(String, bool)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if let Some((stamp, full)) = name.to_str().and_then(parse_repozo_data_file) {
            out.push((stamp.to_owned(), full));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The stamp of the newest repozo data file in `dir` (full or incremental):
/// the name a blob backup made after it gets (see docs/blobs.rst).
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read.
pub fn newest_repozo_stamp(dir: &Path) -> Result<Option<String>> {
    Ok(repozo_data_files(dir)?.pop().map(|(s, _)| s))
}

/// The stamps of the full repozo backups (`.fs`, `.fsz`) in `dir`, oldest
/// first.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read.
pub fn repozo_full_stamps(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = repozo_data_files(dir)?
        .into_iter()
        .filter(|(_, full)| *full)
        .map(|(s, _)| s)
        .collect();
    v.dedup();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<BackupName> {
        BackupName::parse(s)
    }

    #[test]
    fn parse_numbered_dir() {
        let n = p("blobstorage.0").unwrap_or_else(|| panic!("no parse"));
        assert_eq!(n.base, "blobstorage");
        assert_eq!(n.stamp, Stamp::Number(0));
        assert_eq!(n.kind, Kind::Dir);
    }

    #[test]
    fn parse_timestamp_dir_with_dots_in_base() {
        let n = p("blob.store.2026-11-26-10-00-00").unwrap_or_else(|| panic!("no parse"));
        assert_eq!(n.base, "blob.store");
        assert_eq!(n.stamp, Stamp::Time("2026-11-26-10-00-00".into()));
    }

    #[test]
    fn parse_archives() {
        let cases = [
            (
                "b.1.tar",
                Kind::Tar {
                    gz: false,
                    delta: false,
                },
            ),
            (
                "b.1.tar.gz",
                Kind::Tar {
                    gz: true,
                    delta: false,
                },
            ),
            (
                "b.2026-11-26-10-00-00.delta.tar",
                Kind::Tar {
                    gz: false,
                    delta: true,
                },
            ),
            (
                "b.2026-11-26-10-00-00.delta.tar.gz",
                Kind::Tar {
                    gz: true,
                    delta: true,
                },
            ),
            ("b.2026-11-26-10-00-00.snar", Kind::Snar),
        ];
        for (name, kind) in cases {
            let n = p(name).unwrap_or_else(|| panic!("no parse {name}"));
            assert_eq!(n.kind, kind, "{name}");
            assert_eq!(n.base, "b");
            assert_eq!(n.file_name(), name);
        }
    }

    #[test]
    fn parse_rejects_non_backups() {
        for name in [
            "latest",
            ".blobstorage.0.partial",
            "blobstorage",
            "blobstorage.",
            ".0",
            "blobstorage.x",
            "blobstorage.2026-11-26",
            "blobstorage.1.delta.tar",
            "blobstorage.1.snar",
            "blobstorage.2026-11-26-10-00-00.zip",
        ] {
            assert_eq!(p(name), None, "{name}");
        }
    }

    #[test]
    fn parse_unicode_and_spaces() {
        let n = p("blöb störage.2026-01-02-03-04-05.tar.gz").unwrap_or_else(|| panic!("no"));
        assert_eq!(n.base, "blöb störage");
    }

    #[test]
    fn newest_first_order() {
        let mut v: Vec<BackupName> = [
            "b.1",
            "b.2026-01-01-00-00-00",
            "b.0",
            "b.2027-01-01-00-00-00",
            "b.10",
        ]
        .iter()
        .filter_map(|s| p(s))
        .collect();
        v.sort_by(newest_first);
        let names: Vec<String> = v.iter().map(BackupName::file_name).collect();
        assert_eq!(
            names,
            [
                "b.2027-01-01-00-00-00",
                "b.2026-01-01-00-00-00",
                "b.0",
                "b.1",
                "b.10"
            ]
        );
    }

    #[test]
    fn restore_date_parse_and_compare() {
        // The scripts' rule: a bare day is its midnight, inclusive.
        let d = RestoreDate::parse("2026-11-26").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.as_str(), "2026-11-26-00-00-00");
        assert!(d.admits_stamp("2026-11-26-00-00-00"));
        assert!(!d.admits_stamp("2026-11-26-00-00-01"));
        assert!(d.admits_stamp("2026-11-25-23-59-59"));
        let d = RestoreDate::parse("2026-1-5-9").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.as_str(), "2026-01-05-09-00-00");
        let d = RestoreDate::parse("2026-11-26-10-00-00").unwrap_or_else(|e| panic!("{e}"));
        assert!(d.admits_stamp("2026-11-26-10-00-00"));
        assert!(!d.admits_stamp("2026-11-26-10-00-01"));
        for bad in ["2026-13-45", "2026-11", "-qn", "2026-11-26-25", "x"] {
            assert!(RestoreDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repozo_names() {
        assert_eq!(
            parse_repozo_data_file("2026-11-26-10-00-00.fsz"),
            Some(("2026-11-26-10-00-00", true))
        );
        assert_eq!(
            parse_repozo_data_file("2026-11-26-10-00-00.deltafs"),
            Some(("2026-11-26-10-00-00", false))
        );
        assert_eq!(parse_repozo_data_file("2026-11-26-10-00-00.dat"), None);
        assert_eq!(parse_repozo_data_file("2026-11-26-10-00-00.index"), None);
    }
}
