"""A backup that exits 0 restores: the commit point, the repository lock,
chains that are extended only when whole, and the checks recover and
verify share (docs/repository.rst).

Each state here is one a crash, an overlapping run or a damaged repository
leaves. The truth is always what real ZODB reads from the Data.fs, and every
repository that our tools call good is also recovered by ZODB's repozo.
"""

import fcntl
import os
import resource
import shutil
import struct
import subprocess
import sys
import time

import pytest
import zodbgen
from repozo_util import LOCK_FILE
from repozo_util import PYTHON
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


def grow(db, seed):
    zodbgen.generate(os.path.dirname(db["path"]), transactions=5, undos=0, blobs=False, seed=seed)


def one_line(proc):
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.strip()


def recovered(tmp_path, *args, tool=ours, name="out.fs"):
    """``-R -w`` (ours) or ``-R`` (repozo) into a fresh file; returns the
    process and the bytes (None when it failed)."""
    out = tmp_path / name
    if out.exists():
        out.unlink()
    proc = tool("-R", *(["-w"] if tool is ours else []), "-r", "repo", "-o", name, *args, cwd=tmp_path)
    return proc, (read(out) if proc.returncode == 0 else None)


def dat_of(repo):
    (dat,) = [n for n in listing(repo) if n.endswith(".dat")]
    return repo / dat


# --- the commit point -------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_unlisted_increment_is_ignored_then_cleaned(chain, db, tmp_path, gz):
    """A run that died after naming its increment but before its .dat line:
    recover and verify warn and use the committed chain; the next backup
    removes the file (saying so) and backs up those transactions again."""
    repo = chain(gz)
    state2 = committed(db["path"])
    grow(db, 7)
    z = ["-z"] if gz else []
    ok(ours("-B", *z, "-r", "repo", "-f", db["path"], now=at(3), cwd=tmp_path))
    dat = dat_of(repo)
    lines = dat.read_text().splitlines(keepends=True)
    dat.write_text("".join(lines[:-1]))  # the line that was never written
    unlisted = repo / f"{stamp(at(3))}.delta{'fsz' if gz else 'fs'}"
    assert unlisted.exists()

    proc, data = recovered(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert data == state2
    assert f"{unlisted.name} is not listed in" in proc.stderr
    v = ours("-V", "-r", "repo", cwd=tmp_path)
    assert v.returncode == 0 and f"{unlisted.name} is not listed in" in v.stderr

    b = ok(ours("-B", "-Q", *z, "-r", "repo", "-f", db["path"], now=at(4), cwd=tmp_path))
    assert f"removing repo/{unlisted.name}: no .dat lists it" in b.stderr
    assert not unlisted.exists()
    assert not (repo / f"{stamp(at(3))}.index").exists()
    live = committed(db["path"])
    assert recovered(tmp_path)[1] == live
    assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] == live
    assert ours("-V", "-r", "repo", cwd=tmp_path).stderr == ""


def test_unlisted_full_backup_is_ignored_then_cleaned(chain, db, tmp_path):
    repo = chain()
    state2 = committed(db["path"])
    grow(db, 8)
    ok(ours("-B", "-F", "-r", "repo", "-f", db["path"], now=at(3), cwd=tmp_path))
    (repo / f"{stamp(at(3))}.dat").unlink()
    proc, data = recovered(tmp_path)
    assert proc.returncode == 0 and data == state2
    assert f"{stamp(at(3))}.fs is not listed in" in proc.stderr
    ok(ours("-B", "-r", "repo", "-f", db["path"], now=at(4), cwd=tmp_path))
    assert not (repo / f"{stamp(at(3))}.fs").exists()
    live = committed(db["path"])
    assert recovered(tmp_path)[1] == live
    assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] == live


