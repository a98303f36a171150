//! `-B`: decide between a full backup, an incremental one and nothing, and
//! write it.
//!
//! Mirrors repozo's `do_backup`, `do_full_backup` and
//! `do_incremental_backup` (repozo-format §2.6), with these deviations:
//!
//! - Data.fs is opened **once**: the scan that finds `end` and every read
//!   that follows (checksums, the copy) use that one file descriptor, so a
//!   pack renaming a new Data.fs into place mid-run cannot mix two files.
//! - "Nothing to do", "shrunk" and the incremental's end compare against
//!   `end`, the end of the last committed transaction, not the raw file
//!   size: a pending `'c'` transaction or a torn tail no longer produces an
//!   empty incremental on every run.
//! - The data file and its `.index` are written under unique temporary
//!   names, fsynced, renamed (the data file without ever replacing an
//!   existing one), and the directory is fsynced, all before the `.dat`
//!   line is written. A failed run leaves no temporary file behind.
//! - gzip output is multi-member, compressed on every core, at
//!   [`gzip::DEFAULT_LEVEL`] unless told otherwise.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::filestorage::{scan_file, ScanOptions, ScanResult};
use crate::fsutil::sync_dir;
use crate::progress::Progress;
use crate::repozo::dat::{self, DatLine};
use crate::repozo::find::{delete_old_backups, find_files};
use crate::repozo::naming::{data_ext, gen_filename, is_gzip_name, join, Kind};
use crate::repozo::stream::{copy_hashed, copy_unhashed, hex, md5_of, Region};
use crate::repozo::{gzip, io_err, temp_in, LOG};

/// What to back up, and how (repozo's `-B` options).
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The Data.fs (`-f`).
    pub datafs: PathBuf,
    /// The repository directory (`-r`); must exist.
    pub repository: PathBuf,
    /// Force a full backup (`-F`).
    pub full: bool,
    /// Compress the new data file (`-z`).
    pub gzip: bool,
    /// Trust the last `.dat` line instead of re-reading the repository
    /// (`-Q`).
    pub quick: bool,
    /// After a full backup, delete older chains (`-k`).
    pub kill_old: bool,
    /// gzip level 0–9 for `-z`.
    pub gzip_level: u32,
}

impl BackupOptions {
    /// Defaults of repozo's command line: incremental if possible, no
    /// compression, checksum mode, keep old chains.
    #[must_use]
    pub fn new(datafs: PathBuf, repository: PathBuf) -> Self {
        BackupOptions {
            datafs,
            repository,
            full: false,
            gzip: false,
            quick: false,
            kill_old: false,
            gzip_level: gzip::DEFAULT_LEVEL,
        }
    }
}

/// Which backup a run made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A full backup: a new chain.
    Full,
    /// An incremental appended to the current chain.
    Incremental,
    /// The repository already holds everything.
    Nothing,
}

/// What a backup run did.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The decision.
    pub action: Action,
    /// Why, in repozo's words where it has some (`file changed, possibly
    /// because of a pack`, ...).
    pub reason: &'static str,
    /// The new data file, its `.index` and the `.dat` written to.
    pub data_file: Option<PathBuf>,
    /// The new `.index`.
    pub index_file: Option<PathBuf>,
    /// The `.dat` that got the new line.
    pub dat_file: Option<PathBuf>,
    /// Data.fs bytes `[start, end)` went into the new file.
    pub start: u64,
    /// End of the last committed transaction.
    pub end: u64,
    /// md5 of `[start, end)`.
    pub md5: Option<String>,
    /// Size of the new data file on disk (compressed size with gzip).
    pub written: u64,
    /// Data files removed by `kill_old`.
    pub removed: Vec<PathBuf>,
}

struct Plan {
    kind: Kind,
    start: u64,
    reason: &'static str,
}

