//! The FileStorages a Zope `zope.conf` or a ZEO `zeo.conf` serves: the
//! main one and the additional (mounted) ones, with their blob directories.
//!
//! Reads the tree [`crate::zconfig`] makes of the file and applies the rules
//! documented in `docs/zope-conf.rst`:
//!
//! - a `zope.conf` has `<zodb_db NAME>` sections (ZODB's `zodb` section type
//!   as Zope extends it). The main database is the one mounted at `/`
//!   (`mount-point /`), else the one named `main`, else the first; every
//!   other one is an additional storage named NAME (the name of the recipe's
//!   `additional_filestorages`, which suffixes its backup locations);
//! - a `zeo.conf` has its storages as top-level sections named by the
//!   storage name; the one named `1` (ZEO's default, which an unnamed one
//!   gets) is the main one, else the first;
//! - a storage is `<filestorage>` (`path`, optional `blob-dir`), possibly
//!   inside `<blobstorage>` (`blob-dir`), `<zlibstorage>` (zc.zlibstorage) or
//!   `<before>` (zc.beforestorage); inside `<s3blobstorage>`
//!   (zodb-s3blobs) only the Data.fs is local. In-memory storages
//!   (`<mappingstorage>`, `<temporarystorage>`) of additional databases are
//!   skipped: there is nothing on disk. Anything else (`<zeoclient>`,
//!   `<relstorage>`, ...) is an error: its data is not in a local Data.fs.
//! - relative paths are taken relative to the directory of the file that
//!   holds the line, where ZODB would take them relative to the working
//!   directory of the Zope or ZEO process, which a backup cannot know.
//!   Zope's and ZEO's generators write absolute paths.
//!
//! It does not check that the files exist: the backup does.

use std::path::{Path, PathBuf};

use crate::config::is_additional_storage_name;
use crate::error::{Error, Result};
use crate::zconfig::{self, Loader, Section, System, Value};

/// Which kind of file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfKind {
    /// A Zope `zope.conf` (`<zodb_db>` sections).
    Zope,
    /// A ZEO server's `zeo.conf` (top-level storage sections).
    Zeo,
}

impl ConfKind {
    /// `zope` or `zeo`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfKind::Zope => "zope",
            ConfKind::Zeo => "zeo",
        }
    }
}

/// One local FileStorage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfStorage {
    /// The database (zope.conf) or storage (zeo.conf) name, lower case as
    /// ZConfig reads it.
    pub name: String,
    /// The Data.fs.
    pub datafs: PathBuf,
    /// The blob directory, if the storage has one on this machine.
    pub blob_dir: Option<PathBuf>,
}

/// What a `zope.conf` / `zeo.conf` says is to be backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZopeConf {
    /// Zope or ZEO.
    pub kind: ConfKind,
    /// The main storage (Zope's root database, ZEO's storage `1`).
    pub main: ConfStorage,
    /// The other FileStorages, in file order.
    pub additional: Vec<ConfStorage>,
}

/// Read the storages of a `zope.conf` or `zeo.conf`. A relative `path` is
/// taken relative to the current directory first.
///
/// # Errors
/// [`Error::ZConfig`] with the file and line of the first problem (syntax,
/// an undefined `$NAME`, a storage that is not a local FileStorage, a
/// storage without `path`); [`Error::Config`] when the file cannot be read.
pub fn read_zope_conf(path: &Path) -> Result<ZopeConf> {
    let path = std::path::absolute(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the configuration file: {}",
            crate::repozo::python_oserror(&e, path)
        ))
    })?;
    read_with(&path, &System)
}

/// [`read_zope_conf`] through `loader` (files, environment, `$HOME`).
///
/// # Errors
/// As [`read_zope_conf`].
pub fn read_with(path: &Path, loader: &dyn Loader) -> Result<ZopeConf> {
    let top = zconfig::parse(path, loader)?;
    storages(&top, loader)
}

/// The storages of a parsed file (`top` is its top level).
///
/// # Errors
/// As [`read_zope_conf`].
pub fn storages(top: &Section, loader: &dyn Loader) -> Result<ZopeConf> {
    let reader = Reader { loader };
    if top.sections.iter().any(|s| s.section_type == "zodb_db") {
        return reader.zope(top);
    }
    let looks_like_zeo = top
        .sections
        .iter()
        .any(|s| s.section_type == "zeo" || storage_type(&s.section_type) != StorageType::Unknown);
    if looks_like_zeo {
        return reader.zeo(top);
    }
    Err(Error::ZConfig {
        path: top.at.file.clone(),
        line: 0,
        reason: "no <zodb_db> section (zope.conf) and no storage section (zeo.conf): no storage to back up".to_owned(),
    })
}

