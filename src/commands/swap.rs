//! Putting restored files in place so that a crash at any point leaves a
//! state the next run can finish: the swap phase of a restore, and the
//! recovery the next restore or backup does first.
//!
//! Each target (a Data.fs, its `.index`, a blob directory) has a new copy
//! waiting in a temporary directory beside it (`.crb-restore-*`, same file
//! system). Before the first rename, an intent record is written
//! atomically beside the main Data.fs ([`INTENT`]): every target, where its
//! new copy waits (`staged`), where its old copy goes when it has to be
//! moved aside (`aside`), and the identity (device and inode) of both
//! copies. Then each target is swapped:
//!
//! - with `renameat2(RENAME_EXCHANGE)`: one atomic step, after which the
//!   old copy sits where the new one waited; the live name always holds a
//!   complete copy;
//! - where the file system does not support it (or the target does not
//!   exist yet): the old copy is moved aside, then the new one moved in.
//!
//! Then the directories are fsynced, the intent removed, and the old
//! copies with it. The identities make every intermediate state readable:
//! whatever rename was the last one done, each copy is found under one of
//! its three names. The next run (under the storage locks) reads an intent
//! left behind and rolls forward when every new copy is there (they were
//! complete and flushed before the intent was written), else back when
//! every old copy is there; a name holding a copy it does not know stops
//! it, touching nothing. Without an intent, `.crb-restore-*` directories
//! hold nothing live (new copies not yet swapped, or old copies of a
//! finished swap) and are removed.
//!
//! The old copy of every target exists under one of its names until the
//! new one is in place and the directories are flushed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blobs::copy::remove_tree;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{parent_dir, sync_dir, write_atomically};

/// The intent record's name, in the directory of the main Data.fs.
pub(crate) const INTENT: &str = ".crb-restore.intent";
/// The prefix of the temporary directories beside each target.
pub(crate) const TEMP_PREFIX: &str = ".crb-restore-";
/// The prefix of the temporary file [`write_atomically`] writes the intent
/// record to.
const INTENT_TEMP_PREFIX: &str = "..crb-restore.intent.";

/// Which file or directory a path holds: device, inode and birth time,
/// which renames keep (the birth time tells a file from a later one that
/// got the same inode number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    /// Seconds and nanoseconds since the epoch, where the file system
    /// records it.
    born: Option<(i64, u32)>,
}

impl FileId {
    fn same(&self, other: &FileId) -> bool {
        self.dev == other.dev
            && self.ino == other.ino
            && match (self.born, other.born) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn id_of(path: &Path) -> Result<Option<FileId>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(file_id(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn born(m: &fs::Metadata) -> Option<(i64, u32)> {
    let d = m
        .created()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()))
}

#[cfg(unix)]
fn file_id(m: &fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        dev: m.dev(),
        ino: m.ino(),
        born: born(m),
    }
}

#[cfg(not(unix))]
fn file_id(m: &fs::Metadata) -> FileId {
    FileId {
        dev: 0,
        ino: 0,
        born: born(m),
    }
}

/// One target of a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Item {
    /// The live name.
    pub target: PathBuf,
    /// Where the new copy waits (in a temporary directory).
    pub staged: PathBuf,
    /// Where the old copy goes when it is moved aside (same directory).
    pub aside: PathBuf,
    /// The new copy; `None`: the restore removes the target (a stale
    /// `.index` when the backup has none).
    pub new: Option<FileId>,
    /// The old copy; `None`: there was none.
    pub old: Option<FileId>,
    /// Not a rename: the target is cut to a shorter size, its tail saved
    /// elsewhere (a restore that keeps the live Data.fs's prefix). Its old
    /// and new copy are the same file, told apart by size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
}

/// A cut of a file to its first `end` bytes, undone by appending the saved
/// tail: any size from `end` to `size` can go either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cut {
    /// The size after the cut.
    pub end: u64,
    /// The size before it.
    pub size: u64,
    /// Where the saved bytes `[end, size)` may be (the names of the item
    /// that puts them in place).
    pub tail: Vec<PathBuf>,
}

