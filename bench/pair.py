#!/usr/bin/env python3
"""Pairs two builds of conductor's throughput example, run after run, on one machine.

A change that must not cost speed is checked against the code before it, side by side:
these machines are noisy, so only ratios measured in one run mean anything.

    git worktree add /tmp/before main && (cd /tmp/before && cargo build --release --example throughput)
    cargo build --release --example throughput
    python3 bench/pair.py /tmp/before/target/release/examples/throughput target/release/examples/throughput

Each round runs every case with both binaries, alternating which goes first. Prints, per
case, the median jobs/s of each (in-process: the example's own clock; whole: the wall
clock of the command) and the median of the per-round ratios after/before.
"""
import argparse
import json
import statistics
import subprocess
import time

CASES = {
    "W1: 100k trivial jobs": ["--jobs", "100000", "--workers", "2"],
    "1M trivial jobs": ["--jobs", "1000000", "--workers", "2"],
    "prefetch(1), 20k jobs": ["--jobs", "20000", "--workers", "2", "--prefetch", "1"],
    "NATS, 20k trivial jobs": ["--jobs", "20000", "--workers", "2", "--nats", "nats://127.0.0.1:4222"],
}


def run(binary, args):
    started = time.perf_counter()
    done = subprocess.run([binary] + args, capture_output=True, text=True, timeout=300, check=True)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["completed"] != result["jobs"]:
        raise SystemExit(f"{binary} {args}: {result['completed']} of {result['jobs']} completed")
    return result["jobs_per_sec"], result["jobs"] / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    cases = {k: v for k, v in CASES.items() if not args.only or args.only in k}
    binaries = {"before": args.before, "after": args.after}
    results = {case: {name: [] for name in binaries} for case in cases}
    for round_ in range(args.rounds):
        for case, case_args in cases.items():
            order = list(binaries) if round_ % 2 == 0 else list(reversed(binaries))
            for name in order:
                results[case][name].append(run(binaries[name], case_args))
    print(f"{args.rounds} rounds, medians; ratio = median over rounds of after/before")
    print("| case | before in-process | after in-process | ratio | before whole | after whole | ratio |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        before, after = results[case]["before"], results[case]["after"]
        cells = []
        for k in (0, 1):
            b = statistics.median(r[k] for r in before)
            a = statistics.median(r[k] for r in after)
            ratio = statistics.median(x[k] / y[k] for x, y in zip(after, before))
            cells += [f"{b:,.0f}", f"{a:,.0f}", f"{ratio:.3f}"]
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
