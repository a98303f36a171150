//! gzip for backup files (repozo-format §2.4).
//!
//! Writing: the input is cut into independent chunks, each compressed on
//! its own core into a complete gzip member (rayon), and the members are
//! written in order. A multi-member file is standard gzip: Python's `gzip`
//! module, repozo and `gunzip` read it as one stream. Reading: any gzip
//! stream, one or many members, with or without a file name in the header,
//! with sync-flush blocks (what repozo writes).

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::{Compression, GzBuilder};
use md5::{Digest, Md5};
use rayon::prelude::*;

use crate::progress::Progress;
use crate::repozo::stream::fill;

/// Default compression level, chosen by measurement on generated storages
/// against repozo's level 9 (see CHANGES.rst and `benches/repozo_bench.py`).
pub const DEFAULT_LEVEL: u32 = 1;

/// Uncompressed bytes per gzip member.
pub const MEMBER_SIZE: usize = 1 << 20;

/// A reader that decompresses every member of a gzip stream.
pub fn decoder<R: Read>(r: R) -> MultiGzDecoder<R> {
    MultiGzDecoder::new(r)
}

fn compress_member(data: &[u8], level: u32, mtime: u32) -> io::Result<Vec<u8>> {
    let mut enc = GzBuilder::new().mtime(mtime).write(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::new(level),
    );
    enc.write_all(data)?;
    enc.finish()
}

/// Read `src` to its end, write it gzip-compressed (parallel members) to
/// `dst`, and return `(bytes read, md5 of the bytes read)`.
///
/// The md5 and the reading of the next batch run while the current batch
/// is compressed, so a two-core machine keeps both cores busy.
///
/// # Errors
/// I/O errors of `src` or `dst`.
pub fn compress<R, W>(
    src: &mut R,
    dst: &mut W,
    level: u32,
    mtime: u32,
    progress: &dyn Progress,
) -> io::Result<(u64, Md5)>
where
    R: Read + Send,
    W: Write,
{
    let batch_len = rayon::current_num_threads().max(1) * 2;
    let mut hasher = Md5::new();
    let mut total = 0u64;
    let mut batch = read_batch(src, batch_len)?;
    let mut wrote_any = false;
    while !batch.is_empty() {
        let (members, next) = rayon::join(
            || {
                batch
                    .par_iter()
                    .map(|c| compress_member(c, level, mtime))
                    .collect::<io::Result<Vec<Vec<u8>>>>()
            },
            || {
                for c in &batch {
                    hasher.update(c);
                }
                read_batch(src, batch_len)
            },
        );
        for m in members? {
            dst.write_all(&m)?;
        }
        wrote_any = true;
        let n: u64 = batch.iter().map(|c| c.len() as u64).sum();
        total += n;
        progress.advance(n);
        batch = next?;
    }
    if !wrote_any {
        // An empty input still makes a valid gzip file (one empty member).
        dst.write_all(&compress_member(&[], level, mtime)?)?;
    }
    Ok((total, hasher))
}

fn read_batch<R: Read>(src: &mut R, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut batch = Vec::with_capacity(n);
    for _ in 0..n {
        let mut buf = vec![0u8; MEMBER_SIZE];
        let got = fill(src, &mut buf)?;
        if got == 0 {
            break;
        }
        buf.truncate(got);
        let short = got < MEMBER_SIZE;
        batch.push(buf);
        if short {
            break;
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7919) % 251) as u8).collect()
    }

    #[test]
    fn compress_roundtrip_multi_member() {
        let data = sample(3 * MEMBER_SIZE + 12345);
        let mut out = Vec::new();
        let (n, h) = compress(&mut &data[..], &mut out, 6, 0, &NoProgress).expect("compress");
        assert_eq!(n, data.len() as u64);
        assert_eq!(h.finalize()[..], Md5::digest(&data)[..]);
        let mut back = Vec::new();
        decoder(&out[..]).read_to_end(&mut back).expect("decode");
        assert_eq!(back, data);
    }

    #[test]
    fn compress_empty_is_valid_gzip() {
        let mut out = Vec::new();
        compress(&mut &b""[..], &mut out, 1, 0, &NoProgress).expect("compress");
        assert_eq!(&out[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        decoder(&out[..]).read_to_end(&mut back).expect("decode");
        assert!(back.is_empty());
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let data = sample(100_000);
        let mut out = Vec::new();
        compress(&mut &data[..], &mut out, 6, 0, &NoProgress).expect("compress");
        out.truncate(out.len() - 10);
        let mut back = Vec::new();
        assert!(decoder(&out[..]).read_to_end(&mut back).is_err());
    }
}
