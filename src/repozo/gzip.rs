//! gzip for backup files (see docs/repository.rst).
//!
//! Writing: the input is cut into independent chunks, each compressed on
//! its own core into a complete gzip member (rayon), and the members are
//! written in order. A multi-member file is standard gzip: Python's `gzip`
//! module, repozo and `gunzip` read it as one stream. Each member's header
//! carries an extra field (RFC 1952 FEXTRA, subfield `CR`, like BGZF's
//! `BC`) with the member's compressed length, which every gzip reader
//! skips and which lets [`GzReader`] decompress our members in parallel.
//! Reading: any gzip stream, one or many members, with or without a file
//! name in the header, with sync-flush blocks (what repozo writes); members
//! without our extra field are read one after the other. Zero bytes after a
//! member are padding and skipped, as Python's `gzip` module and GNU gzip
//! do (so repozo reads such a file); anything else after a member must be
//! another member.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{mpsc, Mutex};

use md5::{Digest, Md5};
use rayon::prelude::*;

use crate::progress::Progress;
use crate::repozo::stream::{fill, Region};

/// Default compression level (libdeflate's), chosen by measurement on
/// generated storages against repozo's level 9 (see CHANGES.rst,
/// `benches/deflate_codecs.rs` and `benches/repozo_bench.py`).
pub const DEFAULT_LEVEL: u32 = 1;

/// Uncompressed bytes per gzip member.
pub const MEMBER_SIZE: usize = 512 << 10;

/// A reader that decompresses every member of a gzip stream (ours in
/// parallel).
pub fn decoder<R: Read + Send>(r: R) -> GzReader<R> {
    GzReader::new(r)
}

thread_local! {
    /// One libdeflate compressor per worker thread and level, reused for
    /// every member (allocating one per member costs time and memory).
    static DEFLATE: RefCell<Option<(u32, libdeflater::Compressor)>> = const { RefCell::new(None) };
    /// One libdeflate decompressor per worker thread.
    static INFLATE: RefCell<Option<libdeflater::Decompressor>> = const { RefCell::new(None) };
}

