//! procspawn peer for the conductor throughput benchmark.
//!
//! Same flags, same job and same JSON line as `examples/throughput.rs`:
//! `--jobs N --workers W --work-us U --payload-bytes B [--window K]`.
//!
//! Every `Pool::spawn` opens two ipc-channel socket pairs that live until the
//! job is joined, so submitting 100,000 jobs at once runs out of file
//! descriptors (ulimit -n is 20,000 here). `--window K` (default 1,000) keeps
//! at most K jobs submitted and not yet joined; `--window 0` submits them all
//! up front as the naive use of the API would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Job {
    n: u64,
    work_us: u64,
    payload: Vec<u8>,
}

/// The worker side: spin `work_us` µs, return n*n + payload length.
fn bench_square(job: Job) -> u64 {
    if job.work_us > 0 {
        let until = Instant::now() + Duration::from_micros(job.work_us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    job.n
        .wrapping_mul(job.n)
        .wrapping_add(job.payload.len() as u64)
}

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .map(|i| args[i + 1].parse().expect("numeric flag value"))
        .unwrap_or(default)
}

/// The master's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // Must come first: in a worker process this call never returns.
    procspawn::init();

    let args: Vec<String> = std::env::args().collect();
    let jobs = flag(&args, "--jobs", 100_000);
    let workers = flag(&args, "--workers", 2) as usize;
    let work_us = flag(&args, "--work-us", 0);
    let payload_bytes = flag(&args, "--payload-bytes", 0) as usize;
    let window = match flag(&args, "--window", 1_000) {
        0 => usize::MAX,
        k => k as usize,
    };

    let started = Instant::now();
    let pool = procspawn::Pool::new(workers).expect("start the pool");
    let (mut sum, mut completed, mut failed) = (0u64, 0u64, 0u64);
    let mut in_flight = VecDeque::new();
    let mut join_oldest = |in_flight: &mut VecDeque<procspawn::JoinHandle<u64>>| {
        match in_flight.pop_front().unwrap().join() {
            Ok(v) => {
                sum = sum.wrapping_add(v);
                completed += 1;
            }
            Err(_) => failed += 1,
        }
    };
    // Jobs are made lazily, one per submission.
    for n in 0..jobs {
        if in_flight.len() >= window {
            join_oldest(&mut in_flight);
        }
        let payload = vec![(n % 251) as u8; payload_bytes];
        in_flight.push_back(pool.spawn(Job { n, work_us, payload }, bench_square));
    }
    while !in_flight.is_empty() {
        join_oldest(&mut in_flight);
    }
    let secs = started.elapsed().as_secs_f64();
    pool.kill();

    let expected = (0..jobs).fold(0u64, |acc, n| {
        acc.wrapping_add(n.wrapping_mul(n))
            .wrapping_add(payload_bytes as u64)
    });
    assert_eq!(sum, expected, "outputs do not add up");
    assert_eq!(completed, jobs, "only {completed} of {jobs} jobs completed");
    println!(
        "{{\"system\":\"procspawn-pool\",\"jobs\":{jobs},\"workers\":{workers},\"work_us\":{work_us},\"payload_bytes\":{payload_bytes},\"completed\":{completed},\"failed\":{failed},\"secs\":{secs:.6},\"jobs_per_sec\":{:.1},\"master_peak_rss_mib\":{:.1}}}",
        jobs as f64 / secs,
        peak_rss_mib()
    );
}
