"""Every error path of the command line: exact message and exit code.

Where repozo handles the case, ours must print the same line with the same
exit code (compared by running both). Where repozo crashes with a traceback
or silently writes something wrong, ours prints one line and exits 1
(documented in CHANGES.rst).
"""

import gzip
import os

import pytest
import zodbgen
from repozo_util import at
from repozo_util import committed
from repozo_util import listing
from repozo_util import ok
from repozo_util import ours
from repozo_util import read
from repozo_util import stamp
from repozo_util import theirs


@pytest.fixture
def db(make_storage):
    return make_storage("db", transactions=40, size="300K", undos=1, blobs=False)


@pytest.fixture
def chain(db, tmp_path):
    """A repository ``repo`` (relative to tmp_path) with a full backup and
    two incrementals, made by us, plain or gzip."""

    def make(gz=False):
        repo = tmp_path / "repo"
        repo.mkdir()
        z = ["-z"] if gz else []
        for i in range(3):
            if i:
                zodbgen.generate(
                    os.path.dirname(db["path"]), transactions=5, undos=0, blobs=False, seed=i
                )
            ok(ours("-B", *z, "-r", "repo", "-f", db["path"], now=at(i), cwd=tmp_path))
        return repo

    return make


def both(*args, cwd, now=None):
    """Run both tools; return ((rc, stderr) ours, (rc, stderr) theirs)."""
    o = ours(*args, cwd=cwd, now=now)
    t = theirs(*args, cwd=cwd, now=now)
    assert "Traceback" not in o.stderr
    return (o.returncode, o.stderr), (t.returncode, t.stderr)


def same(*args, cwd, now=None, expected=None):
    o, t = both(*args, cwd=cwd, now=now)
    assert o == t
    if expected is not None:
        assert o == (1, expected + "\n")


@pytest.mark.parametrize("mode", [["-B", "-f", "db/Data.fs"], ["-R", "-o", "out.fs"], ["-V"]])
def test_missing_repository(db, tmp_path, mode):
    same(
        *mode,
        "-r",
        "nonexist",
        cwd=tmp_path,
        expected="[Errno 2] No such file or directory: 'nonexist'",
    )


def test_missing_datafs(tmp_path):
    (tmp_path / "repo").mkdir()
    same("-B", "-r", "repo", "-f", "nonexist.fs", cwd=tmp_path, now=at(0))


def test_recover_no_files(tmp_path):
    (tmp_path / "repo").mkdir()
    same("-R", "-r", "repo", "-o", "out.fs", cwd=tmp_path, expected="No files in repository")
    same(
        "-R",
        "-r",
        "repo",
        "-o",
        "out.fs",
        "-D",
        "2024-01-01",
        cwd=tmp_path,
        expected="No files in repository before 2024-01-01",
    )
    assert listing(tmp_path / "repo") == []
    assert not (tmp_path / "out.fs").exists()


def test_verify_no_files(tmp_path):
    (tmp_path / "repo").mkdir()
    same("-V", "-r", "repo", cwd=tmp_path, expected="No files in repository")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_would_overwrite(db, tmp_path, gz):
    (tmp_path / "repo").mkdir()
    z = ["-z"] if gz else []
    ok(ours("-B", "-F", *z, "-r", "repo", "-f", db["path"], now=at(0), cwd=tmp_path))
    before = {n: read(tmp_path / "repo" / n) for n in listing(tmp_path / "repo")}
    ext = ".fsz" if gz else ".fs"
    same(
        "-B",
        "-F",
        *z,
        "-r",
        "repo",
        "-f",
        db["path"],
        cwd=tmp_path,
        now=at(0),
        expected=f"Cannot overwrite existing file: repo/{stamp(at(0))}{ext}",
    )
    # Nothing written, nothing left behind (repozo rewrote the .index).
    o = ours("-B", "-F", *z, "-r", "repo", "-f", db["path"], cwd=tmp_path, now=at(0))
    assert o.returncode == 1
    assert {n: read(tmp_path / "repo" / n) for n in listing(tmp_path / "repo")} == before


def gzip_bytes(data):
    return gzip.compress(data)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("damage", ["missing", "size", "checksum"])