/// Compress `data` into `out` as one complete gzip member (RFC 1952): a
/// 20-byte header with our extra field, raw deflate (libdeflate, which
/// compresses a whole buffer at once faster than zlib streams, at a better
/// ratio for the same speed: see `benches/deflate_codecs.rs`), CRC32 and
/// size.
fn compress_member(data: &[u8], level: u32, mtime: u32, out: &mut Vec<u8>) -> io::Result<()> {
    let xfl = match level {
        9 => 2,
        0 | 1 => 4,
        _ => 0,
    };
    DEFLATE.with(|cell| -> io::Result<()> {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("deflate state in use"))?;
        let c = match &mut *slot {
            Some((l, c)) if *l == level => c,
            other => {
                let lvl =
                    libdeflater::CompressionLvl::new(i32::try_from(level.min(9)).unwrap_or(9))
                        .map_err(|_| io::Error::other("invalid gzip level"))?;
                &mut other.insert((level, libdeflater::Compressor::new(lvl))).1
            }
        };
        out.clear();
        out.extend_from_slice(&[0x1f, 0x8b, 8, FEXTRA]);
        out.extend_from_slice(&mtime.to_le_bytes());
        out.extend_from_slice(&[xfl, 255]);
        // XLEN 8: subfield "CR", length 4, the member length (patched below).
        out.extend_from_slice(&[8, 0, b'C', b'R', 4, 0, 0, 0, 0, 0]);
        out.resize(OUR_HEADER + c.deflate_compress_bound(data.len()), 0);
        let n = c
            .deflate_compress(data, &mut out[OUR_HEADER..])
            .map_err(io::Error::other)?;
        out.truncate(OUR_HEADER + n);
        Ok(())
    })?;
    out.extend_from_slice(&libdeflater::crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    #[allow(clippy::cast_possible_truncation)]
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let len = u32::try_from(out.len()).map_err(|_| io::Error::other("gzip member too large"))?;
    out[16..20].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The FEXTRA flag of a gzip header.
const FEXTRA: u8 = 4;
/// Bytes of our member header: 10 fixed + XLEN + one 8-byte subfield.
const OUR_HEADER: usize = 20;

/// The member length from one of our headers, or `None` for any other
/// header (repozo's, gzip's, garbage: read those sequentially).
fn our_member_len(h: &[u8]) -> Option<usize> {
    if h.len() < OUR_HEADER
        || h[..4] != [0x1f, 0x8b, 8, FEXTRA]
        || h[10..16] != [8, 0, b'C', b'R', 4, 0]
    {
        return None;
    }
    let len = u32::from_le_bytes([h[16], h[17], h[18], h[19]]) as usize;
    // No member we write is larger than MEMBER_SIZE stored plus block and
    // member overhead; a larger length is damage: such a member is read
    // sequentially by the standard decoder (which checks its CRC) instead of
    // being trusted for a buffer size.
    let max = MEMBER_SIZE + MEMBER_SIZE / 16 + 1024;
    (OUR_HEADER + 8..=max).contains(&len).then_some(len)
}

/// Decompress one of our members (whole, header included) into `out`,
/// checking its CRC32 and size.
fn inflate_member(member: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let body = &member[OUR_HEADER..member.len() - 8];
    let t = &member[member.len() - 8..];
    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
    let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
    // None of our members holds more than MEMBER_SIZE bytes; ISIZE may be
    // damaged, so it only has to fit, and a member that does not is read
    // by the sequential reader.
    if isize > MEMBER_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "gzip member larger than ours",
        ));
    }
    out.resize(isize, 0);
    let n = INFLATE.with(|cell| -> io::Result<usize> {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("inflate state in use"))?;
        slot.get_or_insert_with(libdeflater::Decompressor::new)
            .deflate_decompress(body, out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    })?;
    // libdeflate stops at the end of the deflate stream and ignores what
    // follows it: the trailer at the end of the member as its header
    // delimits it must match the data, or the length was wrong (it has no
    // checksum of its own) or the data damaged.
    if n != isize || libdeflater::crc32(out) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt gzip member (CRC or length mismatch)",
        ));
    }
    Ok(())
}

/// Reads a gzip file: our members in parallel batches, anything else
/// (repozo's single member, members of other tools) with [`Members`] from
/// the first such member on.
pub struct GzReader<R: Read + Send> {
    src: Option<R>,
    fallback: Option<Members<io::Chain<io::Cursor<Vec<u8>>, R>>>,
    /// Whether a member (of ours) was read: zero bytes after it are padding.
    after_member: bool,
    /// A read failed: every later read fails too.
    failed: bool,
    /// Raw bytes read past the last of our members (a foreign header).
    leftover: Option<Vec<u8>>,
    raw: Vec<Vec<u8>>,
    decoded: Vec<Vec<u8>>,
    ready: usize,
    cur: usize,
    pos: usize,
}

impl<R: Read + Send> GzReader<R> {
    /// Read the gzip stream `src`.
    pub fn new(src: R) -> Self {
        let slots = rayon::current_num_threads().max(1) * 2;
        GzReader {
            src: Some(src),
            fallback: None,
            after_member: false,
            failed: false,
            leftover: None,
            raw: (0..slots).map(|_| Vec::new()).collect(),
            decoded: (0..slots).map(|_| Vec::new()).collect(),
            ready: 0,
            cur: 0,
            pos: 0,
        }
    }

