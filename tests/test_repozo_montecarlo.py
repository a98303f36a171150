"""The Monte Carlo scenario of ZODB's own repozo tests, on our engine.

Rounds of random OOBTree mutations with occasional packs; a quick backup
each round (gzip or not, at random); after each round the recovered file
must equal the Data.fs byte for byte; at the end, dated snapshots must come
back with ``date=``. Time is injected (``_now``), one second per backup.
"""

import random

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from repozo_util import T0
from repozo_util import fstest_ok
from repozo_util import read
from repozo_util import stamp

from collective.recipe.backup import repozo

ROUNDS = 40
MUTATIONS = 60


@pytest.mark.parametrize("seed", [0, 1])
def test_via_monte_carlo(tmp_path, seed):
    import ZODB
    from ZODB.FileStorage import FileStorage

    rnd = random.Random(seed)
    datafs = tmp_path / "Data.fs"
    repo = tmp_path / "repo"
    repo.mkdir()
    db = ZODB.DB(FileStorage(str(datafs)))
    snapshots = []
    actions = set()
    try:
        conn = db.open()
        root = conn.root()
        root["tree"] = OOBTree()
        transaction.commit()
        now = T0
        for i in range(ROUNDS):
            tree = root["tree"]
            for _ in range(MUTATIONS):
                key = rnd.randrange(500)
                if key in tree and rnd.random() < 0.3:
                    del tree[key]
                else:
                    tree[key] = rnd.randbytes(rnd.randrange(1, 400))
            transaction.commit()
            if rnd.random() < 0.1:
                db.pack()
            now += 1
            result = repozo.backup(
                datafs, repo, gzip=rnd.random() < 0.5, quick=rnd.random() < 0.7, _now=now
            )
            actions.add(result.action)
            if i % 9 == 0:
                snapshots.append((stamp(now), read(datafs)))
            out = tmp_path / "out.fs"
            repozo.recover(repo, out, verify=rnd.random() < 0.5, _now=now)
            assert read(out) == read(datafs), i
        conn.close()
    finally:
        db.close()
    assert {"full", "incremental"} <= actions
    for date, data in snapshots:
        out = tmp_path / f"{date}.fs"
        repozo.recover(repo, out, date=date, _now=now)
        assert read(out) == data, date
        fstest_ok(out)
