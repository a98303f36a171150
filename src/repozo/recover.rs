//! `-R`: rebuild a Data.fs from a chain.
//!
//! Mirrors repozo's `do_recover` (see docs/repository.rst): pick the chain with
//! `find_files`, concatenate it (decompressing by name), copy the `.index`
//! of the last file to `<output>.index`. Deviations:
//!
//! - The chain is checked against its `.dat` **before** anything is
//!   written: every file must be listed, the first must start at 0 and each
//!   next one where the previous one ended. A chain with a missing file is
//!   refused (repozo concatenates it silently into a corrupt Data.fs).
//! - Every file's uncompressed size is checked against the `.dat` while it
//!   is copied (always); its md5 too with `verify` (`-w`).
//! - With an output file, the data goes to `<output>.part`, which is
//!   fsynced and renamed over the output only when complete and checked;
//!   on failure the `.part` is removed and an existing output is left
//!   exactly as it was (repozo deletes it first).
//! - A stale `<output>.index` is removed when the chain has no `.index`,
//!   and the new one is written atomically.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::filestorage::{scan_file, ScanOptions};
use crate::fsutil::{parent_dir, sync_dir};
use crate::progress::{Progress, Unit};
use crate::repozo::backup::{read_data_file, Output};
pub use crate::repozo::chain::{plan_chain, Chain};
use crate::repozo::naming::{gen_filename, is_valid_date, with_ext};
use crate::repozo::stream::hex;
use crate::repozo::{io_err, temp_in, LOG};

/// What to recover (repozo's `-R` options).
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    /// The repository (`-r`).
    pub repository: PathBuf,
    /// The Data.fs to write (`-o`); `None` writes to stdout.
    pub output: Option<PathBuf>,
    /// Recover the state as of this UTC date (`-D`,
    /// `yyyy-mm-dd[-hh[-mm[-ss]]]`); `None` means now.
    pub date: Option<String>,
    /// Check each file's md5 against the `.dat` (`-w`).
    pub verify: bool,
}

/// What a recover did.
#[derive(Clone, Debug)]
pub struct RecoverReport {
    /// The chain, oldest first.
    pub files: Vec<PathBuf>,
    /// Bytes written.
    pub bytes: u64,
    /// md5 of everything written (as repozo logs it), computed on another
    /// core while copying; `None` with `verify`, which checks one md5 per
    /// file instead.
    pub md5: Option<String>,
    /// The `.index` written next to the output, if the chain had one.
    pub index_file: Option<PathBuf>,
}

/// Recover the state of the repository as of `opts.date`.
///
/// # Errors
/// [`Error::BadDate`], [`Error::NoFiles`], [`Error::RepozoIo`],
/// [`Error::BadDat`], [`Error::VerificationFail`] (gap in the chain, a size
/// or md5 that differs from the `.dat`, bad gzip), [`Error::Io`].
pub fn recover(
    opts: &RecoverOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<RecoverReport> {
    if let Some(d) = &opts.date {
        if !is_valid_date(d) {
            return Err(Error::BadDate { date: d.clone() });
        }
    }
    let when = opts
        .date
        .clone()
        .unwrap_or_else(|| gen_filename(clock.now(), ""));
    let chain = plan_chain(&opts.repository, &when, opts.date.as_deref())?;
    match &opts.output {
        None => {
            log::info!(target: LOG, "Recovering file to stdout");
            let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout());
            let (bytes, md5) = concat_checked(
                &chain,
                opts.verify,
                &mut out,
                Path::new("<stdout>"),
                None,
                progress,
            )?;
            out.flush().map_err(|e| io_err(Path::new("<stdout>"), e))?;
            Ok(RecoverReport {
                files: chain.files,
                bytes,
                md5,
                index_file: None,
            })
        }
        Some(output) => recover_chain(&chain, output, opts.verify, progress),
    }
}

/// Write a planned chain to `output` (and its `.index`), atomically: see
/// the module docs.
///
/// # Errors
/// As [`recover`], after the planning.
pub fn recover_chain(
    chain: &Chain,
    output: &Path,
    verify: bool,
    progress: &dyn Progress,
) -> Result<RecoverReport> {
    recover_to_file(verify, output, chain, progress)
}