def test_temporaries_of_a_dead_run_are_removed(chain, db, tmp_path):
    repo = chain()
    junk = repo / f".{stamp(at(3))}.deltafs.Ab12Cd.tmp"
    junk.write_bytes(b"x" * 1000)
    grow(db, 9)
    b = ok(ours("-B", "-r", "repo", "-f", db["path"], now=at(3), cwd=tmp_path))
    assert "a temporary file of an interrupted run" in b.stderr
    assert not junk.exists()
    assert not [n for n in os.listdir(repo) if n.endswith(".tmp")]


# --- recover and verify agree, and never pick an older state silently ------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_missing_newest_file_is_refused_by_recover_and_verify(chain, tmp_path, gz):
    repo = chain(gz)
    newest = repo / f"{stamp(at(2))}.delta{'fsz' if gz else 'fs'}"
    newest.unlink()
    proc, _ = recovered(tmp_path)
    assert proc.returncode == 1
    assert one_line(proc) == f"repo/{newest.name} is missing"
    assert not (tmp_path / "out.fs").exists()
    v = ours("-V", "-r", "repo", cwd=tmp_path)
    assert (v.returncode, one_line(v)) == (1, f"repo/{newest.name} is missing")


def test_lost_full_backup_with_its_dat_is_refused(chain, db, tmp_path):
    """A newer chain whose full backup file is gone: recovering the older
    chain would silently give an older state."""
    repo = chain()
    grow(db, 10)
    ok(ours("-B", "-F", "-r", "repo", "-f", db["path"], now=at(3), cwd=tmp_path))
    (repo / f"{stamp(at(3))}.fs").unlink()
    proc, _ = recovered(tmp_path)
    expected = f"repo/{stamp(at(3))}.dat lists a backup chain whose full backup file is missing"
    assert (proc.returncode, one_line(proc)) == (1, expected)
    v = ours("-V", "-r", "repo", cwd=tmp_path)
    assert (v.returncode, one_line(v)) == (1, expected)
    # A date before that chain still recovers.
    proc, data = recovered(tmp_path, "-D", stamp(at(2)))
    assert proc.returncode == 0 and data is not None


def test_empty_dat_of_the_only_chain(chain, tmp_path):
    repo = chain()
    dat_of(repo).write_text("")
    proc, _ = recovered(tmp_path)
    v = ours("-V", "-r", "repo", cwd=tmp_path)
    assert proc.returncode == v.returncode == 1
    assert proc.stderr == v.stderr == (
        f"repo/{stamp(at(0))}.fs is not listed in repo/{stamp(at(0))}.dat: "
        "an interrupted backup, ignored\nNo files in repository\n"
    )


# --- a chain is extended only when it is whole ------------------------------


DAMAGE = {
    "junk line": lambda dat: dat.write_text(dat.read_text() + "junk\n"),
    "no .dat": lambda dat: dat.unlink(),
    # The first line's md5: only the checksum mode reads the files whole.
    "md5 changed": lambda dat: dat.write_text(dat.read_text().replace(dat.read_text().split()[3], "0" * 32, 1)),
    # The last line's md5: quick mode compares it with the Data.fs.
    "last md5 changed": lambda dat: dat.write_text(
        dat.read_text().replace(dat.read_text().split()[-1], "0" * 32)
    ),
    "offset changed": lambda dat: dat.write_text(
        "\n".join(
            " ".join([f, s, str(int(e) + 1) if i == 1 else e, m]) if i == 1 else line
            for i, line in enumerate(dat.read_text().splitlines())
            for (f, s, e, m) in [line.split()]
        )
        + "\n"
    ),
    "file truncated": None,
}


