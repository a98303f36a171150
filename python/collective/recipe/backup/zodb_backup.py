"""``zodb-backup``: the recipe's scripts as one command, for sites without
buildout (pip installs such as cookiecutter-zope-instance, the Plone
container images).

``zodb-backup [OPTIONS] COMMAND [ARGS]``, where COMMAND is one of the
generated scripts (``backup``, ``fullbackup``, ``snapshot``, ``zipbackup``,
``restore``, ``snapshotrestore``, ``ziprestore``, ``altrestore``: the same
core calls, messages, prompt and exit codes as ``bin/backup`` and friends),
``status`` or ``verify``. Also ``python -m collective.recipe.backup``.

The options are the recipe's, from these sources, each overriding the ones
before it (see docs/zodb-backup.rst):

1. ``--zope-conf FILE``: a ``zope.conf`` or ``zeo.conf``; its main database
   gives ``datafs`` and ``blob_storage``, other databases become
   ``additional_filestorages`` (read by the core).
2. ``--config FILE``: the ``[backup]`` section (``--section NAME``) of an
   INI file, written as a buildout part; relative paths are relative to the
   file's directory, as a part's are to the buildout directory.
3. ``ZODB_BACKUP_<OPTION>`` environment variables (``ZODB_BACKUP_KEEP=7``;
   also ``ZODB_BACKUP_ZOPE_CONF``, ``ZODB_BACKUP_CONFIG``,
   ``ZODB_BACKUP_SECTION``).
4. ``--<option> VALUE`` flags (``--keep 7``, ``--blob-storage DIR``).

Paths given by environment variables and flags are relative to the current
directory. Without a ``location``, backups go beside the Data.fs's var
directory (:func:`options.datafs_var_dir`). An unknown or wrong option is
one ``ERROR:`` line and exit 1 before anything is touched (an unknown flag:
exit 2).
"""

import argparse
import configparser
import os
import sys

from collective.recipe.backup import _core
from collective.recipe.backup import cli
from collective.recipe.backup import main
from collective.recipe.backup import options as options_mod
from collective.recipe.backup.main import Failed
from collective.recipe.backup.repozo.cli import fixed_now


PROG = "zodb-backup"
ENV_PREFIX = "ZODB_BACKUP_"

#: Command -> (kind, core mode, help).
COMMANDS = {
    "backup": ("backup", "standard", "back up (incremental unless full = true)"),
    "fullbackup": ("backup", "full", "make a full backup"),
    "snapshot": ("backup", "snapshot", "make a full backup into the snapshot locations"),
    "zipbackup": ("backup", "zip", "make one full backup and one blob archive"),
    "restore": ("restore", "standard", "restore the backups (to a date)"),
    "snapshotrestore": ("restore", "snapshot", "restore from the snapshot locations"),
    "ziprestore": ("restore", "zip", "restore from the zip locations"),
    "altrestore": ("restore", "alt", "restore from alternative_restore_source"),
    "status": ("status", None, "report every backup and its problems (exit 1 on a problem)"),
    "verify": ("verify", None, "check the checksums, the blob backups and that they match"),
    "offsite": ("offsite", None, "off-site copies: push, pull [DATE], status, verify"),
}

#: The sources of the configuration (not recipe options).
SOURCE_OPTIONS = ("zope_conf", "config", "section")

#: The recipe options a flag or variable may set.
FLAG_OPTIONS = options_mod.OPTIONS


def flag(name):
    return "--" + name.replace("_", "-")


def env_name(name):
    return ENV_PREFIX + name.upper()


class UsageError(Exception):
    """A configuration mistake: one ``ERROR:`` line, exit 1."""


def _add_common(parser, default):
    """The options every command takes. ``default`` is None on the main
    parser and SUPPRESS on the commands', so that an option given before
    the command is not reset by the command's parser."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--zope-conf",
        metavar="FILE",
        default=default,
        help="zope.conf or zeo.conf to take the storages from",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="INI file with a [backup] section of recipe options",
    )
    group.add_argument(
        "--section",
        metavar="NAME",
        default=default,
        help="section of --config to read (default: backup)",
    )
    recipe = parser.add_argument_group(
        "recipe options (see README: Options; booleans take true/false)"
    )
    for name in FLAG_OPTIONS:
        recipe.add_argument(
            flag(name), dest="opt_" + name, metavar="VALUE", default=default
        )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if default is not None else False,
        help="only print warnings and errors (for cron)",
    )


def make_parser():
    parser = cli.Parser(
        prog=PROG,
        usage="%(prog)s [OPTIONS] COMMAND [ARGS]",
        description="Back up, restore and check a ZODB FileStorage and its blobs.",
        allow_abbrev=False,
    )
    _add_common(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (kind, _, text) in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text, allow_abbrev=False)
        sub.error = parser.error
        _add_common(sub, argparse.SUPPRESS)
        if kind in ("backup", "restore"):
            cli.add_dry_run(sub)
        if kind == "restore":
            cli.add_no_prompt(sub)
            cli.add_restore_arguments(sub)
        if kind == "status":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.add_argument(
                "--max-age",
                metavar="AGE",
                help="a problem when the newest backup is older (26h, 2d, seconds)",
            )
        if kind == "offsite":
            cli.add_offsite_arguments(sub)
        if kind == "verify":
            sub.add_argument(
                "date",
                nargs="?",
                help="verify the state at or before this UTC date (default: newest)",
            )
            sub.add_argument(
                "--all", action="store_true", help="verify every backed-up state"
            )
            sub.add_argument(
                "--from",
                dest="source",
                choices=("backup", "snapshot", "zip", "alt"),
                default="backup",
                help="which backup locations to verify (default: backup)",
            )
    return parser


def _read_ini(path, section):
    """The options of ``section`` in the INI file ``path``."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise UsageError(f"Cannot read {path}: {e.strerror}.") from None
    except (configparser.Error, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0]
        raise UsageError(f"{path} is not a valid INI file: {first}") from None
    if not parser.has_section(section):
        raise UsageError(f"{path} has no [{section}] section.")
    values = dict(parser.items(section))
    values.pop("recipe", None)
    known = set(options_mod.OPTIONS) | set(options_mod.ALIAS_OPTIONS)
    known |= set(options_mod.MEANINGLESS_OPTIONS)
    for key, value in values.items():
        if key not in known:
            raise UsageError(f"Unknown option '{key}' in [{section}] of {path}.")
        if "${" in value:
            raise UsageError(
                f"Option '{key}' in [{section}] of {path} uses a buildout "
                f"substitution ({value.strip()}): write the value itself."
            )
    return values


