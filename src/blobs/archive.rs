//! Tar archives of a blob tree: plain, gzipped, and GNU incremental
//! (`--listed-incremental`) with dumpdir members and `.snar` files.
//!
//! Archives hold the *contents* of the blob directory, named like GNU tar
//! names them with `-C <blobdir> .`: `./`, `./0x00/`, `./.layout`, so
//! `tar xf <archive> -C <dir>` (6.0's restore) and our reader agree.
//! Headers are old-GNU (`ustar  \0`), long names use GNU `L` records.
//!
//! Incremental archives follow the GNU tar manual ("Using tar to Perform
//! Incremental Dumps", "Dumpdir", "Format of the Incremental Snapshot
//! Files", format 2):
//! - every directory is a member of type `D` whose data is its dumpdir:
//!   one `Y<name>\0` (file in this archive), `N<name>\0` (file unchanged,
//!   in an earlier archive) or `D<name>\0` (subdirectory) per entry, then a
//!   final `\0`; all directories come first, then the `Y` files;
//! - extracting with `--incremental` removes from each directory what its
//!   dumpdir does not list: that is how deletions travel in a chain;
//! - the snapshot file is `GNU tar-<version>-2\n`, then the dump start time
//!   `<sec>\0<nsec>\0`, then per directory `<nfs>\0<mtime sec>\0<mtime
//!   nsec>\0<dev>\0<ino>\0<name>\0<dumpdir>`; names are `.`, `./0x00`, ...
//!
//! A file goes into a delta when it is new in its directory, or its mtime or
//! ctime is at or after the previous dump's start (GNU tar's rule, plus the
//! name check, which catches files moved in with old times).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

use super::copy::{remove_tree, set_dir_meta, set_owner};
use super::tree::{Entry, EntryKind, Tree};
use crate::error::{Error, IoContext, Result};
use crate::progress::{Progress, Unit};

/// The first line of snapshot files we write. GNU tar checks the
/// `GNU tar-` prefix and reads the format number after the last dash.
const SNAR_MAGIC: &str = "GNU tar-1.35-2\n";

/// What a directory looked like at the last dump, as a snapshot file
/// records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDir {
    /// `1` if on NFS.
    pub nfs: bool,
    /// Directory mtime, seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Dumpdir entries: code letter and name.
    pub entries: Vec<(u8, String)>,
}

/// A GNU tar snapshot file (format 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Start time of the dump that wrote it.
    pub time: (i64, u32),
    /// Directories by name (`.`, `./0x00`, ...).
    pub dirs: HashMap<String, SnapshotDir>,
}

