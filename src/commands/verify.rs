//! `verify`: are the backups of a site whole, and do each Data.fs state
//! and its blob backup belong together?
//!
//! For the selected backup state(s) of every storage, in the locations a
//! restore script of the same mode reads (see `restore.rs`):
//!
//! 1. the filestorage chain a restore would use is checked as `repozo -V`
//!    does (every file's size and md5 against its `.dat` line), while it
//!    is streamed, once per chain, through
//!    [`crate::filestorage::blobrefs`], which lists the data records that
//!    need a blob file;
//! 2. the blob backup a restore would pair with that state (the one of the
//!    same stamp, with dated blob backups) is read: every file of a
//!    directory backup is opened and, where the backup has a manifest
//!    ([`crate::blobs::manifest`]), its size compared; a chain of archives
//!    is read to its end (tar headers, member data, gzip trailers);
//! 3. every blob record of the state must have its file
//!    `<oid path>/<tid>.blob` in that blob backup, in the layout its
//!    `.layout` names.
//!
//! Every problem is logged as one error line, and the run goes on; the
//! result is [`Error::VerificationFail`] with the count. What is not
//! checked: the state pickles, and blob files no record needs (a blob
//! backup may hold files of transactions made after its filestorage
//! backup, as a backup copies the blob directory after the Data.fs).
//! No backup is written; the locations read are locked as a restore locks
//! them (see docs/repository.rst), so that a running backup or retention
//! is waited for instead of being reported as damage.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use super::restore::sources;
use super::{BlobSettings, RestoreMode};
use crate::blobs::archive;
use crate::blobs::manifest::{self, MANIFEST};
use crate::blobs::naming::{parse_repozo_data_file, repozo_data_files};
use crate::blobs::restore::{find_backup, find_exact, RestoreOptions, Selected};
use crate::blobs::tree::{self, EntryKind, WalkOptions};
use crate::config::{BackupConfig, RestoreDate, Storage};
use crate::error::{Error, Result};
use crate::filestorage::blobrefs::{blob_records, oid_repr, BlobRecords};
use crate::filestorage::{Oid, Tid};
use crate::repozo::chain::{plan_chain, Chain};
use crate::repozo::naming::gen_filename;
use crate::repozo::verify::ChainReader;

/// Which backup states to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// The newest state (what a restore without a date restores).
    Newest,
    /// The state a restore to this date would choose.
    Date(&'a RestoreDate),
    /// Every state a restore can be asked for: every `.dat` line of every
    /// chain.
    All,
}

impl<'a> Selection<'a> {
    /// The selection of `verify [DATE|--all]`: a date, all, or neither.
    ///
    /// # Errors
    /// Both a date and all.
    pub fn new(date: Option<&'a RestoreDate>, all: bool) -> Result<Self> {
        match (date, all) {
            (Some(_), true) => Err(Error::Config(
                "verify takes a date or all, not both.".to_owned(),
            )),
            (Some(d), false) => Ok(Selection::Date(d)),
            (None, true) => Ok(Selection::All),
            (None, false) => Ok(Selection::Newest),
        }
    }
}

/// The problems found so far: each is logged when found.
#[derive(Default)]
struct Problems {
    count: usize,
}

impl Problems {
    fn report(&mut self, what: impl Display) {
        log::error!("{what}");
        self.count += 1;
    }
}

