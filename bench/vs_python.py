#!/usr/bin/env python3
"""W1 of one or more builds of conductor against Python's imap_unordered, paired in one run.

    cargo build --release --example throughput
    python3 bench/vs_python.py target/release/examples/throughput [other builds...] --rounds 8

Each round runs every build and Python (`bench/python/peers.py --system imap1000`) on
100,000 trivial jobs with 2 workers, alternating the order. Prints, per build, the median
of the per-round ratios build/Python, in-process (the programs' own clocks) and whole
process (the wall clock of the command).
"""
import argparse
import json
import statistics
import subprocess
import time

PYTHON = ["python3", "bench/python/peers.py", "--system", "imap1000", "--jobs", "100000"]


def run(command):
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout
    wall = time.perf_counter() - started
    result = json.loads(out.strip().splitlines()[-1])
    if result["completed"] != result["jobs"]:
        raise SystemExit(f"{command}: {result['completed']} of {result['jobs']} completed")
    return result["jobs_per_sec"], result["jobs"] / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    commands = {b: [b, "--jobs", "100000", "--workers", "2"] for b in args.builds}
    commands["python"] = PYTHON
    results = {name: [] for name in commands}
    for round_ in range(args.rounds):
        order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
        for name in order:
            results[name].append(run(commands[name]))
    python = results.pop("python")
    print(f"{args.rounds} rounds; Python in-process median {statistics.median(p[0] for p in python):,.0f} jobs/s")
    print("| build | jobs/s in-process | vs Python in-process | vs Python whole process |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        inside = statistics.median(r[0] / p[0] for r, p in zip(runs, python))
        whole = statistics.median(r[1] / p[1] for r, p in zip(runs, python))
        print(f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | {inside:.2f}x | {whole:.2f}x |")


if __name__ == "__main__":
    main()
