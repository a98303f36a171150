//! Which backups a repository really holds: the commit rule.
//!
//! A backup is committed when its line is in the `.dat` of its chain: the
//! data file (and its `.index`) are written, fsynced and named first, the
//! `.dat` line last. So a data file that no `.dat` lists is what a run left
//! when it died (or failed) before its commit point; it is not a backup:
//!
//! - [`plan_chain`] (recover, verify, restore) follows the `.dat` of the
//!   newest full backup at or before the date and ignores unlisted data
//!   files with a warning; it refuses a listed file that is missing, a gap
//!   between two lines, and a `.dat` whose full backup file is gone, since
//!   each of those would silently give an older state than the repository
//!   claims to hold.
//! - [`clean_interrupted`] (every backup run, under the repository lock)
//!   removes what dead runs left: unlisted data files newer than every
//!   committed one, their `.index`, and temporary files.
//! - [`vouch`] (before an incremental backup) checks that the chain to be
//!   extended is whole; if not, the backup starts a new full one.
//! - [`survey`] (the status report) checks every chain as the two above
//!   check the newest, and lists what no chain accounts for, writing
//!   nothing.
//!
//! A repository without any `.dat` (copied without them, or written by a
//! tool that keeps none) is taken by the file names alone, as repozo does.
//! See `docs/repository.rst`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::repozo::dat::{self, DatLine};
use crate::repozo::naming::{is_data_file, is_gzip_name, join, kind_of, splitext, Kind};
use crate::repozo::{io_err, LOG};

/// What a repository directory holds, from one listing.
#[derive(Debug, Default)]
struct Listing {
    /// Data file names, ascending.
    data: Vec<String>,
    /// Roots (`YYYY-MM-DD-HH-MM-SS`) that have a `.dat`.
    dats: BTreeSet<String>,
    /// Temporary files of our writers (`.<name>.XXXXXX.tmp`).
    temps: Vec<String>,
    /// Roots that have a `.index`.
    indexes: BTreeSet<String>,
}

fn list(repo: &Path) -> Result<Listing> {
    let dir = if repo.as_os_str().is_empty() {
        Path::new(".")
    } else {
        repo
    };
    let mut l = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(repo, e))? {
        let entry = entry.map_err(|e| io_err(repo, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_data_file(&name) {
            l.data.push(name);
        } else if is_temporary(&name) {
            l.temps.push(name);
        } else if let Some((root, ext)) = stamped(&name) {
            match ext {
                ".dat" => {
                    l.dats.insert(root.to_owned());
                }
                ".index" => {
                    l.indexes.insert(root.to_owned());
                }
                _ => {}
            }
        }
    }
    l.data.sort();
    Ok(l)
}

/// `(root, ext)` of a name made of a backup stamp and an extension.
fn stamped(name: &str) -> Option<(&str, &str)> {
    let (root, ext) = splitext(name);
    crate::repozo::naming::is_timestamp(root.as_bytes()).then_some((root, ext))
}

/// A temporary file of our writers: `.<stamped name>.XXXXXX.tmp`.
fn is_temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|n| n.len() > 19 && crate::repozo::naming::is_timestamp(&n.as_bytes()[..19]))
}

/// A chain chosen and checked by [`plan_chain`]: what a recover will
/// concatenate, found without writing anything.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The data files, oldest first.
    pub files: Vec<PathBuf>,
    /// Their `.dat` lines, in the same order. Without a `.dat`
    /// ([`Chain::by_names`]), placeholders holding no size or checksum.
    pub lines: Vec<DatLine>,
    /// The repository keeps no `.dat`: the chain was chosen by the file
    /// names alone, and can only be checked by the FileStorage structure of
    /// what it recovers (see `recover`).
    pub by_names: bool,
}

impl Chain {
    /// Bytes the recovered Data.fs will have.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.lines
            .iter()
            .fold(0u64, |t, l| t.saturating_add(l.end - l.start))
    }
}

