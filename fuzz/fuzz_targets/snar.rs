//! The GNU tar snapshot (`.snar`) reader: any bytes parse or give an error;
//! what parses is written back and reads back the same.
#![no_main]

use crb::blobs::archive::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(snap) = Snapshot::parse(data) else {
        return;
    };
    let again = Snapshot::parse(&snap.to_bytes()).expect("written snapshot parses");
    assert_eq!(again, snap);
});
