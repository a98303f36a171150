//! `-B`: decide between a full backup, an incremental one and nothing, and
//! write it.
//!
//! Mirrors repozo's `do_backup`, `do_full_backup` and
//! `do_incremental_backup` (see docs/repository.rst), with these deviations:
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

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::filestorage::{scan_file, ScanOptions, ScanResult};
use crate::fsutil::open_regular;
use crate::fsutil::sync_dir;
use crate::progress::{NoProgress, Progress, Unit};
use crate::repozo::chain::{self, Chain};
use crate::repozo::dat::{self, DatLine};
use crate::repozo::find::{delete_old_backups, find_files};
use crate::repozo::naming::{data_ext, gen_filename, is_gzip_name, join, splitext, Kind};
use crate::repozo::stream::{copy_hashed, hex, md5_of, Region};
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
    /// Create a missing repository directory (the library does, as the
    /// blob backups create their location); repozo's command line refuses
    /// a missing one.
    pub create_repository: bool,
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
            create_repository: false,
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
    /// The chain an incremental extends.
    chain: Option<Chain>,
}

impl Plan {
    fn action(&self) -> Action {
        match self.kind {
            Kind::Full => Action::Full,
            Kind::Incremental => Action::Incremental,
        }
    }
}

/// The files a planned backup writes.
struct Names {
    data: PathBuf,
    index: PathBuf,
    dat: PathBuf,
}

/// The names of the files a backup made at `now` writes, checked: no
/// whitespace in the path a `.dat` line holds, no backup file of the same
/// second already there.
fn names(opts: &BackupOptions, now: DateTime<Utc>, plan: &Plan) -> Result<Names> {
    let repo = &opts.repository;
    let dest = join(repo, &gen_filename(now, data_ext(plan.kind, opts.gzip)));
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
    let dat = match (plan.kind, &plan.chain) {
        (Kind::Incremental, Some(chain)) if !chain.files.is_empty() => {
            dat::dat_path_for(&chain.files[0])
        }
        _ => dat::dat_path_for(&dest),
    };
    Ok(Names {
        data: dest,
        index: join(repo, &gen_filename(now, ".index")),
        dat,
    })
}

/// Back up `opts.datafs` into `opts.repository`.
///
/// Holds the repository lock ([`crate::lock`]) throughout, and first
/// removes what interrupted runs left ([`chain::clean_interrupted`]). An
/// incremental backup extends the newest chain only when
/// [`chain::vouch`] finds it whole; otherwise a full backup is made and
/// the reason logged as a warning.
///
/// # Errors
/// [`Error::RepozoIo`] (missing repository or Data.fs, I/O),
/// [`Error::FileStorageFormat`]/[`Error::Corrupted`] for a Data.fs ZODB
/// would not open (empty included), [`Error::WouldOverwriteFiles`] when a
/// data file of the same second exists, [`Error::LocationLocked`] when
/// another run holds the repository, [`Error::Io`] from the atomic writes.
pub fn backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let repo = &opts.repository;
    if opts.create_repository && !repo.as_os_str().is_empty() {
        std::fs::create_dir_all(repo).map_err(|e| io_err(repo, e))?;
    }
    let _lock = crate::lock::lock_location(repo)?;
    if repo.is_dir() {
        chain::clean_interrupted(repo)?;
    }
    // Read the clock only once the lock is held: a run that waited for
    // another names its backup after the other's.
    let when = gen_filename(clock.now(), "");
    let decided = decide(opts, &when, true, progress)?;
    let Some(plan) = decided.plan else {
        log::info!(target: LOG, "No changes, nothing to do");
        return Ok(nothing(decided.scan.end));
    };
    write_backup(opts, &decided.file, &decided.scan, &plan, clock, progress)
}

