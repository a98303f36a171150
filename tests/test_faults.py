"""Crash and I/O-error consistency of backups and retention.

Every write, fsync, rename and unlink a backup run makes is, in turn, made
to kill the process (SIGKILL) or to fail (EIO; ENOSPC for writes), with
strace (see ``faultlib``). Each trial starts from a fresh copy of a prepared
state (a Data.fs with transactions not backed up yet, committed with real
ZODB, and a repository of earlier backups), and afterwards checks:

1. no Python traceback and no Rust panic on stderr; a failed run says why;
2. a run that exited 0 made a backup that recovers (``-R -w``, with our
   tool and with ZODB's repozo) to exactly the committed Data.fs, and for
   ``bin/backup`` a blob backup of that date equal to the live blobs;
3. no data file under a final name that its ``.dat`` does not list with
   the right size and md5, unless the next run cleans it up;
4. the next normal run exits 0, and then verify passes and both tools
   recover the committed Data.fs (for the scripts, the newest blob backup
   is the live blobs);
5. verify, right after the trial, fails exactly when recover fails or
   gives a state that is not one of the committed backups;
6. no temporary file (``.*.tmp``, a blob backup's ``.*.partial``) is left
   once the next run is done;
7. (scripts) after the next run, ``keep = 2`` retention has left two full
   backups and two blob backups: a failed run must not cost a restorable
   pair.

Trials run two at a time. ZODB's repozo runs in this process (see
``faultlib.theirs``); everything under test runs as a subprocess.

The sweep for one syscall goes N = 1, 2, ... until a run in which the
injection no longer fires (interpreter start-up calls included). Outcomes
and violations are counted per case and printed at the end of the session.

The overlap tests start two backups of one repository at the same moment
and check the chain they leave.
"""

import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections import defaultdict

import pytest

import faultlib
import zodbgen
from blobhelpers import state as tree_state
from faultlib import PYTHON
from repozo_util import stamp

pytestmark = pytest.mark.skipif(faultlib.STRACE is None, reason="strace is not installed")

T0 = 1_700_000_000
#: Clock of the trial run and of the next normal run.
T_TRIAL = T0 + 100
T_NEXT = T0 + 200
WORKERS = 2

#: Which faults each syscall family gets.
FAULTS = {
    "write": ("kill", "eio", "enospc"),
    "fsync": ("kill", "eio"),
    "rename": ("kill", "eio"),
    "unlink": ("kill", "eio"),
}


# --- the summary -------------------------------------------------------------


