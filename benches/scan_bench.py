"""Benchmark: find the end of a ~200 MB Data.fs without an index.

Ours (``collective.recipe.backup.filestorage.scan(path, use_index=False)``)
against ZODB's ``FileStorage(path, read_only=True)`` + ``getSize()``, each in
its own process, in the same run, warm page cache; prints both times, the
ratio and the peak RSS of each process (and of a bare interpreter, for
reference).

    .venv/bin/python benches/scan_bench.py [--size 200M] [--transactions 4000]

The storage is generated once with real ZODB into bench-data/ (not in git).
"""

import argparse
import os
import shutil

from bench_common import ROOT
from bench_common import python
from bench_common import run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="200M")
    p.add_argument("--transactions", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    import zodbgen

    d = os.path.join(ROOT, "bench-data", f"scan-{a.size}-{a.transactions}")
    path = os.path.join(d, "Data.fs")
    if not os.path.exists(path):
        shutil.rmtree(d, ignore_errors=True)
        print(f"generating {a.size} storage with {a.transactions} transactions ...", flush=True)
        zodbgen.generate(d, transactions=a.transactions, size=a.size, undos=10, blobs=False)
    if os.path.exists(path + ".index"):
        os.remove(path + ".index")
    size = os.path.getsize(path)

    ours_code = (
        "from collective.recipe.backup.filestorage import scan;"
        f"r = scan({path!r}, use_index=False); print(r.end, r.objects)"
    )
    zodb_code = (
        "from ZODB.FileStorage import FileStorage;"
        f"fs = FileStorage({path!r}, read_only=True); print(fs.getSize(), len(fs._index)); fs.close()"
    )
    bare_t, bare_rss = run(python("import collective.recipe.backup"), repeat=a.repeat)
    zodb_import_t, zodb_import_rss = run(python("import ZODB.FileStorage"), repeat=a.repeat)
    run(python(ours_code), repeat=1)  # warm the page cache
    ours_t, ours_rss = run(python(ours_code), repeat=a.repeat)
    zodb_t, zodb_rss = run(python(zodb_code), repeat=a.repeat)
    assert not os.path.exists(path + ".index"), "a read-only open must not write an index"

    print(f"Data.fs: {size / 1e6:.1f} MB, no index, best of {a.repeat}, warm cache")
    print(f"{'':28}{'wall s':>9}{'peak RSS MiB':>14}")
    print(f"{'interpreter + our import':28}{bare_t:9.3f}{bare_rss:14.1f}")
    print(f"{'interpreter + ZODB import':28}{zodb_import_t:9.3f}{zodb_import_rss:14.1f}")
    print(f"{'ours: scan()':28}{ours_t:9.3f}{ours_rss:14.1f}")
    print(f"{'ZODB: open + getSize()':28}{zodb_t:9.3f}{zodb_rss:14.1f}")
    print(f"ratio (ZODB / ours), whole process: {zodb_t / ours_t:.1f}x")
    scan_ours = max(ours_t - bare_t, 1e-6)
    scan_zodb = zodb_t - zodb_import_t
    print(f"ratio (ZODB / ours), scan only (import time subtracted): {scan_zodb / scan_ours:.1f}x")


if __name__ == "__main__":
    main()
