//! Results in one call: `collect` (outputs in submission order), `collect_results`
//! (a result per job, and the report) and `next_result` (as they finish), with typed
//! failures.

use std::collections::BTreeSet;
use std::time::Duration;

use conductor::{Conductor, FailureKind, JobError};

conductor::test_support!();

#[conductor::worker(type = "collect_square")]
fn square(job: u64) -> anyhow::Result<u64> {
    Ok(job * job)
}

/// Job 3 of every ten returns an error, job 7 panics.
#[conductor::worker(type = "collect_picky")]
fn picky(job: u64) -> anyhow::Result<u64> {
    match job % 10 {
        3 => anyhow::bail!("job {job} is unlucky"),
        7 => panic!("job {job} panicked on purpose"),
        _ => Ok(job),
    }
}

#[conductor::worker(type = "collect_slow")]
fn slow(job: u64) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(20));
    Ok(job)
}

#[tokio::test]
async fn collect_returns_every_output_in_submission_order() {
    let squares: Vec<u64> = Conductor::new("collect_square")
        .worker_limit(2)
        .logging(false)
        .jobs(0..5000u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(squares, (0..5000u64).map(|n| n * n).collect::<Vec<_>>());
}

#[tokio::test]
async fn collect_is_an_error_that_names_and_holds_the_failed_jobs() {
    let error = Conductor::<u64, u64>::new("collect_picky")
        .worker_limit(2)
        .logging(false)
        .jobs(0..30u64)
        .collect()
        .await
        .expect_err("six jobs fail");
    assert!(error.is_job_failure(), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("6 of 30 jobs have no output (first: job 3: job 3 is unlucky)"),
        "{message}"
    );
    let failures = error.failures::<u64>();
    let failed: BTreeSet<u64> = failures.iter().map(|f| f.job.unwrap()).collect();
    assert_eq!(failed, BTreeSet::from([3, 7, 13, 17, 23, 27]));
}

#[tokio::test]
async fn collect_results_gives_a_typed_result_per_job_and_the_report() {
    let run = Conductor::<u64, u64>::new("collect_picky")
        .worker_limit(2)
        .logging(false)
        .jobs(0..30u64)
        .collect_results()
        .await
        .unwrap();
    assert_eq!(run.results.len(), 30);
    for (id, result) in run.results.iter().enumerate() {
        match (id % 10, result) {
            (3, Err(e)) => {
                assert_eq!(e.kind(), Some(FailureKind::Returned));
                assert_eq!(e.to_string(), format!("job {id} is unlucky"));
            }
            (7, Err(e)) => assert_eq!(e.kind(), Some(FailureKind::Panicked)),
            (_, Ok(n)) => assert_eq!(*n, id as u64),
            (_, other) => panic!("job {id}: {other:?}"),
        }
    }
    assert_eq!((run.report.completed(), run.report.failed()), (24, 6));
}

#[tokio::test]
async fn next_result_hands_each_job_with_its_result_as_it_finishes() {
    let mut running = Conductor::<u64, u64>::new("collect_picky")
        .worker_limit(2)
        .logging(false)
        .jobs(100..120u64)
        .start()
        .unwrap();
    let mut seen = BTreeSet::new();
    while let Some(finished) = running.next_result().await {
        assert_eq!(finished.job, 100 + finished.id);
        match &finished.result {
            Ok(n) => assert_eq!(*n, finished.job),
            Err(JobError::Failed { kind, .. }) => {
                assert!(matches!(finished.job % 10, 3 | 7), "{finished:?}");
                assert!(matches!(
                    kind,
                    FailureKind::Returned | FailureKind::Panicked
                ));
            }
            Err(other) => panic!("{other}"),
        }
        assert!(seen.insert(finished.id), "job {} twice", finished.id);
    }
    assert_eq!(seen.len(), 20);
    running.wait().await.unwrap();
}

#[tokio::test]
async fn an_interrupted_run_says_which_jobs_did_not_run() {
    let mut running = Conductor::<u64, u64>::new("collect_slow")
        .worker_limit(2)
        .prefetch(1)
        .logging(false)
        .handle_signals(false)
        .jobs(0..200u64)
        .start()
        .unwrap();
    let handle = running.handle().clone();
    let first = running.next_result().await.unwrap();
    assert!(first.result.is_ok());
    handle.shutdown();
    let run = running.collect_results().await.unwrap();
    let done = run.results.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(
        done + 1,
        run.report.completed(),
        "the first was taken before"
    );
    let not_run = run
        .results
        .iter()
        .filter(|r| matches!(r, Err(JobError::NotRun { .. })))
        .count();
    assert_eq!(not_run, run.report.not_run().len());
    assert!(not_run > 0);
}
