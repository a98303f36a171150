"""Helpers for the repozo tests: run our command line and ZODB's repozo,
read files, and name moments.

``T0`` is a fixed moment; ``at(n)`` is ``n`` seconds later. Both tools are
given these moments (ours through ``CRB_REPOZO_NOW``, repozo through
``repozo_at.py``), so backup names are distinct and ordered without sleeping.
"""

import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable
REPOZO = os.path.join(os.path.dirname(sys.executable), "repozo")
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def at(n):
    return T0 + n


def stamp(t):
    """The backup name root repozo gives moment ``t``."""
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


def ours(*args, now=None, cwd=None, check=False, binary=False):
    """Our command line, ``python -m collective.recipe.backup.repozo``."""
    env = dict(os.environ)
    env.pop("CRB_REPOZO_NOW", None)
    if now is not None:
        env["CRB_REPOZO_NOW"] = str(now)
    return subprocess.run(
        [PYTHON, "-m", "collective.recipe.backup.repozo", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=not binary,
        check=check,
    )


def theirs(*args, now=None, cwd=None, check=False):
    """ZODB's repozo: the installed script, or with a fixed clock."""
    if now is None:
        cmd = [REPOZO, *map(str, args)]
    else:
        cmd = [PYTHON, os.path.join(HERE, "repozo_at.py"), str(now), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=check)


def ok(proc):
    """Assert a tool run succeeded; return it."""
    assert proc.returncode == 0, (proc.args, proc.returncode, proc.stderr)
    return proc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def committed(path):
    """Data.fs bytes up to the end of the last committed transaction, as
    ZODB reads it."""
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(str(path), read_only=True)
    try:
        end = fs.getSize()
    finally:
        fs.close()
    return read(path)[:end]


def md5(data):
    return hashlib.md5(data).hexdigest()


LOCK_FILE = ".crb.lock"


def listing(directory):
    """The names in a backup location, without the location's lock file
    (it is ours, and never a backup)."""
    return sorted(n for n in os.listdir(directory) if n != LOCK_FILE)


def fstest_ok(path):
    """ZODB's fstest accepts the file (raises otherwise) and ZODB opens it."""
    from ZODB.FileStorage import FileStorage
    from ZODB.scripts import fstest

    fstest.check(str(path))
    fs = FileStorage(str(path), read_only=True)
    try:
        return fs.getSize()
    finally:
        fs.close()
