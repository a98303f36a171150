//! Directory copies of a blob tree: what `rsync -a --delete --link-dest`
//! did for 6.0, natively and in parallel.
//!
//! [`materialize`] writes a walked [`Tree`] into a new, empty directory.
//! With a link source (the previous backup, or the live blobs for
//! `rsync_hard_links_on_first_copy`), a file whose counterpart there has the
//! same size, mtime, permissions and owner becomes a hard link to it
//! (rsync's quick check plus `--link-dest`); every other file is copied.
//! Files absent from the source are absent from the copy, which is what
//! `--delete` gives on a fresh destination. Modes, mtimes, owners (when
//! allowed) and symlinks are preserved, directories' last, deepest first,
//! so that writing into them does not change their mtime afterwards.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use filetime::FileTime;
use rayon::prelude::*;

use rustix::fs::{self as rfs, AtFlags, Gid, OFlags, Timespec, Timestamps, Uid};

use super::tree::{open_dir, Entry, EntryKind, Tree};
use crate::error::{Error, IoContext, Result};
use crate::progress::{Progress, Unit};

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files in the tree.
    pub files: u64,
    /// Of those, hard-linked to the link source.
    pub linked: u64,
    /// Of those, copied.
    pub copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
}

/// Write `tree` into `dest`, which must not exist yet.
///
/// # Errors
/// [`Error::Io`] naming the source or destination path that failed;
/// [`Error::NotADirectory`] when something in the way is not a directory.
/// On error `dest` is left partially written: callers build under a
/// temporary name and remove it.
pub fn materialize(
    tree: &Tree,
    dest: &Path,
    link_source: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CopyStats> {
    // One job per directory: the walk lists each directory's own files
    // right after it, then its subdirectories.
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut index: HashMap<&Path, usize> = HashMap::new();
    let mut i = 0;
    while i < tree.entries.len() {
        let mut j = i + 1;
        while j < tree.entries.len() && tree.entries[j].kind != EntryKind::Dir {
            j += 1;
        }
        let dir = &tree.entries[i];
        index.insert(dir.rel.as_path(), jobs.len());
        jobs.push(Job {
            dir,
            files: &tree.entries[i + 1..j],
            subdirs: Vec::new(),
        });
        i = j;
    }
    for k in 1..jobs.len() {
        let parent = jobs[k].dir.rel.parent().unwrap_or(Path::new(""));
        if let Some(&p) = index.get(parent) {
            jobs[p].subdirs.push(k);
        }
    }
    // The root is made with 0777 to learn the umask; every other directory
    // gets its final mode at mkdir (plus u+rwx while we fill it), so most
    // need no chmod later.
    make_dir(dest, 0o777)?;
    let root_meta = fs::metadata(dest).at(dest)?;
    let any_special = tree
        .entries
        .iter()
        .any(|d| d.kind == EntryKind::Dir && d.mode & 0o7000 != 0)
        || root_meta.mode() & 0o7000 != 0;
    let ctx = Ctx {
        tree,
        dest,
        jobs: &jobs,
        owner: Owner {
            uid: root_meta.uid(),
            gid: root_meta.gid(),
            umask: if any_special {
                None
            } else {
                Some(0o777 & !root_meta.mode())
            },
        },
        progress,
        linked: AtomicU64::new(0),
        copied: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    progress.start("blobs: copy", Some(tree.file_count()), Unit::Files);
    let dfd = Arc::new(open_dir(dest)?);
    let lfd = link_source.and_then(|l| open_dir(l).ok()).map(Arc::new);
    if !jobs.is_empty() {
        ctx.run(0, &dfd, lfd.as_ref())?;
    }
    progress.finish();
    Ok(CopyStats {
        files: tree.file_count(),
        linked: ctx.linked.into_inner(),
        copied: ctx.copied.into_inner(),
        bytes_copied: ctx.bytes.into_inner(),
    })
}

struct Job<'a> {
    dir: &'a Entry,
    files: &'a [Entry],
    subdirs: Vec<usize>,
}

struct Ctx<'a> {
    tree: &'a Tree,
    dest: &'a Path,
    jobs: &'a [Job<'a>],
    owner: Owner,
    progress: &'a dyn Progress,
    linked: AtomicU64,
    copied: AtomicU64,
    bytes: AtomicU64,
}

