"""``--dry-run`` and ``--target`` of the backup and restore commands, on a
real ZODB site with blobs, through the core (``_core.backup`` /
``_core.restore``).

- ``--dry-run`` changes nothing: the live Data.fs, its blob storage and
  every backup location have the same checksums, mtimes and directory
  listings (hidden files included) before and after. The files a dry
  backup names are exactly the ones the real run with the same clock then
  creates and removes (an incremental, a full one with keep=1 removing the
  old chain and blob backups, a blob backup, "nothing to do"). A dry
  restore names the chain ZODB's ``repozo -R -v`` lists.
- ``--target DIR`` leaves the live site alone, also while a real ZODB
  FileStorage holds it open (and its lock): the restored Data.fs is
  byte-identical to ``repozo -R`` of the same repository and date, and
  opens with ZODB, blobs included.
"""

import hashlib
import logging
import os
import re
import time

import pytest
import zodbgen
from repozo_util import ok
from repozo_util import theirs

from collective.recipe.backup import _core

#: A fixed moment an hour ago (backup names must sort before repozo's
#: "now" for its default restore date).
T0 = int(time.time()) - 3600
LOCK = ".crb.lock"


def stamp(t):
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


def tree_state(root):
    """Everything under ``root``, hidden entries included: type, size,
    mtime, sha256 of files, symlink targets."""
    out = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mtime_ns, st.st_mode)
            else:
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
    st = os.lstat(root)
    out["."] = ("root", st.st_mtime_ns, st.st_mode)
    return out


class Site:
    """A ZODB site with blobs in ``var/``, backed up into ``backups`` and
    ``blobbackups``."""

    def __init__(self, tmp_path, **options):
        self.tmp = tmp_path
        self.fsdir = tmp_path / "var" / "filestorage"
        zodbgen.generate(str(self.fsdir), transactions=30, undos=0, seed=1)
        self.datafs = self.fsdir / "Data.fs"
        self.blobdir = self.fsdir / "blobstorage"
        self.repo = tmp_path / "backups"
        self.blobrepo = tmp_path / "blobbackups"
        self.options = dict(
            var_dir=str(tmp_path / "var"),
            datafs=str(self.datafs),
            blob_storage=str(self.blobdir),
            location=str(self.repo),
            blobbackuplocation=str(self.blobrepo),
            **options,
        )
        self.config = _core.BackupConfig(**self.options)

    def change(self, seed):
        zodbgen.generate(str(self.fsdir), transactions=10, undos=0, seed=seed)

    def roots(self):
        return [self.fsdir, self.repo, self.blobrepo, self.tmp]

    def state(self, lock_times=True):
        """Every root's state. ``lock_times=False`` leaves out the mtime and
        contents of the backup locations' lock files: a real restore (also
        with ``--target``) locks the locations it reads and writes its pid
        into their ``.crb.lock``; a dry run takes no lock at all."""
        out = {str(r): tree_state(r) for r in self.roots()}
        if not lock_times:
            for entries in out.values():
                for rel in entries:
                    if os.path.basename(rel) == LOCK and os.path.dirname(rel) in ("", "backups", "blobbackups"):
                        entries[rel] = ("lock",)
        return out


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def would(caplog):
    """The ``Would ...`` lines of the last call, and clear the log."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Would ")]
    caplog.clear()
    return lines


def planned(lines):
    """(created, removed) paths named by a dry backup's lines."""
    created, removed = set(), set()
    for line in lines:
        m = re.match(r"Would make (?:a full|an incremental) backup (\S+) of ", line)
        m = m or re.match(r"Would make a blob backup (\S+) of ", line)
        m = m or re.match(r"Would write (\S+)$", line)
        if m:
            created.add(m.group(1))
        m = re.match(r"Would remove (\S+?)(?:: left by an interrupted run)?$", line)
        if m:
            removed.add(m.group(1))
    return created, removed