    /// Read and decompress the next batch of our members. Returns false at
    /// the end of our members.
    fn next_batch(&mut self) -> io::Result<bool> {
        let Some(src) = self.src.as_mut() else {
            return Ok(false);
        };
        let mut n = 0;
        // The last member read is shorter than its header says.
        let mut short = false;
        while n < self.raw.len() {
            let buf = &mut self.raw[n];
            buf.resize(OUR_HEADER, 0);
            let got = fill(src, buf)?;
            buf.truncate(got);
            let Some(len) = our_member_len(buf) else {
                if got > 0 {
                    self.leftover = Some(std::mem::take(buf));
                }
                break;
            };
            buf.resize(len, 0);
            let got = fill(src, &mut buf[OUR_HEADER..])?;
            n += 1;
            if got < len - OUR_HEADER {
                buf.truncate(OUR_HEADER + got);
                short = true;
                break;
            }
        }
        let whole = if short { n - 1 } else { n };
        let decoded: Vec<bool> = self.raw[..whole]
            .par_iter()
            .zip(self.decoded[..whole].par_iter_mut())
            .map(|(m, o)| inflate_member(m, o).is_ok())
            .collect();
        // The member length in our header is not covered by any checksum:
        // a member that does not decode with it (a damaged length, a
        // truncated file, damaged data) and everything after it is read
        // sequentially, as any gzip reader reads it, which also gives the
        // error if there is one.
        let good = decoded.iter().position(|ok| !ok).unwrap_or(whole);
        self.ready = good;
        self.cur = 0;
        self.pos = 0;
        let after_member = self.after_member || good > 0;
        self.after_member = after_member;
        if good < n || n < self.raw.len() {
            let mut rest: Vec<u8> = self.raw[good..n].concat();
            if let Some(left) = self.leftover.take() {
                rest.extend_from_slice(&left);
            }
            if let Some(src) = self.src.take() {
                if !rest.is_empty() {
                    self.fallback =
                        Some(Members::new(io::Cursor::new(rest).chain(src), after_member));
                }
            }
        }
        Ok(good > 0)
    }
}

impl<R: Read + Send> Read for GzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "gzip stream already failed",
            ));
        }
        let r = self.read_inner(buf);
        // After an error the position in the stream is unknown: never go on
        // reading as if nothing happened.
        if r.as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::Interrupted)
        {
            self.failed = true;
        }
        r
    }
}

impl<R: Read + Send> GzReader<R> {
    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            while self.cur < self.ready {
                let d = &self.decoded[self.cur];
                if self.pos < d.len() {
                    let n = buf.len().min(d.len() - self.pos);
                    buf[..n].copy_from_slice(&d[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                self.cur += 1;
                self.pos = 0;
            }
            if self.src.is_some() && self.next_batch()? {
                continue;
            }
            return match self.fallback.as_mut() {
                Some(f) => f.read(buf),
                None => Ok(0),
            };
        }
    }
}

/// Reads gzip members one after the other, like Python's `gzip` module:
/// each member's CRC32 and size are checked, zero bytes after a member are
/// skipped, and whatever else follows must be the next member ("invalid gzip
/// header" otherwise). An empty input is an empty stream.
pub struct Members<R: Read> {
    /// The member being read; `None` between members.
    cur: Option<flate2::bufread::GzDecoder<BufReader<R>>>,
    /// The input between members; `None` at the end.
    rest: Option<BufReader<R>>,
    /// Whether the input is positioned after a member (where zero padding
    /// may follow), not at the start of the stream.
    after_member: bool,
}

impl<R: Read> Members<R> {
    /// Read the members of `src`. `after_member`: `src` continues a stream
    /// after a complete member, so it may start with zero padding.
    pub fn new(src: R, after_member: bool) -> Self {
        Members {
            cur: None,
            rest: Some(BufReader::with_capacity(1 << 16, src)),
            after_member,
        }
    }

    /// Position at the next member: skip padding, start its decoder.
    /// Returns false at the end of the input.
    fn next_member(&mut self) -> io::Result<bool> {
        let Some(mut r) = self.rest.take() else {
            return Ok(false);
        };
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            if !self.after_member {
                break;
            }
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            let stop = zeros < buf.len();
            r.consume(zeros);
            if stop {
                break;
            }
        }
        self.cur = Some(flate2::bufread::GzDecoder::new(r));
        Ok(true)
    }
}

