"""A mutation corpus for repozo: damaged repositories and damaged live
storages, and what our command line must (never) do with them.

Two repositories of the same storage are made with real ZODB transactions
(tests/zodbgen.py): one plain, one gzip, each a full backup and three
incrementals; the committed bytes of Data.fs at each backup are kept as the
truth. Then every case damages a copy in one deterministic (seeded) way: the
``.dat`` chain file, the data files, the ``.index`` files, or the live
Data.fs before a backup. For every case:

- no traceback and no Rust panic; exit code 0 or 1 (the documented error
  code, README "Without buildout"); an error is one line on stderr;
- ``-R -w -o out`` that exits 0 wrote exactly the newest state a committed
  backup holds (a backup is committed by its ``.dat`` line), and
  ``out.index`` is what ZODB itself finds: absent, ignored, or the same
  index a scan gives, and every object loads;
- a failed recover leaves neither ``out`` nor ``out.part``;
- ``-V`` fails exactly when ``-R -w`` fails;
- a backup (``-B`` and ``-B -Q``) that exits 0 on the damaged repository is
  followed by a recover that gives the live Data.fs's committed bytes.

Cases the current core gets wrong are marked xfail (strict) with the reason.
"""

import os
import random
import re
import shutil
import struct

import pytest
import zodbgen
from repozo_util import at
from repozo_util import committed
from repozo_util import ok
from repozo_util import ours
from repozo_util import read


N = 4  # backups per repository: a full and three incrementals
SEED = 20261130
KINDS = ("plain", "gz")


class Base:
    """The pristine material every case copies."""

    def __init__(self, root):
        self.root = root
        self.db = root / "db"
        self.live = self.db / "Data.fs"
        self.repos = {k: root / k for k in KINDS}
        self.truths = []  # committed Data.fs bytes at backup i


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    b = Base(tmp_path_factory.mktemp("mutations"))
    zodbgen.generate(str(b.db), transactions=30, size="150K", undos=1, blobs=False, seed=1)
    for r in b.repos.values():
        r.mkdir()
    for i in range(N):
        if i:
            zodbgen.generate(str(b.db), transactions=3, undos=0, blobs=False, seed=100 + i)
        for kind, r in b.repos.items():
            z = ["-z"] if kind == "gz" else []
            ok(ours("-B", *z, "-r", r, "-f", b.live, now=at(i)))
        b.truths.append(committed(b.live))
    # The live storage moves on after the last backup.
    zodbgen.generate(str(b.db), transactions=2, undos=0, blobs=False, seed=200)
    b.live_truth = committed(b.live)
    assert len(b.live_truth) > len(b.truths[-1]) > len(b.truths[0])
    return b


# --- helpers ---------------------------------------------------------------


def data_files(repo):
    """The chain's data files, oldest first."""
    names = sorted(n for n in os.listdir(repo) if n.endswith(("fs", "fsz")))
    assert len(names) == N, names
    return [repo / n for n in names]


def dat_file(repo):
    (dat,) = [repo / n for n in os.listdir(repo) if n.endswith(".dat")]
    return dat


def index_files(repo):
    return [repo / n for n in sorted(os.listdir(repo)) if n.endswith(".index")]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def flip(path, pos, rnd):
    data = bytearray(read(path))
    data[pos] ^= 1 << rnd.randrange(8)
    write(path, bytes(data))


