"""Benchmark: our repozo against ZODB's, in the same run, on generated
storages. Not a test.

    .venv/bin/python benches/repozo_bench.py [--sizes 200M,1G] [--data bench-data]
        [--level N] [--repeat 1] [--core]

For each size: a storage made by real ZODB (tests/zodbgen.py, cached under
``--data``), read once to warm the page cache, then each step is run with
both tools on the same Data.fs (repozo through tests/repozo_at.py with a
fixed clock, ours through ``python -m collective.recipe.backup.repozo`` with
CRB_REPOZO_NOW), and we print wall time, ratio (repozo / ours) the peak
RSS and CPU time (user+system) of each process (``/usr/bin/time``). On a
shared machine the CPU times are the steadier numbers; ours can use every
core, so its wall time on an idle machine approaches CPU / cores. Recovered files are compared with
``cmp``-like equality, so a fast wrong answer cannot win.

Equal durability: ours fsyncs what it writes before naming it, repozo
does not, so a step that writes is timed for repozo up to and including a
``sync`` (the ``sync`` before every timed step is not timed). With
``--repeat N`` each step runs N times per tool, the tools alternating who
goes first, and the median of the N times is printed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import zodbgen  # noqa: E402


PY = sys.executable
T0 = 1_700_000_000


def run(cmd, env=None, sync_after=False):
    """Run cmd under /usr/bin/time; return (wall s, peak RSS MiB, CPU s).
    ``sync_after``: the wall time includes a ``sync`` after the command."""
    os.sync()
    t = time.perf_counter()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "RSS_KB=%M CPU=%U+%S", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if sync_after:
        os.sync()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    line = [x for x in p.stderr.splitlines() if x.startswith("RSS_KB=")][-1]
    rss, cpu = line.split()
    user, system = cpu.split("=")[1].split("+")
    return wall, int(rss.split("=")[1]) / 1024, float(user) + float(system)


class Tool:
    def __init__(self, name, level=None):
        self.name = name
        self.level = level
        self.tick = 0

    def cmd(self, args):
        self.tick += 10
        now = T0 + self.tick
        if self.name == "repozo":
            return [PY, os.path.join(ROOT, "tests", "repozo_at.py"), str(now), *args], None
        env = dict(os.environ, CRB_REPOZO_NOW=str(now))
        if self.level is not None:
            env["CRB_REPOZO_GZIP_LEVEL"] = str(self.level)
        return [PY, "-m", "collective.recipe.backup.repozo", *args], env

    def __call__(self, *args, writes=False):
        cmd, env = self.cmd([str(a) for a in args])
        return run(cmd, env, sync_after=writes and self.name == "repozo")


def median(rs):
    """The median run (by wall time) of a list of (wall, RSS, CPU), with the
    largest RSS of them all."""
    rs = sorted(rs)
    m = rs[len(rs) // 2]
    return (m[0], max(r[1] for r in rs), m[2])


def dir_size(path, suffix):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(suffix))


def same_file(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def bench(size, data, level, repeat, core=False):
    pristine = os.path.join(data, f"db-{size}")
    if not os.path.exists(os.path.join(pristine, "Data.fs")):
        print(f"generating {size} storage in {pristine} ...", flush=True)
        transactions = 4000 if size.upper().endswith("M") else 10000
        zodbgen.generate(pristine, transactions=transactions, size=size, undos=10, blobs=False, seed=1)
    work = os.path.join(data, f"run-{size}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    datafs = os.path.join(work, "Data.fs")
    shutil.copyfile(os.path.join(pristine, "Data.fs"), datafs)
    shutil.copyfile(os.path.join(pristine, "Data.fs.index"), datafs + ".index")
    warm(datafs)
    tools = {"repozo": Tool("repozo"), "ours": Tool("ours", level)}
    for name in tools:
        for sub in ("plain", "gz"):
            os.makedirs(os.path.join(work, name, sub))
    rows = []

    def step(label, *args, before=None, writes=True):
        runs = {name: [] for name in tools}
        for i in range(repeat):
            order = list(tools.items())
            if i % 2:
                order.reverse()
            for name, tool in order:
                if before:
                    before(name)
                r = tool(*[a.format(w=os.path.join(work, name)) if isinstance(a, str) else a for a in args],
                         writes=writes)
                runs[name].append(r)
        best = {name: median(rs) for name, rs in runs.items()}
        rows.append((label, best["repozo"], best["ours"]))
        print(f"  {label:34} repozo {best['repozo'][0]:7.2f}s  ours {best['ours'][0]:7.2f}s"
              f"  ratio {best['repozo'][0] / best['ours'][0]:6.1f}x"
              f"  RSS {best['repozo'][1]:3.0f} / {best['ours'][1]:3.0f} MiB"
              f"  CPU {best['repozo'][2]:6.2f} / {best['ours'][2]:6.2f} s", flush=True)

    def clean(sub):
        def do(name):
            d = os.path.join(work, name, sub)
            shutil.rmtree(d)
            os.makedirs(d)
        return do

    print(f"== {size}: Data.fs {os.path.getsize(datafs):,} bytes, level {level or 'default'} ==", flush=True)
    step("full, plain (-B -F)", "-B", "-F", "-r", "{w}/plain", "-f", datafs, before=clean("plain"))
    step("full, gzip (-B -F -z)", "-B", "-F", "-z", "-r", "{w}/gz", "-f", datafs, before=clean("gz"))
    sizes = {n: dir_size(os.path.join(work, n, "gz"), ".fsz") for n in tools}
    print(f"  {'gzip output':34} repozo {sizes['repozo']:,} B  ours {sizes['ours']:,} B"
          f"  ours/repozo {sizes['ours'] / sizes['repozo']:.4f}", flush=True)
    if not core:
        step("no change, default (-B)", "-B", "-r", "{w}/plain", "-f", datafs, writes=False)
        step("no change, quick (-B -Q)", "-B", "-Q", "-r", "{w}/plain", "-f", datafs, writes=False)
        print("  appending ~10 MB ...", flush=True)
        zodbgen.generate(work, transactions=200, size="10M", undos=0, blobs=False, seed=2)
        warm(datafs)
        # Each tool makes one incremental per repository; repeats would find
        # nothing to do, so this step runs once.
        rep = repeat
        repeat = 1
        step("incremental +10 MB, quick (-B -Q)", "-B", "-Q", "-r", "{w}/plain", "-f", datafs)
        step("incremental +10 MB, quick gzip", "-B", "-Q", "-z", "-r", "{w}/gz", "-f", datafs)
        repeat = rep
        step("verify (-V)", "-V", "-r", "{w}/plain", writes=False)
        step("verify gzip (-V)", "-V", "-r", "{w}/gz", writes=False)
    step("recover, plain (-R -o)", "-R", "-r", "{w}/plain", "-o", "{w}/out.fs")
    step("recover, gzip (-R -o)", "-R", "-r", "{w}/gz", "-o", "{w}/outz.fs")
    outs = ("out.fs", "outz.fs")
    if not core:
        step("recover, plain, verify (-R -w)", "-R", "-w", "-r", "{w}/plain", "-o", "{w}/outw.fs")
        outs += ("outw.fs",)
    end = zodbgen.describe(datafs)["end"]
    for name in tools:
        for out in outs:
            p = os.path.join(work, name, out)
            assert os.path.getsize(p) == end, (name, out)
        assert same_file(os.path.join(work, name, "out.fs"), os.path.join(work, "repozo", "out.fs"))
        assert same_file(os.path.join(work, name, "outz.fs"), os.path.join(work, "repozo", "out.fs"))
    print("  recovered files identical for both tools", flush=True)
    shutil.rmtree(work)
    return rows, sizes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200M")
    p.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    p.add_argument("--level", type=int, default=None, help="our gzip level (default: the built-in)")
    p.add_argument("--repeat", type=int, default=1, help="runs per step; the median is kept")
    p.add_argument("--core", action="store_true",
                   help="only the full backups and the recovers (the steps of the speed targets)")
    a = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for size in a.sizes.split(","):
        bench(size, a.data, a.level, a.repeat, a.core)
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
