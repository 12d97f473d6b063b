"""W5 peer: Python's Pool.imap_unordered over jobs of uneven lengths.

    python3 bench/python/uneven.py DURATIONS_FILE CHUNKSIZE [WORKERS]

Each job sleeps for its duration (milliseconds, one per line of the file). Prints one
JSON line shaped like conductor's `uneven` example: the makespan, from creating the
pool to the last result, next to the ideal (greedy list scheduling).
"""

import json
import sys
import time
from multiprocessing import Pool


def nap(ms):
    time.sleep(max(ms, 0.0) / 1000.0)
    return None


def ideal_makespan(durations, workers):
    free_at = [0.0] * workers
    for ms in durations:
        i = min(range(workers), key=lambda k: free_at[k])
        free_at[i] += ms / 1000.0
    return max(free_at)


def main():
    path, chunksize = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with open(path) as f:
        durations = [float(x) for x in f.read().split()]
    ideal = ideal_makespan(durations, workers)
    started = time.perf_counter()
    with Pool(workers) as pool:
        done = sum(1 for _ in pool.imap_unordered(nap, durations, chunksize=chunksize))
        makespan = time.perf_counter() - started
    assert done == len(durations)
    print(json.dumps({
        "system": f"python-imap{chunksize}",
        "jobs": len(durations),
        "workers": workers,
        "makespan_secs": round(makespan, 6),
        "ideal_secs": round(ideal, 6),
        "ratio": round(makespan / ideal, 4),
    }))


if __name__ == "__main__":
    main()
