"""The generated scripts end to end: real zc.buildout, a Data.fs and
blobstorage made by real ZODB, real backups and restores through
``bin/backup``, ``bin/restore`` and friends, and ZODB's own ``repozo`` as
the reference for the filestorage repository (see docs/scripts.rst).

Backup names have one-second resolution, and repozo refuses to overwrite a
file of the same second (so does ours). Instead of sleeping, every script
run of a ``Site`` gets its own second from a fixed clock
(``CRB_REPOZO_NOW``), starting in the past; ZODB's repozo runs through
``repozo_at.py`` with a fixed clock from the same sequence."""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

import zodbgen
from blobhelpers import shared
from blobhelpers import state
from seed_example import SEED_EXAMPLE_OPTIONS
from repozo_util import listing


REPOZO = os.path.join(os.path.dirname(sys.executable), "repozo")
REPOZO_AT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "repozo_at.py")
#: 2026-01-01 00:00:00 UTC: the sites' clocks start here, in the past, so
#: that a restore "as of now" sees every backup.
T0 = 1_767_225_600


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def ls(path):
    return listing(path) if os.path.isdir(path) else []


def stamps(directory, ext):
    return [n[: -len(ext)] for n in ls(directory) if n.endswith(ext)]


class Site:
    """A buildout whose part backs up ``var/filestorage/Data.fs`` and its
    ``blobstorage`` (both made by real ZODB)."""

    def __init__(self, b, body="", parts="backup", real_clock=False):
        self.b = b
        self.var = b.path("var")
        self.fsdir = b.path("var", "filestorage")
        self.datafs = os.path.join(self.fsdir, "Data.fs")
        self.blobdir = os.path.join(self.fsdir, "blobstorage")
        self.seed = 0
        self.now = T0
        # Numbered blob backups (zip, blob_timestamps = false) are ordered by
        # their files' mtimes, which only the real clock sets: such sites run
        # on real time and pause between backups.
        self.real_clock = real_clock
        p = b.run(
            parts,
            "[backup]\nrecipe = collective.recipe.backup\n"
            f"blob_storage = {self.blobdir}\n" + body,
        )
        assert p.returncode == 0, p.output

    def change(self, transactions=12, directory=None):
        """Commit transactions with real ZODB (blobs included); returns the
        state after them."""
        self.seed += 1
        directory = directory or self.fsdir
        zodbgen.generate(directory, transactions=transactions, seed=self.seed, undos=1)
        return self.state(directory)

    def state(self, directory=None):
        directory = directory or self.fsdir
        return (
            sha(os.path.join(directory, "Data.fs")),
            state(os.path.join(directory, "blobstorage"), mtimes=False),
        )

    def tick(self):
        """The next second of this site's clock."""
        self.now += 1
        return self.now

    def pause(self):
        if self.real_clock:
            time.sleep(1.1)

    def run(self, script, *args, env=None, **kw):
        env = dict(os.environ if env is None else env)
        if not self.real_clock:
            env.setdefault("CRB_REPOZO_NOW", str(self.tick()))
        p = self.b.script(script, *args, env=env, **kw)
        p.lines = p.stderr.splitlines()
        return p

    def ok(self, script, *args, **kw):
        p = self.run(script, *args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def path(self, *parts):
        return os.path.join(self.var, *parts)


@pytest.fixture
def site(sample_buildout):
    return Site(sample_buildout)


def repozo_recover(repository, output, date=None):
    cmd = [REPOZO, "-R", "-r", repository, "-o", output]
    if date:
        cmd += ["-D", date]
    subprocess.run(cmd, check=True, capture_output=True)
    return read(output)


@pytest.mark.parametrize("sample_buildout", ["6", "5", "4"], indirect=True)
def test_backup_change_backup_restore_first_date(site, tmp_path):
    first = site.change()
    first_bytes = read(site.datafs)
    p = site.ok("backup")
    var, datafs, blobdir = site.var, site.datafs, site.blobdir
    (ts1,) = stamps(site.path("backups"), ".fsz")
    assert p.stdout == ""
    assert p.lines == [
        f"INFO: Created {var}/backups",
        f"INFO: Created {var}/blobstoragebackups",
        f"INFO: Please wait while backing up database file: {datafs} to {var}/backups",
        "INFO: Please wait while backing up blobs from "
        f"{blobdir} to {var}/blobstoragebackups",
        f"INFO: Creating symlink from latest to blobstorage.{ts1}",
    ]
    assert ls(site.path("backups")) == [f"{ts1}.dat", f"{ts1}.fsz", f"{ts1}.index"]
    # The blob backup is named after the filestorage backup.
    assert ls(site.path("blobstoragebackups")) == [f"blobstorage.{ts1}", "latest"]

    # No change: no new filestorage file, the blob backup "already exists".
    p = site.ok("backup")
    assert ls(site.path("backups")) == [f"{ts1}.dat", f"{ts1}.fsz", f"{ts1}.index"]
    assert (
        f"INFO: Blob backup at {var}/blobstoragebackups/blobstorage.{ts1} already "
        "exists, so there were no database changes since last backup." in p.lines
    )

    second = site.change()
    assert second[0] != first[0] and second[1] != first[1]
    site.ok("backup")
    (ts2,) = stamps(site.path("backups"), ".deltafsz")
    assert ts2 > ts1
    assert ls(site.path("blobstoragebackups")) == [
        f"blobstorage.{ts1}",
        f"blobstorage.{ts2}",
        "latest",
    ]
    latest = os.readlink(site.path("blobstoragebackups", "latest"))
    assert latest == f"blobstorage.{ts2}"
    # Unchanged blobs are hard links between the two backups.
    assert shared(
        site.path("blobstoragebackups", f"blobstorage.{ts1}", "blobstorage"),
        site.path("blobstoragebackups", f"blobstorage.{ts2}", "blobstorage"),
    )

    # Restore the first date: Data.fs byte-identical to the first state and
    # to what ZODB's repozo recovers from the same repository. The live
    # Data.fs starts with that state: it is kept and cut, and the bytes
    # after it are saved beside it.
    live_bytes = read(datafs)
    assert live_bytes.startswith(first_bytes) and len(live_bytes) > len(first_bytes)
    p = site.ok("restore", "-n", ts1)
    tail = f"{datafs}.after-{ts1}"
    assert p.lines == [
        f"INFO: Date restriction: restoring state at {ts1}.",
        "INFO: Please wait while restoring database file: "
        f"{var}/backups to {datafs}",
        f"INFO: Keeping the first {len(first_bytes)} bytes of {datafs}: they are "
        "the backup's (checked: the md5 of every backup file).",
        f"INFO: Restoring blobs from {var}/blobstoragebackups to {blobdir}",
        f"INFO: Cut {datafs} to {len(first_bytes)} bytes. The "
        f"{len(live_bytes) - len(first_bytes)} bytes after them, written since "
        f"the backup, are in {tail}: to undo this restore, stop Zope or ZEO, "
        f"append that file to {datafs}, and remove {datafs}.index.",
    ]
    assert read(datafs) == first_bytes
    assert read(tail) == live_bytes[len(first_bytes):]
    os.remove(tail)
    assert site.state() == first
    # The blob directory's own mode comes back; copies, not links into the
    # backup.
    assert mode(blobdir) == mode(
        site.path("blobstoragebackups", f"blobstorage.{ts1}", "blobstorage")
    )
    assert not shared(
        blobdir, site.path("blobstoragebackups", f"blobstorage.{ts1}", "blobstorage")
    )
    ref = repozo_recover(site.path("backups"), str(tmp_path / "ref.fs"), ts1)
    assert ref == first_bytes
    assert read(datafs + ".index") == read(site.path("backups", f"{ts1}.index"))
    assert not [n for n in ls(site.fsdir) if n.startswith(".")]
    assert zodbgen.describe(datafs)["used_index"]

    # And the newest state again, without a date.
    site.ok("restore", "-n")
    assert site.state() == second
    ref = repozo_recover(site.path("backups"), str(tmp_path / "ref2.fs"))
    assert read(datafs) == ref


def test_repozo_made_repository_restores_with_bin_restore(sample_buildout, tmp_path):
    site = Site(sample_buildout, "backup_blobs = false\n")
    site.change()
    os.makedirs(site.path("backups"))
    repo = site.path("backups")

    def repozo(*args):
        subprocess.run(
            [sys.executable, REPOZO_AT, str(site.tick()), "-B", "-f", site.datafs, "-r", repo, *args],
            check=True,
            capture_output=True,
        )

    repozo("-z")
    first = read(site.datafs)
    ts1 = stamps(repo, ".fsz")[0]
    site.change()
    repozo("-z", "-Q")
    second = read(site.datafs)
    assert stamps(repo, ".deltafsz")
    with open(site.datafs, "ab") as f:
        f.write(b"damage that must go")
    site.ok("restore", "-n", ts1)
    assert read(site.datafs) == first
    site.ok("restore", "-n")
    assert read(site.datafs) == second
    # And the other way: our backup on top of repozo's chain, recovered by
    # repozo.
    site.change()
    site.ok("backup")
    assert len(stamps(repo, ".deltafsz")) == 2
    assert repozo_recover(repo, str(tmp_path / "ref.fs")) == read(site.datafs)


def test_snapshotbackup_and_snapshotrestore(site):
    first = site.change()
    p = site.ok("snapshotbackup")
    var = site.var
    assert (
        "INFO: Please wait while making snapshot backup: "
        f"{site.datafs} to {var}/snapshotbackups" in p.lines
    )
    assert (
        "INFO: Please wait while making snapshot of blobs from "
        f"{site.blobdir} to {var}/blobstoragesnapshots" in p.lines
    )
    (ts1,) = stamps(site.path("snapshotbackups"), ".fsz")
    second = site.change()
    site.ok("snapshotbackup")
    # Snapshots are full backups, never incrementals.
    assert len(stamps(site.path("snapshotbackups"), ".fsz")) == 2
    assert not stamps(site.path("snapshotbackups"), ".deltafsz")
    assert not os.path.exists(site.path("backups"))
    site.ok("snapshotrestore", "-n", ts1)
    assert site.state() == first
    site.ok("snapshotrestore", "-n")
    assert site.state() == second


def test_zipbackup_and_ziprestore(sample_buildout):
    site = Site(sample_buildout, "enable_zipbackup = true\nkeep = 3\n", real_clock=True)
    site.change()
    site.ok("zipbackup")
    site.pause()
    second = site.change()
    p = site.ok("zipbackup")
    assert p.returncode == 0
    # keep is 1 for zip backups, whatever the part says.
    (ts,) = stamps(site.path("zipbackups"), ".fsz")
    assert ls(site.path("zipbackups")) == [f"{ts}.dat", f"{ts}.fsz", f"{ts}.index"]
    assert ls(site.path("blobstoragezips")) == ["blobstorage.0.tar"]
    site.pause()
    site.change()
    site.ok("ziprestore", "-n")
    assert site.state() == second


def test_altrestore_from_moved_backups(sample_buildout, tmp_path):
    other = tmp_path / "production"
    site = Site(
        sample_buildout,
        f"alternative_restore_source = Data {other}/backups {other}/blobs\n",
    )
    first = site.change()
    site.ok("backup")
    # The production backups arrive on this machine in another place.
    other.mkdir()
    shutil.move(site.path("backups"), other / "backups")
    shutil.move(site.path("blobstoragebackups"), other / "blobs")
    shutil.rmtree(site.fsdir)
    p = site.ok("altrestore", "-n")
    assert (
        f"INFO: Please wait while restoring database file: {other}/backups to "
        f"{site.datafs}" in p.lines
    )
    assert site.state() == first


def test_fullbackup_keeps_the_newest_chains(sample_buildout):
    site = Site(sample_buildout, "enable_fullbackup = true\nkeep = 1\n")
    site.change()
    site.ok("backup")
    site.change()
    site.ok("backup")
    (ts1,) = stamps(site.path("backups"), ".fsz")
    assert len(stamps(site.path("backups"), ".deltafsz")) == 1
    last = site.change()
    p = site.ok("fullbackup")
    assert (
        "INFO: Please wait while making full backup of database file: "
        f"{site.datafs} to {site.var}/backups" in p.lines
    )
    # keep = 1: the old chain (full, incremental, .dat, .index files) is
    # gone, and so are the blob backups older than the kept full backup.
    (ts3,) = stamps(site.path("backups"), ".fsz")
    assert ts3 > ts1
    assert ls(site.path("backups")) == [f"{ts3}.dat", f"{ts3}.fsz", f"{ts3}.index"]
    assert (
        "INFO: Removed 5 file(s) belonging to old backups, the latest 1 full "
        "backups have been kept." in p.lines
    )
    assert ls(site.path("blobstoragebackups")) == [f"blobstorage.{ts3}", "latest"]
    site.change()
    site.ok("restore", "-n")
    assert site.state() == last


def test_additional_filestorages_end_to_end(sample_buildout):
    b = sample_buildout
    catalog = b.path("var", "catalog")
    site = Site(
        b,
        "additional_filestorages =\n"
        f"    catalog {catalog}/Data.fs {catalog}/blobstorage\n",
    )
    first = site.change()
    first_catalog = site.change(directory=catalog)
    p = site.ok("backup")
    var = site.var
    waits = [line for line in p.lines if "Please wait" in line]
    # Additional storages first, filestorages before blobs.
    assert waits == [
        "INFO: Please wait while backing up database file: "
        f"{catalog}/Data.fs to {var}/backups_catalog",
        "INFO: Please wait while backing up database file: "
        f"{site.datafs} to {var}/backups",
        "INFO: Please wait while backing up blobs from "
        f"{catalog}/blobstorage to {var}/blobstoragebackups_catalog",
        "INFO: Please wait while backing up blobs from "
        f"{site.blobdir} to {var}/blobstoragebackups",
    ]
    (ts_main,) = stamps(site.path("backups"), ".fsz")
    (ts_cat,) = stamps(site.path("backups_catalog"), ".fsz")
    assert ls(site.path("blobstoragebackups_catalog")) == [
        f"blobstorage.{ts_cat}",
        "latest",
    ]
    site.change()
    site.change(directory=catalog)
    site.ok("backup")
    p = site.ok("restore", "-n", max(ts_main, ts_cat))
    restoring = [line for line in p.lines if "restoring database file" in line]
    assert restoring == [
        "INFO: Please wait while restoring database file: "
        f"{var}/backups_catalog to {catalog}/Data.fs",
        "INFO: Please wait while restoring database file: "
        f"{var}/backups to {site.datafs}",
    ]
    assert site.state() == first
    assert site.state(catalog) == first_catalog


def test_blob_backup_failure_is_an_error(site):
    site.change()
    with open(site.path("blobstoragebackups"), "w") as f:
        f.write("a file where the blob backups should go")
    p = site.run("backup")
    assert p.returncode == 1
    assert p.lines[-1].startswith(f"ERROR: {site.var}/blobstoragebackups"), p.lines
    assert sum(line.startswith("ERROR:") for line in p.lines) == 1


def test_missing_blob_storage(site):
    """A blob storage that does not exist: a warning when buildout runs, an
    error for bin/backup, and bin/restore creates it only in a directory
    that exists."""
    b = site.b
    first = site.change()
    site.ok("backup")
    backups = ls(site.path("backups"))

    # A misspelt path: its parent does not exist either.
    typo = b.path("vra", "blobstorage")
    p = b.run("backup", f"[backup]\nrecipe = collective.recipe.backup\nblob_storage = {typo}\n")
    assert p.returncode == 0, p.output
    assert (
        f"backup: Blob storage {typo} does not exist, nor does {b.path('vra')}. "
        "Check the path: bin/backup fails until the blob storage exists, and "
        f"bin/restore until {b.path('vra')} does.\n" in p.output
    )
    p = site.run("backup")
    assert p.returncode == 1
    assert p.lines == [
        f"ERROR: Blob storage {typo} does not exist. Check blob_storage, or set "
        "backup_blobs = false if this site keeps no blobs. Nothing was backed up."
    ]
    assert ls(site.path("backups")) == backups
    p = site.run("restore", "-n")
    assert p.returncode == 1
    assert p.lines[-1] == (
        f"ERROR: Cannot restore blobs to {typo}: its directory {b.path('vra')} "
        f"does not exist. Check blob_storage, or create {b.path('vra')} first. "
        "Nothing was changed."
    )
    assert not os.path.exists(b.path("vra"))

    # A fresh server: the blob storage is not there yet, its directory is.
    p = b.run(
        "backup", f"[backup]\nrecipe = collective.recipe.backup\nblob_storage = {site.blobdir}\n"
    )
    assert p.returncode == 0, p.output
    assert "backup: Blob storage" not in p.output
    shutil.rmtree(site.blobdir)
    p = b.run(
        "backup", f"[backup]\nrecipe = collective.recipe.backup\nblob_storage = {site.blobdir}\n"
    )
    assert (
        f"backup: Blob storage {site.blobdir} does not exist yet. bin/backup fails "
        "until Zope or ZEO has created it; bin/restore creates it.\n" in p.output
    )
    assert site.run("backup").returncode == 1
    site.ok("restore", "-n")
    assert site.state() == first


def test_failed_blob_check_changes_nothing(site):
    site.change()
    site.ok("backup")
    now = site.change()
    shutil.rmtree(site.path("blobstoragebackups"))
    p = site.run("restore", "-n")
    assert p.returncode == 1
    assert p.lines[-1] == (
        f"ERROR: There are no backups in {site.var}/blobstoragebackups."
    )
    assert site.state() == now


def test_restore_refused_while_the_storage_is_open(site):
    from ZODB.FileStorage import FileStorage

    site.change()
    site.ok("backup")
    now = site.change()
    storage = FileStorage(site.datafs, blob_dir=site.blobdir)
    try:
        p = site.run("restore", "-n")
        assert p.returncode == 1
        assert p.lines[-1] == (
            f"ERROR: {site.datafs}.lock is locked: a Zope or ZEO process has this "
            "filestorage open. Stop it before restoring. Nothing was changed."
        )
    finally:
        storage.close()
    assert site.state() == now
    assert not [n for n in ls(site.fsdir) if n.startswith(".crb")]


def test_empty_path_and_quiet_cron(site):
    """No rsync, tar or repozo: the scripts run with an empty PATH; -q
    prints nothing on success."""
    env = {"PATH": ""}
    first = site.change()
    p = site.ok("backup", "-q", env=env)
    assert (p.stdout, p.stderr) == ("", "")
    (ts1,) = stamps(site.path("backups"), ".fsz")
    site.change()
    p = site.ok("backup", "-q", env=env)
    assert (p.stdout, p.stderr) == ("", "")
    p = site.ok("restore", "-q", "-n", ts1, env=env)
    assert (p.stdout, p.stderr) == ("", "")
    assert site.state() == first


@pytest.mark.parametrize(
    "answer, restored",
    [("yes\n", True), ("y\nYes\n", True), ("no\n", False), ("\n", False), ("", False)],
)
def test_restore_prompt_answers(site, answer, restored):
    first = site.change()
    site.ok("backup")
    second = site.change()
    p = site.ok("restore", input=answer)
    assert "Are you sure? (yes/No)? " in p.stdout
    assert site.state() == (first if restored else second)
    if not restored:
        assert p.lines == ["INFO: Not restoring."]


def test_debug_shows_the_engine_lines(sample_buildout):
    site = Site(sample_buildout, "debug = true\n")
    site.change()
    p = site.ok("backup")
    assert any(line.endswith("INFO: doing a full backup") for line in p.lines), p.lines
    p = site.ok("backup", "-q")
    assert p.stderr == ""


def test_seed_example_configuration_end_to_end(sample_buildout, tmp_path):
    """The seed's example part (full, keep, plain .fs files, debug, hooks)
    running for real."""
    site = Site(sample_buildout, SEED_EXAMPLE_OPTIONS)
    repo = sample_buildout.path("myproject")
    states = []
    for _ in range(4):
        states.append(site.change(transactions=4))
        p = site.ok("backup")
        assert p.stdout == (
            "Can I have a backup?\nThanks a lot for the backup.\nWe are done.\n"
        )
    # full = true and keep = 3: three plain full backups, no incrementals.
    fulls = stamps(repo, ".fs")
    assert len(fulls) == 3
    assert not [n for n in ls(repo) if n.endswith(("z", ".deltafs"))]
    assert ls(site.path("blobstoragebackups")) == [
        f"blobstorage.{ts}" for ts in fulls
    ] + ["latest"]
    # debug: times on every record, and the engine's lines.
    records = [line for line in p.lines if " INFO: " in line]
    assert records and all(line[:4].isdigit() for line in records), p.lines
    assert any(line.endswith(" INFO: doing a full backup") for line in records)
    p = site.ok("restore", "-n", fulls[0])
    assert site.state() == states[1]
    ref = repozo_recover(repo, str(tmp_path / "ref.fs"), fulls[0])
    assert read(site.datafs) == ref


def test_incremental_blob_archives_restore_to_a_date(sample_buildout):
    site = Site(
        sample_buildout,
        "archive_blob = true\ncompress_blob = true\nincremental_blobs = true\n",
    )
    first = site.change()
    live_mode = mode(site.blobdir)
    site.ok("backup")
    (ts1,) = stamps(site.path("backups"), ".fsz")
    second = site.change()
    site.ok("backup")
    (ts2,) = stamps(site.path("backups"), ".deltafsz")
    assert ls(site.path("blobstoragebackups")) == [
        f"blobstorage.{ts1}.snar",
        f"blobstorage.{ts1}.tar.gz",
        f"blobstorage.{ts2}.delta.tar.gz",
    ]
    p = site.ok("restore", "-n", ts1)
    assert site.state() == first
    p = site.ok("restore", "-n")
    assert "INFO: Found 2 incremental backups to restore." in p.lines
    assert site.state() == second
    assert mode(site.blobdir) == live_mode


def test_broken_blob_archive_changes_nothing(sample_buildout):
    """The filestorage restores fine, the blob archive does not: neither is
    swapped in (6.0 had replaced the Data.fs by then)."""
    site = Site(sample_buildout, "archive_blob = true\n")
    site.change()
    site.ok("backup")
    now = site.change()
    (tar,) = [n for n in ls(site.path("blobstoragebackups")) if n.endswith(".tar")]
    tar = site.path("blobstoragebackups", tar)
    with open(tar, "r+b") as f:
        f.truncate(os.path.getsize(tar) // 2)
    p = site.run("restore", "-n")
    assert p.returncode == 1
    assert p.lines[-1].startswith(f"ERROR: {tar}"), p.lines
    assert site.state() == now
    assert not [n for n in ls(site.fsdir) if n.startswith(".")]


def test_date_before_the_first_backup_changes_nothing(site):
    site.change()
    site.ok("backup")
    now = site.change()
    p = site.run("restore", "-n", "2000-01-01")
    assert p.returncode == 1
    assert p.lines[-1] == "ERROR: No files in repository before 2000-01-01-00-00-00"
    assert site.state() == now


def test_only_blobs(sample_buildout):
    site = Site(sample_buildout, "only_blobs = true\n")
    first = site.change()
    site.ok("backup")
    assert not os.path.exists(site.path("backups"))
    (backup,) = [n for n in ls(site.path("blobstoragebackups")) if n != "latest"]
    second = site.change()
    site.ok("restore", "-n")
    # Blobs only: the Data.fs stays as it is.
    assert site.state() == (second[0], first[1])
    assert backup.startswith("blobstorage.")


def test_numbered_copies_without_rsync(sample_buildout):
    """blob_timestamps = false and use_rsync = false: rotated .0/.1
    directories holding independent copies."""
    site = Site(
        sample_buildout, "blob_timestamps = false\nuse_rsync = false\n", real_clock=True
    )
    site.change()
    site.ok("backup")
    site.pause()
    second = site.change()
    p = site.ok("backup")
    assert "INFO: Renaming blobstorage.0 to blobstorage.1." in p.lines
    backups = site.path("blobstoragebackups")
    assert ls(backups) == ["blobstorage.0", "blobstorage.1"]
    assert not shared(
        os.path.join(backups, "blobstorage.0", "blobstorage"),
        os.path.join(backups, "blobstorage.1", "blobstorage"),
    )
    site.pause()
    site.change()
    site.ok("restore", "-n")
    assert site.state() == second


def test_first_copy_hard_linked_to_the_live_blobs(sample_buildout):
    site = Site(sample_buildout, "rsync_hard_links_on_first_copy = true\n")
    site.change()
    site.ok("backup")
    (backup,) = [n for n in ls(site.path("blobstoragebackups")) if n != "latest"]
    linked = shared(
        site.blobdir, site.path("blobstoragebackups", backup, "blobstorage")
    )
    assert linked and all(n.endswith(".blob") or n == ".layout" for n in linked)


def test_mixed_prefixes_stop_the_backup(site):
    site.change()
    os.makedirs(site.path("blobstoragebackups", "otherblobs.2026-01-01-00-00-00"))
    p = site.run("backup")
    assert p.returncode == 1
    assert p.lines[-1] == (
        "ERROR: Different backup prefixes found in "
        f"{site.var}/blobstoragebackups (blobstorage, otherblobs). Are you mixing "
        "two backups in one directory? For safety we will exit, because we "
        "cannot get a correct sort order."
    )


def test_named_part_scripts_and_locations(sample_buildout):
    b = sample_buildout
    fsdir = b.path("var", "filestorage")
    p = b.run(
        "plonebackup",
        "[plonebackup]\nrecipe = collective.recipe.backup\n"
        f"blob_storage = {fsdir}/blobstorage/\n",  # a trailing slash
    )
    assert p.returncode == 0, p.output
    zodbgen.generate(fsdir, transactions=8, seed=1, undos=1)
    before = sha(os.path.join(fsdir, "Data.fs"))
    p = b.script("plonebackup")
    assert p.returncode == 0, p.stderr
    assert ls(b.path("var", "plonebackups"))
    # The backup is named after the directory, not ".<stamp>" (6.0 named it after the empty last component).
    blob_backups = ls(b.path("var", "plonebackup-blobstorages"))
    (backup,) = [n for n in blob_backups if n != "latest"]
    assert backup.startswith("blobstorage.")
    zodbgen.generate(fsdir, transactions=3, seed=2, undos=1)
    p = b.script("plonebackup-restore", "-n")
    assert p.returncode == 0, p.stderr
    assert sha(os.path.join(fsdir, "Data.fs")) == before


def test_archive_blob_restores_directory_backups(sample_buildout):
    """Backups made as directories restore after switching to
    archive_blob = true (6.0 did not)."""
    site = Site(sample_buildout)
    first = site.change()
    site.ok("backup")
    p = site.b.run(
        "backup",
        "[backup]\nrecipe = collective.recipe.backup\n"
        f"blob_storage = {site.blobdir}\narchive_blob = true\n",
    )
    assert p.returncode == 0, p.output
    site.change()
    site.ok("restore", "-n", stamps(site.path("backups"), ".fsz")[0])
    assert site.state() == first


def test_altrestore_to_a_future_date(sample_buildout):
    """altrestore reads the alternative source with a date after every
    backup (6.0's altrestore.rst): the newest state before it."""
    var = sample_buildout.path("var")
    site = Site(
        sample_buildout,
        f"alternative_restore_source = Data {var}/prod {var}/prod-blobs\n",
    )
    first = site.change()
    site.ok("backup")
    # Production's backups, copied to this machine.
    shutil.copytree(site.path("backups"), site.path("prod"))
    shutil.copytree(
        site.path("blobstoragebackups"), site.path("prod-blobs"), symlinks=True
    )
    site.change()
    site.ok("backup")
    site.ok("altrestore", "-n", "2999-12-31")
    assert site.state() == first


def test_restore_from_a_read_only_backup_disk(site, tmp_path):
    """The backup locations mounted read-only (a restore on a new server,
    from the old one's disk): the restore has nothing to lock against and
    restores. Run in a private mount namespace (unshare), as root."""
    first = site.change()
    site.ok("backup")
    site.change()
    locations = [site.path("backups"), site.path("blobstoragebackups")]
    mounts = " && ".join(
        f"mount --bind {d} {d} && mount -o remount,ro,bind {d}" for d in locations
    )
    script = f"{mounts} && touch {locations[0]}/probe 2>/dev/null; echo probe=$?; exec \"$0\" -n"
    env = dict(os.environ, CRB_REPOZO_NOW=str(site.tick()))
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, site.b.path("bin", "restore")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "probe=1" in p.stdout, (p.stdout, p.stderr)  # really read-only
    assert p.returncode == 0, p.stderr
    assert site.state() == first


def test_restore_waits_for_a_backup_location_in_use(site):
    """A restore reads the backup locations under their lock: while another
    run holds one, it waits (here 1 s), then refuses in one line and changes
    nothing."""
    import fcntl

    site.change()
    site.ok("backup")
    now = site.change()
    with open(site.path("backups", ".crb.lock"), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        p = site.run("restore", "-n", env=dict(os.environ, CRB_LOCK_TIMEOUT="1"))
    assert p.returncode == 1
    assert p.lines[-1].startswith(f"ERROR: {site.path('backups')} is in use by another backup")
    assert site.state() == now
