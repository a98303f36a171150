//! The FileStorage scan on arbitrary bytes, alone or with a `.index` beside
//! it: never a panic, an end inside the file, and
//! - with a random `.index`: when the index is not used, the same result as
//!   a scan without it; an index that reads also writes back the same;
//! - with the `.index` a first scan wrote for its end: the same result as
//!   that first scan (a correct index changes nothing but speed).
//!
//! Input: one mode byte, then (random index mode) a 2-byte little-endian
//! index length and the index bytes, then the Data.fs bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use crb::filestorage::{scan, FsIndex, ScanOptions, ScanResult};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
}

fn same(a: &ScanResult, b: &ScanResult) {
    assert_eq!(a.end, b.end);
    assert_eq!(a.size, b.size);
    assert_eq!(a.last_tid, b.last_tid);
    assert_eq!(a.index, b.index);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fs_path: PathBuf = dir().path().join("Data.fs");
    let index_path = dir().path().join("Data.fs.index");
    let _ = std::fs::remove_file(&index_path);
    let (index_bytes, datafs) = if mode & 1 == 1 && rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        (Some(&rest[2..2 + n]), &rest[2 + n..])
    } else {
        (None, rest)
    };
    std::fs::write(&fs_path, datafs).expect("write Data.fs");
    let mut no_index = ScanOptions::default();
    no_index.use_index = false;
    let plain = scan(&fs_path, &no_index);
    if let Ok(r) = &plain {
        assert!(
            r.end >= 4 && r.end <= r.size,
            "end {} size {}",
            r.end,
            r.size
        );
        assert!(!r.used_index);
    }
    match index_bytes {
        Some(bytes) => {
            std::fs::write(&index_path, bytes).expect("write index");
            if let Ok((pos, idx)) = FsIndex::read(&index_path) {
                let mut out = Vec::new();
                idx.write_to(pos, &mut out).expect("write to vec");
                std::fs::write(&index_path, &out).expect("rewrite index");
                let (pos2, idx2) = FsIndex::read(&index_path).expect("rewritten index reads");
                assert_eq!((pos2, &idx2), (pos, &idx));
            }
            let with = scan(&fs_path, &ScanOptions::default());
            match (&plain, &with) {
                (Ok(a), Ok(b)) if !b.used_index => same(a, b),
                (Ok(_), Ok(b)) => assert!(b.end <= b.size),
                (Err(_), Ok(b)) => assert!(b.used_index),
                (_, Err(_)) => {}
            }
        }
        None if mode & 2 == 2 => {
            let Ok(a) = &plain else { return };
            a.index.write(a.end, &index_path).expect("write index");
            let b = scan(&fs_path, &ScanOptions::default()).expect("scan with its own index");
            same(a, &b);
        }
        None => {}
    }
});