/// What [`backup`] would do now, touching nothing: no lock, no cleaning of
/// an interrupted run's leftovers (they are listed), no file written (a
/// dry run). The decision is made on the repository as it is: a leftover
/// data file of a dead run counts in it, where the real run removes it
/// first. The
/// decision (full, incremental or nothing, quick mode included) and the
/// names are [`backup`]'s own. A repository that does not exist yet gets a
/// full backup when `opts.create_repository`, else repozo's error.
///
/// # Errors
/// As [`backup`] before it writes: a Data.fs ZODB would not open, a
/// backup newer than now, a file of the same second
/// ([`Error::WouldOverwriteFiles`]), a repository path with whitespace.
pub fn plan_backup(
    opts: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<PlannedBackup> {
    let repo = &opts.repository;
    let exists = repo.is_dir() || !opts.create_repository;
    let leftovers = chain::plan_clean_interrupted(repo)?;
    let now = clock.now();
    let when = gen_filename(now, "");
    let decided = decide(opts, &when, exists, progress)?;
    let Some(plan) = decided.plan else {
        return Ok(PlannedBackup {
            action: Action::Nothing,
            reason: "no changes",
            data_file: None,
            index_file: None,
            dat_file: None,
            leftovers,
        });
    };
    let names = names(opts, now, &plan)?;
    Ok(PlannedBackup {
        action: plan.action(),
        reason: plan.reason,
        data_file: Some(names.data),
        index_file: Some(names.index),
        dat_file: Some(names.dat),
        leftovers,
    })
}

/// What [`plan_backup`] found: the files a backup would write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBackup {
    /// The decision.
    pub action: Action,
    /// Why (as [`BackupReport::reason`]).
    pub reason: &'static str,
    /// The new data file.
    pub data_file: Option<PathBuf>,
    /// The new `.index`.
    pub index_file: Option<PathBuf>,
    /// The `.dat` that would get the new line: a new one for a full
    /// backup, the chain's for an incremental.
    pub dat_file: Option<PathBuf>,
    /// What interrupted runs left, which the backup removes first
    /// ([`chain::plan_clean_interrupted`]).
    pub leftovers: Vec<PathBuf>,
}

fn nothing(end: u64) -> BackupReport {
    BackupReport {
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
    }
}

/// The Data.fs, opened once, its scan, and the decision.
struct Decided {
    file: File,
    scan: ScanResult,
    plan: Option<Plan>,
}

/// Open and scan the Data.fs and decide between a full backup, an
/// incremental one and nothing: the one decision of [`backup`] and
/// [`plan_backup`]. `repository_exists` false: a repository still to be
/// created, which gets a full backup.
fn decide(
    opts: &BackupOptions,
    when: &str,
    repository_exists: bool,
    progress: &dyn Progress,
) -> Result<Decided> {
    let repo = &opts.repository;
    if let Some(newer) = repo
        .is_dir()
        .then(|| crate::repozo::find::data_files(repo))
        .transpose()?
        .and_then(|names| names.into_iter().rfind(|n| splitext(n).0 > when))
    {
        // Our file would sort before it, and every later run would read
        // the chain in the wrong order.
        return Err(Error::Config(format!(
            "{} holds a backup newer than now ({when}): is the system clock wrong? Nothing was written.",
            join(repo, &newer).display()
        )));
    }
    let file = open_regular(&opts.datafs).map_err(|e| io_err(&opts.datafs, e))?;
    let scan = scan_file(&file, &opts.datafs, &ScanOptions::default())?;
    let end = scan.end;
    if end == 4 && scan.size > 4 {
        // ZODB would open this as an empty storage (and a writer would cut
        // the file there): the first transaction header is damaged or still
        // being written. A 4-byte "backup" of it restores nothing.
        return Err(Error::Corrupted {
            path: opts.datafs.clone(),
            pos: 4,
            reason: format!(
                "no committed transaction can be read, although the file has {} bytes: \
                 the first transaction record is damaged or incomplete",
                scan.size
            ),
        });
    }

    let plan = if !repository_exists {
        log::info!(target: LOG, "doing a full backup");
        Some(Plan {
            kind: Kind::Full,
            start: 0,
            reason: "no backup yet",
            chain: None,
        })
    } else if opts.full {
        // For the log lines (and repozo's error for a missing repository).
        find_files(repo, when)?;
        log::info!(target: LOG, "doing a full backup");
        Some(Plan {
            kind: Kind::Full,
            start: 0,
            reason: "full backup requested",
            chain: None,
        })
    } else {
        match chain::vouch(repo, when)? {
            Err(_) if crate::repozo::find::data_files(repo)?.is_empty() => {
                log::info!(target: LOG, "doing a full backup");
                Some(Plan {
                    kind: Kind::Full,
                    start: 0,
                    reason: "no backup yet",
                    chain: None,
                })
            }
            Err(doubt) => {
                log::warn!(
                    target: LOG,
                    "cannot extend the backup chain ({doubt}): doing a full backup"
                );
                full("the backup chain cannot be extended")
            }
            Ok(chain) if opts.quick => decide_quick(&file, &opts.datafs, chain, end, progress)?,
            Ok(chain) => decide_checksum(&file, &opts.datafs, chain, end, progress)?,
        }
    };
    Ok(Decided { file, scan, plan })
}

fn full(reason: &'static str) -> Option<Plan> {
    log::info!(target: LOG, "{reason} (full backup)");
    Some(Plan {
        kind: Kind::Full,
        start: 0,
        reason,
        chain: None,
    })
}