fn recover_to_file(
    verify: bool,
    output: &Path,
    chain: &Chain,
    progress: &dyn Progress,
) -> Result<RecoverReport> {
    let files = chain.files.clone();
    log::info!(target: LOG, "Recovering file to {}", output.display());
    let mut part_name = output.as_os_str().to_owned();
    part_name.push(".part");
    let part_path = PathBuf::from(part_name);
    let mut part = Part {
        path: &part_path,
        keep: false,
    };
    let f = File::create(&part_path).map_err(|e| io_err(&part_path, e))?;
    let (bytes, md5) = {
        let mut out = &f;
        concat_checked(chain, verify, &mut out, &part_path, Some(&f), progress)?
    };
    let index_target = {
        let mut name = output.as_os_str().to_owned();
        name.push(".index");
        PathBuf::from(name)
    };
    let dir = parent_dir(output).to_path_buf();
    // The fsync of the recovered data runs while it is scanned for its
    // index (from the page cache).
    let (synced, new_index) = rayon::join(
        || f.sync_all().map_err(|e| io_err(&part_path, e)),
        || -> Result<Option<tempfile::NamedTempFile>> {
            if chain.by_names {
                check_structure(&part_path, bytes)?;
            }
            let last = files.last().map(|p| with_ext(p, ".index"));
            if let Some(src) = last.filter(|p| p.exists()) {
                log::info!(
                    target: LOG,
                    "Restoring index file {} to {}",
                    src.display(),
                    index_target.display()
                );
                return index_for(&part_path, &src, &index_target, &dir).map(Some);
            } else if let Some(src) = files.last().map(|p| with_ext(p, ".index")) {
                log::info!(target: LOG, "No index file to restore: {}", src.display());
            }
            Ok(None)
        },
    );
    synced?;
    let new_index = new_index?;
    drop(f);

    // Deviation: an old index describes the old Data.fs; never leave it
    // next to the new one.
    match std::fs::remove_file(&index_target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&index_target, e)),
        _ => {}
    }
    if let Err(e) = std::fs::rename(&part_path, output) {
        log::info!(
            target: LOG,
            "ZODB has been fully recovered as {}, but it cannot be renamed into : {}",
            part_path.display(),
            output.display()
        );
        part.keep = true;
        return Err(io_err(output, e));
    }
    part.keep = true;
    let index_file = match new_index {
        Some(tmp) => {
            tmp.persist(&index_target)
                .map_err(|e| io_err(&index_target, e.error))?;
            Some(index_target)
        }
        None => None,
    };
    sync_dir(&dir)?;
    Ok(RecoverReport {
        files,
        bytes,
        md5,
        index_file,
    })
}

/// The `.index` for the recovered Data.fs at `part`, in a temporary file
/// beside `target`: written from a scan of the recovered data, never copied
/// blindly (see [`checked_index`]).
fn index_for(
    part: &Path,
    src: &Path,
    target: &Path,
    dir: &Path,
) -> Result<tempfile::NamedTempFile> {
    let data = crate::fsutil::open_regular(part).map_err(|e| io_err(part, e))?;
    let scan = scan_file(&data, part, &ScanOptions { use_index: false });
    let ours = checked_index(scan, src, target)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = temp_in(dir, &name)?;
    tmp.as_file_mut()
        .write_all(&ours)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_err(target, e))?;
    Ok(tmp)
}

