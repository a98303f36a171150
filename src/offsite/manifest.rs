//! The manifest of a directory blob backup in the store.
//!
//! A JSON object (see docs/offsite.rst): the backup's name, and for every
//! regular file of its tree the path relative to the blob directory, its
//! size, md5 and the key of the object holding it. Blob files are named by
//! oid and tid and never change, so one object serves every backup that
//! holds the file; other files (`.layout`) get a key with their md5.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format marker of a manifest.
pub const FORMAT: &str = "crb-offsite-manifest 1";

/// The suffix of a manifest's key after the backup's name.
pub const SUFFIX: &str = ".manifest";

/// One file of a directory blob backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the blob directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// md5, hex.
    pub md5: String,
    /// The object's key, relative to the store's prefix.
    pub key: String,
    /// Permission bits (ZODB makes blob files read-only).
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

/// A directory blob backup in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The backup's entry name, `<base>.<stamp>`.
    pub name: String,
    /// The blob directory's basename (`blobstorage`).
    pub base: String,
    /// Every regular file, sorted by path.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Serialize.
    ///
    /// # Errors
    /// Never in practice (serde_json on owned strings).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::Offsite(format!("cannot write the manifest of {}: {e}", self.name)))
    }

    /// Parse, checking the format marker and that no path leaves the tree.
    ///
    /// # Errors
    /// [`Error::Offsite`] naming `key`.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Offsite(format!("{key}: not a manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::Offsite(format!(
                "{key}: unknown manifest format '{}'",
                m.format
            )));
        }
        if !safe_relative(&m.base)
            || m.base.contains('/')
            || !safe_relative(&m.name)
            || m.name.contains('/')
        {
            return Err(Error::Offsite(format!(
                "{key}: unsafe name '{}' or base '{}' in the manifest",
                m.name, m.base
            )));
        }
        for f in &m.files {
            if !safe_relative(&f.path) {
                return Err(Error::Offsite(format!(
                    "{key}: unsafe path '{}' in the manifest",
                    f.path
                )));
            }
        }
        Ok(m)
    }
}

/// A relative `/`-path with no empty, `.` or `..` part.
#[must_use]
pub fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// The key of a file of a blob directory: `<blobfiles>/<path>` for a blob
/// file (immutable, named by oid and tid), `<blobfiles>/<path>.<md5>` for
/// anything else.
#[must_use]
pub fn file_key(blobfiles: &str, path: &str, md5: &str) -> String {
    if path.ends_with(".blob") {
        format!("{blobfiles}/{path}")
    } else {
        format!("{blobfiles}/{path}.{md5}")
    }
}

/// What the store holds already, by path: from the manifests there (and
/// the journal of an interrupted push), by path.
#[derive(Debug, Default)]
pub struct Known {
    by_path: BTreeMap<String, FileEntry>,
}

impl Known {
    /// Add every file of `m`.
    pub fn add_manifest(&mut self, m: &Manifest) {
        for f in &m.files {
            self.add(f.clone());
        }
    }

    /// Add one file.
    pub fn add(&mut self, f: FileEntry) {
        self.by_path.insert(f.path.clone(), f);
    }

    /// The entry of a file already in the store, if any. A blob file is the same file when its path is (ZODB never
    /// rewrites one); the caller compares the md5 of any other file.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.by_path.get(path)
    }
}

/// Keys referenced by `manifests`.
#[must_use]
pub fn referenced<'a, I: IntoIterator<Item = &'a Manifest>>(manifests: I) -> BTreeSet<String> {
    manifests
        .into_iter()
        .flat_map(|m| m.files.iter().map(|f| f.key.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_checks() {
        let m = Manifest {
            format: FORMAT.to_owned(),
            name: "blobstorage.2026-01-01-00-00-00".to_owned(),
            base: "blobstorage".to_owned(),
            files: vec![FileEntry {
                path: "0x00/0x01/0x03e5.blob".to_owned(),
                size: 3,
                md5: "900150983cd24fb0d6963f7d28e17f72".to_owned(),
                key: "1/blobfiles/0x00/0x01/0x03e5.blob".to_owned(),
                mode: 0o444,
            }],
        };
        let bytes = m.to_bytes().expect("json");
        assert_eq!(Manifest::parse("k", &bytes).expect("parse"), m);
        let evil = String::from_utf8(bytes)
            .expect("utf8")
            .replace("0x00/0x01/0x03e5.blob\"", "../../etc/passwd\"");
        assert!(Manifest::parse("k", evil.as_bytes()).is_err());
        assert!(Manifest::parse("k", b"{}").is_err());
        let mut bad = m.clone();
        bad.base = "../../root".to_owned();
        assert!(Manifest::parse("k", &bad.to_bytes().expect("json")).is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(
            file_key("1/blobfiles", "0x01/a.blob", "ff"),
            "1/blobfiles/0x01/a.blob"
        );
        assert_eq!(
            file_key("1/blobfiles", ".layout", "ff"),
            "1/blobfiles/.layout.ff"
        );
    }
}
