"""README.rst runs as written.

The examples are taken out of README.rst and run verbatim:

- every ``.. code-block:: python``, in README order, in one site directory
  laid out as the examples assume (``var/filestorage/Data.fs`` made by real
  ZODB, ``var/blobstorage``, and last week's backups in ``var/backups`` and
  ``var/blobstoragebackups``, so that the dates in the examples have a
  backup to go back to);
- the ``python -m collective.recipe.backup...`` command lines, in a site
  like that;
- the Quick start: its first ``buildout.cfg`` with real zc.buildout, then
  ``bin/backup`` (its output compared with the README's), the cron command,
  a second backup (the ``ls`` listing compared), the restore prompt and the
  wrong-date example.

What the test does not run itself is the making of the wheel and of the
zc.buildout venv: ``scripts/test`` builds the wheel with maturin (what
``pip wheel`` runs too) and conftest installs zc.buildout with pip; the test
checks that the Quick start's commands are still the ones it stands in for.
"""

import calendar
import filecmp
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import zodbgen
from conftest import DIST
from conftest import REPO
from conftest import _buildout_executable

README = os.path.join(REPO, "README.rst")
SRV = "/srv/plone"
#: The moment of the site's earlier backups: before the README's dates.
LAST_WEEK = calendar.timegm((2026, 11, 19, 3, 15, 0))
STAMP = re.compile(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d")


class Block:
    def __init__(self, lang, text, line, section):
        self.lang = lang
        self.text = text
        self.line = line
        self.section = section

    def __repr__(self):
        return f"README.rst:{self.line} ({self.lang}, {self.section})"


def readme_blocks():
    """Every literal block of README.rst: ``.. code-block:: LANG`` blocks and
    ``::`` blocks (lang ``literal``), with line number and section title."""
    lines = open(README, encoding="utf-8").read().splitlines()
    blocks = []
    section = None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"([=\-~])\1{2,}", nxt) and len(nxt) >= len(line.strip()):
            section = line.strip()
        m = re.match(r"\s*\.\. code-block:: *(\w+)\s*$", line)
        if m:
            lang = m.group(1)
        elif line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            lang = "literal"
        else:
            continue
        base = len(line) - len(line.lstrip())
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= base:
                break
            body.append(following)
        text = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(lang, text, i + 1, section))
    return blocks


BLOCKS = readme_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def section_blocks(title):
    return [b for b in BLOCKS if b.section == title]


def test_the_python_examples_are_found():
    assert [b.section for b in PYTHON] == ["repozo", "Blobs", "Filestorage"]


def test_literal_blocks_hold_no_python():
    # Python examples are ``.. code-block:: python`` so that this suite runs
    # them; a ``::`` block with Python in it would be skipped silently.
    for b in BLOCKS:
        if b.lang == "literal":
            assert not re.search(r"^(from \S+ import |import \w)", b.text, re.M), b


# --- the site the examples run in ---


def _copy_state(src, site):
    fs = os.path.join(site, "var", "filestorage")
    os.makedirs(fs, exist_ok=True)
    for name in ("Data.fs", "Data.fs.index"):
        shutil.copy2(os.path.join(src, name), os.path.join(fs, name))
    blobs = os.path.join(site, "var", "blobstorage")
    if os.path.exists(blobs):
        shutil.rmtree(blobs)
    shutil.copytree(os.path.join(src, "blobstorage"), blobs)


@pytest.fixture(scope="session")
def states(tmp_path_factory):
    """Two states of one real ZODB database with blobs: ``old`` (last
    week's) and ``new`` (today's, a few more transactions)."""
    base = tmp_path_factory.mktemp("readme-states")
    db = str(base / "db")
    out = {}
    for name, seed in (("old", 1), ("new", 2)):
        zodbgen.generate(db, transactions=30, size="150K", undos=0, blobs=True, seed=seed)
        keep = str(base / name)
        os.makedirs(keep)
        shutil.copy2(os.path.join(db, "Data.fs"), keep)
        shutil.copy2(os.path.join(db, "Data.fs.index"), keep)
        shutil.copytree(os.path.join(db, "blobstorage"), os.path.join(keep, "blobstorage"))
        out[name] = keep
    return out


@pytest.fixture
def site(tmp_path, states, monkeypatch):
    """A site directory (the cwd) with today's database in ``var/`` and the
    backups made last week of last week's state."""
    from collective.recipe.backup import blobs
    from collective.recipe.backup import repozo

    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.chdir(d)
    _copy_state(states["old"], str(d))
    os.mkdir("var/backups")
    repozo.backup("var/filestorage/Data.fs", "var/backups", _now=LAST_WEEK)
    blobs.backup("var/blobstorage", "var/blobstoragebackups", fs_backup_location="var/backups")
    _copy_state(states["new"], str(d))
    return d