/// Choose the chain that recovers the state as of `when` (a date compared
/// as repozo does, `yyyy-mm-dd[-hh[-mm[-ss]]]`) and check it against its
/// `.dat`, reading only the repository listing and the `.dat`.
/// `date_shown` is the date named by [`Error::NoFiles`] (None: "now").
///
/// Logs repozo's "files needed" lines, and a warning for every data file
/// it ignores because no `.dat` lists it.
///
/// # Errors
/// [`Error::NoFiles`], [`Error::RepozoIo`], [`Error::BadDat`],
/// [`Error::VerificationFail`] for a gap, a listed file that is missing, or
/// a `.dat` whose full backup is gone.
pub fn plan_chain(repository: &Path, when: &str, date_shown: Option<&str>) -> Result<Chain> {
    log::info!(target: LOG, "looking for files between last full backup and {when}...");
    let listing = list(repository)?;
    let chain = if listing.dats.is_empty() {
        by_names(repository, &listing, when)?
    } else {
        committed(repository, &listing, when)?
    };
    let Some(chain) = chain else {
        log::info!(target: LOG, "no files found");
        return Err(Error::NoFiles {
            date: date_shown.map(str::to_owned),
        });
    };
    log::info!(target: LOG, "files needed to recover state as of {when}:");
    for f in &chain.files {
        log::info!(target: LOG, "\t{}", f.display());
    }
    Ok(chain)
}

/// The chain of a repository that keeps `.dat` files.
fn committed(repo: &Path, listing: &Listing, when: &str) -> Result<Option<Chain>> {
    let upto: Vec<&String> = listing
        .data
        .iter()
        .filter(|n| splitext(n).0 <= when)
        .collect();
    // The newest full backup at or before `when` that its `.dat` lists.
    let mut head = None;
    for name in upto.iter().rev() {
        if kind_of(name) != Some(Kind::Full) {
            continue;
        }
        let dat_path = join(repo, &format!("{}.dat", splitext(name).0));
        match dat::read(&dat_path)? {
            Some(lines) if lines.first().is_some_and(|l| l.basename() == name.as_str()) => {
                head = Some((name.as_str(), dat_path, lines));
                break;
            }
            _ => ignored(repo, name, &dat_path),
        }
    }
    // A `.dat` newer than the head (and not after `when`) whose full backup
    // file is gone: recovering the head would silently give an older state.
    let head_root = head.as_ref().map_or("", |(n, _, _)| splitext(n).0);
    for root in &listing.dats {
        if root.as_str() > head_root
            && root.as_str() <= when
            && !upto
                .iter()
                .any(|n| splitext(n).0 == root && kind_of(n) == Some(Kind::Full))
        {
            let dat_path = join(repo, &format!("{root}.dat"));
            // An empty `.dat` (a writer that died before its line) lists
            // nothing, so nothing is lost.
            if dat::read(&dat_path)?.is_some_and(|l| !l.is_empty()) {
                return Err(Error::VerificationFail(format!(
                    "{} lists a backup chain whose full backup file is missing",
                    dat_path.display()
                )));
            }
        }
    }
    let Some((name, dat_path, lines)) = head else {
        return Ok(None);
    };
    let lines: Vec<DatLine> = lines
        .into_iter()
        .filter(|l| splitext(l.basename()).0 <= when)
        .collect();
    let mut files = Vec::with_capacity(lines.len());
    let mut expect_start = 0;
    for line in &lines {
        let path = join(repo, line.basename());
        if line.start != expect_start {
            return Err(Error::VerificationFail(format!(
                "{} starts at byte {}, but the chain before it ends at byte {expect_start}: \
                 a backup file is missing",
                path.display(),
                line.start
            )));
        }
        if !listing.data.iter().any(|n| n == line.basename()) {
            return Err(Error::VerificationFail(format!(
                "{} is missing",
                path.display()
            )));
        }
        expect_start = line.end;
        files.push(path);
    }
    // Data files of this chain's time span that its `.dat` does not list.
    let next_full = upto
        .iter()
        .find(|n| n.as_str() > name && kind_of(n) == Some(Kind::Full))
        .map_or("~", |n| n.as_str());
    for n in upto
        .iter()
        .filter(|n| n.as_str() > name && n.as_str() < next_full)
    {
        if !lines.iter().any(|l| l.basename() == n.as_str()) {
            ignored(repo, n, &dat_path);
        }
    }
    Ok(Some(Chain {
        files,
        lines,
        by_names: false,
    }))
}

fn ignored(repo: &Path, name: &str, dat_path: &Path) {
    log::warn!(
        target: LOG,
        "{} is not listed in {}: an interrupted backup, ignored",
        join(repo, name).display(),
        dat_path.display()
    );
}