def top_level(*dirs):
    """Entries of the backup locations, without the lock files the real
    run takes (a dry run creates none: see the state comparisons) and the
    ``latest`` link (its own ``Would point`` line, checked apart)."""
    out = set()
    for d in dirs:
        if os.path.isdir(d):
            out |= {str(d / n) for n in os.listdir(d) if n not in (LOCK, "latest")}
    return out


def dry_then_real(site, caplog, mode, now):
    """Dry run (nothing may change), then the real run with the same clock;
    returns the plan's lines and the entries created and removed."""
    before = site.state()
    caplog.clear()
    _core.backup(site.config, mode, now=now, dry_run=True)
    lines = would(caplog)
    assert site.state() == before
    listed = top_level(site.repo, site.blobrepo)
    _core.backup(site.config, mode, now=now)
    after = top_level(site.repo, site.blobrepo)
    return lines, after - listed, listed - after


def latest(site):
    return os.readlink(site.blobrepo / "latest")


def test_dry_run_backup_names_what_the_real_run_does(site, caplog):
    caplog.set_level(logging.INFO)
    # The first run: locations to create, a full backup, a blob backup.
    lines, created, removed = dry_then_real(site, caplog, "standard", T0)
    s0 = stamp(T0)
    full0 = str(site.repo / f"{s0}.fsz")
    assert f"Would create directory {site.repo}" in lines
    assert f"Would create directory {site.blobrepo}" in lines
    assert any(line.startswith(f"Would make a full backup {full0} of {site.datafs}") for line in lines)
    assert planned(lines) == (created, removed)
    assert created == {
        full0,
        str(site.repo / f"{s0}.index"),
        str(site.repo / f"{s0}.dat"),
        str(site.blobrepo / f"blobstorage.{s0}"),
    }
    assert latest(site) == f"blobstorage.{s0}"
    assert f"Would point {site.blobrepo / 'latest'} to blobstorage.{s0}" in lines

    # An incremental (quick mode, the default) with a new blob backup.
    site.change(seed=2)
    t1 = T0 + 10
    lines, created, removed = dry_then_real(site, caplog, "standard", t1)
    s1 = stamp(t1)
    delta = str(site.repo / f"{s1}.deltafsz")
    assert any(line.startswith(f"Would make an incremental backup {delta} ") for line in lines)
    assert f"Would append a line to {site.repo / f'{s0}.dat'}" in lines
    assert planned(lines) == (created, removed)
    assert created == {delta, str(site.repo / f"{s1}.index"), str(site.blobrepo / f"blobstorage.{s1}")}
    assert removed == set()
    assert f"Would point {site.blobrepo / 'latest'} to blobstorage.{s1}" in lines
    assert latest(site) == f"blobstorage.{s1}"

    # Nothing to do: no filestorage backup, the blob backup exists.
    lines, created, removed = dry_then_real(site, caplog, "standard", T0 + 20)
    assert created == removed == set()
    assert planned(lines) == (set(), set())
    assert any(line.startswith(f"Would make no backup of {site.datafs}: nothing to do") for line in lines)
    assert any(line.startswith("Would make no blob backup of ") for line in lines)

    # A full backup with keep=1: the old chain and its blob backups go.
    site.change(seed=3)
    site.config = _core.BackupConfig(**dict(site.options, keep=1))
    t3 = T0 + 30
    lines, created, removed = dry_then_real(site, caplog, "full", t3)
    s3 = stamp(t3)
    assert planned(lines) == (created, removed)
    assert created == {
        str(site.repo / f"{s3}.fsz"),
        str(site.repo / f"{s3}.index"),
        str(site.repo / f"{s3}.dat"),
        str(site.blobrepo / f"blobstorage.{s3}"),
    }
    assert removed == {
        full0,
        str(site.repo / f"{s0}.index"),
        str(site.repo / f"{s0}.dat"),
        delta,
        str(site.repo / f"{s1}.index"),
        str(site.blobrepo / f"blobstorage.{s0}"),
        str(site.blobrepo / f"blobstorage.{s1}"),
    }
    assert latest(site) == f"blobstorage.{s3}"