def transactions(data):
    """(tpos, end) of each transaction record of FileStorage bytes."""
    out, pos = [], 4
    while pos + 23 <= len(data):
        (tlen,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        end = pos + tlen + 8
        if end > len(data):
            break
        out.append((pos, end))
        pos = end
    return out


def first_pickle_byte(data, txn):
    """An offset inside the pickle of the first data record of transaction
    number ``txn``."""
    tpos, _ = transactions(data)[txn]
    ulen, dlen, elen = struct.unpack(">HHH", data[tpos + 17 : tpos + 23])
    dpos = tpos + 23 + ulen + dlen + elen
    (plen,) = struct.unpack(">Q", data[dpos + 34 : dpos + 42])
    assert plen > 2
    return dpos + 42 + plen // 2


#: The warnings our repozo command prints about what it leaves out.
WARNING = re.compile(
    r"is not listed in .*: an interrupted backup, ignored$"
    r"|is incomplete \(a backup was interrupted while writing it\), ignored$"
    r"|has no \.dat files: choosing the backup files by their names"
)


def run(*args, **kw):
    """Run our command line and check what holds for every run: no
    traceback, no panic, exit 0 or 1, an error on one line."""
    p = ours(*args, **kw)
    assert "Traceback" not in p.stderr, p.stderr
    assert "panicked" not in p.stderr, p.stderr
    assert p.returncode in (0, 1), (p.returncode, p.stderr)
    if p.returncode:
        # One line for the error; warnings about what was left out may
        # come before it.
        lines = [ln for ln in p.stderr.strip("\n").split("\n") if not WARNING.search(ln)]
        assert len(lines) == 1 and lines[0].strip(), p.stderr
    return p


def check_index(out):
    """``out`` with its ``out.index`` (if any) opens in real ZODB and every
    object loads; and it gives the same size and oid → offset map as a scan
    of the same bytes without an index (unless such a scan fails: a
    faithful copy of a damaged storage that ZODB only opens with its
    index)."""
    from ZODB.FileStorage import FileStorage

    scan_dir = out.parent / "scan"
    scan_dir.mkdir()
    shutil.copyfile(out, scan_dir / "Data.fs")
    try:
        fs = FileStorage(str(scan_dir / "Data.fs"), read_only=True)
    except Exception:
        want = None
    else:
        try:
            want = (fs.getSize(), dict(fs._index.items()))
        finally:
            fs.close()
    shutil.rmtree(scan_dir)
    fs = FileStorage(str(out), read_only=True)
    try:
        got = (fs.getSize(), dict(fs._index.items()))
        if want is not None:
            assert got[0] == want[0]
            assert got[1] == want[1], "out.index does not match the recovered data"
        for oid in got[1]:
            fs.load(oid)
    finally:
        fs.close()


def recover_and_check(repo, out, truth):
    """-R -w into ``out``; exit 0 requires ``truth`` (None: must fail)."""
    r = run("-R", "-w", "-r", repo, "-o", out)
    if r.returncode == 0:
        assert truth is not None, "recovered although no backup is committed"
        assert read(out) == truth, "recovered bytes differ from the committed state"
        check_index(out)
    else:
        assert not out.exists()
        assert not os.path.exists(str(out) + ".part")
    return r


# --- the cases -------------------------------------------------------------


class Case:
    def __init__(
        self,
        name,
        kinds,
        mutate,
        committed=N,
        must_recover=False,
        quick_blind=False,
        by_names=False,
    ):
        # A repository without .dat files is recovered by the file names, as
        # repozo does, and checked by the structure of the result; verify has
        # no sizes or checksums to check and fails (docs/repository.rst).
        self.by_names = by_names
        self.name = name
        self.kinds = kinds
        self.mutate = mutate
        self.committed = committed  # backups still committed after mutate
        self.must_recover = must_recover
        # Damage inside a backup file that only reading it shows: quick mode
        # (-Q) reads no backup file by design (README, -Q), so after a -Q
        # backup the recover may fail, but never give wrong bytes.
        self.quick_blind = quick_blind


def dat_lines(repo):
    return read(dat_file(repo)).decode().splitlines(keepends=True)


def set_dat(repo, lines):
    write(dat_file(repo), "".join(lines).encode())


def m_dat_delete_last_line(repo, rnd):
    set_dat(repo, dat_lines(repo)[:-1])


def m_dat_empty(repo, rnd):
    write(dat_file(repo), b"")


def m_dat_truncate_last_line(repo, rnd):
    text = read(dat_file(repo))
    last = text.rstrip(b"\n").rfind(b"\n") + 1
    write(dat_file(repo), text[: rnd.randrange(last + 1, len(text) - 1)])


def m_dat_truncate_second_line(repo, rnd):
    lines = dat_lines(repo)
    cut = rnd.randrange(1, len(lines[1]) - 1)
    write(dat_file(repo), (lines[0] + lines[1][:cut]).encode())


def m_dat_swap_lines(repo, rnd):
    lines = dat_lines(repo)
    i = rnd.randrange(1, len(lines) - 1)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    set_dat(repo, lines)


def m_dat_change_offset(repo, rnd):
    lines = dat_lines(repo)
    i = rnd.randrange(1, len(lines))
    f = lines[i].split()
    f[2] = str(int(f[2]) + rnd.choice([-7, -1, 1, 100]))
    lines[i] = " ".join(f) + "\n"
    set_dat(repo, lines)


def m_dat_change_md5(repo, rnd):
    lines = dat_lines(repo)
    i = rnd.randrange(len(lines))
    f = lines[i].split()
    f[3] = "%032x" % (int(f[3], 16) ^ (1 << rnd.randrange(128)))
    lines[i] = " ".join(f) + "\n"
    set_dat(repo, lines)


def m_dat_junk_line(repo, rnd):
    set_dat(repo, dat_lines(repo) + ["junk\n"])


def m_dat_junk_line_middle(repo, rnd):
    lines = dat_lines(repo)
    lines.insert(2, "some junk here\n")
    set_dat(repo, lines)


def m_dat_duplicate_last_line(repo, rnd):
    lines = dat_lines(repo)
    set_dat(repo, lines + lines[-1:])


def m_dat_crlf(repo, rnd):
    set_dat(repo, [line.replace("\n", "\r\n") for line in dat_lines(repo)])


def m_dat_remove(repo, rnd):
    os.remove(dat_file(repo))


# The .dat line is a backup's commit point: a crash just before it (no line)
# or during it (a torn line) leaves a backup that is not committed, and the
# repository must go on working from the previous one.
DAT_CASES = [
    Case("dat-delete-last-line", KINDS, m_dat_delete_last_line, committed=N - 1, must_recover=True),
    Case("dat-empty", KINDS, m_dat_empty, committed=0),
    Case("dat-truncate-last-line", KINDS, m_dat_truncate_last_line, committed=N - 1, must_recover=True),
    Case("dat-truncate-second-line", KINDS, m_dat_truncate_second_line, committed=1),
    Case("dat-swap-lines", KINDS, m_dat_swap_lines),
    Case("dat-change-offset", KINDS, m_dat_change_offset),
    # A wrong md5 in a line is what only reading the file shows: -Q is blind.
    Case("dat-change-md5", KINDS, m_dat_change_md5, quick_blind=True),
    Case("dat-junk-line", KINDS, m_dat_junk_line),
    Case("dat-junk-line-middle", KINDS, m_dat_junk_line_middle),
    Case("dat-duplicate-last-line", KINDS, m_dat_duplicate_last_line),
    # repozo splits lines on any whitespace, so CRLF line ends read as usual.
    Case("dat-crlf", KINDS, m_dat_crlf, must_recover=True),
    Case("dat-remove", KINDS, m_dat_remove, must_recover=True, by_names=True),
]

TARGETS = {"full": 0, "middle": 2, "last": N - 1}


def on_data(which, action):
    def mutate(repo, rnd):
        action(data_files(repo)[TARGETS[which]], rnd)

    return mutate


def a_truncate(path, rnd):
    data = read(path)
    write(path, data[: rnd.randrange(1, len(data))])


def a_flip_header(path, rnd):
    flip(path, rnd.randrange(10), rnd)


def a_flip_middle(path, rnd):
    n = os.path.getsize(path)
    flip(path, n // 2 + rnd.randrange(-n // 8, n // 8), rnd)


def a_flip_trailer(path, rnd):
    flip(path, os.path.getsize(path) - 1 - rnd.randrange(8), rnd)


def a_zero_padding(path, rnd):
    with open(path, "ab") as f:
        f.write(b"\0" * rnd.choice([1, 7, 512, 4096]))


def a_junk(path, rnd):
    with open(path, "ab") as f:
        f.write(rnd.randbytes(rnd.randint(1, 64)) + b"junk")


def a_delete(path, rnd):
    os.remove(path)


def a_uncompressed(path, rnd):
    import gzip

    write(path, gzip.decompress(read(path)))


def a_flip_start(path, rnd):
    flip(path, rnd.randrange(min(64, os.path.getsize(path))), rnd)


def a_extend(path, rnd):
    with open(path, "ab") as f:
        f.write(rnd.randbytes(rnd.randint(1, 100)))


GZ_ACTIONS = {
    "truncate": a_truncate,
    "flip-header": a_flip_header,
    "flip-middle": a_flip_middle,
    "flip-trailer": a_flip_trailer,
    "zero-padding": a_zero_padding,
    "junk": a_junk,
    "delete": a_delete,
    "uncompressed": a_uncompressed,
}
PLAIN_ACTIONS = {
    "flip-start": a_flip_start,
    "flip-middle": a_flip_middle,
    "flip-end": a_flip_trailer,
    "truncate": a_truncate,
    "extend": a_extend,
    "delete": a_delete,
}

# A deleted file is seen without reading any; so is a plain file of the
# wrong size. A compressed file's size says nothing (the .dat has the
# uncompressed size).
DATA_CASES = [
    Case(
        f"fsz-{which}-{name}",
        ("gz",),
        on_data(which, action),
        must_recover=name == "zero-padding",
        quick_blind=name != "delete",
    )
    for which in TARGETS
    for name, action in GZ_ACTIONS.items()
] + [
    Case(f"fs-{which}-{name}", ("plain",), on_data(which, action), quick_blind=name.startswith("flip"))
    for which in TARGETS
    for name, action in PLAIN_ACTIONS.items()
]


def on_index(which, action):
    def mutate(repo, rnd):
        action(index_files(repo)[TARGETS[which]], rnd, repo)

    return mutate


def i_flip(path, rnd, repo):
    # Past the pos pickle, inside the buckets (oids and offsets).
    n = os.path.getsize(path)
    flip(path, rnd.randrange(16, n - 4), rnd)


def i_truncate(path, rnd, repo):
    data = read(path)
    write(path, data[: rnd.randrange(1, len(data))])


def i_delete(path, rnd, repo):
    os.remove(path)


def i_replace_older(path, rnd, repo):
    shutil.copyfile(index_files(repo)[0], path)


def i_replace_newer(path, rnd, repo):
    shutil.copyfile(index_files(repo)[-1], path)


def i_garbage(path, rnd, repo):
    write(path, rnd.randbytes(os.path.getsize(path)))


INDEX_CASES = [
    Case(f"index-last-{name}", KINDS, on_index("last", action), must_recover=True)
    for name, action in [
        ("flip", i_flip),
        ("truncate", i_truncate),
        ("delete", i_delete),
        ("replace-with-older", i_replace_older),
        ("garbage", i_garbage),
    ]
] + [
    Case(f"index-middle-{name}", KINDS, on_index("middle", action), must_recover=True)
    for name, action in [("flip", i_flip), ("delete", i_delete), ("replace-with-newer", i_replace_newer)]
]

REPO_CASES = DAT_CASES + DATA_CASES + INDEX_CASES

UNCOMMITTED = (
    "recover -w refuses a data file that has no .dat line (a backup that was never committed) "
    "while -V passes; recover should leave that file out and give the last committed state"
)
TORN_LINE = (
    "a torn last .dat line (an interrupted append) fails recover -w and -V, or passes as a line "
    "with a short md5; it should count as not committed (recover gives the previous state), and "
    "-B appends after it, merging two lines"
)
APPEND_AFTER_TORN = (
    "-B appends its line to a .dat that ends in a torn line (no newline): the lines merge and the "
    "chain no longer recovers; -B should refuse the .dat or start a new full chain"
)
ORDER = "recover -w takes the .dat lines by file name and succeeds, -V checks them in file order and fails"
APPEND_TO_BAD_CHAIN = (
    "-B (default mode, which reads every file) appends an incremental to a chain whose files do "
    "not match their .dat lines, so the new backup never recovers; it should check the chain "
    "against the .dat and make a full backup"
)
APPEND_TO_BAD_DAT = (
    "-B appends to a .dat with an unreadable line (recover -w and -V fail on it), so the new "
    "backup never recovers; it should make a new full chain or fail"
)
NO_DAT = (
    "-B on a chain without its .dat appends an incremental whose line alone makes a new .dat; "
    "the chain's full is not listed in it and recover fails; it should make a full backup"
)
QUICK_MISSING = (
    "-B -Q does not check that the chain's files exist: it appends an incremental to a chain "
    "with a missing file, which never recovers"
)
QUICK_SIZE = (
    "-B -Q does not check the sizes of the chain's plain files against the .dat (a stat): it "
    "appends an incremental to a chain that never recovers"
)
LAST_MISSING = (
    "with the newest data file deleted but its .dat line in place, recover -w exits 0 with the "
    "previous state (-V fails); it should fail"
)
TRUNCATED_LAST = (
    "-B (default mode) takes a truncated last file as the end of the repository and appends an "
    "incremental from there; the .dat says the file ends later, so the chain never recovers"
)
INDEX_UNCHECKED = (
    "recover copies the chain's last .index to out.index without checking it: ZODB accepts the "
    "damaged index and trusts wrong offsets"
)

#: Cases the current core gets wrong: case id → reason.
XFAIL = {}


def params(cases, kinds_of):
    out = []
    for case in cases:
        for kind in kinds_of(case):
            cid = f"{case.name}-{kind}" if len(case.kinds) > 1 else case.name
            marks = []
            if cid in XFAIL:
                marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[cid]))
            out.append(pytest.param(case, kind, id=cid, marks=marks))
    return out


