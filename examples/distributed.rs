//! The distributed mode: one master, workers on any machine, through NATS JetStream.
//!
//! ```text
//! # machine A: the master (it also starts --workers local workers); it prints the
//! # line that joins a worker, with the run's secret
//! cargo run --example distributed --features nats -- --run demo --jobs 2000 --job-ms 5
//! # machines B, C, ...: the same program joins the run as workers, with that line
//! CONDUCTOR_NATS_URL=nats://A:4222 CONDUCTOR_JOIN=demo CONDUCTOR_RUN_SECRET=... target/debug/examples/distributed
//! ```
//!
//! Flags: `--url URL` (default `CONDUCTOR_NATS_URL` or `nats://127.0.0.1:4222`),
//! `--run NAME`, `--jobs N`, `--job-ms M`, `--workers W` (local workers),
//! `--ack-wait-ms A` (how long the jobs of a killed worker wait; default 10 s).
//!
//! It ends by checking the accounting: every job once, as completed, failed or done
//! by an earlier master of the same run (a rerun after the master was killed).

use std::collections::BTreeMap;
use std::time::Duration;

use conductor::{Conductor, Event, Worker};

/// A job: a number to hash and how long to pretend it takes.
#[conductor::worker(type = "checksum")]
fn checksum(job: (u64, u64), worker: &Worker) -> anyhow::Result<(u64, u64)> {
    let (n, ms) = job;
    std::thread::sleep(Duration::from_millis(ms));
    let hash = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    Ok((worker.id(), hash))
}

struct Options {
    url: String,
    run: String,
    jobs: u64,
    job_ms: u64,
    workers: usize,
    ack_wait_ms: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        url: std::env::var("CONDUCTOR_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string()),
        run: format!("demo-{}", std::process::id()),
        jobs: 1000,
        job_ms: 2,
        workers: 2,
        ack_wait_ms: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--run" => options.run = value()?,
            "--jobs" => options.jobs = value()?.parse()?,
            "--job-ms" => options.job_ms = value()?.parse()?,
            "--workers" => options.workers = value()?.parse()?,
            "--ack-wait-ms" => options.ack_wait_ms = value()?.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(options)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    // The master prints the line that joins a worker, with the run's secret.
    println!("run `{}` on {}", options.run, options.url);
    let job_ms = options.job_ms;
    let mut running = Conductor::<(u64, u64), (u64, u64)>::new("checksum")
        .nats(&options.url)
        .run_name(&options.run)
        .worker_limit(options.workers.max(1))
        .ack_wait(Duration::from_millis(options.ack_wait_ms))
        .logging(false)
        .jobs((0..options.jobs).map(move |n| (n, job_ms)))
        .start()?;
    let mut per_worker: BTreeMap<u64, u64> = BTreeMap::new();
    let mut wrong = 0;
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            let (worker_id, hash) = output.output;
            if hash
                != output
                    .id
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(17)
            {
                wrong += 1;
            }
            *per_worker.entry(worker_id).or_default() += 1;
        }
    }
    let report = running.wait().await?;
    println!(
        "completed {}, failed {}, skipped {}, wrong {wrong}, in {:.1?}",
        report.completed(),
        report.failed(),
        report.skipped(),
        report.elapsed()
    );
    let accounted = report.completed() + report.failed() + report.skipped();
    println!(
        "accounted for: {accounted} of {} jobs, each once{}",
        options.jobs,
        if accounted == options.jobs {
            ""
        } else {
            " (NOT ALL)"
        }
    );
    for (worker_id, jobs) in &per_worker {
        println!("worker {worker_id}: {jobs} jobs");
    }
    std::process::exit(report.exit_code());
}
