//! Operating distributed runs: any conductor program started with `CONDUCTOR_RUNS`
//! lists the runs on a server, follows one, and removes a finished or abandoned one's
//! streams; and what a run keeps for a master that takes it over (against a real NATS
//! server, see `tests/nats.rs`).

use std::process::{Command, Output};
use std::time::Duration;

use conductor::{Conductor, Worker};

conductor::test_support!();

mod common;
use common::{nats_url, unique_run};

const TEST_SECRET: &str = "0be7a70be7a70be7a70be7a70be7a70be7a70be7a70be7a70be7a70be7a70be7";

#[conductor::worker(type = "operated_slowly")]
fn operated_slowly(job: u64) -> anyhow::Result<u64> {
    std::thread::sleep(Duration::from_millis(20));
    Ok(job)
}

/// Job 0 notes a lookup value; every later job reads it back.
#[conductor::worker(type = "operated_memory")]
async fn operated_memory(job: u64, worker: &Worker) -> anyhow::Result<u64> {
    if job == 0 {
        worker.set_lookup("notes", "first", &42u64).await?;
        return Ok(0);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let noted: Option<u64> = worker.lookup("notes", "first").await?;
    Ok(noted.unwrap_or(0))
}

/// Lookup values set while a run runs are kept in a stream of the run's: a master that
/// takes the run over after the first stopped finds them, and they go with the
/// run's streams.
#[tokio::test]
async fn lookup_values_set_during_a_run_survive_its_master() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("kept-lookups");
    let start = || {
        Conductor::<u64, u64>::new("operated_memory")
            .nats(&url)
            .run_name(&run)
            .run_secret(TEST_SECRET)
            .worker_limit(1)
            .logging(false)
            .jobs(0..60)
            .start()
            .unwrap()
    };
    let mut first = start();
    let mut answered = 0;
    while let Some(event) = first.next_event().await {
        if let conductor::Event::Output(_) = event {
            answered += 1;
            if answered == 5 {
                first.handle().shutdown();
            }
        }
    }
    let report = first.wait().await.unwrap();
    assert!(!report.not_run().is_empty(), "{report:?}");
    // A new master, with no table of its own: the value comes from the bucket.
    let second = start().collect_results().await.unwrap();
    assert!(second.report.all_completed(), "{:?}", second.report);
    let read: Vec<u64> = second
        .results
        .into_iter()
        .skip(1)
        .map(Result::unwrap)
        .collect();
    assert!(read.iter().all(|&v| v == 42), "{read:?}");
    let listed = text(&operate(&url, "list", None));
    assert!(!listed.contains(&run), "{listed}");
    let client = async_nats::connect(&url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    assert!(
        jetstream
            .get_stream(format!("CONDUCTOR_{run}_LOOKUPS"))
            .await
            .is_err(),
        "the kept values went with the run"
    );
}

/// This test binary as the operator's tool, with `CONDUCTOR_RUNS=command`.
fn operate(url: &str, command: &str, secret: Option<&str>) -> Output {
    let mut tool = Command::new(std::env::current_exe().unwrap());
    tool.args(["__conductor_worker_entry", "--exact", "--nocapture"])
        .env("CONDUCTOR_NATS_URL", url)
        .env("CONDUCTOR_RUNS", command)
        .env_remove("CONDUCTOR_RUN_SECRET");
    if let Some(secret) = secret {
        tool.env("CONDUCTOR_RUN_SECRET", secret);
    }
    tool.output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test]
async fn an_operator_lists_follows_and_removes_runs() {
    let Some(url) = nats_url() else { return };
    let run = unique_run("operated");
    let running = Conductor::<u64, u64>::new("operated_slowly")
        .nats(&url)
        .run_name(&run)
        .run_secret(TEST_SECRET)
        .worker_limit(1)
        .logging(false)
        .jobs(0..10_000)
        .start()
        .unwrap();
    let handle = running.handle().clone();
    // Some jobs done, most still queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let listed = operate(&url, "list", Some(TEST_SECRET));
    let listed_text = text(&listed);
    assert!(listed.status.success(), "{listed_text}");
    let line = listed_text
        .lines()
        .find(|l| l.starts_with(&run))
        .unwrap_or_else(|| panic!("the run is listed: {listed_text}"));
    assert!(
        line.contains("submitted=") && line.contains("completed="),
        "{line}"
    );
    assert!(line.contains("workers=1"), "{line}");

    // Without the secret: what the server holds, and that a master runs it.
    let blind = text(&operate(&url, "list", None));
    let line = blind.lines().find(|l| l.starts_with(&run)).unwrap();
    assert!(
        line.contains("need the run's CONDUCTOR_RUN_SECRET"),
        "{line}"
    );
    assert!(!line.contains("submitted="), "{line}");

    // A run whose master is alive is not removed by mistake.
    let refused = operate(&url, &format!("remove {run}"), None);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("has a master that answers"),
        "{}",
        text(&refused)
    );

    // Abandoned: its master stopped early, and its streams stay for a resume...
    handle.abort();
    let report = running.wait().await.unwrap();
    assert!(!report.not_run().is_empty(), "{report:?}");
    let kept = text(&operate(&url, "list", None));
    let line = kept.lines().find(|l| l.starts_with(&run)).unwrap();
    assert!(line.contains("none"), "{line}");
    // ...until the operator removes them.
    let removed = operate(&url, &format!("remove {run}"), None);
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(text(&removed).contains(&format!("removed stream CONDUCTOR_{run}_JOBS")));
    let after = text(&operate(&url, "list", None));
    assert!(!after.lines().any(|l| l.starts_with(&run)), "{after}");
    let followed = operate(&url, &format!("follow {run}"), None);
    assert!(text(&followed).contains("is gone"), "{}", text(&followed));

    let wrong = operate(&url, "frobnicate", None);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("say `list`"), "{}", text(&wrong));
}
