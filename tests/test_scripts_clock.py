"""The scripts take their clock from ``CRB_REPOZO_NOW`` (seconds since the
epoch), so that tests get distinct, ordered one-second backup names without
sleeping, and so that what a backup is named can be checked exactly."""

import datetime
import os

import pytest
from test_scripts_e2e import Site
from test_scripts_e2e import ls
from test_scripts_e2e import read

T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC: in the past, so "now" restores see it


def stamp(t):
    return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d-%H-%M-%S"
    )


def at(t):
    return dict(os.environ, CRB_REPOZO_NOW=str(t))


@pytest.mark.parametrize("sample_buildout", ["6"], indirect=True)
def test_backups_one_second_apart_without_sleeping(sample_buildout):
    site = Site(sample_buildout)
    first = site.change()
    first_bytes = read(site.datafs)
    site.ok("backup", env=at(T0))
    second = site.change()
    site.ok("backup", env=at(T0 + 1))
    assert second != first
    assert ls(site.path("backups")) == [
        f"{stamp(T0)}.dat",
        f"{stamp(T0)}.fsz",
        f"{stamp(T0)}.index",
        f"{stamp(T0 + 1)}.deltafsz",
        f"{stamp(T0 + 1)}.index",
    ]
    assert ls(site.path("blobstoragebackups")) == [
        f"blobstorage.{stamp(T0)}",
        f"blobstorage.{stamp(T0 + 1)}",
        "latest",
    ]
    # The same second again: refused like repozo refuses, nothing written.
    third = site.change()
    p = site.run("backup", env=at(T0 + 1))
    assert p.returncode == 1
    assert (
        f"ERROR: Cannot overwrite existing file: {site.path('backups')}/{stamp(T0 + 1)}.deltafsz"
        in p.lines
    )
    assert third != second
    # Restore to the first second, with the clock later still.
    site.ok("restore", "-n", stamp(T0), env=at(T0 + 5))
    assert read(site.datafs) == first_bytes
    assert site.state() == first
