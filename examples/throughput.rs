//! Throughput benchmark: many small jobs through real worker processes.
//!
//! ```text
//! cargo run --release --example throughput -- --jobs 100000 --workers 2 --work-us 0 --payload-bytes 0
//! ```
//!
//! Flags: `--jobs N`, `--workers W`, `--work-us U` (CPU work per job, spinning),
//! `--payload-bytes B` (bytes carried by each job), `--prefetch P` and `--batch B` (the
//! dispatch overrides), `--nats URL` (the distributed mode, through that server). Every output is checked: the sum of `n * n` over all jobs must
//! match. Prints one JSON line at the end.

use std::time::{Duration, Instant};

use conductor::{Conductor, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    n: u64,
    work_us: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

#[conductor::worker(type = "bench_square")]
fn bench_square(job: Job) -> anyhow::Result<u64> {
    if job.work_us > 0 {
        let until = Instant::now() + Duration::from_micros(job.work_us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    Ok(job
        .n
        .wrapping_mul(job.n)
        .wrapping_add(job.payload.len() as u64))
}

struct Args {
    jobs: u64,
    workers: usize,
    work_us: u64,
    payload_bytes: usize,
    prefetch: Option<usize>,
    batch: Option<usize>,
    nats: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        jobs: 100_000,
        workers: 2,
        work_us: 0,
        payload_bytes: 0,
        prefetch: None,
        batch: None,
        nats: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => args.jobs = value.parse()?,
            "--workers" => args.workers = value.parse()?,
            "--work-us" => args.work_us = value.parse()?,
            "--payload-bytes" => args.payload_bytes = value.parse()?,
            "--prefetch" => args.prefetch = Some(value.parse()?),
            "--batch" => args.batch = Some(value.parse()?),
            "--nats" => args.nats = Some(value),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// The master's peak resident memory, from /proc (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (work_us, payload_bytes) = (args.work_us, args.payload_bytes);
    let jobs = (0..args.jobs).map(move |n| Job {
        n,
        work_us,
        payload: if payload_bytes == 0 {
            Vec::new()
        } else {
            vec![(n % 251) as u8; payload_bytes]
        },
    });
    let mut conductor = Conductor::<Job, u64>::new("bench_square")
        .worker_limit(args.workers)
        .logging(false)
        .jobs(jobs);
    if let Some(prefetch) = args.prefetch {
        conductor = conductor.prefetch(prefetch);
    }
    if let Some(batch) = args.batch {
        conductor = conductor.batch(batch);
    }
    if let Some(url) = &args.nats {
        conductor = conductor.nats(url);
    }
    let started = Instant::now();
    let mut running = conductor.start()?;
    let mut sum = 0u64;
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            sum = sum.wrapping_add(output.output);
        }
    }
    let report = running.wait().await?;
    let secs = started.elapsed().as_secs_f64();
    let expected = (0..args.jobs).fold(0u64, |acc, n| {
        acc.wrapping_add(n.wrapping_mul(n))
            .wrapping_add(payload_bytes as u64)
    });
    anyhow::ensure!(
        sum == expected,
        "outputs do not add up: {sum} != {expected}"
    );
    anyhow::ensure!(
        report.completed() == args.jobs,
        "only {} of {} jobs completed",
        report.completed(),
        args.jobs
    );
    println!(
        "{{\"system\":\"{}\",\"jobs\":{},\"workers\":{},\"work_us\":{},\"payload_bytes\":{},\"completed\":{},\"failed\":{},\"secs\":{:.6},\"jobs_per_sec\":{:.1},\"master_peak_rss_mib\":{:.1}}}",
        if args.nats.is_some() {
            "conductor-nats"
        } else {
            "conductor"
        },
        args.jobs,
        args.workers,
        args.work_us,
        args.payload_bytes,
        report.completed(),
        report.failed(),
        secs,
        args.jobs as f64 / secs,
        peak_rss_mib()
    );
    Ok(())
}
