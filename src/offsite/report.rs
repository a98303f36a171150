//! `status` and `verify` of the store. Both read only; neither downloads
//! a blob file.
//!
//! - `status` lists, per storage and set, what the store holds (chains by
//!   their full backup, blob backups) and what is here but not there.
//! - `verify` asks the store for every object a `.dat` or a manifest names
//!   and compares its size and md5: the md5 the store computed itself (the
//!   ETag of a single-part upload) where there is one, else the md5 sent
//!   with the upload. Plain repozo files are compared with their `.dat`
//!   lines, so the store's own hash is checked against repozo's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::manifest::{self, Manifest};
use super::push::{committed_files, human, load_manifests, remote_units, Cut};
use super::store::{ObjectInfo, Store};
use super::{configured, places, Place, Set};
use crate::blobs::naming::{BackupName, Kind};
use crate::config::BackupConfig;
use crate::error::{IoContext, Result};
use crate::repozo::naming::{is_gzip_name, kind_of, splitext, Kind as RepozoKind};

/// `status`: `(nothing missing in the store, report text)`.
///
/// # Errors
/// [`crate::Error::Offsite`] when the store cannot be read.
pub fn status(cfg: &BackupConfig, sets: &[Set]) -> Result<(bool, String)> {
    let ocfg = configured(cfg)?;
    let store = Store::open(ocfg)?;
    let mut out = format!("Store: {}\n", store.url());
    let mut healthy = true;
    for place in places(cfg, sets) {
        let (ok, text) = status_place(&store, &place, place.set.keep(ocfg))?;
        healthy &= ok;
        out.push_str(&text);
    }
    Ok((healthy, out))
}

/// Local backup files the store lacks; those the store's retention would
/// remove at once (`offsite_keep` below `keep`) are not missing.
fn status_place(store: &Store, place: &Place<'_>, keep: u32) -> Result<(bool, String)> {
    let mut out = String::new();
    let mut missing: Vec<String> = Vec::new();
    let repo = place.fs_location.filter(|r| r.is_dir());
    let loc = place.blob_location.filter(|l| l.is_dir());
    let fs_remote = match place.fs_location {
        Some(_) => store.names(&place.fs_dir())?,
        None => BTreeMap::new(),
    };
    let blob_remote = match place.blob_location {
        Some(_) => store.names(&place.blob_dir())?,
        None => BTreeMap::new(),
    };
    let (data, dats) = match repo {
        Some(r) => committed_files(r)?,
        None => (Vec::new(), Vec::new()),
    };
    let blob_local: Vec<(BackupName, u64)> = match loc {
        Some(l) => std::fs::read_dir(l)
            .at(l)?
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_str().and_then(BackupName::parse)?;
                Some((name, e.metadata().map(|m| m.len()).unwrap_or_default()))
            })
            .collect(),
        None => Vec::new(),
    };
    if fs_remote.is_empty() && blob_remote.is_empty() && repo.is_none() && loc.is_none() {
        return Ok((true, String::new()));
    }
    let mut all_fs: Vec<String> = fs_remote.keys().cloned().collect();
    all_fs.extend(data.iter().chain(&dats).cloned());
    let mut all_units = remote_units(&blob_remote);
    all_units.extend(blob_local.iter().map(|(b, _)| b.clone()));
    let cut = Cut::new(&all_fs, &all_units, keep);

    if place.fs_location.is_some() {
        let fulls: Vec<&str> = fs_remote
            .keys()
            .filter(|n| kind_of(n) == Some(RepozoKind::Full))
            .map(|n| splitext(n).0)
            .collect();
        let _ = writeln!(
            out,
            "{}: {} repository files ({}) in the store, full backups: {}",
            place.label(),
            fs_remote.len(),
            human(fs_remote.values().sum()),
            if fulls.is_empty() {
                "none".to_owned()
            } else {
                fulls.join(", ")
            }
        );
    }
    if let Some(r) = repo {
        for name in data
            .iter()
            .chain(&dats)
            .filter(|n| !cut.fs_remove.contains(*n))
        {
            let local = std::fs::metadata(r.join(name)).map(|m| m.len()).ok();
            if fs_remote.get(name).copied() != local {
                missing.push(r.join(name).display().to_string());
            }
        }
    }
    if place.blob_location.is_some() {
        let units: Vec<String> = blob_remote
            .keys()
            .map(|n| n.strip_suffix(manifest::SUFFIX).unwrap_or(n).to_owned())
            .collect();
        let _ = writeln!(
            out,
            "{}: blob backups in the store: {}",
            place.label(),
            if units.is_empty() {
                "none".to_owned()
            } else {
                units.join(", ")
            }
        );
    }
    if let Some(l) = loc {
        for (name, size) in blob_local.iter().filter(|(b, _)| !cut.removes_unit(b)) {
            let entry = name.file_name();
            let there = match name.kind {
                Kind::Dir => blob_remote.contains_key(&format!("{entry}{}", manifest::SUFFIX)),
                _ => blob_remote.get(&entry) == Some(size),
            };
            if !there {
                missing.push(l.join(&entry).display().to_string());
            }
        }
    }
    missing.sort();
    for m in &missing {
        let _ = writeln!(out, "{}: not in the store: {m}", place.label());
    }
    Ok((missing.is_empty(), out))
}