def copy_repo(base, kind, dest):
    shutil.copytree(base.repos[kind], dest)
    return dest


@pytest.mark.parametrize("case,kind", params(REPO_CASES, lambda c: c.kinds))
def test_repository_mutation(base, tmp_path, case, kind):
    repo = copy_repo(base, kind, tmp_path / "repo")
    case.mutate(repo, random.Random(f"{SEED}-{case.name}-{kind}"))
    damaged = tmp_path / "damaged"
    shutil.copytree(repo, damaged)

    truth = base.truths[case.committed - 1] if case.committed else None
    (tmp_path / "out").mkdir()
    r = recover_and_check(repo, tmp_path / "out" / "Data.fs", truth)
    v = run("-V", "-r", repo)
    if case.by_names:
        assert v.returncode != 0 and "No such file or directory" in v.stderr, v.stderr
    else:
        assert (v.returncode != 0) == (r.returncode != 0), (r.stderr, v.stderr)
    if case.must_recover:
        assert r.returncode == 0, r.stderr

    # A backup on the damaged repository, then a recover.
    z = ["-z"] if kind == "gz" else []
    for mode in (["-B"], ["-B", "-Q"]):
        name = "".join(mode).replace("-", "")
        repo2 = shutil.copytree(damaged, tmp_path / f"repo-{name}")
        b = run(*mode, *z, "-r", repo2, "-f", base.live, now=at(60))
        if b.returncode == 0:
            out = tmp_path / f"out-{name}" / "Data.fs"
            out.parent.mkdir()
            r2 = run("-R", "-w", "-r", repo2, "-o", out)
            if r2.returncode and case.quick_blind and "-Q" in mode:
                continue
            assert r2.returncode == 0, f"{mode}: backup exited 0, recover failed: {r2.stderr}"
            assert read(out) == base.live_truth, f"{mode}: recover after backup differs from Data.fs"
            check_index(out)


