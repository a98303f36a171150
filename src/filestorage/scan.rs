//! Finding the end of the last committed transaction, as ZODB does.
//!
//! Mirrors `read_index` in ZODB's `FileStorage.py` (see docs/filestorage.rst) in a
//! read-only open: the scan **stops silently** at a torn header, a `'c'`
//! (checkpoint) transaction, a transaction that runs past the end of the
//! file, or a garbage tail; it **refuses** interior corruption (bad tloc,
//! data records that do not tile the transaction, a wrong redundant length,
//! vlen ≠ 0, a status byte ZODB cannot decode) with an error naming the file
//! and the offset. Only complete transactions reach the index.
//!
//! With `use_index`, an existing `<Data.fs>.index` is loaded and checked the
//! way `_restore_index`/`_check_sanity` do (§3.7); when it is accepted only
//! the transactions after its pos are scanned. A rejected or unreadable index
//! means a full scan, as in ZODB.
//!
//! Pickles are never read: the scan reads record headers through a window
//! buffer and skips payloads, so memory stays at the window plus the index.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::filestorage::format::{
    DataHeader, Tid, TxnHeader, TxnStatus, DATA_HDR_LEN, MAGIC, MAGIC_PY2, TRANS_HDR_LEN,
};
use crate::filestorage::index::FsIndex;

/// How to scan.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Reuse `<Data.fs>.index` when ZODB would (default true).
    pub use_index: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { use_index: true }
    }
}

/// What a scan found.
#[derive(Clone, Debug)]
pub struct ScanResult {
    /// End of the last committed transaction: what `FileStorage.getSize()`
    /// returns, and how much of the file a backup copies.
    pub end: u64,
    /// Size of the file when the scan started.
    pub size: u64,
    /// Tid of the last complete transaction, if any.
    pub last_tid: Option<Tid>,
    /// Transaction records read by this scan. When an index was used, only
    /// those after the index's pos.
    pub transactions: u64,
    /// oid → offset of its latest data record, for `[4, end)`.
    pub index: FsIndex,
    /// Whether `<Data.fs>.index` was accepted and used.
    pub used_index: bool,
}

/// The index file ZODB associates with a storage: the name as given plus
/// `.index`.
#[must_use]
pub fn index_path_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// Scan the FileStorage at `path`.
///
/// # Errors
/// [`Error::Io`], [`Error::FileStorageFormat`] (empty, bad magic),
/// [`Error::Corrupted`] (interior damage ZODB refuses).
pub fn scan(path: &Path, opts: &ScanOptions) -> Result<ScanResult> {
    let file = File::open(path).at(path)?;
    scan_file(&file, path, opts)
}

/// Scan an already open FileStorage. `path` names it in messages and locates
/// its `.index`. The file size is taken once, at the start; bytes appended
/// during the scan are not looked at.
///
/// # Errors
/// As [`scan`].
pub fn scan_file(file: &File, path: &Path, opts: &ScanOptions) -> Result<ScanResult> {
    let size = file.metadata().at(path)?.len();
    scan_upto(file, path, size, opts)
}

/// Scan the first `size` bytes of an open FileStorage, as if the file ended
/// there (no `.index` is used): the state a restore that keeps this prefix
/// of the live file leaves.
///
/// # Errors
/// As [`scan`].
pub fn scan_prefix(file: &File, path: &Path, size: u64) -> Result<ScanResult> {
    scan_upto(file, path, size, &ScanOptions { use_index: false })
}

/// Would ZODB accept `index`, saved for position `pos`, for the first
/// `pos` bytes of `file`? Its check at open (see [`check_sanity`]): the
/// last non-empty transaction before `pos` and its first records must be
/// where the index says.
#[must_use]
pub fn index_fits(file: &File, index: &FsIndex, pos: u64) -> bool {
    let mut w = Window::new(file, pos);
    check_sanity(&mut w, index, pos, pos).is_some()
}

