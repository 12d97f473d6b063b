//! The run queue carries several jobs per message, and still accounts for each job
//! alone: a message that comes again runs only what is not done, and only the job
//! that was running when a worker died is charged. Against a real NATS server (see
//! `tests/nats.rs` for the server these tests use).

use std::time::Duration;

use conductor::Conductor;

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