/// Back up `opts.datafs` into `opts.repository`.
///
/// # Errors
/// [`Error::RepozoIo`] (missing repository or Data.fs, I/O),
/// [`Error::FileStorageFormat`]/[`Error::Corrupted`] for a Data.fs ZODB
/// would not open (empty included), [`Error::WouldOverwriteFiles`] when a
/// data file of the same second exists, [`Error::BadDat`],
/// [`Error::VerificationFail`] for a repository file that cannot be read
/// back, [`Error::Io`] from the atomic writes.
pub fn backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let repo = &opts.repository;
    let when = gen_filename(clock.now(), "");
    let repofiles = find_files(repo, &when)?;
    let file = File::open(&opts.datafs).map_err(|e| io_err(&opts.datafs, e))?;
    let scan = scan_file(&file, &opts.datafs, &ScanOptions::default())?;
    let end = scan.end;

    let plan = if opts.full || repofiles.is_empty() {
        log::info!(target: LOG, "doing a full backup");
        let reason = if opts.full {
            "full backup requested"
        } else {
            "no backup yet"
        };
        Some(Plan {
            kind: Kind::Full,
            start: 0,
            reason,
        })
    } else if opts.quick {
        decide_quick(&file, &opts.datafs, &repofiles, end, progress)?
    } else {
        decide_checksum(&file, &opts.datafs, &repofiles, end, progress)?
    };
    let Some(plan) = plan else {
        log::info!(target: LOG, "No changes, nothing to do");
        return Ok(BackupReport {
            action: Action::Nothing,
            reason: "no changes",
            data_file: None,
            index_file: None,
            dat_file: None,
            start: end,
            end,
            md5: None,
            written: 0,
            removed: Vec::new(),
        });
    };
    write_backup(opts, &file, &scan, &repofiles, &plan, clock, progress)
}

fn full(reason: &'static str) -> Option<Plan> {
    log::info!(target: LOG, "{reason} (full backup)");
    Some(Plan {
        kind: Kind::Full,
        start: 0,
        reason,
    })
}

fn incremental(start: u64) -> Option<Plan> {
    log::info!(target: LOG, "doing incremental, starting at: {start}");
    Some(Plan {
        kind: Kind::Incremental,
        start,
        reason: "new transactions",
    })
}

/// `-Q`: trust the last line of the chain's `.dat`.
fn decide_quick(
    file: &File,
    datafs: &Path,
    repofiles: &[PathBuf],
    end: u64,
    progress: &dyn Progress,
) -> Result<Option<Plan>> {
    let Some(last) = dat::last_line(&dat::dat_path_for(&repofiles[0]))? else {
        return Ok(full("missing or empty .dat file"));
    };
    // Deviation: compared with `end`, not the raw size (see module docs).
    if end < last.end {
        return Ok(full("file shrunk, possibly because of a pack"));
    }
    progress.start("checksum", Some(last.end - last.start));
    let (_, srcsum) = md5_of(&mut Region::new(file, last.start, last.end), progress)
        .map_err(|e| io_err(datafs, e))?;
    progress.finish();
    log::info!(target: LOG, "last incremental file: {}", last.dest);
    log::info!(target: LOG, "last incremental checksum: {}", last.md5);
    log::info!(
        target: LOG,
        "source checksum range: [{}..{}], sum: {srcsum}",
        last.start,
        last.end
    );
    if srcsum != last.md5 {
        return Ok(full("file changed, possibly because of a pack"));
    }
    if end == last.end {
        return Ok(None);
    }
    Ok(incremental(last.end))
}

/// Default mode: compare the whole repository chain with the Data.fs.
/// The repository and the source are read at the same time, and the source
/// only once when the chain's size is what its `.dat` says (repozo reads
/// the source twice, after the repository).
fn decide_checksum(
    file: &File,
    datafs: &Path,
    repofiles: &[PathBuf],
    end: u64,
    progress: &dyn Progress,
) -> Result<Option<Plan>> {
    // A guess of the repository size, to snapshot the source hash there.
    let mark = dat::last_line(&dat::dat_path_for(&repofiles[0]))
        .ok()
        .flatten()
        .map_or(end, |l| l.end.min(end));
    let (repo, src) = rayon::join(
        || concat_md5(repofiles),
        || -> Result<(String, String)> {
            let read = |a, b, h| {
                copy_hashed::<_, std::io::Sink>(&mut Region::new(file, a, b), None, h, progress)
                    .map_err(|e| io_err(datafs, e))
            };
            let (_, at_mark) = read(0, mark, Md5::new())?;
            let (_, at_end) = read(mark, end, at_mark.clone())?;
            Ok((hex(at_mark), hex(at_end)))
        },
    );
    let (reposz, reposum) = repo?;
    let (sum_at_mark, srcsum) = src?;
    log::info!(target: LOG, "repository state: {reposz} bytes, md5: {reposum}");
    let backedup = if reposz.min(end) == mark {
        sum_at_mark
    } else if reposz >= end {
        srcsum.clone()
    } else {
        md5_of(&mut Region::new(file, 0, reposz), progress)
            .map_err(|e| io_err(datafs, e))?
            .1
    };
    log::info!(target: LOG, "current state   : {end} bytes, md5: {srcsum}");
    log::info!(target: LOG, "backed up state : {reposz} bytes, md5: {backedup}");
    // Deviation: `end` instead of the raw size (see module docs).
    if end == reposz && srcsum == reposum {
        return Ok(None);
    }
    if end < reposz {
        return Ok(full("file shrunk, possibly because of a pack"));
    }
    if reposum == backedup {
        return Ok(incremental(reposz));
    }
    Ok(full("file changed, possibly because of a pack"))
}

