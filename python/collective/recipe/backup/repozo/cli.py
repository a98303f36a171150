"""The ``repozo`` command line: a drop-in for ZODB's ``bin/repozo``.

Options are parsed with :func:`getopt.getopt` and the same option spec as
repozo 6.4 (clustered short flags, attached values, unique long prefixes,
stop at the first non-option) and checked in the same order, with the same
messages and exit codes. Then ONE call into the core does the work. Errors
of the core are one line on stderr and exit code 1, never a traceback.

When stderr is a terminal, the core draws a progress bar there for the long
copies and checksums (see docs/scripts.rst); elsewhere nothing.

Environment: ``CRB_REPOZO_GZIP_LEVEL`` (0-9) sets the gzip level for
``-z``; ``CRB_REPOZO_NOW`` (seconds since the epoch) fixes the clock that
names backups, for tests.
"""

import getopt
import logging
import os
import sys

from collective.recipe.backup._core import BackupError
from collective.recipe.backup._core import repozo_backup
from collective.recipe.backup._core import repozo_recover
from collective.recipe.backup._core import repozo_verify
from collective.recipe.backup.cli import wants_progress


USAGE = """\
repozo (collective.recipe.backup) -- full and incremental backups of a
ZODB FileStorage (Data.fs) and its index, in repozo's repository format.

Usage: %(program)s [options]

Mode, exactly one of:

    -B / --backup
        Make a backup of the Data.fs given with -f.

    -R / --recover
        Rebuild a Data.fs from the backups in the repository.

    -V / --verify
        Check the backups in the repository against their .dat files.

General options:

    -v / --verbose
        Log what is done to stderr.

    -h / --help
        Show this help and exit.

    -r dir
    --repository=dir
        The backup repository, an existing directory; required in every
        mode. Leave its files to this tool (and to ZODB's repozo).

Backup options (-B):

    -f file
    --file=file
        The Data.fs to back up; required.

    -F / --full
        Make a full backup even when an incremental one would do. Without
        it, a full backup is made only when needed (first backup, or the
        file changed under the repository, e.g. after a pack).

    -Q / --quick
        Decide between incremental and full by checking only the part of
        Data.fs that the newest backup file covers, instead of all of it.
        Faster, and trusts the repository a little more.

    -z / --gzip
        Write gzip-compressed backup files (.fsz, .deltafsz), using all
        cores, at deflate level %(level)d (libdeflate). Not compressed by
        default.

    -k / --kill-old-on-full
        After a full backup, delete every older backup file (and its .dat
        and .index) from the repository.

Recover options (-R):

    -D str
    --date=str
        Recover the state as of this UTC date, yyyy-mm-dd[-hh[-mm[-ss]]].
        Default: now.

    -o filename
    --output=filename
        Where to write the recovered Data.fs (its .index goes beside it).
        Default: standard output, without an index.

    -w
    --with-verify
        Check every backup file's size and checksum against the .dat while
        recovering, as -V does. On a failure nothing is written to the
        output.

Verify options (-V):

    -Q / --quick
        Check sizes only, not checksums.
"""

SHORT = "BRVvhr:f:FQzkD:o:w"
LONG = [
    "backup",
    "recover",
    "verify",
    "verbose",
    "help",
    "repository=",
    "file=",
    "full",
    "quick",
    "gzip",
    "kill-old-on-full",
    "date=",
    "output=",
    "with-verify",
]

BACKUP, RECOVER, VERIFY = "backup", "recover", "verify"
LOGGER = logging.getLogger("collective.recipe.backup.repozo")


class Usage(Exception):
    """Print the usage text (and a message), exit with ``code``."""

    def __init__(self, code, msg=""):
        super().__init__(msg)
        self.code = code
        self.msg = msg


class Options:
    mode = None
    file = None
    repository = None
    full = False
    date = None
    output = None
    quick = False
    gzip = False
    killold = False
    withverify = False
    verbose = False


