#!/usr/bin/env python3
"""Peer benchmark for conductor: runs every system side by side, interleaved.

Usage (from the repo root):  python3 bench/run.py [--rounds 5] [--quick]

Writes bench/results/raw.jsonl (one line per run), bench/results/summary.md
and bench/results/w1.svg. See bench/README.md for the workloads.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import chart  # bench/chart.py, next to this file

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CONDUCTOR = ROOT / "target/release/examples/throughput"
# The same example with the `nats` feature, in a target dir of its own so that the
# main binary stays the lean default build.
CONDUCTOR_NATS = ROOT / "target/bench-nats/release/examples/throughput"
PROCSPAWN = BENCH / "procspawn/target/release/procspawn-bench"
RAW = BENCH / "procspawn/target/release/raw-roundtrip"
PEERS = BENCH / "python/peers.py"
NATS_URL = os.environ.get("CONDUCTOR_NATS_URL", "nats://127.0.0.1:4222")
# Broker-based peers of the distributed mode (bench/peers, installed by its install.sh):
# Celery on Redis and on RabbitMQ (result backend Redis), one task per job and
# chunks(500); BullMQ on Redis, one BullMQ job per job and 500 jobs per BullMQ job.
PEERS_DIR = BENCH / "peers"
CELERY_PY = PEERS_DIR / ".venv/bin/python"
BROKER_PEERS = ["celery-redis", "celery-redis-chunks500", "celery-rabbitmq",
                "celery-rabbitmq-chunks500", "bullmq", "bullmq-500"]
# NATS-1MiB runs conductor-nats through a nats-server of its own (max_payload 8 MB;
# the default 1 MiB cannot carry a 1 MiB job), on a spare port picked once.
NATS_1MIB_PORT = None
SKIPPED = {}  # (workload, system) -> why it is not run (peers not installed, not built, ...)

PY_SYSTEMS = ["ppe1", "ppe1000", "poolmap1", "imap1000"]
ALL = ["conductor"] + [f"python-{s}" for s in PY_SYSTEMS] + ["procspawn-pool"]
MIB = 1 << 20

# Figures quoted in the issue for okanjo-conductor 3.0 (not on the npm registry).
OKANJO = {"W1": {"whole jobs/s": 20_400, "in-process jobs/s": 21_800, "all-process peak MiB": 168},
          "W2": {"efficiency T1/(2*T2)": 0.91},
          "W3": {"wall ms": 197}}


def command(system, jobs, workers, work_us=0, payload=0, extra=(), nats=None):
    flags = ["--jobs", str(jobs), "--workers", str(workers),
             "--work-us", str(work_us), "--payload-bytes", str(payload), *extra]
    if system == "conductor":
        return [str(CONDUCTOR), *flags]
    if system == "conductor-nats":
        return [str(CONDUCTOR_NATS), *flags, "--nats", nats or NATS_URL]
    if system.startswith("celery-"):
        broker, _, chunks = system.removeprefix("celery-").partition("-chunks")
        return [str(CELERY_PY), str(PEERS_DIR / "celery_bench.py"), "--broker", broker,
                "--chunk", chunks or "0", *flags]
    if system.startswith("bullmq"):
        return ["node", str(PEERS_DIR / "bullmq/bench.js"), *flags,
                "--batch", system.removeprefix("bullmq").removeprefix("-") or "1"]
    if system == "procspawn-pool":
        return [str(PROCSPAWN), *flags]
    if system == "raw-roundtrip":
        return [str(RAW), *flags]
    if system == "raw-roundtrip-poll":
        return [str(RAW), *flags, "--multiplex", "1"]
    return [sys.executable, str(PEERS), "--system", system.removeprefix("python-"), *flags]


def workloads(quick):
    """(workload, variant, systems, kwargs for command())."""
    w1_jobs = 20_000 if quick else 100_000
    return [
        ("W1", "", ALL, dict(jobs=w1_jobs, workers=2)),
        # The raw baselines ignore --prefetch: they always have one job in flight per
        # worker; raw-roundtrip has a thread per child, raw-roundtrip-poll one for all.
        ("W1-prefetch1", "", ["conductor", "raw-roundtrip", "raw-roundtrip-poll"],
         dict(jobs=100_000, workers=2, extra=("--prefetch", "1"))),
        ("W2", "1 worker", ALL, dict(jobs=200, workers=1, work_us=10_000)),
        ("W2", "2 workers", ALL, dict(jobs=200, workers=2, work_us=10_000)),
        ("W3", "", ALL, dict(jobs=1, workers=2)),
        ("W4", "", ["conductor"], dict(jobs=10_000_000, workers=2)),
        ("Payload", "", ["conductor", "python-imap1000"],
         dict(jobs=2_000, workers=2, payload=1_048_576)),
        # The distributed mode through the local NATS server, beside the local mode and
        # beside Celery and BullMQ (bench/peers) on the local Redis and RabbitMQ.
        ("NATS-tiny", "", ["conductor", "conductor-nats", *BROKER_PEERS], dict(jobs=20_000, workers=2)),
        ("NATS-1ms", "", ["conductor", "conductor-nats", *BROKER_PEERS],
         dict(jobs=2_000, workers=2, work_us=1_000)),
        # 1 MiB jobs through a nats-server of run.py's own (see start_big_nats).
        ("NATS-1MiB", "", ["conductor", "conductor-nats"],
         dict(jobs=200, workers=2, payload=MIB, nats=f"nats://127.0.0.1:{nats_1mib_port()}")),
    ]


def nats_1mib_port():
    """A port free now, the same for the whole run."""
    global NATS_1MIB_PORT
    if NATS_1MIB_PORT is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            NATS_1MIB_PORT = s.getsockname()[1]
    return NATS_1MIB_PORT


# ---------------------------------------------------------------- measuring

def tree_pids(pid):
    """pid and all its descendants, from /proc."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass  # the process ended while we looked
    return pids


