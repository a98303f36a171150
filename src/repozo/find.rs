//! Choosing the backup files for a point in time.
//!
//! Mirrors repozo's `find_files` (see docs/repository.rst): data files are sorted
//! by name, newest first; every one whose root (name without extension) is
//! `<= when` as a plain string is taken, stopping at the first full backup;
//! the result is returned oldest first. Also `delete_old_backups` (§2.7).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::repozo::naming::{is_data_file, join, kind_of, splitext, Kind};
use crate::repozo::{io_err, LOG};

/// The names of every data file in `repo`, ascending.
///
/// # Errors
/// [`crate::Error::RepozoIo`] when the directory cannot be listed.
pub fn data_files(repo: &Path) -> Result<Vec<String>> {
    // read_dir("") fails with ENOENT, as os.listdir('') does.
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo).map_err(|e| io_err(repo, e))? {
        let entry = entry.map_err(|e| io_err(repo, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if is_data_file(name) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The chain that recovers the state as of `when`, oldest first, as paths
/// `join(repo, name)`. Empty when nothing qualifies.
///
/// # Errors
/// [`crate::Error::RepozoIo`] when the directory cannot be listed.
pub fn find_files(repo: &Path, when: &str) -> Result<Vec<PathBuf>> {
    log::info!(target: LOG, "looking for files between last full backup and {when}...");
    let mut needed = Vec::new();
    for name in data_files(repo)?.iter().rev() {
        if splitext(name).0 <= when {
            needed.push(join(repo, name));
            if kind_of(name) == Some(Kind::Full) {
                break;
            }
        }
    }
    needed.reverse();
    if needed.is_empty() {
        log::info!(target: LOG, "no files found");
    } else {
        log::info!(target: LOG, "files needed to recover state as of {when}:");
        for f in &needed {
            log::info!(target: LOG, "\t{}", f.display());
        }
    }
    Ok(needed)
}

/// After a full backup: remove every data file but the newest full one,
/// with the `.dat` and `.index` of the same root (repozo's
/// `delete_old_backups`, `-k`). Returns the data files removed.
///
/// # Errors
/// [`crate::Error::RepozoIo`] when listing fails or a data file cannot be
/// removed (missing `.dat`/`.index` are fine).
pub fn delete_old_backups(repo: &Path) -> Result<Vec<PathBuf>> {
    let all = data_files(repo)?;
    let Some(newest_full) = all
        .iter()
        .rfind(|n| matches!(splitext(n).1, ".fs" | ".fsz"))
        .cloned()
    else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for name in all.iter().filter(|n| **n != newest_full) {
        if !matches!(splitext(name).1, ".fs" | ".fsz" | ".deltafs" | ".deltafsz") {
            continue;
        }
        log::info!(target: LOG, "removing old backup file {name} (and .dat / .index)");
        let root = splitext(name).0;
        for ext in [".dat", ".index"] {
            let _ = std::fs::remove_file(join(repo, &format!("{root}{ext}")));
        }
        let p = join(repo, name);
        std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        removed.push(p);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(d: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(d.join(n), b"x").expect("write");
        }
    }

    #[test]
    fn find_files_no_files() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(find_files(d.path(), "2024-01-01-00-00-00")
            .expect("find")
            .is_empty());
    }

    #[test]
    fn find_files_explicit_date() {
        let d = tempfile::tempdir().expect("tempdir");
        touch(
            d.path(),
            &[
                "2010-05-14-02-52-31.fs",
                "2010-05-14-02-52-31.dat",
                "2010-05-14-03-52-31.deltafs",
                "2010-05-14-04-52-31.deltafs",
                "2010-05-14-05-52-31.fs",
                "2010-05-14-05-52-31.dat",
                "2010-05-14-06-52-31.deltafs",
                "2010-05-14-07-52-31.deltafs",
            ],
        );
        let got = find_files(d.path(), "2010-05-14-06-30-00").expect("find");
        let names: Vec<String> = got
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["2010-05-14-05-52-31.fs"]);
        let got = find_files(d.path(), "2010-05-14-04-52-31").expect("find");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn find_files_prefix_date_is_exclusive() {
        let d = tempfile::tempdir().expect("tempdir");
        touch(
            d.path(),
            &["2024-01-04-10-00-00.fs", "2024-01-05-00-00-00.fs"],
        );
        let got = find_files(d.path(), "2024-01-05").expect("find");
        assert_eq!(got, [d.path().join("2024-01-04-10-00-00.fs")]);
    }

    #[test]
    fn find_files_full_beats_delta_of_same_root() {
        let d = tempfile::tempdir().expect("tempdir");
        touch(
            d.path(),
            &["2024-01-05-00-00-00.fs", "2024-01-05-00-00-00.deltafs"],
        );
        let got = find_files(d.path(), "2025").expect("find");
        assert_eq!(got, [d.path().join("2024-01-05-00-00-00.fs")]);
    }

    #[test]
    fn delete_old_backups_keeps_newest_full_chain_head() {
        let d = tempfile::tempdir().expect("tempdir");
        touch(
            d.path(),
            &[
                "2010-05-14-02-52-31.fs",
                "2010-05-14-02-52-31.dat",
                "2010-05-14-02-52-31.index",
                "2010-05-14-03-52-31.deltafsz",
                "2010-05-14-03-52-31.index",
                "2010-05-14-05-52-31.fsz",
                "2010-05-14-05-52-31.dat",
                "2010-05-14-05-52-31.index",
                "foreign.txt",
            ],
        );
        let removed = delete_old_backups(d.path()).expect("delete");
        assert_eq!(removed.len(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "2010-05-14-05-52-31.dat",
                "2010-05-14-05-52-31.fsz",
                "2010-05-14-05-52-31.index",
                "foreign.txt"
            ]
        );
    }
}