def simulate(listing, lines):
    """A location listing after the plan's renames, new backups and
    removals, in the plan's order."""
    out = set(listing)
    for line in lines:
        m = re.match(r"Would rename (\S+) to (\S+)$", line)
        if m:
            out.discard(m.group(1))
            out.add(m.group(2))
    created, removed = planned(lines)
    return (out | created) - removed


def test_dry_run_numbered_blob_backups(tmp_path, caplog):
    """Numbered blob backups (``blob_timestamps = false``): the plan's
    renames, new backup and removals turn the listing before into the one
    after the real run."""
    caplog.set_level(logging.INFO)
    site = Site(tmp_path, blob_timestamps=False, keep=2)
    for i in range(4):
        site.change(seed=10 + i)
        listed = top_level(site.repo, site.blobrepo)
        lines, _, _ = dry_then_real(site, caplog, "standard", T0 + 10 * i)
        assert simulate(listed, lines) == top_level(site.repo, site.blobrepo)
        assert f"Would make a blob backup {site.blobrepo / 'blobstorage.0'} of {site.blobdir}" in lines
        numbered = [n for n in listed if os.path.basename(n).startswith("blobstorage.")]
        assert sum(line.startswith("Would rename ") for line in lines) == len(numbered)


def test_dry_run_names_what_dead_runs_left(site, caplog):
    """Leftovers of interrupted runs (a temporary file and an ``.index``
    of a backup that never got its ``.dat`` line, a blob backup build) are
    named: the real run removes them first."""
    caplog.set_level(logging.INFO)
    _core.backup(site.config, "standard", now=T0)
    dead = stamp(T0 + 5)
    (site.repo / f".{dead}.deltafsz.abc123.tmp").write_bytes(b"half")
    (site.repo / f"{dead}.index").write_bytes(b"index of a dead run")
    partial = site.blobrepo / f".blobstorage.{dead}.partial"
    (partial / "blobstorage").mkdir(parents=True)
    site.change(seed=2)
    lines, created, removed = dry_then_real(site, caplog, "standard", T0 + 10)
    assert planned(lines) == (created, removed)
    assert removed == {
        str(site.repo / f".{dead}.deltafsz.abc123.tmp"),
        str(site.repo / f"{dead}.index"),
        str(partial),
    }
    assert any(line.startswith("Would make an incremental backup ") for line in lines)


