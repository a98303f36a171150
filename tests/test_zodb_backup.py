"""``zodb-backup``, the command for sites without buildout, end to end: the
console script installed by the wheel, a Data.fs and blobstorage made by real
ZODB, a zope.conf as cookiecutter-zope-instance writes it, ZODB's repozo as
the reference for what a restore must give, and a real buildout part whose
section, copied into an INI file, must give the same backup files."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

import zodbgen
from blobhelpers import state
from repozo_util import listing


BIN = os.path.dirname(sys.executable)
ZODB_BACKUP = os.path.join(BIN, "zodb-backup")
REPOZO = os.path.join(BIN, "repozo")
#: 2026-01-01 00:00:00 UTC; every run gets its own second after it.
T0 = 1_767_225_600


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree(path):
    """Every file and directory under ``path`` with its content hash, hidden
    files included: what "nothing touched" is checked against."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = "dir"
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p):
                out[os.path.relpath(p, path)] = "link"
            elif f == ".crb.lock":
                # Exists after any run that locked the location; holds a pid.
                out[os.path.relpath(p, path)] = "lock"
            else:
                out[os.path.relpath(p, path)] = sha(p)
    return out


COOKIECUTTER_ZOPE_CONF = """\
%define INSTANCEHOME {home}
instancehome $INSTANCEHOME
%define CLIENTHOME {home}/var
clienthome $CLIENTHOME
debug-mode off
security-policy-implementation C
verbose-security off
default-zpublisher-encoding utf-8
<environment>
    zope_i18n_compile_mo_files true
    CHAMELEON_CACHE {home}/var/cache
</environment>
<dos_protection>
    form-memory-limit 1MB
    form-disk-limit 1GB
    form-memfile-limit 4KB
</dos_protection>
<zodb_db main>
    # Main database
    cache-size 30000
    # Blob-enabled FileStorage database
    <blobstorage>
      blob-dir $CLIENTHOME/blobstorage
      # FileStorage database
      <filestorage>
        path $CLIENTHOME/filestorage/Data.fs
        pack-keep-old true
      </filestorage>
    </blobstorage>
    mount-point /
</zodb_db>
<zodb_db temporary>
    # Temporary storage database (for sessions)
    <temporarystorage>
      name temporary storage for sessioning
    </temporarystorage>
    mount-point /temp_folder
    container-class Products.TemporaryFolder.TemporaryContainer
</zodb_db>
"""