impl Cut {
    /// The saved tail, complete, at one of its names.
    fn saved_tail(&self) -> Option<&Path> {
        self.tail.iter().map(PathBuf::as_path).find(|p| {
            fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() == self.size - self.end)
        })
    }

    /// What the target holds. A cut is done only while a complete copy of
    /// the tail is saved (else the bytes it removes would be lost), and
    /// undone from that copy; bytes past `end` must be the tail's own (an
    /// undo's append that was interrupted). Anything else (another file, a
    /// size outside `[end, size]`, bytes written after the cut by a Zope
    /// started in between) is a stranger: nothing is touched.
    fn survey(&self, target: &Path, id: Option<FileId>) -> Result<Survey> {
        let mut s = Survey::default();
        let m = match fs::symlink_metadata(target) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                s.stranger = true;
                return Ok(s);
            }
            Err(e) => return Err(Error::io(target, e)),
        };
        let len = m.len();
        if id.is_none_or(|id| !id.same(&file_id(&m))) || len < self.end || len > self.size {
            s.stranger = true;
            return Ok(s);
        }
        match self.saved_tail() {
            Some(tail) => {
                if len > self.end && !same_bytes(target, self.end, tail, len - self.end)? {
                    s.stranger = true;
                    return Ok(s);
                }
                s.new = Some(Place::Target);
                s.old = Some(Place::Target);
            }
            // Never cut without a copy of what goes.
            None if len == self.size => s.old = Some(Place::Target),
            None => s.stranger = true,
        }
        Ok(s)
    }

    /// Cut `target` to `end` and flush it.
    fn forward(&self, target: &Path) -> Result<()> {
        let f = fs::OpenOptions::new().write(true).open(target).at(target)?;
        f.set_len(self.end).at(target)?;
        f.sync_all().at(target)
    }

    /// Put the saved tail back after `end` and flush: cut to `end` first,
    /// so that what an interrupted append left is written again. At full
    /// size there is nothing to do: [`Cut::survey`] found those bytes to be
    /// the tail's, or no cut was made.
    fn back(&self, target: &Path) -> Result<()> {
        if fs::metadata(target).at(target)?.len() == self.size {
            return Ok(());
        }
        let tail = self.saved_tail().ok_or_else(|| {
            Error::Config(format!(
                "the bytes cut from {} are not in {}",
                target.display(),
                names(&self.tail)
            ))
        })?;
        let mut src = fs::File::open(tail).at(tail)?;
        let mut dst = fs::OpenOptions::new().write(true).open(target).at(target)?;
        dst.set_len(self.end).at(target)?;
        io::Seek::seek(&mut dst, io::SeekFrom::Start(self.end)).at(target)?;
        io::copy(&mut src, &mut dst).at(target)?;
        dst.sync_all().at(target)
    }
}

/// Are the `n` bytes of `a` from `offset` the first `n` bytes of `b`?
fn same_bytes(a: &Path, offset: u64, b: &Path, n: u64) -> Result<bool> {
    use io::Read as _;
    let mut fa = fs::File::open(a).at(a)?;
    io::Seek::seek(&mut fa, io::SeekFrom::Start(offset)).at(a)?;
    let (mut ra, mut rb) = (fa.take(n), fs::File::open(b).at(b)?.take(n));
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let got = crate::repozo::stream::fill(&mut ra, &mut x).at(a)?;
        if got == 0 {
            return Ok(true);
        }
        if crate::repozo::stream::fill(&mut rb, &mut y[..got]).at(b)? != got || x[..got] != y[..got]
        {
            return Ok(false);
        }
    }
}

/// The intent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// Format version.
    pub version: u32,
    /// The targets, in swap order.
    pub items: Vec<Item>,
    /// The temporary directories, removed at the end.
    pub temporaries: Vec<PathBuf>,
}

/// One of the three names of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Target,
    Staged,
    Aside,
}

impl Item {
    /// An item for `target` with its new copy at `staged` (if there), the
    /// old copy being whatever `target` holds now.
    pub(crate) fn new(target: PathBuf, staged: PathBuf, aside: PathBuf) -> Result<Self> {
        Ok(Item {
            new: id_of(&staged)?,
            old: id_of(&target)?,
            target,
            staged,
            aside,
            cut: None,
        })
    }

    /// An item that cuts `target` to its first `end` bytes of `size`, the
    /// bytes after them being saved at one of `tail`'s names.
    pub(crate) fn cutting(
        target: PathBuf,
        end: u64,
        size: u64,
        tail: Vec<PathBuf>,
    ) -> Result<Self> {
        let id = id_of(&target)?;
        Ok(Item {
            new: id,
            old: id,
            staged: target.clone(),
            aside: target.clone(),
            target,
            cut: Some(Cut { end, size, tail }),
        })
    }

