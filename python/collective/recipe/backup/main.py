"""The functions the generated scripts call (the 6.0 names and keywords).

Each one: parse the command line, set up logging, prompt if needed, make
ONE call into the core, and map the outcome to an exit code:

- 0: success, ``--help``, or a restore the user declined;
- 1: any failure, printed as one ``ERROR: ...`` line (blob steps included;
  6.0 exited 0 when rsync or tar failed);
- 2: an unknown command-line option.

The scripts pass the 6.0 keyword set (``bin_dir``, ``storage``, ``keep``,
``verbose``, ...) plus ``additional_storages``; unknown keywords are
ignored as in 6.0 (``bin_dir`` too: nothing is run from it any more).
``argv`` (keyword only) replaces ``sys.argv[1:]`` for callers that are not
scripts. Order of storages, filestorage before blobs, retention,
hooks and restore safety are decided in the core.
"""

import logging
import sys

from collective.recipe.backup import _core
from collective.recipe.backup import cli
from collective.recipe.backup.repozo.cli import fixed_now


logger = logging.getLogger("backup")

#: 6.0 ``storage`` dict keys -> ``BackupConfig`` keywords.
STORAGE_KEYS = {
    "datafs": "datafs",
    "blobdir": "blob_storage",
    "backup_location": "location",
    "snapshot_location": "snapshotlocation",
    "zip_location": "ziplocation",
    "blob_backup_location": "blobbackuplocation",
    "blob_snapshot_location": "blobsnapshotlocation",
    "blob_zip_location": "blobziplocation",
}

#: 6.0 script keywords -> ``BackupConfig`` keywords.
SETTING_KEYS = {
    "keep": "keep",
    "keep_blob_days": "keep_blob_days",
    "full": "full",
    "verbose": "debug",
    "gzip": "gzip",
    "quick": "quick",
    "only_blobs": "only_blobs",
    "backup_blobs": "backup_blobs",
    "use_rsync": "use_rsync",
    "rsync_options": "rsync_options",
    "archive_blob": "archive_blob",
    "gzip_blob": "archive_blob",
    "compress_blob": "compress_blob",
    "blob_timestamps": "blob_timestamps",
    "incremental_blobs": "incremental_blobs",
    "rsync_hard_links_on_first_copy": "rsync_hard_links_on_first_copy",
    "pre_command": "pre_command",
    "post_command": "post_command",
}


def config_kwargs(storage=None, additional_storages=(), **kwargs):
    """``BackupConfig`` keywords from the 6.0 script keywords."""
    out = {}
    for key, name in SETTING_KEYS.items():
        value = kwargs.get(key)
        if value is not None and name not in out:
            out[name] = value
    storage = storage or {}
    for key, name in STORAGE_KEYS.items():
        if storage.get(key):
            out[name] = storage[key]
    if not storage.get("blobdir") and "backup_blobs" not in out:
        out["backup_blobs"] = False
    if storage.get("alt_location"):
        out["alternative_restore_source"] = (
            "Data",
            storage["alt_location"],
            storage.get("blob_alt_location") or None,
        )
    out["additional_filestorages"] = [
        (s["storage"], s.get("datafs"), s.get("blobdir") or None)
        for s in additional_storages
    ]
    return out


def _start(kwargs, restore, argv):
    """Parse arguments, set up logging, build the config. Returns
    ``(args, config)`` or ``(args, None)`` after logging an error."""
    args = cli.parse_args(
        sys.argv[1:] if argv is None else argv, cli.program_name(), restore
    )
    cli.setup_logging(args.quiet, bool(kwargs.get("verbose")))
    return args, _call(lambda: _core.BackupConfig(**config_kwargs(**kwargs)))


class _Failed(Exception):
    """The error is logged; the script exits 1."""


def _call(fn):
    """Run one core call; any failure becomes one ``ERROR:`` line.

    Besides ``BackupError``: a wrong keyword type from a hand-edited script
    (``TypeError``/``ValueError``/``KeyError``) and a Rust panic (pyo3's
    ``PanicException`` is a ``BaseException``) are reported the same way,
    never as a traceback."""
    try:
        return fn()
    except _core.BackupError as e:
        logger.error("%s", e)
    except (TypeError, ValueError, KeyError) as e:
        logger.error("invalid script arguments: %s", e)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 - a Rust panic
        logger.error("internal error: %s: %s", type(e).__name__, e)
    raise _Failed


def _backup(mode, argv, kwargs):
    try:
        _, config = _start(kwargs, restore=False, argv=argv)
        _call(lambda: _core.backup(config, mode, now=fixed_now()))
    except _Failed:
        return 1
    return 0


def _restore(mode, argv, kwargs):
    try:
        args, config = _start(kwargs, restore=True, argv=argv)
        date = _call(lambda: cli.check_date(args.date))
        if not (args.no_prompt or kwargs.get("no_prompt")):
            filestorages, blobstorages = config.restore_targets()
            if not cli.confirm(filestorages, blobstorages):
                logger.info("Not restoring.")
                return 0
        _call(lambda: _core.restore(config, mode, date, now=fixed_now()))
    except _Failed:
        return 1
    return 0


def backup_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/backup``: incremental backup (full with ``full = true``)."""
    return _backup("standard", argv, dict(kwargs, storage=storage))


def fullbackup_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/fullbackup``: ``bin/backup`` that always makes a full backup."""
    return _backup("full", argv, dict(kwargs, storage=storage))


def snapshot_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/snapshotbackup``: a full backup into the snapshot locations."""
    return _backup("snapshot", argv, dict(kwargs, storage=storage))


def zipbackup_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/zipbackup``: one full backup plus one blob archive."""
    return _backup("zip", argv, dict(kwargs, storage=storage))


def restore_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/restore [date]``."""
    return _restore("standard", argv, dict(kwargs, storage=storage))


def snapshot_restore_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/snapshotrestore [date]``."""
    return _restore("snapshot", argv, dict(kwargs, storage=storage))


def zip_restore_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/ziprestore [date]``."""
    return _restore("zip", argv, dict(kwargs, storage=storage))


def alt_restore_main(bin_dir=None, storage=None, *, argv=None, **kwargs):
    """``bin/altrestore [date]``: restore from ``alternative_restore_source``."""
    return _restore("alt", argv, dict(kwargs, storage=storage))
