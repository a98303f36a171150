//! The class reader against pickles made by real ZODB: the data records of
//! a database with blobs, undo, BTrees and persistent containers, and
//! Python's own protocol 2 and 4 pickles of a class and a `(class, None)`
//! tuple. `fuzz/make_corpus.py` (`pickle_class_seeds`) wrote them to
//! `fuzz/corpus/pickle_class/`, each named `<module>.<class>-<n>` after
//! what ZODB's `get_pickle_metadata` reads from it.

use std::fs;
use std::path::Path;

use crb::filestorage::pickle_class::record_class;

#[test]
fn pickle_class_agrees_with_zodb() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pickle_class");
    let mut checked = 0;
    let mut blobs = 0;
    for entry in fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let expected = name.split('-').next().expect("class part");
        let data = fs::read(&path).expect("read");
        let got = record_class(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.to_string(), expected, "{name}");
        assert_eq!(got.is_blob(), expected == "ZODB.blob.Blob", "{name}");
        checked += 1;
        blobs += usize::from(got.is_blob());
    }
    assert!(checked >= 8, "{checked} seeds");
    assert!(blobs >= 4, "{blobs} blob seeds");
}