def parseargs(argv):
    """Options from argv, as repozo's ``parseargs``; raises :class:`Usage`.
    'option is ignored' messages are logged (shown with -v only)."""
    try:
        opts, args = getopt.getopt(argv, SHORT, LONG)
    except getopt.GetoptError as e:
        raise Usage(1, str(e)) from None
    o = Options()
    for opt, arg in opts:
        if opt in ("-h", "--help"):
            raise Usage(0)
        if opt in ("-v", "--verbose"):
            o.verbose = True
        elif opt in ("-B", "--backup", "-R", "--recover", "-V", "--verify"):
            if o.mode is not None:
                raise Usage(1, "-B, -R, and -V are mutually exclusive")
            o.mode = {"-B": BACKUP, "-R": RECOVER, "-V": VERIFY}.get(opt, opt[2:])
        elif opt in ("-Q", "--quick"):
            o.quick = True
        elif opt in ("-f", "--file"):
            o.file = arg
        elif opt in ("-r", "--repository"):
            o.repository = arg
        elif opt in ("-F", "--full"):
            o.full = True
        elif opt in ("-D", "--date"):
            o.date = arg
        elif opt in ("-o", "--output"):
            o.output = arg
        elif opt in ("-z", "--gzip"):
            o.gzip = True
        elif opt in ("-k", "--kill-old-on-full"):
            o.killold = True
        elif opt in ("-w", "--with-verify"):
            o.withverify = True
    if args:
        raise Usage(1, "Invalid arguments: " + ", ".join(args))
    if o.mode is None:
        raise Usage(1, "Either --backup, --recover or --verify is required")
    if o.repository is None:
        raise Usage(1, "--repository is required")
    if o.mode == BACKUP:
        ignored = [("date", None), ("output", None), ("withverify", False)]
    elif o.mode == RECOVER:
        ignored = [("file", None), ("killold", False)]
    else:
        ignored = [
            ("date", None),
            ("output", None),
            ("full", False),
            ("gzip", False),
            ("file", None),
            ("killold", False),
            ("withverify", False),
        ]
    names = {"withverify": "with-verify", "killold": "kill-old-on-full"}
    for attr, unset in ignored:
        value = getattr(o, attr)
        # repozo resets a value option given at all, a flag only when set.
        if (value is not None) if unset is None else value:
            if o.verbose:
                print(f"--{names.get(attr, attr)} option is ignored in {o.mode} mode", file=sys.stderr)
            setattr(o, attr, unset)
    if o.mode == BACKUP and not o.file:
        raise Usage(1, "--file is required in backup mode")
    return o


def _level():
    value = os.environ.get("CRB_REPOZO_GZIP_LEVEL")
    return int(value) if value else None


def fixed_now():
    """``CRB_REPOZO_NOW`` (seconds since the epoch) as a float, or None.

    It fixes the clock that names backups, so that tests need not sleep to
    get distinct, ordered one-second names. The bin scripts honour it too."""
    value = os.environ.get("CRB_REPOZO_NOW")
    return float(value) if value else None


def run(o):
    """The one core call for the mode. The core draws a progress bar on
    stderr when it is a terminal."""
    progress = wants_progress()
    if o.mode == BACKUP:
        repozo_backup(
            o.file,
            o.repository,
            full=o.full,
            gzip=o.gzip,
            quick=o.quick,
            kill_old=o.killold,
            gzip_level=_level(),
            progress=progress,
            now=fixed_now(),
        )
    elif o.mode == RECOVER:
        repozo_recover(
            o.repository,
            o.output,
            date=o.date,
            verify=o.withverify,
            progress=progress,
            now=fixed_now(),
        )
    else:
        repozo_verify(o.repository, quick=o.quick, progress=progress, now=fixed_now())


def main(argv=None):
    """Run repozo with ``argv`` (default ``sys.argv[1:]``); returns the exit
    code."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        o = parseargs(argv)
    except Usage as u:
        out = sys.stdout if u.code == 0 else sys.stderr
        print(USAGE % {"program": sys.argv[0], "level": _default_level()}, file=out)
        if u.msg:
            print(u.msg, file=out)
        return u.code
    saved = (LOGGER.handlers[:], LOGGER.level, LOGGER.propagate)
    if o.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
    try:
        run(o)
    except BackupError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as e:  # noqa: B036 - one line, never a traceback (a Rust panic is a BaseException)
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        # main() may be called again in the same process (tests, library
        # users): leave the logger as it was.
        LOGGER.handlers[:] = saved[0]
        LOGGER.setLevel(saved[1])
        LOGGER.propagate = saved[2]
    return 0


def _default_level():
    from collective.recipe.backup._core import REPOZO_DEFAULT_GZIP_LEVEL

    return REPOZO_DEFAULT_GZIP_LEVEL
