"""The recipe under real zc.buildout, installed from the freshly built wheel:
generated scripts (names, order, conditions), the values baked into them,
buildout-time errors and warnings (see docs/scripts.rst)."""

import ast
import os
import re

import pytest
from seed_example import SEED_EXAMPLE_OPTIONS


def generated(output):
    """Script names in the order buildout reported them."""
    return [os.path.basename(p) for p in re.findall(r"Generated script '([^']+)'", output)]


def script_call(path):
    """(function name, keyword arguments) of a generated script's main call."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.endswith("_main")
        ):
            return node.func.attr, {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    raise AssertionError(f"no *_main call in {path}")


def script_sys_path(path):
    with open(path) as f:
        text = f.read()
    block = re.search(r"sys\.path\[0:0\] = \[(.*?)\]", text, re.S).group(1)
    return ast.literal_eval("[" + block + "]")


BASIC = """\
    [backup]
    recipe = collective.recipe.backup
    blob_storage = var/blobstorage
    """


@pytest.mark.parametrize("sample_buildout", ["6", "5", "4"], indirect=True)
def test_default_part_scripts_and_egg_path(sample_buildout):
    b = sample_buildout
    p = b.run("backup", BASIC)
    assert p.returncode == 0, p.output
    assert generated(p.output) == [
        "backup",
        "snapshotbackup",
        "restore",
        "snapshotrestore",
    ]
    # The script's sys.path holds only our egg, made from the wheel.
    path = script_sys_path(b.path("bin", "backup"))
    assert len(path) == 1, path
    assert re.search(r"/collective\.recipe\.backup-7\.0\.0a1-py3\.\d+-[^/]+\.egg$", path[0]), path
    # No zc.recipe.egg anywhere.
    assert "zc.recipe.egg" not in p.output
    assert not [n for n in os.listdir(b.eggs) if n.startswith("zc.recipe.egg")]


def test_default_part_baked_values(sample_buildout):
    b = sample_buildout
    p = b.run("backup", BASIC)
    assert p.returncode == 0, p.output
    func, kw = script_call(b.path("bin", "backup"))
    assert func == "backup_main"
    var = b.path("var")
    assert kw["bin_dir"] == b.path("bin")
    assert kw["storage"] == {
        "storage": "1",
        "datafs": f"{var}/filestorage/Data.fs",
        "blobdir": f"{var}/blobstorage",
        "backup_location": f"{var}/backups",
        "snapshot_location": f"{var}/snapshotbackups",
        "zip_location": f"{var}/zipbackups",
        "blob_backup_location": f"{var}/blobstoragebackups",
        "blob_snapshot_location": f"{var}/blobstoragesnapshots",
        "blob_zip_location": f"{var}/blobstoragezips",
        "alt_location": None,
        "blob_alt_location": None,
    }
    assert kw["additional_storages"] == []
    assert (kw["keep"], kw["keep_blob_days"]) == (2, 14)
    assert kw["full"] is False and kw["verbose"] is False
    assert kw["gzip"] is True and kw["quick"] is True
    assert kw["backup_blobs"] is True and kw["blob_timestamps"] is True
    for name in ("snapshotbackup", "restore", "snapshotrestore"):
        f, k = script_call(b.path("bin", name))
        assert k == kw
    assert script_call(b.path("bin", "restore"))[0] == "restore_main"
    assert script_call(b.path("bin", "snapshotbackup"))[0] == "snapshot_main"
    assert script_call(b.path("bin", "snapshotrestore"))[0] == "snapshot_restore_main"


def test_named_part_with_every_script(sample_buildout):
    b = sample_buildout
    p = b.run(
        "plone",
        """\
        [plone]
        recipe = collective.recipe.backup
        blob_storage = var/blobstorage
        enable_zipbackup = true
        enable_fullbackup = yes
        alternative_restore_source = Data /alt/fs /alt/blobs
        """,
    )
    assert p.returncode == 0, p.output
    assert generated(p.output) == [
        "plone",
        "plone-full",
        "plone-zip",
        "plone-snapshot",
        "plone-restore",
        "plone-ziprestore",
        "plone-snapshotrestore",
        "plone-altrestore",
    ]
    funcs = [
        script_call(b.path("bin", n))[0]
        for n in ("plone", "plone-full", "plone-zip", "plone-altrestore")
    ]
    assert funcs == ["backup_main", "fullbackup_main", "zipbackup_main", "alt_restore_main"]
    _, kw = script_call(b.path("bin", "plone"))
    var = b.path("var")
    s = kw["storage"]
    assert s["backup_location"] == f"{var}/plones"
    assert s["snapshot_location"] == f"{var}/plone-snapshots"
    assert s["zip_location"] == f"{var}/plone-zips"
    assert s["blob_backup_location"] == f"{var}/plone-blobstorages"
    assert s["blob_snapshot_location"] == f"{var}/plone-blobstoragesnapshots"
    assert s["blob_zip_location"] == f"{var}/plone-blobstoragezips"
    assert (s["alt_location"], s["blob_alt_location"]) == ("/alt/fs", "/alt/blobs")


def test_two_parts_side_by_side(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup other",
        """\
        [backup]
        recipe = collective.recipe.backup
        backup_blobs = false
        enable_snapshotrestore = false

        [other]
        recipe = collective.recipe.backup
        backup_blobs = false
        datafs = var/filestorage/Other.fs
        """,
    )
    assert p.returncode == 0, p.output
    # The parts are validated when buildout constructs them, and reading
    # [buildout] parts for Zope parts makes buildout construct (and so
    # install) `other` first, as 6.0 did.
    assert generated(p.output) == [
        "other",
        "other-snapshot",
        "other-restore",
        "other-snapshotrestore",
        "backup",
        "snapshotbackup",
        "restore",
    ]
    _, kw = script_call(b.path("bin", "other"))
    assert kw["storage"]["datafs"] == b.path("var", "filestorage", "Other.fs")
    assert kw["storage"]["blobdir"] is None
    assert kw["backup_blobs"] is False


@pytest.mark.parametrize("sample_buildout", ["6", "5"], indirect=True)
def test_seed_example_configuration(sample_buildout):
    """The seed's options.rst configuration, plus the pre/post commands."""
    b = sample_buildout
    p = b.run(
        "backup",
        "[backup]\n"
        "recipe = collective.recipe.backup\n"
        "backup_blobs = false\n"
        "datafs = subfolder/myproject.fs\n" + SEED_EXAMPLE_OPTIONS,
    )
    assert p.returncode == 0, p.output
    assert generated(p.output) == ["backup", "snapshotbackup", "restore"]
    _, kw = script_call(b.path("bin", "backup"))
    s = kw["storage"]
    assert s["backup_location"] == b.path("myproject")
    # Relative locations are relative to the var directory (since 4.0).
    assert s["snapshot_location"] == b.path("var", "snap", "my")
    assert s["datafs"] == b.path("subfolder", "myproject.fs")
    assert kw["keep"] == 3
    assert kw["full"] is True
    assert kw["verbose"] is True
    assert kw["gzip"] is False
    assert kw["pre_command"] == "echo 'Can I have a backup?'"
    assert kw["post_command"] == ("echo 'Thanks a lot for the backup.'\necho 'We are done.'")
    # No "unused option" complaint: every option was read.
    assert "unused option" not in p.output