impl Ctx<'_> {
    /// Fill directory `k` (open as `dfd`; its counterpart in the link
    /// source as `lfd`), set its metadata, then its subdirectories in
    /// parallel. Everything is relative to open directory fds: bushy trees
    /// are eight levels deep, and resolving full paths for every call costs
    /// more than the calls.
    fn run(&self, k: usize, dfd: &Arc<OwnedFd>, lfd: Option<&Arc<OwnedFd>>) -> Result<()> {
        let job = &self.jobs[k];
        let dpath = self.dest.join(&job.dir.rel);
        for &c in &job.subdirs {
            let d = self.jobs[c].dir;
            let name = d.rel.file_name().unwrap_or_default();
            match rfs::mkdirat(dfd, name, rfs::Mode::from_raw_mode(d.mode | 0o700)) {
                Ok(()) => {}
                Err(e) => {
                    let path = self.dest.join(&d.rel);
                    return Err(not_a_dir_or(&path, e.into()));
                }
            }
        }
        for e in job.files {
            let name = e.rel.file_name().unwrap_or_default();
            match &e.kind {
                EntryKind::File => {
                    if let Some(l) = lfd {
                        if let Ok(st) = rfs::statat(l, name, AtFlags::SYMLINK_NOFOLLOW) {
                            if e.same_as_stat(&st)
                                && rfs::linkat(l, name, dfd, name, AtFlags::empty()).is_ok()
                            {
                                self.linked.fetch_add(1, Ordering::Relaxed);
                                self.progress.advance(1);
                                continue;
                            }
                        }
                    }
                    copy_file(
                        &self.tree.root.join(&e.rel),
                        &self.dest.join(&e.rel),
                        e,
                        Some(self.owner),
                    )?;
                    self.copied.fetch_add(1, Ordering::Relaxed);
                    self.bytes.fetch_add(e.size, Ordering::Relaxed);
                    self.progress.advance(1);
                }
                EntryKind::Symlink(target) => {
                    let dst = self.dest.join(&e.rel);
                    rfs::symlinkat(target.as_os_str(), dfd, name)
                        .map_err(|x| Error::io(&dst, x.into()))?;
                    if !self.owner.is(e) {
                        set_owner(&dst, e)?;
                    }
                    rfs::utimensat(dfd, name, &times(e), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|x| Error::io(&dst, x.into()))?;
                }
                EntryKind::Dir => {}
            }
        }
        // Creating entries in a directory changes its mtime, never its
        // parent's: with its files and subdirectories made, it is done.
        let io = |x: rustix::io::Errno| Error::io(&dpath, x.into());
        let dir = job.dir;
        if !self.owner.is(dir) {
            match rfs::fchown(
                dfd,
                Some(Uid::from_raw(dir.uid)),
                Some(Gid::from_raw(dir.gid)),
            ) {
                Ok(()) | Err(rustix::io::Errno::PERM) => {}
                Err(x) => return Err(io(x)),
            }
        }
        if !self.owner.mode_set_by_mkdir(dir) {
            rfs::fchmod(dfd, rfs::Mode::from_raw_mode(dir.mode)).map_err(io)?;
        }
        rfs::futimens(dfd, &times(dir)).map_err(io)?;
        job.subdirs.par_iter().try_for_each(|&c| {
            let name = self.jobs[c].dir.rel.file_name().unwrap_or_default();
            let cpath = self.dest.join(&self.jobs[c].dir.rel);
            let cfd = rfs::openat(
                dfd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                rfs::Mode::empty(),
            )
            .map_err(|x| Error::io(&cpath, x.into()))?;
            let clfd = lfd.and_then(|l| {
                rfs::openat(
                    l,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    rfs::Mode::empty(),
                )
                .ok()
            });
            self.run(c, &Arc::new(cfd), clfd.map(Arc::new).as_ref())
        })
    }
}

