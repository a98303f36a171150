//! Names in a repozo repository.
//!
//! Mirrors repozo's `gen_filename` and its data-file regex
//! `\d{4}(?:-\d\d){5}\.(?:delta)?fsz?$` used with `re.match` (see docs/repository.rst//! §2.1), without a regex engine. Also `os.path.join` as repozo uses it to
//! write paths into `.dat` files (§2.2), and the `-D` date check (§2.5).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

/// The kind of a backup data file, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.fs` / `.fsz`: bytes `[0, end)` of the Data.fs.
    Full,
    /// `.deltafs` / `.deltafsz`: bytes `[start, end)`.
    Incremental,
}

/// The extension of a data file: `.fs`, `.fsz`, `.deltafs` or `.deltafsz`.
#[must_use]
pub fn data_ext(kind: Kind, gzip: bool) -> &'static str {
    match (kind, gzip) {
        (Kind::Full, false) => ".fs",
        (Kind::Full, true) => ".fsz",
        (Kind::Incremental, false) => ".deltafs",
        (Kind::Incremental, true) => ".deltafsz",
    }
}

/// `YYYY-MM-DD-HH-MM-SS` (UTC, seconds truncated) followed by `ext`.
#[must_use]
pub fn gen_filename(now: DateTime<Utc>, ext: &str) -> String {
    format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}{}",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        ext
    )
}

/// Whether repozo treats `name` as a data file (full or incremental).
///
/// repozo quirk: Python's `$` also matches before one trailing newline, so
/// `2024-01-01-00-00-00.fs\n` is a data file for repozo too (§2.1). Only
/// ASCII digits are accepted (Python's `\d` also takes other Unicode
/// digits; no repozo ever writes those).
#[must_use]
pub fn is_data_file(name: &str) -> bool {
    let b = name.as_bytes();
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    if b.len() < 20 || !is_timestamp(&b[..19]) || b[19] != b'.' {
        return false;
    }
    matches!(&b[20..], b"fs" | b"fsz" | b"deltafs" | b"deltafsz")
}

/// `\d{4}(-\d\d){5}` exactly (ASCII digits): the stamp of every backup
/// name, repozo's and the blob backups'.
#[must_use]
pub fn is_timestamp(b: &[u8]) -> bool {
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 | 13 | 16 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Python's `os.path.splitext`: `(root, ext)`, the extension being the last
/// dot and what follows, unless the dot starts the (base)name.
#[must_use]
pub fn splitext(name: &str) -> (&str, &str) {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let base = &name[base_start..];
    let stripped = base.trim_start_matches('.');
    let lead = base.len() - stripped.len();
    match stripped.rfind('.') {
        Some(i) => name.split_at(base_start + lead + i),
        None => (name, ""),
    }
}

/// The kind of a data file name (which must pass [`is_data_file`]), or
/// `None` when its extension is not exactly one of the four (the trailing
/// newline case).
#[must_use]
pub fn kind_of(name: &str) -> Option<Kind> {
    match splitext(name).1 {
        ".fs" | ".fsz" => Some(Kind::Full),
        ".deltafs" | ".deltafsz" => Some(Kind::Incremental),
        _ => None,
    }
}

/// Whether a data file is gzip-compressed: chosen by name, as repozo does
/// (`name.endswith('fsz')`).
#[must_use]
pub fn is_gzip_name(name: &str) -> bool {
    name.ends_with("fsz")
}

/// `os.path.join(repo, name)` for a plain file name: no separator is added
/// when `repo` is empty or already ends in `/`.
#[must_use]
pub fn join(repo: &Path, name: &str) -> PathBuf {
    let mut s: OsString = repo.as_os_str().to_owned();
    let ends_with_sep = s.as_encoded_bytes().last().is_none_or(|c| *c == b'/');
    if !ends_with_sep {
        s.push("/");
    }
    s.push(name);
    PathBuf::from(s)
}

/// `<root>` + `ext`, where root is the path without its extension.
#[must_use]
pub fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    let root = splitext(&s).0;
    let mut p = OsString::from(root);
    p.push(ext);
    PathBuf::from(p)
}

