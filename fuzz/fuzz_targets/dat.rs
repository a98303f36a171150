//! The `.dat` parser: any bytes give lines or an error, never a panic; a
//! parsed line written back parses to the same line.
#![no_main]

use std::path::Path;

use crb::repozo::dat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.dat");
    let Ok(lines) = dat::parse(path, data) else {
        return;
    };
    let text: String = lines.iter().map(dat::DatLine::to_line).collect();
    let again = dat::parse(path, text.as_bytes()).expect("written lines parse");
    assert_eq!(again, lines);
});
