//! The run's figures for Prometheus: conductor publishes them through the `metrics`
//! facade, and any exporter installed before the run gets them. Here the Prometheus
//! exporter renders them on `/metrics`, served while the run lasts.
//!
//! Run it with `cargo run --example prometheus --features metrics`, and while it runs
//! (about 3 s) open <http://127.0.0.1:9464/metrics>; `METRICS_ADDR` picks another
//! address. At the end it prints the last figures.

use std::time::Duration;

use conductor::{Conductor, Worker};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Pretends to check a file of `len` bytes.
#[conductor::worker]
async fn checksum(len: u64, w: &Worker) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(20 + len % 30)).await;
    w.count("bytes", len as i64);
    Ok(len.wrapping_mul(2_654_435_761) % 65_521)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".into());
    let prometheus = PrometheusBuilder::new()
        // Job durations as a histogram with these buckets (seconds), not a summary.
        .set_buckets_for_metric(
            Matcher::Full("conductor_job_duration_seconds".into()),
            &[0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
        )?
        .install_recorder()?;
    let listener = TcpListener::bind(&address).await?;
    println!("metrics at http://{address}/metrics");
    tokio::spawn(serve(listener, prometheus.clone()));

    let report = Conductor::of::<checksum>()
        .worker_limit(2)
        .logging(false)
        .stats_interval(Duration::from_millis(250))
        .jobs((0..200u64).map(|n| n * 1000))
        .run()
        .await?;
    println!("{} jobs completed; the last figures:", report.completed());
    print!("{}", prometheus.render());
    Ok(())
}

/// Answers every request with the figures as they are now.
async fn serve(listener: TcpListener, prometheus: PrometheusHandle) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            // The request itself does not matter: one read takes it.
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let body = prometheus.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}
