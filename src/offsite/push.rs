//! `push`: upload what the store lacks, then apply retention there.
//!
//! Repository files never change once their `.dat` lists them, so a name
//! the store has with the same size is not sent again; a `.dat` is sent
//! again when it grew, and always after the files it lists. A directory
//! blob backup is sent as the blob files the store does not have yet (known
//! from its manifests, without listing the bucket) and then its manifest.
//! Each confirmed upload of a blob file is also written to a journal in the
//! local blob location, so a push that was interrupted resumes where it
//! stopped; the journal goes when the manifests are up.
//!
//! Nothing is removed from the store until everything of the run was
//! uploaded and confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::manifest::{self, FileEntry, Known, Manifest};
use super::store::{self, Store};
use super::{configured, places, OffsiteConfig, Place, Set};
use crate::blobs::naming::{BackupName, Kind, Stamp};
use crate::commands::BackupMode;
use crate::config::{BackupConfig, Storage};
use crate::error::{Error, IoContext, Result};
use crate::repozo::chain;
use crate::repozo::naming::splitext;
use crate::repozo::retention::plan_retention;

/// The journal of blob files confirmed by the store but not yet in a
/// manifest there, in a blob backup location.
pub const JOURNAL: &str = ".crb-offsite-journal";

/// `bin/offsite push`: every set that has local backups, under the same
/// location locks the backup scripts take.
///
/// # Errors
/// The first failure; nothing is removed from the store after one.
pub fn push(cfg: &BackupConfig, sets: &[Set]) -> Result<()> {
    let ocfg = configured(cfg)?;
    let places = places(cfg, sets);
    let dirs: Vec<&Path> = places
        .iter()
        .flat_map(|p| [p.fs_location, p.blob_location])
        .flatten()
        .filter(|d| d.is_dir())
        .collect();
    let _locks = crate::lock::lock_locations(dirs)?;
    let _offsite = lock_offsite(cfg)?;
    push_places(ocfg, &places)
}

/// After a successful backup and local retention (the run's location locks
/// still held): push the set the script wrote.
///
/// # Errors
/// As [`push`].
pub fn push_after_backup(cfg: &BackupConfig, mode: BackupMode) -> Result<()> {
    let Some(ocfg) = cfg.offsite.as_ref() else {
        return Ok(());
    };
    let _offsite = lock_offsite(cfg)?;
    push_places(ocfg, &places(cfg, &[Set::of_mode(mode)]))
}

/// One push at a time per configuration, whatever the set: a push reuses
/// blob files that the manifests of the other sets name, and its retention
/// removes blob files no manifest names any more, so two pushes must not
/// overlap. The lock is `.crb-offsite/.crb.lock` in the main storage's
/// backup location (its blob backup location with `only_blobs`).
fn lock_offsite(cfg: &BackupConfig) -> Result<Option<crate::lock::LocationLock>> {
    let Some(main) = cfg.storages.last() else {
        return Ok(None);
    };
    let base = if cfg.only_blobs {
        main.blob_backup_location.as_deref()
    } else {
        Some(main.backup_location.as_path())
    };
    let Some(base) = base else {
        return Ok(None);
    };
    let dir = base.join(".crb-offsite");
    std::fs::create_dir_all(&dir).at(&dir)?;
    crate::lock::lock_location(&dir).map(Some)
}

