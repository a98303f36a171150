"""Stub of the native module built from the Rust core."""

import os
from pathlib import Path
from typing import Any
from typing import Literal
from typing import TypedDict
from typing import final

__version__: str

class BackupError(Exception): ...
class FileStorageError(BackupError): ...
class ConfigError(BackupError): ...

@final
class ScanResult:
    @property
    def end(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def last_tid(self) -> bytes | None: ...
    @property
    def last_commit(self) -> str | None: ...
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

# --- blobs ---

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
# --- repozo ---

REPOZO_DEFAULT_GZIP_LEVEL: int

class RepozoError(BackupError): ...
class WouldOverwriteFiles(RepozoError): ...
class NoFiles(RepozoError): ...
class VerificationFail(RepozoError): ...

@final
class BackupResult:
    @property
    def action(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def data_file(self) -> str | None: ...
    @property
    def index_file(self) -> str | None: ...
    @property
    def dat_file(self) -> str | None: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def md5(self) -> str | None: ...
    @property
    def written(self) -> int: ...
    @property
    def removed(self) -> list[str]: ...

@final
class RecoverResult:
    @property
    def files(self) -> list[str]: ...
    @property
    def bytes(self) -> int: ...
    @property
    def md5(self) -> str | None: ...
    @property
    def index_file(self) -> str | None: ...

@final
class VerifyResult:
    @property
    def files(self) -> list[str]: ...
    @property
    def bytes(self) -> int: ...

def repozo_backup(
    datafs: str | os.PathLike[str],
    repository: str | os.PathLike[str],
    *,
    full: bool = False,
    gzip: bool = False,
    quick: bool = False,
    kill_old: bool = False,
    gzip_level: int | None = None,
    progress: bool = False,
    now: float | None = None,
    create_repository: bool = False,
) -> BackupResult: ...
def repozo_recover(
    repository: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    date: str | None = None,
    verify: bool = False,
    progress: bool = False,
    now: float | None = None,
) -> RecoverResult: ...
def repozo_verify(
    repository: str | os.PathLike[str],
    *,
    quick: bool = False,
    progress: bool = False,
    now: float | None = None,
) -> VerifyResult: ...

# --- recipe ---

@final
class BackupConfig:
    def __new__(cls, **kwargs: object) -> BackupConfig: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def part_name(self) -> str: ...
    @property
    def debug(self) -> bool: ...
    @property
    def settings(self) -> dict[str, bool | int | str]: ...
    @property
    def storages(self) -> list[dict[str, str | None]]: ...
    def scripts(self) -> list[tuple[str, str]]: ...
    def probe_locations(self) -> list[str]: ...
    def restore_targets(
        self, target: str | os.PathLike[str] | None = None
    ) -> tuple[list[str], list[str]]: ...

def parse_additional_filestorages(
    text: str,
) -> list[tuple[str, str | None, str | None]]: ...
def parse_alternative_restore_source(
    text: str,
) -> tuple[str, str, str | None] | None: ...
def parse_restore_date(text: str) -> str: ...
def backup(
    config: BackupConfig,
    mode: str,
    now: float | None = None,
    dry_run: bool = False,
    *,
    progress: bool = False,
) -> None: ...
def restore(
    config: BackupConfig,
    mode: str,
    date: str | None = None,
    now: float | None = None,
    accept_blob_mismatch: bool = False,
    target: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    *,
    progress: bool = False,
    keep_prefix: str | None = None,
) -> None: ...

class _ZopeConf(TypedDict):
    datafs: str
    blob_storage: str | None
    additional_filestorages: list[tuple[str, str, str | None]]
    kind: Literal["zope", "zeo"]

def read_zope_conf(path: str | os.PathLike[str]) -> _ZopeConf: ...
def status(
    config: BackupConfig,
    *,
    now: float | None = None,
    max_age: str | int | None = None,
) -> tuple[bool, str, str]: ...
def verify(
    config: BackupConfig,
    mode: str = "standard",
    date: str | None = None,
    all: bool = False,
    now: float | None = None,
) -> None: ...
def offsite(
    config: BackupConfig,
    action: str,
    *,
    set: str | None = None,
    date: str | None = None,
) -> tuple[bool, str]: ...
