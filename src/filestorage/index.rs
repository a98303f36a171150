//! The fsIndex: oid → offset of the object's latest data record, and its
//! `.index` file (`Data.fs.index`, and one per repozo backup).
//!
//! In memory the map has ZODB's two-level shape (see docs/filestorage.rst): a sorted
//! map from the 6-byte oid prefix to a bucket holding the 2-byte suffixes and
//! the 6-byte offsets in two parallel sorted vectors. That is 8 bytes per
//! object plus vector slack, and it is also exactly the shape of the file, so
//! writing a bucket is two copies.
//!
//! The file is a concatenation of protocol-3 pickles written in "fast" mode
//! (no memo): the pos as an int, one `(prefix, bucket_bytes)` tuple per
//! prefix in ascending order, and `None` (§4.2, §4.3). [`FsIndex::write`]
//! produces the same bytes as ZODB's `fsIndex.save` for the same map.
//! [`FsIndex::read`] accepts what that writer produces (plus memo and frame
//! opcodes); anything else is reported as unusable, and callers fall back to a
//! full scan, which is what ZODB does with an index it cannot load.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::filestorage::format::Oid;

/// The largest offset an fsIndex can hold: values are 6 bytes.
pub const MAX_POS: u64 = (1 << 48) - 1;

/// An offset that does not fit in the 6 bytes of an fsIndex value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosOutOfRange(pub u64);

impl fmt::Display for PosOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {} does not fit in an fsIndex (limit 2**48 - 1)",
            self.0
        )
    }
}

impl std::error::Error for PosOutOfRange {}

#[derive(Clone, Default, PartialEq, Eq)]
struct Bucket {
    /// Oid suffixes (last 2 bytes), sorted, unique.
    keys: Vec<u16>,
    /// Offsets, 6 bytes big-endian, parallel to `keys`.
    vals: Vec<[u8; 6]>,
}

fn pos_to_6(pos: u64) -> [u8; 6] {
    let b = pos.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn pos_from_6(v: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, v[0], v[1], v[2], v[3], v[4], v[5]])
}

fn split(oid: Oid) -> ([u8; 6], u16) {
    let o = oid.0;
    (
        [o[0], o[1], o[2], o[3], o[4], o[5]],
        u16::from_be_bytes([o[6], o[7]]),
    )
}

/// oid → offset of its latest data record, as ZODB's `fsIndex`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FsIndex {
    buckets: BTreeMap<[u8; 6], Bucket>,
    len: usize,
}

impl fmt::Debug for FsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FsIndex {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of oids.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no oid is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset recorded for `oid`.
    #[must_use]
    pub fn get(&self, oid: Oid) -> Option<u64> {
        let (prefix, suffix) = split(oid);
        let b = self.buckets.get(&prefix)?;
        let i = b.keys.binary_search(&suffix).ok()?;
        Some(pos_from_6(b.vals[i]))
    }

    /// Set the offset of `oid`'s latest data record.
    ///
    /// # Errors
    /// [`PosOutOfRange`] when `pos` does not fit in 6 bytes.
    pub fn insert(&mut self, oid: Oid, pos: u64) -> std::result::Result<(), PosOutOfRange> {
        if pos > MAX_POS {
            return Err(PosOutOfRange(pos));
        }
        let (prefix, suffix) = split(oid);
        let b = self.buckets.entry(prefix).or_default();
        // Oids are allocated in increasing order, so appends dominate.
        if b.keys.last().is_none_or(|&k| k < suffix) {
            b.keys.push(suffix);
            b.vals.push(pos_to_6(pos));
            self.len += 1;
            return Ok(());
        }
        match b.keys.binary_search(&suffix) {
            Ok(i) => b.vals[i] = pos_to_6(pos),
            Err(i) => {
                b.keys.insert(i, suffix);
                b.vals.insert(i, pos_to_6(pos));
                self.len += 1;
            }
        }
        Ok(())
    }

    /// The highest oid, if any.
    #[must_use]
    pub fn max_oid(&self) -> Option<Oid> {
        let (prefix, b) = self.buckets.iter().next_back()?;
        let suffix = b.keys.last()?;
        let mut o = [0u8; 8];
        o[..6].copy_from_slice(prefix);
        o[6..].copy_from_slice(&suffix.to_be_bytes());
        Some(Oid(o))
    }

