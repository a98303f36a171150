//! Blob backup retention: a pure plan, then its execution.
//!
//! [`plan_cleanup`] decides, from a listing and a policy, which entries of a
//! blob backup location go and why, without touching the disk (restic's
//! `ApplyPolicy`, rustic's `PrunePlan`); [`execute`] removes them and
//! refreshes the `latest` symlink. The rules are 6.0's (see docs/blobs.rst):
//!
//! 1. **Orphan rule**, first: when the matching filestorage backup location
//!    holds at least one full repozo backup, every blob backup older than
//!    the oldest full one is removed (its stamp, or for numbered backups
//!    its mtime as a stamp, compared as strings); `keep` and
//!    `keep_blob_days` are then not used.
//! 2. Otherwise, directories: a full backup (snapshot, `full = true`) keeps
//!    the newest `keep` (0: all); a partial one with `keep_blob_days > 0`
//!    keeps the newest one and everything younger than that many days
//!    (mtime); `keep_blob_days = 0` falls back to `keep`.
//! 3. Otherwise, archives: grouped into units, newest first (a full tar
//!    with its `.snar` and the deltas after it); the newest `keep` units are
//!    kept. `keep_blob_days` is not used.
//!
//! The `latest` symlink is planned too: it names the newest remaining
//! backup of the kind in use, when backups are timestamped and not
//! incremental; otherwise any `latest` is removed.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use crate::blobs::copy::remove_tree;
use crate::blobs::naming::{format_timestamp, newest_first, BackupName, Kind, Stamp, LATEST};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;

/// One entry of a blob backup location, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The parsed name.
    pub name: BackupName,
    /// Its modification time.
    pub mtime: DateTime<Utc>,
}

/// Which kind of backups a cleanup is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `<base>.<stamp>` directories.
    Directories,
    /// Tar archives with their snapshot files.
    Archives,
}

/// The retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Full backups (or archive units) to keep; 0 keeps all.
    pub keep: u32,
    /// Days of partial directory backups to keep (0: use `keep`).
    pub keep_blob_days: u32,
    /// This run was a full backup (snapshot, zip, or `full = true`).
    pub full: bool,
    /// Directories or archives.
    pub target: Target,
    /// Whether the `latest` symlink is maintained (timestamps on,
    /// incremental off).
    pub latest_symlink: bool,
}

impl RetentionPolicy {
    /// The policy for blob backups of one format: `archive` (archives, else
    /// directories), `incremental` archives and `timestamps` decide whether
    /// a `latest` symlink is kept (only for timestamped, non-incremental
    /// backups).
    #[must_use]
    pub fn for_backups(
        archive: bool,
        incremental: bool,
        timestamps: bool,
        full: bool,
        keep: u32,
        keep_blob_days: u32,
    ) -> Self {
        RetentionPolicy {
            keep,
            keep_blob_days,
            full,
            target: if archive {
                Target::Archives
            } else {
                Target::Directories
            },
            latest_symlink: timestamps && !(archive && incremental),
        }
    }
}

/// Why an entry is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Older than the oldest full filestorage backup.
    Orphan {
        /// That full backup's stamp.
        oldest_full: String,
    },
    /// Beyond the newest `keep` backups (or archive units).
    BeyondKeep {
        /// The policy's keep.
        keep: u32,
    },
    /// Partial backup older than `keep_blob_days`.
    OlderThanDays {
        /// The policy's days.
        days: u32,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Orphan { oldest_full } => {
                write!(
                    f,
                    "older than the oldest full filestorage backup {oldest_full}"
                )
            }
            Reason::BeyondKeep { keep } => write!(f, "beyond keep={keep}"),
            Reason::OlderThanDays { days } => write!(f, "older than keep_blob_days={days}"),
        }
    }
}

/// A planned removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Entry name in the location.
    pub name: String,
    /// Why.
    pub reason: Reason,
}

/// The outcome of [`plan_cleanup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupPlan {
    /// Entries that stay, newest first.
    pub keep: Vec<String>,
    /// Entries to remove, newest first.
    pub remove: Vec<Removal>,
    /// What `latest` should point at (None: no `latest`).
    pub latest: Option<String>,
    /// How many backups (directories or archive units) are removed.
    pub removed_backups: usize,
}

