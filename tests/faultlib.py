"""Fault injection for the backup commands, with strace.

``inject(cmd, syscall, action, n)`` runs ``cmd`` under ``strace -f`` with
the ``n``-th call of one syscall failing (``error=EIO``/``ENOSPC``) or
killing the whole process (``signal=SIGKILL``), and says whether the
injection fired and on which call. The trace is restricted to the syscalls
of ``TRACED`` and written to a log file that is read back: strace marks an
injected error ``(INJECTED)`` and a killed tracee ``+++ killed by SIGKILL
+++``, which is how a run that got past its ``n``-th call is told from one
that did not.

strace counts calls per syscall (``write`` and ``pwrite64`` separately) and
per traced task, so with several threads ``when=N`` may fire in more than
one thread. ``sweep`` therefore raises ``n`` until a run does not fire at
all, which is the end of the syscall's calls in every thread.

The repository helpers read a repozo repository the way its format defines
it (``.dat`` lines ``<path> <start> <end> <md5>`` over data files named
after a UTC second), without using either implementation.
"""

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

STRACE = shutil.which("strace")
PYTHON = sys.executable
REPOZO = os.path.join(os.path.dirname(sys.executable), "repozo")

#: The syscall families the tests fail, by the concrete syscalls a
#: Rust/Python process on Linux uses for them.
FAMILIES = {
    "write": ("write", "pwrite64", "writev", "copy_file_range"),
    "fsync": ("fsync", "fdatasync", "syncfs"),
    "rename": ("rename", "renameat", "renameat2"),
    "unlink": ("unlink", "unlinkat", "rmdir"),
}
TRACED = tuple(sc for family in FAMILIES.values() for sc in family)
FAMILY_OF = {sc: fam for fam, scs in FAMILIES.items() for sc in scs}

#: strace's injection for each action the tests use.
ACTIONS = {
    "kill": "signal=SIGKILL",
    "eio": "error=EIO",
    "enospc": "error=ENOSPC",
}

STAMP = r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}"
DATA_RE = re.compile(rf"^({STAMP})\.(fs|fsz|deltafs|deltafsz)$")
DAT_RE = re.compile(rf"^({STAMP})\.dat$")
TRACEBACK_MARKS = ("Traceback (most recent call last)", "panicked")


