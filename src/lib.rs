//! Rust core of collective.recipe.backup 7.
//!
//! This crate owns everything that touches backup data on disk; the Python
//! package around it only parses options and arguments and calls in here.
//!
//! | word | meaning |
//! |---|---|
//! | tid | transaction id, 8 bytes, strictly increasing; also a timestamp |
//! | oid | object id, 8 bytes |
//! | pos | an absolute offset in a `Data.fs` |
//! | transaction record | a 23-byte header, its metadata, data records and a redundant length |
//! | data record | a 42-byte header plus a pickle, or a backpointer |
//! | backpointer | an offset of an earlier data record whose pickle is reused (undo) |
//! | end | the offset just after the last committed transaction: what repozo copies |
//! | full / incremental | a backup of `[0, end)` / of `[previous end, end)` |
//! | chain | a full backup and the incrementals that follow it |
//! | snapshot | a complete, independent backup (repozo full, or a blob directory copy) |
//!
//! Modules:
//! - [`filestorage`]: the FileStorage format, the scan that finds `end`, and
//!   the fsIndex `.index` file.
//! - [`error`]: the one error type of the crate.
//! - [`fsutil`]: atomic file writes (temp name, fsync, rename).
//! - [`lock`]: one writer at a time per backup location.
//! - [`progress`], [`clock`]: what the core reports through, and its time source.
//! - [`config`]: `BackupConfig`, the validated buildout configuration;
//!   [`commands`]: backup and restore orchestration over engine traits;
//!   [`hooks`]: `pre_command` / `post_command`; [`status`]: the
//!   read-only health report of all backups; [`offsite`]: copies in
//!   S3-compatible object storage.
//! - [`zconfig`]: the ZConfig file syntax; [`zope_conf`]: the storages a
//!   Zope `zope.conf` or a ZEO `zeo.conf` serves.

pub mod clock;
pub mod error;
pub mod filestorage;
pub mod fsutil;
pub mod lock;
pub mod progress;
// --- repozo ---
pub mod repozo;

// --- blobs ---
pub mod blobs;
pub mod retention;

// --- recipe ---
pub mod commands;
pub mod config;
pub mod hooks;
pub mod offsite;
pub mod status;
pub mod zconfig;
pub mod zope_conf;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