class Ledger:
    """Outcomes and violations of every trial, by case."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = defaultdict(Counter)
        self.violations = defaultdict(Counter)
        self.examples = {}
        self.no_calls = set()

    def add(self, case, trial):
        with self.lock:
            self.outcomes[case][trial.outcome] += 1
            for v in trial.violations:
                key = (case, v.split(":", 1)[0])
                self.violations[case][v.split(":", 1)[0]] += 1
                self.examples.setdefault(key, v)

    def lines(self):
        out = ["fault injection: trials by case (op, syscall family, fault)"]
        total = Counter()
        for case in sorted(self.outcomes):
            o = self.outcomes[case]
            total.update(o)
            n = sum(o.values())
            bad = self.violations.get(case)
            out.append(
                f"  {' '.join(case):38} {n:4} trials  "
                + " ".join(f"{k}={o[k]}" for k in sorted(o))
                + (
                    ("  VIOLATIONS " + " ".join(f"{k}x{v}" for k, v in sorted(bad.items())))
                    if bad
                    else ""
                )
            )
        out.append(
            f"  total {sum(total.values())} trials: "
            + " ".join(f"{k}={total[k]}" for k in sorted(total))
        )
        for op, family in sorted(self.no_calls):
            out.append(f"  {op} makes no {family} call (nothing to inject)")
        for (case, inv), example in sorted(self.examples.items()):
            out.append(f"  [{' '.join(case)}] {example}")
        return out


_LEDGER = Ledger()


@pytest.fixture(scope="session")
def ledger(pytestconfig):
    yield _LEDGER
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if reporter is None or not _LEDGER.outcomes:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in _LEDGER.lines():
            reporter.write_line(line)


class Trial:
    """One run under injection and what the checks found."""

    def __init__(self, syscall, fault, n, run, root=""):
        self.root = root
        self.syscall = syscall
        self.fault = fault
        self.n = n
        self.run = run
        self.violations = []

    @property
    def fired(self):
        return self.run.fired

    @property
    def outcome(self):
        if not self.run.fired:
            return "not-fired"
        if self.run.killed:
            return "killed"
        return "exit0" if self.run.returncode == 0 else "failed"

    def where(self):
        inj = self.run.injected
        call = inj[0].split(None, 1)[-1] if inj else "?"
        if self.root:
            call = call.replace(self.root + os.sep, "").replace(self.root, ".")
        call = re.sub(r"\s+", " ", call)[:140]
        return f"{self.syscall}#{self.n} {self.fault} [{call}]"

    def violate(self, inv, what):
        if self.root:
            what = what.replace(self.root + os.sep, "").replace(self.root, ".")
        self.violations.append(f"({inv}): {self.where()}: {what[:400]}")


def clean_stderr(trial, run, label):
    marks = run.tracebacks()
    if marks:
        # The lines that say what it was: a logging error, a panic, the
        # exception.
        said = [
            ln.strip()
            for ln in run.stderr.splitlines()
            if "Logging error" in ln or "panicked" in ln or re.match(r"^\w+(Error|Exception)\b", ln)
        ]
        trial.violate(1, f"{label} stderr has {marks}: {' / '.join(said[:3])}")


# --- prepared states -----------------------------------------------------------


class RepozoState:
    """A Data.fs and a repository holding a full backup and an incremental
    of it, with more transactions committed since."""

    def __init__(self, root, gzip):
        self.dir = str(root)
        self.repo = os.path.join(self.dir, "repo")
        self.datafs = os.path.join(self.dir, "Data.fs")
        os.makedirs(self.repo)
        flags = ["-z"] if gzip else []
        self.ends = []
        for seed, (txns, extra) in enumerate([(60, ["-F"]), (15, [])], start=1):
            zodbgen.generate(self.dir, transactions=txns, blobs=False, seed=seed, undos=1)
            r = faultlib.ours(
                "-B", "-r", self.repo, "-f", self.datafs, *extra, *flags, now=T0 + seed
            )
            assert r.returncode == 0, r.stderr
            self.ends.append(fs_end(self.datafs))
        zodbgen.generate(self.dir, transactions=15, blobs=False, seed=9, undos=1)
        self.live = committed(self.datafs)
        assert len(self.live) > self.ends[-1]


def fs_end(path):
    return len(committed(path))


def committed(path):
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(str(path), read_only=True)
    try:
        end = fs.getSize()
    finally:
        fs.close()
    return faultlib.read(path)[:end]


@pytest.fixture(scope="module")
def repozo_states(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-states")
    return {"plain": RepozoState(root / "plain", False), "gz": RepozoState(root / "gz", True)}


# --- the checks themselves ------------------------------------------------------


def test_checks_see_damage(repozo_states, tmp_path):
    """The helpers the trials rely on report what they are there to report:
    an injection that fired (error and kill), an unlisted or altered data
    file, a gap in the chain, a temporary file."""
    probe = [PYTHON, "-c", "import os; os.write(1, b'x'); os.write(1, b'y')"]
    r = faultlib.inject(probe, "write", "eio", 2, env=faultlib.clean_env())
    assert r.fired and not r.killed and r.returncode == 1 and "(INJECTED)" in r.injected[0]
    r = faultlib.inject(probe, "write", "kill", 2, env=faultlib.clean_env())
    assert r.fired and r.killed and r.returncode == -9 and r.injected
    r = faultlib.inject(probe, "write", "kill", 3, env=faultlib.clean_env())
    assert not r.fired and r.returncode == 0 and r.stdout == "xy"

    d = str(tmp_path / "copy")
    shutil.copytree(repozo_states["plain"].dir, d)
    repo = os.path.join(d, "repo")
    assert faultlib.unlisted_or_wrong(repo) == {}
    assert faultlib.chain_gaps(repo) == []
    assert faultlib.temporaries(repo) == []
    full, delta = faultlib.data_files(repo)
    with open(os.path.join(repo, delta), "ab") as f:
        f.write(b"more")
    shutil.copy(os.path.join(repo, full), os.path.join(repo, "2023-11-14-22-20-00.deltafs"))
    open(os.path.join(repo, ".2023-11-14-22-20-00.fs.abc123.tmp"), "w").close()
    bad = faultlib.unlisted_or_wrong(repo)
    assert sorted(bad) == [delta, "2023-11-14-22-20-00.deltafs"], bad
    assert faultlib.temporaries(repo) == [".2023-11-14-22-20-00.fs.abc123.tmp"]
    (dat,) = [n for n in os.listdir(repo) if n.endswith(".dat")]
    lines = faultlib.read(os.path.join(repo, dat)).decode().splitlines()
    dest, start, end, md5 = lines[1].split()
    lines[1] = f"{dest} {int(start) + 1} {end} {md5}"
    with open(os.path.join(repo, dat), "w") as f:
        f.write("\n".join(lines) + "\n")
    assert len(faultlib.chain_gaps(repo)) == 1


# --- repozo backups ----------------------------------------------------------


#: op name -> (repozo -B flags of the trial, of the next normal run,
#: prepared state). The ``*-then-*`` ops are a full backup followed by the
#: default run, which decides by itself between nothing, an incremental
#: and a full backup (what ``bin/backup`` with ``full = false`` does).
REPOZO_OPS = {
    "full": (["-F"], ["-F"], "plain"),
    "full-then-inc": (["-F"], [], "plain"),
    "full-z-then-quick": (["-F", "-z"], ["-Q", "-z"], "gz"),
    "inc-quick": (["-Q"], ["-Q"], "plain"),
    "inc-quick-z": (["-Q", "-z"], ["-Q", "-z"], "gz"),
    "inc": ([], [], "plain"),
    "inc-z": (["-z"], ["-z"], "gz"),
}

#: Cases that fail on the current core, by what the trials showed; xfail
#: (not strict) so that the suite stays runnable while the core is fixed.
KNOWN = {}


def cases(ops):
    out = []
    for op in ops:
        for family, faults in FAULTS.items():
            for fault in faults:
                reason = KNOWN.get((op, family, fault))
                marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
                out.append(
                    pytest.param(op, family, fault, marks=marks, id=f"{op}-{family}-{fault}")
                )
    return out


_CALLS = {}
_CALLS_LOCK = threading.Lock()


def calls_of(key, argv_for, workdir):
    """The traced syscalls a clean run of an operation makes (once per
    operation)."""
    with _CALLS_LOCK:
        if key not in _CALLS:
            argv, env, cwd = argv_for(workdir)
            counts, run = faultlib.count_calls(argv, env=env, cwd=cwd)
            assert run.returncode == 0, run.stderr
            _CALLS[key] = counts
        return _CALLS[key]


def check_recovered(trial, repo, live, label, inv, tmp):
    """Both tools recover ``repo`` to ``live``."""
    for name, tool in (("ours", faultlib.ours), ("repozo", faultlib.theirs)):
        p, data = faultlib.recovered(tool, repo, os.path.join(tmp, f"{label}-{name}.fs"))
        if name == "ours":
            clean_stderr(trial, p, f"{label} recover")
        if data is None:
            last = (p.stderr.strip().splitlines() or [""])[-1]
            trial.violate(inv, f"{label}: {name} recover -w fails: {last}")
        elif data != live:
            trial.violate(
                inv, f"{label}: {name} recovers {len(data)} bytes, not the committed {len(live)}"
            )


def check_verify_agrees(trial, repo, valid, tmp):
    """(5): verify fails exactly when recover fails or gives a state that is
    not a committed backup."""
    v = faultlib.ours("-V", "-r", repo)
    clean_stderr(trial, v, "verify")
    p, data = faultlib.recovered(faultlib.ours, repo, os.path.join(tmp, "now.fs"))
    clean_stderr(trial, p, "recover")
    good = data is not None and len(data) in valid and data == valid[len(data)]
    if (v.returncode == 0) != good:
        if data is None:
            got = "recover fails: " + (p.stderr.strip().splitlines() or [""])[-1]
        elif good:
            got = f"recover gives the committed backup of {len(data)} bytes"
        else:
            got = f"recover gives {len(data)} bytes that are no committed backup"
        verdict = (
            "passes"
            if v.returncode == 0
            else "fails (" + (v.stderr.strip().splitlines() or [""])[-1] + ")"
        )
        trial.violate(5, f"verify {verdict} but {got}")


def leave_dead_temporary(repo):
    """A backup unlinks only what dead runs left: give it some."""
    with open(os.path.join(repo, ".2023-11-14-22-13-59.deltafs.Dead00.tmp"), "wb") as f:
        f.write(b"half a backup")


def repozo_trial(state, flags, next_flags, syscall, fault, n, workdir):
    d = os.path.join(workdir, f"{syscall}-{fault}-{n}")
    shutil.copytree(state.dir, d)
    repo, datafs = os.path.join(d, "repo"), os.path.join(d, "Data.fs")
    if syscall in faultlib.FAMILIES["unlink"]:
        leave_dead_temporary(repo)
    argv = [PYTHON, "-m", "collective.recipe.backup.repozo", "-B", "-r", repo, "-f", datafs, *flags]
    run = faultlib.inject(
        argv, syscall, fault, n, env=faultlib.clean_env(CRB_REPOZO_NOW=T_TRIAL), cwd=d
    )
    t = Trial(syscall, fault, n, run, root=d)
    check_run(t, run)
    live = state.live
    valid = {e: live[:e] for e in state.ends + [len(live)]}
    tmp = os.path.join(d, "out")
    os.mkdir(tmp)
    if run.returncode == 0:
        check_recovered(t, repo, live, "after a run that exited 0", 2, tmp)
    elif not run.fired:
        t.violate(2, f"a run without any fault exits {run.returncode}: {run.stderr.strip()}")
    if not run.fired:
        # The end of the sweep: a normal run, checked above.
        shutil.rmtree(d)
        return t
    bad_after_trial = faultlib.unlisted_or_wrong(repo)
    check_verify_agrees(t, repo, valid, tmp)
    nxt = faultlib.ours("-B", "-r", repo, "-f", datafs, *next_flags, now=T_NEXT)
    after_next(t, nxt, repo, [repo], bad_after_trial)
    if nxt.returncode == 0:
        v = faultlib.ours("-V", "-r", repo)
        if v.returncode != 0:
            t.violate(4, "verify after the next run fails: " + v.stderr.strip())
        check_recovered(t, repo, live, "after the next run", 4, tmp)
    shutil.rmtree(d)
    return t


def check_run(t, run):
    clean_stderr(t, run, "trial")
    if run.fired and not run.killed and run.returncode != 0 and not run.stderr.strip():
        t.violate(1, f"exit {run.returncode} without a word on stderr")


def after_next(t, nxt, repo, temp_roots, bad_after_trial):
    clean_stderr(t, nxt, "next run")
    if nxt.returncode != 0:
        t.violate(
            4,
            f"the next normal run exits {nxt.returncode}: "
            + (nxt.stderr.strip().splitlines() or [""])[-1],
        )
    bad = faultlib.unlisted_or_wrong(repo)
    for name, why in sorted(bad.items()):
        left = " (left by the trial)" if name in bad_after_trial else ""
        t.violate(3, f"after the next run: {why}{left}")
    left = faultlib.temporaries(*temp_roots)
    if left:
        t.violate(6, f"temporary files after the next run: {left}")


def run_sweep(case, argv_for, trial_fn, family, fault, tmp_path, ledger):
    # The unlink sweeps of repozo runs start from a dead run's leftovers:
    # counted apart.
    calls = calls_of((case[0], family == "unlink"), argv_for, str(tmp_path / "count"))
    syscalls = [sc for sc in faultlib.FAMILIES[family] if calls.get(sc)]
    if not syscalls:
        with ledger.lock:
            ledger.no_calls.add((case[0], family))
        pytest.fail(f"{case[0]} makes no {family} call to inject into: {calls}")
    violations = []
    for sc in syscalls:
        work = tmp_path / sc
        work.mkdir()
        results = faultlib.sweep(
            lambda n: trial_fn(sc, fault, n, str(work)), calls[sc], workers=WORKERS
        )
        for t in results:
            ledger.add(case, t)
            violations += t.violations
    assert not violations, f"{len(violations)} violations:\n" + "\n".join(violations)


@pytest.mark.parametrize("op,family,fault", cases(REPOZO_OPS))
def test_repozo_backup_faults(op, family, fault, repozo_states, tmp_path, ledger):
    flags, next_flags, which = REPOZO_OPS[op]
    state = repozo_states[which]

    def argv_for(workdir):
        shutil.copytree(state.dir, workdir, dirs_exist_ok=True)
        if family == "unlink":
            leave_dead_temporary(os.path.join(workdir, "repo"))
        argv = [PYTHON, "-m", "collective.recipe.backup.repozo", "-B"]
        argv += [
            "-r",
            os.path.join(workdir, "repo"),
            "-f",
            os.path.join(workdir, "Data.fs"),
            *flags,
        ]
        return argv, faultlib.clean_env(CRB_REPOZO_NOW=T_TRIAL), None

    def trial(sc, f, n, work):
        return repozo_trial(state, flags, next_flags, sc, f, n, work)

    run_sweep((op, family, fault), argv_for, trial, family, fault, tmp_path, ledger)


# --- bin/backup and bin/snapshotbackup ---------------------------------------------


#: op name -> (script, its repository, its blob backups)
SITE_OPS = {
    "bin-backup": ("backup", "backups", "blobstoragebackups"),
    "bin-snapshotbackup": ("snapshotbackup", "snapshotbackups", "blobstoragesnapshots"),
}
SITE_PART = """\
[backup]
recipe = collective.recipe.backup
blob_storage = ${buildout:directory}/var/filestorage/blobstorage
keep = 2
full = true
"""


class SiteState:
    """A buildout with a ``keep = 2``, ``full = true`` backup part, a
    Data.fs with blobs made by real ZODB, two backups and two snapshots of
    earlier states, and new transactions since. Trials run copies of its
    ``var`` with the scripts' paths pointed at the copy."""

    def __init__(self, root, eggs):
        from conftest import BuildoutRun

        self.dir = str(root)
        os.makedirs(os.path.join(self.dir, "var"))
        b = BuildoutRun(self.dir, "6", str(eggs))
        p = b.run("backup", SITE_PART)
        assert p.returncode == 0, p.output
        self.fsdir = os.path.join(self.dir, "var", "filestorage")
        self.ends = []
        self.blob_states = []
        now = T0
        for seed in (1, 2):
            zodbgen.generate(self.fsdir, transactions=8, seed=seed, undos=1)
            self.ends.append(fs_end(os.path.join(self.fsdir, "Data.fs")))
            self.blob_states.append(blobs_of(self.fsdir))
            for script in ("backup", "snapshotbackup"):
                now += 1
                r = faultlib.run(
                    [b.path("bin", script)], env=faultlib.clean_env(CRB_REPOZO_NOW=now)
                )
                assert r.returncode == 0, r.stderr
        zodbgen.generate(self.fsdir, transactions=8, seed=3, undos=1)
        self.live = committed(os.path.join(self.fsdir, "Data.fs"))
        self.live_blobs = blobs_of(self.fsdir)
        self.blob_states.append(self.live_blobs)
        self.scripts = {
            n: faultlib.read(b.path("bin", n)).decode() for n in ("backup", "snapshotbackup")
        }

    def copy(self, d, script):
        """A copy of the site's ``var`` in ``d`` and the script pointed at
        it; returns the script's path."""
        shutil.copytree(os.path.join(self.dir, "var"), os.path.join(d, "var"), symlinks=True)
        os.makedirs(os.path.join(d, "bin"), exist_ok=True)
        path = os.path.join(d, "bin", script)
        with open(path, "w") as f:
            f.write(self.scripts[script].replace(self.dir + os.sep, d + os.sep))
        os.chmod(path, 0o755)
        return path


