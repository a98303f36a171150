"""Off-site copies against a real Garage S3 store started by the suite
(conftest's ``garage`` and ``s3_bucket``): push after a backup, only new
blob files sent, pull + restore on an empty server, an interrupted push,
the store down, retention in the store, wrong credentials, tampering seen by
verify, and the buildout part's ``bin/offsite``.

What the store holds is read with boto3 (another S3 client), never through
our own listing; what a restore gives is compared with ZODB's repozo and
with the blob tree as it was."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import zodbgen
from blobhelpers import state
from repozo_util import listing


BIN = os.path.dirname(sys.executable)
ZODB_BACKUP = os.path.join(BIN, "zodb-backup")
REPOZO = os.path.join(BIN, "repozo")
#: 2026-01-01 00:00:00 UTC; every run gets its own second after it.
T0 = 1_767_225_600
PREFIX = "site1"


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def files_under(root):
    """{relpath: size} of the regular files under ``root``."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


class Site:
    """A Data.fs and blobstorage made by real ZODB under ``root/var``, backed
    up by ``zodb-backup`` with the offsite options on the command line."""

    def __init__(self, root, bucket, garage, extra=()):
        self.root = root
        self.var = os.path.join(root, "var")
        self.fsdir = os.path.join(self.var, "filestorage")
        self.datafs = os.path.join(self.fsdir, "Data.fs")
        self.blobdir = os.path.join(self.var, "blobstorage")
        self.backups = os.path.join(self.var, "backups")
        self.blob_backups = os.path.join(self.var, "blobstoragebackups")
        self.bucket = bucket
        self.garage = garage
        self.now = T0
        self.seed = 0
        self.extra = list(extra)

    def options(self, prefix=PREFIX):
        return [
            "--datafs", self.datafs,
            "--blob-storage", self.blobdir,
            "--offsite", f"s3://{self.bucket.bucket}/{prefix}",
            "--offsite-endpoint", self.bucket.endpoint,
            "--offsite-region", self.bucket.region,
            *self.extra,
        ]

    def change(self, transactions=6):
        self.seed += 1
        zodbgen.generate(
            self.fsdir, transactions=transactions, seed=self.seed, undos=1,
            blob_dir=self.blobdir,
        )
        return self.state()

    def state(self):
        return sha(self.datafs), state(self.blobdir, mtimes=False)

    def run(self, *args, env=None, options=None, **kw):
        env = dict(self.bucket.env() if env is None else env)
        self.now += 1
        env.setdefault("CRB_REPOZO_NOW", str(self.now))
        p = subprocess.run(
            [ZODB_BACKUP, *(self.options() if options is None else options), *args],
            capture_output=True, text=True, env=env, timeout=600, **kw,
        )
        p.lines = p.stderr.splitlines()
        return p

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def objects(self, prefix=PREFIX):
        """{key below the prefix: size}, as boto3 lists the bucket."""
        lead = prefix + "/"
        return {
            k[len(lead):]: s
            for k, s in self.garage.list_objects(self.bucket.bucket, lead).items()
        }

    def get(self, key, prefix=PREFIX):
        return self.garage.get(self.bucket.bucket, f"{prefix}/{key}")

    def newest_blob_backup(self):
        names = sorted(n for n in os.listdir(self.blob_backups)
                       if n.startswith("blobstorage.") and "." not in n[len("blobstorage."):])
        return os.path.join(self.blob_backups, names[-1], "blobstorage")


@pytest.fixture
def site(tmp_path, s3_bucket, garage):
    return Site(str(tmp_path / "site"), s3_bucket, garage)