/// Section types ZEO's schema allows at the top of a zeo.conf besides the
/// storages.
const ZEO_OTHER_SECTIONS: [&str; 4] = ["zeo", "runner", "eventlog", "logger"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageType {
    /// ZODB's FileStorage.
    File,
    /// ZODB's BlobStorage wrapper: `blob-dir` plus an inner storage.
    Blob,
    /// A wrapper whose inner storage keeps its files (zlib compression,
    /// a read-only view at a point in time).
    Wrapper,
    /// A wrapper that keeps blobs in S3 and the data in the inner storage.
    S3Blobs,
    /// Kept in memory: nothing on disk to back up.
    InMemory,
    /// A ZEO client: the files are on the server.
    Zeo,
    /// RelStorage: the data is in a relational database.
    RelStorage,
    /// Any other section.
    Unknown,
}

fn storage_type(section_type: &str) -> StorageType {
    match section_type {
        "filestorage" => StorageType::File,
        "blobstorage" => StorageType::Blob,
        "zlibstorage" | "before" => StorageType::Wrapper,
        "s3blobstorage" => StorageType::S3Blobs,
        "mappingstorage" | "temporarystorage" => StorageType::InMemory,
        "zeoclient" | "clientstorage" => StorageType::Zeo,
        "relstorage" => StorageType::RelStorage,
        _ => StorageType::Unknown,
    }
}

/// What a storage section comes to.
enum Found {
    Local {
        datafs: PathBuf,
        blob_dir: Option<PathBuf>,
    },
    InMemory,
}

struct Reader<'l> {
    loader: &'l dyn Loader,
}

