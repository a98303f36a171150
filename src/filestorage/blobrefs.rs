//! The blob records of a FileStorage, read from a stream.
//!
//! A blob revision lives in the FileStorage as a data record of an object
//! of class `ZODB.blob.Blob` (its pickle holds no blob bytes), and in the
//! blob directory as `<oid path>/<tid>.blob`, the tid being the data
//! record's own (see docs/blobs.rst). [`blob_records`] walks the
//! transaction and data records of a Data.fs given as a byte stream (a
//! backup chain as a recover would concatenate it: no temporary Data.fs)
//! and lists the records that need a blob file:
//!
//! - a data record whose first pickle names `ZODB.blob.Blob`
//!   ([`super::pickle_class`]); only that pickle's first bytes are read;
//! - a backpointer record (undo) whose target is such a record: ZODB's
//!   undo of a blob revision writes the blob file again under the undoing
//!   transaction's tid;
//! - not a backpointer of 0 (an undone creation): it has no data, and no
//!   file.
//!
//! Transactions of status `'u'` are skipped, as ZODB's index does. The walk
//! stops at the end of the stream, a torn header or a `'c'` transaction,
//! like [`super::scan`]; damage inside a committed transaction is an
//! [`Error::Corrupted`].

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::filestorage::format::{
    u64_be, DataHeader, Oid, Tid, TxnHeader, TxnStatus, DATA_HDR_LEN, MAGIC, TRANS_HDR_LEN,
};
use crate::filestorage::pickle_class::record_class;

/// The most bytes of a pickle read to find its class: the class metadata
/// of any ZODB record is far shorter.
const CLASS_PREFIX: u64 = 4096;

/// One data record that needs a blob file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRecord {
    /// Offset of the data record in the Data.fs.
    pub pos: u64,
    /// The blob object.
    pub oid: Oid,
    /// The record's tid: the name of its blob file.
    pub tid: Tid,
}

/// What [`blob_records`] found.
#[derive(Debug, Clone, Default)]
pub struct BlobRecords {
    /// The blob records, in file order.
    pub records: Vec<BlobRecord>,
    /// Where the walk stopped: the end of the last complete transaction.
    pub end: u64,
    /// Data records read.
    pub data_records: u64,
    /// Data records whose class could not be read, counted as not being
    /// blobs.
    pub unreadable: u64,
    /// The first of them: its offset, and why.
    pub first_unreadable: Option<(u64, String)>,
}

impl BlobRecords {
    /// The blob records of the state that ends at `end` (a backup's end).
    #[must_use]
    pub fn up_to(&self, end: u64) -> &[BlobRecord] {
        let n = self.records.partition_point(|r| r.pos < end);
        &self.records[..n]
    }
}

/// A reader that counts its position.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counted<R> {
    /// Fill `buf` completely; `Ok(false)` when the stream ended first.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let n = crate::repozo::stream::fill(&mut self.inner, buf)?;
        self.pos += n as u64;
        Ok(n == buf.len())
    }

    /// Skip `n` bytes; `Ok(false)` when the stream ended first.
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        let got = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += got;
        Ok(got == n)
    }
}

