"""Blob tar archives: plain, gzip, numbered (zip mode) and GNU incremental
chains, checked against GNU tar in both directions."""

import gzip
import os
import shutil

import pytest

from blobhelpers import add_blob
from blobhelpers import age_dirs
from blobhelpers import make_blobtree
from blobhelpers import run
from blobhelpers import state
from blobhelpers import tar_backup
from blobhelpers import tar_restore
from collective.recipe.backup import blobs
from repozo_util import listing

T1 = "2026-01-01-00-00-00"
T2 = "2026-01-02-00-00-00"
T3 = "2026-01-03-00-00-00"
T4 = "2026-01-04-00-00-00"


def secs(st):
    """A tree state with mtimes at tar's one-second resolution."""
    return {k: (v[0], v[1], v[2] // 10**9 if v[2] else v[2], v[3], v[4]) for k, v in st.items()}


@pytest.fixture
def live(tmp_path):
    return make_blobtree(str(tmp_path / "var" / "blobstorage"))


def step(live, n):
    """Change the tree: add blobs, delete a blob file and a whole oid dir."""
    add_blob(
        live, 500 + n, 0x03E0000000010000 + n, f"blob {n}".encode() * 50, mtime=1_700_100_000 + n
    )
    oid_dir = os.path.join(
        live, "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", f"0x{n + 1:02x}"
    )
    shutil.rmtree(oid_dir)
    age_dirs(live, 1_760_000_000 + n * 1000)


@pytest.mark.parametrize("compress", [False, True])
def test_archive_restores_with_gnu_tar_and_ours(tmp_path, live, compress):
    loc = tmp_path / "bk"
    r = blobs.backup(live, loc, archive=True, compress=compress, now=T1)
    suffix = ".tar.gz" if compress else ".tar"
    assert r["backup"] == loc / f"blobstorage.{T1}{suffix}"
    assert os.readlink(loc / "latest") == f"blobstorage.{T1}{suffix}"
    if compress:
        with gzip.open(r["backup"]) as f:
            f.read(512)
    names = run("tar", "tf", r["backup"]).stdout.splitlines()
    assert names[0] == "./" and "./.layout" in names and "./tmp/" not in names
    gnu = tmp_path / "gnu"
    tar_restore([r["backup"]], gnu)
    assert secs(state(gnu)) == secs(state(live))
    target = tmp_path / "restored" / "blobstorage"
    # archive_blob=false still restores archives (6.0 failed, after the
    # Data.fs had been replaced: see docs/blobs.rst).
    blobs.restore(loc, target, prefer_archives=False)
    assert secs(state(target)) == secs(state(live))


def test_gnu_tar_archives_restore_with_ours(tmp_path, live):
    loc = tmp_path / "bk"
    loc.mkdir()
    tar_backup(live, loc / f"blobstorage.{T1}.tar")
    s1 = state(live)
    step(live, 1)
    tar_backup(live, loc / f"blobstorage.{T2}.tar.gz", compress=True)
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(loc, target, prefer_archives=True)
    # 6.0's tar included tmp/; compare the blob tree.
    assert secs(state(target)) == secs(state(live))
    blobs.restore(loc, target, date=T1)
    assert secs(state(target)) == secs(s1)


def fs_files(fsbk, *names):
    fsbk.mkdir(exist_ok=True)
    for n in names:
        (fsbk / n).write_text(n)


def test_incremental_chain_roundtrips_with_gnu_tar(tmp_path, live):
    fsbk, loc = tmp_path / "backups", tmp_path / "bk"
    states = {}
    fs_files(fsbk, f"{T1}.fsz")
    r = blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    assert r["backup"] == loc / f"blobstorage.{T1}.tar" and not r["delta"]
    states[T1] = state(live)
    for n, t in [(1, T2), (2, T3)]:
        step(live, n)
        fs_files(fsbk, f"{t}.deltafsz")
        r = blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
        assert r["backup"] == loc / f"blobstorage.{t}.delta.tar" and r["delta"]
        states[t] = state(live)
    assert listing(loc) == [
        f"blobstorage.{T1}.snar",
        f"blobstorage.{T1}.tar",
        f"blobstorage.{T2}.delta.tar",
        f"blobstorage.{T3}.delta.tar",
    ]
    # A delta holds only the new files (and every directory).
    delta_files = [
        n
        for n in run("tar", "tf", loc / f"blobstorage.{T3}.delta.tar").stdout.splitlines()
        if not n.endswith("/")
    ]
    assert delta_files == ["./0x00/0x00/0x00/0x00/0x00/0x00/0x01/0xf6/0x03e0000000010002.blob"]
    chain = [
        loc / f"blobstorage.{T1}.tar",
        loc / f"blobstorage.{T2}.delta.tar",
        loc / f"blobstorage.{T3}.delta.tar",
    ]
    # GNU tar applies our chain, deletions included.
    gnu = tmp_path / "gnu"
    tar_restore(chain, gnu)
    assert secs(state(gnu)) == secs(states[T3])
    # GNU tar reads our snapshot file: its listing of a delta agrees.
    listed = run("tar", "--list", "--incremental", "--verbose", "--verbose", "-f", chain[2]).stdout
    assert "N.layout" in listed or "N .layout" in listed
    # And GNU tar continues from the .snar we wrote: its next level holds
    # only what changed since our last dump (a wrong .snar dumps everything
    # again, or fails).
    snar = tmp_path / "gnu-continues.snar"
    shutil.copyfile(loc / f"blobstorage.{T1}.snar", snar)
    add_blob(live, 777, 0x03E0000000020000, b"after our chain" * 10)
    nxt = tmp_path / "next.tar"
    run(
        "tar",
        "-cf",
        nxt,
        f"--listed-incremental={snar}",
        "--exclude=./tmp",
        "--exclude=./.removed",
        "-C",
        live,
        ".",
    )
    gnu_files = [n for n in run("tar", "tf", nxt).stdout.splitlines() if not n.endswith("/")]
    assert gnu_files == ["./0x00/0x00/0x00/0x00/0x00/0x00/0x03/0x09/0x03e0000000020000.blob"]
    # And ours, to each date.
    target = tmp_path / "restored" / "blobstorage"
    for t in (T1, T2, T3):
        assert blobs.restore(loc, target, date=t) == chain[: [T1, T2, T3].index(t) + 1]
        assert secs(state(target)) == secs(states[t]), t


def test_gnu_tar_incremental_chain_restores_with_ours(tmp_path, live):
    """What 6.0 made with `tar cf ... --listed-incremental=<snar>`."""
    loc = tmp_path / "bk"
    loc.mkdir()
    snar = loc / f"blobstorage.{T1}.snar"
    states = {}
    tar_backup(live, loc / f"blobstorage.{T1}.tar", snar=snar)
    states[T1] = state(live)
    step(live, 1)
    tar_backup(live, loc / f"blobstorage.{T2}.delta.tar", snar=snar)
    states[T2] = state(live)
    step(live, 2)
    tar_backup(live, loc / f"blobstorage.{T3}.delta.tar.gz", compress=True, snar=snar)
    states[T3] = state(live)
    target = tmp_path / "restored" / "blobstorage"
    for t in (T3, T1, T2):
        blobs.restore(loc, target, date=t, prefer_archives=True)
        got = secs(state(target))
        assert got == secs(states[t]), t
    # Our next delta continues GNU tar's chain, from its snapshot file.
    step(live, 3)
    fsbk = tmp_path / "backups"
    fs_files(fsbk, f"{T1}.fsz", f"{T4}.deltafsz")
    r = blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    assert r["delta"] and r["backup"].name == f"blobstorage.{T4}.delta.tar"
    gnu = tmp_path / "gnu"
    tar_restore(sorted(p for p in loc.iterdir() if ".tar" in p.name), gnu)
    assert secs(state(gnu)) == secs(state(live))


def test_delta_without_its_full_archive_is_refused(tmp_path, live):
    """6.0 extracted the deltas alone, silently (see CHANGES.rst)."""
    fsbk, loc = tmp_path / "backups", tmp_path / "bk"
    fs_files(fsbk, f"{T1}.fsz")
    blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    step(live, 1)
    fs_files(fsbk, f"{T2}.deltafsz")
    blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    os.remove(loc / f"blobstorage.{T1}.tar")
    target = tmp_path / "restored" / "blobstorage"
    make_blobtree(str(target), oids=range(1, 3), extras=False)
    before = state(target)
    with pytest.raises(blobs.BlobError, match="without its full archive"):
        blobs.check_restore(loc, target)
    with pytest.raises(blobs.BlobError, match="without its full archive"):
        blobs.restore(loc, target)
    assert state(target) == before


def test_broken_archive_leaves_live_untouched(tmp_path, live):
    loc = tmp_path / "bk"
    r = blobs.backup(live, loc, archive=True, compress=True, now=T1)
    data = r["backup"].read_bytes()
    r["backup"].write_bytes(data[: len(data) // 2])
    target = tmp_path / "restored" / "blobstorage"
    make_blobtree(str(target), oids=range(1, 3), extras=False)
    before = state(target)
    with pytest.raises(blobs.BlobError, match=str(r["backup"])):
        blobs.restore(loc, target)
    assert state(target) == before
    assert sorted(os.listdir(target.parent)) == ["blobstorage"]


def test_partial_backup_without_snar_makes_a_plain_tar(tmp_path, live, caplog):
    fsbk, loc = tmp_path / "backups", tmp_path / "bk"
    fs_files(fsbk, f"{T1}.fsz", f"{T2}.deltafsz")
    with caplog.at_level("WARNING"):
        r = blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    assert "Not making incremental blob backup" in caplog.text
    assert r["backup"] == loc / f"blobstorage.{T2}.tar" and not r["delta"]
    assert listing(loc) == [f"blobstorage.{T2}.tar"]


def test_new_full_fs_backup_starts_a_new_chain(tmp_path, live):
    fsbk, loc = tmp_path / "backups", tmp_path / "bk"
    fs_files(fsbk, f"{T1}.fsz")
    blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk, keep=2)
    step(live, 1)
    fs_files(fsbk, f"{T2}.deltafsz")
    blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    step(live, 2)
    fs_files(fsbk, f"{T3}.fsz")
    r = blobs.backup(live, loc, archive=True, incremental=True, fs_backup_location=fsbk)
    assert r["backup"].name == f"blobstorage.{T3}.tar" and not r["delta"]
    assert (loc / f"blobstorage.{T3}.snar").exists()
    assert not (loc / "latest").exists()
    # repozo's cleanup removes the old full; the blob chain follows it.
    os.remove(fsbk / f"{T1}.fsz")
    os.remove(fsbk / f"{T2}.deltafsz")
    plan = blobs.cleanup(loc, fs_backup_location=fsbk, archive=True, incremental=True)
    assert sorted(n for n, _ in plan["remove"]) == [
        f"blobstorage.{T1}.snar",
        f"blobstorage.{T1}.tar",
        f"blobstorage.{T2}.delta.tar",
    ]
    assert listing(loc) == [f"blobstorage.{T3}.snar", f"blobstorage.{T3}.tar"]


@pytest.mark.parametrize("compress", [False, True])
def test_zip_backup_keeps_one_numbered_archive(tmp_path, live, compress):
    loc = tmp_path / "zips"
    name = "blobstorage.0.tar" + (".gz" if compress else "")
    r = blobs.zip_backup(live, loc, compress=compress)
    assert r["backup"] == loc / name
    step(live, 1)
    blobs.zip_backup(live, loc, compress=compress)
    assert listing(loc) == [name]
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(loc, target, prefer_archives=True, timestamps=False)
    assert secs(state(target)) == secs(state(live))
    gnu = tmp_path / "gnu"
    tar_restore([loc / name], gnu)
    assert secs(state(gnu)) == secs(state(live))


def test_archives_preferred_when_archive_blob_and_both_exist(tmp_path, live):
    loc = tmp_path / "bk"
    blobs.backup(live, loc, now=T1)
    s1 = state(live)
    step(live, 1)
    blobs.backup(live, loc, archive=True, now=T2)
    target = tmp_path / "restored" / "blobstorage"
    assert blobs.check_restore(loc, target, prefer_archives=True) == [loc / f"blobstorage.{T2}.tar"]
    # Without archive_blob, directories win when they match (the same rule both ways).
    assert blobs.check_restore(loc, target) == [loc / f"blobstorage.{T1}" / "blobstorage"]
    blobs.restore(loc, target)
    assert state(target) == s1


def test_incremental_chain_of_a_real_zodb_blob_tree(tmp_path, make_storage):
    """Real ZODB blobs, a pack between the backups (blob files deleted,
    `.removed` transient), GNU tar and ours agree on the restored tree."""
    info = make_storage("db", transactions=150, seed=5)
    live = os.path.join(os.path.dirname(info["path"]), "blobstorage")
    fsbk, loc = tmp_path / "backups", tmp_path / "bk"
    fs_files(fsbk, f"{T1}.fsz")
    blobs.backup(live, loc, archive=True, compress=True, incremental=True, fs_backup_location=fsbk)
    before = state(live)
    make_storage("db", transactions=80, seed=6, pack=True, pack_keep_old=False)
    after = state(live)
    assert set(before) - set(after), "the pack removed no blob file"
    fs_files(fsbk, f"{T2}.deltafsz")
    r = blobs.backup(
        live, loc, archive=True, compress=True, incremental=True, fs_backup_location=fsbk
    )
    assert r["delta"] and r["backup"].name == f"blobstorage.{T2}.delta.tar.gz"
    chain = [loc / f"blobstorage.{T1}.tar.gz", loc / f"blobstorage.{T2}.delta.tar.gz"]
    gnu = tmp_path / "gnu"
    tar_restore(chain, gnu)
    assert secs(state(gnu)) == secs(after)
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(loc, target)
    assert secs(state(target)) == secs(after)
    blobs.restore(loc, target, date=T1)
    assert secs(state(target)) == secs(before)
