"""Blob retention (see docs/blobs.rst) on real directories: the orphan
rule, keep, keep_blob_days, archive units, numbered legacy dirs, `latest`.
The golden plans themselves are Rust unit tests in src/retention.rs."""

import os

import pytest

from collective.recipe.backup import blobs
from repozo_util import listing


T = ["2026-01-0%d-00-00-00" % d for d in range(1, 6)]
NOW = "2026-02-01-00-00-00"
DAY = 86400
NOW_EPOCH = 1_769_904_000  # 2026-02-01


def mkdirs(loc, *names, base="blobstorage"):
    for n in names:
        os.makedirs(loc / f"{base}.{n}" / base)


def touch(loc, *names):
    for n in names:
        (loc / n).write_text(n)


def test_orphan_rule_follows_the_oldest_full_fs_backup(tmp_path):
    loc, fsbk = tmp_path / "bk", tmp_path / "backups"
    mkdirs(loc, *T)
    touch(loc, "foo", "blobstorage.x")
    fsbk.mkdir()
    touch(fsbk, f"{T[2]}.fsz", f"{T[3]}.deltafsz", f"{T[4]}.fs", f"{T[0]}.dat", f"{T[0]}.index")
    plan = blobs.cleanup(loc, fs_backup_location=fsbk, keep=1, keep_blob_days=1, now=NOW)
    assert [n for n, _ in plan["remove"]] == [f"blobstorage.{T[1]}", f"blobstorage.{T[0]}"]
    assert plan["remove"][0][1] == f"older than the oldest full filestorage backup {T[2]}"
    assert plan["removed_backups"] == 2
    assert listing(loc) == sorted(["blobstorage.x", "foo", *[f"blobstorage.{t}" for t in T[2:]], "latest"])
    assert os.readlink(loc / "latest") == f"blobstorage.{T[4]}"


def test_orphan_rule_for_numbered_dirs_uses_mtime(tmp_path):
    loc, fsbk = tmp_path / "bk", tmp_path / "backups"
    mkdirs(loc, "0", "1", "2")
    for n, age in [(0, 1), (1, 20), (2, 40)]:
        os.utime(loc / f"blobstorage.{n}", (NOW_EPOCH - age * DAY,) * 2)
    fsbk.mkdir()
    touch(fsbk, "2026-01-05-00-00-00.fsz")
    plan = blobs.cleanup(loc, fs_backup_location=fsbk, timestamps=False, now=NOW)
    assert [n for n, _ in plan["remove"]] == ["blobstorage.2"]
    assert plan["latest"] is None and not os.path.lexists(loc / "latest")


def test_keep_blob_days_without_fs_backups(tmp_path):
    loc = tmp_path / "bk"
    mkdirs(loc, "0", "1", "2", "3")
    for n, age in [(0, 30), (1, 3), (2, 13), (3, 15)]:
        os.utime(loc / f"blobstorage.{n}", (NOW_EPOCH - age * DAY,) * 2)
    plan = blobs.cleanup(loc, timestamps=False, keep_blob_days=14, now=NOW)
    # The newest (by number) is always kept, however old.
    assert [n for n, _ in plan["remove"]] == ["blobstorage.3"]
    assert listing(loc) == ["blobstorage.0", "blobstorage.1", "blobstorage.2"]


def test_keep_for_full_backups_and_keep_zero(tmp_path):
    loc = tmp_path / "bk"
    mkdirs(loc, *T)
    assert blobs.cleanup(loc, full=True, keep=0, now=NOW)["remove"] == []
    plan = blobs.cleanup(loc, full=True, keep=2, now=NOW)
    assert [n for n, _ in plan["remove"]] == [f"blobstorage.{t}" for t in reversed(T[:3])]
    assert plan["removed_backups"] == 3


def test_dry_run_touches_nothing(tmp_path):
    loc = tmp_path / "bk"
    mkdirs(loc, *T)
    before = listing(loc)
    plan = blobs.cleanup(loc, full=True, keep=1, dry_run=True, now=NOW)
    assert len(plan["remove"]) == 4
    assert listing(loc) == before


def test_archive_units_are_removed_whole(tmp_path):
    loc = tmp_path / "bk"
    loc.mkdir()
    touch(
        loc,
        f"blobstorage.{T[0]}.tar",
        f"blobstorage.{T[0]}.snar",
        f"blobstorage.{T[1]}.delta.tar",
        f"blobstorage.{T[2]}.tar.gz",
        f"blobstorage.{T[2]}.snar",
        f"blobstorage.{T[3]}.delta.tar.gz",
        f"blobstorage.{T[4]}.tar",
    )
    plan = blobs.cleanup(loc, archive=True, incremental=True, keep=2, now=NOW)
    assert plan["removed_backups"] == 1
    assert sorted(n for n, _ in plan["remove"]) == [
        f"blobstorage.{T[0]}.snar",
        f"blobstorage.{T[0]}.tar",
        f"blobstorage.{T[1]}.delta.tar",
    ]
    assert len(listing(loc)) == 4


def test_mixed_prefixes_in_restore_pick_the_target_name(tmp_path):
    loc = tmp_path / "bk"
    mkdirs(loc, T[0])
    mkdirs(loc, T[1], base="other")
    target = tmp_path / "blobstorage"
    assert blobs.check_restore(loc, target) == [loc / f"blobstorage.{T[0]}" / "blobstorage"]
    with pytest.raises(blobs.BlobError, match="Different backup prefixes"):
        blobs.check_restore(loc, tmp_path / "third")


def test_list_backups(tmp_path):
    loc = tmp_path / "bk"
    mkdirs(loc, T[0], "0")
    touch(loc, f"blobstorage.{T[1]}.tar.gz", f"blobstorage.{T[1]}.snar", "junk")
    os.symlink(f"blobstorage.{T[0]}", loc / "latest")
    got = [(b["name"], b["kind"], b["stamp"], b["compressed"]) for b in blobs.list_backups(loc)]
    assert got == [
        (f"blobstorage.{T[1]}.snar", "snar", T[1], False),
        (f"blobstorage.{T[1]}.tar.gz", "tar", T[1], True),
        (f"blobstorage.{T[0]}", "dir", T[0], False),
        ("blobstorage.0", "dir", 0, False),
    ]
    assert blobs.list_backups(tmp_path / "missing") == []


def test_no_backups_and_bad_dates(tmp_path):
    loc = tmp_path / "bk"
    loc.mkdir()
    with pytest.raises(blobs.NoBlobBackup, match=f"There are no backups in {loc}."):
        blobs.check_restore(loc, tmp_path / "blobstorage")
    for bad in ["2026-13-45", "2026-11", "-qn"]:
        with pytest.raises(blobs.BlobError, match="Could not parse date argument to restore blobs"):
            blobs.check_restore(loc, tmp_path / "blobstorage", date=bad)


def test_cleanup_refuses_mixed_prefixes(tmp_path):
    """Retention alone over two blob directories' backups would remove one's
    backups by the other's rules: refused, nothing removed."""
    loc = tmp_path / "bk"
    for t in T[:3]:
        mkdirs(loc, t)
    mkdirs(loc, T[3], base="other")
    before = listing(loc)
    with pytest.raises(blobs.BlobError, match="Different backup prefixes"):
        blobs.cleanup(loc, keep=1, now=T[4])
    assert listing(loc) == before