fn scan_upto(file: &File, path: &Path, size: u64, opts: &ScanOptions) -> Result<ScanResult> {
    let mut w = Window::new(file, size);
    check_magic(&mut w, path, size)?;

    let mut start = 4;
    let mut index = FsIndex::new();
    let mut last_tid = None;
    let mut used_index = false;
    if opts.use_index {
        if let Some((pos, idx, ltid)) = load_usable_index(&mut w, path, size) {
            start = pos;
            index = idx;
            last_tid = Some(ltid);
            used_index = true;
        }
    }

    let mut scanner = Scanner {
        w,
        path,
        size,
        index,
        last_tid,
        transactions: 0,
    };
    let end = scanner.run(start)?;
    let mut index = scanner.index;
    index.shrink_to_fit();
    Ok(ScanResult {
        end,
        size,
        last_tid: scanner.last_tid,
        transactions: scanner.transactions,
        index,
        used_index,
    })
}

fn check_magic(w: &mut Window<'_>, path: &Path, size: u64) -> Result<()> {
    let format_error = |reason: String| Error::FileStorageFormat {
        path: path.to_path_buf(),
        reason,
    };
    if size == 0 {
        // A read-only ZODB open reports 4 here without reading anything,
        // which is what makes repozo crash later; we say what it is.
        return Err(format_error(
            "file is empty (0 bytes), not a FileStorage".to_owned(),
        ));
    }
    if size < 4 {
        return Err(format_error(format!(
            "file is {size} bytes, too short for a FileStorage"
        )));
    }
    let magic = w.read_at(0, 4).at(path)?;
    if magic == MAGIC {
        Ok(())
    } else if magic == MAGIC_PY2 {
        Err(format_error(
            "Python 2 FileStorage (magic FS21); ZODB on Python 3 only opens FS30 files".to_owned(),
        ))
    } else {
        Err(format_error(format!(
            "not a FileStorage (magic {:?}, expected \"FS30\")",
            String::from_utf8_lossy(magic)
        )))
    }
}

/// Load `<path>.index` and run ZODB's sanity check on it. Returns the
/// index's pos, the index, and the last tid before pos.
fn load_usable_index(w: &mut Window<'_>, path: &Path, size: u64) -> Option<(u64, FsIndex, Tid)> {
    let index_path = index_path_for(path);
    if !index_path.exists() {
        return None;
    }
    let (pos, index) = match FsIndex::read(&index_path) {
        Ok(x) => x,
        // An index we cannot use costs a scan, nothing else: not a
        // warning for the admin (ZODB itself rejects ordinary indexes, e.g.
        // one saved for a new, empty storage).
        Err(e) => {
            log::debug!("loading index: {e}");
            return None;
        }
    };
    match check_sanity(w, &index, pos, size) {
        Some(ltid) => Some((pos, index, ltid)),
        None => {
            log::debug!("Ignoring index for {}", path.display());
            None
        }
    }
}

/// ZODB's `_check_sanity`: walk back from `pos` to the last non-empty,
/// non-undone transaction and check that the index points at its first (at
/// most 5) data records. Returns the tid of the last transaction before pos.
///
/// Where ZODB raises from inside the check (short reads, bad status bytes),
/// this rejects the index instead; the full scan that follows then reports
/// the damage properly.
fn check_sanity(w: &mut Window<'_>, index: &FsIndex, mut pos: u64, size: u64) -> Option<Tid> {
    const MAX_CHECKED: usize = 5;
    if pos < 100 || pos > size {
        return None;
    }
    let mut ltid = None;
    loop {
        let tl = u64::from_be_bytes(w.array_at::<8>(pos - 8).ok()??);
        let tpos = pos.checked_sub(tl)?.checked_sub(8)?;
        if tpos < 4 {
            return None;
        }
        let h = TxnHeader::decode(&w.array_at::<{ TRANS_HDR_LEN as usize }>(tpos).ok()??);
        if h.status_byte >= 0x80 {
            return None;
        }
        let ltid = *ltid.get_or_insert(h.tid);
        if h.tlen != tl {
            return None;
        }
        pos = tpos;
        match h.status {
            TxnStatus::Undone => continue,
            TxnStatus::Committed | TxnStatus::Packed => {}
            _ => return None,
        }
        if tl < h.header_len() {
            return None;
        }
        let tend = tpos + tl;
        let mut opos = tpos + h.header_len();
        if opos == tend {
            continue; // empty transaction
        }
        let mut checked = 0;
        while opos < tend && checked < MAX_CHECKED {
            let dh = DataHeader::decode(&w.array_at::<{ DATA_HDR_LEN as usize }>(opos).ok()??);
            if dh.vlen != 0 {
                return None;
            }
            let reclen = dh.record_len();
            if opos.checked_add(reclen)? > tend || dh.tloc != tpos {
                return None;
            }
            if index.get(dh.oid).unwrap_or(0) != opos {
                return None;
            }
            checked += 1;
            opos += reclen;
        }
        return Some(ltid);
    }
}