    /// [`Item::new`] for a target the restore must bring a new copy of.
    ///
    /// # Errors
    /// [`Error::Io`] naming `staged` when it does not exist.
    pub(crate) fn replacing(target: PathBuf, staged: PathBuf, aside: PathBuf) -> Result<Self> {
        let item = Item::new(target, staged, aside)?;
        if item.new.is_none() {
            return Err(Error::io(
                &item.staged,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(item)
    }

    fn path(&self, p: Place) -> &Path {
        match p {
            Place::Target => &self.target,
            Place::Staged => &self.staged,
            Place::Aside => &self.aside,
        }
    }

    /// What each name holds now: `Some(true)` the new copy, `Some(false)`
    /// the old one, `None` nothing; `Err` names a path holding something
    /// else.
    fn survey(&self) -> Result<Survey> {
        if let Some(cut) = &self.cut {
            return cut.survey(&self.target, self.old);
        }
        let mut s = Survey::default();
        for p in [Place::Target, Place::Staged, Place::Aside] {
            let Some(id) = id_of(self.path(p))? else {
                continue;
            };
            if self.new.is_some_and(|n| n.same(&id)) {
                s.new = Some(p);
            } else if self.old.is_some_and(|o| o.same(&id)) {
                s.old = Some(p);
            } else if p == Place::Target {
                s.stranger = true;
            }
        }
        Ok(s)
    }
}

/// Where an item's copies are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Survey {
    /// The new copy's name, if found.
    pub new: Option<Place>,
    /// The old copy's name, if found.
    pub old: Option<Place>,
    /// The live name holds something that is neither.
    pub stranger: bool,
}

/// What to do with an interrupted swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every new copy is there: finish the swap.
    Forward,
    /// Some new copy is missing, every old one is there: undo it.
    Back,
    /// Neither is possible, or a live name holds an unknown file: touch
    /// nothing.
    Stuck,
}

/// The roll-forward / roll-back decision for items in the state `surveys`
/// describes (same order). `prefer_back` is for a swap that failed in the
/// running process: it is undone when it can be.
pub(crate) fn decide(items: &[Item], surveys: &[Survey], prefer_back: bool) -> Outcome {
    if surveys.iter().any(|s| s.stranger) {
        return Outcome::Stuck;
    }
    let all_new = items
        .iter()
        .zip(surveys)
        .all(|(i, s)| i.new.is_none() || s.new.is_some());
    let all_old = items
        .iter()
        .zip(surveys)
        .all(|(i, s)| i.old.is_none() || s.old.is_some());
    match (all_new, all_old) {
        (_, true) if prefer_back => Outcome::Back,
        (true, _) => Outcome::Forward,
        (false, true) => Outcome::Back,
        (false, false) => Outcome::Stuck,
    }
}

/// One rename of a swap.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// `renameat2(a, b, RENAME_EXCHANGE)`.
    Exchange(PathBuf, PathBuf),
    /// `rename(a, b)`.
    Rename(PathBuf, PathBuf),
}

impl Op {
    fn run(&self) -> io::Result<()> {
        match self {
            Op::Exchange(a, b) => exchange(a, b),
            Op::Rename(a, b) => fs::rename(a, b),
        }
    }

    fn source(&self) -> &Path {
        match self {
            Op::Exchange(a, _) | Op::Rename(a, _) => a,
        }
    }
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Does this error of an exchange mean "not supported here"?
fn unsupported(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::Errno;
        if let Some(code) = e.raw_os_error() {
            let errno = Errno::from_raw_os_error(code);
            return errno == Errno::INVAL || errno == Errno::NOSYS || errno == Errno::OPNOTSUPP;
        }
    }
    e.kind() == io::ErrorKind::Unsupported
}

/// The renames that swap one item: one exchange when both copies exist and
/// `exchange` is allowed, else moving the old copy aside and the new one
/// in.
fn swap_ops(item: &Item, exchange: bool) -> Vec<Op> {
    let in_ = Op::Rename(item.staged.clone(), item.target.clone());
    let out = Op::Rename(item.target.clone(), item.aside.clone());
    match (item.new.is_some(), item.old.is_some()) {
        (true, true) if exchange => vec![Op::Exchange(item.staged.clone(), item.target.clone())],
        (true, true) => vec![out, in_],
        (true, false) => vec![in_],
        (false, true) => vec![out],
        (false, false) => Vec::new(),
    }
}

/// Swap one item in, falling back from the exchange to two renames where
/// the file system has no exchange.
fn swap_item(item: &Item) -> Result<()> {
    if let Some(cut) = &item.cut {
        return cut.forward(&item.target);
    }
    for op in swap_ops(item, true) {
        match op.run() {
            Ok(()) => {}
            Err(e) if matches!(op, Op::Exchange(..)) && unsupported(&e) => {
                for op in swap_ops(item, false) {
                    op.run().at(op.source())?;
                }
            }
            Err(e) => return Err(Error::io(op.source(), e)),
        }
    }
    Ok(())
}