def test_additional_filestorages_seed_syntax(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        blob_storage = ${buildout:directory}/var/blobstorage
        additional_filestorages =
            catalog
            foo ${buildout:directory}/var/filestorage/foo/foo.fs ${buildout:directory}/var/blobstorage-foo
        """,
    )
    assert p.returncode == 0, p.output
    _, kw = script_call(b.path("bin", "backup"))
    var = b.path("var")
    cat, foo = kw["additional_storages"]
    assert cat["storage"] == "catalog"
    assert cat["datafs"] == f"{var}/filestorage/catalog.fs"
    assert cat["blobdir"] is None
    assert cat["backup_location"] == f"{var}/backups_catalog"
    assert cat["snapshot_location"] == f"{var}/snapshotbackups_catalog"
    assert cat["zip_location"] == f"{var}/zipbackups_catalog"
    assert foo["datafs"] == f"{var}/filestorage/foo/foo.fs"
    assert foo["blobdir"] == f"{var}/blobstorage-foo"
    assert foo["blob_backup_location"] == f"{var}/blobstoragebackups_foo"
    assert foo["blob_snapshot_location"] == f"{var}/blobstoragesnapshots_foo"
    assert foo["blob_zip_location"] == f"{var}/blobstoragezips_foo"
    assert kw["storage"]["storage"] == "1"


def test_paths_prefix_home_and_vars(sample_buildout, tmp_path):
    b = sample_buildout
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), BACKUPROOT=str(tmp_path / "root"))
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        blob_storage = ~/blobs/
        locationprefix = $BACKUPROOT/prefix
        location = fs
        snapshotlocation = /abs/snap
        blobbackuplocation = ~/blob-backups
        """,
        env=env,
    )
    assert p.returncode == 0, p.output
    _, kw = script_call(b.path("bin", "backup"))
    s = kw["storage"]
    root = tmp_path / "root"
    assert s["blobdir"] == f"{home}/blobs"
    assert s["backup_location"] == f"{root}/prefix/fs"
    assert s["snapshot_location"] == "/abs/snap"
    assert s["zip_location"] == f"{root}/prefix/zipbackups"
    assert s["blob_backup_location"] == f"{home}/blob-backups"
    assert s["blob_snapshot_location"] == f"{root}/prefix/blobstoragesnapshots"
    # datafs does not follow the prefix.
    assert s["datafs"] == b.path("var", "filestorage", "Data.fs")