/// Verify the selected backup states of every storage of `cfg`, in the
/// locations of `mode`. `now` fixes the clock that "newest" is measured
/// against (tests); `None`: the system clock.
///
/// # Errors
/// [`Error::VerificationFail`] `verify found N problems` after all checks,
/// every problem having been logged as an error line; [`Error::Config`]
/// when the mode has no locations configured.
pub fn verify(
    cfg: &BackupConfig,
    mode: RestoreMode,
    selection: Selection<'_>,
    now: Option<DateTime<Utc>>,
) -> Result<()> {
    let mut settings = BlobSettings::from_config(cfg);
    if mode == RestoreMode::Zip {
        // Zip backups are one numbered archive.
        settings.archive = true;
        settings.timestamps = false;
    }
    // Every storage needs a location in this mode, checked before any is
    // verified.
    let mut storages = Vec::with_capacity(cfg.storages.len());
    for s in &cfg.storages {
        let (fs_location, blob_location) = sources(s, mode);
        let blob_location = blob_location.filter(|_| s.blobdir.is_some());
        if fs_location.is_none() && !cfg.only_blobs {
            return Err(Error::Config(format!(
                "No backup location to verify for {} in this mode.",
                s.datafs.display()
            )));
        }
        storages.push((s, fs_location, blob_location));
    }
    let _locks = crate::lock::lock_locations(
        storages
            .iter()
            .flat_map(|(_, fs, blobs)| [fs.filter(|_| !cfg.only_blobs), *blobs])
            .flatten(),
    )?;
    let mut problems = Problems::default();
    let now = now.unwrap_or_else(Utc::now);
    for (s, fs_location, blob_location) in storages {
        let v = StorageVerify {
            storage: s,
            blob_location,
            settings: &settings,
            selection,
        };
        match fs_location {
            Some(repo) if !cfg.only_blobs => {
                for planned in chains(repo, selection, now) {
                    match planned {
                        Ok((chain, states)) => v.chain(&chain, &states, &mut problems),
                        Err(e) => problems.report(format_args!("{}: {e}", repo.display())),
                    }
                }
            }
            _ => {
                if let Some(loc) = blob_location {
                    v.blob_backups_only(loc, &mut problems);
                }
            }
        }
    }
    match problems.count {
        0 => Ok(()),
        1 => Err(Error::VerificationFail("verify found 1 problem".to_owned())),
        n => Err(Error::VerificationFail(format!(
            "verify found {n} problems"
        ))),
    }
}

/// The chains to verify, each with the indexes of its states (its `.dat`
/// lines) to check.
fn chains(
    repo: &Path,
    selection: Selection<'_>,
    now: DateTime<Utc>,
) -> Vec<Result<(Chain, Vec<usize>)>> {
    let last_state = |c: Chain| {
        let n = c.files.len().saturating_sub(1);
        (c, vec![n])
    };
    match selection {
        Selection::Newest => vec![plan_chain(repo, &gen_filename(now, ""), None).map(last_state)],
        Selection::Date(d) => {
            let when = d.to_string();
            vec![plan_chain(repo, &when, Some(&when)).map(last_state)]
        }
        Selection::All => {
            let files = match repozo_data_files(repo) {
                Ok(f) => f,
                Err(e) => return vec![Err(e)],
            };
            if files.is_empty() {
                return vec![Err(Error::NoFiles { date: None })];
            }
            // For every full backup, the newest file before the next full
            // backup: the date whose restore uses that whole chain.
            let mut whens = Vec::new();
            for (i, (_, full)) in files.iter().enumerate() {
                if *full && i > 0 {
                    whens.push(files[i - 1].0.clone());
                }
            }
            if let Some((last, _)) = files.last() {
                whens.push(last.clone());
            }
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for when in whens {
                match plan_chain(repo, &when, Some(&when)) {
                    Ok(c) => {
                        let Some(head) = c.files.first() else {
                            continue;
                        };
                        if !seen.insert(head.clone()) {
                            continue;
                        }
                        let states = if c.by_names {
                            vec![c.files.len().saturating_sub(1)]
                        } else {
                            (0..c.files.len()).collect()
                        };
                        out.push(Ok((c, states)));
                    }
                    Err(Error::NoFiles { .. }) => {}
                    Err(e) => out.push(Err(e)),
                }
            }
            out
        }
    }
}

struct StorageVerify<'a> {
    storage: &'a Storage,
    blob_location: Option<&'a Path>,
    settings: &'a BlobSettings,
    selection: Selection<'a>,
}