def test_dry_run_hooks_say_they_would_run(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    marker = tmp_path / "ran"
    site = Site(tmp_path, pre_command=f"touch {marker}", post_command=f"touch {marker}")
    before = site.state()
    _core.backup(site.config, "standard", now=T0, dry_run=True)
    lines = would(caplog)
    assert lines[0] == f"Would run pre_command: touch {marker}"
    assert lines[-1] == f"Would run post_command: touch {marker}"
    assert not marker.exists()
    assert site.state() == before


def test_dry_run_backup_error_is_the_real_runs(site, caplog):
    # A Data.fs ZODB cannot open: the same one-line error, nothing changed.
    with open(site.datafs, "r+b") as f:
        f.write(b"XXXX")
    before = site.state()
    with pytest.raises(_core.BackupError) as dry:
        _core.backup(site.config, "standard", now=T0, dry_run=True)
    assert site.state() == before
    with pytest.raises(_core.BackupError) as real:
        _core.backup(site.config, "standard", now=T0)
    assert str(dry.value) == str(real.value)
    assert "\n" not in str(dry.value)


@pytest.fixture
def backed_up(site):
    """The site with a full and an incremental backup (blobs changed
    between them); returns (site, first stamp, second stamp)."""
    _core.backup(site.config, "standard", now=T0)
    site.change(seed=2)
    _core.backup(site.config, "standard", now=T0 + 10)
    return site, stamp(T0), stamp(T0 + 10)


def repozo_chain(repo, out, date=None):
    """The files ZODB's ``repozo -R -v`` uses, and its restored Data.fs."""
    args = ["-R", "-v", "-r", str(repo), "-o", str(out)]
    if date:
        args += ["-D", date]
    p = ok(theirs(*args))
    return [line.strip() for line in p.stderr.splitlines() if line.startswith("\t")]


@pytest.mark.parametrize("date", [None, "first"])
def test_dry_run_restore_names_repozos_chain(backed_up, tmp_path, caplog, date):
    site, s0, _ = backed_up
    caplog.set_level(logging.INFO)
    when = s0 if date else None
    chain = repozo_chain(site.repo, tmp_path / "repozo.fs", when)
    assert len(chain) == (1 if date else 2)
    before = site.state()
    for target in (None, tmp_path / "copy"):
        caplog.clear()
        _core.restore(site.config, "standard", when, now=T0 + 100, target=target, dry_run=True)
        lines = would(caplog)
        assert site.state() == before
        datafs = target / "Data.fs" if target else site.datafs
        blobdir = target / "blobstorage" if target else site.blobdir
        line = next(x for x in lines if x.startswith(f"Would restore {datafs} from "))
        assert line.split(" from ", 1)[1].split(", ") == chain
        if target is None and date:
            # The live Data.fs starts with that older state: it would be
            # kept and cut.
            kept = os.path.getsize(tmp_path / "repozo.fs")
            cut = os.path.getsize(datafs) - kept
            assert cut > 0
            assert (
                f"Would keep the first {kept} bytes of {datafs} (they are the "
                "backup's, checked: the md5 of every backup file) and move the "
                f"{cut} bytes after them to {datafs}.after-{s0}"
            ) in lines
        newest = chain[-1].rsplit(".", 1)[0]
        assert f"Would restore {datafs}.index from {newest}.index" in lines
        blob_stamp = os.path.basename(newest)
        assert f"Would restore {blobdir} from {site.blobrepo / f'blobstorage.{blob_stamp}'}" in lines
        if target:
            assert f"Would create directory {target}" in lines
            assert not target.exists()


def test_dry_run_restore_error_is_the_real_runs(backed_up):
    site, _, _ = backed_up
    before = site.state(lock_times=False)
    errors = []
    for dry_run in (True, False):
        with pytest.raises(_core.BackupError) as e:
            _core.restore(site.config, "standard", "2000-01-01", now=T0 + 100, dry_run=dry_run)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert site.state(lock_times=False) == before


def read_blobs(datafs, blobdir):
    """{doc key: blob bytes} of a zodbgen storage, read with ZODB."""
    import ZODB
    from ZODB.FileStorage import FileStorage

    db = ZODB.DB(FileStorage(str(datafs), blob_dir=str(blobdir), read_only=True))
    try:
        conn = db.open()
        docs = conn.root()["docs"]
        out = {}
        for key in docs.keys():
            doc = docs[key]
            if "file" in doc:
                with doc["file"].open("r") as f:
                    out[key] = f.read()
        conn.close()
        return out
    finally:
        db.close()


@pytest.mark.parametrize("date", [None, "first"])
def test_target_restore_leaves_a_running_site_alone(backed_up, tmp_path, date):
    from ZODB.FileStorage import FileStorage

    site, s0, _ = backed_up
    when = s0 if date else None
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, when)
    target = tmp_path / "copy"

    # A running Zope: the live storage open, its lock held.
    live = FileStorage(str(site.datafs), blob_dir=str(site.blobdir))
    try:
        before = site.state(lock_times=False)
        with pytest.raises(_core.BackupError, match="is locked"):
            _core.restore(site.config, "standard", when, now=T0 + 100)
        _core.restore(site.config, "standard", when, now=T0 + 100, target=target)
        after = site.state(lock_times=False)
    finally:
        live.close()
    # Nothing live or in the backup locations changed (the copy is the
    # only new entry of tmp_path).
    tmp_before, tmp_after = before.pop(str(site.tmp)), after.pop(str(site.tmp))
    assert after == before
    new = {k for k in tmp_after if k not in tmp_before}
    assert {k.split(os.sep)[0] for k in new} == {"copy"}
    assert {k: v for k, v in tmp_after.items() if k not in new and k != "."} == {
        k: v for k, v in tmp_before.items() if k != "."
    }

    with open(target / "Data.fs", "rb") as a, open(expected, "rb") as b:
        assert a.read() == b.read()
    restored = read_blobs(target / "Data.fs", target / "blobstorage")
    assert restored
    if date is None:
        assert restored == read_blobs(site.datafs, site.blobdir)
    names = sorted(os.listdir(target))
    assert names == ["Data.fs", "Data.fs.index", "Data.fs.lock", "blobstorage"]


