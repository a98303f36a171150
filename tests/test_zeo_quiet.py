"""Cron stays quiet on a real ZEO deployment.

A ZEO server (ZEO's own ``runzeo``, on loopback) serves a FileStorage with
blobs; a client commits blobs through it while the server keeps running, as
in production. ``bin/backup -q`` must then print nothing at all: anything it
prints becomes a cron mail every night. The server is first started and
stopped once before any commit, which leaves the ``Data.fs.index`` of an
empty storage (saved at position 4) that ZODB itself will not use.
"""

import os
import socket
import subprocess
import sys
import time

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Zeo:
    def __init__(self, var, port):
        self.port = port
        self.conf = os.path.join(var, "zeo.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"""\
<zeo>
  address 127.0.0.1:{port}
</zeo>
<filestorage 1>
  path {var}/filestorage/Data.fs
  blob-dir {var}/blobstorage
</filestorage>
"""
            )
        self.proc = None

    def start(self):
        runzeo = os.path.join(os.path.dirname(sys.executable), "runzeo")
        self.proc = subprocess.Popen(
            [runzeo, "-C", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, "runzeo exited"
                time.sleep(0.1)
        raise AssertionError("runzeo did not listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def commit_blobs(port, client_blobs, count, start):
    import transaction
    import ZEO
    from ZODB.blob import Blob

    db = ZEO.DB(("127.0.0.1", port), blob_dir=client_blobs, shared_blob_dir=False)
    try:
        conn = db.open()
        root = conn.root()
        for i in range(start, start + count):
            blob = Blob()
            with blob.open("w") as f:
                f.write(os.urandom(2000 + i))
            root[f"blob{i}"] = blob
            root[f"text{i}"] = "x" * (100 + i)
            transaction.commit()
        conn.close()
    finally:
        db.close()


@pytest.fixture
def zeo_site(sample_buildout, tmp_path):
    b = sample_buildout
    var = b.path("var")
    os.makedirs(os.path.join(var, "filestorage"))
    os.makedirs(os.path.join(var, "blobstorage"), mode=0o700)
    zeo = Zeo(var, free_port())
    # Started and stopped once with nothing committed: the index of an
    # empty storage is left behind.
    zeo.start()
    zeo.stop()
    assert os.path.exists(os.path.join(var, "filestorage", "Data.fs.index"))
    zeo.start()
    try:
        yield b, zeo, str(tmp_path / "client-blobs")
    finally:
        zeo.stop()


def test_backup_q_prints_nothing_with_a_live_zeo_server(zeo_site):
    b, zeo, client_blobs = zeo_site
    p = b.run(
        "backup",
        "[backup]\nrecipe = collective.recipe.backup\n"
        "blob_storage = ${buildout:directory}/var/blobstorage\n",
    )
    assert p.returncode == 0, p.output
    commit_blobs(zeo.port, client_blobs, 5, 0)
    now = int(time.time())
    for round_ in range(3):
        # One-second backup names: each run gets its own second.
        r = b.script("backup", "-q", env=dict(os.environ, CRB_REPOZO_NOW=str(now + round_)))
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stderr
        commit_blobs(zeo.port, client_blobs, 3, 10 * (round_ + 1))
    backups = os.listdir(b.path("var", "backups"))
    assert [n for n in backups if n.endswith(".fsz")]
    assert len([n for n in backups if n.endswith(".deltafsz")]) == 2
    # Without -q the same run says what it did, and only at INFO.
    r = b.script("backup", env=dict(os.environ, CRB_REPOZO_NOW=str(now + 3)))
    assert r.returncode == 0
    assert r.stderr and all(line.startswith("INFO: ") for line in r.stderr.splitlines()), r.stderr