/// A repository without `.dat` files: repozo's choice by names (the newest
/// full backup at or before `when` and the increments after it), with a
/// warning. Sizes and checksums live in the `.dat`, so recover checks such a
/// chain by the structure of the Data.fs it makes instead.
fn by_names(repo: &Path, listing: &Listing, when: &str) -> Result<Option<Chain>> {
    let mut needed = Vec::new();
    for name in listing.data.iter().rev() {
        if splitext(name).0 <= when {
            needed.push(name.clone());
            if kind_of(name) == Some(Kind::Full) {
                break;
            }
        }
    }
    needed.reverse();
    if needed.is_empty() {
        return Ok(None);
    }
    if kind_of(&needed[0]) != Some(Kind::Full) {
        return Err(Error::VerificationFail(format!(
            "{} has no full backup before {}",
            repo.display(),
            join(repo, &needed[0]).display()
        )));
    }
    log::warn!(
        target: LOG,
        "{} has no .dat files: choosing the backup files by their names, as repozo does, \
         and checking them by the structure of the recovered Data.fs",
        if repo.as_os_str().is_empty() { Path::new(".") } else { repo }.display()
    );
    let files: Vec<PathBuf> = needed.iter().map(|n| join(repo, n)).collect();
    let lines = files
        .iter()
        .map(|f| DatLine {
            dest: f.to_string_lossy().into_owned(),
            start: 0,
            end: 0,
            md5: String::new(),
        })
        .collect();
    Ok(Some(Chain {
        files,
        lines,
        by_names: true,
    }))
}

/// What [`clean_interrupted`] removed.
#[derive(Debug, Default, Clone)]
pub struct Cleaned {
    /// Data files (and `.index` files) of interrupted backups.
    pub backups: Vec<PathBuf>,
    /// Temporary files of dead runs.
    pub temporaries: Vec<PathBuf>,
}

/// Remove what runs that died before their commit point left in `repo`:
/// data files newer than every committed backup that no `.dat` lists, the
/// `.index` files of the same names, and our temporary files. Logs a
/// warning for each. Call only while holding the repository lock, so that
/// no live run's files are taken.
///
/// A repository without any `.dat` is left alone (its files are backups
/// by name).
///
/// A file that cannot be removed is a warning (readers ignore it, and the
/// next run tries again).
///
/// # Errors
/// [`Error::RepozoIo`] when the directory cannot be listed.
pub fn clean_interrupted(repo: &Path) -> Result<Cleaned> {
    let listing = list(repo)?;
    let mut cleaned = Cleaned::default();
    for t in &listing.temps {
        remove_leftover(
            join(repo, t),
            "a temporary file of an interrupted run",
            &mut cleaned.temporaries,
        );
    }
    if listing.dats.is_empty() {
        return Ok(cleaned);
    }
    for root in &listing.dats {
        let p = join(repo, &format!("{root}.dat"));
        // A `.dat` that cannot be read is not repaired: the chain is then
        // not extended (see `vouch`).
        if dat::repair(&p).unwrap_or(false) {
            log::warn!(
                target: LOG,
                "{}: repaired its last line, which an interrupted backup left without its end",
                p.display()
            );
        }
    }
    let Some((data, indexes)) = uncommitted(repo, &listing) else {
        return Ok(cleaned);
    };
    for p in data {
        remove_leftover(
            p,
            "no .dat lists it, it was left by an interrupted backup",
            &mut cleaned.backups,
        );
    }
    for p in indexes {
        if remove_or_warn(&p) {
            cleaned.backups.push(p);
        }
    }
    Ok(cleaned)
}

/// What [`clean_interrupted`] would remove now, touching nothing (a dry
/// run): temporary files, then the data and `.index` files of interrupted
/// backups. A missing repository holds nothing.
///
/// # Errors
/// [`Error::RepozoIo`] when the directory cannot be listed.
pub fn plan_clean_interrupted(repo: &Path) -> Result<Vec<PathBuf>> {
    if !repo.is_dir() {
        return Ok(Vec::new());
    }
    let listing = list(repo)?;
    let mut out: Vec<PathBuf> = listing.temps.iter().map(|t| join(repo, t)).collect();
    if listing.dats.is_empty() {
        return Ok(out);
    }
    // A torn last `.dat` line is not read (see `dat::read`), so what the
    // `.dat` files list is what they list once repaired.
    if let Some((data, indexes)) = uncommitted(repo, &listing) {
        out.extend(data);
        out.extend(indexes);
    }
    Ok(out)
}

