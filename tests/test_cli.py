"""The generated scripts' command line: options, the restore prompt, the
date argument, logging, hooks, exit codes (see docs/scripts.rst), run as
real processes from a real buildout.

The buildouts here have no Data.fs and no backups, so every run that
reaches the filestorage step fails there, the way 6.0's repozo did
(``[Errno 2] No such file or directory: ...``): the tests below pin
everything that happens before that point, and that the failure is
reported, not hidden. Real backups and restores: ``test_scripts_e2e.py``."""

import hashlib
import os
import re

import pytest

import zodbgen


def missing(path):
    """The one-line error for a missing Data.fs or backup directory."""
    return f"ERROR: [Errno 2] No such file or directory: '{path}'"


PART = """\
    [backup]
    recipe = collective.recipe.backup
    blob_storage = var/blobstorage
    pre_command = echo "pre: mount the backup disk"
    post_command = echo "post: unmount"
    """


@pytest.fixture
def scripts(sample_buildout):
    p = sample_buildout.run("backup", PART)
    assert p.returncode == 0, p.output
    # The blobstorage is there; the Data.fs is not (the runs below stop at
    # it). A missing blobstorage stops bin/backup before anything else.
    os.makedirs(sample_buildout.path("var", "blobstorage"), exist_ok=True)
    return sample_buildout


def test_help_exits_0(scripts):
    p = scripts.script("restore", "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(
        "usage: restore [-h] [-q] [-n] [--dry-run] [--accept-blob-mismatch]"
    )
    for option in ("--accept-blob-mismatch", "--target DIR", "--dry-run", "--write-all", "--quick-check"):
        assert option in p.stdout
    p = scripts.script("backup", "-h")
    assert p.returncode == 0
    assert "--no-prompt" in p.stdout
    assert "--dry-run" in p.stdout
    assert "--target" not in p.stdout


def test_unknown_option_exits_2(scripts):
    p = scripts.script("backup", "--bogus")
    assert p.returncode == 2
    assert p.stderr == "backup: error: unrecognized arguments: --bogus\n"


def test_restore_proof_options():
    """``--write-all`` and ``--quick-check`` choose how the restore treats
    a live Data.fs that starts with the restored state; one or the other."""
    from collective.recipe.backup import cli

    # No option: the core's default.
    assert cli.parse_args([], "restore", True).keep_prefix is None
    assert cli.parse_args(["--write-all"], "restore", True).keep_prefix == "never"
    assert cli.parse_args(["--quick-check", "2026-11-20"], "restore", True).keep_prefix == "structure"
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--write-all", "--quick-check"], "restore", True)
    assert e.value.code == 2


PROMPT = (
    "\nThis will replace the filestorage:\n    {var}/filestorage/Data.fs\n"
    "This will replace the blobstorage:\n    {var}/blobstorage\n"
    "Are you sure? (yes/No)? "
)


@pytest.mark.parametrize("answer", ["\n", "no\n", "No\n", ""])
def test_prompt_declined_or_eof_is_exit_0_and_nothing_runs(scripts, answer):
    p = scripts.script("restore", input=answer)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(PROMPT.format(var=scripts.path("var")))
    assert "pre: mount" not in p.stdout
    assert p.stderr == "INFO: Not restoring.\n"


def test_prompt_y_asks_again(scripts):
    p = scripts.script("restore", input="y\nno\n")
    assert p.returncode == 0
    prompt = PROMPT.format(var=scripts.path("var"))
    assert p.stdout == (
        prompt + "Please explicitly answer yes/no in full (or accept the default)\n" + prompt
    )
    assert p.stderr == "INFO: Not restoring.\n"


def test_prompt_yes_goes_to_the_core(scripts):
    p = scripts.script("restore", input="YES\n")
    assert "pre: mount the backup disk" in p.stdout
    assert "post: unmount" not in p.stdout
    assert p.stderr.splitlines()[-1] == missing(scripts.path("var", "backups"))
    assert p.returncode == 1