def assert_store_mirrors(site):
    """Every committed repository file and every file of every local blob
    backup is in the store, byte for byte (fetched with boto3)."""
    objects = site.objects()
    for name in listing(site.backups):
        if name.startswith(".") or name.endswith(".lock"):
            continue
        key = f"1/backup/filestorage/{name}"
        assert key in objects, (key, sorted(objects))
        with open(os.path.join(site.backups, name), "rb") as f:
            assert md5(site.get(key)) == md5(f.read()), key
    for entry in os.listdir(site.blob_backups):
        tree = os.path.join(site.blob_backups, entry, "blobstorage")
        if entry.startswith(".") or entry == "latest" or not os.path.isdir(tree):
            continue
        assert f"1/backup/blobstorage/{entry}.manifest" in objects
        for rel, size in files_under(tree).items():
            if rel.endswith(".blob"):
                key = f"1/blobfiles/{rel}"
                assert objects.get(key) == size, key
                with open(os.path.join(tree, rel), "rb") as f:
                    assert site.get(key) == f.read(), key


def pushed_counts(lines):
    """(new, already there) from the 'Pushed N new blob files' line."""
    for line in lines:
        if "new blob files" in line:
            words = line.split()
            new = int(words[words.index("Pushed") + 1])
            there = int(line.rsplit(";", 1)[1].split()[0])
            return new, there
    raise AssertionError("no 'new blob files' line in:\n" + "\n".join(lines))


def test_backup_pushes_and_the_store_mirrors_the_backups(site):
    site.change()
    p = site.ok("backup")
    assert any("Pushing backups to s3://" in line for line in p.lines), p.stderr
    assert_store_mirrors(site)
    # The manifest names each blob file of the backup with its md5.
    import json
    objects = site.objects()
    (mkey,) = [k for k in objects if k.endswith(".manifest")]
    manifest = json.loads(site.get(mkey))
    tree = site.newest_blob_backup()
    assert sorted(f["path"] for f in manifest["files"]) == sorted(files_under(tree))
    for f in manifest["files"]:
        with open(os.path.join(tree, f["path"]), "rb") as fh:
            assert f["md5"] == md5(fh.read())
    p = site.ok("offsite", "status")
    assert "not in the store" not in p.stdout
    p = site.ok("offsite", "verify")
    assert "all match" in p.stdout


def test_second_push_sends_only_the_new_blob_files(site):
    site.change(transactions=30)
    site.ok("backup")
    first_tree = files_under(site.newest_blob_backup())
    before = site.objects()
    head = site.garage.client().head_object
    unchanged = sorted(k for k in before if k.startswith("1/blobfiles/"))[:5]
    stamps = {k: head(Bucket=site.bucket.bucket, Key=f"{PREFIX}/{k}")["LastModified"] for k in unchanged}
    time.sleep(1.1)  # LastModified has one-second resolution
    site.change(transactions=40)
    p = site.ok("backup")
    second_tree = files_under(site.newest_blob_backup())
    new_files = {r for r in second_tree if r not in first_tree and r.endswith(".blob")}
    assert new_files, "the change made no new blob file"
    new, there = pushed_counts(p.lines)
    assert (new, there) == (len(new_files), len(second_tree) - len(new_files))
    after = site.objects()
    added = {k for k in after if k not in before}
    assert {k[len("1/blobfiles/"):] for k in added if k.startswith("1/blobfiles/")} == new_files
    # An object already in the store was not written again.
    for k in unchanged:
        got = head(Bucket=site.bucket.bucket, Key=f"{PREFIX}/{k}")
        assert got["ContentLength"] == before[k]
        assert got["LastModified"] == stamps[k], k
    assert_store_mirrors(site)