/// The data files newer than every committed backup that no `.dat` lists,
/// and the `.index` files newer than every committed data file without a
/// committed data file of their own: what backups that died before their
/// commit point left. None when a `.dat` cannot be read (what it lists is
/// unknown: no backup is removed).
fn uncommitted(repo: &Path, listing: &Listing) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut listed = BTreeSet::new();
    for root in &listing.dats {
        match dat::read(&join(repo, &format!("{root}.dat"))) {
            Ok(Some(lines)) => listed.extend(lines.iter().map(|l| l.basename().to_owned())),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    let newest_committed = listing
        .data
        .iter()
        .rfind(|n| listed.contains(n.as_str()))
        .map_or("", |n| splitext(n).0);
    let data = listing
        .data
        .iter()
        .filter(|name| !(splitext(name).0 <= newest_committed || listed.contains(name.as_str())))
        .map(|name| join(repo, name))
        .collect();
    let indexes = listing
        .indexes
        .iter()
        .filter(|root| {
            root.as_str() > newest_committed
                && !listing
                    .data
                    .iter()
                    .any(|n| splitext(n).0 == root.as_str() && listed.contains(n))
        })
        .map(|root| join(repo, &format!("{root}.index")))
        .collect();
    Some((data, indexes))
}

/// Remove `p`, left by a dead run (`why`), with a warning saying so, and
/// record it in `removed`.
fn remove_leftover(p: PathBuf, why: &str, removed: &mut Vec<PathBuf>) {
    log::warn!(target: LOG, "removing {}: {why}", p.display());
    if remove_or_warn(&p) {
        removed.push(p);
    }
}

/// Remove what a dead run left; failing that, warn and go on: it is no
/// backup, readers ignore it, and the next run tries again.
fn remove_or_warn(p: &Path) -> bool {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!(target: LOG, "could not remove {}: {}", p.display(), io_err(p, e));
            false
        }
        _ => true,
    }
}

/// Why a chain cannot be extended by an incremental backup.
pub type Doubt = String;

/// Check that the newest chain of `repo` (as of `when`) can be extended:
/// its `.dat` parses, every file it lists exists, the lines follow each
/// other from byte 0, and plain files have the sizes their lines say
/// (compressed ones are checked for their gzip magic; their sizes and
/// every md5 are checked by the checksum mode, which reads them whole).
///
/// `Ok(Err(doubt))` says why not; the caller then makes a full backup.
///
/// # Errors
/// Only for a repository that cannot be listed.
pub fn vouch(repo: &Path, when: &str) -> Result<std::result::Result<Chain, Doubt>> {
    // The listing errors (missing repository) are the caller's to report.
    list(repo)?;
    let chain = match plan_chain(repo, when, None) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if chain.by_names {
        return Ok(Err(format!(
            "{} has no .dat file for its newest chain",
            repo.display()
        )));
    }
    for (path, line) in chain.files.iter().zip(&chain.lines) {
        let meta = match crate::fsutil::open_regular(path).and_then(|f| f.metadata()) {
            Ok(m) => m,
            Err(e) => return Ok(Err(io_err(path, e).to_string())),
        };
        let name = path.to_string_lossy();
        if is_gzip_name(&name) {
            if !has_gzip_magic(path) {
                return Ok(Err(format!("{} is not a gzip file", path.display())));
            }
        } else if meta.len() != line.end - line.start {
            return Ok(Err(format!(
                "{} is {} bytes, should be {} bytes",
                path.display(),
                meta.len(),
                line.end - line.start
            )));
        }
    }
    Ok(Ok(chain))
}

/// Whether `repo` keeps any `.dat` file.
pub(crate) fn has_dat(repo: &Path) -> bool {
    list(repo).is_ok_and(|l| !l.dats.is_empty())
}

fn has_gzip_magic(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 2];
    crate::fsutil::open_regular(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

/// One backup file of a chain found by [`survey`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurveyedFile {
    /// Its name, `YYYY-MM-DD-HH-MM-SS.<ext>`.
    pub name: String,
    /// Its `.dat` line; `None` in a repository without `.dat` files (or
    /// when the chain's `.dat` cannot be read).
    pub line: Option<DatLine>,
    /// Its size on disk; `None` when it is missing.
    pub size: Option<u64>,
}