impl Snapshot {
    /// Read a snapshot file.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::BrokenArchive`] for anything but format 2.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).at(path)?;
        Snapshot::parse(&bytes).map_err(|reason| Error::BrokenArchive {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse the bytes of a snapshot file (what [`Snapshot::read`] does once
    /// it has them).
    ///
    /// # Errors
    /// The reason the bytes are not a format-2 snapshot file.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("not a GNU tar snapshot file")?;
        let head = String::from_utf8_lossy(&bytes[..nl]);
        if !head.starts_with("GNU tar-") || !head.ends_with("-2") {
            return Err(format!(
                "unsupported snapshot file format {head:?} (only format 2 is read)"
            ));
        }
        let mut fields = bytes[nl + 1..].split(|b| *b == 0);
        fn text(f: &[u8]) -> String {
            String::from_utf8_lossy(f).into_owned()
        }
        fn num<T: std::str::FromStr>(
            f: Option<&[u8]>,
            what: &str,
        ) -> std::result::Result<T, String> {
            let f = f.ok_or_else(|| format!("truncated snapshot file (reading {what})"))?;
            let s = text(f);
            s.parse::<T>()
                .map_err(|_| format!("bad number {s:?} for {what}"))
        }
        let sec: i64 = num(fields.next(), "time")?;
        let nsec: u32 = num(fields.next(), "time")?;
        let mut snap = Snapshot {
            time: (sec, nsec),
            dirs: HashMap::new(),
        };
        loop {
            // GNU tar ends every directory record with an empty field (the
            // record terminator) after the dumpdir's own terminator, and the
            // file with a final one; snapshot files we wrote before 7.0.0a1
            // had no record terminator. Skipping empty fields here reads
            // both.
            let nfs = loop {
                match fields.next() {
                    None => break None,
                    Some([]) => {}
                    Some(f) => break Some(text(f)),
                }
            };
            let Some(nfs) = nfs else { break };
            let msec: i64 = num(fields.next(), "mtime")?;
            let mnsec: u32 = num(fields.next(), "mtime")?;
            let dev: u64 = num(fields.next(), "dev")?;
            let ino: u64 = num(fields.next(), "ino")?;
            let name = text(
                fields
                    .next()
                    .ok_or("truncated snapshot file (reading name)")?,
            );
            let mut entries = Vec::new();
            loop {
                match fields.next() {
                    None => return Err("truncated snapshot file (reading dumpdir)".to_owned()),
                    Some([]) => break,
                    Some([code, rest @ ..]) => entries.push((*code, text(rest))),
                }
            }
            snap.dirs.insert(
                name,
                SnapshotDir {
                    nfs: nfs == "1",
                    mtime: (msec, mnsec),
                    dev,
                    ino,
                    entries,
                },
            );
        }
        Ok(snap)
    }

    /// The bytes of the snapshot file, directories in name order.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = SNAR_MAGIC.as_bytes().to_vec();
        out.extend_from_slice(format!("{}\0{}\0", self.time.0, self.time.1).as_bytes());
        let mut names: Vec<&String> = self.dirs.keys().collect();
        names.sort();
        for name in names {
            let d = &self.dirs[name];
            out.extend_from_slice(
                format!(
                    "{}\0{}\0{}\0{}\0{}\0",
                    u8::from(d.nfs),
                    d.mtime.0,
                    d.mtime.1,
                    d.dev,
                    d.ino
                )
                .as_bytes(),
            );
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            for (code, n) in &d.entries {
                out.push(*code);
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            // The dumpdir's terminator, then the record terminator, as GNU
            // tar writes them (without the latter GNU tar refuses the file:
            // "Missing record terminator").
            out.extend_from_slice(&[0, 0]);
        }
        out
    }
}

/// The name of a tree entry in an archive: `./`, `./a/`, `./a/b`.
fn member_name(e: &Entry) -> String {
    let rel = e.rel.to_string_lossy();
    match (&e.kind, rel.is_empty()) {
        (EntryKind::Dir, true) => "./".to_owned(),
        (EntryKind::Dir, false) => format!("./{rel}/"),
        _ => format!("./{rel}"),
    }
}

/// The snapshot-file name of a directory: `.`, `./a`.
fn snar_dir_name(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        format!("./{}", rel.to_string_lossy())
    }
}

/// Options of one archive write.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveOptions {
    /// gzip the archive.
    pub gzip: bool,
}