/// Decide what to remove. Pure: no disk access.
///
/// `fs_full_stamps` are the stamps of the full repozo backups in the
/// matching filestorage backup location (None when there is none, e.g.
/// only_blobs); `now` is for `keep_blob_days`.
#[must_use]
pub fn plan_cleanup(
    listing: &[Listed],
    fs_full_stamps: Option<&[String]>,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> CleanupPlan {
    let mut items: Vec<&Listed> = listing
        .iter()
        .filter(|l| match policy.target {
            Target::Directories => l.name.kind == Kind::Dir,
            Target::Archives => l.name.kind != Kind::Dir,
        })
        .collect();
    items.sort_by(|a, b| newest_first(&a.name, &b.name));
    let mut plan = CleanupPlan::default();
    let oldest_full = fs_full_stamps.and_then(|s| s.iter().min().cloned());
    let mut removed: Vec<(String, Reason)> = Vec::new();
    if let Some(oldest) = oldest_full {
        for l in &items {
            let stamp = match &l.name.stamp {
                Stamp::Time(t) => t.clone(),
                Stamp::Number(_) => format_timestamp(l.mtime),
            };
            if stamp < oldest {
                removed.push((
                    l.name.file_name(),
                    Reason::Orphan {
                        oldest_full: oldest.clone(),
                    },
                ));
                if l.name.kind != Kind::Snar
                    && !matches!(l.name.kind, Kind::Tar { delta: true, .. })
                {
                    plan.removed_backups += 1;
                }
            }
        }
    } else {
        match policy.target {
            Target::Directories => {
                if !policy.full && policy.keep_blob_days > 0 {
                    // A huge keep_blob_days reaches before any date: keep all.
                    let limit = now
                        .checked_sub_signed(Duration::days(i64::from(policy.keep_blob_days)))
                        .unwrap_or(DateTime::<Utc>::MIN_UTC);
                    for l in items.iter().skip(1) {
                        if l.mtime <= limit {
                            removed.push((
                                l.name.file_name(),
                                Reason::OlderThanDays {
                                    days: policy.keep_blob_days,
                                },
                            ));
                            plan.removed_backups += 1;
                        }
                    }
                } else if policy.keep > 0 {
                    for l in items.iter().skip(policy.keep as usize) {
                        removed
                            .push((l.name.file_name(), Reason::BeyondKeep { keep: policy.keep }));
                        plan.removed_backups += 1;
                    }
                }
            }
            Target::Archives => {
                if policy.keep > 0 {
                    let units = archive_units(&items);
                    for unit in units.iter().skip(policy.keep as usize) {
                        plan.removed_backups += 1;
                        for l in unit {
                            removed.push((
                                l.name.file_name(),
                                Reason::BeyondKeep { keep: policy.keep },
                            ));
                        }
                    }
                }
            }
        }
    }
    let gone: std::collections::HashSet<&String> = removed.iter().map(|(n, _)| n).collect();
    for l in &items {
        let n = l.name.file_name();
        if !gone.contains(&n) {
            plan.keep.push(n);
        }
    }
    if policy.latest_symlink {
        plan.latest = items
            .iter()
            .filter(|l| l.name.kind != Kind::Snar && matches!(l.name.stamp, Stamp::Time(_)))
            .map(|l| l.name.file_name())
            .find(|n| !gone.contains(n));
    }
    plan.remove = removed
        .into_iter()
        .map(|(name, reason)| Removal { name, reason })
        .collect();
    plan
}

/// Group archives, newest first, into units: each full tar with its
/// snapshot file and the deltas that follow it. Deltas older than any full
/// form a unit of their own; a snapshot file goes with the full tar of the
/// same stamp.
fn archive_units<'a>(items: &[&'a Listed]) -> Vec<Vec<&'a Listed>> {
    let mut units: Vec<Vec<&Listed>> = Vec::new();
    let mut current: Vec<&Listed> = Vec::new();
    // Oldest first makes "deltas after a full" a simple scan.
    let mut oldest_first: Vec<&Listed> = items.to_vec();
    oldest_first.reverse();
    for l in oldest_first {
        // A full tar or a snapshot file starts a unit, unless it directly
        // follows its partner of the same stamp (the other of the two).
        let pair_of_current = current.len() == 1 && current[0].name.stamp == l.name.stamp;
        let starts_unit = match l.name.kind {
            Kind::Tar { delta: false, .. } => {
                !(pair_of_current && current[0].name.kind == Kind::Snar)
            }
            Kind::Snar => {
                !(pair_of_current && matches!(current[0].name.kind, Kind::Tar { delta: false, .. }))
            }
            _ => false,
        };
        if starts_unit && !current.is_empty() {
            units.push(std::mem::take(&mut current));
        }
        current.push(l);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units.reverse();
    for u in &mut units {
        u.sort_by(|a, b| newest_first(&a.name, &b.name));
    }
    units
}