/// Walk the FileStorage bytes of `src` and list its blob records. `name`
/// names the stream in errors.
///
/// # Errors
/// [`Error::FileStorageFormat`] for a bad magic, [`Error::Corrupted`] for
/// damage inside a committed transaction, [`Error::Io`] for read errors of
/// `src`.
pub fn blob_records<R: Read>(src: R, name: &Path) -> Result<BlobRecords> {
    let mut r = Counted { inner: src, pos: 0 };
    let io_err = |e: io::Error| Error::io(name, e);
    let mut magic = [0u8; 4];
    if !r.fill(&mut magic).map_err(io_err)? || &magic != MAGIC {
        return Err(Error::FileStorageFormat {
            path: name.to_path_buf(),
            reason: "not a FileStorage (expected \"FS30\")".to_owned(),
        });
    }
    let corrupted = |pos: u64, reason: String| Error::Corrupted {
        path: name.to_path_buf(),
        pos,
        reason,
    };
    let mut out = BlobRecords {
        end: 4,
        ..BlobRecords::default()
    };
    let mut blob_positions: HashSet<u64> = HashSet::new();
    let mut pickle = Vec::with_capacity(CLASS_PREFIX as usize);
    loop {
        let tpos = r.pos;
        let mut hb = [0u8; TRANS_HDR_LEN as usize];
        if !r.fill(&mut hb).map_err(io_err)? {
            break;
        }
        let th = TxnHeader::decode(&hb);
        if th.status == TxnStatus::Checkpoint {
            break;
        }
        if th.tlen < th.header_len() {
            return Err(corrupted(
                tpos,
                format!("transaction length {} is too short", th.tlen),
            ));
        }
        let Some(tend) = tpos.checked_add(th.tlen) else {
            return Err(corrupted(
                tpos,
                format!("transaction length {} is past any file", th.tlen),
            ));
        };
        if !r.skip(th.header_len() - TRANS_HDR_LEN).map_err(io_err)? {
            break;
        }
        if th.status == TxnStatus::Undone {
            if !r.skip(tend - r.pos).map_err(io_err)? {
                break;
            }
        } else {
            while r.pos < tend {
                let pos = r.pos;
                let mut db = [0u8; DATA_HDR_LEN as usize];
                if !r.fill(&mut db).map_err(io_err)? {
                    return Ok(out);
                }
                let dh = DataHeader::decode(&db);
                if dh.tloc != tpos {
                    return Err(corrupted(
                        pos,
                        format!(
                            "data record's transaction position {} is not {tpos}",
                            dh.tloc
                        ),
                    ));
                }
                if pos.saturating_add(dh.record_len()) > tend {
                    return Err(corrupted(
                        pos,
                        "data record runs past the end of its transaction".to_owned(),
                    ));
                }
                out.data_records += 1;
                let is_blob = if dh.plen == 0 {
                    let mut back = [0u8; 8];
                    if !r.fill(&mut back).map_err(io_err)? {
                        return Ok(out);
                    }
                    let back = u64_be(&back);
                    back != 0 && blob_positions.contains(&back)
                } else {
                    let head = dh.plen.min(CLASS_PREFIX);
                    pickle.resize(usize::try_from(head).unwrap_or(0), 0);
                    if !r.fill(&mut pickle).map_err(io_err)?
                        || !r.skip(dh.plen - head).map_err(io_err)?
                    {
                        return Ok(out);
                    }
                    match record_class(&pickle) {
                        Ok(c) => c.is_blob(),
                        Err(e) => {
                            out.unreadable += 1;
                            out.first_unreadable.get_or_insert((pos, e.to_string()));
                            false
                        }
                    }
                };
                if is_blob {
                    blob_positions.insert(pos);
                    out.records.push(BlobRecord {
                        pos,
                        oid: dh.oid,
                        tid: dh.tid,
                    });
                }
            }
        }
        let mut redundant = [0u8; 8];
        if !r.fill(&mut redundant).map_err(io_err)? {
            break;
        }
        if u64_be(&redundant) != th.tlen {
            return Err(corrupted(
                tpos,
                format!(
                    "redundant transaction length {} does not match {}",
                    u64_be(&redundant),
                    th.tlen
                ),
            ));
        }
        out.end = r.pos;
    }
    // Records of a torn last transaction are not part of the state.
    let end = out.end;
    out.records.retain(|b| b.pos < end);
    Ok(out)
}

