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

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::repozo::backup::bad_gzip;
use crate::repozo::chain::{plan_chain, Chain};
use crate::repozo::dat::DatLine;
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
        check_line(&filename, gz, size, &sum, line, opts.quick)?;
        bytes += size;
        checked.push(filename);
    }
    progress.finish();
    Ok(VerifyReport {
        files: checked,
        bytes,
    })
}

/// Compare a file's uncompressed size and md5 (unless `quick`) with its
/// `.dat` line, in repozo's words.
///
/// # Errors
/// [`Error::VerificationFail`] naming the file.
fn check_line(
    filename: &Path,
    gz: bool,
    size: u64,
    sum: &str,
    line: &DatLine,
    quick: bool,
) -> Result<()> {
    let expected = line.end - line.start;
    let when_uncompressed = if gz { " (when uncompressed)" } else { "" };
    if size != expected {
        return Err(Error::VerificationFail(format!(
            "{} is {size} bytes{when_uncompressed}, should be {expected} bytes",
            filename.display()
        )));
    }
    if !quick && sum != line.md5 {
        return Err(Error::VerificationFail(format!(
            "{} has checksum {sum}{when_uncompressed} instead of {}",
            filename.display(),
            line.md5
        )));
    }
    Ok(())
}

/// A planned chain read as one stream, the bytes a recover would write,
/// while every file is checked against its `.dat` line as `-V` checks it
/// (size and md5). A file that does not match is recorded in
/// [`ChainReader::problems`] and the stream goes on; a file that cannot be
/// opened or decompressed ends the stream there (what follows could not be
/// placed). A chain without `.dat` ([`Chain::by_names`]) is only read.
pub struct ChainReader<'a> {
    chain: &'a Chain,
    next: usize,
    current: Option<Current>,
    ended: bool,
    /// What did not match, in chain order.
    pub problems: Vec<Error>,
}

struct Current {
    index: usize,
    path: PathBuf,
    gz: bool,
    reader: Box<dyn Read + Send>,
    md5: Md5,
    size: u64,
}

impl<'a> ChainReader<'a> {
    /// Read `chain` from its first file.
    #[must_use]
    pub fn new(chain: &'a Chain) -> Self {
        ChainReader {
            chain,
            next: 0,
            current: None,
            ended: false,
            problems: Vec::new(),
        }
    }

    fn open_next(&mut self) -> bool {
        let Some(path) = self.chain.files.get(self.next) else {
            return false;
        };
        let index = self.next;
        self.next += 1;
        log::info!(target: LOG, "Verifying {}", path.display());
        let gz = is_gzip_name(&path.to_string_lossy());
        match crate::fsutil::open_regular(path) {
            Ok(f) => {
                let buffered = io::BufReader::with_capacity(1 << 16, f);
                let reader: Box<dyn Read + Send> = if gz {
                    Box::new(gzip::decoder(buffered))
                } else {
                    Box::new(buffered)
                };
                self.current = Some(Current {
                    index,
                    path: path.clone(),
                    gz,
                    reader,
                    md5: Md5::new(),
                    size: 0,
                });
                true
            }
            Err(_) => {
                self.problems.push(Error::VerificationFail(format!(
                    "{} is missing",
                    path.display()
                )));
                false
            }
        }
    }

    fn finish_current(&mut self) {
        if let Some(c) = self.current.take() {
            if self.chain.by_names {
                return;
            }
            if let Some(line) = self.chain.lines.get(c.index) {
                let sum = hex(c.md5);
                if let Err(e) = check_line(&c.path, c.gz, c.size, &sum, line, false) {
                    self.problems.push(e);
                }
            }
        }
    }
}

impl Read for ChainReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            if self.current.is_none() && !self.open_next() {
                self.ended = true;
                return Ok(0);
            }
            let Some(c) = self.current.as_mut() else {
                return Ok(0);
            };
            match c.reader.read(buf) {
                Ok(0) => self.finish_current(),
                Ok(n) => {
                    c.md5.update(&buf[..n]);
                    c.size += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = if c.gz {
                        bad_gzip(&c.path, &e)
                    } else {
                        crate::repozo::io_err(&c.path, e)
                    };
                    self.problems.push(err);
                    self.current = None;
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
    }
}
