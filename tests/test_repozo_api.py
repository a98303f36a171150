"""The Python API: results, exceptions, progress."""

import hashlib
import os

import pytest
import zodbgen
from repozo_util import T0
from repozo_util import committed
from repozo_util import listing
from repozo_util import read
from repozo_util import stamp
from repozo_util import theirs

import collective.recipe.backup as crb
from collective.recipe.backup import repozo


@pytest.fixture
def db(make_storage):
    return make_storage("db", transactions=30, size="200K", undos=1, blobs=False)


def test_backup_results(db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    r = repozo.backup(db["path"], repo, _now=T0)
    assert (r.action, r.reason, r.start, r.end) == ("full", "no backup yet", 0, db["end"])
    assert r.data_file == f"{repo}/{stamp(T0)}.fsz"
    assert r.index_file == f"{repo}/{stamp(T0)}.index"
    assert r.dat_file == f"{repo}/{stamp(T0)}.dat"
    assert r.written == os.path.getsize(r.data_file)
    assert r.removed == []
    r = repozo.backup(db["path"], repo, _now=T0 + 1)
    assert (r.action, r.reason, r.data_file) == ("nothing", "no changes", None)
    info = zodbgen.generate(os.path.dirname(db["path"]), transactions=3, undos=0, blobs=False)
    r = repozo.backup(db["path"], repo, gzip=False, _now=T0 + 2)
    assert (r.action, r.start, r.end) == ("incremental", db["end"], info["end"])
    assert r.md5 == __import__("hashlib").md5(committed(db["path"])[db["end"] :]).hexdigest()
    r = repozo.backup(db["path"], repo, full=True, kill_old=True, _now=T0 + 3)
    assert r.action == "full" and r.reason == "full backup requested"
    assert sorted(os.path.basename(p) for p in r.removed) == [
        f"{stamp(T0)}.fsz",
        f"{stamp(T0 + 2)}.deltafs",
    ]
    assert listing(repo) == [
        f"{stamp(T0 + 3)}.dat",
        f"{stamp(T0 + 3)}.fsz",
        f"{stamp(T0 + 3)}.index",
    ]


def test_recover_and_verify_results(db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    repozo.backup(db["path"], repo, _now=T0)
    out = tmp_path / "out.fs"
    r = repozo.recover(repo, out, _now=T0)
    assert r.files == [f"{repo}/{stamp(T0)}.fsz"]
    assert (r.bytes, r.md5, r.index_file) == (db["end"], None, f"{out}.index")
    # Without verify, the md5 of the whole output (repozo's -v line).
    r = repozo.recover(repo, out, verify=False, _now=T0)
    assert (r.bytes, r.md5) == (db["end"], hashlib.md5(committed(db["path"])).hexdigest())
    assert read(out) == committed(db["path"])
    v = repozo.verify(repo, _now=T0)
    assert (v.files, v.bytes) == ([f"{repo}/{stamp(T0)}.fsz"], db["end"])


def test_exceptions_are_backup_errors(tmp_path):
    for cls in (repozo.NoFiles, repozo.WouldOverwriteFiles, repozo.VerificationFail):
        assert issubclass(cls, repozo.RepozoError)
        assert issubclass(cls, crb.BackupError)
        assert getattr(crb, cls.__name__) is cls
    (tmp_path / "repo").mkdir()
    with pytest.raises(repozo.NoFiles, match="^No files in repository$"):
        repozo.verify(tmp_path / "repo")
    with pytest.raises(repozo.RepozoError, match="No such file or directory"):
        repozo.verify(tmp_path / "nonexist")


def test_would_overwrite(db, tmp_path):
    (tmp_path / "repo").mkdir()
    repozo.backup(db["path"], tmp_path / "repo", _now=T0)
    with pytest.raises(repozo.WouldOverwriteFiles, match=f"{stamp(T0)}.fsz$"):
        repozo.backup(db["path"], tmp_path / "repo", full=True, _now=T0)


def test_progress_draws_nothing_when_stderr_is_not_a_terminal(db, tmp_path, capfd):
    """``progress=True`` asks for a bar; stderr here is pytest's file, so
    none is drawn (tests/test_progress.py runs on a terminal)."""
    (tmp_path / "repo").mkdir()
    r = repozo.backup(db["path"], tmp_path / "repo", progress=True, _now=T0)
    repozo.verify(tmp_path / "repo", progress=True)
    repozo.recover(tmp_path / "repo", tmp_path / "out.fs", progress=True, _now=T0 + 1)
    assert r.action == "full"
    assert read(tmp_path / "out.fs") == committed(db["path"])
    assert capfd.readouterr() == ("", "")
    with pytest.raises(TypeError):
        repozo.backup(db["path"], tmp_path / "repo", progress=lambda *a: None, _now=T0 + 2)


def test_gzip_level_configurable_and_readable_by_repozo(db, tmp_path):
    sizes = {}
    for level in (0, 9):
        repo = tmp_path / f"repo{level}"
        repo.mkdir()
        r = repozo.backup(db["path"], repo, gzip_level=level, _now=T0)
        sizes[level] = r.written
        assert theirs("-R", "-r", repo, "-o", tmp_path / f"{level}.fs").returncode == 0
        assert read(tmp_path / f"{level}.fs") == committed(db["path"])
    assert sizes[0] > sizes[9]
    assert repozo.DEFAULT_GZIP_LEVEL in range(1, 10)


def test_failed_dat_write_leaves_no_unlisted_backup_file(db, tmp_path):
    """When the .dat line cannot be written, the data file and .index that
    already had their final names are removed again: the repository stays
    as it was, and repozo still restores it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    # A full backup whose .dat cannot be created (a directory has its name).
    os.mkdir(repo / f"{stamp(T0)}.dat")
    with pytest.raises(crb.BackupError):
        repozo.backup(db["path"], repo, _now=T0)
    assert listing(repo) == [f"{stamp(T0)}.dat"]
    os.rmdir(repo / f"{stamp(T0)}.dat")

    # A chain whose .dat cannot be read is not extended: the backup starts
    # a new chain, which repozo restores.
    repozo.backup(db["path"], repo, gzip=False, _now=T0 + 1)
    dat = repo / f"{stamp(T0 + 1)}.dat"
    dat.unlink()
    os.mkdir(dat)
    zodbgen.generate(os.path.dirname(db["path"]), transactions=3, undos=0, blobs=False)
    r = repozo.backup(db["path"], repo, quick=False, _now=T0 + 2)
    assert r.action == "full"
    out = tmp_path / "restored.fs"
    theirs("-R", "-r", str(repo), "-o", str(out), check=True)
    assert read(out) == committed(db["path"])


def test_same_second_refused_for_any_backup_file_of_that_second(db, tmp_path):
    """repozo checks only the name it would write; a plain full after a gzip
    one in the same second, or a .deltafs beside a .fs, would then sit
    unused in the chain and overwrite the .index."""
    repo = tmp_path / "repo"
    repo.mkdir()
    repozo.backup(db["path"], repo, _now=T0)
    before = listing(repo)
    with pytest.raises(repozo.WouldOverwriteFiles, match=rf"{stamp(T0)}\.fsz$"):
        repozo.backup(db["path"], repo, full=True, gzip=False, _now=T0)
    assert listing(repo) == before


def test_whitespace_in_the_repository_path_refused_before_writing(db, tmp_path):
    repo = tmp_path / "my backups"
    repo.mkdir()
    with pytest.raises(crb.BackupError, match="contains whitespace"):
        repozo.backup(db["path"], repo, _now=T0)
    assert listing(repo) == []


def test_backup_creates_a_missing_repository(db, tmp_path):
    # Like blobs.backup with its location; the repozo command line keeps
    # repozo's error for a missing -r directory (test_repozo_errors).
    repo = tmp_path / "var" / "backups"
    r = repozo.backup(db["path"], repo, _now=T0)
    assert r.action == "full"
    assert r.data_file == f"{repo}/{stamp(T0)}.fsz"
