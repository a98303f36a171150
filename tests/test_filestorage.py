"""The FileStorage scan and the fsIndex writer, checked against real ZODB.

Every expected value here comes from ZODB itself (``FileStorage(path,
read_only=True)``, ``fsIndex``), never from our own output.
"""

import gc
import os
import shutil
import struct
import warnings

import pytest
import zodbgen

from collective.recipe.backup import BackupError
from collective.recipe.backup import FileStorageError
from collective.recipe.backup.filestorage import scan
from collective.recipe.backup.filestorage import write_index


def zodb_open(path):
    """What a read-only ZODB open says: (end, last_tid, objects, used_index),
    or the exception class it raises."""
    from ZODB.FileStorage import FileStorage

    refused = None
    try:
        fs = FileStorage(str(path), read_only=True)
    except Exception as e:  # noqa: BLE001 - any refusal is the reference
        refused = type(e)
    if refused is not None:
        # ZODB leaves its file open when the constructor fails; collect it
        # here, quietly, instead of in some later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return refused
    try:
        return fs.getSize(), fs.lastTransaction(), len(fs._index), bool(fs._used_index)
    finally:
        fs.close()


def assert_agrees_with_zodb(path, use_index):
    ref = zodb_open(path)
    ours = scan(str(path), use_index=use_index)
    assert isinstance(ref, tuple), f"ZODB refused {path}: {ref}"
    end, last_tid, objects, _ = ref
    assert ours.end == end
    assert ours.size == os.path.getsize(path)
    assert ours.last_tid == last_tid
    assert ours.objects == objects
    return ours


@pytest.fixture(scope="module")
def big_storage(tmp_path_factory):
    """Several thousand transactions, undo (backpointers), blobs, objects from
    a few bytes to ~1 MB, then more transactions after a pack that keeps the
    old file."""
    d = tmp_path_factory.mktemp("big")
    zodbgen.generate(str(d), transactions=2500, undos=20, pack=True, seed=7)
    info = zodbgen.generate(str(d), transactions=500, undos=5, seed=8)
    assert os.path.exists(d / "Data.fs.old"), "pack_keep_old should keep Data.fs.old"
    return info


def count_records(path):
    """Count transactions and backpointer records by walking the file with
    ZODB's own iterator (not our scanner)."""
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(str(path), read_only=True)
    txns = backpointers = 0
    try:
        for txn in fs.iterator():
            txns += 1
            for rec in txn:
                if rec.data is None or rec.data_txn is not None:
                    backpointers += 1
    finally:
        fs.close()
    return txns, backpointers


def test_big_storage_without_index(big_storage):
    ours = assert_agrees_with_zodb(big_storage["path"], use_index=False)
    txns, backpointers = count_records(big_storage["path"])
    assert backpointers > 0, "the generator must produce undo backpointers"
    assert ours.transactions == txns
    assert ours.used_index is False


def test_big_storage_with_index(big_storage):
    ours = assert_agrees_with_zodb(big_storage["path"], use_index=True)
    assert ours.used_index is True
    assert ours.transactions == 0  # everything was covered by the index


def test_packed_old_file_agrees(big_storage):
    old = big_storage["path"] + ".old"
    copy = os.path.join(os.path.dirname(old), "old-copy.fs")
    shutil.copyfile(old, copy)
    assert_agrees_with_zodb(copy, use_index=False)


def test_packed_storage_has_p_transactions(tmp_path):
    info = zodbgen.generate(str(tmp_path), transactions=300, undos=3, pack=True, seed=3)
    with open(info["path"], "rb") as f:
        data = f.read()
    # Status byte of the first transaction after the magic.
    assert data[4 + 16 : 4 + 17] == b"p"
    assert_agrees_with_zodb(info["path"], use_index=False)


def test_stale_index_is_used_and_extended(tmp_path):
    zodbgen.generate(str(tmp_path), transactions=200, seed=4)
    path = str(tmp_path / "Data.fs")
    stale = path + ".stale"
    shutil.copyfile(path + ".index", stale)
    zodbgen.generate(str(tmp_path), transactions=50, seed=5)
    shutil.copyfile(stale, path + ".index")
    ref = zodb_open(path)
    assert ref[3] is True, "ZODB itself uses the stale index"
    ours = assert_agrees_with_zodb(path, use_index=True)
    assert ours.used_index is True
    assert 0 < ours.transactions < 100