    /// All (oid, offset) pairs in ascending oid order.
    pub fn iter(&self) -> impl Iterator<Item = (Oid, u64)> + '_ {
        self.buckets.iter().flat_map(|(prefix, b)| {
            b.keys.iter().zip(&b.vals).map(move |(suffix, v)| {
                let mut o = [0u8; 8];
                o[..6].copy_from_slice(prefix);
                o[6..].copy_from_slice(&suffix.to_be_bytes());
                (Oid(o), pos_from_6(*v))
            })
        })
    }

    /// Heap bytes held by the map (buckets and their vectors), for memory
    /// accounting in tests and benchmarks.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let per_bucket = std::mem::size_of::<([u8; 6], Bucket)>() + 16;
        self.buckets
            .values()
            .map(|b| per_bucket + b.keys.capacity() * 2 + b.vals.capacity() * 6)
            .sum()
    }

    /// Give back the slack of the bucket vectors (after a scan).
    pub fn shrink_to_fit(&mut self) {
        for b in self.buckets.values_mut() {
            b.keys.shrink_to_fit();
            b.vals.shrink_to_fit();
        }
    }

    /// Write the `.index` byte stream for `(pos, self)` to `w`, byte for
    /// byte what ZODB's `fsIndex.save(pos, ...)` writes.
    ///
    /// # Errors
    /// Errors of `w`.
    pub fn write_to<W: Write>(&self, pos: u64, w: &mut W) -> io::Result<()> {
        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(&[0x80, 3]);
        pickle_int(&mut buf, pos);
        buf.push(b'.');
        w.write_all(&buf)?;
        for (prefix, b) in &self.buckets {
            if b.keys.is_empty() {
                continue;
            }
            buf.clear();
            buf.extend_from_slice(&[0x80, 3]);
            pickle_bytes(&mut buf, prefix);
            let n = b.keys.len() * 8;
            if n < 256 {
                buf.extend_from_slice(&[b'C', u8::try_from(n).unwrap_or(0)]);
            } else {
                buf.push(b'B');
                buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
            }
            for k in &b.keys {
                buf.extend_from_slice(&k.to_be_bytes());
            }
            for v in &b.vals {
                buf.extend_from_slice(v);
            }
            buf.extend_from_slice(&[0x86, b'.']);
            w.write_all(&buf)?;
        }
        w.write_all(&[0x80, 3, b'N', b'.'])
    }

    /// Write the `.index` file at `path` for `(pos, self)`: to a temporary
    /// name beside it, fsynced, then renamed into place.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write(&self, pos: u64, path: &Path) -> Result<()> {
        crate::fsutil::write_atomically(path, |f| {
            let mut w = BufWriter::with_capacity(1 << 16, f);
            self.write_to(pos, &mut w)?;
            w.flush()
        })
    }

    /// Read an `.index` file: returns `(pos, index)`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be opened or read, [`Error::Index`] when
    /// it is not an fsIndex file this reader understands (old pickle
    /// formats, garbage, unsorted or empty buckets).
    pub fn read(path: &Path) -> Result<(u64, FsIndex)> {
        let f = File::open(path).at(path)?;
        let mut r = PickleReader {
            r: BufReader::with_capacity(1 << 16, f),
        };
        Self::read_from(&mut r).map_err(|e| match e {
            ReadError::Io(e) => Error::io(path, e),
            ReadError::Bad(reason) => Error::Index {
                path: path.to_path_buf(),
                reason: format!("not a usable fsIndex file: {reason}"),
            },
        })
    }

    fn read_from<R: Read>(r: &mut PickleReader<R>) -> Result<(u64, FsIndex), ReadError> {
        let pos = match r.next_pickle()? {
            Value::Int(n) => n,
            other => {
                return Err(ReadError::Bad(format!(
                    "first item is {other:?}, not an int"
                )))
            }
        };
        let mut index = FsIndex::new();
        let mut last_prefix: Option<[u8; 6]> = None;
        loop {
            let (prefix, data) = match r.next_pickle()? {
                Value::None => break,
                Value::Tuple2(a, b) => match (*a, *b) {
                    (Value::Bytes(p), Value::Bytes(d)) => (p, d),
                    _ => return Err(ReadError::bad("entry is not (bytes, bytes)")),
                },
                other => return Err(ReadError::Bad(format!("unexpected entry {other:?}"))),
            };
            let prefix: [u8; 6] = prefix
                .as_slice()
                .try_into()
                .map_err(|_| ReadError::bad("oid prefix is not 6 bytes"))?;
            if last_prefix.is_some_and(|l| l >= prefix) {
                return Err(ReadError::bad("oid prefixes are not in ascending order"));
            }
            last_prefix = Some(prefix);
            if data.is_empty() || data.len() % 8 != 0 {
                return Err(ReadError::bad(
                    "bucket length is not a positive multiple of 8",
                ));
            }
            let n = data.len() / 8;
            let (kb, vb) = data.split_at(2 * n);
            let keys: Vec<u16> = kb
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            if keys.windows(2).any(|w| w[0] >= w[1]) {
                return Err(ReadError::bad("bucket keys are not sorted"));
            }
            let vals: Vec<[u8; 6]> = vb
                .chunks_exact(6)
                .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
                .collect();
            index.len += n;
            index.buckets.insert(prefix, Bucket { keys, vals });
        }
        Ok((pos, index))
    }
}

