#!/usr/bin/env python3
"""Paired timing of two allocators on the runner's workloads: the runs alternate (A, B, A, B, ...)
so that both see the same moments of a noisy machine, and each (workload, allocator) reports the
median of its runs' medians, with the ratio B / A.

    cargo build --profile bench -p domalloc-benches --bin domalloc-bench
    python3 benches/paired.py --base pool --subject guard-pages [--rounds 7] [--scale 0.5]
"""

import argparse
import json
import os
import statistics
import subprocess

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                      "domalloc-bench")
# (workload, extra arguments): the quick suite's runner workloads.
CASES = [("pairs", ["--sizes", "16"]), ("pairs", ["--sizes", "256"]), ("churn", []),
         ("pyobjects", []), ("btree", []), ("json", []), ("prodcons", ["--threads", "2"]),
         ("larson", ["--threads", "2"])]


def run(runner, allocator, workload, extra, scale):
    cmd = [runner, "--allocator", allocator, "--workload", workload, "--samples", "3",
           "--scale", str(scale)] + extra
    if "--threads" not in extra:
        cmd += ["--threads", "1"]
    env = dict(os.environ, DOMALLOC_BENCH_ALLOCATOR=allocator)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line)["median_ns"] for line in out.splitlines() if line.startswith("{")][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="pool")
    ap.add_argument("--subject", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--runner", default=RUNNER)
    args = ap.parse_args()
    for workload, extra in CASES:
        times = {args.base: [], args.subject: []}
        for _ in range(args.rounds):
            for a in (args.base, args.subject):
                times[a].append(run(args.runner, a, workload, extra, args.scale))
        base = statistics.median(times[args.base])
        subject = statistics.median(times[args.subject])
        label = workload + " " + " ".join(extra)
        print(f"{label:22} {args.base} {base:9.2f} ns  {args.subject} {subject:9.2f} ns  "
              f"{subject / base:5.3f}x", flush=True)


if __name__ == "__main__":
    main()