def test_wrong_index_is_ignored(tmp_path):
    zodbgen.generate(str(tmp_path), transactions=100, seed=6)
    path = str(tmp_path / "Data.fs")
    other = tmp_path / "other"
    zodbgen.generate(str(other), transactions=120, seed=9)
    shutil.copyfile(other / "Data.fs.index", path + ".index")
    ref = zodb_open(path)
    ours = assert_agrees_with_zodb(path, use_index=True)
    assert ours.used_index is ref[3] is False


def test_garbage_index_is_ignored(tmp_path):
    zodbgen.generate(str(tmp_path), transactions=50, seed=6)
    path = str(tmp_path / "Data.fs")
    with open(path + ".index", "wb") as f:
        f.write(b"this is not a pickle")
    ours = assert_agrees_with_zodb(path, use_index=True)
    assert ours.used_index is False


# --- tails and damage --------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    """A small real storage without its .index, and ZODB's end for it."""
    info = zodbgen.generate(str(tmp_path), transactions=40, undos=2, seed=11, blobs=False)
    os.remove(info["path"] + ".index")
    return info


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def last_txn(path):
    tpos, end = zodbgen.last_transaction_span(path)
    with open(path, "rb") as f:
        f.seek(tpos)
        return tpos, bytearray(f.read(end - tpos))


def relocated_copy(path, status=b" "):
    """The last transaction, copied so that it can stand right after itself:
    tloc of every data record points at the new position."""
    tpos, txn = last_txn(path)
    new_tpos = os.path.getsize(path)
    ulen, dlen, elen = struct.unpack(">HHH", txn[17:23])
    (tlen,) = struct.unpack(">Q", txn[8:16])
    p = 23 + ulen + dlen + elen
    while p < tlen:
        (plen,) = struct.unpack(">Q", txn[p + 34 : p + 42])
        txn[p + 24 : p + 32] = struct.pack(">Q", new_tpos)
        txn[p + 16 : p + 24] = b"\0" * 8
        p += 42 + (plen or 8)
    txn[16:17] = status
    return txn


TAILS = {
    "checkpoint": lambda p: bytes(relocated_copy(p, b"c")),
    "torn-2": lambda p: bytes(last_txn(p)[1][:2]),
    "torn-40": lambda p: bytes(last_txn(p)[1][:40]),
    "zeros": lambda p: b"\0" * 100,
    "fives": lambda p: b"\x05" * 100,
}


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("use_index", [False, True])
def test_tail_stops_where_zodb_stops(small, tail, use_index):
    path = small["path"]
    if use_index:
        write_index(path, path + ".index")
    end_before = small["end"]
    append(path, TAILS[tail](path))
    ref = zodb_open(path)
    assert isinstance(ref, tuple)
    assert ref[0] == end_before
    ours = scan(path, use_index=use_index)
    assert ours.end == end_before
    assert ours.size > end_before


def test_complete_copied_transaction_is_accepted(small):
    path = small["path"]
    append(path, bytes(relocated_copy(path)))
    ref = zodb_open(path)
    assert ref[0] == os.path.getsize(path) > small["end"]
    assert scan(path, use_index=False).end == ref[0]


def refused_by_both(path, match):
    ref = zodb_open(path)
    assert isinstance(ref, type) and issubclass(ref, Exception), f"ZODB opened it: {ref}"
    with pytest.raises(FileStorageError, match=match) as exc:
        scan(str(path), use_index=False)
    assert str(path) in str(exc.value)
    return ref


def test_ff_tail_refused(small):
    append(small["path"], b"\xff" * 100)
    assert refused_by_both(small["path"], "not ASCII") is UnicodeDecodeError


def test_wrong_redundant_length_at_end_refused(small):
    txn = relocated_copy(small["path"])
    txn[-8:] = struct.pack(">Q", 12345)
    append(small["path"], bytes(txn))
    refused_by_both(small["path"], r"redundant transaction length check failed")