/// The bytes of the `.index` for recovered data, from `scan` of that data.
/// The repository's `src` is compared with it, and a difference (a damaged
/// or foreign index, which ZODB would trust and then fail with
/// POSKeyError) is logged as a warning. When the scan fails, the data is
/// damaged as the backed-up Data.fs was, and `src` is what ZODB needs.
/// `target` names the index being written, in messages.
pub(crate) fn checked_index(
    scan: Result<crate::filestorage::ScanResult>,
    src: &Path,
    target: &Path,
) -> Result<Vec<u8>> {
    let theirs = crate::fsutil::open_regular(src).and_then(|mut f| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).map(|_| v)
    });
    match scan {
        Ok(scan) => {
            let mut ours = Vec::new();
            scan.index
                .write_to(scan.end, &mut ours)
                .map_err(|e| io_err(target, e))?;
            if theirs.as_ref().map_or(true, |t| *t != ours) {
                log::warn!(
                    target: LOG,
                    "{} does not describe the recovered data: wrote a new index from the data instead",
                    src.display()
                );
            }
            Ok(ours)
        }
        // The bytes are the backed-up ones (sizes, and md5s with -w, were
        // checked): the damage was in the Data.fs when it was backed up,
        // where ZODB only got past it with its index. Keep that index.
        Err(e) => {
            let theirs = theirs.map_err(|e| io_err(src, e))?;
            log::warn!(
                target: LOG,
                "the recovered data is damaged as the backed-up Data.fs was ({e}); \
                 ZODB opens it only with its index, so {} was restored as it is",
                src.display()
            );
            Ok(theirs)
        }
    }
}

/// A chain chosen without a `.dat`: the recovered Data.fs must be one
/// FileStorage from its header to its last byte, every file continuing
/// where the one before it ended (the scan checks each transaction's
/// lengths, that every data record points back at its own transaction, and
/// stops at anything that is not a whole transaction).
fn check_structure(part: &Path, bytes: u64) -> Result<()> {
    let data = crate::fsutil::open_regular(part).map_err(|e| io_err(part, e))?;
    let broken = |why: String| {
        Error::VerificationFail(format!(
            "the backup files do not form one Data.fs ({why}): a backup file is missing or damaged"
        ))
    };
    let scan = scan_file(&data, part, &ScanOptions { use_index: false })
        .map_err(|e| broken(e.to_string()))?;
    if scan.end != bytes {
        return Err(broken(format!(
            "its transactions end at byte {} of {bytes}",
            scan.end
        )));
    }
    Ok(())
}

/// Removes the `.part` on failure.
struct Part<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// Concatenate the chain into `out`, checking sizes (and md5s with
/// `verify`). Returns the bytes written and their md5.
fn concat_checked<W: Write + Send>(
    chain: &Chain,
    verify: bool,
    out: &mut W,
    out_path: &Path,
    out_file: Option<&File>,
    progress: &dyn Progress,
) -> Result<(u64, Option<String>)> {
    let (files, plan) = (&chain.files, &chain.lines);
    // Without a `.dat` there is no size or md5 to check a file against.
    let verify = verify && !chain.by_names;
    progress.start(
        "recovering",
        (!chain.by_names).then(|| chain.total()),
        Unit::Bytes,
    );
    let mut whole = Md5::new();
    let mut bytes = 0;
    for (f, line) in files.iter().zip(plan) {
        // With verify each file gets its own md5; else one md5 of it all
        // (repozo logs that one).
        let h = if verify { Md5::new() } else { whole.clone() };
        let (n, h) = read_data_file(
            f,
            h,
            Some(Output {
                w: &mut *out,
                path: out_path,
                sync: out_file,
            }),
            true,
            progress,
        )?;
        let expected = line.end - line.start;
        if !chain.by_names && n != expected {
            return Err(Error::VerificationFail(format!(
                "{} is {n} bytes, should be {expected} bytes",
                f.display()
            )));
        }
        if verify {
            let sum = hex(h);
            if sum != line.md5 {
                return Err(Error::VerificationFail(format!(
                    "{} has checksum {sum} instead of {}",
                    f.display(),
                    line.md5
                )));
            }
            log::info!(target: LOG, "Recovered chunk {} : {n} bytes, md5: {sum}", f.display());
        } else {
            whole = h;
        }
        bytes += n;
    }
    progress.finish();
    if verify {
        log::info!(target: LOG, "Recovered a total of {bytes} bytes");
        Ok((bytes, None))
    } else {
        let sum = hex(whole);
        log::info!(target: LOG, "Recovered {bytes} bytes, md5: {sum}");
        Ok((bytes, Some(sum)))
    }
}