class PipSite:
    """A cookiecutter-zope-instance layout: ``instance/etc/zope.conf``,
    ``instance/var/filestorage/Data.fs``, ``instance/var/blobstorage``."""

    def __init__(self, root):
        self.home = os.path.join(root, "instance")
        self.var = os.path.join(self.home, "var")
        self.fsdir = os.path.join(self.var, "filestorage")
        self.datafs = os.path.join(self.fsdir, "Data.fs")
        self.blobdir = os.path.join(self.var, "blobstorage")
        os.makedirs(os.path.join(self.home, "etc"))
        self.zope_conf = os.path.join(self.home, "etc", "zope.conf")
        with open(self.zope_conf, "w") as f:
            f.write(COOKIECUTTER_ZOPE_CONF.format(home=self.home))
        self.seed = 0
        self.now = T0

    def change(self, transactions=8):
        self.seed += 1
        zodbgen.generate(
            self.fsdir, transactions=transactions, seed=self.seed, undos=1,
            blob_dir=self.blobdir,
        )
        return self.state()

    def state(self):
        return sha(self.datafs), state(self.blobdir, mtimes=False)

    def run(self, *args, env=None, input=None, cwd=None, stdin=None):
        env = dict(os.environ if env is None else env)
        self.now += 1
        env.setdefault("CRB_REPOZO_NOW", str(self.now))
        p = subprocess.run(
            [ZODB_BACKUP, *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            cwd=cwd or self.home,
            timeout=300,
        )
        p.lines = p.stderr.splitlines()
        return p

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p


@pytest.fixture
def pip_site(tmp_path):
    return PipSite(str(tmp_path))


def test_console_script_and_module_help():
    for cmd in ([ZODB_BACKUP, "--help"], [sys.executable, "-m", "collective.recipe.backup", "--help"]):
        p = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        assert p.returncode == 0, p.stderr
        for command in ("backup", "fullbackup", "snapshot", "zipbackup", "restore",
                        "snapshotrestore", "ziprestore", "altrestore", "status", "verify"):
            assert command in p.stdout
        assert "--zope-conf" in p.stdout and "--blob-storage" in p.stdout


def test_pip_site_backs_up_checks_and_restores_with_its_zope_conf(pip_site, tmp_path):
    s = pip_site
    first = s.change()
    p = s.ok("--zope-conf", s.zope_conf, "backup")
    # Backups land beside the var directory, as the recipe's do.
    backups = os.path.join(s.var, "backups")
    blob_backups = os.path.join(s.var, "blobstoragebackups")
    names = listing(backups)
    assert [n for n in names if n.endswith(".fsz")], names
    assert any(n.startswith("blobstorage.") for n in listing(blob_backups))
    assert not p.stdout
    second = s.change()
    s.ok("--zope-conf", s.zope_conf, "backup")
    assert [n for n in listing(backups) if n.endswith(".deltafsz")]

    # Both states restore, with exactly the Data.fs ZODB's repozo recovers.
    dates = sorted(n[:-4] for n in listing(backups) if n.endswith(".fsz"))
    first_date = dates[0]
    reference = tmp_path / "reference.fs"
    subprocess.run(
        [REPOZO, "-R", "-r", backups, "-o", str(reference), "-D", first_date],
        check=True, capture_output=True,
    )
    s.ok("--zope-conf", s.zope_conf, "restore", "-n", first_date)
    assert s.state() == first
    assert sha(s.datafs) == sha(reference)
    s.ok("--zope-conf", s.zope_conf, "restore", "-n")
    assert s.state() == second

    # status: healthy, and what it lists is what is on disk.
    p = s.ok("--zope-conf", s.zope_conf, "status", "--json")
    report = json.loads(p.stdout)
    assert report["healthy"] is True and report["problems"] == []
    (storage,) = report["storages"]
    assert storage["datafs"] == s.datafs and storage["blobdir"] == s.blobdir
    (location,) = [loc for loc in storage["locations"] if loc["kind"] == "backups"]
    listed = [b["file"] for c in location["filestorage"]["chains"] for b in c["backups"]]
    on_disk = [n for n in listing(backups) if n.endswith((".fsz", ".deltafsz"))]
    assert sorted(listed) == sorted(on_disk)
    p = s.ok("--zope-conf", s.zope_conf, "status")
    assert p.stdout.splitlines()[-1] == "OK"
    # A backup older than --max-age is a problem: exit 1, for monitoring.
    p = s.run("--zope-conf", s.zope_conf, "status", "--max-age", "1h",
              env=dict(os.environ, CRB_REPOZO_NOW=str(s.now + 7200)))
    assert p.returncode == 1
    assert "[too_old]" in p.stdout
    # verify: every state, then a blob file gone from the newest blob backup.
    p = s.ok("--zope-conf", s.zope_conf, "verify", "--all")
    assert len([line for line in p.lines if line.startswith("INFO: Verified ")]) == 2
    newest = sorted(n for n in listing(blob_backups) if n.startswith("blobstorage.2"))[-1]
    blob_files = [
        os.path.join(root, f)
        for root, _, files in os.walk(os.path.join(blob_backups, newest))
        for f in files if f.endswith(".blob")
    ]
    os.unlink(sorted(blob_files)[-1])
    p = s.run("--zope-conf", s.zope_conf, "verify")
    assert p.returncode == 1
    assert any(line.startswith("ERROR: The blob of oid 0x") for line in p.lines), p.stderr
    assert p.lines[-1].startswith("ERROR: verify found "), p.stderr
    # status sees the blob backup of a filestorage backup gone missing.
    shutil.rmtree(os.path.join(blob_backups, newest))
    p = s.run("--zope-conf", s.zope_conf, "status", "--json")
    assert p.returncode == 1
    kinds = [problem["kind"] for problem in json.loads(p.stdout)["problems"]]
    assert kinds == ["missing_blob_backup"]


def test_restore_prompt_is_the_scripts_prompt(pip_site):
    s = pip_site
    s.change()
    s.ok("--zope-conf", s.zope_conf, "backup")
    before = s.state()
    s.change()
    p = s.run("--zope-conf", s.zope_conf, "restore", input="no\n")
    assert p.returncode == 0
    assert "This will replace the filestorage:" in p.stdout
    assert s.datafs in p.stdout
    assert "INFO: Not restoring." in p.lines
    assert s.state() != before


def test_container_layout_from_environment_variables(tmp_path):
    """The Plone images keep ``/data/filestorage/Data.fs`` and
    ``/data/blobstorage``: two variables are the whole configuration, and
    backups land in ``/data/backups`` and ``/data/blobstoragebackups``."""
    data = tmp_path / "data"
    zodbgen.generate(str(data / "filestorage"), transactions=5, blob_dir=str(data / "blobstorage"))
    env = dict(
        os.environ,
        ZODB_BACKUP_DATAFS=str(data / "filestorage" / "Data.fs"),
        ZODB_BACKUP_BLOB_STORAGE=str(data / "blobstorage"),
        ZODB_BACKUP_KEEP="3",
        CRB_REPOZO_NOW=str(T0),
    )
    p = subprocess.run([ZODB_BACKUP, "-q", "backup"], env=env, capture_output=True,
                       text=True, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and p.stdout == ""
    assert sorted(os.listdir(data)) == [
        "backups", "blobstorage", "blobstoragebackups", "filestorage"]
    assert [n for n in listing(str(data / "backups")) if n.endswith(".fsz")]


def _args(*argv):
    from collective.recipe.backup import zodb_backup

    return zodb_backup.make_parser().parse_args([*argv, "status"])


def test_later_sources_override_earlier_ones(tmp_path):
    """zope.conf < INI file < ZODB_BACKUP_* < flags; INI paths are relative
    to the file, flags' to the current directory."""
    from collective.recipe.backup import _core
    from collective.recipe.backup import zodb_backup

    s = PipSite(str(tmp_path))
    etc = os.path.join(s.home, "etc")
    with open(os.path.join(etc, "backup.ini"), "w") as f:
        f.write("[backup]\nrecipe = collective.recipe.backup\nkeep = 7\n"
                "location = ../../backups-ini\nsnapshotlocation = snaps\n"
                "gzip = false\nblobbackuplocation = /abs/blobs\n")
    args = _args("--zope-conf", s.zope_conf, "--config", os.path.join(etc, "backup.ini"),
                 "--keep", "3", "--snapshotlocation", "flag-snaps")
    env = {"ZODB_BACKUP_KEEP": "5", "ZODB_BACKUP_GZIP": "true",
           "ZODB_BACKUP_BLOBBACKUPLOCATION": "env-blobs"}
    kwargs, _ = zodb_backup.config_kwargs(args, env, cwd=str(tmp_path))
    config = _core.BackupConfig(**kwargs)
    main = config.storages[-1]
    assert main["datafs"] == s.datafs  # from zope.conf
    assert main["blobdir"] == s.blobdir
    assert config.settings["keep"] == 3  # flag beats variable beats INI
    assert config.settings["gzip"] is True  # variable beats INI
    # An INI location is relative to the var directory, as in a part.
    assert main["backup_location"] == os.path.normpath(os.path.join(s.var, "../../backups-ini"))
    assert main["snapshot_location"] == str(tmp_path / "flag-snaps")
    assert main["blob_backup_location"] == str(tmp_path / "env-blobs")
    # Without one, a location defaults beside the var directory.
    assert main["zip_location"] == os.path.join(s.var, "zipbackups")


@pytest.mark.parametrize(
    "argv, env, ini, message",
    [
        ([], {"ZODB_BACKUP_KEPE": "3"}, None, "ERROR: Unknown environment variable ZODB_BACKUP_KEPE."),
        (["--keep", "two"], {}, None, "keep"),
        ([], {}, "[backup]\nkepe = 3\n", "ERROR: Unknown option 'kepe' in [backup] of "),
        ([], {}, "[backup]\nlocation = ${buildout:directory}/x\n", "buildout substitution"),
        ([], {}, "[other]\nkeep = 3\n", "has no [backup] section"),
        ([], {}, "keep = 3\n", "is not a valid INI file"),
        (["--zope-conf", "missing.conf"], {}, None, "missing.conf"),
    ],
)
def test_wrong_options_are_one_error_before_anything_is_touched(pip_site, argv, env, ini, message):
    s = pip_site
    s.change()
    before = tree(s.home)
    cmd = ["--zope-conf", s.zope_conf, *argv]
    if ini is not None:
        with open(os.path.join(s.home, "etc", "backup.ini"), "w") as f:
            f.write(ini)
        before = tree(s.home)
        cmd += ["--config", "etc/backup.ini"]
    p = s.run(*cmd, "backup", env=dict(os.environ, **env))
    assert p.returncode == 1, p.stderr
    assert len(p.lines) == 1 and p.lines[0].startswith("ERROR: "), p.stderr
    assert message in p.lines[0]
    assert "Traceback" not in p.stderr
    assert tree(s.home) == before


def test_unknown_flag_is_a_usage_error(pip_site):
    p = pip_site.run("--zope-conf", pip_site.zope_conf, "backup", "--kepe", "3")
    assert p.returncode == 2
    assert "unrecognized arguments: --kepe" in p.stderr
    assert len(p.lines) == 1


@pytest.mark.parametrize("sample_buildout", ["6"], indirect=True)
def test_buildout_part_copied_into_an_ini_file_makes_the_same_backups(sample_buildout, tmp_path):
    """The same options in a buildout part (bin/backup) and in an INI file
    (zodb-backup --config) give the same backup files, byte for byte."""
    b = sample_buildout
    fsdir = b.path("var", "filestorage")
    body = (
        "[backup]\nrecipe = collective.recipe.backup\n"
        "blob_storage = var/blobstorage\ngzip = false\nkeep = 1\n"
        "location = ${buildout:directory}/var/fsbackups\n"
    )
    p = b.run("backup", body)
    assert p.returncode == 0, p.output
    # Three states of the database, made once (ZODB's tids come from the
    # clock), then put in place before each backup of both runs.
    states = []
    for seed, transactions in ((1, 6), (2, 4), (3, 4)):
        zodbgen.generate(fsdir, transactions=transactions, seed=seed, blob_dir=b.path("var", "blobstorage"))
        states.append(tmp_path / f"state{seed}")
        shutil.copytree(b.path("var"), states[-1])

    def run_twice(run):
        for i, saved in enumerate(states):
            shutil.rmtree(b.path("var"))
            shutil.copytree(saved, b.path("var"))
            r = run(str(T0 + i))
            assert r.returncode == 0, r.stdout + r.stderr
        out = {
            "fs": tree(b.path("var", "fsbackups")),
            "blobs": state(b.path("var", "blobstoragebackups"), mtimes=False),
        }
        for kind in out:
            out[kind].pop(".crb.lock")  # holds the pid of the last run
        shutil.rmtree(b.path("var", "fsbackups"))
        shutil.rmtree(b.path("var", "blobstoragebackups"))
        return out

    by_script = run_twice(lambda now: b.script("backup", env=dict(os.environ, CRB_REPOZO_NOW=now)))
    # The part, unchanged; the ${buildout:directory} line is the one
    # substitution an INI file cannot have: written out by hand.
    ini = body.replace("${buildout:directory}/var/fsbackups", "fsbackups")
    with open(os.path.join(b.dir, "backup.ini"), "w") as f:
        f.write(ini)
    by_command = run_twice(
        lambda now: subprocess.run(
            [ZODB_BACKUP, "--config", "backup.ini", "backup"],
            cwd=b.dir, capture_output=True, text=True,
            env=dict(os.environ, CRB_REPOZO_NOW=now),
        )
    )
    assert by_script["fs"] and by_script["blobs"]
    for kind in ("fs", "blobs"):
        a, b_ = by_command[kind], by_script[kind]
        assert sorted(a) == sorted(b_)
        assert {k for k in a if a[k] != b_[k]} == set()


def test_target_and_dry_run_leave_the_site_alone(pip_site, tmp_path):
    s = pip_site
    first = s.change()
    s.ok("--zope-conf", s.zope_conf, "backup")
    s.change()
    before = tree(s.home)
    p = s.ok("--zope-conf", s.zope_conf, "backup", "--dry-run")
    assert any(line.startswith("INFO: Would ") for line in p.lines), p.stderr
    p = s.ok("--zope-conf", s.zope_conf, "restore", "--dry-run")
    assert any(line.startswith("INFO: Would ") for line in p.lines), p.stderr
    assert tree(s.home) == before

    copy = tmp_path / "copy"
    # The prompt names the target, not the live site.
    p = s.run("--zope-conf", s.zope_conf, "restore", "--target", str(copy), input="no\n")
    assert p.returncode == 0 and str(copy) in p.stdout and s.datafs not in p.stdout
    s.ok("--zope-conf", s.zope_conf, "restore", "-n", "--target", str(copy))
    assert tree(s.home) == before
    assert sha(copy / "Data.fs") == first[0]
    assert state(str(copy / "blobstorage"), mtimes=False) == first[1]


def test_ini_blob_storage_spelling_with_a_zope_conf_without_blobs(tmp_path):
    """A zope.conf whose main database has no blobs turns blob backups off
    only when no source names a blob directory, in either spelling."""
    from collective.recipe.backup import _core
    from collective.recipe.backup import zodb_backup

    s = PipSite(str(tmp_path))
    with open(s.zope_conf, "w") as f:
        f.write(f"<zodb_db main>\n  <filestorage>\n    path {s.datafs}\n  </filestorage>\n"
                "  mount-point /\n</zodb_db>\n")
    ini = os.path.join(s.home, "etc", "backup.ini")
    with open(ini, "w") as f:
        f.write("[backup]\nblob-storage = /srv/blobs\n")
    args = _args("--zope-conf", s.zope_conf, "--config", ini)
    config = _core.BackupConfig(**zodb_backup.config_kwargs(args, {}, cwd=str(tmp_path))[0])
    assert config.settings["backup_blobs"] is True
    assert config.storages[-1]["blobdir"] == "/srv/blobs"
    # Without it, no blobs.
    args = _args("--zope-conf", s.zope_conf)
    config = _core.BackupConfig(**zodb_backup.config_kwargs(args, {}, cwd=str(tmp_path))[0])
    assert config.settings["backup_blobs"] is False