fn push_places(ocfg: &OffsiteConfig, places: &[Place<'_>]) -> Result<()> {
    let store = Store::open(ocfg)?;
    log::info!("Pushing backups to {}", store.url());
    // Manifests in the store, per storage: what is known to be there.
    let mut remote_manifests: BTreeMap<String, Vec<(String, Manifest)>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for place in places {
        let name = &place.storage.name;
        if !remote_manifests.contains_key(name) {
            remote_manifests.insert(name.clone(), load_manifests(&store, place.storage)?);
        }
        let manifests = remote_manifests
            .get_mut(name)
            .ok_or_else(|| Error::Offsite("internal: manifests not loaded".to_owned()))?;
        let outcome = push_place(&store, place, place.set.keep(ocfg), manifests)?;
        outcomes.push(outcome);
    }
    // Everything is up: retention in the store.
    let mut pruned: BTreeSet<&str> = BTreeSet::new();
    for (place, outcome) in places.iter().zip(&outcomes) {
        let manifests = remote_manifests
            .get_mut(&place.storage.name)
            .ok_or_else(|| Error::Offsite("internal: manifests not loaded".to_owned()))?;
        if retain(&store, place, place.set.keep(ocfg), outcome, manifests)? {
            pruned.insert(place.storage.name.as_str());
        }
    }
    // Blob files can only have lost their last reference where a manifest
    // went: the other pushes list nothing of the (large) blob file area.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for place in places {
        if pruned.contains(place.storage.name.as_str()) && done.insert(&place.storage.name) {
            collect_garbage(
                &store,
                place.storage,
                &remote_manifests[&place.storage.name],
            )?;
        }
    }
    for place in places {
        if let Some(loc) = place.blob_location {
            remove_journal(loc)?;
        }
    }
    Ok(())
}

/// What the store holds of one place after its push.
#[derive(Debug, Default)]
struct Outcome {
    /// Repozo file names in the store.
    fs_names: Vec<String>,
    /// Blob backup entries in the store (archives, `.snar`, and directory
    /// backups by their entry name).
    blob_units: Vec<BackupName>,
}

/// Every manifest of `storage` in the store (all sets): (key, manifest).
pub(super) fn load_manifests(store: &Store, storage: &Storage) -> Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for set in Set::ALL {
        let dir = super::blob_dir(storage, set);
        for key in store.list(&dir)?.into_keys() {
            if !key.ends_with(manifest::SUFFIX) {
                continue;
            }
            if let Some(bytes) = store.get_bytes(&key)? {
                out.push((key.clone(), Manifest::parse(&key, &bytes)?));
            }
        }
    }
    Ok(out)
}

