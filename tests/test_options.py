"""Option parsing in process: booleans, paths, aliases, Zope-part detection
(README.rst, Options), and what BackupConfig makes of the result. The
buildout is a plain dict of sections, as zc.buildout hands them over."""

import os

import pytest

from collective.recipe.backup import _core
from collective.recipe.backup import options as opts
from collective.recipe.backup.main import config_kwargs


def make_buildout(tmp_path, **sections):
    parts = " ".join(n for n in sections if n != "buildout")
    b = {"buildout": {"bin-directory": str(tmp_path / "bin"), "parts": parts}}
    b.update(sections)
    return b


def typed(tmp_path, options, name="backup", **sections):
    return opts.typed_options(make_buildout(tmp_path, **sections), name, options)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("true", True),
        ("True", True),
        ("YES", True),
        ("on", True),
        ("1", True),
        (" yes ", True),
        ("false", False),
        ("0", False),
        ("10", False),
        ("ture", False),
        ("", False),
    ],
)
def test_to_bool(value, expected):
    assert opts.to_bool(value) is expected


def test_check_for_true_rewrites_in_place():
    o = {"full": "yes", "debug": "nope"}
    opts.check_for_true(o, ["full", "debug", "absent"])
    assert o == {"full": "True", "debug": "False"}


def test_construct_path(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("WHERE", "/srv")
    assert opts.construct_path("/b", "var/x/") == "/b/var/x"
    assert opts.construct_path("/b", "~/x") == "/home/me/x"
    assert opts.construct_path("/b", "$WHERE/x") == "/srv/x"
    assert opts.construct_path("/b", "/abs/../y") == "/y"


def test_unset_options_are_not_passed(tmp_path):
    kwargs, warnings = typed(tmp_path, {"recipe": "collective.recipe.backup"})
    assert warnings == []
    assert kwargs == {
        "part_name": "backup",
        "var_dir": str(tmp_path / "var"),
        "additional_filestorages": [],
    }


def test_buildout_dir_is_bin_parent(tmp_path):
    b = make_buildout(tmp_path)
    b["buildout"]["bin-directory"] = str(tmp_path / "x" / "bin")
    kwargs, _ = opts.typed_options(b, "backup", {"datafs": "fs/Data.fs"})
    assert kwargs["datafs"] == str(tmp_path / "x" / "fs" / "Data.fs")


def test_booleans_and_numbers_are_passed_as_primitives(tmp_path):
    kwargs, _ = typed(
        tmp_path, {"full": "Yes", "gzip": "off", "keep": " 4 ", "blob_timestamps": "0"}
    )
    assert kwargs["full"] is True
    assert kwargs["gzip"] is False
    assert kwargs["blob_timestamps"] is False
    assert kwargs["keep"] == " 4 "
    config = _core.BackupConfig(**kwargs, backup_blobs=False)
    assert config.settings["keep"] == 4


def test_zope_part_detection_in_part_order(tmp_path):
    kwargs, _ = typed(
        tmp_path,
        {},
        other={"recipe": "plone.recipe.something"},
        zeo={"recipe": "plone.recipe.zeoserver", "zeo-var": "", "var": "/v/zeo"},
        instance={
            "recipe": "Plone.Recipe.Zope2Instance",
            "file-storage": "/data/fs/Data.fs",
            "blob-storage": "/data/blobs",
            "zeo-var": "/v/zeovar",
        },
    )
    # zeo-var of any Zope part wins over var; file-storage and blob-storage
    # come from the first part that has them; recipe names ignore case.
    assert kwargs["var_dir"] == "/v/zeovar"
    assert kwargs["datafs"] == "/data/fs/Data.fs"
    assert kwargs["zope_blob_storage"] == "/data/blobs"


def test_zope_part_without_blob_storage_gives_var_blobstorage(tmp_path):
    kwargs, _ = typed(tmp_path, {}, instance={"recipe": "plone.recipe.zope2instance", "var": "/v"})
    assert kwargs["var_dir"] == "/v"
    assert kwargs["zope_blob_storage"] == "/v/blobstorage"
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["blob_backup_location"] == "/v/blobstoragebackups"


@pytest.mark.parametrize("recipe", ["plone.recipe.zope2instance", "plone.recipe.zeoserver"])
def test_zope_part_relative_file_storage_is_in_its_var(tmp_path, recipe):
    """Both recipes join a relative file-storage to the part's var
    directory, which defaults to var/ in the buildout directory."""
    kwargs, _ = typed(tmp_path, {}, db={"recipe": recipe, "file-storage": "fs/Main.fs"})
    assert kwargs["datafs"] == str(tmp_path / "var" / "fs" / "Main.fs")
    kwargs, _ = typed(
        tmp_path,
        {},
        db={"recipe": recipe, "var": "/srv/zvar", "file-storage": "fs/Main.fs"},
    )
    assert kwargs["datafs"] == "/srv/zvar/fs/Main.fs"
    # A relative var is relative to the buildout directory.
    kwargs, _ = typed(
        tmp_path,
        {},
        db={"recipe": recipe, "var": "data", "file-storage": "Main.fs"},
    )
    assert kwargs["datafs"] == str(tmp_path / "data" / "Main.fs")
    # An absolute file-storage ignores var.
    kwargs, _ = typed(
        tmp_path,
        {},
        db={"recipe": recipe, "var": "/srv/zvar", "file-storage": "/data/Main.fs"},
    )
    assert kwargs["datafs"] == "/data/Main.fs"
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["datafs"] == "/data/Main.fs"


def test_zeoserver_relative_blob_storage_is_in_its_var(tmp_path):
    kwargs, _ = typed(
        tmp_path, {}, zeo={"recipe": "plone.recipe.zeoserver", "blob-storage": "blobs"}
    )
    assert kwargs["zope_blob_storage"] == str(tmp_path / "var" / "blobs")
    kwargs, _ = typed(
        tmp_path,
        {},
        zeo={"recipe": "plone.recipe.zeoserver", "var": "/srv/zvar", "blob-storage": "blobs"},
    )
    assert kwargs["zope_blob_storage"] == "/srv/zvar/blobs"
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["blobdir"] == "/srv/zvar/blobs"
    kwargs, _ = typed(
        tmp_path,
        {},
        zeo={"recipe": "plone.recipe.zeoserver", "var": "/srv/zvar", "blob-storage": "/b/blobs"},
    )
    assert kwargs["zope_blob_storage"] == "/b/blobs"


def test_zope2instance_relative_blob_storage_is_in_the_buildout_directory(tmp_path):
    """plone.recipe.zope2instance joins blob-storage to ${buildout:directory},
    not to its var (and not to the bin/ parent when they differ)."""
    b = make_buildout(
        tmp_path,
        instance={
            "recipe": "plone.recipe.zope2instance",
            "var": "/srv/zvar",
            "blob-storage": "blobs",
        },
    )
    b["buildout"]["directory"] = str(tmp_path / "site")
    kwargs, _ = opts.typed_options(b, "backup", {})
    assert kwargs["zope_blob_storage"] == str(tmp_path / "site" / "blobs")
    b["instance"]["blob-storage"] = "/b/blobs"
    kwargs, _ = opts.typed_options(b, "backup", {})
    assert kwargs["zope_blob_storage"] == "/b/blobs"


def test_zope_part_defaults_use_its_var_not_zeo_var(tmp_path):
    """zeo-var is where a ZEO client keeps its cache; the recipes put the
    default Data.fs and blobstorage in the part's var."""
    kwargs, _ = typed(
        tmp_path,
        {},
        instance={
            "recipe": "plone.recipe.zope2instance",
            "var": "/srv/zvar",
            "zeo-var": "/tmp/zeocache",
        },
    )
    assert kwargs["datafs"] == "/srv/zvar/filestorage/Data.fs"
    assert kwargs["zope_blob_storage"] == "/srv/zvar/blobstorage"


def test_zope2zeoserver_file_storage_is_in_the_buildout_directory(tmp_path):
    kwargs, _ = typed(
        tmp_path,
        {},
        zeo={"recipe": "plone.recipe.zope2zeoserver", "file-storage": "var/fs/Data.fs"},
    )
    assert kwargs["datafs"] == str(tmp_path / "var" / "fs" / "Data.fs")


def test_explicit_options_win_over_zope_parts(tmp_path):
    kwargs, _ = typed(
        tmp_path,
        {"datafs": "my/Data.fs", "blob_storage": "my/blobs"},
        instance={
            "recipe": "plone.recipe.zope2instance",
            "file-storage": "/data/Data.fs",
            "blob-storage": "/data/blobs",
        },
    )
    assert kwargs["datafs"] == str(tmp_path / "my" / "Data.fs")
    assert kwargs["blob_storage"] == str(tmp_path / "my" / "blobs")


def test_blob_storage_alias(tmp_path):
    kwargs, _ = typed(tmp_path, {"blob-storage": "var/b"})
    assert kwargs["blob_storage_alias"] == str(tmp_path / "var" / "b")
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["blobdir"] == str(tmp_path / "var" / "b")
    # Same directory in both spellings is fine.
    kwargs, _ = typed(tmp_path, {"blob-storage": "var/b", "blob_storage": f"{tmp_path}/var/b/"})
    _core.BackupConfig(**kwargs)


def test_locations_relative_to_prefix_or_var(tmp_path):
    kwargs, _ = typed(tmp_path, {"location": "a", "snapshotlocation": "/abs"})
    assert kwargs["location"] == str(tmp_path / "var" / "a")
    assert kwargs["snapshotlocation"] == "/abs"
    kwargs, _ = typed(tmp_path, {"locationprefix": "bk", "location": "a"})
    assert kwargs["location_prefix"] == str(tmp_path / "bk")
    assert kwargs["location"] == str(tmp_path / "bk" / "a")


def test_empty_location_means_default(tmp_path):
    """6.0 resolved an empty location to the var directory itself, where
    repozo cleanup would delete any older file; now it means the default."""
    kwargs, _ = typed(tmp_path, {"location": "", "backup_blobs": "false"})
    assert "location" not in kwargs
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["backup_location"] == str(tmp_path / "var" / "backups")


def test_gzip_blob_is_archive_blob_with_a_warning(tmp_path):
    """options.py passes the spelling on; the core decides (one rule)."""
    deprecated = (
        "gzip_blob is deprecated: it is an alias of archive_blob. "
        "Please rename it to archive_blob."
    )
    kwargs, _ = typed(tmp_path, {"gzip_blob": "true", "blob_storage": "blobs"})
    assert kwargs["gzip_blob"] is True and "archive_blob" not in kwargs
    config = _core.BackupConfig(**kwargs)
    assert config.settings["archive_blob"] is True
    assert deprecated in config.warnings
    kwargs, _ = typed(tmp_path, {"gzip_blob": "true", "archive_blob": "false", "blob_storage": "b"})
    config = _core.BackupConfig(**kwargs)
    assert config.settings["archive_blob"] is False
    assert "Both gzip_blob and archive_blob are set; using archive_blob." in config.warnings


def test_explicit_blob_storage_wins_over_the_zope_part(tmp_path):
    kwargs, _ = typed(
        tmp_path,
        {"blob_storage": "/mine/blobs"},
        instance={"recipe": "plone.recipe.zope2instance", "var": "/v"},
    )
    assert kwargs["zope_blob_storage"] == "/v/blobstorage"
    config = _core.BackupConfig(**kwargs)
    assert config.storages[-1]["blobdir"] == "/mine/blobs"


def test_additional_filestorages_paths_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    kwargs, _ = typed(
        tmp_path,
        {"additional_filestorages": "\ncatalog\nfoo fs/foo.fs ~/blob-foo\n"},
    )
    assert kwargs["additional_filestorages"] == [
        ("catalog", None, None),
        ("foo", str(tmp_path / "fs" / "foo.fs"), "/home/me/blob-foo"),
    ]


def test_additional_filestorages_bad_line_raises_config_error(tmp_path):
    with pytest.raises(_core.ConfigError, match="storage a duplicated"):
        typed(tmp_path, {"additional_filestorages": "a\na"})


def test_alternative_restore_source_paths_and_old_name(tmp_path):
    kwargs, warnings = typed(tmp_path, {"alternative_restore_sources": "Data alt/fs ~/alt-blobs"})
    assert kwargs["alternative_restore_source"] == (
        "Data",
        str(tmp_path / "alt" / "fs"),
        os.path.expanduser("~/alt-blobs"),
    )
    assert warnings == [
        "alternative_restore_sources is deprecated: please rename it to "
        "alternative_restore_source."
    ]


def test_backup_config_rejects_unknown_argument():
    with pytest.raises(_core.ConfigError, match="unknown argument 'kep'"):
        _core.BackupConfig(kep=2)


def test_parse_restore_date():
    assert _core.parse_restore_date("2026-11-26-9") == "2026-11-26-09-00-00"
    with pytest.raises(_core.ConfigError) as e:
        _core.parse_restore_date("2026-11")
    assert str(e.value) == (
        "Could not parse date argument '2026-11'. Expected a UTC date "
        "yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2026-11-26-14-30."
    )


def test_script_keywords_rebuild_the_same_config(tmp_path):
    """What the recipe really bakes into a script (recipe.script_arguments)
    rebuilds an equal config at run time (main.config_kwargs maps the 6.0
    keywords back): a keyword dropped on either side fails here."""
    import ast

    from collective.recipe.backup.recipe import script_arguments

    kwargs, _ = typed(
        tmp_path,
        {
            "blob_storage": "var/blobstorage",
            "keep": "5",
            "keep_blob_days": "3",
            "full": "true",
            "debug": "true",
            "quick": "false",
            "gzip": "false",
            "use_rsync": "false",
            "rsync_options": "-k",
            "archive_blob": "true",
            "compress_blob": "true",
            "incremental_blobs": "true",
            "rsync_hard_links_on_first_copy": "true",
            "pre_command": "echo pre",
            "post_command": "echo post",
            "additional_filestorages": "catalog\nfoo fs/foo.fs var/blob-foo",
            "locationprefix": "bk",
        },
        name="plone",
    )
    built = _core.BackupConfig(**kwargs)
    call = ast.parse(f"f({script_arguments('/bin', built)})", mode="eval").body
    script = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    rebuilt = _core.BackupConfig(**config_kwargs(**script))
    assert rebuilt.storages == built.storages
    scripts_only = {"enable_fullbackup", "enable_snapshotrestore", "enable_zipbackup"}
    want = {k: v for k, v in built.settings.items() if k not in scripts_only}
    got = {k: v for k, v in rebuilt.settings.items() if k not in scripts_only}
    assert got == want