/// Write a plain archive of `tree` to `out`.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be read, or `dest` for
/// write errors.
pub fn write_plain<W: Write>(
    tree: &Tree,
    out: W,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<W> {
    let mut b = tar::Builder::new(out);
    progress.start("blobs: archive", Some(tree.file_count()), Unit::Files);
    for e in &tree.entries {
        append_entry(&mut b, tree, e, None, dest)?;
        if e.kind == EntryKind::File {
            progress.advance(1);
        }
    }
    progress.finish();
    b.into_inner().at(dest)
}

/// Write a GNU incremental archive of `tree` relative to `previous` (None:
/// level 0) and return the new snapshot. `dump_time` is the start of this
/// dump (taken before the walk).
///
/// # Errors
/// As [`write_plain`].
pub fn write_incremental<W: Write>(
    tree: &Tree,
    previous: Option<&Snapshot>,
    dump_time: (i64, u32),
    out: W,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(W, Snapshot)> {
    // Children of every directory, in tree order.
    let mut children: HashMap<&Path, Vec<&Entry>> = HashMap::new();
    for e in tree.entries.iter().skip(1) {
        let parent = e.rel.parent().unwrap_or(Path::new(""));
        children.entry(parent).or_default().push(e);
    }
    let included = |e: &Entry| -> bool {
        let Some(prev) = previous else { return true };
        let parent = e.rel.parent().unwrap_or(Path::new(""));
        let Some(pdir) = prev.dirs.get(&snar_dir_name(parent)) else {
            return true;
        };
        let name = e
            .rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !pdir.entries.iter().any(|(c, n)| *c != b'D' && *n == name) {
            return true;
        }
        (e.mtime, e.mtime_nsec) >= prev.time || (e.ctime, e.ctime_nsec) >= prev.time
    };
    let mut snap = Snapshot {
        time: dump_time,
        dirs: HashMap::new(),
    };
    let mut b = tar::Builder::new(out);
    let dirs: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .collect();
    let mut to_write: Vec<&Entry> = Vec::new();
    for d in &dirs {
        let mut entries: Vec<(u8, String)> = Vec::new();
        for c in children
            .get(d.rel.as_path())
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = c
                .rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let code = if c.kind == EntryKind::Dir {
                b'D'
            } else if included(c) {
                to_write.push(c);
                b'Y'
            } else {
                b'N'
            };
            entries.push((code, name));
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        let mut dumpdir = Vec::new();
        for (code, n) in &entries {
            dumpdir.push(*code);
            dumpdir.extend_from_slice(n.as_bytes());
            dumpdir.push(0);
        }
        dumpdir.push(0);
        append_entry(&mut b, tree, d, Some(&dumpdir), dest)?;
        snap.dirs.insert(
            snar_dir_name(&d.rel),
            SnapshotDir {
                nfs: false,
                mtime: (d.mtime, d.mtime_nsec),
                dev: d.dev,
                ino: d.ino,
                entries,
            },
        );
    }
    progress.start("blobs: archive", Some(to_write.len() as u64), Unit::Files);
    for e in to_write {
        append_entry(&mut b, tree, e, None, dest)?;
        progress.advance(1);
    }
    progress.finish();
    let out = b.into_inner().at(dest)?;
    Ok((out, snap))
}

fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    tree: &Tree,
    e: &Entry,
    dumpdir: Option<&[u8]>,
    dest: &Path,
) -> Result<()> {
    let name = member_name(e);
    let mut h = tar::Header::new_gnu();
    h.set_mode(e.mode);
    h.set_uid(u64::from(e.uid));
    h.set_gid(u64::from(e.gid));
    h.set_mtime(u64::try_from(e.mtime).unwrap_or(0));
    let (etype, size) = match (&e.kind, dumpdir) {
        (EntryKind::Dir, Some(d)) => (tar::EntryType::new(b'D'), d.len() as u64),
        (EntryKind::Dir, None) => (tar::EntryType::Directory, 0),
        (EntryKind::File, _) => (tar::EntryType::Regular, e.size),
        (EntryKind::Symlink(_), _) => (tar::EntryType::Symlink, 0),
    };
    h.set_entry_type(etype);
    h.set_size(size);
    if let EntryKind::Symlink(target) = &e.kind {
        let t = target.to_string_lossy();
        if t.len() > 100 {
            long_record(b, b'K', &t, dest)?;
        }
        set_raw(&mut h.as_old_mut().linkname, &t);
    }
    if name.len() > 100 {
        long_record(b, b'L', &name, dest)?;
    }
    set_raw(&mut h.as_old_mut().name, &name);
    h.set_cksum();
    match (&e.kind, dumpdir) {
        (EntryKind::Dir, Some(d)) => b.append(&h, d).at(dest),
        (EntryKind::File, _) => {
            let src = tree.root.join(&e.rel);
            let f = File::open(&src).at(&src)?;
            let mut r = BufReader::with_capacity(1 << 16, f).take(e.size);
            // A file that shrank under us would make a corrupt member.
            let len = fs::metadata(&src).at(&src)?.len();
            if len < e.size {
                return Err(Error::io(
                    &src,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while archiving"),
                ));
            }
            b.append(&h, &mut r).map_err(|err| {
                if err.kind() == io::ErrorKind::Other {
                    Error::io(&src, err)
                } else {
                    Error::io(dest, err)
                }
            })
        }
        _ => b.append(&h, io::empty()).at(dest),
    }
}

/// Copy a name into a header field, truncated as GNU tar does when a long
/// record precedes it.
fn set_raw(field: &mut [u8], s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&bytes[..n]);
}

