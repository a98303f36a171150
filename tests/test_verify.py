"""``_core.verify``: a backup's filestorage chain, its blob backup, and
whether they belong together.

The site is a real ZODB with blobs: blob revisions, the undo of a blob
revision (ZODB writes a backpointer record and copies the blob file under
the undoing transaction's tid: checked here against ZODB itself), an undone
blob creation (a record without data, and no file), and a pack (a new full
backup). Backups are made by ``_core.backup`` at injected times, as
directories and as archives (plain, gzip, incremental). Every damage is
made to the files on disk, and the error must name the right thing: the
oid and tid ZODB gave the blob at its commit, the file, the archive.
"""

import gzip
import io
import logging
import os
import shutil
import time

import pytest
import transaction
import ZODB
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage
from ZODB.utils import get_pickle_metadata
from ZODB.utils import oid_repr
from ZODB.utils import tid_repr

from collective.recipe.backup import _core

T0 = 1_800_000_000  # 2027-01-15-08-00-00 UTC


def stamp(t):
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


class Site:
    """A Data.fs with a blobstorage, and the backups of one configuration."""

    def __init__(self, tmp_path, **options):
        self.dir = tmp_path
        self.datafs = str(tmp_path / "var" / "Data.fs")
        self.blobdir = str(tmp_path / "var" / "blobstorage")
        os.makedirs(self.blobdir)
        self.backups = tmp_path / "backups"
        self.blobbackups = tmp_path / "blobbackups"
        self.config = _core.BackupConfig(
            datafs=self.datafs,
            blob_storage=self.blobdir,
            location=str(self.backups),
            blobbackuplocation=str(self.blobbackups),
            snapshotlocation=str(tmp_path / "snapshots"),
            blobsnapshotlocation=str(tmp_path / "blobsnapshots"),
            ziplocation=str(tmp_path / "zips"),
            blobziplocation=str(tmp_path / "blobzips"),
            **{"keep": 0, **options},
        )
        self.now = T0
        self.stamps = []
        # (oid, tid) of every blob revision ZODB wrote a file for.
        self.revisions = []

    def db(self):
        return ZODB.DB(FileStorage(self.datafs, blob_dir=self.blobdir))

    def commit(self, change, note):
        db = self.db()
        try:
            conn = db.open()
            objs = change(conn.root())
            transaction.get().note(note)
            transaction.commit()
            # A blob is a ghost after its commit: load it for its serial.
            for o in objs:
                o._p_activate()
            out = [(o._p_oid, o._p_serial) for o in objs]
            assert all(tid == db.lastTransaction() for _, tid in out)
            conn.close()
            return out
        finally:
            db.close()

    def set_blob(self, key, data):
        def change(root):
            b = root.get(key)
            if b is None:
                b = root[key] = Blob()
            with b.open("w") as f:
                f.write(data)
            return [b]

        ((oid, tid),) = self.commit(change, f"blob {key}")
        self.revisions.append((oid, tid))
        return oid, tid

    def undo_last(self):
        db = self.db()
        try:
            last = db.undoInfo(0, 1)[0]
            db.undo(last["id"])
            transaction.get().note("undo")
            transaction.commit()
            return db.lastTransaction()
        finally:
            db.close()

    def pack(self):
        db = self.db()
        try:
            db.pack()
        finally:
            db.close()

    def backup(self):
        self.now += 60
        _core.backup(self.config, "standard", now=self.now)
        self.stamps.append(stamp(self.now))

    def verify(self, **kw):
        kw.setdefault("now", self.now + 1)
        return _core.verify(self.config, **kw)

    def blob_records(self):
        """(oid, tid) of every record of the live Data.fs that ZODB reads
        as a Blob (backpointers resolved by ZODB's own iterator)."""
        out = []
        fs = FileStorage(self.datafs, read_only=True)
        try:
            for txn in fs.iterator():
                for rec in txn:
                    if rec.data and get_pickle_metadata(rec.data) == ("ZODB.blob", "Blob"):
                        out.append((rec.oid, rec.tid))
        finally:
            fs.close()
        return out


