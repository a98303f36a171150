"""Command line of the generated scripts: arguments, logging, the prompt.

- Arguments: ``-q/--quiet`` (warnings only), ``-n/--no-prompt``,
  ``-h/--help``; restore scripts take one optional positional UTC date
  ``yyyy-mm-dd[-hh[-mm[-ss]]]``, validated by the core, and
  ``--accept-blob-mismatch`` (restore an older blob backup when the one of
  the filestorage backup's date is missing; the core decides and warns)
  and ``--target DIR`` (restore into DIR, the live site untouched).
  Every script takes ``--dry-run`` (say what would be done, touch
  nothing; no prompt). Short flags combine (``-qn``). Backup scripts
  ignore positional arguments (6.0).
- Logging: ``LEVEL: message`` on stderr; ``debug`` adds DEBUG and the time
  and the filestorage engine's lines (6.0: repozo ``--verbose``); ``-q``
  means WARNING and up. Rust log records arrive through the same logging
  (pyo3-log).
- Progress: the core draws a bar on stderr for long work when stderr is a
  terminal and ``-q`` is not given (:func:`wants_progress`).
- The restore prompt of docs/scripts.rst: only ``yes`` restores; empty,
  ``no`` and end of input mean no; anything else asks again.
"""

import argparse
import logging
import os
import sys

from collective.recipe.backup import _core


#: Logger of the filestorage engine's progress lines (repozo's ``-v``).
REPOZO_LOGGER = "collective.recipe.backup.repozo"

DATE_HELP = (
    "restore the state at or before this UTC date, "
    "yyyy-mm-dd[-hh[-mm[-ss]]]; default: the newest backup"
)
MISMATCH_HELP = (
    "when the blob backup of the filestorage backup's date is "
    "missing or incomplete, restore the newest older one instead "
    "of refusing"
)

DRY_RUN_HELP = (
    "say what would be done (lines starting with 'Would '), change nothing"
)
TARGET_HELP = (
    "restore the Data.fs files and blob directories into DIR "
    "(created if missing) instead of the live site"
)

PROMPT_QUESTION = "Are you sure? (yes/No)? "
PROMPT_AGAIN = "Please explicitly answer yes/no in full (or accept the default)"


class Arguments:
    """Parsed script arguments."""

    def __init__(
        self,
        quiet,
        no_prompt,
        date,
        accept_blob_mismatch=False,
        target=None,
        dry_run=False,
        keep_prefix=None,
    ):
        self.quiet = quiet
        self.no_prompt = no_prompt
        self.date = date
        self.accept_blob_mismatch = accept_blob_mismatch
        self.target = target
        self.dry_run = dry_run
        self.keep_prefix = keep_prefix


class Parser(argparse.ArgumentParser):
    """argparse with one error line and exit 2."""

    def error(self, message):
        # One line and exit 2, like optparse in 6.0.
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv, prog, restore):
    """Parse ``argv`` (without the program name). Exits 0 for ``--help`` and
    2 for an unknown option. The date is returned as written; see
    :func:`check_date`."""
    parser = Parser(
        prog=prog,
        description=(
            "Restore the filestorage and blobstorage."
            if restore
            else "Back up the filestorage and blobstorage."
        ),
    )
    add_quiet(parser)
    add_no_prompt(parser)
    add_dry_run(parser)
    if restore:
        add_restore_arguments(parser)
    else:
        parser.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return Arguments(
        args.quiet,
        args.no_prompt,
        getattr(args, "date", None),
        getattr(args, "accept_blob_mismatch", False),
        getattr(args, "target", None),
        args.dry_run,
        getattr(args, "keep_prefix", None),
    )


def add_quiet(parser):
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only print warnings and errors (for cron)",
    )


def add_no_prompt(parser):
    parser.add_argument(
        "-n",
        "--no-prompt",
        action="store_true",
        help="do not ask for confirmation before restoring",
    )


def add_dry_run(parser):
    parser.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)