/// Append a pickled non-negative int, as CPython's protocol-3 pickler does.
fn pickle_int(buf: &mut Vec<u8>, n: u64) {
    if n < 256 {
        buf.extend_from_slice(&[b'K', n as u8]);
    } else if n < 65536 {
        buf.push(b'M');
        buf.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < (1 << 31) {
        buf.push(b'J');
        buf.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        // LONG1: little-endian two's complement, with room for the sign bit.
        let nbytes = (64 - n.leading_zeros()) as usize / 8 + 1;
        buf.extend_from_slice(&[0x8a, nbytes as u8]);
        let le = n.to_le_bytes();
        for i in 0..nbytes {
            buf.push(le.get(i).copied().unwrap_or(0));
        }
    }
}

fn pickle_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    if b.len() < 256 {
        buf.extend_from_slice(&[b'C', b.len() as u8]);
    } else {
        buf.push(b'B');
        buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    buf.extend_from_slice(b);
}

enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl ReadError {
    fn bad(s: &str) -> Self {
        ReadError::Bad(s.to_owned())
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::bad("unexpected end of file")
        } else {
            ReadError::Io(e)
        }
    }
}

#[derive(Debug)]
enum Value {
    Int(u64),
    None,
    Bytes(Vec<u8>),
    Tuple2(Box<Value>, Box<Value>),
}

/// Just enough of a pickle reader for the opcodes an fsIndex file uses.
struct PickleReader<R> {
    r: R,
}

impl<R: Read> PickleReader<R> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        if n > (1 << 20) {
            return Err(ReadError::bad("bytes object too large for an fsIndex"));
        }
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v)?;
        Ok(v)
    }

    /// Read one pickle (`PROTO ... STOP`) and return its value.
    fn next_pickle(&mut self) -> Result<Value, ReadError> {
        let mut stack: Vec<Value> = Vec::new();
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    let proto = self.byte()?;
                    if !(2..=5).contains(&proto) {
                        return Err(ReadError::Bad(format!("pickle protocol {proto}")));
                    }
                }
                // FRAME (protocol 4+): the length is informational.
                0x95 => {
                    self.array::<8>()?;
                }
                // Memo opcodes: the fsIndex writer does not emit them, but a
                // non-fast pickler would; they do not change the values.
                b'q' => {
                    self.byte()?;
                }
                b'r' => {
                    self.array::<4>()?;
                }
                0x94 => {}
                b'K' => stack.push(Value::Int(u64::from(self.byte()?))),
                b'M' => stack.push(Value::Int(u64::from(u16::from_le_bytes(self.array()?)))),
                b'J' => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n = u64::try_from(n).map_err(|_| ReadError::bad("negative int"))?;
                    stack.push(Value::Int(n));
                }
                0x8a => {
                    let n = usize::from(self.byte()?);
                    let b = self.bytes(n)?;
                    stack.push(Value::Int(long_from_le(&b)?));
                }
                b'N' => stack.push(Value::None),
                b'C' => {
                    let n = usize::from(self.byte()?);
                    stack.push(Value::Bytes(self.bytes(n)?));
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    stack.push(Value::Bytes(self.bytes(n)?));
                }
                0x86 => {
                    let b = stack
                        .pop()
                        .ok_or_else(|| ReadError::bad("stack underflow"))?;
                    let a = stack
                        .pop()
                        .ok_or_else(|| ReadError::bad("stack underflow"))?;
                    stack.push(Value::Tuple2(Box::new(a), Box::new(b)));
                }
                b'.' => {
                    return match (stack.pop(), stack.is_empty()) {
                        (Some(v), true) => Ok(v),
                        _ => Err(ReadError::bad("malformed pickle")),
                    };
                }
                other => {
                    return Err(ReadError::Bad(format!(
                        "unsupported pickle opcode 0x{other:02x}"
                    )))
                }
            }
        }
    }
}

