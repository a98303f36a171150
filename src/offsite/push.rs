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
    push_places(ocfg, &places(cfg, &[Set::of_mode(mode)]))
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
        let outcome = push_place(&store, place, manifests)?;
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
        let dir = format!("{}/{}/blobstorage", storage.name, set.name());
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

/// Names under `dir/` in a listing (keys relative to the prefix).
pub(super) fn names_in(listing: &BTreeMap<String, u64>, dir: &str) -> BTreeMap<String, u64> {
    let lead = format!("{dir}/");
    listing
        .iter()
        .filter_map(|(k, s)| {
            let name = k.strip_prefix(&lead)?;
            (!name.contains('/')).then(|| (name.to_owned(), *s))
        })
        .collect()
}

fn push_place(
    store: &Store,
    place: &Place<'_>,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    if let Some(repo) = place.fs_location.filter(|r| r.is_dir()) {
        outcome.fs_names = push_filestorage(store, place, repo)?;
    }
    if let Some(loc) = place.blob_location.filter(|l| l.is_dir()) {
        outcome.blob_units = push_blobs(store, place, loc, manifests)?;
    }
    Ok(outcome)
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

fn push_filestorage(store: &Store, place: &Place<'_>, repo: &Path) -> Result<Vec<String>> {
    let dir = place.fs_dir();
    let mut remote = names_in(&store.list(&dir)?, &dir);
    let (data, dats) = committed_files(repo)?;
    let mut data_up = Vec::new();
    for name in &data {
        let size = std::fs::metadata(repo.join(name))
            .at(&repo.join(name))?
            .len();
        match remote.get(name) {
            Some(s) if *s == size => {}
            Some(s) => {
                return Err(Error::Offsite(format!(
                    "{}: {dir}/{name} has {s} bytes, the local file {} has {size}: another site pushes to the same place?",
                    store.url(),
                    repo.join(name).display()
                )))
            }
            None => data_up.push((repo.join(name), format!("{dir}/{name}"))),
        }
    }
    let mut dat_up = Vec::new();
    for name in &dats {
        let size = std::fs::metadata(repo.join(name))
            .at(&repo.join(name))?
            .len();
        match remote.get(name) {
            Some(s) if *s == size => {}
            Some(s) if *s > size => {
                return Err(Error::Offsite(format!(
                    "{}: {dir}/{name} is longer than the local {}: another site pushes to the same place?",
                    store.url(),
                    repo.join(name).display()
                )))
            }
            _ => dat_up.push((repo.join(name), format!("{dir}/{name}"))),
        }
    }
    let mut bytes = 0u64;
    let count = data_up.len() + dat_up.len();
    // The `.dat` files last: they are what makes the others count.
    for batch in [&data_up, &dat_up] {
        store.put_files(batch, |i, u| {
            bytes += u.size;
            let (_, key) = &batch[i];
            if let Some(name) = key.rsplit('/').next() {
                remote.insert(name.to_owned(), u.size);
            }
            Ok(())
        })?;
    }
    log::info!(
        "Pushed {count} repository files ({}) of {} to {}",
        human(bytes),
        repo.display(),
        store.url()
    );
    Ok(remote.into_keys().collect())
}

fn push_blobs(
    store: &Store,
    place: &Place<'_>,
    loc: &Path,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<Vec<BackupName>> {
    let dir = place.blob_dir();
    let mut remote = names_in(&store.list(&dir)?, &dir);
    let mut local: Vec<BackupName> = std::fs::read_dir(loc)
        .at(loc)?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(BackupName::parse))
        .collect();
    local.sort_by_key(BackupName::file_name);
    let mut known = Known::default();
    for (_, m) in manifests.iter() {
        known.add_manifest(m);
    }
    for f in read_journal(loc)? {
        known.add(f);
    }
    for name in &local {
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
                let same = match (remote.get(&entry), stamp) {
                    (Some(s), Stamp::Time(_)) => *s == size,
                    // A numbered archive is rewritten under the same name.
                    (Some(s), Stamp::Number(_)) if *s == size => store
                        .stat(&key)?
                        .and_then(|i| i.md5)
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
    Ok(remote
        .keys()
        .filter_map(|n| BackupName::parse(n.strip_suffix(manifest::SUFFIX).unwrap_or(n)))
        .collect())
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
    let mut journal = open_journal(loc)?;
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

fn open_journal(loc: &Path) -> Result<std::fs::File> {
    let path = loc.join(JOURNAL);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)
}

/// The journal's entries; a torn last line (a kill while writing it) is
/// skipped: that file is simply sent again.
fn read_journal(loc: &Path) -> Result<Vec<FileEntry>> {
    let path = loc.join(JOURNAL);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<FileEntry>(l).ok())
        .filter(|f| manifest::safe_relative(&f.path))
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

/// Retention in the store for one place: the newest `keep` full backups
/// stay with everything after the oldest of them, as locally; blob backups
/// older than the oldest full backup kept go (with only blobs: the newest
/// `keep` full blob backups stay). Returns whether a manifest went.
fn retain(
    store: &Store,
    place: &Place<'_>,
    keep: u32,
    outcome: &Outcome,
    manifests: &mut Vec<(String, Manifest)>,
) -> Result<bool> {
    if keep == 0 {
        return Ok(false);
    }
    let plan = plan_retention(&outcome.fs_names, keep, None);
    let mut remove: Vec<String> = plan
        .remove
        .iter()
        .map(|n| format!("{}/{n}", place.fs_dir()))
        .collect();
    let cutoff: Option<String> = if plan.kept_fulls.is_empty() {
        let mut fulls: Vec<&str> = outcome
            .blob_units
            .iter()
            .filter(|b| matches!(b.kind, Kind::Dir | Kind::Tar { delta: false, .. }))
            .filter_map(BackupName::timestamp)
            .collect();
        fulls.sort_unstable();
        fulls.dedup();
        fulls.reverse();
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        (fulls.len() > keep).then(|| fulls[keep - 1].to_owned())
    } else {
        plan.kept_fulls
            .last()
            .cloned()
            .filter(|_| !plan.remove.is_empty())
    };
    if let Some(cutoff) = cutoff {
        for b in &outcome.blob_units {
            if b.timestamp().is_some_and(|t| t < cutoff.as_str()) {
                let key = match b.kind {
                    Kind::Dir => {
                        format!("{}/{}{}", place.blob_dir(), b.file_name(), manifest::SUFFIX)
                    }
                    _ => format!("{}/{}", place.blob_dir(), b.file_name()),
                };
                remove.push(key);
            }
        }
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
    let dir = format!("{}/blobfiles", storage.name);
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
