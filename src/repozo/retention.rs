//! Filestorage retention after a backup: keep the newest `keep` full
//! backups with their chains (see README.rst (Retention)), as a pure plan and its
//! execution (like [`crate::retention`] for blobs).
//!
//! This is the recipe's rule, not repozo's (`-k` keeps one chain and is
//! not used by the scripts). 6.0 ordered the full backups by mtime and
//! removed *every* entry of the directory older than the `keep`-th newest
//! one, foreign files included, and crashed on a subdirectory. Here only
//! repozo's own names count (`<stamp>.{fs,fsz,deltafs,deltafsz,dat,index}`),
//! ordered by the stamp in the name, so a copied repository (new mtimes)
//! keeps the right chains and nothing else in the directory is touched
//! (see CHANGES.rst).

use std::path::{Path, PathBuf};

use crate::blobs::naming::is_timestamp;
use crate::error::{IoContext, Result};
use crate::fsutil::sync_dir;
use crate::repozo::naming::splitext;

/// What a retention run removes and keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsCleanupPlan {
    /// Stamps of the full backups kept, newest first.
    pub kept_fulls: Vec<String>,
    /// File names to remove, sorted.
    pub remove: Vec<String>,
}

/// The stamp of a repozo-made file name, if it is one.
fn stamp_of(name: &str) -> Option<(&str, &str)> {
    let (root, ext) = splitext(name);
    let ok = matches!(
        ext,
        ".fs" | ".fsz" | ".deltafs" | ".deltafsz" | ".dat" | ".index"
    ) && is_timestamp(root);
    ok.then_some((root, ext))
}

/// Decide what to remove from a repository listing (file names). Pure.
///
/// `keep = 0` keeps everything. Otherwise the newest `keep` full backups
/// (`.fs`/`.fsz`, by stamp) stay, with every file of a stamp at or after
/// the oldest of them; every repozo file of an earlier stamp goes.
///
/// With `complete` (the stamps whose blob backup exists), only the full
/// backups in it count towards `keep`: newer ones without their blobs are
/// kept as well, but never make an older complete one go.
#[must_use]
pub fn plan_retention(names: &[String], keep: u32, complete: Option<&[String]>) -> FsCleanupPlan {
    let mut fulls: Vec<&str> = names
        .iter()
        .filter_map(|n| stamp_of(n))
        .filter(|(_, ext)| matches!(*ext, ".fs" | ".fsz"))
        .map(|(root, _)| root)
        .collect();
    fulls.sort_unstable();
    fulls.dedup();
    fulls.reverse();
    let counted: Vec<&str> = match complete {
        Some(c) => fulls
            .iter()
            .copied()
            .filter(|f| c.iter().any(|s| s == f))
            .collect(),
        None => fulls.clone(),
    };
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    // Nothing goes while fewer than `keep` full backups count, or when
    // every full backup counts and there are no more than `keep`.
    if keep == 0 || counted.len() < keep || fulls.len() <= keep {
        return FsCleanupPlan {
            kept_fulls: fulls.iter().map(|s| (*s).to_owned()).collect(),
            remove: Vec::new(),
        };
    }
    let cutoff = counted[keep - 1];
    let fulls: Vec<&str> = fulls.into_iter().filter(|f| *f >= cutoff).collect();
    let mut remove: Vec<String> = names
        .iter()
        .filter(|n| stamp_of(n).is_some_and(|(root, _)| root < cutoff))
        .cloned()
        .collect();
    remove.sort();
    FsCleanupPlan {
        kept_fulls: fulls.iter().map(|s| (*s).to_owned()).collect(),
        remove,
    }
}

/// List `repository`, plan with `keep`, remove the planned files and log
/// 6.0's line. Returns the plan.
///
/// # Errors
/// [`crate::Error::Io`] when the repository cannot be listed or a file
/// cannot be removed.
pub fn apply(repository: &Path, keep: u32, complete: Option<&[String]>) -> Result<FsCleanupPlan> {
    let plan = plan_retention(&list(repository)?, keep, complete);
    execute(repository, &plan)?;
    Ok(plan)
}

/// What [`apply`] would remove once the files named `planned` (a backup
/// still to be made) exist too and those named `gone` (an interrupted
/// run's leftovers) do not, touching nothing (a dry run). A missing
/// repository holds nothing yet.
///
/// # Errors
/// [`crate::Error::Io`] when the repository cannot be listed.
pub fn plan_after(
    repository: &Path,
    keep: u32,
    complete: Option<&[String]>,
    planned: &[String],
    gone: &[String],
) -> Result<FsCleanupPlan> {
    let mut names = if repository.is_dir() {
        list(repository)?
    } else {
        Vec::new()
    };
    names.retain(|n| !gone.contains(n));
    names.extend(
        planned
            .iter()
            .filter(|p| !names.contains(p))
            .cloned()
            .collect::<Vec<_>>(),
    );
    Ok(plan_retention(&names, keep, complete))
}

/// The names of the regular files in `repository`.
fn list(repository: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repository).at(repository)? {
        let entry = entry.at(repository)?;
        if entry.file_type().at(&entry.path())?.is_file() {
            if let Some(n) = entry.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
    }
    Ok(names)
}