fn long_from_le(b: &[u8]) -> Result<u64, ReadError> {
    if b.last().is_some_and(|&x| x & 0x80 != 0) {
        return Err(ReadError::bad("negative int"));
    }
    let mut trimmed = b;
    while let Some((&0, rest)) = trimmed.split_last() {
        trimmed = rest;
    }
    if trimmed.len() > 8 {
        return Err(ReadError::bad("int too large"));
    }
    let mut a = [0u8; 8];
    a[..trimmed.len()].copy_from_slice(trimmed);
    Ok(u64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_for(pos: u64, entries: &[(u64, u64)]) -> Vec<u8> {
        let mut idx = FsIndex::new();
        for &(o, p) in entries {
            idx.insert(Oid::from(o), p).expect("pos in range");
        }
        let mut out = Vec::new();
        idx.write_to(pos, &mut out).expect("write to vec");
        out
    }

    #[test]
    fn empty_storage_index_bytes() {
        // The index of a magic-only Data.fs (docs/filestorage.rst).
        assert_eq!(bytes_for(4, &[]), b"\x80\x03K\x04.\x80\x03N.");
    }

    #[test]
    fn two_oid_example_bytes() {
        // A small real storage of 476 bytes.
        let want: Vec<u8> = [
            &b"\x80\x03M\xdc\x01."[..],
            b"\x80\x03C\x06\0\0\0\0\0\0C\x10\0\0\0\x01\0\0\0\0\0\xbd\0\0\0\0\x01\x5a\x86.",
            b"\x80\x03N.",
        ]
        .concat();
        assert_eq!(bytes_for(476, &[(0, 189), (1, 346)]), want);
    }

    #[test]
    fn long1_pos_two_prefixes() {
        // A synthetic example, pos 3000000123 (66 bytes).
        let got = bytes_for(
            3_000_000_123,
            &[(0, 52), (1, 472), (0x1_0002, 3_000_000_000)],
        );
        assert_eq!(got.len(), 66);
        assert_eq!(&got[..10], b"\x80\x03\x8a\x05\x7b\x5e\xd0\xb2\x00.");
        assert_eq!(&got[52..60], b"\x00\x02\x00\x00\xb2\xd0\x5e\x00");
    }

    #[test]
    fn int_encodings_at_boundaries() {
        let enc = |n| {
            let mut b = Vec::new();
            pickle_int(&mut b, n);
            b
        };
        assert_eq!(enc(255), b"K\xff");
        assert_eq!(enc(256), b"M\x00\x01");
        assert_eq!(enc(65535), b"M\xff\xff");
        assert_eq!(enc(65536), b"J\x00\x00\x01\x00");
        assert_eq!(enc((1 << 31) - 1), b"J\xff\xff\xff\x7f");
        assert_eq!(enc(1 << 31), b"\x8a\x05\x00\x00\x00\x80\x00");
        assert_eq!(enc(1 << 32), b"\x8a\x05\x00\x00\x00\x00\x01");
        assert_eq!(enc((1 << 40) - 1), b"\x8a\x06\xff\xff\xff\xff\xff\x00");
        assert_eq!(enc(1 << 47), b"\x8a\x07\x00\x00\x00\x00\x00\x80\x00");
        assert_eq!(enc(MAX_POS), b"\x8a\x07\xff\xff\xff\xff\xff\xff\x00");
    }

    #[test]
    fn pos_beyond_48_bits_refused() {
        let mut idx = FsIndex::new();
        assert_eq!(
            idx.insert(Oid::from(1), 1 << 48),
            Err(PosOutOfRange(1 << 48))
        );
        assert!(idx.insert(Oid::from(1), MAX_POS).is_ok());
        assert_eq!(idx.get(Oid::from(1)), Some(MAX_POS));
    }

    #[test]
    fn prefix_boundaries_split_buckets() {
        // Oids 0xffff and 0x10000 differ in the 6-byte prefix: two buckets.
        let got = bytes_for(100, &[(0xffff, 10), (0x1_0000, 20), (u64::MAX, 1 << 32)]);
        let mut r = PickleReader { r: &got[..] };
        let (pos, idx) = FsIndex::read_from(&mut r).ok().expect("reads back");
        assert_eq!(pos, 100);
        assert_eq!(idx.buckets.len(), 3);
        assert_eq!(idx.get(Oid::from(0xffff)), Some(10));
        assert_eq!(idx.get(Oid::from(0x1_0000)), Some(20));
        assert_eq!(idx.get(Oid::from(u64::MAX)), Some(1 << 32));
        assert_eq!(idx.max_oid(), Some(Oid::from(u64::MAX)));
    }

    #[test]
    fn bucket_of_256_bytes_uses_binbytes() {
        // 32 entries → 256 bytes: the first length that needs 'B'.
        let entries: Vec<(u64, u64)> = (0..32).map(|i| (i, 100 + i)).collect();
        let got = bytes_for(4, &entries);
        let at = 5 + 2 + 8; // pos pickle, PROTO, prefix
        assert_eq!(&got[at..at + 5], b"B\x00\x01\x00\x00");
    }

    #[test]
    fn insert_out_of_order_keeps_sorted() {
        let mut idx = FsIndex::new();
        for o in [5u64, 1, 3, 1, 7] {
            idx.insert(Oid::from(o), o * 10).expect("in range");
        }
        let got: Vec<(u64, u64)> = idx.iter().map(|(o, p)| (o.as_u64(), p)).collect();
        assert_eq!(got, vec![(1, 10), (3, 30), (5, 50), (7, 70)]);
        assert_eq!(idx.len(), 4);
    }

    #[test]
    fn memory_per_object_is_compact() {
        // 200k objects with oids allocated in order, as ZODB does.
        let mut idx = FsIndex::new();
        for o in 0..200_000u64 {
            idx.insert(Oid::from(o), 4 + o * 300).expect("in range");
        }
        idx.shrink_to_fit();
        assert!(
            idx.heap_bytes() <= 200_000 * 9,
            "{} bytes",
            idx.heap_bytes()
        );
    }

    #[test]
    fn unsorted_bucket_is_unusable() {
        let mut bad = Vec::new();
        bad.extend_from_slice(b"\x80\x03K\x64.");
        bad.extend_from_slice(
            b"\x80\x03C\x06\0\0\0\0\0\0C\x10\0\x02\0\x01\0\0\0\0\0\x01\0\0\0\0\0\x02\x86.",
        );
        bad.extend_from_slice(b"\x80\x03N.");
        let mut r = PickleReader { r: &bad[..] };
        assert!(matches!(FsIndex::read_from(&mut r), Err(ReadError::Bad(_))));
    }

    #[test]
    fn garbage_is_unusable() {
        let mut r = PickleReader {
            r: &b"hello world"[..],
        };
        assert!(matches!(FsIndex::read_from(&mut r), Err(ReadError::Bad(_))));
        let mut r = PickleReader {
            r: &b"\x80\x03K\x64."[..],
        };
        assert!(matches!(FsIndex::read_from(&mut r), Err(ReadError::Bad(_))));
    }
}
