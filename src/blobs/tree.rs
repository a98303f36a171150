//! Walking a blob tree: the parallel `lstat` of every entry, once.
//!
//! The walk is what rsync's sender does: it lists the tree with the
//! metadata that decides whether a file is unchanged (size and mtime), and
//! everything needed to reproduce it (mode, owner, symlink target). At the
//! top of a blob directory, `tmp/` (uncommitted uploads, savepoints) and
//! `.removed` (a pack's transient list) are left out; `.layout` is kept
//! (see docs/blobs.rst).

use std::ffi::OsString;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, OFlags, Stat};

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};

/// Names left out at the top of a blob directory.
pub const EXCLUDED_TOP: [&str; 2] = ["tmp", ".removed"];

/// How symbolic links inside the tree are treated (the meaningful subset of
/// rsync's options: see [`crate::blobs::SymlinkMode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Follow symlinks that point at directories (rsync `-k`).
    pub copy_dirlinks: bool,
    /// Follow every symlink (rsync `-L`).
    pub copy_links: bool,
    /// Leave symlinks out (rsync `--no-l`), unless followed above.
    pub skip_symlinks: bool,
    /// Leave out `tmp/` and `.removed` at the top.
    pub exclude_transient: bool,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link with its target.
    Symlink(PathBuf),
}

/// One entry of a tree, relative to its root (the root itself has an empty
/// `rel`).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the root.
    pub rel: PathBuf,
    /// Directory, file or symlink.
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Status change time, seconds.
    pub ctime: i64,
    /// Status change time, nanoseconds.
    pub ctime_nsec: u32,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