def test_pull_onto_an_empty_server_restores_every_state(site, tmp_path):
    first = site.change()
    site.ok("backup")
    second = site.change()
    site.ok("backup")
    dates = sorted(n[:-4] for n in listing(site.backups) if n.endswith((".fsz",)))
    deltas = sorted(n[: -len(".deltafsz")] for n in listing(site.backups) if n.endswith(".deltafsz"))
    reference = tmp_path / "reference.fs"
    subprocess.run(
        [REPOZO, "-R", "-r", site.backups, "-o", str(reference)], check=True, capture_output=True,
    )
    # The server is lost: live data and local backups.
    shutil.rmtree(site.var)
    p = site.ok("offsite", "pull")
    assert any("Pulled" in line for line in p.lines), p.stderr
    site.ok("restore", "-n")
    assert site.state() == second
    assert sha(site.datafs) == sha(reference)
    # The pulled chain is a repository ZODB's repozo reads too.
    again = tmp_path / "again.fs"
    subprocess.run([REPOZO, "-R", "-r", site.backups, "-o", str(again)], check=True, capture_output=True)
    assert sha(again) == sha(reference)

    # The first state: pulled into empty locations again, by its date.
    shutil.rmtree(site.var)
    first_date = dates[0]
    assert deltas and deltas[0] > first_date
    site.ok("offsite", "pull", first_date)
    site.ok("restore", "-n", first_date)
    assert site.state() == first


