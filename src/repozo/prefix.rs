//! Restoring by keeping the live Data.fs's prefix.
//!
//! Between packs a FileStorage only grows: every transaction is appended.
//! So the state a backup chain recovers is, most of the time, the first
//! `end` bytes of the live Data.fs (`end`: the end of the chain's last
//! `.dat` line). When that is proven, a restore need not write those bytes
//! again: it saves the bytes after them (the tail) beside the Data.fs,
//! truncates the Data.fs to `end`, and writes its `.index`. That takes the
//! time of the proof and of the tail, not of writing the whole file.
//!
//! Two proofs ([`Proof`], see docs/scripts.rst for the safety argument):
//!
//! - [`Proof::Checksums`]: the md5 of every chain file's range of the live
//!   Data.fs equals the one its `.dat` line records, the same check a full
//!   restore makes of the backup files. Every byte kept is proven to be the
//!   backed-up byte. The `.index` comes from a scan of the prefix, run at the
//!   same time, as a full restore makes it.
//! - [`Proof::Structure`]: the first bytes of every chain file (the
//!   transaction header an incremental starts with, the file header and
//!   first transaction of the full) are found at the same offset of the
//!   live Data.fs, and the newest chain file's range has the md5 of its
//!   `.dat` line: what a quick incremental backup (`-Q`) checks before it
//!   extends a chain. The `.index` is the repository's, when it was saved
//!   for `end` and passes the check ZODB makes of an index at open.
//!
//! Anything else (a chain without a `.dat`, a live file shorter than `end`
//! or that differs, one with other hard links, which a cut in place would
//! cut too, a read error) means a full restore.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::filestorage::scan::{index_fits, scan_prefix};
use crate::filestorage::FsIndex;
use crate::fsutil::open_regular;
use crate::progress::{Progress, Unit};
use crate::repozo::chain::Chain;
use crate::repozo::naming::{is_gzip_name, with_ext};
use crate::repozo::recover::checked_index;
use crate::repozo::stream::{fill, md5_of, Region};
use crate::repozo::{gzip, io_err};

/// How a restore proves that the live Data.fs starts with the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// md5 of every chain file's range (reads the whole prefix).
    Checksums,
    /// Headers at every chain file's start, md5 of the newest file's range.
    Structure,
}

impl Proof {
    /// How the log names it.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Proof::Checksums => "the md5 of every backup file",
            Proof::Structure => {
                "the transaction headers where each backup file starts and the md5 of the newest one"
            }
        }
    }
}

/// A proven prefix: what staging and the swap need.
#[derive(Debug, Clone)]
pub struct KeptPrefix {
    /// The restored state ends here: the live Data.fs is cut to this size.
    pub end: u64,
    /// The live Data.fs's size when it was checked; `[end, size)` is the
    /// tail that is saved.
    pub size: u64,
    /// The proof that was made.
    pub proof: Proof,
    index: Option<IndexBytes>,
}

#[derive(Debug, Clone)]
enum IndexBytes {
    /// Written from a scan of the prefix.
    Scanned(Vec<u8>),
    /// The repository's `.index` for the chain's last file, accepted.
    Copy(PathBuf),
}

impl KeptPrefix {
    /// Bytes after the prefix.
    #[must_use]
    pub fn tail(&self) -> u64 {
        self.size - self.end
    }
}