impl<R: Read> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(d) = self.cur.as_mut() {
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // The member ended and its trailer checked out.
                self.rest = self.cur.take().map(flate2::bufread::GzDecoder::into_inner);
                self.after_member = true;
            }
            if !self.next_member()? {
                return Ok(0);
            }
        }
    }
}

/// Buffers in flight in a pipeline of `workers` (de)compressors: one being
/// worked on per worker, one being read and one being written or hashed,
/// and as many again waiting, so that a worker never waits for the slowest
/// one to be written.
fn slots(workers: usize) -> usize {
    workers * 2 + 2
}

/// One of our members read from the file and what it inflates to,
/// travelling through the pipeline of [`decompress_file`] and back.
#[derive(Default)]
struct Inflated {
    seq: usize,
    /// Offset of the member in the file.
    pos: u64,
    raw: Vec<u8>,
    data: Vec<u8>,
    ok: bool,
}

/// Decompress the gzip file `file` to its end, giving the bytes in order
/// to `sink`; returns how many.
///
/// Our members are inflated on every core as they are read, without batch
/// barriers: one thread reads members (their length is in our header), one
/// worker per core inflates them, and this thread gives them to `sink` in
/// order, so the md5 and the writing of one member overlap with the
/// inflating of the next ones. From the first member that is not ours or
/// does not inflate as its header says, the rest of the file is read
/// sequentially from that member's offset ([`Members`]), as any gzip
/// reader reads it, which also gives the error if there is one. `sink`'s
/// errors are returned as they are.
///
/// # Errors
/// Errors of `file`, damaged gzip data, errors of `sink`.
pub fn decompress_file(
    file: &std::fs::File,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let workers = rayon::current_num_threads().max(1);
    let (free_tx, free_rx) = mpsc::channel::<Inflated>();
    for _ in 0..slots(workers) {
        free_tx
            .send(Inflated::default())
            .map_err(|_| io::Error::other("gzip pipeline closed"))?;
    }
    let (work_tx, work_rx) = mpsc::channel::<Inflated>();
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Inflated>();
    let (total, rest) = std::thread::scope(|s| -> io::Result<(u64, u64)> {
        let reader = s.spawn(move || -> io::Result<(usize, u64)> {
            let (mut seq, mut pos) = (0, 0u64);
            while let Ok(mut m) = free_rx.recv() {
                m.raw.resize(OUR_HEADER, 0);
                let got = fill(&mut Region::new(file, pos, u64::MAX), &mut m.raw)?;
                let Some(len) = our_member_len(&m.raw[..got]) else {
                    break;
                };
                m.raw.resize(len, 0);
                let at = pos + OUR_HEADER as u64;
                if fill(
                    &mut Region::new(file, at, u64::MAX),
                    &mut m.raw[OUR_HEADER..],
                )? < len - OUR_HEADER
                {
                    break;
                }
                m.seq = seq;
                m.pos = pos;
                seq += 1;
                pos += len as u64;
                if work_tx.send(m).is_err() {
                    break;
                }
            }
            // Where the members the workers got end.
            Ok((seq, pos))
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = &work_rx;
            s.spawn(move || loop {
                let next = work_rx.lock().ok().and_then(|rx| rx.recv().ok());
                let Some(mut m) = next else { return };
                m.ok = inflate_member(&m.raw, &mut m.data).is_ok();
                if done_tx.send(m).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let given = {
            let (free_tx, done_rx) = (free_tx, done_rx);
            let mut pending = std::collections::BTreeMap::new();
            let (mut next, mut total) = (0, 0u64);
            let mut give = || -> io::Result<(usize, u64, Option<u64>)> {
                for m in &done_rx {
                    pending.insert(m.seq, m);
                    while let Some(m) = pending.remove(&next) {
                        if !m.ok {
                            return Ok((next, total, Some(m.pos)));
                        }
                        sink(&m.data)?;
                        total += m.data.len() as u64;
                        next += 1;
                        let _ = free_tx.send(m);
                    }
                }
                Ok((next, total, None))
            };
            give()
        };
        let read = reader
            .join()
            .map_err(|_| io::Error::other("gzip reader failed"))?;
        let (given, total, failed_at) = given?;
        let (read, end) = read?;
        match failed_at {
            Some(pos) => Ok((total, pos)),
            None if given == read => Ok((total, end)),
            None => Err(io::Error::other("a gzip worker failed")),
        }
    })?;
    // Anything after our members: foreign members, padding, damage.
    let mut tail = Members::new(Region::new(file, rest, u64::MAX), rest > 0);
    let mut buf = vec![0u8; MEMBER_SIZE];
    let mut total = total;
    loop {
        let n = fill(&mut tail, &mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        sink(&buf[..n])?;
        total += n as u64;
    }
}

/// A chunk of input and the member made of it, travelling through the
/// pipeline of [`compress`] and back to be reused.
#[derive(Default)]
struct Slot {
    seq: usize,
    data: Vec<u8>,
    member: Vec<u8>,
}

/// Read `src` to its end, write it gzip-compressed (parallel members) to
/// `dst`, and return `(bytes read, md5 of the bytes read)`.
///
/// A pipeline without barriers, so that no core waits for the slowest
/// member of a batch: one thread reads [`MEMBER_SIZE`] chunks and feeds the
/// md5, one worker per core compresses chunks into members as they come,
/// and this thread writes the members in order. A fixed set of buffers
/// goes round ([`slots`]), which bounds the memory.
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
    let workers = rayon::current_num_threads().max(1);
    let (free_tx, free_rx) = mpsc::channel::<Slot>();
    for _ in 0..slots(workers) {
        free_tx
            .send(Slot::default())
            .map_err(|_| io::Error::other("gzip pipeline closed"))?;
    }
    let (work_tx, work_rx) = mpsc::channel::<Slot>();
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<io::Result<Slot>>();
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> io::Result<(usize, u64, Md5)> {
            let mut hasher = Md5::new();
            let (mut seq, mut total) = (0, 0u64);
            while let Ok(mut slot) = free_rx.recv() {
                slot.data.resize(MEMBER_SIZE, 0);
                let got = fill(src, &mut slot.data)?;
                slot.data.truncate(got);
                // An empty input still makes a valid gzip file (one empty
                // member); otherwise the end adds nothing.
                if got == 0 && seq > 0 {
                    break;
                }
                hasher.update(&slot.data);
                total += got as u64;
                slot.seq = seq;
                seq += 1;
                if work_tx.send(slot).is_err() || got < MEMBER_SIZE {
                    break;
                }
            }
            Ok((seq, total, hasher))
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = &work_rx;
            s.spawn(move || loop {
                let next = work_rx.lock().ok().and_then(|rx| rx.recv().ok());
                let Some(mut slot) = next else { return };
                let r = compress_member(&slot.data, level, mtime, &mut slot.member).map(|()| slot);
                if done_tx.send(r).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        // Whatever ends this block drops the channel ends it owns, which
        // stops the reader and the workers.
        let written = {
            let (free_tx, done_rx) = (free_tx, done_rx);
            let mut pending = std::collections::BTreeMap::new();
            let mut next = 0;
            let mut write = || -> io::Result<usize> {
                for done in &done_rx {
                    let slot = done?;
                    pending.insert(slot.seq, slot);
                    while let Some(slot) = pending.remove(&next) {
                        dst.write_all(&slot.member)?;
                        progress.advance(slot.data.len() as u64);
                        next += 1;
                        // The reader may have finished: nobody to give it to.
                        let _ = free_tx.send(slot);
                    }
                }
                Ok(next)
            };
            write()
        };
        let read = reader
            .join()
            .map_err(|_| io::Error::other("gzip reader failed"))?;
        let written = written?;
        let (chunks, total, hasher) = read?;
        if written != chunks {
            return Err(io::Error::other("a gzip worker failed"));
        }
        Ok((total, hasher))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use flate2::Compression;

    /// Decode `bytes` with [`decoder`] and with [`decompress_file`] (from a
    /// file), check that both give the same bytes or both fail, and give
    /// [`decoder`]'s result.
    fn decode_both(bytes: &[u8], back: &mut Vec<u8>) -> io::Result<usize> {
        let r = decoder(bytes).read_to_end(back);
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(bytes).expect("write");
        let mut pushed = Vec::new();
        let n = decompress_file(&f, &mut |b| {
            pushed.extend_from_slice(b);
            Ok(())
        });
        match (&r, &n) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, &usize::try_from(*b).expect("size"));
                assert!(*back == pushed, "decompress_file gives other bytes");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("decoder: {r:?}, decompress_file: {n:?}"),
        }
        r
    }

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
        decode_both(&out[..], &mut back).expect("decode");
        assert_eq!(back, data);
    }

    #[test]
    fn compress_exact_multiple_of_member_size() {
        let data = sample(4 * MEMBER_SIZE);
        let mut out = Vec::new();
        let (n, h) = compress(&mut &data[..], &mut out, 1, 0, &NoProgress).expect("compress");
        assert_eq!(n, data.len() as u64);
        assert_eq!(h.finalize()[..], Md5::digest(&data)[..]);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("decode");
        assert!(back == data);
    }

    /// Accepts `left` bytes, then fails like a full disk.
    struct FullAfter {
        left: usize,
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Gives `left` bytes, then fails.
    struct FailAfter {
        left: usize,
    }

    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("read error"));
            }
            let n = buf.len().min(self.left);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn compress_write_error_is_returned() {
        let data = sample(20 * MEMBER_SIZE);
        let mut dst = FullAfter { left: 1000 };
        let e = compress(&mut &data[..], &mut dst, 1, 0, &NoProgress).expect_err("full");
        assert_eq!(e.to_string(), "disk full");
    }

    #[test]
    fn compress_read_error_is_returned() {
        let mut src = FailAfter {
            left: 5 * MEMBER_SIZE + 10,
        };
        let e = compress(&mut src, &mut Vec::new(), 1, 0, &NoProgress).expect_err("read");
        assert_eq!(e.to_string(), "read error");
    }

    #[test]
    fn decompress_file_sink_error_is_returned() {
        let data = sample(20 * MEMBER_SIZE);
        let mut f = tempfile::tempfile().expect("tempfile");
        compress(&mut &data[..], &mut f, 1, 0, &NoProgress).expect("compress");
        let mut calls = 0;
        let e = decompress_file(&f, &mut |_| {
            calls += 1;
            if calls == 3 {
                return Err(io::Error::other("disk full"));
            }
            Ok(())
        })
        .expect_err("sink fails");
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(calls, 3);
    }

    #[test]
    fn compress_empty_is_valid_gzip() {
        let mut out = Vec::new();
        compress(&mut &b""[..], &mut out, 1, 0, &NoProgress).expect("compress");
        assert_eq!(&out[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        decode_both(&out[..], &mut back).expect("decode");
        assert!(back.is_empty());
    }

    #[test]
    fn member_is_standard_gzip() {
        let data = sample(1000);
        let mut out = Vec::new();
        compress_member(&data, 9, 0x0102_0304, &mut out).expect("compress");
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 4, 4, 3, 2, 1, 2, 255]);
        assert_eq!(our_member_len(&out), Some(out.len()));
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
            decode_both(&out[..], &mut back).expect("decode");
            assert_eq!(back, data, "level {level}");
        }
    }

    #[test]
    fn reads_foreign_members_after_ours() {
        let a = sample(MEMBER_SIZE * 3 + 5);
        let b = sample(70_000);
        let mut out = Vec::new();
        compress(&mut &a[..], &mut out, 1, 0, &NoProgress).expect("compress");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(&b).expect("write");
        out.extend(e.finish().expect("finish"));
        compress(&mut &a[..], &mut out, 1, 0, &NoProgress).expect("compress");
        let mut back = Vec::new();
        decode_both(&out[..], &mut back).expect("decode");
        assert_eq!(back.len(), 2 * a.len() + b.len());
        assert_eq!(back, [&a[..], &b[..], &a[..]].concat());
    }

    #[test]
    fn reads_a_foreign_stream() {
        let b = sample(300_000);
        let mut e = flate2::GzBuilder::new()
            .filename("tmp.tmp")
            .write(Vec::new(), Compression::new(9));
        e.write_all(&b).expect("write");
        e.flush().expect("sync flush");
        let out = e.finish().expect("finish");
        let mut back = Vec::new();
        decode_both(&out[..], &mut back).expect("decode");
        assert_eq!(back, b);
    }

    #[test]
    fn corrupt_member_is_an_error() {
        let data = sample(100_000);
        let mut out = Vec::new();
        compress(&mut &data[..], &mut out, 6, 0, &NoProgress).expect("compress");
        let mid = out.len() / 2;
        out[mid] ^= 0x55;
        let mut back = Vec::new();
        assert!(decode_both(&out[..], &mut back).is_err());
    }

    #[test]
    fn empty_input_reads_empty() {
        let mut back = Vec::new();
        decode_both(&b""[..], &mut back).expect("decode");
        assert!(back.is_empty());
    }

    /// Our file of `data` with the member length in the header of member
    /// `k` changed by `delta`.
    fn with_member_len_off(data: &[u8], k: usize, delta: i64) -> Vec<u8> {
        let mut out = Vec::new();
        compress(&mut &data[..], &mut out, 1, 0, &NoProgress).expect("compress");
        let mut at = 0;
        for _ in 0..k {
            at += our_member_len(&out[at..]).expect("our member");
        }
        let len = our_member_len(&out[at..]).expect("our member") as i64 + delta;
        out[at + 16..at + 20].copy_from_slice(&u32::try_from(len).expect("len").to_le_bytes());
        out
    }

    #[test]
    fn a_damaged_member_length_reads_like_any_gzip_reader() {
        // The length in our extra field has no checksum; standard readers
        // ignore it, so a wrong one must not make a good file unreadable.
        let data = sample(MEMBER_SIZE * 3 + 777);
        for (k, delta) in [(0, 1), (0, -1), (1, 100), (1, -3), (3, 5), (3, -8)] {
            let bytes = with_member_len_off(&data, k, delta);
            let mut back = Vec::new();
            decode_both(&bytes[..], &mut back)
                .unwrap_or_else(|e| panic!("member {k}, length {delta:+}: {e}"));
            assert!(back == data, "member {k}, length {delta:+}");
        }
    }

    #[test]
    fn a_damaged_member_after_good_ones_is_an_error() {
        let data = sample(MEMBER_SIZE * 3);
        let mut out = Vec::new();
        compress(&mut &data[..], &mut out, 1, 0, &NoProgress).expect("compress");
        let second = our_member_len(&out).expect("our member");
        out[second + 100] ^= 0x10;
        let mut back = Vec::new();
        assert!(decode_both(&out[..], &mut back).is_err());
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let data = sample(100_000);
        let mut out = Vec::new();
        compress(&mut &data[..], &mut out, 6, 0, &NoProgress).expect("compress");
        out.truncate(out.len() - 10);
        let mut back = Vec::new();
        assert!(decode_both(&out[..], &mut back).is_err());
    }
}
