//! Logs from everywhere, in one place: `tracing` events and `log` records of job code
//! reach the master's subscriber with their own target, level and fields, inside a
//! span per job that says which worker, job and attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use conductor::{Conductor, Retry, Worker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

conductor::test_support!();

mod common;

/// Logs in every way job code can; job 2 fails on its first attempt.
#[conductor::worker]
fn logs_chatty(job: u64, w: &Worker) -> anyhow::Result<u64> {
    let _inner = tracing::info_span!("resize", width = job * 10).entered();
    tracing::info!(pixels = job * job, name = "img", "resized image {job}");
    log::warn!("a log record from job {job}");
    tracing::debug!(ok = true, "job {job} is done");
    // A marker named after the master: the first run of job 2, on whichever worker.
    let marker = std::env::temp_dir().join(format!("conductor-logs-{}", w.master_id()));
    if job == 2
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok()
    {
        anyhow::bail!("first try of job 2 fails");
    }
    Ok(job)
}

/// One captured event: its target, level, fields, and the fields of its span.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    level: tracing::Level,
    file: Option<String>,
    fields: HashMap<String, String>,
    span: HashMap<String, String>,
}

/// A span's name and fields.
type SpanSeen = (String, HashMap<String, String>);

/// A subscriber that keeps everything, for the test to read.
#[derive(Default)]
struct Capture {
    spans: Mutex<HashMap<u64, SpanSeen>>,
    next: AtomicU64,
    events: Mutex<Vec<Seen>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl Subscriber for &'static Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let name = span.metadata().name().to_string();
        self.spans.lock().unwrap().insert(id, (name, fields));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let span = event
            .parent()
            .and_then(|id| self.spans.lock().unwrap().get(&id.into_u64()).cloned())
            .map(|(name, mut fields)| {
                fields.insert("span".into(), name);
                fields
            })
            .unwrap_or_default();
        let metadata = event.metadata();
        self.events.lock().unwrap().push(Seen {
            target: metadata.target().into(),
            level: *metadata.level(),
            file: metadata.file().map(str::to_string),
            fields,
            span,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        tracing::subscriber::set_global_default(capture).expect("the only subscriber");
        capture
    })
}

#[tokio::test]
async fn job_code_logs_reach_the_masters_subscriber_with_worker_job_and_attempt() {
    let capture = capture();
    let outputs = Conductor::of::<logs_chatty>()
        .worker_limit(2)
        .logging(false)
        .retry(Retry::attempts(2).backoff(Duration::from_millis(5), Duration::from_millis(5)))
        .jobs(0..4u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, [0, 1, 2, 3]);
    let events = capture.events.lock().unwrap().clone();
    let ours: Vec<&Seen> = events.iter().filter(|e| e.target == "logs").collect();

    for job in 0..4u64 {
        let resized = ours
            .iter()
            .find(|e| e.fields.get("message") == Some(&format!("resized image {job}")))
            .unwrap_or_else(|| panic!("no event of job {job} in {ours:#?}"));
        assert_eq!(resized.level, tracing::Level::INFO);
        assert_eq!(resized.file.as_deref(), Some("tests/logs.rs"));
        assert_eq!(resized.fields["pixels"], (job * job).to_string());
        assert_eq!(resized.fields["name"], "\"img\"");
        // The span of the job in the worker travels with the event.
        assert_eq!(
            resized.fields["spans"],
            format!("\"resize{{width={}}}\"", job * 10)
        );
        // The master's span of the job says which worker, job and attempt.
        assert_eq!(resized.span["span"], "job", "{resized:?}");
        assert_eq!(resized.span["job"], job.to_string());
        assert_eq!(resized.span["attempt"], "1");
        let worker: u64 = resized.span["worker"].parse().unwrap();
        assert!((1..=2).contains(&worker), "{resized:?}");

        let record = ours
            .iter()
            .find(|e| e.fields.get("message") == Some(&format!("a log record from job {job}")))
            .unwrap_or_else(|| panic!("no log record of job {job} in {ours:#?}"));
        assert_eq!(record.level, tracing::Level::WARN);
        assert_eq!(record.span["job"], job.to_string());
    }
    // Job 2 ran twice: its second run's events say attempt 2.
    let second = ours
        .iter()
        .filter(|e| e.fields.get("message") == Some(&"resized image 2".to_string()))
        .map(|e| e.span["attempt"].clone())
        .collect::<Vec<_>>();
    assert_eq!(second, ["1", "2"]);
    let debug = ours
        .iter()
        .filter(|e| e.level == tracing::Level::DEBUG)
        .count();
    assert_eq!(debug, 5, "debug events pass when the subscriber takes them");
}

