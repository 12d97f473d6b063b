//! The run's figures through the `metrics` facade: a Prometheus exporter installed in
//! the master gets them, and the `prometheus` example serves them while it runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conductor::{Conductor, Retry, Worker};
use metrics_exporter_prometheus::PrometheusBuilder;

mod common;

conductor::test_support!();

/// Counts rows; job 3 fails for good, job 5 fails on its first run only.
#[conductor::worker]
fn metrics_rows(job: u64, w: &Worker) -> anyhow::Result<u64> {
    w.count("rows", 10);
    if job == 3 {
        return Err(conductor::Permanent::new(anyhow::anyhow!("job 3 never works")).into());
    }
    let marker = std::env::temp_dir().join(format!("conductor-metrics-{}", w.master_id()));
    if job == 5 && std::fs::File::create_new(&marker).is_ok() {
        anyhow::bail!("first run of job 5 fails");
    }
    std::thread::sleep(Duration::from_millis(2));
    Ok(job)
}

/// The value of the series `name` with these labels in a Prometheus text page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_prometheus_exporter_in_the_master_gets_every_figure() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let report = Conductor::of::<metrics_rows>()
        .worker_limit(2)
        .logging(false)
        .retry(Retry::attempts(2).backoff(Duration::from_millis(5), Duration::from_millis(5)))
        .jobs(0..40u64)
        .run()
        .await
        .unwrap();
    assert_eq!((report.completed(), report.failed()), (39, 1));
    let page = prometheus.render();
    let of =
        |series: &str| value(&page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"));
    let label = "{conductor=\"metrics_rows\"}";
    assert_eq!(of(&format!("conductor_jobs_submitted_total{label}")), 40.0);
    assert_eq!(of(&format!("conductor_jobs_completed_total{label}")), 39.0);
    assert_eq!(of(&format!("conductor_jobs_failed_total{label}")), 1.0);
    assert_eq!(of(&format!("conductor_jobs_retried_total{label}")), 1.0);
    assert_eq!(of(&format!("conductor_jobs_in_flight{label}")), 0.0);
    assert_eq!(of(&format!("conductor_jobs_queued{label}")), 0.0);
    // Every run of job code was timed in its worker: 41 runs.
    assert_eq!(
        of(&format!("conductor_job_duration_seconds_count{label}")),
        41.0
    );
    let median = of("conductor_job_duration_seconds{conductor=\"metrics_rows\",quantile=\"0.5\"}");
    assert!((0.0015..0.05).contains(&median), "median {median}\n{page}");
    // Per worker: completed and failed runs add up to all runs.
    let per_worker: f64 = page
        .lines()
        .filter(|l| l.starts_with("conductor_worker_jobs_completed_total{"))
        .chain(
            page.lines()
                .filter(|l| l.starts_with("conductor_worker_jobs_failed_total{")),
        )
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(per_worker, 41.0, "{page}");
    assert!(page.contains("worker=\"1\""), "{page}");
    // Job code's own counter, summed over workers: 10 per run.
    assert_eq!(
        of("conductor_stat{conductor=\"metrics_rows\",name=\"rows\"}"),
        410.0
    );
}

fn scrape(address: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).ok()?;
    Some(page)
}

#[test]
fn the_prometheus_example_is_scraped_while_it_runs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let example = Command::new(common::example_path("prometheus"))
        .env("METRICS_ADDR", &address)
        .stdout(Stdio::piped())
        .spawn()
        .expect("build the example with `cargo build --examples --features metrics`");
    // Scrape until the run shows work in progress.
    let started = Instant::now();
    let mut mid_run = None;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(page) = scrape(&address) {
            let done = value(
                &page,
                "conductor_jobs_completed_total{conductor=\"checksum\"}",
            );
            if done.is_some_and(|d| d > 0.0 && d < 200.0) {
                mid_run = Some(page);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = mid_run.expect("a scrape during the run shows some jobs done, not all");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("conductor_jobs_in_flight{conductor=\"checksum\"}"),
        "{page}"
    );
    let output = example.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("200 jobs completed"), "{stdout}");
    assert_eq!(
        value(
            &stdout,
            "conductor_jobs_completed_total{conductor=\"checksum\"}"
        ),
        Some(200.0),
        "{stdout}"
    );
    assert_eq!(
        value(
            &stdout,
            "conductor_job_duration_seconds_bucket{conductor=\"checksum\",le=\"+Inf\"}"
        ),
        Some(200.0),
        "{stdout}"
    );
    let bytes: f64 = (0..200u64).map(|n| (n * 1000) as f64).sum();
    assert_eq!(
        value(
            &stdout,
            "conductor_stat{conductor=\"checksum\",name=\"bytes\"}"
        ),
        Some(bytes),
        "{stdout}"
    );
}
