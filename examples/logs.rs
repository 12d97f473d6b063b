//! Logs from job code, in the master's terminal: `tracing` events and `log` records
//! written in a worker reach the subscriber that `main` installs, inside a span that
//! says which worker, job and attempt.
//!
//! Run it with `cargo run --example logs`.

use conductor::{Conductor, Worker};

#[conductor::worker]
fn thumbnail(width: u32, w: &Worker) -> anyhow::Result<u32> {
    let pixels = width * width * 3 / 4;
    tracing::info!(width, pixels, "made a thumbnail");
    if width < 100 {
        // Libraries that log with the `log` crate are heard too.
        log::warn!("thumbnail {width} px wide is too small to read");
    }
    tracing::debug!(
        worker = w.id(),
        "not shown: the subscriber takes info and up"
    );
    Ok(pixels)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    // Workers send only what this subscriber takes: info and up.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .without_time()
        .with_writer(std::io::stdout)
        .init();
    let pixels = Conductor::of::<thumbnail>()
        .worker_limit(2)
        .logging(false)
        .jobs([64, 320, 640, 1280])
        .collect()
        .await?;
    tracing::info!(?pixels, "all thumbnails made");
    Ok(())
}