def interior_txn(path, n=10):
    """Offset of the n-th transaction, found with ZODB's iterator."""
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(path, read_only=True)
    try:
        for i, txn in enumerate(fs.iterator()):
            if i == n:
                return txn._tpos
    finally:
        fs.close()
    raise AssertionError("storage too small")


def interior_record(path, n=10):
    """(tpos, offset of its first data record, that record's plen) of the
    n-th transaction, as ZODB's iterator reports them."""
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(path, read_only=True)
    try:
        for i, txn in enumerate(fs.iterator()):
            if i == n:
                rec = next(iter(txn))
                with open(path, "rb") as f:
                    f.seek(rec.pos + 34)
                    (plen,) = struct.unpack(">Q", f.read(8))
                return txn._tpos, rec.pos, plen
    finally:
        fs.close()
    raise AssertionError("storage too small")


def patch(path, pos, data):
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(data)


def test_interior_bad_redundant_length_refused(small):
    path = small["path"]
    tpos = interior_txn(path)
    with open(path, "rb") as f:
        f.seek(tpos + 8)
        (tlen,) = struct.unpack(">Q", f.read(8))
    patch(path, tpos + tlen, struct.pack(">Q", tlen + 1))
    refused_by_both(path, rf"offset {tpos}: redundant transaction length")


def test_interior_bad_tloc_refused(small):
    path = small["path"]
    tpos, first_record, _ = interior_record(path)
    patch(path, first_record + 24, struct.pack(">Q", tpos + 1))
    refused_by_both(path, rf"offset {tpos}: data record at {first_record} has tloc")


def test_interior_records_not_tiling_refused(small):
    path = small["path"]
    _, first_record, plen = interior_record(path)
    patch(path, first_record + 34, struct.pack(">Q", plen + 10_000_000))
    refused_by_both(path, "exceeds the transaction record")


def test_interior_version_refused(small):
    path = small["path"]
    _, first_record, _ = interior_record(path)
    patch(path, first_record + 32, b"\0\x01")
    assert refused_by_both(path, "has a version") is ValueError


def test_interior_bad_header_length_refused(small):
    path = small["path"]
    tpos = interior_txn(path)
    patch(path, tpos + 17, b"\xff\xff")  # ulen larger than tlen
    refused_by_both(path, "invalid transaction header")


def test_garbage_header_length_at_end_stops(small):
    # A header whose lengths do not fit, at the end, with a file tail that is
    # not a plausible redundant length: ZODB treats it as a crash turd.
    path = small["path"]
    txn = relocated_copy(path)
    txn[17:19] = b"\xff\xff"
    txn[-8:] = b"\xff" * 8
    append(path, bytes(txn))
    assert zodb_open(path)[0] == small["end"]
    assert scan(path, use_index=False).end == small["end"]


def test_fs21_magic_refused(small):
    patch(small["path"], 0, b"FS21")
    refused_by_both(small["path"], "Python 2 FileStorage")


def test_other_magic_refused(small):
    patch(small["path"], 0, b"XYZW")
    refused_by_both(small["path"], "not a FileStorage")


def test_empty_file_refused(tmp_path):
    path = tmp_path / "Data.fs"
    path.write_bytes(b"")
    # ZODB's read-only open reports 4 for an empty file, which is what makes
    # repozo crash on it later; we refuse it up front.
    assert zodb_open(path)[0] == 4
    with pytest.raises(FileStorageError, match="empty"):
        scan(str(path))


def test_magic_only(tmp_path):
    path = tmp_path / "Data.fs"
    path.write_bytes(b"FS30")
    assert zodb_open(path)[:3] == (4, b"\0" * 8, 0)
    ours = scan(str(path))
    assert (ours.end, ours.objects, ours.transactions, ours.last_tid) == (4, 0, 0, None)


def test_missing_file_is_a_backup_error(tmp_path):
    with pytest.raises(BackupError, match="No such file"):
        scan(str(tmp_path / "nope.fs"))


# --- the .index writer ---------------------------------------------------------


