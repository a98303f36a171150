"""The ``repozo`` command line: a drop-in for ZODB's ``bin/repozo``.

Options are parsed with :func:`getopt.getopt` and the same option spec as
repozo 6.4 (clustered short flags, attached values, unique long prefixes,
stop at the first non-option) and checked in the same order, with the same
messages and exit codes. Then ONE call into the core does the work. Errors
of the core are one line on stderr and exit code 1, never a traceback.

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


USAGE = """\
repozo.py -- incremental and full backups of a Data.fs file and index.

Usage: %(program)s [options]
Where:

    Exactly one of -B, -R, or -V must be specified:

    -B / --backup
        Backup current ZODB file.

    -R / --recover
        Restore a ZODB file from a backup.

    -V / --verify
        Verify backup integrity.

    -v / --verbose
        Verbose mode.

    -h / --help
        Print this text and exit.

    -r dir
    --repository=dir
        Repository directory containing the backup files.  This argument
        is required.  The directory must already exist.  You should not
        edit the files in this directory, or add your own files to it.

Options for -B/--backup:
    -f file
    --file=file
        Source Data.fs file.  This argument is required.

    -F / --full
        Force a full backup.  By default, an incremental backup is made
        if possible (e.g., if a pack has occurred since the last
        incremental backup, a full backup is necessary).

    -Q / --quick
        Verify via md5 checksum only the last incremental written.  This
        significantly reduces the disk i/o at the (theoretical) cost of
        inconsistency.  This is a probabilistic way of determining whether
        a full backup is necessary.

    -z / --gzip
        Compress with gzip the backup files, at zlib level %(level)d on
        all cores.  By default, gzip compression is not used.

    -k / --kill-old-on-full
        If a full backup is created, remove any prior full or incremental
        backup files (and associated metadata files) from the repository
        directory.

Options for -R/--recover:
    -D str
    --date=str
        Recover state as of this date.  Specify UTC (not local) time.
            yyyy-mm-dd[-hh[-mm[-ss]]]
        By default, current time is used.

    -o filename
    --output=filename
        Write recovered ZODB to given file.  By default, the file is
        written to stdout.

        Note:  for the stdout case, the index file will **not** be restored
        automatically.

    -w
    --with-verify
        Verify on the fly the backup files on recovering. This option runs
        the same checks as when repozo is run in -V/--verify mode, and
        allows to verify and recover a backup in one single step. If a sanity
        check fails, the partially recovered ZODB will be left in place.

Options for -V/--verify:
    -Q / --quick
        Verify file sizes only (skip md5 checksums).
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


def _progress_bar():
    """A one-line progress display on a terminal stderr, else None."""
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None

    def show(phase, done, total):
        if total:
            pct = min(100, done * 100 // total)
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{phase:12} [{bar:25}] {pct:3d}% {done >> 20}/{total >> 20} MiB")
        else:
            sys.stderr.write(f"\r{phase:12} {done >> 20} MiB")
        sys.stderr.flush()

    return show


def _level():
    value = os.environ.get("CRB_REPOZO_GZIP_LEVEL")
    return int(value) if value else None


def _now():
    value = os.environ.get("CRB_REPOZO_NOW")
    return float(value) if value else None


def run(o):
    """The one core call for the mode."""
    progress = _progress_bar()
    try:
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
                now=_now(),
            )
        elif o.mode == RECOVER:
            repozo_recover(
                o.repository,
                o.output,
                date=o.date,
                verify=o.withverify,
                progress=progress,
                now=_now(),
            )
        else:
            repozo_verify(o.repository, quick=o.quick, progress=progress, now=_now())
    finally:
        if progress is not None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


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
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def _default_level():
    from collective.recipe.backup._core import REPOZO_DEFAULT_GZIP_LEVEL

    return REPOZO_DEFAULT_GZIP_LEVEL
