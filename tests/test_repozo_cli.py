"""The command line against repozo's: the same parsing (spec §1.1), the
same checks in the same order (§1.3), the same usage/messages/exit codes
(§1.4-1.5), and the Test_parseargs cases of ZODB's suite (§6).

Parsing is compared in-process: repozo's ``main`` and ours run on the same
argv with the mode functions replaced by recorders.
"""

import contextlib
import io

import pytest
from repozo_util import ok
from repozo_util import ours
from repozo_util import theirs

from collective.recipe.backup.repozo import cli

FIELDS = [
    "mode",
    "file",
    "repository",
    "full",
    "date",
    "output",
    "quick",
    "gzip",
    "killold",
    "withverify",
]


def run_theirs(argv, monkeypatch):
    from ZODB.scripts import repozo

    seen = {}
    for name, mode in [("do_backup", "backup"), ("do_recover", "recover"), ("do_verify", "verify")]:
        monkeypatch.setattr(repozo, name, lambda o, mode=mode: seen.update(opts=o, mode=mode))
    monkeypatch.setattr(repozo, "VERBOSE", False)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            repozo.main(argv)
        except SystemExit as e:
            code = e.code
    opts = None
    if "opts" in seen:
        o = seen["opts"]
        opts = {f: getattr(o, f) for f in FIELDS}
        opts["mode"] = seen["mode"]
    return code, out.getvalue(), err.getvalue(), opts


def run_ours(argv, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run", lambda o: seen.update(opts=o))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    opts = None
    if "opts" in seen:
        opts = {f: getattr(seen["opts"], f) for f in FIELDS}
    return code, out.getvalue(), err.getvalue(), opts


def without_usage(text):
    """The output with the usage text (which names the program and says
    our gzip level) cut out, marked by ``<usage>``."""
    for first, last in (
        ("repozo.py -- incremental", "skip md5 checksums).\n"),
        ("repozo (collective.recipe.backup) --", "Check sizes only, not checksums.\n"),
    ):
        start = text.find(first)
        if start >= 0:
            end = text.find(last, start) + len(last)
            return text[:start] + "<usage>" + text[end:]
    return text


CASES = [
    # Test_parseargs
    ["-v", "-V", "-r", "/tmp/nosuchdir"],
    ["--verbose", "--verify", "--repository=/tmp/nosuchdir"],
    ["--help"],
    ["--crash-please"],
    ["crash", "please"],
    ["-B", "-r", "/tmp/nosuchdir", "-f", "/tmp/Data.fs"],
    ["-R", "-r", "/tmp/nosuchdir"],
    ["-V", "-r", "/tmp/nosuchdir"],
    ["-B", "-R"],
    ["-R", "-V"],
    ["-V", "-B"],
    ["-B", "-B"],
    [],
    ["-v"],
    ["-B", "-F", "-k", "-r", "/tmp/nosuchdir", "-f", "/tmp/Data.fs"],
    ["-B"],
    [
        "-B",
        "-v",
        "-r",
        "/tmp/nosuchdir",
        "-f",
        "/tmp/Data.fs",
        "-D",
        "2011-12-13",
        "-o",
        "/tmp/Data.fs",
        "-w",
    ],
    ["-B", "-r", "/tmp/nosuchdir"],
    ["-B", "-r", "/tmp/nosuchdir", "-f", ""],
    ["-B", "-v", "-r", "/tmp/nosuchdir", "-f", "/tmp/Data.fs"],
    ["-R", "-v", "-r", "/tmp/nosuchdir", "-f", "/tmp/Data.fs", "-k"],
    [
        "-V",
        "-v",
        "-r",
        "/tmp/nosuchdir",
        "-D",
        "2011-12-13",
        "-o",
        "/tmp/Data.fs",
        "-F",
        "-z",
        "-f",
        "/tmp/Data.fs",
        "-k",
        "-w",
    ],
    # Parsing model (spec §1.1)
    ["-BQr", "repo", "-f", "x"],
    ["-Vrrepo"],
    ["-vz", "-B", "-rrepo", "-fx"],
    ["--verif", "--repos=x"],
    ["--ver", "-r", "x"],
    ["--backup=yes", "-r", "x"],
    ["-B", "foo", "-r", "repo"],
    ["-B", "-r", "repo", "-f", "x", "--", "extra"],
    ["-x"],
    ["-B", "-f"],
    ["--repository"],
    ["--repository", "x", "-V"],
    ["-h", "-B", "-R"],
    ["-B", "-R", "-h"],
    ["-V", "-r", "a", "-r", "b"],
    ["-R", "-r", "x", "-D", "2024-01-01", "-D", "2025-01-01", "-o", "o", "-w", "-F", "-z", "-Q"],
    ["-V", "-Q", "-r", "x"],
    ["-V", "-r", ""],
    ["--kill", "-B", "-r", "x", "-f", "y"],
    ["--with-verify", "--recover", "--date", "2024", "--output=x", "--repository", "r"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) or "<none>" for c in CASES])
def test_parsing_like_repozo(argv, monkeypatch):
    t_code, t_out, t_err, t_opts = run_theirs(argv, monkeypatch)
    o_code, o_out, o_err, o_opts = run_ours(argv, monkeypatch)
    assert (o_code or 0, without_usage(o_out), without_usage(o_err), o_opts) == (
        t_code or 0,
        without_usage(t_out),
        without_usage(t_err),
        t_opts,
    )


def test_help_is_usage_on_stdout(monkeypatch):
    code, out, err, _ = run_ours(["--help"], monkeypatch)
    assert code == 0 and err == ""
    assert out.startswith("repozo (collective.recipe.backup) -- full and incremental")
    assert "\nUsage: " in out
    assert out.endswith("Check sizes only, not checksums.\n\n")


def test_usage_documents_every_repozo_option(monkeypatch):
    """Our help is in our own words, but documents exactly the options that
    repozo's does, in both spellings."""
    import re

    from ZODB.scripts import repozo

    _, ours_out, _, _ = run_ours(["-h"], monkeypatch)
    theirs_text = repozo.__doc__ % {"program": "PROG"}

    def options(text):
        return set(re.findall(r"^\s+(-[A-Za-z]\b|--[a-z-]+)", text, re.M)) | set(
            re.findall(r"/ (--[a-z-]+)", text)
        )

    assert options(ours_out) == options(theirs_text)
    assert f"deflate level {cli._default_level()} (libdeflate)" in ours_out


def test_usage_error_subprocess_exit_code():
    proc = ours("-B")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.endswith("\n\n--repository is required\n")


def test_help_subprocess_exit_code():
    proc = ok(ours("-h"))
    assert "Usage: " in proc.stdout and proc.stderr == ""
