//! The class reader of data record pickles: any bytes give a class or an
//! error, never a panic; a class read from a pickle is read again from a
//! protocol-3 `GLOBAL` pickle of its names (when they fit on a line).
#![no_main]

use crb::filestorage::pickle_class::record_class;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(class) = record_class(data) else {
        return;
    };
    if class.module.contains('\n') || class.name.contains('\n') {
        return;
    }
    let mut global = vec![0x80, 0x03, b'c'];
    global.extend_from_slice(class.module.as_bytes());
    global.push(b'\n');
    global.extend_from_slice(class.name.as_bytes());
    global.extend_from_slice(b"\n.");
    assert_eq!(record_class(&global).ok(), Some(class));
});