/// Put `want` (the new or the old copy, found at `at`) under the live
/// name; with `want` absent, make sure the live name does not hold
/// `unwanted` (at `unwanted_at`). What the live name held moves to a free
/// name in the temporary directory.
fn settle(item: &Item, at: Option<Place>, unwanted_at: Option<Place>) -> Result<()> {
    let free = |taken: Option<Place>| {
        [Place::Staged, Place::Aside]
            .into_iter()
            .find(|p| Some(*p) != taken && fs::symlink_metadata(item.path(*p)).is_err())
    };
    match at {
        Some(Place::Target) => Ok(()),
        Some(p) => {
            let from = item.path(p);
            if fs::symlink_metadata(&item.target).is_ok() {
                match exchange(from, &item.target) {
                    Ok(()) => return Ok(()),
                    Err(e) if unsupported(&e) => {}
                    Err(e) => return Err(Error::io(from, e)),
                }
                let to = free(Some(p)).ok_or_else(|| {
                    Error::io(&item.target, io::Error::from(io::ErrorKind::AlreadyExists))
                })?;
                fs::rename(&item.target, item.path(to)).at(&item.target)?;
            }
            fs::rename(from, &item.target).at(from)
        }
        None if unwanted_at == Some(Place::Target) => {
            let to = free(None).ok_or_else(|| {
                Error::io(&item.target, io::Error::from(io::ErrorKind::AlreadyExists))
            })?;
            fs::rename(&item.target, item.path(to)).at(&item.target)
        }
        None => Ok(()),
    }
}

/// Carry out `outcome` on the items (Forward or Back), then flush the
/// directories.
fn apply(items: &[Item], surveys: &[Survey], outcome: Outcome) -> Result<()> {
    for (item, s) in items.iter().zip(surveys) {
        if let Some(cut) = &item.cut {
            match outcome {
                Outcome::Forward => cut.forward(&item.target)?,
                Outcome::Back => cut.back(&item.target)?,
                Outcome::Stuck => {}
            }
            continue;
        }
        match outcome {
            Outcome::Forward => settle(item, s.new, s.old)?,
            Outcome::Back => settle(item, s.old, s.new)?,
            Outcome::Stuck => {}
        }
    }
    sync_all_dirs(items)
}

fn sync_all_dirs(items: &[Item]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for i in items {
        dirs.insert(parent_dir(&i.target).to_path_buf());
        dirs.insert(parent_dir(&i.staged).to_path_buf());
        dirs.insert(parent_dir(&i.aside).to_path_buf());
    }
    for d in &dirs {
        sync_dir(d)?;
    }
    Ok(())
}

fn write_intent(path: &Path, intent: &Intent) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(intent)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    write_atomically(path, |f| io::Write::write_all(f, &bytes))
}

fn read_intent(path: &Path) -> Result<Intent> {
    let bytes = fs::read(path).at(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Config(format!(
            "{} (left by an interrupted restore) cannot be read: {e}. Nothing was changed; compare the live files with the .crb-restore-* directories beside them by hand.",
            path.display()
        ))
    })
}

/// Remove the intent record and then the temporaries (holding the copies
/// that are no longer live). Failing to remove a temporary is a warning:
/// the next run removes it.
fn finish(intent_path: &Path, intent: &Intent) -> Result<()> {
    if let Err(e) = fs::remove_file(intent_path) {
        // Every item is swapped and flushed: the restore stands. The intent
        // and the old copies stay together for the next run, which finds
        // the swap done and removes them.
        log::warn!(
            "The restore is complete, but {} could not be removed ({}); the next backup or restore removes it",
            intent_path.display(),
            crate::repozo::python_oserror(&e, intent_path)
        );
        return Ok(());
    }
    // The swap is done and flushed; should the intent's removal not reach
    // the disk, the next run finds every item already swapped and only
    // removes the old copies.
    if let Err(e) = sync_dir(parent_dir(intent_path)) {
        log::warn!("The restore is complete, but {e}");
    }
    for t in &intent.temporaries {
        if let Err(e) = remove_tree(t) {
            log::warn!("Could not remove {}: {e}", t.display());
        }
    }
    Ok(())
}