impl Reader<'_> {
    fn zope(&self, top: &Section) -> Result<ZopeConf> {
        let dbs: Vec<&Section> = top
            .sections
            .iter()
            .filter(|s| s.section_type == "zodb_db")
            .collect();
        let main_index = dbs
            .iter()
            .position(|db| {
                db.values_of("mount-point")
                    .any(|v| mounted_at_root(&v.value))
            })
            .or_else(|| dbs.iter().position(|db| db.name.as_deref() == Some("main")))
            .unwrap_or(0);
        let mut main = None;
        let mut additional = Vec::new();
        for (i, db) in dbs.iter().enumerate() {
            if let Some(first) = dbs[..i].iter().find(|d| d.name == db.name) {
                return Err(db.at.error(format!(
                    "a second {} (the first is on line {} of {})",
                    db.describe(),
                    first.at.line,
                    first.at.file.display()
                )));
            }
            let found = self.resolve(self.inner_storage(db)?, db)?;
            let name = db.name.clone().unwrap_or_default();
            if i == main_index {
                main = Some(self.local(found, db, name)?);
                continue;
            }
            additional.extend(additional_storage(found, db, name)?);
        }
        let main = main.ok_or_else(|| Error::ZConfig {
            path: top.at.file.clone(),
            line: 0,
            reason: "no <zodb_db> section".to_owned(),
        })?;
        Ok(ZopeConf {
            kind: ConfKind::Zope,
            main,
            additional,
        })
    }

    fn zeo(&self, top: &Section) -> Result<ZopeConf> {
        let sections: Vec<&Section> = top
            .sections
            .iter()
            .filter(|s| !ZEO_OTHER_SECTIONS.contains(&s.section_type.as_str()))
            .collect();
        // ZEO names an unnamed storage `1`; there may be only one of them,
        // and not next to a storage named `1`.
        let mut named: Vec<(&Section, String)> = Vec::with_capacity(sections.len());
        for s in &sections {
            let name = s.name.clone().unwrap_or_else(|| "1".to_owned());
            if let Some((first, _)) = named.iter().find(|(_, n)| *n == name) {
                let what = if s.name.is_none() || first.name.is_none() {
                    format!("a second storage named 1 (an unnamed one is named 1; the first is {} on line {})", first.describe(), first.at.line)
                } else {
                    format!(
                        "a second storage named {name} (the first is on line {} of {})",
                        first.at.line,
                        first.at.file.display()
                    )
                };
                return Err(s.at.error(what));
            }
            named.push((s, name));
        }
        let Some(main_index) = named
            .iter()
            .position(|(_, n)| n == "1")
            .or(if named.is_empty() { None } else { Some(0) })
        else {
            return Err(Error::ZConfig {
                path: top.at.file.clone(),
                line: 0,
                reason: "no storage section (such as <filestorage 1>): no storage to back up"
                    .to_owned(),
            });
        };
        let mut main = None;
        let mut additional = Vec::new();
        for (i, (s, name)) in named.into_iter().enumerate() {
            let found = self.resolve(s, s)?;
            if i == main_index {
                main = Some(self.local(found, s, name)?);
                continue;
            }
            additional.extend(additional_storage(found, s, name)?);
        }
        let main = main.ok_or_else(|| Error::ZConfig {
            path: top.at.file.clone(),
            line: 0,
            reason: "no storage section".to_owned(),
        })?;
        Ok(ZopeConf {
            kind: ConfKind::Zeo,
            main,
            additional,
        })
    }

    /// The main storage must be on disk.
    fn local(&self, found: Found, owner: &Section, name: String) -> Result<ConfStorage> {
        match found {
            Found::Local { datafs, blob_dir } => Ok(ConfStorage {
                name,
                datafs,
                blob_dir,
            }),
            Found::InMemory => Err(owner.at.error(format!(
                "{} keeps its data in memory: there is no Data.fs to back up",
                owner.describe()
            ))),
        }
    }

    /// The one storage section inside `owner` (a database or a wrapper).
    fn inner_storage<'s>(&self, owner: &'s Section) -> Result<&'s Section> {
        match owner.sections.as_slice() {
            [one] => Ok(one),
            [] => Err(owner.at.error(format!(
                "{} has no storage section (such as <filestorage>)",
                owner.describe()
            ))),
            [_, second, ..] => Err(second.at.error(format!(
                "{} has more than one storage section",
                owner.describe()
            ))),
        }
    }

    /// What the storage section `s` (in the database or zeo.conf storage
    /// `owner`) comes to.
    fn resolve(&self, s: &Section, owner: &Section) -> Result<Found> {
        let here = if std::ptr::eq(s, owner) {
            s.describe()
        } else {
            format!("{} in {}", s.describe(), owner.describe())
        };
        match storage_type(&s.section_type) {
            StorageType::File => {
                let path = single(s, "path")?.ok_or_else(|| {
                    s.at.error(format!(
                        "{here} has no path: cannot tell where its Data.fs is"
                    ))
                })?;
                if path.value.is_empty() {
                    return Err(path.at.error(format!("{here} has an empty path")));
                }
                let datafs = self.path(path, true)?;
                // An empty blob-dir means no blobs, as ZODB documents.
                let blob_dir = match single(s, "blob-dir")? {
                    Some(v) if !v.value.is_empty() => Some(self.path(v, true)?),
                    _ => None,
                };
                Ok(Found::Local { datafs, blob_dir })
            }
            StorageType::Blob => {
                let v = single(s, "blob-dir")?.ok_or_else(|| {
                    s.at.error(format!("{here} has no blob-dir"))
                })?;
                if v.value.is_empty() {
                    return Err(v.at.error(format!("{here} has an empty blob-dir")));
                }
                // ZODB's BlobStorage takes blob-dir as a plain string: no `~`.
                let blob_dir = self.path(v, false)?;
                Ok(match self.resolve(self.inner_storage(s)?, owner)? {
                    Found::Local { datafs, .. } => Found::Local {
                        datafs,
                        blob_dir: Some(blob_dir),
                    },
                    Found::InMemory => Found::InMemory,
                })
            }
            StorageType::Wrapper => self.resolve(self.inner_storage(s)?, owner),
            StorageType::S3Blobs => Ok(match self.resolve(self.inner_storage(s)?, owner)? {
                Found::Local { datafs, .. } => {
                    log::warn!(
                        "{}: {here} keeps its blobs in S3: only its Data.fs is backed up",
                        s.at
                    );
                    Found::Local {
                        datafs,
                        blob_dir: None,
                    }
                }
                Found::InMemory => Found::InMemory,
            }),
            StorageType::InMemory => Ok(Found::InMemory),
            StorageType::Zeo => Err(s.at.error(format!(
                "{here}: the database is on a ZEO server, not in a local Data.fs; run the backup on the ZEO server's machine, with --zope-conf naming the server's zeo.conf"
            ))),
            StorageType::RelStorage => Err(s.at.error(format!(
                "{here} is not a FileStorage: RelStorage keeps the database in a relational database, which its own tools back up"
            ))),
            StorageType::Unknown => Err(s.at.error(format!(
                "{here} is not a FileStorage: only <filestorage> (also inside <blobstorage>, <zlibstorage> or <before>) can be backed up"
            ))),
        }
    }

    /// A path value: `~` expanded where ZConfig expands it
    /// (`existing-dirpath`), relative ones taken relative to the directory
    /// of the file that holds the line.
    fn path(&self, v: &Value, expand_user: bool) -> Result<PathBuf> {
        let text = v.value.as_str();
        let path = if expand_user && (text == "~" || text.starts_with("~/")) {
            let home = self
                .loader
                .env_var("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    v.at.error(format!("cannot expand '{text}': HOME is not set"))
                })?;
            PathBuf::from(home).join(text.trim_start_matches('~').trim_start_matches('/'))
        } else if expand_user && text.starts_with('~') {
            return Err(v.at.error(format!(
                "'{text}': paths starting with ~user are not supported here; write the directory out"
            )));
        } else {
            PathBuf::from(text)
        };
        if path.is_absolute() {
            return Ok(path);
        }
        let dir = v.at.file.parent().unwrap_or(Path::new(""));
        let resolved = dir.join(&path);
        log::warn!(
            "{}: relative path '{text}' taken as {} (relative to the directory of {}; Zope and ZEO take it relative to their working directory)",
            v.at,
            resolved.display(),
            v.at.file.display()
        );
        Ok(resolved)
    }
}

