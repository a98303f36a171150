//! Streaming bytes between files while hashing them.
//!
//! repozo reads in 16 KiB pieces and hashes, then writes, one after the
//! other. Here the md5 of one 1 MiB chunk runs on one core while the chunk
//! is written and the next one read (or decompressed) on the other.

use std::fs::File;
use std::io::{self, Read, Write};

use md5::{Digest, Md5};

use crate::progress::Progress;

/// Bytes per read.
pub const CHUNK: usize = 1 << 20;

/// Read into `buf` until it is full or the reader is at its end; returns
/// the bytes read.
///
/// # Errors
/// Errors of `r` (interruptions are retried).
pub fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `[pos, end)` of an open file, read with positioned reads so that
/// several regions of one file descriptor can be read at the same time.
#[derive(Debug)]
pub struct Region<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> Region<'a> {
    /// Bytes `[start, end)` of `file`.
    #[must_use]
    pub fn new(file: &'a File, start: u64, end: u64) -> Self {
        Region {
            file,
            pos: start,
            end,
        }
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = read_at(self.file, &mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, pos)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, pos)
}

/// Copy `src` to its end into `dst` (when given), hashing every byte.
/// Returns `(bytes, md5 state)`.
///
/// # Errors
/// Errors of `src` or `dst`.
pub fn copy_hashed<R, W>(
    src: &mut R,
    mut dst: Option<&mut W>,
    mut hasher: Md5,
    progress: &dyn Progress,
) -> io::Result<(u64, Md5)>
where
    R: Read + Send,
    W: Write + Send,
{
    let mut cur = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut n = fill(src, &mut cur)?;
    let mut total = 0u64;
    while n > 0 {
        let data = &cur[..n];
        let next_buf = &mut next;
        let dst_ref = &mut dst;
        let ((), got) = rayon::join(
            || hasher.update(data),
            || -> io::Result<usize> {
                if let Some(d) = dst_ref.as_mut() {
                    d.write_all(data)?;
                }
                fill(src, next_buf)
            },
        );
        total += n as u64;
        progress.advance(n as u64);
        n = got?;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok((total, hasher))
}

/// Copy `src` to its end into `dst` in 1 MiB pieces, without hashing;
/// returns the bytes copied.
///
/// # Errors
/// Errors of `src` or `dst`.
pub fn copy_unhashed<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = fill(src, &mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// md5 of `src` to its end, and its length.
///
/// # Errors
/// Errors of `src`.
pub fn md5_of<R: Read + Send>(src: &mut R, progress: &dyn Progress) -> io::Result<(u64, String)> {
    let (n, h) = copy_hashed::<R, io::Sink>(src, None, Md5::new(), progress)?;
    Ok((n, hex(h)))
}

/// Lower-case hex of a finished md5.
#[must_use]
pub fn hex(h: Md5) -> String {
    use std::fmt::Write as _;
    h.finalize()
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// md5 of nothing.
pub const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn md5_of_empty() {
        assert_eq!(
            md5_of(&mut &b""[..], &NoProgress).expect("md5"),
            (0, EMPTY_MD5.to_owned())
        );
    }

    #[test]
    fn copy_hashed_copies_and_hashes() {
        let data: Vec<u8> = (0..(3 * CHUNK + 7)).map(|i| (i % 253) as u8).collect();
        let mut out = Vec::new();
        let (n, h) =
            copy_hashed(&mut &data[..], Some(&mut out), Md5::new(), &NoProgress).expect("copy");
        assert_eq!(n as usize, data.len());
        assert_eq!(out, data);
        assert_eq!(hex(h), hex(Md5::new_with_prefix(&data)));
    }

    #[test]
    fn region_reads_a_range() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        std::fs::write(&p, b"0123456789").expect("write");
        let f = File::open(&p).expect("open");
        let mut s = String::new();
        Region::new(&f, 2, 5).read_to_string(&mut s).expect("read");
        assert_eq!(s, "234");
    }
}
