//! The gzip reader of backup files: any bytes decode or fail with an error,
//! never a panic or a hang. Whatever decodes is compressed again by our
//! writer and must read back identically.
#![no_main]

use std::io::Read;

use crb::progress::NoProgress;
use crb::repozo::gzip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if gzip::decoder(data).read_to_end(&mut out).is_err() {
        return;
    }
    let mut again = Vec::new();
    gzip::compress(&mut &out[..], &mut again, 1, 0, &NoProgress).expect("compress");
    let mut back = Vec::new();
    gzip::decoder(&again[..])
        .read_to_end(&mut back)
        .expect("our own output reads");
    assert!(back == out, "roundtrip differs");
});