impl StorageVerify<'_> {
    fn restore_options(&self, location: &Path, date: Option<&RestoreDate>) -> RestoreOptions {
        RestoreOptions {
            location: location.to_path_buf(),
            target: self
                .storage
                .blobdir
                .clone()
                .unwrap_or_else(|| PathBuf::from("blobstorage")),
            date: date.map(Into::into),
            prefer_archives: self.settings.archive,
            timestamps: self.settings.timestamps,
        }
    }

    /// One chain: its checksums and blob records in one pass, then each of
    /// `states` against its blob backup.
    fn chain(&self, chain: &Chain, states: &[usize], problems: &mut Problems) {
        let Some(first) = chain.files.first() else {
            return;
        };
        let mut reader = ChainReader::new(chain);
        let scanned = blob_records(&mut reader, first);
        // The scan stops at damage or at the end of the committed data:
        // read the rest, so that every file of the chain still gets its
        // size and checksum checked (a missing later increment is named).
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let chain_ok = reader.problems.is_empty();
        for p in reader.problems {
            problems.report(p);
        }
        let refs = match scanned {
            Ok(r) => r,
            Err(e) => {
                problems.report(e);
                return;
            }
        };
        if chain_ok && !chain.by_names && refs.end != chain.total() {
            problems.report(format_args!(
                "{}: the chain holds committed transactions up to byte {} of its {} bytes",
                first.display(),
                refs.end,
                chain.total()
            ));
        }
        if let Some((pos, why)) = &refs.first_unreadable {
            log::warn!(
                "{}: {} data records whose class could not be read were not checked against the blobs (the first at offset {pos}: {why})",
                first.display(),
                refs.unreadable
            );
        }
        let mut contents: HashMap<String, Option<BlobContents>> = HashMap::new();
        for &i in states {
            let before = problems.count;
            let Some(stamp) = chain
                .files
                .get(i)
                .and_then(|f| f.file_name()?.to_str())
                .and_then(parse_repozo_data_file)
                .map(|(s, _)| s.to_owned())
            else {
                continue;
            };
            let end = if chain.by_names {
                refs.end
            } else {
                chain.lines.get(i).map_or(refs.end, |l| l.end)
            };
            let newest_state = i + 1 == chain.files.len();
            let checked = match self.blob_location {
                Some(loc) => self.blob_state(
                    loc,
                    &stamp,
                    newest_state,
                    end,
                    &refs,
                    &mut contents,
                    problems,
                ),
                None => Some(0),
            };
            if let Some(n) = checked {
                if problems.count == before {
                    log::info!(
                        "Verified {} at {stamp}: {n} blob records checked.",
                        self.storage.datafs.display()
                    );
                }
            }
        }
    }

    /// Check the blob records of the state ending at `end` against the
    /// blob backup a restore would pair with it. Returns the number of
    /// records checked, `None` when there was nothing to check against.
    #[allow(clippy::too_many_arguments)]
    fn blob_state(
        &self,
        loc: &Path,
        stamp: &str,
        newest_state: bool,
        end: u64,
        refs: &BlobRecords,
        cache: &mut HashMap<String, Option<BlobContents>>,
        problems: &mut Problems,
    ) -> Option<usize> {
        let opts = self.restore_options(loc, None);
        let selected = if self.settings.timestamps {
            find_exact(&opts, stamp)
        } else {
            // Numbered blob backups carry no date: restore picks them by
            // time, so only the state a restore would pair them with is
            // checked.
            match self.selection {
                Selection::Date(d) => find_backup(&self.restore_options(loc, Some(d))),
                _ if newest_state => find_backup(&opts),
                _ => {
                    log::info!(
                        "{}: numbered blob backups cannot be matched with the filestorage backup of {stamp}; its blobs are not checked.",
                        loc.display()
                    );
                    return None;
                }
            }
        };
        let selected = match selected {
            Ok(s) => s,
            Err(Error::NoBlobBackupAtDate { .. }) if self.settings.timestamps => {
                problems.report(format_args!(
                    "No blob backup of {stamp} (the date of its filestorage backup) in {}.",
                    loc.display()
                ));
                return None;
            }
            Err(e) => {
                problems.report(format_args!(
                    "No usable blob backup for the filestorage backup of {stamp} in {}: {e}",
                    loc.display()
                ));
                return None;
            }
        };
        let key = describe(&selected);
        let contents = cache
            .entry(key.clone())
            .or_insert_with(|| BlobContents::read(&selected, problems))
            .as_ref()?;
        let records = refs.up_to(end);
        for r in records {
            let rel = contents.layout.path(r.oid, r.tid);
            if !contents.files.contains_key(&rel) {
                problems.report(format_args!(
                    "The blob of oid {} tid {} is missing from {key} ({}).",
                    oid_repr(r.oid.0),
                    oid_repr(r.tid.0),
                    rel.display()
                ));
            }
        }
        Some(records.len())
    }

    /// `only_blobs`: the blob backups are checked as readable and complete.
    fn blob_backups_only(&self, loc: &Path, problems: &mut Problems) {
        let date = match self.selection {
            Selection::Date(d) => Some(d),
            _ => None,
        };
        match find_backup(&self.restore_options(loc, date)) {
            Ok(sel) => {
                let before = problems.count;
                if let Some(c) = BlobContents::read(&sel, problems) {
                    if problems.count == before {
                        log::info!("Verified {}: {} files.", describe(&sel), c.files.len());
                    }
                }
            }
            Err(e) => problems.report(format_args!("{}: {e}", loc.display())),
        }
    }
}