def build(site):
    """Five backups: full, blob changes, the undo of a blob revision, an
    undone blob creation, a pack. Returns facts to check against."""
    a1 = site.set_blob("a", b"first revision of a" * 100)
    site.commit(lambda root: root.__setitem__("title", "x") or [], "not a blob")
    site.backup()
    a2 = site.set_blob("a", b"second revision of a" * 50)
    b1 = site.set_blob("b", b"b" * 3000)
    site.backup()
    # a3, undone: a's current record is a backpointer to a2's record.
    site.set_blob("a", b"third revision, undone")
    undo_tid = site.undo_last()
    oid_a = a1[0]
    site.revisions.append((oid_a, undo_tid))
    site.backup()
    c1 = site.set_blob("c", b"created, then undone")
    site.undo_last()
    site.backup()
    site.pack()
    site.backup()
    return {"a1": a1, "a2": a2, "b1": b1, "c1": c1, "undo_tid": undo_tid}


FORMATS = {
    "directories": {},
    "tar": {"archive_blob": True},
    "tar.gz": {"archive_blob": True, "compress_blob": True},
    "incremental": {"archive_blob": True, "incremental_blobs": True, "gzip": True},
}


@pytest.fixture(params=list(FORMATS))
def built(request, tmp_path):
    site = Site(tmp_path, **FORMATS[request.param])
    facts = build(site)
    return request.param, site, facts


def errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def verified(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Verified ")]


def test_undo_of_a_blob_revision_writes_a_file_under_the_new_tid(tmp_path):
    """What verify expects of ZODB, checked against ZODB: the undo record
    is a backpointer, and the blob file is there under the undo's tid."""
    site = Site(tmp_path)
    oid, _ = site.set_blob("a", b"one")
    site.set_blob("a", b"two")
    undo_tid = site.undo_last()
    db = site.db()
    try:
        path = db.storage.fshelper.getBlobFilename(oid, undo_tid)
        assert os.path.exists(path)
        with open(path, "rb") as f:
            assert f.read() == b"one"
    finally:
        db.close()
    assert (oid, undo_tid) in site.blob_records()


def test_healthy_site_verifies_every_state(built, caplog):
    fmt, site, facts = built
    caplog.set_level(logging.INFO)
    site.verify(all=True)
    assert errors(caplog) == []
    lines = verified(caplog)
    # One line per state: the first chain has four, the pack's full backup
    # starts a second one.
    assert len(lines) == 5, lines
    for s, line in zip(site.stamps, lines):
        assert f" at {s}: " in line
    # The newest state: as many blob records as ZODB reads as Blobs.
    expected = len(site.blob_records())
    assert lines[-1].endswith(f": {expected} blob records checked."), lines[-1]
    # Before the pack, every revision made so far was one (the undone
    # creation of c has no data, so no record to check).
    assert lines[3].endswith(f": {len(site.revisions)} blob records checked."), lines[3]


def test_newest_and_date(built, caplog):
    fmt, site, facts = built
    caplog.set_level(logging.INFO)
    site.verify()
    assert [line.split(" at ")[1][:19] for line in verified(caplog)] == [site.stamps[-1]]
    caplog.clear()
    site.verify(date=site.stamps[1])
    assert [line.split(" at ")[1][:19] for line in verified(caplog)] == [site.stamps[1]]
    # A date between two backups: the state restore would choose.
    caplog.clear()
    site.verify(date=stamp(T0 + 150))
    assert [line.split(" at ")[1][:19] for line in verified(caplog)] == [site.stamps[1]]


def fails(site, caplog, **kw):
    caplog.set_level(logging.INFO)
    caplog.clear()
    with pytest.raises(_core.VerificationFail) as e:
        site.verify(**kw)
    found = errors(caplog)
    n = len(found)
    assert str(e.value) == (f"verify found {n} problems" if n > 1 else "verify found 1 problem")
    return found


def test_blob_missing_from_a_directory_backup(tmp_path, caplog):
    site = Site(tmp_path)
    facts = build(site)
    oid, tid = facts["b1"]
    backup = site.blobbackups / f"blobstorage.{site.stamps[1]}"
    bushy = os.path.join(*[f"0x{b:02x}" for b in oid])
    os.remove(backup / "blobstorage" / bushy / f"{tid_repr(tid)}.blob")
    found = fails(site, caplog, all=True)
    name = f"oid {oid_repr(oid)} tid {tid_repr(tid)}"
    # Reported for that backup, and by its manifest; the other states are
    # whole (their backups hold their own link to the file).
    assert any(name in f and str(backup) in f for f in found), found
    assert all(str(backup) in f for f in found), found
    # The other states verified.
    assert len(verified(caplog)) == 4


def test_blob_missing_from_an_archive(tmp_path, caplog):
    site = Site(tmp_path, archive_blob=True)
    facts = build(site)
    oid, tid = facts["a2"]
    # Rewrite the second archive without a2's file.
    import tarfile

    archive = site.blobbackups / f"blobstorage.{site.stamps[1]}.tar"
    bushy = "/".join(f"0x{b:02x}" for b in oid)
    member = f"./{bushy}/{tid_repr(tid)}.blob"
    with tarfile.open(archive) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    def name(m):
        return m.name.lstrip("./")

    assert any(name(m) == member.lstrip("./") for m, _ in members)
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as t:
        for m, data in members:
            if name(m) != member.lstrip("./"):
                t.addfile(m, None if data is None else io.BytesIO(data))
    found = fails(site, caplog, date=site.stamps[1])
    assert found == [
        f"The blob of oid {oid_repr(oid)} tid {tid_repr(tid)} is missing from {archive} "
        f"({bushy}/{tid_repr(tid)}.blob)."
    ]


def test_truncated_blob_seen_by_the_manifest(tmp_path, caplog):
    site = Site(tmp_path)
    facts = build(site)
    oid, tid = facts["b1"]
    newest = site.blobbackups / f"blobstorage.{site.stamps[-1]}"
    assert (newest / ".crb-manifest").read_text().startswith("crb-manifest 1\n")
    bushy = os.path.join(*[f"0x{b:02x}" for b in oid])
    blob = newest / "blobstorage" / bushy / f"{tid_repr(tid)}.blob"
    # Blob files are read-only, and hard-linked: replace this backup's link
    # with a shorter file.
    data = blob.read_bytes()
    blob.unlink()
    blob.write_bytes(data[:100])
    found = fails(site, caplog)
    assert found == [f"{blob} is 100 bytes, but .crb-manifest says {len(data)} bytes."]


def test_backup_without_manifest_checks_existence_only(tmp_path, caplog):
    site = Site(tmp_path)
    build(site)
    for s in site.stamps:
        os.remove(site.blobbackups / f"blobstorage.{s}" / ".crb-manifest")
    caplog.set_level(logging.INFO)
    site.verify(all=True)
    assert len(verified(caplog)) == 5


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "incremental"])
def test_truncated_archive(tmp_path, caplog, fmt):
    site = Site(tmp_path, **FORMATS[fmt])
    build(site)
    (archive,) = [p for p in site.blobbackups.iterdir() if p.name.startswith(f"blobstorage.{site.stamps[2]}.")]
    size = archive.stat().st_size
    with open(archive, "r+b") as f:
        f.truncate(size // 2 + 7)
    found = fails(site, caplog, all=True)
    assert any(f.startswith(f"{archive}: ") for f in found), found


def test_missing_increment(tmp_path, caplog):
    site = Site(tmp_path, gzip=True)
    build(site)
    delta = site.backups / f"{site.stamps[1]}.deltafsz"
    assert delta.name.endswith(".deltafsz")
    delta.unlink()
    found = fails(site, caplog, all=True)
    assert found == [f"{site.backups}: {delta} is missing"]
    # The second chain (after the pack) is whole.
    assert len(verified(caplog)) == 1


def test_flipped_byte_in_a_backup_file(tmp_path, caplog):
    site = Site(tmp_path, gzip=False)
    build(site)
    (full,) = [p for p in site.backups.iterdir() if p.name == f"{site.stamps[0]}.fs"]
    # A byte of a transaction's description: the records still parse, so
    # only the checksum can tell.
    data = bytearray(full.read_bytes())
    at = data.index(b"not a blob")
    data[at] ^= 0x01
    full.write_bytes(bytes(data))
    # The newest state is the second chain's, which is whole.
    site.verify()
    found = fails(site, caplog, all=True)
    assert len(found) == 1, found
    assert found[0].startswith(f"{full} has checksum ") and found[0].endswith(" instead of " + md5_of_line(site, full))


def test_damaged_transaction_does_not_hide_a_damaged_increment(tmp_path, caplog):
    """The scan stops at a damaged transaction header; the files after it
    in the chain are still checked."""
    site = Site(tmp_path, gzip=False)
    build(site)
    full = site.backups / f"{site.stamps[0]}.fs"
    data = bytearray(full.read_bytes())
    at = data.index(b"not a blob")
    # The header of that transaction: 23 bytes, then the user name, then
    # the description; its status byte is at offset 16.
    (h,) = [
        at - 23 - ulen
        for ulen in range(64)
        if at - 23 - ulen >= 0
        and int.from_bytes(data[at - 6 - ulen : at - 4 - ulen], "big") == ulen
        and int.from_bytes(data[at - 4 - ulen : at - 2 - ulen], "big") == len(b"not a blob")
    ]
    data[h + 16] = ord("X")
    full.write_bytes(bytes(data))
    # A later increment of the same chain, damaged where only its checksum
    # can tell.
    delta = site.backups / f"{site.stamps[1]}.deltafs"
    raw = bytearray(delta.read_bytes())
    raw[-1] ^= 0x01
    delta.write_bytes(bytes(raw))
    found = fails(site, caplog, all=True)
    assert any(f.startswith(f"{delta} has checksum ") for f in found), found


def md5_of_line(site, path):
    dat = site.backups / f"{site.stamps[0]}.dat"
    for line in dat.read_text().splitlines():
        if line.split()[0].endswith(path.name):
            return line.split()[3]
    raise AssertionError(path)


def test_flipped_byte_in_a_gzipped_backup_file(tmp_path, caplog):
    site = Site(tmp_path, gzip=True)
    build(site)
    delta = site.backups / f"{site.stamps[2]}.deltafsz"
    with gzip.open(delta) as f:
        raw = bytearray(f.read())
    raw[raw.index(b"blob a")] ^= 0x01
    with gzip.open(delta, "wb") as f:
        f.write(bytes(raw))
    found = fails(site, caplog, all=True)
    assert any(f.startswith(f"{delta} has checksum ") and "(when uncompressed)" in f for f in found), found


def test_blob_backup_of_a_state_missing(tmp_path, caplog):
    site = Site(tmp_path)
    build(site)
    shutil.rmtree(site.blobbackups / f"blobstorage.{site.stamps[3]}")
    found = fails(site, caplog, all=True)
    assert found == [
        f"No blob backup of {site.stamps[3]} (the date of its filestorage backup) in {site.blobbackups}."
    ]


def test_zip_and_snapshot_modes(tmp_path, caplog):
    site = Site(tmp_path)
    # Numbered zip archives are dated by their mtime, which retention
    # compares with the filestorage backup's name: use the real time.
    site.now = int(time.time()) - 600
    site.set_blob("a", b"one")
    _core.backup(site.config, "zip", now=site.now)
    _core.backup(site.config, "snapshot", now=site.now + 1)
    caplog.set_level(logging.INFO)
    site.verify(mode="zip", now=site.now + 10)
    site.verify(mode="snapshot", now=site.now + 10)
    assert [line.rsplit(": ", 1)[1] for line in verified(caplog)] == ["1 blob records checked."] * 2
    # The zip archive loses its only blob.
    (archive,) = (tmp_path / "blobzips").glob("blobstorage.*")
    assert archive.name == "blobstorage.0.tar"
    with open(archive, "r+b") as f:
        f.truncate(30)
    found = fails(site, caplog, mode="zip", now=site.now + 10)
    assert found and found[0].startswith(f"{archive}: "), found


def test_bad_arguments(tmp_path):
    site = Site(tmp_path)
    with pytest.raises(_core.ConfigError, match="unknown verify mode 'nope'"):
        site.verify(mode="nope")
    with pytest.raises(_core.ConfigError, match="a date or all, not both"):
        site.verify(date="2027-01-01", all=True)
    with pytest.raises(_core.ConfigError, match="Could not parse date argument 'x'"):
        site.verify(date="x")
    # No backups at all: one problem, named.
    with pytest.raises(_core.VerificationFail, match="verify found 1 problem"):
        site.verify()


def test_manifest_goes_with_its_backup(tmp_path):
    """Retention removes a manifest with its backup; restore leaves it out."""
    site = Site(tmp_path, keep=1)
    build(site)
    # The pack started a second chain: keep 1 leaves its backup only.
    assert sorted(p.name for p in site.blobbackups.iterdir()) == [
        ".crb.lock",
        f"blobstorage.{site.stamps[-1]}",
        "latest",
    ]
    assert sorted(p.name for p in (site.blobbackups / f"blobstorage.{site.stamps[-1]}").iterdir()) == [
        ".crb-manifest",
        "blobstorage",
    ]
    shutil.rmtree(site.blobdir)
    os.remove(site.datafs)
    _core.restore(site.config, "standard", now=site.now + 1)
    assert ".crb-manifest" not in os.listdir(site.blobdir)
    backed_up = site.blobbackups / f"blobstorage.{site.stamps[-1]}" / "blobstorage"
    restored = sorted(os.path.relpath(os.path.join(d, f), site.blobdir) for d, _, fs in os.walk(site.blobdir) for f in fs)
    assert restored == sorted(os.path.relpath(os.path.join(d, f), backed_up) for d, _, fs in os.walk(backed_up) for f in fs)


def test_blob_records_counted_as_zodb_reads_them(tmp_path, caplog):
    """A generated site (many classes, blobs, undos of non-blob changes,
    a pack): the newest state's blob records are the records ZODB's own
    iterator reads as Blobs."""
    import zodbgen

    site = Site(tmp_path)
    shutil.rmtree(site.blobdir)
    zodbgen.generate(str(tmp_path / "var"), transactions=80, undos=3, pack=True, blobs=True, seed=5)
    expected = len(site.blob_records())
    assert expected > 3
    site.backup()
    caplog.set_level(logging.INFO)
    site.verify()
    (line,) = verified(caplog)
    assert line.endswith(f": {expected} blob records checked."), line


def test_only_blobs(tmp_path, caplog):
    """Without filestorage backups there is no state to pair: the blob
    backup a restore would pick is checked as readable and complete."""
    site = Site(tmp_path, only_blobs=True, archive_blob=True)
    site.set_blob("a", b"one")
    site.backup()
    site.set_blob("b", b"two")
    site.backup()
    caplog.set_level(logging.INFO)
    site.verify()
    (newest,) = sorted(site.blobbackups.glob("blobstorage.*.tar"))[-1:]
    import tarfile

    with tarfile.open(newest) as t:
        files = sum(1 for m in t.getmembers() if m.isfile())
    assert files >= 3  # .layout and two blobs
    assert verified(caplog) == [f"Verified {newest}: {files} files."]
    with open(newest, "r+b") as f:
        f.truncate(1000)
    found = fails(site, caplog)
    assert len(found) == 1 and found[0].startswith(f"{newest}: "), found


def test_waits_for_a_running_backup(tmp_path, monkeypatch):
    """The locations are locked as a restore locks them: a backup or
    retention holding one is waited for, then verify gives up, having
    checked nothing."""
    import fcntl

    site = Site(tmp_path)
    site.set_blob("a", b"one")
    site.backup()
    monkeypatch.setenv("CRB_LOCK_TIMEOUT", "1")
    with open(site.blobbackups / ".crb.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(_core.BackupError, match=f"{site.blobbackups} is in use by another backup or restore"):
            site.verify()
    site.verify()