@pytest.mark.parametrize(
    "damage,quick",
    [
        (d, q)
        for d in DAMAGE
        for q in (False, True)
        # Quick mode checks sizes, and the md5 of the last file only
        # (docs/repository.rst).
        if not (q and d == "md5 changed")
    ],
)
def test_backup_does_not_extend_a_chain_it_cannot_vouch_for(chain, db, tmp_path, damage, quick):
    repo = chain()
    if damage == "file truncated":
        victim = repo / f"{stamp(at(1))}.deltafs"
        victim.write_bytes(read(victim)[:-5])
    else:
        DAMAGE[damage](dat_of(repo))
    grow(db, 11)
    q = ["-Q"] if quick else []
    b = ours("-B", *q, "-r", "repo", "-f", db["path"], now=at(3), cwd=tmp_path)
    assert b.returncode == 0, b.stderr
    assert "Traceback" not in b.stderr
    if not (quick and damage == "last md5 changed"):  # else as after a pack: no warning
        assert "cannot extend the backup chain" in b.stderr, b.stderr
    assert (repo / f"{stamp(at(3))}.fs").exists(), listing(repo)
    live = committed(db["path"])
    assert recovered(tmp_path)[1] == live
    assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] == live
    assert ours("-V", "-r", "repo", cwd=tmp_path).returncode == 0


# --- one writer per repository ----------------------------------------------


