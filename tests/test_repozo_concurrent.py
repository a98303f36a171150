"""Backups while another process commits (and once packs): every backup
must recover to a Data.fs that ZODB opens and fstest accepts, whose content
is a committed prefix of the storage at the time of the backup."""

import os
import subprocess
import sys
import time

from repozo_util import T0
from repozo_util import fstest_ok
from repozo_util import read

from collective.recipe.backup import repozo

WRITER = r"""
import os, random, sys, time
import transaction, ZODB
from ZODB.FileStorage import FileStorage
path, stop, packed = sys.argv[1:4]
rnd = random.Random(5)
db = ZODB.DB(FileStorage(path))
conn = db.open()
root = conn.root()
n = 0
# Bounded: at most 1500 small commits (a few MB), throttled.
while not os.path.exists(stop) and n < 1500:
    root[n % 300] = rnd.randbytes(rnd.randrange(50, 4000))
    transaction.get().note(f"commit {n}")
    transaction.commit()
    n += 1
    time.sleep(0.003)
    if n == 150:
        db.pack(time.time())
        open(packed, "w").close()
conn.close()
db.close()
print(n)
"""


def test_backups_while_committing(tmp_path):
    datafs = tmp_path / "Data.fs"
    stop = tmp_path / "stop"
    packed = tmp_path / "packed"
    repo = tmp_path / "repo"
    repo.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(datafs), str(stop), str(packed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not datafs.exists() or os.path.getsize(datafs) < 10_000:
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.05)
        now = T0
        results = []
        for i in range(16):
            now += 1
            r = repozo.backup(datafs, repo, gzip=i % 2 == 0, quick=i % 3 != 0, _now=now)
            results.append(r.action)
            out = tmp_path / "out.fs"
            rec = repozo.recover(repo, out, verify=True, _now=now)
            assert rec.bytes == r.end
            assert fstest_ok(out) == r.end
            time.sleep(0.05)
        saw_pack = packed.exists()
    finally:
        stop.touch()
        commits = int(writer.communicate(timeout=60)[0])
    assert writer.returncode == 0
    assert commits > 150 and saw_pack, commits
    assert "incremental" in results
    # The last backup plus what was committed later: a prefix of the file.
    final = read(datafs)
    out = read(tmp_path / "out.fs")
    assert final[: len(out)] == out
