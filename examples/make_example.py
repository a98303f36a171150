"""Regenerate the bundled example database with real ZODB.

    python examples/make_example.py                # needs `pip install ZODB`
    python examples/make_example.py --change-only  # keep Data.fs, redo change/

Writes examples/Data.fs (with undo records, so backpointers), its
Data.fs.index as ZODB saved it, and examples/blobstorage (bushy layout).

Then it makes the demo's change: on a copy of that database, ZODB commits
one more transaction (a new document with a file attached), and what that
commit added is kept in examples/change/:

- ``Data.fs.append``: the bytes ZODB appended to Data.fs (one committed
  transaction record; everything before it is unchanged, which is checked);
- ``blobstorage/...``: the blob file that transaction stored.

The demo (scripts/demo) appends the one and copies the other into its
buildout's var/, so it can change the database without needing ZODB.
"""

import argparse
import os
import shutil
import sys
import tempfile


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import zodbgen  # noqa: E402


CHANGE = os.path.join(HERE, "change")


def make_base():
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


def blob_files(root):
    """Relative paths of the committed blob files under ``root``."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and "tmp" in dirnames:
            dirnames.remove("tmp")
        for name in filenames:
            if name.endswith(".blob"):
                out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def make_change():
    import transaction
    import ZODB
    from persistent.mapping import PersistentMapping
    from ZODB.blob import Blob
    from ZODB.FileStorage import FileStorage

    with tempfile.TemporaryDirectory() as tmp:
        datafs = os.path.join(tmp, "Data.fs")
        blobdir = os.path.join(tmp, "blobstorage")
        shutil.copy2(os.path.join(HERE, "Data.fs"), datafs)
        shutil.copy2(os.path.join(HERE, "Data.fs.index"), datafs + ".index")
        shutil.copytree(os.path.join(HERE, "blobstorage"), blobdir)
        with open(datafs, "rb") as f:
            before = f.read()
        blobs_before = blob_files(blobdir)

        db = ZODB.DB(FileStorage(datafs, blob_dir=blobdir))
        try:
            conn = db.open()
            root = conn.root()
            doc = PersistentMapping()
            doc["title"] = "Added after the first backup"
            doc["body"] = b"This document exists only in the second backup.\n" * 20
            doc["file"] = Blob()
            with doc["file"].open("w") as f:
                f.write(b"%PDF-1.4 an attachment added after the first backup\n" * 100)
            root["docs"]["doc-after-first-backup"] = doc
            root["counter"] = root["counter"] + 1
            txn = transaction.get()
            txn.setUser("editor", "/")
            txn.note("add a document with a file")
            txn.commit()
            conn.close()
        finally:
            db.close()

        with open(datafs, "rb") as f:
            after = f.read()
        if not after.startswith(before) or len(after) == len(before):
            raise SystemExit("ZODB did not just append to Data.fs; not writing the change")
        new_blobs = sorted(blob_files(blobdir) - blobs_before)
        if len(new_blobs) != 1:
            raise SystemExit(f"expected one new blob file, got {new_blobs}")

        if os.path.isdir(CHANGE):
            shutil.rmtree(CHANGE)
        os.makedirs(CHANGE)
        with open(os.path.join(CHANGE, "Data.fs.append"), "wb") as f:
            f.write(after[len(before):])
        for rel in new_blobs:
            target = os.path.join(CHANGE, "blobstorage", rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(blobdir, rel), target)
        print(
            f"examples/change: {len(after) - len(before)} bytes appended to Data.fs, "
            f"blob {new_blobs[0]}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--change-only",
        action="store_true",
        help="keep Data.fs and blobstorage, only remake examples/change/",
    )
    args = parser.parse_args(argv)
    if not args.change_only:
        make_base()
    make_change()


if __name__ == "__main__":
    main()