def tree_memory_bytes(pid, with_pss):
    """Summed RSS (and PSS when asked) of pid and all its descendants.

    RSS counts pages shared between processes (the executable, libc) once per
    process; PSS splits them between the processes that share them. PSS costs
    the kernel a page-table walk, so it is read less often.
    """
    rss = pss = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE
            if with_pss:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    pss += next((int(l.split()[1]) * 1024 for l in f if l.startswith("Pss:")), 0)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass  # the process ended while we looked
    return rss, pss


PAGE = os.sysconf("SC_PAGE_SIZE")


def run_one(cmd, timeout=900):
    """Run cmd twice: once alone, for its speed, and once watched, for its memory.

    The memory sampler reads /proc every few milliseconds: on 2 cores it takes time
    from whichever system keeps both busy, so speed is never measured under it.
    Returns (json dict or None, wall secs, all-process peak MiB, stderr)."""
    result, wall, _, err = run_watched(cmd, timeout, sample=False)
    if result is None:
        return result, wall, 0.0, err
    watched, _, peak, err = run_watched(cmd, timeout, sample=True)
    if watched is None:
        return watched, wall, peak, err
    result["all_peak_pss_mib"] = watched["all_peak_pss_mib"]
    return result, wall, peak, err


def run_watched(cmd, timeout, sample):
    """Run cmd once, with the memory sampler when `sample`."""
    peak, peak_pss, done = [0], [0], threading.Event()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    sample_memory = sample

    def sample():  # RSS and PSS every 5 ms, until the child is gone
        n = 0
        while not done.is_set():
            rss, pss = tree_memory_bytes(proc.pid, with_pss=True)
            peak[0], peak_pss[0] = max(peak[0], rss), max(peak_pss[0], pss)
            n += 1
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\ntimed out after {timeout} s"
    wall = time.perf_counter() - started
    done.set()
    if sample_memory:
        sampler.join()
    lines = [l for l in out.splitlines() if l.startswith("{")]
    result = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    if result is not None:
        result["all_peak_pss_mib"] = peak_pss[0] / MIB
    return result, wall, peak[0] / MIB, err


# ---------------------------------------------------------------- metrics