/// Is the state `chain` recovers the first bytes of the live Data.fs at
/// `live`? `Ok(None)` (after an info line saying why) when it is not, or
/// cannot be told: the restore then writes the whole file.
///
/// # Errors
/// Only [`Error::Io`] for a repository `.index` that cannot be read when
/// the data it describes is damaged (as a full restore).
pub fn check(
    chain: &Chain,
    live: &Path,
    proof: Proof,
    progress: &dyn Progress,
) -> Result<Option<KeptPrefix>> {
    let no = |why: String| {
        // Not repozo's verbose output (shown with debug only): the admin
        // sees why the whole file is written.
        log::info!("Writing the whole of {}: {why}.", live.display());
        Ok(None)
    };
    if chain.by_names {
        return no("the backup has no .dat file to check its bytes against".to_owned());
    }
    let (Some(last), Some(last_file)) = (chain.lines.last(), chain.files.last()) else {
        return Ok(None);
    };
    let end = last.end;
    let file = match open_regular(live) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return no(format!("it cannot be read ({e})")),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return no(format!("it cannot be read ({e})")),
    };
    // Cutting the file in place would cut every other name of it too (a
    // snapshot made with `cp -l` or `rsync --link-dest`).
    #[cfg(unix)]
    {
        let links = std::os::unix::fs::MetadataExt::nlink(&meta);
        if links > 1 {
            return no(format!(
                "other hard links to it ({}) must keep their bytes",
                links - 1
            ));
        }
    }
    let size = meta.len();
    if size < end {
        return no(format!(
            "it is shorter ({size} bytes) than the backup ({end} bytes)"
        ));
    }
    let differs = || {
        no("its first bytes are not the backup's (packed or changed since the backup)".to_owned())
    };
    let index_src = with_ext(last_file, ".index");
    let index = match proof {
        Proof::Checksums => {
            progress.start("checking", Some(chain.total()), Unit::Bytes);
            let (same, scan) = rayon::join(
                || same_md5s(chain, &file, 0, progress),
                || scan_prefix(&file, live, end),
            );
            progress.finish();
            match same {
                Ok(true) => {}
                Ok(false) => return differs(),
                Err(e) => return no(format!("it cannot be read ({e})")),
            }
            // As a full restore: an index when the backup has one.
            if index_src.is_file() {
                Some(IndexBytes::Scanned(checked_index(scan, &index_src, live)?))
            } else {
                None
            }
        }
        Proof::Structure => {
            let last = chain.lines.len() - 1;
            match same_heads(chain, &file)
                .and_then(|same| Ok(same && same_md5s(chain, &file, last, progress)?))
            {
                Ok(true) => {}
                Ok(false) => return differs(),
                Err(e) => return no(format!("it cannot be read ({e})")),
            }
            match FsIndex::read(&index_src) {
                Ok((pos, idx)) if pos == end && index_fits(&file, &idx, end) => {
                    Some(IndexBytes::Copy(index_src))
                }
                _ if !index_src.exists() => None,
                _ => {
                    log::info!(
                        "{} is not an index ZODB would accept for the restored data: the restored Data.fs gets none, and ZODB builds it when it opens the file",
                        index_src.display()
                    );
                    None
                }
            }
        }
    };
    Ok(Some(KeptPrefix {
        end,
        size,
        proof,
        index,
    }))
}

/// Do the live file's ranges of chain files `from..` have the md5s their
/// `.dat` lines record? Checked on every core, one file per task.
fn same_md5s(
    chain: &Chain,
    file: &File,
    from: usize,
    progress: &dyn Progress,
) -> std::io::Result<bool> {
    let mismatch = chain.lines[from..].par_iter().find_map_any(|line| {
        match md5_of(&mut Region::new(file, line.start, line.end), progress) {
            Ok((n, sum)) if n == line.end - line.start && sum == line.md5 => None,
            Ok(_) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        }
    });
    match mismatch {
        None => Ok(true),
        Some(Ok(())) => Ok(false),
        Some(Err(e)) => Err(e),
    }
}

/// How many bytes of each backup file's start are compared: the file
/// header and the first transaction header (23 bytes) with some of its
/// user and description.
const HEAD: usize = 64;

/// Does every chain file start with the bytes found at its offset in the
/// live file?
fn same_heads(chain: &Chain, live: &File) -> std::io::Result<bool> {
    for (path, line) in chain.files.iter().zip(&chain.lines) {
        let want = usize::try_from((line.end - line.start).min(HEAD as u64)).unwrap_or(HEAD);
        let mut theirs = [0u8; HEAD];
        let mut f = open_regular(path)?;
        let got = if is_gzip_name(&path.to_string_lossy()) {
            fill(&mut gzip::decoder(&mut f), &mut theirs[..want])?
        } else {
            fill(&mut f, &mut theirs[..want])?
        };
        let mut ours = [0u8; HEAD];
        let n = fill(
            &mut Region::new(live, line.start, line.end),
            &mut ours[..want],
        )?;
        if got != want || n != want || theirs[..want] != ours[..want] {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Write what the swap needs: the live file's tail `[end, size)` to `tail`
/// and the `.index` (if any) to `index`, both new files, flushed.
///
/// # Errors
/// The live file changed size since [`check`]; an I/O error.
pub fn stage(kept: &KeptPrefix, live: &Path, tail: &Path, index: &Path) -> Result<()> {
    let mut file = open_regular(live).map_err(|e| io_err(live, e))?;
    let size = file.metadata().map_err(|e| io_err(live, e))?.len();
    if size != kept.size {
        return Err(Error::VerificationFail(format!(
            "{} changed size while the restore ran ({} bytes, then {size})",
            live.display(),
            kept.size
        )));
    }
    if kept.tail() > 0 {
        file.seek(SeekFrom::Start(kept.end))
            .map_err(|e| io_err(live, e))?;
        let out = new_file(tail)?;
        let copied = std::io::copy(&mut (&file).take(kept.tail()), &mut &out)
            .map_err(|e| io_err(tail, e))?;
        if copied != kept.tail() {
            return Err(Error::VerificationFail(format!(
                "{} changed size while the restore ran",
                live.display()
            )));
        }
        out.sync_all().map_err(|e| io_err(tail, e))?;
    }
    let bytes = match &kept.index {
        None => return Ok(()),
        Some(IndexBytes::Scanned(b)) => b.clone(),
        Some(IndexBytes::Copy(src)) => std::fs::read(src).map_err(|e| io_err(src, e))?,
    };
    let mut out = new_file(index)?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| io_err(index, e))
}

fn new_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, e))
}
