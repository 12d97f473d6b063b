//! Two worker types in one binary, driven by two conductors at once. On a terminal
//! each draws its own labelled bar, and the master prints above them.
//!
//! Run it with `cargo run --example multi_type`.

use std::time::Duration;

use conductor::{Conductor, Worker};

#[conductor::worker(type = "shouter")]
fn shout(job: String, worker: &Worker) -> anyhow::Result<String> {
    println!("shouter {} got {job:?}", worker.id());
    Ok(job.to_uppercase())
}

#[conductor::worker(type = "cuber")]
async fn cube(job: i64) -> anyhow::Result<i64> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    Ok(job * job * job)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let words = ["alpha", "beta", "gamma", "delta"].map(String::from);
    // Both run at once; each gives its outputs in submission order.
    let (shouted, cubes, ()) = tokio::join!(
        Conductor::<String, String>::new("shouter")
            .worker_limit(2)
            .logging(false)
            .jobs(words)
            .collect(),
        Conductor::<i64, i64>::new("cuber")
            .worker_limit(2)
            .logging(false)
            .jobs(1..=100)
            .collect(),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Printed above the bars, which are drawn again below it.
            conductor::above_bars(|| println!("both conductors are running"));
        },
    );
    println!("shouted: {}", shouted?.join(" "));
    println!("sum of cubes 1..=100: {}", cubes?.iter().sum::<i64>());
    Ok(())
}
