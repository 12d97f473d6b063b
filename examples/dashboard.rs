//! A live dashboard of a run: progress and ETA, throughput over time, each worker and
//! its current job, recent failures, job code's counters, and buttons to stop the run
//! gracefully or abort it.
//!
//! Run it with `cargo run --example dashboard --features dashboard`, then open the
//! address it prints (it carries the token the page needs). The run takes about a
//! minute; `--jobs N` changes that, `--address host:port` the address.

use std::time::Duration;

use conductor::{Conductor, Permanent, Retry, Worker};

/// Pretends to render page `page` of a report; a few pages fail, some only once.
#[conductor::worker]
async fn render_page(page: u64, w: &Worker) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(40 + page % 7 * 15)).await;
    w.count("pages", 1);
    w.count("words", (page % 13 * 120 + 300) as i64);
    match page % 150 {
        149 => Err(Permanent::new(anyhow::anyhow!("page {page}: the template is missing")).into()),
        74 if w.stats()["pages"] % 2 == 0 => {
            anyhow::bail!("page {page}: the font server timed out")
        }
        _ => Ok(page),
    }
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut jobs, mut address) = (2_000u64, "127.0.0.1:8800".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => jobs = args.next().unwrap_or_default().parse()?,
            "--address" => address = args.next().unwrap_or_default(),
            other => {
                anyhow::bail!("unknown argument `{other}` (use --jobs N, --address host:port)")
            }
        }
    }
    let report = Conductor::of::<render_page>()
        .worker_limit(3)
        .logging(false)
        .stats_interval(Duration::from_millis(500))
        .retry(Retry::attempts(3).backoff(Duration::from_millis(200), Duration::from_secs(2)))
        .dashboard(address)
        .jobs(0..jobs)
        .run()
        .await?;
    println!(
        "{} pages rendered, {} failed{}",
        report.completed(),
        report.failed(),
        report
            .interrupted()
            .map(|why| format!(", stopped early: {why:?}"))
            .unwrap_or_default()
    );
    Ok(())
}