/// One place: the repository's data files, then the blob backups, then
/// the `.dat` files, which make a restore point count in the store (its
/// blob backup is there before it). What the store's retention would
/// remove at once is not sent.
fn push_place(
    store: &Store,
    place: &Place<'_>,
    keep: u32,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<Outcome> {
    let repo = place.fs_location.filter(|r| r.is_dir());
    let loc = place.blob_location.filter(|l| l.is_dir());
    let fs_dir = place.fs_dir();
    let blob_dir = place.blob_dir();
    let fs_remote = match repo {
        Some(_) => store.names(&fs_dir)?,
        None => BTreeMap::new(),
    };
    let blob_remote = match loc {
        Some(_) => store.names(&blob_dir)?,
        None => BTreeMap::new(),
    };
    let fs_local = match repo {
        Some(r) => committed_files(r)?,
        None => (Vec::new(), Vec::new()),
    };
    let blob_local = match loc {
        Some(l) => local_units(l)?,
        None => Vec::new(),
    };
    // The store's retention over what it will hold after this push.
    let mut all_fs: BTreeSet<String> = fs_remote.keys().cloned().collect();
    all_fs.extend(fs_local.0.iter().chain(&fs_local.1).cloned());
    let mut all_units: Vec<BackupName> = remote_units(&blob_remote);
    all_units.extend(blob_local.iter().cloned());
    let cut = Cut::new(&all_fs.into_iter().collect::<Vec<_>>(), &all_units, keep);

    let mut outcome = Outcome::default();
    let mut fs_remote = fs_remote;
    let fs_plan = match repo {
        Some(r) => Some(plan_filestorage(
            store, &fs_dir, r, &fs_local, &fs_remote, &cut,
        )?),
        None => None,
    };
    if let Some(plan) = &fs_plan {
        upload_repository_files(store, &plan.data, &mut fs_remote)?;
    }
    if let Some(l) = loc {
        outcome.blob_units =
            push_blobs(store, place, l, &blob_local, blob_remote, &cut, manifests)?;
    }
    if let (Some(plan), Some(r)) = (&fs_plan, repo) {
        upload_repository_files(store, &plan.dats, &mut fs_remote)?;
        log::info!(
            "Pushed {} repository files ({}) of {} to {}",
            plan.data.len() + plan.dats.len(),
            human(plan.bytes),
            r.display(),
            store.url()
        );
    }
    outcome.fs_names = fs_remote.into_keys().collect();
    Ok(outcome)
}

/// The store's retention rule, decided once for pushing and for removing:
/// the repozo files it removes, and the stamp before which blob backups go.
#[derive(Debug, Default)]
pub(super) struct Cut {
    /// Repozo file names retention removes.
    pub fs_remove: BTreeSet<String>,
    /// Blob backups with an earlier timestamp go.
    pub blob_cutoff: Option<String>,
}

impl Cut {
    /// `keep` full backups (0: all) over these names: the newest `keep`
    /// full backups stay with every file after the oldest of them, as
    /// locally; blob backups older than that full backup go. Without
    /// repozo files (only blobs): the newest `keep` full blob backups stay.
    pub(super) fn new(fs_names: &[String], units: &[BackupName], keep: u32) -> Cut {
        if keep == 0 {
            return Cut::default();
        }
        let plan = plan_retention(fs_names, keep, None);
        let blob_cutoff = if plan.kept_fulls.is_empty() {
            let mut fulls: Vec<&str> = units
                .iter()
                .filter(|b| matches!(b.kind, Kind::Dir | Kind::Tar { delta: false, .. }))
                .filter_map(BackupName::timestamp)
                .collect();
            fulls.sort_unstable();
            fulls.dedup();
            fulls.reverse();
            let keep = usize::try_from(keep).unwrap_or(usize::MAX);
            fulls
                .get(keep.saturating_sub(1))
                .filter(|_| fulls.len() > keep)
                .map(|s| (*s).to_owned())
        } else {
            plan.kept_fulls
                .last()
                .cloned()
                .filter(|_| !plan.remove.is_empty())
        };
        Cut {
            fs_remove: plan.remove.into_iter().collect(),
            blob_cutoff,
        }
    }

    /// Does retention remove this blob backup?
    pub(super) fn removes_unit(&self, b: &BackupName) -> bool {
        match (&self.blob_cutoff, b.timestamp()) {
            (Some(c), Some(t)) => t < c.as_str(),
            _ => false,
        }
    }
}

/// Blob backup entries named by a listing of a set's `blobstorage/`.
pub(super) fn remote_units(listing: &BTreeMap<String, u64>) -> Vec<BackupName> {
    listing
        .keys()
        .filter_map(|n| BackupName::parse(n.strip_suffix(manifest::SUFFIX).unwrap_or(n)))
        .collect()
}

/// The blob backup entries of a local location, archives before their
/// `.snar` snapshot files (a snapshot file must never be ahead of the
/// archives it describes), by name otherwise.
fn local_units(loc: &Path) -> Result<Vec<BackupName>> {
    let mut local: Vec<BackupName> = std::fs::read_dir(loc)
        .at(loc)?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(BackupName::parse))
        .collect();
    local.sort_by_key(|b| (b.kind == Kind::Snar, b.file_name()));
    Ok(local)
}

/// The repozo files a push sends: (data and `.index` files, `.dat` files),
/// those of every whole chain. Files no `.dat` lists (a run that died
/// before its commit point) and broken chains are not sent.
pub(super) fn committed_files(repo: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let survey = chain::survey(repo)?;
    let mut data = Vec::new();
    let mut dats = Vec::new();
    for c in &survey.chains {
        if !c.broken.is_empty() {
            log::warn!(
                "Not pushing a broken chain of {}: {}",
                repo.display(),
                c.broken.join("; ")
            );
            continue;
        }
        for f in &c.files {
            if f.size.is_some() {
                data.push(f.name.clone());
                let index = format!("{}.index", splitext(&f.name).0);
                if repo.join(&index).is_file() {
                    data.push(index);
                }
            }
        }
        dats.extend(c.dat.clone());
    }
    Ok((data, dats))
}

/// What a push sends of a repository: data and `.index` files, then
/// `.dat` files.
struct FsPlan {
    data: Vec<(PathBuf, String)>,
    dats: Vec<(PathBuf, String)>,
    bytes: u64,
}