def metrics(workload, runs):
    """runs: {variant: record} for one system in one round -> {metric: value}."""
    r = runs.get("")
    if workload == "W1":
        return {"whole jobs/s": r["jobs"] / r["wall_secs"], "in-process jobs/s": r["jobs_per_sec"],
                "all-process peak MiB": r["all_peak_mib"], "all-process peak PSS MiB": r.get("all_peak_pss_mib"),
                "master peak MiB": r["master_peak_rss_mib"]}
    if workload == "W1-prefetch1":
        return {"in-process jobs/s": r["jobs_per_sec"], "whole jobs/s": r["jobs"] / r["wall_secs"]}
    if workload == "W2":
        t1, t2 = runs["1 worker"]["secs"], runs["2 workers"]["secs"]
        return {"T1 s": t1, "T2 s": t2, "efficiency T1/(2*T2)": t1 / (2 * t2)}
    if workload == "W3":
        return {"wall ms": r["wall_secs"] * 1000, "in-process ms": r["secs"] * 1000}
    if workload == "W4":
        return {"in-process jobs/s": r["jobs_per_sec"], "master peak MiB": r["master_peak_rss_mib"],
                "all-process peak MiB": r["all_peak_mib"], "all-process peak PSS MiB": r.get("all_peak_pss_mib")}
    if workload == "Payload":
        return {"GiB/s": r["jobs"] * r["payload_bytes"] / r["secs"] / 2**30,
                "all-process peak MiB": r["all_peak_mib"], "master peak MiB": r["master_peak_rss_mib"]}
    if workload == "NATS-1MiB":
        mib = r["payload_bytes"] / MIB
        return {"in-process MiB/s": r["jobs_per_sec"] * mib, "whole MiB/s": r["jobs"] * mib / r["wall_secs"],
                "in-process jobs/s": r["jobs_per_sec"], "master peak MiB": r["master_peak_rss_mib"],
                "all-process peak MiB": r["all_peak_mib"]}
    if workload.startswith("NATS"):
        return {"in-process jobs/s": r["jobs_per_sec"], "whole jobs/s": r["jobs"] / r["wall_secs"],
                "master peak MiB": r["master_peak_rss_mib"], "all-process peak MiB": r["all_peak_mib"]}


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def git_state():
    """Short HEAD, plus a warning when sources outside bench/ are modified."""
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout
    dirty = [l for l in git("status", "--porcelain").splitlines() if not l[3:].startswith("bench/")]
    return git("rev-parse", "--short", "HEAD").strip() + (f" with {len(dirty)} uncommitted change(s)" if dirty else "")