def test_no_prompt_flag_and_combined_flags(scripts):
    p = scripts.script("restore", "-n")
    assert "Are you sure" not in p.stdout
    assert "pre: mount" in p.stdout
    assert p.returncode == 1
    # -qn: no prompt and warnings only (6.0 took '-qn' for the date).
    p = scripts.script("restore", "-qn")
    assert "Are you sure" not in p.stdout
    assert p.stderr == missing(scripts.path("var", "backups")) + "\n"
    assert p.returncode == 1


@pytest.mark.parametrize(
    "date", ["2026-13-45", "2026-11", "yesterday", "2026-02-30", "2026-11-26-25"]
)
def test_bad_date_is_one_line_and_exit_1_before_anything(scripts, date):
    p = scripts.script("restore", "-n", date)
    assert p.returncode == 1
    assert p.stderr == (
        f"ERROR: Could not parse date argument '{date}'. Expected a UTC date "
        "yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2026-11-26-14-30.\n"
    )
    assert p.stdout == ""


def test_good_date_is_logged_normalised(scripts):
    p = scripts.script("snapshotrestore", "-n", "2026-11-26-14-3")
    assert "INFO: Date restriction: restoring state at 2026-11-26-14-03-00.\n" in p.stderr
    assert p.returncode == 1


def test_backup_order_logging_and_failure_exit(scripts):
    p = scripts.script("backup")
    assert p.stdout == "pre: mount the backup disk\n"
    var = scripts.path("var")
    # As 6.0: every location the run needs is created first.
    assert p.stderr == (
        f"INFO: Created {var}/backups\n"
        f"INFO: Created {var}/blobstoragebackups\n"
        "INFO: Please wait while backing up database file: "
        f"{var}/filestorage/Data.fs to {var}/backups\n"
        + missing(f"{var}/filestorage/Data.fs")
        + "\n"
    )
    assert p.returncode == 1


def test_quiet_backup_prints_only_errors(scripts):
    p = scripts.script("backup", "-q", "ignored-positional")
    datafs = scripts.path("var", "filestorage", "Data.fs")
    assert p.stderr == missing(datafs) + "\n"
    assert p.returncode == 1


def test_empty_path(scripts):
    """With an empty PATH (cron) the script starts and its shell hook runs;
    the run stops at the missing Data.fs, named in one line. (A whole
    backup and restore with an empty PATH: test_scripts_e2e.)"""
    p = scripts.script("backup", env={"PATH": ""})
    assert p.stdout == "pre: mount the backup disk\n"
    datafs = scripts.path("var", "filestorage", "Data.fs")
    assert p.stderr.endswith(missing(datafs) + "\n")
    assert "not found" not in p.stderr