fn plan_filestorage(
    store: &Store,
    dir: &str,
    repo: &Path,
    (data, dats): &(Vec<String>, Vec<String>),
    remote: &BTreeMap<String, u64>,
    cut: &Cut,
) -> Result<FsPlan> {
    let mut plan = FsPlan {
        data: Vec::new(),
        dats: Vec::new(),
        bytes: 0,
    };
    for (name, is_dat) in data
        .iter()
        .map(|n| (n, false))
        .chain(dats.iter().map(|n| (n, true)))
    {
        if cut.fs_remove.contains(name) {
            continue;
        }
        let path = repo.join(name);
        let size = std::fs::metadata(&path).at(&path)?.len();
        let conflict = match remote.get(name) {
            Some(s) if *s == size => continue,
            // A `.dat` grows; nothing else changes once listed.
            Some(s) => !is_dat || *s > size,
            None => false,
        };
        if conflict {
            return Err(Error::Offsite(format!(
                "{}: {dir}/{name} differs in size from the local {}: does another site push to the same place?",
                store.url(),
                path.display()
            )));
        }
        plan.bytes += size;
        let item = (path, format!("{dir}/{name}"));
        if is_dat {
            plan.dats.push(item);
        } else {
            plan.data.push(item);
        }
    }
    Ok(plan)
}

fn upload_repository_files(
    store: &Store,
    files: &[(PathBuf, String)],
    remote: &mut BTreeMap<String, u64>,
) -> Result<()> {
    store.put_files(files, |i, u| {
        if let Some(name) = files[i].1.rsplit('/').next() {
            remote.insert(name.to_owned(), u.size);
        }
        Ok(())
    })
}

