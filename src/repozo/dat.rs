//! The `.dat` chain file: one line `<dest> <start> <end> <md5>` per backup
//! file of a chain (see docs/repository.rst).
//!
//! Mirrors repozo's `scandat` and the `.dat` readers of verify and `-w`:
//! fields are split on any whitespace, exactly four of them, the offsets are
//! decimal. Unlike repozo, a malformed line is an [`Error::BadDat`] naming
//! the file and line, not a `ValueError` traceback.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repozo::io_err;

/// One line of a `.dat` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatLine {
    /// The data file path as written (repozo's `os.path.join(-r, name)`);
    /// readers use only its base name.
    pub dest: String,
    /// First byte of the Data.fs this file holds.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// md5 (lower-case hex) of the uncompressed bytes `[start, end)`.
    pub md5: String,
}

impl DatLine {
    /// The base name of `dest` (what repozo's readers look up).
    #[must_use]
    pub fn basename(&self) -> &str {
        self.dest.rsplit('/').next().unwrap_or(&self.dest)
    }

    /// The line as repozo's `print(dest, start, end, md5)` writes it.
    #[must_use]
    pub fn to_line(&self) -> String {
        format!("{} {} {} {}\n", self.dest, self.start, self.end, self.md5)
    }
}

/// The `.dat` beside the data file `data_path`.
#[must_use]
pub fn dat_path_for(data_path: &Path) -> PathBuf {
    crate::repozo::naming::with_ext(data_path, ".dat")
}

/// Parse one line (without its newline).
fn parse_line(path: &Path, lineno: usize, line: &str) -> Result<DatLine> {
    let bad = |reason: String| Error::BadDat {
        path: path.to_path_buf(),
        line: lineno,
        reason,
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [dest, start, end, md5] = fields[..] else {
        return Err(bad(format!(
            "expected 4 fields (<file> <start> <end> <md5>), found {}",
            fields.len()
        )));
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(format!("{} is not an offset", crate::repozo::py_repr(s))))
    };
    let (start, end) = (num(start)?, num(end)?);
    if end < start {
        return Err(bad(format!("end {end} is before start {start}")));
    }
    Ok(DatLine {
        dest: dest.to_owned(),
        start,
        end,
        md5: md5.to_owned(),
    })
}

/// Read every line of a `.dat` file. `Ok(None)` when the file does not
/// exist.
///
/// # Errors
/// [`Error::RepozoIo`] when it cannot be read, [`Error::BadDat`] for a
/// malformed line (an empty last line included, as in repozo).
pub fn read(path: &Path) -> Result<Option<Vec<DatLine>>> {
    let bytes = match crate::fsutil::open_regular(path).and_then(|mut f| {
        let mut v = Vec::new();
        io::Read::read_to_end(&mut f, &mut v).map(|_| v)
    }) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    parse(path, &bytes).map(Some)
}

/// Parse the content of a `.dat` file; `path` only names it in errors.
/// This is what [`read`] does once it has the bytes.
///
/// A last line cut off by an interrupted append (no newline, and not a
/// whole line with a 32-digit md5) was never committed: it is left out,
/// with a warning (see `chain` for what happens to its data file).
///
/// # Errors
/// [`Error::BadDat`] for a malformed line.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<DatLine>> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    let (whole, torn) = split_torn(&text);
    for (i, line) in whole.split_inclusive('\n').enumerate() {
        let line = line.strip_suffix('\n').unwrap_or(line);
        lines.push(parse_line(path, i + 1, line)?);
    }
    if let Some(torn) = torn {
        log::warn!(
            target: crate::repozo::LOG,
            "{}: its last line {} is incomplete (a backup was interrupted while writing it), ignored",
            path.display(),
            crate::repozo::py_repr(torn)
        );
    }
    Ok(lines)
}

/// `(whole lines, torn last line)` of a `.dat`'s text.
fn split_torn(text: &str) -> (&str, Option<&str>) {
    if text.is_empty() || text.ends_with('\n') {
        return (text, None);
    }
    let cut = text.rfind('\n').map_or(0, |i| i + 1);
    let last = &text[cut..];
    let complete = parse_line(Path::new(""), 0, last)
        .is_ok_and(|l| l.md5.len() == 32 && l.md5.bytes().all(|b| b.is_ascii_hexdigit()));
    if complete {
        (text, None)
    } else {
        (&text[..cut], Some(last))
    }
}

