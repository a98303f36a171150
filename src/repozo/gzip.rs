//! gzip for backup files (repozo-format §2.4).
//!
//! Writing: the input is cut into independent chunks, each compressed on
//! its own core into a complete gzip member (rayon), and the members are
//! written in order. A multi-member file is standard gzip: Python's `gzip`
//! module, repozo and `gunzip` read it as one stream. Reading: any gzip
//! stream, one or many members, with or without a file name in the header,
//! with sync-flush blocks (what repozo writes).

use std::cell::RefCell;
use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use md5::{Digest, Md5};
use rayon::prelude::*;

use crate::progress::Progress;
use crate::repozo::stream::fill;

/// Default compression level, chosen by measurement on generated storages
/// against repozo's level 9 (see CHANGES.rst and `benches/repozo_bench.py`).
pub const DEFAULT_LEVEL: u32 = 2;

/// Uncompressed bytes per gzip member.
pub const MEMBER_SIZE: usize = 512 << 10;

/// A reader that decompresses every member of a gzip stream.
pub fn decoder<R: Read>(r: R) -> MultiGzDecoder<R> {
    MultiGzDecoder::new(r)
}

thread_local! {
    /// One raw-deflate compressor per worker thread, reused for every
    /// member (allocating one per member costs time and memory).
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

/// Compress `data` into `out` as one complete gzip member (RFC 1952): a
/// 10-byte header without a file name, raw deflate, CRC32 and size.
fn compress_member(data: &[u8], level: u32, mtime: u32, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.reserve(data.len() + data.len() / 512 + 256);
    let xfl = match level {
        9 => 2,
        0 | 1 => 4,
        _ => 0,
    };
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0]);
    out.extend_from_slice(&mtime.to_le_bytes());
    out.extend_from_slice(&[xfl, 255]);
    DEFLATE.with(|cell| -> io::Result<()> {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("deflate state in use"))?;
        let c = match &mut *slot {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            other => {
                &mut other
                    .insert((level, Compress::new(Compression::new(level), false)))
                    .1
            }
        };
        loop {
            let done = usize::try_from(c.total_in())
                .unwrap_or(usize::MAX)
                .min(data.len());
            let status = c
                .compress_vec(&data[done..], out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == Status::StreamEnd {
                return Ok(());
            }
            out.reserve(64 << 10);
        }
    })?;
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    #[allow(clippy::cast_possible_truncation)]
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

/// Read `src` to its end, write it gzip-compressed (parallel members) to
/// `dst`, and return `(bytes read, md5 of the bytes read)`.
///
/// The md5 and the reading of the next batch run while the current batch
/// is compressed, so a two-core machine keeps both cores busy. Buffers are
/// reused: memory stays at three batches of [`MEMBER_SIZE`] chunks.
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
    let slots = rayon::current_num_threads().max(1) * 2;
    let new_set = || (0..slots).map(|_| Vec::new()).collect::<Vec<Vec<u8>>>();
    let (mut cur, mut next, mut outs) = (new_set(), new_set(), new_set());
    let mut hasher = Md5::new();
    let mut total = 0u64;
    let mut n = read_batch(src, &mut cur)?;
    if n == 0 {
        // An empty input still makes a valid gzip file (one empty member).
        compress_member(&[], level, mtime, &mut outs[0])?;
        dst.write_all(&outs[0])?;
        return Ok((0, hasher));
    }
    while n > 0 {
        let batch = &cur[..n];
        let (compressed, read_next) = rayon::join(
            || {
                batch
                    .par_iter()
                    .zip(outs[..n].par_iter_mut())
                    .try_for_each(|(c, o)| compress_member(c, level, mtime, o))
            },
            || {
                for c in batch {
                    hasher.update(c);
                }
                read_batch(src, &mut next)
            },
        );
        compressed?;
        for o in &outs[..n] {
            dst.write_all(o)?;
        }
        let bytes: u64 = batch.iter().map(|c| c.len() as u64).sum();
        total += bytes;
        progress.advance(bytes);
        n = read_next?;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok((total, hasher))
}

/// Fill the buffers of `bufs` with the next chunks of `src`; returns how
/// many hold data (all but the last are full).
fn read_batch<R: Read>(src: &mut R, bufs: &mut [Vec<u8>]) -> io::Result<usize> {
    for (i, buf) in bufs.iter_mut().enumerate() {
        buf.resize(MEMBER_SIZE, 0);
        let got = fill(src, buf)?;
        buf.truncate(got);
        if got < MEMBER_SIZE {
            return Ok(if got == 0 { i } else { i + 1 });
        }
    }
    Ok(bufs.len())
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
    fn member_is_standard_gzip() {
        let data = sample(1000);
        let mut out = Vec::new();
        compress_member(&data, 9, 0x0102_0304, &mut out).expect("compress");
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 4, 3, 2, 1, 2, 255]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("decode");
        assert_eq!(back, data);
    }

    #[test]
    fn every_level_roundtrips() {
        let data = sample(MEMBER_SIZE * 2 + 1);
        for level in 0..=9 {
            let mut out = Vec::new();
            compress(&mut &data[..], &mut out, level, 0, &NoProgress).expect("compress");
            let mut back = Vec::new();
            decoder(&out[..]).read_to_end(&mut back).expect("decode");
            assert_eq!(back, data, "level {level}");
        }
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
