"""Helpers shared by the benchmark scripts: run a command in a child
process and measure its wall time and peak RSS (from ``wait4``)."""

import os
import subprocess
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def run(argv, repeat=3, **kwargs):
    """Run ``argv`` ``repeat`` times; return (best wall seconds, max peak RSS
    in MiB). Fails loudly when the command fails.

    The peak RSS comes from GNU time's report (``/usr/bin/time -f``): a
    child forked from this (large) Python process inherits its RSS high-water
    mark in ``wait4``'s rusage, but time's own child does not."""
    best = None
    peak = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "RSS_KB=%M", *argv], stderr=subprocess.PIPE, text=True, **kwargs
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"benchmark command failed ({proc.returncode}): {argv}")
        rss_kb = int(proc.stderr.rsplit("RSS_KB=", 1)[1].split()[0])
        best = wall if best is None else min(best, wall)
        peak = max(peak, rss_kb / 1024)
    return best, peak


def python(code):
    return [sys.executable, "-c", code]


def _find_time():
    if os.path.exists("/usr/bin/time"):
        return "/usr/bin/time"
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=False,
                       stdout=subprocess.DEVNULL)
    if os.path.exists("/usr/bin/time"):
        return "/usr/bin/time"
    raise SystemExit("the benchmarks need GNU time (/usr/bin/time): apt-get install time")


TIME = _find_time()
