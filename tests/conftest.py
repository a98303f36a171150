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


# --- messages in Python's words ---
#
# Every run of our tools in the suite (scripts, the repozo command, the
# standalone command) is checked for Rust's words in what it prints: an
# admin reads these lines, and they must read like Python's.

import re  # noqa: E402
import subprocess as _subprocess  # noqa: E402

RUSTISMS = re.compile(r"\(os error \d+\)|Some\(|panicked|Os \{ code|kind: [A-Z]|RUST_BACKTRACE")
_real_run = _subprocess.run
_real_communicate = _subprocess.Popen.communicate


def _ours(args):
    text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
    return "collective.recipe.backup" in text or "/bin/" in text or "zodb-backup" in text


def check_words(args, *outputs):
    if not _ours(args):
        return
    for out in outputs:
        if isinstance(out, bytes):
            out = out.decode("utf-8", "replace")
        if out and RUSTISMS.search(out):
            raise AssertionError(f"Rust's words in the output of {args!r}:\n{out}")


def _run(*args, **kwargs):
    proc = _real_run(*args, **kwargs)
    check_words(proc.args, proc.stdout, proc.stderr)
    return proc


def _communicate(self, *args, **kwargs):
    out, err = _real_communicate(self, *args, **kwargs)
    check_words(self.args, out, err)
    return out, err


_subprocess.run = _run
_subprocess.Popen.communicate = _communicate


@pytest.fixture
def make_storage(tmp_path):
    """Factory: ``make_storage(name="db", **generate_kwargs)`` creates a real
    ZODB FileStorage (with blobs unless ``blobs=False``) under ``tmp_path``
    and returns zodbgen's description dict (path, end, size, last_tid,
    objects)."""

    def make(name="db", **kwargs):
        return zodbgen.generate(str(tmp_path / name), **kwargs)

    return make


# --- repozo ---


@pytest.fixture
def chain(db, tmp_path):
    """Factory: a repository ``repo`` (relative to tmp_path) of the module's
    ``db`` fixture, with a full backup and two incrementals made by us at
    moments ``at(0)``, ``at(1)``, ``at(2)``, plain or gzip."""
    from repozo_util import at, ok, ours

    def make(gz=False):
        repo = tmp_path / "repo"
        repo.mkdir()
        z = ["-z"] if gz else []
        for i in range(3):
            if i:
                zodbgen.generate(os.path.dirname(db["path"]), transactions=5, undos=0, blobs=False, seed=i)
            ok(ours("-B", *z, "-r", "repo", "-f", db["path"], now=at(i), cwd=tmp_path))
        return repo

    return make


# --- blobs ---


# --- recipe ---

import subprocess  # noqa: E402
import textwrap  # noqa: E402

REPO = os.path.dirname(HERE)
#: Where buildout finds the package: dist/ of scripts/test, or the folder
#: CRB_WHEEL_DIR names (scripts/wheels-test puts one portable wheel there).
DIST = os.environ.get("CRB_WHEEL_DIR") or os.path.join(REPO, "dist")
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
    users take). Made once in ``.venv-buildout<major>`` and reused, in the
    clone or in the folder CRB_BUILDOUT_VENVS names (one per Python)."""
    venv = os.path.join(os.environ.get("CRB_BUILDOUT_VENVS") or REPO, f".venv-buildout{major}")
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


# --- offsite (Garage) ---
#
# A real Garage S3 store for the offsite tests (tests/garage.py): one server
# for the session, a fresh bucket and key for each test.

import uuid  # noqa: E402

import garage as _garage  # noqa: E402


@pytest.fixture(scope="session")
def garage():
    """The session's ``garage.Garage``: ``create_bucket``, ``create_key``,
    ``allow``, ``client``, ``put``/``get``/``delete``/``list_objects``,
    ``stop``/``start``. A test that stops it must start it again."""
    binary = _garage.default_binary()
    if not os.access(binary, os.X_OK):
        # Fail, not skip: a skipped offsite suite would pass CI unnoticed.
        pytest.fail(
            f"no Garage binary at {binary}: scripts/test installs it "
            "(stage 'garage and rclone'), or set CRB_GARAGE to one",
            pytrace=False,
        )
    g = _garage.Garage(binary)
    yield g
    g.close()


class S3Bucket:
    """A bucket and a key that may read, write and own it."""

    def __init__(self, bucket, key_id, secret, endpoint, region):
        self.bucket = bucket
        self.key_id = key_id
        self.secret = secret
        self.endpoint = endpoint
        self.region = region

    def env(self, base=None):
        """``base`` (default: this process's environment) with the key in
        the AWS variables, for a subprocess (``env=s3_bucket.env()``)."""
        env = dict(os.environ if base is None else base)
        # A session token or profile from the caller's shell would be mixed
        # with our key and break the signature.
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(name, None)
        env.update(
            AWS_ACCESS_KEY_ID=self.key_id,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_REGION=self.region,
            # No credential lookup at 169.254.169.254 (slow timeouts off EC2).
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


@pytest.fixture
def s3_bucket(garage):
    """A fresh bucket on the session's Garage and a fresh key allowed on it
    (the harness's own key is allowed too, for ``garage.get`` etc.)."""
    # A test that failed between stop() and start() left it down: later
    # tests get a running store, not that test's failure again.
    garage.start()
    name = f"crb-{uuid.uuid4().hex[:16]}"
    garage.create_bucket(name)
    key_id, secret = garage.create_key(name)
    garage.allow(name, key_id)
    return S3Bucket(name, key_id, secret, garage.endpoint, garage.region)