/// Job code of a distributed run logs the same way: through the worker's bridge and
/// the run's subjects to the master.
#[cfg(feature = "nats")]
#[tokio::test]
async fn over_nats_job_code_logs_reach_the_master_too() {
    let Some(url) = common::nats_url() else {
        return;
    };
    let capture = capture();
    let run = format!("test-logs-{}", std::process::id());
    let outputs = Conductor::of::<logs_chatty>()
        .nats(&url)
        .run_name(&run)
        .worker_limit(2)
        .logging(false)
        .jobs(10..14u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, [10, 11, 12, 13]);
    let events = capture.events.lock().unwrap().clone();
    for job in 10..14u64 {
        let resized = events
            .iter()
            .find(|e| e.fields.get("message") == Some(&format!("resized image {job}")))
            .unwrap_or_else(|| panic!("no event of job {job} in {events:#?}"));
        assert_eq!(resized.target, "logs");
        assert_eq!(resized.span["span"], "job", "{resized:?}");
        assert_eq!(resized.span["attempt"], "1", "{resized:?}");
        assert!(resized.span.contains_key("worker"), "{resized:?}");
    }
}

/// A subscriber set for the caller's thread only still hears the run.
#[tokio::test]
async fn a_subscriber_set_for_the_callers_thread_hears_the_run() {
    let scoped: &'static Capture = Box::leak(Box::default());
    let _guard = tracing::subscriber::set_default(scoped);
    let outputs = Conductor::of::<logs_chatty>()
        .worker_limit(1)
        .logging(false)
        .jobs(20..22u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, [20, 21]);
    let events = scoped.events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.fields.get("message") == Some(&"resized image 21".to_string())),
        "{events:#?}"
    );
}

/// Warns in every job: what a master without any subscriber must still show.
#[conductor::worker]
fn logs_warning(job: u64) -> anyhow::Result<u64> {
    tracing::warn!("disk almost full while writing part {job}");
    tracing::info!("an info line nobody asked for");
    Ok(job)
}

/// Run as a program of its own by the test below: a master with no subscriber.
#[tokio::test]
async fn master_without_subscriber_entry() {
    if std::env::var_os("CONDUCTOR_TEST_NO_SUBSCRIBER").is_none() {
        return;
    }
    let outputs = Conductor::of::<logs_warning>()
        .worker_limit(1)
        .logging(false)
        .jobs(0..3u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, [0, 1, 2]);
}

#[test]
fn without_a_subscriber_workers_warnings_still_reach_stderr() {
    let (passed, stderr) = common::run_entry(
        "master_without_subscriber_entry",
        ("CONDUCTOR_TEST_NO_SUBSCRIBER", "1"),
    );
    assert!(passed, "{stderr}");
    for job in 0..3 {
        let line = format!("WARN worker 1: logs: disk almost full while writing part {job}");
        assert!(stderr.contains(&line), "{stderr}");
    }
    assert!(!stderr.contains("an info line"), "{stderr}");
}

/// A `log` logger of the program's own, as env_logger would be.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "LOG {} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

/// Run as a program of its own by the test below: a master that logs with `log`.
#[tokio::test]
async fn master_with_a_log_logger_entry() {
    if std::env::var_os("CONDUCTOR_TEST_LOG_LOGGER").is_none() {
        return;
    }
    log::set_logger(&StderrLogger).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let outputs = Conductor::of::<logs_chatty>()
        .worker_limit(1)
        .logging(false)
        .jobs(30..32u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, [30, 31]);
}

#[test]
fn a_program_that_logs_with_the_log_crate_hears_its_workers_there() {
    let (passed, stderr) = common::run_entry(
        "master_with_a_log_logger_entry",
        ("CONDUCTOR_TEST_LOG_LOGGER", "1"),
    );
    assert!(passed, "{stderr}");
    for job in [30, 31] {
        // A `tracing` event and a `log` record of job code, at info and warn.
        assert!(
            stderr.contains(&format!("LOG INFO logs: resized image {job} pixels=")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("LOG WARN logs: a log record from job {job}")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("is done"), "debug is not taken: {stderr}");
}