fn push_blobs(
    store: &Store,
    place: &Place<'_>,
    loc: &Path,
    local: &[BackupName],
    mut remote: BTreeMap<String, u64>,
    cut: &Cut,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<Vec<BackupName>> {
    let dir = place.blob_dir();
    let mut known = Known::default();
    for (_, m) in manifests.iter() {
        known.add_manifest(m);
    }
    for f in read_journal(store, loc)? {
        known.add(f);
    }
    for name in local {
        if cut.removes_unit(name) {
            continue;
        }
        let entry = name.file_name();
        let path = loc.join(&entry);
        match (name.kind, &name.stamp) {
            (Kind::Dir, Stamp::Time(_)) => {
                let mkey = format!("{dir}/{entry}{}", manifest::SUFFIX);
                if remote.contains_key(&format!("{entry}{}", manifest::SUFFIX)) {
                    continue;
                }
                let m = push_directory(store, place, loc, name, &mut known)?;
                let bytes = m.to_bytes()?;
                let size = bytes.len() as u64;
                store.put_bytes(&mkey, bytes)?;
                remote.insert(format!("{entry}{}", manifest::SUFFIX), size);
                manifests.push((mkey, m));
            }
            (Kind::Dir, Stamp::Number(_)) => {
                // Refused by the configuration for dated sets; the zip set
                // makes archives.
                log::warn!(
                    "Not pushing {}: numbered blob backups are not pushed",
                    path.display()
                );
            }
            (Kind::Tar { .. } | Kind::Snar, stamp) => {
                let size = std::fs::metadata(&path).at(&path)?.len();
                let key = format!("{dir}/{entry}");
                // A numbered archive, and a snapshot file, can be rewritten
                // under the same name.
                let mutable = matches!(stamp, Stamp::Number(_)) || name.kind == Kind::Snar;
                let same = match remote.get(&entry) {
                    Some(s) if !mutable => *s == size,
                    Some(s) if *s == size => store
                        .stat(&key)?
                        .and_then(|i| i.md5_sent)
                        .is_some_and(|m| m == store::md5_of_file(&path).unwrap_or_default()),
                    _ => false,
                };
                if !same {
                    let u = store.put_file(&path, &key)?;
                    log::info!(
                        "Pushed {} ({}) to {}",
                        path.display(),
                        human(u.size),
                        store.url()
                    );
                    remote.insert(entry.clone(), u.size);
                }
            }
        }
    }
    Ok(remote_units(&remote))
}

/// Upload the blob files of one directory backup the store lacks; the
/// manifest of the backup.
fn push_directory(
    store: &Store,
    place: &Place<'_>,
    loc: &Path,
    name: &BackupName,
    known: &mut Known,
) -> Result<Manifest> {
    let entry = name.file_name();
    let root = loc.join(&entry).join(&name.base);
    let files = local_files(loc, &entry, &root)?;
    let blobfiles = place.blobfiles_dir();
    let mut entries: Vec<FileEntry> = Vec::with_capacity(files.len());
    let mut uploads: Vec<(PathBuf, String)> = Vec::new();
    let mut pending: Vec<(String, u64, u32)> = Vec::new();
    for (rel, size) in files {
        let path = root.join(&rel);
        // Blob files are keyed by their name; other files (`.layout`) by
        // their md5, computed here (they are a few bytes).
        let md5 = if rel.ends_with(".blob") {
            None
        } else {
            Some(store::md5_of_file(&path)?)
        };
        match known.get(&rel) {
            Some(f) if f.size == size && md5.as_deref().is_none_or(|x| x == f.md5) => {
                entries.push(f.clone());
            }
            Some(f) if md5.is_none() => {
                let s = f.size;
                return Err(Error::Offsite(format!(
                    "{}: blob file {rel} has {size} bytes in {}, but {s} in the store: blob files never change, so one copy is damaged",
                    store.url(),
                    root.display()
                )));
            }
            _ => {
                let key = manifest::file_key(&blobfiles, &rel, md5.as_deref().unwrap_or(""));
                let mode = std::fs::symlink_metadata(&path)
                    .at(&path)?
                    .permissions()
                    .mode()
                    & 0o7777;
                uploads.push((path, key));
                pending.push((rel, size, mode));
            }
        }
    }
    let mut journal = open_journal(store, loc)?;
    let mut bytes = 0u64;
    store.put_files(&uploads, |i, u| {
        let (rel, size, mode) = &pending[i];
        if u.size != *size {
            return Err(Error::Offsite(format!(
                "{}: {} changed size during the push",
                store.url(),
                uploads[i].0.display()
            )));
        }
        bytes += u.size;
        let f = FileEntry {
            path: rel.clone(),
            size: u.size,
            md5: u.md5.clone(),
            key: uploads[i].1.clone(),
            mode: *mode,
        };
        let mut line = serde_json::to_vec(&f)
            .map_err(|e| Error::Offsite(format!("cannot write {JOURNAL}: {e}")))?;
        line.push(b'\n');
        journal.write_all(&line).at(&loc.join(JOURNAL))?;
        known.add(f.clone());
        entries.push(f);
        Ok(())
    })?;
    journal.flush().at(&loc.join(JOURNAL))?;
    log::info!(
        "Pushed {} new blob files ({}) of {} to {}; {} were there already",
        uploads.len(),
        human(bytes),
        loc.join(&entry).display(),
        store.url(),
        entries.len() - uploads.len()
    );
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Manifest {
        format: manifest::FORMAT.to_owned(),
        name: entry,
        base: name.base.clone(),
        files: entries,
    })
}

/// The regular files of a directory backup: its `.crb-manifest` when it
/// has one (the sizes the backup recorded), else a walk of the tree.
fn local_files(loc: &Path, entry: &str, root: &Path) -> Result<Vec<(String, u64)>> {
    let listed =
        crate::blobs::manifest::read(&loc.join(entry).join(crate::blobs::manifest::MANIFEST))?;
    let files: Vec<(PathBuf, u64)> = match listed {
        Some(l) => l,
        None => {
            let tree = crate::blobs::tree::walk(root, &crate::blobs::tree::WalkOptions::default())?;
            tree.entries
                .into_iter()
                .filter(|e| e.kind == crate::blobs::tree::EntryKind::File)
                .map(|e| (e.rel, e.size))
                .collect()
        }
    };
    files
        .into_iter()
        .map(|(rel, size)| {
            let text = rel
                .to_str()
                .filter(|t| manifest::safe_relative(t))
                .ok_or_else(|| {
                    Error::Offsite(format!(
                        "{}: cannot push a file with this name: {}",
                        root.display(),
                        rel.display()
                    ))
                })?;
            Ok((text.to_owned(), size))
        })
        .collect()
}

