//! The manifest of a directory blob backup: every file's path and size.
//!
//! A directory backup is `<base>.<stamp>/<base>/...`; its manifest is
//! `<base>.<stamp>/.crb-manifest`, beside the tree, so that a restore (or
//! 6.0's `rsync` of `<base>.<stamp>/<base>/`) never copies it. It is
//! written into the backup's `.partial` build from the sizes the walk of
//! the live tree already has (blob files never change once written), and
//! lets `verify` see a truncated file, which a directory alone does not
//! show. Format (see docs/blobs.rst): a first line `crb-manifest 1`, then
//! one line per regular file, `<size> <path>`, the path relative to the
//! tree with `/` separators. Retention removes it with its backup.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::tree::{EntryKind, Tree};
use crate::error::{Error, IoContext, Result};

/// The manifest's name inside a `<base>.<stamp>` directory backup.
pub const MANIFEST: &str = ".crb-manifest";

const HEADER: &str = "crb-manifest 1";

/// Write the manifest of `tree` to `path`.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write(tree: &Tree, path: &Path) -> Result<()> {
    write_entries(
        tree.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| (e.rel.as_path(), e.size)),
        path,
    )
}

/// Write a manifest of `(path relative to the tree, size)` entries to
/// `path`, synced.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write_entries<'a, I>(entries: I, path: &Path) -> Result<()>
where
    I: IntoIterator<Item = (&'a Path, u64)>,
{
    let mut w = BufWriter::new(File::create(path).at(path)?);
    writeln!(w, "{HEADER}").at(path)?;
    for (rel, size) in entries {
        let rel = rel.as_os_str().as_bytes();
        if rel.contains(&b'\n') {
            // Not a blob file; a line format cannot hold it.
            continue;
        }
        write!(w, "{size} ").at(path)?;
        w.write_all(rel).at(path)?;
        w.write_all(b"\n").at(path)?;
    }
    w.into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?
        .sync_all()
        .at(path)
}

/// Read a manifest: `(path relative to the tree, size)` per file, or
/// `None` when there is none (a backup made before manifests).
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::BrokenArchive`] naming
/// the line that is not `<size> <path>`.
pub fn read(path: &Path) -> Result<Option<Vec<(PathBuf, u64)>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let broken = |line: usize, why: &str| Error::BrokenArchive {
        path: path.to_path_buf(),
        reason: format!("line {line}: {why}"),
    };
    let mut lines = bytes.split(|b| *b == b'\n');
    if lines.next() != Some(HEADER.as_bytes()) {
        return Err(broken(1, "not a crb-manifest 1 file"));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let sp = line
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| broken(i + 2, "expected <size> <path>"))?;
        let size = std::str::from_utf8(&line[..sp])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| broken(i + 2, "bad size"))?;
        let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&line[sp + 1..]));
        out.push((rel, size));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::tree::{walk, WalkOptions};

    #[test]
    fn manifest_roundtrip() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("blobs");
        std::fs::create_dir_all(root.join("0x00/0x01")).expect("mkdir");
        std::fs::write(root.join("0x00/0x01/0x03e5.blob"), b"abc").expect("write");
        std::fs::write(root.join(".layout"), b"bushy\n").expect("write");
        let tree = walk(&root, &WalkOptions::default()).expect("walk");
        let m = d.path().join(MANIFEST);
        write(&tree, &m).expect("write");
        let mut got = read(&m).expect("read").expect("some");
        got.sort();
        assert_eq!(
            got,
            [
                (PathBuf::from(".layout"), 6),
                (PathBuf::from("0x00/0x01/0x03e5.blob"), 3)
            ]
        );
        assert!(read(&d.path().join("none")).expect("read").is_none());
        std::fs::write(&m, b"crb-manifest 1\nx y\n").expect("write");
        assert!(matches!(read(&m), Err(Error::BrokenArchive { .. })));
    }
}
