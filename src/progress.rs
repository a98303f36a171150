//! Progress reporting from the core, without printing.
//!
//! Long operations (copying a Data.fs, compressing, walking a blobstorage)
//! take a `&dyn Progress`. The command line turns it into a progress bar
//! when stderr is a terminal; library users pass [`NoProgress`].

/// Receives progress of one long operation. Implementations must be cheap:
/// `advance` is called for every chunk (parallel workers may call it
/// concurrently, hence `Sync`).
pub trait Progress: Sync {
    /// A new phase begins; `total` is in the phase's unit (bytes or files)
    /// when known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// Discards progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