/// Size and md5 of the concatenation of `files` (uncompressed), like
/// repozo's `concat` without output.
///
/// # Errors
/// [`Error::RepozoIo`] for a file that cannot be read,
/// [`Error::VerificationFail`] for one that cannot be decompressed.
pub fn concat_md5(files: &[PathBuf]) -> Result<(u64, String)> {
    let mut hasher = Md5::new();
    let mut total = 0;
    for f in files {
        let (n, h) = read_data_file(f, hasher, None::<&mut std::io::Sink>, true)?;
        total += n;
        hasher = h;
    }
    Ok((total, hex(hasher)))
}

/// Copy `[start, end)` of `file` into `out` in the kernel
/// (`copy_file_range`) while the md5 of the same bytes is computed on
/// another core. The copy reads through a duplicate of the same file
/// descriptor (same open file, never a new open of the path).
fn copy_and_hash(
    file: &File,
    start: u64,
    end: u64,
    out: &mut &File,
    progress: &dyn Progress,
) -> std::io::Result<(u64, Md5)> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut dup = file.try_clone()?;
    dup.seek(SeekFrom::Start(start))?;
    let (copied, hashed) = rayon::join(
        || std::io::copy(&mut (&dup).take(end - start), out),
        || {
            copy_hashed::<_, std::io::Sink>(
                &mut Region::new(file, start, end),
                None,
                Md5::new(),
                progress,
            )
        },
    );
    let (n, h) = hashed?;
    if copied? != n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "Data.fs changed size while it was copied",
        ));
    }
    Ok((n, h))
}

/// Read one data file (decompressing by name), feeding `hasher` (when
/// `hash`) and copying to `out` if given. Without `hash`, a plain file is
/// copied by the kernel where it can (`copy_file_range`).
pub(crate) fn read_data_file<W: Write + Send>(
    path: &Path,
    hasher: Md5,
    out: Option<&mut W>,
    hash: bool,
) -> Result<(u64, Md5)> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let name = path.to_string_lossy();
    let nop = &crate::progress::NoProgress;
    if is_gzip_name(&name) {
        let mut dec = gzip::decoder(std::io::BufReader::with_capacity(1 << 16, f));
        match (hash, out) {
            (false, Some(out)) => copy_unhashed(&mut dec, out).map(|n| (n, hasher)),
            (_, out) => copy_hashed(&mut dec, out, hasher, nop),
        }
        .map_err(|e| bad_gzip(path, &e))
    } else {
        let mut f = f;
        match (hash, out) {
            (false, Some(out)) => std::io::copy(&mut f, out).map(|n| (n, hasher)),
            (true, Some(out)) => {
                // Kernel copy on one core, md5 of the same file on another.
                let (copied, hashed) = rayon::join(
                    || std::io::copy(&mut f, out),
                    || {
                        let mut again = File::open(path)?;
                        copy_hashed::<_, std::io::Sink>(&mut again, None, hasher, nop)
                    },
                );
                let (n, h) = hashed.map_err(|e| io_err(path, e))?;
                let copied = copied.map_err(|e| io_err(path, e))?;
                if copied != n {
                    return Err(Error::VerificationFail(format!(
                        "{} changed while it was read",
                        path.display()
                    )));
                }
                Ok((n, h))
            }
            (_, None) => copy_hashed::<_, W>(&mut f, None, hasher, nop),
        }
        .map_err(|e| io_err(path, e))
    }
}

pub(crate) fn bad_gzip(path: &Path, e: &std::io::Error) -> Error {
    Error::VerificationFail(format!(
        "{} cannot be decompressed: {}",
        path.display(),
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "truncated gzip file".to_owned()
        } else {
            e.to_string()
        }
    ))
}

