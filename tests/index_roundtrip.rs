//! Property tests: any (pos, oid → offset) map survives a write and a read of
//! the `.index` format, and writing what was read gives the same bytes.

use crb::filestorage::{FsIndex, Oid};
use proptest::prelude::*;

fn oid_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..70_000,                          // first buckets, across 0xffff
        (0xffffu64 - 50)..(0x1_0000 + 50),     // the first prefix boundary
        ((1u64 << 48) - 50)..((1 << 48) + 50), // oids at and above 2**48
        any::<u64>(),
    ]
}

proptest! {
    #[test]
    fn index_write_read_round_trip(
        pos in prop_oneof![4u64..100_000, (1u64 << 31) - 10..(1 << 31) + 10, 0u64..(1 << 48)],
        entries in prop::collection::vec((oid_strategy(), 0u64..(1 << 48)), 0..600),
    ) {
        let mut idx = FsIndex::new();
        let mut model = std::collections::BTreeMap::new();
        for &(oid, at) in &entries {
            idx.insert(Oid::from(oid), at).expect("offset below 2**48");
            model.insert(oid, at);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("Data.fs.index");
        idx.write(pos, &path).expect("write");
        let bytes = std::fs::read(&path).expect("read bytes");

        let (pos2, back) = FsIndex::read(&path).expect("read back");
        prop_assert_eq!(pos2, pos);
        prop_assert_eq!(back.len(), model.len());
        let got: Vec<(u64, u64)> = back.iter().map(|(o, p)| (o.as_u64(), p)).collect();
        let want: Vec<(u64, u64)> = model.into_iter().collect();
        prop_assert_eq!(got, want);

        let again = dir.path().join("again.index");
        back.write(pos2, &again).expect("write again");
        prop_assert_eq!(std::fs::read(&again).expect("read again"), bytes);
    }
}