fn names(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> String {
    paths
        .into_iter()
        .map(|p| p.as_ref().display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Swap every item in, all or nothing, crash-safe: the intent record at
/// `intent_path` first, then the renames, the directory flushes, and the
/// removal of the intent and of the `temporaries` (which then hold the old
/// copies). A failure undoes the swap; if even that fails, the intent and
/// the temporaries stay, the error names them, and the next run finishes.
///
/// # Errors
/// The first failing step.
pub(crate) fn swap_in(
    intent_path: &Path,
    items: Vec<Item>,
    temporaries: Vec<PathBuf>,
) -> Result<()> {
    swap_in_with(intent_path, items, temporaries, swap_item)
}

/// [`swap_in`] with the step that swaps one item given (tests make it
/// fail).
fn swap_in_with(
    intent_path: &Path,
    items: Vec<Item>,
    temporaries: Vec<PathBuf>,
    step: impl Fn(&Item) -> Result<()>,
) -> Result<()> {
    let items: Vec<Item> = items
        .into_iter()
        .filter(|i| i.new.is_some() || i.old.is_some())
        .collect();
    let intent = Intent {
        version: 1,
        items,
        temporaries,
    };
    // The new copies' names (and the temporaries' own) are durable before
    // the intent that points at them.
    let recorded = (|| -> Result<()> {
        let mut dirs = BTreeSet::new();
        for t in &intent.temporaries {
            dirs.insert(t.clone());
            dirs.insert(parent_dir(t).to_path_buf());
        }
        for i in &intent.items {
            dirs.insert(parent_dir(&i.staged).to_path_buf());
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        write_intent(intent_path, &intent)
    })();
    if let Err(e) = recorded {
        // Nothing is swapped yet: the temporaries hold new copies only. The
        // intent may have got its name before the failure (a failed flush
        // after the rename): it goes first, or its copies stay for the next
        // run to decide with.
        let intent_gone = match fs::remove_file(intent_path) {
            Err(r) if r.kind() != io::ErrorKind::NotFound => false,
            _ => sync_dir(parent_dir(intent_path)).is_ok(),
        };
        if intent_gone {
            for t in &intent.temporaries {
                let _ = remove_tree(t);
            }
        }
        return Err(e);
    }
    let swapped = intent
        .items
        .iter()
        .try_for_each(step)
        .and_then(|()| sync_all_dirs(&intent.items));
    if let Err(e) = swapped {
        return Err(undo(intent_path, &intent, e));
    }
    finish(intent_path, &intent)
}

/// Undo a swap that failed in this process (error `e`).
fn undo(intent_path: &Path, intent: &Intent, e: Error) -> Error {
    let undone = (|| -> Result<()> {
        let surveys = intent
            .items
            .iter()
            .map(Item::survey)
            .collect::<Result<Vec<_>>>()?;
        match decide(&intent.items, &surveys, true) {
            Outcome::Back => apply(&intent.items, &surveys, Outcome::Back),
            _ => Err(Error::Config("the old files are not all there".to_owned())),
        }
    })();
    match undone.and_then(|()| finish(intent_path, intent)) {
        Ok(()) => e,
        Err(undo_err) => Error::Config(format!(
            "{e}; undoing the restore failed too ({undo_err}): the old and new files are kept in {} and the next restore or backup finishes or undoes the swap ({} records it)",
            names(&intent.temporaries),
            intent_path.display()
        )),
    }
}

/// Finish or undo the swap an interrupted restore recorded in `dir`, if
/// any; then remove the temporaries of dead restores from `scan`. The
/// caller holds the storage locks.
///
/// # Errors
/// An intent record that cannot be read, a state that cannot be resolved
/// (nothing is touched then), or an I/O error.
pub(crate) fn recover(intent_dirs: &[PathBuf], scan: &[PathBuf]) -> Result<()> {
    for dir in intent_dirs {
        let path = dir.join(INTENT);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let intent = read_intent(&path)?;
        let surveys = intent
            .items
            .iter()
            .map(Item::survey)
            .collect::<Result<Vec<_>>>()?;
        let outcome = decide(&intent.items, &surveys, false);
        let targets = names(intent.items.iter().map(|i| &i.target));
        match outcome {
            Outcome::Stuck => {
                return Err(Error::Config(format!(
                    "{} records an interrupted restore that can be neither finished nor undone (a live name holds a file it does not know, or copies are missing). Nothing was changed; compare {targets} with {} by hand, then remove {}.",
                    path.display(),
                    names(&intent.temporaries),
                    path.display()
                )));
            }
            Outcome::Forward => {
                apply(&intent.items, &surveys, outcome)?;
                log::warn!(
                    "Completed an interrupted restore (rolled forward): {targets} now hold the restored state."
                );
            }
            Outcome::Back => {
                apply(&intent.items, &surveys, outcome)?;
                log::warn!(
                    "Undid an interrupted restore (rolled back): {targets} hold the state from before it."
                );
            }
        }
        finish(&path, &intent)?;
    }
    for dir in scan {
        for stale in leftovers(dir)? {
            remove_tree(&stale)?;
            log::info!(
                "Removed {}, left by an interrupted restore.",
                stale.display()
            );
        }
    }
    Ok(())
}

/// The `.crb-restore-*` temporaries and intent record temporaries in `dir`.
fn leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) || name.starts_with(INTENT_TEMP_PREFIX) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Is there anything for [`recover`] to do?
pub(crate) fn needs_recovery(intent_dirs: &[PathBuf], scan: &[PathBuf]) -> Result<bool> {
    if has_intent(intent_dirs) {
        return Ok(true);
    }
    for d in scan {
        if !leftovers(d)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Is there an intent record in one of `dirs`?
pub(crate) fn has_intent(dirs: &[PathBuf]) -> bool {
    dirs.iter()
        .any(|d| fs::symlink_metadata(d.join(INTENT)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, data: &str) {
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).expect("mkdir");
        }
        fs::write(path, data).expect("write");
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A live Data.fs, index and blob directory ("old"), and the restored
    /// ones ("new") in two temporaries, as the restore leaves them before
    /// the swap. `new_index`: whether the backup brings an index; `live`:
    /// whether there is a live state at all.
    struct Fixture {
        dir: tempfile::TempDir,
        items: Vec<Item>,
        temporaries: Vec<PathBuf>,
    }

    impl Fixture {
        fn new(new_index: bool, live: bool) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            if live {
                write(&d.join("Data.fs"), "old");
                write(&d.join("Data.fs.index"), "old index");
                write(&d.join("blobstorage/0x01/a.blob"), "old blob");
            }
            let (t1, t2) = (d.join(".crb-restore-1"), d.join(".crb-restore-2"));
            write(&t1.join("new/Data.fs"), "new");
            if new_index {
                write(&t1.join("new/Data.fs.index"), "new index");
            }
            fs::create_dir(t1.join("old")).expect("mkdir");
            write(&t2.join("new/0x02/b.blob"), "new blob");
            let items = vec![
                Item::replacing(
                    d.join("Data.fs"),
                    t1.join("new/Data.fs"),
                    t1.join("old/Data.fs"),
                )
                .expect("item"),
                Item::new(
                    d.join("Data.fs.index"),
                    t1.join("new/Data.fs.index"),
                    t1.join("old/Data.fs.index"),
                )
                .expect("item"),
                Item::replacing(d.join("blobstorage"), t2.join("new"), t2.join("old"))
                    .expect("item"),
            ]
            .into_iter()
            .filter(|i| i.new.is_some() || i.old.is_some())
            .collect();
            Fixture {
                dir,
                items,
                temporaries: vec![t1, t2],
            }
        }

        fn d(&self) -> &Path {
            self.dir.path()
        }

        fn intent(&self) -> PathBuf {
            self.d().join(INTENT)
        }

        fn record(&self) {
            let intent = Intent {
                version: 1,
                items: self.items.clone(),
                temporaries: self.temporaries.clone(),
            };
            assert!(write_intent(&self.intent(), &intent).is_ok());
        }

        fn ops(&self, exchange: bool) -> Vec<Op> {
            self.items
                .iter()
                .flat_map(|i| swap_ops(i, exchange))
                .collect()
        }

        fn recover(&self) -> Result<()> {
            let dirs = [self.d().to_path_buf()];
            recover(&dirs, &dirs)
        }

        /// (Data.fs, index, the blob files).
        fn state(&self) -> (String, String, Vec<String>) {
            let d = self.d();
            let mut blobs = Vec::new();
            for sub in ["0x01/a.blob", "0x02/b.blob"] {
                let p = d.join("blobstorage").join(sub);
                if p.exists() {
                    blobs.push(read(&p));
                }
            }
            (
                read(&d.join("Data.fs")),
                read(&d.join("Data.fs.index")),
                blobs,
            )
        }

        fn assert_new(&self, new_index: bool) {
            let (fs_, index, blobs) = self.state();
            assert_eq!(fs_, "new");
            if new_index {
                assert_eq!(index, "new index");
            } else {
                assert!(index.starts_with('<'), "{index}");
            }
            assert_eq!(blobs, ["new blob"]);
            self.assert_clean();
        }

        fn assert_old(&self) {
            assert_eq!(
                self.state(),
                ("old".into(), "old index".into(), vec!["old blob".into()])
            );
            self.assert_clean();
        }

        fn assert_clean(&self) {
            let left: Vec<String> = names(self.d())
                .into_iter()
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    fn survey(f: &Fixture) -> Vec<Survey> {
        f.items
            .iter()
            .map(|i| i.survey().expect("survey"))
            .collect()
    }

    #[test]
    fn decide_forward_back_stuck() {
        let f = Fixture::new(true, true);
        // Nothing swapped yet: every copy is there; forward, or back for an
        // in-process failure.
        let s = survey(&f);
        assert_eq!(decide(&f.items, &s, false), Outcome::Forward);
        assert_eq!(decide(&f.items, &s, true), Outcome::Back);
        // A new copy is missing: back.
        remove_tree(&f.temporaries[1].join("new")).expect("rm");
        let s = survey(&f);
        assert_eq!(s[2].new, None);
        assert_eq!(decide(&f.items, &s, false), Outcome::Back);
        // An old copy is missing too: stuck.
        fs::remove_file(f.d().join("Data.fs")).expect("rm");
        assert_eq!(decide(&f.items, &survey(&f), false), Outcome::Stuck);
        // Forward needs only the new copies.
        let f = Fixture::new(true, true);
        fs::remove_file(f.d().join("Data.fs")).expect("rm");
        assert_eq!(decide(&f.items, &survey(&f), false), Outcome::Forward);
        assert_eq!(decide(&f.items, &survey(&f), true), Outcome::Forward);
        // An unknown file under a live name: stuck.
        let f = Fixture::new(true, true);
        fs::remove_file(f.d().join("Data.fs")).expect("rm");
        write(&f.d().join("Data.fs"), "someone else's");
        let s = survey(&f);
        assert!(s[0].stranger);
        assert_eq!(decide(&f.items, &s, false), Outcome::Stuck);
        // A target the restore removes (no index in the backup) needs no
        // new copy.
        let f = Fixture::new(false, true);
        let s = survey(&f);
        assert_eq!(f.items[1].new, None);
        assert_eq!(decide(&f.items, &s, false), Outcome::Forward);
    }

    /// Killed after every rename of the swap, with exchange and with the
    /// move-aside fallback, with and without a new index, with and without
    /// a live state: the next run finishes the swap (every new copy is
    /// there) and leaves nothing behind.
    #[test]
    fn recover_after_each_step_rolls_forward() {
        let mut trials = 0;
        for exchange in [true, false] {
            for new_index in [true, false] {
                for live in [true, false] {
                    let n = Fixture::new(new_index, live).ops(exchange).len();
                    for k in 0..=n {
                        let f = Fixture::new(new_index, live);
                        f.record();
                        for op in f.ops(exchange).iter().take(k) {
                            op.run().expect("op");
                        }
                        // Never without a Data.fs in the exchange mode.
                        if exchange && live {
                            assert!(f.d().join("Data.fs").is_file());
                            assert!(f.d().join("blobstorage").is_dir());
                        }
                        assert!(f.recover().is_ok());
                        f.assert_new(new_index);
                        trials += 1;
                    }
                }
            }
        }
        assert_eq!(trials, 35);
    }

    /// A new copy lost after some renames (the blob tree, before its turn):
    /// the next run undoes the renames already done.
    #[test]
    fn recover_rolls_back_when_a_new_copy_is_missing() {
        for exchange in [true, false] {
            let f = Fixture::new(true, true);
            f.record();
            let ops = f.ops(exchange);
            // Data.fs and its index swapped, the blobs not yet.
            let k = ops.len() - if exchange { 1 } else { 2 };
            for op in ops.iter().take(k) {
                op.run().expect("op");
            }
            remove_tree(&f.temporaries[1].join("new")).expect("rm");
            assert!(f.recover().is_ok());
            f.assert_old();
        }
    }

    /// An unknown file under a live name: nothing is touched, the intent
    /// stays, the error says what to do.
    #[test]
    fn recover_refuses_an_unknown_live_file() {
        let f = Fixture::new(true, true);
        f.record();
        fs::remove_file(f.d().join("Data.fs")).expect("rm");
        write(&f.d().join("Data.fs"), "someone else's");
        let e = f.recover().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("can be neither finished nor undone"), "{e}");
        assert_eq!(read(&f.d().join("Data.fs")), "someone else's");
        assert!(f.intent().exists());
        assert!(f.temporaries.iter().all(|t| t.exists()));
    }

    /// Killed before the intent was written: the temporaries hold new
    /// copies only, and are removed; the live state is untouched.
    #[test]
    fn recover_without_intent_removes_temporaries() {
        let f = Fixture::new(true, true);
        write(&f.d().join("..crb-restore.intent.x1.tmp"), "{");
        assert!(f.recover().is_ok());
        f.assert_old();
    }

    /// A swap failing half-way in the running process is undone.
    #[test]
    fn failed_swap_is_undone() {
        for fail_at in 0..3 {
            let f = Fixture::new(true, true);
            let count = std::cell::Cell::new(0);
            let r = swap_in_with(&f.intent(), f.items.clone(), f.temporaries.clone(), |i| {
                count.set(count.get() + 1);
                if count.get() > fail_at {
                    return Err(Error::Config("injected".into()));
                }
                swap_item(i)
            });
            assert!(r.is_err());
            f.assert_old();
        }
    }

    #[test]
    fn swap_in_replaces_everything() {
        for new_index in [true, false] {
            let f = Fixture::new(new_index, true);
            assert!(swap_in(&f.intent(), f.items.clone(), f.temporaries.clone()).is_ok());
            f.assert_new(new_index);
        }
    }

    const LIVE: &str = "FS30 the backed-up state, then what came after";
    const KEPT: usize = 25;

    impl Fixture {
        /// A restore that keeps the live Data.fs's prefix: the tail moves
        /// to its name beside the Data.fs, the Data.fs is cut.
        fn cutting() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            write(&d.join("Data.fs"), LIVE);
            let tmp = d.join(".crb-restore-x");
            fs::create_dir_all(tmp.join("old")).expect("mkdir");
            write(&tmp.join("new/Data.fs.after-1"), &LIVE[KEPT..]);
            let items = vec![
                Item::replacing(
                    d.join("Data.fs.after-1"),
                    tmp.join("new/Data.fs.after-1"),
                    tmp.join("old/Data.fs.after-1"),
                )
                .expect("item"),
                Item::cutting(
                    d.join("Data.fs"),
                    KEPT as u64,
                    LIVE.len() as u64,
                    vec![d.join("Data.fs.after-1"), tmp.join("new/Data.fs.after-1")],
                )
                .expect("item"),
            ];
            Fixture {
                dir,
                items,
                temporaries: vec![tmp],
            }
        }

        fn assert_cut(&self) {
            assert_eq!(read(&self.d().join("Data.fs")), &LIVE[..KEPT]);
            assert_eq!(read(&self.d().join("Data.fs.after-1")), &LIVE[KEPT..]);
            assert_eq!(names(self.d()), ["Data.fs", "Data.fs.after-1"]);
        }

        fn assert_uncut(&self) {
            assert_eq!(read(&self.d().join("Data.fs")), LIVE);
            assert_eq!(names(self.d()), ["Data.fs"]);
        }

        /// Cut (or grow back) the live Data.fs to `len` bytes of `LIVE`.
        fn set_len(&self, len: usize) {
            let data = fs::OpenOptions::new()
                .write(true)
                .open(self.d().join("Data.fs"))
                .expect("open");
            data.set_len(len as u64).expect("cut");
        }
    }

    #[test]
    fn cut_swaps_in_and_keeps_the_tail() {
        let f = Fixture::cutting();
        let ino = id_of(&f.d().join("Data.fs")).expect("id");
        swap_in(&f.intent(), f.items.clone(), f.temporaries.clone()).expect("swap");
        f.assert_cut();
        // The same file, cut: not a copy.
        assert_eq!(id_of(&f.d().join("Data.fs")).expect("id"), ino);
    }

    #[test]
    fn failed_cut_swap_appends_the_tail_again() {
        // Fail at step 1 or 2, before or after doing it.
        for (fail_at, done) in [(1, false), (1, true), (2, false), (2, true)] {
            let f = Fixture::cutting();
            let count = std::cell::Cell::new(0);
            let r = swap_in_with(&f.intent(), f.items.clone(), f.temporaries.clone(), |i| {
                count.set(count.get() + 1);
                if count.get() == fail_at {
                    if done {
                        swap_item(i)?;
                    }
                    return Err(Error::Config("injected".into()));
                }
                swap_item(i)
            });
            assert!(r.is_err());
            f.assert_uncut();
        }
    }

    /// Killed with the intent recorded, at every size the Data.fs can have
    /// (cut or not, or half-way through an undo's append): the next run
    /// finishes the cut; a failing run's undo puts every byte back.
    #[test]
    fn interrupted_cut_rolls_either_way_from_any_size() {
        for len in KEPT..=LIVE.len() {
            for back in [false, true] {
                let f = Fixture::cutting();
                f.record();
                swap_item(&f.items[0]).expect("tail in place");
                f.set_len(len);
                let surveys: Vec<Survey> = f
                    .items
                    .iter()
                    .map(|i| i.survey().expect("survey"))
                    .collect();
                assert!(!surveys[1].stranger, "{len}");
                if back {
                    assert_eq!(decide(&f.items, &surveys, true), Outcome::Back, "{len}");
                    apply(&f.items, &surveys, Outcome::Back).expect("back");
                    let intent = read_intent(&f.intent()).expect("intent");
                    finish(&f.intent(), &intent).expect("finish");
                    f.assert_uncut();
                } else {
                    f.recover().expect("recover");
                    f.assert_cut();
                }
            }
        }
    }

    /// A Data.fs that is not the one the intent knows, or not in a state
    /// the saved tail explains, is left alone: one that grew past the
    /// recorded size, was replaced, got other bytes after the cut (a Zope
    /// started in between wrote to it), or whose saved tail is gone.
    #[test]
    fn interrupted_cut_of_a_changed_file_is_stuck() {
        for case in ["grown", "replaced", "written after the cut", "tail gone"] {
            let f = Fixture::cutting();
            f.record();
            let live = f.d().join("Data.fs");
            match case {
                "grown" => {
                    let mut more = fs::OpenOptions::new()
                        .append(true)
                        .open(&live)
                        .expect("open");
                    io::Write::write_all(&mut more, b"+").expect("append");
                }
                "replaced" => {
                    fs::remove_file(&live).expect("rm");
                    write(&live, LIVE);
                }
                "written after the cut" => {
                    f.set_len(KEPT);
                    let mut more = fs::OpenOptions::new()
                        .append(true)
                        .open(&live)
                        .expect("open");
                    io::Write::write_all(&mut more, b"a new transaction").expect("append");
                }
                _ => {
                    f.set_len(KEPT + 3);
                    fs::remove_file(f.temporaries[0].join("new/Data.fs.after-1")).expect("rm");
                }
            }
            let before = fs::read(&live).expect("read");
            assert!(f.recover().is_err(), "{case}");
            assert_eq!(fs::read(&live).expect("read"), before, "{case}");
            assert!(f.intent().exists(), "{case}");
        }
    }
}
