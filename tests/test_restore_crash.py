"""A restore killed at any point of its renames, unlinks and flushes leaves
a state the next run finishes, and never a storage without its Data.fs or
blobstorage.

The real ``bin/restore`` runs under ``strace``, which injects SIGKILL at the
N-th call of one syscall (per thread), for N = 1, 2, ... until the restore
completes; then the same for the next syscall. After each kill:

- the live Data.fs is byte for byte the old state or the restored one, and
  the blobstorage too (each one complete; the two may differ only while
  the swap is under way, which the next run resolves);
- the next run (``bin/backup`` or ``bin/restore -n``, alternately) exits 0,
  leaves no ``.crb-restore-*`` temporary and no intent record, and the
  live Data.fs, its index and the blobstorage belong together: the old
  state when the restore was killed before recording its swap, the
  restored one after (an intent record means every new copy was complete
  and flushed, so the swap is rolled forward).

A run on ext4 (RENAME_EXCHANGE available) made 63 trials: 56 kills
(rename 1, renameat 2, renameat2 3, unlink 2, unlinkat 34, fsync 14,
fdatasync 0) and 7 completed runs, one per syscall. Of the kills, 12 left
the old state untouched (killed before the swap was recorded), 9 were
rolled forward from an intent record by the next run, and 35 came after
the swap (only the old copies were left to remove). The counts are
printed (``-s``) as ``crash trials: ...``."""

import os
import shutil
import signal
import subprocess

import pytest

from test_scripts_e2e import Site
from test_scripts_e2e import sha
from test_scripts_e2e import stamps
from blobhelpers import state


STRACE = shutil.which("strace")
SYSCALLS = [
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "fsync",
    "fdatasync",
    "ftruncate",
]
INTENT = ".crb-restore.intent"

pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")


def live_state(site):
    index = site.datafs + ".index"
    datafs = sha(site.datafs) if os.path.exists(site.datafs) else None
    blobs = (
        state(site.blobdir, mtimes=False) if os.path.isdir(site.blobdir) else None
    )
    return datafs, sha(index) if os.path.exists(index) else None, blobs


def tails(site):
    """The bytes a restore cut off the Data.fs and kept beside it."""
    return [n for n in os.listdir(site.fsdir) if n.startswith("Data.fs.after-")]


def check_tail(site, old_bytes, where):
    """Whenever the Data.fs was cut, the kept tail is exactly what was cut:
    the restored Data.fs and it make the old one again."""
    kept = tails(site)
    if kept:
        (name,) = kept
        with open(site.datafs, "rb") as a, open(os.path.join(site.fsdir, name), "rb") as b:
            assert a.read() + b.read() == old_bytes, where


def leftovers(site):
    return [
        n
        for n in os.listdir(site.fsdir)
        if n.startswith(".crb-restore") or n.startswith("..crb-restore")
    ]


def traced(site, syscall, n, *args, fault="signal=SIGKILL"):
    """bin/restore with ``fault`` injected at the n-th ``syscall``."""
    env = dict(os.environ, CRB_REPOZO_NOW=str(site.now + 1000))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}"]
        + ["-e", f"inject={syscall}:{fault}:when={n}"]
        + [site.b.path("bin", "restore"), *args],
        cwd=site.b.dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def prepared(sample_buildout, tmp_path):
    """A site with a full and an incremental backup and a newer live state:
    (site, old state, restored state, reset to the old state)."""
    site = Site(sample_buildout)
    site.change()
    site.ok("backup")
    site.change()
    site.ok("backup")
    assert len(stamps(site.path("backups"), ".deltafsz")) == 1
    site.change()
    old = live_state(site)
    template = str(tmp_path / "var")
    shutil.copytree(site.var, template, symlinks=True)

    def reset():
        shutil.rmtree(site.var)
        shutil.copytree(template, site.var, symlinks=True)

    with open(site.datafs, "rb") as f:
        old_bytes = f.read()
    p = site.ok("restore", "-n")
    # The live Data.fs starts with the restored state: the restore cuts it
    # (the path under test here), keeping the rest beside it.
    assert any(line.startswith("INFO: Keeping the first ") for line in p.lines), p.lines
    check_tail(site, old_bytes, "prepared")
    assert len(tails(site)) == 1
    new = live_state(site)
    assert new[0] != old[0] and new[2] != old[2]
    assert not leftovers(site)
    reset.old_bytes = old_bytes
    return site, old, new, reset