# --- the live Data.fs ------------------------------------------------------


def l_truncate_backed_up(fs, base, rnd):
    """Cut the last transaction the repository holds in the middle (it got
    shorter than the repository: a restore from elsewhere, a bad copy)."""
    data = read(fs)
    (tpos, end) = [t for t in transactions(data) if t[1] == len(base.truths[-1])][0]
    write(fs, data[: rnd.randrange(tpos + 1, end)])


def l_truncate_new(fs, base, rnd):
    """Cut the newest transaction (not backed up yet) in the middle: the
    torn tail a crashed writer leaves."""
    data = read(fs)
    tpos, end = transactions(data)[-1]
    assert tpos >= len(base.truths[-1])
    write(fs, data[: rnd.randrange(tpos + 1, end)])


def l_first_tlen(fs, base, rnd):
    """Damage the length of the first transaction."""
    data = bytearray(read(fs))
    (tlen,) = struct.unpack(">Q", data[12:20])
    data[12:20] = struct.pack(">Q", tlen + rnd.choice([1, 8, 1000]))
    write(fs, bytes(data))


def l_flip_old_pickle(fs, base, rnd):
    """Flip a byte inside a pickle of an old transaction (only the full
    backup covers it); the scan cannot see it, a checksum can."""
    data = read(fs)
    flip(fs, first_pickle_byte(data, 2), rnd)


