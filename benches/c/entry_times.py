#!/usr/bin/env python3
"""Times the loops of benches/c/entry.c under each preloaded library, in alternating rounds.

Usage: python3 benches/c/entry_times.py MODES ROUNDS ITERATIONS
  MODES: comma-separated entry.c modes (calloc, realloc, realloc_move, memalign).
  The libraries: DOMALLOC_NEW (default target/release/libdomalloc.so), DOMALLOC_BASE (optional: a
  build to compare with), Debian's mimalloc and jemalloc where installed, and glibc (no preload).
Prints ns an iteration (median of the rounds; process start-up included) for each library, the
paired median of new / base, and new over the best peer.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
modes = sys.argv[1].split(",")
rounds = int(sys.argv[2])
n = sys.argv[3]

libs = {"new": os.environ.get("DOMALLOC_NEW", "target/release/libdomalloc.so")}
if os.environ.get("DOMALLOC_BASE"):
    libs["base"] = os.environ["DOMALLOC_BASE"]
for name, path in (
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
):
    if os.path.exists(path):
        libs[name] = path
libs["glibc"] = ""
peers = [l for l in libs if l not in ("new", "base")]

exe = os.path.join(tempfile.mkdtemp(), "entry")
subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(here, "entry.c")], check=True)

res = {}
for r in range(rounds):
    order = list(libs) if r % 2 == 0 else list(reversed(libs))
    for m in modes:
        for lib in order:
            env = dict(os.environ, LD_PRELOAD=os.path.abspath(libs[lib]) if libs[lib] else "")
            t = time.perf_counter()
            subprocess.run([exe, n, m], env=env, check=True)
            res.setdefault((m, lib), []).append((time.perf_counter() - t) / int(n) * 1e9)

for m in modes:
    line = "  ".join("%s %.2f" % (l, statistics.median(res[(m, l)])) for l in libs)
    new = res[(m, "new")]
    if "base" in libs:
        paired = statistics.median(a / b for a, b in zip(new, res[(m, "base")]))
        line += "  new/base %.3f" % paired
    best = min(statistics.median(res[(m, l)]) for l in peers)
    line += "  new/best-peer %.3f" % (statistics.median(new) / best)
    print(m, line)
