//! The gzip reader of backup files: any bytes decode or fail with an error,
//! never a panic or a hang, and
//! - the parallel reader (which trusts the member length in our headers)
//!   gives exactly what the plain sequential member reader gives, bytes or
//!   error;
//! - whatever decodes is compressed again by our writer and reads back
//!   identically.
#![no_main]

use std::io::Read;

use crb::progress::NoProgress;
use crb::repozo::gzip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let ours = gzip::decoder(data).read_to_end(&mut out);
    let mut seq = Vec::new();
    let reference = gzip::Members::new(data, false).read_to_end(&mut seq);
    assert_eq!(ours.is_ok(), reference.is_ok(), "{ours:?} vs {reference:?}");
    if ours.is_err() {
        return;
    }
    assert!(out == seq, "parallel and sequential readers differ");
    let mut again = Vec::new();
    gzip::compress(&mut &out[..], &mut again, 1, 0, &NoProgress).expect("compress");
    let mut back = Vec::new();
    gzip::decoder(&again[..])
        .read_to_end(&mut back)
        .expect("our own output reads");
    assert!(back == out, "roundtrip differs");
});
