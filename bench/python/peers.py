#!/usr/bin/env python3
"""Python standard-library peers for the conductor throughput benchmark.

Same job as conductor's examples/throughput.rs: a job is (n, work_us, payload);
the worker spins work_us µs and returns n*n + len(payload); the master sums
the results and checks the sum. Prints one JSON line with the same keys.

  --system ppe1      concurrent.futures.ProcessPoolExecutor.map, chunksize=1
  --system ppe1000   ProcessPoolExecutor.map, chunksize=1000
  --system poolmap1  multiprocessing.Pool.map, chunksize=1
  --system imap1000  multiprocessing.Pool.imap_unordered, chunksize=1000
"""
import argparse
import json
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor


def bench_square(job):
    """The worker side: spin work_us µs on perf_counter, then answer."""
    n, work_us, payload = job
    if work_us:
        until = time.perf_counter() + work_us / 1e6
        while time.perf_counter() < until:
            pass
    return n * n + len(payload)


def make_jobs(count, work_us, payload_bytes):
    """Jobs are produced lazily; each API consumes this as it sees fit
    (Executor.map and Pool.map turn it into a list up front)."""
    for n in range(count):
        payload = bytes([n % 251]) * payload_bytes if payload_bytes else b""
        yield (n, work_us, payload)


def run(system, jobs, workers):
    """Start the pool, run all jobs, return (sum, completed, secs)."""
    total = completed = 0
    started = time.perf_counter()  # secs: from pool creation to the last result
    if system.startswith("ppe"):
        chunksize = 1 if system == "ppe1" else 1000
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for value in pool.map(bench_square, jobs, chunksize=chunksize):
                total += value
                completed += 1
            secs = time.perf_counter() - started
    else:
        with multiprocessing.Pool(workers) as pool:
            if system == "poolmap1":
                results = pool.map(bench_square, jobs, chunksize=1)
            else:
                results = pool.imap_unordered(bench_square, jobs, chunksize=1000)
            for value in results:
                total += value
                completed += 1
            secs = time.perf_counter() - started
    return total, completed, secs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True,
                        choices=["ppe1", "ppe1000", "poolmap1", "imap1000"])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-us", type=int, default=0)
    parser.add_argument("--payload-bytes", type=int, default=0)
    args = parser.parse_args()

    jobs = make_jobs(args.jobs, args.work_us, args.payload_bytes)
    total, completed, secs = run(args.system, jobs, args.workers)

    n = args.jobs
    expected = (n - 1) * n * (2 * n - 1) // 6 + n * args.payload_bytes  # sum of n*n + payload
    assert total == expected, f"outputs do not add up: {total} != {expected}"
    assert completed == n, f"only {completed} of {n} jobs completed"
    print(json.dumps({
        "system": f"python-{args.system}",
        "jobs": n,
        "workers": args.workers,
        "work_us": args.work_us,
        "payload_bytes": args.payload_bytes,
        "completed": completed,
        "failed": 0,  # a failing job raises out of map(), so a finished run has none
        "secs": round(secs, 6),
        "jobs_per_sec": round(n / secs, 1),
        "master_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
