"""Generate test FileStorages with real ZODB.

Used by the pytest suite (import it), by the benchmarks and by
``examples/make_example.py``; also a command line::

    python tests/zodbgen.py --dir DIR [--transactions N] [--size 5M] [--undos K]
        [--pack] [--blobs] [--tail checkpoint|torn] [--seed S] [--no-index]

Everything is made through public ZODB APIs: real transactions with
user/description metadata, transactional undo (backpointer records), pack
(``'p'`` transactions), blobs (bushy layout, read-only files), objects from a
few bytes to hundreds of kilobytes. Nothing is hand-made bytes except the
``--tail`` damage, which copies a real transaction and edits one status byte
or truncates it, the states a crashed writer leaves.
"""

import argparse
import os
import random
import struct
import sys
import time

_CORPUS = None


def _text_corpus():
    """8 MB of word-like text with a Zipf word distribution, made once.

    Object bodies are 30 % random bytes and 70 % slices of this text, which
    gzips to about 0.58 of its size at zlib level 9, close to real Plone
    data; all-random or all-constant payloads would make compression
    benchmarks meaningless."""
    global _CORPUS
    if _CORPUS is None:
        import itertools

        rnd = random.Random(0)
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        words = ["".join(rnd.choices(letters, k=rnd.randint(2, 9))) for _ in range(3000)]
        cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
        text = " ".join(rnd.choices(words, cum_weights=cum, k=(8 << 20) // 5))
        _CORPUS = text.encode()[: 8 << 20]
    return _CORPUS


def payload(rnd, n):
    """``n`` bytes of object data: 30 % random, 70 % text."""
    corpus = _text_corpus()
    r = n * 3 // 10
    t = n - r
    at = rnd.randrange(len(corpus) - t) if t < len(corpus) else 0
    return rnd.randbytes(r) + corpus[at : at + t]


def _parse_size(text):
    text = str(text).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def generate(
    directory,
    transactions=200,
    size=None,
    undos=3,
    pack=False,
    blobs=True,
    seed=1,
    keep_index=True,
    pack_keep_old=True,
    first_creation=True,
    blob_dir=None,
):
    """Create or extend ``directory/Data.fs`` (+ ``blobstorage``) and return
    a dict describing it (path, end, last tid, objects) as ZODB reads it."""
    import transaction
    import ZODB
    from BTrees.OOBTree import OOBTree
    from persistent.mapping import PersistentMapping
    from ZODB.blob import Blob
    from ZODB.FileStorage import FileStorage

    fs_module = sys.modules["ZODB.FileStorage.FileStorage"]
    # Test data need not survive a power cut: skip the fsync per commit, which
    # dominates generation time (the file contents are the same).
    fs_module.fsync = None
    rnd = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "Data.fs")
    if blobs:
        blob_dir = blob_dir or os.path.join(directory, "blobstorage")
    else:
        blob_dir = None
    storage = FileStorage(path, blob_dir=blob_dir, pack_keep_old=pack_keep_old)
    db = ZODB.DB(storage)
    per_txn = None
    if size:
        per_txn = max(64, _parse_size(size) // max(1, transactions))
    try:
        conn = db.open()
        root = conn.root()
        if "docs" not in root:
            root["docs"] = OOBTree()
            root["counter"] = 0
            transaction.get().note("create the docs tree")
            transaction.commit()
        docs = root["docs"]
        keys = list(docs.keys())  # kept in step with docs: O(1) random picks
        start = len(keys)
        for i in range(transactions):
            txn = transaction.get()
            txn.setUser(f"user{rnd.randrange(5)}", "/")
            txn.note(f"edit {i}")
            txn.setExtendedInfo("request", f"/doc/{i}")
            n = rnd.randint(1, 4)
            for _ in range(n):
                if keys and rnd.random() < 0.4:
                    key = rnd.choice(keys)
                    doc = docs[key]
                else:
                    key = f"doc-{start + i:06d}-{rnd.randrange(1 << 30)}"
                    doc = docs[key] = PersistentMapping()
                    keys.append(key)
                want = per_txn // n if per_txn else int(rnd.lognormvariate(6, 1.5))
                want = min(max(want, 1), 2_000_000)
                doc["body"] = payload(rnd, want)
                doc["title"] = f"title {i}"
                if blobs and rnd.random() < 0.1:
                    b = Blob()
                    with b.open("w") as f:
                        f.write(payload(rnd, rnd.randint(10, 20_000)))
                    doc["file"] = b
            if keys and rnd.random() < 0.05:
                gone = keys.pop(rnd.randrange(len(keys)))
                if gone in docs:
                    del docs[gone]
            root["counter"] = root["counter"] + 1
            transaction.commit()
        conn.close()
        for k in range(undos):
            conn = db.open()
            docs = conn.root()["docs"]
            key = sorted(docs.keys())[k % len(docs)]
            docs[key]["title"] = f"to be undone {k}"
            transaction.get().note(f"undoable {k}")
            transaction.commit()
            conn.close()
            last = db.undoInfo(0, 1)[0]
            db.undo(last["id"])
            transaction.get().note(f"undo {k}")
            transaction.commit()
        if pack:
            db.pack(time.time() + 1)
    finally:
        db.close()
    if not keep_index and os.path.exists(path + ".index"):
        os.remove(path + ".index")
    return describe(path)


def describe(path):
    """What real ZODB says about the storage at ``path`` (read-only)."""
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(path, read_only=True)
    try:
        return {
            "path": path,
            "end": fs.getSize(),
            "size": os.path.getsize(path),
            "last_tid": fs.lastTransaction(),
            "objects": len(fs._index),
            "used_index": bool(fs._used_index),
        }
    finally:
        fs.close()


def last_transaction_span(path):
    """(tpos, tend_plus_8) of the last complete transaction, from its
    redundant length, as ZODB's own backward walk reads it."""
    end = describe(path)["end"]
    with open(path, "rb") as f:
        f.seek(end - 8)
        (tlen,) = struct.unpack(">Q", f.read(8))
    return end - 8 - tlen, end


def add_tail(path, kind):
    """Leave a crashed writer's tail after the last committed transaction:
    ``checkpoint`` (a complete copy of the last transaction, status 'c'),
    ``torn`` (its first 40 bytes)."""
    tpos, end = last_transaction_span(path)
    with open(path, "rb") as f:
        f.seek(tpos)
        txn = bytearray(f.read(end - tpos))
    if kind == "checkpoint":
        txn[16:17] = b"c"
        tail = bytes(txn)
    elif kind == "torn":
        tail = bytes(txn[:40])
    else:
        raise ValueError(kind)
    with open(path, "ab") as f:
        f.write(tail)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--transactions", type=int, default=200)
    p.add_argument("--size", default=None, help="approximate Data.fs size, e.g. 200M")
    p.add_argument("--undos", type=int, default=3)
    p.add_argument("--pack", action="store_true")
    p.add_argument("--no-blobs", action="store_true")
    p.add_argument("--tail", choices=["checkpoint", "torn"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-index", action="store_true")
    a = p.parse_args(argv)
    info = generate(
        a.dir,
        transactions=a.transactions,
        size=a.size,
        undos=a.undos,
        pack=a.pack,
        blobs=not a.no_blobs,
        seed=a.seed,
        keep_index=not a.no_index,
    )
    if a.tail:
        add_tail(info["path"], a.tail)
    info["last_tid"] = info["last_tid"].hex()
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
