"""collective.recipe.backup: backups and restores of a ZODB FileStorage and its blobs.

The work is done by the Rust core (``collective.recipe.backup._core``); this
package holds the zc.buildout recipe, the functions the generated scripts
call, and a small public API:

- :mod:`collective.recipe.backup.filestorage`: ``scan`` and ``write_index``.
- :mod:`collective.recipe.backup.repozo`: repozo-compatible ``backup``,
  ``recover`` and ``verify``; ``python -m collective.recipe.backup.repozo``.
- :mod:`collective.recipe.backup.blobs`: blob storage backups (snapshots,
  copies, archives), restore and retention.
- ``Recipe`` (the zc.buildout entry point, imported lazily so that library
  users never import zc.buildout) and the 6.0 helpers ``to_bool``,
  ``check_for_true`` and ``construct_path``.

Every error the core raises is a :class:`BackupError`.
"""

from collective.recipe.backup._core import BackupError
from collective.recipe.backup._core import ConfigError
from collective.recipe.backup._core import FileStorageError
from collective.recipe.backup._core import NoFiles
from collective.recipe.backup._core import RepozoError
from collective.recipe.backup._core import VerificationFail
from collective.recipe.backup._core import WouldOverwriteFiles
from collective.recipe.backup._core import __version__ as core_version
from collective.recipe.backup.options import check_for_true
from collective.recipe.backup.options import construct_path
from collective.recipe.backup.options import to_bool


__all__ = [
    "BackupError",
    "ConfigError",
    "FileStorageError",
    "NoFiles",
    "Recipe",
    "RepozoError",
    "VerificationFail",
    "WouldOverwriteFiles",
    "check_for_true",
    "construct_path",
    "core_version",
    "to_bool",
]


def __getattr__(name):
    if name == "Recipe":
        from collective.recipe.backup.recipe import Recipe

        return Recipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
