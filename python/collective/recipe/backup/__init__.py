"""collective.recipe.backup: backups and restores of a ZODB FileStorage and its blobs.

The work is done by the Rust core (``collective.recipe.backup._core``); this
package holds the zc.buildout recipe, the functions the generated scripts
call, and a small public API:

- :mod:`collective.recipe.backup.filestorage`: ``scan`` and ``write_index``.
- :mod:`collective.recipe.backup.repozo`: repozo-compatible ``backup``,
  ``recover`` and ``verify``; ``python -m collective.recipe.backup.repozo``.

Every error the core raises is a :class:`BackupError`.
"""

from collective.recipe.backup._core import BackupError
from collective.recipe.backup._core import FileStorageError
from collective.recipe.backup._core import NoFiles
from collective.recipe.backup._core import RepozoError
from collective.recipe.backup._core import VerificationFail
from collective.recipe.backup._core import WouldOverwriteFiles
from collective.recipe.backup._core import __version__ as core_version


__all__ = [
    "BackupError",
    "FileStorageError",
    "NoFiles",
    "RepozoError",
    "VerificationFail",
    "WouldOverwriteFiles",
    "core_version",
]
