"""Shared pytest fixtures.

The suite runs against the installed wheel (``scripts/test`` builds and
installs it) and uses real ZODB from PyPI as the reference implementation.
Area-specific fixtures live in the test modules of that area, or in this file
under the area's section marker.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import zodbgen  # noqa: E402


@pytest.fixture
def make_storage(tmp_path):
    """Factory: ``make_storage(name="db", **generate_kwargs)`` creates a real
    ZODB FileStorage (with blobs unless ``blobs=False``) under ``tmp_path``
    and returns zodbgen's description dict (path, end, size, last_tid,
    objects)."""

    def make(name="db", **kwargs):
        return zodbgen.generate(str(tmp_path / name), **kwargs)

    return make


# --- repozo (issue 3) ---


# --- blobs (issue 4) ---


# --- recipe (issue 5) ---

import subprocess  # noqa: E402
import textwrap  # noqa: E402

REPO = os.path.dirname(HERE)
DIST = os.path.join(REPO, "dist")
RECIPE_VERSION = "7.0.0a1"
#: zc.buildout majors the recipe is tested on, with the pins of each venv.
BUILDOUT_PINS = {
    "6": ["zc.buildout==6.0.1"],
    "5": ["zc.buildout==5.2.0", "setuptools<82"],
    "4": ["zc.buildout==4.2.0", "setuptools<81"],
}


def _buildout_executable(major):
    """``bin/buildout`` of a venv that has zc.buildout but NOT our package,
    so that buildout installs the freshly built wheel as an egg (the path
    users take). Made once in ``.venv-buildout<major>`` and reused."""
    venv = os.path.join(REPO, f".venv-buildout{major}")
    exe = os.path.join(venv, "bin", "buildout")
    if not os.path.exists(exe):
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", venv],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q"]
                + ["--disable-pip-version-check"]
                + BUILDOUT_PINS[major],
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as e:
            pytest.skip(f"cannot make a zc.buildout {major} venv: {e.stderr!r}")
    return exe


class BuildoutRun:
    """A buildout directory: ``run(cfg)`` writes buildout.cfg and runs real
    zc.buildout; ``script(name, *args)`` runs a generated script."""

    def __init__(self, directory, major, eggs):
        self.dir = directory
        self.major = major
        self.eggs = eggs
        self.buildout = _buildout_executable(major)

    def write(self, parts, body, extra=""):
        header = textwrap.dedent(f"""\
            [buildout]
            parts = {parts}
            newest = false
            find-links = {DIST}
            allow-hosts = localhost
            eggs-directory = {self.eggs}
            {extra}
            [versions]
            collective.recipe.backup = {RECIPE_VERSION}

            """)
        with open(os.path.join(self.dir, "buildout.cfg"), "w") as f:
            f.write(header + textwrap.dedent(body))

    def run(self, parts, body, extra="", env=None):
        self.write(parts, body, extra)
        p = subprocess.run(
            [self.buildout],
            cwd=self.dir,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        p.output = p.stdout + p.stderr
        return p

    def script(self, name, *args, input=None, env=None):
        p = subprocess.run(
            [os.path.join(self.dir, "bin", name), *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            input=input,
            env=env,
            timeout=60,
        )
        return p

    def path(self, *parts):
        return os.path.join(self.dir, *parts)


@pytest.fixture(scope="session")
def egg_cache(tmp_path_factory):
    wheels = os.listdir(DIST) if os.path.isdir(DIST) else []
    if not any(n.endswith(".whl") for n in wheels):
        pytest.skip("no wheel in dist/: run scripts/test")
    return tmp_path_factory.mktemp("eggs")


@pytest.fixture(params=["6"])
def sample_buildout(request, tmp_path, egg_cache):
    """A fresh buildout directory using zc.buildout 6 (parametrize with
    ``indirect`` to use 5 too)."""
    major = request.param
    d = tmp_path / "buildout"
    d.mkdir()
    (d / "var").mkdir()
    return BuildoutRun(str(d), major, str(egg_cache / major))