/// A GNU long-name (`L`) or long-link (`K`) record.
fn long_record<W: Write>(b: &mut tar::Builder<W>, code: u8, s: &str, dest: &Path) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    set_raw(&mut h.as_old_mut().name, "././@LongLink");
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(code));
    let mut data = s.as_bytes().to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data.as_slice()).at(dest)
}

/// Open an archive for reading, gunzipping when it starts with the gzip
/// magic (whatever its name says).
fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = BufReader::with_capacity(1 << 16, File::open(path).at(path)?);
    let mut magic = [0u8; 2];
    let n = read_full(&mut f, &mut magic).at(path)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(f);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(chained)))
    } else {
        Ok(Box::new(chained))
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A member name made safe: relative, without `.` and `..` components.
/// A member whose path is `./`, the target directory itself: only a
/// directory member may name it (a file or a link there would replace it).
fn check_names_target(archive: &Path, raw: &Path, etype: tar::EntryType) -> Result<()> {
    let makes_entry = matches!(
        etype,
        tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Symlink
            | tar::EntryType::Link
    );
    if makes_entry {
        return Err(Error::BrokenArchive {
            path: archive.to_path_buf(),
            reason: format!(
                "member {} of type {:?} names the target directory",
                raw.display(),
                etype
            ),
        });
    }
    Ok(())
}

fn safe_rel(archive: &Path, raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir | Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::BrokenArchive {
                    path: archive.to_path_buf(),
                    reason: format!("unsafe member name {}", raw.display()),
                });
            }
        }
    }
    Ok(out)
}

/// Extract `archives` in order into the directory `dest` (which exists).
/// With `incremental`, directories' dumpdirs remove what they do not list,
/// as `tar -x --incremental` does.
///
/// # Errors
/// [`Error::BrokenArchive`] for unreadable or unsafe archives,
/// [`Error::Io`] for file system errors.
pub fn extract(
    archives: &[PathBuf],
    dest: &Path,
    incremental: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let mut dir_meta: HashMap<PathBuf, Entry> = HashMap::new();
    for archive in archives {
        progress.start("blobs: extract", None, Unit::Files);
        extract_one(archive, dest, incremental, &mut dir_meta, progress)?;
        progress.finish();
    }
    let mut dirs: Vec<(PathBuf, Entry)> = dir_meta.into_iter().collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (rel, e) in dirs {
        // A later member may have replaced the directory, or one above it,
        // by a file or a symlink: never follow one out of `dest`.
        if real_dirs(dest, &rel) {
            set_dir_meta(&dest.join(&rel), &e, None)?;
        }
    }
    Ok(())
}

/// Whether `dest/rel` and every directory between it and `dest` is a real
/// directory, not a symlink.
fn real_dirs(dest: &Path, rel: &Path) -> bool {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
            return false;
        }
    }
    true
}