def test_failing_pre_command(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        backup_blobs = false
        pre_command =
            echo "about to fail"
            exit 3
        """,
    )
    assert p.returncode == 0, p.output
    p = b.script("backup")
    assert p.returncode == 1
    assert p.stdout == "about to fail\n"
    assert p.stderr == (
        "ERROR: command 'echo \"about to fail\"\nexit 3' failed. See message above.\n"
    )
    assert not os.path.exists(b.path("var", "backups"))


def test_debug_adds_time(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup",
        "[backup]\nrecipe = collective.recipe.backup\nbackup_blobs = false\ndebug = true\n",
    )
    assert p.returncode == 0, p.output
    p = b.script("backup")
    first = p.stderr.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO: Created ", first), first
    # -q wins over debug.
    p = b.script("backup", "-q")
    assert p.stderr == missing(b.path("var", "filestorage", "Data.fs")) + "\n"


def test_fullbackup_and_additional_storages_first(sample_buildout):
    b = sample_buildout
    p = b.run(
        "backup",
        """\
        [backup]
        recipe = collective.recipe.backup
        backup_blobs = false
        enable_fullbackup = true
        additional_filestorages = catalog
        """,
    )
    assert p.returncode == 0, p.output
    p = b.script("fullbackup")
    var = b.path("var")
    assert (
        "INFO: Please wait while making full backup of database file: "
        f"{var}/filestorage/catalog.fs to {var}/backups_catalog\n" in p.stderr
    )
    assert p.returncode == 1


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_restore_refused_while_zope_has_the_storage_open(sample_buildout):
    from ZODB.FileStorage import FileStorage

    b = sample_buildout
    p = b.run(
        "backup",
        "[backup]\nrecipe = collective.recipe.backup\nblob_storage = var/blobstorage\n",
    )
    assert p.returncode == 0, p.output
    info = zodbgen.generate(b.path("var", "filestorage"), transactions=5)
    datafs = info["path"]
    before = _sha(datafs)
    storage = FileStorage(datafs, blob_dir=b.path("var", "blobstorage"))
    try:
        p = b.script("restore", "-n")
    finally:
        storage.close()
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1] == (
        f"ERROR: {datafs}.lock is locked: a Zope or ZEO process has this "
        "filestorage open. Stop it before restoring. Nothing was changed."
    )
    assert _sha(datafs) == before
    assert not [n for n in os.listdir(b.path("var", "filestorage")) if n.startswith(".crb")]
    # Once Zope is stopped, the restore gets past the lock (to the check of
    # the backups, of which there are none here).
    p = b.script("restore", "-n")
    assert p.stderr.splitlines()[-1] == missing(b.path("var", "backups"))


def test_confirm_in_process():
    from collective.recipe.backup import cli

    answers = iter(["maybe", " Yes "])
    asked = []

    def ask(question):
        asked.append(question)
        return next(answers)

    assert cli.confirm(["/x/Data.fs"], [], ask=ask) is True
    assert (
        asked
        == ["\nThis will replace the filestorage:\n    /x/Data.fs\nAre you sure? (yes/No)? "] * 2
    )

    def interrupted(question):
        raise KeyboardInterrupt

    assert cli.confirm([], ["/x/blobs"], ask=interrupted) is False
    assert cli.prompt_text([], ["/x/blobs"]) == (
        "\nThis will replace the blobstorage:\n    /x/blobs\nAre you sure? (yes/No)? "
    )


def test_main_functions_keep_the_60_keywords(tmp_path, capsys):
    """A hand-written caller using the 6.0 keywords (positional bin_dir and
    storage included) still works; argv replaces sys.argv."""
    from collective.recipe.backup import main

    storage = {
        "storage": "1",
        "datafs": str(tmp_path / "Data.fs"),
        "backup_location": str(tmp_path / "backups"),
        "snapshot_location": str(tmp_path / "snapshots"),
        "zip_location": str(tmp_path / "zips"),
    }
    rc = main.restore_main(
        "/bin", storage, keep=2, verbose=False, no_prompt=True, argv=["2026-1-1-x"]
    )
    assert rc == 1
    assert capsys.readouterr().err == (
        "ERROR: Could not parse date argument '2026-1-1-x'. Expected a UTC "
        "date yyyy-mm-dd[-hh[-mm[-ss]]], e.g. 2026-11-26-14-30.\n"
    )
    rc = main.backup_main(bin_dir="/bin", storage=storage, keep="two", argv=[])
    assert rc == 1
    assert capsys.readouterr().err == (
        "ERROR: keep must be a whole number (0 or more), not 'two'.\n"
    )


def test_main_functions_report_bad_keyword_types_in_one_line(tmp_path, capsys, monkeypatch):
    """A hand-edited script passing a wrong type, or a bad test clock, is one
    ERROR line and exit 1, never a traceback."""
    from collective.recipe.backup import main

    storage = {"storage": "1", "datafs": str(tmp_path / "Data.fs")}
    rc = main.backup_main(bin_dir="/bin", storage=storage, full=["yes"], argv=[])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: invalid script arguments: ") and err.count("\n") == 1
    monkeypatch.setenv("CRB_REPOZO_NOW", "not a number")
    rc = main.backup_main(bin_dir="/bin", storage=storage, argv=[])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: invalid script arguments: ") and err.count("\n") == 1