def summarize(records, args, argv, elapsed, path):
    # per[workload][system][round][variant] = record
    per = {}
    for rec in records:
        if rec.get("error"):
            continue
        per.setdefault(rec["workload"], {}).setdefault(rec["system"], {}) \
           .setdefault(rec["round"], {})[rec["variant"]] = rec
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    out = ["# conductor peer benchmark", "",
           f"- command: `python3 {shlex.join(argv)}` (rounds: {args.rounds}, quick: {args.quick}, took {elapsed:.0f} s)",
           f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}, {mem / 2**20:.1f} GiB RAM, "
           f"Linux {platform.release()}, Python {platform.python_version()}",
           f"- conductor binary: `{CONDUCTOR.relative_to(ROOT)}` "
           + (f"built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(CONDUCTOR.stat().st_mtime))}"
              if CONDUCTOR.exists() else "not built") + f", repo at {git_state()}",
           "- values are medians over rounds; `conductor / system` ratios are computed per round "
           "(paired), then the median is taken. For jobs/s, GiB/s and efficiency >1 favours conductor; "
           "for times and memory <1 favours conductor.",
           "- each command runs twice: alone for its speed, then under the memory sampler for its memory "
           "(on 2 cores the sampler takes time from whichever system keeps both cores busy).",
           "- all-process peak = max over 5 ms samples of the summed RSS (and PSS) of the command and all its "
           "descendants (pages shared between processes count once per process; runs shorter than "
           "a few samples, e.g. W3, are under-sampled).",
           "- okanjo-conductor 3.0 rows are quoted from the issue (it is not on the npm registry), "
           "not measured here.", *peers_notes(records), ""]
    if SKIPPED:
        out += ["**Not run:**", ""] + [f"- {w} {s}: {why}" for (w, s), why in SKIPPED.items()] + [""]
    failures = [r for r in records if r.get("error")]
    if failures:
        out += ["**Failed runs:**", ""] + [
            f"- {r['workload']} {r['variant']} {r['system']} round {r['round']}: `{r['error']}`"
            for r in failures] + [""]
    order = dict.fromkeys((w, tuple(s)) for w, _, s, _ in workloads(args.quick)
                          if not args.only or w.startswith(args.only))  # W2 once
    for workload, systems in order:
        by_sys = {s: {rnd: metrics(workload, v) for rnd, v in per.get(workload, {}).get(s, {}).items()
                      if workload != "W2" or len(v) == 2} for s in systems}
        by_sys = {s: rounds for s, rounds in by_sys.items() if rounds}
        if not by_sys:
            continue
        names = list(next(iter(next(iter(by_sys.values())).values())).keys())
        cond = by_sys.get("conductor", {})
        show_ratio = len(by_sys) > 1
        head = ["system"] + names + ([f"conductor/system {n}" for n in names] if show_ratio else [])
        out += [f"## {workload}\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s, rounds in by_sys.items():
            med = [statistics.median(m[n] for m in rounds.values()) for n in names]
            ratios = []
            if show_ratio:
                for n in names:
                    paired = [cond[r][n] / m[n] for r, m in rounds.items() if r in cond and m[n]]
                    ratios.append(statistics.median(paired) if paired else None)
            out.append("| " + " | ".join([s] + [fmt(v) for v in med] + [fmt(v) for v in ratios]) + " |")
        if workload in OKANJO:
            q = OKANJO[workload]
            row = ["okanjo-conductor 3.0 (quoted)"] + [fmt(q.get(n)) for n in names]
            out.append("| " + " | ".join(row + ["—"] * (len(head) - len(row))) + " |")
        out.append("")
    out += ["## Commands (one per run)", ""]
    for workload, variant, systems, kw in workloads(args.quick):
        if args.only and not workload.startswith(args.only):
            continue
        for s in systems:
            if (workload, s) in SKIPPED:
                continue
            cmd = shlex.join(command(s, **kw)).replace(sys.executable, "python3")
            out.append(f"- {workload} {variant} {s}: `{cmd.replace(str(ROOT) + '/', '')}`")
    path.write_text("\n".join(out) + "\n")


def peers_notes(records):
    """Summary lines on the broker-based peers, when any of them ran."""
    ran = [r for r in records if r["system"] in BROKER_PEERS and not r.get("error")]
    if not ran:
        return []
    versions = {f"celery {r['celery']}" for r in ran if "celery" in r} | \
               {f"bullmq {r['bullmq']}" for r in ran if "bullmq" in r}
    return ["- Celery and BullMQ peers (`bench/peers`, " + ", ".join(sorted(versions)) + "): Redis "
            "127.0.0.1:6379 db 9 and RabbitMQ 127.0.0.1:5672; their in-process `secs` run from the "
            "first submit to the last result, without worker startup (conductor's include it: compare "
            "whole jobs/s for start-to-end). Memory of the broker servers (Redis, RabbitMQ, NATS) is in "
            "no system's figures."]


# ---------------------------------------------------------------- preparing

def selected(args):
    """[(workload, system)] that this invocation runs, in order, without repeats."""
    pairs = [(w, s) for w, _, systems, _ in workloads(args.quick)
             if not args.only or w.startswith(args.only) for s in systems]
    return list(dict.fromkeys(pairs))


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def prepare_peers(args, pairs):
    """Install the broker-based peers when they are to run (bench/peers/install.sh);
    mark them skipped, with the reason, when that fails or a broker is not there."""
    wanted = [(w, s) for w, s in pairs if s in BROKER_PEERS]
    if not wanted:
        return
    why = None
    if args.no_peers:
        why = "skipped (--no-peers)"
    elif not shutil.which("node"):
        why = "node is not on PATH"
    else:
        print("peers: bench/peers/install.sh", flush=True)
        done = subprocess.run(["bash", str(PEERS_DIR / "install.sh")], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            why = f"bench/peers/install.sh failed (exit {done.returncode}): {last[:200]}"
    if why:
        print(f"peers: NOT running {', '.join(dict.fromkeys(s for _, s in wanted))}: {why}", flush=True)
    for w, s in wanted:
        if why:
            SKIPPED[(w, s)] = why
        elif not port_open(6379):
            SKIPPED[(w, s)] = "no Redis on 127.0.0.1:6379"
        elif "rabbitmq" in s and not port_open(5672):
            SKIPPED[(w, s)] = "no RabbitMQ on 127.0.0.1:5672"
    for (w, s), reason in SKIPPED.items():
        if reason.startswith("no "):
            print(f"peers: NOT running {w} {s}: {reason}", flush=True)


def check_built(pairs):
    """With --no-build: skip, rather than fail on, systems whose binary is missing."""
    binaries = {"conductor": CONDUCTOR, "conductor-nats": CONDUCTOR_NATS, "procspawn-pool": PROCSPAWN,
                "raw-roundtrip": RAW, "raw-roundtrip-poll": RAW}
    for w, s in pairs:
        if s in binaries and not binaries[s].exists():
            SKIPPED[(w, s)] = f"{binaries[s].relative_to(ROOT)} is not built (--no-build)"
            print(f"NOT running {w} {s}: {SKIPPED[(w, s)]}", flush=True)


def start_big_nats(pairs):
    """For NATS-1MiB: a nats-server whose max_payload (8 MB) carries 1 MiB jobs, on a
    spare port, with its JetStream store in a temporary directory. Returns
    (process, directory) or None."""
    if ("NATS-1MiB", "conductor-nats") not in pairs or ("NATS-1MiB", "conductor-nats") in SKIPPED:
        return None
    port = nats_1mib_port()
    if not shutil.which("nats-server"):
        SKIPPED[("NATS-1MiB", "conductor-nats")] = "nats-server is not on PATH"
        return None
    tmp = tempfile.mkdtemp(prefix="conductor-bench-nats-")
    conf = Path(tmp) / "nats.conf"
    conf.write_text(f'max_payload: 8MB\njetstream {{\n  store_dir: "{tmp}/js"\n}}\n')
    proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-js", "-p", str(port), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "nats.log", "w"))
    deadline = time.monotonic() + 15
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_big_nats((proc, tmp))
            SKIPPED[("NATS-1MiB", "conductor-nats")] = f"nats-server on port {port} did not start"
            print(f"NOT running NATS-1MiB conductor-nats: {SKIPPED[('NATS-1MiB', 'conductor-nats')]}")
            return None
        time.sleep(0.05)
    print(f"NATS-1MiB: nats-server on 127.0.0.1:{port} (max_payload 8 MB, store in {tmp})", flush=True)
    return proc, tmp


def stop_big_nats(server):
    if server:
        proc, tmp = server
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- main

def build():
    """Build the procspawn peer and the conductor example (cargo skips what is up to
    date, so a stale binary is never measured). -j 1: the benchmark machine has 2
    cores that others share."""
    subprocess.run(["cargo", "build", "--release", "-j", "1", "--manifest-path",
                    str(BENCH / "procspawn/Cargo.toml")], check=True)
    subprocess.run(["cargo", "build", "--release", "-j", "1", "--example", "throughput"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-j", "1", "--example", "throughput",
                    "--features", "nats", "--target-dir", str(ROOT / "target/bench-nats")],
                   cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description="conductor peer benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 round, W1 with 20,000 jobs")
    parser.add_argument("--only", help="run only workloads whose name starts with this "
                        "(results then go to results/<only>-summary.md and <only>-raw.jsonl)")
    parser.add_argument("--no-build", action="store_true",
                        help="build nothing; skip the systems whose binary is missing")
    parser.add_argument("--no-peers", action="store_true",
                        help="skip the Celery and BullMQ peers of the NATS workloads")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    pairs = selected(args)
    if args.no_build:
        check_built(pairs)
    else:
        build()
    prepare_peers(args, pairs)
    server = start_big_nats(pairs)
    try:
        run_rounds(args)
    finally:
        stop_big_nats(server)


def run_rounds(args):
    RESULTS.mkdir(exist_ok=True)
    prefix = f"{args.only}-" if args.only else ""
    raw = open(RESULTS / f"{prefix}raw.jsonl", "w")
    records, t0 = [], time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        for workload, variant, systems, kw in workloads(args.quick):
            if args.only and not workload.startswith(args.only):
                continue
            for system in systems:
                if (workload, system) in SKIPPED:
                    continue
                result, wall, peak, err = run_one(command(system, **kw))
                rec = {"workload": workload, "variant": variant, "round": rnd, "system": system,
                       **(result or {}), "wall_secs": round(wall, 6), "all_peak_mib": round(peak, 1)}
                if result is None:
                    rec["error"] = (err.strip().splitlines() or ["no output"])[-1][:300]
                records.append(rec)
                raw.write(json.dumps(rec) + "\n")
                raw.flush()
                print(f"[{time.perf_counter() - t0:6.1f}s] round {rnd} {workload} {variant} {system}: "
                      + (rec.get("error") or f"wall {wall:.3f}s, in-process {rec['secs']:.3f}s, "
                         f"{rec['jobs_per_sec']:,.0f} jobs/s, all-proc peak {peak:.1f} MiB"), flush=True)
    raw.close()
    elapsed = time.perf_counter() - t0
    summarize(records, args, sys.argv, elapsed, RESULTS / f"{prefix}summary.md")
    if not args.only:
        chart.draw(RESULTS / "raw.jsonl", RESULTS / "w1.svg")
    print(f"done in {elapsed:.0f} s: {RESULTS / f'{prefix}summary.md'}")


if __name__ == "__main__":
    main()
