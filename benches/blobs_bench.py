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
including a `sync`. The best time of the rounds is reported.

Every result is checked against the reference's: the same paths, types,
modes, sizes and mtimes, the same bytes in every file of the 1%-new backup
and of the restore, and in our re-backups every unchanged file is a hard
link to the previous backup and every new one is not. The peak RSS of our
backup and restore, each in its own process, is printed after the table
(rsync's with it). Usage::

    python benches/blobs_bench.py [--dir bench-data/blobs] [--files 20000]
        [--size 2G] [--rounds 1] [--keep]
"""

import argparse
import filecmp
import math
import os
import stat
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


def tree(root, dir_mtimes=True):
    """{relative path: (type, mode, size, mtime)} of everything under root
    but the top-level ``tmp`` (ZODB's uploads in progress, which a blob
    backup leaves out; rsync copies it)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and "tmp" in dirnames:
            dirnames.remove("tmp")
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            mtime = st.st_mtime_ns if dir_mtimes or not stat.S_ISDIR(st.st_mode) else None
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), size, mtime)
    return out


def same_trees(ours, theirs, what, contents=False, dir_mtimes=False):
    """The same tree, file mtimes included. Directory mtimes only with
    ``dir_mtimes``: rsync leaves a directory's creation time when the
    source's mtime is within the same second."""
    a, b = tree(ours, dir_mtimes), tree(theirs, dir_mtimes)
    assert a == b, f"{what}: trees differ ({len(a)} / {len(b)} entries)"
    if contents:
        for rel, (kind, *_rest) in a.items():
            if kind == stat.S_IFREG:
                assert filecmp.cmp(os.path.join(ours, rel), os.path.join(theirs, rel), shallow=False), (what, rel)


def check_links(prev, cur, what):
    """Unchanged files of `cur` are hard links into `prev`; new ones are not."""
    for rel, (kind, *_rest) in tree(cur).items():
        if kind != stat.S_IFREG:
            continue
        old = os.path.join(prev, rel)
        shared = os.path.exists(old) and os.path.samefile(old, os.path.join(cur, rel))
        assert shared == os.path.exists(old), (what, rel)


def peak_rss(argv):
    """Peak RSS (MiB) of a command, from GNU time."""
    p = subprocess.run(["/usr/bin/time", "-f", "RSS_KB=%M", *argv], stderr=subprocess.PIPE, text=True,
                       stdout=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.rsplit("RSS_KB=", 1)[1].split()[0]) / 1024


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
    rss = {}

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

        mine = [os.path.join(ours, f"blobstorage.{t}", "blobstorage") for t in ts]
        pair("first backup", lambda: blobs.backup(live, ours, now=ts[0]), lambda: sh("rsync", "-a", live, rs[0]))
        same_trees(mine[0], os.path.join(rs[0], "blobstorage"), "first backup")
        same_trees(mine[0], live, "first backup against the live tree", dir_mtimes=True)
        pair(
            "re-backup, unchanged",
            lambda: blobs.backup(live, ours, now=ts[1]),
            lambda: sh("rsync", "-a", "--delete", f"--link-dest=../{os.path.basename(rs[0])}", live, rs[1]),
        )
        same_trees(mine[1], os.path.join(rs[1], "blobstorage"), "re-backup, unchanged")
        check_links(mine[0], mine[1], "re-backup, unchanged")
        new = max(1, a.files // 100)
        generate(live, new, parse_size(a.size) // 100, seed=2 + rnd, start_oid=10 * a.files + 1 + rnd * 10 * new)
        pair(
            "re-backup, 1% new",
            lambda: blobs.backup(live, ours, now=ts[2]),
            lambda: sh("rsync", "-a", "--delete", f"--link-dest=../{os.path.basename(rs[1])}", live, rs[2]),
        )
        same_trees(mine[2], os.path.join(rs[2], "blobstorage"), "re-backup, 1% new", contents=True)
        check_links(mine[1], mine[2], "re-backup, 1% new")
        restore_ours = os.path.join(base, f"restore-ours{rnd}", "blobstorage")
        restore_rs = os.path.join(base, f"restore-rsync{rnd}", "blobstorage")
        os.makedirs(os.path.dirname(restore_rs))
        backup_dir = os.path.join(ours, f"blobstorage.{ts[2]}")
        pair(
            "restore",
            lambda: blobs.restore(ours, restore_ours),
            lambda: sh("rsync", "-a", "--delete", os.path.join(backup_dir, "blobstorage"), os.path.dirname(restore_rs)),
        )
        same_trees(restore_ours, restore_rs, "restore", contents=True)
        same_trees(restore_ours, live, "restore", dir_mtimes=True)
        copy_ours = os.path.join(base, f"copy-ours{rnd}")
        copy_cp = os.path.join(base, f"copy-cp{rnd}")
        os.makedirs(copy_cp)
        pair(
            "copy mode, first backup (vs cp -a)",
            lambda: blobs.backup(live, copy_ours, hard_links=False, now=ts[0]),
            lambda: sh("cp", "-a", live, os.path.join(copy_cp, "blobstorage")),
        )
        same_trees(os.path.join(copy_ours, f"blobstorage.{ts[0]}", "blobstorage"),
                   os.path.join(copy_cp, "blobstorage"), "copy mode")
        if rnd == a.rounds - 1:
            # Peak memory, each in its own process (untimed).
            code = "import sys; from collective.recipe.backup import blobs; "
            rss_dir = os.path.join(base, "rss")
            rss["ours, first backup"] = peak_rss([sys.executable, "-c", code + f"blobs.backup({live!r}, {rss_dir!r}, now={ts[0]!r})"])
            rss["ours, re-backup"] = peak_rss([sys.executable, "-c", code + f"blobs.backup({live!r}, {rss_dir!r}, now={ts[1]!r})"])
            rss["ours, restore"] = peak_rss([sys.executable, "-c", code + f"blobs.restore({rss_dir!r}, {os.path.join(base, 'rss-restore', 'blobstorage')!r})"])
            rss["python alone"] = peak_rss([sys.executable, "-c", "from collective.recipe.backup import blobs"])
            rss["rsync -a, first backup"] = peak_rss(["rsync", "-a", live, os.path.join(base, "rss-rsync")])
            for d in ("rss", "rss-restore", "rss-rsync"):
                shutil.rmtree(os.path.join(base, d), ignore_errors=True)
        for d in (ours, theirs, restore_ours, restore_rs, copy_ours, copy_cp):
            shutil.rmtree(os.path.dirname(d) if "restore" in d else d, ignore_errors=True)
        sh("sync")

    print(f"\n{'case':38} {'ours s':>8} {'reference s':>12} {'ratio':>7}")
    for case, r in results.items():
        o = min(r["ours"])
        t = min(r["reference"])
        print(f"{case:38} {o:8.2f} {t:12.2f} {t / o:6.1f}x")
    print(f"\n(ratio = reference time / our time; {os.cpu_count()} CPUs; python {sys.version.split()[0]})")
    print("trees identical to the reference's (paths, modes, sizes, mtimes; bytes of the 1%-new backup and the restore)")
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()))
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