def blobs_of(fsdir):
    return tree_state(os.path.join(fsdir, "blobstorage"), mtimes=False)


def blob_backups(location):
    """``{name: tree state}`` of the blob backups under final names."""
    if not os.path.isdir(location):
        return {}
    return {
        n: tree_state(os.path.join(location, n, "blobstorage"), mtimes=False)
        for n in sorted(os.listdir(location))
        if n.startswith("blobstorage.") and not os.path.islink(os.path.join(location, n))
    }


@pytest.fixture(scope="module")
def site_state(tmp_path_factory, egg_cache):
    return SiteState(tmp_path_factory.mktemp("fault-site"), egg_cache / "6")


def site_trial(state, op, syscall, fault, n, workdir):
    script, repo_name, blob_name = SITE_OPS[op]
    d = os.path.join(workdir, f"{syscall}-{fault}-{n}")
    os.makedirs(d)
    path = state.copy(d, script)
    repo = os.path.join(d, "var", repo_name)
    blobloc = os.path.join(d, "var", blob_name)
    run = faultlib.inject(
        [path], syscall, fault, n, env=faultlib.clean_env(CRB_REPOZO_NOW=T_TRIAL), cwd=d
    )
    t = Trial(syscall, fault, n, run, root=d)
    check_run(t, run)
    live = state.live
    tmp = os.path.join(d, "out")
    os.mkdir(tmp)
    mine = f"blobstorage.{stamp(T_TRIAL)}"
    if run.returncode == 0:
        check_recovered(t, repo, live, "after a run that exited 0", 2, tmp)
        got = blob_backups(blobloc).get(mine)
        if got != state.live_blobs:
            t.violate(
                2,
                f"exit 0, but the blob backup {mine} is {'missing' if got is None else 'not the live blobs'}",
            )
    elif not run.fired:
        t.violate(2, f"a run without any fault exits {run.returncode}: {run.stderr.strip()}")
    if not run.fired:
        shutil.rmtree(d)
        return t
    valid = {e: live[:e] for e in state.ends + [len(live)]}
    bad_after_trial = faultlib.unlisted_or_wrong(repo)
    odd_blobs_after_trial = {
        n for n, s in blob_backups(blobloc).items() if s not in state.blob_states
    }
    check_verify_agrees(t, repo, valid, tmp)
    nxt = faultlib.run([path], env=faultlib.clean_env(CRB_REPOZO_NOW=T_NEXT), cwd=d)
    after_next(t, nxt, repo, [repo, blobloc], bad_after_trial)
    for name, s in blob_backups(blobloc).items():
        if s not in state.blob_states:
            left = " (left by the trial)" if name in odd_blobs_after_trial else ""
            t.violate(
                3, f"after the next run: blob backup {name} holds no state the blobs ever had{left}"
            )
    if nxt.returncode == 0:
        v = faultlib.ours("-V", "-r", repo)
        if v.returncode != 0:
            t.violate(4, "verify after the next run fails: " + v.stderr.strip())
        check_recovered(t, repo, live, "after the next run", 4, tmp)
        backups = blob_backups(blobloc)
        newest = f"blobstorage.{stamp(T_NEXT)}"
        if backups.get(newest) != state.live_blobs:
            t.violate(
                4,
                f"after the next run the blob backup {newest} is not the live blobs: {sorted(backups)}",
            )
        fulls = [n for n in faultlib.data_files(repo) if n.endswith((".fs", ".fsz"))]
        # keep = 2 keeps two full backups that restore with their blobs (a
        # full backup whose blob step failed does not count, and stays).
        pairs = [f for f in fulls if f"blobstorage.{f.split('.')[0]}" in backups]
        if len(pairs) != 2 or len(backups) != 2:
            t.violate(
                7,
                f"keep = 2, but after the next run: full backups {fulls}, blob backups {sorted(backups)}",
            )
    shutil.rmtree(d)
    return t