struct Scanner<'a> {
    w: Window<'a>,
    path: &'a Path,
    size: u64,
    index: FsIndex,
    last_tid: Option<Tid>,
    transactions: u64,
}

impl Scanner<'_> {
    fn corrupted(&self, pos: u64, reason: impl Into<String>) -> Error {
        Error::Corrupted {
            path: self.path.to_path_buf(),
            pos,
            reason: reason.into(),
        }
    }

    /// Walk transaction records from `pos`; return the end of the last
    /// complete one.
    fn run(&mut self, mut pos: u64) -> Result<u64> {
        let mut tindex: Vec<(crate::filestorage::Oid, u64)> = Vec::new();
        loop {
            let Some(hb) = self
                .w
                .array_at::<{ TRANS_HDR_LEN as usize }>(pos)
                .at(self.path)?
            else {
                // Clean EOF, or a torn header: stop.
                return Ok(pos);
            };
            let h = TxnHeader::decode(&hb);
            if h.status_byte >= 0x80 {
                // ZODB fails to open such a file (UnicodeDecodeError).
                return Err(self.corrupted(
                    pos,
                    format!(
                        "transaction status byte 0x{:02x} is not ASCII",
                        h.status_byte
                    ),
                ));
            }
            if self.last_tid.is_some_and(|l| h.tid <= l) {
                log::warn!("{} time-stamp reduction at {pos}", self.path.display());
            }
            let past_eof = pos
                .checked_add(h.tlen)
                .and_then(|x| x.checked_add(8))
                .is_none_or(|e| e > self.size);
            if past_eof || h.status == TxnStatus::Checkpoint {
                return Ok(pos);
            }
            if let TxnStatus::Other(s) = h.status {
                log::warn!(
                    "{} has invalid status, {:?}, at {pos}",
                    self.path.display(),
                    char::from(s)
                );
            }
            if h.tlen < h.header_len() {
                // Interior damage, or garbage at the end of the file? ZODB
                // decides by the redundant length in the file's last 8 bytes.
                let rtl = self
                    .w
                    .array_at::<8>(self.size - 8)
                    .at(self.path)?
                    .map_or(0, u64::from_be_bytes);
                if rtl > self.size || self.size - rtl < pos || rtl < TRANS_HDR_LEN {
                    log::error!(
                        "{} has invalid transaction header at {pos}",
                        self.path.display()
                    );
                    return Ok(pos);
                }
                return Err(self.corrupted(pos, "invalid transaction header"));
            }
            if h.tid.0 == [0xff; 8] {
                // ZODB's default `stop` tid: nothing at or after it is read.
                return Ok(pos);
            }
            let tpos = pos;
            let tend = tpos + h.tlen;
            if h.status == TxnStatus::Undone {
                self.check_redundant_len(tend, h.tlen)?;
                self.last_tid = Some(h.tid);
                self.transactions += 1;
                pos = tend + 8;
                continue;
            }
            tindex.clear();
            let mut p = tpos + h.header_len();
            while p < tend {
                let Some(db) = self
                    .w
                    .array_at::<{ DATA_HDR_LEN as usize }>(p)
                    .at(self.path)?
                else {
                    return Err(
                        self.corrupted(tpos, format!("data record header at {p} is cut off"))
                    );
                };
                let dh = DataHeader::decode(&db);
                if dh.vlen != 0 {
                    return Err(self.corrupted(
                        tpos,
                        format!("data record at {p} has a version (vlen {})", dh.vlen),
                    ));
                }
                let reclen = dh.record_len();
                if p.checked_add(reclen).is_none_or(|e| e > tend) {
                    return Err(self.corrupted(
                        tpos,
                        format!("data record at {p} exceeds the transaction record"),
                    ));
                }
                if dh.tloc != tpos {
                    return Err(
                        self.corrupted(tpos, format!("data record at {p} has tloc {}", dh.tloc))
                    );
                }
                if self.index.get(dh.oid).unwrap_or(0) != dh.prev {
                    // ZODB only logs this (the previous record may be in
                    // this same transaction, or the storage was copied).
                    log::debug!("{} incorrect previous pointer at {p}", self.path.display());
                }
                tindex.push((dh.oid, p));
                p += reclen;
            }
            self.check_redundant_len(tend, h.tlen)?;
            for &(oid, at) in &tindex {
                self.index
                    .insert(oid, at)
                    .map_err(|e| self.corrupted(at, e.to_string()))?;
            }
            self.last_tid = Some(h.tid);
            self.transactions += 1;
            pos = tend + 8;
        }
    }

    fn check_redundant_len(&mut self, tend: u64, tlen: u64) -> Result<()> {
        let rtl = self
            .w
            .array_at::<8>(tend)
            .at(self.path)?
            .map(u64::from_be_bytes);
        let rtl = rtl.unwrap_or(0);
        if rtl != tlen {
            return Err(self.corrupted(
                tend - tlen,
                format!(
                    "redundant transaction length check failed ({rtl} at {tend}, expected {tlen})"
                ),
            ));
        }
        Ok(())
    }
}