def same_tree(a, b):
    """Same files with the same contents; ZODB's empty ``tmp`` directory in
    a blobstorage is not backed up."""
    cmp = filecmp.dircmp(a, b, ignore=["tmp"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(os.path.join(a, s), os.path.join(b, s)) for s in cmp.common_dirs)


# --- Python ---


def test_python_examples_run_verbatim(site, states):
    for b in PYTHON:
        try:
            exec(compile(b.text, repr(b), "exec"), {"__name__": "readme"})
        except Exception as e:
            raise AssertionError(f"the example at {b!r} failed: {e!r}\n{b.text}") from e
    # What the examples claim they did.
    assert filecmp.cmp("var/Data-2026-11-20.fs", os.path.join(states["old"], "Data.fs"), shallow=False)
    assert same_tree("var/blobstorage", os.path.join(states["old"], "blobstorage"))
    assert not same_tree(os.path.join(states["new"], "blobstorage"), os.path.join(states["old"], "blobstorage"))
    assert os.path.getsize("var/filestorage/Data.fs.index") > 0


# --- command lines ---


def command_lines(prefix):
    return [line for b in BLOCKS if b.lang == "literal" for line in b.text.splitlines() if line.startswith(prefix)]


def env_with_python():
    """``python`` on PATH is the interpreter with the package installed."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def test_python_m_command_lines_run_verbatim(site, states):
    lines = command_lines("python -m collective.recipe.backup.")
    assert len(lines) == 4, lines
    for line in lines:
        p = subprocess.run(shlex.split(line), capture_output=True, text=True, env=env_with_python(), timeout=120)
        assert p.returncode == 0, (line, p.stdout, p.stderr)
    assert filecmp.cmp("var/Data-2026-11-20.fs", os.path.join(states["old"], "Data.fs"), shallow=False)


# --- Quick start ---


def test_quick_start_commands_are_what_the_test_stands_in_for():
    literal = [b.text for b in section_blocks("Quick start") if b.lang == "literal"]
    assert literal[0] == "pip wheel --no-deps -w wheels /path/to/collective.recipe.backup\n"
    assert literal[1] == "python3 -m venv venv\nvenv/bin/pip install zc.buildout\nvenv/bin/buildout\n"


def transcript(after):
    """The output lines of the README block that starts with ``$ after``."""
    for b in BLOCKS:
        if b.text.startswith(f"$ {after}\n"):
            return b.text.splitlines()[1:]
    raise AssertionError(f"no README block starts with $ {after}")


def normalized(text, directory, stamps):
    text = text.replace(directory, SRV)
    return STAMP.sub(lambda m: stamps[m.group(0)], text)


def test_quick_start_buildout(tmp_path, states, egg_cache):
    ini = [b for b in section_blocks("Quick start") if b.lang == "ini"][0]
    d = tmp_path / "plone"
    d.mkdir()
    _copy_state(states["old"], str(d))
    # `pip wheel` puts the wheel in wheels/; scripts/test built the same one.
    (d / "wheels").mkdir()
    for name in os.listdir(DIST):
        if name.endswith(".whl"):
            shutil.copy2(os.path.join(DIST, name), d / "wheels")
    (d / "buildout.cfg").write_text(ini.text)
    # Buildout's user defaults keep this run off PyPI (so the recipe must
    # come from find-links) and share the suite's egg cache.
    home = tmp_path / "buildout-home"
    home.mkdir()
    (home / "default.cfg").write_text(
        f"[buildout]\nnewest = false\nallow-hosts = localhost\neggs-directory = {egg_cache / 'readme'}\n"
    )
    env = dict(os.environ, BUILDOUT_HOME=str(home))
    buildout = _buildout_executable("6")  # a venv with zc.buildout from pip
    p = subprocess.run([buildout], cwd=d, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for script in ("backup", "snapshotbackup", "restore", "snapshotrestore"):
        assert (d / "bin" / script).exists(), script
    p = subprocess.run([buildout, "bootstrap"], cwd=d, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and (d / "bin" / "buildout").exists(), p.stdout + p.stderr

    def run(*args, shell=False, input=None):
        argv = args[0] if shell else args
        return subprocess.run(argv, cwd=d, shell=shell, input=input, capture_output=True, text=True, timeout=120)

    # bin/backup prints what the README shows.
    p = run("bin/backup")
    assert p.returncode == 0, p.stderr
    (first,) = set(STAMP.findall(p.stderr))
    shown = normalized(p.stderr, str(d), {first: "2026-11-26-03-15-00"})
    assert shown.splitlines() == transcript("bin/backup"), p.stderr

    # The cron line, with the site where the README has /srv/plone: silent.
    cron = [b for b in section_blocks("Backups in cron") if b.lang == "text"][0]
    (line,) = [x for x in cron.text.splitlines() if not x.startswith("#")]
    command = line.split(None, 5)[5].replace(SRV, shlex.quote(str(d)))
    _copy_state(states["new"], str(d))
    time.sleep(1.1)  # backup names have a resolution of one second
    p = run(command, shell=True)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")

    # The next backup adds an incremental one: the README's listing.
    stamps = sorted({STAMP.match(n).group(0) for n in os.listdir(d / "var" / "backups") if STAMP.match(n)})
    assert len(stamps) == 2, stamps
    names = dict(zip(stamps, ["2026-11-26-03-15-00", "2026-11-27-03-15-00"]))
    listed = {
        loc: sorted(normalized(n, str(d), names) for n in os.listdir(d / loc) if not n.startswith("."))
        for loc in ("var/backups", "var/blobstoragebackups")
    }
    expected = {}
    for line in transcript("ls var/backups var/blobstoragebackups"):
        if line.endswith(":"):
            group = expected.setdefault(line[:-1], [])
        else:
            group += line.split()
    assert listed == {loc: sorted(names) for loc, names in expected.items()}

    # The restore prompt as the README shows it; end of input means no.
    p = run("bin/restore", input="")
    assert (p.returncode, p.stderr) == (0, "INFO: Not restoring.\n")
    assert [x.rstrip() for x in normalized(p.stdout, str(d), {}).splitlines()] == transcript("bin/restore")

    # A wrong date is refused as the README shows.
    p = run("bin/restore", "2026-13-01")
    assert p.returncode == 1
    assert p.stderr.splitlines() == transcript("bin/restore 2026-13-01")