fn extract_one(
    archive: &Path,
    dest: &Path,
    incremental: bool,
    dir_meta: &mut HashMap<PathBuf, Entry>,
    progress: &dyn Progress,
) -> Result<()> {
    let broken = |e: io::Error| Error::BrokenArchive {
        path: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let mut ar = tar::Archive::new(open_archive(archive)?);
    let mut seen_any = false;
    for member in ar.entries().map_err(broken)? {
        let mut member = member.map_err(broken)?;
        seen_any = true;
        let raw = member.path().map_err(broken)?.into_owned();
        let rel = safe_rel(archive, &raw)?;
        let h = member.header();
        let mode = h.mode().map_err(broken)? & 0o7777;
        let meta = Entry {
            rel: rel.clone(),
            kind: EntryKind::File,
            mode,
            uid: u32::try_from(h.uid().map_err(broken)?).unwrap_or(0),
            gid: u32::try_from(h.gid().map_err(broken)?).unwrap_or(0),
            size: h.size().map_err(broken)?,
            mtime: i64::try_from(h.mtime().map_err(broken)?).unwrap_or(0),
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            dev: 0,
            ino: 0,
        };
        let etype = h.entry_type();
        let path = dest.join(&rel);
        let dumpdir = etype.as_byte() == b'D';
        if rel.as_os_str().is_empty() {
            check_names_target(archive, &raw, etype)?;
        } else {
            ensure_parent(dest, &rel)?;
        }
        match etype {
            _ if dumpdir || etype == tar::EntryType::Directory => {
                ensure_dir(&path)?;
                if dumpdir && incremental {
                    let mut data = Vec::new();
                    member.read_to_end(&mut data).map_err(broken)?;
                    purge(archive, &path, &data)?;
                }
                dir_meta.insert(
                    rel,
                    Entry {
                        kind: EntryKind::Dir,
                        ..meta
                    },
                );
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_existing(&path)?;
                let mut f = BufWriter::with_capacity(1 << 16, File::create(&path).at(&path)?);
                io::copy(&mut member, &mut f).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        || e.kind() == io::ErrorKind::InvalidData
                    {
                        broken(e)
                    } else {
                        Error::io(&path, e)
                    }
                })?;
                f.into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at(&path)?;
                set_owner(&path, &meta)?;
                filetime::set_file_mtime(&path, FileTime::from_unix_time(meta.mtime, 0))
                    .at(&path)?;
                progress.advance(1);
            }
            tar::EntryType::Symlink => {
                let target = member
                    .link_name()
                    .map_err(broken)?
                    .ok_or_else(|| broken(io::Error::other("symlink without target")))?
                    .into_owned();
                remove_existing(&path)?;
                symlink(&target, &path).at(&path)?;
                set_owner(&path, &meta)?;
                let t = FileTime::from_unix_time(meta.mtime, 0);
                filetime::set_symlink_file_times(&path, t, t).at(&path)?;
            }
            tar::EntryType::Link => {
                let target = member
                    .link_name()
                    .map_err(broken)?
                    .ok_or_else(|| broken(io::Error::other("hard link without target")))?
                    .into_owned();
                let target_rel = safe_rel(archive, &target)?;
                // Only a file extracted below `dest` may be linked: not one
                // reached through a symlink, nor a directory.
                let inside = target_rel
                    .parent()
                    .is_some_and(|parent| real_dirs(dest, parent))
                    && fs::symlink_metadata(dest.join(&target_rel)).is_ok_and(|m| m.is_file());
                if target_rel.as_os_str().is_empty() || !inside {
                    return Err(Error::BrokenArchive {
                        path: archive.to_path_buf(),
                        reason: format!(
                            "hard link {} to {}, which is not a file extracted here",
                            raw.display(),
                            target.display()
                        ),
                    });
                }
                let target = dest.join(target_rel);
                remove_existing(&path)?;
                fs::hard_link(&target, &path).at(&path)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                log::warn!(
                    "{}: skipping member {} of unsupported type {:?}",
                    archive.display(),
                    raw.display(),
                    other
                );
            }
        }
    }
    if !seen_any {
        return Err(Error::BrokenArchive {
            path: archive.to_path_buf(),
            reason: "empty archive".to_owned(),
        });
    }
    Ok(())
}

/// What a chain of archives restores, read without extracting: every
/// regular file's path (relative to the blob directory) and size, and the
/// contents of a top-level `.layout`.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Files and their sizes, as the tar headers give them.
    pub files: HashMap<PathBuf, u64>,
    /// The `.layout` file's contents, if the chain has one.
    pub layout: Option<String>,
}