/// A chain as [`survey`] found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SurveyedChain {
    /// Its `.dat` file name; `None` in a repository without `.dat` files.
    pub dat: Option<String>,
    /// Its backup files, oldest first: the lines of its `.dat`, or, by
    /// names, a full backup and the incrementals after it.
    pub files: Vec<SurveyedFile>,
    /// Why this chain cannot be recovered as its `.dat` claims, in the
    /// words of [`plan_chain`] and [`vouch`]; empty for a whole chain.
    pub broken: Vec<String>,
}

/// Every chain of a repository and what no chain accounts for, found by
/// [`survey`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Survey {
    /// The chains, oldest first.
    pub chains: Vec<SurveyedChain>,
    /// Data files that no `.dat` lists: left by runs that died before
    /// their commit point (never in a repository without `.dat` files).
    pub unlisted: Vec<String>,
    /// Temporary files of our writers (`.<name>.XXXXXX.tmp`): a run that
    /// died, or one that is running now.
    pub temporaries: Vec<String>,
    /// The repository keeps no `.dat`: chains were found by names alone,
    /// and sizes cannot be checked.
    pub by_names: bool,
}

/// Every chain of `repo`, each checked as [`plan_chain`] and [`vouch`]
/// check the newest one (a listed file missing, a gap between two lines, a
/// `.dat` that cannot be parsed or whose full backup file is gone, a plain
/// file of the wrong size, a compressed one that is no gzip file), plus
/// the files no chain accounts for. Reads the listing, the `.dat` files and
/// two bytes of compressed files; writes nothing, logs nothing of its own
/// (a torn `.dat` line is still warned about by [`dat::read`]).
///
/// # Errors
/// [`Error::RepozoIo`] when the directory cannot be listed.
pub fn survey(repo: &Path) -> Result<Survey> {
    let listing = list(repo)?;
    let size = |name: &str| {
        std::fs::symlink_metadata(join(repo, name))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    };
    let mut out = Survey {
        temporaries: listing.temps.clone(),
        by_names: listing.dats.is_empty(),
        ..Survey::default()
    };
    if out.by_names {
        for name in &listing.data {
            let is_full = kind_of(name) == Some(Kind::Full);
            if is_full || out.chains.is_empty() {
                let mut chain = SurveyedChain::default();
                if !is_full {
                    chain.broken.push(format!(
                        "{} has no full backup before {}",
                        repo.display(),
                        join(repo, name).display()
                    ));
                }
                out.chains.push(chain);
            }
            if let Some(chain) = out.chains.last_mut() {
                chain.files.push(SurveyedFile {
                    name: name.clone(),
                    line: None,
                    size: size(name),
                });
            }
        }
        return Ok(out);
    }
    let mut accounted: BTreeSet<String> = BTreeSet::new();
    let roots: Vec<&String> = listing.dats.iter().collect();
    for (i, root) in roots.iter().enumerate() {
        let dat_name = format!("{root}.dat");
        let dat_path = join(repo, &dat_name);
        let mut chain = SurveyedChain {
            dat: Some(dat_name),
            ..SurveyedChain::default()
        };
        let lines = match dat::read(&dat_path) {
            Ok(lines) => lines.unwrap_or_default(),
            Err(e) => {
                // What it lists is unknown: the data files of its time span
                // (up to the next `.dat`) are taken as its own, by names.
                chain.broken.push(e.to_string());
                let next = roots.get(i + 1).map_or("~", |r| r.as_str());
                for name in listing.data.iter().filter(|n| {
                    let r = splitext(n).0;
                    r >= root.as_str() && r < next
                }) {
                    accounted.insert(name.clone());
                    chain.files.push(SurveyedFile {
                        name: name.clone(),
                        line: None,
                        size: size(name),
                    });
                }
                out.chains.push(chain);
                continue;
            }
        };
        // An empty `.dat` (a writer that died before its line) lists
        // nothing, so it is no chain.
        if lines.is_empty() {
            continue;
        }
        let starts_with_its_full = lines.first().is_some_and(|l| {
            kind_of(l.basename()) == Some(Kind::Full) && splitext(l.basename()).0 == root.as_str()
        });
        if !starts_with_its_full {
            chain.broken.push(format!(
                "{} does not start with the line of its full backup",
                dat_path.display()
            ));
        }
        let mut expect_start = 0;
        for line in lines {
            let name = line.basename().to_owned();
            let path = join(repo, &name);
            if line.start != expect_start {
                chain.broken.push(format!(
                    "{} starts at byte {}, but the chain before it ends at byte {expect_start}: \
                     a backup file is missing",
                    path.display(),
                    line.start
                ));
            }
            expect_start = line.end;
            let present = listing.data.contains(&name);
            let file_size = if present { size(&name) } else { None };
            match file_size {
                None if kind_of(&name) == Some(Kind::Full) && chain.files.is_empty() => {
                    chain.broken.push(format!(
                        "{} lists a backup chain whose full backup file is missing",
                        dat_path.display()
                    ));
                }
                None => chain.broken.push(format!("{} is missing", path.display())),
                Some(_) if is_gzip_name(&name) => {
                    if !has_gzip_magic(&path) {
                        chain
                            .broken
                            .push(format!("{} is not a gzip file", path.display()));
                    }
                }
                Some(n) if n != line.end - line.start => chain.broken.push(format!(
                    "{} is {n} bytes, should be {} bytes",
                    path.display(),
                    line.end - line.start
                )),
                Some(_) => {}
            }
            accounted.insert(name.clone());
            chain.files.push(SurveyedFile {
                name,
                line: Some(line),
                size: file_size,
            });
        }
        out.chains.push(chain);
    }
    out.unlisted = listing
        .data
        .iter()
        .filter(|n| !accounted.contains(n.as_str()))
        .cloned()
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, data: &str) {
        std::fs::write(dir.join(name), data).expect("write");
    }

    fn line(dir: &Path, name: &str, start: u64, end: u64) -> String {
        format!("{} {start} {end} x\n", dir.join(name).display())
    }

    /// A full backup and one incremental, committed.
    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path();
        put(p, "2024-01-01-00-00-00.fs", "0123");
        put(p, "2024-01-01-00-00-00.index", "i");
        put(p, "2024-01-02-00-00-00.deltafs", "45");
        put(p, "2024-01-02-00-00-00.index", "i");
        let dat =
            line(p, "2024-01-01-00-00-00.fs", 0, 4) + &line(p, "2024-01-02-00-00-00.deltafs", 4, 6);
        put(p, "2024-01-01-00-00-00.dat", &dat);
        d
    }

    fn names(chain: &Chain) -> Vec<String> {
        chain
            .files
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into())
            .collect()
    }

    #[test]
    fn unlisted_newest_file_is_ignored_then_cleaned() {
        let d = repo();
        put(d.path(), "2024-01-03-00-00-00.deltafs", "67");
        put(d.path(), "2024-01-03-00-00-00.index", "i");
        put(d.path(), ".2024-01-03-00-00-00.deltafs.abc123.tmp", "6");
        let c = plan_chain(d.path(), "2024-12-31", None).expect("chain");
        assert_eq!(
            names(&c),
            ["2024-01-01-00-00-00.fs", "2024-01-02-00-00-00.deltafs"]
        );
        let cleaned = clean_interrupted(d.path()).expect("clean");
        assert_eq!(cleaned.backups.len(), 2);
        assert_eq!(cleaned.temporaries.len(), 1);
        assert!(!d.path().join("2024-01-03-00-00-00.deltafs").exists());
        assert!(!d.path().join("2024-01-03-00-00-00.index").exists());
        // Committed files stay.
        assert!(d.path().join("2024-01-02-00-00-00.deltafs").exists());
        assert!(d.path().join("2024-01-02-00-00-00.index").exists());
    }

    #[test]
    fn unlisted_full_without_dat_is_ignored_then_cleaned() {
        let d = repo();
        put(d.path(), "2024-01-03-00-00-00.fs", "01234567");
        let c = plan_chain(d.path(), "2024-12-31", None).expect("chain");
        assert_eq!(c.files.len(), 2);
        clean_interrupted(d.path()).expect("clean");
        assert!(!d.path().join("2024-01-03-00-00-00.fs").exists());
    }

    #[test]
    fn listed_but_missing_newest_file_is_refused() {
        let d = repo();
        std::fs::remove_file(d.path().join("2024-01-02-00-00-00.deltafs")).expect("rm");
        let e = plan_chain(d.path(), "2024-12-31", None).expect_err("refused");
        assert!(
            e.to_string()
                .ends_with("2024-01-02-00-00-00.deltafs is missing"),
            "{e}"
        );
        // As of the first day, the full alone is fine.
        let c = plan_chain(d.path(), "2024-01-01-12", None).expect("chain");
        assert_eq!(names(&c), ["2024-01-01-00-00-00.fs"]);
    }

    #[test]
    fn missing_newest_full_with_its_dat_is_refused() {
        let d = repo();
        put(
            d.path(),
            "2024-01-05-00-00-00.dat",
            &line(d.path(), "2024-01-05-00-00-00.fs", 0, 9),
        );
        let e = plan_chain(d.path(), "2024-12-31", None).expect_err("refused");
        assert!(e.to_string().contains("full backup file is missing"), "{e}");
    }

    #[test]
    fn gap_is_refused_and_vouch_says_why() {
        let d = repo();
        let p = d.path();
        let dat =
            line(p, "2024-01-01-00-00-00.fs", 0, 4) + &line(p, "2024-01-02-00-00-00.deltafs", 5, 7);
        put(p, "2024-01-01-00-00-00.dat", &dat);
        assert!(plan_chain(p, "2024-12-31", None).is_err());
        let doubt = vouch(p, "2024-12-31").expect("listed").expect_err("doubt");
        assert!(doubt.contains("a backup file is missing"), "{doubt}");
    }

    #[test]
    fn vouch_checks_plain_sizes() {
        let d = repo();
        assert!(vouch(d.path(), "2024-12-31").expect("listed").is_ok());
        put(d.path(), "2024-01-02-00-00-00.deltafs", "4");
        let doubt = vouch(d.path(), "2024-12-31")
            .expect("listed")
            .expect_err("doubt");
        assert!(doubt.contains("is 1 bytes, should be 2 bytes"), "{doubt}");
    }

    #[test]
    fn torn_last_dat_line_is_not_committed_and_is_repaired() {
        let d = repo();
        let p = d.path();
        let dat = p.join("2024-01-01-00-00-00.dat");
        let whole = std::fs::read_to_string(&dat).expect("read");
        // An append cut off in the md5 of a third line.
        put(p, "2024-01-03-00-00-00.deltafs", "67");
        let torn = line(p, "2024-01-03-00-00-00.deltafs", 6, 8).replace(" x\n", " 0123abc");
        std::fs::write(&dat, whole.clone() + &torn).expect("write");
        let c = plan_chain(p, "2024-12-31", None).expect("chain");
        assert_eq!(c.files.len(), 2);
        clean_interrupted(p).expect("clean");
        assert_eq!(std::fs::read_to_string(&dat).expect("read"), whole);
        assert!(!p.join("2024-01-03-00-00-00.deltafs").exists());
        // A whole last line that only lacks its newline is kept, and gets one.
        let md5 = "0123456789abcdef0123456789abcdef";
        let last = format!(
            "{} 6 8 {md5}",
            p.join("2024-01-03-00-00-00.deltafs").display()
        );
        put(p, "2024-01-03-00-00-00.deltafs", "67");
        std::fs::write(&dat, whole.clone() + &last).expect("write");
        assert_eq!(
            plan_chain(p, "2024-12-31", None)
                .expect("chain")
                .files
                .len(),
            3
        );
        clean_interrupted(p).expect("clean");
        assert_eq!(
            std::fs::read_to_string(&dat).expect("read"),
            whole + &last + "\n"
        );
    }

    #[test]
    fn repository_without_dat_is_left_alone() {
        let d = tempfile::tempdir().expect("tempdir");
        put(d.path(), "2024-01-01-00-00-00.fs", "0123");
        let cleaned = clean_interrupted(d.path()).expect("clean");
        assert!(cleaned.backups.is_empty());
        assert!(d.path().join("2024-01-01-00-00-00.fs").exists());
    }

    fn broken_newest(p: &Path) -> Vec<String> {
        survey(p)
            .expect("survey")
            .chains
            .last()
            .map(|c| c.broken.clone())
            .unwrap_or_default()
    }

    #[test]
    fn survey_whole_repository() {
        let d = repo();
        put(d.path(), "2024-01-03-00-00-00.deltafs", "67");
        put(d.path(), ".2024-01-03-00-00-00.deltafs.abc123.tmp", "6");
        let s = survey(d.path()).expect("survey");
        assert!(!s.by_names);
        assert_eq!(s.chains.len(), 1);
        let c = &s.chains[0];
        assert_eq!(c.dat.as_deref(), Some("2024-01-01-00-00-00.dat"));
        assert!(c.broken.is_empty(), "{:?}", c.broken);
        let sizes: Vec<(&str, Option<u64>)> =
            c.files.iter().map(|f| (f.name.as_str(), f.size)).collect();
        assert_eq!(
            sizes,
            [
                ("2024-01-01-00-00-00.fs", Some(4)),
                ("2024-01-02-00-00-00.deltafs", Some(2))
            ]
        );
        assert_eq!(s.unlisted, ["2024-01-03-00-00-00.deltafs"]);
        assert_eq!(s.temporaries, [".2024-01-03-00-00-00.deltafs.abc123.tmp"]);
        // Nothing was removed.
        assert!(d.path().join("2024-01-03-00-00-00.deltafs").exists());
    }

    #[test]
    fn survey_missing_increment_as_plan_chain() {
        let d = repo();
        std::fs::remove_file(d.path().join("2024-01-02-00-00-00.deltafs")).expect("rm");
        assert!(plan_chain(d.path(), "9999", None).is_err());
        let broken = broken_newest(d.path());
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].ends_with("2024-01-02-00-00-00.deltafs is missing"));
    }

    #[test]
    fn survey_gap_and_size_as_vouch() {
        let d = repo();
        let p = d.path();
        let dat =
            line(p, "2024-01-01-00-00-00.fs", 0, 4) + &line(p, "2024-01-02-00-00-00.deltafs", 5, 7);
        put(p, "2024-01-01-00-00-00.dat", &dat);
        assert!(plan_chain(p, "9999", None).is_err());
        let broken = broken_newest(p);
        assert!(broken[0].contains("a backup file is missing"), "{broken:?}");
        put(
            p,
            "2024-01-01-00-00-00.dat",
            &line(p, "2024-01-01-00-00-00.fs", 0, 5),
        );
        let doubt = vouch(p, "9999").expect("listed").expect_err("doubt");
        assert_eq!(broken_newest(p), [doubt]);
    }

    #[test]
    fn survey_missing_full_with_its_dat_as_plan_chain() {
        let d = repo();
        put(
            d.path(),
            "2024-01-05-00-00-00.dat",
            &line(d.path(), "2024-01-05-00-00-00.fs", 0, 9),
        );
        assert!(plan_chain(d.path(), "9999", None).is_err());
        let s = survey(d.path()).expect("survey");
        assert_eq!(s.chains.len(), 2);
        assert!(s.chains[0].broken.is_empty());
        assert!(
            s.chains[1].broken[0].contains("full backup file is missing"),
            "{:?}",
            s.chains[1].broken
        );
    }

    #[test]
    fn survey_unparsable_dat_takes_its_files_by_name() {
        let d = repo();
        put(d.path(), "2024-01-01-00-00-00.dat", "garbage\n");
        assert!(plan_chain(d.path(), "9999", None).is_err());
        let s = survey(d.path()).expect("survey");
        assert_eq!(s.chains.len(), 1);
        assert!(s.chains[0].broken[0].contains("expected 4 fields"));
        assert_eq!(s.chains[0].files.len(), 2);
        assert!(s.unlisted.is_empty());
    }

    #[test]
    fn survey_by_names() {
        let d = tempfile::tempdir().expect("tempdir");
        put(d.path(), "2024-01-01-00-00-00.deltafs", "x");
        put(d.path(), "2024-01-02-00-00-00.fs", "0123");
        put(d.path(), "2024-01-03-00-00-00.deltafs", "45");
        let s = survey(d.path()).expect("survey");
        assert!(s.by_names);
        assert_eq!(s.chains.len(), 2);
        assert!(s.chains[0].broken[0].contains("has no full backup before"));
        assert!(s.chains[1].broken.is_empty());
        assert_eq!(s.chains[1].files.len(), 2);
        assert_eq!(s.chains[1].files[1].size, Some(2));
    }
}
