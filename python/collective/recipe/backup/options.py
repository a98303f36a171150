"""Buildout options turned into Python primitives for ``_core.BackupConfig``.

Owns the option *spellings*: names, aliases (``blob-storage``,
``alternative_restore_sources``, ``gzip_blob``), names that mean nothing
any more; liberal booleans; the path rules (``~`` and ``$VAR`` expanded,
``datafs`` and ``blob_storage`` relative to the buildout directory, the six
locations relative to ``locationprefix`` or the var directory); and the
auto-detection of ``var``/``zeo-var``/``file-storage``/``blob-storage`` from
plone.recipe.zope2instance and zeoserver parts (README.rst, Options), where a
part's ``file-storage`` and ``blob-storage`` are resolved the way that
part's recipe resolves them (see ``_part_file_storage``).

Does not own any rule about what the values mean: options that are not set
are not passed, so the core's defaults apply, and every check and error
text lives in ``BackupConfig`` (``src/config.rs``). Imports no zc.buildout.
"""

import os

from collective.recipe.backup import _core


TRUE_VALUES = ("true", "yes", "on", "1")

#: Options read as booleans (liberal: true/yes/on/1 in any case).
BOOLEAN_OPTIONS = (
    "full",
    "debug",
    "only_blobs",
    "backup_blobs",
    "use_rsync",
    "rsync_hard_links_on_first_copy",
    "archive_blob",
    "compress_blob",
    "blob_timestamps",
    "incremental_blobs",
    "gzip",
    "quick",
    "enable_snapshotrestore",
    "enable_zipbackup",
    "enable_fullbackup",
)

#: Options passed through as text.
TEXT_OPTIONS = ("rsync_options", "pre_command", "post_command")

#: Count options: passed as written, the core validates them.
COUNT_OPTIONS = ("keep", "keep_blob_days")

#: The six backup locations, relative to the location prefix.
LOCATION_OPTIONS = (
    "location",
    "snapshotlocation",
    "ziplocation",
    "blobbackuplocation",
    "blobsnapshotlocation",
    "blobziplocation",
)

#: Options that take a path (plus the six locations).
PATH_OPTIONS = ("datafs", "blob_storage", "locationprefix")

#: Off-site copies (see docs/offsite.rst): text, counts and a path.
OFFSITE_TEXT_OPTIONS = ("offsite", "offsite_endpoint", "offsite_region")
OFFSITE_COUNT_OPTIONS = ("offsite_keep", "offsite_jobs")
OFFSITE_OPTIONS = OFFSITE_TEXT_OPTIONS + OFFSITE_COUNT_OPTIONS + ("offsite_credentials",)

#: Options holding storage lists, one entry per line.
LIST_OPTIONS = ("additional_filestorages", "alternative_restore_source")

#: Every option name of the recipe, in its canonical spelling.
OPTIONS = (
    BOOLEAN_OPTIONS
    + TEXT_OPTIONS
    + COUNT_OPTIONS
    + PATH_OPTIONS
    + LOCATION_OPTIONS
    + LIST_OPTIONS
    + OFFSITE_OPTIONS
)

#: Old or alternative spellings, still read from a part (with a warning
#: where the core or this module gives one).
ALIAS_OPTIONS = ("blob-storage", "gzip_blob", "alternative_restore_sources")

#: Option names that do nothing, with what to do instead.
MEANINGLESS_OPTIONS = {
    "rsync_hard_links_inside_backups": (
        "The option rsync_hard_links_inside_backups does not exist and is "
        "ignored. Did you mean rsync_hard_links_on_first_copy?"
    ),
}

#: Recipes whose parts tell where the ZODB lives.
ZOPE_RECIPES = (
    "plone.recipe.zeoserver",
    "plone.recipe.zope2instance",
    "plone.recipe.zope2zeoserver",
)


def to_bool(value):
    """True for ``true``, ``yes``, ``on`` and ``1`` in any case; anything
    else is False (as in collective.recipe.backup 6.0)."""
    return str(value).strip().lower() in TRUE_VALUES


def check_for_true(options, keys):
    """Rewrite the given boolean options in place to ``True``/``False``
    (kept for callers of the 6.0 helper)."""
    for key in keys:
        if key in options:
            options[key] = str(to_bool(options[key]))


