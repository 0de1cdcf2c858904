#!/usr/bin/env python3
"""Overhead ratios of the decorators against the undecorated pool, measured interleaved.

On a shared machine a subject measured a few seconds after its reference can land in another
"mode" of the machine (criterion's groups run one subject after another). Here every round runs
each subject once, each right after a run of the reference of its own, as separate processes of
the bench runner, and a ratio is taken only between such a pair; the report is the median and
the spread of the per-round ratios.

    cargo build --profile bench -p domalloc-benches --bin domalloc-bench
    # (the criterion benches' profile, thin LTO; its runner lands in target/release)
    python3 benches/ratios.py [--rounds 9] [--json out.json] [--runner path]
        [--subjects sampling,tracing] [--cases pairs:16,churn,pyobjects,btree,json]

Each run's `DOMALLOC_BENCH_ALLOCATOR` names its allocator, so the workloads on `std` types
(`pyobjects`, `btree`, `json`) run on it as the process's global allocator.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

# The runner in the workspace's target directory (this file lives in `benches/`).
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                      "domalloc-bench")
SUBJECTS = ["guarded", "counting", "fault-off", "tracing", "sampling"]
CASES = [("pairs", "16"), ("pairs", "256"), ("churn", None)]


def measure(runner, allocator, workload, size, scale):
    cmd = [runner, "--allocator", allocator, "--workload", workload, "--samples", "3",
           "--scale", str(scale), "--threads", "1"]
    if size:
        cmd += ["--sizes", size]
    env = dict(os.environ, DOMALLOC_BENCH_ALLOCATOR=allocator)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ns"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--json")
    ap.add_argument("--runner", default=RUNNER, help="the bench runner (a copy, to rebuild meanwhile)")
    ap.add_argument("--subjects", help="comma-separated allocators (default: every decorator)")
    ap.add_argument("--cases", help="comma-separated workload[:size] (default: pairs:16,pairs:256,churn)")
    args = ap.parse_args()
    subjects = args.subjects.split(",") if args.subjects else SUBJECTS
    cases = ([tuple(c.split(":")) if ":" in c else (c, None) for c in args.cases.split(",")]
             if args.cases else CASES)
    results = []
    for workload, size in cases:
        ratios = {s: [] for s in subjects}
        for _ in range(args.rounds):
            for s in subjects:
                pool = measure(args.runner, "pool", workload, size, args.scale)
                ratios[s].append(measure(args.runner, s, workload, size, args.scale) / pool)
        label = workload + (f" {size} B" if size else "")
        for s in subjects:
            r = sorted(ratios[s])
            row = {"case": label, "subject": s, "median": statistics.median(r),
                   "low": r[0], "high": r[-1], "rounds": len(r)}
            results.append(row)
            print(f"{label:12} {s:10} {row['median']:6.2f}x  (rounds {row['low']:.2f}-{row['high']:.2f}x)")
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "ratios": results}, f, indent=1)


if __name__ == "__main__":
    main()
