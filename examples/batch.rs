//! A long batch to operate by hand: a progress bar, Ctrl-C, a resumable journal,
//! worker recycling and a per-worker init hook.
//!
//! ```text
//! cargo run --example batch -- --jobs 2000 --job-ms 20 --journal /tmp/batch.journal
//! ```
//!
//! Press Ctrl-C once to let the jobs in flight finish and stop; twice to stop at
//! once. Run the same command again: jobs the journal shows done are skipped.
//! Flags: `--jobs N`, `--job-ms M` (time per job), `--workers W`, `--journal PATH`,
//! `--fail-every K` (every K-th job fails), `--max-jobs-per-worker N`,
//! `--shutdown-grace-ms G`, `--prefetch P`.

use std::sync::OnceLock;
use std::time::Duration;

use conductor::{Conductor, Worker};

/// The command line, read by the master and by each worker's init hook (workers are
/// started with the same arguments).
#[derive(Debug, Clone)]
struct Options {
    jobs: u64,
    job_ms: u64,
    workers: usize,
    journal: Option<String>,
    fail_every: u64,
    max_jobs_per_worker: Option<u64>,
    shutdown_grace_ms: u64,
    prefetch: Option<usize>,
}

impl Options {
    fn from_args() -> anyhow::Result<Options> {
        let mut options = Options {
            jobs: 1000,
            job_ms: 20,
            workers: 2,
            journal: None,
            fail_every: 0,
            max_jobs_per_worker: None,
            shutdown_grace_ms: 30_000,
            prefetch: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--jobs" => options.jobs = value()?.parse()?,
                "--job-ms" => options.job_ms = value()?.parse()?,
                "--workers" => options.workers = value()?.parse()?,
                "--journal" => options.journal = Some(value()?),
                "--fail-every" => options.fail_every = value()?.parse()?,
                "--max-jobs-per-worker" => options.max_jobs_per_worker = Some(value()?.parse()?),
                "--shutdown-grace-ms" => options.shutdown_grace_ms = value()?.parse()?,
                "--prefetch" => options.prefetch = Some(value()?.parse()?),
                other => anyhow::bail!("unknown flag {other}"),
            }
        }
        Ok(options)
    }
}

/// Set once per worker process by [`set_up`], before its first job.
static OPTIONS: OnceLock<Options> = OnceLock::new();

/// The per-worker init hook: runs once in each worker process.
fn set_up(_worker: &Worker) -> anyhow::Result<()> {
    let _ = OPTIONS.set(Options::from_args()?);
    Ok(())
}

#[conductor::worker(type = "render", init = set_up)]
fn render(job: u64, worker: &Worker) -> anyhow::Result<u64> {
    let options = OPTIONS.get().expect("set_up ran first");
    std::thread::sleep(Duration::from_millis(options.job_ms));
    if options.fail_every > 0 && job % options.fail_every == options.fail_every - 1 {
        anyhow::bail!("job {job} hit a corrupt input");
    }
    // Workers print as they like; the bar stays whole.
    if job % 100 == 99 {
        println!("worker {} rendered job {job}", worker.id());
    }
    Ok(job * 2)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::from_args()?;
    let mut conductor = Conductor::<u64, u64>::new("render")
        .worker_limit(options.workers)
        .logging(false)
        .shutdown_grace(Duration::from_millis(options.shutdown_grace_ms))
        .jobs(0..options.jobs);
    if let Some(path) = &options.journal {
        conductor = conductor
            .journal(path)
            .job_key(|job| format!("frame-{job}"));
    }
    if let Some(limit) = options.max_jobs_per_worker {
        conductor = conductor.max_jobs_per_worker(limit);
    }
    if let Some(prefetch) = options.prefetch {
        conductor = conductor.prefetch(prefetch);
    }
    let mut report = conductor.run().await?;
    // Jobs pulled but not run, and the rest of the source that was never pulled.
    let mut not_run = report.not_run().len() as u64;
    if let Some(mut rest) = report.take_unsubmitted() {
        while rest.next().await.is_some() {
            not_run += 1;
        }
    }
    println!(
        "completed {}, failed {}, skipped {} (done before), not run {}, workers started {}, in {:.1?}",
        report.completed(),
        report.failed(),
        report.skipped(),
        not_run,
        report.workers_started(),
        report.elapsed()
    );
    for failure in report.failures().iter().take(5) {
        println!("failed: job {}: {}", failure.job, failure.error);
    }
    if let Some(interrupt) = report.interrupted() {
        println!("interrupted by {interrupt}");
    }
    // `#[conductor::main]` exits with the run's code: 1 after failed jobs, 130 after
    // Ctrl-C, 143 after SIGTERM.
    Ok(())
}
