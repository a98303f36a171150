"""A restore that keeps the live Data.fs's prefix, on real ZODB storages
and repositories made by us and by ZODB's repozo.

When the live Data.fs starts with exactly the state being restored (it
only grew since the backup), the restore cuts it instead of rewriting it,
and keeps the cut-off bytes beside it. The result must be what a full
restore gives: byte for byte ``repozo -R`` of the same repository and
date, with the same ``.index``; appending the kept bytes must give back
the Data.fs as it was. When the prefix is not the backup's (a pack, a
damaged byte), the whole file is written, as before.
"""

import logging
import os

import pytest
import zodbgen
from repozo_util import ok
from repozo_util import theirs
from test_target_dryrun import T0
from test_target_dryrun import Site
from test_target_dryrun import repozo_chain
from test_target_dryrun import stamp

from collective.recipe.backup import _core


def backed_up(tmp_path, maker="ours", gzip=True):
    """A site with a full and two incremental backups and two more
    changes; returns (site, stamps of the three backups)."""
    # repozo makes no blob backups.
    site = Site(tmp_path, gzip=gzip, backup_blobs=maker == "ours")
    stamps = []
    for i in range(3):
        if i:
            site.change(seed=10 + i)
        if maker == "ours":
            _core.backup(site.config, "standard", now=T0 + 10 * i)
        else:
            args = ["-B", "-r", site.repo, "-f", site.datafs]
            if gzip:
                args.append("-z")
            site.repo.mkdir(exist_ok=True)
            ok(theirs(*args, now=T0 + 10 * i))
        stamps.append(stamp(T0 + 10 * i))
    site.change(seed=20)
    return site, stamps


def restore(site, date, caplog, **kw):
    caplog.clear()
    _core.restore(site.config, "standard", date, now=T0 + 100, **kw)
    return [r.getMessage() for r in caplog.records]


def kept_line(lines):
    return [x for x in lines if x.startswith("Keeping the first ")]


@pytest.mark.parametrize("maker", ["ours", "repozo"])
@pytest.mark.parametrize("gzip", [True, False])
@pytest.mark.parametrize("proof", ["checksums", "structure"])
def test_kept_prefix_is_repozos_restore(tmp_path, caplog, maker, gzip, proof):
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path, maker, gzip)
    live = site.datafs.read_bytes()
    expected = tmp_path / "repozo.fs"
    chain = repozo_chain(site.repo, expected, stamps[1])
    assert len(chain) == 2
    want = expected.read_bytes()
    assert live.startswith(want) and len(live) > len(want)

    lines = restore(site, stamps[1], caplog, keep_prefix=proof)
    assert len(kept_line(lines)) == 1, lines
    assert site.datafs.read_bytes() == want
    # The same index as repozo's restore, and ZODB opens the result with it.
    assert (site.fsdir / "Data.fs.index").read_bytes() == (
        tmp_path / "repozo.fs.index"
    ).read_bytes()
    assert zodbgen.describe(str(site.datafs))["used_index"]
    # The cut-off bytes are kept, named after the backup: appending them
    # gives back the Data.fs as it was.
    tail = site.fsdir / f"Data.fs.after-{stamps[1]}"
    assert want + tail.read_bytes() == live
    assert not [n for n in os.listdir(site.fsdir) if n.startswith(".crb")]

    # Restoring the same date again: the Data.fs is already that state.
    lines = restore(site, stamps[1], caplog, keep_prefix=proof)
    assert site.datafs.read_bytes() == want
    assert sorted(n for n in os.listdir(site.fsdir) if ".after-" in n) == [tail.name]


def test_write_all_rewrites_the_file(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    inode = site.datafs.stat().st_ino
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[0])
    lines = restore(site, stamps[0], caplog, keep_prefix="never")
    assert not kept_line(lines)
    assert site.datafs.read_bytes() == expected.read_bytes()
    assert site.datafs.stat().st_ino != inode
    assert not [n for n in os.listdir(site.fsdir) if ".after-" in n]
    with pytest.raises(ValueError):
        _core.restore(site.config, "standard", stamps[0], now=T0 + 100, keep_prefix="fast")