/// Remove the planned files from `repository`. Returns their paths.
///
/// # Errors
/// [`crate::Error::Io`] naming the file that could not be removed.
pub fn execute(repository: &Path, plan: &FsCleanupPlan) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::with_capacity(plan.remove.len());
    for name in &plan.remove {
        let p = repository.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::Error::io(&p, e)),
        }
        removed.push(p);
    }
    if !removed.is_empty() {
        sync_dir(repository)?;
        log::info!(
            "Removed {} file(s) belonging to old backups, the latest {} full backups have been kept.",
            removed.len(),
            plan.kept_fulls.len()
        );
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    const REPO: &[&str] = &[
        "2026-01-01-00-00-00.fsz",
        "2026-01-01-00-00-00.dat",
        "2026-01-01-00-00-00.index",
        "2026-01-01-01-00-00.deltafsz",
        "2026-01-01-01-00-00.index",
        "2026-01-02-00-00-00.fs",
        "2026-01-02-00-00-00.dat",
        "2026-01-02-01-00-00.deltafs",
        "2026-01-03-00-00-00.fsz",
        "2026-01-03-00-00-00.dat",
        "2026-01-03-05-00-00.deltafsz",
        "notes.txt",
        ".2026-01-04-00-00-00.fsz.x1.tmp",
    ];

    #[test]
    fn plan_retention_keeps_newest_chains() {
        let p = plan_retention(&names(REPO), 2, None);
        assert_eq!(p.kept_fulls, ["2026-01-03-00-00-00", "2026-01-02-00-00-00"]);
        assert_eq!(
            p.remove,
            [
                "2026-01-01-00-00-00.dat",
                "2026-01-01-00-00-00.fsz",
                "2026-01-01-00-00-00.index",
                "2026-01-01-01-00-00.deltafsz",
                "2026-01-01-01-00-00.index",
            ]
        );
    }

    #[test]
    fn plan_retention_keep_one() {
        let p = plan_retention(&names(REPO), 1, None);
        assert_eq!(p.kept_fulls, ["2026-01-03-00-00-00"]);
        assert_eq!(p.remove.len(), 8);
        assert!(!p.remove.iter().any(|n| n.starts_with("2026-01-03")));
        assert!(!p
            .remove
            .iter()
            .any(|n| n == "notes.txt" || n.starts_with('.')));
    }

    #[test]
    fn plan_retention_counts_only_fulls_with_their_blobs() {
        // The full of the 2nd has no blob backup (its blob step failed):
        // keep = 2 keeps the 1st and 3rd pairs, and the 2nd between them.
        let complete = names(&["2026-01-01-00-00-00", "2026-01-03-00-00-00"]);
        let p = plan_retention(&names(REPO), 2, Some(&complete));
        assert_eq!(
            p.kept_fulls,
            [
                "2026-01-03-00-00-00",
                "2026-01-02-00-00-00",
                "2026-01-01-00-00-00"
            ]
        );
        assert!(p.remove.is_empty());
        // With fewer complete pairs than keep, nothing goes.
        let one = names(&["2026-01-03-00-00-00"]);
        assert!(plan_retention(&names(REPO), 2, Some(&one))
            .remove
            .is_empty());
        let p = plan_retention(&names(REPO), 1, Some(&one));
        assert_eq!(p.kept_fulls, ["2026-01-03-00-00-00"]);
        assert_eq!(p.remove.len(), 8);
    }

    #[test]
    fn plan_retention_keep_zero_or_enough() {
        assert!(plan_retention(&names(REPO), 0, None).remove.is_empty());
        assert!(plan_retention(&names(REPO), 3, None).remove.is_empty());
        assert!(plan_retention(&[], 1, None).remove.is_empty());
    }

    #[test]
    fn apply_removes_only_planned_files() {
        let d = tempfile::tempdir().expect("tempdir");
        for n in REPO {
            assert!(std::fs::write(d.path().join(n), b"x").is_ok());
        }
        assert!(std::fs::create_dir(d.path().join("2025-01-01-00-00-00.fs")).is_ok());
        let plan = apply(d.path(), 2, None).ok();
        assert_eq!(plan.map(|p| p.remove.len()), Some(5));
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(left.len(), REPO.len() - 5 + 1);
        assert!(left.contains(&"notes.txt".to_owned()));
    }
}

#[cfg(test)]
mod plan_after_tests {
    use super::*;

    /// A planned full backup counts as made: with keep 1 the old chain
    /// goes, and nothing is removed while planning. A missing repository
    /// holds nothing yet.
    #[test]
    fn plan_after_counts_the_planned_backup() {
        let d = tempfile::tempdir().expect("tempdir");
        let old = [
            "2026-01-01-00-00-00.fsz",
            "2026-01-01-00-00-00.dat",
            "2026-01-01-00-00-00.index",
            "2026-01-02-00-00-00.deltafsz",
            "2026-01-02-00-00-00.index",
        ];
        for n in old {
            std::fs::write(d.path().join(n), "x").expect("write");
        }
        let planned: Vec<String> = ["fsz", "dat", "index"]
            .iter()
            .map(|e| format!("2026-02-01-00-00-00.{e}"))
            .collect();
        let plan = plan_after(d.path(), 1, None, &planned, &[]).expect("plan");
        let mut want: Vec<String> = old.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(plan.remove, want);
        assert!(old.iter().all(|n| d.path().join(n).exists()));
        // Without the planned full backup there is one chain: nothing goes.
        assert!(plan_after(d.path(), 1, None, &[], &[])
            .expect("plan")
            .remove
            .is_empty());
        let missing = plan_after(&d.path().join("missing"), 1, None, &planned, &[]).expect("plan");
        assert!(missing.remove.is_empty());
    }
}
