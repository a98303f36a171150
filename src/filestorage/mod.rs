//! The ZODB FileStorage (`Data.fs`) format.
//!
//! - [`format`]: decoding of transaction and data record headers (see docs/filestorage.rst).
//! - [`scan`]: the walk that finds the end of the last committed transaction
//!   exactly as ZODB's `read_index` does (§3.5), reusing a `Data.fs.index`
//!   the way `_restore_index`/`_check_sanity` do (§3.7).
//! - [`index`]: the fsIndex map and its `.index` file format (§4).
//! - [`blobrefs`]: the records of a FileStorage stream that need a blob
//!   file; [`pickle_class`]: the class a data record's pickle names.

pub mod blobrefs;
pub mod format;
pub mod index;
pub mod pickle_class;
pub mod scan;

pub use format::{DataHeader, Oid, Tid, TxnHeader, TxnStatus};
pub use index::FsIndex;
pub use scan::{scan, scan_file, ScanOptions, ScanResult};

use std::path::Path;

/// Scan `datafs` (reusing its `.index` when ZODB would) and write the fsIndex
/// for its end to `index_path`, atomically. Returns the pos written.
///
/// # Errors
/// Those of [`scan()`] and of writing the file.
pub fn write_index(datafs: &Path, index_path: &Path) -> crate::Result<u64> {
    let r = scan(datafs, &ScanOptions::default())?;
    r.index.write(r.end, index_path)?;
    Ok(r.end)
}
