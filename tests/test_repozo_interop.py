"""Interoperability with ZODB's repozo 6.4: either tool backs up into, and
recovers and verifies, a repository written by the other, byte for byte.

Databases are made by real ZODB (zodbgen); backups are named after fixed
moments (``at(n)``) so both tools can add to the same chain without sleeping.
"""

import os
import shutil
import subprocess

import pytest
import zodbgen
from repozo_util import at
from repozo_util import committed
from repozo_util import listing
from repozo_util import md5
from repozo_util import ok
from repozo_util import ours
from repozo_util import read
from repozo_util import stamp
from repozo_util import theirs

TOOLS = {"ours": ours, "theirs": theirs}


@pytest.fixture
def db(make_storage):
    return make_storage("db", transactions=60, size="600K", undos=2, blobs=False)


def grow(info, n=20, seed=7):
    """Commit ``n`` more transactions to the storage of ``info``."""
    return zodbgen.generate(
        os.path.dirname(info["path"]), transactions=n, undos=0, blobs=False, seed=seed
    )


def recover_with(tool, repo, out, *extra, now=None):
    ok(tool("-R", "-r", repo, "-o", out, *extra, now=now))
    return read(out)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("quick", [False, True], ids=["default", "quick"])
def test_our_chain_recovered_by_repozo(db, tmp_path, gzip, quick):
    repo = tmp_path / "repo"
    repo.mkdir()
    z = ["-z"] if gzip else []
    q = ["-Q"] if quick else []
    ok(ours("-B", "-r", repo, "-f", db["path"], *z, *q, now=at(0)))
    grow(db)
    ok(ours("-B", "-r", repo, "-f", db["path"], *z, *q, now=at(1)))
    grow(db, seed=8)
    ok(ours("-B", "-r", repo, "-f", db["path"], *z, *q, now=at(2)))
    ext = "z" if gzip else ""
    assert listing(repo) == [
        f"{stamp(at(0))}.dat",
        f"{stamp(at(0))}.fs{ext}",
        f"{stamp(at(0))}.index",
        f"{stamp(at(1))}.deltafs{ext}",
        f"{stamp(at(1))}.index",
        f"{stamp(at(2))}.deltafs{ext}",
        f"{stamp(at(2))}.index",
    ]
    expected = committed(db["path"])
    assert recover_with(theirs, repo, tmp_path / "theirs.fs") == expected
    assert recover_with(theirs, repo, tmp_path / "theirs-w.fs", "-w") == expected
    # The index repozo restored is ours, and equals ZODB's own.
    assert read(tmp_path / "theirs.fs.index") == read(db["path"] + ".index")
    ok(theirs("-V", "-r", repo))
    ok(theirs("-V", "-Q", "-r", repo))


