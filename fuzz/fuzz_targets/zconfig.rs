//! The ZConfig reader and the storage extraction of zope.conf / zeo.conf:
//! any bytes give a tree or a one-line error, never a panic. `%include`
//! reads the input itself again (a few times, then "no such file"), so
//! nesting, the include limits and shared defines are exercised too.
#![no_main]

use std::cell::Cell;
use std::io;
use std::path::Path;

use crb::zconfig::{self, Loader};
use crb::zope_conf;
use libfuzzer_sys::fuzz_target;

struct Again<'a> {
    data: &'a [u8],
    reads: Cell<usize>,
}

impl Loader for Again<'_> {
    fn read(&self, _path: &Path) -> io::Result<Vec<u8>> {
        self.reads.set(self.reads.get() + 1);
        if self.reads.get() > 40 {
            return Err(io::Error::from_raw_os_error(2));
        }
        Ok(self.data.to_vec())
    }

    fn env_var(&self, name: &str) -> Option<String> {
        name.starts_with('A').then(|| "/env".to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let loader = Again {
        data,
        reads: Cell::new(0),
    };
    let path = Path::new("/etc/zope.conf");
    match zconfig::parse(path, &loader) {
        Ok(top) => {
            if let Err(e) = zope_conf::storages(&top, &loader) {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
