"""Blob storage backups: snapshots, copies, archives, restore, retention.

Thin wrappers over the Rust core (``collective.recipe.backup._core``); no
rsync or tar is run. Paths may be ``str`` or ``os.PathLike``.

- ``backup(blobdir, location, **options)``: make one blob backup in
  ``location`` and apply retention. Options (6.0 option names in brackets):
  ``fs_backup_location`` (the repozo directory whose newest file names the
  backup, and whose full backups drive the orphan rule), ``archive``
  [archive_blob], ``compress`` [compress_blob], ``incremental``
  [incremental_blobs], ``hard_links`` [use_rsync],
  ``hard_links_on_first_copy`` [rsync_hard_links_on_first_copy],
  ``timestamps`` [blob_timestamps], ``full``, ``keep``, ``keep_blob_days``,
  ``rsync_options`` (only ``-k``, ``-L`` and ``--no-l`` have an effect),
  ``now`` (a fixed ``YYYY-MM-DD-HH-MM-SS`` clock, for tests). Returns a dict
  with ``backup`` (path), ``created``, ``delta``, ``files``, ``linked``,
  ``copied``, ``bytes_copied`` and ``cleanup`` (the retention plan).
- ``zip_backup(blobdir, location, compress=False)``: ``<base>.0.tar[.gz]``.
- ``restore(location, target, date=None, prefer_archives=False,
  timestamps=True)``: restore ``target`` from the newest backup, or the
  newest at or before ``date`` (``yyyy-mm-dd[-hh[-mm[-ss]]]``, UTC); returns
  the sources used. The live directory is replaced only when the restored
  tree is complete.
- ``check_restore(...)``: what ``restore`` would use, touching nothing.
- ``cleanup(location, ...)``: retention alone; ``dry_run=True`` only plans.
- ``list_backups(location)``: entries newest first, as dicts.

Errors: :class:`NoBlobBackup` (nothing to restore), :class:`BlobError`
(mixed prefixes, broken archive or chain, bad date), and
:class:`collective.recipe.backup.BackupError` for I/O errors; every message
names the path.
"""

from collective.recipe.backup._core import BlobError
from collective.recipe.backup._core import NoBlobBackup
from collective.recipe.backup._core import blob_backup as backup
from collective.recipe.backup._core import blob_check_restore as check_restore
from collective.recipe.backup._core import blob_cleanup as cleanup
from collective.recipe.backup._core import blob_list_backups as list_backups
from collective.recipe.backup._core import blob_restore as restore
from collective.recipe.backup._core import blob_zip_backup as zip_backup


__all__ = [
    "BlobError",
    "NoBlobBackup",
    "backup",
    "check_restore",
    "cleanup",
    "list_backups",
    "restore",
    "zip_backup",
]
