//! Progress reporting from the core, without printing.
//!
//! Long operations (copying a Data.fs, compressing, walking a blobstorage)
//! take a `&dyn Progress`. The command lines ask for [`StderrBar`], a bar
//! on stderr that draws only on a terminal; library users pass
//! [`NoProgress`].

mod bar;

pub use bar::{suspend, StderrBar};

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes read or written (Data.fs copies, checksums, recovers).
    Bytes,
    /// Files (blob copies, hard links, archive members).
    Files,
}

/// Receives progress of one long operation. Implementations must be cheap:
/// `advance` is called for every chunk (parallel workers may call it
/// concurrently, hence `Sync`).
pub trait Progress: Sync {
    /// A new phase begins; `total` is in `unit`s, when known.
    fn start(&self, _phase: &str, _total: Option<u64>, _unit: Unit) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// Discards progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
