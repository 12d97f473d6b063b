//! Worker counters rolled every interval and aggregated by the master.
//!
//! Run it with `cargo run --example stats`.

use std::time::Duration;

use conductor::{Conductor, Event, Worker};

#[conductor::worker(type = "row_loader")]
async fn load_rows(rows: u32, worker: &Worker) -> anyhow::Result<u32> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    // `jobsDone` is counted automatically; this one is ours.
    worker.count("rowsLoaded", i64::from(rows));
    Ok(rows)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let mut running = Conductor::<u32, u32>::new("row_loader")
        .worker_limit(2)
        .logging(false)
        .stats_interval(Duration::from_millis(250))
        .jobs((0..60).map(|n| 100 + n))
        .start()?;
    while let Some(event) = running.next_event().await {
        if let Event::Stats(report) = event {
            let per_worker: Vec<String> = report
                .raw
                .iter()
                .map(|(id, w)| {
                    format!(
                        "worker {id}: +{} jobs",
                        w.diff.get("jobsDone").unwrap_or(&0)
                    )
                })
                .collect();
            println!(
                "stats from {} workers over {:?}: {} jobs, {} rows in all, {:.0} rows/s now ({})",
                report.worker_count(),
                report.avg_span,
                report.agg.last.get("jobsDone").unwrap_or(&0),
                report.agg.last.get("rowsLoaded").unwrap_or(&0),
                report.rate("rowsLoaded"),
                per_worker.join(", ")
            );
        }
    }
    let report = running.wait().await?;
    println!("{} jobs completed", report.completed());
    Ok(())
}
