"""``_core.status``: the health report of every backup of a part.

Backups are made by the scripts' own path (``_core.backup`` over a real
ZODB database with blobs, written by ``zodbgen``), then damaged the way
real sites are damaged (a lost increment, a lost blob backup, what an
interrupted run leaves). Every report is checked against the files on disk
(names, ``os.stat`` sizes, the ``.dat`` lines) and validated against
``docs/status.schema.json``."""

import datetime
import json
import os
import shutil
import subprocess
import sys

import jsonschema
import pytest
import zodbgen

from collective.recipe.backup import _core

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, os.pardir, "docs", "status.schema.json")
T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC


def stamp(t):
    return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d-%H-%M-%S"
    )


def validate(report):
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)


def disk_bytes(root):
    """Bytes of the regular files under root, each inode once."""
    seen, total = set(), 0
    for d, dirs, files in os.walk(root):
        for n in files + dirs:
            st = os.lstat(os.path.join(d, n))
            if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n)):
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def dat_lines(path):
    with open(path) as f:
        return [line.split() for line in f]


class Site:
    """A Data.fs with blobs and a part configured over it."""

    def __init__(self, root, **options):
        self.root = root
        self.fsdir = os.path.join(root, "filestorage")
        self.seed = 0
        self.now = T0
        self.change()
        self.config = _core.BackupConfig(
            var_dir=os.path.join(root, "var"),
            datafs=os.path.join(self.fsdir, "Data.fs"),
            blob_storage=os.path.join(self.fsdir, "blobstorage"),
            **options,
        )
        storage = self.config.storages[-1]
        self.backups = storage["backup_location"]
        self.blobs = storage["blob_backup_location"]
        self.zip = storage["zip_location"]
        self.blobzip = storage["blob_zip_location"]

    def change(self):
        self.seed += 1
        zodbgen.generate(self.fsdir, transactions=3, seed=self.seed)

    def backup(self, mode="standard"):
        self.now += 60
        _core.backup(self.config, mode, now=self.now)
        return stamp(self.now)

    def status(self, later=0, max_age=None):
        healthy, js, text = _core.status(self.config, now=self.now + later, max_age=max_age)
        report = json.loads(js)
        validate(report)
        assert report["healthy"] is healthy is (report["problems"] == [])
        assert text.splitlines()[-1] == (
            "OK"
            if healthy
            else f"{len(report['problems'])} problem{'s' if len(report['problems']) > 1 else ''} found"
        )
        warnings = [line for line in text.splitlines() if line.startswith("WARNING: ")]
        assert warnings == [
            f"WARNING: [{p['kind']}] {p['message']}" for p in report["problems"]
        ]
        return report, text


def location(report, kind):
    (storage,) = report["storages"]
    (loc,) = [loc for loc in storage["locations"] if loc["kind"] == kind]
    return loc


def problems(report):
    return [(p["kind"], p["path"]) for p in report["problems"]]


@pytest.fixture
def site(tmp_path):
    s = Site(str(tmp_path))
    s.backup()
    s.change()
    s.backup()
    s.change()
    s.backup()
    return s


def test_healthy_site_matches_the_files_on_disk(site):
    report, text = site.status(later=30)
    assert report["healthy"] is True
    assert report["now"] == {
        "stamp": stamp(site.now + 30),
        "time": datetime.datetime.fromtimestamp(site.now + 30, tz=datetime.timezone.utc)
        .isoformat()
        .replace("+00:00", "Z"),
    }
    names = sorted(os.listdir(site.backups))
    data = [n for n in names if n.endswith((".fsz", ".deltafsz"))]
    (dat,) = [n for n in names if n.endswith(".dat")]
    loc = location(report, "backups")
    repo = loc["filestorage"]
    assert repo["exists"] and repo["bytes"] == disk_bytes(site.backups)
    (chain,) = repo["chains"]
    assert chain["dat"] == dat and chain["whole"] and chain["problems"] == []
    assert [b["file"] for b in chain["backups"]] == data
    lines = dat_lines(os.path.join(site.backups, dat))
    assert [os.path.basename(line[0]) for line in lines] == data
    blob_names = sorted(os.listdir(site.blobs))
    for b, line in zip(chain["backups"], lines):
        assert b["bytes"] == os.stat(os.path.join(site.backups, b["file"])).st_size
        assert (b["start"], b["end"]) == (int(line[1]), int(line[2]))
        assert b["kind"] == ("full" if b["file"].endswith(".fsz") else "incremental")
        assert b["gzip"] is True and b["present"] is True
        assert b["stamp"] == b["file"].split(".")[0]
        # The blob backup of the same stamp, which exists.
        assert b["blob_backup"] == {
            "name": f"blobstorage.{b['stamp']}",
            "stamp": b["stamp"],
            "number": None,
        }
        assert b["blob_backup"]["name"] in blob_names
    assert chain["bytes"] == sum(b["bytes"] for b in chain["backups"])
    blobs = loc["blobs"]
    assert blobs["bytes"] == disk_bytes(site.blobs)
    assert [b["name"] for b in blobs["backups"]] == sorted(
        (n for n in blob_names if n != "latest" and not n.startswith(".")), reverse=True
    )
    for b in blobs["backups"]:
        assert b["kind"] == "directory"
        assert b["bytes"] == disk_bytes(os.path.join(site.blobs, b["name"]))
        assert b["filestorage_backup"] in data
    newest = report["storages"][0]["newest"]
    assert newest["stamp"] == data[-1].split(".")[0] == stamp(site.now)
    assert newest["age_seconds"] == 30
    assert newest["path"] == os.path.join(site.backups, data[-1])
    assert location(report, "snapshots")["filestorage"]["exists"] is False
    assert f"newest backup: {stamp(site.now)} (30s old, 30 seconds)" in text


