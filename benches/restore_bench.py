"""Benchmark: restoring a Data.fs to the state of the previous incremental
backup, ours against ZODB's ``repozo -R`` in the same run. Not a test.

    .venv/bin/python benches/restore_bench.py [--size 1G] [--gzip] [--repeat 3]

A storage made by real ZODB (tests/zodbgen.py, cached in bench-data/), a
repository made by ZODB's repozo: a full backup and two incrementals, with
~5 MB of transactions before each incremental and after the last one. The
restore asks for the date of the first incremental, so the live Data.fs is
that state plus ~10 MB.

- repozo: ``repozo -R -D DATE -o new.fs`` and a ``sync`` (ours flushes what
  it writes; the reference is timed up to the same durability). Moving its
  output over the live file is not counted.
- ours: ``zodb-backup restore -n DATE`` on a fresh copy of the live
  Data.fs (the copy is not timed): the default (the prefix kept when the
  md5 of every backup file's range matches), ``--quick-check`` (headers and
  the newest file's md5), and ``--write-all`` (no prefix kept).

Each result is compared with repozo's output byte for byte, and the bytes
ours kept beside the Data.fs must be exactly what came after the backup, so
that a fast wrong answer cannot win. Prints the median wall time of
``--repeat`` runs, the ratio (repozo / ours) and the peak RSS.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

from bench_common import ROOT
from bench_common import TIME

import zodbgen  # noqa: E402  (bench_common puts tests/ on the path)


PY = sys.executable
BIN = os.path.dirname(PY)
T0 = 1_700_000_000


def timed(cmd, env=None, cwd=None, sync_after=False):
    """(wall s, peak RSS MiB) of one run; the page cache is flushed first."""
    os.sync()
    t = time.perf_counter()
    p = subprocess.run([TIME, "-f", "RSS_KB=%M", *cmd], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if sync_after:
        os.sync()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    rss = int(p.stderr.rsplit("RSS_KB=", 1)[1].split()[0]) / 1024
    return wall, rss


def same(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def prepare(size, data, gzip):
    pristine = os.path.join(data, f"db-{size}")
    if not os.path.exists(os.path.join(pristine, "Data.fs")):
        print(f"generating {size} storage in {pristine} ...", flush=True)
        zodbgen.generate(pristine, transactions=10000, size=size, undos=10, blobs=False, seed=1)
    work = os.path.join(data, f"restore-{size}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "repo"))
    os.makedirs(os.path.join(work, "live"))
    live = os.path.join(work, "live", "Data.fs")
    shutil.copyfile(os.path.join(pristine, "Data.fs"), live)
    shutil.copyfile(os.path.join(pristine, "Data.fs.index"), live + ".index")
    z = ["-z"] if gzip else []
    stamps = []
    for i in range(3):
        if i:
            zodbgen.generate(os.path.dirname(live), transactions=100, size="5M", undos=0,
                             blobs=False, seed=10 + i)
        now = T0 + 10 * i
        subprocess.run([PY, os.path.join(ROOT, "tests", "repozo_at.py"), str(now), "-B", *z,
                        "-r", os.path.join(work, "repo"), "-f", live], check=True)
        stamps.append(time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now)))
    zodbgen.generate(os.path.dirname(live), transactions=100, size="5M", undos=0, blobs=False,
                     seed=20)
    return work, live, stamps[1]


def bench(size, data, gzip, repeat):
    work, live, date = prepare(size, data, gzip)
    repo = os.path.join(work, "repo")
    reference = os.path.join(work, "repozo.fs")
    site = os.path.join(work, "site")
    datafs = os.path.join(site, "Data.fs")
    env = dict(os.environ, CRB_REPOZO_NOW=str(T0 + 1000))
    results = {}

    def repozo():
        for p in (reference, reference + ".index"):
            if os.path.exists(p):
                os.remove(p)
        return timed([os.path.join(BIN, "repozo"), "-R", "-r", repo, "-D", date, "-o", reference],
                     sync_after=True)

    def ours(*flags):
        def run():
            shutil.rmtree(site, ignore_errors=True)
            os.makedirs(site)
            shutil.copyfile(live, datafs)
            shutil.copyfile(live + ".index", datafs + ".index")
            return timed([os.path.join(BIN, "zodb-backup"), "--datafs", datafs, "--backup-blobs",
                          "false", "--location", repo, "restore", "-n", *flags, date], env=env)
        return run

    steps = [("repozo -R + sync", repozo), ("ours (md5 of every file)", ours()),
             ("ours --quick-check", ours("--quick-check")), ("ours --write-all", ours("--write-all"))]
    print(f"== {size}: live Data.fs {os.path.getsize(live):,} bytes, "
          f"{'gzip' if gzip else 'plain'} repository, restore to {date} ==", flush=True)
    with open(live, "rb") as f:  # warm the page cache once
        while f.read(1 << 24):
            pass
    for i in range(repeat):
        order = steps if i % 2 == 0 else steps[::-1]
        for label, step in order:
            results.setdefault(label, []).append(step())
            if label.startswith("ours"):
                assert same(datafs, reference), label
                tails = [n for n in os.listdir(site) if ".after-" in n]
                if "--write-all" in label:
                    assert not tails, label
                else:
                    (tail,) = tails
                    kept = os.path.getsize(reference)
                    with open(live, "rb") as a, open(os.path.join(site, tail), "rb") as b:
                        a.seek(kept)
                        assert a.read() == b.read(), label
    base = sorted(results["repozo -R + sync"])[repeat // 2][0]
    for label, _ in steps:
        wall, rss = sorted(results[label])[repeat // 2]
        print(f"  {label:28} {wall:7.2f}s  ratio {base / wall:6.1f}x  RSS {rss:4.0f} MiB", flush=True)
    print("  every restored Data.fs identical to repozo's; kept tails exact", flush=True)
    shutil.rmtree(work)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1G")
    p.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    p.add_argument("--gzip", action="store_true", help="a gzipped repository (-z)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    bench(a.size, a.data, a.gzip, a.repeat)


if __name__ == "__main__":
    main()