def test_pull_never_overwrites_a_different_local_file(site):
    site.change()
    site.ok("backup")
    dat = [n for n in listing(site.backups) if n.endswith(".fsz")][0]
    path = os.path.join(site.backups, dat)
    with open(path, "ab") as f:
        f.write(b"local damage")
    before = sha(path)
    p = site.run("offsite", "pull")
    assert p.returncode == 1
    errors = [line for line in p.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "move it away" in errors[0], p.stderr
    assert sha(path) == before


def test_interrupted_push_resumes_and_verifies(site):
    # Many small blob files, pushed one at a time, so a kill lands midway.
    site.change(transactions=60)
    site.ok("backup", options=site.options()[:4])  # a local backup only
    total = len(files_under(site.newest_blob_backup()))
    env = site.bucket.env()
    slow = site.options() + ["--offsite-jobs", "1"]
    journal = os.path.join(site.blob_backups, ".crb-offsite-journal")
    proc = subprocess.Popen(
        [ZODB_BACKUP, *slow, "offsite", "push"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(journal) and sum(1 for _ in open(journal)) >= total // 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # Its first line names the store; one line per confirmed blob file.
    done_before = sum(1 for _ in open(journal)) - 1
    assert 0 < done_before < total, (done_before, total)
    objects = site.objects()
    # Killed before its commit point: no manifest in the store.
    assert not [k for k in objects if k.endswith(".manifest")]
    p = site.ok("offsite", "push")
    new, there = pushed_counts(p.lines)
    # It resumed: what the journal records was not sent again.
    assert there >= done_before and new <= total - done_before, (new, there, done_before)
    assert not os.path.exists(journal)
    p = site.ok("offsite", "verify")
    assert "all match" in p.stdout
    assert_store_mirrors(site)


def test_store_down_fails_the_backup_and_keeps_it_local(site, garage, tmp_path):
    first = site.change()
    site.ok("backup")
    second = site.change()
    garage.stop(timeout=2)
    try:
        p = site.run("backup")
    finally:
        garage.start()
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "cannot reach" in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    # The local backup of the second state is complete: it restores.
    assert len([n for n in listing(site.backups) if n.endswith(".deltafsz")]) == 1
    site.ok("restore", "-n", options=site.options()[:4])
    assert site.state() == second
    # The next push sends what the failed one could not.
    p = site.ok("offsite", "push")
    p = site.ok("offsite", "status")
    assert "not in the store" not in p.stdout
    assert first != second


def test_retention_in_the_store_keeps_offsite_keep_full_backups(site):
    site.extra = ["--keep", "3", "--offsite-keep", "1"]
    states = []
    for _ in range(3):
        states.append(site.change())
        site.ok("fullbackup")
    fulls = sorted(n for n in listing(site.backups) if n.endswith(".fsz"))
    assert len(fulls) == 3  # keep = 3 locally
    objects = site.objects()
    remote_fulls = sorted(k.rsplit("/", 1)[1] for k in objects if k.endswith(".fsz"))
    assert remote_fulls == fulls[-1:]
    manifests = [k for k in objects if k.endswith(".manifest")]
    assert len(manifests) == 1 and fulls[-1][:-4] in manifests[0]
    # Exactly the blob files of the kept backup remain in the store.
    tree = files_under(site.newest_blob_backup())
    remote_blobs = {k[len("1/blobfiles/"):] for k in objects if k.startswith("1/blobfiles/") and k.endswith(".blob")}
    assert remote_blobs == {r for r in tree if r.endswith(".blob")}
    p = site.ok("offsite", "verify")
    assert "all match" in p.stdout
    # What the store's retention removed is not missing there, and is not
    # sent again (keep 3 here, 1 there).
    p = site.ok("offsite", "status")
    assert "not in the store" not in p.stdout
    p = site.ok("offsite", "push")
    assert any("Pushed 0 repository files" in line for line in p.lines), p.stderr
    assert site.objects() == objects


def test_pull_ignores_a_full_backup_whose_dat_never_reached_the_store(site):
    """A push that died after a new full backup's data file but before its
    .dat: that backup does not count, and pull brings the previous chain."""
    first = site.change()
    site.ok("fullbackup")
    site.change()
    site.ok("fullbackup", options=site.options()[:4])  # local only
    newest = sorted(n for n in listing(site.backups) if n.endswith(".fsz"))[-1]
    with open(os.path.join(site.backups, newest), "rb") as f:
        data = f.read()
    site.garage.client().put_object(
        Bucket=site.bucket.bucket, Key=f"{PREFIX}/1/backup/filestorage/{newest}",
        Body=data, Metadata={"crb-md5": md5(data)},
    )
    shutil.rmtree(site.var)
    site.ok("offsite", "pull")
    assert newest not in listing(site.backups)
    site.ok("restore", "-n")
    assert site.state() == first


def test_wrong_credentials_are_one_clear_line(site):
    site.change()
    site.ok("backup")
    env = site.bucket.env()
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    for action in ("push", "status", "pull"):
        p = site.run("offsite", action, env=env)
        assert p.returncode == 1
        errors = [line for line in p.lines if line.startswith("ERROR:")]
        assert len(errors) == 1, p.stderr
        assert "access denied" in errors[0] and "credentials" in errors[0], errors[0]
        assert "Traceback" not in p.stderr


def test_verify_sees_a_replaced_and_a_missing_object(site):
    site.change(transactions=20)
    site.ok("backup")
    objects = site.objects()
    blobs = sorted(k for k in objects if k.startswith("1/blobfiles/") and k.endswith(".blob"))
    victim, gone = blobs[0], blobs[1]
    data = site.get(victim)
    flipped = bytes([data[0] ^ 1]) + data[1:]
    site.garage.put(site.bucket.bucket, f"{PREFIX}/{victim}", flipped)
    site.garage.delete(site.bucket.bucket, f"{PREFIX}/{gone}")
    p = site.run("offsite", "verify")
    assert p.returncode == 1
    assert victim in p.stdout and "md5" in p.stdout, p.stdout
    assert f"{gone}: missing" in p.stdout, p.stdout
    # A push does not hide the damage: the manifest still names both
    # objects, so verify keeps failing until someone looks.
    site.ok("offsite", "push")
    assert site.run("offsite", "verify").returncode == 1


@pytest.mark.parametrize("sample_buildout", ["6"], indirect=True)
def test_buildout_part_generates_bin_offsite_without_credentials(sample_buildout, s3_bucket):
    b = sample_buildout
    fsdir = b.path("var", "filestorage")
    zodbgen.generate(fsdir, transactions=5, seed=1, blob_dir=b.path("var", "blobstorage"))
    body = (
        "[backup]\nrecipe = collective.recipe.backup\n"
        "blob_storage = var/blobstorage\n"
        f"offsite = s3://{s3_bucket.bucket}/plone\n"
        f"offsite_endpoint = {s3_bucket.endpoint}\n"
        f"offsite_region = {s3_bucket.region}\n"
    )
    p = b.run("backup", body)
    assert p.returncode == 0, p.output
    offsite_script = b.path("bin", "offsite")
    assert os.path.exists(offsite_script)
    for name in os.listdir(b.path("bin")):
        with open(b.path("bin", name), errors="replace") as f:
            text = f.read()
        assert s3_bucket.secret not in text and s3_bucket.key_id not in text
    env = dict(s3_bucket.env(), CRB_REPOZO_NOW=str(T0))
    r = b.script("backup", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = b.script("offsite", "status", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not in the store" not in r.stdout
    r = b.script("offsite", "verify", env=env)
    assert r.returncode == 0 and "all match" in r.stdout, r.stdout + r.stderr


def test_a_failed_push_removes_nothing_from_the_store(site):
    """Retention in the store waits for the whole push: a push that fails
    on its last backup leaves the older backups there."""
    site.extra = ["--keep", "3", "--offsite-keep", "1"]
    site.change(transactions=20)
    site.ok("fullbackup")
    before = site.objects()
    site.change(transactions=20)
    site.ok("fullbackup", options=site.options()[:4] + ["--keep", "3"])  # local only
    # One file of the new blob backup cannot be read (a FIFO where a blob
    # file was): its upload fails.
    tree = site.newest_blob_backup()
    victim = sorted(r for r in files_under(tree) if r.endswith(".blob"))[-1]
    os.unlink(os.path.join(tree, victim))
    os.mkfifo(os.path.join(tree, victim))
    p = site.run("offsite", "push")
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and victim.split("/")[-1] in errors[0], p.stderr
    after = site.objects()
    # Everything that was there is still there; the new backup has no
    # manifest, so it does not count.
    assert set(before) <= set(after)
    assert [k for k in after if k.endswith(".manifest")] == [
        k for k in before if k.endswith(".manifest")
    ]
    p = site.run("offsite", "status")
    assert p.returncode == 1 and "not in the store" in p.stdout


def test_pushes_of_two_sets_at_once_leave_a_restorable_store(site):
    """bin/backup and bin/snapshotbackup pushing at the same time: one push
    waits for the other (they share blob files), both succeed, and every
    object the manifests name is there."""
    site.extra = ["--offsite-keep", "1"]
    site.change(transactions=30)
    local = site.options()[:4]
    site.ok("backup", options=local)
    site.ok("snapshot", options=local)
    site.change(transactions=30)
    site.ok("backup", options=local)
    site.ok("snapshot", options=local)
    env = site.bucket.env()
    procs = [
        subprocess.Popen(
            [ZODB_BACKUP, *site.options(), "offsite", "push", "--set", which],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for which in ("backup", "snapshot")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    p = site.ok("offsite", "verify")
    assert "all match" in p.stdout
    p = site.ok("offsite", "status")
    assert "not in the store" not in p.stdout


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(site, tmp_path):
    """Over 16 MiB: a multipart upload (the ETag of a multipart object has
    a part count), read back whole by another client and by pull."""
    site.change()
    big_rel = os.path.join("0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x7f", "0x7f",
                           "0x040d5d13b1249244.blob")
    big = os.path.join(site.blobdir, big_rel)
    os.makedirs(os.path.dirname(big), exist_ok=True)
    data = os.urandom(40 << 20)
    with open(big, "wb") as f:
        f.write(data)
    before = site.state()
    site.ok("backup")
    key = f"{PREFIX}/1/blobfiles/{big_rel}"
    head = site.garage.client().head_object(Bucket=site.bucket.bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # 16 + 16 + 8 MiB
    assert md5(site.garage.get(site.bucket.bucket, key)) == md5(data)
    assert site.ok("offsite", "verify").returncode == 0
    shutil.rmtree(site.var)
    site.ok("offsite", "pull")
    site.ok("restore", "-n")
    assert site.state() == before