def test_restore_killed_at_every_step(sample_buildout, tmp_path):
    site, old, new, reset = prepared(sample_buildout, tmp_path)

    counts = {"old": 0, "forward": 0, "after swap": 0, "completed": 0}
    kills = {}
    trials = 0
    for syscall in SYSCALLS:
        n = 1
        while True:
            kills[syscall] = n - 1
            reset()
            trials += 1
            p = traced(site, syscall, n, "-n")
            if p.returncode == 0:
                counts["completed"] += 1
                assert live_state(site) == new, syscall
                assert not leftovers(site)
                break
            where = f"{syscall} #{n}"
            assert p.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (
                where,
                p.returncode,
                p.stderr,
            )
            after_kill = live_state(site)
            # Each live name holds a complete copy, old or new (a Data.fs
            # being cut is one or the other: one ftruncate).
            assert after_kill[0] in (old[0], new[0]), where
            assert after_kill[2] in (old[2], new[2]), where
            recorded = os.path.exists(os.path.join(site.fsdir, INTENT))

            follow = ("backup",) if n % 2 else ("restore", "-n")
            q = site.run(*follow)
            assert q.returncode == 0, (where, follow, q.stderr)
            assert not leftovers(site), (where, leftovers(site))
            final = live_state(site)
            check_tail(site, reset.old_bytes, where)
            if final == old:
                assert not tails(site), where
            if follow[0] == "restore":
                assert final == new, where
            elif recorded:
                assert final == new, where
            else:
                # No intent: nothing was swapped yet, or all of it was.
                assert final == after_kill, where
                assert final in (old, new), where
            if recorded:
                counts["forward"] += 1
                assert any("rolled forward" in line for line in q.lines), q.lines
            elif after_kill == old:
                counts["old"] += 1
            else:
                counts["after swap"] += 1
            n += 1
    print(f"crash trials: {trials}, kills per syscall: {kills}, outcomes: {counts}")
    assert counts["completed"] == len(SYSCALLS)
    assert counts["forward"] > 0 and counts["old"] > 0


FAILING = [
    "write",
    "ftruncate",
    "copy_file_range",
    "fsync",
    "syncfs",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
]


def test_restore_failing_at_every_step(sample_buildout, tmp_path):
    """The same restore with EIO at the N-th call of each syscall instead of
    a kill: a restore that fails says so in one ERROR line, exits 1 and
    leaves the live site exactly as it was (a failure after the swap, while
    removing the old copies, is a warning, and the restore stands); the next
    restore then completes and leaves nothing behind."""
    site, old, new, reset = prepared(sample_buildout, tmp_path)
    outcomes = {"failed, nothing changed": 0, "restored": 0}
    trials = 0
    for syscall in FAILING:
        n = 1
        while True:
            reset()
            trials += 1
            p = traced(site, syscall, n, "-n", fault="error=EIO")
            where = f"{syscall} #{n}: {p.stderr.strip()[-300:]}"
            assert "Traceback" not in p.stderr and "panicked" not in p.stderr, where
            if p.returncode == 0:
                assert live_state(site) == new, where
                outcomes["restored"] += 1
                if "ERROR" not in p.stderr and not any(
                    s in p.stderr for s in ("WARNING", "Input/output error")
                ):
                    break  # the injection did not fire: every call was tried
            else:
                assert p.returncode == 1, where
                errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR:")]
                # (None when the failing write was that line itself: strace
                # counts per thread, so stderr's writes fail too.)
                assert len(errors) <= 1, where
                assert live_state(site) == old, where
                # Nothing kept beside it either: the cut was undone.
                assert not tails(site), where
                outcomes["failed, nothing changed"] += 1
            q = site.run("restore", "-n")
            assert q.returncode == 0, (where, q.stderr)
            assert live_state(site) == new, where
            assert not leftovers(site), (where, leftovers(site))
            n += 1
            assert n < 400, where
    print(f"failing-restore trials: {trials}, outcomes: {outcomes}")
    assert outcomes["failed, nothing changed"] > 0