/// An oid or tid as ZODB's `oid_repr` prints it: `0x` and the hex digits
/// without leading zeros, in whole bytes (`0x01`, `0x03e5...`).
#[must_use]
pub fn oid_repr(bytes: [u8; 8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let stripped = hex.trim_start_matches('0');
    if stripped.is_empty() {
        "0x00".to_owned()
    } else if stripped.len() % 2 == 1 {
        format!("0x0{stripped}")
    } else {
        format!("0x{stripped}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(tid: u64, tpos: u64, records: &[(u64, Vec<u8>)]) -> Vec<u8> {
        // records: (oid, pickle) or (oid, empty = backpointer 0)
        let mut body = Vec::new();
        let mut pos = tpos + TRANS_HDR_LEN;
        for (oid, p) in records {
            let mut d = Vec::new();
            d.extend(oid.to_be_bytes());
            d.extend(tid.to_be_bytes());
            d.extend(0u64.to_be_bytes());
            d.extend(tpos.to_be_bytes());
            d.extend(0u16.to_be_bytes());
            if p.len() == 8 && p.starts_with(b"BACK") {
                d.extend(0u64.to_be_bytes());
                d.extend(u64::from(u32::from_be_bytes([p[4], p[5], p[6], p[7]])).to_be_bytes());
            } else {
                d.extend((p.len() as u64).to_be_bytes());
                d.extend(p);
            }
            pos += d.len() as u64;
            body.extend(d);
        }
        let tlen = TRANS_HDR_LEN + body.len() as u64;
        let _ = pos;
        let mut t = Vec::new();
        t.extend(tid.to_be_bytes());
        t.extend(tlen.to_be_bytes());
        t.push(b' ');
        t.extend([0u8; 6]);
        t.extend(body);
        t.extend(tlen.to_be_bytes());
        t
    }

    const BLOB: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";
    const MAPPING: &[u8] = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.}.";

    #[test]
    fn blob_records_data_and_backpointers() {
        let mut fs = MAGIC.to_vec();
        let t1 = txn(0x10, 4, &[(1, MAPPING.to_vec()), (2, BLOB.to_vec())]);
        // The blob record of t1 is its second data record.
        let blob_pos = 4 + TRANS_HDR_LEN + DATA_HDR_LEN + MAPPING.len() as u64;
        fs.extend(&t1);
        let t2pos = fs.len() as u64;
        let mut back = b"BACK".to_vec();
        back.extend(u32::try_from(blob_pos).expect("small").to_be_bytes());
        let t2 = txn(0x20, t2pos, &[(2, back), (3, b"BACK\0\0\0\0".to_vec())]);
        fs.extend(&t2);
        let end = fs.len() as u64;
        // A torn transaction after the end is not read.
        fs.extend(&txn(0x30, end, &[(4, BLOB.to_vec())])[..40]);
        let got = blob_records(&fs[..], Path::new("x")).expect("walks");
        assert_eq!(got.end, end);
        assert_eq!(got.data_records, 4);
        let tids: Vec<(u64, u64)> = got
            .records
            .iter()
            .map(|r| (r.oid.as_u64(), u64::from_be_bytes(r.tid.0)))
            .collect();
        assert_eq!(tids, [(2, 0x10), (2, 0x20)]);
        assert_eq!(got.up_to(t2pos).len(), 1);
    }

    #[test]
    fn blob_records_refuses_interior_damage() {
        let mut fs = MAGIC.to_vec();
        let mut t = txn(0x10, 4, &[(2, BLOB.to_vec())]);
        let n = t.len();
        t[n - 1] ^= 1;
        fs.extend(t);
        let e = blob_records(&fs[..], Path::new("x")).map(|_| ());
        assert!(matches!(e, Err(Error::Corrupted { pos: 4, .. })), "{e:?}");
        let e = blob_records(&b"FS21"[..], Path::new("x")).map(|_| ());
        assert!(matches!(e, Err(Error::FileStorageFormat { .. })), "{e:?}");
    }

    #[test]
    fn oid_repr_as_zodb() {
        assert_eq!(oid_repr(1u64.to_be_bytes()), "0x01");
        assert_eq!(oid_repr(0u64.to_be_bytes()), "0x00");
        assert_eq!(oid_repr(0x1234u64.to_be_bytes()), "0x1234");
        assert_eq!(oid_repr(0x123u64.to_be_bytes()), "0x0123");
        assert_eq!(
            oid_repr(0x03e5_0000_0000_0001u64.to_be_bytes()),
            "0x03e5000000000001"
        );
    }
}