def test_write_index_identical_to_zodb(big_storage):
    path = big_storage["path"]
    out = path + ".ours"
    pos = write_index(path, out)
    assert pos == big_storage["end"]
    with open(out, "rb") as a, open(path + ".index", "rb") as b:
        assert a.read() == b.read()


def test_zodb_uses_our_index(tmp_path):
    info = zodbgen.generate(str(tmp_path), transactions=300, undos=4, seed=12)
    path = info["path"]
    os.remove(path + ".index")
    write_index(path, path + ".index")
    end, last_tid, objects, used_index = zodb_open(path)
    assert used_index is True
    assert (end, last_tid, objects) == (info["end"], info["last_tid"], info["objects"])


def test_write_index_with_checkpoint_tail_matches_zodb(tmp_path):
    info = zodbgen.generate(str(tmp_path), transactions=60, seed=13, blobs=False)
    path = info["path"]
    reference = (tmp_path / "Data.fs.index").read_bytes()
    zodbgen.add_tail(path, "checkpoint")
    assert write_index(path, str(tmp_path / "ours.index")) == info["end"]
    assert (tmp_path / "ours.index").read_bytes() == reference


def test_index_across_prefix_boundaries_matches_zodb(tmp_path):
    """Oids around 2**16 (a new 6-byte prefix, i.e. a new bucket) and at and
    above 2**48 are all valid in ZODB's fsIndex."""
    import transaction
    import ZODB
    from persistent.mapping import PersistentMapping
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import p64

    path = str(tmp_path / "Data.fs")
    fs = FileStorage(path)
    db = ZODB.DB(fs)
    conn = db.open()
    root = conn.root()
    for start in (0xFFFD, (1 << 48) - 2, (1 << 63) - 2):
        fs._oid = p64(start)
        for i in range(4):
            root[f"{start}-{i}"] = PersistentMapping(n=i)
        transaction.commit()
    conn.close()
    db.close()
    from ZODB.fsIndex import fsIndex

    info = fsIndex.load(path + ".index")
    oids = [int.from_bytes(o, "big") for o in info["index"].keys()]
    assert any(o >= 1 << 48 for o in oids) and any(o == 0x10000 for o in oids)
    assert write_index(path, str(tmp_path / "ours.index")) == info["pos"]
    with open(path + ".index", "rb") as f:
        assert (tmp_path / "ours.index").read_bytes() == f.read()
    assert scan(path, use_index=False).objects == len(oids)


def test_write_index_is_atomic_on_error(tmp_path, small):
    target = tmp_path / "dir-not-there" / "x.index"
    with pytest.raises(BackupError):
        write_index(small["path"], str(target))
    assert not target.exists()


def test_last_commit_matches_zodb_timestamp(big_storage):
    import datetime

    from persistent.timestamp import TimeStamp

    ours = scan(big_storage["path"])
    ref = datetime.datetime.fromtimestamp(
        TimeStamp(big_storage["last_tid"]).timeTime(), tz=datetime.timezone.utc
    )
    got = datetime.datetime.fromisoformat(ours.last_commit.replace("Z", "+00:00"))
    assert abs((got - ref).total_seconds()) < 1e-5


def run_cli(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "collective.recipe.backup.filestorage", *args],
        capture_output=True,
        text=True,
    )


def test_cli_reports_checkpoint_tail(small):
    zodbgen.add_tail(small["path"], "checkpoint")
    out = small["path"] + ".cli.index"
    proc = run_cli("--no-index", "--write-index", out, small["path"])
    assert proc.returncode == 0, proc.stderr
    assert f"end of last committed transaction: {small['end']}\n" in proc.stdout
    tail = os.path.getsize(small["path"]) - small["end"]
    assert f"not committed (checkpoint or torn tail): {tail} bytes" in proc.stdout
    assert os.path.exists(out)


def test_cli_error_is_one_line(tmp_path):
    bad = tmp_path / "Data.fs"
    bad.write_bytes(b"FS21" + b"\0" * 100)
    proc = run_cli(str(bad))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("ERROR: ") and "FS21" in proc.stderr
