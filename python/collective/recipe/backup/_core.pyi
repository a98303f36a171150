"""Stub of the native module built from the Rust core."""

import os

__version__: str

class BackupError(Exception): ...
class FileStorageError(BackupError): ...

class ScanResult:
    @property
    def end(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def last_tid(self) -> bytes | None: ...
    @property
    def transactions(self) -> int: ...
    @property
    def objects(self) -> int: ...
    @property
    def used_index(self) -> bool: ...

def scan(path: str | os.PathLike[str], use_index: bool = True) -> ScanResult: ...
def write_index(
    datafs_path: str | os.PathLike[str], index_path: str | os.PathLike[str]
) -> int: ...

# --- blobs (issue 4) ---
from pathlib import Path
from typing import Any

_Path = str | os.PathLike[str]

class BlobError(BackupError): ...
class NoBlobBackup(BlobError): ...

def blob_backup(
    blobdir: _Path,
    location: _Path,
    *,
    fs_backup_location: _Path | None = None,
    archive: bool = False,
    compress: bool = False,
    incremental: bool = False,
    hard_links: bool = True,
    hard_links_on_first_copy: bool = False,
    timestamps: bool = True,
    full: bool = False,
    keep: int = 2,
    keep_blob_days: int = 14,
    rsync_options: str = "",
    now: str | None = None,
) -> dict[str, Any]: ...
def blob_zip_backup(
    blobdir: _Path, location: _Path, *, compress: bool = False, now: str | None = None
) -> dict[str, Any]: ...
def blob_restore(
    location: _Path,
    target: _Path,
    *,
    date: str | None = None,
    prefer_archives: bool = False,
    timestamps: bool = True,
) -> list[Path]: ...
def blob_check_restore(
    location: _Path,
    target: _Path,
    *,
    date: str | None = None,
    prefer_archives: bool = False,
    timestamps: bool = True,
) -> list[Path]: ...
def blob_cleanup(
    location: _Path,
    *,
    fs_backup_location: _Path | None = None,
    archive: bool = False,
    incremental: bool = False,
    timestamps: bool = True,
    full: bool = False,
    keep: int = 2,
    keep_blob_days: int = 14,
    dry_run: bool = False,
    now: str | None = None,
) -> dict[str, Any]: ...
def blob_list_backups(location: _Path) -> list[dict[str, Any]]: ...
