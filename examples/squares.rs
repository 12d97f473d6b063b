//! The seed's README program: ten jobs, two workers, each job takes a second.
//!
//! Run it with `cargo run --example squares`.

use std::time::Duration;

use conductor::{Conductor, Worker};

#[conductor::worker(type = "my_math_processor")]
async fn square(job: u64, worker: &Worker) -> anyhow::Result<u64> {
    // Display the square of the number we are processing.
    println!(
        "Worker {}, Job {} => the square is {}",
        worker.id(),
        job,
        job * job
    );
    // Let's pretend that this took a while to complete.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(job * job)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    // The outputs in submission order; an error if any job failed.
    let squares = Conductor::of::<square>() // the worker type, its job and output types
        .worker_limit(2) // at most keep 2 workers alive
        .logging(false)
        .jobs(0..10u64)
        .collect()
        .await?;
    println!("All jobs finished processing: {squares:?}");
    Ok(())
}
