//! `pull [DATE]`: bring the chain holding DATE (default: the newest) and
//! the blob backup of DATE back into the local locations, so that the
//! restore scripts work as usual, on a new server too.
//!
//! Every file is downloaded under a temporary name, checked against the
//! md5 recorded at upload, synced and renamed; a directory blob backup is
//! built as `.<name>.partial` and renamed when whole (a dead pull's build
//! is removed by the next backup, as a dead backup's is). A chain's `.dat`
//! comes last, so a pull that dies leaves no chain that claims files it
//! lacks. Local files are never overwritten: one of the same name and size
//! is kept, one of another size stops the pull.

use std::collections::BTreeMap;
use std::path::Path;

use super::manifest::{self, Manifest};
use super::push::human;
use super::store::{Download, Store};
use super::{configured, places, Place, Set};
use crate::blobs::naming::{BackupName, Kind, Stamp};
use crate::config::{BackupConfig, RestoreDate};
use crate::error::{Error, IoContext, Result};
use crate::repozo::naming::{kind_of, splitext, Kind as RepozoKind};

/// Pull the backups of `set` at `date` (the newest when `None`) for every
/// storage.
///
/// # Errors
/// [`Error::Offsite`] when the store has no backup of that date or a
/// transfer fails, [`Error::Io`] for the local side.
pub fn pull(cfg: &BackupConfig, set: Set, date: Option<&RestoreDate>) -> Result<()> {
    let ocfg = configured(cfg)?;
    let store = Store::open(ocfg)?;
    let when = date.map_or_else(
        || "9999".to_owned(),
        |d| d.0.format("%Y-%m-%d-%H-%M-%S").to_string(),
    );
    let places = places(cfg, &[set]);
    let dirs: Vec<&Path> = places
        .iter()
        .flat_map(|p| [p.fs_location, p.blob_location])
        .flatten()
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).at(d)?;
    }
    let _locks = crate::lock::lock_locations(dirs.iter().copied())?;
    log::info!("Pulling backups from {}", store.url());
    for place in &places {
        // The blob backup of the restore point the chain gives.
        let mut limit = when.clone();
        if let Some(repo) = place.fs_location {
            limit = pull_filestorage(&store, place, repo, &when, date)?;
        }
        if let Some(loc) = place.blob_location {
            pull_blobs(&store, place, loc, &limit, date)?;
        }
    }
    Ok(())
}

fn no_backup(store: &Store, what: &str, date: Option<&RestoreDate>) -> Error {
    match date {
        Some(d) => Error::Offsite(format!(
            "{}: no {what} of {} or earlier",
            store.url(),
            d.0.format("%Y-%m-%d-%H-%M-%S")
        )),
        None => Error::Offsite(format!("{}: no {what}", store.url())),
    }
}

