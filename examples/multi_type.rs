//! Two worker types in one binary, driven by two conductors at once.
//!
//! Run it with `cargo run --example multi_type`.

use conductor::{Conductor, Event, Worker};

#[conductor::worker(type = "shouter")]
fn shout(job: String, worker: &Worker) -> anyhow::Result<String> {
    println!("shouter {} got {job:?}", worker.id());
    Ok(job.to_uppercase())
}

#[conductor::worker(type = "cuber")]
async fn cube(job: i64) -> anyhow::Result<i64> {
    Ok(job * job * job)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let words = ["alpha", "beta", "gamma", "delta"].map(String::from);
    let shouter = Conductor::<String, String>::new("shouter")
        .worker_limit(2)
        .logging(false)
        .jobs(words)
        .start()?;
    let cuber = Conductor::<i64, i64>::new("cuber")
        .worker_limit(2)
        .logging(false)
        .jobs(1..=100)
        .start()?;

    let (shouted, cubes) = tokio::join!(collect(shouter), collect(cuber));
    let mut shouted = shouted?;
    shouted.sort();
    println!("shouted: {}", shouted.join(" "));
    println!("sum of cubes 1..=100: {}", cubes?.iter().sum::<i64>());
    Ok(())
}

/// Gathers every output of a run, failing if any job failed.
async fn collect<J, O>(mut running: conductor::Running<J, O>) -> anyhow::Result<Vec<O>> {
    let mut outputs = Vec::new();
    while let Some(event) = running.next_event().await {
        if let Event::Output(output) = event {
            outputs.push(output.output);
        }
    }
    let report = running.wait().await?;
    anyhow::ensure!(report.all_completed(), "{} jobs failed", report.failed());
    Ok(outputs)
}