impl Entry {
    fn from_meta(rel: PathBuf, kind: EntryKind, m: &fs::Metadata) -> Self {
        Entry {
            rel,
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: if m.is_file() { m.size() } else { 0 },
            mtime: m.mtime(),
            mtime_nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            ctime: m.ctime(),
            ctime_nsec: u32::try_from(m.ctime_nsec()).unwrap_or(0),
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    fn from_stat(rel: PathBuf, kind: EntryKind, st: &Stat) -> Self {
        let is_file = st.st_mode & 0o170_000 == 0o100_000;
        Entry {
            rel,
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: if is_file {
                u64::try_from(st.st_size).unwrap_or(0)
            } else {
                0
            },
            mtime: st.st_mtime,
            mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            ctime: st.st_ctime,
            ctime_nsec: u32::try_from(st.st_ctime_nsec).unwrap_or(0),
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }

    /// [`Entry::same_as`] for a raw `stat`.
    #[must_use]
    pub fn same_as_stat(&self, st: &Stat) -> bool {
        self.kind == EntryKind::File
            && st.st_mode & 0o170_000 == 0o100_000
            && u64::try_from(st.st_size).ok() == Some(self.size)
            && st.st_mtime == self.mtime
            && u32::try_from(st.st_mtime_nsec).ok() == Some(self.mtime_nsec)
            && st.st_mode & 0o7777 == self.mode
            && st.st_uid == self.uid
            && st.st_gid == self.gid
    }

    /// Is the file at `other` (lstat'ed) unchanged relative to this entry
    /// for rsync's quick check and `--link-dest` (same type, size, mtime,
    /// permissions and owner)?
    #[must_use]
    pub fn same_as(&self, other: &fs::Metadata) -> bool {
        self.kind == EntryKind::File
            && other.is_file()
            && other.size() == self.size
            && other.mtime() == self.mtime
            && other.mtime_nsec() == i64::from(self.mtime_nsec)
            && other.mode() & 0o7777 == self.mode
            && other.uid() == self.uid
            && other.gid() == self.gid
    }
}

/// A walked tree: entries in a parent-before-children order.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root directory.
    pub root: PathBuf,
    /// The root first, then every entry below it.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Number of regular files.
    #[must_use]
    pub fn file_count(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64
    }

    /// Bytes in regular files.
    #[must_use]
    pub fn byte_count(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Walk `root` (following it if it is a symlink), in parallel.
///
/// # Errors
/// [`Error::NotADirectory`] when `root` is not a directory, [`Error::Io`]
/// naming the entry that could not be read.
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<Tree> {
    let meta = fs::metadata(root).at(root)?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut entries = vec![Entry::from_meta(PathBuf::new(), EntryKind::Dir, &meta)];
    let fd = open_dir(root)?;
    entries.extend(walk_dir(root, Path::new(""), fd, opts)?);
    Ok(Tree {
        root: root.to_path_buf(),
        entries,
    })
}

/// Open a directory for `*at` calls.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    open_dir_at(rfs::CWD, path).map_err(|e| Error::io(path, e.into()))
}

/// Open directory `name` of the open directory `parent` for `*at` calls.
fn open_dir_at<P: rustix::path::Arg>(
    parent: impl std::os::fd::AsFd,
    name: P,
) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )
}

// The walk works relative to open directories (`openat`, `fstatat`,
// `readlinkat`): with bushy trees eight levels deep, resolving full paths
// for every entry costs more than the stat itself. Each directory is opened
// once, from its parent, and read through that same descriptor.
fn walk_dir(root: &Path, rel: &Path, fd: OwnedFd, opts: &WalkOptions) -> Result<Vec<Entry>> {
    let dir = root.join(rel);
    let mut names: Vec<OsString> = Vec::new();
    let mut stream = rfs::Dir::new(fd).map_err(|e| Error::io(&dir, e.into()))?;
    for entry in &mut stream {
        let entry = entry.map_err(|e| Error::io(&dir, e.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(OsString::from_vec(name.to_vec()));
    }
    names.sort();
    let fd = stream.fd().map_err(|e| Error::io(&dir, e.into()))?;
    let top = rel.as_os_str().is_empty();
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for name in names {
        if top && opts.exclude_transient && EXCLUDED_TOP.iter().any(|x| name == *x) {
            continue;
        }
        let rel_child = rel.join(&name);
        let io_err = |e: rustix::io::Errno| Error::io(&root.join(&rel_child), e.into());
        let st = rfs::statat(fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)?;
        match st.st_mode & 0o170_000 {
            0o040_000 => subdirs.push(Entry::from_stat(rel_child, EntryKind::Dir, &st)),
            0o100_000 => files.push(Entry::from_stat(rel_child, EntryKind::File, &st)),
            0o120_000 => {
                let follow = opts.copy_links || opts.copy_dirlinks;
                let target = if follow {
                    rfs::statat(fd, name.as_os_str(), AtFlags::empty()).ok()
                } else {
                    None
                };
                match target {
                    Some(t) if t.st_mode & 0o170_000 == 0o040_000 => {
                        subdirs.push(Entry::from_stat(rel_child, EntryKind::Dir, &t));
                    }
                    Some(t) if t.st_mode & 0o170_000 == 0o100_000 && opts.copy_links => {
                        files.push(Entry::from_stat(rel_child, EntryKind::File, &t));
                    }
                    _ if opts.skip_symlinks => {}
                    _ => {
                        let link =
                            rfs::readlinkat(fd, name.as_os_str(), Vec::new()).map_err(io_err)?;
                        let link = PathBuf::from(OsString::from_vec(link.into_bytes()));
                        files.push(Entry::from_stat(rel_child, EntryKind::Symlink(link), &st));
                    }
                }
            }
            _ => {
                // Sockets, fifos and devices have no place in a blob directory.
                log::warn!(
                    "skipping {}: not a file, directory or symlink",
                    root.join(&rel_child).display()
                );
            }
        }
    }
    let below: Vec<Vec<Entry>> = subdirs
        .par_iter()
        .map(|d| {
            let name = d.rel.file_name().unwrap_or_default();
            let child =
                open_dir_at(fd, name).map_err(|e| Error::io(&root.join(&d.rel), e.into()))?;
            walk_dir(root, &d.rel, child, opts)
        })
        .collect::<Result<_>>()?;
    let mut out = files;
    for (d, sub) in subdirs.into_iter().zip(below) {
        out.push(d);
        out.extend(sub);
    }
    Ok(out)
}