def add_restore_arguments(parser):
    """A restore's date, ``--accept-blob-mismatch`` and ``--target``."""
    parser.add_argument("date", nargs="?", help=DATE_HELP)
    parser.add_argument(
        "--accept-blob-mismatch", action="store_true", help=MISMATCH_HELP
    )
    parser.add_argument("--target", metavar="DIR", help=TARGET_HELP)
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--write-all",
        dest="keep_prefix",
        action="store_const",
        const="never",
        help="always write the whole Data.fs, even when the live one starts "
        "with the restored state",
    )
    how.add_argument(
        "--quick-check",
        dest="keep_prefix",
        action="store_const",
        const="structure",
        help="prove that the live Data.fs starts with the restored state by "
        "its transaction headers and the md5 of the newest backup file only "
        "(as a quick backup does), not the md5 of every backup file",
    )


OFFSITE_ACTIONS = ("push", "pull", "status", "verify")
OFFSITE_HELP = (
    "push: upload what the store lacks; pull [DATE]: download the "
    "backups of DATE (default: newest) into the local locations; status: "
    "what is in the store and what is not; verify: check the store's "
    "objects against what was uploaded"
)


def add_offsite_arguments(parser):
    """``bin/offsite ACTION [DATE] [--set SET]``."""
    parser.add_argument("action", choices=OFFSITE_ACTIONS, help=OFFSITE_HELP)
    parser.add_argument(
        "date", nargs="?", help="pull: the UTC date, yyyy-mm-dd[-hh[-mm[-ss]]]"
    )
    parser.add_argument(
        "--set",
        dest="backup_set",
        choices=("backup", "snapshot", "zip"),
        help="only these backups (default: all; pull: backup)",
    )


def parse_offsite_args(argv, prog):
    """Parse the arguments of ``bin/offsite``."""
    parser = Parser(prog=prog, description="Off-site copies in S3 object storage.")
    add_quiet(parser)
    add_offsite_arguments(parser)
    return parser.parse_args(argv)


def setup_logging(quiet, debug):
    """Configure the root logger for a script run."""
    if quiet:
        level = logging.WARNING
    elif debug:
        level = logging.DEBUG
    else:
        level = logging.INFO
    fmt = "%(levelname)s: %(message)s"
    if level < logging.INFO:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    # A log line that cannot be written (stderr on a full or failing disk)
    # must not turn into a traceback on that same stderr: the backup itself
    # does not depend on it.
    logging.raiseExceptions = False
    # The filestorage engine's own lines are repozo's --verbose output: shown
    # with ``debug`` only, as 6.0 passed --verbose to repozo then.
    logging.getLogger(REPOZO_LOGGER).setLevel(
        logging.INFO if debug and not quiet else logging.WARNING
    )


def wants_progress(quiet=False):
    """Whether to ask the core for a progress bar: not with ``-q``, and only
    when stderr is a terminal (never in cron mails or log files)."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        # No stderr (pythonw) or a closed one.
        return False


def check_date(date):
    """The normalised date, or None; raises ``_core.ConfigError`` with a
    one-line message for a bad one."""
    if date is None:
        return None
    return _core.parse_restore_date(date)


def prompt_text(filestorages, blobstorages):
    """The confirmation question (it starts with an empty line)."""
    lines = [""]
    if filestorages:
        lines.append("This will replace the filestorage:")
        lines.extend(f"    {path}" for path in filestorages)
    if blobstorages:
        lines.append("This will replace the blobstorage:")
        lines.extend(f"    {path}" for path in blobstorages)
    return "\n".join(lines) + "\n" + PROMPT_QUESTION


def confirm(filestorages, blobstorages, ask=input):
    """Ask until the answer is yes, no or empty; end of input (or Ctrl-C)
    means no."""
    question = prompt_text(filestorages, blobstorages)
    while True:
        try:
            answer = ask(question)
        except (EOFError, KeyboardInterrupt):
            sys.stdout.write("\n")
            return False
        answer = answer.strip().lower()
        if not answer or answer == "no":
            return False
        if answer == "yes":
            return True
        print(PROMPT_AGAIN)


def program_name():
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "backup"