/// A local file of the same size is kept; another size stops the pull.
fn wanted(store: &Store, local: &Path, size: u64) -> Result<bool> {
    match std::fs::symlink_metadata(local) {
        Ok(m) if m.is_file() && m.len() == size => Ok(false),
        Ok(_) => Err(Error::Offsite(format!(
            "{}: {} exists and differs from the store's copy; move it away to pull it",
            store.url(),
            local.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(local, e)),
    }
}

/// The chain of the newest full backup at or before `when` whose `.dat`
/// is in the store: exactly the files its `.dat` lists (a file no `.dat`
/// lists is not part of a backup), their `.index` files, then the `.dat`.
/// Returns the stamp of the newest listed backup at or before `when`: the
/// state a restore to that date gives.
fn pull_filestorage(
    store: &Store,
    place: &Place<'_>,
    repo: &Path,
    when: &str,
    date: Option<&RestoreDate>,
) -> Result<String> {
    let dir = place.fs_dir();
    let remote = store.names(&dir)?;
    let start = remote
        .keys()
        .filter(|n| kind_of(n) == Some(RepozoKind::Full))
        .map(|n| splitext(n).0)
        .filter(|stamp| *stamp <= when && remote.contains_key(&format!("{stamp}.dat")))
        .max()
        .ok_or_else(|| no_backup(store, &format!("full backup of {}", place.label()), date))?
        .to_owned();
    let dat_name = format!("{start}.dat");
    let dat_key = format!("{dir}/{dat_name}");
    let dat = store
        .get_bytes(&dat_key)?
        .ok_or_else(|| Error::Offsite(format!("{}: {dat_key} vanished", store.url())))?;
    let lines = crate::repozo::dat::parse(Path::new(&dat_key), &dat)?;
    let first = lines.first().map(|l| splitext(l.basename()).0.to_owned());
    if first.as_deref() != Some(start.as_str()) {
        return Err(Error::Offsite(format!(
            "{}: {dat_key} does not start with the full backup {start}",
            store.url()
        )));
    }
    let mut names: Vec<String> = Vec::new();
    for line in &lines {
        let name = line.basename().to_owned();
        if !remote.contains_key(&name) {
            return Err(Error::Offsite(format!(
                "{}: {dat_key} lists {name}, which is not in the store",
                store.url()
            )));
        }
        let index = format!("{}.index", splitext(&name).0);
        names.push(name);
        if remote.contains_key(&index) {
            names.push(index);
        }
    }
    let point = lines
        .iter()
        .map(|l| splitext(l.basename()).0)
        .filter(|s| *s <= when)
        .max()
        .unwrap_or(start.as_str())
        .to_owned();
    let mut count = 0;
    let mut bytes = 0;
    for batch in [names, vec![dat_name]] {
        let mut todo: Vec<Download> = Vec::new();
        let keys: Vec<String> = batch.iter().map(|n| format!("{dir}/{n}")).collect();
        let infos = store.stat_many(&keys)?;
        for ((name, key), info) in batch.iter().zip(keys).zip(infos) {
            let size = remote.get(name).copied().unwrap_or_default();
            let local = repo.join(name.as_str());
            if wanted(store, &local, size)? {
                count += 1;
                bytes += size;
                todo.push(Download {
                    key,
                    dest: local,
                    md5: info.and_then(|i| i.md5_sent),
                    mode: Some(0o644),
                });
            }
        }
        store.get_files(&todo)?;
    }
    log::info!(
        "Pulled {count} repository files ({}) of {} into {}",
        human(bytes),
        place.label(),
        repo.display()
    );
    Ok(point)
}

fn pull_blobs(
    store: &Store,
    place: &Place<'_>,
    loc: &Path,
    when: &str,
    date: Option<&RestoreDate>,
) -> Result<()> {
    let dir = place.blob_dir();
    let remote = store.names(&dir)?;
    let units: BTreeMap<String, (BackupName, u64)> = remote
        .iter()
        .filter_map(|(n, s)| {
            let entry = n.strip_suffix(manifest::SUFFIX).unwrap_or(n);
            let b = BackupName::parse(entry)?;
            // A directory backup is in the store only as its manifest.
            (matches!(b.kind, Kind::Dir) == n.ends_with(manifest::SUFFIX))
                .then(|| (n.clone(), (b, *s)))
        })
        .collect();
    let admits = |b: &BackupName| match &b.stamp {
        Stamp::Time(t) => t.as_str() <= when,
        Stamp::Number(_) => true,
    };
    let is_full = |b: &BackupName| matches!(b.kind, Kind::Dir | Kind::Tar { delta: false, .. });
    // The newest full blob backup of the date; with archives, the deltas
    // and snapshot files after it up to the date too.
    let newest = units
        .values()
        .filter(|(b, _)| is_full(b) && admits(b))
        .min_by(|(a, _), (b, _)| crate::blobs::naming::newest_first(a, b))
        .ok_or_else(|| no_backup(store, &format!("blob backup of {}", place.label()), date))?
        .0
        .clone();
    if newest.kind == Kind::Dir {
        return pull_directory(store, place, loc, &newest);
    }
    let from = newest.timestamp().map(str::to_owned);
    let mut todo: Vec<Download> = Vec::new();
    let mut bytes = 0;
    let picked: Vec<(&String, &(BackupName, u64))> = units
        .iter()
        .filter(|(_, (b, _))| {
            !matches!(b.kind, Kind::Dir)
                && admits(b)
                && match (&from, b.timestamp()) {
                    (Some(f), Some(t)) => t >= f.as_str(),
                    (None, None) => *b == newest,
                    _ => false,
                }
        })
        .collect();
    let keys: Vec<String> = picked.iter().map(|(n, _)| format!("{dir}/{n}")).collect();
    let infos = store.stat_many(&keys)?;
    let mut snars: Vec<Download> = Vec::new();
    for (((name, (b, size)), key), info) in picked.into_iter().zip(keys).zip(infos) {
        let local = loc.join(name.as_str());
        if wanted(store, &local, *size)? {
            bytes += size;
            let d = Download {
                key,
                dest: local,
                md5: info.and_then(|i| i.md5_sent),
                mode: Some(0o644),
            };
            if b.kind == Kind::Snar {
                snars.push(d);
            } else {
                todo.push(d);
            }
        }
    }
    // A snapshot file only after the archives it describes.
    store.get_files(&todo)?;
    store.get_files(&snars)?;
    todo.extend(snars);
    log::info!(
        "Pulled {} blob archives ({}) of {} into {}",
        todo.len(),
        human(bytes),
        place.label(),
        loc.display()
    );
    Ok(())
}

fn pull_directory(store: &Store, place: &Place<'_>, loc: &Path, name: &BackupName) -> Result<()> {
    let entry = name.file_name();
    let dest = loc.join(&entry);
    if dest.exists() {
        log::info!("{} is here already", dest.display());
        return Ok(());
    }
    let key = format!("{}/{entry}{}", place.blob_dir(), manifest::SUFFIX);
    let bytes = store
        .get_bytes(&key)?
        .ok_or_else(|| Error::Offsite(format!("{}: {key} vanished", store.url())))?;
    let m = Manifest::parse(&key, &bytes)?;
    if m.name != entry || m.base != name.base {
        return Err(Error::Offsite(format!(
            "{}: {key} describes {}/{}, not {entry}",
            store.url(),
            m.name,
            m.base
        )));
    }
    let build = loc.join(format!(".{entry}.partial"));
    if build.exists() {
        std::fs::remove_dir_all(&build).at(&build)?;
    }
    let tree = build.join(&m.base);
    std::fs::create_dir_all(&tree).at(&tree)?;
    let todo: Vec<Download> = m
        .files
        .iter()
        .map(|f| Download {
            key: f.key.clone(),
            dest: tree.join(&f.path),
            md5: Some(f.md5.clone()),
            mode: Some(f.mode),
        })
        .collect();
    store.get_files(&todo)?;
    crate::blobs::manifest::write_entries(
        m.files.iter().map(|f| (Path::new(f.path.as_str()), f.size)),
        &build.join(crate::blobs::manifest::MANIFEST),
    )?;
    // The build's directories are durable before it gets its name, as a
    // blob backup's are.
    crate::fsutil::sync_filesystem(&build)?;
    std::fs::rename(&build, &dest).at(&dest)?;
    crate::fsutil::sync_dir(loc)?;
    log::info!(
        "Pulled {} blob files ({}) of {} into {}",
        m.files.len(),
        human(m.files.iter().map(|f| f.size).sum()),
        place.label(),
        dest.display()
    );
    Ok(())
}