def clean_env(**extra):
    """The environment of a traced run: no bytecode writes (they would be
    writes and renames of their own), no inherited fixed clock."""
    env = dict(os.environ)
    env.pop("CRB_REPOZO_NOW", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Run:
    """One run of a command, traced or not."""

    def __init__(self, argv, returncode, stdout, stderr, log=""):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.log = log

    @property
    def killed(self):
        return "+++ killed by SIGKILL +++" in self.log

    @property
    def injected(self):
        """The strace lines of the calls that were failed or killed (a call
        split by another thread's output is joined again)."""
        log = self.log.splitlines()
        hits = [
            i
            for i, ln in enumerate(log)
            if "(INJECTED)" in ln or (self.killed and re.search(r"= \?$", ln.rstrip()))
        ]
        lines = []
        for i in hits:
            ln = log[i]
            m = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", ln)
            if m:
                for prev in reversed(log[:i]):
                    if prev.startswith(m.group(1) + " ") and prev.endswith("<unfinished ...>"):
                        ln = prev[: -len("<unfinished ...>")].rstrip() + m.group(2)
                        break
            lines.append(ln)
        return lines

    @property
    def fired(self):
        return bool(self.injected) or self.killed

    def tracebacks(self):
        return [m for m in TRACEBACK_MARKS if m in self.stderr]


def run(argv, env=None, cwd=None, timeout=120):
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(argv, p.returncode, p.stdout, p.stderr)


def inject(argv, syscall, action, n, env=None, cwd=None, timeout=120):
    """Run ``argv`` with the ``n``-th ``syscall`` failed or killed."""
    fd, log = tempfile.mkstemp(prefix="strace-", suffix=".log")
    os.close(fd)
    try:
        cmd = [
            STRACE,
            "-f",
            "-qq",
            "-y",
            "-s",
            "0",
            "-o",
            log,
            "-e",
            "trace=" + ",".join(TRACED),
            "-e",
            f"inject={syscall}:{ACTIONS[action]}:when={n}",
            *argv,
        ]
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        with open(log, errors="replace") as f:
            text = f.read()
    finally:
        os.unlink(log)
    return Run(argv, p.returncode, p.stdout, p.stderr, text)


def stalled(argv, syscall, usecs):
    """``argv`` under strace, held for ``usecs`` on entering its first
    ``syscall`` (in any thread), otherwise untouched."""
    return [
        STRACE,
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        f"trace={syscall}",
        "-e",
        f"inject={syscall}:delay_enter={usecs}:when=1",
        *argv,
    ]


def count_calls(argv, env=None, cwd=None):
    """Calls of each traced syscall in one clean run (all tasks), and the
    run."""
    fd, log = tempfile.mkstemp(prefix="strace-", suffix=".log")
    os.close(fd)
    try:
        p = subprocess.run(
            [STRACE, "-f", "-qq", "-s", "0", "-o", log, "-e", "trace=" + ",".join(TRACED), *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        with open(log, errors="replace") as f:
            text = f.read()
    finally:
        os.unlink(log)
    counts = {}
    for ln in text.splitlines():
        m = re.match(r"^\d+\s+(?:<\.\.\. )?(\w+)[( ]", ln)
        if m and m.group(1) in TRACED and "resumed>" not in ln:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts, Run(argv, p.returncode, p.stdout, p.stderr, text)


def sweep(trial, expected, workers=2, limit=400):
    """Call ``trial(n)`` for n = 1, 2, ... until one returns a result whose
    ``fired`` is false; return the results up to and including that one.

    ``expected`` (the calls of a clean run, all threads together) bounds
    where that is: n = 1 .. expected + 1 run ``workers`` at a time, then one
    by one past it if every one of them still fired."""
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batch = list(pool.map(trial, range(1, expected + 2)))
    for r in batch:
        results.append(r)
        if not r.fired:
            return results
    n = expected + 2
    while n <= limit:
        r = trial(n)
        results.append(r)
        if not r.fired:
            return results
        n += 1
    raise AssertionError(f"injection still firing at call {limit}")


# --- reading a repository -------------------------------------------------


def read(path):
    with open(path, "rb") as f:
        return f.read()


def uncompressed(path):
    data = read(path)
    if path.endswith("z"):
        return gzip.decompress(data)
    return data


def data_files(repo):
    return sorted(n for n in os.listdir(repo) if DATA_RE.match(n))


def dat_entries(repo):
    """``{basename: (start, end, md5, dat name)}`` over every ``.dat``, and
    the problems of malformed ``.dat`` files."""
    entries, problems = {}, []
    for name in sorted(os.listdir(repo)):
        if not DAT_RE.match(name):
            continue
        text = read(os.path.join(repo, name)).decode("utf-8", "replace")
        for i, line in enumerate(text.split("\n")):
            if i == len(text.split("\n")) - 1 and line == "":
                continue
            fields = line.split()
            if len(fields) != 4 or not fields[1].isdigit() or not fields[2].isdigit():
                problems.append(f"{name} line {i + 1} is malformed: {line!r}")
                continue
            base = fields[0].rsplit("/", 1)[-1]
            entries[base] = (int(fields[1]), int(fields[2]), fields[3], name)
    return entries, problems


def unlisted_or_wrong(repo):
    """Every data file of ``repo`` that no ``.dat`` lists with its size and
    md5, and every malformed ``.dat``: ``{name: why}``."""
    entries, problems = dat_entries(repo)
    bad = {p.split(" ", 1)[0]: p for p in problems}
    for name in data_files(repo):
        if name not in entries:
            bad[name] = f"{name} has a final name but no .dat lists it"
            continue
        start, end, md5, dat = entries[name]
        try:
            body = uncompressed(os.path.join(repo, name))
        except (OSError, EOFError, zlib.error) as e:
            bad[name] = f"{name} (listed in {dat}) cannot be read: {e}"
            continue
        if len(body) != end - start or hashlib.md5(body).hexdigest() != md5:
            bad[name] = (
                f"{name} (listed in {dat} as {end - start} bytes) holds "
                f"{len(body)} bytes with another md5"
            )
    return bad


def chain_gaps(repo):
    """The newest ``.dat``'s lines that do not start where the previous one
    ends (empty when the chain is contiguous)."""
    dats = sorted(n for n in os.listdir(repo) if DAT_RE.match(n))
    if not dats:
        return []
    text = read(os.path.join(repo, dats[-1])).decode("utf-8", "replace")
    gaps, prev = [], None
    for line in text.splitlines():
        f = line.split()
        if len(f) != 4:
            continue
        if prev is not None and int(f[1]) != prev:
            gaps.append(
                f"{dats[-1]}: {f[0].rsplit('/', 1)[-1]} starts at {f[1]}, previous ends at {prev}"
            )
        prev = int(f[2])
    return gaps


def temporaries(*roots):
    """Hidden temporary files or directories (``.*.tmp``, ``.*.partial``)
    anywhere under ``roots``."""
    found = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                if n.startswith(".") and (n.endswith(".tmp") or n.endswith(".partial")):
                    found.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(found)


# --- the two tools -----------------------------------------------------------


def ours(*args, now=None, env=None):
    env = clean_env(**({"CRB_REPOZO_NOW": now} if now is not None else {}))
    return run([PYTHON, "-m", "collective.recipe.backup.repozo", *map(str, args)], env=env)


_REPOZO_LOCK = threading.Lock()


def theirs(*args):
    """ZODB's repozo, run in this process (its start-up, ZODB imports
    included, would cost more than the recovery of a small test Data.fs):
    a ``Run`` whose exit code is 1 and stderr the error for a failure,
    uncaught exceptions included."""
    from ZODB.scripts import repozo

    argv = [str(a) for a in args]
    with _REPOZO_LOCK:
        try:
            repozo.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            return Run(["repozo", *argv], code, "", "" if isinstance(e.code, int) else str(e.code))
        except Exception as e:  # what repozo lets through is a failure too
            return Run(["repozo", *argv], 1, "", f"{type(e).__name__}: {e}")
    return Run(["repozo", *argv], 0, "", "")


def recovered(tool, repo, out):
    """Recover the newest state of ``repo`` with ``-w`` into ``out`` with
    ``tool`` (``ours`` or ``theirs``): ``(run, bytes or None)``."""
    if os.path.exists(out):
        os.unlink(out)
    p = tool("-R", "-w", "-r", repo, "-o", out)
    data = read(out) if p.returncode == 0 and os.path.exists(out) else None
    return p, data