def test_verify_failures_like_repozo(chain, tmp_path, gz, damage):
    repo = chain(gz)
    ext = "deltafsz" if gz else "deltafs"
    victim = repo / f"{stamp(at(1))}.{ext}"
    data = gzip.decompress(read(victim)) if gz else read(victim)
    if damage == "missing":
        victim.unlink()
        msg = f"repo/{victim.name} is missing"
    elif damage == "size":
        data = data[:-1]
        msg = f"repo/{victim.name} is {len(data)} bytes{' (when uncompressed)' if gz else ''}, should be {len(data) + 1} bytes"
    else:
        data = data[:-1] + bytes([data[-1] ^ 1])
        msg = None
    if damage != "missing":
        victim.write_bytes(gzip_bytes(data) if gz else data)
    o, t = both("-V", "-r", "repo", cwd=tmp_path)
    assert o == t
    assert o[0] == 1
    if msg:
        assert o[1] == msg + "\n"
    else:
        assert o[1].startswith(f"repo/{victim.name} has checksum ")
        assert ("(when uncompressed) instead of" in o[1]) == gz
    if damage == "checksum":
        # -Q checks sizes only: both pass.
        assert both("-V", "-Q", "-r", "repo", cwd=tmp_path) == ((0, ""), (0, ""))


@pytest.mark.parametrize("damage", ["size", "checksum"])
def test_recover_with_verify_failures_like_repozo(chain, tmp_path, damage):
    repo = chain()
    victim = repo / f"{stamp(at(1))}.deltafs"
    data = read(victim)
    data = data[:-1] if damage == "size" else data[:-1] + bytes([data[-1] ^ 1])
    victim.write_bytes(data)
    o, t = both("-R", "-w", "-r", "repo", "-o", "out.fs", cwd=tmp_path)
    assert o == t and o[0] == 1
    if damage == "size":
        assert o[1] == f"repo/{victim.name} is {len(data)} bytes, should be {len(data) + 1} bytes\n"
    else:
        assert o[1].startswith(f"repo/{victim.name} has checksum ")


def test_verify_missing_dat_like_repozo(chain, tmp_path):
    repo = chain()
    (repo / f"{stamp(at(0))}.dat").unlink()
    same(
        "-V",
        "-r",
        "repo",
        cwd=tmp_path,
        expected=f"[Errno 2] No such file or directory: 'repo/{stamp(at(0))}.dat'",
    )


# --- Where we deliberately differ from repozo ---


def test_empty_datafs_is_one_line(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "Data.fs").write_bytes(b"")
    proc = ours("-B", "-r", "repo", "-f", "Data.fs", cwd=tmp_path, now=at(0))
    assert (proc.returncode, proc.stderr) == (
        1,
        "Data.fs: file is empty (0 bytes), not a FileStorage\n",
    )
    assert listing(tmp_path / "repo") == []
    # repozo: AssertionError traceback, and litter in the repository.
    t = theirs("-B", "-r", "repo", "-f", "Data.fs", cwd=tmp_path, now=at(0))
    assert t.returncode == 1 and "Traceback" in t.stderr


def test_bad_magic_is_one_line(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "Data.fs").write_bytes(b"FS21" + b"\0" * 100)
    proc = ours("-B", "-r", "repo", "-f", "Data.fs", cwd=tmp_path, now=at(0))
    assert (
        proc.returncode == 1
        and proc.stderr.startswith("Data.fs: ")
        and proc.stderr.count("\n") == 1
    )
    assert listing(tmp_path / "repo") == []


@pytest.mark.parametrize("date", ["zzz", "2024-1-5", "2024", "2024-01-05 10:00", "2024-13-01"])
def test_malformed_date(chain, tmp_path, date):
    chain()
    proc = ours("-R", "-r", "repo", "-o", "out.fs", "-D", date, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"invalid date {date!r}: expected yyyy-mm-dd[-hh[-mm[-ss]]] (UTC)\n".replace("'", '"'),
    )
    assert not (tmp_path / "out.fs").exists()


@pytest.mark.parametrize("mode", ["verify", "recover"])
def test_truncated_gzip(chain, tmp_path, mode):
    repo = chain(gz=True)
    victim = repo / f"{stamp(at(1))}.deltafsz"
    victim.write_bytes(read(victim)[:-20])
    (tmp_path / "out.fs").write_bytes(b"old database")
    args = ["-V"] if mode == "verify" else ["-R", "-o", "out.fs"]
    proc = ours(*args, "-r", "repo", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"repo/{victim.name} cannot be decompressed: truncated gzip file\n",
    )
    assert read(tmp_path / "out.fs") == b"old database"
    assert not (tmp_path / "out.fs.part").exists()
    # repozo: EOFError traceback.
    t = theirs(*args, "-r", "repo", cwd=tmp_path)
    assert t.returncode == 1 and "EOFError" in t.stderr


