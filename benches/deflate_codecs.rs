//! Measurement tool (not a test): which deflate implementation and level
//! the gzip backups use, chosen by numbers on real Data.fs content.
//!
//!     cargo bench --bench deflate_codecs -- bench-data/db-200M/Data.fs [MiB]
//!
//! The file (its first `MiB`, default 128) is cut into members of
//! `crb::repozo::gzip::MEMBER_SIZE` bytes, and every candidate compresses
//! them on one thread: zlib-rs (through flate2, what the crate used
//! before) at levels 1–9 and libdeflate at levels 1–12. Printed per
//! candidate: MiB/s on one core, and the size relative to one zlib level 9
//! stream of the whole input, which is what repozo's `gzip` module writes.
//! Then the inflate speed of both libraries on the same members, the md5
//! speed and the CRC32 speed: the other work that shares the cores. Every
//! output is inflated back and compared, so a broken codec cannot win.
//! Each number is the median CPU time of `REPEAT` runs (the machine is
//! shared: wall time depends on the other users).

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress, Status};
use md5::{Digest, Md5};

const REPEAT: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Median CPU seconds of this thread over `REPEAT` runs of `f` (steadier
/// than wall time on a shared machine; the wall time is printed with the
/// first line), and its last result.
fn time<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..REPEAT {
        let t = thread_cpu();
        last = Some(f());
        times.push(thread_cpu() - t);
    }
    (median(times), last.expect("REPEAT > 0"))
}

fn zlib_raw(data: &[u8], level: u32, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(data.len() + data.len() / 100 + 1024);
    let mut c = Compress::new(Compression::new(level), false);
    loop {
        let done = c.total_in() as usize;
        let s = c
            .compress_vec(&data[done..], out, FlushCompress::Finish)
            .expect("deflate");
        if s == Status::StreamEnd {
            return;
        }
        out.reserve(1 << 16);
    }
}

fn libdeflate_raw(c: &mut libdeflater::Compressor, data: &[u8], out: &mut Vec<u8>) {
    out.resize(c.deflate_compress_bound(data.len()), 0);
    let n = c.deflate_compress(data, out).expect("libdeflate");
    out.truncate(n);
}

fn inflate_check(chunks: &[&[u8]], outs: &[Vec<u8>]) {
    let mut d = libdeflater::Decompressor::new();
    let mut back = vec![0u8; crb::repozo::gzip::MEMBER_SIZE];
    for (c, o) in chunks.iter().zip(outs) {
        let n = d.deflate_decompress(o, &mut back).expect("inflate");
        assert!(&back[..n] == *c, "round trip differs");
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let path = args.first().expect("usage: deflate_codecs DATA.FS [MiB]");
    let mib: usize = args.get(1).map_or(128, |s| s.parse().expect("MiB"));
    let mut data = std::fs::read(path).expect("read the file");
    data.truncate(mib << 20);
    let total = data.len() as f64 / (1 << 20) as f64;
    let chunks: Vec<&[u8]> = data.chunks(crb::repozo::gzip::MEMBER_SIZE).collect();
    println!(
        "{path}: {total:.1} MiB in {} members of {} KiB; median CPU time of {REPEAT} runs, one thread",
        chunks.len(),
        crb::repozo::gzip::MEMBER_SIZE >> 10
    );

    let mut whole = Vec::new();
    let (t9, ()) = time(|| zlib_raw(&data, 9, &mut whole));
    let reference = whole.len() as f64;
    println!(
        "reference: zlib-rs level 9, one stream (as repozo): {:.1} MiB/s, {} bytes ({:.3} of the input)",
        total / t9,
        whole.len(),
        reference / data.len() as f64
    );
    println!("{:<16} {:>10} {:>12}", "codec", "MiB/s", "size/ref");
    let mut outs: Vec<Vec<u8>> = chunks.iter().map(|_| Vec::new()).collect();
    for level in 1..=9 {
        let (t, size) = time(|| {
            let mut size = 0;
            for (c, o) in chunks.iter().zip(outs.iter_mut()) {
                zlib_raw(c, level, o);
                size += o.len();
            }
            size
        });
        inflate_check(&chunks, &outs);
        println!(
            "{:<16} {:>10.1} {:>12.4}",
            format!("zlib-rs {level}"),
            total / t,
            size as f64 / reference
        );
    }
    for level in 1..=12 {
        let lvl = libdeflater::CompressionLvl::new(level).expect("level");
        let mut c = libdeflater::Compressor::new(lvl);
        let (t, size) = time(|| {
            let mut size = 0;
            for (ch, o) in chunks.iter().zip(outs.iter_mut()) {
                libdeflate_raw(&mut c, ch, o);
                size += o.len();
            }
            size
        });
        inflate_check(&chunks, &outs);
        println!(
            "{:<16} {:>10.1} {:>12.4}",
            format!("libdeflate {level}"),
            total / t,
            size as f64 / reference
        );
    }

    // Inflate speed, on members as libdeflate level 6 writes them.
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).expect("6"));
    for (ch, o) in chunks.iter().zip(outs.iter_mut()) {
        libdeflate_raw(&mut c, ch, o);
    }
    let mut back = vec![0u8; crb::repozo::gzip::MEMBER_SIZE];
    let (t, ()) = time(|| {
        let mut d = libdeflater::Decompressor::new();
        for o in &outs {
            d.deflate_decompress(o, &mut back).expect("inflate");
        }
    });
    println!("inflate, libdeflate: {:.1} MiB/s", total / t);
    let (t, ()) = time(|| {
        for o in &outs {
            let mut d = flate2::Decompress::new(false);
            let mut v = Vec::with_capacity(crb::repozo::gzip::MEMBER_SIZE);
            d.decompress_vec(o, &mut v, flate2::FlushDecompress::Finish)
                .expect("inflate");
        }
    });
    println!("inflate, zlib-rs:    {:.1} MiB/s", total / t);
    let (t, ()) = time(|| {
        let mut h = Md5::new();
        h.update(&data);
        std::hint::black_box(h.finalize());
    });
    println!("md5:                 {:.1} MiB/s", total / t);
    let (t, ()) = time(|| {
        std::hint::black_box(libdeflater::crc32(&data));
    });
    println!("crc32, libdeflate:   {:.1} MiB/s", total / t);
    let (t, ()) = time(|| {
        let mut c = flate2::Crc::new();
        c.update(&data);
        std::hint::black_box(c.sum());
    });
    println!("crc32, flate2:       {:.1} MiB/s", total / t);
    std::io::stdout().flush().expect("stdout");
}
