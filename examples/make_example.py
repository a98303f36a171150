"""Regenerate the bundled example database with real ZODB.

    python examples/make_example.py        # needs `pip install ZODB`

Writes examples/Data.fs (with undo records, so backpointers), its
Data.fs.index as ZODB saved it, and examples/blobstorage (bushy layout). The
demo (scripts/demo) uses these files and needs no ZODB itself.
"""

import os
import shutil
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import zodbgen  # noqa: E402


def main():
    for name in ("Data.fs", "Data.fs.index", "blobstorage"):
        target = os.path.join(HERE, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
    info = zodbgen.generate(HERE, transactions=150, undos=4, seed=2026, blobs=True)
    for leftover in ("Data.fs.lock", "Data.fs.tmp", "Data.fs.old"):
        path = os.path.join(HERE, leftover)
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(os.path.join(HERE, "blobstorage", "tmp"), ignore_errors=True)
    print(f"examples/Data.fs: {info['size']} bytes, end {info['end']}, {info['objects']} objects")


if __name__ == "__main__":
    main()
