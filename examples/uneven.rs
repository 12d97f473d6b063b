//! Uneven jobs (benchmark W5): how close a batch of jobs of very different lengths
//! comes to the best possible schedule, with default settings.
//!
//! ```text
//! cargo run --release --example uneven -- --case two-long
//! cargo run --release --example uneven -- --durations durations.txt --workers 2
//! ```
//!
//! Each job sleeps for its duration, blocking its thread as CPU-bound or native code
//! would. The cases built in: `every-20th` (200 jobs of 10 ms, every 20th of 500 ms),
//! `long-first` and `long-last` (the same, sorted), `two-long` (ten jobs whose 6th and
//! 7th take 300 ms, the rest nothing), `short` (200 jobs of 1 ms); `--durations FILE`
//! reads one duration in
//! milliseconds per line. Prints one JSON line: the makespan (from starting the
//! workers to the last result), the ideal (greedy list scheduling over the known
//! durations: each job, in order, to the worker free first) and their ratio.

use std::time::{Duration, Instant};

use conductor::Conductor;

#[conductor::worker(type = "uneven_nap")]
fn nap(ms: f64) -> anyhow::Result<()> {
    std::thread::sleep(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    Ok(())
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let (durations, workers) = parse_args()?;
    let ideal = ideal_makespan(&durations, workers);
    let started = Instant::now();
    let report = Conductor::<f64, ()>::new("uneven_nap")
        .worker_limit(workers)
        .logging(std::env::var_os("UNEVEN_LOG").is_some())
        .jobs(durations.clone())
        .run()
        .await?;
    let makespan = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.completed() == durations.len() as u64,
        "only {} of {} jobs completed",
        report.completed(),
        durations.len()
    );
    println!(
        "{{\"system\":\"conductor\",\"jobs\":{},\"workers\":{workers},\"makespan_secs\":{makespan:.6},\"ideal_secs\":{ideal:.6},\"ratio\":{:.4}}}",
        durations.len(),
        makespan / ideal
    );
    Ok(())
}

/// The makespan of greedy list scheduling: each job, in submission order, goes to
/// the worker that is free first.
fn ideal_makespan(durations: &[f64], workers: usize) -> f64 {
    let mut free_at = vec![0.0f64; workers.max(1)];
    for ms in durations {
        let first_free = free_at
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one worker");
        *first_free += ms / 1000.0;
    }
    free_at.into_iter().fold(0.0, f64::max)
}

fn parse_args() -> anyhow::Result<(Vec<f64>, usize)> {
    let (mut durations, mut workers) = (None, 2);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--case" => durations = Some(case(&value)?),
            "--durations" => {
                let text = std::fs::read_to_string(&value)?;
                let parsed: Result<Vec<f64>, _> =
                    text.split_whitespace().map(str::parse::<f64>).collect();
                durations = Some(parsed?);
            }
            "--workers" => workers = value.parse()?,
            other => anyhow::bail!("unknown flag {other}: use --case, --durations or --workers"),
        }
    }
    let durations = durations.unwrap_or(case("two-long")?);
    anyhow::ensure!(!durations.is_empty(), "no jobs to run");
    Ok((durations, workers))
}

fn case(name: &str) -> anyhow::Result<Vec<f64>> {
    let every_20th = || (0..200).map(|n| if n % 20 == 19 { 500.0 } else { 10.0 });
    let mut durations: Vec<f64> = match name {
        "every-20th" | "long-first" | "long-last" => every_20th().collect(),
        "short" => vec![1.0; 200],
        "two-long" => (0..10)
            .map(|n| if n == 5 || n == 6 { 300.0 } else { 0.0 })
            .collect(),
        other => anyhow::bail!(
            "unknown case {other}: every-20th, long-first, long-last, two-long or short"
        ),
    };
    match name {
        "long-first" => durations.sort_by(|a, b| b.total_cmp(a)),
        "long-last" => durations.sort_by(|a, b| a.total_cmp(b)),
        _ => {}
    }
    Ok(durations)
}
