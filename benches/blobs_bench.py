"""Benchmark: blob backups with the Rust core vs rsync / cp -a (not a test).

Generates a bushy, read-only blobstorage (default ~20k files, ~2 GB), then
times, in the same run and on the same trees:

1. first backup             ours  vs  rsync -a
2. re-backup, unchanged     ours  vs  rsync -a --delete --link-dest=<prev>
3. re-backup, 1% new files  ours  vs  rsync -a --delete --link-dest=<prev>
4. restore (fresh target)   ours  vs  rsync -a --delete <backup>/<base> <parent>
5. copy mode, first backup  ours (hard_links=False)  vs  cp -a

The rsync commands are the ones collective.recipe.backup 6.0 ran
(see docs/blobs.rst). Each pair runs with a warm page cache; ours
goes first in even rounds and second in odd ones, and `sync` runs (untimed)
before every timed step so no step pays for the previous one's writeback.
Ours flushes what it wrote (syncfs) before a backup gets its final name or
a restore replaces the live tree; rsync and cp never flush. So that both
sides deliver the same durability, every reference step is timed up to and
including a `sync`. The best time of the rounds is reported. Usage::

    python benches/blobs_bench.py [--dir bench-data/blobs] [--files 20000]
        [--size 2G] [--rounds 1] [--keep]
"""

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import time


def oid_path(oid):
    return os.path.join(*[f"0x{b:02x}" for b in oid.to_bytes(8, "big")])


def parse_size(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(float(text.rstrip("KMGkmg")) * mult)


def generate(root, files, total, seed=1, start_oid=1):
    """Blob files with lognormal sizes scaled to `total` bytes."""
    rnd = random.Random(seed)
    sizes = [rnd.lognormvariate(0, 1.2) for _ in range(files)]
    scale = total / sum(sizes)
    os.makedirs(root, exist_ok=True)
    if start_oid == 1:
        with open(os.path.join(root, ".layout"), "w") as f:
            f.write("bushy")
        os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    chunk = os.urandom(1 << 20)
    written = 0
    for i, s in enumerate(sizes):
        oid = start_oid + i * 3  # gaps: some sharing of the upper levels
        d = os.path.join(root, oid_path(oid))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"0x{0x03E0000000000000 + oid:016x}.blob")
        n = max(1, int(s * scale))
        with open(p, "wb") as f:
            left = n
            off = rnd.randrange(len(chunk))
            while left:
                piece = chunk[off : off + left] or chunk[:left]
                f.write(piece)
                left -= len(piece)
                off = 0
        os.chmod(p, 0o444)
        written += n
    return written


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sh(*cmd):
    subprocess.run([str(c) for c in cmd], check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="bench-data/blobs")
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    a = ap.parse_args(argv)
    from collective.recipe.backup import blobs

    base = os.path.abspath(a.dir)
    shutil.rmtree(base, ignore_errors=True)
    live = os.path.join(base, "var", "blobstorage")
    t0 = time.perf_counter()
    total = generate(live, a.files, parse_size(a.size))
    print(f"generated {a.files} files, {total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f}s at {live}")
    sh("sync")
    results = {}

    def record(case, who, secs):
        results.setdefault(case, {}).setdefault(who, []).append(secs)

    for rnd in range(a.rounds):
        ours = os.path.join(base, f"ours{rnd}")
        theirs = os.path.join(base, f"rsync{rnd}")
        os.makedirs(theirs)
        ts = [f"2026-01-0{d}-00-00-00" for d in range(1, 4)]
        rs = [os.path.join(theirs, f"blobstorage.{t}") for t in ts]

        def pair(case, f_ours, f_theirs_alone):
            def f_theirs():
                f_theirs_alone()
                sh("sync")  # as durable as ours (see the docstring)

            order = [("ours", f_ours), ("reference", f_theirs)]
            if rnd % 2:
                order.reverse()
            for who, f in order:
                # Flush the previous step's dirty pages first, so that no
                # run pays for another's writeback.
                sh("sync")
                record(case, who, timed(f))

        pair("first backup", lambda: blobs.backup(live, ours, now=ts[0]), lambda: sh("rsync", "-a", live, rs[0]))
        pair(
            "re-backup, unchanged",
            lambda: blobs.backup(live, ours, now=ts[1]),
            lambda: sh("rsync", "-a", "--delete", f"--link-dest=../{os.path.basename(rs[0])}", live, rs[1]),
        )
        new = max(1, a.files // 100)
        generate(live, new, parse_size(a.size) // 100, seed=2 + rnd, start_oid=10 * a.files + 1 + rnd * 10 * new)
        pair(
            "re-backup, 1% new",
            lambda: blobs.backup(live, ours, now=ts[2]),
            lambda: sh("rsync", "-a", "--delete", f"--link-dest=../{os.path.basename(rs[1])}", live, rs[2]),
        )
        restore_ours = os.path.join(base, f"restore-ours{rnd}", "blobstorage")
        restore_rs = os.path.join(base, f"restore-rsync{rnd}", "blobstorage")
        os.makedirs(os.path.dirname(restore_rs))
        backup_dir = os.path.join(ours, f"blobstorage.{ts[2]}")
        pair(
            "restore",
            lambda: blobs.restore(ours, restore_ours),
            lambda: sh("rsync", "-a", "--delete", os.path.join(backup_dir, "blobstorage"), os.path.dirname(restore_rs)),
        )
        copy_ours = os.path.join(base, f"copy-ours{rnd}")
        copy_cp = os.path.join(base, f"copy-cp{rnd}")
        os.makedirs(copy_cp)
        pair(
            "copy mode, first backup (vs cp -a)",
            lambda: blobs.backup(live, copy_ours, hard_links=False, now=ts[0]),
            lambda: sh("cp", "-a", live, os.path.join(copy_cp, "blobstorage")),
        )
        for d in (ours, theirs, restore_ours, restore_rs, copy_ours, copy_cp):
            shutil.rmtree(os.path.dirname(d) if "restore" in d else d, ignore_errors=True)
        sh("sync")

    print(f"\n{'case':38} {'ours s':>8} {'reference s':>12} {'ratio':>7}")
    for case, r in results.items():
        o = min(r["ours"])
        t = min(r["reference"])
        print(f"{case:38} {o:8.2f} {t:12.2f} {t / o:6.1f}x")
    print(f"\n(ratio = reference time / our time; {os.cpu_count()} CPUs; python {sys.version.split()[0]})")
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