def test_packed_storage_is_written_whole(tmp_path, caplog):
    """After a pack the live file is not the backup's prefix any more."""
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    zodbgen.generate(str(site.fsdir), transactions=2, undos=0, seed=30, pack=True)
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[2])
    for proof in ("checksums", "structure"):
        lines = restore(site, stamps[2], caplog, keep_prefix=proof)
        assert not kept_line(lines)
        assert any(x.startswith(f"Writing the whole of {site.datafs}: ") for x in lines), lines
        assert site.datafs.read_bytes() == expected.read_bytes()
        assert not [n for n in os.listdir(site.fsdir) if ".after-" in n]
        # Packed again, for the second proof.
        zodbgen.generate(str(site.fsdir), transactions=2, undos=0, seed=31, pack=True)


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_damaged_byte_in_the_prefix_means_a_full_restore(tmp_path, caplog):
    """One flipped byte in the middle of the full backup's range, where
    only the md5 can see it: the default proof refuses the prefix, and the
    restore writes the backed-up bytes, repairing the damage."""
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[1])
    full = [n for n in os.listdir(site.repo) if n.endswith(".fsz")]
    assert len(full) == 1
    flip(site.datafs, os.path.getsize(expected) // 3)
    lines = restore(site, stamps[1], caplog)
    assert not kept_line(lines)
    assert site.datafs.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize("where", ["incremental head", "newest range"])
def test_structure_proof_sees_changed_headers_and_newest_range(tmp_path, caplog, where):
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[2])
    dat = (site.repo / f"{stamps[0]}.dat").read_text().split("\n")
    starts = [int(line.split()[1]) for line in dat if line]
    ends = [int(line.split()[2]) for line in dat if line]
    # A byte of the second file's transaction header (its tid), or one in
    # the middle of the newest file's range.
    offset = starts[1] + 3 if where == "incremental head" else (starts[2] + ends[2]) // 2
    flip(site.datafs, offset)
    lines = restore(site, stamps[2], caplog, keep_prefix="structure")
    assert not kept_line(lines)
    assert site.datafs.read_bytes() == expected.read_bytes()


def test_dry_run_keeps_everything_as_it_is(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    before = site.datafs.read_bytes()
    lines = restore(site, stamps[0], caplog, dry_run=True)
    assert any(x.startswith("Would keep the first ") for x in lines), lines
    assert site.datafs.read_bytes() == before
    assert not [n for n in os.listdir(site.fsdir) if ".after-" in n or n.startswith(".crb")]


def test_quick_check_takes_no_index_zodb_would_refuse(tmp_path, caplog):
    """--quick-check copies the repository's index only when it was saved
    for the restored size and passes ZODB's check at open: here it is the
    index of another backup, so the restored Data.fs gets none (and the
    live one, which describes the longer file, is gone); ZODB then scans."""
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[1])
    index = site.repo / f"{stamps[1]}.index"
    index.write_bytes((site.repo / f"{stamps[2]}.index").read_bytes())
    lines = restore(site, stamps[1], caplog, keep_prefix="structure")
    assert len(kept_line(lines)) == 1
    assert any(x.startswith(f"{index} is not an index ZODB would accept") for x in lines), lines
    assert site.datafs.read_bytes() == expected.read_bytes()
    assert not (site.fsdir / "Data.fs.index").exists()
    described = zodbgen.describe(str(site.datafs))
    assert not described["used_index"]
    assert described["end"] == os.path.getsize(expected)


def test_hard_linked_data_fs_is_never_cut(tmp_path, caplog):
    """A Data.fs with another name (a snapshot made with ``cp -l`` or
    ``rsync --link-dest``) is written whole: cutting it in place would cut
    the snapshot too."""
    caplog.set_level(logging.INFO)
    site, stamps = backed_up(tmp_path)
    snapshot = tmp_path / "snapshot-Data.fs"
    os.link(site.datafs, snapshot)
    before = snapshot.read_bytes()
    expected = tmp_path / "repozo.fs"
    repozo_chain(site.repo, expected, stamps[1])
    lines = restore(site, stamps[1], caplog)
    assert not kept_line(lines)
    assert (
        f"Writing the whole of {site.datafs}: other hard links to it (1) must keep their bytes."
        in lines
    )
    assert site.datafs.read_bytes() == expected.read_bytes()
    assert snapshot.read_bytes() == before
