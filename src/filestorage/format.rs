//! Record headers of a FileStorage, decoded from bytes. Decoding only: no I/O.
//!
//! All integers are big-endian. See docs/filestorage.rst (transaction record,
//! 23 bytes) and §3.3 (data record, 42 bytes). Pickles are never decoded.

use std::fmt;

/// The magic of a Python 3 FileStorage (ZODB ≥ 5), the only one ZODB 6 opens.
pub const MAGIC: &[u8; 4] = b"FS30";
/// The magic of a Python 2 FileStorage, refused by Python 3 ZODB.
pub const MAGIC_PY2: &[u8; 4] = b"FS21";
/// Length of a transaction record header (`TRANS_HDR_LEN`).
pub const TRANS_HDR_LEN: u64 = 23;
/// Length of a data record header (`DATA_HDR_LEN`).
pub const DATA_HDR_LEN: u64 = 42;

/// Read a big-endian u64 from the first 8 bytes of `b`.
#[must_use]
pub fn u64_be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn u16_be(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A transaction id: 8 bytes, compared as a big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub [u8; 8]);

/// An object id: 8 bytes, compared as a big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub [u8; 8]);

impl Tid {
    /// The commit time encoded in the tid (see docs/filestorage.rst): minutes
    /// since 1900 on a 31-day-month calendar, then seconds as a fraction of
    /// 2**32. `None` for a tid that is not a valid date (e.g. all zeros).
    #[must_use]
    pub fn timestamp(self) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        let hi = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        let lo = u32::from_be_bytes([self.0[4], self.0[5], self.0[6], self.0[7]]);
        let mut v = hi;
        let minute = v % 60;
        v /= 60;
        let hour = v % 24;
        v /= 24;
        let day = v % 31 + 1;
        v /= 31;
        let month = v % 12 + 1;
        let year = i32::try_from(v / 12).ok()? + 1900;
        let nanos = (u128::from(lo) * 60 * 1_000_000_000) >> 32;
        let base = chrono::Utc
            .with_ymd_and_hms(year, month, day, hour, minute, 0)
            .single()?;
        Some(base + chrono::Duration::nanoseconds(i64::try_from(nanos).ok()?))
    }
}

impl Oid {
    /// The oid as a number.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl From<u64> for Oid {
    fn from(n: u64) -> Self {
        Oid(n.to_be_bytes())
    }
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid(0x{:016x})", u64::from_be_bytes(self.0))
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid(0x{:016x})", self.as_u64())
    }
}

/// The status byte of a transaction record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// `' '`: committed.
    Committed,
    /// `'p'`: committed, copied by a pack.
    Packed,
    /// `'c'`: checkpoint; written by `tpc_vote`, not (yet) committed.
    Checkpoint,
    /// `'u'`: undone by the old non-transactional undo; skipped, not indexed.
    Undone,
    /// Any other ASCII byte: ZODB logs a warning and treats it as committed.
    Other(u8),
}

impl TxnStatus {
    fn from_byte(b: u8) -> Self {
        match b {
            b' ' => TxnStatus::Committed,
            b'p' => TxnStatus::Packed,
            b'c' => TxnStatus::Checkpoint,
            b'u' => TxnStatus::Undone,
            other => TxnStatus::Other(other),
        }
    }
}

/// A decoded transaction record header (`TxnHeader` in ZODB's `format.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnHeader {
    /// Transaction id.
    pub tid: Tid,
    /// Record length, excluding the trailing redundant 8-byte length.
    pub tlen: u64,
    /// Status byte.
    pub status: TxnStatus,
    /// The raw status byte (for messages).
    pub status_byte: u8,
    /// Length of the user name.
    pub ulen: u16,
    /// Length of the description.
    pub dlen: u16,
    /// Length of the extension pickle.
    pub elen: u16,
}

