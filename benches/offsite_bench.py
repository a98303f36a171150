"""Benchmark: ``zodb-backup offsite push`` against ``rclone copy`` to the
same S3 store, in the same run. Not a test.

    /work/main/.venv/bin/python benches/offsite_bench.py [--blobs 10000]
        [--jobs 8] [--repeat 1] [--dir bench-data/offsite] [--no-mirror] [--no-copy]
        [--zodb-backup PATH] [--rclone-arg=--fast-list ...] [--keep]

Run it with a Python that has ZODB and boto3 (the project's venv); the
``zodb-backup`` next to that interpreter is the one timed (``--zodb-backup``
to choose another). Needs a Garage binary (tests/garage.py: ``$CRB_GARAGE``
or ``$CRB_GARAGE_ROOT/bin/garage``), rclone and GNU time.

The site: ``<dir>/pristine/var/filestorage/Data.fs`` made by real ZODB
(tests/zodbgen.py, a few MB, with a few dozen real blobs) plus ``--blobs``
plain blob files added to ``var/blobstorage`` in ZODB's bushy layout
(``0x00/.../0x<oid>/0x<tid>.blob``, read-only, 1-100 KB, lognormal, 30 %
random bytes and 70 % text). ``zodb-backup backup`` (no offsite) makes the
local backup, so only the push is timed. Then, per repeat, on a fresh copy
of that site and fresh buckets of one single-node Garage:

1. first push: ``zodb-backup ... offsite push`` to bucket A, and
   ``rclone copy`` of ``var/backups`` and ``var/blobstoragebackups`` (the
   same local backup directories) to bucket B;
2. 1 % new: 1 % more blob files and one more ZODB transaction, a second
   ``zodb-backup backup`` (timed on its own, not in a ratio), then the same
   two pushes again. rclone lists and compares what bucket B has.

The second local blob backup is a new dated directory
(``blobstorage.<stamp>``, hard links to the first), so for ``rclone copy``
of the backup directories every file of it is a new path and is uploaded
again; ours sends each blob file once (by its path in the blob directory).
So that the ratio of step 2 is not only that, the "mirror" rows (unless
``--no-mirror``) time the way one would use rclone to send only what is
new: ``rclone copy`` of ``var/backups`` and of the newest blob backup's tree
to fixed places in bucket C, which rclone then lists and compares
(``--no-copy`` leaves out the bucket B rows).

rclone runs with its defaults plus ``--transfers J --checkers J``: it lists
the destination one directory at a time (the bushy layout has a directory
per oid) and reads each existing object's mtime with a HEAD. Give it
``--rclone-arg=--fast-list --rclone-arg=--size-only`` (one recursive
listing, name + size like ours) to compare with rclone at its fastest here.

Correctness, so that a fast wrong answer cannot win: after every push the
bucket is listed through Garage (boto3, the harness's own key). Bucket A
must hold every repository file of ``var/backups`` with its size, a
manifest for every blob backup, and under ``site/1/blobfiles/`` exactly
the files of the local blob backups (``.blob`` by their path, others by
path + md5), each with its size; a sample of blob objects is downloaded and
compared byte for byte. Buckets B and C must hold every regular file of the
trees rclone copied, with its size, and nothing that was not there (rclone
copy removes nothing).

Wall time, CPU time (user+system) and peak RSS of each process come from
``/usr/bin/time``; Garage runs beside it on the same machine. ``sync`` runs
(untimed) before each timed step; the two tools alternate who goes first
between repeats; with ``--repeat K`` the median is printed. Our push's INFO
lines are printed with the second at which each arrived, a rough
breakdown of where its time went.
"""

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import zodbgen  # noqa: E402
from garage import Garage  # noqa: E402

TIME = "/usr/bin/time"
PREFIX = "site"  # in every bucket
REPOZO_EXT = (".fs", ".fsz", ".deltafs", ".deltafsz", ".index", ".dat")


# --- the site ---------------------------------------------------------------


def oid_path(oid):
    return os.path.join(*[f"0x{b:02x}" for b in oid.to_bytes(8, "big")])