def l_flip_old_header(fs, base, rnd):
    """Flip a byte of the tloc of the first data record of an old
    transaction: interior damage ZODB refuses when it scans."""
    data = read(fs)
    tpos, _ = transactions(data)[1]
    ulen, dlen, elen = struct.unpack(">HHH", data[tpos + 17 : tpos + 23])
    flip(fs, tpos + 23 + ulen + dlen + elen + 24 + 7, rnd)


LIVE = {
    "truncate-backed-up-txn": l_truncate_backed_up,
    "truncate-new-txn": l_truncate_new,
    "first-txn-length": l_first_tlen,
    "flip-old-pickle": l_flip_old_pickle,
    "flip-old-record-header": l_flip_old_header,
}

#: Quick mode trusts the repository for what the newest backup file does not
#: cover (README, ``-Q``): damage there is not seen, and the backup goes on
#: from the repository's state.
QUICK_BLIND = {"first-txn-length", "flip-old-pickle", "flip-old-record-header"}


def zodb_view(fs):
    """The committed bytes real ZODB sees (with the storage's own index, as
    it would open it), or None when ZODB refuses to open the file."""
    try:
        return committed(fs)
    except Exception:
        return None


LIVE_PARAMS = []
for _name in LIVE:
    for _index in ("index", "no-index"):
        for _mode in ("B", "BQ"):
            for _kind in KINDS if _mode == "B" else ("plain",):
                _cid = f"live-{_name}-{_index}-{_mode}-{_kind}"
                _marks = [pytest.mark.xfail(strict=True, reason=XFAIL[_cid])] if _cid in XFAIL else []
                LIVE_PARAMS.append(pytest.param(_name, _index, _mode, _kind, id=_cid, marks=_marks))