impl TxnHeader {
    /// Decode the 23 header bytes.
    ///
    /// # Panics
    /// Never: callers pass exactly [`TRANS_HDR_LEN`] bytes (checked by a
    /// slice pattern).
    #[must_use]
    pub fn decode(b: &[u8; TRANS_HDR_LEN as usize]) -> Self {
        let mut tid = [0u8; 8];
        tid.copy_from_slice(&b[0..8]);
        TxnHeader {
            tid: Tid(tid),
            tlen: u64_be(&b[8..16]),
            status: TxnStatus::from_byte(b[16]),
            status_byte: b[16],
            ulen: u16_be(&b[17..19]),
            dlen: u16_be(&b[19..21]),
            elen: u16_be(&b[21..23]),
        }
    }

    /// Length of the header with user, description and extension.
    #[must_use]
    pub fn header_len(&self) -> u64 {
        TRANS_HDR_LEN + u64::from(self.ulen) + u64::from(self.dlen) + u64::from(self.elen)
    }
}

/// A decoded data record header (`DataHeader` in ZODB's `format.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// Object id.
    pub oid: Oid,
    /// Serial: the tid of the enclosing transaction.
    pub tid: Tid,
    /// Offset of the previous record of this oid, or 0.
    pub prev: u64,
    /// Offset of the enclosing transaction record.
    pub tloc: u64,
    /// Version length; must be 0 (versions were removed from ZODB).
    pub vlen: u16,
    /// Pickle length; 0 means a backpointer follows instead.
    pub plen: u64,
}

impl DataHeader {
    /// Decode the 42 header bytes.
    #[must_use]
    pub fn decode(b: &[u8; DATA_HDR_LEN as usize]) -> Self {
        let mut oid = [0u8; 8];
        oid.copy_from_slice(&b[0..8]);
        let mut tid = [0u8; 8];
        tid.copy_from_slice(&b[8..16]);
        DataHeader {
            oid: Oid(oid),
            tid: Tid(tid),
            prev: u64_be(&b[16..24]),
            tloc: u64_be(&b[24..32]),
            vlen: u16_be(&b[32..34]),
            plen: u64_be(&b[34..42]),
        }
    }

    /// Length of the whole data record: header plus pickle, or header plus
    /// an 8-byte backpointer when `plen == 0`.
    #[must_use]
    pub fn record_len(&self) -> u64 {
        DATA_HDR_LEN.saturating_add(if self.plen == 0 { 8 } else { self.plen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_header_decode_fields() {
        let mut b = [0u8; 23];
        b[0..8].copy_from_slice(&0x040d_4644_bde3_5833u64.to_be_bytes());
        b[8..16].copy_from_slice(&154u64.to_be_bytes());
        b[16] = b' ';
        b[19..21].copy_from_slice(&25u16.to_be_bytes());
        let h = TxnHeader::decode(&b);
        assert_eq!(h.tlen, 154);
        assert_eq!(h.status, TxnStatus::Committed);
        assert_eq!(h.header_len(), 48);
        assert_eq!(h.tid.0, 0x040d_4644_bde3_5833u64.to_be_bytes());
    }

    #[test]
    fn tid_timestamp_decodes_spec_example() {
        // see docs/filestorage.rst: 040d4644bde35833 is 2026-11-26 12:20:44.505015.
        let t = Tid(0x040d_4644_bde3_5833u64.to_be_bytes())
            .timestamp()
            .expect("valid date");
        assert_eq!(
            t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "2026-11-26 12:20:44.505015"
        );
        assert_eq!(
            Tid([0; 8]).timestamp().map(|t| t.timestamp()),
            Some(-2_208_988_800)
        );
    }

    #[test]
    fn data_header_backpointer_len() {
        let mut b = [0u8; 42];
        b[34..42].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(DataHeader::decode(&b).record_len(), 50);
        b[34..42].copy_from_slice(&64u64.to_be_bytes());
        assert_eq!(DataHeader::decode(&b).record_len(), 106);
    }
}
