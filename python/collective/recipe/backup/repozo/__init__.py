"""Repozo-compatible backups of a ZODB FileStorage, done by the Rust core.

The repository format is exactly that of ZODB's ``repozo`` (full ``.fs``/
``.fsz``, incremental ``.deltafs``/``.deltafsz``, ``.dat`` chain files and a
``.index`` per backup), so either tool can back up into, recover from and
verify a repository written by the other.

- :func:`backup`, :func:`recover`, :func:`verify`: the Python API;
- ``python -m collective.recipe.backup.repozo``: a drop-in for ``bin/repozo``
  (:mod:`collective.recipe.backup.repozo.cli`).

Errors are subclasses of :class:`collective.recipe.backup.BackupError`:
:class:`RepozoError` and below it :class:`NoFiles`,
:class:`WouldOverwriteFiles` and :class:`VerificationFail`.
"""

import os

from collective.recipe.backup._core import REPOZO_DEFAULT_GZIP_LEVEL
from collective.recipe.backup._core import BackupResult
from collective.recipe.backup._core import NoFiles
from collective.recipe.backup._core import RecoverResult
from collective.recipe.backup._core import RepozoError
from collective.recipe.backup._core import VerificationFail
from collective.recipe.backup._core import VerifyResult
from collective.recipe.backup._core import WouldOverwriteFiles
from collective.recipe.backup._core import repozo_backup
from collective.recipe.backup._core import repozo_recover
from collective.recipe.backup._core import repozo_verify


__all__ = [
    "DEFAULT_GZIP_LEVEL",
    "BackupResult",
    "NoFiles",
    "RecoverResult",
    "RepozoError",
    "VerificationFail",
    "VerifyResult",
    "WouldOverwriteFiles",
    "backup",
    "recover",
    "verify",
]

DEFAULT_GZIP_LEVEL = REPOZO_DEFAULT_GZIP_LEVEL


def backup(
    datafs,
    repository,
    *,
    full=False,
    gzip=True,
    quick=True,
    kill_old=False,
    gzip_level=None,
    progress=False,
    _now=None,
):
    """Back up ``datafs`` into the directory ``repository``, created when
    missing (as :func:`collective.recipe.backup.blobs.backup` creates its
    location; the repozo command line, like ZODB's, refuses a missing one).

    A full backup when ``full``, when the repository has none, or when the
    Data.fs no longer continues the chain (after a pack); else an
    incremental one; or nothing when nothing was committed since.
    ``quick`` trusts the last ``.dat`` line instead of re-reading the whole
    repository (repozo ``-Q``). ``kill_old`` deletes older chains after a
    full backup (``-k``). With ``progress``, the copy and checksum loops draw
    a progress bar on stderr when it is a terminal (nothing otherwise).
    Returns a :class:`BackupResult` (``action`` is ``"full"``,
    ``"incremental"`` or ``"nothing"``).
    """
    return repozo_backup(
        os.fspath(datafs),
        os.fspath(repository),
        create_repository=True,
        full=full,
        gzip=gzip,
        quick=quick,
        kill_old=kill_old,
        gzip_level=gzip_level,
        progress=progress,
        now=_now,
    )


def recover(repository, output, *, date=None, verify=True, progress=False, _now=None):
    """Write the Data.fs as of ``date`` (UTC ``yyyy-mm-dd[-hh[-mm[-ss]]]``,
    default now) to ``output``, plus ``<output>.index``.

    The chain is checked for gaps and sizes first; with ``verify`` each
    file's md5 too. An existing ``output`` is replaced only when the new one
    is complete. ``output=None`` writes to stdout. ``progress``: a progress
    bar on stderr when it is a terminal. Returns a :class:`RecoverResult`.
    """
    return repozo_recover(
        os.fspath(repository),
        None if output is None else os.fspath(output),
        date=date,
        verify=verify,
        progress=progress,
        now=_now,
    )


def verify(repository, *, quick=False, progress=False, _now=None):
    """Check the newest chain against its ``.dat``: sizes, and md5s unless
    ``quick``. ``progress``: a progress bar on stderr when it is a terminal.
    Returns a :class:`VerifyResult`; raises :class:`VerificationFail` (or
    :class:`NoFiles`)."""
    return repozo_verify(os.fspath(repository), quick=quick, progress=progress, now=_now)
