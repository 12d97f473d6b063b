//! The run queue carries several jobs per message, and still accounts for each job
//! alone: a message that comes again runs only what is not done, and only the job
//! that was running when a worker died is charged. Against a real NATS server (see
//! `tests/nats.rs` for the server these tests use).

use std::time::Duration;

use conductor::{Conductor, Worker};

conductor::test_support!();

mod common;
use common::{nats_url, unique_run};

const TEST_SECRET: &str = "ba7c4e5ba7c4e5ba7c4e5ba7c4e5ba7c4e5ba7c4e5ba7c4e5ba7c4e5ba7c4e5b";

/// Job 7 kills whichever worker runs it.
#[conductor::worker(type = "batch_poison")]
fn batch_poison(job: u64) -> anyhow::Result<u64> {
    if job == 7 {
        std::process::abort();
    }
    Ok(job)
}

/// Logs each run of a job to `TEST_JOB_LOG`; job 1500 kills its worker the first time
/// it runs, after a pause long enough for the answers before it to be stored.
#[conductor::worker(type = "batch_logged")]
fn batch_logged(job: u64) -> anyhow::Result<u64> {
    use std::io::Write;
    let path = std::env::var("TEST_JOB_LOG")?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)?;
    log.write_all(format!("{job}\n").as_bytes())?;
    let marker = format!("{path}.killed");
    if job == 1500 && std::fs::metadata(&marker).is_err() {
        std::fs::write(&marker, b"")?;
        std::thread::sleep(Duration::from_millis(200));
        std::process::abort();
    }
    Ok(job)
}

/// Which worker ran the job, and in which process.
#[conductor::worker(type = "batch_whoami")]
fn batch_whoami(_job: u64, worker: &Worker) -> anyhow::Result<(u64, u32)> {
    std::thread::sleep(Duration::from_millis(2));
    Ok((worker.id(), std::process::id()))
}

/// A worker started by hand (on another machine, say) is recycled by
/// `max_jobs_per_worker` too: it becomes a fresh process of the same program (same
/// pid) that joins again, and it leaves when the run is over.
#[tokio::test]
async fn a_worker_from_elsewhere_is_recycled_and_joins_again() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("batch-recycle");
    let running = Conductor::<u64, (u64, u32)>::new("batch_whoami")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .max_jobs_per_worker(20)
        .logging(false)
        .jobs(0..300)
        .start()
        .unwrap();
    let mut hand = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "__conductor_worker_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONDUCTOR_NATS_URL", &url)
        .env("CONDUCTOR_JOIN", &run)
        .env("CONDUCTOR_RUN_SECRET", TEST_SECRET)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let collected = running.collect_results().await.unwrap();
    let (outputs, report) = (collected.results, collected.report);
    assert!(report.all_completed(), "{report:?}");
    let mut jobs_of: std::collections::BTreeMap<(u32, u64), u64> = Default::default();
    for output in outputs.iter().flatten() {
        *jobs_of.entry((output.1, output.0)).or_default() += 1;
    }
    let hand_pid = hand.id();
    let hand_workers = jobs_of.keys().filter(|(pid, _)| *pid == hand_pid).count();
    assert!(
        hand_workers >= 2,
        "the hand worker joined again under new ids: {jobs_of:?}"
    );
    assert!(
        jobs_of.values().all(|&jobs| jobs <= 20 + 20 / 4),
        "{jobs_of:?}"
    );
    // It leaves when the run is over, with success.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = hand.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hand worker stayed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// Job 3 never ends; the others take a moment.
#[conductor::worker(type = "batch_hangs")]
fn batch_hangs(job: u64) -> anyhow::Result<u64> {
    let pause = if job == 3 { 3_600_000 } else { 2 };
    std::thread::sleep(Duration::from_millis(pause));
    Ok(job)
}

/// `job_timeout` holds for the workers of a run queue too: the worker gives up on a
/// job that runs too long (the master cannot see which one runs), and only that job
/// is charged, as a timeout.
#[tokio::test]
async fn job_timeout_applies_to_workers_of_the_run_queue() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("batch-timeout");
    let started = std::time::Instant::now();
    let report = Conductor::<u64, u64>::new("batch_hangs")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .max_attempts(2)
        .job_timeout(Duration::from_millis(300))
        .ack_wait(Duration::from_secs(1))
        .logging(false)
        .jobs(0..100)
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed(), 99, "{report:?}");
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].job, 3);
    assert_eq!(
        failures[0].kind,
        conductor::FailureKind::TimedOut,
        "{failures:?}"
    );
    assert_eq!(failures[0].attempts, 2);
    assert!(
        failures[0].error.contains("timed out after 300ms"),
        "{}",
        failures[0].error
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// With one attempt per job, a worker that dies holding a message of many jobs costs
/// only the job that killed it: the others run again uncharged.
#[tokio::test]
async fn only_the_job_that_killed_its_worker_is_charged() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("batch-poison");
    let report = Conductor::<u64, u64>::new("batch_poison")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .max_attempts(1)
        .ack_wait(Duration::from_millis(500))
        .logging(false)
        .jobs(0..2000)
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed(), 1999, "{report:?}");
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].job, 7);
    assert_eq!(failures[0].attempts, 1);
}

/// A worker killed in the middle of a message: the jobs of that message whose answers
/// were stored do not run again; the one it died in runs again, and so do the jobs
/// it never started; every job is settled once.
#[tokio::test]
async fn a_message_that_comes_again_runs_only_what_is_not_done() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("batch-again");
    let log = std::env::temp_dir().join(format!("{run}.log"));
    let report = Conductor::<u64, u64>::new("batch_logged")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(2)
        .ack_wait(Duration::from_millis(500))
        .worker_env("TEST_JOB_LOG", log.to_str().unwrap())
        .logging(false)
        .jobs(0..4000)
        .run()
        .await
        .unwrap();
    assert!(report.all_completed(), "{report:?}");
    assert_eq!(report.completed(), 4000);
    let mut runs = std::collections::BTreeMap::<u64, u32>::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        *runs.entry(line.parse().unwrap()).or_default() += 1;
    }
    assert_eq!(runs.len(), 4000, "every job ran");
    assert_eq!(runs[&1500], 2, "the job its worker died in ran again");
    let twice: Vec<u64> = runs
        .iter()
        .filter(|(id, n)| **n > 1 && **id != 1500)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        twice.is_empty(),
        "jobs whose answers were stored ran again: {twice:?}"
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("log.killed"));
}