@pytest.mark.parametrize("op,family,fault", cases(SITE_OPS))
def test_script_faults(op, family, fault, site_state, tmp_path, ledger):
    def argv_for(workdir):
        os.makedirs(workdir, exist_ok=True)
        path = site_state.copy(workdir, SITE_OPS[op][0])
        return [path], faultlib.clean_env(CRB_REPOZO_NOW=T_TRIAL), workdir

    def trial(sc, f, n, work):
        return site_trial(site_state, op, sc, f, n, work)

    run_sweep((op, family, fault), argv_for, trial, family, fault, tmp_path, ledger)


# --- overlapping backups -------------------------------------------------------


ROUNDS = 4


def one_clear_line(p):
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    return len(lines) == 1 and not p.tracebacks()


@pytest.mark.parametrize(
    "clock",
    [
        "fixed",
        "fixed-stalled",
        "real",
    ],
)
@pytest.mark.parametrize("mode", ["inc", "inc-quick"])
def test_overlapping_backups(mode, clock, tmp_path, ledger):
    """Two backups of one repository started at the same moment, a few
    times over: whatever they do, the chain stays whole and recovers the
    committed Data.fs, and a run that cannot go on says so in one line and
    exits non-zero.

    ``fixed``: clocks one second apart; ``real``: both on the real clock,
    started early in the same second; ``fixed-stalled``: as ``fixed``, but
    each run is held for 0.7 s on entering its first ``renameat2`` (naming
    its data file, after it has read the repository and decided), so that
    the two overlap every time rather than when the scheduler lets them."""
    case = ("overlap", mode, clock)
    flags = ["-Q"] if mode == "inc-quick" else []
    repo = tmp_path / "repo"
    repo.mkdir()
    datafs = str(tmp_path / "Data.fs")
    zodbgen.generate(str(tmp_path), transactions=30, blobs=False, seed=1, undos=0)
    r = faultlib.ours("-B", "-F", "-r", repo, "-f", datafs, now=T0)
    assert r.returncode == 0, r.stderr
    violations = []
    argv = [
        PYTHON,
        "-m",
        "collective.recipe.backup.repozo",
        "-B",
        "-r",
        str(repo),
        "-f",
        datafs,
        *flags,
    ]
    for rnd in range(1, ROUNDS + 1):
        # Enough new data that the two copies overlap in time.
        zodbgen.generate(
            str(tmp_path), transactions=20, size="3M", blobs=False, seed=rnd + 1, undos=0
        )
        live = committed(datafs)
        if clock.startswith("fixed"):
            envs = [
                faultlib.clean_env(CRB_REPOZO_NOW=T0 + 10 * rnd + k, CRB_LOCK_TIMEOUT=30)
                for k in (0, 1)
            ]
        else:
            # Start early in a fresh second, so both runs share it.
            time.sleep(1.02 - time.time() % 1)
            envs = [faultlib.clean_env(CRB_LOCK_TIMEOUT=30) for _ in (0, 1)]
        argvs = [argv, argv]
        if clock == "fixed-stalled":
            argvs = [faultlib.stalled(argv, "renameat2", 700_000)] * 2
        procs = [
            subprocess.Popen(a, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for a, e in zip(argvs, envs)
        ]
        runs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            runs.append(faultlib.Run(argv, p.returncode, out, err))
        found = []
        for k, p in enumerate(runs):
            if p.tracebacks():
                found.append(f"run {k} stderr has {p.tracebacks()}")
            if p.returncode != 0 and not one_clear_line(p):
                found.append(
                    f"run {k} exits {p.returncode} without one clear line: {p.stderr.strip()[-300:]!r}"
                )
        gaps = faultlib.chain_gaps(str(repo))
        if gaps:
            ok = [k for k, p in enumerate(runs) if p.returncode == 0]
            found.append(f"the chain has gaps {gaps} (runs exiting 0: {ok})")
        for name, why in faultlib.unlisted_or_wrong(str(repo)).items():
            found.append(why)
        v = faultlib.ours("-V", "-r", repo)
        if v.returncode != 0:
            found.append(f"verify fails: {v.stderr.strip()[-200:]}")
        for name, tool in (("ours", faultlib.ours), ("repozo", faultlib.theirs)):
            p, data = faultlib.recovered(tool, str(repo), str(tmp_path / f"{name}.fs"))
            if data is None:
                found.append(
                    f"{name} recover -w fails: {(p.stderr.strip().splitlines() or [''])[-1][:200]}"
                )
            elif data != live:
                found.append(f"{name} recovers {len(data)} bytes, not the committed {len(live)}")
        left = faultlib.temporaries(str(repo))
        if left:
            found.append(f"temporary files: {left}")
        codes = "+".join(str(p.returncode) for p in runs)
        outcome = f"exits-{codes}"
        with ledger.lock:
            ledger.outcomes[case][outcome] += 1
            for f in found:
                ledger.violations[case]["overlap"] += 1
                ledger.examples.setdefault(
                    (case, f"overlap {len(ledger.examples)}"), f"round {rnd}, {outcome}: {f}"
                )
        violations += [f"round {rnd} ({outcome}): {f}" for f in found]
        if found:
            # A broken repository makes the later rounds meaningless.
            break
    assert not violations, "\n".join(violations)
