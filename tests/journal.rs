//! Resumable runs: a rerun with the same journal hands back the outputs of the jobs
//! done before, a journal belongs to one run at a time, and what it holds reads with
//! standard tools.

use std::path::PathBuf;
use std::time::Duration;

use conductor::{Conductor, JobError};

conductor::test_support!();

#[conductor::worker(type = "journal_square")]
fn square(job: u64) -> anyhow::Result<u64> {
    Ok(job * job)
}

#[conductor::worker(type = "journal_slow_square")]
fn slow_square(job: u64) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(5));
    Ok(job * job)
}

fn temp_journal(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conductor-journal-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(|k| k * k).collect()
}

#[tokio::test]
async fn collect_after_an_interrupted_run_and_its_rerun_equals_one_run() {
    let journal = temp_journal("interrupted");
    let mut running = Conductor::<u64, u64>::new("journal_slow_square")
        .worker_limit(2)
        .logging(false)
        .journal(&journal)
        .job_key(|n| n.to_string())
        .jobs(0..300u64)
        .start()
        .unwrap();
    let mut seen = 0;
    while let Some(finished) = running.next_result().await {
        assert_eq!(finished.result.unwrap(), finished.job * finished.job);
        seen += 1;
        if seen == 60 {
            running.handle().abort();
        }
    }
    let first = running.wait().await.unwrap();
    assert!(first.aborted());
    assert!(first.completed() < 300, "the first run was not interrupted");

    let rerun = Conductor::<u64, u64>::new("journal_slow_square")
        .worker_limit(2)
        .logging(false)
        .journal(&journal)
        .job_key(|n| n.to_string())
        .jobs(0..300u64)
        .collect_results()
        .await
        .unwrap();
    assert_eq!(rerun.report.skipped(), first.completed());
    assert_eq!(rerun.report.completed(), 300 - first.completed());
    let outputs: Vec<u64> = rerun.results.into_iter().map(Result::unwrap).collect();
    assert_eq!(outputs, squares(300), "the same as one uninterrupted run");

    // The journal reads with standard tools: one line per job, its key and output.
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 300);
    let line = text.lines().find(|l| l.starts_with("ok\t7\t")).unwrap();
    assert_eq!(line, "ok\t7\tMQ==", "49 in MessagePack is the byte 0x31");

    // A third run does nothing and still returns everything.
    let third: Vec<u64> = Conductor::new("journal_slow_square")
        .logging(false)
        .journal(&journal)
        .job_key(|n: &u64| n.to_string())
        .jobs(0..300u64)
        .collect()
        .await
        .unwrap();
    assert_eq!(third, squares(300));
}

#[tokio::test]
async fn a_keys_only_journal_passes_over_done_jobs_without_outputs() {
    let journal = temp_journal("keys-only");
    let run = || {
        Conductor::<u64, u64>::new("journal_square")
            .worker_limit(2)
            .logging(false)
            .journal(&journal)
            .journal_keys_only()
            .jobs(0..20u64)
    };
    assert_eq!(run().collect().await.unwrap(), squares(20));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.lines().all(|l| l.split('\t').count() == 2), "{text}");

    let rerun = run().collect_results().await.unwrap();
    assert_eq!(rerun.report.skipped(), 20);
    assert!(rerun
        .results
        .iter()
        .all(|r| matches!(r, Err(JobError::DoneBefore))));
    let error = run().collect().await.unwrap_err();
    assert!(
        error.to_string().contains("done by an earlier run"),
        "{error}"
    );
}

#[tokio::test]
async fn a_second_run_on_a_journal_in_use_is_refused_and_the_first_goes_on() {
    let journal = temp_journal("in-use");
    let running = Conductor::<u64, u64>::new("journal_slow_square")
        .worker_limit(1)
        .logging(false)
        .journal(&journal)
        .jobs(0..40u64)
        .start()
        .unwrap();
    let error = Conductor::<u64, u64>::new("journal_square")
        .logging(false)
        .journal(&journal)
        .jobs(0..40u64)
        .run()
        .await
        .unwrap_err();
    assert!(error.is_journal(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("another run is using this journal"),
        "{message}"
    );
    assert!(message.contains(journal.to_str().unwrap()), "{message}");

    assert_eq!(running.collect().await.unwrap(), squares(40));
    // Once the first run is over, the journal is free again.
    let report = Conductor::<u64, u64>::new("journal_square")
        .logging(false)
        .journal(&journal)
        .jobs(0..40u64)
        .run()
        .await
        .unwrap();
    assert_eq!(report.skipped(), 40);
}

#[tokio::test]
async fn a_kept_output_that_no_longer_reads_makes_its_job_run_again() {
    let journal = temp_journal("unreadable");
    // Job 5's output is the string "x", not a u64 (an older version of the program).
    std::fs::write(&journal, "ok\t4\tEA==\nok\t5\toXg=\n").unwrap();
    let collected = Conductor::<u64, u64>::new("journal_square")
        .logging(false)
        .journal(&journal)
        .job_key(|n| n.to_string())
        .jobs(0..8u64)
        .collect_results()
        .await
        .unwrap();
    assert_eq!(
        (collected.report.skipped(), collected.report.completed()),
        (1, 7)
    );
    let outputs: Vec<u64> = collected.results.into_iter().map(Result::unwrap).collect();
    assert_eq!(outputs, squares(8));
}