def test_held_lock_refuses_after_the_wait(chain, db, tmp_path):
    repo = chain()
    before = {n: read(repo / n) for n in listing(repo)}
    grow(db, 12)
    with open(repo / LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.seek(0)
        held.truncate()
        held.write("4242\n")
        held.flush()
        env = dict(os.environ, CRB_LOCK_TIMEOUT="1", CRB_REPOZO_NOW=str(at(3)))
        started = time.monotonic()
        p = subprocess.run(
            [PYTHON, "-m", "collective.recipe.backup.repozo", "-B", "-r", "repo", "-f", db["path"]],
            cwd=tmp_path, env=env, capture_output=True, text=True,
        )
        assert time.monotonic() - started >= 1
    assert (p.returncode, one_line(p)) == (
        1,
        "repo is in use by another backup or restore (process 4242): gave up after "
        "waiting 1 seconds. Nothing was changed.",
    )
    assert {n: read(repo / n) for n in listing(repo)} == before


def test_overlapping_backups_keep_the_chain_whole(chain, db, tmp_path):
    """Two backups started together (as overlapping cron runs): the second
    waits for the first, then finds nothing left to do, or (when its clock
    reads earlier than the first one's backup) refuses in one line. Without
    the lock both wrote an increment from the same offset."""
    repo = chain()
    outcomes = []
    for round_ in range(4):
        grow(db, 20 + round_)
        clocks = [{"CRB_REPOZO_NOW": str(at(10 + 2 * round_ + k))} for k in range(2)]
        if round_ == 3:
            clocks = [{}, {}]  # the real clock
        procs = [
            subprocess.Popen(
                [PYTHON, "-m", "collective.recipe.backup.repozo", "-B", "-Q", "-r", "repo", "-f", db["path"]],
                cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "CRB_REPOZO_NOW"} | clock,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for clock in clocks
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert "Traceback" not in err
            if p.returncode:
                assert err.count("\n") == 1
                assert "holds a backup newer than now" in err or "Cannot overwrite existing file" in err, err
            outcomes.append(p.returncode)
        lines = [line.split() for line in dat_of(repo).read_text().splitlines()]
        assert all(int(a[2]) == int(b[1]) for a, b in zip(lines, lines[1:])), lines
        live = committed(db["path"])
        assert recovered(tmp_path)[1] == live
        assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] == live
    assert outcomes.count(0) >= 4


# --- smaller hazards ----------------------------------------------------------


def test_fifo_named_like_a_backup_does_not_hang(chain, db, tmp_path):
    repo = chain()
    os.mkfifo(repo / f"{stamp(at(3))}.deltafs")
    grow(db, 13)
    b = ours("-B", "-Q", "-r", "repo", "-f", db["path"], now=at(4), cwd=tmp_path)
    assert b.returncode == 0, b.stderr
    assert recovered(tmp_path)[1] == committed(db["path"])


def test_fifo_as_datafs_is_one_line(tmp_path):
    (tmp_path / "repo").mkdir()
    os.mkfifo(tmp_path / "Data.fs")
    p = subprocess.run(
        [PYTHON, "-m", "collective.recipe.backup.repozo", "-B", "-r", "repo", "-f", "Data.fs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert (p.returncode, one_line(p)) == (1, "not a regular file: 'Data.fs'")


def _limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_output_write_error_names_the_output_not_the_backup(chain, tmp_path, gz):
    chain(gz)
    p = subprocess.run(
        [PYTHON, "-m", "collective.recipe.backup.repozo", "-R", "-w", "-r", "repo", "-o", "out.fs"],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=_limit_file_size(100_000),
    )
    assert (p.returncode, one_line(p)) == (1, "[Errno 27] File too large: 'out.fs.part'")
    assert not (tmp_path / "out.fs").exists() and not (tmp_path / "out.fs.part").exists()


def test_damaged_index_in_the_repository_is_not_restored(chain, tmp_path):
    """ZODB trusts an .index beside a Data.fs; a damaged one in the
    repository must not end up there. What we write instead is what real
    ZODB writes for the recovered file."""
    repo = chain()
    index = repo / f"{stamp(at(2))}.index"
    data = bytearray(read(index))
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    proc, out = recovered(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "does not describe the recovered data" in proc.stderr
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "Data.fs").write_bytes(out)
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(str(ref / "Data.fs"))  # no index: ZODB builds and saves one
    fs.close()
    assert read(tmp_path / "out.fs.index") == read(ref / "Data.fs.index")


def test_damaged_first_transaction_is_not_a_backup(db, tmp_path):
    """ZODB would read such a file as empty; a 4-byte backup of it would
    restore nothing, so the backup fails instead."""
    (tmp_path / "repo").mkdir()
    path = db["path"]
    os.unlink(path + ".index")  # with an index, ZODB never reads that header
    with open(path, "r+b") as f:
        f.seek(4 + 8)
        f.write(struct.pack(">Q", 1 << 40))  # the first transaction's length
    p = ours("-B", "-r", "repo", "-f", path, cwd=tmp_path, now=at(0))
    assert p.returncode == 1
    assert "the first transaction record is damaged or incomplete" in one_line(p)
    assert listing(tmp_path / "repo") == []


# --- a repository without .dat files --------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_recover_without_dat_files_by_names_and_structure(chain, db, tmp_path, gz):
    """Copied without its .dat files: recovered by the file names, as
    repozo does, with a warning, and checked by the FileStorage structure
    of the result instead of the missing checksums."""
    repo = chain(gz)
    live = committed(db["path"])
    for n in listing(repo):
        if n.endswith(".dat"):
            (repo / n).unlink()
    proc, data = recovered(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "has no .dat files: choosing the backup files by their names" in proc.stderr
    assert data == live
    assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] == live
    # A missing increment in the middle: repozo silently writes a Data.fs
    # that is no state the database ever had; we refuse.
    (repo / f"{stamp(at(1))}.delta{'fsz' if gz else 'fs'}").unlink()
    proc, _ = recovered(tmp_path)
    assert proc.returncode == 1
    assert "the backup files do not form one Data.fs" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "out.fs").exists()
    assert recovered(tmp_path, tool=theirs, name="theirs.fs")[1] != live
    # verify has nothing to check against: it fails as repozo's does.
    v = ours("-V", "-r", "repo", cwd=tmp_path)
    assert v.returncode == 1
    assert v.stderr.endswith(f"No such file or directory: 'repo/{stamp(at(0))}.dat'\n"), v.stderr


def test_recover_without_dat_files_refuses_a_truncated_increment(chain, tmp_path):
    repo = chain()
    for n in listing(repo):
        if n.endswith(".dat"):
            (repo / n).unlink()
    last = repo / f"{stamp(at(2))}.deltafs"
    last.write_bytes(read(last)[:-7])
    proc, _ = recovered(tmp_path)
    assert proc.returncode == 1
    assert "the backup files do not form one Data.fs" in proc.stderr