fn write_backup(
    opts: &BackupOptions,
    file: &File,
    scan: &ScanResult,
    repofiles: &[PathBuf],
    plan: &Plan,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let repo = &opts.repository;
    let now = clock.now();
    let name = gen_filename(now, data_ext(plan.kind, opts.gzip));
    let dest = join(repo, &name);
    // The `.dat` line holds the path; whitespace in it makes a line that
    // neither repozo nor we can read back, so refuse before writing
    // anything (repozo writes it and fails on every later run).
    if dest.to_string_lossy().chars().any(char::is_whitespace) {
        return Err(Error::Config(format!(
            "{}: the repository path contains whitespace, which a .dat line cannot hold (repozo could not read it back either)",
            dest.display()
        )));
    }
    // Any backup file of this second, not only the one we would write: a
    // `.deltafs` beside a `.fs` of the same second is never recovered (the
    // full wins the name), and the `.index` would be overwritten (repozo
    // quirk, fixed; CHANGES.rst).
    let same_second = std::iter::once(dest.clone()).chain(
        [".fs", ".fsz", ".deltafs", ".deltafsz", ".index"]
            .iter()
            .map(|ext| join(repo, &gen_filename(now, ext))),
    );
    for path in same_second {
        if path.symlink_metadata().is_ok() {
            return Err(Error::WouldOverwriteFiles { path });
        }
    }
    let end = scan.end;
    let start = plan.start;

    log::info!(target: LOG, "writing index");
    let index_name = gen_filename(now, ".index");
    let index_path = join(repo, &index_name);
    let index_tmp = temp_in(repo, &index_name)?;
    {
        let mut w = BufWriter::with_capacity(1 << 16, index_tmp.as_file());
        scan.index
            .write_to(end, &mut w)
            .and_then(|()| w.flush())
            .map_err(|e| io_err(index_tmp.path(), e))?;
    }
    index_tmp
        .as_file()
        .sync_all()
        .map_err(|e| io_err(&index_path, e))?;

    match plan.kind {
        Kind::Full => {
            log::info!(target: LOG, "writing full backup: {end} bytes to {}", dest.display())
        }
        Kind::Incremental => log::info!(
            target: LOG,
            "writing incremental: {} bytes to {}",
            end - start,
            dest.display()
        ),
    }
    let data_tmp = temp_in(repo, &name)?;
    progress.start(
        if opts.gzip { "compressing" } else { "copying" },
        Some(end - start),
    );
    let mut src = Region::new(file, start, end);
    let copied = {
        let mut out = data_tmp.as_file();
        if opts.gzip {
            let mtime = u32::try_from(now.timestamp()).unwrap_or(0);
            gzip::compress(&mut src, &mut out, opts.gzip_level.min(9), mtime, progress)
        } else {
            copy_and_hash(file, start, end, &mut out, progress)
        }
    };
    progress.finish();
    let (n, hasher) = copied.map_err(|e| io_err(data_tmp.path(), e))?;
    if n != end - start {
        // repozo asserts here (a Data.fs truncated or replaced mid-run).
        return Err(Error::Corrupted {
            path: opts.datafs.clone(),
            pos: start + n,
            reason: format!(
                "the file ended while copying: {} bytes expected from offset {start}, {n} read",
                end - start
            ),
        });
    }
    let sum = hex(hasher);
    data_tmp
        .as_file()
        .sync_all()
        .map_err(|e| io_err(&dest, e))?;
    let written = data_tmp.as_file().metadata().map_or(0, |m| m.len());
    data_tmp.persist_noclobber(&dest).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::WouldOverwriteFiles { path: dest.clone() }
        } else {
            io_err(&dest, e.error)
        }
    })?;
    // From here the data file has its final name, but the chain does not
    // list it until the `.dat` line is written: on any failure before that,
    // remove it (and its index) again, so that no run ever finds a backup
    // file its `.dat` does not know.
    let finish = || -> Result<PathBuf> {
        index_tmp
            .persist(&index_path)
            .map_err(|e| io_err(&index_path, e.error))?;
        let dir = crate::fsutil::parent_dir(&dest).to_path_buf();
        sync_dir(&dir)?;
        let line = DatLine {
            dest: dest.to_string_lossy().into_owned(),
            start,
            end,
            md5: sum.clone(),
        };
        match plan.kind {
            Kind::Full => {
                let p = dat::dat_path_for(&dest);
                dat::create(&p, &line)?;
                Ok(p)
            }
            Kind::Incremental => {
                let p = dat::dat_path_for(&repofiles[0]);
                dat::append(&p, &line)?;
                sync_dir(&dir)?;
                Ok(p)
            }
        }
    };
    let dat_file = match finish() {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&dest);
            let _ = std::fs::remove_file(&index_path);
            return Err(e);
        }
    };
    let removed = if opts.kill_old && plan.kind == Kind::Full {
        delete_old_backups(repo)?
    } else {
        Vec::new()
    };
    Ok(BackupReport {
        action: match plan.kind {
            Kind::Full => Action::Full,
            Kind::Incremental => Action::Incremental,
        },
        reason: plan.reason,
        data_file: Some(dest),
        index_file: Some(index_path),
        dat_file: Some(dat_file),
        start,
        end,
        md5: Some(sum),
        written,
        removed,
    })
}