def construct_path(base, path):
    """Expand ``~`` and ``$VAR`` in ``path`` and make it absolute against
    ``base`` (an absolute ``path`` ignores ``base``); normalised."""
    path = os.path.expandvars(os.path.expanduser(path))
    return os.path.normpath(os.path.join(base, path))


def _zope_parts(buildout):
    """The sections of Zope/ZEO parts, in ``[buildout] parts`` order."""
    for part in buildout["buildout"].get("parts", "").split():
        try:
            section = buildout[part]
        except KeyError:
            continue
        if _recipe(section) in ZOPE_RECIPES:
            yield section


def _recipe(section):
    return (section.get("recipe") or "").strip().lower()


def get_zope_option(buildout, key):
    """The value of ``key`` in the first Zope/ZEO part that has a non-empty
    one, else None."""
    for section in _zope_parts(buildout):
        value = _text(section, key)
        if value:
            return value
    return None


def zope_directory(buildout):
    """``${buildout:directory}``: the base the Zope recipes resolve their
    paths against (the ``bin/`` parent when the section does not say)."""
    return _text(buildout["buildout"], "directory") or buildout_dir(buildout)


def _part_var(section, base):
    """The var directory a Zope/ZEO part itself uses.

    plone.recipe.zope2instance and plone.recipe.zeoserver take ``var`` as
    given and default it to ``var`` in the buildout directory (not the
    part's own ``parts/`` directory). plone.recipe.zope2zeoserver has no
    ``var`` option: its defaults are under ``var`` in the buildout
    directory. ``zeo-var`` is not a storage location in any of them (in
    zope2instance it is where a ZEO client keeps its cache files).
    """
    var = _text(section, "var")
    if var and _recipe(section) != "plone.recipe.zope2zeoserver":
        return construct_path(base, var)
    return os.path.join(base, "var")


def _part_file_storage(section, base):
    """The Data.fs a Zope/ZEO part uses: its ``file-storage``, else the
    recipes' default ``filestorage/Data.fs`` in its var directory.

    plone.recipe.zope2instance and plone.recipe.zeoserver join a relative
    ``file-storage`` to the part's var directory; plone.recipe.zope2zeoserver
    joins it to the buildout directory (its default already starts with
    ``var/``).
    """
    value = _text(section, "file-storage")
    if _recipe(section) == "plone.recipe.zope2zeoserver":
        return construct_path(base, value or os.path.join("var", "filestorage", "Data.fs"))
    return construct_path(
        _part_var(section, base), value or os.path.join("filestorage", "Data.fs")
    )


def _part_blob_storage(section, base):
    """The blob directory a Zope/ZEO part uses: its ``blob-storage``, else
    ``blobstorage`` in its var directory.

    plone.recipe.zeoserver joins a relative ``blob-storage`` to the part's
    var directory; plone.recipe.zope2instance (9.x) joins it to the buildout
    directory. plone.recipe.zope2zeoserver writes it into zeo.conf as given;
    a relative one is taken from the buildout directory, as 6.0 did.
    """
    value = _text(section, "blob-storage")
    if not value:
        return os.path.join(_part_var(section, base), "blobstorage")
    if _recipe(section) == "plone.recipe.zeoserver":
        return construct_path(_part_var(section, base), value)
    return construct_path(base, value)


def _zope_storage(buildout, key, resolve):
    """A storage path from the Zope/ZEO parts: ``key`` of the first part
    that sets it, resolved as that part's recipe does; else the default of
    the first part; None without Zope/ZEO parts."""
    base = zope_directory(buildout)
    sections = list(_zope_parts(buildout))
    for section in sections:
        if _text(section, key):
            return resolve(section, base)
    return resolve(sections[0], base) if sections else None


def _text(options, name):
    """The stripped value of an option, or None when unset or empty."""
    value = options.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def buildout_dir(buildout):
    """``<bin-directory>/..``: backups do not land under ``conf/`` when
    buildout runs with ``-c conf/prod.cfg`` (6.0, since 1.5)."""
    bin_dir = buildout["buildout"]["bin-directory"]
    return os.path.abspath(os.path.join(bin_dir, os.pardir))


