"""Errors read like Python's, name the path and the cause, and never show
Rust's words (``(os error 2)``, ``Some(...)``). The suite's subprocess runs
are all checked by conftest; this module covers the library's exceptions
and result reprs, and proves that the check itself can fail."""

import pytest
from collective.recipe.backup import BackupError
from collective.recipe.backup import blobs
from collective.recipe.backup import filestorage
from collective.recipe.backup import repozo
from conftest import RUSTISMS
from conftest import check_words


def test_the_check_catches_rust_words():
    with pytest.raises(AssertionError):
        check_words(["/srv/plone/bin/backup"], "ERROR: x: No such file or directory (os error 2)")
    with pytest.raises(AssertionError):
        check_words(["/srv/plone/bin/backup"], b"data_file=Some(\"x\")")
    check_words(["/srv/plone/bin/backup"], "ERROR: [Errno 2] No such file or directory: 'x'")


@pytest.mark.parametrize(
    "call",
    [
        lambda d: filestorage.scan(d / "missing.fs"),
        lambda d: repozo.backup(d / "missing.fs", d),
        lambda d: repozo.recover(d / "missing", d / "out.fs"),
        lambda d: repozo.verify(d / "missing"),
        lambda d: blobs.backup(d / "no-blobs", d / "bk"),
        lambda d: blobs.restore(d / "no-backups", d / "target"),
    ],
    ids=["scan", "backup", "recover", "verify", "blob-backup", "blob-restore"],
)
def test_library_errors_name_the_path_in_pythons_words(tmp_path, call):
    with pytest.raises(BackupError) as e:
        call(tmp_path)
    text = str(e.value)
    assert not RUSTISMS.search(text), text
    assert str(tmp_path) in text, text
    assert "\n" not in text


def test_result_reprs_are_python_reprs(make_storage, tmp_path):
    db = make_storage("db", transactions=5, size="20K", undos=0, blobs=False)
    (tmp_path / "repo").mkdir()
    r = repozo.backup(db["path"], tmp_path / "repo")
    text = repr(r)
    assert "Some(" not in text and "data_file='" in text, text
    out = repozo.recover(tmp_path / "repo", tmp_path / "out.fs")
    assert repr(out).startswith("RecoverResult(files=['"), repr(out)
    assert "index_file='" in repr(out)
