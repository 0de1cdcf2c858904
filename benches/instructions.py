#!/usr/bin/env python3
"""Instructions per operation of each decorator against the undecorated pool, under callgrind.

Timings on a shared machine move by 10% and more between runs; the number of instructions an
operation executes does not. Each subject runs the bench runner's workload twice under
`valgrind --tool=callgrind`, at two scales, and the difference of the two totals divided by the
difference in operations is what one operation costs (start-up, set-up and the warm-up cancel
out). Instructions are not time (an instruction the pool's latency hides costs nothing), but a
ratio of them is exact and repeatable.

    cargo build --profile bench -p domalloc-benches --bin domalloc-bench
    # (the criterion benches' profile, thin LTO; its runner lands in target/release)
    python3 benches/instructions.py [--json out.json] [--runner path] [--subjects pool,sampling]
                                     [--scales 0.2,0.4]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release",
                      "domalloc-bench")
SUBJECTS = ["pool", "fault-off", "counting", "guarded", "tracing", "sampling", "guard-pages"]
# (workload, size, operations per unit of --scale per sample): pairs make 2,000,000 pairs per
# unit, churn 1,000,000 replacements; one sample plus the warm-up run.
CASES = [("pairs", "16", 2_000_000), ("pairs", "256", 2_000_000), ("churn", None, 1_000_000)]
SCALES = (0.02, 0.04)
RUNS = 2  # the warm-up and one sample


def total(runner, allocator, workload, size, scale):
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", runner,
           "--allocator", allocator, "--workload", workload, "--samples", "1",
           "--scale", str(scale), "--threads", "1"]
    if size:
        cmd += ["--sizes", size]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if not m:
        sys.exit(f"instructions.py: no callgrind total in:\n{out.stderr}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--runner", default=RUNNER)
    ap.add_argument("--subjects", help="comma-separated allocators, pool first (default: all)")
    ap.add_argument("--scales", help="the two scales, comma-separated (default: 0.02,0.04)")
    args = ap.parse_args()
    global SCALES
    if args.scales:
        SCALES = tuple(float(x) for x in args.scales.split(","))
    subjects = args.subjects.split(",") if args.subjects else SUBJECTS
    if not shutil.which("valgrind"):
        sys.exit("instructions.py: needs valgrind")
    results = []
    for workload, size, per_unit in CASES:
        ops = (SCALES[1] - SCALES[0]) * per_unit * RUNS
        per_op = {}
        for s in subjects:
            low, high = (total(args.runner, s, workload, size, sc) for sc in SCALES)
            per_op[s] = (high - low) / ops
        label = workload + (f" {size} B" if size else "")
        for s in subjects:
            row = {"case": label, "subject": s, "instructions": round(per_op[s], 1),
                   "ratio": round(per_op[s] / per_op["pool"], 3)}
            results.append(row)
            print(f"{label:12} {s:10} {row['instructions']:7.1f}  {row['ratio']:5.2f}x")
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "per_op": results}, f, indent=1)


if __name__ == "__main__":
    main()
