//! Our gzip reader against Python's `gzip` module (what ZODB's repozo reads
//! `.fsz` files with) and GNU gzip, on the same bytes: zero padding after a
//! member, between members, junk after a member, an empty file.
//!
//! Needs `python3` (and `gzip` for the second check) on PATH, as the rest of
//! the test suite does.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crb::progress::NoProgress;
use crb::repozo::gzip;

fn sample(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7919) % 251) as u8).collect()
}

/// A file as our backups write it (several members when large).
fn ours(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    gzip::compress(&mut &data[..], &mut out, 2, 0, &NoProgress).expect("compress");
    out
}

/// A single member as repozo writes it: a file name, a sync flush.
fn repozo_like(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .filename("tmp.tmp")
        .write(Vec::new(), flate2::Compression::new(9));
    e.write_all(data).expect("write");
    e.flush().expect("sync flush");
    e.finish().expect("finish")
}

fn decode_ours(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    gzip::decoder(bytes)
        .read_to_end(&mut out)
        .map(|_| out)
        .map_err(|e| e.to_string())
}

/// The file at `path` through [`gzip::decompress_file`] (what recover and
/// verify use on files).
fn decode_ours_file(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).expect("open");
    let mut out = Vec::new();
    gzip::decompress_file(&f, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .map(|_| out)
    .map_err(|e| e.to_string())
}

/// `gzip.open(path).read()` in Python: the bytes, or the exception.
fn decode_python(path: &Path) -> Result<Vec<u8>, String> {
    let script = "import gzip, sys\n\
                  try:\n    data = gzip.open(sys.argv[1], 'rb').read()\n\
                  except Exception as e:\n    sys.stderr.write(repr(e)); sys.exit(3)\n\
                  sys.stdout.buffer.write(data)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    match out.status.code() {
        Some(0) => Ok(out.stdout),
        Some(3) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        other => panic!(
            "python3 failed ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `gzip -dc` (GNU gzip): the bytes when it exits 0 (a warning, exit 2,
/// counts as a failure here: trailing garbage).
fn decode_gnu(path: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip runs");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let a = sample(1_500_000); // three of our members
    let b = sample(70_000);
    let zeros = |n: usize| vec![0u8; n];
    vec![
        ("ours + 1 zero", [ours(&a), zeros(1)].concat()),
        ("ours + 4096 zeros", [ours(&a), zeros(4096)].concat()),
        ("ours, small + zeros", [ours(&b), zeros(512)].concat()),
        ("repozo + zeros", [repozo_like(&b), zeros(100_000)].concat()),
        (
            "member + zeros + member + zeros",
            [ours(&b), zeros(33), repozo_like(&a), zeros(7)].concat(),
        ),
        (
            "repozo + zeros + ours",
            [repozo_like(&b), zeros(20), ours(&b)].concat(),
        ),
        ("empty", Vec::new()),
        ("zeros only", zeros(64)),
        ("ours + junk", [ours(&b), b"junk".to_vec()].concat()),
        (
            "ours + zeros + junk",
            [ours(&b), zeros(10), b"\x01".to_vec()].concat(),
        ),
        (
            "repozo + zeros + junk",
            [repozo_like(&b), zeros(30), b"xyz".to_vec()].concat(),
        ),
        (
            "ours + zeros + half a header",
            [ours(&b), zeros(3), vec![0x1f, 0x8b, 8]].concat(),
        ),
    ]
}

#[test]
fn zero_padding_like_python_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in cases() {
        let path = dir.path().join("x.fsz");
        std::fs::write(&path, &bytes).expect("write");
        let want = decode_python(&path);
        for got in [decode_ours(&bytes), decode_ours_file(&path)] {
            match (&want, &got) {
                (Ok(w), Ok(g)) => assert!(w == g, "{name}: different bytes"),
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "{name}: python {:?}, ours {:?}",
                    want.as_ref().map(Vec::len),
                    got.as_ref().map(Vec::len)
                ),
            }
        }
    }
}

#[test]
fn zero_padding_like_gnu_gzip() {
    // GNU gzip accepts zero padding after the last member (exit 0).
    let dir = tempfile::tempdir().expect("tempdir");
    let b = sample(200_000);
    for (name, bytes) in [
        ("ours", [ours(&b), vec![0; 4096]].concat()),
        ("repozo", [repozo_like(&b), vec![0; 17]].concat()),
    ] {
        let path = dir.path().join("x.fsz");
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(decode_gnu(&path).as_deref(), Ok(&b[..]), "{name}: gzip");
        assert_eq!(decode_ours(&bytes).as_deref(), Ok(&b[..]), "{name}: ours");
    }
}