@pytest.mark.parametrize("name,index,mode,kind", LIVE_PARAMS)
def test_live_mutation(base, tmp_path, name, index, mode, kind):
    db = tmp_path / "db"
    db.mkdir()
    fs = db / "Data.fs"
    shutil.copyfile(base.live, fs)
    if index == "index":
        shutil.copyfile(str(base.live) + ".index", str(fs) + ".index")
    LIVE[name](fs, base, random.Random(f"{SEED}-{name}-{index}-{mode}-{kind}"))
    view = zodb_view(fs)
    allowed = [view] if view is not None else []
    if mode == "BQ" and name in QUICK_BLIND:
        allowed.append(base.live_truth)
    repo = copy_repo(base, kind, tmp_path / "repo")
    z = ["-z"] if kind == "gz" else []
    flags = ["-B", "-Q"] if mode == "BQ" else ["-B"]
    b = run(*flags, *z, "-r", repo, "-f", fs, now=at(60))
    if view is None:
        assert b.returncode != 0, "backed up a Data.fs that ZODB refuses to open"
    if b.returncode == 0:
        out = tmp_path / "out" / "Data.fs"
        out.parent.mkdir()
        r = run("-R", "-w", "-r", repo, "-o", out)
        assert r.returncode == 0, r.stderr
        assert read(out) in allowed, "recover after backup differs from the live Data.fs"
        check_index(out)
    v = run("-V", "-r", repo)
    assert v.returncode == 0, v.stderr


def test_case_count():
    """The corpus is as large as this file says (roughly 100+ cases)."""
    repo_cases = sum(len(c.kinds) for c in REPO_CASES)
    assert repo_cases + len(LIVE_PARAMS) >= 100
