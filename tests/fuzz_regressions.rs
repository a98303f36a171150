//! Inputs that once broke a reader, replayed: every file in
//! `tests/fuzz-regressions/<target>/` goes through the reader the fuzz target
//! of that name exercises (fuzz/fuzz_targets/<target>.rs), with the same input
//! layout and the same checks. A file can also be replayed by the fuzz target
//! itself: `cargo fuzz run <target> tests/fuzz-regressions/<target>/<file>`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crb::blobs::archive::{extract, list, Snapshot};
use crb::blobs::tree::{walk, EntryKind, WalkOptions};
use crb::filestorage::{scan, ScanOptions};
use crb::progress::NoProgress;
use crb::repozo::{dat, gzip};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| {
            let p = e.expect("entry").path();
            let b = fs::read(&p).expect("read input");
            (p, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn dat() {
    for (_, data) in inputs("dat") {
        let _ = dat::parse(Path::new("fuzz.dat"), &data);
    }
}

#[test]
fn gzip() {
    for (name, data) in inputs("gzip") {
        // The parallel reader reads exactly what the sequential one reads.
        let mut out = Vec::new();
        let ours = gzip::decoder(&data[..]).read_to_end(&mut out).map(|_| out);
        let mut seq = Vec::new();
        let reference = gzip::Members::new(&data[..], false)
            .read_to_end(&mut seq)
            .map(|_| seq);
        assert_eq!(
            ours.as_ref().ok(),
            reference.as_ref().ok(),
            "{}: {:?} vs {:?}",
            name.display(),
            ours.as_ref().err(),
            reference.as_ref().err()
        );
    }
}

#[test]
fn snar() {
    for (_, data) in inputs("snar") {
        if let Ok(snap) = Snapshot::parse(&data) {
            assert_eq!(Snapshot::parse(&snap.to_bytes()), Ok(snap));
        }
    }
}

#[test]
fn scan_with_and_without_index() {
    for (name, data) in inputs("scan") {
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let fs_path = dir.path().join("Data.fs");
        let (index, datafs) = if mode & 1 == 1 && rest.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            (Some(&rest[2..2 + n]), &rest[2 + n..])
        } else {
            (None, rest)
        };
        fs::write(&fs_path, datafs).expect("write");
        if let Some(index) = index {
            fs::write(dir.path().join("Data.fs.index"), index).expect("write");
        }
        if let Ok(r) = scan(&fs_path, &ScanOptions::default()) {
            assert!(r.end <= r.size, "{}", name.display());
        }
    }
}

/// Names, modes, sizes, link counts and contents below `dir`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).expect("stat");
        let content = if m.is_file() {
            fs::read(&p).expect("read")
        } else {
            Vec::new()
        };
        out.push((p.clone(), m.mode(), m.nlink(), content));
        if m.is_dir() {
            for e in fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn archive_extraction_stays_inside() {
    let cases = inputs("archive");
    assert!(!cases.is_empty(), "the archive regressions are missing");
    for (name, data) in cases {
        let Some((&mode, archive)) = data.split_first() else {
            continue;
        };
        let root = tempfile::tempdir().expect("tempdir");
        let outside = root.path().join("outside");
        fs::create_dir_all(outside.join("d")).expect("mkdir");
        fs::set_permissions(outside.join("d"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(outside.join("f"), b"x").expect("write");
        let dest = root.path().join("dest");
        fs::create_dir(&dest).expect("mkdir");
        let ar = root.path().join("a.tar");
        fs::write(&ar, archive).expect("write");
        let before = snapshot(&outside);
        let extracted = extract(std::slice::from_ref(&ar), &dest, mode & 1 == 1, &NoProgress);
        assert!(
            fs::symlink_metadata(&dest).expect("stat").is_dir(),
            "{}: dest replaced",
            name.display()
        );
        // What verify's reading says an archive restores is what extract
        // wrote.
        if mode & 1 == 1 && extracted.is_ok() {
            if let Ok(listed) = list(&[ar]) {
                let files: std::collections::HashMap<PathBuf, u64> =
                    walk(&dest, &WalkOptions::default())
                        .expect("walk dest")
                        .entries
                        .into_iter()
                        .filter(|e| e.kind == EntryKind::File)
                        .map(|e| (e.rel, e.size))
                        .collect();
                assert_eq!(listed.files, files, "{}: list differs", name.display());
            }
        }
        assert_eq!(
            snapshot(&outside),
            before,
            "{}: outside changed",
            name.display()
        );
    }
}