def test_deleted_increment_is_a_broken_chain(site):
    names = sorted(os.listdir(site.backups))
    middle = [n for n in names if n.endswith(".deltafsz")][0]
    os.remove(os.path.join(site.backups, middle))
    report, text = site.status()
    (dat,) = [n for n in names if n.endswith(".dat")]
    assert problems(report) == [("broken_chain", os.path.join(site.backups, dat))]
    assert report["problems"][0]["message"] == (
        f"Broken backup chain {os.path.join(site.backups, dat)}: "
        f"{os.path.join(site.backups, middle)} is missing."
    )
    (chain,) = location(report, "backups")["filestorage"]["chains"]
    assert chain["whole"] is False
    assert [b["present"] for b in chain["backups"]] == [True, False, True]
    # What a restore says about it.
    with pytest.raises(_core.BackupError, match="is missing"):
        _core.restore(site.config, "standard", now=site.now + 1)


def test_deleted_blob_backup_of_the_newest_backup_is_missing(site):
    newest = stamp(site.now)
    shutil.rmtree(os.path.join(site.blobs, f"blobstorage.{newest}"))
    report, _ = site.status()
    (data,) = [
        n for n in os.listdir(site.backups) if n.startswith(newest) and n.endswith("fsz")
    ]
    assert data.endswith(".deltafsz")
    assert problems(report) == [("missing_blob_backup", os.path.join(site.backups, data))]
    assert report["problems"][0]["message"] == (
        f"{os.path.join(site.backups, data)} has no blob backup in {site.blobs} "
        f"(no blobstorage.{newest})."
    )
    # The restore refuses the same pair.
    with pytest.raises(_core.BackupError, match=f"No complete blob backup of {newest}"):
        _core.restore(site.config, "standard", now=site.now + 1)


def test_blob_backup_without_filestorage_backup_is_an_orphan(site):
    oldest = sorted(n for n in os.listdir(site.backups) if n.endswith(".fsz"))[0]
    orphan = os.path.join(site.blobs, "blobstorage.2025-12-31-00-00-00")
    shutil.copytree(os.path.join(site.blobs, f"blobstorage.{oldest.split('.')[0]}"), orphan)
    report, _ = site.status()
    assert problems(report) == [("orphan_blob_backup", orphan)]


@pytest.mark.parametrize("leftover", ["partial", "deltafs", "tmp"])
def test_what_an_interrupted_run_left_is_a_problem(site, leftover):
    later = stamp(site.now + 30)  # before the next backup's own name
    if leftover == "partial":
        path = os.path.join(site.blobs, f".blobstorage.{later}.partial")
        os.makedirs(os.path.join(path, "blobstorage"))
        kind = "partial_build"
    elif leftover == "deltafs":
        path = os.path.join(site.backups, f"{later}.deltafsz")
        with open(path, "wb") as f:
            f.write(b"\x1f\x8b")
        kind = "unlisted_file"
    else:
        path = os.path.join(site.backups, f".{later}.deltafsz.abc123.tmp")
        open(path, "wb").close()
        kind = "temporary_file"
    before = sorted(os.listdir(os.path.dirname(path)))
    report, text = site.status()
    assert problems(report) == [(kind, path)]
    assert f"WARNING: [{kind}] {path} " in text
    # Status removed nothing; the next backup cleans up.
    assert sorted(os.listdir(os.path.dirname(path))) == before
    site.change()
    site.backup()
    assert not os.path.exists(path)
    assert site.status()[0]["healthy"]


def test_newest_backup_older_than_max_age(site):
    report, text = site.status(later=3601, max_age="1h")
    assert problems(report) == [
        ("too_old", os.path.join(site.backups, f"{stamp(site.now)}.deltafsz"))
    ]
    assert report["max_age_seconds"] == 3600
    assert report["problems"][0]["message"].endswith(
        f"({stamp(site.now)}) is 1h 1s old, more than the maximum age of 1h."
    )
    assert site.status(later=3600, max_age="1h")[0]["healthy"]
    assert site.status(later=3601, max_age=7200)[0]["healthy"]
    assert site.status(later=10**6)[0]["healthy"]  # no max_age: no limit


@pytest.mark.parametrize("bad", ["", "1x", "-5m", "1.5h", "0"])
def test_bad_max_age_is_one_config_error(site, bad):
    with pytest.raises(_core.ConfigError) as e:
        _core.status(site.config, now=site.now, max_age=bad)
    assert str(e.value) == (
        f"Could not parse maximum age '{bad}'. Expected a number of seconds, or a "
        "number followed by s, m, h, d or w, e.g. 26h."
    )