def test_not_gzip(chain, tmp_path):
    repo = chain(gz=True)
    victim = repo / f"{stamp(at(2))}.deltafsz"
    victim.write_bytes(b"garbage, not gzip")
    proc = ours("-V", "-r", "repo", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"repo/{victim.name} cannot be decompressed: ")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("mode", [["-V"], ["-R", "-o", "out.fs"], ["-B", "-Q", "-f", "db/Data.fs"]])
def test_bad_dat_line(chain, tmp_path, mode):
    repo = chain()
    dat = repo / f"{stamp(at(0))}.dat"
    dat.write_text(dat.read_text() + "a line with spaces in the path 0 10 abc\n")
    proc = ours(*mode, "-r", "repo", cwd=tmp_path, now=at(5))
    assert (proc.returncode, proc.stderr) == (
        1,
        f"repo/{dat.name}: line 4: expected 4 fields (<file> <start> <end> <md5>), found 10\n",
    )


def test_recover_refuses_chain_with_missing_delta(chain, db, tmp_path):
    repo = chain()
    (repo / f"{stamp(at(1))}.deltafs").unlink()
    (tmp_path / "out.fs").write_bytes(b"old database")
    (tmp_path / "out.fs.index").write_bytes(b"old index")
    first = read(repo / f"{stamp(at(0))}.fs")
    proc = ours("-R", "-r", "repo", "-o", "out.fs", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"repo/{stamp(at(2))}.deltafs starts at byte {read(repo / f'{stamp(at(0))}.dat').split()[6].decode()}, "
        f"but the chain before it ends at byte {len(first)}: a backup file is missing\n",
    )
    assert read(tmp_path / "out.fs") == b"old database"
    assert read(tmp_path / "out.fs.index") == b"old index"
    assert not (tmp_path / "out.fs.part").exists()
    # repozo concatenates what is left, silently, into a corrupt Data.fs.
    ok(theirs("-R", "-r", "repo", "-o", "theirs.fs", cwd=tmp_path))
    assert read(tmp_path / "theirs.fs") != committed(db["path"])


def test_recover_refuses_damaged_file_without_w(chain, tmp_path):
    repo = chain()
    victim = repo / f"{stamp(at(1))}.deltafs"
    victim.write_bytes(read(victim)[:-3])
    (tmp_path / "out.fs").write_bytes(b"old database")
    proc = ours("-R", "-r", "repo", "-o", "out.fs", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"repo/{victim.name} is ")
    assert read(tmp_path / "out.fs") == b"old database"
    assert listing(tmp_path) == ["db", "out.fs", "repo"]


def test_checkpoint_tail_is_not_an_empty_delta_each_run(db, tmp_path):
    (tmp_path / "repo").mkdir()
    zodbgen.add_tail(db["path"], "checkpoint")
    for i in range(3):
        proc = ok(ours("-B", "-v", "-r", "repo", "-f", db["path"], now=at(i), cwd=tmp_path))
    assert "No changes, nothing to do" in proc.stderr.splitlines()
    assert len(listing(tmp_path / "repo")) == 3
    ok(ours("-R", "-r", "repo", "-o", "out.fs", cwd=tmp_path))
    assert read(tmp_path / "out.fs") == committed(db["path"])
    # repozo writes a zero-byte incremental on every run.
    ok(theirs("-B", "-r", "repo", "-f", db["path"], now=at(10), cwd=tmp_path))
    assert os.path.getsize(tmp_path / "repo" / f"{stamp(at(10))}.deltafs") == 0


def test_no_temp_files_after_success_or_failure(db, tmp_path):
    (tmp_path / "repo").mkdir()
    ok(ours("-B", "-z", "-r", "repo", "-f", db["path"], now=at(0), cwd=tmp_path))
    # Refused before anything is written (same second).
    assert (
        ours("-B", "-F", "-z", "-r", "repo", "-f", db["path"], now=at(0), cwd=tmp_path).returncode
        == 1
    )
    # Failing late, after the data file and index were written under
    # temporary names: its .dat cannot be created (a directory has its name).
    os.mkdir(tmp_path / "repo" / f"{stamp(at(1))}.dat")
    p = ours("-B", "-F", "-z", "-r", "repo", "-f", db["path"], now=at(1), cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert not [n for n in listing(tmp_path / "repo") if n.startswith(".") or n == "tmp.tmp"]
    assert not [
        n
        for n in listing(tmp_path / "repo")
        if n.startswith(stamp(at(1))) and not n.endswith(".dat")
    ]