/// The journal's first line: which store its entries are in.
fn journal_header(store: &Store) -> String {
    format!("crb-offsite-journal 1 {}", store.url())
}

fn open_journal(store: &Store, loc: &Path) -> Result<std::fs::File> {
    let path = loc.join(JOURNAL);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    if f.metadata().at(&path)?.len() == 0 {
        writeln!(f, "{}", journal_header(store)).at(&path)?;
    }
    Ok(f)
}

/// The journal's entries that the store still has, with their size: a
/// journal of another store (the `offsite` option changed) counts for
/// nothing, and an object the store no longer has (removed by a retention
/// since) is sent again. A torn last line (a kill while writing it) is
/// skipped: that file is sent again.
fn read_journal(store: &Store, loc: &Path) -> Result<Vec<FileEntry>> {
    let path = loc.join(JOURNAL);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut lines = text.lines();
    if lines.next() != Some(journal_header(store).as_str()) {
        remove_journal(loc)?;
        return Ok(Vec::new());
    }
    let entries: Vec<FileEntry> = lines
        .filter_map(|l| serde_json::from_str::<FileEntry>(l).ok())
        .filter(|f| manifest::safe_relative(&f.path))
        .collect();
    let keys: Vec<String> = entries.iter().map(|f| f.key.clone()).collect();
    let infos = store.stat_many(&keys)?;
    Ok(entries
        .into_iter()
        .zip(infos)
        .filter(|(f, i)| i.as_ref().is_some_and(|i| i.size == f.size))
        .map(|(f, _)| f)
        .collect())
}

fn remove_journal(loc: &Path) -> Result<()> {
    let path = loc.join(JOURNAL);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Retention in the store for one place ([`Cut`]). Returns whether a
/// manifest went.
fn retain(
    store: &Store,
    place: &Place<'_>,
    keep: u32,
    outcome: &Outcome,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<bool> {
    let cut = Cut::new(&outcome.fs_names, &outcome.blob_units, keep);
    let mut remove: Vec<String> = cut
        .fs_remove
        .iter()
        .map(|n| format!("{}/{n}", place.fs_dir()))
        .collect();
    for b in outcome.blob_units.iter().filter(|b| cut.removes_unit(b)) {
        let key = match b.kind {
            Kind::Dir => format!("{}/{}{}", place.blob_dir(), b.file_name(), manifest::SUFFIX),
            _ => format!("{}/{}", place.blob_dir(), b.file_name()),
        };
        remove.push(key);
    }
    if remove.is_empty() {
        return Ok(false);
    }
    store.delete(&remove)?;
    let gone: BTreeSet<&String> = remove.iter().collect();
    let before = manifests.len();
    manifests.retain(|(k, _)| !gone.contains(k));
    log::info!(
        "Removed {} old backup files of {} from {}",
        remove.len(),
        place.label(),
        store.url()
    );
    Ok(manifests.len() < before)
}

/// Remove the blob files no manifest in the store refers to any more, of
/// the ones the store has for `storage` (one listing).
fn collect_garbage(
    store: &Store,
    storage: &Storage,
    manifests: &[(String, Manifest)],
) -> Result<()> {
    let referenced = manifest::referenced(manifests.iter().map(|(_, m)| m));
    let dir = super::blobfiles_dir(storage);
    let listing = store.list(&dir)?;
    let unused: Vec<String> = listing
        .into_keys()
        .filter(|k| !referenced.contains(k))
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    store.delete(&unused)?;
    log::info!(
        "Removed {} blob files no backup in {} refers to any more",
        unused.len(),
        store.url()
    );
    Ok(())
}

/// `1.5 MiB`.
pub(super) fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b >= f64::from(1u32 << 30) {
        format!("{:.1} GiB", b / f64::from(1u32 << 30))
    } else if b >= f64::from(1u32 << 20) {
        format!("{:.1} MiB", b / f64::from(1u32 << 20))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}