/// Check a `-D` date: `yyyy-mm-dd[-hh[-mm[-ss]]]`, two-digit fields, a
/// real calendar date and time (the scripts' one date grammar,
/// [`crate::config::RestoreDate::parse_strict`]). repozo compares any
/// string lexically; we refuse what is not a date, since a typo would
/// silently select the wrong chain (§2.5).
#[must_use]
pub fn is_valid_date(date: &str) -> bool {
    crate::config::RestoreDate::parse_strict(date).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2010, 5, 14, 12, 52, 31)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn gen_filename_explicit_ext() {
        assert_eq!(gen_filename(t(), ".txt"), "2010-05-14-12-52-31.txt");
    }

    #[test]
    fn gen_filename_kinds() {
        assert_eq!(
            gen_filename(t(), data_ext(Kind::Full, false)),
            "2010-05-14-12-52-31.fs"
        );
        assert_eq!(
            gen_filename(t(), data_ext(Kind::Full, true)),
            "2010-05-14-12-52-31.fsz"
        );
        assert_eq!(
            gen_filename(t(), data_ext(Kind::Incremental, false)),
            "2010-05-14-12-52-31.deltafs"
        );
        assert_eq!(
            gen_filename(t(), data_ext(Kind::Incremental, true)),
            "2010-05-14-12-52-31.deltafsz"
        );
    }

    #[test]
    fn is_data_file_accepts_the_four() {
        for ext in ["fs", "fsz", "deltafs", "deltafsz"] {
            assert!(is_data_file(&format!("2024-01-05-10-00-00.{ext}")));
        }
        assert!(is_data_file("2024-01-05-10-00-00.fs\n"));
    }

    #[test]
    fn is_data_file_refuses_others() {
        for n in [
            "2024-01-05-10-00-00.dat",
            "2024-01-05-10-00-00.index",
            "tmp.tmp",
            "2024-01-05-10-00-00.fs.bak",
            "2024-01-05-10-00-0.fs",
            "x2024-01-05-10-00-00.fs",
            "2024-01-05-10-00-00.fs\n\n",
            ".2024-01-05-10-00-00.fsz.abc.tmp",
            "2024-01-05T10-00-00.fs",
        ] {
            assert!(!is_data_file(n), "{n:?}");
        }
    }

    #[test]
    fn splitext_like_python() {
        assert_eq!(splitext("a/b.fs"), ("a/b", ".fs"));
        assert_eq!(splitext("a.b/c"), ("a.b/c", ""));
        assert_eq!(splitext(".hidden"), (".hidden", ""));
        assert_eq!(splitext("x.fs\n"), ("x", ".fs\n"));
    }

    #[test]
    fn join_like_os_path_join() {
        assert_eq!(join(Path::new("repo"), "x"), PathBuf::from("repo/x"));
        assert_eq!(join(Path::new("repo/"), "x"), PathBuf::from("repo/x"));
        assert_eq!(join(Path::new("repo//"), "x"), PathBuf::from("repo//x"));
        assert_eq!(join(Path::new(""), "x"), PathBuf::from("x"));
    }

    #[test]
    fn date_validation() {
        for d in [
            "2024-01-05",
            "2024-01-05-10",
            "2024-01-05-10-00",
            "2024-12-31-23-59-59",
        ] {
            assert!(is_valid_date(d), "{d}");
        }
        for d in [
            "",
            "zzz",
            "2024",
            "2024-1-5",
            "2024-13-01",
            "2024-01-05-24",
            "2024-01-05-10-00-00-00",
            "2024-01-05 10",
            "2024-02-30",
        ] {
            assert!(!is_valid_date(d), "{d}");
        }
    }
}