/// The value of a key that may appear once.
fn single<'s>(s: &'s Section, key: &'s str) -> Result<Option<&'s Value>> {
    let mut values = s.values_of(key);
    let first = values.next();
    if let (Some(first), Some(second)) = (first, values.next()) {
        return Err(second.at.error(format!(
            "{key} is set twice in {} (first on line {})",
            s.describe(),
            first.at.line
        )));
    }
    Ok(first)
}

/// `mount-point /` (also `/:/real/path`, Zope's virtual:real form).
fn mounted_at_root(mount_point: &str) -> bool {
    mount_point.split(':').next() == Some("/")
}

/// An additional storage's name suffixes its backup locations.
/// A database other than the main one: a storage to back up, or `None`
/// (with a debug line) for one kept in memory.
fn additional_storage(found: Found, owner: &Section, name: String) -> Result<Option<ConfStorage>> {
    check_name(owner, &name)?;
    Ok(match found {
        Found::Local { datafs, blob_dir } => Some(ConfStorage {
            name,
            datafs,
            blob_dir,
        }),
        Found::InMemory => {
            log::debug!(
                "{}: {} keeps its data in memory: nothing to back up",
                owner.at,
                owner.describe()
            );
            None
        }
    })
}

fn check_name(owner: &Section, name: &str) -> Result<()> {
    if owner.name.is_none() {
        return Err(owner.at.error(format!(
            "{} has no name: an additional database needs one, it names its backup locations",
            owner.describe()
        )));
    }
    if !is_additional_storage_name(name) {
        return Err(owner.at.error(format!(
            "{}: '{name}' cannot name an additional storage (it suffixes backup locations: no '/', '.', '..' or '1')",
            owner.describe()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zconfig::Fake;

    fn read(text: &'static str) -> Result<ZopeConf> {
        let loader = Fake {
            files: vec![("/srv/etc/zope.conf", text)],
            env: vec![("HOME", "/home/z")],
        };
        read_with(Path::new("/srv/etc/zope.conf"), &loader)
    }

    fn err(text: &'static str) -> String {
        match read(text) {
            Ok(c) => format!("unexpectedly read: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn storage(name: &str, datafs: &str, blob_dir: Option<&str>) -> ConfStorage {
        ConfStorage {
            name: name.to_owned(),
            datafs: PathBuf::from(datafs),
            blob_dir: blob_dir.map(PathBuf::from),
        }
    }

    #[test]
    fn zope_filestorage_with_blob_dir() {
        let c = read(
            "%define CLIENTHOME /srv/var\n<zodb_db main>\n  mount-point /\n  <filestorage>\n    path $CLIENTHOME/filestorage/Data.fs\n    blob-dir $CLIENTHOME/blobstorage\n  </filestorage>\n</zodb_db>\n",
        )
        .expect("reads");
        assert_eq!(c.kind, ConfKind::Zope);
        assert_eq!(
            c.main,
            storage(
                "main",
                "/srv/var/filestorage/Data.fs",
                Some("/srv/var/blobstorage")
            )
        );
        assert!(c.additional.is_empty());
    }

    #[test]
    fn zope_blobstorage_wrapping_and_mounted_databases() {
        let c = read(
            "<zodb_db catalog>\n mount-point /plone/catalog\n <filestorage>\n  path /v/catalog.fs\n </filestorage>\n</zodb_db>\n<zodb_db temporary>\n <temporarystorage>\n </temporarystorage>\n mount-point /temp_folder\n</zodb_db>\n<zodb_db root>\n mount-point /\n <blobstorage>\n  blob-dir /v/blobs\n  <filestorage>\n   path /v/Data.fs\n  </filestorage>\n </blobstorage>\n</zodb_db>\n",
        )
        .expect("reads");
        assert_eq!(c.main, storage("root", "/v/Data.fs", Some("/v/blobs")));
        assert_eq!(c.additional, [storage("catalog", "/v/catalog.fs", None)]);
    }

    #[test]
    fn zope_main_by_name_then_first() {
        let two = |a: &'static str| read(a).expect("reads").main.name;
        assert_eq!(
            two("<zodb_db a>\n<filestorage>\npath /a\n</filestorage>\n</zodb_db>\n<zodb_db main>\n<filestorage>\npath /m\n</filestorage>\n</zodb_db>\n"),
            "main"
        );
        assert_eq!(
            two("<zodb_db a>\n<filestorage>\npath /a\n</filestorage>\n</zodb_db>\n<zodb_db b>\n<filestorage>\npath /b\n</filestorage>\n</zodb_db>\n"),
            "a"
        );
    }

    #[test]
    fn zope_wrappers() {
        let c = read(
            "%import zc.zlibstorage\n<zodb_db main>\n<zlibstorage>\n<filestorage>\npath /v/Data.fs\nblob-dir /v/b\n</filestorage>\n</zlibstorage>\n</zodb_db>\n",
        )
        .expect("reads");
        assert_eq!(c.main, storage("main", "/v/Data.fs", Some("/v/b")));
        let c = read(
            "<zodb_db main>\n<s3blobstorage>\nbucket-name b\n<filestorage>\npath /v/Data.fs\n</filestorage>\n</s3blobstorage>\n</zodb_db>\n",
        )
        .expect("reads");
        assert_eq!(c.main, storage("main", "/v/Data.fs", None));
    }

    #[test]
    fn zope_zeoclient_main_is_an_error() {
        assert_eq!(
            err("<zodb_db main>\n  mount-point /\n  <zeoclient>\n    server localhost:8100\n  </zeoclient>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:3: <zeoclient> in <zodb_db main>: the database is on a ZEO server, not in a local Data.fs; run the backup on the ZEO server's machine, with --zope-conf naming the server's zeo.conf"
        );
    }

    #[test]
    fn zope_relstorage_is_an_error() {
        assert_eq!(
            err("<zodb_db main>\n  %import relstorage\n  <relstorage>\n  </relstorage>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:3: <relstorage> in <zodb_db main> is not a FileStorage: RelStorage keeps the database in a relational database, which its own tools back up"
        );
    }

    #[test]
    fn missing_path_names_the_section() {
        assert_eq!(
            err("<zodb_db main>\n  <filestorage>\n    blob-dir /b\n  </filestorage>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:2: <filestorage> in <zodb_db main> has no path: cannot tell where its Data.fs is"
        );
    }

    #[test]
    fn path_twice() {
        assert_eq!(
            err("<zodb_db main>\n<filestorage>\npath /a\npath /b\n</filestorage>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:4: path is set twice in <filestorage> (first on line 3)"
        );
    }

    #[test]
    fn database_without_storage() {
        assert_eq!(
            err("<zodb_db main>\nmount-point /\n</zodb_db>\n"),
            "/srv/etc/zope.conf:1: <zodb_db main> has no storage section (such as <filestorage>)"
        );
    }

    #[test]
    fn in_memory_main() {
        assert_eq!(
            err("<zodb_db main>\n<mappingstorage/>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:1: <zodb_db main> keeps its data in memory: there is no Data.fs to back up"
        );
    }

    #[test]
    fn additional_name_must_suit_locations() {
        assert_eq!(
            err("<zodb_db main>\n<filestorage>\npath /a\n</filestorage>\n</zodb_db>\n<zodb_db 1>\n<filestorage>\npath /b\n</filestorage>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:6: <zodb_db 1>: '1' cannot name an additional storage (it suffixes backup locations: no '/', '.', '..' or '1')"
        );
    }

    #[test]
    fn duplicate_database() {
        assert_eq!(
            err("<zodb_db a>\n<filestorage>\npath /a\n</filestorage>\n</zodb_db>\n<zodb_db A>\n<filestorage>\npath /b\n</filestorage>\n</zodb_db>\n"),
            "/srv/etc/zope.conf:6: a second <zodb_db a> (the first is on line 1 of /srv/etc/zope.conf)"
        );
    }

    #[test]
    fn relative_paths_and_home() {
        let c = read(
            "<zodb_db main>\n<blobstorage>\nblob-dir ../var/blobs\n<filestorage>\npath ~/Data.fs\n</filestorage>\n</blobstorage>\n</zodb_db>\n<zodb_db cat>\n<filestorage>\npath var/cat.fs\nblob-dir\n</filestorage>\n</zodb_db>\n",
        )
        .expect("reads");
        assert_eq!(
            c.main,
            storage("main", "/home/z/Data.fs", Some("/srv/etc/../var/blobs"))
        );
        assert_eq!(c.additional, [storage("cat", "/srv/etc/var/cat.fs", None)]);
    }

    #[test]
    fn zeo_storage_one_is_main() {
        let c = read(
            "%define INSTANCE /srv/zeo\n<zeo>\n  address 8100\n</zeo>\n<filestorage catalog>\n  path $INSTANCE/var/catalog.fs\n</filestorage>\n<filestorage 1>\n  path $INSTANCE/var/filestorage/Data.fs\n  blob-dir $INSTANCE/var/blobstorage\n</filestorage>\n<eventlog>\n  <logfile>\n    path $INSTANCE/var/log/zeo.log\n  </logfile>\n</eventlog>\n<runner>\n  program $INSTANCE/bin/runzeo\n</runner>\n",
        )
        .expect("reads");
        assert_eq!(c.kind, ConfKind::Zeo);
        assert_eq!(
            c.main,
            storage(
                "1",
                "/srv/zeo/var/filestorage/Data.fs",
                Some("/srv/zeo/var/blobstorage")
            )
        );
        assert_eq!(
            c.additional,
            [storage("catalog", "/srv/zeo/var/catalog.fs", None)]
        );
    }

    #[test]
    fn zeo_unnamed_is_one() {
        let c = read("<zeo>\n</zeo>\n<blobstorage>\nblob-dir /b\n<filestorage>\npath /d\n</filestorage>\n</blobstorage>\n<filestorage x>\npath /x\n</filestorage>\n")
            .expect("reads");
        assert_eq!(c.main, storage("1", "/d", Some("/b")));
        assert_eq!(c.additional, [storage("x", "/x", None)]);
        assert_eq!(
            err("<filestorage>\npath /a\n</filestorage>\n<filestorage 1>\npath /b\n</filestorage>\n"),
            "/srv/etc/zope.conf:4: a second storage named 1 (an unnamed one is named 1; the first is <filestorage> on line 1)"
        );
    }

    #[test]
    fn zeo_first_when_no_one() {
        let c = read("<filestorage main>\npath /m\n</filestorage>\n<filestorage other>\npath /o\n</filestorage>\n")
            .expect("reads");
        assert_eq!(c.main.name, "main");
        assert_eq!(c.additional[0].name, "other");
    }

    #[test]
    fn zeo_unknown_storage_is_an_error() {
        assert_eq!(
            err("<zeo>\n</zeo>\n<pgjsonb 1>\n</pgjsonb>\n"),
            "/srv/etc/zope.conf:3: <pgjsonb 1> is not a FileStorage: only <filestorage> (also inside <blobstorage>, <zlibstorage> or <before>) can be backed up"
        );
    }

    #[test]
    fn nothing_to_back_up() {
        assert_eq!(
            err("instancehome /srv\n<environment>\n X 1\n</environment>\n"),
            "/srv/etc/zope.conf: no <zodb_db> section (zope.conf) and no storage section (zeo.conf): no storage to back up"
        );
        assert_eq!(
            err("<zeo>\naddress 8100\n</zeo>\n"),
            "/srv/etc/zope.conf: no storage section (such as <filestorage 1>): no storage to back up"
        );
    }

    #[test]
    fn mount_point_forms() {
        assert!(mounted_at_root("/"));
        assert!(mounted_at_root("/:/app"));
        assert!(!mounted_at_root("/plone"));
        assert!(!mounted_at_root("/plone:/"));
    }
}
