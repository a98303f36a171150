"""``bin/restore`` restores the blob backup of exactly the date of the
filestorage backup it restores (``blob_timestamps``, the default).

A blob step that fails (here: killed by SIGKILL, injected with strace
into its ``syncfs``, just before the backup would get its final name)
leaves a filestorage backup without a blob backup of its date. The restore
then refuses, naming that date and the newest date that has both, instead
of pairing the new Data.fs with older blobs; ``--accept-blob-mismatch``
does the pairing on purpose, with a warning."""

import os
import shutil
import signal
import subprocess

import pytest

from test_scripts_e2e import Site
from test_scripts_e2e import ls
from test_scripts_e2e import read
from test_scripts_e2e import stamps

STRACE = shutil.which("strace")

pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")


@pytest.fixture
def site(sample_buildout):
    return Site(sample_buildout)


def killed_backup(site):
    """Run ``bin/backup`` and SIGKILL it at its first ``syncfs``: the blob
    backup's flush before its rename into place."""
    env = dict(os.environ, CRB_REPOZO_NOW=str(site.tick()))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = subprocess.run(
        [STRACE, "-f", "-qq", "-o", "/dev/null"]
        + ["-e", "trace=syncfs", "-e", "inject=syncfs:signal=SIGKILL:when=1"]
        + [site.b.path("bin", "backup")],
        cwd=site.b.dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), p.stderr
    return p


def test_killed_blob_step_is_refused_at_restore(site):
    first = site.change()
    site.ok("backup")
    (ts1,) = stamps(site.path("backups"), ".fsz")
    second = site.change()
    killed_backup(site)
    (ts2,) = stamps(site.path("backups"), ".deltafsz")
    blobs = site.path("blobstoragebackups")
    # The interrupted blob backup has no final name.
    assert [n for n in ls(blobs) if not n.startswith(".")] == [
        f"blobstorage.{ts1}",
        "latest",
    ]

    p = site.run("restore", "-n")
    assert p.returncode == 1, p.stderr
    assert p.lines[-1] == (
        f"ERROR: No complete blob backup of {ts2} (the date of the filestorage "
        f"backup to restore) in {blobs} (there is no blob backup with that "
        f"date). The newest date with both a filestorage backup and its blob "
        f"backup is {ts1}: restore that date (e.g. bin/restore {ts1}), or pass "
        "--accept-blob-mismatch to restore an older blob backup with this "
        "filestorage backup. Nothing was changed."
    )
    assert sum(line.startswith("ERROR:") for line in p.lines) == 1
    assert site.state() == second
    # A date after both backups: the same.
    p = site.run("restore", "-n", "2999-01-01")
    assert p.returncode == 1 and f"blob backup of {ts2} " in p.lines[-1]
    assert site.state() == second

    # The mismatch on purpose: the newest Data.fs with the older blobs.
    p = site.ok("restore", "-n", "--accept-blob-mismatch")
    assert (
        f"WARNING: Restoring the blob backup of {ts1} with the filestorage "
        f"backup of {ts2} (--accept-blob-mismatch): no complete blob backup of "
        f"{ts2} in {blobs} (there is no blob backup with that date)." in p.lines
    ), p.lines
    assert site.state() == (second[0], first[1])

    # The suggested date restores a matching pair.
    site.ok("restore", "-n", ts1)
    assert site.state() == first


def test_next_backup_completes_the_missing_blob_backup(site):
    site.change()
    site.ok("backup")
    second = site.change()
    killed_backup(site)
    (ts2,) = stamps(site.path("backups"), ".deltafsz")
    # No database change since: no new filestorage file, but the blob
    # backup of ts2 does not count as made ("already exists" must not be
    # said), so it is made now.
    p = site.ok("backup")
    assert not any("already exists" in line for line in p.lines), p.lines
    assert stamps(site.path("backups"), ".deltafsz") == [ts2]
    assert f"blobstorage.{ts2}" in ls(site.path("blobstoragebackups"))
    assert not [n for n in ls(site.path("blobstoragebackups")) if n.startswith(".")]
    site.change()
    site.ok("restore", "-n", ts2)
    assert site.state() == second
    assert read(site.datafs)