def test_verbose_log_lines(db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    data = committed(db["path"])
    b = ok(ours("-B", "-v", "-r", repo, "-f", db["path"], now=at(0)))
    r = ok(ours("-R", "-v", "-r", repo, "-o", tmp_path / "out.fs", now=at(1)))
    v = ok(ours("-V", "-v", "-r", repo, now=at(1)))
    name = f"{repo}/{stamp(at(0))}"
    assert b.stderr.splitlines() == [
        f"looking for files between last full backup and {stamp(at(0))}...",
        "no files found",
        "doing a full backup",
        "writing index",
        f"writing full backup: {len(data)} bytes to {name}.fs",
    ]
    assert r.stderr.splitlines() == [
        f"looking for files between last full backup and {stamp(at(1))}...",
        f"files needed to recover state as of {stamp(at(1))}:",
        f"\t{name}.fs",
        f"Recovering file to {tmp_path}/out.fs",
        f"Recovered {len(data)} bytes, md5: {md5(data)}",
        f"Restoring index file {name}.index to {tmp_path}/out.fs.index",
    ]
    assert v.stderr.splitlines()[-1] == f"Verifying {name}.fs"


def test_dat_lines_are_repozos(db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    ok(ours("-B", "-r", repo, "-f", db["path"], now=at(0)))
    first = committed(db["path"])
    grow(db)
    ok(ours("-B", "-r", repo, "-f", db["path"], now=at(1)))
    second = committed(db["path"])
    dat = (repo / f"{stamp(at(0))}.dat").read_text()
    assert dat == (
        f"{repo}/{stamp(at(0))}.fs 0 {len(first)} {md5(first)}\n"
        f"{repo}/{stamp(at(1))}.deltafs {len(first)} {len(second)} {md5(second[len(first):])}\n"
    )


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_repozo_chain_recovered_by_us(db, tmp_path, gzip):
    repo = tmp_path / "repo"
    repo.mkdir()
    z = ["-z"] if gzip else []
    ok(theirs("-B", "-r", repo, "-f", db["path"], *z, now=at(0)))
    grow(db)
    ok(theirs("-B", "-r", repo, "-f", db["path"], *z, now=at(1)))
    expected = committed(db["path"])
    assert recover_with(ours, repo, tmp_path / "a.fs") == expected
    assert recover_with(ours, repo, tmp_path / "b.fs", "-w") == expected
    assert read(tmp_path / "a.fs.index") == read(repo / f"{stamp(at(1))}.index")
    ok(ours("-V", "-r", repo))
    ok(ours("-V", "-Q", "-r", repo))
    # To stdout, as repozo does without -o.
    proc = ours("-R", "-r", repo, binary=True)
    assert proc.returncode == 0 and proc.stdout == expected


@pytest.mark.parametrize(
    "sequence",
    [("theirs", "ours", "theirs"), ("ours", "theirs", "ours")],
    ids=["repozo-ours-repozo", "ours-repozo-ours"],
)
@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_mixed_chains(db, tmp_path, sequence, gzip):
    repo = tmp_path / "repo"
    repo.mkdir()
    z = ["-z"] if gzip else []
    for i, tool in enumerate(sequence):
        if i:
            grow(db, seed=10 + i)
        ok(TOOLS[tool]("-B", "-r", repo, "-f", db["path"], *z, now=at(i)))
    names = listing(repo)
    assert sum(n.endswith(".dat") for n in names) == 1, names
    assert sum(".delta" in n for n in names) == 2, names
    expected = committed(db["path"])
    for name, tool in TOOLS.items():
        assert recover_with(tool, repo, tmp_path / f"{name}.fs") == expected
        assert recover_with(tool, repo, tmp_path / f"{name}-w.fs", "-w") == expected
        ok(tool("-V", "-r", repo))


@pytest.mark.parametrize("quick", [False, True], ids=["default", "quick"])
def test_nothing_to_do_matches_repozo(db, tmp_path, quick):
    repo = tmp_path / "repo"
    repo.mkdir()
    q = ["-Q"] if quick else []
    ok(theirs("-B", "-r", repo, "-f", db["path"], now=at(0)))
    proc = ok(ours("-B", "-v", "-r", repo, "-f", db["path"], *q, now=at(1)))
    assert "No changes, nothing to do" in proc.stderr.splitlines()
    assert len(listing(repo)) == 3


def test_index_equals_zodbs(make_storage, tmp_path):
    """Our .index equals the Data.fs.index ZODB saved, also for a packed
    storage with undo records and when we have to scan (no Data.fs.index)."""
    info = make_storage("p", transactions=80, size="800K", undos=3, pack=True, blobs=False)
    zodb_index = read(info["path"] + ".index")
    repo = tmp_path / "repo"
    repo.mkdir()
    ok(ours("-B", "-r", repo, "-f", info["path"], now=at(0)))
    assert read(repo / f"{stamp(at(0))}.index") == zodb_index
    os.remove(info["path"] + ".index")
    ok(ours("-B", "-F", "-r", repo, "-f", info["path"], now=at(1)))
    assert read(repo / f"{stamp(at(1))}.index") == zodb_index


def test_gzip_readable_by_python(db, tmp_path):
    import gzip

    repo = tmp_path / "repo"
    repo.mkdir()
    ok(ours("-B", "-z", "-r", repo, "-f", db["path"], now=at(0)))
    data = gzip.decompress(read(repo / f"{stamp(at(0))}.fsz"))
    assert data == committed(db["path"])
    # Several members (parallel compression), each with our extra field.
    raw = read(repo / f"{stamp(at(0))}.fsz")
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"CR"
    if shutil.which("gzip"):
        proc = subprocess.run(["gzip", "-dc"], input=raw, capture_output=True)
        assert proc.returncode == 0 and proc.stdout == data


def test_date_selects_snapshot(db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    snapshots = []
    for i in range(4):
        if i:
            grow(db, n=5, seed=20 + i)
        tool = ours if i % 2 == 0 else theirs
        ok(tool("-B", "-r", repo, "-f", db["path"], "-Q", now=at(i * 3600)))
        snapshots.append(committed(db["path"]))
    for i, snap in enumerate(snapshots):
        date = stamp(at(i * 3600))
        for name, tool in TOOLS.items():
            out = tmp_path / f"{name}-{i}.fs"
            assert recover_with(tool, repo, out, "-D", date) == snap, (name, i)
    # A date before the first backup of the day's hour: nothing.
    proc = ours("-R", "-r", repo, "-o", tmp_path / "x.fs", "-D", stamp(at(-1)))
    assert (proc.returncode, proc.stderr) == (1, f"No files in repository before {stamp(at(-1))}\n")


@pytest.mark.parametrize("quick", [False, True], ids=["default", "quick"])
def test_pack_forces_full_and_kill_old(make_storage, tmp_path, quick):
    info = make_storage("p", transactions=60, size="600K", undos=2, blobs=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    q = ["-Q"] if quick else []
    ok(ours("-B", *q, "-r", repo, "-f", info["path"], now=at(0)))
    grow(info, n=5)
    ok(ours("-B", *q, "-r", repo, "-f", info["path"], now=at(1)))
    info = zodbgen.generate(
        os.path.dirname(info["path"]), transactions=5, undos=0, blobs=False, pack=True, seed=3
    )
    proc = ok(ours("-B", "-v", *q, "-k", "-r", repo, "-f", info["path"], now=at(2)))
    lines = proc.stderr.splitlines()
    assert (
        "file shrunk, possibly because of a pack (full backup)" in lines
        or "file changed, possibly because of a pack (full backup)" in lines
    ), proc.stderr
    assert "removing old backup file %s.fs (and .dat / .index)" % stamp(at(0)) in lines
    assert listing(repo) == [f"{stamp(at(2))}.dat", f"{stamp(at(2))}.fs", f"{stamp(at(2))}.index"]
    assert recover_with(theirs, repo, tmp_path / "out.fs") == committed(info["path"])