/// A read window over a file: serves small positioned reads from one large
/// buffer, refilling it when a read falls outside.
struct Window<'a> {
    file: &'a File,
    size: u64,
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

const WINDOW: usize = 1 << 16;

impl<'a> Window<'a> {
    fn new(file: &'a File, size: u64) -> Self {
        Window {
            file,
            size,
            buf: vec![0; WINDOW],
            start: 0,
            len: 0,
        }
    }

    /// Up to `n` bytes at `pos` (fewer at the end of the file).
    fn read_at(&mut self, pos: u64, n: u64) -> io::Result<&[u8]> {
        let want = n.min(self.size.saturating_sub(pos));
        let want_usize = usize::try_from(want).map_err(io::Error::other)?;
        let in_window = pos >= self.start && pos + want <= self.start + self.len as u64;
        if !in_window {
            self.fill(pos, want_usize)?;
        }
        let off = usize::try_from(pos - self.start).map_err(io::Error::other)?;
        let avail = (self.len - off).min(want_usize);
        Ok(&self.buf[off..off + avail])
    }

    /// Exactly `N` bytes at `pos`, or `None` when the file ends first.
    fn array_at<const N: usize>(&mut self, pos: u64) -> io::Result<Option<[u8; N]>> {
        let b = self.read_at(pos, N as u64)?;
        Ok(b.try_into().ok())
    }

    fn fill(&mut self, pos: u64, want: usize) -> io::Result<()> {
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut f = self.file;
        f.seek(SeekFrom::Start(pos))?;
        let cap = self
            .buf
            .len()
            .min(usize::try_from(self.size.saturating_sub(pos)).unwrap_or(usize::MAX));
        let mut got = 0;
        while got < cap {
            match f.read(&mut self.buf[got..cap]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.start = pos;
        self.len = got;
        Ok(())
    }
}
