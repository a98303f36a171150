"""Directory blob backups (snapshots and copies) compared with what rsync
-a --delete --link-dest and cp -a produce on the same trees, their restore,
and the blob bugs of 6.0 (see CHANGES.rst) pinned as fixed."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from blobhelpers import add_blob
from blobhelpers import age_dirs
from blobhelpers import make_blobtree
from blobhelpers import rsync_backup
from blobhelpers import rsync_restore
from blobhelpers import run
from blobhelpers import shared
from blobhelpers import state
from collective.recipe.backup import BackupError
from collective.recipe.backup import blobs
from repozo_util import listing

T1 = "2026-01-01-00-00-00"
T2 = "2026-01-02-00-00-00"
T3 = "2026-01-03-00-00-00"


def change_tree(live):
    """New blobs, a removed blob (and its oid directory), a changed file."""
    add_blob(live, 1000, 0x03E0000000009999, b"new blob", mtime=1_800_000_000)
    add_blob(live, 3, 0x03E0000000009998, b"new revision", mtime=1_800_000_001)
    victim = os.path.join(live, "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x05")
    shutil.rmtree(victim)
    p = os.path.join(live, "name with spaces.txt")
    with open(p, "w") as f:
        f.write("changed, same size!")
    os.utime(p, (1_800_000_002, 1_800_000_002))
    age_dirs(live, 1_760_000_000)


def backup_state(backup):
    """``state`` of a directory backup without its manifest, which rsync
    does not make (it is compared with rsync's tree by ``manifest_matches``)."""
    return state(backup, exclude_top=("tmp", ".removed", ".crb-manifest"))


def manifest_matches(backup, tree):
    """The manifest of ``backup`` lists every file of ``tree`` (rsync's copy
    of the same blobs) with its size, and nothing else."""
    lines = (backup / ".crb-manifest").read_text().splitlines()
    assert lines[0] == "crb-manifest 1"
    listed = {}
    for line in lines[1:]:
        size, rel = line.split(" ", 1)
        listed[rel] = int(size)
    files = {rel: v[3] for rel, v in state(tree).items() if v[0] == "file"}
    assert listed == files


@pytest.fixture
def live(tmp_path):
    return make_blobtree(str(tmp_path / "var" / "blobstorage"))


def test_snapshots_match_rsync_link_dest(tmp_path, live):
    ours, theirs = tmp_path / "ours", tmp_path / "rsync"
    theirs.mkdir()
    r1 = blobs.backup(live, ours, now=T1)
    assert r1["created"] and r1["copied"] == r1["files"] and r1["linked"] == 0
    rs1 = theirs / f"blobstorage.{T1}"
    rsync_backup(live, rs1)
    o1 = ours / f"blobstorage.{T1}"
    assert backup_state(o1) == state(rs1)
    manifest_matches(o1, rs1 / "blobstorage")
    assert os.readlink(ours / "latest") == f"blobstorage.{T1}"

    change_tree(live)
    r2 = blobs.backup(live, ours, now=T2)
    rs2 = theirs / f"blobstorage.{T2}"
    rsync_backup(live, rs2, prev=rs1)
    o2 = ours / f"blobstorage.{T2}"
    assert backup_state(o2) == state(rs2)
    manifest_matches(o2, rs2 / "blobstorage")
    assert state(o2 / "blobstorage") == state(live)
    # The same files are hard links to the previous backup, by inode.
    linked_ours = shared(o1, o2)
    assert linked_ours == shared(rs1, rs2)
    assert len(linked_ours) == r2["linked"] > 30
    assert "blobstorage/name with spaces.txt" not in linked_ours
    assert os.readlink(ours / "latest") == f"blobstorage.{T2}"
    # tmp/ is not backed up, .layout is.
    assert not (o2 / "blobstorage" / "tmp").exists()
    assert (o2 / "blobstorage" / ".layout").read_text() == "bushy"


def test_restore_reproduces_the_tree(tmp_path, live):
    loc = tmp_path / "bk"
    blobs.backup(live, loc, now=T1)
    before = state(live)
    change_tree(live)
    blobs.backup(live, loc, now=T2)
    after = state(live)
    target = tmp_path / "restored" / "blobstorage"
    assert blobs.restore(loc, target) == [loc / f"blobstorage.{T2}" / "blobstorage"]
    assert state(target) == after
    blobs.restore(loc, target, date=T1)
    assert state(target) == before
    # A date is "at or before", normalised as the scripts normalise it: a
    # bare day is its midnight, which includes a backup made at midnight.
    blobs.restore(loc, target, date="2026-01-01-23-59")
    assert state(target) == before
    blobs.restore(loc, target, date="2026-01-02")
    assert state(target) == after
    blobs.restore(loc, target, date="2026-1-1-9")
    assert state(target) == before
    with pytest.raises(
        blobs.NoBlobBackup,
        match="Could not find backup of '2025-12-31-00-00-00' or earlier.",
    ):
        blobs.restore(loc, target, date="2025-12-31")
    # The restored tree replaces the old one, leftovers included.
    assert not any(n.startswith(".blobstorage.") for n in os.listdir(target.parent))


def test_our_snapshots_restore_with_rsync(tmp_path, live):
    loc = tmp_path / "bk"
    blobs.backup(live, loc, now=T1)
    change_tree(live)
    blobs.backup(live, loc, now=T2)
    target = tmp_path / "restored" / "blobstorage"
    target.mkdir(parents=True)
    (target / "stale").write_text("removed by --delete")
    rsync_restore(loc / f"blobstorage.{T1}", target)
    assert state(target) == state(loc / f"blobstorage.{T1}" / "blobstorage")


def test_rsync_made_backups_restore_with_ours(tmp_path, live):
    """Backups made with 6.0's rsync commands (not excluding tmp/)."""
    loc = tmp_path / "bk"
    loc.mkdir()
    b1 = loc / f"blobstorage.{T1}"
    rsync_backup(live, b1, exclude_transient=False)
    s1 = state(live)
    change_tree(live)
    b2 = loc / f"blobstorage.{T2}"
    rsync_backup(live, b2, prev=b1, exclude_transient=False)
    os.symlink(b2.name, loc / "latest")
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(loc, target)
    assert state(target) == state(live)
    blobs.restore(loc, target, date=T1)
    assert state(target) == s1
    # 6.0 backed up tmp/ as well; a restore gives back what is there.
    assert (target / "tmp" / "BUCabc").exists()


def test_already_exists_is_skipped_and_cleanup_still_runs(tmp_path, live):
    fsbk = tmp_path / "backups"
    fsbk.mkdir()
    (fsbk / f"{T1}.fsz").write_text("full")
    loc = tmp_path / "bk"
    r = blobs.backup(live, loc, fs_backup_location=fsbk, now=T3)
    assert r["backup"] == loc / f"blobstorage.{T1}"
    change_tree(live)
    r = blobs.backup(live, loc, fs_backup_location=fsbk, now=T3)
    assert not r["created"]
    (fsbk / f"{T2}.deltafsz").write_text("delta")
    r = blobs.backup(live, loc, fs_backup_location=fsbk, now=T3)
    assert r["created"] and r["backup"] == loc / f"blobstorage.{T2}"
    assert listing(loc) == [f"blobstorage.{T1}", f"blobstorage.{T2}", "latest"]


def test_interrupted_backup_is_redone_not_trusted(tmp_path, live):
    """6.0 trusted a half-written <base>.TS forever (see docs/blobs.rst)."""
    loc = tmp_path / "bk"
    loc.mkdir()
    stale = loc / f".blobstorage.{T1}.partial"
    (stale / "blobstorage").mkdir(parents=True)
    (stale / "blobstorage" / "half").write_text("x")
    r = blobs.backup(live, loc, now=T1)
    assert r["created"]
    assert not stale.exists()
    assert state(loc / f"blobstorage.{T1}" / "blobstorage") == state(live)


def _limited_backup(live, loc, limit):
    """Run a backup in a child whose files may not grow past `limit` bytes
    (RLIMIT_FSIZE): a full disk, as a root test can make one."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from collective.recipe.backup import blobs, BackupError
        try:
            blobs.backup({str(live)!r}, {str(loc)!r}, now={T1!r})
        except BackupError as e:
            print(type(e).__name__, e)
            sys.exit(3)
        """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_disk_full_fails_loudly_and_leaves_no_backup(tmp_path, live):
    loc = tmp_path / "bk"
    big = add_blob(live, 2000, 0x03E0000000001111, b"x" * 200_000)
    r = _limited_backup(live, loc, 100_000)
    assert r.returncode == 3, r.stderr
    assert "File too large" in r.stdout
    assert "/bk/.blobstorage." in r.stdout  # names the file it was writing
    assert listing(loc) == []
    assert os.path.exists(big)
    # The next run, with room, makes the backup (not "already exists").
    assert blobs.backup(live, loc, now=T1)["created"]
    assert state(loc / f"blobstorage.{T1}" / "blobstorage") == state(live)


def test_build_left_by_a_killed_run_is_removed_by_the_next(tmp_path, live):
    """A run killed mid-copy leaves its hidden build directory; it never
    gets a final name, and the next run (of any date) removes it."""
    loc = tmp_path / "bk"
    dead = loc / f".blobstorage.{T1}.partial" / "blobstorage" / "0x00"
    dead.mkdir(parents=True)
    (dead / "half.blob").write_bytes(b"x" * 1000)
    blobs.backup(live, loc, now=T2)
    assert listing(loc) == [f"blobstorage.{T2}", "latest"]
    assert state(loc / f"blobstorage.{T2}" / "blobstorage") == state(live)


def test_file_where_a_directory_should_be(tmp_path, live):
    loc = tmp_path / "bk"
    loc.write_text("not a dir")
    with pytest.raises(BackupError, match=f"{loc}: not a directory"):
        blobs.backup(live, loc, now=T1)
    blobfile = tmp_path / "blobfile"
    blobfile.write_text("x")
    with pytest.raises(BackupError, match="blobfile: not a directory"):
        blobs.backup(blobfile, tmp_path / "bk2", now=T1)
    blobs.backup(live, tmp_path / "bk3", now=T1)
    target = tmp_path / "target"
    target.write_text("a file")
    with pytest.raises(BackupError, match=f"{target}: not a directory"):
        blobs.restore(tmp_path / "bk3", target)
    assert target.read_text() == "a file"


def test_copy_mode_is_independent_copies_like_cp_a(tmp_path, live):
    loc = tmp_path / "bk"
    blobs.backup(live, loc, hard_links=False, now=T1)
    change_tree(live)
    r = blobs.backup(live, loc, hard_links=False, now=T2)
    assert r["linked"] == 0
    o1, o2 = loc / f"blobstorage.{T1}", loc / f"blobstorage.{T2}"
    assert shared(o1, o2) == set()
    cp = tmp_path / "cp"
    cp.mkdir()
    run("cp", "-a", live, cp / "blobstorage")
    shutil.rmtree(cp / "blobstorage" / "tmp")
    os.utime(cp / "blobstorage", ns=(0, os.stat(live).st_mtime_ns))
    assert state(o2 / "blobstorage") == state(cp / "blobstorage")


def test_hard_links_on_first_copy_share_inodes_with_live(tmp_path, live):
    loc = tmp_path / "bk"
    r = blobs.backup(live, loc, hard_links_on_first_copy=True, now=T1)
    assert r["linked"] == r["files"]
    b = loc / f"blobstorage.{T1}" / "blobstorage"
    assert len(shared(live, b)) == r["files"]
    # What rsync --link-dest=<live>/ does.
    theirs = tmp_path / "rs" / f"blobstorage.{T1}" / "blobstorage"
    theirs.mkdir(parents=True)
    run("rsync", "-a", "--exclude=/tmp", f"--link-dest={live}/", f"{live}/", f"{theirs}/")
    assert shared(live, theirs) == shared(live, b)


def test_numbered_rotation_and_restore_by_mtime(tmp_path, live):
    loc = tmp_path / "bk"
    blobs.backup(live, loc, timestamps=False, now=T1)
    s0 = state(live)
    change_tree(live)
    blobs.backup(live, loc, timestamps=False, now=T2)
    add_blob(live, 3000, 0x03E0000000003000, b"third")
    blobs.backup(live, loc, timestamps=False, now=T3)
    assert listing(loc) == ["blobstorage.0", "blobstorage.1", "blobstorage.2"]
    assert len(shared(loc / "blobstorage.1", loc / "blobstorage.0")) > 30
    # Numbered backups are chosen by mtime.
    for n, when in [(2, 1_767_225_600), (1, 1_767_312_000), (0, 1_767_398_400)]:
        os.utime(loc / f"blobstorage.{n}", (when, when))
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(loc, target, date="2026-01-01-12")
    assert state(target) == s0
    blobs.restore(loc, target)
    assert state(target) == state(live)


@pytest.mark.parametrize("name", ["blob.store", "blob store", "blöbstörage", "a.b c.ü"])
def test_names_with_dots_spaces_unicode(tmp_path, name):
    """6.0 could not see backups of a blob dir with a dot in its name, and
    its unquoted rsync broke on spaces (see docs/blobs.rst)."""
    live = make_blobtree(str(tmp_path / "var" / name), oids=range(1, 6))
    loc = tmp_path / "back ups"
    blobs.backup(live, loc, now=T1)
    names = [b["name"] for b in blobs.list_backups(loc)]
    assert names == [f"{name}.{T1}"]
    target = tmp_path / "restored" / name
    blobs.restore(loc, target)
    assert state(target) == state(live)


def test_restore_into_a_differently_named_target(tmp_path, live):
    """6.0 needed <backup>/<basename of target> (see docs/blobs.rst)."""
    loc = tmp_path / "bk"
    blobs.backup(live, loc, now=T1)
    target = tmp_path / "elsewhere" / "blobs-staging"
    blobs.restore(loc, target)
    assert state(target) == state(live)


def test_trailing_slash_on_blobdir(tmp_path, live):
    """A trailing slash on the blob directory made a hidden `.0` backup in 6.0."""
    loc = tmp_path / "bk"
    blobs.backup(live + "/", loc, now=T1)
    assert [b["name"] for b in blobs.list_backups(loc)] == [f"blobstorage.{T1}"]


def test_mixed_prefixes_are_refused(tmp_path, live):
    loc = tmp_path / "bk"
    (loc / f"other.{T1}").mkdir(parents=True)
    with pytest.raises(blobs.BlobError, match="Different backup prefixes found in"):
        blobs.backup(live, loc, now=T2)


def test_rsync_options_copy_dirlinks(tmp_path, live, caplog):
    """-k is mapped (a symlinked directory is copied as a directory); the
    rest is accepted with a warning."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.blob").write_text("outside")
    os.symlink(outside, os.path.join(live, "linked-dir"))
    age_dirs(live)
    age_dirs(outside, 1_740_000_000)
    loc = tmp_path / "bk"
    with caplog.at_level("WARNING"):
        blobs.backup(live, loc, rsync_options="--no-l -k -v", now=T1)
    assert "rsync_options: -v has no effect" in caplog.text
    ours = loc / f"blobstorage.{T1}"
    theirs = tmp_path / "rs" / f"blobstorage.{T1}"
    theirs.parent.mkdir()
    run("rsync", "-a", "--no-l", "-k", "--exclude=/blobstorage/tmp", live, theirs)
    assert backup_state(ours) == state(theirs)
    assert (ours / "blobstorage" / "linked-dir" / "f.blob").read_text() == "outside"
    assert not (ours / "blobstorage" / "link-to-layout").exists()


def test_real_zodb_blob_tree(tmp_path, make_storage):
    info = make_storage("db", transactions=120, seed=3)
    live = os.path.join(os.path.dirname(info["path"]), "blobstorage")
    with open(os.path.join(live, ".layout")) as f:
        assert f.read() == "bushy"
    age_dirs(live)
    ours, theirs = tmp_path / "ours", tmp_path / "rs"
    theirs.mkdir()
    blobs.backup(live, ours, now=T1)
    rsync_backup(live, theirs / f"blobstorage.{T1}")
    make_storage("db", transactions=60, seed=4)
    age_dirs(live, 1_760_000_000)
    r = blobs.backup(live, ours, now=T2)
    rsync_backup(live, theirs / f"blobstorage.{T2}", prev=theirs / f"blobstorage.{T1}")
    assert r["linked"] > 0 and r["copied"] > 0
    for t in (T1, T2):
        assert backup_state(ours / f"blobstorage.{t}") == state(theirs / f"blobstorage.{t}")
        manifest_matches(ours / f"blobstorage.{t}", theirs / f"blobstorage.{t}" / "blobstorage")
    assert shared(ours / f"blobstorage.{T1}", ours / f"blobstorage.{T2}") == shared(
        theirs / f"blobstorage.{T1}", theirs / f"blobstorage.{T2}"
    )
    modes = {v[1] for v in state(live).values() if v[0] == "file" and v[1] != 0o644}
    assert modes == {0o444}
    target = tmp_path / "restored" / "blobstorage"
    blobs.restore(ours, target)
    assert state(target) == state(live)