/// Make a `.dat` end in a newline again, so that an append starts a line of
/// its own: a torn last line is cut off, a whole one without its newline
/// gets one. Returns whether the file was changed. Call under the
/// repository lock.
///
/// # Errors
/// [`Error::RepozoIo`] / [`Error::Io`] naming the file.
pub fn repair(path: &Path) -> Result<bool> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(false);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (whole, torn) = split_torn(&text);
    let fixed = match torn {
        Some(_) => whole.to_owned(),
        None => format!("{whole}\n"),
    };
    crate::fsutil::write_atomically(path, |f| f.write_all(fixed.as_bytes()))?;
    Ok(true)
}

/// Like [`read`], but a missing file is an error (verify, recover).
///
/// # Errors
/// As [`read`], and [`Error::RepozoIo`] (ENOENT) for a missing file.
pub fn read_required(path: &Path) -> Result<Vec<DatLine>> {
    read(path)?.ok_or_else(|| io_err(path, io::Error::from(io::ErrorKind::NotFound)))
}

/// The last line, as repozo's `scandat`: `None` when the file is missing or
/// empty.
///
/// # Errors
/// As [`read`].
pub fn last_line(path: &Path) -> Result<Option<DatLine>> {
    Ok(read(path)?.and_then(|mut v| v.pop()))
}

/// Create a `.dat` holding `line` (a full backup), replacing any old one,
/// atomically. The caller fsyncs the directory (the rename is the commit
/// point of a full backup; see `chain`).
///
/// # Errors
/// [`Error::RepozoIo`] naming the file.
pub fn create(path: &Path, line: &DatLine) -> Result<()> {
    let dir = crate::fsutil::parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = crate::repozo::temp_in(dir, &name)?;
    tmp.as_file_mut()
        .write_all(line.to_line().as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_err(path, e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    Ok(())
}

/// Append `line` to a `.dat` (created if missing, as repozo's `'a'` mode),
/// then fsync it. A failed write (disk full) is cut off again, so the
/// `.dat` never ends in half a line.
///
/// # Errors
/// [`Error::RepozoIo`] naming the file.
pub fn append(path: &Path, line: &DatLine) -> Result<()> {
    let mut f: File = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let before = f.metadata().map_err(|e| io_err(path, e))?.len();
    f.write_all(line.to_line().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            let _ = f.set_len(before).and_then(|()| f.sync_all());
            io_err(path, e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_line_like_print() {
        let l = DatLine {
            dest: "repo/2024-01-01-00-00-00.fs".into(),
            start: 0,
            end: 476,
            md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
        };
        assert_eq!(
            l.to_line(),
            "repo/2024-01-01-00-00-00.fs 0 476 d41d8cd98f00b204e9800998ecf8427e\n"
        );
        assert_eq!(l.basename(), "2024-01-01-00-00-00.fs");
    }

    #[test]
    fn read_missing_is_none() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(&d.path().join("x.dat")).expect("read"), None);
    }

    #[test]
    fn read_empty_is_no_last_line() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.dat");
        std::fs::write(&p, "").expect("write");
        assert_eq!(last_line(&p).expect("read"), None);
    }

    #[test]
    fn read_multiple_lines_any_whitespace() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.dat");
        std::fs::write(&p, "a 0 10 aa\nb\t10  20 bb\n").expect("write");
        let last = last_line(&p).expect("read").expect("a line");
        assert_eq!((last.dest.as_str(), last.start, last.end), ("b", 10, 20));
    }

    #[test]
    fn read_bad_lines_are_errors() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.dat");
        for text in [
            "a 0 10\n",
            "a 0 ten aa\n",
            "a 0 10 aa\n\n",
            "a b c 0 10 aa\n",
        ] {
            std::fs::write(&p, text).expect("write");
            let e = read(&p).expect_err(text);
            assert!(matches!(e, Error::BadDat { .. }), "{text:?}: {e}");
        }
    }

    #[test]
    fn append_creates_and_appends() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.dat");
        let l = DatLine {
            dest: "a".into(),
            start: 0,
            end: 1,
            md5: "m".into(),
        };
        append(&p, &l).expect("append");
        append(&p, &l).expect("append");
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "a 0 1 m\na 0 1 m\n"
        );
    }
}