/// Read `archives` in order to the end, as [`extract`] with `incremental`
/// would, without writing anything: every member's data and every gzip
/// trailer is read (a truncated or damaged archive is an error), and the
/// dumpdirs of incremental archives remove what they do not list.
///
/// # Errors
/// [`Error::BrokenArchive`] for unreadable or unsafe archives,
/// [`Error::Io`] when one cannot be opened.
pub fn list(archives: &[PathBuf]) -> Result<Listing> {
    let mut out = Listing::default();
    for archive in archives {
        list_one(archive, &mut out)?;
    }
    if !out.files.contains_key(Path::new(".layout")) {
        out.layout = None;
    }
    Ok(out)
}

fn list_one(archive: &Path, out: &mut Listing) -> Result<()> {
    let broken = |e: io::Error| Error::BrokenArchive {
        path: archive.to_path_buf(),
        reason: if e.kind() == io::ErrorKind::UnexpectedEof {
            "truncated archive".to_owned()
        } else {
            e.to_string()
        },
    };
    // What `extract_one` removes before it writes at `rel`.
    let remove_subtree = |files: &mut HashMap<PathBuf, u64>, rel: &Path| {
        files.retain(|p, _| !p.starts_with(rel));
    };
    let mut ar = tar::Archive::new(open_archive(archive)?);
    let mut seen_any = false;
    for member in ar.entries().map_err(broken)? {
        let mut member = member.map_err(broken)?;
        seen_any = true;
        let raw = member.path().map_err(broken)?.into_owned();
        let rel = safe_rel(archive, &raw)?;
        let etype = member.header().entry_type();
        let size = member.header().size().map_err(broken)?;
        if rel.as_os_str().is_empty() {
            check_names_target(archive, &raw, etype)?;
        } else {
            // Its parents become directories, replacing files of those
            // names.
            for parent in rel.ancestors().skip(1) {
                out.files.remove(parent);
            }
        }
        match etype {
            _ if etype.as_byte() == b'D' || etype == tar::EntryType::Directory => {
                out.files.remove(&rel);
                if etype.as_byte() == b'D' {
                    let mut data = Vec::new();
                    member.read_to_end(&mut data).map_err(broken)?;
                    let mut keep: HashSet<&[u8]> = HashSet::new();
                    for item in data.split(|b| *b == 0).filter(|i| !i.is_empty()) {
                        match item[0] {
                            b'Y' | b'N' | b'D' => {
                                keep.insert(&item[1..]);
                            }
                            code => {
                                return Err(Error::BrokenArchive {
                                    path: archive.to_path_buf(),
                                    reason: format!(
                                        "unsupported dumpdir code {:?} for {}",
                                        char::from(code),
                                        rel.display()
                                    ),
                                })
                            }
                        }
                    }
                    out.files.retain(|p, _| {
                        let Ok(under) = p.strip_prefix(&rel) else {
                            return true;
                        };
                        under
                            .components()
                            .next()
                            .is_none_or(|c| keep.contains(c.as_os_str().as_encoded_bytes()))
                    });
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_subtree(&mut out.files, &rel);
                if rel == Path::new(".layout") {
                    let mut data = Vec::new();
                    member.read_to_end(&mut data).map_err(broken)?;
                    out.layout = Some(String::from_utf8_lossy(&data).into_owned());
                } else {
                    io::copy(&mut member, &mut io::sink()).map_err(broken)?;
                }
                out.files.insert(rel, size);
            }
            tar::EntryType::Symlink => remove_subtree(&mut out.files, &rel),
            tar::EntryType::Link => {
                let target = member.link_name().map_err(broken)?.map(|t| t.into_owned());
                let target = match target {
                    Some(t) => safe_rel(archive, &t)?,
                    None => PathBuf::new(),
                };
                let Some(n) = out.files.get(&target).copied() else {
                    return Err(Error::BrokenArchive {
                        path: archive.to_path_buf(),
                        reason: format!(
                            "hard link {} to {}, which is not a file extracted here",
                            raw.display(),
                            target.display()
                        ),
                    });
                };
                remove_subtree(&mut out.files, &rel);
                out.files.insert(rel, n);
            }
            // Long-name and extended headers, and types extraction skips.
            _ => {
                io::copy(&mut member, &mut io::sink()).map_err(broken)?;
            }
        }
    }
    if !seen_any {
        return Err(Error::BrokenArchive {
            path: archive.to_path_buf(),
            reason: "empty archive".to_owned(),
        });
    }
    // The rest of the stream: the end-of-archive blocks and, for gzip, the
    // trailer with its CRC, which the tar reader leaves unread.
    io::copy(&mut ar.into_inner(), &mut io::sink()).map_err(broken)?;
    Ok(())
}

/// Make sure every ancestor of `rel` below `dest` is a real directory (not
/// a symlink that would lead the extraction elsewhere).
fn ensure_parent(dest: &Path, rel: &Path) -> Result<()> {
    let mut cur = dest.to_path_buf();
    let comps: Vec<Component<'_>> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        ensure_dir(&cur)?;
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path).at(path)?;
            fs::create_dir(path).at(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(path).at(path),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Remove from `dir` everything its dumpdir does not list.
fn purge(archive: &Path, dir: &Path, dumpdir: &[u8]) -> Result<()> {
    let mut keep: HashSet<Vec<u8>> = HashSet::new();
    for item in dumpdir.split(|b| *b == 0) {
        if item.is_empty() {
            continue;
        }
        match item[0] {
            b'Y' | b'N' | b'D' => {
                keep.insert(item[1..].to_vec());
            }
            // Renames (`R`/`T`) and `X` only occur with directory renames
            // between dumps, which blob trees never do.
            code => {
                return Err(Error::BrokenArchive {
                    path: archive.to_path_buf(),
                    reason: format!(
                        "unsupported dumpdir code {:?} for {}",
                        char::from(code),
                        dir.display()
                    ),
                })
            }
        }
    }
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if !keep.contains(name.as_encoded_bytes()) {
            remove_existing(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snar_written_by_gnu_tar_reads_every_directory() {
        // `tar -cf g.tar --listed-incremental=g.snar -C d .` (GNU tar 1.34)
        // on d/a and d/sub/b: records end with the dumpdir terminator and a
        // record terminator.
        let gnu = b"GNU tar-1.34-2\n1795733665\x0022672177\x00\
0\x001795733665\x0016229376\x0065024\x0010053505\x00./sub\x00Yb\x00\x00\x00\
0\x001795733665\x0016229376\x0065024\x0010053504\x00.\x00Ya\x00Dsub\x00\x00\x00";
        let snap = Snapshot::parse(gnu).expect("parses");
        assert_eq!(snap.dirs.len(), 2);
        assert_eq!(
            snap.dirs["."].entries,
            [(b'Y', "a".to_owned()), (b'D', "sub".to_owned())]
        );
        assert_eq!(snap.dirs["./sub"].ino, 10_053_505);
        // What we write has the same framing, and reads back the same.
        let again = Snapshot::parse(&snap.to_bytes()).expect("reads back");
        assert_eq!(again.dirs.len(), 2);
        assert!(snap.to_bytes().ends_with(b"./sub\x00Yb\x00\x00\x00"));
    }

    #[test]
    fn snapshot_roundtrip() {
        let mut snap = Snapshot {
            time: (1_795_726_740, 877_535_771),
            dirs: HashMap::new(),
        };
        snap.dirs.insert(
            ".".into(),
            SnapshotDir {
                nfs: false,
                mtime: (1_795_726_740, 871_981_749),
                dev: 65024,
                ino: 10_060_245,
                entries: vec![(b'Y', ".layout".into()), (b'D', "0x00".into())],
            },
        );
        let bytes = snap.to_bytes();
        assert!(bytes.starts_with(b"GNU tar-1.35-2\n1795726740\0877535771\0"));
        let back = Snapshot::parse(&bytes).expect("parse");
        assert_eq!(back, snap);
    }

    /// A tar of the given members: (name, type, link target, data, mode).
    fn tar_of(members: &[(&str, tar::EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, etype, link, data, mode) in members {
            let mut h = tar::Header::new_gnu();
            set_raw(&mut h.as_old_mut().name, name);
            set_raw(&mut h.as_old_mut().linkname, link);
            h.set_entry_type(*etype);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    /// A sandbox with `outside/f` and `outside/d` (0755) beside `dest/`;
    /// extracts `bytes` into `dest` and returns the sandbox and the result.
    fn extract_in_sandbox(bytes: &[u8]) -> (tempfile::TempDir, Result<()>) {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = root.path().join("outside");
        fs::create_dir_all(outside.join("d")).expect("mkdir");
        fs::set_permissions(outside.join("d"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(outside.join("f"), b"x").expect("write");
        fs::create_dir(root.path().join("dest")).expect("mkdir");
        let ar = root.path().join("a.tar");
        fs::write(&ar, bytes).expect("write");
        let r = extract(
            &[ar],
            &root.path().join("dest"),
            false,
            &crate::progress::NoProgress,
        );
        (root, r)
    }

    fn outside_untouched(root: &Path) {
        use std::os::unix::fs::MetadataExt;
        let outside = root.join("outside");
        let mut names: Vec<_> = fs::read_dir(&outside)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "f"]);
        assert_eq!(fs::read(outside.join("f")).expect("read"), b"x");
        assert_eq!(fs::metadata(outside.join("f")).expect("stat").nlink(), 1);
        let d = fs::metadata(outside.join("d")).expect("stat");
        assert_eq!(d.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_dir(outside.join("d")).expect("read_dir").count(),
            0
        );
        assert!(fs::symlink_metadata(root.join("dest"))
            .expect("stat")
            .is_dir());
    }

    #[test]
    fn a_symlink_cannot_replace_the_target_directory() {
        use tar::EntryType as T;
        let bytes = tar_of(&[
            ("./", T::Symlink, "../outside", b"", 0o777),
            ("./x", T::Regular, "", b"y", 0o644),
        ]);
        let (root, r) = extract_in_sandbox(&bytes);
        assert!(matches!(r, Err(Error::BrokenArchive { .. })), "{r:?}");
        outside_untouched(root.path());
    }

    #[test]
    fn a_file_cannot_replace_the_target_directory() {
        use tar::EntryType as T;
        let bytes = tar_of(&[("./", T::Regular, "", b"y", 0o644)]);
        let (root, r) = extract_in_sandbox(&bytes);
        assert!(matches!(r, Err(Error::BrokenArchive { .. })), "{r:?}");
        outside_untouched(root.path());
    }

    #[test]
    fn directory_modes_are_not_set_through_a_later_symlink() {
        use tar::EntryType as T;
        let bytes = tar_of(&[
            ("./a/d/", T::Directory, "", b"", 0o700),
            ("./a", T::Symlink, "../outside", b"", 0o777),
        ]);
        let (root, r) = extract_in_sandbox(&bytes);
        r.expect("extracts");
        outside_untouched(root.path());
    }

    #[test]
    fn hard_links_only_to_files_extracted_inside() {
        use tar::EntryType as T;
        for target in ["./l/f", "l/f", "./l/d", "./", "./missing"] {
            let bytes = tar_of(&[
                ("./l", T::Symlink, "../outside", b"", 0o777),
                ("./h", T::Link, target, b"", 0o644),
            ]);
            let (root, r) = extract_in_sandbox(&bytes);
            assert!(
                matches!(r, Err(Error::BrokenArchive { .. })),
                "{target}: {r:?}"
            );
            outside_untouched(root.path());
        }
        // A link to a file of the archive still works.
        let bytes = tar_of(&[
            ("./f", T::Regular, "", b"z", 0o644),
            ("./h", T::Link, "./f", b"", 0o644),
        ]);
        let (root, r) = extract_in_sandbox(&bytes);
        r.expect("extracts");
        assert_eq!(fs::read(root.path().join("dest/h")).expect("read"), b"z");
    }

    #[test]
    fn snapshot_rejects_other_formats() {
        assert!(Snapshot::parse(b"1795726740\n").is_err());
        assert!(Snapshot::parse(b"GNU tar-1.15.90-1\n1 2 3\n").is_err());
    }
}