ERRORS = [
    (
        "blob_storage = var/a\nblob-storage = var/b",
        "Both blob_storage and blob-storage have been set. Please pick one.",
    ),
    (
        "blob_storage = var/blobstorage\nlocation = var/same\nsnapshotlocation = var/same",
        "These must be distinct locations:",
    ),
    (
        "backup_blobs = false\nonly_blobs = true",
        "Cannot have backup_blobs false and only_blobs true.",
    ),
    (
        "backup_blobs = false\nenable_zipbackup = true",
        "Cannot have backup_blobs false and enable_zipbackup true. "
        "zipbackup is useless without blobs.",
    ),
    (
        "blob_storage = var/blobstorage\nblob_timestamps = false\n"
        "incremental_blobs = true\narchive_blob = true",
        "Cannot have blob_timestamps false and incremental_blobs true.",
    ),
    (
        "",
        "No blob_storage found. You must specify one. To ignore this, set "
        "'backup_blobs = false' in the [backup] section.",
    ),
    (
        "backup_blobs = false\nalternative_restore_source =\n    Data /a\n    1 /b",
        "Only one alternative_restore_source line is supported.",
    ),
    (
        "backup_blobs = false\nalternative_restore_source = Data",
        "alternative_restore_source line 'Data' has a wrong format. Should be: "
        "'storage-name filestorage-backup-path', optionally followed by a "
        "blobstorage-backup-path.",
    ),
    (
        "backup_blobs = false\nalternative_restore_source = foo /a",
        "alternative_restore_source key 'foo' unknown. Expected 1 or Data.",
    ),
    (
        "blob_storage = var/blobstorage\nalternative_restore_source = Data /a",
        "alternative_restore_source key 'Data' is missing a blobdir.",
    ),
    (
        "backup_blobs = false\nalternative_restore_source = Data /a /b",
        "alternative_restore_source key 'Data' specifies blobdir '/b' but the "
        "original storage has no blobstorage.",
    ),
    (
        "backup_blobs = false\nkeep = two",
        "keep must be a whole number (0 or more), not 'two'.",
    ),
    (
        "backup_blobs = false\nkeep_blob_days = 1 + 1",
        "keep_blob_days must be a whole number (0 or more), not '1 + 1'.",
    ),
    (
        "backup_blobs = false\nadditional_filestorages = a b c d",
        "additional_filestorages line 'a b c d' has a wrong format.",
    ),
]