def test_no_backups_at_all(tmp_path):
    s = Site(str(tmp_path))
    report, _ = s.status(max_age="1d")
    assert problems(report) == [("no_backups", os.path.join(s.fsdir, "Data.fs"))]
    assert report["storages"][0]["newest"] is None
    assert not os.path.exists(s.backups)  # nothing created


def test_zip_backup_names_its_numbered_blob_archive(tmp_path):
    s = Site(str(tmp_path), enable_zipbackup=True)
    made = s.backup("zip")
    report, _ = s.status()
    loc = location(report, "zip")
    (chain,) = loc["filestorage"]["chains"]
    ((full,),) = [chain["backups"]]
    assert full["file"] == f"{made}.fsz" and os.listdir(s.zip) != []
    (archive,) = [n for n in os.listdir(s.blobzip) if not n.startswith(".")]
    assert archive == "blobstorage.0.tar"
    assert full["blob_backup"] == {"name": archive, "stamp": None, "number": 0}
    (b,) = loc["blobs"]["backups"]
    assert (b["kind"], b["number"], b["filestorage_backup"]) == ("archive", 0, full["file"])
    assert b["bytes"] == os.stat(os.path.join(s.blobzip, archive)).st_size
    # The standard locations have no backups, the zip one counts.
    assert report["storages"][0]["newest"]["stamp"] == made
    assert report["healthy"], report["problems"]


def test_read_only_backup_disk(site, tmp_path):
    """The backup locations mounted read-only: the same report, and nothing
    written (no lock file is created). Runs in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    os.remove(os.path.join(site.backups, ".crb.lock"))
    os.remove(os.path.join(site.blobs, ".crb.lock"))
    expected, _ = site.status()
    before = {d: sorted(os.listdir(d)) for d in (site.backups, site.blobs)}
    code = (
        "import json, sys\n"
        "from collective.recipe.backup import _core\n"
        f"c = _core.BackupConfig(var_dir={os.path.join(site.root, 'var')!r}, "
        f"datafs={os.path.join(site.fsdir, 'Data.fs')!r}, "
        f"blob_storage={os.path.join(site.fsdir, 'blobstorage')!r})\n"
        f"ok, js, text = _core.status(c, now={site.now})\n"
        "print(js)\n"
    )
    script_path = tmp_path / "status_ro.py"
    script_path.write_text(code)
    mounts = " && ".join(
        f"mount --bind {d} {d} && mount -o remount,ro,bind {d}"
        for d in (site.backups, site.blobs)
    )
    shell = (
        f"{mounts} && touch {site.backups}/probe 2>/dev/null; echo probe=$? >&2; "
        f'exec "$0" {script_path}'
    )
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    p = subprocess.run(
        unshare + ["sh", "-c", shell, sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "probe=" not in p.stderr:
        pytest.skip(f"cannot make a private read-only mount here: {p.stderr.strip()}")
    assert "probe=1" in p.stderr, p.stderr  # really read-only
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    validate(report)
    assert report == expected
    assert report["healthy"]
    assert {d: sorted(os.listdir(d)) for d in (site.backups, site.blobs)} == before


@pytest.mark.parametrize(
    "options, mode, kind, suffixes",
    [
        ({"archive_blob": True}, "standard", "backups", [".tar"]),
        ({"archive_blob": True, "compress_blob": True}, "standard", "backups", [".tar.gz"]),
        (
            {"archive_blob": True, "incremental_blobs": True},
            "standard",
            "backups",
            [".tar", ".delta.tar", ".delta.tar"],
        ),
        ({"use_rsync": False}, "standard", "backups", ["", "", ""]),
        ({}, "snapshot", "snapshots", ["", ""]),  # keep = 2 full backups
    ],
)
def test_every_layout_pairs_each_backup(tmp_path, options, mode, kind, suffixes):
    s = Site(str(tmp_path), **options)
    made = []
    for _ in range(3):
        made.append(s.backup(mode))
        s.change()
    report, _ = s.status()
    assert report["healthy"], report["problems"]
    loc = location(report, kind)
    backups = [b for c in loc["filestorage"]["chains"] for b in c["backups"]]
    assert [b["stamp"] for b in backups][-len(suffixes):] == made[-len(suffixes):]
    blob_dir = s.config.storages[-1][
        "blob_backup_location" if kind == "backups" else "blob_snapshot_location"
    ]
    on_disk = os.listdir(blob_dir)
    for b, suffix in zip(backups[-len(suffixes):], suffixes):
        assert b["blob_backup"]["name"] == f"blobstorage.{b['stamp']}{suffix}"
        assert b["blob_backup"]["name"] in on_disk
    # Every blob backup belongs to one, a .snar to none.
    for b in loc["blobs"]["backups"]:
        if b["kind"] == "snapshot_file":
            assert b["filestorage_backup"] is None and b["name"].endswith(".snar")
        else:
            assert b["filestorage_backup"] == next(
                x["file"] for x in backups if x["stamp"] == b["stamp"]
            )
