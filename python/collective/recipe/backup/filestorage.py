"""Reading a ZODB FileStorage (``Data.fs``) the way ZODB does.

``scan(path, use_index=True)`` walks the transaction records and returns a
``ScanResult`` with:

- ``end``: the end of the last committed transaction (what
  ``FileStorage(path, read_only=True).getSize()`` returns, and what a backup
  copies);
- ``size``: the file size;
- ``last_tid``: the 8-byte tid of the last complete transaction (or None);
- ``transactions``: transaction records read (after the index's pos when an
  index was used);
- ``objects``: number of oids in the index;
- ``used_index``: whether ``<path>.index`` was accepted and reused.

``write_index(datafs_path, index_path)`` writes the fsIndex ``.index`` file
ZODB would write for the storage, atomically, and returns its pos.

Both raise :class:`collective.recipe.backup.FileStorageError` for a file ZODB
would refuse, and :class:`collective.recipe.backup.BackupError` for I/O errors.
"""

from collective.recipe.backup._core import ScanResult
from collective.recipe.backup._core import scan
from collective.recipe.backup._core import write_index


__all__ = ["ScanResult", "scan", "write_index"]
