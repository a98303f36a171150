//! Extraction of blob archives (plain, gzipped, GNU incremental): any bytes
//! extract or fail with an error, never a panic, and nothing outside the
//! target directory is created, removed, linked or changed, whatever the
//! member names, symlinks and hard links say.
//!
//! Layout of the sandbox: `a.tar` (the input), `dest/` (the target) and
//! `outside/` (a file `f` and a directory `d`, which must stay as they are).
//! The first input byte selects incremental extraction; the rest is the
//! archive. With incremental extraction, what `list` (verify's reading of
//! an archive, which writes nothing) says the archive restores is what
//! `extract` wrote, when both succeed.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crb::blobs::archive::{extract, list};
use crb::blobs::copy::remove_tree;
use crb::blobs::tree::{walk, EntryKind, WalkOptions};
use crb::progress::NoProgress;
use libfuzzer_sys::fuzz_target;

fn sandbox() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
}

/// What must not change outside `dest`: names, kinds, modes, sizes, link
/// counts, mtimes of everything below `root` but `dest` and its content.
fn state(root: &Path, dest: &Path) -> Vec<(PathBuf, u32, u64, u64, i64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p == dest {
            continue;
        }
        let m = fs::symlink_metadata(&p).expect("stat");
        out.push((p.clone(), m.mode(), m.size(), m.nlink(), m.mtime()));
        if m.is_dir() {
            for e in fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let root = sandbox().path();
    let outside = root.join("outside");
    if !outside.exists() {
        fs::create_dir(&outside).expect("mkdir");
        fs::create_dir(outside.join("d")).expect("mkdir");
        fs::write(outside.join("f"), b"x").expect("write");
    }
    let dest = root.join("dest");
    remove_tree(&dest).expect("clean dest");
    fs::create_dir(&dest).expect("mkdir dest");
    let ar = root.join("a.tar");
    fs::write(&ar, archive).expect("write archive");
    let before = state(root, &dest);

    let extracted = extract(std::slice::from_ref(&ar), &dest, mode & 1 == 1, &NoProgress);
    if mode & 1 == 1 && extracted.is_ok() {
        if let Ok(listed) = list(&[ar]) {
            let tree = walk(&dest, &WalkOptions::default()).expect("walk dest");
            let files: std::collections::HashMap<PathBuf, u64> = tree
                .entries
                .into_iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| (e.rel, e.size))
                .collect();
            assert_eq!(listed.files, files, "list differs from extract");
        }
    }

    let dm = fs::symlink_metadata(&dest).expect("dest still there");
    assert!(dm.is_dir(), "dest replaced");
    let after = state(root, &dest);
    // The root's own mtime and link count change with dest's re-creation,
    // so compare names and everything below the root.
    let strip = |v: Vec<(PathBuf, u32, u64, u64, i64)>| -> Vec<_> {
        v.into_iter().filter(|e| e.0 != root).collect::<Vec<_>>()
    };
    assert_eq!(
        strip(after),
        strip(before),
        "something outside dest changed"
    );
});
