"""Remake the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from
real files: a small FileStorage made by real ZODB (tests/zodbgen.py), backups
of it by our repozo and by ZODB's repozo, archives and snapshot files made by
GNU tar. Run with the test venv (ZODB and our wheel installed)::

    .venv/bin/python fuzz/make_corpus.py

The seeds stay small (a few KB each) so that libFuzzer's default input size
limit, the largest seed, keeps runs fast.
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import zodbgen  # noqa: E402
from repozo_util import at, ok, ours, theirs  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def u16(n):
    return n.to_bytes(2, "little")


def pickle_class_seeds(tmp):
    """pickle_class: the pickles of the data records of a real ZODB database
    with blobs, undo and several classes, each named
    ``<module>.<class>-<n>`` after what ZODB's own ``get_pickle_metadata``
    reads from it (the cargo test ``pickle_class_zodb`` checks our reader
    against these names); plus Python's protocol 4 and 2 pickles of a class
    and a ``(class, None)`` tuple (``STACK_GLOBAL``, short unicode, memo)."""
    import pickle

    import transaction
    import ZODB
    from BTrees.OOBTree import OOBTree
    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping
    from ZODB.blob import Blob
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import get_pickle_metadata

    d = os.path.join(tmp, "classes")
    os.makedirs(os.path.join(d, "blobs"))
    path = os.path.join(d, "Data.fs")
    db = ZODB.DB(FileStorage(path, blob_dir=os.path.join(d, "blobs")))
    conn = db.open()
    root = conn.root()
    root["tree"] = OOBTree()
    root["list"] = PersistentList([1, 2])
    root["map"] = PersistentMapping()
    root["blob"] = Blob(b"blob data")
    transaction.commit()
    with root["blob"].open("w") as f:
        f.write(b"second")
    transaction.commit()
    conn.close()
    db.undo(db.undoInfo(0, 1)[0]["id"])
    transaction.commit()
    db.close()
    seen = {}
    fs = FileStorage(path, read_only=True)
    try:
        for txn in fs.iterator():
            for rec in txn:
                if not rec.data:
                    continue
                module, name = get_pickle_metadata(rec.data)
                n = seen[f"{module}.{name}"] = seen.get(f"{module}.{name}", 0) + 1
                if n <= 2:
                    put("pickle_class", f"{module}.{name}-{n}", rec.data[:512])
    finally:
        fs.close()
    for proto in (2, 4):
        put("pickle_class", f"ZODB.blob.Blob-protocol{proto}", pickle.dumps(Blob, proto))
        put("pickle_class", f"ZODB.blob.Blob-tuple-protocol{proto}", pickle.dumps((Blob, None), proto))


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    tmp = tempfile.mkdtemp()
    try:
        db = os.path.join(tmp, "db")
        info = zodbgen.generate(db, transactions=4, undos=1, blobs=True, seed=7)
        fs = info["path"]
        data = read(fs)
        index = read(fs + ".index")
        assert len(data) < 16_000, len(data)

        # scan: mode byte 0 = no index, 1 = the given index, 2 = own index.
        put("scan", "datafs", b"\x00" + data)
        put("scan", "datafs-own-index", b"\x02" + data)
        put("scan", "datafs-with-index", b"\x01" + u16(len(index)) + index + data)
        put("scan", "magic-only", b"\x00FS30")
        zodbgen.add_tail(fs, "checkpoint")
        put("scan", "checkpoint-tail", b"\x02" + read(fs))

        # Backups of a second, growing storage: ours (gzip and plain) and
        # ZODB's repozo (gzip).
        db2 = os.path.join(tmp, "db2")
        fs2 = zodbgen.generate(db2, transactions=3, undos=0, blobs=False, seed=8)["path"]
        tools = [("ours-gz", ours, ["-z"]), ("ours", ours, []), ("repozo-gz", theirs, ["-z"])]
        for name, _, _ in tools:
            os.mkdir(os.path.join(tmp, name))
        for i in range(2):
            if i:
                zodbgen.generate(db2, transactions=2, undos=0, blobs=False, seed=9)
            for name, tool, z in tools:
                ok(tool("-B", *z, "-r", os.path.join(tmp, name), "-f", fs2, now=at(i)))
        for name, _, _ in tools:
            repo = os.path.join(tmp, name)
            for f in sorted(os.listdir(repo)):
                if f.endswith("z"):
                    put("gzip", f"{name}-{f}", read(os.path.join(repo, f)))
                elif f.endswith(".dat"):
                    put("dat", f"{name}.dat", read(os.path.join(repo, f)))
        put("gzip", "empty", b"")

        # Archives and snapshot files by GNU tar, of the storage's blobs.
        blobs = os.path.join(db, "blobstorage")
        snar = os.path.join(tmp, "g.snar")
        subprocess.run(
            ["tar", "-cf", os.path.join(tmp, "l0.tar"), f"--listed-incremental={snar}", "-C", blobs, "."],
            check=True,
        )
        put("snar", "level0.snar", read(snar))
        zodbgen.generate(db, transactions=2, undos=0, blobs=True, seed=10)
        subprocess.run(
            ["tar", "-cf", os.path.join(tmp, "l1.tar"), f"--listed-incremental={snar}", "-C", blobs, "."],
            check=True,
        )
        put("snar", "level1.snar", read(snar))
        subprocess.run(["tar", "-czf", os.path.join(tmp, "p.tar.gz"), "-C", blobs, "."], check=True)
        put("archive", "incremental-level0", b"\x01" + read(os.path.join(tmp, "l0.tar")))
        put("archive", "incremental-level1", b"\x01" + read(os.path.join(tmp, "l1.tar")))
        put("archive", "plain-gz", b"\x00" + read(os.path.join(tmp, "p.tar.gz")))

        # Hostile names the extraction must keep inside its target: a symlink
        # out of it with members below it, a hard link through it.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            link = tarfile.TarInfo("./l")
            link.type = tarfile.SYMTYPE
            link.linkname = "../outside"
            t.addfile(link)
            for name in ["./l/f", "./l/d/x"]:
                f = tarfile.TarInfo(name)
                f.size = 1
                t.addfile(f, io.BytesIO(b"y"))
            d = tarfile.TarInfo("./l/d")
            d.type = tarfile.DIRTYPE
            d.mode = 0o777
            t.addfile(d)
            h = tarfile.TarInfo("./h")
            h.type = tarfile.LNKTYPE
            h.linkname = "./l/f"
            t.addfile(h)
        put("archive", "escape-attempts", b"\x00" + buf.getvalue())
        pickle_class_seeds(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