@pytest.mark.parametrize("options, message", ERRORS)
def test_buildout_time_errors(sample_buildout, options, message):
    b = sample_buildout
    body = "[backup]\nrecipe = collective.recipe.backup\n" + options + "\n"
    p = b.run("backup", body)
    assert p.returncode != 0
    assert f"Error: {message}" in p.output, p.output
    assert "Traceback" not in p.output
    assert not os.path.exists(b.path("bin", "backup"))


def test_bad_value_keeps_the_existing_scripts(sample_buildout):
    """A typo in a re-run of buildout fails the run before buildout
    uninstalls the part: bin/backup stays, and still backs up."""
    b = sample_buildout
    good = "[backup]\nrecipe = collective.recipe.backup\nbackup_blobs = false\n"
    assert b.run("backup", good).returncode == 0
    before = read_file(b.path("bin", "backup"))
    p = b.run("backup", good + "keep = two\n")
    assert p.returncode != 0
    assert "Error: keep must be a whole number (0 or more), not 'two'." in p.output
    assert read_file(b.path("bin", "backup")) == before
    import zodbgen

    zodbgen.generate(b.path("var", "filestorage"), transactions=3, size="10K", undos=0, blobs=False)
    r = b.script("backup", "-q")
    assert (r.returncode, r.stderr) == (0, "")
    assert [n for n in os.listdir(b.path("var", "backups")) if n.endswith(".fsz")]


def read_file(path):
    with open(path) as f:
        return f.read()


def test_distinct_locations_after_resolution(sample_buildout):
    """6.0 compared raw strings; `var/x` and an absolute spelling of the
    same directory are caught now."""
    b = sample_buildout
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        backup_blobs = false
        location = x
        snapshotlocation = ${buildout:directory}/var/x
        """,
    )
    assert p.returncode != 0
    assert "Error: These must be distinct locations:" in p.output
    assert f"location = {b.path('var', 'x')}" in p.output


def test_warnings_for_old_and_deprecated_options(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        blob_storage = var/blobstorage
        blob_timestamps = false
        gzip_blob = true
        rsync_hard_links_inside_backups = true
        alternative_restore_sources = Data /alt/fs /alt/blobs
        """,
    )
    assert p.returncode == 0, p.output
    assert "backup: You have disabled blob_timestamps." in p.output
    assert (
        "backup: gzip_blob is deprecated: it is an alias of archive_blob. "
        "Please rename it to archive_blob." in p.output
    )
    assert "backup: The option rsync_hard_links_inside_backups does not exist" in p.output
    assert (
        "backup: alternative_restore_sources is deprecated: please rename it "
        "to alternative_restore_source." in p.output
    )
    assert "unused option" not in p.output
    _, kw = script_call(b.path("bin", "backup"))
    assert kw["archive_blob"] is True
    assert kw["blob_timestamps"] is False
    assert "altrestore" in generated(p.output)


def test_location_probe_warns_and_creates_nothing(sample_buildout):
    b = sample_buildout
    with open(b.path("afile"), "w") as f:
        f.write("not a directory")
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        blob_storage = var/blobstorage
        location = ${buildout:directory}/afile/sub
        snapshotlocation = ${buildout:directory}/afile
        """,
    )
    assert p.returncode == 0, p.output
    assert f"backup: Not able to create {b.path('afile', 'sub')}\n" in p.output
    assert f"backup: {b.path('afile')} is a file, not a directory.\n" in p.output
    # The probe removed what it created.
    assert os.listdir(b.path("var")) == []
