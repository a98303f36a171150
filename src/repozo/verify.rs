//! `-V`: check a chain against its `.dat`.
//!
//! Mirrors repozo's `do_verify` (see docs/repository.rst): for every line of the
//! `.dat` of the newest chain, the file's (uncompressed) size and, unless
//! `quick`, its md5. What it does **not** check, like repozo: `.index`
//! files, chain files missing from the `.dat`, and whether the chain still
//! matches any live Data.fs; it never reads a pickle. Deviations: a gap
//! between two consecutive `.dat` lines is reported; a damaged gzip file is
//! reported as such (repozo says "is missing", or crashes with a traceback
//! for a truncated one); a malformed `.dat` line is a one-line error.

use std::path::PathBuf;

use md5::{Digest, Md5};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::repozo::backup::bad_gzip;
use crate::repozo::chain::plan_chain;
use crate::repozo::naming::{gen_filename, is_gzip_name, join};
use crate::repozo::stream::{copy_hashed, copy_unhashed, hex};
use crate::repozo::{gzip, LOG};

/// What to verify (repozo's `-V` options).
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The repository (`-r`).
    pub repository: PathBuf,
    /// Sizes only, no md5 (`-Q`). gzip files are still decompressed.
    pub quick: bool,
}

/// What verify checked.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The files checked, in `.dat` order.
    pub files: Vec<PathBuf>,
    /// Their total uncompressed size.
    pub bytes: u64,
}

/// Verify the newest chain of `opts.repository`.
///
/// # Errors
/// [`Error::NoFiles`], [`Error::RepozoIo`] (no `.dat`),
/// [`Error::BadDat`], [`Error::VerificationFail`] with repozo's messages.
pub fn verify(
    opts: &VerifyOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let repo = &opts.repository;
    // The same choice and checks as recover: verify fails whenever recover
    // would (a listed file missing, a gap, a full backup gone), and ignores
    // with the same warning what no `.dat` lists.
    let when = gen_filename(clock.now(), "");
    if !crate::repozo::chain::has_dat(repo) {
        // No `.dat`, so no sizes or checksums to verify against: repozo's
        // error for the missing `.dat` (a recover checks such a chain by
        // the structure of the Data.fs it makes instead).
        let files = crate::repozo::find::find_files(repo, &when)?;
        let Some(first) = files.first() else {
            return Err(Error::NoFiles { date: None });
        };
        crate::repozo::dat::read_required(&crate::repozo::dat::dat_path_for(first))?;
    }
    let chain = plan_chain(repo, &when, None)?;
    let lines = chain.lines;
    let total = lines
        .iter()
        .fold(0u64, |t, l| t.saturating_add(l.end.saturating_sub(l.start)));
    progress.start("verifying", Some(total), Unit::Bytes);
    let mut checked = Vec::with_capacity(lines.len());
    let mut bytes = 0;
    for line in &lines {
        let filename = join(repo, line.basename());
        let expected = line.end - line.start;
        log::info!(target: LOG, "Verifying {}", filename.display());
        let missing = || Error::VerificationFail(format!("{} is missing", filename.display()));
        let gz = is_gzip_name(&filename.to_string_lossy());
        let f = crate::fsutil::open_regular(&filename).map_err(|_| missing())?;
        let (size, sum) = if gz {
            let mut dec = gzip::decoder(std::io::BufReader::with_capacity(1 << 16, f));
            if opts.quick {
                // repozo quirk: -Q still decompresses, to learn the size.
                let n = copy_unhashed(&mut dec, &mut std::io::sink())
                    .map_err(|e| bad_gzip(&filename, &e))?;
                progress.advance(n);
                (n, String::new())
            } else {
                let (n, h) = copy_hashed::<_, std::io::Sink>(&mut dec, None, Md5::new(), progress)
                    .map_err(|e| bad_gzip(&filename, &e))?;
                (n, hex(h))
            }
        } else if opts.quick {
            let n = f.metadata().map_err(|_| missing())?.len();
            progress.advance(n);
            (n, String::new())
        } else {
            let mut f = f;
            let (n, h) = copy_hashed::<_, std::io::Sink>(&mut f, None, Md5::new(), progress)
                .map_err(|_| missing())?;
            (n, hex(h))
        };
        let when_uncompressed = if gz { " (when uncompressed)" } else { "" };
        if size != expected {
            return Err(Error::VerificationFail(format!(
                "{} is {size} bytes{when_uncompressed}, should be {expected} bytes",
                filename.display()
            )));
        }
        if !opts.quick && sum != line.md5 {
            return Err(Error::VerificationFail(format!(
                "{} has checksum {sum}{when_uncompressed} instead of {}",
                filename.display(),
                line.md5
            )));
        }
        bytes += size;
        checked.push(filename);
    }
    progress.finish();
    Ok(VerifyReport {
        files: checked,
        bytes,
    })
}