def _from_environment(environ):
    """``(sources, options)`` from ``ZODB_BACKUP_*`` variables."""
    by_name = {env_name(n): n for n in (*SOURCE_OPTIONS, *FLAG_OPTIONS)}
    sources, values = {}, {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = by_name.get(key)
        if name is None:
            raise UsageError(f"Unknown environment variable {key}.")
        if name in SOURCE_OPTIONS:
            sources[name] = value
        else:
            values[name] = value
    return sources, values


def _absolute(values, cwd):
    """Path options of flags and variables are relative to ``cwd``."""
    for name in (*options_mod.PATH_OPTIONS, *options_mod.LOCATION_OPTIONS):
        if values.get(name):
            values[name] = options_mod.construct_path(cwd, values[name])
    return values


def config_kwargs(args, environ=None, cwd=None):
    """``(kwargs, warnings)`` for ``_core.BackupConfig`` from the parsed
    arguments, the environment and the files they name."""
    environ = os.environ if environ is None else environ
    cwd = cwd or os.getcwd()
    env_sources, env_values = _from_environment(environ)
    flag_values = {
        n: getattr(args, "opt_" + n) for n in FLAG_OPTIONS
        if getattr(args, "opt_" + n, None) is not None
    }

    def source(name):
        value = getattr(args, name, None)
        return value if value is not None else env_sources.get(name)

    values = {}
    zope = None
    zope_conf = source("zope_conf")
    if zope_conf:
        zope = _core.read_zope_conf(options_mod.construct_path(cwd, zope_conf))
        values["datafs"] = zope["datafs"]
    base = cwd
    section = source("section") or "backup"
    config = source("config")
    if config:
        config = options_mod.construct_path(cwd, config)
        base = os.path.dirname(config)
        ini = _read_ini(config, section)
        if "datafs" in ini:
            ini["datafs"] = options_mod.construct_path(base, ini["datafs"])
        values.update(ini)
    elif source("section"):
        raise UsageError("--section needs --config.")
    values.update(_absolute(env_values, cwd))
    values.update(_absolute(flag_values, cwd))

    blob_options = ("blob_storage", "blob-storage", "backup_blobs")
    if zope and not zope["blob_storage"] and not any(values.get(o) for o in blob_options):
        # The main database of the zope.conf has no blobs.
        values["backup_blobs"] = "false"
    datafs = values.get("datafs")
    var_dir = (
        options_mod.datafs_var_dir(datafs) if datafs else os.path.join(base, "var")
    )
    buildout = {
        "buildout": {"bin-directory": os.path.join(base, "bin"), "directory": base}
    }
    kwargs, warnings = options_mod.typed_options(
        buildout, section, values, var_dir=var_dir
    )
    if zope and zope["blob_storage"]:
        # Like a Zope part's blob-storage: the default when neither
        # spelling of the option is set.
        kwargs["zope_blob_storage"] = zope["blob_storage"]
    if zope and "additional_filestorages" not in values:
        kwargs["additional_filestorages"] = [
            tuple(entry) for entry in zope["additional_filestorages"]
        ]
    return kwargs, warnings


def _build(args):
    """The validated config, its warnings logged; raises ``Failed``. Any
    failure is one ``ERROR:`` line (``main.call``), never a traceback."""

    def build():
        try:
            kwargs, warnings = config_kwargs(args)
        except UsageError as e:
            raise _core.ConfigError(str(e)) from None
        return _core.BackupConfig(**kwargs), warnings

    config, warnings = main.call(build)
    for message in warnings + config.warnings:
        main.logger.warning("%s", message)
    return config


def _status(args, config):
    healthy, json_text, text = main.call(
        lambda: _core.status(config, now=fixed_now(), max_age=args.max_age)
    )
    sys.stdout.write((json_text if args.json else text).rstrip("\n") + "\n")
    return 0 if healthy else 1


def _verify(args, config):
    date = main.call(lambda: cli.check_date(args.date))
    mode = "standard" if args.source == "backup" else args.source
    main.call(
        lambda: _core.verify(config, mode, date=date, all=args.all, now=fixed_now())
    )
    return 0


def run(argv=None):
    """Run ``zodb-backup`` with ``argv`` (default ``sys.argv[1:]``); returns
    the exit code."""
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    kind, mode, _ = COMMANDS[args.command]
    cli.setup_logging(args.quiet, False)
    try:
        config = _build(args)
        if config.debug:
            cli.setup_logging(args.quiet, True)
        if kind == "backup":
            main.run_backup(config, mode, quiet=args.quiet, dry_run=args.dry_run)
            return 0
        if kind == "restore":
            return main.run_restore(config, mode, args)
        if kind == "status":
            return _status(args, config)
        if kind == "offsite":
            return main.run_offsite(config, args)
        return _verify(args, config)
    except Failed:
        return 1


def main_entry():
    """The ``zodb-backup`` console script."""
    sys.exit(run())
