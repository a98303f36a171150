"""Reading a ZODB FileStorage (``Data.fs``) the way ZODB does.

``scan(path, use_index=True)`` walks the transaction records and returns a
``ScanResult`` with:

- ``end``: the end of the last committed transaction (what
  ``FileStorage(path, read_only=True).getSize()`` returns, and what a backup
  copies);
- ``size``: the file size;
- ``last_tid``: the 8-byte tid of the last complete transaction (or None),
  and ``last_commit``, its time as ISO 8601 UTC;
- ``transactions``: transaction records read (only those after the index's
  pos when an index was used);
- ``objects``: number of oids in the index;
- ``used_index``: whether ``<path>.index`` was accepted and reused.

``write_index(datafs_path, index_path)`` writes the fsIndex ``.index`` file
ZODB would write for the storage, atomically, and returns its pos.

Both raise :class:`collective.recipe.backup.FileStorageError` for a file ZODB
would refuse, and :class:`collective.recipe.backup.BackupError` for I/O errors.

As a command, it reports on a Data.fs::

    python -m collective.recipe.backup.filestorage [--no-index] [--write-index OUT] Data.fs
"""

import argparse
import logging
import sys

from collective.recipe.backup._core import BackupError
from collective.recipe.backup._core import ScanResult
from collective.recipe.backup._core import scan
from collective.recipe.backup._core import write_index


__all__ = ["ScanResult", "scan", "write_index"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m collective.recipe.backup.filestorage",
        description="Report where the last committed transaction of a Data.fs ends.",
    )
    parser.add_argument("datafs")
    parser.add_argument("--no-index", action="store_true", help="ignore <datafs>.index")
    parser.add_argument("--write-index", metavar="OUT", help="write the fsIndex file to OUT")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    try:
        result = scan(args.datafs, use_index=not args.no_index)
        pos = write_index(args.datafs, args.write_index) if args.write_index else None
    except BackupError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    tail = result.size - result.end
    print(f"{args.datafs}: {result.size} bytes")
    print(f"  end of last committed transaction: {result.end}")
    if tail:
        print(f"  not committed (checkpoint or torn tail): {tail} bytes")
    if result.last_tid is not None:
        print(f"  last transaction: 0x{result.last_tid.hex()} at {result.last_commit}")
    how = "after the index's pos" if result.used_index else "full scan, index not used"
    print(f"  transaction records read: {result.transactions} ({how})")
    print(f"  objects: {result.objects}")
    if pos is not None:
        print(f"  wrote {args.write_index} (pos {pos})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
