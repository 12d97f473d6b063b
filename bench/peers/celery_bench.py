#!/usr/bin/env python3
"""Celery peer for conductor's distributed-mode benchmark (bench/run.py, NATS-* workloads).

Same job as conductor's examples/throughput.rs: job n spins --work-us µs of CPU on
the clock and returns n*n; the master sums the results and checks the sum.

The script starts its own worker (`celery -A celery_bench worker --pool prefork
--concurrency W`, so W worker processes under one Celery main process), waits until
it answers a ping, purges the queue, submits every job, waits for every result,
checks the sum, stops the worker and prints one JSON line with the keys of the
conductor example.

  --broker redis     redis://127.0.0.1:6379/9 (CELERY_BENCH_REDIS overrides)
  --broker rabbitmq  amqp://guest:guest@127.0.0.1:5672// (CELERY_BENCH_AMQP overrides)
  --chunk 0          one Celery task per job: group(square.s(n, us) ...)
  --chunk 500        square.chunks(jobs, 500): one task per 500 jobs

Results go to the Redis result backend (the same Redis database) in every case.
`secs` runs from the first submit to the last result; worker startup is not in it
(it is `startup_secs`, and the wall clock of the whole command has it). The worker
is stopped with SIGTERM (warm shutdown, `stop_secs`: 2-6 s here, mostly Celery
waiting on its pool); CELERY_BENCH_STOP=SIGQUIT makes it a cold shutdown.

Run with the venv that bench/peers/install.sh makes:
  bench/peers/.venv/bin/python bench/peers/celery_bench.py --broker redis --jobs 2000
"""
import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery, group

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("CELERY_BENCH_REDIS", "redis://127.0.0.1:6379/9")
AMQP_URL = os.environ.get("CELERY_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
# The worker imports this module (-A celery_bench): the master passes it its
# broker and queue through the environment.
BROKER = os.environ.get("CELERY_BENCH_BROKER_URL", REDIS_URL)
QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "conductor-bench")

app = Celery("celery_bench", broker=BROKER, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,  # what the master does not delete itself is gone in 10 minutes
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,  # keep the master's stdout to its one JSON line
)


@app.task(name="conductor_bench.square")
def square(n, work_us):
    """The worker side: spin work_us µs on perf_counter, then answer."""
    if work_us:
        until = time.perf_counter() + work_us / 1e6
        while time.perf_counter() < until:
            pass
    return n * n


def start_worker(workers, queue, node):
    """Start `celery worker` in its own session (so it and its pool can be killed as one)."""
    env = dict(os.environ, CELERY_BENCH_BROKER_URL=BROKER, CELERY_BENCH_QUEUE=queue,
               PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "celery", "-A", "celery_bench", "worker",
           "--pool", "prefork", "--concurrency", str(workers), "-Q", queue, "-n", node,
           "--without-gossip", "--without-mingle", "--without-heartbeat",
           "--loglevel", "WARNING"]
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def wait_ready(proc, node, timeout=60.0):
    """Until the worker answers a ping (its pool is forked and it consumes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"celery worker exited with {proc.returncode} before it was ready")
        if app.control.ping(destination=[node], timeout=0.25):
            return
    sys.exit(f"celery worker not ready after {timeout} s")


def stop_worker(proc):
    """Warm shutdown (SIGTERM), then kill the whole session if it lingers."""
    if proc.poll() is None:
        proc.send_signal(getattr(signal, os.environ.get("CELERY_BENCH_STOP", "SIGTERM")))
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool children, should any be left
    except ProcessLookupError:
        pass
    proc.wait()


def purge():
    """Drop whatever a killed run may have left in the queue (declares it if needed)."""
    with app.connection_for_write() as conn:
        return app.amqp.TaskConsumer(conn).purge()


def forget(ids):
    """Delete the results (celery-task-meta-<id>) from Redis in one pipeline."""
    backend = app.backend
    with backend.client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.delete(backend.get_key_for_task(task_id))
        pipe.execute()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--chunk", type=int, default=0,
                        help="0: one task per job; N: square.chunks(jobs, N)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-us", type=int, default=0)
    parser.add_argument("--payload-bytes", type=int, default=0)
    args = parser.parse_args()
    if args.payload_bytes:
        sys.exit("celery_bench: --payload-bytes is not supported (NATS-1MiB is conductor only)")

    global BROKER
    BROKER = REDIS_URL if args.broker == "redis" else AMQP_URL
    app.conf.broker_url = BROKER
    # One queue per broker, purged before (and after) each run; the node
    # name is unique per run so the ping reaches this run's worker only.
    queue = f"conductor-bench-{args.broker}"
    app.conf.task_default_queue = queue
    node = f"bench-{os.getpid()}@{socket.gethostname()}"
    system = f"celery-{args.broker}" + (f"-chunks{args.chunk}" if args.chunk else "")

    purge()
    t0 = time.perf_counter()
    proc = start_worker(args.workers, queue, node)
    try:
        wait_ready(proc, node)
        startup = time.perf_counter() - t0

        n, us = args.jobs, args.work_us
        started = time.perf_counter()  # secs: from the first submit to the last result
        if args.chunk:
            res = square.chunks(((i, us) for i in range(n)), args.chunk).group().apply_async()
            results = [v for chunk in res.get(timeout=600) for v in chunk]
        else:
            res = group(square.s(i, us) for i in range(n)).apply_async()
            results = res.get(timeout=600)
        secs = time.perf_counter() - started
        forget(r.id for r in res.results)
    finally:
        t1 = time.perf_counter()
        stop_worker(proc)
        stop = time.perf_counter() - t1
    left = purge()

    total, completed = sum(results), len(results)
    expected = (n - 1) * n * (2 * n - 1) // 6  # sum of n*n
    assert completed == n, f"only {completed} of {n} jobs completed"
    assert total == expected, f"outputs do not add up: {total} != {expected}"
    print(json.dumps({
        "system": system,
        "jobs": n,
        "workers": args.workers,
        "work_us": us,
        "payload_bytes": 0,
        "completed": completed,
        "failed": 0,  # a failed task raises out of get(), so a finished run has none
        "secs": round(secs, 6),
        "jobs_per_sec": round(n / secs, 1),
        "master_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "startup_secs": round(startup, 6),
        "stop_secs": round(stop, 6),
        "chunk": args.chunk,
        "broker": args.broker,
        "left_in_queue": left or 0,
        "celery": __import__("celery").__version__,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