/// A blob backup's name for messages: the directory, or the newest archive
/// of the chain.
fn describe(sel: &Selected) -> String {
    match sel {
        Selected::Directory { backup, .. } => backup.display().to_string(),
        Selected::Archives { chain } => chain
            .last()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    }
}

/// How oids become directories in a blob tree (ZODB's `.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One directory level per byte of the oid: `0x00/.../0x2a`.
    Bushy,
    /// One directory per oid: `0x2a`.
    Lawn,
}

impl Layout {
    fn parse(text: Option<&str>) -> Option<Self> {
        match text.map(str::trim) {
            None | Some("bushy") => Some(Layout::Bushy),
            Some("lawn") => Some(Layout::Lawn),
            Some(_) => None,
        }
    }

    /// `<oid path>/<tid>.blob`, as ZODB names a blob revision's file.
    fn path(self, oid: Oid, tid: Tid) -> PathBuf {
        let mut p = PathBuf::new();
        match self {
            Layout::Bushy => {
                for b in oid.0 {
                    p.push(format!("0x{b:02x}"));
                }
            }
            Layout::Lawn => p.push(oid_repr(oid.0)),
        }
        p.push(format!("{}.blob", oid_repr(tid.0)));
        p
    }
}

/// The files of a blob backup, as a restore would write them.
struct BlobContents {
    layout: Layout,
    /// Relative path → size.
    files: HashMap<PathBuf, u64>,
}

impl BlobContents {
    /// Read a selected backup, reporting what is unreadable or of the wrong
    /// size; `None` when it cannot be read at all.
    fn read(sel: &Selected, problems: &mut Problems) -> Option<Self> {
        let (files, layout_text) = match sel {
            Selected::Directory { backup, tree } => {
                let t = match tree::walk(tree, &WalkOptions::default()) {
                    Ok(t) => t,
                    Err(e) => {
                        problems.report(e);
                        return None;
                    }
                };
                let unreadable: Vec<Error> = t
                    .entries
                    .par_iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .filter_map(|e| {
                        let p = tree.join(&e.rel);
                        std::fs::File::open(&p).err().map(|err| Error::io(&p, err))
                    })
                    .collect();
                for e in unreadable {
                    problems.report(e);
                }
                let files: HashMap<PathBuf, u64> = t
                    .entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .map(|e| (e.rel.clone(), e.size))
                    .collect();
                match manifest::read(&backup.join(MANIFEST)) {
                    Ok(Some(listed)) => {
                        for (rel, size) in listed {
                            match files.get(&rel) {
                                None => problems.report(format_args!(
                                    "{} is listed in {} but missing.",
                                    tree.join(&rel).display(),
                                    MANIFEST
                                )),
                                Some(n) if *n != size => problems.report(format_args!(
                                    "{} is {n} bytes, but {} says {size} bytes.",
                                    tree.join(&rel).display(),
                                    MANIFEST
                                )),
                                Some(_) => {}
                            }
                        }
                    }
                    Ok(None) => log::debug!(
                        "{} has no {MANIFEST}: file sizes are not checked",
                        backup.display()
                    ),
                    Err(e) => problems.report(e),
                }
                let layout = std::fs::read_to_string(tree.join(".layout")).ok();
                (files, layout)
            }
            Selected::Archives { chain } => match archive::list(chain) {
                Ok(l) => (l.files, l.layout),
                Err(e) => {
                    problems.report(e);
                    return None;
                }
            },
        };
        let Some(layout) = Layout::parse(layout_text.as_deref()) else {
            problems.report(format_args!(
                "{}: unknown blob layout {:?} in its .layout file",
                describe(sel),
                layout_text.unwrap_or_default().trim()
            ));
            return None;
        };
        Some(BlobContents { layout, files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths_as_zodb() {
        let oid = Oid::from(0x2a);
        let tid = Tid(0x03e5_0000_0000_0001u64.to_be_bytes());
        assert_eq!(
            Layout::Bushy.path(oid, tid),
            PathBuf::from("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x2a/0x03e5000000000001.blob")
        );
        assert_eq!(
            Layout::Lawn.path(oid, tid),
            PathBuf::from("0x2a/0x03e5000000000001.blob")
        );
        assert_eq!(Layout::parse(Some("lawn\n")), Some(Layout::Lawn));
        assert_eq!(Layout::parse(None), Some(Layout::Bushy));
        assert_eq!(Layout::parse(Some("grass")), None);
    }
}