/// Carry out a plan in `location`: remove the planned entries, then make
/// `latest` point at the planned backup (or remove it). Returns the removed
/// paths.
///
/// # Errors
/// [`Error::Io`] naming the entry that could not be removed, or `latest`.
pub fn execute(location: &Path, plan: &CleanupPlan) -> Result<Vec<PathBuf>> {
    let latest = location.join(LATEST);
    match fs::symlink_metadata(&latest) {
        Ok(m) if m.file_type().is_symlink() => fs::remove_file(&latest).at(&latest)?,
        Ok(_) => {
            log::warn!("{} is not a symlink; leaving it alone", latest.display());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&latest, e)),
    }
    let mut removed = Vec::new();
    for r in &plan.remove {
        let path = location.join(&r.name);
        remove_tree(&path)?;
        removed.push(path);
    }
    if let Some(target) = &plan.latest {
        if fs::symlink_metadata(&latest).is_err() {
            symlink(target, &latest).at(&latest)?;
        }
    }
    sync_dir(location)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::blobs::naming::parse_timestamp(s).expect("timestamp")
    }

    fn listing(names: &[(&str, &str)]) -> Vec<Listed> {
        names
            .iter()
            .map(|(n, m)| Listed {
                name: BackupName::parse(n).expect("name"),
                mtime: t(m),
            })
            .collect()
    }

    fn policy(target: Target) -> RetentionPolicy {
        RetentionPolicy {
            keep: 2,
            keep_blob_days: 14,
            full: false,
            target,
            latest_symlink: true,
        }
    }

    fn removed(plan: &CleanupPlan) -> Vec<&str> {
        plan.remove.iter().map(|r| r.name.as_str()).collect()
    }

    const NOW: &str = "2026-11-26-12-00-00";

    #[test]
    fn plan_orphans_follow_oldest_full_fs_backup() {
        let l = listing(&[
            ("b.2026-11-01-00-00-00", "2026-11-01-00-00-00"),
            ("b.2026-11-10-00-00-00", "2026-11-10-00-00-00"),
            ("b.2026-11-20-00-00-00", "2026-11-20-00-00-00"),
            ("b.2026-11-21-00-00-00", "2026-11-21-00-00-00"),
        ]);
        let fulls = vec![
            "2026-11-20-00-00-00".to_owned(),
            "2026-11-10-00-00-00".to_owned(),
        ];
        let plan = plan_cleanup(&l, Some(&fulls), &policy(Target::Directories), t(NOW));
        assert_eq!(removed(&plan), ["b.2026-11-01-00-00-00"]);
        assert_eq!(
            plan.remove[0].reason,
            Reason::Orphan {
                oldest_full: "2026-11-10-00-00-00".into()
            }
        );
        assert_eq!(plan.keep.len(), 3);
        assert_eq!(plan.latest.as_deref(), Some("b.2026-11-21-00-00-00"));
    }

    #[test]
    fn plan_orphans_numbered_by_mtime() {
        let l = listing(&[
            ("b.0", "2026-11-25-00-00-00"),
            ("b.1", "2026-11-01-00-00-00"),
        ]);
        let fulls = vec!["2026-11-10-00-00-00".to_owned()];
        let mut p = policy(Target::Directories);
        p.latest_symlink = false;
        let plan = plan_cleanup(&l, Some(&fulls), &p, t(NOW));
        assert_eq!(removed(&plan), ["b.1"]);
        assert_eq!(plan.latest, None);
    }

    #[test]
    fn plan_keep_for_full_directory_backups() {
        let l = listing(&[
            ("b.2026-11-01-00-00-00", "2026-11-01-00-00-00"),
            ("b.2026-11-02-00-00-00", "2026-11-02-00-00-00"),
            ("b.2026-11-03-00-00-00", "2026-11-03-00-00-00"),
        ]);
        let mut p = policy(Target::Directories);
        p.full = true;
        let plan = plan_cleanup(&l, None, &p, t(NOW));
        assert_eq!(removed(&plan), ["b.2026-11-01-00-00-00"]);
        assert_eq!(plan.remove[0].reason, Reason::BeyondKeep { keep: 2 });
        p.keep = 0;
        assert!(plan_cleanup(&l, None, &p, t(NOW)).remove.is_empty());
    }

    #[test]
    fn plan_keep_blob_days_keeps_newest_always() {
        let l = listing(&[
            ("b.0", "2026-10-01-00-00-00"),
            ("b.1", "2026-09-01-00-00-00"),
            ("b.2", "2026-11-20-00-00-00"),
        ]);
        let mut p = policy(Target::Directories);
        p.latest_symlink = false;
        let plan = plan_cleanup(&l, None, &p, t(NOW));
        // b.0 is the newest by name: kept although it is old.
        assert_eq!(removed(&plan), ["b.1"]);
        assert_eq!(plan.keep, ["b.0", "b.2"]);
        assert_eq!(plan.remove[0].reason, Reason::OlderThanDays { days: 14 });
        // keep_blob_days = 0 falls back to keep.
        p.keep_blob_days = 0;
        p.keep = 1;
        assert_eq!(removed(&plan_cleanup(&l, None, &p, t(NOW))), ["b.1", "b.2"]);
    }

    #[test]
    fn plan_keep_blob_days_beyond_any_date_keeps_all() {
        let l = listing(&[
            ("b.0", "2026-10-01-00-00-00"),
            ("b.1", "2026-09-01-00-00-00"),
        ]);
        let mut p = policy(Target::Directories);
        p.latest_symlink = false;
        p.keep_blob_days = u32::MAX;
        let plan = plan_cleanup(&l, None, &p, t(NOW));
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn plan_archive_units_group_full_snar_and_deltas() {
        let l = listing(&[
            ("b.2026-11-01-00-00-00.tar", NOW),
            ("b.2026-11-01-00-00-00.snar", NOW),
            ("b.2026-11-02-00-00-00.delta.tar", NOW),
            ("b.2026-11-03-00-00-00.tar.gz", NOW),
            ("b.2026-11-03-00-00-00.snar", NOW),
            ("b.2026-11-04-00-00-00.delta.tar.gz", NOW),
            ("b.2026-11-05-00-00-00.tar", NOW),
            ("b.2026-11-05-00-00-00.snar", NOW),
            ("b.2026-11-01-00-00-00", NOW),
        ]);
        let mut p = policy(Target::Archives);
        p.latest_symlink = false;
        let plan = plan_cleanup(&l, None, &p, t(NOW));
        assert_eq!(
            removed(&plan),
            [
                "b.2026-11-02-00-00-00.delta.tar",
                "b.2026-11-01-00-00-00.snar",
                "b.2026-11-01-00-00-00.tar",
            ]
        );
        assert_eq!(plan.removed_backups, 1);
        assert_eq!(
            plan.keep.len(),
            5,
            "directories are not touched by an archive cleanup"
        );
    }

    #[test]
    fn plan_archive_numbered_keep() {
        let l = listing(&[("b.0.tar", NOW), ("b.1.tar.gz", NOW), ("b.2.tar", NOW)]);
        let mut p = policy(Target::Archives);
        p.keep = 1;
        p.latest_symlink = false;
        let plan = plan_cleanup(&l, None, &p, t(NOW));
        assert_eq!(removed(&plan), ["b.1.tar.gz", "b.2.tar"]);
    }

    #[test]
    fn plan_latest_skips_removed_and_snar() {
        // A .snar newer than every archive is not what `latest` names.
        let l = listing(&[
            ("b.2026-11-01-00-00-00.tar", NOW),
            ("b.2026-11-02-00-00-00.snar", NOW),
        ]);
        let plan = plan_cleanup(&l, None, &policy(Target::Archives), t(NOW));
        assert_eq!(plan.latest.as_deref(), Some("b.2026-11-01-00-00-00.tar"));
        // Every backup removed by the orphan rule: no `latest` at all.
        let l = listing(&[
            ("b.2026-11-01-00-00-00", NOW),
            ("b.2026-11-02-00-00-00", NOW),
        ]);
        let fulls = ["2026-11-10-00-00-00".to_owned()];
        let plan = plan_cleanup(&l, Some(&fulls), &policy(Target::Directories), t(NOW));
        assert_eq!(
            removed(&plan),
            ["b.2026-11-02-00-00-00", "b.2026-11-01-00-00-00"]
        );
        assert_eq!(plan.latest, None);
    }
}