def add_blobs(blobdir, count, seed, first_oid):
    """``count`` blob files in the bushy layout, oids from ``first_oid`` in
    steps of 3 (so that upper directory levels are shared, as in a real
    storage), sizes 1-100 KB lognormal (median ~12 KB). Returns bytes."""
    rnd = random.Random(seed)
    total = 0
    tid0 = 0x03F0000000000000 + seed * 0x100000000
    for i in range(count):
        oid = first_oid + 3 * i
        d = os.path.join(blobdir, oid_path(oid))
        os.makedirs(d, exist_ok=True)
        size = int(min(100_000, max(1_000, rnd.lognormvariate(9.4, 1.0))))
        p = os.path.join(d, f"0x{tid0 + 17 * i:016x}.blob")
        with open(p, "wb") as f:
            f.write(zodbgen.payload(rnd, size))
        os.chmod(p, 0o444)
        total += size
    return total


def files_under(top):
    """``{relative path: size}`` of the regular files under ``top`` (symlinks
    are neither followed nor listed, as rclone copy does by default)."""
    out = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not os.path.islink(p) and os.path.isfile(p):
                out[os.path.relpath(p, top)] = st.st_size
    return out


def build_info(zodb_backup):
    """The Rust core that ``zodb-backup`` loads (its venv's Python): path,
    mtime, sha256 prefix; so that numbers can be matched to a build."""
    py = os.path.join(os.path.dirname(zodb_backup), "python")
    code = "import collective.recipe.backup._core as c; print(c.__file__)"
    try:
        path = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
    except (OSError, subprocess.CalledProcessError):
        return "(unknown build)"
    mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))
    return f"{path} ({mtime}, sha256 {digest})"


def dated_blob_backups(blobbackups):
    return sorted(n for n in os.listdir(blobbackups) if n.startswith("blobstorage.") and os.path.isdir(os.path.join(blobbackups, n)))


# --- running and timing -----------------------------------------------------


class Result:
    def __init__(self, wall, rss_mib, cpu, log, server_cpu=0.0):
        self.wall, self.rss_mib, self.cpu, self.log = wall, rss_mib, cpu, log
        self.server_cpu = server_cpu


SERVER_PID = None  # Garage's, for its CPU time during each run
STARTED = time.perf_counter()
SYNC_SECONDS = 0.0  # untimed syncs before the timed commands


