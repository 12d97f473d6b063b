#!/usr/bin/env python3
"""W5: jobs of uneven lengths, conductor side by side with Python's Pool in one run.

    python3 bench/w5.py              # 3 interleaved rounds (~4 min on 2 cores)
    python3 bench/w5.py --rounds 1

For each case every system runs the same durations (written to
bench/results/w5-durations/), 2 workers, default settings. Reported: the median
makespan of each system and its ratio to the ideal (greedy list scheduling over the
known durations: each job, in order, to the worker free first), and conductor's
ratio to each Python variant (paired per round, then the median). Writes
bench/results/w5.md and appends the raw lines to bench/results/w5.jsonl.
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
CONDUCTOR = os.path.join(ROOT, "target", "release", "examples", "uneven")
PEER = os.path.join(ROOT, "bench", "python", "uneven.py")


def cases():
    rng = random.Random(20261202)
    lognormal = [rng.lognormvariate(math.log(2.0), 1.5) for _ in range(2000)]
    every_20th = [500.0 if n % 20 == 19 else 10.0 for n in range(200)]
    return [
        ("a: 2,000 log-normal (median 2 ms, sigma 1.5)", "lognormal", lognormal),
        ("b: 200 x 10 ms, every 20th 500 ms", "every-20th", every_20th),
        ("c: the same, long first", "long-first", sorted(every_20th, reverse=True)),
        ("c: the same, long last", "long-last", sorted(every_20th)),
        ("d: ten jobs, the 6th and 7th 300 ms", "two-long",
         [300.0 if n in (5, 6) else 0.0 for n in range(10)]),
    ]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-j", "1", "--example", "uneven"],
                   cwd=ROOT, check=True)
    os.makedirs(os.path.join(RESULTS, "w5-durations"), exist_ok=True)
    systems = {
        "conductor": lambda path: [CONDUCTOR, "--durations", path],
        "python-imap1": lambda path: [sys.executable, PEER, path, "1"],
        "python-imap1000": lambda path: [sys.executable, PEER, path, "1000"],
    }
    results = {}  # (case, system) -> [makespan per round]
    ideal = {}
    raw = open(os.path.join(RESULTS, "w5.jsonl"), "a")
    for rnd in range(args.rounds):
        for title, key, durations in cases():
            path = os.path.join(RESULTS, "w5-durations", f"{key}.txt")
            with open(path, "w") as f:
                f.write("\n".join(f"{d:.4f}" for d in durations) + "\n")
            for system, cmd in systems.items():
                line = run(cmd(path))
                line.update(case=key, round=rnd)
                raw.write(json.dumps(line) + "\n")
                results.setdefault((key, system), []).append(line["makespan_secs"])
                ideal[key] = line["ideal_secs"]
                print(f"round {rnd + 1} {key:<11} {system:<16} "
                      f"{line['makespan_secs']:.3f} s ({line['ratio']:.3f}x ideal)", flush=True)
    lines = [
        "# W5: uneven jobs, 2 workers, default settings",
        "",
        f"`python3 bench/w5.py --rounds {args.rounds}`; medians of {args.rounds} interleaved rounds; "
        "makespan from starting the workers to the last result; ideal = greedy list "
        "scheduling over the known durations. Each job sleeps its duration.",
        "",
        "| case | ideal | conductor | python c1 | python c1000 | conductor / ideal | c1 / ideal | c1000 / ideal | conductor / c1 (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for title, key, _ in cases():
        med = {s: statistics.median(results[(key, s)]) for s in systems}
        paired = statistics.median(
            c / p for c, p in zip(results[(key, "conductor")], results[(key, "python-imap1")]))
        lines.append(
            f"| {title} | {ideal[key]:.3f} s | {med['conductor']:.3f} s | {med['python-imap1']:.3f} s "
            f"| {med['python-imap1000']:.3f} s | **{med['conductor'] / ideal[key]:.3f}** "
            f"| {med['python-imap1'] / ideal[key]:.3f} | {med['python-imap1000'] / ideal[key]:.3f} "
            f"| {paired:.3f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "w5.md"), "w") as f:
        f.write(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