/// Timestamps that set the mtime and leave the atime alone.
fn times(e: &Entry) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: e.mtime,
            tv_nsec: i64::from(e.mtime_nsec),
        },
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Err(not_a_dir_or(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Who owns what we create: `lchown` is skipped where it would not change
/// anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    uid: u32,
    gid: u32,
    /// The umask, when no directory involved has setuid/setgid/sticky bits
    /// (which mkdir may inherit or drop): then mkdir's mode is predictable.
    umask: Option<u32>,
}

impl Owner {
    fn is(&self, e: &Entry) -> bool {
        self.uid == e.uid && self.gid == e.gid
    }

    /// Did mkdir with `mode | 0o700` already give directory `d` its mode?
    fn mode_set_by_mkdir(&self, d: &Entry) -> bool {
        !d.rel.as_os_str().is_empty() && self.umask.is_some_and(|u| (d.mode | 0o700) & !u == d.mode)
    }
}

fn not_a_dir_or(path: &Path, e: io::Error) -> Error {
    // A file where a directory should be shows up as ENOTDIR (or ENOENT
    // when a parent is missing): name the first ancestor that is not a dir.
    for anc in path.ancestors().skip(1) {
        if let Ok(m) = fs::symlink_metadata(anc) {
            if !m.is_dir() {
                return Error::NotADirectory {
                    path: anc.to_path_buf(),
                };
            }
            break;
        }
    }
    Error::io(path, e)
}

/// Copy one regular file with its mode, mtime and (if allowed) owner.
pub(crate) fn copy_file(src: &Path, dst: &Path, e: &Entry, owner: Option<Owner>) -> Result<()> {
    // `fs::copy` uses copy_file_range/reflinks where the kernel offers them.
    if let Err(err) = fs::copy(src, dst) {
        // Say which side failed: reading the source or writing the copy.
        return Err(match fs::File::open(src) {
            Err(src_err) => Error::io(src, src_err),
            Ok(_) => {
                let _ = fs::remove_file(dst);
                Error::io(dst, err)
            }
        });
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(e.mode)).at(dst)?;
    if !owner.is_some_and(|o| o.is(e)) {
        set_owner(dst, e)?;
    }
    filetime::set_file_mtime(dst, FileTime::from_unix_time(e.mtime, e.mtime_nsec)).at(dst)?;
    Ok(())
}

/// Set owner and group, as rsync -a does: only root may give files away,
/// so "not permitted" is not an error (rsync is silent about it too).
pub(crate) fn set_owner(path: &Path, e: &Entry) -> Result<()> {
    match lchown(path, Some(e.uid), Some(e.gid)) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(err) => Err(Error::io(path, err)),
    }
}

/// Set a directory's mode, owner and mtime.
pub(crate) fn set_dir_meta(path: &Path, d: &Entry, owner: Option<Owner>) -> Result<()> {
    if !owner.is_some_and(|o| o.is(d)) {
        set_owner(path, d)?;
    }
    if !owner.is_some_and(|o| o.mode_set_by_mkdir(d)) {
        fs::set_permissions(path, fs::Permissions::from_mode(d.mode)).at(path)?;
    }
    filetime::set_file_mtime(path, FileTime::from_unix_time(d.mtime, d.mtime_nsec)).at(path)?;
    Ok(())
}

/// Remove a tree, making read-only directories writable on the way (as
/// ZODB does on Windows): a backup of 0555 directories must stay removable.
///
/// # Errors
/// [`Error::Io`] naming what could not be removed.
pub fn remove_tree(path: &Path) -> Result<()> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !m.is_dir() {
        return fs::remove_file(path).at(path);
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path)?;
            fs::remove_dir_all(path).at(path)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn make_writable(dir: &Path) -> Result<()> {
    let m = fs::symlink_metadata(dir).at(dir)?;
    if m.is_dir() {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode(0o700 | (m.permissions().mode() & 0o777)),
        )
        .at(dir)?;
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}