def server_cpu():
    """Garage's CPU seconds (user+system) so far, from /proc."""
    if SERVER_PID is None:
        return 0.0
    try:
        with open(f"/proc/{SERVER_PID}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stamp():
    return f"{time.perf_counter() - STARTED:6.0f}s"


def run(cmd, env=None):
    """Run ``cmd`` under GNU time after an untimed ``sync``; its stderr lines
    are stamped with the second they arrived. A failure ends the benchmark."""
    global SYNC_SECONDS
    t = time.perf_counter()
    os.sync()
    SYNC_SECONDS += time.perf_counter() - t
    s0 = server_cpu()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [TIME, "-f", "RSS_KB=%M CPU=%U+%S", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = [(time.perf_counter() - t0, line.rstrip("\n")) for line in p.stderr]
    rc = p.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        text = "\n".join(f"{t:7.2f} {x}" for t, x in lines)
        raise SystemExit(f"failed ({rc}): {' '.join(cmd)}\n{text}")
    stat = [x for _, x in lines if x.startswith("RSS_KB=")][-1]
    rss, cpu = stat.split()
    user, system = cpu.split("=", 1)[1].split("+")
    log = [(t, x) for t, x in lines if not x.startswith("RSS_KB=")]
    return Result(wall, int(rss.split("=")[1]) / 1024, float(user) + float(system), log, server_cpu() - s0)


def combined(rs):
    """One Result for commands run one after the other."""
    return Result(
        sum(r.wall for r in rs),
        max(r.rss_mib for r in rs),
        sum(r.cpu for r in rs),
        [],
        sum(r.server_cpu for r in rs),
    )


# --- checks -----------------------------------------------------------------


def md5_of(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_ours(garage, bucket, var, sample, seed):
    """What ``offsite push`` must have put into ``bucket``; raises on the
    first difference. Returns the number of objects."""
    listing = garage.list_objects(bucket, PREFIX + "/")
    problems = []
    # Repository files.
    fsdir = f"{PREFIX}/1/backup/filestorage"
    repo = os.path.join(var, "backups")
    names = [n for n in os.listdir(repo) if n.endswith(REPOZO_EXT)]
    if not names:
        problems.append("no local repository files")
    for n in names:
        want = os.path.getsize(os.path.join(repo, n))
        got = listing.get(f"{fsdir}/{n}")
        if got != want:
            problems.append(f"{fsdir}/{n}: {got} bytes in the store, {want} locally")
    # Blob backups: a manifest each, and the union of their files.
    blobbackups = os.path.join(var, "blobstoragebackups")
    entries = dated_blob_backups(blobbackups)
    bdir = f"{PREFIX}/1/backup/blobstorage"
    expected = {}
    for e in entries:
        if f"{bdir}/{e}.manifest" not in listing:
            problems.append(f"no manifest {bdir}/{e}.manifest")
        root = os.path.join(blobbackups, e, "blobstorage")
        for rel, size in files_under(root).items():
            if rel.endswith(".blob"):
                key = f"{PREFIX}/1/blobfiles/{rel}"
            else:
                key = f"{PREFIX}/1/blobfiles/{rel}.{md5_of(os.path.join(root, rel))}"
            expected[key] = (size, os.path.join(root, rel))
    newest = entries[-1]
    newest_files = files_under(os.path.join(blobbackups, newest, "blobstorage"))
    for key, (size, _p) in expected.items():
        got = listing.get(key)
        if got != size:
            problems.append(f"{key}: {got} bytes in the store, {size} locally")
    stored = {k for k in listing if k.startswith(f"{PREFIX}/1/blobfiles/")}
    extra = stored - set(expected)
    if extra:
        problems.append(f"{len(extra)} blob objects no local file has, e.g. {sorted(extra)[:3]}")
    # Contents of a sample.
    rnd = random.Random(seed)
    for key in rnd.sample(sorted(expected), min(sample, len(expected))):
        with open(expected[key][1], "rb") as f:
            if garage.get(bucket, key) != f.read():
                problems.append(f"{key}: content differs from {expected[key][1]}")
    if problems:
        raise SystemExit(f"bucket {bucket} (ours) is wrong:\n  " + "\n  ".join(problems[:20]))
    return len(listing), len(newest_files)


def check_copy(garage, bucket, trees, before=None):
    """``trees``: ``{key prefix: local dir}`` that rclone copied. Every regular
    file must be there with its size; any other object must be one that a
    previous check saw (rclone copy never deletes). Returns the listing."""
    listing = garage.list_objects(bucket, PREFIX + "/")
    expected = {}
    for prefix, top in trees.items():
        for rel, size in files_under(top).items():
            expected[f"{prefix}/{rel}"] = size
    problems = [
        f"{k}: {listing.get(k)} bytes in the store, {s} locally" for k, s in expected.items() if listing.get(k) != s
    ]
    extra = set(listing) - set(expected) - set(before or ())
    if extra:
        problems.append(f"{len(extra)} unexpected objects, e.g. {sorted(extra)[:3]}")
    if problems:
        raise SystemExit(f"bucket {bucket} (rclone) is wrong:\n  " + "\n  ".join(problems[:20]))
    return listing


# --- the benchmark ----------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blobs", type=int, default=10_000, help="blob files added to the site (default 10000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of everything; the median is printed")
    ap.add_argument("--jobs", type=int, default=8, help="--offsite-jobs, and rclone's --transfers/--checkers")
    ap.add_argument("--dir", default=os.path.join(ROOT, "bench-data", "offsite"))
    ap.add_argument("--datafs-size", default="4M", help="size of the Data.fs zodbgen makes (default 4M)")
    ap.add_argument("--no-mirror", action="store_true", help="skip the rclone mirror rows (bucket C)")
    ap.add_argument("--no-copy", action="store_true", help="skip the rclone copy of the backup dirs (bucket B)")
    ap.add_argument("--zodb-backup", default=os.path.join(os.path.dirname(sys.executable), "zodb-backup"))
    ap.add_argument("--rclone", default=shutil.which("rclone") or "rclone")
    ap.add_argument("--rclone-arg", action="append", default=[], help="extra rclone argument (repeatable)")
    ap.add_argument("--sample", type=int, default=50, help="blob objects of bucket A compared byte for byte")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    a = ap.parse_args(argv)
    for tool in (a.zodb_backup, a.rclone, TIME):
        if not (shutil.which(tool) or os.access(tool, os.X_OK)):
            raise SystemExit(f"not found: {tool}")

    print(f"zodb-backup: {a.zodb_backup}; core: {build_info(a.zodb_backup)}")
    base = os.path.abspath(a.dir)
    shutil.rmtree(base, ignore_errors=True)
    pristine = os.path.join(base, "pristine")
    var = os.path.join(pristine, "var")
    t0 = time.perf_counter()
    info = zodbgen.generate(
        os.path.join(var, "filestorage"), transactions=200, size=a.datafs_size, blob_dir=os.path.join(var, "blobstorage")
    )
    real = len(files_under(os.path.join(var, "blobstorage")))
    first_oid = 0x10000
    nbytes = add_blobs(os.path.join(var, "blobstorage"), a.blobs, seed=1, first_oid=first_oid)
    print(
        f"site: Data.fs {info['size'] / 2**20:.1f} MiB ({info['objects']} objects, {real} real blob files) "
        f"+ {a.blobs} blob files ({nbytes / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f}s at {pristine}"
    )

    def zb(site, *extra):
        v = os.path.join(site, "var")
        return [
            a.zodb_backup,
            "--datafs",
            os.path.join(v, "filestorage", "Data.fs"),
            "--blob-storage",
            os.path.join(v, "blobstorage"),
            *extra,
        ]

    b1 = run(zb(pristine, "backup"))
    print(f"{stamp()} local backup 1 (no offsite): {b1.wall:.2f}s, {b1.rss_mib:.0f} MiB")

    results = {}  # row -> who -> [Result]
    rss_ours = []

    def record(row, who, r):
        results.setdefault(row, {}).setdefault(who, []).append(r)

    global SERVER_PID
    garage = Garage()
    SERVER_PID = garage.proc.pid
    rconf = os.path.join(base, "rclone.conf")
    open(rconf, "w").close()
    try:
        key_id, secret = garage.create_key("bench")
        env_ours = dict(
            os.environ, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_EC2_METADATA_DISABLED="true"
        )
        env_rclone = dict(
            os.environ,
            RCLONE_CONFIG=rconf,
            RCLONE_CONFIG_GARAGE_TYPE="s3",
            RCLONE_CONFIG_GARAGE_PROVIDER="Other",
            RCLONE_CONFIG_GARAGE_ENDPOINT=garage.endpoint,
            RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=key_id,
            RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=secret,
            RCLONE_CONFIG_GARAGE_REGION=garage.region,
            RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE="true",
        )
        # rclone's S3 backend (aws-sdk-go) fails on AWS_CA_BUNDLE with its
        # own HTTP transport ("LoadCustomCABundleError"); the endpoint is
        # plain http anyway.
        env_rclone.pop("AWS_CA_BUNDLE", None)
        rflags = ["-q", "--transfers", str(a.jobs), "--checkers", str(a.jobs), *a.rclone_arg]

        for rep in range(a.repeat):
            site = os.path.join(base, f"run{rep}")
            subprocess.run(["cp", "-a", pristine, site], check=True)
            v = os.path.join(site, "var")
            ba, bb, bc = (garage.create_bucket(f"bench-{x}-{rep}") for x in "abc")
            for bkt in (ba, bb, bc):
                garage.allow(bkt, key_id)
            push = zb(
                site,
                "--offsite",
                f"s3://{ba}/{PREFIX}",
                "--offsite-endpoint",
                garage.endpoint,
                "--offsite-region",
                garage.region,
                "--offsite-jobs",
                str(a.jobs),
                "offsite",
                "push",
            )
            dirs = ["backups", "blobstoragebackups"]

            def rclone_literal():
                # One process per directory, as one would script it; the
                # times add up.
                return combined(
                    [
                        run([a.rclone, "copy", *rflags, os.path.join(v, d), f"garage:{bb}/{PREFIX}/{d}"], env=env_rclone)
                        for d in dirs
                    ]
                )

            def mirror_trees():
                newest = dated_blob_backups(os.path.join(v, "blobstoragebackups"))[-1]
                return {
                    f"{PREFIX}/backups": os.path.join(v, "backups"),
                    f"{PREFIX}/blobs": os.path.join(v, "blobstoragebackups", newest, "blobstorage"),
                }

            def rclone_mirror():
                return combined(
                    [run([a.rclone, "copy", *rflags, top, f"garage:{bc}/{key}"], env=env_rclone) for key, top in mirror_trees().items()]
                )

            seen_b, seen_c = {}, {}
            for step in ("first push", "1% new push"):
                if step == "1% new push":
                    new = max(1, a.blobs // 100)
                    add_blobs(
                        os.path.join(v, "blobstorage"), new, seed=2, first_oid=first_oid + 3 * a.blobs + 3
                    )
                    zodbgen.generate(
                        os.path.join(v, "filestorage"), transactions=5, undos=0, blobs=False, seed=2
                    )
                    record("local backup 2 (not in a ratio)", "ours", run(zb(site, "backup")))
                order = ["ours"] + ([] if a.no_copy else ["rclone"]) + ([] if a.no_mirror else ["mirror"])
                if rep % 2:
                    order.reverse()
                for who in order:
                    if who == "ours":
                        r = run(push, env=env_ours)
                        rss_ours.append(r.rss_mib)
                        nobj, nnewest = check_ours(garage, ba, v, a.sample, seed=rep)
                        print(f"{stamp()} [{rep}] {step}: ours {r.wall:.2f}s (Garage CPU {r.server_cpu:.1f}s); bucket A ok: {nobj} objects, newest blob backup {nnewest} files")
                        for t, line in r.log:
                            print(f"      {t:7.2f}s {line}")
                        record(step, "ours", r)
                    elif who == "rclone":
                        r = rclone_literal()
                        seen_b = check_copy(garage, bb, {f"{PREFIX}/{d}": os.path.join(v, d) for d in dirs}, seen_b)
                        print(f"{stamp()} [{rep}] {step}: rclone copy {' + '.join(dirs)} {r.wall:.2f}s (Garage CPU {r.server_cpu:.1f}s); bucket B ok: {len(seen_b)} objects")
                        record(step, "rclone", r)
                    else:
                        r = rclone_mirror()
                        seen_c = check_copy(garage, bc, mirror_trees(), seen_c)
                        print(f"{stamp()} [{rep}] {step}: rclone mirror {r.wall:.2f}s (Garage CPU {r.server_cpu:.1f}s); bucket C ok: {len(seen_c)} objects")
                        record(step, "mirror", r)
            if not a.keep:
                shutil.rmtree(site, ignore_errors=True)
    finally:
        garage.close()

    def med(rs, attr):
        return statistics.median(getattr(r, attr) for r in rs)

    extra = f", rclone {' '.join(a.rclone_arg)}" if a.rclone_arg else ""
    print(f"\n{a.blobs} blob files, --jobs {a.jobs}{extra}, repeat {a.repeat} (median); ratio = rclone / ours (wall)")
    print("CPU = user+system s of the client process(es); Garage = the server's CPU s during the step")
    print(
        f"{'step':42} {'ours s':>8} {'rclone s':>9} {'ratio':>7}   {'CPU ours':>8} {'rclone':>7}"
        f"   {'Garage ours':>11} {'rclone':>7}"
    )
    for step in ("first push", "1% new push"):
        r = results[step]
        o, oc, og = (med(r["ours"], x) for x in ("wall", "cpu", "server_cpu"))
        if "rclone" not in r and "mirror" not in r:
            print(f"{step + ', ours only':42} {o:8.2f} {'-':>9} {'-':>7}   {oc:8.2f} {'-':>7}   {og:11.2f} {'-':>7}")
        for who, label in (("rclone", "rclone copy backup dirs"), ("mirror", "rclone mirror (newest tree)")):
            if who not in r:
                continue
            t, tc, tg = (med(r[who], x) for x in ("wall", "cpu", "server_cpu"))
            print(
                f"{step + ', ' + label:42} {o:8.2f} {t:9.2f} {t / o:6.1f}x   {oc:8.2f} {tc:7.2f}"
                f"   {og:11.2f} {tg:7.2f}"
            )
    lb = results["local backup 2 (not in a ratio)"]["ours"]
    print(f"{'local backup 2 (not in a ratio)':42} {med(lb, 'wall'):8.2f}")
    rss_rclone = [x.rss_mib for row in results.values() for who, rs in row.items() if who != "ours" for x in rs]
    theirs = f"{max(rss_rclone):.0f} MiB" if rss_rclone else "-"
    print(f"\npeak RSS: our push {max(rss_ours):.0f} MiB, rclone {theirs}")
    print(f"core: {build_info(a.zodb_backup)}")
    print(f"untimed: sync before each timed command {SYNC_SECONDS:.0f}s, whole run {time.perf_counter() - STARTED:.0f}s")
    print(f"({os.cpu_count()} CPUs, Garage on the same machine; python {sys.version.split()[0]}; {a.zodb_backup})")
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