def test_target_prompt_and_refusals(site, tmp_path):
    target = tmp_path / "copy"
    assert site.config.restore_targets(str(target)) == (
        [str(target / "Data.fs")],
        [str(target / "blobstorage")],
    )
    assert site.config.restore_targets() == ([str(site.datafs)], [str(site.blobdir)])
    with pytest.raises(_core.ConfigError, match="parent directory .* does not exist"):
        site.config.restore_targets(str(tmp_path / "no" / "copy"))
    with pytest.raises(_core.ConfigError, match="must not replace the live site"):
        _core.restore(site.config, "standard", target=str(site.fsdir))


def test_scripts_take_dry_run_and_target(backed_up, tmp_path, monkeypatch, capsys):
    """The generated scripts' functions: ``--dry-run`` (no prompt, nothing
    changed) and ``--target DIR``, as ``bin/backup`` / ``bin/restore``
    call them."""
    from collective.recipe.backup import main

    site, _, _ = backed_up
    monkeypatch.setenv("CRB_REPOZO_NOW", str(T0 + 100))
    storage = {
        "datafs": str(site.datafs),
        "blobdir": str(site.blobdir),
        "backup_location": str(site.repo),
        "blob_backup_location": str(site.blobrepo),
    }
    before = site.state()
    assert main.backup_main(storage=storage, argv=["--dry-run"]) == 0
    assert main.restore_main(storage=storage, argv=["--dry-run"]) == 0
    assert site.state() == before
    err = capsys.readouterr().err
    assert f"INFO: Would make no backup of {site.datafs}: nothing to do" in err
    assert f"INFO: Would restore {site.datafs} from " in err
    assert "Are you sure" not in err

    target = tmp_path / "copy"
    assert main.restore_main(storage=storage, argv=["-n", "--target", str(target)]) == 0
    assert (target / "Data.fs").is_file()
    bad = tmp_path / "no" / "copy"
    assert main.restore_main(storage=storage, argv=["--target", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"ERROR: --target {bad}: its parent directory {bad.parent} does not exist. "
        "Nothing was changed."
    )


def test_target_replaces_what_is_there(backed_up, tmp_path):
    """A second restore into the same DIR replaces its files by the
    restore's swap, leaving no temporaries or intent record."""
    site, s0, _ = backed_up
    target = tmp_path / "copy"
    _core.restore(site.config, "standard", now=T0 + 100, target=target)
    newest = read_blobs(target / "Data.fs", target / "blobstorage")
    newest_bytes = (target / "Data.fs").read_bytes()
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, s0)
    _core.restore(site.config, "standard", s0, now=T0 + 100, target=target)
    with open(target / "Data.fs", "rb") as a, open(expected, "rb") as b:
        assert a.read() == b.read()
    # The Data.fs there started with the older state: it was cut, and the
    # bytes after that state were kept beside it, so that appending them
    # undoes the restore.
    tail = target / f"Data.fs.after-{s0}"
    assert expected.read_bytes() + tail.read_bytes() == newest_bytes
    tail.unlink()
    older = read_blobs(target / "Data.fs", target / "blobstorage")
    assert newest and older
    # The blobs of that date: repozo's Data.fs with the blob backup's tree.
    assert older == read_blobs(expected, site.blobrepo / f"blobstorage.{s0}" / "blobstorage")
    assert sorted(os.listdir(target)) == ["Data.fs", "Data.fs.index", "Data.fs.lock", "blobstorage"]