def datafs_var_dir(datafs):
    """The var directory of a site known only by its Data.fs: the parent
    of a ``filestorage`` directory (``var/filestorage/Data.fs`` of
    cookiecutter-zope-instance and buildout, ``/data/filestorage/Data.fs``
    of the Plone images), else the Data.fs's own directory."""
    directory = os.path.dirname(os.path.abspath(datafs))
    if os.path.basename(directory) == "filestorage":
        return os.path.dirname(directory)
    return directory


def typed_options(buildout, name, options, var_dir=None):
    """Return ``(kwargs, warnings)``: keyword arguments for
    ``_core.BackupConfig`` and warning texts about option spellings.

    ``var_dir`` replaces the var directory found in the Zope/ZEO parts
    (sites without buildout: see :func:`datafs_var_dir`).

    Raises ``_core.ConfigError`` for an option line the core cannot parse.
    """
    warnings = []
    base = buildout_dir(buildout)
    kwargs = {"part_name": name}

    if var_dir is None:
        zeo_var = get_zope_option(buildout, "zeo-var")
        var = zeo_var or get_zope_option(buildout, "var")
        var_dir = os.path.abspath(var) if var else os.path.join(base, "var")
    kwargs["var_dir"] = var_dir

    for opt in BOOLEAN_OPTIONS:
        value = options.get(opt)
        if value is not None:
            kwargs[opt] = to_bool(value)
    gzip_blob = options.get("gzip_blob")
    if gzip_blob is not None:
        kwargs["gzip_blob"] = to_bool(gzip_blob)
    for opt in TEXT_OPTIONS:
        value = options.get(opt)
        if value is not None:
            kwargs[opt] = value
    for opt in COUNT_OPTIONS:
        value = options.get(opt)
        if value is not None:
            kwargs[opt] = value
    for opt in OFFSITE_TEXT_OPTIONS + OFFSITE_COUNT_OPTIONS:
        value = _text(options, opt)
        if value is not None:
            kwargs[opt] = value
    credentials = _text(options, "offsite_credentials")
    if credentials:
        kwargs["offsite_credentials"] = construct_path(base, credentials)
    for opt, message in MEANINGLESS_OPTIONS.items():
        if opt in options:
            warnings.append(message)

    prefix = _text(options, "locationprefix")
    if prefix:
        prefix = construct_path(base, prefix)
        kwargs["location_prefix"] = prefix
    for opt in LOCATION_OPTIONS:
        value = _text(options, opt)
        if value:
            kwargs[opt] = construct_path(prefix or var_dir, value)

    datafs = _text(options, "datafs")
    if datafs:
        kwargs["datafs"] = construct_path(base, datafs)
    else:
        datafs = _zope_storage(buildout, "file-storage", _part_file_storage)
        if datafs:
            kwargs["datafs"] = datafs

    blob_storage = _text(options, "blob_storage")
    alias = _text(options, "blob-storage")
    if alias:
        kwargs["blob_storage_alias"] = construct_path(base, alias)
    if blob_storage:
        kwargs["blob_storage"] = construct_path(base, blob_storage)
    zope_blob_storage = _zope_storage(buildout, "blob-storage", _part_blob_storage)
    if zope_blob_storage:
        kwargs["zope_blob_storage"] = zope_blob_storage

    additional = options.get("additional_filestorages") or ""
    kwargs["additional_filestorages"] = [
        (
            storage,
            construct_path(base, fs) if fs else None,
            construct_path(base, blobdir) if blobdir else None,
        )
        for storage, fs, blobdir in _core.parse_additional_filestorages(additional)
    ]

    alt = options.get("alternative_restore_source") or ""
    old_alt = options.get("alternative_restore_sources") or ""
    if old_alt.strip():
        warnings.append(
            "alternative_restore_sources is deprecated: please rename it to "
            "alternative_restore_source."
            if not alt.strip()
            else "alternative_restore_sources is ignored: "
            "alternative_restore_source is set."
        )
        if not alt.strip():
            alt = old_alt
    parsed = _core.parse_alternative_restore_source(alt)
    if parsed is not None:
        key, fs_source, blob_source = parsed
        kwargs["alternative_restore_source"] = (
            key,
            construct_path(base, fs_source),
            construct_path(base, blob_source) if blob_source else None,
        )
    return kwargs, warnings
