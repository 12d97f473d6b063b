//! Failure policies: retries with backoff for jobs that return an error (separate from
//! crash attempts), errors marked permanent, and halting when too many jobs fail.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use conductor::{Conductor, FailureKind, Halt, Interrupt, Permanent, Retry};

conductor::test_support!();

/// A folder of marks, one per run of a job, shared by every worker of a test.
fn marks_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "conductor-retries-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Counts this run of `job` and says which run it is, from 1.
fn run_number(job: u64) -> usize {
    let dir = PathBuf::from(std::env::var("RETRY_MARKS").unwrap());
    let mut n = 1;
    while std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{job}-{n}")))
        .is_err()
    {
        n += 1;
    }
    n
}

/// Fails the first two runs of every job, succeeds on the third.
#[conductor::worker(type = "flaky")]
fn flaky(job: u64) -> anyhow::Result<u64> {
    match run_number(job) {
        n if n < 3 => anyhow::bail!("run {n} of job {job} failed"),
        _ => Ok(job),
    }
}

/// Always fails; job 0 with an error no retry can fix.
#[conductor::worker(type = "hopeless")]
fn hopeless(job: u64) -> anyhow::Result<u64> {
    run_number(job);
    if job == 0 {
        return Err(Permanent::new(anyhow::anyhow!("job 0 is malformed")).into());
    }
    anyhow::bail!("job {job} failed")
}

/// Every fifth job fails; each takes 5 ms.
#[conductor::worker(type = "some_fail")]
fn some_fail(job: u64) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(5));
    if job % 5 == 4 {
        anyhow::bail!("job {job} failed");
    }
    Ok(job)
}

#[tokio::test]
async fn jobs_that_return_errors_are_retried_after_a_backoff() {
    let marks = marks_dir("flaky");
    let started = Instant::now();
    let outputs: Vec<u64> = Conductor::new("flaky")
        .worker_limit(2)
        .logging(false)
        .worker_env("RETRY_MARKS", marks.to_string_lossy())
        .retry(Retry::attempts(3).backoff(Duration::from_millis(40), Duration::from_secs(1)))
        .jobs(0..20u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, (0..20).collect::<Vec<_>>());
    // Two retries each, after 40 ms and 80 ms (±50%): at least 60 ms in all.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_dir(&marks).unwrap().count(),
        60,
        "three runs per job"
    );
    let _ = std::fs::remove_dir_all(marks);
}

#[tokio::test]
async fn without_a_retry_policy_an_error_fails_the_job_at_once() {
    let marks = marks_dir("once");
    let report = Conductor::<u64, u64>::new("flaky")
        .worker_limit(2)
        .logging(false)
        .worker_env("RETRY_MARKS", marks.to_string_lossy())
        .jobs(0..5u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.failed(), 5);
    assert!(report
        .failures()
        .iter()
        .all(|f| f.attempts == 1 && f.history.is_empty()));
    report.mark_handled();
    let _ = std::fs::remove_dir_all(marks);
}

#[tokio::test]
async fn a_failure_keeps_its_history_and_a_permanent_error_is_not_retried() {
    let marks = marks_dir("hopeless");
    let report = Conductor::<u64, u64>::new("hopeless")
        .worker_limit(2)
        .logging(false)
        .worker_env("RETRY_MARKS", marks.to_string_lossy())
        .retry(Retry::attempts(3).backoff(Duration::from_millis(5), Duration::from_millis(20)))
        .jobs(0..4u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.failed(), 4);
    for failure in report.failures() {
        if failure.job == 0 {
            assert_eq!(failure.kind, FailureKind::Permanent);
            assert_eq!((failure.attempts, failure.history.len()), (1, 0));
            assert_eq!(failure.error, "job 0 is malformed");
        } else {
            assert_eq!(failure.kind, FailureKind::Returned);
            assert_eq!(failure.attempts, 3);
            assert_eq!(failure.history.len(), 2, "{failure:?}");
            assert!(failure
                .history
                .iter()
                .all(|a| a.kind == FailureKind::Returned));
        }
    }
    // Job 0 ran once, the others three times each.
    assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 1 + 3 * 3);
    report.mark_handled();
    let _ = std::fs::remove_dir_all(marks);
}

#[tokio::test]
async fn a_run_halts_after_too_many_failures_and_accounts_for_every_job() {
    let mut report = Conductor::<u64, u64>::new("some_fail")
        .worker_limit(2)
        .logging(false)
        .halt(Halt::after_failures(3))
        .jobs(0..400u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.interrupted(), Some(Interrupt::Halted));
    assert_eq!(report.exit_code(), 1);
    assert!(report.failed() >= 3, "{report:?}");
    let mut unsubmitted = 0;
    if let Some(mut rest) = report.take_unsubmitted() {
        while rest.next().await.is_some() {
            unsubmitted += 1;
        }
    }
    let not_run = report.not_run().len() as u64 + unsubmitted;
    assert!(not_run > 100, "it stopped early: {not_run} not run");
    assert_eq!(report.completed() + report.failed() + not_run, 400);
    report.mark_handled();
}

#[tokio::test]
async fn a_failure_ratio_halts_and_can_stop_the_running_jobs() {
    let report = Conductor::<u64, u64>::new("some_fail")
        .worker_limit(2)
        .logging(false)
        .halt(Halt::at_failure_ratio(0.1, 20).kill_running())
        .jobs(0..400u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.interrupted(), Some(Interrupt::Halted));
    // A fifth of the jobs fail: more than a tenth once 20 are settled.
    assert!(report.completed() + report.failed() < 60, "{report:?}");
    report.mark_handled();
}