/// `verify`: `(every object checks out, report text)`.
///
/// # Errors
/// [`crate::Error::Offsite`] when the store cannot be read.
pub fn verify(cfg: &BackupConfig, sets: &[Set]) -> Result<(bool, String)> {
    let ocfg = configured(cfg)?;
    let store = Store::open(ocfg)?;
    let mut problems: Vec<String> = Vec::new();
    let mut checked = 0usize;
    let mut manifests_by_storage: BTreeMap<String, Vec<(String, Manifest)>> = BTreeMap::new();
    for place in places(cfg, sets) {
        if place.fs_location.is_some() {
            checked += verify_filestorage(&store, &place, &mut problems)?;
        }
        if place.blob_location.is_some() {
            if !manifests_by_storage.contains_key(&place.storage.name) {
                manifests_by_storage.insert(
                    place.storage.name.clone(),
                    load_manifests(&store, place.storage)?,
                );
            }
            let manifests = &manifests_by_storage[&place.storage.name];
            checked += verify_blobs(&store, &place, manifests, &mut problems)?;
        }
    }
    let mut out = String::new();
    for p in &problems {
        let _ = writeln!(out, "{p}");
    }
    let _ = writeln!(
        out,
        "Checked {checked} objects in {}: {}",
        store.url(),
        if problems.is_empty() {
            "all match what was uploaded".to_owned()
        } else {
            format!("{} problems", problems.len())
        }
    );
    Ok((problems.is_empty(), out))
}

/// Compare what the store says of `key` with the expected size and md5.
fn check(
    store: &Store,
    key: &str,
    info: Option<&ObjectInfo>,
    size: Option<u64>,
    md5: Option<&str>,
    problems: &mut Vec<String>,
) {
    let url = store.url();
    let Some(info) = info else {
        problems.push(format!("{url}/{key}: missing"));
        return;
    };
    if let Some(size) = size.filter(|s| *s != info.size) {
        problems.push(format!("{url}/{key}: {} bytes, expected {size}", info.size));
        return;
    }
    // An object that push did not upload (another client replaced it)
    // has no md5 of ours.
    let Some(sent) = info.md5_sent.as_deref() else {
        problems.push(format!("{url}/{key}: not uploaded by a push (no crb-md5)"));
        return;
    };
    if let Some(want) = md5 {
        // The store's own md5 (a single-part ETag without server-side
        // encryption) is the stronger check; else the md5 we sent.
        let etag_ok = info.etag.as_deref() == Some(want);
        if !etag_ok && sent != want {
            problems.push(format!("{url}/{key}: md5 {sent}, expected {want}"));
        }
    }
}

fn verify_filestorage(
    store: &Store,
    place: &Place<'_>,
    problems: &mut Vec<String>,
) -> Result<usize> {
    let dir = place.fs_dir();
    let remote = store.names(&dir)?;
    let names: Vec<&String> = remote.keys().collect();
    let keys: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
    let infos = store.stat_many(&keys)?;
    let by_name: BTreeMap<&str, Option<&ObjectInfo>> = names
        .iter()
        .map(|n| n.as_str())
        .zip(infos.iter().map(Option::as_ref))
        .collect();
    // What each `.dat` line says of the files of its chain.
    let mut expected: BTreeMap<String, (Option<u64>, Option<String>)> = BTreeMap::new();
    for name in names.iter().filter(|n| n.ends_with(".dat")) {
        let key = format!("{dir}/{name}");
        let Some(bytes) = store.get_bytes(&key)? else {
            continue;
        };
        let lines = match crate::repozo::dat::parse(std::path::Path::new(&key), &bytes) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{}/{key}: {e}", store.url()));
                continue;
            }
        };
        for line in lines {
            let base = line.basename().to_owned();
            let plain = !is_gzip_name(&base);
            expected.insert(
                base,
                (
                    plain.then(|| line.end.saturating_sub(line.start)),
                    plain.then(|| line.md5.clone()),
                ),
            );
        }
    }
    for (name, (size, md5)) in &expected {
        let key = format!("{dir}/{name}");
        let info = by_name.get(name.as_str()).copied().flatten();
        check(store, &key, info, *size, md5.as_deref(), problems);
    }
    for (name, info) in &by_name {
        if !expected.contains_key(*name) {
            let key = format!("{dir}/{name}");
            check(store, &key, *info, None, None, problems);
        }
    }
    Ok(names.len())
}

fn verify_blobs(
    store: &Store,
    place: &Place<'_>,
    manifests: &[(String, Manifest)],
    problems: &mut Vec<String>,
) -> Result<usize> {
    let dir = place.blob_dir();
    let lead = format!("{dir}/");
    let mut checked = 0;
    // Blob files shared by several backups are asked for once.
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    for (key, m) in manifests.iter().filter(|(k, _)| k.starts_with(&lead)) {
        let new: Vec<&manifest::FileEntry> = m
            .files
            .iter()
            .filter(|f| !seen.contains_key(&f.key))
            .collect();
        let keys: Vec<String> = new.iter().map(|f| f.key.clone()).collect();
        let infos = store.stat_many(&keys)?;
        for (f, info) in new.iter().zip(&infos) {
            let before = problems.len();
            check(
                store,
                &f.key,
                info.as_ref(),
                Some(f.size),
                Some(&f.md5),
                problems,
            );
            seen.insert(f.key.clone(), problems.len() == before);
        }
        if m.files.iter().any(|f| seen.get(&f.key) == Some(&false)) {
            problems.push(format!(
                "{}/{key}: blob backup {} cannot be restored from the store",
                store.url(),
                m.name
            ));
        }
        checked += keys.len() + 1;
    }
    let archives: Vec<String> = store
        .names(&dir)?
        .into_keys()
        .filter(|n| !n.ends_with(manifest::SUFFIX))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    let infos = store.stat_many(&archives)?;
    for (key, info) in archives.iter().zip(&infos) {
        check(store, key, info.as_ref(), None, None, problems);
    }
    Ok(checked + archives.len())
}
