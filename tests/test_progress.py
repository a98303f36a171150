"""Progress bars: drawn by the core on a terminal stderr, never elsewhere.

The generated scripts' functions (``collective.recipe.backup.main``) and the
repozo command line run in a child process on a real ZODB Data.fs of about
40 MiB with about 300 blob files, with stderr on a pseudo-terminal (we read
its master side) or on a pipe. The bar must show the Data.fs size as its
total, a rate and the time left; the log lines must arrive whole, the bar
cleared before each; a pipe and ``-q`` get no bar at all.
"""

import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
import zodbgen

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on POSIX
    pytest.skip("needs a POSIX pseudo-terminal", allow_module_level=True)


T0 = 1_750_000_000
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# indicatif's binary units: "42.25 MiB"
BYTES = r"\d+(?:\.\d\d)? (?:B|KiB|MiB|GiB)"
ETA = r"ETA \d+[smhdwy]"
CLEAR = "\x1b[2K"


def mib(size):
    """A byte count as the bar shows it (binary prefix, two decimals)."""
    return f"{size / (1 << 20):.2f} MiB"


def blob_files(blobdir):
    return sum(len(files) for _, _, files in os.walk(blobdir))


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A real ZODB storage of about 40 MiB with about 300 blob files."""
    base = tmp_path_factory.mktemp("progress")
    info = zodbgen.generate(str(base / "site"), transactions=1200, size="40M", undos=0)
    assert info["end"] == info["size"] > 32 << 20
    blobdir = base / "site" / "blobstorage"
    assert blob_files(blobdir) >= 200
    return {"dir": base / "site", "size": info["size"]}


@pytest.fixture
def site(db, tmp_path):
    """A copy of the storage and its backup locations, for one test."""
    shutil.copytree(db["dir"], tmp_path / "site")
    return {
        "storage": "1",
        "datafs": str(tmp_path / "site" / "Data.fs"),
        "blobdir": str(tmp_path / "site" / "blobstorage"),
        "backup_location": str(tmp_path / "backups"),
        "blob_backup_location": str(tmp_path / "blobbackups"),
    }


def _env(now):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRB_")}
    # indicatif also hides itself for TERM=dumb or no TERM: the terminal
    # check under test is ours.
    env["TERM"] = "xterm"
    env["CRB_REPOZO_NOW"] = str(now)
    return env


def run(cmd, *, tty, now, timeout=300):
    """Run ``cmd`` with stderr on a pseudo-terminal (``tty``) or a pipe;
    returns (exit code, stderr text). stdout goes to /dev/null."""
    env = _env(now)
    if not tty:
        p = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, timeout=timeout,
        )
        return p.returncode, p.stderr.decode("utf-8")
    master, slave = pty.openpty()
    # 200 columns: no bar is cut to the width of the terminal.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: every writer of the slave side is gone
                break
            if not chunk:
                break
            out += chunk
        else:
            proc.send_signal(signal.SIGKILL)
            pytest.fail(f"{cmd!r} did not finish in {timeout}s")
    finally:
        os.close(master)
    return proc.wait(timeout=60), out.decode("utf-8")


def script(fn, argv, storage, **kwargs):
    """The command line of a generated script calling ``main.<fn>``."""
    code = (
        "import json, sys\n"
        "from collective.recipe.backup import main\n"
        "kw = json.loads(sys.argv[1])\n"
        "sys.exit(getattr(main, kw.pop('fn'))(argv=kw.pop('argv'), **kw))\n"
    )
    kw = dict(kwargs, fn=fn, argv=argv, storage=storage)
    return [sys.executable, "-c", code, json.dumps(kw)]


def repozo(*args):
    return [sys.executable, "-m", "collective.recipe.backup.repozo", *map(str, args)]


def segments(text):
    """What a reader sees line by line: escapes removed, split at every
    carriage return and line feed."""
    return re.split(r"\r\n|\r|\n", ANSI.sub("", text))


def bars(text, pattern):
    """The drawn bars matching ``pattern`` (a regex for one whole bar)."""
    return [m for s in segments(text) if (m := re.fullmatch(r"\s*" + pattern + r"\s*", s))]


def assert_whole_log_line(text, line):
    """``line`` was written on a line of its own: at the start of the
    output, after a line feed, or right after the bar was cleared; and it
    ends with a line feed."""
    starts = [m.start() for m in re.finditer(re.escape(line), text)]
    assert starts, f"{line!r} not in {text!r}"
    for at in starts:
        before = text[:at]
        assert before == "" or before.endswith("\n") or before.endswith(CLEAR), (
            f"{line!r} written after {before[-120:]!r}"
        )
        assert text[at + len(line) :].startswith(("\r\n", "\n")), line


def assert_no_glued_log_lines(text):
    """No log record shares a line with a bar."""
    for s in segments(text):
        for word in ("INFO:", "WARNING:", "ERROR:"):
            assert word not in s or s.startswith(word) or re.match(r"\d{4}-\d\d-\d\d ", s), s


def test_backup_on_a_terminal_draws_bars_and_keeps_log_lines_whole(site, db):
    rc, text = run(script("backup_main", [], site), tty=True, now=T0)
    assert rc == 0, text
    # The Data.fs copy (gzip, the scripts' default) in bytes.
    drawn = bars(
        text,
        rf"compressing \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}",
    )
    assert drawn, text
    assert {m.group(2) for m in drawn} == {mib(db["size"])}
    # Several updates, not one picture.
    assert len({m.group(1) for m in drawn}) >= 2, [m.group(0) for m in drawn]
    assert any(m.group(3) != "0 B" for m in drawn)
    # The blob copy in files.
    files = blob_files(site["blobdir"])
    drawn = bars(
        text, r"blobs: copy \[[=> ]{30}\] (\d+)/(\d+) files, \d+ files/s, " + ETA
    )
    assert drawn, text
    assert {int(m.group(2)) for m in drawn} == {files}
    # Log lines whole, each on a line of its own.
    for line in (
        f"INFO: Please wait while backing up database file: {site['datafs']} "
        f"to {site['backup_location']}",
        f"INFO: Please wait while backing up blobs from {site['blobdir']} "
        f"to {site['blob_backup_location']}",
    ):
        assert_whole_log_line(text, line)
    assert_no_glued_log_lines(text)
    # The last bar is gone: the output ends with a log line.
    assert text.endswith("\r\n") and "latest" in segments(text)[-2]


def test_backup_to_a_pipe_draws_nothing(site):
    rc, text = run(script("backup_main", [], site), tty=False, now=T0)
    assert rc == 0, text
    assert "\r" not in text and "\x1b" not in text
    for word in ("compressing", "blobs: copy", "ETA ", "B/s", "files/s", "["):
        assert word not in text, text
    lines = text.splitlines()
    assert lines and all(line.startswith("INFO: ") for line in lines), text
    assert (
        f"INFO: Please wait while backing up database file: {site['datafs']} "
        f"to {site['backup_location']}"
    ) in lines
    assert any(n.endswith(".fsz") for n in os.listdir(site["backup_location"]))


def test_quiet_on_a_terminal_draws_nothing(site):
    rc, text = run(script("backup_main", ["-q"], site), tty=True, now=T0)
    assert rc == 0, text
    assert text == ""
    # The backup was made all the same.
    assert any(n.endswith(".fsz") for n in os.listdir(site["backup_location"]))
    assert os.listdir(site["blob_backup_location"])


def _grow(datafs, seed):
    zodbgen.generate(
        os.path.dirname(datafs), transactions=60, size="3M", undos=0, seed=seed
    )


def test_restore_on_a_terminal_suspends_the_bar_for_log_lines(site):
    """A restore with ``debug`` that writes the whole Data.fs
    (``--write-all``): the recover logs a line for every file of the chain
    while its bar is drawn. The bar is cleared for each line and drawn again
    after it. Without ``--write-all`` the live Data.fs, which starts with the
    restored state, is checked under a bar of its own and kept."""
    for k in range(3):
        if k:
            _grow(site["datafs"], seed=10 + k)
        rc, text = run(script("backup_main", [], site), tty=False, now=T0 + 60 * k)
        assert rc == 0, text
    with open(site["datafs"], "rb") as f:
        backed_up = f.read()
    _grow(site["datafs"], seed=20)  # changes that the restore undoes
    rc, text = run(
        script("restore_main", ["--no-prompt", "--write-all"], site, verbose=True),
        tty=True,
        now=T0 + 3600,
    )
    assert rc == 0, text
    with open(site["datafs"], "rb") as f:
        assert f.read() == backed_up
    _grow(site["datafs"], seed=21)
    rc, kept = run(
        script("restore_main", ["--no-prompt"], site, verbose=True),
        tty=True,
        now=T0 + 3600,
    )
    assert rc == 0, kept
    with open(site["datafs"], "rb") as f:
        assert f.read() == backed_up
    checked = bars(kept, rf"checking \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}")
    assert {m.group(2) for m in checked} == {mib(len(backed_up))}, kept
    assert "INFO: Keeping the first " in kept
    drawn = bars(text, rf"recovering \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}")
    assert drawn, text
    assert {m.group(2) for m in drawn} == {mib(len(backed_up))}
    chunks = re.findall(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO: Recovered chunk \S+ : \d+ bytes, md5: [0-9a-f]{32}",
        text,
    )
    assert len(chunks) == 3, text
    for line in chunks:
        assert_whole_log_line(text, line)
    # The bar was live across a log line: drawn again right after it.
    assert any(
        re.match(r"\r\n\s*recovering \[", text[text.index(line) + len(line) :])
        for line in chunks[:-1]
    ), text
    assert_no_glued_log_lines(text)
    # The blob restore draws its own bar, in files.
    assert bars(text, r"blobs: copy \[[=> ]{30}\] (\d+)/(\d+) files, \d+ files/s, " + ETA)


def test_repozo_command_line_bar_on_a_terminal_only(site, db, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    rc, text = run(repozo("-B", "-r", repo, "-f", site["datafs"]), tty=True, now=T0)
    assert rc == 0, text
    drawn = bars(text, rf"copying \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}")
    assert drawn, text
    assert {m.group(2) for m in drawn} == {mib(db["size"])}
    # Without -Q the next backup first checks the Data.fs against the
    # repository: a phase of its own, over what the full backup covered.
    _grow(site["datafs"], seed=30)
    rc, text = run(repozo("-B", "-r", repo, "-f", site["datafs"]), tty=True, now=T0 + 60)
    assert rc == 0, text
    drawn = bars(text, rf"checking \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}")
    assert {m.group(2) for m in drawn} == {mib(db["size"])}, text
    # The increment is small (about 3 MiB): no bar for it.
    assert "copying" not in text, text
    assert len([n for n in os.listdir(repo) if n.endswith(".deltafs")]) == 1
    # Verify with -v: its "Verifying" lines are whole.
    rc, text = run(repozo("-V", "-v", "-r", repo), tty=True, now=T0 + 60)
    assert rc == 0, text
    assert bars(text, rf"verifying \[[=> ]{{30}}\] ({BYTES})/({BYTES}), ({BYTES})/s, {ETA}")
    for name in os.listdir(repo):
        if name.endswith((".fs", ".deltafs")):
            assert_whole_log_line(text, f"Verifying {repo / name}")
    # On a pipe: not a byte on stderr.
    rc, text = run(repozo("-V", "-r", repo), tty=False, now=T0 + 60)
    assert (rc, text) == (0, "")
    rc, text = run(
        repozo("-R", "-r", repo, "-o", tmp_path / "out.fs"), tty=False, now=T0 + 60
    )
    assert (rc, text) == (0, "")


def test_zip_backup_and_restore_show_archive_progress(site, tmp_path):
    """Blob archives: writing one counts its files; extracting one shows
    a spinner with the files extracted so far."""
    site = dict(
        site,
        zip_location=str(tmp_path / "zips"),
        blob_zip_location=str(tmp_path / "blobzips"),
    )
    files = blob_files(site["blobdir"])
    rc, text = run(script("zipbackup_main", [], site), tty=True, now=T0)
    assert rc == 0, text
    drawn = bars(text, r"blobs: archive \[[=> ]{30}\] (\d+)/(\d+) files, \d+ files/s, " + ETA)
    assert drawn, text
    # Every file of the blob directory, the layout marker included.
    assert {int(m.group(2)) for m in drawn} == {files}
    assert_no_glued_log_lines(text)
    rc, text = run(
        script("zip_restore_main", ["--no-prompt"], site), tty=True, now=T0 + 60
    )
    assert rc == 0, text
    # A spinner is drawn; how many frames show a count depends on how
    # fast the extraction is (the first frame may come before any file).
    assert bars(text, r"blobs: extract [|/\\ -]"), text
    counts = bars(text, r"blobs: extract [|/\\ -] (\d+) files, \d+ files/s")
    assert all(int(m.group(1)) <= files for m in counts)
    assert blob_files(site["blobdir"]) == files
    assert_no_glued_log_lines(text)
