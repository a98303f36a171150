"""The zc.buildout recipe: ``recipe = collective.recipe.backup``.

``Recipe(buildout, name, options)`` reads the part's options
(:mod:`collective.recipe.backup.options`), validates them by building
``_core.BackupConfig`` (its errors become ``zc.buildout.UserError``, shown
by buildout as ``Error: ...`` without a traceback), logs the warnings, and
generates the part's scripts (see docs/scripts.rst) with
``zc.buildout.easy_install``. There is no zc.recipe.egg dependency, and the
scripts' ``sys.path`` holds only this distribution.

This is the only module that imports zc.buildout (buildout always has it
importable when it loads a recipe).
"""

import logging
import pprint

import zc.buildout
import zc.buildout.easy_install

from collective.recipe.backup import _core
from collective.recipe.backup import options as options_mod
from collective.recipe.backup.main import OFFSITE_KEYS
from collective.recipe.backup.main import SETTING_KEYS


DIST = "collective.recipe.backup"
MODULE = "collective.recipe.backup.main"

#: The keyword arguments of the 6.0 scripts, in order, and the config
#: setting each one comes from: the table main.py maps back at run time.
SETTING_ARGUMENTS = tuple(SETTING_KEYS.items())

def script_arguments(bin_dir, config):
    """The keyword arguments baked into every script: the 6.0 set
    (``bin_dir``, ``storage``, ``keep``, ...) plus ``additional_storages``,
    all taken from the validated config."""
    storages = config.storages
    main = storages[-1]
    settings = config.settings
    lines = [
        f"bin_dir={bin_dir!r}",
        "storage=" + pprint.pformat(main, indent=8),
        "additional_storages=" + pprint.pformat(storages[:-1], indent=8),
    ]
    for keyword, setting in SETTING_ARGUMENTS:
        lines.append(f"{keyword}={settings[setting]!r}")
    if settings["offsite"]:
        # Credentials are never baked in: only where to find them.
        for keyword, setting in OFFSITE_KEYS.items():
            if settings[setting] is not None:
                lines.append(f"{keyword}={settings[setting]!r}")
    return "\n        " + ",\n        ".join(lines) + ",\n        "


class Recipe:
    """Generates backup and restore scripts for one ZODB (plus the seed's
    ``additional_filestorages``)."""

    def __init__(self, buildout, name, options):
        self.buildout = buildout
        self.name = name
        self.options = options
        self.logger = logging.getLogger(name)
        # Validate here, not in install(): buildout constructs every part
        # before it uninstalls any, so a bad value (``keep = two``) stops
        # the run while the old scripts, and the cron job calling them,
        # are still in place.
        self.config = self._config()

    def _config(self):
        try:
            kwargs, warnings = options_mod.typed_options(
                self.buildout, self.name, self.options
            )
            config = _core.BackupConfig(**kwargs)
        except _core.ConfigError as e:
            raise zc.buildout.UserError(str(e)) from None
        for message in warnings + config.warnings + config.probe_locations():
            self.logger.warning(message)
        return config

    def _working_set(self):
        b = self.buildout["buildout"]
        return zc.buildout.easy_install.install(
            [DIST],
            b["eggs-directory"],
            links=b.get("find-links", "").split(),
            index=b.get("index"),
            path=[b["develop-eggs-directory"]],
            newest=b.get("newest") == "true",
            allow_hosts=tuple(
                h.strip() for h in b.get("allow-hosts", "*").split("\n") if h.strip()
            ),
        )

    def install(self):
        """(Re)generate the scripts from the validated config; returns
        their paths."""
        config = self.config
        b = self.buildout["buildout"]
        bin_dir = b["bin-directory"]
        arguments = script_arguments(bin_dir, config)
        working_set = self._working_set()
        generated = []
        for script, function in config.scripts():
            generated.extend(
                zc.buildout.easy_install.scripts(
                    [(script, MODULE, function)],
                    working_set,
                    b["executable"],
                    bin_dir,
                    arguments=arguments,
                )
            )
        return generated

    # Scripts are regenerated on every run, as in 6.0: a Zope part's
    # blob-storage may have changed without this part's options changing.
    update = install