fn incremental(start: u64, chain: Chain) -> Option<Plan> {
    log::info!(target: LOG, "doing incremental, starting at: {start}");
    Some(Plan {
        kind: Kind::Incremental,
        start,
        reason: "new transactions",
        chain: Some(chain),
    })
}

/// `-Q`: trust the last line of the chain's `.dat` (the chain itself was
/// vouched for).
fn decide_quick(
    file: &File,
    datafs: &Path,
    chain: Chain,
    end: u64,
    progress: &dyn Progress,
) -> Result<Option<Plan>> {
    let Some(last) = chain.lines.last().cloned() else {
        return Ok(full("missing or empty .dat file"));
    };
    // Deviation: compared with `end`, not the raw size (see module docs).
    if end < last.end {
        return Ok(full("file shrunk, possibly because of a pack"));
    }
    progress.start("checksum", Some(last.end - last.start), Unit::Bytes);
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
    Ok(incremental(last.end, chain))
}

/// Default mode: every file of the chain is read and checked against its
/// `.dat` line (size and md5), and the Data.fs range of every line against
/// the same md5, both at the same time. Only a chain that is whole and a
/// prefix of the Data.fs is extended. (repozo compares one md5 of the
/// concatenated repository with one of the source prefix, and reads the
/// source twice.)
fn decide_checksum(
    file: &File,
    datafs: &Path,
    chain: Chain,
    end: u64,
    progress: &dyn Progress,
) -> Result<Option<Plan>> {
    let reposz = chain.lines.last().map_or(0, |l| l.end);
    // Progress follows the Data.fs side; the repository side reads as much.
    let checked: u64 = chain
        .lines
        .iter()
        .filter(|l| l.end <= end)
        .map(|l| l.end - l.start)
        .sum();
    progress.start("checking", Some(checked), Unit::Bytes);
    let (repo, src) = rayon::join(
        || -> Result<std::result::Result<(), String>> {
            for (f, line) in chain.files.iter().zip(&chain.lines) {
                let (n, h) =
                    match read_data_file::<std::io::Sink>(f, Md5::new(), None, true, &NoProgress) {
                        Ok(r) => r,
                        Err(e) => return Ok(Err(e.to_string())),
                    };
                let sum = hex(h);
                if n != line.end - line.start || sum != line.md5 {
                    return Ok(Err(format!(
                        "{} is {n} bytes with md5 {sum}, its .dat line says {} bytes with md5 {}",
                        f.display(),
                        line.end - line.start,
                        line.md5
                    )));
                }
            }
            Ok(Ok(()))
        },
        || -> Result<bool> {
            for line in chain.lines.iter().filter(|l| l.end <= end) {
                let (_, sum) = md5_of(&mut Region::new(file, line.start, line.end), progress)
                    .map_err(|e| io_err(datafs, e))?;
                if sum != line.md5 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    );
    progress.finish();
    if let Err(doubt) = repo? {
        log::warn!(
            target: LOG,
            "cannot extend the backup chain ({doubt}): doing a full backup"
        );
        return Ok(full("the backup chain cannot be extended"));
    }
    let same = src?;
    log::info!(
        target: LOG,
        "repository state: {reposz} bytes in {} files, each as its .dat line says",
        chain.files.len()
    );
    log::info!(target: LOG, "current state   : {end} bytes");
    // Deviation: `end` instead of the raw size (see module docs).
    if end < reposz {
        return Ok(full("file shrunk, possibly because of a pack"));
    }
    if !same {
        return Ok(full("file changed, possibly because of a pack"));
    }
    if end == reposz {
        return Ok(None);
    }
    Ok(incremental(reposz, chain))
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
        || {
            // The kernel copy is done long before the md5: flush the copy
            // to disk meanwhile, so the fsync before the rename finds
            // nothing left to write.
            let n = std::io::copy(&mut (&dup).take(end - start), out)?;
            out.sync_data()?;
            Ok::<_, std::io::Error>(n)
        },
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

/// Where [`read_data_file`] copies to: the writer and the name its write
/// errors are reported under (a full disk is the output's fault, never the
/// backup file's).
pub(crate) struct Output<'a, W> {
    /// The writer.
    pub w: &'a mut W,
    /// The file it writes (for messages).
    pub path: &'a Path,
    /// The file behind `w`, if it is one: a plain data file's copy is
    /// flushed to it (`fdatasync`) while the md5 of the data file is still
    /// being computed, which leaves the caller's fsync nothing to wait for.
    pub sync: Option<&'a File>,
}

/// Errors only a writer gets (for kernel copies, where the side is not
/// known otherwise).
fn is_write_error(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|n| {
        [
            Errno::NOSPC,
            Errno::DQUOT,
            Errno::FBIG,
            Errno::ROFS,
            Errno::PIPE,
        ]
        .iter()
        .any(|x| x.raw_os_error() == n)
    })
}

/// Read one data file (decompressing by name), feeding `hasher` (when
/// `hash`) and copying to `out` if given. Without `hash`, a plain file is
/// copied by the kernel where it can (`copy_file_range`). Non-regular files
/// are refused. With `hash`, `progress` advances by the (uncompressed)
/// bytes hashed.
pub(crate) fn read_data_file<W: Write + Send>(
    path: &Path,
    hasher: Md5,
    out: Option<Output<'_, W>>,
    hash: bool,
    progress: &dyn Progress,
) -> Result<(u64, Md5)> {
    let f = open_regular(path).map_err(|e| io_err(path, e))?;
    let name = path.to_string_lossy();
    let out_path = out.as_ref().map(|o| o.path.to_path_buf());
    let blame = |e: std::io::Error, written: bool| match (&out_path, written) {
        (Some(o), true) => io_err(o, e),
        _ => io_err(path, e),
    };
    if is_gzip_name(&name) {
        // Inflated on every core; the md5 and the writing of each piece
        // happen here, in order, while the next pieces are inflated.
        let mut hasher = hasher;
        let mut w = out.map(|o| o.w);
        let mut write_failed = false;
        let r = gzip::decompress_file(&f, &mut |b: &[u8]| {
            if hash {
                hasher.update(b);
                progress.advance(b.len() as u64);
            }
            if let Some(w) = w.as_mut() {
                w.write_all(b).inspect_err(|_| write_failed = true)?;
            }
            Ok(())
        });
        r.map(|n| (n, hasher)).map_err(|e| {
            if write_failed {
                blame(e, true)
            } else {
                bad_gzip(path, &e)
            }
        })
    } else {
        let mut f = f;
        match (hash, out) {
            (false, Some(out)) => std::io::copy(&mut f, out.w)
                .map(|n| (n, hasher))
                .map_err(|e| {
                    let w = is_write_error(&e);
                    blame(e, w)
                }),
            (true, Some(out)) => {
                // Kernel copy on one core, md5 of the same file on another.
                let (copied, hashed) = rayon::join(
                    || {
                        let n = std::io::copy(&mut f, out.w).map_err(|e| {
                            let w = is_write_error(&e);
                            blame(e, w)
                        })?;
                        if let Some(sync) = out.sync {
                            sync.sync_data().map_err(|e| blame(e, true))?;
                        }
                        Ok::<_, Error>(n)
                    },
                    || {
                        let mut again = open_regular(path)?;
                        copy_hashed::<_, std::io::Sink>(&mut again, None, hasher, progress)
                    },
                );
                let copied = copied?;
                let (n, h) = hashed.map_err(|e| io_err(path, e))?;
                if copied != n {
                    return Err(Error::VerificationFail(format!(
                        "{} changed while it was read",
                        path.display()
                    )));
                }
                Ok((n, h))
            }
            (_, None) => {
                copy_hashed::<_, W>(&mut f, None, hasher, progress).map_err(|e| io_err(path, e))
            }
        }
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
    plan: &Plan,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let repo = &opts.repository;
    let now = clock.now();
    let Names {
        data: dest,
        index: index_path,
        dat: dat_file,
    } = names(opts, now, plan)?;
    let name = gen_filename(now, data_ext(plan.kind, opts.gzip));
    let end = scan.end;
    let start = plan.start;

    log::info!(target: LOG, "writing index");
    let index_name = gen_filename(now, ".index");
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
        Unit::Bytes,
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
    let dir = crate::fsutil::parent_dir(&dest).to_path_buf();
    let named = index_tmp
        .persist(&index_path)
        .map_err(|e| io_err(&index_path, e.error))
        .and_then(|_| sync_dir(&dir));
    if let Err(e) = named {
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(&index_path);
        return Err(e);
    }
    let line = DatLine {
        dest: dest.to_string_lossy().into_owned(),
        start,
        end,
        md5: sum.clone(),
    };
    // The commit point: the `.dat` line. Before it, a failure removes the
    // data file and its index again; once the line is in the `.dat` (also
    // when the write reported an error after all), the backup is never
    // removed by an error path.
    let committed = match plan.kind {
        Kind::Full => dat::create(&dat_file, &line),
        Kind::Incremental => dat::append(&dat_file, &line),
    };
    if let Err(e) = committed {
        let listed = dat::read(&dat_file)
            .ok()
            .flatten()
            .is_some_and(|lines| lines.contains(&line));
        if !listed {
            let _ = std::fs::remove_file(&dest);
            let _ = std::fs::remove_file(&index_path);
        }
        return Err(e);
    }
    sync_dir(&dir)?;
    let removed = if opts.kill_old && plan.kind == Kind::Full {
        delete_old_backups(repo)?
    } else {
        Vec::new()
    };
    Ok(BackupReport {
        action: plan.action(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SteppingClock;
    use crate::progress::NoProgress;

    /// A Data.fs of `n` empty committed transactions.
    fn datafs(n: u64) -> Vec<u8> {
        let mut out = b"FS30".to_vec();
        for i in 1..=n {
            let tlen: u64 = 23;
            out.extend((0x03d0_0000_0000_0000u64 + i).to_be_bytes());
            out.extend(tlen.to_be_bytes());
            out.push(b' ');
            out.extend([0u8; 6]);
            out.extend(tlen.to_be_bytes());
        }
        out
    }

    fn at(secs: i64) -> SteppingClock {
        let t = DateTime::<Utc>::from_timestamp(1_790_000_000 + secs, 0).expect("time");
        SteppingClock::new(t, chrono::Duration::zero())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The plan names what the backup then writes, and the planning writes
    /// nothing, not even a lock file: a full backup, an incremental, quick
    /// mode, and nothing to do.
    #[test]
    fn plan_backup_names_what_backup_writes() {
        let d = tempfile::tempdir().expect("tempdir");
        let live = d.path().join("Data.fs");
        let repo = d.path().join("backups");
        let mut opts = BackupOptions::new(live.clone(), repo.clone());
        opts.create_repository = true;
        std::fs::write(&live, datafs(2)).expect("write");

        // Missing repository: a full backup, and it is not created.
        let p = plan_backup(&opts, &at(0), &NoProgress).expect("plan");
        assert!(!repo.exists());
        assert_eq!(p.action, Action::Full);
        let r = backup(&opts, &at(0), &NoProgress).expect("backup");
        assert_eq!(r.action, Action::Full);
        assert_eq!(
            (p.data_file, p.index_file, p.dat_file),
            (r.data_file, r.index_file, r.dat_file.clone())
        );

        for quick in [false, true] {
            let secs = if quick { 20 } else { 10 };
            opts.quick = quick;
            let size = if quick { 4 } else { 3 };
            std::fs::write(&live, datafs(size)).expect("write");
            let before = listing(&repo);
            let p = plan_backup(&opts, &at(secs), &NoProgress).expect("plan");
            assert_eq!(listing(&repo), before);
            assert_eq!(p.action, Action::Incremental);
            let r = backup(&opts, &at(secs), &NoProgress).expect("backup");
            assert_eq!(r.action, Action::Incremental);
            assert_eq!(
                (p.data_file, p.index_file, p.dat_file),
                (r.data_file, r.index_file, r.dat_file)
            );

            let p = plan_backup(&opts, &at(secs + 1), &NoProgress).expect("plan");
            assert_eq!(p.action, Action::Nothing);
            assert_eq!(p.data_file, None);
            let r = backup(&opts, &at(secs + 1), &NoProgress).expect("backup");
            assert_eq!(r.action, Action::Nothing);
        }

        // A changed (packed) Data.fs: a full backup, as backup decides.
        let mut packed = datafs(1);
        packed[11] ^= 1;
        std::fs::write(&live, &packed).expect("write");
        let p = plan_backup(&opts, &at(30), &NoProgress).expect("plan");
        assert_eq!(p.action, Action::Full);
        let r = backup(&opts, &at(30), &NoProgress).expect("backup");
        assert_eq!((p.action, p.data_file), (r.action, r.data_file));
    }

    /// A file of the same second: the plan refuses as the backup would.
    #[test]
    fn plan_backup_refuses_an_existing_name() {
        let d = tempfile::tempdir().expect("tempdir");
        let live = d.path().join("Data.fs");
        let repo = d.path().join("backups");
        std::fs::create_dir(&repo).expect("mkdir");
        std::fs::write(&live, datafs(1)).expect("write");
        let opts = BackupOptions {
            full: true,
            ..BackupOptions::new(live, repo.clone())
        };
        std::fs::write(repo.join(gen_filename(at(0).now(), ".index")), "x").expect("write");
        let e = plan_backup(&opts, &at(0), &NoProgress);
        assert!(matches!(e, Err(Error::WouldOverwriteFiles { .. })), "{e:?}");
        assert_eq!(listing(&repo).len(), 1);
    }
}
